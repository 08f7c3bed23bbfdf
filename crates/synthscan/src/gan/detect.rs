//! `gan detect`: can a detector tell real images from this generator's fakes, and do the
//! bundled detectors (trained on Stable Diffusion fakes) catch them?
//!
//! Builds `OUT/data/{train,test}/{REAL,FAKE}` (REAL: a seeded choice of `--real` images, resized
//! to the generator's size; FAKE: as many generated images), trains a detector on it through
//! [`crate::train::train`], and scores `OUT/data/test` with each bundled model.

use super::model::load_generator;
use super::sample;
use crate::config::TrainConfig;
use crate::data::ImageSet;
use crate::detector::{Detector, default_device};
use crate::error::{Error, Result};
use crate::eval::Metrics;
use crate::run::RunObserver;
use std::path::{Path, PathBuf};

/// The detector trained when no `--config` is given: the fast preset, 4 epochs.
pub const DEFAULT_DETECTOR_YAML: &str =
    "name: gan-detect\nmodel:\n  preset: fast\nepochs: 4\nbatch_size: 128\n";

#[derive(Clone, Debug)]
pub struct DetectOptions {
    pub real: PathBuf,
    pub generator: PathBuf,
    /// Images per class (REAL and FAKE each).
    pub count: usize,
    /// Folder for the dataset and the detector's run.
    pub out: PathBuf,
    /// Detector experiment file (default: [`DEFAULT_DETECTOR_YAML`]).
    pub config: Option<PathBuf>,
    /// Model files to score the fakes with, besides the embedded default.
    pub models: Vec<PathBuf>,
    /// Share of each class kept as the test split.
    pub test_fraction: f64,
    /// Write both classes as JPEG at this quality (so file format cannot tell them apart);
    /// PNG when `None`.
    pub jpeg_quality: Option<u8>,
    pub seed: u64,
}

/// How one model did on the REAL-vs-fakes test split.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelScore {
    pub name: String,
    pub metrics: Metrics,
    /// Share of the fakes the model calls FAKE (recall on FAKE).
    pub fakes_caught: f64,
    /// Share of the real images the model calls REAL.
    pub real_kept: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DetectReport {
    pub dataset: PathBuf,
    pub run_dir: PathBuf,
    pub model_path: PathBuf,
    pub train_count: [usize; 2],
    pub test_count: [usize; 2],
    /// The detector trained on REAL vs these fakes, on the test split.
    pub trained: ModelScore,
    /// Each bundled model on the same test split.
    pub bundled: Vec<ModelScore>,
}

fn score_of(name: String, m: Metrics) -> ModelScore {
    let c = &m.confusion;
    ModelScore {
        name,
        fakes_caught: c.tp as f64 / (c.tp + c.fn_).max(1) as f64,
        real_kept: c.tn as f64 / (c.tn + c.fp).max(1) as f64,
        metrics: m,
    }
}

fn write_image(set: &ImageSet, i: usize, path: &Path, jpeg: Option<u8>) -> Result<()> {
    let img = sample::image_at(set, i);
    match jpeg {
        None => sample::save_png(&img, &path.with_extension("png")),
        Some(q) => {
            let p = path.with_extension("jpg");
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, q)
                .encode_image(&img)
                .map_err(|e| Error::output(&p, e))?;
            crate::error::write_file(&p, bytes)
        }
    }
}

/// Write `set` split into `root/{train,test}/CLASS/`; returns the (train, test) counts.
fn write_split(
    set: &ImageSet,
    root: &Path,
    class: &str,
    n_test: usize,
    jpeg: Option<u8>,
) -> Result<(usize, usize)> {
    for i in 0..set.len() {
        let part = if i < n_test { "test" } else { "train" };
        let dir = root.join(part).join(class);
        write_image(
            set,
            i,
            &dir.join(format!("{}-{i:05}", class.to_lowercase())),
            jpeg,
        )?;
    }
    Ok((set.len() - n_test.min(set.len()), n_test.min(set.len())))
}

