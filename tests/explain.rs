//! Grad-CAM against ground truth: a small CNN trained here to spot a bright square must put the
//! peak of its FAKE map on that square; and the `explain` files and command end to end.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use image::{Rgb, RgbImage};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::path::{Path, PathBuf};
use synthscan::data::{self, ImageSet, Normalization};
use synthscan::detector::{Detector, ModelMeta, default_device};
use synthscan::explain::{self, CamMethod, CamTarget, ExplainOptions};
use synthscan::model::{Activation, ArchConfig, CnnConfig, GlobalPool, StageConfig};

const SIZE: u32 = 32;
const SQUARE: u32 = 8;

/// A smooth two-colour gradient in a random direction; with `square`, a bright 8×8 square at a
/// random position, whose top-left corner is returned.
fn sample(rng: &mut StdRng, square: bool) -> (RgbImage, Option<(u32, u32)>) {
    let c0: [f32; 3] = [0, 1, 2].map(|_| rng.random_range(20.0..150.0));
    let c1: [f32; 3] = [0, 1, 2].map(|_| rng.random_range(20.0..150.0));
    let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (dx, dy) = (angle.cos(), angle.sin());
    let mut img = RgbImage::from_fn(SIZE, SIZE, |x, y| {
        let t = ((x as f32 - 15.5) * dx + (y as f32 - 15.5) * dy) / 45.0 + 0.5;
        Rgb([0, 1, 2].map(|c| (c0[c] + (c1[c] - c0[c]) * t).round() as u8))
    });
    if !square {
        return (img, None);
    }
    let (x0, y0) = (
        rng.random_range(0..=SIZE - SQUARE),
        rng.random_range(0..=SIZE - SQUARE),
    );
    let colour = Rgb([0, 1, 2].map(|_| rng.random_range(215..=255u8)));
    for y in y0..y0 + SQUARE {
        for x in x0..x0 + SQUARE {
            img.put_pixel(x, y, colour);
        }
    }
    (img, Some((x0, y0)))
}

/// `n` images alternating REAL / FAKE, with the FAKE squares' corners.
fn dataset(rng: &mut StdRng, n: usize) -> (ImageSet, Vec<Option<(u32, u32)>>) {
    let mut set = ImageSet {
        size: SIZE,
        ..Default::default()
    };
    let mut squares = Vec::with_capacity(n);
    for i in 0..n {
        let fake = i % 2 == 1;
        let (img, sq) = sample(rng, fake);
        set.pixels.extend_from_slice(img.as_raw());
        set.labels.push(fake as u8);
        set.paths.push(PathBuf::from(format!("generated-{i}.png")));
        squares.push(sq);
    }
    (set, squares)
}

fn arch() -> ArchConfig {
    ArchConfig::Cnn(CnnConfig {
        stem: 0,
        stem_stride: 1,
        stages: vec![
            StageConfig {
                channels: 8,
                convs: 1,
                pool: true,
            },
            StageConfig {
                channels: 16,
                convs: 1,
                pool: true,
            },
        ],
        kernel: 3,
        batch_norm: true,
        activation: Activation::Relu,
        global_pool: GlobalPool::Max,
        hidden: vec![],
        dropout: 0.0,
    })
}

fn meta(arch: ArchConfig) -> ModelMeta {
    ModelMeta::untrained(arch, SIZE, Normalization::unit())
}

