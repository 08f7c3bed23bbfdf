//! [`Detector`]: everything needed to turn image bytes into a verdict, saved as one file.
//!
//! File layout: `SYNTHSCAN\0`, u32 format version, u64 length of the JSON metadata, the JSON
//! metadata ([`ModelMeta`]), then the weights as a burnpack record.

use crate::data::{self, ImageSet, Normalization};
use crate::decision::calibration::{self, CalibrationFacts};
use crate::decision::{Decision, Domain, UNCERTAIN, class_at, unjudgeable};
use crate::error::{Error, Result};
use crate::model::container;
use crate::model::{ArchConfig, CnnEngine, Network};
use burn::prelude::*;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Images scored per forward pass.
pub const INFER_BATCH: usize = 256;

/// Pixels of one forward pass over images larger than 64 px a side: two images at 224 px.
const LARGE_PASS_PIXELS: usize = 2 * 224 * 224;

fn is_resize(p: &crate::data::prepare::Preprocess) -> bool {
    *p == crate::data::prepare::Preprocess::Resize
}

/// What a model file says about itself besides its weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    pub arch: ArchConfig,
    pub input_size: u32,
    pub normalization: Normalization,
    pub class_names: Vec<String>,
    /// Decision threshold on p_fake, chosen on validation data.
    pub threshold: f32,
    /// Average with the mirrored image at prediction time.
    pub tta: bool,
    /// How an image of another size becomes the square input (resize or native-resolution crop).
    #[serde(default, skip_serializing_if = "is_resize")]
    pub preprocess: crate::data::prepare::Preprocess,
    /// Free-form provenance: run name, seed, data counts, validation metrics.
    #[serde(default)]
    pub provenance: serde_json::Value,
    /// Temperature T of the calibrated p_fake = softmax(logits / T)[FAKE] (1: uncalibrated).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub temperature: f32,
    /// A monotone correction applied after the temperature (fitted on validation with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isotonic: Option<calibration::Isotonic>,
    /// p_fake in `[lo, hi)` is answered UNCERTAIN: outside it the validation answers were at
    /// least `calibration.target_accuracy` right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertain: Option<[f32; 2]>,
    /// Quantiles of the REAL validation scores, so that `--max-fpr` can pick a threshold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub real_quantiles: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationFacts>,
    /// The image sizes the model may judge; absent: inferred from the input size
    /// ([`Domain::for_input`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Domain>,
}

fn one() -> f32 {
    1.0
}

fn is_one(v: &f32) -> bool {
    *v == 1.0
}

impl ModelMeta {
    /// Metadata for a freshly built network: REAL/FAKE classes, threshold 0.5, no TTA.
    pub fn untrained(arch: ArchConfig, input_size: u32, normalization: Normalization) -> Self {
        Self {
            arch,
            input_size,
            normalization,
            class_names: data::CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
            threshold: 0.5,
            tta: false,
            preprocess: Default::default(),
            provenance: serde_json::Value::Null,
            temperature: 1.0,
            isotonic: None,
            uncertain: None,
            real_quantiles: Vec::new(),
            calibration: None,
            domain: None,
        }
    }

    /// The image sizes the model may judge: its stored domain, or the one its input size implies.
    pub fn domain(&self) -> Domain {
        self.domain
            .unwrap_or_else(|| Domain::for_input(self.input_size))
    }
}

/// The compute device: the first enabled GPU backend, else the CPU one (`BURN_DEVICE` overrides).
pub fn default_device() -> Device {
    Device::default()
}

/// Images per forward pass when `n` images of `size`×`size` are scored with `passes` passes side
/// by side: small enough that every pass gets a share, and at most [`INFER_BATCH`] images of
/// 32×32 or as many pixels (5 images at 224×224), so that activations stay in memory that is
/// reused rather than mapped and unmapped for every pass.
pub fn pass_size(n: usize, passes: usize, size: usize) -> usize {
    n.div_ceil(passes.max(1)).clamp(1, images_per_pass(size))
}

/// The most images of `size`×`size` one forward pass takes.
pub fn images_per_pass(size: usize) -> usize {
    // Photographs' networks hold activations of megabytes per image: passes of two images at
    // 224 px keep them in the cores' cache, where passes of five ran 0.7× as fast (bench
    // --reference, batch 16).
    let pixels = if size > 64 {
        LARGE_PASS_PIXELS
    } else {
        INFER_BATCH * 32 * 32
    };
    (pixels / (size * size).max(1)).clamp(1, INFER_BATCH)
}

