//! Class-activation maps: where in an image a detector looks when it calls it FAKE (or REAL).
//!
//! A [`Cam`] is built once from (detector, layer, method); [`Cam::maps`] then cuts the network at that block (`features(x, k)`), makes those activations an
//! autodiff leaf, runs the rest of the network (`classify_from(A, k)`) and back-propagates the
//! target class's logit to get dY/dA. The network's weights stay plain (no autodiff) and in
//! inference mode: the detector's network is a `valid()` snapshot, so batch-norm uses its
//! running statistics, and burn treats plain tensors as constants when they meet autodiff ones.
//!
//! * Grad-CAM (Selvaraju et al. 2017): w_c = mean_ij dY/dA_cij, map = relu(Σ_c w_c A_c).
//! * Grad-CAM++ (Chattopadhay et al. 2018), in the closed form of pytorch-grad-cam:
//!   α_cij = g² / (2g² + Σ_ab A_cab · g³), w_c = Σ_ij α_cij · relu(g_cij).
//!
//! Maps are min-max normalised to [0, 1] at the layer's resolution; [`render`] upsamples,
//! colours and blends them over the original image, and [`explain_paths`] is the
//! `synthscan explain` command's whole job.

pub mod members;
pub mod render;

use crate::data::{self, ImageSet};
use crate::detector::Detector;
use crate::ensemble::Ensemble;
use crate::error::{Error, Result};
use burn::prelude::*;
use image::RgbImage;
pub use members::EnsembleCam;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use render::{CamFiles, jet, overlay, upsample, write_outputs};

/// Images per backward pass in [`cam_set`].
const CAM_BATCH: usize = 64;

/// How channel weights are derived from the gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub enum CamMethod {
    #[default]
    #[serde(rename = "gradcam")]
    GradCam,
    #[serde(rename = "gradcam++")]
    GradCamPlusPlus,
}

impl CamMethod {
    pub const ALL: [CamMethod; 2] = [CamMethod::GradCam, CamMethod::GradCamPlusPlus];

    pub fn name(self) -> &'static str {
        match self {
            CamMethod::GradCam => "gradcam",
            CamMethod::GradCamPlusPlus => "gradcam++",
        }
    }

    /// The weight of one channel from its activations `a` and gradients `g` (one plane each):
    /// the only thing that differs between methods.
    fn channel_weight(self, a: &[f32], g: &[f32]) -> f32 {
        match self {
            CamMethod::GradCam => g.iter().sum::<f32>() / g.len().max(1) as f32,
            CamMethod::GradCamPlusPlus => {
                let sum_a: f32 = a.iter().sum();
                g.iter()
                    .map(|&gi| {
                        let g2 = gi * gi;
                        let denom = 2.0 * g2 + sum_a * g2 * gi;
                        let alpha = if gi != 0.0 { g2 / (denom + 1e-7) } else { 0.0 };
                        alpha * gi.max(0.0)
                    })
                    .sum()
            }
        }
    }
}

impl std::str::FromStr for CamMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::Invalid(format!("method '{s}': expected gradcam or gradcam++")))
    }
}

/// Which class's evidence to map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CamTarget {
    #[default]
    Fake,
    Real,
    /// The class the detector decides on (p_fake against its threshold).
    Predicted,
}

impl std::str::FromStr for CamTarget {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fake" => Ok(CamTarget::Fake),
            "real" => Ok(CamTarget::Real),
            "predicted" => Ok(CamTarget::Predicted),
            _ => Err(Error::Invalid(format!(
                "target '{s}': expected fake, real or predicted"
            ))),
        }
    }
}

/// One image's class-activation map at the resolution of the layer it was taken at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CamMap {
    pub width: usize,
    pub height: usize,
    /// Row-major `height`×`width` values in [0, 1].
    pub values: Vec<f32>,
    /// Class index the map explains (0 REAL, 1 FAKE).
    pub target: u8,
    /// Its name as the model calls it.
    pub target_name: String,
    /// The detector's score for the image (with flip averaging when the model asks for it).
    pub p_fake: f32,
    /// The detector's verdict for that score.
    pub label: String,
    pub layer: String,
    pub method: CamMethod,
}

impl CamMap {
    /// The value at column `x`, row `y`.
    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.values[y * self.width + x]
    }

    /// (x, y) of the largest value (the first one in row-major order on ties).
    pub fn peak(&self) -> (usize, usize) {
        let i = argmax(&self.values);
        (i % self.width.max(1), i / self.width.max(1))
    }

    /// The raw map as CSV: one line per row, `width` comma-separated values.
    pub fn to_csv(&self) -> String {
        let mut out = String::with_capacity(self.values.len() * 9);
        for row in self.values.chunks(self.width.max(1)) {
            let line: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }
}

