//! [`Ensemble`]: the one model handle — one or several detectors answering as one, how they
//! score images ([`score`]: the one scoring path), decide, are calibrated, and are stored
//! ([`file`]).
//!
//! Each member reads an image its own way (input size, resize or native-resolution crop, flip
//! TTA, temperature); the ensemble's `p_fake` is the mean of the members' own, decided against
//! the mean of their thresholds (each chosen on its member's validation split) until the
//! ensemble is calibrated ([`Ensemble::calibrate`]: a threshold, an uncertain band and
//! false-alarm quantiles fitted on its own mean validation scores). One member is that member,
//! with its own decision rule (uncertain band, `--max-fpr`).
//!
//! File: a [`crate::model::container`] of kind `Ensemble` whose header is [`Header`] (the members' names and
//! byte lengths, the calibration) and whose payload is each member's model file in turn, so a
//! member can be cut out and used alone.

use crate::decision::calibration::{self, CalibrationFacts};
use crate::decision::{Decision, ThresholdRule, UNCERTAIN, class_at, unjudgeable};
use crate::detector::Detector;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ops::Deref;

pub mod file;
pub mod score;

pub use file::is_ensemble_file;
pub use score::{Batch, Passes, Prepared, Unprepared};

/// Most members an ensemble takes: each scores every image, so this bounds a file's cost.
pub const MAX_MEMBERS: usize = 8;

/// What an ensemble file says before its members.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub members: Vec<MemberEntry>,
    /// The decision rule fitted on the members' mean validation scores, when calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Each image answered by one member chosen by its size ([`Ensemble::routed`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub routed: bool,
}

/// How a calibrated ensemble scores and decides, fitted on its members' mean scores of a
/// validation split: the mean's margin divided by a temperature, then a monotone correction,
/// and the threshold, uncertain band and false-alarm quantiles of those calibrated scores.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub temperature: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isotonic: Option<calibration::Isotonic>,
    pub threshold: f32,
    /// Mean scores in `[lo, hi)` are answered UNCERTAIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertain: Option<[f32; 2]>,
    /// Quantiles of the REAL validation images' mean scores, for `--max-fpr`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub real_quantiles: Vec<f32>,
    pub facts: CalibrationFacts,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    /// The member's name in answers (its file stem when the ensemble was built).
    pub name: String,
    /// Length of its model file in the bytes that follow the header.
    pub bytes: u64,
}

impl Calibration {
    /// The calibrated `p_fake` of a members' mean score.
    pub fn map(&self, mean: f32) -> f32 {
        let p = calibration::sigmoid(calibration::margin(mean) / self.temperature);
        self.isotonic.as_ref().map_or(p, |iso| iso.apply(p))
    }
}

/// One or more detectors answering as one.
pub struct Ensemble {
    members: Vec<Detector>,
    /// Several members' own decision rule, once calibrated; else the mean of their thresholds.
    calibration: Option<Calibration>,
    /// Each image goes to the first member whose domain admits it (the last when none does)
    /// and is answered by that member alone (`--model auto`); otherwise every member scores
    /// every image and their mean answers.
    routed: bool,
}

impl Deref for Ensemble {
    type Target = [Detector];
    fn deref(&self) -> &[Detector] {
        &self.members
    }
}

impl From<Detector> for Ensemble {
    fn from(det: Detector) -> Self {
        Self {
            members: vec![det],
            calibration: None,
            routed: false,
        }
    }
}

impl Ensemble {
    /// At least one and at most [`MAX_MEMBERS`] detectors.
    pub fn new(members: Vec<Detector>) -> Result<Self> {
        match members.len() {
            0 => Err(Error::Invalid(
                "an ensemble needs at least one model".into(),
            )),
            n if n > MAX_MEMBERS => Err(Error::Invalid(format!(
                "an ensemble of {n} models: at most {MAX_MEMBERS} are allowed"
            ))),
            _ => Ok(Self {
                members,
                calibration: None,
                routed: false,
            }),
        }
    }

