//! Scoring files and folders with a [`Detector`]: what `predict` does.

use crate::data;
use crate::detector::Detector;
use crate::error::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;

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

/// Score every input; bad files get an error entry and do not stop the others.
pub fn predict_paths(detector: &Detector, inputs: &[PathBuf]) -> Vec<Prediction> {
    let size = detector.meta.input_size;
    let decoded: Vec<(PathBuf, Result<Vec<u8>>)> = data::expand_inputs(inputs)
        .into_par_iter()
        .map(|item| match item {
            Ok(path) => {
                let r = data::decode::load_rgb(&path, size);
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
                    label: Some(detector.decide(p).label),
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