/// Index of the largest value (the first on ties; 0 for an empty slice).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// A block's name and the shape of its output for one input image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerInfo {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// Every block a map can be taken at, with its output shape at the model's input size.
pub fn layers(detector: &Detector) -> Vec<LayerInfo> {
    let s = detector.meta.input_size as usize;
    let x = Tensor::<4>::zeros([1, 3, s, s], detector.device());
    detector
        .network
        .layer_names()
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let [_, channels, height, width] = detector.network.features(x.clone(), k).dims();
            LayerInfo {
                name: name.clone(),
                channels,
                height,
                width,
            }
        })
        .collect()
}

/// Smallest map side the default layer may have: a 2×2 map says little about where.
const MIN_DEFAULT_SIDE: usize = 4;

/// Block index for a layer name; `None` picks the last block whose map is at least 4×4 (the
/// last block when none is).
pub fn resolve_layer(detector: &Detector, layer: Option<&str>) -> Result<usize> {
    let names = detector.network.layer_names();
    match layer {
        Some(name) => detector.network.layer_index(name),
        None if names.is_empty() => {
            Err(Error::Model("the network has no blocks to explain".into()))
        }
        None => Ok(layers(detector)
            .iter()
            .rposition(|l| l.height.min(l.width) >= MIN_DEFAULT_SIDE)
            .unwrap_or(names.len() - 1)),
    }
}

/// Class-activation maps of one detector at one layer with one method: built once (the layer
/// is resolved here), then asked for maps of any number of images.
pub struct Cam<'a> {
    detector: &'a Detector,
    layer: usize,
    method: CamMethod,
}

impl<'a> Cam<'a> {
    /// `layer`: a block name, or `None` for the last block with a map of at least 4×4.
    pub fn new(detector: &'a Detector, layer: Option<&str>, method: CamMethod) -> Result<Self> {
        Ok(Self {
            detector,
            layer: resolve_layer(detector, layer)?,
            method,
        })
    }

    /// The name of the block the maps are taken at.
    pub fn layer_name(&self) -> &str {
        &self.detector.network.layer_names()[self.layer]
    }

    /// The map for one decoded image (any size; it is resized to the model's input like `predict`).
    pub fn map(&self, image: &RgbImage, target: CamTarget) -> Result<CamMap> {
        let set = self.detector.single(image.clone());
        self.maps(&set, target)?
            .pop()
            .ok_or_else(|| Error::Model("no map was produced".into()))
    }

    /// Maps for every image of a set at the model's input size, one backward pass per batch.
    pub fn maps(&self, set: &ImageSet, target: CamTarget) -> Result<Vec<CamMap>> {
        let det = self.detector;
        if set.size != det.meta.input_size {
            return Err(Error::Invalid(format!(
                "images are {0}x{0}, the model takes {1}x{1}",
                set.size, det.meta.input_size
            )));
        }
        let indices: Vec<usize> = (0..set.len()).collect();
        let mut maps = Vec::with_capacity(set.len());
        for chunk in indices.chunks(CAM_BATCH) {
            let x = det.input_tensor(set, chunk);
            let scores = det.score_tensor(x.clone());
            let targets: Vec<u8> = scores
                .iter()
                .map(|&p| match target {
                    CamTarget::Fake => data::FAKE,
                    CamTarget::Real => data::REAL,
                    CamTarget::Predicted => det.class_of(p),
                })
                .collect();
            let (acts, grads, [_, c, h, w]) = layer_gradients(det, x, self.layer, &targets)?;
            let per = c * h * w;
            for (i, (&p, &t)) in scores.iter().zip(&targets).enumerate() {
                let a = &acts[i * per..(i + 1) * per];
                let g = &grads[i * per..(i + 1) * per];
                maps.push(CamMap {
                    width: w,
                    height: h,
                    values: combine(a, g, c, h * w, self.method),
                    target: t,
                    target_name: det.class_name(t).to_string(),
                    p_fake: p,
                    label: det.decide(p).label,
                    layer: self.layer_name().to_string(),
                    method: self.method,
                });
            }
        }
        Ok(maps)
    }
}

fn to_vec(t: Tensor<4>) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Model(format!("cannot read tensor: {e:?}")))
}

