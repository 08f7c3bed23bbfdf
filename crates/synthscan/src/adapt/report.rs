//! What `adapt` measured, the guard that reads it, and the lineage stored in the new model.

use super::{AdaptOptions, Inputs, today};
use crate::data;
use crate::detector::Detector;
use crate::eval::roc_auc;
use serde::Serialize;
use serde_json::json;

/// One model on one set of images.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub images: usize,
    pub real: usize,
    pub fake: usize,
    /// Of the images answered (outside the uncertain band).
    pub accuracy: f64,
    /// `None` with one class only.
    pub roc_auc: Option<f64>,
    /// Share of REAL images answered FAKE (UNCERTAIN is not an alarm).
    pub false_alarms: Option<f64>,
    /// Share of FAKE images not answered FAKE.
    pub misses: Option<f64>,
    /// Share answered UNCERTAIN.
    pub uncertain: f64,
    /// Mean of the share of REAL images not called FAKE and of FAKE images called FAKE
    /// (UNCERTAIN counts as a miss, not as an alarm); `None` with one class only.
    pub balanced_accuracy: Option<f64>,
}

impl Figures {
    /// Figures of calibrated scores at `threshold`, with `band` answered UNCERTAIN.
    pub fn of(scores: &[f32], labels: &[u8], threshold: f32, band: Option<[f32; 2]>) -> Self {
        let unsure = |s: f32| band.is_some_and(|[lo, hi]| s >= lo && s < hi);
        let (mut right, mut answered, mut alarms, mut caught, mut unsure_n) = (0, 0, 0, 0, 0);
        for (&s, &l) in scores.iter().zip(labels) {
            if unsure(s) {
                unsure_n += 1;
                continue;
            }
            let fake = s >= threshold;
            answered += 1;
            right += usize::from(fake == (l == data::FAKE));
            alarms += usize::from(fake && l == data::REAL);
            caught += usize::from(fake && l == data::FAKE);
        }
        let fake = labels.iter().filter(|&&l| l == data::FAKE).count();
        let real = labels.len() - fake;
        let share = |n: usize, of: usize| (of > 0).then(|| n as f64 / of as f64);
        let (false_alarms, misses) = (share(alarms, real), share(fake - caught, fake));
        Self {
            images: labels.len(),
            real,
            fake,
            accuracy: share(right, answered).unwrap_or(0.0),
            roc_auc: (real > 0 && fake > 0).then(|| roc_auc(scores, labels)),
            false_alarms,
            misses,
            uncertain: share(unsure_n, labels.len()).unwrap_or(0.0),
            balanced_accuracy: false_alarms
                .zip(misses)
                .map(|(fa, miss)| 1.0 - (fa + miss) / 2.0),
        }
    }
}

/// How much of the base task `adapt` may lose before it refuses to write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Margins {
    /// Points of ROC-AUC, as a share (0.02 = 2 points).
    pub auc: f64,
    /// Points of balanced accuracy at the threshold, as a share.
    pub accuracy: f64,
}

impl Default for Margins {
    fn default() -> Self {
        Self {
            auc: 0.02,
            accuracy: 0.05,
        }
    }
}

/// A model in a lineage: its name and content hash.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelRef {
    pub name: String,
    pub sha256: String,
}

/// The corrections an adapted model learned from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Corrections {
    pub folder: String,
    pub real: usize,
    pub fake: usize,
    /// SHA-256 over the sorted content hashes of the images (with their labels).
    pub sha256: String,
    /// Files that could not be read or decoded (not used).
    pub skipped: usize,
}

/// Before and after, on the corrections (out-of-fold after) and on the base model's guard sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdaptReport {
    pub base: ModelRef,
    pub date: String,
    pub corrections: Corrections,
    pub folds: usize,
    pub replay_images: usize,
    pub corrections_before: Figures,
    /// Out-of-fold: each image scored by a head fitted without it.
    pub corrections_after: Figures,
    /// `None` without the base model's training data.
    pub base_before: Option<Figures>,
    pub base_after: Option<Figures>,
    pub threshold: f32,
    pub uncertain: Option<[f32; 2]>,
}

