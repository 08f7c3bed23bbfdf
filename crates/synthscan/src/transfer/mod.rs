//! Transfer learning from pretrained weights with a frozen backbone: features of every image (and
//! of re-saved, mirrored views of it) are computed once, a head is trained on them, k-fold
//! cross-validation measures the recipe, and the final detector is the pretrained backbone with
//! the head trained on all images.
//!
//! Configured by a YAML file (`synthscan transfer --config experiments/realworld.yaml`).

pub mod features;
pub mod head;

use crate::data::{self, Part};
use crate::detector::{Detector, ModelMeta, default_device};
use crate::error::{Error, Result};
use crate::eval::{Metrics, roc_auc};
use crate::model::ArchConfig;
use crate::model::import::{HeadWeights, load_weights};
use burn::prelude::*;
use features::Features;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::data::prepare::Preprocess;

/// Re-saved views per image (so that neither the container nor the JPEG quality is a shortcut).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewsConfig {
    /// Views besides the image itself.
    #[serde(default)]
    pub extra: usize,
    /// JPEG quality range of a re-saved view.
    #[serde(default = "quality_range")]
    pub jpeg_quality: [u8; 2],
    /// Probability that a view is re-saved as PNG instead of JPEG.
    #[serde(default)]
    pub png_probability: f64,
    #[serde(default)]
    pub hflip: bool,
}

fn quality_range() -> [u8; 2] {
    [50, 95]
}

/// Optimisation of the head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadTraining {
    #[serde(default = "lr")]
    pub lr: f64,
    #[serde(default = "epochs")]
    pub epochs: usize,
    #[serde(default = "batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub weight_decay: f64,
}

fn lr() -> f64 {
    1e-3
}
fn epochs() -> usize {
    60
}
fn batch() -> usize {
    64
}

/// An experiment file for `synthscan transfer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferConfig {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    /// Pretrained backbone weights (.pth or .safetensors).
    pub weights: PathBuf,
    /// The architecture (its head is new; `arch: efficientnet` or `arch: tvresnet`).
    pub model: crate::config::ModelSpec,
    #[serde(default = "size")]
    pub input_size: u32,
    /// Labelled folders (REAL/ + FAKE/, or parents of train/); relative to the working directory.
    pub data: Vec<PathBuf>,
    #[serde(default)]
    pub preprocess: Preprocess,
    pub views: ViewsConfig,
    pub head: HeadTraining,
    #[serde(default = "five")]
    pub folds: usize,
}

fn size() -> u32 {
    224
}
fn five() -> usize {
    5
}

impl TransferConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self =
            yaml_serde::from_str(&text).map_err(|e| Error::config(path, e.to_string()))?;
        cfg.model
            .0
            .validate(cfg.input_size as usize)
            .map_err(|e| Error::config(path, e.to_string()))?;
        if cfg.folds < 2 || cfg.data.is_empty() {
            return Err(Error::config(
                path,
                "folds must be at least 2 and data not empty",
            ));
        }
        let [lo, hi] = cfg.views.jpeg_quality;
        if !(1..=100).contains(&lo) || lo > hi || hi > 100 {
            return Err(Error::config(
                path,
                "views.jpeg_quality must be [low, high] within 1..=100",
            ));
        }
        Ok(cfg)
    }
}

/// Metrics of one validation fold (view 0 of its images only: what a user would upload).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FoldResult {
    pub fold: usize,
    pub images: usize,
    pub accuracy: f64,
    pub roc_auc: f64,
}

/// Cross-validation summary.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CvReport {
    pub folds: Vec<FoldResult>,
    pub accuracy_mean: f64,
    pub accuracy_std: f64,
    pub auc_mean: f64,
    pub auc_std: f64,
    /// Threshold maximising accuracy on the out-of-fold scores (stored in the model).
    pub threshold: f32,
    /// Accuracy of the out-of-fold scores at that threshold.
    pub oof_accuracy: f64,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// Stratified, seeded assignment of each image to one of `k` folds.
pub fn fold_of(labels: &[u8], k: usize, seed: u64) -> Vec<usize> {
    use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fold = vec![0; labels.len()];
    for class in [data::REAL, data::FAKE] {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        idx.shuffle(&mut rng);
        for (j, i) in idx.into_iter().enumerate() {
            fold[i] = j % k;
        }
    }
    fold
}

/// The pretrained network with a fresh head, on `device`.
pub fn backbone(
    cfg: &TransferConfig,
    device: &burn::prelude::Device,
) -> Result<crate::model::Network> {
    let arch: &ArchConfig = &cfg.model.0;
    let net = arch.init(cfg.input_size as usize, device);
    Ok(load_weights(net, arch, &cfg.weights, HeadWeights::Fresh)?.0)
}

/// Every labelled image of the configured folders.
pub fn list_items(cfg: &TransferConfig) -> Result<Vec<(PathBuf, u8)>> {
    let mut items = Vec::new();
    for dir in &cfg.data {
        items.extend(data::discover(&data::resolve_class_root(
            dir,
            Part::Train,
        )?)?);
    }
    Ok(items)
}

/// Backbone features of every image (and its views) of the configured folders.
pub fn extract_features(
    cfg: &TransferConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Features, Vec<(PathBuf, String)>)> {
    let device = default_device();
    let net = backbone(cfg, &device)?.valid();
    let items = list_items(cfg)?;
    let norm = cfg
        .model
        .0
        .declared_normalization()
        .unwrap_or_else(data::Normalization::imagenet);
    let spec = features::ExtractSpec {
        items: &items,
        size: cfg.input_size,
        preprocess: cfg.preprocess,
        views: &cfg.views,
        normalization: &norm,
        seed: cfg.seed,
    };
    let total = items.len();
    Ok(features::extract(&net, &spec, &device, &|done| {
        progress(done, total)
    }))
}

