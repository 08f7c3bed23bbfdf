//! The data of a run: the training folder, its seeded stratified validation split, and the
//! sibling `test/` folder when there is one.

use crate::config::TrainConfig;
use crate::data::{self, ImageSet, Part};
use crate::error::{Error, Result};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use std::path::{Path, PathBuf};

/// The data a run trains and validates on.
pub struct RunData {
    pub train: ImageSet,
    pub val: ImageSet,
    pub test: Option<ImageSet>,
    pub data_dir: PathBuf,
    pub test_dir: Option<PathBuf>,
    pub skipped: usize,
}

/// Load the dataset once: training folder, seeded stratified validation split, and the sibling
/// `test/` folder when the data directory is a `train/` + `test/` parent.
pub fn load_run_data(cfg: &TrainConfig, data_dir: &Path) -> Result<RunData> {
    let root = data::resolve_class_root(data_dir, Part::Train)?;
    let mut items = data::discover(&root)?;
    if let Some(limit) = cfg.data.limit_per_class {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        items.shuffle(&mut rng);
        let mut counts = [0usize; 2];
        items.retain(|(_, l)| {
            counts[*l as usize] += 1;
            counts[*l as usize] <= limit
        });
        items.sort();
    }
    let (all, report) = data::load_labelled(&items, cfg.input_size, cfg.data.strict)?;
    let (tr, va) = data::stratified_split(&all.labels, cfg.data.val_fraction, cfg.seed);
    let test_dir = data::sibling_test_root(data_dir);
    let (test, test_skipped) = match &test_dir {
        Some(t) => {
            let (set, rep) = data::load_folder(t, cfg.input_size, cfg.data.strict)?;
            (Some(set), rep.skipped.len())
        }
        None => (None, 0),
    };
    if tr.is_empty() {
        return Err(Error::dataset(
            &root,
            "no training images left after the validation split",
        ));
    }
    Ok(RunData {
        train: all.subset(&tr),
        val: all.subset(&va),
        test,
        data_dir: data_dir.to_path_buf(),
        test_dir,
        skipped: report.skipped.len() + test_skipped,
    })
}