impl AdaptReport {
    /// Figures of the base model and of the adapted one (whose calibrated scores of the
    /// corrections, out of fold, then of the guard sample are `after`).
    pub fn measure(
        base: &Detector,
        adapted: &Detector,
        inputs: &Inputs,
        after: &[f32],
        folds: usize,
        opts: &AdaptOptions,
    ) -> Self {
        let before = |part: &super::Extracted| {
            let flat: Vec<f32> = part.rows.concat();
            let scores = base.head_scores(&flat, part.dim.max(1));
            Figures::of(
                &scores,
                &part.labels,
                base.meta.threshold,
                base.meta.uncertain,
            )
        };
        let (t, band) = (adapted.meta.threshold, adapted.meta.uncertain);
        let n = inputs.user.len();
        let has_guard = !inputs.guard.is_empty();
        let [real, fake] = inputs.user.counts();
        Self {
            base: ModelRef {
                name: base.name.clone(),
                sha256: inputs.base_sha256.clone(),
            },
            date: today(),
            corrections: Corrections {
                folder: opts.data.display().to_string(),
                real,
                fake,
                sha256: corrections_hash(&inputs.user),
                skipped: inputs.user.skipped.len(),
            },
            folds,
            replay_images: inputs.replay.len(),
            corrections_before: before(&inputs.user),
            corrections_after: Figures::of(&after[..n], &inputs.user.labels, t, band),
            base_before: has_guard.then(|| before(&inputs.guard)),
            base_after: has_guard.then(|| Figures::of(&after[n..], &inputs.guard.labels, t, band)),
            threshold: t,
            uncertain: band,
        }
    }

    /// Points of ROC-AUC lost on the base model's guard sample (negative: gained).
    pub fn base_auc_drop(&self) -> Option<f64> {
        let before = self.base_before.as_ref()?.roc_auc?;
        let after = self.base_after.as_ref()?.roc_auc?;
        Some(before - after)
    }

    /// Points of balanced accuracy lost on the guard sample (negative: gained).
    pub fn base_accuracy_drop(&self) -> Option<f64> {
        let before = self.base_before.as_ref()?.balanced_accuracy?;
        let after = self.base_after.as_ref()?.balanced_accuracy?;
        Some(before - after)
    }

    /// Why the adapted model must not replace the base one, if it must not: on the base model's
    /// own data ROC-AUC dropped more than `margin.auc` or balanced accuracy at the threshold more
    /// than `margin.accuracy`, or the base task could not be checked.
    pub fn refusal(&self, margin: Margins) -> Option<String> {
        let (Some(auc), Some(acc)) = (self.base_auc_drop(), self.base_accuracy_drop()) else {
            return Some(
                "the base task could not be checked: no base training data (pass --base-data \
                 DIR with the base model's REAL/ and FAKE/ images; without it the new head may \
                 forget what the base model knew), or write anyway with --force"
                    .into(),
            );
        };
        let (b, a) = (self.base_before.as_ref()?, self.base_after.as_ref()?);
        let what = if auc > margin.auc {
            format!(
                "ROC-AUC would fall from {:.3} to {:.3} ({:.1} points, more than the {:.1} of \
                 --margin)",
                b.roc_auc?,
                a.roc_auc?,
                auc * 100.0,
                margin.auc * 100.0
            )
        } else if acc > margin.accuracy {
            format!(
                "balanced accuracy would fall from {:.3} to {:.3} ({:.1} points, more than the \
                 {:.1} of --accuracy-margin; misses {:.1}% → {:.1}%)",
                b.balanced_accuracy?,
                a.balanced_accuracy?,
                acc * 100.0,
                margin.accuracy * 100.0,
                b.misses? * 100.0,
                a.misses? * 100.0
            )
        } else {
            return None;
        };
        Some(format!(
            "refused: on {} images of the base model's own data {what}. The corrections may be \
             mislabelled (flipped labels do this) or unlike anything the base model judges; \
             check them, or write anyway with --force",
            b.images
        ))
    }

