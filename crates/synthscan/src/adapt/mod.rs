//! `synthscan adapt`: a team's labelled images (its corrections) become a new head on a base
//! model's frozen backbone, checked before it replaces the old one.
//!
//! 1. Backbone features of the corrections, of a replay sample of the base model's own training
//!    data and of a disjoint sample of it kept for the guard, cached by content ([`cache`]).
//! 2. k-fold cross-validation on the corrections: each fold's head starts from the base head and
//!    is fitted on the other folds (weighted up to match the replay) plus the replay sample.
//! 3. The final head on every correction plus the replay; temperature, correction, threshold
//!    (`--max-fpr` honoured) and uncertain band refitted on the out-of-fold scores and the
//!    guard sample.
//! 4. Before/after figures on both ([`report`]); [`AdaptReport::refusal`] is the guard.

pub mod cache;
pub mod report;

use crate::data::{self, Part};
use crate::decision::ThresholdRule;
use crate::detector::{Detector, ModelMeta, default_device};
use crate::error::{Error, Result};
use crate::model::{ArchConfig, Network};
use crate::transfer::features::Features;
use crate::transfer::{HeadTraining, fold_of, head};
use burn::prelude::*;
use cache::{Extracted, FeatureCache};
pub use report::{AdaptReport, Figures, Margins};
use std::path::{Path, PathBuf};

/// What `adapt` is told besides the base model.
#[derive(Clone, Debug)]
pub struct AdaptOptions {
    /// The corrections: `REAL/` and `FAKE/` (one of them may be absent).
    pub data: PathBuf,
    /// Folders of the base model's training data (REAL/ + FAKE/); empty: those the base model
    /// records, where they exist on this machine.
    pub base_data: Vec<PathBuf>,
    /// Base images replayed beside the corrections (so the general task is not forgotten).
    pub replay: usize,
    /// Further base images, never trained on, that the guard scores before and after.
    pub base_val: usize,
    pub folds: usize,
    pub head: HeadTraining,
    pub max_fpr: Option<f64>,
    /// Accuracy outside the uncertain band, on the calibration images.
    pub confident_accuracy: f64,
    pub seed: u64,
}

impl AdaptOptions {
    /// Defaults for the corrections folder `data`.
    pub fn new(data: PathBuf) -> Self {
        Self {
            data,
            base_data: Vec::new(),
            replay: 200,
            base_val: 200,
            folds: 5,
            head: HeadTraining {
                lr: 5e-4,
                epochs: 30,
                batch_size: 64,
                weight_decay: 1e-4,
            },
            max_fpr: None,
            confident_accuracy: 0.95,
            seed: 7,
        }
    }
}

/// Corrections are weighted up to match the replay sample, at most this many times.
const MAX_WEIGHT: usize = 10;

/// Fewest labelled images `adapt` works with.
pub const MIN_IMAGES: usize = 4;

/// Whether `base` has a pretrained backbone and a head to refit.
pub fn check_adaptable(base: &Detector) -> Result<()> {
    match &base.meta.arch {
        ArchConfig::Efficientnet(_) | ArchConfig::Tvresnet(_) => Ok(()),
        ArchConfig::Cnn(_) | ArchConfig::Resnet(_) => Err(Error::Invalid(format!(
            "{} is a network trained from scratch, with no pretrained backbone to keep: adapt works \
             on models with a backbone and a head (the realworld model, imported ResNets); \
             fine-tune this one with `synthscan train --config` and `init:` instead",
            base.name
        ))),
    }
}

/// The base model's training folders: `given`, else those its file records that exist here.
pub fn base_folders(base: &Detector, given: &[PathBuf]) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given.to_vec();
    }
    recorded_training_data(&base.meta.provenance)
        .into_iter()
        .filter(|p| p.is_dir())
        .collect()
}

