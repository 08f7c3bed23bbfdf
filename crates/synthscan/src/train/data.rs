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
    let (root, items) = training_items(cfg, data_dir)?;
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

/// The training folder's root and its labelled files, limited per class as the experiment says.
fn training_items(cfg: &TrainConfig, data_dir: &Path) -> Result<(PathBuf, Vec<(PathBuf, u8)>)> {
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
    Ok((root, items))
}

/// The files of the validation split a run of `cfg` on `data_dir` draws, with their labels,
/// without keeping the images: the split is drawn over the files that decode, as
/// [`load_run_data`] draws it, so a model of any input size can read them its own way.
pub fn validation_files(cfg: &TrainConfig, data_dir: &Path) -> Result<Vec<(PathBuf, u8)>> {
    let (root, items) = training_items(cfg, data_dir)?;
    // Decoded at a tiny size only to learn which files load, in order.
    let (all, _) = data::load_labelled(&items, 4, cfg.data.strict)?;
    let (_, va) = data::stratified_split(&all.labels, cfg.data.val_fraction, cfg.seed);
    let files: Vec<(PathBuf, u8)> = va
        .iter()
        .filter_map(|&i| Some((all.paths.get(i)?.clone(), *all.labels.get(i)?)))
        .collect();
    if files.is_empty() {
        return Err(Error::dataset(&root, "the validation split is empty"));
    }
    Ok(files)
}
