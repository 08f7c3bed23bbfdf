//! The decision rule, below every model: a score becomes a label here and nowhere else.
//!
//! [`Decision`] is the answer on one image; [`class_at`] the class a score falls in at a
//! threshold; [`unjudgeable`] the shapes no detector may answer with confidence; the threshold
//! rules chosen on validation data ([`ThresholdRule`], [`choose_threshold`], [`fpr_budget`]);
//! and [`calibration`]: temperature and isotonic maps, the uncertain band, the false-alarm
//! quantiles behind `--max-fpr`. Detectors, ensembles and evaluation import this module; it
//! imports none of them.

pub mod calibration;

use serde::{Deserialize, Serialize};

/// A detector's verdict on one score: the one place a score becomes a label.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub p_fake: f32,
    /// REAL, FAKE (as the model names them) or UNCERTAIN.
    pub label: String,
    pub threshold: f32,
    /// Why the answer is UNCERTAIN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The model that answered (an ensemble's members joined, `a + b`; with `--model auto`, the
    /// one the image was routed to). Answers name it beside the decision.
    #[serde(skip)]
    pub model: String,
}

/// The label of an answer the detector will not commit to.
pub const UNCERTAIN: &str = "UNCERTAIN";

/// Images whose shorter side is below this, or whose sides differ more than
/// [`MAX_ASPECT`]-fold, are too far from anything a detector was trained on to be scored with
/// confidence.
pub const MIN_SIDE: u32 = 8;
pub const MAX_ASPECT: f32 = 4.0;

/// Why a `width`×`height` image cannot be judged (a shorter side under [`MIN_SIDE`], or sides
/// more than [`MAX_ASPECT`]-fold apart), or `None`.
pub fn unjudgeable(width: u32, height: u32) -> Option<String> {
    let (short, long) = (width.min(height), width.max(height));
    (short < MIN_SIDE || long as f32 > MAX_ASPECT * short as f32).then(|| {
        format!(
            "the image is {width}x{height}: too small or too elongated to judge \
             (a shorter side of at least {MIN_SIDE} px and sides at most {MAX_ASPECT}:1 are needed)"
        )
    })
}

/// The images a model may judge with confidence, by their decoded size: a model trained on
/// 32×32 CIFAKE images knows nothing of a 12-megapixel photograph, so it answers UNCERTAIN
/// there instead of guessing. Stored in the model file; inferred from the input size when a
/// file says nothing ([`Domain::for_input`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Largest longer side, in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_side: Option<u32>,
    /// Smallest shorter side, in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_side: Option<u32>,
}

impl Domain {
    /// The domain of a model that says nothing of its own: one whose input is at most 64 px
    /// (the CIFAKE class of models) judges images of up to twice its input side; larger inputs
    /// judge any size.
    pub fn for_input(input_size: u32) -> Self {
        Self {
            max_side: (input_size <= 64).then_some(input_size * 2),
            min_side: None,
        }
    }

    /// Why a `width`×`height` image is outside the domain, or `None` when it is inside.
    pub fn refuses(&self, width: u32, height: u32) -> Option<String> {
        let (short, long) = (width.min(height), width.max(height));
        if let Some(max) = self.max_side.filter(|&m| long > m) {
            return Some(format!(
                "the image is {width}x{height}, outside what this model was trained on (images up \
                 to {max} px a side); use --model auto or --model realworld for photographs"
            ));
        }
        self.min_side.filter(|&m| short < m).map(|min| {
            format!(
                "the image is {width}x{height}, outside what this model was trained on (a shorter \
                 side of at least {min} px)"
            )
        })
    }

    /// Whether a `width`×`height` image is inside the domain.
    pub fn admits(&self, width: u32, height: u32) -> bool {
        self.refuses(width, height).is_none()
    }
}

/// The class a score falls in at `threshold`: FAKE at or above it, else REAL.
pub fn class_at(p_fake: f32, threshold: f32) -> u8 {
    if p_fake >= threshold {
        crate::data::FAKE
    } else {
        crate::data::REAL
    }
}

/// Pick the threshold on p_fake that maximises the rule's score on (validation) data. Ties go to
/// the threshold nearest 0.5; the cut is placed midway between neighbouring scores.
pub fn choose_threshold(scores: &[f32], labels: &[u8], rule: ThresholdRule) -> f32 {
    if rule == ThresholdRule::Half || scores.is_empty() {
        return 0.5;
    }
    if let ThresholdRule::MaxFpr(budget) = rule {
        return fpr_budget(scores, labels, budget).threshold;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let pos = labels.iter().filter(|&&l| l == crate::data::FAKE).count();
    let neg = labels.len() - pos;
    // Threshold below everything: all predicted FAKE.
    let (mut tp, mut tn) = (pos, 0usize);
    let score = |tp: usize, tn: usize| match rule {
        ThresholdRule::BalancedAccuracy => (ratio(tp, pos) + ratio(tn, neg)) / 2.0,
        _ => (tp + tn) as f64 / labels.len() as f64,
    };
    let mut best = (score(tp, tn), 0.0f32);
    let mut best_t = scores[order[0]] / 2.0;
    for (n, &k) in order.iter().enumerate() {
        if labels[k] == crate::data::FAKE {
            tp -= 1
        } else {
            tn += 1
        }
        if n + 1 < order.len() && scores[order[n + 1]] == scores[k] {
            continue;
        }
        let t = if n + 1 < order.len() {
            (scores[k] + scores[order[n + 1]]) / 2.0
        } else {
            (scores[k] + 1.0) / 2.0
        };
        let s = score(tp, tn);
        let closeness = -(t - 0.5).abs();
        if s > best.0 + 1e-12 || ((s - best.0).abs() <= 1e-12 && closeness > best.1) {
            best = (s, closeness);
            best_t = t;
        }
    }
    best_t
}

/// How the decision threshold on p_fake is chosen, always on the validation split.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// Keep 0.5.
    Half,
    #[default]
    Accuracy,
    BalancedAccuracy,
    /// `{max_fpr: 0.01}`: the lowest threshold that keeps false alarms on REAL validation
    /// images within this share.
    MaxFpr(f64),
}

/// The threshold that keeps false alarms within a budget, and what it catches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetThreshold {
    pub threshold: f32,
    /// Share of FAKE images at or above the threshold.
    pub tpr: f64,
    /// Share of REAL images at or above it (≤ the budget).
    pub fpr: f64,
}

/// The lowest threshold at which at most `budget` of the REAL images score at or above it.
pub fn fpr_budget(scores: &[f32], labels: &[u8], budget: f64) -> BudgetThreshold {
    let mut real: Vec<f32> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l == crate::data::REAL)
        .map(|(s, _)| *s)
        .collect();
    real.sort_by(|a, b| b.total_cmp(a));
    let allowed = (budget.clamp(0.0, 1.0) * real.len() as f64).floor() as usize;
    let threshold = match real.get(allowed) {
        // Just above the first REAL score that would be one false alarm too many.
        Some(&s) => s.next_up(),
        None => real.last().copied().unwrap_or(0.0).min(0.0),
    };
    let rate = |class: u8| {
        let of: Vec<&f32> = scores
            .iter()
            .zip(labels)
            .filter(|(_, l)| **l == class)
            .map(|(s, _)| s)
            .collect();
        ratio(of.iter().filter(|&&&s| s >= threshold).count(), of.len())
    };
    BudgetThreshold {
        threshold,
        tpr: rate(crate::data::FAKE),
        fpr: rate(crate::data::REAL),
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}