/// Activations A after block `k` and dY_target/dA for a batch, as flat NCHW vectors, with the
/// activations' shape. `targets[i]` is the class whose logit is differentiated for image `i`
/// (images do not interact in inference mode, so one backward of the sum serves the batch).
pub(crate) fn layer_gradients(
    detector: &Detector,
    x: Tensor<4>,
    k: usize,
    targets: &[u8],
) -> Result<(Vec<f32>, Vec<f32>, [usize; 4])> {
    let network = &detector.network;
    let feats = network.features(x.without_autodiff(), k);
    let dims = feats.dims();
    let leaf = feats.detach().autodiff().require_grad();
    let logits = network.classify_from(leaf.clone(), k);
    let [b, classes] = logits.dims();
    if b != targets.len() {
        return Err(Error::Model(format!(
            "{b} logits rows for {} targets",
            targets.len()
        )));
    }
    let mask: Vec<f32> = targets
        .iter()
        .flat_map(|&t| (0..classes).map(move |j| (j == t as usize) as u8 as f32))
        .collect();
    let mask = Tensor::<2>::from_data(
        TensorData::new(mask, [b, classes]),
        &leaf.device().without_autodiff(),
    );
    let score = (logits * mask).sum();
    let grads = score.backward();
    let grad = leaf
        .grad(&grads)
        .ok_or_else(|| Error::Model(format!("no gradient reached layer {k}")))?;
    let acts = to_vec(leaf.without_autodiff())?;
    Ok((acts, to_vec(grad)?, dims))
}

/// One image's map from its activations and gradients (`channels` planes of `plane` values).
fn combine(
    acts: &[f32],
    grads: &[f32],
    channels: usize,
    plane: usize,
    method: CamMethod,
) -> Vec<f32> {
    let mut map = vec![0f32; plane];
    for c in 0..channels {
        let a = &acts[c * plane..(c + 1) * plane];
        let g = &grads[c * plane..(c + 1) * plane];
        let weight = method.channel_weight(a, g);
        for (m, &av) in map.iter_mut().zip(a) {
            *m += weight * av;
        }
    }
    for m in &mut map {
        *m = if m.is_finite() { m.max(0.0) } else { 0.0 };
    }
    normalize(&mut map);
    map
}

/// Min-max scale into [0, 1]; a flat map becomes all zeros.
fn normalize(map: &mut [f32]) {
    let min = map.iter().copied().fold(f32::INFINITY, f32::min);
    let max = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let range = max - min;
    for m in map.iter_mut() {
        *m = if range > 1e-12 {
            ((*m - min) / range).clamp(0.0, 1.0)
        } else {
            0.0
        };
    }
}

/// What `synthscan explain` is asked for.
#[derive(Clone, Debug)]
pub struct ExplainOptions {
    pub layer: Option<String>,
    pub method: CamMethod,
    pub target: CamTarget,
    /// Folder for the output files.
    pub out_dir: PathBuf,
    /// Opacity of the heat map over the image.
    pub alpha: f32,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        Self {
            layer: None,
            method: CamMethod::GradCam,
            target: CamTarget::Fake,
            out_dir: PathBuf::from("explain"),
            alpha: render::DEFAULT_ALPHA,
        }
    }
}

/// One explained image: its map and the files written for it.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub map: CamMap,
    pub files: CamFiles,
}

/// Explain every input (files, or folders searched recursively) with a model or an ensemble
/// (the members' mean map, [`EnsembleCam`]). A bad layer name fails the whole call; a bad image
/// only its own entry, which names the file.
pub fn explain_paths(
    ensemble: &Ensemble,
    inputs: &[PathBuf],
    opts: &ExplainOptions,
) -> Result<Vec<(PathBuf, Result<Explanation>)>> {
    // Built once: the default layer is found by running the network on a blank image.
    let layers: Vec<String> = opts.layer.iter().cloned().collect();
    let cam = EnsembleCam::new(ensemble, &layers, opts.method)?;
    let mut stems = HashSet::new();
    let mut out = Vec::new();
    for item in data::expand_inputs(inputs) {
        let (path, result) = match item {
            Ok(path) => {
                let r = explain_file(&cam, &path, opts, &mut stems);
                (path, r)
            }
            Err((path, msg)) => {
                let e = Error::dataset(&path, msg);
                (path, Err(e))
            }
        };
        out.push((path, result));
    }
    Ok(out)
}

fn explain_file(
    cam: &EnsembleCam,
    path: &Path,
    opts: &ExplainOptions,
    stems: &mut HashSet<String>,
) -> Result<Explanation> {
    let image = data::decode::read_rgb(path)?;
    let map = cam.map(&image, opts.target)?;
    let stem = unique_stem(path, stems);
    let files = write_outputs(&map, &image, &opts.out_dir, &stem, opts.alpha)?;
    Ok(Explanation { map, files })
}