    /// The new model's provenance: this report, the base model and its own lineage, and the
    /// training folders a later `adapt` can replay.
    pub fn lineage(
        &self,
        base: &Detector,
        inputs: &Inputs,
        opts: &AdaptOptions,
    ) -> serde_json::Value {
        let mut chain = base.meta.provenance["lineage"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        chain.push(json!({ "name": self.base.name, "sha256": self.base.sha256 }));
        let mut training: Vec<String> = inputs.base_folders.iter().map(|p| absolute(p)).collect();
        training.push(absolute(&opts.data));
        json!({
            "recipe": "adapt",
            "adapted": self,
            "lineage": chain,
            "training_data": training,
            "base_provenance": base.meta.provenance,
            "head": { "lr": opts.head.lr, "epochs": opts.head.epochs,
                      "batch_size": opts.head.batch_size, "weight_decay": opts.head.weight_decay },
            "seed": opts.seed,
        })
    }

    /// A model card for the adapted model (Markdown): where it came from, what it was fitted on,
    /// the before/after table, and what it was not trained on.
    pub fn card(&self, name: &str, margins: Margins) -> String {
        let c = &self.corrections;
        let guard = match self.refusal(margins) {
            None => "passed".to_string(),
            Some(why) => format!("**not passed** — written with `--force` ({why})"),
        };
        format!(
            "# {name}\n\nAdapted by `synthscan adapt` on {date} from **{base}** (sha256 `{sha}`).\n\n\
             * Corrections: {real} REAL + {fake} FAKE images of `{folder}` (content sha256 \
             `{csha}`; {skipped} unreadable files skipped).\n\
             * Replayed from the base model's training data: {replay} images; {folds}-fold \
             cross-validation on the corrections.\n\
             * Threshold {t:.3}{band}.\n\
             * Guard on the base model's own data: {guard}.\n\n\
             ## Before and after\n\n```\n{table}```\n\n\
             The corrections' figures are out of fold (each image scored by a head fitted \
             without it). The base figures are on images of the base model's training folders \
             that this head was not fitted on.\n\n\
             ## Not trained on\n\nOnly the backbone of {base} and these corrections plus the \
             replayed sample: images unlike both (other generators, other kinds of photographs \
             or art) are judged as {base} judged them, with the new threshold. Check it on a \
             labelled sample of what you will scan (`synthscan evaluate`).\n",
            date = self.date,
            base = self.base.name,
            sha = self.base.sha256,
            real = c.real,
            fake = c.fake,
            folder = c.folder,
            csha = c.sha256,
            skipped = c.skipped,
            replay = self.replay_images,
            folds = self.folds,
            t = self.threshold,
            band = self.uncertain.map_or(String::new(), |[lo, hi]| format!(
                ", answers in [{lo:.3}, {hi:.3}) UNCERTAIN"
            )),
            table = self.table(),
        )
    }

    /// The before/after table, one line per set.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "set                          model    images  ROC-AUC  bal. acc  false alarms  misses  uncertain\n",
        );
        let mut line = |set: &str, who: &str, f: &Figures| {
            let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0));
            out.push_str(&format!(
                "{set:<28} {who:<8} {:>6}  {:>7}  {:>8}  {:>12}  {:>6}  {:>9}\n",
                f.images,
                f.roc_auc.map_or("-".into(), |a| format!("{a:.3}")),
                f.balanced_accuracy
                    .map_or("-".into(), |a| format!("{a:.3}")),
                pct(f.false_alarms),
                pct(f.misses),
                pct(Some(f.uncertain)),
            ));
        };
        line(
            "corrections (out of fold)",
            "before",
            &self.corrections_before,
        );
        line("", "after", &self.corrections_after);
        if let (Some(b), Some(a)) = (&self.base_before, &self.base_after) {
            line("base model's own data", "before", b);
            line("", "after", a);
        }
        out
    }
}

