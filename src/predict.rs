//! Scoring files and folders with a [`Detector`]: `predict` and `evaluate` both go through here.

use crate::data::{self, Part};
use crate::detector::Detector;
use crate::error::{Error, Result};
use crate::eval::Metrics;
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One line of `predict --json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Prediction {
    pub path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_fake: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Files named directly are always tried; folders are searched recursively for image files.
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<std::result::Result<PathBuf, (PathBuf, String)>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            match data::list_images(input) {
                Ok(files) if files.is_empty() => {
                    out.push(Err((input.clone(), "folder holds no image files".into())))
                }
                Ok(files) => out.extend(files.into_iter().map(Ok)),
                Err(e) => out.push(Err((input.clone(), e.to_string()))),
            }
        } else if input.exists() {
            out.push(Ok(input.clone()));
        } else {
            out.push(Err((input.clone(), "no such file or folder".into())));
        }
    }
    out
}

/// Score every input; bad files get an error entry and do not stop the others.
pub fn predict_paths(detector: &Detector, inputs: &[PathBuf]) -> Vec<Prediction> {
    let size = detector.meta.input_size;
    let decoded: Vec<(PathBuf, Result<Vec<u8>>)> = expand_inputs(inputs)
        .into_par_iter()
        .map(|item| match item {
            Ok(path) => {
                let r = detector.load_input(&path);
                (path, r)
            }
            Err((path, msg)) => (path.clone(), Err(Error::dataset(&path, msg))),
        })
        .collect();
    let mut set = data::ImageSet {
        size,
        ..Default::default()
    };
    for (_, r) in &decoded {
        if let Ok(px) = r {
            set.pixels.extend_from_slice(px);
            set.labels.push(0);
        }
    }
    let mut scores = detector.score_set(&set).into_iter();
    decoded
        .into_iter()
        .map(|(path, r)| match r {
            Ok(_) => {
                let p = scores.next().unwrap_or(f32::NAN);
                Prediction {
                    path,
                    p_fake: Some(p),
                    label: Some(detector.label(p).to_string()),
                    error: None,
                }
            }
            Err(e) => Prediction {
                path,
                p_fake: None,
                label: None,
                error: Some(e.to_string()),
            },
        })
        .collect()
}

/// Result of evaluating a labelled folder.
pub struct Evaluation {
    pub metrics: Metrics,
    pub scores: Vec<f32>,
    pub labels: Vec<u8>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Evaluate on a labelled folder (`REAL/` + `FAKE/`, or the `test/` part of a parent).
/// `images_per_second` covers decoding, resizing and inference.
pub fn evaluate_folder(detector: &Detector, dir: &Path, strict: bool) -> Result<Evaluation> {
    let root = data::resolve_class_root(dir, Part::Test)?;
    let t0 = Instant::now();
    let (set, report) = data::load_labelled_with(
        &data::discover(&root)?,
        detector.meta.input_size,
        strict,
        &|path| detector.load_input(path),
    )?;
    let scores = detector.score_set(&set);
    let secs = t0.elapsed().as_secs_f64();
    let mut metrics = Metrics::compute(&scores, &set.labels, detector.meta.threshold);
    metrics.images_per_second = set.len() as f64 / secs.max(1e-9);
    Ok(Evaluation {
        metrics,
        scores,
        labels: set.labels,
        skipped: report.skipped,
    })
}