/// The file stem, suffixed `-2`, `-3`, … when an earlier input already used it.
fn unique_stem(path: &Path, used: &mut HashSet<String>) -> String {
    let base = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "image".into());
    let mut stem = base.clone();
    let mut n = 2;
    while !used.insert(stem.clone()) {
        stem = format!("{base}-{n}");
        n += 1;
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Normalization;
    use crate::detector::{ModelMeta, default_device};
    use crate::model::{Activation, ArchConfig, CnnConfig, GlobalPool, StageConfig};

    fn detector(
        pool: GlobalPool,
        hidden: Vec<usize>,
        activation: Activation,
        input: u32,
    ) -> Detector {
        let arch = ArchConfig::Cnn(CnnConfig {
            stem: 4,
            stem_stride: 1,
            stages: vec![
                StageConfig {
                    channels: 6,
                    convs: 1,
                    pool: true,
                },
                StageConfig {
                    channels: 8,
                    convs: 2,
                    pool: true,
                },
            ],
            kernel: 3,
            batch_norm: true,
            activation,
            global_pool: pool,
            hidden,
            dropout: 0.0,
        });
        let device = default_device();
        device.seed(11);
        let meta = ModelMeta::untrained(arch.clone(), input, Normalization::unit());
        let net = arch.init(input as usize, &device);
        Detector::new(meta, net, device)
    }

    fn picture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 9) as u8, ((x * y) % 256) as u8])
        })
    }

    #[test]
    fn maps_have_the_layer_resolution_and_unit_range() {
        let det = detector(GlobalPool::Max, vec![], Activation::Relu, 32);
        let info = layers(&det);
        let names: Vec<&str> = info.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["stem", "stage1", "stage2"]);
        assert_eq!(
            (info[0].channels, info[0].height, info[0].width),
            (4, 32, 32)
        );
        assert_eq!(
            (info[1].channels, info[1].height, info[1].width),
            (6, 16, 16)
        );
        assert_eq!((info[2].channels, info[2].height, info[2].width), (8, 8, 8));
        for (img, label) in [(picture(32, 32), "square"), (picture(40, 24), "40x24")] {
            for l in &info {
                for method in [CamMethod::GradCam, CamMethod::GradCamPlusPlus] {
                    let cam = Cam::new(&det, Some(&l.name), method).unwrap();
                    let map = cam.map(&img, CamTarget::Predicted).unwrap();
                    assert_eq!(
                        (map.width, map.height),
                        (l.width, l.height),
                        "{label} {}",
                        l.name
                    );
                    assert_eq!(map.values.len(), l.width * l.height);
                    assert!(map.values.iter().all(|v| (0.0..=1.0).contains(v)));
                    assert_eq!(map.layer, l.name);
                    assert_eq!(map.target, (map.p_fake >= 0.5) as u8);
                    assert_eq!(map.label, det.decide(map.p_fake).label);
                }
            }
        }
        // The default layer is the last block.
        let map = Cam::new(&det, None, CamMethod::GradCam)
            .unwrap()
            .map(&picture(40, 24), CamTarget::Real)
            .unwrap();
        assert_eq!(
            (map.layer.as_str(), map.width, map.height, map.target),
            ("stage2", 8, 8, 0)
        );
        assert_eq!(map.target_name, "REAL");
        // p_fake agrees with plain scoring.
        let p = det.score_set(&det.single(picture(40, 24)))[0];
        assert!((map.p_fake - p).abs() < 1e-6);
    }

    #[test]
    fn default_layer_skips_maps_smaller_than_four_pixels() {
        // The embedded default ends in a 2×2 block (stage3); its default map is stage2's 4×4.
        let det = Detector::embedded().unwrap();
        let all = layers(&det);
        let k = resolve_layer(&det, None).unwrap();
        assert!(all[k].height >= 4 && all[k].width >= 4, "{:?}", all[k]);
        assert!(
            all[k + 1..].iter().all(|l| l.height.min(l.width) < 4),
            "a later block has a map of 4×4 or more: {all:?}"
        );
    }

    #[test]
    fn unknown_layer_and_wrong_size_are_errors() {
        let det = detector(GlobalPool::Max, vec![], Activation::Relu, 16);
        let err = Cam::new(&det, Some("conv9"), CamMethod::GradCam)
            .err()
            .unwrap();
        assert!(err.to_string().contains("conv9"), "{err}");
        let set = ImageSet {
            size: 8,
            pixels: vec![0; 8 * 8 * 3],
            labels: vec![0],
            paths: vec![],
        };
        let cam = Cam::new(&det, None, CamMethod::GradCam).unwrap();
        assert!(cam.maps(&set, CamTarget::Fake).is_err());
        assert!("gradcam".parse::<CamMethod>().is_ok());
        let bad = "gradcam3".parse::<CamMethod>().unwrap_err();
        assert!(bad.to_string().contains("gradcam3"), "{bad}");
        assert_eq!(
            "predicted".parse::<CamTarget>().unwrap(),
            CamTarget::Predicted
        );
        assert!("both".parse::<CamTarget>().is_err());
    }

    /// dY/dA from autodiff must match finite differences through `classify_from`.
    #[test]
    fn layer_gradients_match_finite_differences() {
        let det = detector(GlobalPool::Avg, vec![5], Activation::Gelu, 16);
        let set = det.single(picture(16, 16));
        let x = det.input_tensor(&set, &[0]);
        let k = 1;
        let (acts, grads, dims) = layer_gradients(&det, x, k, &[data::FAKE]).unwrap();
        let [_, c, h, w] = dims;
        let device = det.device().clone();
        let logit = |a: &[f32]| -> f32 {
            let t = Tensor::<4>::from_data(TensorData::new(a.to_vec(), [1, c, h, w]), &device);
            let l = det
                .network
                .classify_from(t, k)
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap();
            l[1]
        };
        let eps = 1e-2;
        let mut checked = 0;
        for i in (0..acts.len()).step_by(37) {
            let mut plus = acts.clone();
            plus[i] += eps;
            let mut minus = acts.clone();
            minus[i] -= eps;
            let numeric = (logit(&plus) - logit(&minus)) / (2.0 * eps);
            assert!(
                (numeric - grads[i]).abs() < 2e-3 + 0.05 * grads[i].abs(),
                "element {i}: numeric {numeric}, autodiff {}",
                grads[i]
            );
            checked += 1;
        }
        assert!(checked > 10);
        assert!(
            grads.iter().any(|g| g.abs() > 1e-6),
            "all gradients are zero"
        );
    }

    #[test]
    fn gradcam_and_gradcam_plus_plus_weights() {
        // Two channels of four pixels: channel 0 has positive gradients, channel 1 negative.
        let acts = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0];
        let grads = [0.5, 0.5, 0.5, 0.5, -0.5, -0.5, -0.5, -0.5];
        let m = combine(&acts, &grads, 2, 4, CamMethod::GradCam);
        // raw = [0.5, 0, 0, -1] → relu → [0.5, 0, 0, 0] → normalised.
        assert_eq!(m, vec![1.0, 0.0, 0.0, 0.0]);
        let m = combine(&acts, &grads, 2, 4, CamMethod::GradCamPlusPlus);
        assert_eq!(m, vec![1.0, 0.0, 0.0, 0.0]);
        // Grad-CAM++ closed form for one channel: alpha = g²/(2g² + ΣA·g³).
        let acts = [1.0, 3.0];
        let grads = [0.2, 0.4];
        let w: f32 = grads
            .iter()
            .map(|&g: &f32| g * g / (2.0 * g * g + 4.0 * g * g * g) * g)
            .sum();
        let raw = [w * 1.0, w * 3.0];
        let m = combine(&acts, &grads, 1, 2, CamMethod::GradCamPlusPlus);
        assert!(
            (m[0] - 0.0).abs() < 1e-6 && (m[1] - 1.0).abs() < 1e-6,
            "{m:?} from {raw:?}"
        );
        // A flat map is all zeros, not NaN.
        assert_eq!(
            combine(&[1.0, 1.0], &[0.0, 0.0], 1, 2, CamMethod::GradCam),
            vec![0.0, 0.0]
        );
    }

    #[test]
    fn csv_peak_and_stems() {
        let map = CamMap {
            width: 3,
            height: 2,
            values: vec![0.0, 0.25, 0.5, 1.0, 0.75, 0.0],
            target: 1,
            target_name: "FAKE".into(),
            p_fake: 0.9,
            label: "FAKE".into(),
            layer: "stage2".into(),
            method: CamMethod::GradCam,
        };
        assert_eq!(
            map.to_csv(),
            "0.000000,0.250000,0.500000\n1.000000,0.750000,0.000000\n"
        );
        assert_eq!(map.peak(), (0, 1));
        assert_eq!(map.at(2, 0), 0.5);
        let mut used = HashSet::new();
        assert_eq!(unique_stem(Path::new("a/cat.png"), &mut used), "cat");
        assert_eq!(unique_stem(Path::new("b/cat.jpg"), &mut used), "cat-2");
        assert_eq!(unique_stem(Path::new("c/cat.webp"), &mut used), "cat-3");
    }
}