/// How many passes to run side by side on `device`: one per core on the CPU backends (each of
/// their passes uses one core), one on a GPU (which parallelises inside the pass).
pub fn parallel_passes(device: &Device) -> usize {
    if is_cpu(device) {
        rayon::current_num_threads()
    } else {
        1
    }
}

/// Whether `device` (with or without autodiff) is one of the CPU backends.
fn is_cpu(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if *device == Device::ndarray() {
        return true;
    }
    let _ = device;
    false
}

pub struct Detector {
    pub meta: ModelMeta,
    pub network: Network,
    /// What the model is called in answers: its file stem, or `default` when embedded.
    pub name: String,
    device: Device,
    /// The channels-last CPU path for plain ReLU CNNs, compiled from `network` when it is
    /// built (see [`CnnEngine`]); `None` on a GPU, for other networks, or with
    /// `SYNTHSCAN_INFERENCE=burn` (the reference path, for comparisons).
    engine: Option<CnnEngine>,
}

impl Detector {
    pub fn new(meta: ModelMeta, network: Network, device: Device) -> Self {
        let network = network.valid();
        let use_engine =
            is_cpu(&device) && std::env::var("SYNTHSCAN_INFERENCE").map_or(true, |v| v != "burn");
        Self {
            engine: use_engine
                .then(|| crate::model::engine::compile(&network))
                .flatten(),
            meta,
            network,
            name: "model".into(),
            device,
        }
    }

