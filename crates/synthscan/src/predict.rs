//! Scoring files and folders: what `predict` does, through [`Ensemble::score`].

use crate::data::{self, decode};
use crate::decision::Decision;
use crate::ensemble::{Ensemble, Prepared};
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

/// Score every input with a model or an ensemble: each file is decoded once, prepared the way
/// of each member ([`Ensemble::prepare`]) and scored through [`Ensemble::score`] (the members'
/// mean `p_fake`, decided by the ensemble's rule; one member: its own), the model named
/// `a + b`. Bad files get an error entry and do not stop the others.
pub fn predict_ensemble(ensemble: &Ensemble, inputs: &[PathBuf]) -> Vec<Prediction> {
    // Decoded at full size only long enough to note the size and prepare the members' inputs.
    let decoded: Vec<(PathBuf, Result<Prepared>)> = data::expand_inputs(inputs)
        .into_par_iter()
        .map(|item| match item {
            Ok(path) => {
                let r = decode::read_rgb(&path).map(|img| ensemble.prepare(&img));
                (path, r)
            }
            Err((path, msg)) => (path.clone(), Err(Error::dataset(&path, msg))),
        })
        .collect();
    let mut batch = ensemble.batch();
    let mut outcomes = Vec::with_capacity(decoded.len());
    for (path, r) in decoded {
        outcomes.push(match r {
            Ok(p) => {
                let size = (p.width, p.height);
                batch.push(p);
                (path, Ok(size))
            }
            Err(e) => (path, Err(e)),
        });
    }
    let mut decisions = ensemble.score(&batch).into_iter();
    outcomes
        .into_iter()
        .map(|(path, r)| {
            let scored = r.and_then(|(w, h)| {
                let d = decisions.next();
                d.map(|d| (d, w, h))
                    .ok_or_else(|| Error::Model(format!("{}: no score was produced", path.display())))
            });
            match scored {
                Ok((decision, w, h)) => Prediction {
                    path,
                    model: Some(decision.model.clone()),
                    decision: Some(decision),
                    width: Some(w),
                    height: Some(h),
                    error: None,
                },
                Err(e) => Prediction {
                    path,
                    decision: None,
                    model: None,
                    width: None,
                    height: None,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}
