//! Scoring files and folders with a [`Detector`]: what `predict` does.

use crate::data::{self, decode};
use crate::detector::{Decision, Detector};
use crate::ensemble::Ensemble;
use crate::error::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;

/// One line of `predict --json`: the decision (`p_fake` calibrated, `label` REAL, FAKE or
/// UNCERTAIN, `threshold`, `reason` when uncertain), the model and the image's size; or the
/// error that kept the file from being scored.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Prediction {
    pub path: PathBuf,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Prediction {
    pub fn p_fake(&self) -> Option<f32> {
        self.decision.as_ref().map(|d| d.p_fake)
    }

    pub fn label(&self) -> Option<&str> {
        self.decision.as_ref().map(|d| d.label.as_str())
    }
}

/// A file's model input with the decoded image's width and height, or why it has none.
type Prepared = Result<(Vec<u8>, u32, u32)>;

/// Score every input; bad files get an error entry and do not stop the others.
pub fn predict_paths(detector: &Detector, inputs: &[PathBuf]) -> Vec<Prediction> {
    // Decoded at full size only long enough to note the size and prepare the model's input.
    let decoded: Vec<(PathBuf, Prepared)> = data::expand_inputs(inputs)
        .into_par_iter()
        .map(|item| match item {
            Ok(path) => {
                let r = decode::read_rgb(&path)
                    .map(|img| (detector.prepare(&img), img.width(), img.height()));
                (path, r)
            }
            Err((path, msg)) => (path.clone(), Err(Error::dataset(&path, msg))),
        })
        .collect();
    let mut set = detector.image_set(&[]);
    for (_, r) in &decoded {
        if let Ok((px, _, _)) = r {
            set.pixels.extend_from_slice(px);
            set.labels.push(0);
        }
    }
    let mut scores = detector.score_set(&set).into_iter();
    decoded
        .into_iter()
        .map(|(path, r)| match r {
            Ok((_, w, h)) => {
                let p = scores.next().unwrap_or(f32::NAN);
                Prediction {
                    path,
                    decision: Some(detector.decide_image(p, w, h)),
                    model: Some(detector.name.clone()),
                    width: Some(w),
                    height: Some(h),
                    error: None,
                }
            }
            Err(e) => Prediction {
                path,
                decision: None,
                model: None,
                width: None,
                height: None,
                error: Some(e.to_string()),
            },
        })
        .collect()
}

/// Score every input with a model or an ensemble (the rule of
/// [`crate::eval::evaluate_ensemble`]): each member reads and scores the file its own way; the
/// answer is the mean `p_fake` decided by [`Ensemble::decide_image`], the model named `a + b`.
/// A file any member could not score gets that member's error.
pub fn predict_ensemble(ensemble: &Ensemble, inputs: &[PathBuf]) -> Vec<Prediction> {
    let mut runs = ensemble.iter().map(|d| predict_paths(d, inputs));
    let Some(first) = runs.next() else {
        return Vec::new();
    };
    let others: Vec<Vec<Prediction>> = runs.collect();
    if others.is_empty() {
        return first;
    }
    let name = ensemble.name();
    let n = ensemble.len() as f32;
    first
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let rest = others.iter().filter_map(|run| run.get(i));
            if p.error.is_some() {
                return p;
            }
            if let Some(q) = rest.clone().find(|q| q.error.is_some()) {
                return q.clone();
            }
            let sum = rest.fold(p.p_fake().unwrap_or(f32::NAN), |s, q| {
                s + q.p_fake().unwrap_or(f32::NAN)
            });
            let (w, h) = (p.width.unwrap_or(0), p.height.unwrap_or(0));
            Prediction {
                decision: Some(ensemble.decide_image(ensemble.combine(sum / n), w, h)),
                model: Some(name.clone()),
                ..p
            }
        })
        .collect()
}