    /// Whether scoring runs on the compiled CPU path rather than burn's modules.
    pub fn uses_engine(&self) -> bool {
        self.engine.is_some()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The built-in CIFAKE model, the one network of commands that take one (`calibrate`,
    /// `bench`, `gan`) when no `--model` is given.
    pub fn embedded() -> Result<Self> {
        let (bytes, label) = crate::zoo::named(Path::new("cifake"))
            .ok_or_else(|| Error::Model("the built-in cifake model is missing".into()))?;
        let mut det = Self::from_bytes(bytes, Path::new(label))?;
        det.name = "cifake".into();
        Ok(det)
    }

    /// Load `path`, or the embedded default model when `None`.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(p) if !p.exists() && crate::zoo::named(p).is_some() => {
                let (bytes, label) = crate::zoo::named(p).unwrap_or_default();
                let mut det = Self::from_bytes(bytes, Path::new(label))?;
                det.name = p.display().to_string();
                Ok(det)
            }
            Some(p) => Self::load(p),
            None => Self::embedded(),
        }
    }

    /// Load a model file; it is named after the file (after the file a link points to, so that
    /// `current.synthscan → adapted-v2.synthscan` answers as `adapted-v2`).
    pub fn load(path: &Path) -> Result<Self> {
        let mut det = Self::from_bytes(&crate::error::read_file(path)?, path)?;
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(stem) = target.file_stem() {
            det.name = stem.to_string_lossy().into_owned();
        }
        Ok(det)
    }

    /// Parse a model file's bytes; `path` names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |m: String| Error::ModelFile {
            path: path.to_path_buf(),
            message: m,
        };
        let parts = container::decode(container::Kind::Model, bytes, path)?;
        let meta: ModelMeta =
            serde_json::from_slice(parts.header).map_err(|e| bad(format!("metadata: {e}")))?;
        meta.arch
            .validate(meta.input_size as usize)
            .map_err(|e| bad(e.to_string()))?;
        let record =
            ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(parts.payload.to_vec()))
                .map_err(|e| bad(format!("weights: {e}")))?;
        let device = default_device();
        let network = meta
            .arch
            .init(meta.input_size as usize, &device)
            .try_load_record(record)
            .map_err(|e| bad(format!("weights do not fit the architecture: {e}")))?;
        Ok(Self::new(meta, network, device))
    }

    /// Serialise to the model-file format.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode_model(&self.meta, self.network.clone())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::error::write_file(path, self.to_bytes()?)
    }

    /// The class a score falls in: FAKE at or above the threshold, else REAL.
    pub fn class_of(&self, p_fake: f32) -> u8 {
        class_at(p_fake, self.meta.threshold)
    }

    /// The model's name for class 0 (REAL) or 1 (FAKE).
    pub fn class_name(&self, class: u8) -> &str {
        let i = (class as usize).min(1);
        self.meta
            .class_names
            .get(i)
            .map(String::as_str)
            .unwrap_or(data::CLASS_NAMES[i])
    }

    /// The verdict for a score: UNCERTAIN inside the model's uncertain band, else the class
    /// the threshold gives.
    pub fn decide(&self, p_fake: f32) -> Decision {
        if let Some([lo, hi]) = self.meta.uncertain
            && p_fake >= lo
            && p_fake < hi
        {
            return self.uncertain(
                p_fake,
                format!("p_fake is in the uncertain band [{lo:.3}, {hi:.3}) of this model"),
            );
        }
        Decision {
            p_fake,
            label: self.class_name(self.class_of(p_fake)).to_string(),
            threshold: self.meta.threshold,
            reason: None,
            model: self.name.clone(),
            provenance: None,
        }
    }

    /// The verdict for a score of a `width`×`height` image: UNCERTAIN for shapes no detector was
    /// trained on (a shorter side under [`crate::decision::MIN_SIDE`] or sides more than
    /// [`crate::decision::MAX_ASPECT`]-fold apart) and for sizes outside this model's domain.
    pub fn decide_image(&self, p_fake: f32, width: u32, height: u32) -> Decision {
        let refused =
            unjudgeable(width, height).or_else(|| self.meta.domain().refuses(width, height));
        match refused {
            Some(reason) => self.uncertain(p_fake, reason),
            None => self.decide(p_fake),
        }
    }

    fn uncertain(&self, p_fake: f32, reason: String) -> Decision {
        Decision {
            p_fake,
            label: UNCERTAIN.into(),
            threshold: self.meta.threshold,
            reason: Some(reason),
            model: self.name.clone(),
            provenance: None,
        }
    }

    /// Set the threshold that keeps false alarms on REAL validation images within `budget`
    /// (from the quantiles stored at calibration); the uncertain band is widened to include it.
    pub fn set_max_fpr(&mut self, budget: f64) -> Result<()> {
        let m = &mut self.meta;
        (m.threshold, m.uncertain) =
            calibration::budget_threshold(&m.real_quantiles, m.uncertain, budget).ok_or_else(
                || {
                    Error::Invalid(format!(
                        "--max-fpr {budget}: {} has no stored validation quantiles (calibrate it \
                         first: synthscan calibrate) or the budget is outside [0, 1]",
                        self.name
                    ))
                },
            )?;
        Ok(())
    }

    /// Fit the temperature on a labelled validation set; then either choose the threshold by
    /// `rule` on the calibrated scores or (`None`) map the current one through the temperature so
    /// decisions stay the same; store the REAL score quantiles and choose the uncertain band for
    /// `target_accuracy` ([`calibration::fit_after_temperature`]). Returns the calibrated
    /// validation scores with the facts.
    pub fn calibrate(
        &mut self,
        val: &ImageSet,
        target_accuracy: f64,
        rule: Option<crate::decision::ThresholdRule>,
    ) -> (Vec<f32>, CalibrationFacts) {
        self.calibrate_with(&val.labels, target_accuracy, rule, |det| det.score_set(val))
    }

    /// [`Self::calibrate`] from scores already computed without calibration (temperature 1, no
    /// correction, no flip TTA): the temperature is applied to their logit margins. Used where
    /// the scores come from cached features rather than images (`adapt`).
    pub fn calibrate_scores(
        &mut self,
        raw: &[f32],
        labels: &[u8],
        target_accuracy: f64,
        rule: Option<crate::decision::ThresholdRule>,
    ) -> (Vec<f32>, CalibrationFacts) {
        debug_assert!(!self.meta.tta);
        self.calibrate_with(labels, target_accuracy, rule, |det| {
            let t = det.meta.temperature;
            raw.iter()
                .map(|&p| calibration::sigmoid(calibration::margin(p) / t))
                .collect()
        })
    }

    /// The calibration both entry points share; `score` gives the validation scores under the
    /// detector's current temperature (no correction).
    fn calibrate_with(
        &mut self,
        labels: &[u8],
        target_accuracy: f64,
        rule: Option<crate::decision::ThresholdRule>,
        score: impl Fn(&Self) -> Vec<f32>,
    ) -> (Vec<f32>, CalibrationFacts) {
        let (old_t, old_iso) = (self.meta.temperature, self.meta.isotonic.take());
        let old_threshold = self.meta.threshold;
        self.meta.temperature = 1.0;
        let before = score(self);
        let margins: Vec<f32> = before.iter().map(|&p| calibration::margin(p)).collect();
        let t = calibration::fit_temperature(&margins, labels);
        self.meta.temperature = t;
        // With flip TTA the temperature applies to each pass before averaging: score again.
        let scaled = score(self);
        let fit = calibration::fit_after_temperature(
            &before,
            &scaled,
            labels,
            target_accuracy,
            |after, iso| match rule {
                Some(rule) => crate::decision::choose_threshold(after, labels, rule),
                None => {
                    calibration::carry_threshold(old_threshold, (old_t, old_iso.as_ref()), (t, iso))
                }
            },
        );
        self.meta.isotonic = Some(fit.isotonic);
        self.meta.threshold = fit.threshold;
        self.meta.real_quantiles = fit.real_quantiles;
        self.meta.uncertain = fit.uncertain;
        self.meta.calibration = Some(fit.facts.clone());
        (fit.scores, fit.facts)
    }

    /// Normalised input tensor for already-resized images.
    pub fn input_tensor(&self, set: &ImageSet, indices: &[usize]) -> Tensor<4> {
        let s = set.size as usize;
        let floats = data::batch_floats(set, indices, &self.meta.normalization, None);
        Tensor::from_data(
            TensorData::new(floats, [indices.len(), 3, s, s]),
            &self.device,
        )
    }

    /// p_fake for a batch tensor (with flip averaging when the model asks for it), through
    /// burn's modules.
    pub fn score_tensor(&self, x: Tensor<4>) -> Vec<f32> {
        let logits = |x: Tensor<4>| {
            let z = self.network.forward(x).into_data();
            z.try_to_vec::<f32>().unwrap_or_default()
        };
        let mirrored = self.meta.tta.then(|| logits(x.clone().flip([3])));
        self.scores_from_logits(logits(x), mirrored)
    }

    /// Pooled backbone features (what the head reads) of square images at the input size, as
    /// prepared RGB bytes: the compiled path when there is one, else burn's modules. `dim`
    /// floats per image, on the calling thread.
    pub fn pooled_features(&self, pixels: &[Vec<u8>]) -> Vec<f32> {
        let s = self.meta.input_size as usize;
        let Some(engine) = &self.engine else {
            let upto = self.network.layer_names().len() - 1;
            let norm = &self.meta.normalization;
            return crate::transfer::features::pooled(
                &self.network,
                upto,
                pixels,
                self.meta.input_size,
                norm,
                &self.device,
            );
        };
        let floats = data::normalize_all(pixels, s, &self.meta.normalization);
        engine.pooled(&floats, pixels.len(), s)
    }

    /// p_fake (calibrated as the model is) from pooled backbone features, `dim` floats per image:
    /// the head alone, as in [`crate::transfer::head`]. Flip TTA is not applied.
    pub fn head_scores(&self, features: &[f32], dim: usize) -> Vec<f32> {
        let n = features.len() / dim.max(1);
        if n == 0 {
            return Vec::new();
        }
        let last = self.network.layer_names().len() - 1;
        let x = Tensor::<4>::from_data(
            TensorData::new(features[..n * dim].to_vec(), [n, dim, 1, 1]),
            &self.device,
        );
        let z = self.network.classify_from(x, last).into_data();
        self.scores_from_logits(z.try_to_vec::<f32>().unwrap_or_default(), None)
    }

    /// Calibrated p_fake from `[n, 2]` logits (row-major), averaged with the mirrored images'
    /// when given: σ((z_FAKE − z_REAL) / T), then the isotonic map. Both scoring paths end here.
    fn scores_from_logits(&self, logits: Vec<f32>, mirrored: Option<Vec<f32>>) -> Vec<f32> {
        let t = self.meta.temperature;
        let probs = |z: Vec<f32>| -> Vec<f32> {
            z.chunks_exact(2)
                .map(|z| calibration::sigmoid((z[1] - z[0]) / t))
                .collect()
        };
        let mut p = probs(logits);
        if let Some(m) = mirrored {
            p.iter_mut()
                .zip(probs(m))
                .for_each(|(a, b)| *a = (*a + b) / 2.0);
        }
        if let Some(iso) = &self.meta.isotonic {
            p.iter_mut().for_each(|v| *v = iso.apply(*v));
        }
        p
    }

    /// p_fake of the images `indices` of a decoded set, as one batch: the compiled path when
    /// there is one, else burn's modules; at most [`images_per_pass`] images per pass.
    pub fn score_batch(&self, set: &ImageSet, indices: &[usize]) -> Vec<f32> {
        self.score_pass(set, indices, false)
    }

    /// [`Self::score_batch`], with the image and mirror passes of flip TTA run side by side on
    /// two cores when `side_by_side` (for fewer images than cores: one photograph).
    fn score_pass(&self, set: &ImageSet, indices: &[usize], side_by_side: bool) -> Vec<f32> {
        let most = images_per_pass(set.size as usize);
        if indices.len() > most {
            return indices
                .chunks(most)
                .flat_map(|chunk| self.score_pass(set, chunk, side_by_side))
                .collect();
        }
        let Some(engine) = &self.engine else {
            return self.score_tensor(self.input_tensor(set, indices));
        };
        let (n, s) = (indices.len(), set.size as usize);
        let floats = data::batch_floats(set, indices, &self.meta.normalization, None);
        // Each row of each channel reversed: the image mirrored left to right.
        let mirror = || {
            let mut m = floats.clone();
            m.chunks_exact_mut(s).for_each(|row| row.reverse());
            engine.logits(&m, n, s)
        };
        let (logits, mirrored) = match (self.meta.tta, side_by_side) {
            (true, true) => {
                let (a, b) = rayon::join(|| engine.logits(&floats, n, s), mirror);
                (a, Some(b))
            }
            // One pass with each layer split across the cores.
            (false, true) => {
                let parts = rayon::current_num_threads();
                (engine.logits_in_parts(&floats, (n, s), parts), None)
            }
            (tta, false) => (engine.logits(&floats, n, s), tta.then(mirror)),
        };
        self.scores_from_logits(logits, mirrored)
    }

    /// p_fake for every image of a decoded set (which must be at the model's input size).
    pub fn score_set(&self, set: &ImageSet) -> Vec<f32> {
        use rayon::prelude::*;
        // The CPU backend runs one forward pass on one core, so batches go through the network
        // side by side, one per core (a batch smaller than one pass per core is split too);
        // order is kept by collecting in chunk order. Fewer images than cores (one photograph)
        // go through one pass, its flip-TTA mirror pass beside it.
        let indices: Vec<usize> = (0..set.len()).collect();
        let passes = parallel_passes(&self.device);
        if passes == 1 || set.len() < passes {
            return self.score_pass(set, &indices, passes > 1);
        }
        indices
            .par_chunks(pass_size(set.len(), passes, set.size as usize))
            .map(|chunk| self.score_batch(set, chunk))
            .collect::<Vec<_>>()
            .concat()
    }

    /// Wrap one decoded image as a one-image set at the model's input size.
    pub fn single(&self, img: image::RgbImage) -> ImageSet {
        self.image_set(std::slice::from_ref(&img))
    }

    /// The model's input pixels for one decoded image of any size: the one place where an
    /// image is brought to the model's input.
    /// Resized, or a native-resolution crop, as the model file says ([`crate::data::prepare::Preprocess`]).
    pub fn prepare(&self, img: &image::RgbImage) -> Vec<u8> {
        data::prepare::prepare(img, self.meta.input_size, self.meta.preprocess).into_raw()
    }

    /// Decoded images of any size as a set at the model's input size (labels REAL).
    pub fn image_set(&self, images: &[image::RgbImage]) -> ImageSet {
        use rayon::prelude::*;
        let pixels: Vec<Vec<u8>> = images.par_iter().map(|i| self.prepare(i)).collect();
        ImageSet {
            size: self.meta.input_size,
            pixels: pixels.concat(),
            labels: vec![0; images.len()],
            paths: vec![],
        }
    }

    pub fn num_params(&self) -> usize {
        self.network.num_params()
    }
}