    /// Members that each answer the images of their own domain ([`Detector::meta`]'s
    /// `domain()`), tried in order; the last answers what no earlier one admits.
    pub fn routed(members: Vec<Detector>) -> Result<Self> {
        let mut ensemble = Self::new(members)?;
        ensemble.routed = true;
        Ok(ensemble)
    }

    /// Whether each image is answered by one member chosen by its size ([`Self::routed`]).
    pub fn is_routed(&self) -> bool {
        self.routed
    }

    /// The member that answers a `width`×`height` image when routed: the first whose domain
    /// admits it, else the last.
    pub fn route(&self, width: u32, height: u32) -> usize {
        self.members
            .iter()
            .position(|d| d.meta.domain().admits(width, height))
            .unwrap_or(self.members.len().saturating_sub(1))
    }

    pub fn members_mut(&mut self) -> &mut [Detector] {
        &mut self.members
    }

    pub fn into_members(self) -> Vec<Detector> {
        self.members
    }

    /// The single detector, when there is exactly one.
    pub fn single(&self) -> Option<&Detector> {
        match self.members.as_slice() {
            [det] => Some(det),
            _ => None,
        }
    }

    /// `a + b`: the members' names (one member: its own).
    pub fn name(&self) -> String {
        if self.routed {
            return crate::zoo::AUTO.to_string();
        }
        ensemble_name(&self.members)
    }

    /// The threshold the score is decided against: one member's own; several members' fitted
    /// one once calibrated, else the mean of theirs.
    pub fn threshold(&self) -> f32 {
        match (self.single(), &self.calibration) {
            (Some(det), _) => det.meta.threshold,
            (None, Some(c)) => c.threshold,
            (None, None) => mean_threshold(&self.members),
        }
    }

    /// Scores in `[lo, hi)` are answered UNCERTAIN: one member's band, or a calibrated
    /// ensemble's; an uncalibrated mean has none.
    pub fn band(&self) -> Option<[f32; 2]> {
        match (self.single(), &self.calibration) {
            (Some(det), _) => det.meta.uncertain,
            (None, Some(c)) => c.uncertain,
            (None, None) => None,
        }
    }

    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// The threshold and uncertain band `decisions` were decided by, for metrics over them: the
    /// ensemble's own; routed, that of the member that answered most of them.
    pub fn rule_of(&self, decisions: &[Decision]) -> (f32, Option<[f32; 2]>) {
        if !self.routed {
            return (self.threshold(), self.band());
        }
        let answered = |d: &Detector| decisions.iter().filter(|x| x.model == d.name).count();
        match self.members.iter().max_by_key(|d| answered(d)) {
            Some(d) => (d.meta.threshold, d.meta.uncertain),
            None => (self.threshold(), self.band()),
        }
    }

    /// Drop a fitted calibration, so that scores are the members' plain mean again: what
    /// [`Self::calibrate`] is fitted on.
    pub fn clear_calibration(&mut self) {
        self.calibration = None;
    }

    /// The ensemble's `p_fake` from its members' mean score: through the fitted temperature
    /// and correction once several members are calibrated, else the mean itself.
    pub fn combine(&self, mean: f32) -> f32 {
        match (&self.calibration, self.single()) {
            (Some(c), None) => c.map(mean),
            _ => mean,
        }
    }

    /// The verdict on a mean score of a `width`×`height` image: one member's own rule; for
    /// several, UNCERTAIN for unjudgeable shapes and inside the calibrated band, else the class
    /// at [`Self::threshold`] (named as the first member names it).
    pub fn decide_image(&self, p_fake: f32, width: u32, height: u32) -> Decision {
        self.decide_shaped(p_fake, Some((width, height)))
    }

    /// [`Self::decide_image`] for an image whose size is not known: the score alone decides.
    pub fn decide(&self, p_fake: f32) -> Decision {
        self.decide_shaped(p_fake, None)
    }

