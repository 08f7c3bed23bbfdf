//! Faults a tool running in production meets: a full disk in the middle of writing a model,
//! a corrupted or truncated model file, a folder with pipes, link cycles and odd names.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// `synthscan ensemble … --out path` with the fault hook set to `fault` (or none).
fn write_ensemble(out: &Path, fault: Option<&str>) -> std::process::Output {
    let mut cmd = bin();
    cmd.args([
        "ensemble", "--model", "cifake", "--model", "cifake", "--out",
    ])
    .arg(out);
    if let Some(f) = fault {
        cmd.env("SYNTHSCAN_FAULT", f);
    }
    cmd.output().unwrap()
}

#[test]
fn a_full_disk_leaves_the_previous_model_intact_and_names_the_file() {
    let dir = temp_dir("faults-enospc");
    let out = dir.join("served.synthscan");
    assert!(write_ensemble(&out, None).status.success());
    let before = std::fs::read(&out).unwrap();
    let failed = write_ensemble(&out, Some("write:1:enospc"));
    assert!(!failed.status.success());
    let err = stderr(&failed);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("served.synthscan") && err.contains("No space left"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the previous file changed"
    );
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "a temporary file was left behind: {left:?}");
    // Killed in the middle of the write (temporary written, not yet renamed): same outcome.
    let killed = write_ensemble(&out, Some("write:1:abort"));
    assert!(!killed.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), before);
    assert!(
        run(&["info", "--model", out.to_str().unwrap()])
            .status
            .success()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_and_bit_flipped_models_are_one_line_errors_naming_the_file() {
    let dir = temp_dir("faults-corrupt");
    let good = dir.join("good.synthscan");
    assert!(write_ensemble(&good, None).status.success());
    let bytes = std::fs::read(&good).unwrap();
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x10;
    let cases = [
        ("cut.synthscan", bytes[..bytes.len() / 2].to_vec()),
        ("flipped.synthscan", flipped),
    ];
    let img = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for (name, content) in cases {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let p = path.to_str().unwrap();
        for args in [
            vec!["predict", "--model", p, img.to_str().unwrap()],
            vec!["serve", "--model", p, "--addr", "127.0.0.1:0"],
        ] {
            let out = run(&args);
            assert!(!out.status.success(), "{args:?}");
            let err = stderr(&out);
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
            assert!(
                err.contains(name) && (err.contains("checksum") || err.contains("truncated")),
                "{args:?}: {err}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn a_hostile_folder_scan_finishes_scoring_each_image_once() {
    use std::os::unix::ffi::OsStrExt;
    let dir = temp_dir("faults-folder");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/REAL");
    let sample = std::fs::read_dir(&examples)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut deep = dir.join("nest");
    for i in 0..40 {
        deep = deep.join(format!("d{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::copy(&sample, deep.join("deep.jpg")).unwrap();
    std::fs::copy(&sample, dir.join("a.jpg")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"odd-\xff.jpg");
    std::fs::copy(&sample, dir.join(odd)).unwrap();
    std::fs::create_dir(dir.join("x.jpg")).unwrap();
    std::os::unix::fs::symlink(".", dir.join("loop")).unwrap();
    std::os::unix::fs::symlink("gone.jpg", dir.join("dangling.jpg")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("pipe.jpg"))
        .status()
        .unwrap();
    assert!(made.success());

    let mut child = bin()
        .args(["predict", "--json", "--model", "cifake"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("predict did not finish on a folder with a named pipe");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "some items failed: exit status 1"
    );
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let scored: Vec<&Value> = lines.iter().filter(|l| l.get("label").is_some()).collect();
    assert_eq!(scored.len(), 3, "{lines:?}");
    let odd_line = scored
        .iter()
        .find(|l| l.get("path_base64").is_some())
        .expect("the non-UTF-8 name is scored");
    assert!(
        odd_line["path"]
            .as_str()
            .unwrap()
            .ends_with("odd-\u{fffd}.jpg")
    );
    let raw = decode_base64(odd_line["path_base64"].as_str().unwrap());
    assert!(raw.ends_with(b"/odd-\xff.jpg"), "{raw:?}");
    let problems: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    let names: Vec<&str> = problems
        .iter()
        .map(|l| l["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    for expected in ["pipe.jpg", "dangling.jpg", "loop"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Standard base64 (with padding) to bytes.
fn decode_base64(text: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let vals: Vec<u32> = text
        .bytes()
        .filter(|&c| c != b'=')
        .map(|c| A.iter().position(|&x| x == c).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in vals.chunks(4) {
        let n = chunk.iter().fold(0u32, |acc, v| (acc << 6) | v) << (6 * (4 - chunk.len()));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
