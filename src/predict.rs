//! Scoring files and folders with a [`Detector`]: what `predict` does.

use crate::data::{self, decode};
use crate::detector::{Decision, Detector};
use crate::ensemble::{self, Ensemble};
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

/// A file's input for each member with the decoded image's width and height, or why it has none.
type Prepared = Result<(Vec<Vec<u8>>, u32, u32)>;

/// Score every input with a model or an ensemble (the rule of
/// [`crate::eval::evaluate_ensemble`]): each file is decoded once and prepared the way of each
/// member (its input size, resize or crop); the answer is the members' mean `p_fake` decided by
/// [`Ensemble::decide_image`] (one member: its own rule), the model named `a + b`. Bad files get
/// an error entry and do not stop the others.
pub fn predict_ensemble(ensemble: &Ensemble, inputs: &[PathBuf]) -> Vec<Prediction> {
    let members: &[Detector] = ensemble;
    // Decoded at full size only long enough to note the size and prepare the members' inputs.
    let decoded: Vec<(PathBuf, Prepared)> = data::expand_inputs(inputs)
        .into_par_iter()
        .map(|item| match item {
            Ok(path) => {
                let r = decode::read_rgb(&path)
                    .map(|img| (ensemble.prepare(&img), img.width(), img.height()));
                (path, r)
            }
            Err((path, msg)) => (path.clone(), Err(Error::dataset(&path, msg))),
        })
        .collect();
    let ok = decoded.iter().filter_map(|(_, r)| r.as_ref().ok());
    let sets = ensemble::member_sets(members, ok.map(|(inputs, _, _)| inputs.as_slice()));
    let mut means = ensemble::mean_scores(members, &sets).into_iter();
    let name = ensemble.name();
    decoded
        .into_iter()
        .map(|(path, r)| match r {
            Ok((_, w, h)) => {
                let p = ensemble.combine(means.next().unwrap_or(f32::NAN));
                Prediction {
                    path,
                    decision: Some(ensemble.decide_image(p, w, h)),
                    model: Some(name.clone()),
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
