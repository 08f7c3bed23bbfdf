//! `MODEL_CARD.md`: what a model is, what it was trained and measured on, and what it is not.

use crate::config::{self, TrainConfig};
use crate::detector::Detector;
use crate::error::{Result, write_file};
use crate::eval::Metrics;
use crate::model::serde_name;

use crate::run::{RunInfo, read_metrics};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Facts about a model that its file does not hold. Every field is optional: a card leaves out
/// what it is not told. [`ModelCardFacts::from_run`] fills it from a run folder.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelCardFacts {
    /// Card title; defaults to the run name in the model's provenance.
    pub name: String,
    /// Where the images come from, one or two sentences.
    pub data_source: String,
    pub data_dir: Option<PathBuf>,
    pub test_dir: Option<PathBuf>,
    /// Images per class (REAL, FAKE).
    pub train_count: Option<[usize; 2]>,
    pub val_count: Option<[usize; 2]>,
    pub test_count: Option<[usize; 2]>,
    /// How the validation split was made.
    pub split: String,
    pub seed: Option<u64>,
    /// Training settings as (setting, value) rows; see [`training_summary`].
    pub training: Vec<(String, String)>,
    pub epochs_run: Option<usize>,
    pub best_epoch: Option<usize>,
    pub train_minutes: Option<f64>,
    /// Mean training throughput over the epochs.
    pub train_images_per_second: Option<f64>,
    pub val: Option<Metrics>,
    pub test: Option<Metrics>,
    /// Where speeds were measured: backend, threads, machine.
    pub hardware: String,
    pub git_revision: Option<String>,
    /// Software versions, e.g. "synthscan 0.1.0, burn 0.22.1".
    pub software: String,
    /// Limits beyond the general ones every card lists.
    pub limits: Vec<String>,
}

const CIFAKE_SOURCE: &str = "CIFAKE (Bird & Lotfi, 2024): 32×32 real photographs from CIFAR-10 and \
     32×32 fakes generated with Stable Diffusion 1.4 for the same ten classes.";
const CIFAKE_LIMIT: &str = "Trained only on 32×32 CIFAKE images, whose fakes all come from Stable Diffusion 1.4 \
     and whose real images are CIFAR-10 photographs. Images from other generators (Midjourney, DALL·E, \
     SDXL, GAN faces, …), other cameras, edits or screenshots are out of distribution; expect much lower accuracy.";

impl ModelCardFacts {
    /// Read `run.json`, `config.yaml` (optional) and `metrics.csv` (optional) of a run folder.
    pub fn from_run(run_dir: &Path) -> Result<Self> {
        let info = RunInfo::load(run_dir)?;
        let cfg = config::load(&run_dir.join("config.yaml")).ok();
        let rows = read_metrics(run_dir).unwrap_or_default();
        let cifake = info
            .data_dir
            .to_string_lossy()
            .to_lowercase()
            .contains("cifake");
        let split = match &cfg {
            Some(c) => format!(
                "{:.0}% of each class of the training folder held out for validation (seeded, stratified); \
                 the test set is {}.",
                c.data.val_fraction * 100.0,
                match &info.test_dir {
                    Some(t) => format!("the separate folder {}", t.display()),
                    None => "absent".into(),
                }
            ),
            None => String::new(),
        };
        Ok(ModelCardFacts {
            name: info.provenance.name.clone(),
            data_source: if cifake {
                CIFAKE_SOURCE.into()
            } else {
                format!(
                    "Labelled images (REAL/ and FAKE/ folders) under {}.",
                    info.data_dir.display()
                )
            },
            data_dir: Some(info.data_dir.clone()),
            test_dir: info.test_dir.clone(),
            train_count: Some(info.train_count),
            val_count: Some(info.val_count),
            test_count: info.test_count,
            split,
            seed: Some(info.provenance.seed),
            training: cfg.as_ref().map(training_summary).unwrap_or_default(),
            epochs_run: Some(info.epochs_run),
            best_epoch: Some(info.best_epoch),
            train_minutes: Some(info.train_seconds / 60.0),
            train_images_per_second: (!rows.is_empty())
                .then(|| rows.iter().map(|r| r.images_per_second).sum::<f64>() / rows.len() as f64),
            val: info.val.clone(),
            test: info.test.clone(),
            hardware: format!(
                "{} with {} threads",
                info.provenance.backend, info.provenance.threads
            ),
            git_revision: Some(info.provenance.git_revision.clone()),
            software: format!(
                "synthscan {}, burn {}",
                info.provenance.synthscan_version, info.provenance.burn_version
            ),
            limits: if cifake {
                vec![CIFAKE_LIMIT.into()]
            } else {
                vec![]
            },
        })
    }
}

