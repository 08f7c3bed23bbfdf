//! Helpers shared by the integration tests: tiny generated datasets and running the CLI.
#![allow(dead_code)]

use image::{Rgb, RgbImage};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_synthscan"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run synthscan")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh, empty temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synthscan-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// REAL: smooth colour gradients. FAKE: high-frequency noise over a gradient.
pub fn make_image(fake: bool, size: u32, rng: &mut StdRng) -> RgbImage {
    let (a, b, c) = (
        rng.random_range(0..200u32),
        rng.random_range(0..200u32),
        rng.random_range(0..200u32),
    );
    RgbImage::from_fn(size, size, |x, y| {
        let base = [
            a + x * 40 / size,
            b + y * 40 / size,
            c + (x + y) * 20 / size,
        ];
        let n = if fake { rng.random_range(0..90u32) } else { 0 };
        Rgb(base.map(|v| (v + n).min(255) as u8))
    })
}

/// A dataset folder `dir/{REAL,FAKE}` with `per_class` images each, mixing PNG and JPEG.
pub fn make_dataset(dir: &Path, per_class: usize, size: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for (class, fake) in [("REAL", false), ("FAKE", true)] {
        let d = dir.join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..per_class {
            let img = make_image(fake, size, &mut rng);
            let ext = if i % 2 == 0 { "png" } else { "bmp" };
            img.save(d.join(format!("{i:04}.{ext}"))).unwrap();
        }
    }
}

/// A train/ + test/ parent, CIFAKE-style.
pub fn make_split_dataset(dir: &Path, train: usize, test: usize, size: u32) {
    make_dataset(&dir.join("train"), train, size, 1);
    make_dataset(&dir.join("test"), test, size, 2);
}

/// A small, quick experiment on generated data.
pub fn tiny_config(dir: &Path, name: &str, epochs: usize) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "name: {name}\nseed: 7\nmodel:\n  arch: cnn\n  stem: 0\n  stages: [{{channels: 8}}, {{channels: 16}}]\n  batch_norm: true\n  activation: relu\n  global_pool: avg\n\
             input_size: 16\nepochs: {epochs}\nbatch_size: 32\noptimizer: {{kind: adam, lr: 0.01}}\ndata: {{val_fraction: 0.2}}\n"
        ),
    )
    .unwrap();
    path
}

/// `../shared/data/cifake` extracted once into `target/`, or None (with the reason printed).
pub fn cifake() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/data/cifake");
    if !shared.join("cifake-test.tar.gz").exists() {
        eprintln!("skipping: ../shared/data/cifake is absent");
        return None;
    }
    let dest = root.join("target/cifake");
    for part in ["train", "test"] {
        if !dest.join(part).join("FAKE").exists() {
            std::fs::create_dir_all(&dest).ok()?;
            let ok = Command::new("tar")
                .arg("-xzf")
                .arg(shared.join(format!("cifake-{part}.tar.gz")))
                .arg("-C")
                .arg(&dest)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                eprintln!("skipping: could not extract cifake-{part}.tar.gz");
                return None;
            }
        }
    }
    Some(dest)
}
