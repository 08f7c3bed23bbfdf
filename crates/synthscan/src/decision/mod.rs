//! The decision rule, below every model: a score becomes a label here and nowhere else.
//!
//! [`Decision`] is the answer on one image; [`class_at`] the class a score falls in at a
//! threshold; [`unjudgeable`] the shapes no detector may answer with confidence; the threshold
//! rules chosen on validation data ([`ThresholdRule`], [`choose_threshold`], [`fpr_budget`]);
//! and [`calibration`]: temperature and isotonic maps, the uncertain band, the false-alarm
//! quantiles behind `--max-fpr`; and [`with_provenance`], the one rule that combines a pixel
//! decision with what the file itself says about its origin (the `provenance` crate's
//! [`Evidence`]). Detectors, ensembles and evaluation import this module; it imports none of
//! them.

pub mod calibration;

use provenance::{Evidence, Signal, SignalKind, Strength, Verdict};
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
    /// What the file's own bytes say about its origin (content credentials, generator metadata,
    /// invisible watermarks), read before decoding; `None` where it was not checked (images
    /// scored from pixels alone). Combined with the pixel verdict by [`with_provenance`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Evidence>,
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

/// The pixel decision combined with the file's provenance evidence: **the one rule**.
///
/// * The label becomes `FAKE`, with `reason: "provenance: …"`, whatever the pixel score (and
///   whatever the pixel label, UNCERTAIN included), when the evidence holds a *decisive* signal
///   ([`decisive_signal`]):
///   - a **C2PA content credential whose claim verifies** (signature and hashes intact) and
///     whose digital source type is AI (`trainedAlgorithmicMedia`,
///     `compositeWithTrainedAlgorithmicMedia`, `algorithmicMedia`): strength `signed-valid` or
///     `signed-untrusted`. No trust list is bundled, so a credential whose signer is not on one
///     still counts when it is intact: it cannot have been altered since signing, and a forger
///     gains nothing by falsely declaring an image AI-made. The crate also rates an AI
///     credential whose certificate has expired, or whose CAWG identity assertion fails,
///     `signed-untrusted` (the claim itself verifies), and so does this rule;
///   - a **decoded invisible watermark** of a generator (`statistical`, bit agreement at or
///     above [`provenance::watermark::THRESHOLD`]).
/// * Anything else — unsigned metadata claims (generator parameters, EXIF/XMP tool names, even
///   when they say AI: anyone can write them), `CAMERA`, `EDITED`, `INVALID` (tampered or
///   unreadable credentials), `NONE` — leaves the pixel label unchanged and is only reported.
///   Absence of evidence changes nothing: most platforms strip metadata.
///
/// `p_fake` and `threshold` always stay the pixel model's; the evidence is attached to the
/// decision either way (`"provenance"` in JSON).
pub fn with_provenance(mut decision: Decision, evidence: Evidence) -> Decision {
    if let Some(signal) = decisive_signal(&evidence) {
        decision.label = crate::data::CLASS_NAMES[crate::data::FAKE as usize].to_string();
        decision.reason = Some(format!("provenance: {}", describe_signal(signal)));
    }
    decision.provenance = Some(evidence);
    decision
}

/// The signal that overrides the pixel label under [`with_provenance`]'s rule, if any: an
/// intact AI content credential, or a generator watermark decoded above the threshold.
pub fn decisive_signal(evidence: &Evidence) -> Option<&Signal> {
    evidence.signals.iter().find(|s| {
        s.says == Verdict::Ai
            && match s.kind {
                SignalKind::C2pa => {
                    matches!(
                        s.strength,
                        Strength::SignedValid | Strength::SignedUntrusted
                    )
                }
                SignalKind::Watermark => {
                    s.strength == Strength::Statistical
                        && s.bit_agreement
                            .is_some_and(|a| a >= provenance::watermark::THRESHOLD)
                }
                SignalKind::Metadata => false,
            }
    })
}

