//! [`Detector`]: everything needed to turn image bytes into a verdict, saved as one file.
//!
//! File layout: `SYNTHSCAN\0`, u32 format version, u64 length of the JSON metadata, the JSON
//! metadata ([`ModelMeta`]), then the weights as a burnpack record.

use crate::data::{self, ImageSet, Normalization};
use crate::error::{Error, Result};
use crate::model::{ArchConfig, Network};
use burn::prelude::*;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 10] = b"SYNTHSCAN\0";
const FORMAT_VERSION: u32 = 1;
/// Images scored per forward pass.
pub const INFER_BATCH: usize = 256;

/// The default detector, compiled into the binary.
static EMBEDDED: &[u8] = include_bytes!("../models/default.synthscan");

fn is_resize(p: &crate::transfer::Preprocess) -> bool {
    *p == crate::transfer::Preprocess::Resize
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
    pub preprocess: crate::transfer::Preprocess,
    /// Free-form provenance: run name, seed, data counts, validation metrics.
    #[serde(default)]
    pub provenance: serde_json::Value,
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
        }
    }
}

/// The compute device: the first enabled GPU backend, else the CPU one (`BURN_DEVICE` overrides).
pub fn default_device() -> Device {
    Device::default()
}

/// How many passes to run side by side on `device`: one per core on the CPU backends (each of
/// their passes uses one core), one on a GPU (which parallelises inside the pass).
pub fn parallel_passes(device: &Device) -> usize {
    let name = format!("{device:?}");
    if name.contains("Flex") || name.contains("NdArray") {
        rayon::current_num_threads()
    } else {
        1
    }
}

pub struct Detector {
    pub meta: ModelMeta,
    pub network: Network,
    device: Device,
}

impl Detector {
    pub fn new(meta: ModelMeta, network: Network, device: Device) -> Self {
        Self {
            meta,
            network: network.valid(),
            device,
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The model compiled into the binary.
    pub fn embedded() -> Result<Self> {
        Self::from_bytes(EMBEDDED, Path::new("<embedded default model>"))
    }

    /// Load `path`, or the embedded default model when `None`.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(p) if !p.exists() && crate::zoo::named(p).is_some() => {
                let (bytes, label) = crate::zoo::named(p).unwrap_or_default();
                Self::from_bytes(bytes, Path::new(label))
            }
            Some(p) => Self::load(p),
            None => Self::embedded(),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        Self::from_bytes(&crate::error::read_file(path)?, path)
    }

    /// Parse a model file's bytes; `path` names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |m: String| Error::ModelFile {
            path: path.to_path_buf(),
            message: m,
        };
        if bytes.len() < 22 || &bytes[..10] != MAGIC {
            return Err(bad("missing SYNTHSCAN header".into()));
        }
        let version = u32::from_le_bytes(bytes[10..14].try_into().unwrap_or_default());
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        let meta_len = u64::from_le_bytes(bytes[14..22].try_into().unwrap_or_default()) as usize;
        let meta_end = 22usize
            .checked_add(meta_len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| bad("truncated metadata".into()))?;
        let meta: ModelMeta = serde_json::from_slice(&bytes[22..meta_end])
            .map_err(|e| bad(format!("metadata: {e}")))?;
        meta.arch
            .validate(meta.input_size as usize)
            .map_err(|e| bad(e.to_string()))?;
        let record = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
            bytes[meta_end..].to_vec(),
        ))
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

    /// The verdict for a score.
    pub fn label(&self, p_fake: f32) -> &str {
        let i = (p_fake >= self.meta.threshold) as usize;
        self.meta
            .class_names
            .get(i)
            .map(String::as_str)
            .unwrap_or(data::CLASS_NAMES[i])
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

    /// p_fake for a batch tensor (with flip averaging when the model asks for it).
    pub fn score_tensor(&self, x: Tensor<4>) -> Vec<f32> {
        let p = fake_probability(self.network.forward(x.clone()));
        let p = if self.meta.tta {
            (p + fake_probability(self.network.forward(x.flip([3])))) / 2.0
        } else {
            p
        };
        p.into_data().try_to_vec::<f32>().unwrap_or_default()
    }

    /// p_fake for every image of a decoded set (which must be at the model's input size).
    pub fn score_set(&self, set: &ImageSet) -> Vec<f32> {
        use rayon::prelude::*;
        // The CPU backend runs one forward pass on one core, so batches go through the network
        // side by side, one per core; order is kept by collecting in chunk order.
        let indices: Vec<usize> = (0..set.len()).collect();
        if parallel_passes(&self.device) == 1 {
            return indices
                .chunks(INFER_BATCH)
                .flat_map(|chunk| self.score_tensor(self.input_tensor(set, chunk)))
                .collect();
        }
        indices
            .par_chunks(INFER_BATCH)
            .map(|chunk| self.score_tensor(self.input_tensor(set, chunk)))
            .collect::<Vec<_>>()
            .concat()
    }

    /// Decode, resize and score one encoded image.
    pub fn score_bytes(&self, bytes: &[u8], name: &Path) -> Result<f32> {
        let img = data::decode::decode_rgb(bytes, name)?;
        let set = self.single(img);
        Ok(self.score_set(&set)[0])
    }

    /// Read, decode and prepare one file as the model's input pixels (HWC), the model's way
    /// (resized, or a native-resolution crop: [`crate::transfer::Preprocess`]).
    pub fn load_input(&self, path: &Path) -> Result<Vec<u8>> {
        let img = data::decode::decode_rgb(&crate::error::read_file(path)?, path)?;
        Ok(
            crate::transfer::features::prepare(&img, self.meta.input_size, self.meta.preprocess)
                .into_raw(),
        )
    }

    /// Wrap one decoded image as a one-image set at the model's input size.
    pub fn single(&self, img: image::RgbImage) -> ImageSet {
        let size = self.meta.input_size;
        ImageSet {
            size,
            pixels: crate::transfer::features::prepare(&img, size, self.meta.preprocess).into_raw(),
            labels: vec![0],
            paths: vec![],
        }
    }

    pub fn num_params(&self) -> usize {
        self.network.num_params()
    }

    /// Grad-CAM / Grad-CAM++ map of one decoded image at block `layer` (default: the last with a map of at least 4×4);
    /// see [`crate::explain`].
    pub fn explain(
        &self,
        image: &image::RgbImage,
        layer: Option<&str>,
        method: crate::explain::CamMethod,
        target: crate::explain::CamTarget,
    ) -> Result<crate::explain::CamMap> {
        crate::explain::cam(self, image, layer, method, target)
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
    let mut out = Vec::with_capacity(22 + meta_json.len() + weights.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(meta_json.len() as u64).to_le_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(&weights);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(det.label(0.39), "REAL");
        assert_eq!(det.label(0.4), "FAKE");
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

    #[test]
    fn embedded_model_loads() {
        let det = Detector::embedded().unwrap();
        assert_eq!(det.meta.class_names, vec!["REAL", "FAKE"]);
    }
}