/// A serialisable enum's name as written in YAML (e.g. `one-cycle`).
/// The training settings worth a line each in a model card.
pub fn training_summary(cfg: &TrainConfig) -> Vec<(String, String)> {
    let o = &cfg.optimizer;
    let s = &cfg.schedule;
    let a = &cfg.augment;
    let mut optimizer = format!(
        "{} lr {} weight decay {}",
        serde_name(&o.kind),
        o.lr,
        o.weight_decay
    );
    if o.kind == config::OptimizerKind::Sgd {
        let _ = write!(
            optimizer,
            ", momentum {}{}",
            o.momentum,
            if o.nesterov { " (Nesterov)" } else { "" }
        );
    }
    let mut augment: Vec<String> = Vec::new();
    if a.hflip {
        augment.push("horizontal flip".into());
    }
    if a.crop_padding > 0 {
        augment.push(format!("random crop (padding {})", a.crop_padding));
    }
    if a.cutout > 0 {
        augment.push(format!("cutout {}", a.cutout));
    }
    if a.jpeg_probability > 0.0 {
        augment.push(format!(
            "JPEG re-encoding p={} quality {}–{}",
            a.jpeg_probability, a.jpeg_quality[0], a.jpeg_quality[1]
        ));
    }
    if a.blur_probability > 0.0 {
        augment.push(format!("box blur p={}", a.blur_probability));
    }
    if a.resize_probability > 0.0 {
        augment.push(format!(
            "resize round trip p={} scale {}–{}",
            a.resize_probability, a.resize_scale[0], a.resize_scale[1]
        ));
    }
    if a.gaussian_blur_probability > 0.0 {
        augment.push(format!(
            "Gaussian blur p={} σ {}–{} px",
            a.gaussian_blur_probability, a.blur_sigma[0], a.blur_sigma[1]
        ));
    }
    if a.noise_probability > 0.0 {
        augment.push(format!(
            "Gaussian noise p={} σ {}–{}",
            a.noise_probability, a.noise_sigma[0], a.noise_sigma[1]
        ));
    }
    let mut pairs = vec![
        ("epochs (maximum)", cfg.epochs.to_string()),
        ("batch size", cfg.batch_size.to_string()),
        ("optimizer", optimizer),
        (
            "schedule",
            format!(
                "{} (warm-up {:.0}% of steps)",
                serde_name(&s.kind),
                s.warmup_fraction * 100.0
            ),
        ),
        ("label smoothing", cfg.label_smoothing.to_string()),
        (
            "weight averaging (EMA)",
            cfg.ema
                .as_ref()
                .map(|e| format!("decay {} every {} steps", e.decay, e.every))
                .unwrap_or_else(|| "off".into()),
        ),
        (
            "early stopping",
            cfg.early_stopping
                .as_ref()
                .map(|e| format!("{} patience {}", serde_name(&e.metric), e.patience))
                .unwrap_or_else(|| "off".into()),
        ),
        (
            "augmentation",
            if augment.is_empty() {
                "none".into()
            } else {
                augment.join(", ")
            },
        ),
        ("input normalisation", serde_name(&cfg.normalization)),
        ("threshold rule", serde_name(&cfg.threshold)),
        (
            "test-time augmentation",
            if cfg.tta {
                "flip averaging".into()
            } else {
                "off".into()
            },
        ),
    ];
    if let Some(init) = &cfg.init {
        pairs.push(("starting weights", format!("`{}`", init.display())));
    }
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn counts(c: [usize; 2]) -> String {
    format!("{} ({} REAL, {} FAKE)", c[0] + c[1], c[0], c[1])
}

/// Write a Markdown model card for `detector` to `path`.
pub fn write_model_card(detector: &Detector, path: &Path, extra: &ModelCardFacts) -> Result<()> {
    let meta = &detector.meta;
    let name = if !extra.name.is_empty() {
        extra.name.clone()
    } else {
        meta.provenance
            .get("run")
            .and_then(|v| v.as_str())
            .unwrap_or("synthscan detector")
            .to_string()
    };
    let mut md = String::new();
    let _ = writeln!(md, "# Model card: {name}\n");
    let _ = writeln!(
        md,
        "A binary image classifier that outputs p_fake, the probability that an image is AI-generated \
         (class FAKE) rather than a real photograph (class REAL). It answers FAKE when p_fake ≥ {:.4}.\n",
        meta.threshold
    );

    model_section(&mut md, detector, extra);
    data_section(&mut md, extra);
    training_section(&mut md, extra);
    metrics_section(&mut md, extra);
    speed_section(&mut md, meta, extra);
    use_and_limits(&mut md, extra);
    write_file(path, md)
}

fn model_section(md: &mut String, detector: &Detector, extra: &ModelCardFacts) {
    let meta = &detector.meta;
    md.push_str("## Model\n\n");
    let _ = writeln!(md, "- Architecture: {}", meta.arch.describe());
    let _ = writeln!(md, "- Parameters: {}", detector.num_params());
    let _ = writeln!(
        md,
        "- Input: {s}×{s} RGB; every image is resized (squashed) to this size first",
        s = meta.input_size
    );
    let n = &meta.normalization;
    let _ = writeln!(
        md,
        "- Normalisation: mean [{:.4}, {:.4}, {:.4}], std [{:.4}, {:.4}, {:.4}] (pixels in [0, 1])",
        n.mean[0], n.mean[1], n.mean[2], n.std[0], n.std[1], n.std[2]
    );
    let _ = writeln!(
        md,
        "- Test-time augmentation: {}",
        if meta.tta {
            "average of the image and its mirror image"
        } else {
            "none"
        }
    );
    let _ = writeln!(
        md,
        "- Decision threshold on p_fake: {:.4} (chosen on the validation split)",
        meta.threshold
    );
    let _ = writeln!(md, "- Classes: {}", meta.class_names.join(", "));
    if let Some(c) = &meta.calibration {
        let _ = writeln!(
            md,
            "- Calibration: temperature {:.3}{} fitted on {} validation images (ECE {:.4} before, {:.4} after)",
            meta.temperature,
            if meta.isotonic.is_some() {
                ", then an isotonic correction,"
            } else {
                ""
            },
            c.images,
            c.ece_before,
            c.ece_after
        );
    }
    if let Some([lo, hi]) = meta.uncertain {
        let c = meta.calibration.clone().unwrap_or_default();
        let _ = writeln!(
            md,
            "- UNCERTAIN when p_fake is in [{lo:.4}, {hi:.4}): on validation the answers outside that band covered {:.1}% of the images and were {:.2}% right (target {:.0}%)",
            c.coverage * 100.0,
            c.confident_accuracy * 100.0,
            c.target_accuracy * 100.0
        );
    }
    if !extra.software.is_empty() {
        let _ = writeln!(md, "- Software: {}", extra.software);
    }
    if let Some(rev) = &extra.git_revision {
        let _ = writeln!(md, "- Source revision: {rev}");
    }
}

fn data_section(md: &mut String, extra: &ModelCardFacts) {
    md.push_str("\n## Data\n\n");
    if !extra.data_source.is_empty() {
        let _ = writeln!(md, "- Source: {}", extra.data_source);
    }
    if let Some(d) = &extra.data_dir {
        let _ = writeln!(md, "- Training folder: `{}`", d.display());
    }
    if let Some(c) = extra.train_count {
        let _ = writeln!(md, "- Training images: {}", counts(c));
    }
    if let Some(c) = extra.val_count {
        let _ = writeln!(md, "- Validation images: {}", counts(c));
    }
    if let Some(c) = extra.test_count {
        let dir = extra
            .test_dir
            .as_ref()
            .map(|d| format!(" from `{}`", d.display()))
            .unwrap_or_default();
        let _ = writeln!(md, "- Test images: {}{dir}", counts(c));
    }
    if !extra.split.is_empty() {
        let _ = writeln!(md, "- Split: {}", extra.split);
    }
    if let Some(seed) = extra.seed {
        let _ = writeln!(md, "- Seed: {seed}");
    }
}

fn training_section(md: &mut String, extra: &ModelCardFacts) {
    if !extra.training.is_empty() || extra.epochs_run.is_some() || extra.train_minutes.is_some() {
        md.push_str("\n## Training\n\n| setting | value |\n|---|---|\n");
        for (k, v) in &extra.training {
            let _ = writeln!(md, "| {} | {} |", cell(k), cell(v));
        }
        if let Some(e) = extra.epochs_run {
            let best = extra
                .best_epoch
                .map(|b| format!(" (best: {b})"))
                .unwrap_or_default();
            let _ = writeln!(md, "| epochs run | {e}{best} |");
        }
        if let Some(m) = extra.train_minutes {
            let _ = writeln!(md, "| training time | {m:.1} min |");
        }
    }
}

fn metrics_section(md: &mut String, extra: &ModelCardFacts) {
    md.push_str("\n## Metrics\n\n");
    let sets = super::metric_sets(extra.val.as_ref(), extra.test.as_ref());
    if sets.is_empty() {
        md.push_str("No measurements were supplied.\n");
    } else {
        md.push_str(
            "FAKE is the positive class: precision is the share of FAKE verdicts that are right, recall the share \
             of fakes caught.\n\n| set | images | threshold | accuracy | precision | recall | F1 | ROC AUC | TP | FP | TN | FN |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (set, m) in &sets {
            let c = &m.confusion;
            let _ = writeln!(
                md,
                "| {set} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {} | {} | {} |",
                m.count,
                m.threshold,
                m.accuracy,
                m.precision,
                m.recall,
                m.f1,
                m.roc_auc,
                c.tp,
                c.fp,
                c.tn,
                c.fn_
            );
        }
        md.push_str("\nThe threshold was chosen on the validation split, so validation figures are slightly optimistic; the test figures are not.\n");
    }
}

fn speed_section(md: &mut String, meta: &crate::detector::ModelMeta, extra: &ModelCardFacts) {
    md.push_str("\n## Speed\n\n");
    let hardware = if extra.hardware.is_empty() {
        String::new()
    } else {
        format!(" on {}", extra.hardware)
    };
    let mut any_speed = false;
    if let Some(ips) = extra
        .test
        .as_ref()
        .or(extra.val.as_ref())
        .map(|m| m.images_per_second)
        .filter(|v| *v > 0.0)
    {
        let _ = writeln!(
            md,
            "- Inference: {ips:.0} images/s{hardware} (already decoded {s}×{s} images{tta}; decoding and resizing files costs extra)",
            s = meta.input_size,
            tta = if meta.tta {
                ", two passes for flip averaging"
            } else {
                ""
            }
        );
        any_speed = true;
    }
    if let Some(ips) = extra.train_images_per_second {
        let _ = writeln!(
            md,
            "- Training: {ips:.0} images/s{hardware} (mean over epochs)"
        );
        any_speed = true;
    }
    if !any_speed {
        md.push_str("Not measured.\n");
    }
}

fn use_and_limits(md: &mut String, extra: &ModelCardFacts) {
    md.push_str(
        "\n## Intended use\n\n\
         - Research, teaching and triage: ranking or flagging images that deserve a closer look, and comparing \
           detectors trained with synthscan.\n\
         - Images like the training data (same size range, same kinds of generators and photographs).\n\
         - Not for decisions about people (moderation, journalism, legal or academic misconduct cases) without \
           human review and other evidence.\n",
    );

    md.push_str("\n## Known limits\n\n");
    let mut limits = extra.limits.clone();
    limits.extend(
        [
            "A score is not evidence on its own: it is a statistical guess from pixels, with a measured error rate \
             (see Metrics) that only holds for data like the test set.",
            "Every image is resized to the input size before scoring, so large photographs lose the high-frequency \
             traces that often distinguish generated images; results on large images can differ a lot from the \
             figures above.",
            "Only generators represented in the training data are covered; new generators, upscaling, heavy JPEG \
             compression, cropping, screenshots and edits can all move scores either way.",
            "p_fake is calibrated on validation data like the training data; outside that distribution it is not a calibrated probability.",
        ]
        .map(String::from),
    );
    for l in limits {
        let _ = writeln!(md, "- {l}");
    }
}
