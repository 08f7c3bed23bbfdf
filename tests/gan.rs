//! `synthscan gan train|sample|detect` end to end, with tiny networks on generated images.

mod common;

use common::{run, stderr, stdout, temp_dir};
use image::{Rgb, RgbImage};
use std::path::Path;

/// `n` 32×32 images: a coloured disc on a coloured background, position and colours varying.
fn make_folder(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..n {
        let (cx, cy, r) = (8 + (i * 7) % 16, 8 + (i * 11) % 16, 5 + (i % 4) as i64);
        let fg = [(i * 40 % 255) as u8, 200, (255 - i * 30 % 255) as u8];
        let bg = [20, (i * 13 % 120) as u8, 60];
        let img = RgbImage::from_fn(32, 32, |x, y| {
            let (dx, dy) = (x as i64 - cx as i64, y as i64 - cy as i64);
            Rgb(if dx * dx + dy * dy <= r * r { fg } else { bg })
        });
        // Some in a sub-folder and as JPEG: the folder is searched recursively.
        let path = if i % 3 == 0 {
            dir.join("sub").join(format!("{i:03}.jpg"))
        } else {
            dir.join(format!("{i:03}.png"))
        };
        img.save(path).unwrap();
    }
}

const TINY: &str = "name: tiny\nlatent: 8\ng_width: 4\nd_width: 4\nepochs: 2\nbatch_size: 8\n\
checkpoints: [1]\nfid_count: 16\ngrid_count: 9\nloss: hinge\nlabel_smoothing: 0.1\n";

fn gif_frames(path: &Path) -> (usize, u32, u32) {
    synthscan::gan::gif::inspect(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn gan_train_writes_the_run_folder_then_resumes_and_samples_deterministically() {
    let tmp = temp_dir("gan-train");
    let data = tmp.join("images");
    make_folder(&data, 40);
    let cfg = tmp.join("gan.yaml");
    std::fs::write(&cfg, TINY).unwrap();
    let runs = tmp.join("runs");
    let o = run(&[
        "gan",
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        runs.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run_dir = runs.join("tiny");
    for f in [
        "config.yaml",
        "run.json",
        "losses.csv",
        "frechet.csv",
        "samples/epoch-0001.png",
        "samples/epoch-0002.png",
        "checkpoints/G-epoch-0001.gan",
        "checkpoints/D-epoch-0001.gan",
        "G.gan",
        "D.gan",
        "progress.gif",
        "losses.png",
        "frechet.png",
    ] {
        assert!(run_dir.join(f).is_file(), "missing {f}");
    }
    let losses = std::fs::read_to_string(run_dir.join("losses.csv")).unwrap();
    assert!(
        losses.starts_with("epoch,steps,d_loss,g_loss,d_real,d_fake,seconds,images_per_second\n")
    );
    assert_eq!(losses.lines().count(), 3, "{losses}");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["images"], 40);
    assert_eq!(info["finished"], true);
    // 9 images of 32 px in a 3×3 grid with 2-px gaps: 3·34 + 2 = 104.
    assert_eq!(gif_frames(&run_dir.join("progress.gif")), (2, 104, 104));

    let o = run(&[
        "gan",
        "train",
        "--resume",
        run_dir.to_str().unwrap(),
        "--epochs",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming after epoch 2"),
        "{}",
        stderr(&o)
    );
    let losses = std::fs::read_to_string(run_dir.join("losses.csv")).unwrap();
    assert_eq!(losses.lines().count(), 4, "{losses}");
    assert_eq!(gif_frames(&run_dir.join("progress.gif")).0, 3);

    let g = run_dir.join("G.gan");
    let sample = |seed: &str, out: &str| {
        let o = run(&[
            "gan",
            "sample",
            "--model",
            g.to_str().unwrap(),
            "--count",
            "5",
            "--seed",
            seed,
            "--out",
            tmp.join(out).to_str().unwrap(),
            "--grid",
            tmp.join(format!("{out}.png")).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("5 images"), "{}", stdout(&o));
        std::fs::read(tmp.join(out).join("gan-00004.png")).unwrap()
    };
    let (a, b, c) = (sample("3", "a"), sample("3", "b"), sample("4", "c"));
    assert_eq!(a, b, "same seed, same image");
    assert_ne!(a, c, "another seed, another image");
    let grid = image::open(tmp.join("a.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (3 * 34 + 2, 2 * 34 + 2));
    let o = run(&[
        "gan",
        "sample",
        "--model",
        run_dir.join("D.gan").to_str().unwrap(),
        "--out",
        tmp.join("x").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("D.gan"), "{}", stderr(&o));
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn gan_detect_trains_a_detector_and_scores_bundled_models() {
    let tmp = temp_dir("gan-detect");
    let data = tmp.join("images");
    make_folder(&data, 24);
    let cfg = tmp.join("gan.yaml");
    std::fs::write(&cfg, TINY.replace("epochs: 2", "epochs: 1")).unwrap();
    let runs = tmp.join("runs");
    let o = run(&[
        "gan",
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        runs.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let det_cfg = tmp.join("det.yaml");
    std::fs::write(
        &det_cfg,
        "name: d\nmodel:\n  preset: cifake-paper\nepochs: 1\nbatch_size: 8\n",
    )
    .unwrap();
    let out = tmp.join("detect");
    let generator = runs.join("tiny/G.gan");
    let detect = |extra: &[&str]| {
        let mut args = vec![
            "gan",
            "detect",
            "--real",
            data.to_str().unwrap(),
            "--generator",
            generator.to_str().unwrap(),
            "--count",
            "20",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let det_cfg = det_cfg.to_str().unwrap();
    let o = detect(&[
        "--config", det_cfg, "--models", "models", "--json", "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["test_count"], serde_json::json!([5, 5]));
    assert_eq!(v["train_count"], serde_json::json!([15, 15]));
    assert_eq!(v["trained"]["metrics"]["count"], 10);
    let names: Vec<&str> = v["bundled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "embedded default");
    assert!(names.iter().any(|n| n.contains("fullres-gpu")), "{names:?}");
    assert!(
        !names.iter().any(|n| n.ends_with("default.synthscan")),
        "the embedded copy is scored once: {names:?}"
    );
    assert_eq!(
        std::fs::read_dir(out.join("data/test/FAKE"))
            .unwrap()
            .count(),
        5
    );
    // A second run into the same folder refuses to mix datasets.
    let o = detect(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn committed_gan_docs_decode_with_the_expected_frames_and_size() {
    // One GIF frame per logged epoch, each the size of the final grid (64 samples of 32 px in an
    // 8×8 grid with 2-px gaps: 8·34 + 2 = 274).
    let (frames, w, h) = gif_frames(Path::new("docs/gan/progress.gif"));
    let grid = image::open("docs/gan/grid.png").unwrap();
    assert_eq!((grid.width(), grid.height()), (274, 274));
    assert_eq!((w, h), (274, 274));
    let rows = std::fs::read_to_string("docs/gan/frechet.csv").unwrap();
    assert!(frames >= 5, "{frames} frames");
    assert_eq!(
        frames,
        rows.lines().count() - 1,
        "a frame per frechet.csv row"
    );
}