/// Train the small CNN on freshly generated batches; returns the detector and the training
/// accuracy over the last 20 steps.
fn train_square_detector(steps: usize, batch: usize) -> (Detector, f64) {
    let device = default_device().autodiff();
    device.seed(2024);
    let mut rng = StdRng::seed_from_u64(99);
    let mut model = arch().init(SIZE as usize, &device);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let norm = Normalization::unit();
    let s = SIZE as usize;
    let (mut correct, mut seen) = (0usize, 0usize);
    for step in 0..steps {
        let (set, _) = dataset(&mut rng, batch);
        let idx: Vec<usize> = (0..batch).collect();
        let x = Tensor::<4>::from_data(
            TensorData::new(
                data::batch_floats(&set, &idx, &norm, None),
                [batch, 3, s, s],
            ),
            &device,
        );
        let labels: Vec<i64> = set.labels.iter().map(|&l| l as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [batch]), &device);
        let logits = model.forward(x);
        if step + 20 >= steps {
            let pred: Vec<i64> = logits
                .clone()
                .argmax(1)
                .into_data()
                .try_into_vec_as::<i64>()
                .unwrap();
            correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
            seen += batch;
        }
        let loss = loss_fn.forward(logits, y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    let det = Detector::new(meta(arch()), model.valid(), default_device());
    (det, correct as f64 / seen.max(1) as f64)
}

/// Share of maps whose peak, upsampled to 32×32, lies on the square (with a 2-pixel margin).
fn hit_rate(maps: &[explain::CamMap], squares: &[(u32, u32)]) -> f64 {
    let margin = 2i64;
    let hits = maps
        .iter()
        .zip(squares)
        .filter(|&(map, &(x0, y0))| {
            let up = explain::upsample(map, SIZE as usize, SIZE as usize);
            let i = explain::argmax(&up);
            let (x, y) = ((i % SIZE as usize) as i64, (i / SIZE as usize) as i64);
            let inside =
                |p: i64, lo: u32| p >= lo as i64 - margin && p < (lo + SQUARE) as i64 + margin;
            inside(x, x0) && inside(y, y0)
        })
        .count();
    hits as f64 / maps.len().max(1) as f64
}

#[test]
fn gradcam_peaks_fall_on_the_planted_square() {
    let t0 = std::time::Instant::now();
    let (det, train_acc) = train_square_detector(150, 32);
    eprintln!(
        "trained in {:.1}s, last-20-step train accuracy {train_acc:.3}",
        t0.elapsed().as_secs_f64()
    );
    assert!(train_acc >= 0.95, "train accuracy {train_acc}");

    let mut rng = StdRng::seed_from_u64(12345);
    let (held_out, squares) = dataset(&mut rng, 200);
    let scores = det.score_set(&held_out);
    let acc = scores
        .iter()
        .zip(&held_out.labels)
        .filter(|&(&p, &l)| (p >= 0.5) as u8 == l)
        .count() as f64
        / scores.len() as f64;
    eprintln!("held-out accuracy {acc:.3}");
    assert!(acc >= 0.9, "held-out accuracy {acc}");

    let fake: Vec<usize> = (0..held_out.len())
        .filter(|&i| held_out.labels[i] == data::FAKE)
        .collect();
    let fake_set = held_out.subset(&fake);
    let corners: Vec<(u32, u32)> = fake.iter().filter_map(|&i| squares[i]).collect();
    assert_eq!(corners.len(), 100);
    for layer in ["stage1", "stage2"] {
        for method in [CamMethod::GradCam, CamMethod::GradCamPlusPlus] {
            let cam = explain::Cam::new(&det, Some(layer), method).unwrap();
            assert_eq!(cam.layer_name(), layer);
            let maps = cam.maps(&fake_set, CamTarget::Fake).unwrap();
            assert_eq!(maps.len(), 100);
            let side = if layer == "stage1" { 16 } else { 8 };
            assert!(
                maps.iter()
                    .all(|m| (m.width, m.height) == (side, side) && m.target == data::FAKE)
            );
            let rate = hit_rate(&maps, &corners);
            eprintln!(
                "{layer} ({side}x{side}) {}: peak on the square for {:.0}% of held-out FAKE images",
                method.name(),
                rate * 100.0
            );
            if layer == "stage2" {
                assert!(rate >= 0.8, "{layer} {}: hit rate {rate}", method.name());
                // Control: against other images' squares the same maps rarely hit.
                let mut shifted = corners.clone();
                shifted.rotate_left(1);
                let chance = hit_rate(&maps, &shifted);
                eprintln!(
                    "  control (squares of other images): {:.0}%",
                    chance * 100.0
                );
                assert!(chance < 0.4, "control hit rate {chance}");
            }
        }
    }
    eprintln!("total {:.1}s", t0.elapsed().as_secs_f64());
}

fn untrained_detector() -> Detector {
    let device = default_device();
    device.seed(5);
    Detector::new(meta(arch()), arch().init(SIZE as usize, &device), device)
}

fn write_png(path: &Path, img: &RgbImage) {
    img.save(path).unwrap();
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synthscan-explain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn explain_paths_writes_files_at_the_original_size_and_names_bad_files() {
    let det = synthscan::ensemble::Ensemble::from(untrained_detector());
    let dir = temp_dir("paths");
    let mut rng = StdRng::seed_from_u64(3);
    let (small, _) = sample(&mut rng, true);
    let small = image::imageops::resize(&small, 40, 24, image::imageops::FilterType::Triangle);
    let big = RgbImage::from_fn(200, 150, |x, y| Rgb([x as u8, y as u8, 90]));
    write_png(&dir.join("small.png"), &small);
    write_png(&dir.join("big.png"), &big);
    std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
    let out = dir.join("out");
    let opts = ExplainOptions {
        out_dir: out.clone(),
        method: CamMethod::GradCamPlusPlus,
        ..Default::default()
    };
    let inputs = [
        dir.join("small.png"),
        dir.join("broken.png"),
        dir.join("big.png"),
    ];
    let results = explain::explain_paths(&det, &inputs, &opts).unwrap();
    assert_eq!(results.len(), 3);

    let small_ex = results[0].1.as_ref().unwrap();
    assert_eq!(
        (
            small_ex.map.width,
            small_ex.map.height,
            small_ex.map.layer.as_str()
        ),
        (8, 8, "stage2")
    );
    let overlay = image::open(&small_ex.files.overlay).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (40, 24));
    let large = image::open(small_ex.files.large.as_ref().unwrap()).unwrap();
    assert!(large.width().max(large.height()) >= 256);
    assert_eq!(large.width() * 24, large.height() * 40);
    let csv = std::fs::read_to_string(&small_ex.files.csv).unwrap();
    let rows: Vec<Vec<f32>> = csv
        .lines()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 8);
    assert!(
        rows.iter()
            .all(|r| r.len() == 8 && r.iter().all(|v| (0.0..=1.0).contains(v)))
    );

    let err = results[1].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("broken.png"), "{err}");

    let big_ex = results[2].1.as_ref().unwrap();
    assert_eq!(big_ex.files.overlay, out.join("big.cam.png"));
    assert_eq!(big_ex.files.large, None);
    let overlay = image::open(&big_ex.files.overlay).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (200, 150));

    // A layer that does not exist fails the whole call, naming it.
    let bad = ExplainOptions {
        layer: Some("stage9".into()),
        ..opts
    };
    let err = explain::explain_paths(&det, &inputs, &bad)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("stage9"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explain_command_lists_layers_and_exits_1_on_a_bad_file() {
    let dir = temp_dir("cli");
    let model = dir.join("m.synthscan");
    untrained_detector().save(&model).unwrap();
    let exe = env!("CARGO_BIN_EXE_synthscan");

    let out = std::process::Command::new(exe)
        .args(["explain", "--list-layers", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("stage1") && lines[0].ends_with("8x16x16"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("stage2") && lines[1].ends_with("16x8x8"),
        "{text}"
    );

    write_png(
        &dir.join("ok.png"),
        &RgbImage::from_pixel(20, 30, Rgb([10, 200, 30])),
    );
    std::fs::write(dir.join("bad.jpg"), b"").unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "explain",
            "--method",
            "gradcam++",
            "--target",
            "predicted",
            "--layer",
            "stage1",
            "--model",
        ])
        .arg(&model)
        .arg("--out")
        .arg(dir.join("maps"))
        .arg(dir.join("bad.jpg"))
        .arg(dir.join("ok.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("ok.png")
            && stdout.contains("p_fake=")
            && stdout.contains("layer=stage1")
            && stdout.contains("ok.cam.png"),
        "{stdout}"
    );
    assert!(stderr.contains("bad.jpg"), "{stderr}");
    for f in ["ok.cam.png", "ok.cam.large.png", "ok.cam.csv"] {
        assert!(dir.join("maps").join(f).is_file(), "{f} missing");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
