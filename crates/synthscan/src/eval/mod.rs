//! Metrics with FAKE as the positive class, ROC, and the validation-chosen decision threshold.

use crate::data::{self, Part};
use crate::decision::{calibration, fpr_budget};
use crate::ensemble::{Ensemble, Prepared};
use crate::error::Result;
use crate::pipeline;
use crate::progress::{NoTally, Tally};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Confusion {
    pub fn from_scores(scores: &[f32], labels: &[u8], threshold: f32) -> Self {
        let mut c = Confusion::default();
        for (&s, &l) in scores.iter().zip(labels) {
            match (s >= threshold, l == crate::data::FAKE) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }
    pub fn total(&self) -> usize {
        self.tp + self.fp + self.tn + self.fn_
    }
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    pub fn balanced_accuracy(&self) -> f64 {
        (self.recall() + self.specificity()) / 2.0
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The evaluation summary; its JSON form is the `evaluate --json` contract.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub roc_auc: f64,
    pub threshold: f32,
    pub count: usize,
    pub images_per_second: f64,
    pub confusion: Confusion,
    /// Share of REAL images called FAKE at the threshold (false alarms).
    #[serde(default)]
    pub false_alarm_rate: f64,
    /// Share of FAKE images caught when the threshold lets through at most 1 % / 5 % false alarms.
    #[serde(default)]
    pub tpr_at_1pct_fpr: f64,
    #[serde(default)]
    pub tpr_at_5pct_fpr: f64,
    #[serde(default)]
    pub average_precision: f64,
    /// Expected calibration error of p_fake, 15 equal-width bins of confidence.
    #[serde(default)]
    pub ece: f64,
    /// With an uncertain band: the share of images answered REAL or FAKE, and the accuracy of
    /// those answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confident_accuracy: Option<f64>,
}

impl Metrics {
    pub fn compute(scores: &[f32], labels: &[u8], threshold: f32) -> Self {
        let confusion = Confusion::from_scores(scores, labels, threshold);
        Metrics {
            accuracy: confusion.accuracy(),
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.f1(),
            roc_auc: roc_auc(scores, labels),
            threshold,
            count: scores.len(),
            images_per_second: 0.0,
            false_alarm_rate: 1.0 - confusion.specificity(),
            tpr_at_1pct_fpr: fpr_budget(scores, labels, 0.01).tpr,
            tpr_at_5pct_fpr: fpr_budget(scores, labels, 0.05).tpr,
            average_precision: average_precision(scores, labels),
            ece: calibration::ece(scores, labels, calibration::ECE_BINS),
            coverage: None,
            confident_accuracy: None,
            confusion,
        }
    }

    /// Fill `coverage` and `confident_accuracy` for answers outside the band `[lo, hi)`.
    pub fn with_band(mut self, scores: &[f32], labels: &[u8], band: [f32; 2]) -> Self {
        let (c, a) = calibration::band_coverage(scores, labels, self.threshold, band);
        self.coverage = Some(c);
        self.confident_accuracy = Some(a);
        self
    }
}

/// Average precision of FAKE (area under the precision–recall curve, step-wise).
pub fn average_precision(scores: &[f32], labels: &[u8]) -> f64 {
    let pos = labels.iter().filter(|&&l| l == crate::data::FAKE).count();
    if pos == 0 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut ap) = (0usize, 0f64);
    for (n, &k) in order.iter().enumerate() {
        if labels[k] == crate::data::FAKE {
            tp += 1;
            ap += tp as f64 / (n + 1) as f64;
        }
    }
    ap / pos as f64
}

/// Area under the ROC curve by the rank statistic (ties count half). 0.5 when one class is absent.
pub fn roc_auc(scores: &[f32], labels: &[u8]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut n_pos) = (0f64, 0usize);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] == crate::data::FAKE {
                rank_sum += avg_rank;
                n_pos += 1;
            }
        }
        i = j + 1;
    }
    let n_neg = scores.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return 0.5;
    }
    (rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0) / (n_pos as f64 * n_neg as f64)
}

/// ROC curve points (false-positive rate, true-positive rate), from (0,0) to (1,1).
pub fn roc_curve(scores: &[f32], labels: &[u8]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let pos = labels
        .iter()
        .filter(|&&l| l == crate::data::FAKE)
        .count()
        .max(1) as f64;
    let neg = (labels.len() as f64 - pos).max(1.0);
    let (mut tp, mut fp) = (0f64, 0f64);
    let mut points = vec![(0.0, 0.0)];
    for (n, &k) in order.iter().enumerate() {
        if labels[k] == crate::data::FAKE {
            tp += 1.0
        } else {
            fp += 1.0
        }
        let last = n + 1 == order.len();
        if last || scores[order[n + 1]] != scores[k] {
            points.push((fp / neg, tp / pos));
        }
    }
    points
}