    fn decide_shaped(&self, p_fake: f32, shape: Option<(u32, u32)>) -> Decision {
        if let Some(det) = self.single() {
            return match shape {
                Some((w, h)) => det.decide_image(p_fake, w, h),
                None => det.decide(p_fake),
            };
        }
        let threshold = self.threshold();
        let refused = |(w, h): (u32, u32)| {
            unjudgeable(w, h).or_else(|| {
                self.members
                    .iter()
                    .find_map(|d| d.meta.domain().refuses(w, h))
            })
        };
        let reason = shape.and_then(refused).or_else(|| {
            let [lo, hi] = self.band()?;
            (p_fake >= lo && p_fake < hi).then(|| {
                format!("p_fake is in the uncertain band [{lo:.3}, {hi:.3}) of this ensemble")
            })
        });
        let label = match (&reason, self.members.first()) {
            (None, Some(first)) => first.class_name(class_at(p_fake, threshold)).to_string(),
            _ => UNCERTAIN.to_string(),
        };
        Decision {
            p_fake,
            label,
            threshold,
            reason,
            model: self.name(),
            provenance: None,
        }
    }

    /// Fit several members' calibration on their mean scores (`means`, before
    /// [`Self::combine`]) of labelled validation images: a temperature on the mean's margin and
    /// a monotone correction; then, on the calibrated scores, the threshold by `rule`, the REAL
    /// quantiles for `--max-fpr`, and the uncertain band outside which answers reach
    /// `target_accuracy`. One member keeps its own calibration (`synthscan calibrate`), so this
    /// is an error for it.
    pub fn calibrate(
        &mut self,
        means: &[f32],
        labels: &[u8],
        target_accuracy: f64,
        rule: ThresholdRule,
    ) -> Result<&Calibration> {
        if self.single().is_some() || means.is_empty() || means.len() != labels.len() {
            return Err(Error::Invalid(format!(
                "calibrating an ensemble needs several models and labelled validation scores \
                 ({} models, {} scores, {} labels)",
                self.members.len(),
                means.len(),
                labels.len()
            )));
        }
        let margins: Vec<f32> = means.iter().map(|&p| calibration::margin(p)).collect();
        let temperature = calibration::fit_temperature(&margins, labels);
        let scaled: Vec<f32> = margins
            .iter()
            .map(|&m| calibration::sigmoid(m / temperature))
            .collect();
        let fit = calibration::fit_after_temperature(
            means,
            &scaled,
            labels,
            target_accuracy,
            |scores, _| crate::decision::choose_threshold(scores, labels, rule),
        );
        Ok(self.calibration.insert(Calibration {
            temperature,
            isotonic: Some(fit.isotonic),
            threshold: fit.threshold,
            uncertain: fit.uncertain,
            real_quantiles: fit.real_quantiles,
            facts: fit.facts,
        }))
    }

    /// Set the threshold that keeps false alarms on REAL validation images within `budget`:
    /// one member's own (its stored quantiles), or a calibrated ensemble's; the uncertain band
    /// is widened to include it.
    pub fn set_max_fpr(&mut self, budget: f64) -> Result<()> {
        if self.routed {
            // Each member that stores validation quantiles takes the budget; one that does not
            // keeps its threshold (said in a warning): routed images are judged by one member.
            let mut set = 0;
            let mut last_err = None;
            for d in &mut self.members {
                match d.set_max_fpr(budget) {
                    Ok(()) => set += 1,
                    Err(e) => {
                        tracing::warn!("{e}; it keeps its stored threshold");
                        last_err = Some(e);
                    }
                }
            }
            return match (set, last_err) {
                (0, Some(e)) => Err(e),
                _ => Ok(()),
            };
        }
        if let [det] = self.members.as_mut_slice() {
            return det.set_max_fpr(budget);
        }
        let name = self.name();
        let c = self.calibration.as_mut().ok_or_else(|| {
            Error::Invalid(format!(
                "--max-fpr {budget}: the ensemble {name} is not calibrated (write it with \
                 synthscan ensemble --data DIR to choose its threshold on validation images)"
            ))
        })?;
        (c.threshold, c.uncertain) =
            calibration::budget_threshold(&c.real_quantiles, c.uncertain, budget).ok_or_else(
                || Error::Invalid(format!("--max-fpr {budget}: the budget is outside [0, 1]")),
            )?;
        Ok(())
    }
}