/// softmax(logits)[FAKE].
pub fn fake_probability(logits: Tensor<2>) -> Tensor<1> {
    let [b, _] = logits.dims();
    burn::tensor::activation::softmax(logits, 1)
        .slice([0..b, 1..2])
        .reshape([b])
}

/// Serialise metadata and a network's weights into model-file bytes.
pub fn encode_model(meta: &ModelMeta, network: Network) -> Result<Vec<u8>> {
    let meta_json = serde_json::to_vec(meta).map_err(|e| Error::Model(e.to_string()))?;
    let weights = network
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Model(format!("cannot serialise weights: {e}")))?;
    Ok(container::encode(
        container::Kind::Model,
        &meta_json,
        &weights,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pass_gets_a_share_of_a_small_batch() {
        assert_eq!(pass_size(64, 2, 32), 32);
        assert_eq!(pass_size(65, 2, 32), 33);
        assert_eq!(pass_size(1, 2, 32), 1);
        assert_eq!(pass_size(0, 2, 32), 1);
        assert_eq!(pass_size(10_000, 2, 32), INFER_BATCH);
        assert_eq!(pass_size(300, 1, 32), INFER_BATCH);
        assert_eq!(pass_size(300, 2, 224), 2);
        assert_eq!(images_per_pass(4096), 1);
    }

    fn tiny() -> Detector {
        let arch = crate::model::preset("cifake-paper").unwrap();
        let device = default_device();
        let meta = ModelMeta {
            threshold: 0.4,
            tta: true,
            ..ModelMeta::untrained(arch.clone(), 16, Normalization::unit())
        };
        Detector::new(meta, arch.init(16, &device), device)
    }

    #[test]
    fn the_compiled_path_scores_like_burns_modules_with_flips_and_temperature() {
        let mut det = tiny();
        det.meta.temperature = 1.7;
        assert!(det.uses_engine(), "a ReLU CNN on the CPU compiles");
        let set = noise_set(5);
        let idx: Vec<usize> = (0..5).collect();
        let fast = det.score_batch(&set, &idx);
        // Burn's modules, by hand: softmax of logits / T, averaged with the mirror.
        let x = det.input_tensor(&set, &idx);
        let prob = |x: Tensor<4>| fake_probability(det.network.forward(x).div_scalar(1.7));
        let reference = ((prob(x.clone()) + prob(x.clone().flip([3]))) / 2.0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let slow = det.score_tensor(x);
        assert_eq!((fast.len(), slow.len()), (5, 5));
        for ((a, b), c) in fast.iter().zip(&reference).zip(&slow) {
            assert!((a - b).abs() < 1e-5, "{fast:?} vs {reference:?}");
            assert!((c - b).abs() < 1e-5, "{slow:?} vs {reference:?}");
        }
        // One image alone: its mirror pass beside it (on more than one core), the same score.
        let one = set.subset(&[3]);
        assert_eq!(det.score_set(&one), det.score_batch(&set, &[3]));
    }

    #[test]
    fn recalibration_keeps_decisions_when_the_threshold_sits_in_a_flat_end_of_the_map() {
        let (mut det, set) = calibration_case();
        det.calibrate(&set, 0.99, None);
        // Above the map's flat top every image is REAL; at its flat bottom every image FAKE.
        for (top, all) in [(true, 0u8), (false, 1)] {
            let iso = det.meta.isotonic.clone().expect("calibrated");
            let threshold = if top {
                iso.y[iso.y.len() - 1].next_up()
            } else {
                iso.y[0]
            };
            det.meta.threshold = threshold;
            assert!(decisions(&det, &set).iter().all(|&c| c == all));
            det.calibrate(&set, 0.99, None);
            assert!(
                decisions(&det, &set).iter().all(|&c| c == all),
                "threshold {threshold}"
            );
        }
    }

    /// The tiny detector without flip averaging and 64 noise images labelled REAL, FAKE, ….
    fn calibration_case() -> (Detector, ImageSet) {
        let mut det = tiny();
        det.meta.tta = false;
        let mut set = noise_set(64);
        set.labels = (0..64).map(|i| (i % 2) as u8).collect();
        (det, set)
    }

    /// The REAL/FAKE decision for each image of `set`.
    fn decisions(det: &Detector, set: &ImageSet) -> Vec<u8> {
        det.score_set(set)
            .iter()
            .map(|&p| det.class_of(p))
            .collect()
    }

    fn noise_set(n: usize) -> ImageSet {
        ImageSet {
            size: 16,
            pixels: (0..n * 16 * 16 * 3).map(|i| (i * 37 % 251) as u8).collect(),
            labels: vec![0; n],
            paths: vec![],
        }
    }

    #[test]
    fn save_load_round_trip_keeps_scores_and_meta() {
        let det = tiny();
        let bytes = det.to_bytes().unwrap();
        let back = Detector::from_bytes(&bytes, Path::new("m.synthscan")).unwrap();
        assert_eq!(back.meta, det.meta);
        let set = noise_set(3);
        let (a, b) = (det.score_set(&set), back.score_set(&set));
        assert_eq!(a.len(), 3);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6);
            assert!((0.0..=1.0).contains(x));
        }
        assert_eq!(det.decide(0.39).label, "REAL");
        assert_eq!(det.decide(0.4).label, "FAKE");
        assert_eq!(det.decide(0.4).threshold, 0.4);
        assert_eq!(det.decide_image(0.9, 1, 1).label, UNCERTAIN);
        assert_eq!(det.decide_image(0.9, 5000, 1).label, UNCERTAIN);
        assert!(
            det.decide_image(0.9, 5000, 1)
                .reason
                .unwrap()
                .contains("5000x1")
        );
        assert_eq!(det.decide_image(0.9, 32, 16).label, "FAKE");
        // A 16 px model judges images up to 32 px a side: a photograph is outside its domain.
        let photo = det.decide_image(0.9, 64, 32);
        assert_eq!(photo.label, UNCERTAIN);
        assert!(
            photo
                .reason
                .unwrap()
                .contains("outside what this model was trained on")
        );
    }

    #[test]
    fn calibration_keeps_decisions_and_stores_band_and_quantiles() {
        let (mut det, set) = calibration_case();
        let before = decisions(&det, &set);
        let (_, facts) = det.calibrate(&set, 0.99, None);
        assert_eq!(
            before,
            decisions(&det, &set),
            "temperature scaling must not change decisions"
        );
        // Calibrating a calibrated model maps its threshold back through the old isotonic map.
        det.calibrate(&set, 0.99, None);
        assert_eq!(
            before,
            decisions(&det, &set),
            "recalibration must not change decisions"
        );
        assert!(det.meta.temperature > 0.0);
        assert!(det.meta.isotonic.as_ref().is_some_and(|m| !m.x.is_empty()));
        assert_eq!(det.meta.real_quantiles.len(), calibration::QUANTILES);
        let [lo, hi] = det.meta.uncertain.unwrap();
        assert!(lo <= det.meta.threshold && det.meta.threshold <= hi);
        assert_eq!(facts.images, 64);
        let back =
            Detector::from_bytes(&det.to_bytes().unwrap(), Path::new("c.synthscan")).unwrap();
        // What decides is stored exactly; the reported facts (f64, through JSON) to within a ULP.
        let (m, b) = (&det.meta, &back.meta);
        assert_eq!(
            (m.temperature, m.threshold, m.uncertain, &m.real_quantiles),
            (b.temperature, b.threshold, b.uncertain, &b.real_quantiles)
        );
        assert_eq!(m.isotonic, b.isotonic);
        let (fm, fb) = (
            m.calibration.clone().unwrap(),
            b.calibration.clone().unwrap(),
        );
        assert!((fm.ece_after - fb.ece_after).abs() < 1e-12 && fm.images == fb.images);
        det.set_max_fpr(0.05).unwrap();
        assert!(
            tiny()
                .set_max_fpr(0.05)
                .unwrap_err()
                .to_string()
                .contains("calibrate")
        );
    }

    #[test]
    fn corrupt_model_files_are_errors_naming_the_file() {
        let bytes = tiny().to_bytes().unwrap();
        for bad in [&b"nonsense"[..], &bytes[..30], &bytes[..bytes.len() - 100]] {
            let err = Detector::from_bytes(bad, Path::new("bad.synthscan"))
                .err()
                .unwrap();
            assert!(err.to_string().contains("bad.synthscan"), "{err}");
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn cpu_devices_run_one_pass_per_core() {
        let threads = rayon::current_num_threads();
        assert_eq!(parallel_passes(&Device::flex()), threads);
        assert_eq!(parallel_passes(&Device::flex().autodiff()), threads);
    }

    #[test]
    fn embedded_model_loads() {
        let det = Detector::embedded().unwrap();
        assert_eq!(det.meta.class_names, vec!["REAL", "FAKE"]);
    }
}
