//! The perturbation sweep: how a detector's answers hold up when images are re-encoded,
//! resized, blurred, noised or cropped — what every messaging app and social network does to
//! an upload. Each perturbation (from [`crate::data::perturb`]) is applied to the original
//! decoded files, which then go through the detector's own preprocessing and scoring.

use crate::data::perturb::Perturbation;
use crate::data::{self, Part, decode};
use crate::decision::class_at;
use crate::ensemble::{Ensemble, Prepared};
use crate::error::{Error, Result};
use crate::eval::Metrics;
use crate::progress::{NoTally, Tally};
use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// One perturbation's results.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SweepRow {
    pub perturbation: String,
    pub images: usize,
    pub accuracy: f64,
    pub roc_auc: f64,
    pub tpr_at_1pct_fpr: f64,
    pub tpr_at_5pct_fpr: f64,
    pub false_alarm_rate: f64,
    pub ece: f64,
    /// Share of images whose verdict differs from the one on the unperturbed image.
    pub flipped: f64,
}

/// The whole sweep.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    pub model: String,
    pub data: String,
    pub threshold: f32,
    pub rows: Vec<SweepRow>,
}

/// Decoded originals of a labelled folder (the `test/` part of a parent), at most `limit` per
/// class (the first in path order) when given. Undecodable files are skipped with a warning.
pub fn load_originals(dir: &Path, limit: Option<usize>) -> Result<(Vec<RgbImage>, Vec<u8>)> {
    let root = data::resolve_class_root(dir, Part::Test)?;
    let mut items = data::discover(&root)?;
    if let Some(limit) = limit {
        let mut counts = [0usize; 2];
        items.retain(|(_, l)| {
            counts[*l as usize] += 1;
            counts[*l as usize] <= limit
        });
    }
    let decoded: Vec<Option<(RgbImage, u8)>> = items
        .par_iter()
        .map(|(path, label)| {
            let img = decode::read_rgb(path);
            match img {
                Ok(img) => Some((img, *label)),
                Err(e) => {
                    tracing::warn!("skipping {e}");
                    None
                }
            }
        })
        .collect();
    let (images, labels): (Vec<_>, Vec<_>) = decoded.into_iter().flatten().unzip();
    if images.is_empty() {
        return Err(Error::dataset(&root, "no decodable images"));
    }
    Ok((images, labels))
}

/// Score every image under every perturbation; `seed` drives the random ones (noise), image
/// `i` getting `seed + i`, so the sweep is the same for the same seed. Several detectors are
/// one ensemble (the rule of [`crate::eval::evaluate_ensemble`]): each prepares the perturbed
/// image its own way, and a row reports their mean score against the ensemble's threshold.
pub fn sweep(
    members: &Ensemble,
    images: &[RgbImage],
    labels: &[u8],
    perturbations: &[Perturbation],
    seed: u64,
) -> Vec<SweepRow> {
    sweep_with(members, images, labels, perturbations, seed, &NoTally)
}

/// [`sweep`], telling `tally` of every image scored: the clean pass and each perturbation's
/// count, one image at a time.
pub fn sweep_with(
    members: &Ensemble,
    images: &[RgbImage],
    labels: &[u8],
    perturbations: &[Perturbation],
    seed: u64,
    tally: &dyn Tally,
) -> Vec<SweepRow> {
    let passes = 1 + perturbations
        .iter()
        .filter(|p| **p != Perturbation::None)
        .count();
    tally.start(passes * images.len());
    let clean = ensemble_scores(members, images, &Perturbation::None, seed, tally);
    let threshold = members.threshold();
    perturbations
        .iter()
        .map(|p| {
            let scores = if *p == Perturbation::None {
                clean.clone()
            } else {
                ensemble_scores(members, images, p, seed, tally)
            };
            row(threshold, p, &scores, &clean, labels)
        })
        .collect()
}

/// The ensemble's score of every image under `p` ([`Ensemble::score`]); each image is perturbed once and prepared for every member, and only
/// the prepared inputs are kept, not the perturbed originals.
fn ensemble_scores(
    members: &Ensemble,
    images: &[RgbImage],
    p: &Perturbation,
    seed: u64,
    tally: &dyn Tally,
) -> Vec<f32> {
    let mut scores = Vec::with_capacity(images.len());
    let chunk = members.chunk_len();
    for (c, part) in images.chunks(chunk).enumerate() {
        let prepared: Vec<Prepared> = part
            .par_iter()
            .enumerate()
            .map(|(k, img)| {
                let i = c * chunk + k;
                let out = match p {
                    Perturbation::None => members.prepare(img),
                    _ => members.prepare(&p.apply(img, seed.wrapping_add(i as u64))),
                };
                tally.advance(1);
                out
            })
            .collect();
        scores.extend(Ensemble::p_fakes(
            &members.score(&members.batch_of(prepared)),
        ));
    }
    scores
}

fn row(threshold: f32, p: &Perturbation, scores: &[f32], clean: &[f32], labels: &[u8]) -> SweepRow {
    let m = Metrics::compute(scores, labels, threshold);
    let flipped = scores
        .iter()
        .zip(clean)
        .filter(|(a, b)| class_at(**a, threshold) != class_at(**b, threshold))
        .count();
    SweepRow {
        perturbation: p.to_string(),
        images: scores.len(),
        accuracy: m.accuracy,
        roc_auc: m.roc_auc,
        tpr_at_1pct_fpr: m.tpr_at_1pct_fpr,
        tpr_at_5pct_fpr: m.tpr_at_5pct_fpr,
        false_alarm_rate: m.false_alarm_rate,
        ece: m.ece,
        flipped: flipped as f64 / scores.len().max(1) as f64,
    }
}

