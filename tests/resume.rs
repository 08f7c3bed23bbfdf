//! Crash-safe checkpoints through the CLI: a run killed in the middle of any checkpoint write
//! and resumed gives the uninterrupted run's `metrics.csv` (timing columns aside) and final
//! weights; a full disk fails naming the file and leaves the last generation resumable.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A tiny experiment with everything stateful switched on: SGD with momentum and weight
/// decay (two parameter groups), an EMA, flips, a one-cycle schedule; batch-norm (whose
/// running statistics a data-parallel step moves in part order, whatever threads run the
/// parts: `train::step`) when `batch_norm`.
fn config(dir: &Path, batch_norm: bool) -> PathBuf {
    let path = dir.join(format!("resume-bn-{batch_norm}.yaml"));
    std::fs::write(
        &path,
        "name: r\nseed: 7\nmodel:\n  arch: cnn\n  stem: 0\n  stages: [{channels: 8}, {channels: 16}]\n  batch_norm: BATCH_NORM\n  activation: relu\n  global_pool: avg\n\
         input_size: 16\nepochs: 4\nbatch_size: 32\n\
         optimizer: {kind: sgd, lr: 0.2, momentum: 0.9, nesterov: true, weight_decay: 0.0005}\n\
         schedule: {kind: one-cycle, warmup_fraction: 0.2}\naugment: {hflip: true}\nema: {decay: 0.9}\n\
         data: {val_fraction: 0.2}\n"
            .replace("BATCH_NORM", if batch_norm { "true" } else { "false" }),
    )
    .unwrap();
    path
}

fn train(cfg: &Path, data: &Path, out: &Path, fault: Option<&str>) -> std::process::Output {
    let mut cmd = bin();
    cmd.args(["train", "--quiet", "--config"])
        .arg(cfg)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    if let Some(f) = fault {
        cmd.env("SYNTHSCAN_FAULT", f);
    }
    cmd.output().unwrap()
}

fn resume(run_dir: &Path) -> std::process::Output {
    bin()
        .args(["train", "--quiet", "--resume"])
        .arg(run_dir)
        .output()
        .unwrap()
}

/// `metrics.csv` without its timing columns (`seconds`, `images_per_second`: the last two).
fn metrics(run_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(run_dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplitn(3, ',').last().unwrap().to_string())
        .collect()
}

/// The final model's bytes from its JSON header on (past magic, version, length and checksum),
/// with burn's parameter ids masked: they are drawn afresh by every process and are no part
/// of the weights. Equal results mean equal metadata and bit-identical tensors.
fn model(run_dir: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(run_dir.join("model.synthscan")).unwrap();
    let key = b"param_id\x1b";
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(key.len()).position(|w| w == key) {
        let start = i + at + key.len();
        bytes[start..start + 8].fill(0);
        i = start + 8;
    }
    bytes.split_off(54)
}

/// Train uninterrupted, then once per write in `writes` abort in that write and resume: each
/// resumed run ends with the uninterrupted run's metrics and weights.
fn killed_runs_resume_to_the_same_result(name: &str, batch_norm: bool, writes: &[usize]) {
    let dir = temp_dir(name);
    let data = dir.join("data");
    make_dataset(&data, 60, 16, 3);
    let cfg = config(&dir, batch_norm);
    let whole = train(&cfg, &data, &dir.join("whole"), None);
    assert!(whole.status.success(), "{}", stderr(&whole));
    let whole_dir = dir.join("whole/r");
    assert_eq!(metrics(&whole_dir).len(), 5);
    // Writes: config, metrics header, run.json; then per epoch the metrics row, the
    // generation's five files, the commit (resume.json), two published copies, run.json and
    // the CLI's plots: kills spread over the first three epochs, before the first commit, in
    // the middle of a generation and after a commit.
    for &n in writes {
        let out = dir.join(format!("killed-{n}"));
        let killed = train(&cfg, &data, &out, Some(&format!("write:{n}:abort")));
        assert!(
            !killed.status.success(),
            "write {n}: the fault did not fire"
        );
        let run_dir = out.join("r");
        let resumed = resume(&run_dir);
        assert!(resumed.status.success(), "write {n}: {}", stderr(&resumed));
        assert_eq!(metrics(&run_dir), metrics(&whole_dir), "write {n}");
        assert!(
            model(&run_dir) == model(&whole_dir),
            "write {n}: weights differ"
        );
        let gens: Vec<_> = std::fs::read_dir(run_dir.join("weights"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("gen-") || n.ends_with(".tmp"))
            .collect();
        assert_eq!(gens, ["gen-000004"], "write {n}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_killed_in_any_checkpoint_write_resumes_to_the_same_result() {
    killed_runs_resume_to_the_same_result("resume-kill", false, &[10, 17, 21, 28]);
}

/// With batch-norm too: its running statistics are part of the weights and come back, and a
/// step moves them the same way on every run.
#[test]
fn a_batch_norm_run_killed_and_resumed_gives_the_same_result() {
    killed_runs_resume_to_the_same_result("resume-kill-bn", true, &[17, 28]);
}

#[test]
fn a_full_disk_in_a_checkpoint_names_the_file_and_keeps_the_last_generation() {
    let dir = temp_dir("resume-enospc");
    let data = dir.join("data");
    make_dataset(&data, 40, 16, 4);
    let cfg = config(&dir, false);
    let whole = train(&cfg, &data, &dir.join("whole"), None);
    assert!(whole.status.success(), "{}", stderr(&whole));
    // 19: a file of epoch 2's generation.
    let failed = train(&cfg, &data, &dir.join("full"), Some("write:19:enospc"));
    assert!(!failed.status.success());
    let err = stderr(&failed);
    assert!(
        err.contains("gen-000002/") && err.contains("No space left"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let run_dir = dir.join("full/r");
    let state = std::fs::read_to_string(run_dir.join("weights/resume.json")).unwrap();
    assert!(state.contains("\"generation\": 1"), "{state}");
    for f in [
        "best.synthscan",
        "last.synthscan",
        "train-model.bpk",
        "optimizer.bpk",
    ] {
        assert!(run_dir.join("weights/gen-000001").join(f).is_file(), "{f}");
    }
    let resumed = resume(&run_dir);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let whole_dir = dir.join("whole/r");
    assert_eq!(metrics(&run_dir), metrics(&whole_dir));
    assert!(model(&run_dir) == model(&whole_dir), "weights differ");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_output_folder_that_cannot_be_written_fails_before_training() {
    let dir = temp_dir("resume-readonly");
    let data = dir.join("data");
    make_dataset(&data, 20, 16, 5);
    let cfg = config(&dir, false);
    // A path under a regular file can never be a folder, whoever runs the test.
    std::fs::write(dir.join("file"), "x").unwrap();
    let out = train(&cfg, &data, &dir.join("file/runs"), None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("file/runs") && err.contains("run folder"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // A read-only folder (when the user running the tests is bound by permissions).
    use std::os::unix::fs::PermissionsExt;
    let ro = dir.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), "x").is_ok() {
        eprintln!("skipping the read-only case: permissions do not bind this user (root)");
    } else {
        let out = train(&cfg, &data, &ro, None);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("run folder") && err.contains("ermission"),
            "{err}"
        );
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