/// The training folders a model's provenance names (`training_data`), present or not.
pub fn recorded_training_data(provenance: &serde_json::Value) -> Vec<PathBuf> {
    provenance["training_data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Labelled images of class-root folders.
fn labelled(folders: &[PathBuf]) -> Result<Vec<(PathBuf, u8)>> {
    let mut items = Vec::new();
    for dir in folders {
        items.extend(data::discover(&data::resolve_class_root(
            dir,
            Part::Train,
        )?)?);
    }
    Ok(items)
}

/// Labelled image paths.
type Items = Vec<(PathBuf, u8)>;

/// A seeded, stratified sample of `items`, split into the first `a` and the next `b` images.
fn sample_split(items: Items, a: usize, b: usize, seed: u64) -> (Items, Items) {
    use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_class: [Vec<(PathBuf, u8)>; 2] = [Vec::new(), Vec::new()];
    for it in items {
        let c = (it.1 as usize).min(1);
        by_class[c].push(it);
    }
    let total = (by_class[0].len() + by_class[1].len()).max(1);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for mut class in by_class {
        class.shuffle(&mut rng);
        let share = |n: usize| (n * class.len()).div_ceil(total);
        let (na, nb) = (share(a).min(class.len()), share(b));
        let rest = class.split_off(na);
        first.extend(class);
        second.extend(rest.into_iter().take(nb));
    }
    (first, second)
}

/// Where the images come from, with their features.
pub struct Inputs {
    pub user: Extracted,
    pub replay: Extracted,
    pub guard: Extracted,
    pub base_folders: Vec<PathBuf>,
    /// Content hash of the base model file.
    pub base_sha256: String,
}

/// Read and extract the corrections and the base samples. `progress(stage, done, total)`.
pub fn gather(
    base: &Detector,
    base_sha256: &str,
    opts: &AdaptOptions,
    cache: &mut FeatureCache,
    progress: &(dyn Fn(&str, usize, usize) + Sync),
) -> Result<Inputs> {
    check_adaptable(base)?;
    let user_items = labelled(std::slice::from_ref(&opts.data))?;
    let base_folders = base_folders(base, &opts.base_data);
    let (replay_items, guard_items) = if base_folders.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let items = labelled(&base_folders)?;
        sample_split(items, opts.replay, opts.base_val, opts.seed)
    };
    let mut run = |stage: &str, items: &[(PathBuf, u8)]| {
        let n = items.len();
        cache::extract(base, items, cache, &|done| progress(stage, done, n))
    };
    let user = run("corrections", &user_items);
    let replay = run("replay", &replay_items);
    let guard = run("base validation", &guard_items);
    if user.len() < MIN_IMAGES {
        return Err(Error::dataset(
            &opts.data,
            format!(
                "{} readable images under REAL/ and FAKE/; adapt needs at least {MIN_IMAGES}",
                user.len()
            ),
        ));
    }
    Ok(Inputs {
        user,
        replay,
        guard,
        base_folders,
        base_sha256: base_sha256.to_string(),
    })
}

/// The corrections, replay and guard images as one feature table (images in that order).
fn table(inputs: &Inputs) -> Features {
    let mut f = Features {
        dim: inputs.user.dim.max(inputs.replay.dim),
        ..Default::default()
    };
    for part in [&inputs.user, &inputs.replay, &inputs.guard] {
        for ((row, &label), path) in part.rows.iter().zip(&part.labels).zip(&part.paths) {
            f.image.push(f.labels.len());
            f.view.push(0);
            f.labels.push(label);
            f.paths.push(path.clone());
            f.data.extend_from_slice(row);
        }
    }
    f
}

/// The base network on the autodiff device (its head is where fitting starts).
fn start_from(base: &Detector, device: &Device) -> Network {
    base.meta
        .arch
        .init(base.meta.input_size as usize, device)
        .load_record(base.network.clone().into_record())
}

/// Training rows: the given corrections repeated to weigh about as much as the replay, then
/// the replay rows (`replay` = the table's rows after the corrections).
fn training_rows(user: &[usize], replay: std::ops::Range<usize>) -> Vec<usize> {
    let weight = (replay.len() / user.len().max(1)).clamp(1, MAX_WEIGHT);
    let mut rows: Vec<usize> = (0..weight).flat_map(|_| user.iter().copied()).collect();
    rows.extend(replay);
    rows
}

/// Out-of-fold raw scores of every correction (no calibration): each fold's head is fitted on
/// the other folds and the replay.
fn cross_validate(
    base: &Detector,
    f: &Features,
    n_user: usize,
    replay: std::ops::Range<usize>,
    opts: &AdaptOptions,
) -> (Vec<f32>, usize) {
    let labels = &f.labels[..n_user];
    let counts = [0u8, 1].map(|c| labels.iter().filter(|&&l| l == c).count());
    let smallest = counts.iter().copied().filter(|&n| n > 0).min().unwrap_or(0);
    let k = opts.folds.min(smallest.max(n_user / 2)).max(2);
    let fold = fold_of(labels, k, opts.seed);
    let device = default_device().autodiff();
    let mut oof = vec![0.5f32; n_user];
    for i in 0..k {
        let train: Vec<usize> = (0..n_user).filter(|&j| fold[j] != i).collect();
        let val: Vec<usize> = (0..n_user).filter(|&j| fold[j] == i).collect();
        if val.is_empty() {
            continue;
        }
        device.seed(opts.seed + i as u64);
        let net = head::train_head(
            start_from(base, &device),
            f,
            &training_rows(&train, replay.clone()),
            &opts.head,
            opts.seed + i as u64,
            &device,
        );
        for (&j, s) in val.iter().zip(head::score_rows(&net, f, &val)) {
            oof[j] = s;
        }
    }
    (oof, k)
}

/// Fit, calibrate and measure: the adapted model and its report (the guard is the caller's:
/// [`AdaptReport::refusal`]).
pub fn fit(
    base: &Detector,
    inputs: &Inputs,
    opts: &AdaptOptions,
) -> Result<(Detector, AdaptReport)> {
    let f = table(inputs);
    let n_user = inputs.user.len();
    let replay = n_user..n_user + inputs.replay.len();
    let guard: Vec<usize> = (replay.end..f.labels.len()).collect();
    let (oof, folds) = cross_validate(base, &f, n_user, replay.clone(), opts);
    let device = default_device().autodiff();
    device.seed(opts.seed);
    let all: Vec<usize> = (0..n_user).collect();
    let net = head::train_head(
        start_from(base, &device),
        &f,
        &training_rows(&all, replay),
        &opts.head,
        opts.seed,
        &device,
    );
    let mut raw = oof;
    raw.extend(head::score_rows(&net, &f, &guard));
    let mut labels = f.labels[..n_user].to_vec();
    labels.extend(guard.iter().map(|&r| f.labels[r]));
    let meta = ModelMeta {
        tta: false,
        temperature: 1.0,
        isotonic: None,
        uncertain: None,
        real_quantiles: Vec::new(),
        calibration: None,
        ..base.meta.clone()
    };
    let mut adapted = Detector::new(meta, net.valid(), default_device());
    let both_classes = labels.contains(&data::REAL) && labels.contains(&data::FAKE);
    let calibrated = if both_classes {
        let rule = opts
            .max_fpr
            .map(ThresholdRule::MaxFpr)
            .unwrap_or(ThresholdRule::BalancedAccuracy);
        adapted
            .calibrate_scores(&raw, &labels, opts.confident_accuracy, Some(rule))
            .0
    } else {
        raw
    };
    let report = AdaptReport::measure(base, &adapted, inputs, &calibrated, folds, opts);
    adapted.meta.provenance = report.lineage(base, inputs, opts);
    Ok((adapted, report))
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn utc_date(unix_seconds: u64) -> String {
    // Days to civil date (proleptic Gregorian), after H. Hinnant's algorithm.
    let z = (unix_seconds / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Today's date, UTC.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_date(secs)
}

/// The content hash of the model file `path` names (a built-in name or a file): the hash its
/// container records over header and payload, so the same model has the same hash anywhere.
pub fn source_hash(path: &Path) -> Result<String> {
    let bytes = match crate::zoo::named(path).filter(|_| !path.exists()) {
        Some((bytes, _)) => bytes.to_vec(),
        None => crate::error::read_file(path)?,
    };
    crate::model::container::content_hash(&bytes).ok_or_else(|| Error::ModelFile {
        path: path.to_path_buf(),
        message: "not a single model (adapt takes one model, not an ensemble)".into(),
    })
}

/// The folder `adapt` caches features in: `$XDG_CACHE_HOME/synthscan` or `~/.cache/synthscan`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty());
    let base = xdg
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("synthscan"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_796_256_000), "2026-12-03");
    }

    #[test]
    fn samples_are_stratified_disjoint_and_seeded() {
        let items: Vec<(PathBuf, u8)> = (0..100)
            .map(|i| (PathBuf::from(format!("{i}.jpg")), (i % 4 == 0) as u8))
            .collect();
        let (a, b) = sample_split(items.clone(), 20, 40, 3);
        assert_eq!((a.len(), b.len()), (20, 40));
        assert_eq!(a.iter().filter(|i| i.1 == 1).count(), 5);
        assert!(a.iter().all(|x| !b.contains(x)));
        assert_eq!(sample_split(items.clone(), 20, 40, 3), (a.clone(), b));
        assert_ne!(sample_split(items, 20, 40, 4).0, a);
    }

    #[test]
    fn corrections_weigh_about_as_much_as_the_replay() {
        let rows = training_rows(&[0, 1], 2..302);
        assert_eq!(rows.len(), 2 * MAX_WEIGHT + 300);
        let rows = training_rows(&(0..100).collect::<Vec<_>>(), 100..400);
        assert_eq!(rows.len(), 300 + 300);
        assert_eq!(training_rows(&[0, 1, 2], 3..3), vec![0, 1, 2]);
    }

    #[test]
    fn the_cifake_cnn_is_refused_with_what_to_do() {
        let det = Detector::embedded().unwrap();
        let e = check_adaptable(&det).unwrap_err().to_string();
        assert!(e.contains("init:"), "{e}");
    }
}