/// One signal in a line: `C2PA credential (signed, signer not on a trust list):
/// trainedAlgorithmicMedia by Adobe Firefly`, `invisible watermark SDXL (…) at 1.000 bit
/// agreement`, `unsigned metadata claim: …`.
pub fn describe_signal(s: &Signal) -> String {
    match s.kind {
        SignalKind::C2pa => {
            let info = s.c2pa.as_ref();
            let state = match (s.strength, info.map(|i| i.validation)) {
                (Strength::SignedValid, _) => "signed, signer trusted",
                (_, Some(provenance::Validation::Expired)) => "signed, certificate expired",
                (_, Some(provenance::Validation::IdentityInvalid)) => {
                    "signed, identity assertion fails"
                }
                (Strength::SignedUntrusted, _) => "signed, signer not on a trust list",
                (Strength::SignedInvalid, _) => "fails validation",
                _ => "unverified",
            };
            let what = match info.map(|i| &i.digital_source_types) {
                Some(types) if !types.is_empty() => types.join(", "),
                _ => match s.says {
                    Verdict::Camera => "capture".into(),
                    Verdict::Edited => "edits recorded".into(),
                    Verdict::Invalid => "invalid credential".into(),
                    _ => "no source type".into(),
                },
            };
            let by = s
                .generator
                .as_deref()
                .or_else(|| info.and_then(|i| i.signer.as_deref()))
                .filter(|g| !g.is_empty())
                .map(|g| format!(" by {g}"))
                .unwrap_or_default();
            format!("C2PA credential ({state}): {what}{by}")
        }
        SignalKind::Watermark => match (&s.payload, s.bit_agreement) {
            (Some(p), Some(a)) => format!(
                "invisible watermark {p} ({}) at {a:.3} bit agreement",
                s.generator.as_deref().unwrap_or("unknown generator")
            ),
            _ => format!("invisible watermark: {}", s.detail),
        },
        SignalKind::Metadata => format!("unsigned metadata claim: {}", s.detail),
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provenance::{C2paInfo, Validation};

    fn pixel(label: &str, p_fake: f32) -> Decision {
        Decision {
            p_fake,
            label: label.into(),
            threshold: 0.5,
            reason: None,
            model: "m".into(),
            provenance: None,
        }
    }

    fn evidence(signals: Vec<Signal>) -> Evidence {
        let verdict = signals.first().map_or(Verdict::None, |s| s.says);
        Evidence {
            verdict,
            reason: "test".into(),
            signals,
            notes: vec![],
            errors: vec![],
            format: Some("jpeg".into()),
        }
    }

    fn c2pa(says: Verdict, strength: Strength, validation: Validation, dst: &[&str]) -> Signal {
        let mut s = Signal::new(SignalKind::C2pa, says, strength, "credential".into());
        s.generator = Some("Adobe Firefly".into());
        s.c2pa = Some(C2paInfo {
            validation,
            validation_state: None,
            failure_codes: vec![],
            active_manifest: None,
            manifests: 1,
            claim_generator: Some("Adobe Firefly".into()),
            title: None,
            digital_source_types: dst.iter().map(|t| t.to_string()).collect(),
            actions: vec![],
            signer: Some("Adobe Inc.".into()),
            signer_common_name: None,
            signed_at: None,
            trust_list: "none".into(),
            error: None,
        });
        s
    }

    fn watermark(agreement: f64) -> Signal {
        let says = if agreement >= provenance::watermark::THRESHOLD {
            Verdict::Ai
        } else {
            Verdict::None
        };
        let mut s = Signal::new(
            SignalKind::Watermark,
            says,
            Strength::Statistical,
            "wm".into(),
        );
        s.bit_agreement = Some(agreement);
        s.payload = Some("SDXL".into());
        s.generator = Some("Stable Diffusion XL".into());
        s
    }

    const AI: &[&str] = &["trainedAlgorithmicMedia"];

    /// The label and reason after combining; `p_fake` and threshold never change.
    fn combined(d: Decision, signals: Vec<Signal>) -> Decision {
        let ev = evidence(signals);
        let out = with_provenance(d.clone(), ev.clone());
        assert_eq!((out.p_fake, out.threshold), (d.p_fake, d.threshold));
        assert_eq!(out.provenance, Some(ev));
        out
    }

    #[test]
    fn an_intact_ai_credential_makes_fake_whatever_the_pixels() {
        for (strength, validation) in [
            (Strength::SignedUntrusted, Validation::UntrustedSigner),
            (Strength::SignedValid, Validation::Trusted),
            (Strength::SignedUntrusted, Validation::Expired),
        ] {
            for pixel_label in ["REAL", "UNCERTAIN", "FAKE"] {
                let d = combined(
                    pixel(pixel_label, 0.02),
                    vec![c2pa(Verdict::Ai, strength, validation, AI)],
                );
                assert_eq!(d.label, "FAKE");
                let why = d.reason.unwrap();
                assert!(
                    why.starts_with("provenance: C2PA credential (signed"),
                    "{why}"
                );
                assert!(
                    why.contains("trainedAlgorithmicMedia by Adobe Firefly"),
                    "{why}"
                );
            }
        }
        let d = combined(
            pixel("REAL", 0.1),
            vec![c2pa(
                Verdict::Ai,
                Strength::SignedUntrusted,
                Validation::UntrustedSigner,
                AI,
            )],
        );
        assert_eq!(
            d.reason.as_deref(),
            Some(
                "provenance: C2PA credential (signed, signer not on a trust list): \
                 trainedAlgorithmicMedia by Adobe Firefly"
            )
        );
    }

    #[test]
    fn a_decoded_watermark_makes_fake_and_a_weak_one_does_not() {
        let d = combined(pixel("REAL", 0.3), vec![watermark(0.98)]);
        assert_eq!(d.label, "FAKE");
        let why = d.reason.unwrap();
        assert!(
            why.starts_with("provenance: invisible watermark SDXL"),
            "{why}"
        );
        assert!(why.contains("0.980 bit agreement"), "{why}");
        // Under the threshold: reported, not decisive.
        let d = combined(pixel("REAL", 0.3), vec![watermark(0.8)]);
        assert_eq!((d.label.as_str(), d.reason), ("REAL", None));
        // A signal claiming AI with an agreement under the threshold is not trusted either.
        let mut odd = watermark(0.8);
        odd.says = Verdict::Ai;
        let d = combined(pixel("REAL", 0.3), vec![odd]);
        assert_eq!(d.label, "REAL");
    }

    #[test]
    fn metadata_claims_only_report() {
        let a1111 = Signal::metadata(Verdict::Ai, "PNG tEXt parameters", "Steps: 20", None);
        let d = combined(pixel("REAL", 0.2), vec![a1111]);
        assert_eq!((d.label.as_str(), d.reason), ("REAL", None));
    }

    #[test]
    fn camera_edited_invalid_and_none_leave_the_pixel_label() {
        let uncertain = Decision {
            reason: Some("too small".into()),
            ..pixel("UNCERTAIN", 0.5)
        };
        let cases = vec![
            vec![c2pa(
                Verdict::Camera,
                Strength::SignedValid,
                Validation::Trusted,
                &["digitalCapture"],
            )],
            vec![Signal::metadata(
                Verdict::Camera,
                "EXIF Make/Model",
                "NIKON",
                Some("NIKON"),
            )],
            vec![c2pa(
                Verdict::Edited,
                Strength::SignedUntrusted,
                Validation::UntrustedSigner,
                &[],
            )],
            vec![Signal::metadata(
                Verdict::Edited,
                "EXIF Software",
                "GIMP",
                Some("GIMP"),
            )],
            // A tampered credential claiming AI is INVALID: not decisive.
            vec![c2pa(
                Verdict::Invalid,
                Strength::SignedInvalid,
                Validation::Tampered,
                AI,
            )],
            vec![],
        ];
        for signals in cases {
            for d in [pixel("REAL", 0.1), pixel("FAKE", 0.9), uncertain.clone()] {
                let out = combined(d.clone(), signals.clone());
                assert_eq!(
                    (&out.label, &out.reason),
                    (&d.label, &d.reason),
                    "{signals:?}"
                );
            }
        }
    }

    #[test]
    fn evidence_is_serialized_beside_the_decision_only_when_checked() {
        let d = pixel("REAL", 0.1);
        let v = serde_json::to_value(&d).unwrap();
        assert!(v.get("provenance").is_none());
        let v = serde_json::to_value(with_provenance(d, evidence(vec![]))).unwrap();
        assert_eq!(v["provenance"]["verdict"], "NONE");
        assert!(v["provenance"]["signals"].as_array().unwrap().is_empty());
    }

    #[test]
    fn signals_in_one_line() {
        let s = c2pa(
            Verdict::Invalid,
            Strength::SignedInvalid,
            Validation::Tampered,
            &[],
        );
        assert_eq!(
            describe_signal(&s),
            "C2PA credential (fails validation): invalid credential by Adobe Firefly"
        );
        let m = Signal::metadata(Verdict::Edited, "EXIF Software", "GIMP", Some("GIMP"));
        assert_eq!(
            describe_signal(&m),
            "unsigned metadata claim: EXIF Software names the editor GIMP"
        );
    }
}