const COLUMNS: [&str; 9] = [
    "perturbation",
    "images",
    "accuracy",
    "ROC-AUC",
    "TPR@1%FPR",
    "TPR@5%FPR",
    "false alarms",
    "ECE",
    "verdicts flipped",
];

impl SweepRow {
    fn cells(&self) -> Vec<String> {
        vec![
            self.perturbation.clone(),
            self.images.to_string(),
            format!("{:.4}", self.accuracy),
            format!("{:.4}", self.roc_auc),
            format!("{:.4}", self.tpr_at_1pct_fpr),
            format!("{:.4}", self.tpr_at_5pct_fpr),
            format!("{:.4}", self.false_alarm_rate),
            format!("{:.4}", self.ece),
            format!("{:.4}", self.flipped),
        ]
    }
}

impl Sweep {
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "| {} |\n|---|{}\n",
            COLUMNS.join(" | "),
            "---:|".repeat(COLUMNS.len() - 1)
        );
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.cells().join(" | ")));
        }
        out
    }

    pub fn to_csv(&self) -> String {
        let mut out = COLUMNS.join(",") + "\n";
        for r in &self.rows {
            out.push_str(&(r.cells().join(",") + "\n"));
        }
        out
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::Invalid(format!("sweep as JSON: {e}")))
    }

    /// `robustness.png`: accuracy and ROC-AUC per perturbation.
    pub fn write_plot(&self, path: &Path) -> Result<()> {
        let names: Vec<String> = self.rows.iter().map(|r| r.perturbation.clone()).collect();
        let values: Vec<Vec<(f64, f64)>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    (r.accuracy, 0.0),
                    (r.roc_auc, 0.0),
                    (r.tpr_at_5pct_fpr, 0.0),
                ]
            })
            .collect();
        let title = format!("{}: robustness on {}", self.model, self.data);
        crate::report::grouped_bars(
            path,
            &title,
            &names,
            &["accuracy", "ROC-AUC", "TPR@5%FPR"],
            &values,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::Detector;

    #[test]
    fn the_clean_row_matches_plain_scoring_and_jpeg_moves_scores() {
        let ens = Ensemble::from(Detector::embedded().unwrap());
        let det = &ens[0];
        let images: Vec<RgbImage> = (0..40)
            .map(|k| {
                RgbImage::from_fn(32, 32, |x, y| {
                    image::Rgb([(x * 8 + k) as u8, (y * 8) as u8, ((x + y) * k % 256) as u8])
                })
            })
            .collect();
        let labels: Vec<u8> = (0..40).map(|i| (i % 2) as u8).collect();
        let ps = Perturbation::parse_list("none,jpeg:30,noise:0.05").unwrap();
        let rows = sweep(&ens, &images, &labels, &ps, 5);
        assert_eq!(rows.len(), 3);
        let clean = det.score_set(&det.image_set(&images));
        let m = Metrics::compute(&clean, &labels, det.meta.threshold);
        assert_eq!(rows[0].accuracy, m.accuracy);
        assert_eq!(rows[0].flipped, 0.0);
        assert_eq!(
            rows,
            sweep(&ens, &images, &labels, &ps, 5),
            "same seed, same sweep"
        );
        let sweep = Sweep {
            model: "d".into(),
            data: "x".into(),
            threshold: 0.5,
            rows,
        };
        assert_eq!(sweep.to_markdown().lines().count(), 5);
        assert!(sweep.to_csv().starts_with("perturbation,images,accuracy"));
    }

    /// Two models: every row is the metrics of their mean score against their mean threshold,
    /// each member preparing the perturbed image its own way.
    #[test]
    fn an_ensemble_sweep_scores_the_members_mean() {
        let wide = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/cifake-wide.synthscan"
        );
        let members = Ensemble::new(vec![
            Detector::embedded().unwrap(),
            Detector::load(Path::new(wide)).unwrap(),
        ])
        .unwrap();
        let images: Vec<RgbImage> = (0..30)
            .map(|k| {
                RgbImage::from_fn(36, 33, |x, y| {
                    image::Rgb([
                        (x * 7 + k) as u8,
                        (y * 9 + 3 * k) as u8,
                        ((x * y) % 251) as u8,
                    ])
                })
            })
            .collect();
        let labels: Vec<u8> = (0..30).map(|i| (i % 3 == 0) as u8).collect();
        let ps = Perturbation::parse_list("none,jpeg:40").unwrap();
        let rows = sweep(&members, &images, &labels, &ps, 3);
        let threshold = (members[0].meta.threshold + members[1].meta.threshold) / 2.0;
        for (row, p) in rows.iter().zip(&ps) {
            let single: Vec<Vec<f32>> = members
                .iter()
                .map(|d| sweep_scores(d, &images, p))
                .collect();
            let mean: Vec<f32> = single[0]
                .iter()
                .zip(&single[1])
                .map(|(a, b)| (a + b) / 2.0)
                .collect();
            let m = Metrics::compute(&mean, &labels, threshold);
            assert_eq!((row.accuracy, row.roc_auc), (m.accuracy, m.roc_auc), "{p}");
            assert_ne!(single[0], single[1]);
        }
    }

    /// One detector's scores of the images under `p` (seed 3), prepared its own way.
    fn sweep_scores(det: &Detector, images: &[RgbImage], p: &Perturbation) -> Vec<f32> {
        let perturbed: Vec<RgbImage> = images
            .iter()
            .enumerate()
            .map(|(i, img)| p.apply(img, 3 + i as u64))
            .collect();
        det.score_set(&det.image_set(&perturbed))
    }
}
