//! `synthscan bench`: images/second of each stage, in one process, with the ratios that matter —
//! the loader must outrun the model it feeds.

use crate::data::{self, AugmentConfig, ImageSet, Normalization};
use crate::detector::{Detector, ModelMeta, default_device};
use crate::error::Result;
use crate::model::ArchConfig;
use crate::train::{BatchSpec, train_step};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::AdamConfig;
use std::path::PathBuf;
use std::time::Instant;

pub struct BenchOptions {
    pub data: Option<PathBuf>,
    /// What the model is called in the output (a preset or experiment name).
    pub name: String,
    pub arch: ArchConfig,
    pub batch_size: usize,
    pub steps: usize,
}

/// Synthetic 32×32 images, encoded as JPEG, for decode timing without a dataset.
fn synthetic_jpegs(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                image::Rgb([(x * 8) as u8, (y * 8) as u8, (i % 256) as u8])
            });
            let mut buf = Vec::new();
            let _ = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90).encode(
                img.as_raw(),
                32,
                32,
                image::ExtendedColorType::Rgb8,
            );
            buf
        })
        .collect()
}

fn rate(n: usize, secs: f64) -> f64 {
    n as f64 / secs.max(1e-9)
}

pub fn run(opts: &BenchOptions) -> Result<()> {
    let threads = rayon::current_num_threads();
    println!(
        "synthscan bench: model {}, batch {}, {threads} threads, device {:?}",
        opts.name,
        opts.batch_size,
        default_device()
    );

    // 1. Decoding.
    let (set, decode_rate) = match &opts.data {
        Some(dir) => {
            let root = data::resolve_class_root(dir, data::Part::Train)?;
            let items = data::discover(&root)?;
            let items: Vec<_> = items.into_iter().step_by(8).take(8000).collect();
            let t0 = Instant::now();
            let (set, _) = data::load_labelled(&items, 32, false)?;
            let r = rate(set.len(), t0.elapsed().as_secs_f64());
            (set, r)
        }
        None => {
            use rayon::prelude::*;
            let jpegs = synthetic_jpegs(4000);
            let t0 = Instant::now();
            let pixels: Vec<Vec<u8>> = jpegs
                .par_iter()
                .map(|b| {
                    data::decode::decode_rgb(b, std::path::Path::new("synthetic"))
                        .map(|i| i.into_raw())
                        .unwrap_or_default()
                })
                .collect();
            let r = rate(pixels.len(), t0.elapsed().as_secs_f64());
            let set = ImageSet {
                size: 32,
                pixels: pixels.concat(),
                labels: (0..4000).map(|i| (i % 2) as u8).collect(),
                paths: vec![],
            };
            (set, r)
        }
    };
    println!("decode + resize           {decode_rate:>10.0} img/s");

    // 2. Batching with augmentation (flip, crop, cutout).
    let aug = AugmentConfig {
        cutout: 8,
        ..Default::default()
    };
    let norm = Normalization::unit();
    let idx: Vec<usize> = (0..set.len()).collect();
    let t0 = Instant::now();
    let mut n = 0;
    for (k, chunk) in idx.chunks(opts.batch_size).enumerate() {
        n += data::batch_floats(&set, chunk, &norm, Some((&aug, k as u64))).len() / set.image_len();
    }
    let batch_rate = rate(n, t0.elapsed().as_secs_f64());
    println!("augment + batch           {batch_rate:>10.0} img/s");

    // 3. Training steps (forward, loss, backward, Adam).
    let arch = opts.arch.clone();
    let device = default_device().autodiff();
    device.seed(0);
    let mut model = arch.init(32, &device);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let b = opts.batch_size.min(set.len());
    // The same data-parallel step the training loop uses.
    let step =
        |model: crate::model::Network, optim: &mut burn::optim::ModuleOptimizer, k: usize| {
            let chunk: Vec<usize> = (0..b).map(|i| (i + k * b) % set.len()).collect();
            let batch = BatchSpec {
                set: &set,
                indices: &chunk,
                normalization: &norm,
                augment: None,
            };
            train_step(model, optim, &loss_fn, &batch, 1e-3, &device).model
        };
    for k in 0..2 {
        model = step(model, &mut optim, k);
    }
    let t0 = Instant::now();
    for k in 0..opts.steps {
        model = step(model, &mut optim, k);
    }
    let train_rate = rate(opts.steps * b, t0.elapsed().as_secs_f64());
    println!(
        "train step ({})      {train_rate:>10.0} img/s  ({} params)",
        opts.name,
        model.num_params()
    );

    // 4. Inference.
    let meta = ModelMeta::untrained(arch, 32, norm);
    let det = Detector::new(meta, model.valid(), default_device());
    let _ = det.score_set(&set.subset(&(0..256.min(set.len())).collect::<Vec<_>>()));
    let t0 = Instant::now();
    let scores = det.score_set(&set);
    let infer_rate = rate(scores.len(), t0.elapsed().as_secs_f64());
    println!("inference                 {infer_rate:>10.0} img/s");

    println!(
        "ratio loader / train step {:>10.1}x  (above 1: the model, not the loader, is the bottleneck)",
        batch_rate / train_rate
    );
    println!(
        "ratio decode / inference  {:>10.1}x",
        decode_rate / infer_rate
    );
    Ok(())
}