fn detector_config(path: Option<&Path>, seed: u64) -> Result<TrainConfig> {
    match path {
        Some(p) => crate::config::load(p),
        None => {
            let mut cfg: TrainConfig = yaml_serde::from_str(DEFAULT_DETECTOR_YAML)
                .map_err(|e| Error::Invalid(format!("built-in detector config: {e}")))?;
            cfg.seed = seed;
            Ok(cfg)
        }
    }
}

/// Build the dataset, train a detector (its progress told to `observer`), score the test split
/// with every bundled model.
pub fn detect(opts: &DetectOptions, observer: &mut dyn RunObserver) -> Result<DetectReport> {
    if opts.count < 4 {
        return Err(Error::Invalid(format!(
            "--count {}: need at least 4 images per class",
            opts.count
        )));
    }
    if !(0.05..=0.5).contains(&opts.test_fraction) {
        return Err(Error::Invalid(format!(
            "test fraction {}: must be in [0.05, 0.5]",
            opts.test_fraction
        )));
    }
    let device = default_device();
    let (meta, g) = load_generator(&opts.generator, &device)?;
    let size = meta.spec.image_size;
    let (real, _) = super::images::load_images(&opts.real, size, Some(opts.count), opts.seed)?;
    let n = real.len().min(opts.count);
    let z = sample::noise(opts.seed ^ 0xDE7EC7, n, meta.spec.latent);
    let fake = sample::generate(&g, &z, size, &device);
    let data_dir = opts.out.join("data");
    if data_dir.exists() {
        return Err(Error::output(
            &data_dir,
            "already exists; pick a fresh --out folder",
        ));
    }
    let n_test = ((n as f64) * opts.test_fraction).round().max(1.0) as usize;
    let (r_train, r_test) = write_split(&real, &data_dir, "REAL", n_test, opts.jpeg_quality)?;
    let (f_train, f_test) = write_split(&fake, &data_dir, "FAKE", n_test, opts.jpeg_quality)?;

    let cfg = detector_config(opts.config.as_deref(), opts.seed)?;
    let outcome = crate::train::train(
        &cfg,
        &crate::train::TrainOptions {
            data: Some(data_dir.clone()),
            out: opts.out.join("runs"),
            resume: None,
        },
        observer,
    )?;
    let test_dir = data_dir.join("test");
    let own = Detector::load(&outcome.model_path)?;
    let trained = score_of(
        format!(
            "trained on REAL vs these fakes ({})",
            outcome.model_path.display()
        ),
        crate::eval::evaluate_ensemble(&own.into(), &test_dir, false)?.metrics,
    );
    let mut bundled = vec![score_of(
        "embedded default".into(),
        crate::eval::evaluate_ensemble(&Detector::embedded()?.into(), &test_dir, false)?.metrics,
    )];
    for path in &opts.models {
        let det = Detector::load(path)?;
        let m = crate::eval::evaluate_ensemble(&det.into(), &test_dir, false)?.metrics;
        bundled.push(score_of(path.display().to_string(), m));
    }
    Ok(DetectReport {
        dataset: data_dir,
        run_dir: outcome.run_dir,
        model_path: outcome.model_path,
        train_count: [r_train, f_train],
        test_count: [r_test, f_test],
        trained,
        bundled,
    })
}

/// Model files in `dir` (`*.synthscan`), sorted, leaving out copies of the embedded default
/// (same metadata, provenance included, and parameter count), which is scored as
/// "embedded default" already.
pub fn bundled_models(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let embedded = Detector::embedded()
        .ok()
        .map(|d| (d.meta.clone(), d.num_params()));
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "synthscan"))
        .filter(|p| {
            let this = Detector::load(p)
                .ok()
                .map(|d| (d.meta.clone(), d.num_params()));
            this.is_none() || this != embedded
        })
        .collect();
    out.sort();
    out
}
