//! Calibration and honest decisions, all fitted on validation data:
//!
//! - temperature scaling (Guo et al. 2017): p_fake = σ(m / T) for the logit margin
//!   m = z_FAKE − z_REAL, with T minimising the negative log-likelihood;
//! - then a monotone correction (isotonic regression by pool-adjacent-violators, Zadrozny &
//!   Elkan 2002) of what a temperature cannot fix: the shape of the reliability curve. Stored as
//!   knots and interpolated linearly, so it is strictly increasing between its first and last
//!   knot and decisions keep their order;
//! - the expected calibration error (ECE) over 15 bins of confidence;
//! - the uncertain band `[lo, hi)` around the threshold outside which answers are at least as
//!   accurate as asked (99 % by default);
//! - quantiles of the REAL validation scores, so that a false-alarm budget can be turned into a
//!   threshold at run time (`--max-fpr`).

use crate::data::{FAKE, REAL};
use serde::{Deserialize, Serialize};

pub const ECE_BINS: usize = 15;
/// Quantiles of REAL validation scores stored in a model: 0, 0.1 %, …, 100 %.
pub const QUANTILES: usize = 1001;

/// Expected calibration error: the confidence-weighted gap between how sure the answers are
/// (max(p, 1 − p)) and how often they are right, over `bins` equal-width bins.
pub fn ece(scores: &[f32], labels: &[u8], bins: usize) -> f64 {
    if scores.is_empty() || bins == 0 {
        return 0.0;
    }
    let mut conf = vec![0f64; bins];
    let mut right = vec![0f64; bins];
    let mut count = vec![0usize; bins];
    for (&p, &l) in scores.iter().zip(labels) {
        let c = p.max(1.0 - p) as f64;
        // Confidence lies in [0.5, 1]: bins split that range.
        let b = (((c - 0.5) * 2.0 * bins as f64) as usize).min(bins - 1);
        conf[b] += c;
        right[b] += (((p >= 0.5) as u8) == l) as u8 as f64;
        count[b] += 1;
    }
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (conf[b] - right[b]).abs())
        .sum::<f64>()
        / scores.len() as f64
}