/// Result of evaluating a labelled folder.
pub struct Evaluation {
    pub metrics: Metrics,
    pub scores: Vec<f32>,
    pub labels: Vec<u8>,
    /// The scored files, in the order of `scores`.
    pub paths: Vec<PathBuf>,
    pub skipped: Vec<(PathBuf, String)>,
    /// The uncertain band the scores were decided with.
    pub band: Option<[f32; 2]>,
}

/// Metrics of one group of a labelled folder (one value of a manifest column).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupMetrics {
    pub group: String,
    /// REAL and FAKE images in the group.
    pub real: usize,
    pub fake: usize,
    pub metrics: Metrics,
}

impl Evaluation {
    /// The metrics of each group of the scored files, `group_of` naming a file's group (files it
    /// names none go to `"(none)"`), at the evaluation's threshold and band; groups in order of
    /// size, largest first.
    pub fn by_group(&self, group_of: impl Fn(&Path) -> Option<String>) -> Vec<GroupMetrics> {
        let mut groups: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        for (i, p) in self.paths.iter().enumerate() {
            let g = group_of(p).unwrap_or_else(|| "(none)".into());
            groups.entry(g).or_default().push(i);
        }
        let mut out: Vec<GroupMetrics> = groups
            .into_iter()
            .map(|(group, idx)| {
                let scores: Vec<f32> = idx.iter().map(|&i| self.scores[i]).collect();
                let labels: Vec<u8> = idx.iter().map(|&i| self.labels[i]).collect();
                let mut metrics = Metrics::compute(&scores, &labels, self.metrics.threshold);
                if let Some(band) = self.band {
                    metrics = metrics.with_band(&scores, &labels, band);
                }
                let fake = labels.iter().filter(|&&l| l == data::FAKE).count();
                GroupMetrics {
                    group,
                    real: labels.len() - fake,
                    fake,
                    metrics,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.metrics
                .count
                .cmp(&a.metrics.count)
                .then(a.group.cmp(&b.group))
        });
        out
    }
}

/// Evaluate a model or an ensemble (each member reads the files its own way: input size,
/// resize or native-resolution crop; scores them with its own test-time augmentation and
/// temperature; the ensemble's score is the members' mean), decided by the ensemble's
/// calibration, threshold and uncertain band ([`Ensemble::combine`], [`Ensemble::threshold`],
/// [`Ensemble::band`]).
/// `images_per_second` covers every member's decoding and inference.
pub fn evaluate_ensemble(ensemble: &Ensemble, dir: &Path, strict: bool) -> Result<Evaluation> {
    evaluate_ensemble_with(ensemble, dir, strict, &NoTally)
}

/// [`evaluate_ensemble`], telling `tally` of every file done.
pub fn evaluate_ensemble_with(
    ensemble: &Ensemble,
    dir: &Path,
    strict: bool,
    tally: &dyn Tally,
) -> Result<Evaluation> {
    let t0 = Instant::now();
    let root = data::resolve_class_root(dir, Part::Test)?;
    let scored = score_files_with(ensemble, &data::discover(&root)?, strict, tally)?;
    let (threshold, band) = (scored.threshold, scored.band);
    Ok(scored.evaluation(threshold, band, t0))
}

/// The ensemble's `p_fake` of a labelled folder's files, in file order.
pub struct Scored {
    pub scores: Vec<f32>,
    pub labels: Vec<u8>,
    pub skipped: Vec<(PathBuf, String)>,
    pub paths: Vec<PathBuf>,
    /// The threshold and uncertain band the scores were decided by ([`Ensemble::rule_of`]).
    pub threshold: f32,
    pub band: Option<[f32; 2]>,
}

impl Scored {
    /// Metrics at `threshold` (with the coverage of an uncertain `band`), timed from `t0`.
    fn evaluation(self, threshold: f32, band: Option<[f32; 2]>, t0: Instant) -> Evaluation {
        let mut metrics = Metrics::compute(&self.scores, &self.labels, threshold);
        if let Some(band) = band {
            metrics = metrics.with_band(&self.scores, &self.labels, band);
        }
        metrics.images_per_second = self.labels.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        Evaluation {
            metrics,
            scores: self.scores,
            labels: self.labels,
            paths: self.paths,
            skipped: self.skipped,
            band,
        }
    }
}

/// [`score_files`] of the images of a labelled folder (or the `test/` part of a parent).
pub fn score_folder(ensemble: &Ensemble, dir: &Path, strict: bool) -> Result<Scored> {
    let root = data::resolve_class_root(dir, Part::Test)?;
    score_files(ensemble, &data::discover(&root)?, strict)
}

/// The ensemble's `p_fake` of the labelled files through [`Ensemble::score`]; each file is
/// decoded once, with what the members need of it ([`Ensemble::prepare_pixels`]: a photograph
/// far larger than their inputs at a reduced JPEG scale), and prepared for every member that
/// scores it. A file that cannot be read is
/// skipped (or, `strict`, an error).
pub fn score_files(ensemble: &Ensemble, files: &[(PathBuf, u8)], strict: bool) -> Result<Scored> {
    score_files_with(ensemble, files, strict, &NoTally)
}

/// [`score_files`], [`Ensemble::chunk_len`] files at a time (memory bounded on a folder of any
/// size), the next chunk decoded while this one is scored ([`pipeline::overlapped`]), telling
/// `tally` of every file done.
pub fn score_files_with<'a>(
    ensemble: &Ensemble,
    files: &'a [(PathBuf, u8)],
    strict: bool,
    tally: &dyn Tally,
) -> Result<Scored> {
    tally.start(files.len());
    let (mut labels, mut paths, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    // Each chunk is decoded while the one before it is scored.
    let decode = |part: &'a [(PathBuf, u8)]| {
        let prepared: Vec<Result<Prepared>> = part
            .par_iter()
            .map(|(path, _)| {
                let p = ensemble.prepare_pixels(&crate::error::read_file(path)?, path);
                tally.advance(1);
                p
            })
            .collect();
        (part, prepared)
    };
    let score = |(part, prepared): (&[(PathBuf, u8)], Vec<Result<Prepared>>)| {
        let mut batch = ensemble.batch();
        for ((path, label), r) in part.iter().zip(prepared) {
            match r {
                Ok(p) => {
                    batch.push(p);
                    labels.push(*label);
                    paths.push(path.clone());
                }
                Err(err) if strict => return Err(err),
                Err(err) => {
                    tracing::warn!("skipping {err}");
                    skipped.push((path.clone(), err.to_string()));
                }
            }
        }
        Ok(ensemble.score(&batch))
    };
    let decisions: Vec<_> =
        pipeline::overlapped(files.chunks(ensemble.chunk_len()), decode, score)?.concat();
    let (threshold, band) = ensemble.rule_of(&decisions);
    Ok(Scored {
        scores: Ensemble::p_fakes(&decisions),
        labels,
        skipped,
        paths,
        threshold,
        band,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{ThresholdRule, choose_threshold};
    use crate::detector::Detector;

    /// Three REAL and three FAKE images of odd sizes in a fresh folder.
    fn small_folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("synthscan-{name}-{}", std::process::id()));
        for (class, shade) in [("REAL", 40u32), ("FAKE", 190)] {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            for i in 0..3u32 {
                let img = image::RgbImage::from_fn(30 + 3 * i, 33, |x, y| {
                    image::Rgb([(shade + x * y % 50) as u8, (x * 7 + i) as u8, (y * 5) as u8])
                });
                img.save(dir.join(class).join(format!("{i}.png"))).unwrap();
            }
        }
        dir
    }

    #[test]
    fn an_ensemble_scores_the_mean_of_its_members_against_their_mean_threshold() {
        let dir = small_folder("ensemble");
        let a = Detector::embedded().unwrap();
        let wide = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/cifake-wide.synthscan"
        );
        let b = Detector::load(Path::new(wide)).unwrap();
        let (ta, tb) = (a.meta.threshold, b.meta.threshold);
        let ea = evaluate_ensemble(&Detector::embedded().unwrap().into(), &dir, true).unwrap();
        let eb = evaluate_ensemble(&Detector::load(Path::new(wide)).unwrap().into(), &dir, true)
            .unwrap();
        assert_ne!(ea.scores, eb.scores, "two different models");
        let both = evaluate_ensemble(&Ensemble::new(vec![a, b]).unwrap(), &dir, true).unwrap();
        assert_eq!(both.labels, ea.labels);
        assert_eq!(both.scores.len(), 6);
        for ((m, x), y) in both.scores.iter().zip(&ea.scores).zip(&eb.scores) {
            assert!((m - (x + y) / 2.0).abs() < 1e-6, "{m} vs {x}, {y}");
        }
        assert!((both.metrics.threshold - (ta + tb) / 2.0).abs() < 1e-6);
        assert_eq!(
            both.metrics,
            Metrics {
                images_per_second: both.metrics.images_per_second,
                ..Metrics::compute(&both.scores, &both.labels, (ta + tb) / 2.0)
            }
        );
        // The calibrated default answers UNCERTAIN in its band; a mean of two models has none.
        assert!(ea.metrics.coverage.is_some());
        assert!(both.metrics.coverage.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_ensemble_reads_each_file_once_for_members_of_any_input_size() {
        let dir = small_folder("ensemble-sizes");
        std::fs::write(dir.join("FAKE/broken.png"), b"not a png").unwrap();
        let a = Detector::embedded().unwrap();
        let (bytes, label) = crate::zoo::named(Path::new("realworld")).unwrap();
        let b = Detector::from_bytes(bytes, Path::new(label)).unwrap();
        assert_ne!(a.meta.input_size, b.meta.input_size);
        let ea = evaluate_ensemble(&Detector::embedded().unwrap().into(), &dir, false).unwrap();
        let eb = evaluate_ensemble(
            &Detector::from_bytes(bytes, Path::new(label))
                .unwrap()
                .into(),
            &dir,
            false,
        )
        .unwrap();
        let both = score_folder(&Ensemble::new(vec![a, b]).unwrap(), &dir, false).unwrap();
        assert_eq!(both.labels, ea.labels);
        assert_eq!(both.scores.len(), 6);
        for ((m, x), y) in both.scores.iter().zip(&ea.scores).zip(&eb.scores) {
            assert!((m - (x + y) / 2.0).abs() < 1e-6, "{m} vs {x}, {y}");
        }
        // The unreadable file is skipped once for the ensemble, not once per member.
        assert_eq!(both.skipped.len(), 1);
        assert!(both.skipped[0].0.ends_with("FAKE/broken.png"));
        let (a, b) = (
            Detector::embedded().unwrap(),
            Detector::from_bytes(bytes, Path::new(label)).unwrap(),
        );
        let Err(err) = score_folder(&Ensemble::new(vec![a, b]).unwrap(), &dir, true) else {
            panic!("a strict ensemble read of a broken file succeeded")
        };
        let err = err.to_string();
        assert!(err.contains("broken.png"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_fpr_budget_threshold_keeps_the_budget() {
        // 1000 REAL scores 0.000..0.999 and 1000 FAKE scores 0.5..1.0.
        let mut scores: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        scores.extend((0..1000).map(|i| 0.5 + i as f32 / 2000.0));
        let labels: Vec<u8> = (0..2000).map(|i| (i >= 1000) as u8).collect();
        for budget in [0.0, 0.01, 0.05, 0.3] {
            let b = fpr_budget(&scores, &labels, budget);
            assert!(b.fpr <= budget, "{budget}: {b:?}");
            assert!(
                b.fpr > budget - 0.002,
                "{budget}: {b:?} is stricter than needed"
            );
            let m = Metrics::compute(&scores, &labels, b.threshold);
            assert!((m.false_alarm_rate - b.fpr).abs() < 1e-9);
            assert!((m.recall - b.tpr).abs() < 1e-9);
        }
        let t = choose_threshold(&scores, &labels, ThresholdRule::MaxFpr(0.01));
        assert_eq!(t, fpr_budget(&scores, &labels, 0.01).threshold);
        let m = Metrics::compute(&scores, &labels, 0.5);
        assert!(m.tpr_at_1pct_fpr < m.tpr_at_5pct_fpr);
        assert!(m.average_precision > 0.5 && m.average_precision <= 1.0);
    }

    #[test]
    fn confusion_and_rates() {
        let scores = [0.9, 0.8, 0.3, 0.2, 0.6];
        let labels = [1, 1, 1, 0, 0];
        let m = Metrics::compute(&scores, &labels, 0.5);
        assert_eq!(
            m.confusion,
            Confusion {
                tp: 2,
                fp: 1,
                tn: 1,
                fn_: 1
            }
        );
        assert!((m.accuracy - 0.6).abs() < 1e-9);
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-9);
        assert!((m.recall - 2.0 / 3.0).abs() < 1e-9);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["confusion"]["fn"], 1);
    }

    #[test]
    fn auc_known_values() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1]), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[0, 0, 1, 1]), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5], &[0, 1]), 0.5);
        // One inversion out of four pairs.
        assert!((roc_auc(&[0.1, 0.6, 0.5, 0.9], &[0, 0, 1, 1]) - 0.75).abs() < 1e-12);
        let curve = roc_curve(&[0.1, 0.6, 0.5, 0.9], &[0, 0, 1, 1]);
        assert_eq!(curve.first(), Some(&(0.0, 0.0)));
        assert_eq!(curve.last(), Some(&(1.0, 1.0)));
    }

    #[test]
    fn threshold_separates_shifted_scores() {
        // Perfectly separable around 0.8, so 0.5 would misclassify the REAL 0.6 and 0.7.
        let scores = [0.1, 0.6, 0.7, 0.85, 0.9, 0.95];
        let labels = [0, 0, 0, 1, 1, 1];
        let t = choose_threshold(&scores, &labels, ThresholdRule::Accuracy);
        assert!(t > 0.7 && t < 0.85, "{t}");
        assert_eq!(Metrics::compute(&scores, &labels, t).accuracy, 1.0);
        assert_eq!(choose_threshold(&scores, &labels, ThresholdRule::Half), 0.5);
    }
}