fn absolute(p: &std::path::Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// SHA-256 over the sorted `label:hash` lines of a set of images: the same images with the same
/// labels give the same fingerprint whatever their names or order.
fn corrections_hash(user: &super::Extracted) -> String {
    let mut lines: Vec<String> = user
        .keys
        .iter()
        .zip(&user.labels)
        .map(|(k, l)| format!("{l}:{k}\n"))
        .collect();
    lines.sort();
    super::cache::content_key(lines.concat().as_bytes())
}

/// The lineage a model file records, oldest first, then the model itself: `name (sha…)` lines
/// for `synthscan info`.
pub fn chain_of(provenance: &serde_json::Value) -> Vec<String> {
    provenance["lineage"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let sha = m["sha256"].as_str().unwrap_or("?");
                    format!(
                        "{} (sha256 {})",
                        m["name"].as_str().unwrap_or("?"),
                        &sha[..16.min(sha.len())]
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_count_alarms_misses_and_the_band() {
        let scores = [0.1, 0.6, 0.45, 0.9, 0.2, 0.55];
        let labels = [0, 0, 0, 1, 1, 1];
        let f = Figures::of(&scores, &labels, 0.5, Some([0.4, 0.5]));
        assert_eq!((f.real, f.fake), (3, 3));
        assert_eq!(f.false_alarms, Some(1.0 / 3.0));
        assert_eq!(f.misses, Some(1.0 / 3.0));
        assert_eq!(f.uncertain, 1.0 / 6.0);
        assert_eq!(f.accuracy, 3.0 / 5.0);
        assert_eq!(
            f.balanced_accuracy,
            Some(1.0 - (1.0 / 3.0 + 1.0 / 3.0) / 2.0)
        );
        let only_real = Figures::of(&[0.2, 0.7], &[0, 0], 0.5, None);
        assert_eq!(only_real.roc_auc, None);
        assert_eq!(only_real.misses, None);
        assert_eq!(only_real.false_alarms, Some(0.5));
    }

    fn report(before: f64, after: f64) -> AdaptReport {
        let f = |auc| Figures {
            roc_auc: Some(auc),
            images: 300,
            balanced_accuracy: Some(0.9),
            misses: Some(0.1),
            ..Default::default()
        };
        AdaptReport {
            base: ModelRef {
                name: "b".into(),
                sha256: "0".repeat(64),
            },
            date: "2026-12-03".into(),
            corrections: Corrections {
                folder: "c".into(),
                real: 1,
                fake: 1,
                sha256: String::new(),
                skipped: 0,
            },
            folds: 2,
            replay_images: 0,
            corrections_before: Figures::default(),
            corrections_after: Figures::default(),
            base_before: Some(f(before)),
            base_after: Some(f(after)),
            threshold: 0.5,
            uncertain: None,
        }
    }

    #[test]
    fn the_guard_refuses_a_drop_past_the_margin_and_an_unchecked_base() {
        let m = Margins::default();
        assert_eq!(report(0.95, 0.94).refusal(m), None);
        assert_eq!(report(0.95, 0.97).refusal(m), None);
        let why = report(0.95, 0.90).refusal(m).unwrap();
        assert!(
            why.contains("0.950 to 0.900") && why.contains("--force"),
            "{why}"
        );
        // AUC holds but the threshold now misses fakes: refused too.
        let mut r = report(0.95, 0.95);
        r.base_after.as_mut().unwrap().balanced_accuracy = Some(0.7);
        let why = r.refusal(m).unwrap();
        assert!(
            why.contains("balanced accuracy would fall from 0.900 to 0.700"),
            "{why}"
        );
        r.base_before = None;
        assert!(r.refusal(m).unwrap().contains("--base-data"));
    }

    #[test]
    fn the_corrections_hash_ignores_order_and_names() {
        let mut a = super::super::Extracted {
            keys: vec!["k1".into(), "k2".into()],
            labels: vec![0, 1],
            ..Default::default()
        };
        let h = corrections_hash(&a);
        a.keys.reverse();
        a.labels.reverse();
        assert_eq!(corrections_hash(&a), h);
        a.labels = vec![0, 0];
        assert_ne!(corrections_hash(&a), h);
    }

    #[test]
    fn the_chain_reads_the_lineage() {
        let p = json!({"lineage": [{"name": "realworld", "sha256": "abcdef0123456789ff"}]});
        assert_eq!(chain_of(&p), vec!["realworld (sha256 abcdef0123456789)"]);
        assert!(chain_of(&json!(null)).is_empty());
    }
}
