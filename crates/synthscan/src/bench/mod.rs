//! `synthscan bench`: images/second of each stage, in one process, with the ratios that matter —
//! the loader must outrun the model it feeds — and, with [`reference`], the same network timed
//! in PyTorch and ONNX Runtime in interleaved rounds.

pub mod reference;

use crate::config::{OptimizerConfig, OptimizerKind};
use crate::data::{self, AugmentConfig, ImageSet, Normalization};
use crate::detector::{Detector, ModelMeta, default_device};
use crate::error::Result;
use crate::model::ArchConfig;
use crate::train::optim::build_optimizer;
use crate::train::{BatchSpec, train_step};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use std::path::PathBuf;
use std::time::Instant;

pub struct BenchOptions {
    pub data: Option<PathBuf>,
    /// What the model is called in the output (a preset or experiment name).
    pub name: String,
    pub arch: ArchConfig,
    /// Side of the square input the network is timed at (a model file's own input size).
    pub input_size: u32,
    pub batch_size: usize,
    pub steps: usize,
    /// The optimiser of the timed training steps.
    pub optimizer: OptimizerConfig,
}

/// The optimiser `bench` times when no experiment names one: the default experiment's SGD with
/// Nesterov momentum 0.9 and weight decay 5e-4.
pub fn default_optimizer() -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::Sgd,
        lr: 0.01,
        weight_decay: 5e-4,
        nesterov: true,
        ..Default::default()
    }
}

/// Synthetic `size`×`size` images, encoded as JPEG, for decode timing without a dataset.
fn synthetic_jpegs(n: usize, size: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let img = image::RgbImage::from_fn(size, size, |x, y| {
                image::Rgb([(x * 8 % 256) as u8, (y * 8 % 256) as u8, (i % 256) as u8])
            });
            let mut buf = Vec::new();
            let _ = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90).encode(
                img.as_raw(),
                size,
                size,
                image::ExtendedColorType::Rgb8,
            );
            buf
        })
        .collect()
}

fn rate(n: usize, secs: f64) -> f64 {
    n as f64 / secs.max(1e-9)
}

/// What `synthscan bench` measured, in images per second.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub model: String,
    pub batch_size: usize,
    pub threads: usize,
    pub device: String,
    pub params: usize,
    pub decode: f64,
    pub augment_batch: f64,
    pub train_step: f64,
    pub inference: f64,
}

impl BenchReport {
    /// Above 1: the model, not the loader, is the bottleneck of training.
    pub fn loader_over_train(&self) -> f64 {
        self.augment_batch / self.train_step
    }

    pub fn decode_over_inference(&self) -> f64 {
        self.decode / self.inference
    }
}

/// Time each stage once, in order: decoding, augmentation + batching, training steps, inference.
pub fn run(opts: &BenchOptions) -> Result<BenchReport> {
    let (set, decode) = decode_stage(opts.data.as_deref(), opts.input_size)?;
    let norm = Normalization::unit();
    let augment_batch = batch_stage(&set, &norm, opts.batch_size);
    let (model, train_step) = train_stage(opts, &set, &norm, opts.batch_size, opts.steps);
    let params = model.num_params();
    let meta = ModelMeta::untrained(opts.arch.clone(), opts.input_size, norm);
    let det = Detector::new(meta, model.valid(), default_device());
    let _ = det.score_set(&set.subset(&(0..256.min(set.len())).collect::<Vec<_>>()));
    let t0 = Instant::now();
    let scores = det.score_set(&set);
    let inference = rate(scores.len(), t0.elapsed().as_secs_f64());
    Ok(BenchReport {
        model: opts.name.clone(),
        batch_size: opts.batch_size,
        threads: rayon::current_num_threads(),
        device: format!("{:?}", default_device()),
        params,
        decode,
        augment_batch,
        train_step,
        inference,
    })
}

/// Decode a sample of `data` (or generated JPEGs) at `size`×`size`: the set and images/second.
fn decode_stage(data: Option<&std::path::Path>, size: u32) -> Result<(ImageSet, f64)> {
    if let Some(dir) = data {
        let root = data::resolve_class_root(dir, data::Part::Train)?;
        let items = data::discover(&root)?;
        let items: Vec<_> = items.into_iter().step_by(8).take(8000).collect();
        let t0 = Instant::now();
        let (set, _) = data::load_labelled(&items, size, false)?;
        let r = rate(set.len(), t0.elapsed().as_secs_f64());
        return Ok((set, r));
    }
    use rayon::prelude::*;
    // 4,000 images at 32×32, as many pixels (at least 64 images) at larger sizes.
    let n = (4000 * 32 * 32 / (size as usize * size as usize)).max(64);
    let jpegs = synthetic_jpegs(n, size);
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
        size,
        pixels: pixels.concat(),
        labels: (0..n).map(|i| (i % 2) as u8).collect(),
        paths: vec![],
    };
    Ok((set, r))
}

/// Batching with augmentation (flip, crop, cutout): images/second.
fn batch_stage(set: &ImageSet, norm: &Normalization, batch_size: usize) -> f64 {
    let aug = AugmentConfig {
        cutout: 8,
        ..Default::default()
    };
    let idx: Vec<usize> = (0..set.len()).collect();
    let t0 = Instant::now();
    let mut n = 0;
    for (k, chunk) in idx.chunks(batch_size).enumerate() {
        n += data::batch_floats(set, chunk, norm, Some((&aug, k as u64))).len() / set.image_len();
    }
    rate(n, t0.elapsed().as_secs_f64())
}

/// Training steps (forward, loss, backward, optimiser) with the training loop's own step at
/// `batch` images: the trained model and images/second over `steps` timed steps.
fn train_stage(
    opts: &BenchOptions,
    set: &ImageSet,
    norm: &Normalization,
    batch: usize,
    steps: usize,
) -> (crate::model::Network, f64) {
    let device = default_device().autodiff();
    device.seed(0);
    let mut model = opts.arch.init(set.size as usize, &device);
    let mut optim = build_optimizer(&opts.optimizer, &model);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let b = batch.min(set.len());
    let step =
        |model: crate::model::Network, optim: &mut burn::optim::ModuleOptimizer, k: usize| {
            let chunk: Vec<usize> = (0..b).map(|i| (i + k * b) % set.len()).collect();
            let batch = BatchSpec {
                set,
                indices: &chunk,
                normalization: norm,
                augment: None,
                parts: crate::train::step::step_parts(&device, chunk.len()),
            };
            train_step(model, optim, &loss_fn, &batch, opts.optimizer.lr, &device).model
        };
    for k in 0..2 {
        model = step(model, &mut optim, k);
    }
    let t0 = Instant::now();
    for k in 0..steps {
        model = step(model, &mut optim, k);
    }
    (model, rate(steps * b, t0.elapsed().as_secs_f64()))
}
