//! The end of a run: best checkpoint → threshold chosen on validation → provenance → test
//! metrics → `model.synthscan`.

use super::checkpoint::{BEST, committed_file};
use super::data::RunData;
use crate::config::TrainConfig;
use crate::detector::{Detector, ModelMeta, default_device};
use crate::error::Result;
use crate::eval::Metrics;
use crate::run::{RunDir, RunInfo};
use std::time::Instant;

/// The final detector of a run and its scores of the validation and test sets.
pub struct Final {
    pub detector: Detector,
    pub val_scores: Vec<f32>,
    pub val: Metrics,
    pub test: Option<(Vec<f32>, Metrics)>,
}

/// Build the final detector from the best checkpoint, save it as the run's model and record
/// its metrics in `info`.
pub fn finish(
    cfg: &TrainConfig,
    run: &RunDir,
    meta: ModelMeta,
    data: &RunData,
    info: &mut RunInfo,
) -> Result<Final> {
    let best_net = Detector::load(&committed_file(run, BEST))?.network;
    let mut detector = Detector::new(meta, best_net, default_device());
    let val_scores = if data.val.is_empty() {
        detector.meta.threshold = 0.5;
        Vec::new()
    } else {
        // Temperature, threshold (on the calibrated scores), quantiles and uncertain band.
        let target = cfg.confident_accuracy;
        detector.calibrate(&data.val, target, Some(cfg.threshold)).0
    };
    let threshold = detector.meta.threshold;
    let mut val = Metrics::compute(&val_scores, &data.val.labels, threshold);
    if let Some(band) = detector.meta.uncertain {
        val = val.with_band(&val_scores, &data.val.labels, band);
    }
    detector.meta.provenance = serde_json::json!({
        "run": cfg.name,
        "seed": cfg.seed,
        "git_revision": info.provenance.git_revision,
        "train_count": info.train_count,
        "val_count": info.val_count,
        "best_epoch": info.best_epoch,
        "val": to_json(&val)?,
    });
    let test = data.test.as_ref().map(|t| {
        let t0 = Instant::now();
        let scores = detector.score_set(t);
        let mut m = Metrics::compute(&scores, &t.labels, threshold);
        if let Some(band) = detector.meta.uncertain {
            m = m.with_band(&scores, &t.labels, band);
        }
        m.images_per_second = t.len() as f64 / t0.elapsed().as_secs_f64();
        (scores, m)
    });
    if let Some((_, tm)) = &test {
        detector.meta.provenance["test"] = to_json(tm)?;
    }
    detector.save(&run.model_path())?;
    info.val = Some(val.clone());
    info.test = test.as_ref().map(|(_, m)| m.clone());
    info.finished = true;
    run.save_info(info)?;
    Ok(Final {
        detector,
        val_scores,
        val,
        test,
    })
}

fn to_json(m: &Metrics) -> Result<serde_json::Value> {
    serde_json::to_value(m).map_err(|e| crate::error::Error::Model(format!("metrics as JSON: {e}")))
}