/// The name of several detectors as one: theirs joined, `a + b`.
pub fn ensemble_name(members: &[Detector]) -> String {
    let names: Vec<&str> = members.iter().map(|d| d.name.as_str()).collect();
    names.join(" + ")
}

/// Several detectors as one: the mean of their thresholds, each chosen on its own validation
/// split, against which the mean of their `p_fake` is decided.
pub fn mean_threshold(members: &[Detector]) -> f32 {
    members.iter().map(|d| d.meta.threshold).sum::<f32>() / members.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Normalization;
    use crate::detector::{ModelMeta, default_device};
    use std::path::Path;

    fn model(size: u32, threshold: f32, name: &str) -> Detector {
        let arch = crate::model::preset("cifake-paper").unwrap();
        let device = default_device();
        let meta = ModelMeta {
            threshold,
            uncertain: Some([0.45, 0.55]),
            ..ModelMeta::untrained(arch.clone(), size, Normalization::unit())
        };
        let mut det = Detector::new(meta, arch.init(size as usize, &device), device);
        det.name = name.into();
        det
    }

    fn pair() -> Ensemble {
        Ensemble::new(vec![model(16, 0.4, "a"), model(24, 0.6, "b")]).unwrap()
    }

    fn image(k: u32) -> image::RgbImage {
        image::RgbImage::from_fn(30 + k, 20, |x, y| {
            image::Rgb([(x * 11 + k) as u8, (y * 5) as u8, (x ^ y) as u8])
        })
    }

    #[test]
    fn a_file_keeps_every_member_and_the_mean_of_their_scores() {
        let ens = pair();
        let back =
            Ensemble::from_bytes(&ens.to_bytes().unwrap(), Path::new("e.synthscan")).unwrap();
        assert_eq!(back.name(), "a + b");
        assert_eq!(back.threshold(), 0.5);
        let imgs: Vec<_> = (0..3).map(image).collect();
        let prepared: Vec<Prepared> = imgs.iter().map(|i| back.prepare(i)).collect();
        assert_eq!(prepared[0].inputs[0].len(), 16 * 16 * 3);
        assert_eq!(prepared[0].inputs[1].len(), 24 * 24 * 3);
        let batch = back.batch_of(prepared.clone());
        let scores = Ensemble::p_fakes(&back.score(&batch));
        for (img, s) in imgs.iter().zip(&scores) {
            let alone: Vec<f32> = ens
                .iter()
                .map(|d| d.score_set(&d.single(img.clone()))[0])
                .collect();
            assert!(
                (s - (alone[0] + alone[1]) / 2.0).abs() < 1e-5,
                "{s} vs {alone:?}"
            );
        }
        // Passes on one thread, and a lone image (mirror pass beside it), give the same scores.
        let here = Ensemble::p_fakes(&back.score_with(&batch, score::Passes::ThisThread));
        assert_eq!(here, scores);
        let lone = back.batch_of(prepared[..1].to_vec());
        assert!((back.score(&lone)[0].p_fake - scores[0]).abs() < 1e-6);
        for (a, b) in ens.iter().zip(back.iter()) {
            assert_eq!((&a.meta, &a.name), (&b.meta, &b.name));
        }
    }

    #[test]
    fn several_members_decide_by_their_mean_threshold_without_a_band() {
        let ens = pair();
        assert_eq!(ens.decide_image(0.49, 32, 32).label, "REAL");
        assert_eq!(ens.decide_image(0.5, 32, 32).label, "FAKE");
        assert_eq!(ens.decide_image(0.5, 32, 32).threshold, 0.5);
        assert_eq!(ens.decide_image(0.9, 2, 32).label, UNCERTAIN);
        // One member is that member: its own threshold and uncertain band.
        let one = Ensemble::from(model(16, 0.4, "a"));
        assert_eq!(one.decide_image(0.5, 32, 32).label, UNCERTAIN);
        assert_eq!(one.decide_image(0.6, 32, 32).label, "FAKE");
        assert_eq!(one.name(), "a");
    }

    #[test]
    fn bad_files_and_member_counts_are_errors_naming_them() {
        let bytes = pair().to_bytes().unwrap();
        let cut = bytes.len() - 50;
        let mut trailing = bytes.clone();
        trailing.push(0);
        let mut version = bytes.clone();
        version[crate::model::container::Kind::Ensemble.magic().len()] = 9;
        for bad in [&bytes[..10], &bytes[..cut], &trailing[..], &version[..]] {
            let err = Ensemble::from_bytes(bad, Path::new("bad.ens"))
                .err()
                .unwrap();
            assert!(err.to_string().contains("bad.ens"), "{err}");
        }
        // A model loader handed an ensemble says so.
        let err = Detector::from_bytes(&bytes, Path::new("e.synthscan"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("ensemble"), "{err}");
        assert!(Ensemble::new(Vec::new()).is_err());
        let many = (0..=MAX_MEMBERS).map(|_| model(16, 0.5, "m")).collect();
        assert!(Ensemble::new(many).is_err());
    }

    #[test]
    fn model_and_ensemble_files_load_as_one_flat_ensemble() {
        let dir = std::env::temp_dir().join(format!("synthscan-ens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (e, m) = (dir.join("pair.ens"), dir.join("c.synthscan"));
        pair().save(&e).unwrap();
        model(16, 0.7, "ignored").save(&m).unwrap();
        let all = Ensemble::load_all(&[e.clone(), m.clone()]).unwrap();
        assert_eq!(all.name(), "a + b + c");
        assert!((all.threshold() - 0.5666667).abs() < 1e-6);
        assert!(is_ensemble_file(&e) && !is_ensemble_file(&m));
        assert_eq!(Ensemble::load_or_default(Some(&m)).unwrap().name(), "c");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_calibrated_ensemble_decides_by_its_own_threshold_band_and_budget() {
        let mut ens = pair();
        let err = ens.set_max_fpr(0.05).err().unwrap().to_string();
        assert!(err.contains("not calibrated"), "{err}");
        // REAL scores 0.00..0.49, FAKE 0.30..0.99: overlapping between 0.3 and 0.5.
        let scores: Vec<f32> = (0..50)
            .map(|i| i as f32 / 100.0)
            .chain((30..100).map(|i| i as f32 / 100.0))
            .collect();
        let labels: Vec<u8> = (0..120).map(|i| (i >= 50) as u8).collect();
        let c = ens
            .calibrate(&scores, &labels, 0.99, ThresholdRule::Accuracy)
            .unwrap()
            .clone();
        // The calibrated scores: monotone in the mean, so as accurate as the best cut of it
        // (20 of the 120 are on the wrong side of any threshold).
        let cal: Vec<f32> = scores.iter().map(|&m| ens.combine(m)).collect();
        assert!(cal.windows(2).take(49).all(|w| w[0] <= w[1]), "{cal:?}");
        let right = cal
            .iter()
            .zip(&labels)
            .filter(|(p, l)| class_at(**p, c.threshold) == **l)
            .count();
        assert_eq!(right, 100, "{c:?}");
        assert!(c.temperature > 0.0 && c.isotonic.is_some());
        let [lo, hi] = c.uncertain.expect("an overlap gives a band");
        assert!(lo <= c.threshold && c.threshold <= hi);
        assert_eq!(c.facts.images, 120);
        assert_eq!(ens.threshold(), c.threshold);
        assert_eq!(ens.decide_image((lo + hi) / 2.0, 32, 32).label, UNCERTAIN);
        assert_eq!(ens.decide_image(0.99, 32, 32).label, "FAKE");
        assert_eq!(ens.decide_image(0.0, 32, 32).label, "REAL");
        // Kept in the file; a budget of 1 % false alarms moves the threshold up.
        let mut back = Ensemble::from_bytes(&ens.to_bytes().unwrap(), Path::new("c.ens")).unwrap();
        // What decides is stored exactly; the reported facts (f64, through JSON) to within a ULP.
        let b = back.calibration().unwrap().clone();
        assert_eq!(
            (b.threshold, b.uncertain, &b.real_quantiles),
            (c.threshold, c.uncertain, &c.real_quantiles)
        );
        assert!((b.facts.ece_after - c.facts.ece_after).abs() < 1e-12);
        // A budget of 20 % false alarms lowers the threshold to about the REAL scores' 80th
        // percentile, and widens the band to hold it.
        back.set_max_fpr(0.2).unwrap();
        let t = back.threshold();
        let alarms = cal[..50].iter().filter(|&&s| s >= t).count();
        assert!(
            t <= c.threshold && alarms <= 11,
            "{t}: {alarms} false alarms"
        );
        assert!(back.band().is_some_and(|[lo, hi]| lo <= t && t <= hi));
        // One model keeps its own calibration.
        let mut one = Ensemble::from(model(16, 0.4, "a"));
        assert!(
            one.calibrate(&scores, &labels, 0.99, ThresholdRule::Accuracy)
                .is_err()
        );
    }

    /// A PNG of `img` with one `tEXt` chunk inserted after the header.
    fn png_with_text(img: &image::RgbImage, key: &str, text: &str) -> Vec<u8> {
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let png = png.into_inner();
        let data = [key.as_bytes(), b"\0", text.as_bytes()].concat();
        let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
        let body = [b"tEXt".as_slice(), &data].concat();
        chunk.extend_from_slice(&body);
        // CRC-32 (IEEE) of type and data: the PNG decoder checks it.
        let mut crc = 0xffff_ffffu32;
        for &b in &body {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        chunk.extend_from_slice(&(!crc).to_be_bytes());
        // Signature (8) + IHDR (4 + 4 + 13 + 4).
        [&png[..33], &chunk[..], &png[33..]].concat()
    }

    #[test]
    fn evidence_rides_with_each_image_and_decides_by_the_one_rule() {
        use provenance::{Evidence, Signal, SignalKind, Strength, Verdict};
        let ens = pair();
        let img = image(2);
        let bytes = png_with_text(&img, "parameters", "a cat\nSteps: 20, Sampler: Euler a");
        let from_bytes = ens.prepare_bytes(&bytes, Path::new("x.png")).unwrap();
        let ev = from_bytes.provenance.clone().expect("inspected");
        assert_eq!(ev.verdict, Verdict::Ai);
        let plain = ens.prepare(&img);
        assert!(plain.provenance.is_none());
        assert_eq!(plain.inputs, from_bytes.inputs);
        // A decisive signal: an intact AI credential.
        let mut credential = ev.clone();
        credential.signals.insert(
            0,
            Signal::new(
                SignalKind::C2pa,
                Verdict::Ai,
                Strength::SignedUntrusted,
                "credential".into(),
            ),
        );
        let decisive = Prepared {
            provenance: Some(credential),
            ..plain.clone()
        };
        let none = Prepared {
            provenance: Some(Evidence {
                signals: vec![],
                verdict: Verdict::None,
                ..ev.clone()
            }),
            ..plain.clone()
        };
        let batch = ens.batch_of([plain, from_bytes, decisive, none]);
        for passes in [score::Passes::AcrossCores, score::Passes::ThisThread] {
            let d = ens.score_with(&batch, passes);
            // Pixels alone: no record. Metadata claims and NONE: reported, label unchanged.
            assert!(d[0].provenance.is_none());
            assert_eq!(d[1].provenance.as_ref().unwrap().verdict, Verdict::Ai);
            assert_eq!(d[3].provenance.as_ref().unwrap().verdict, Verdict::None);
            for k in [1, 3] {
                assert_eq!((&d[k].label, &d[k].reason), (&d[0].label, &d[0].reason));
            }
            // The credential decides FAKE; the pixel score stays.
            assert_eq!(d[2].label, "FAKE");
            assert!(
                d[2].reason
                    .as_deref()
                    .unwrap()
                    .starts_with("provenance: C2PA")
            );
            assert!(d[1..].iter().all(|x| x.p_fake == d[0].p_fake));
        }
        // Undecodable bytes are an error naming the file.
        let err = ens
            .prepare_bytes(b"not an image", Path::new("junk.png"))
            .unwrap_err();
        assert!(err.to_string().contains("junk.png"), "{err}");
    }
}