/// k-fold cross-validation of the head recipe on the features.
pub fn cross_validate(cfg: &TransferConfig, f: &Features) -> Result<CvReport> {
    let device = default_device().autodiff();
    device.seed(cfg.seed);
    let fold = fold_of(&f.labels, cfg.folds, cfg.seed);
    let mut oof = vec![f32::NAN; f.labels.len()];
    let mut folds = Vec::new();
    for k in 0..cfg.folds {
        let train: Vec<usize> = (0..f.labels.len()).filter(|&i| fold[i] != k).collect();
        let val: Vec<usize> = (0..f.labels.len()).filter(|&i| fold[i] == k).collect();
        let net = backbone(cfg, &device)?;
        let net = head::train_head(
            net,
            f,
            &f.rows_of(&train, true),
            &cfg.head,
            cfg.seed + k as u64,
            &device,
        );
        let rows = f.rows_of(&val, false);
        let scores = head::score_rows(&net, f, &rows);
        let labels: Vec<u8> = rows.iter().map(|&r| f.labels[f.image[r]]).collect();
        for (&r, &s) in rows.iter().zip(&scores) {
            oof[f.image[r]] = s;
        }
        let m = Metrics::compute(&scores, &labels, 0.5);
        folds.push(FoldResult {
            fold: k,
            images: rows.len(),
            accuracy: m.accuracy,
            roc_auc: m.roc_auc,
        });
    }
    let threshold = crate::decision::choose_threshold(
        &oof,
        &f.labels,
        crate::decision::ThresholdRule::Accuracy,
    );
    let oof_accuracy = Metrics::compute(&oof, &f.labels, threshold).accuracy;
    let (accuracy_mean, accuracy_std) =
        mean_std(&folds.iter().map(|r| r.accuracy).collect::<Vec<_>>());
    let (auc_mean, auc_std) = mean_std(&folds.iter().map(|r| r.roc_auc).collect::<Vec<_>>());
    debug_assert!(roc_auc(&oof, &f.labels).is_finite());
    Ok(CvReport {
        folds,
        accuracy_mean,
        accuracy_std,
        auc_mean,
        auc_std,
        threshold,
        oof_accuracy,
    })
}

/// The final detector: the pretrained backbone with a head trained on every image's features.
pub fn fit_final(cfg: &TransferConfig, f: &Features, cv: &CvReport) -> Result<Detector> {
    let device = default_device().autodiff();
    device.seed(cfg.seed);
    let all: Vec<usize> = (0..f.labels.len()).collect();
    let net = head::train_head(
        backbone(cfg, &device)?,
        f,
        &f.rows_of(&all, true),
        &cfg.head,
        cfg.seed,
        &device,
    );
    let arch = cfg.model.0.clone();
    let norm = arch
        .declared_normalization()
        .unwrap_or_else(data::Normalization::imagenet);
    let meta = ModelMeta {
        threshold: cv.threshold,
        preprocess: cfg.preprocess,
        provenance: serde_json::json!({
            "recipe": cfg.name,
            "backbone_weights": cfg.weights.file_name().map(|n| n.to_string_lossy().to_string()),
            "images": f.labels.len(),
            "class_counts": [f.labels.iter().filter(|&&l| l == 0).count(), f.labels.iter().filter(|&&l| l == 1).count()],
            "cross_validation": cv,
        }),
        ..ModelMeta::untrained(arch, cfg.input_size, norm)
    };
    Ok(Detector::new(meta, net.valid(), default_device()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(p: &str) -> PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(p)
    }

    #[test]
    fn committed_recipes_parse() {
        let cfg = TransferConfig::load(&repo("experiments/realworld.yaml")).unwrap();
        assert_eq!(cfg.folds, 5);
        assert!(matches!(cfg.model.0, ArchConfig::Efficientnet(_)));
        for seed in ["seed-resnet18-finetune", "seed-resnet50-frozen"] {
            let runs = crate::config::load_experiments(&repo(&format!("experiments/{seed}.yaml")))
                .unwrap();
            assert!(runs[0].weights.is_some(), "{seed}");
            assert!(matches!(runs[0].model.0, ArchConfig::Tvresnet(_)), "{seed}");
        }
    }

    #[test]
    fn folds_are_stratified_and_seeded() {
        let labels: Vec<u8> = (0..50).map(|i| (i % 3 == 0) as u8).collect();
        let f = fold_of(&labels, 5, 1);
        assert_eq!(f, fold_of(&labels, 5, 1));
        for k in 0..5 {
            let n: Vec<usize> = [0, 1]
                .map(|c| (0..50).filter(|&i| f[i] == k && labels[i] == c).count())
                .to_vec();
            assert!(
                (6..=7).contains(&n[0]) && (3..=4).contains(&n[1]),
                "{k}: {n:?}"
            );
        }
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
    }

    #[test]
    fn unknown_keys_in_a_transfer_file_are_rejected() {
        let dir = std::env::temp_dir().join(format!("synthscan-tcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.yaml");
        let text = std::fs::read_to_string(repo("experiments/realworld.yaml")).unwrap();
        std::fs::write(&p, text.replace("folds: 5", "folds: 5\nfoldz: 3")).unwrap();
        assert!(
            TransferConfig::load(&p)
                .unwrap_err()
                .to_string()
                .contains("foldz")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