/// Logit margin of a probability (clamped so that 0 and 1 stay finite).
pub fn margin(p: f32) -> f32 {
    let p = p.clamp(1e-7, 1.0 - 1e-7) as f64;
    (p / (1.0 - p)).ln() as f32
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Mean negative log-likelihood of the labels under σ(m / t).
fn nll(margins: &[f32], labels: &[u8], t: f64) -> f64 {
    margins
        .iter()
        .zip(labels)
        .map(|(&m, &l)| {
            let z = m as f64 / t;
            // log(1 + e^-z) for FAKE, log(1 + e^z) for REAL, computed stably.
            let s = if l == FAKE { -z } else { z };
            s.max(0.0) + (-s.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / margins.len().max(1) as f64
}

/// The temperature minimising the NLL of the labels, by golden-section search over log T in
/// [ln 0.05, ln 20] (the NLL is unimodal in T).
pub fn fit_temperature(margins: &[f32], labels: &[u8]) -> f32 {
    if margins.is_empty() {
        return 1.0;
    }
    let f = |log_t: f64| nll(margins, labels, log_t.exp());
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..80 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - g * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp() as f32
}

/// A monotone map from a (temperature-scaled) p_fake to a calibrated one: knots `(x, y)` with
/// increasing `x` and `y`, linear between them, flat beyond the ends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Isotonic {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
}

/// Least and greatest calibrated probability an isotonic map gives, so that the logit margin
/// of every answer stays finite.
const ISO_FLOOR: f32 = 1e-4;

impl Isotonic {
    pub fn apply(&self, p: f32) -> f32 {
        let (x, y) = (&self.x, &self.y);
        if x.is_empty() || x.len() != y.len() {
            return p;
        }
        let i = x.partition_point(|&k| k <= p);
        if i == 0 {
            return y[0];
        }
        if i == x.len() {
            return y[x.len() - 1];
        }
        let t = (p - x[i - 1]) / (x[i] - x[i - 1]);
        y[i - 1] + t * (y[i] - y[i - 1])
    }

    /// The score that maps to `q` (the inverse of [`Isotonic::apply`] between the ends).
    pub fn inverse(&self, q: f32) -> f32 {
        let swapped = Isotonic {
            x: self.y.clone(),
            y: self.x.clone(),
        };
        swapped.apply(q)
    }
}

/// The threshold on p_fake after a new calibration (temperature `t`, map `iso`) that keeps the
/// decisions `p ≥ threshold` of the old one (`old_t`, `old_map`): the raw margin of the old
/// threshold, through the new temperature and map. In a flat end of the old map, where
/// [`Isotonic::inverse`] cannot say where the threshold was, the only decision that end allowed
/// is kept for every image: all FAKE at or below its flat bottom, all REAL above its flat top.
pub fn carry_threshold(
    threshold: f32,
    (old_t, old_map): (f32, Option<&Isotonic>),
    (t, iso): (f32, &Isotonic),
) -> f32 {
    let ends = old_map.and_then(|m| Some((*m.y.first()?, *m.y.last()?)));
    match ends {
        Some((lo, _)) if threshold <= lo => iso.y.first().copied().unwrap_or(threshold),
        Some((_, hi)) if threshold > hi => iso.y.last().map_or(threshold, |v| v.next_up()),
        _ => {
            let old = old_map.map_or(threshold, |m| m.inverse(threshold));
            iso.apply(sigmoid(margin(old) * old_t / t))
        }
    }
}

/// Isotonic regression of the labels on the scores (pool adjacent violators): blocks of
/// neighbouring scores whose FAKE share must not decrease, each one knot at its mean score.
pub fn fit_isotonic(scores: &[f32], labels: &[u8]) -> Isotonic {
    let mut pairs: Vec<(f64, f64)> = scores
        .iter()
        .zip(labels)
        .map(|(&s, &l)| (s as f64, (l == FAKE) as u8 as f64))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // (sum of scores, sum of labels, count) per block.
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for (s, l) in pairs {
        blocks.push((s, l, 1.0));
        while blocks.len() > 1 {
            let (b, a) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
            if a.1 / a.2 < b.1 / b.2 {
                break;
            }
            blocks.pop();
            let last = blocks.len() - 1;
            blocks[last] = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
        }
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (sx, sy, n) in blocks {
        let (kx, ky) = (
            (sx / n) as f32,
            ((sy / n) as f32).clamp(ISO_FLOOR, 1.0 - ISO_FLOOR),
        );
        // Knots must rise in both coordinates (clamping or rounding can tie them).
        if x.last().is_some_and(|&l| kx <= l) || y.last().is_some_and(|&l| ky <= l) {
            continue;
        }
        x.push(kx);
        y.push(ky);
    }
    Isotonic { x, y }
}

/// The narrowest band `[lo, hi)` around `threshold` outside which the answers (REAL below `lo`,
/// FAKE from `hi`) are each at least `accuracy` right on these scores. `None` without scores.
pub fn uncertain_band(
    scores: &[f32],
    labels: &[u8],
    threshold: f32,
    accuracy: f64,
) -> Option<[f32; 2]> {
    if scores.is_empty() {
        return None;
    }
    let mut pairs: Vec<(f32, u8)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let allowed = 1.0 - accuracy;
    // REAL answers: the largest prefix (cut between distinct scores) with few enough fakes.
    let mut lo = pairs[0].0.min(threshold);
    let mut fakes = 0usize;
    for (n, &(s, l)) in pairs.iter().enumerate() {
        if s >= threshold {
            break;
        }
        fakes += (l == FAKE) as usize;
        let next = pairs.get(n + 1).map(|p| p.0).unwrap_or(f32::INFINITY);
        if next > s && fakes as f64 <= allowed * (n + 1) as f64 {
            lo = next.min(threshold);
        }
    }
    // FAKE answers: the largest suffix with few enough real images.
    let mut hi = pairs[pairs.len() - 1].0.next_up().max(threshold);
    let mut reals = 0usize;
    for (n, &(s, l)) in pairs.iter().rev().enumerate() {
        if s < threshold {
            break;
        }
        reals += (l == REAL) as usize;
        let k = pairs.len() - 1 - n;
        let prev = if k > 0 {
            pairs[k - 1].0
        } else {
            f32::NEG_INFINITY
        };
        if prev < s && reals as f64 <= allowed * (n + 1) as f64 {
            hi = s.max(threshold);
        }
    }
    Some([lo, hi])
}

/// (coverage, accuracy of the confident answers) for the band `[lo, hi)`.
pub fn band_coverage(
    scores: &[f32],
    labels: &[u8],
    threshold: f32,
    [lo, hi]: [f32; 2],
) -> (f64, f64) {
    let (mut answered, mut right) = (0usize, 0usize);
    for (&s, &l) in scores.iter().zip(labels) {
        if s >= lo && s < hi {
            continue;
        }
        answered += 1;
        right += (((s >= threshold) as u8) == l) as usize;
    }
    let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    (share(answered, scores.len()), share(right, answered))
}

/// `QUANTILES` evenly spaced quantiles of `scores` (empty for no scores).
pub fn quantiles(scores: &[f32]) -> Vec<f32> {
    let mut s = scores.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return Vec::new();
    }
    (0..QUANTILES)
        .map(|i| s[(i * (s.len() - 1) + (QUANTILES - 1) / 2) / (QUANTILES - 1)])
        .collect()
}

/// The threshold that keeps false alarms within `budget`, from stored REAL quantiles.
pub fn threshold_from_quantiles(quantiles: &[f32], budget: f64) -> Option<f32> {
    if quantiles.is_empty() || !(0.0..=1.0).contains(&budget) {
        return None;
    }
    let i = ((1.0 - budget) * (quantiles.len() - 1) as f64).ceil() as usize;
    quantiles
        .get(i.min(quantiles.len() - 1))
        .map(|q| q.next_up())
}

/// What calibration fits after the temperature, the same for a model and an ensemble: the
/// isotonic correction of the temperature-scaled validation scores, the threshold `choose`
/// picks on the corrected scores, the REAL quantiles for `--max-fpr`, and the uncertain band
/// outside which answers reach `target_accuracy`, with the facts to report.
pub struct Fitted {
    pub isotonic: Isotonic,
    /// The validation scores after temperature and correction.
    pub scores: Vec<f32>,
    pub threshold: f32,
    pub uncertain: Option<[f32; 2]>,
    pub real_quantiles: Vec<f32>,
    pub facts: CalibrationFacts,
}

/// [`Fitted`] from the validation scores `before` calibration and `scaled` by the fitted
/// temperature; `choose` gets the corrected scores and the correction.
pub fn fit_after_temperature(
    before: &[f32],
    scaled: &[f32],
    labels: &[u8],
    target_accuracy: f64,
    choose: impl FnOnce(&[f32], &Isotonic) -> f32,
) -> Fitted {
    let isotonic = fit_isotonic(scaled, labels);
    let scores: Vec<f32> = scaled.iter().map(|&p| isotonic.apply(p)).collect();
    let threshold = choose(&scores, &isotonic);
    let real: Vec<f32> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l == crate::data::REAL)
        .map(|(s, _)| *s)
        .collect();
    let uncertain = uncertain_band(&scores, labels, threshold, target_accuracy);
    let (coverage, confident_accuracy) = uncertain
        .map(|b| band_coverage(&scores, labels, threshold, b))
        .unwrap_or((1.0, 0.0));
    let facts = CalibrationFacts {
        images: scores.len(),
        ece_before: ece(before, labels, ECE_BINS),
        ece_after: ece(&scores, labels, ECE_BINS),
        target_accuracy,
        coverage,
        confident_accuracy,
    };
    Fitted {
        isotonic,
        threshold,
        uncertain,
        real_quantiles: quantiles(&real),
        facts,
        scores,
    }
}

/// The threshold that keeps false alarms within `budget` (from stored REAL quantiles), with an
/// uncertain band widened to include it; `None` without quantiles or outside [0, 1].
pub fn budget_threshold(
    quantiles: &[f32],
    band: Option<[f32; 2]>,
    budget: f64,
) -> Option<(f32, Option<[f32; 2]>)> {
    let t = threshold_from_quantiles(quantiles, budget)?;
    Some((t, band.map(|[lo, hi]| [lo.min(t), hi.max(t)])))
}

/// What calibration found on the validation set, stored in the model file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFacts {
    pub images: usize,
    pub ece_before: f64,
    pub ece_after: f64,
    /// The accuracy the uncertain band was chosen for.
    pub target_accuracy: f64,
    pub coverage: f64,
    pub confident_accuracy: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    /// Labels drawn from σ(m) for margins m: perfectly calibrated at T = 1.
    fn synthetic(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let m: f32 = rng.random_range(-6.0..6.0);
                let l = (rng.random_range(0.0..1.0) < sigmoid(m)) as u8;
                (m, l)
            })
            .unzip()
    }

    #[test]
    fn temperature_fitting_recovers_a_known_temperature() {
        let (m, l) = synthetic(20_000, 1);
        for t in [0.5f32, 1.0, 3.0] {
            // Margins t times too confident should be divided by t again.
            let scaled: Vec<f32> = m.iter().map(|x| x * t).collect();
            let fitted = fit_temperature(&scaled, &l);
            assert!((fitted - t).abs() < 0.08 * t, "true {t}, fitted {fitted}");
        }
    }

    #[test]
    fn isotonic_fitting_straightens_a_bent_reliability_curve() {
        let (m, l) = synthetic(20_000, 6);
        // Scores whose true FAKE probability is σ(m) but which report σ(m)², a bend that no
        // temperature removes.
        let bent: Vec<f32> = m.iter().map(|&x| sigmoid(x).powi(2)).collect();
        let iso = fit_isotonic(&bent[..10_000], &l[..10_000]);
        assert!(iso.x.windows(2).all(|w| w[0] < w[1]) && iso.y.windows(2).all(|w| w[0] < w[1]));
        let fixed: Vec<f32> = bent[10_000..].iter().map(|&p| iso.apply(p)).collect();
        let before = ece(&bent[10_000..], &l[10_000..], ECE_BINS);
        let after = ece(&fixed, &l[10_000..], ECE_BINS);
        assert!(before > 0.03 && after < 0.015, "ECE {before} → {after}");
        // Monotone: the order of any two scores is kept.
        assert!(iso.apply(0.2) <= iso.apply(0.3) && iso.apply(0.7) <= iso.apply(0.9));
        assert_eq!(Isotonic::default().apply(0.37), 0.37);
    }

    #[test]
    fn ece_is_small_when_calibrated_and_large_when_overconfident() {
        let (m, l) = synthetic(20_000, 2);
        let calibrated: Vec<f32> = m.iter().map(|&x| sigmoid(x)).collect();
        let overconfident: Vec<f32> = m.iter().map(|&x| sigmoid(4.0 * x)).collect();
        assert!(ece(&calibrated, &l, ECE_BINS) < 0.02);
        assert!(ece(&overconfident, &l, ECE_BINS) > 0.05);
    }

    #[test]
    fn the_band_makes_confident_answers_accurate_enough() {
        let (m, l) = synthetic(5_000, 3);
        let p: Vec<f32> = m.iter().map(|&x| sigmoid(x)).collect();
        let band = uncertain_band(&p, &l, 0.5, 0.99).unwrap();
        assert!(band[0] <= 0.5 && band[1] >= 0.5, "{band:?}");
        let (coverage, accuracy) = band_coverage(&p, &l, 0.5, band);
        assert!(accuracy >= 0.99, "{accuracy}");
        assert!(coverage > 0.3 && coverage < 1.0, "{coverage}");
    }

    #[test]
    fn stored_quantiles_keep_a_false_alarm_budget() {
        let (m, l) = synthetic(10_000, 4);
        let p: Vec<f32> = m.iter().map(|&x| sigmoid(x)).collect();
        let real: Vec<f32> = p
            .iter()
            .zip(&l)
            .filter(|(_, l)| **l == REAL)
            .map(|(s, _)| *s)
            .collect();
        let q = quantiles(&real);
        assert_eq!(q.len(), QUANTILES);
        for budget in [0.01, 0.05, 0.2] {
            let t = threshold_from_quantiles(&q, budget).unwrap();
            let fpr = real.iter().filter(|&&s| s >= t).count() as f64 / real.len() as f64;
            assert!(fpr <= budget + 0.002, "budget {budget}: {fpr}");
            assert!(fpr >= budget - 0.01, "budget {budget}: {fpr} (too strict)");
        }
        assert_eq!(threshold_from_quantiles(&q, 1.5), None);
    }
}
