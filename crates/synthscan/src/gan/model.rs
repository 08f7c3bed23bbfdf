//! DCGAN networks (Radford, Metz & Chintala 2015) for 32×32 and 64×64 RGB, and the file format
//! that stores one of them with the settings needed to rebuild it.
//!
//! Generator: z → transposed convolutions (4×4 kernels, stride 2) with batch-norm and ReLU,
//! doubling the resolution from 4×4 and halving the channels, then a tanh RGB layer.
//! Discriminator: strided 4×4 convolutions with LeakyReLU(0.2) (batch-norm on all but the
//! first), no pooling, down to 4×4, then one 4×4 convolution to a single logit.
//! Every convolution weight is drawn from N(0, 0.02); batch-norm starts at γ = 1, β = 0.

use crate::error::{Error, Result};
use crate::model::container;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};
use std::path::Path;

const INIT: Initializer = Initializer::Normal {
    mean: 0.0,
    std: 0.02,
};

/// Everything needed to rebuild a network before its weights are loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    pub image_size: u32,
    pub latent: usize,
    /// `g_width` for a generator, `d_width` for a discriminator.
    pub width: usize,
}

impl NetSpec {
    /// Number of stride-2 stages between 4×4 and the image size (3 at 32 px, 4 at 64 px).
    pub fn stages(&self) -> usize {
        (self.image_size.max(8).ilog2() - 2) as usize
    }
}

/// One generator stage: transposed convolution, batch-norm, ReLU.
#[derive(Module, Debug)]
pub struct UpBlock {
    conv: ConvTranspose2d,
    norm: BatchNorm,
}

fn up(c_in: usize, c_out: usize, first: bool, device: &Device) -> ConvTranspose2d {
    let (stride, pad) = if first { (1, 0) } else { (2, 1) };
    ConvTranspose2dConfig::new([c_in, c_out], [4, 4])
        .with_stride([stride, stride])
        .with_padding([pad, pad])
        .with_bias(false)
        .with_initializer(INIT)
        .init(device)
}

#[derive(Module, Debug)]
pub struct Generator {
    blocks: Vec<UpBlock>,
    out: ConvTranspose2d,
    #[module(skip)]
    latent: usize,
}

impl Generator {
    pub fn new(spec: &NetSpec, device: &Device) -> Self {
        let n = spec.stages();
        let mut c_in = spec.latent;
        let blocks = (0..n)
            .map(|i| {
                let c_out = spec.width << (n - 1 - i);
                let b = UpBlock {
                    conv: up(c_in, c_out, i == 0, device),
                    norm: BatchNormConfig::new(c_out).init(device),
                };
                c_in = c_out;
                b
            })
            .collect();
        let out = ConvTranspose2dConfig::new([c_in, 3], [4, 4])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .with_initializer(INIT)
            .init(device);
        Self {
            blocks,
            out,
            latent: spec.latent,
        }
    }

    pub fn latent(&self) -> usize {
        self.latent
    }

    /// `[batch, latent]` noise → `[batch, 3, size, size]` images in [-1, 1].
    pub fn forward(&self, z: Tensor<2>) -> Tensor<4> {
        let [b, l] = z.dims();
        let mut x = z.reshape([b, l, 1, 1]);
        for block in &self.blocks {
            x = activation::relu(block.norm.forward(block.conv.forward(x)));
        }
        self.out.forward(x).tanh()
    }
}

/// One discriminator stage: strided convolution, optional batch-norm, LeakyReLU(0.2).
#[derive(Module, Debug)]
pub struct DownBlock {
    conv: Conv2d,
    norm: Option<BatchNorm>,
}

#[derive(Module, Debug)]
pub struct Discriminator {
    blocks: Vec<DownBlock>,
    out: Conv2d,
}

fn down(
    c_in: usize,
    c_out: usize,
    stride: usize,
    pad: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [4, 4])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(bias)
        .with_initializer(INIT)
        .init(device)
}

impl Discriminator {
    pub fn new(spec: &NetSpec, device: &Device) -> Self {
        let mut c_in = 3;
        let blocks = (0..spec.stages())
            .map(|i| {
                let c_out = spec.width << i;
                let b = DownBlock {
                    conv: down(c_in, c_out, 2, 1, i == 0, device),
                    norm: (i > 0).then(|| BatchNormConfig::new(c_out).init(device)),
                };
                c_in = c_out;
                b
            })
            .collect();
        Self {
            blocks,
            out: down(c_in, 1, 1, 0, true, device),
        }
    }

    /// `[batch, 3, size, size]` images in [-1, 1] → `[batch]` logits (high = real).
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<1> {
        for block in &self.blocks {
            x = block.conv.forward(x);
            if let Some(norm) = &block.norm {
                x = norm.forward(x);
            }
            x = activation::leaky_relu(x, 0.2);
        }
        let b = x.dims()[0];
        self.out.forward(x).reshape([b])
    }
}

use burn::tensor::activation;

/// Which of the pair a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetKind {
    Generator,
    Discriminator,
}

/// The JSON header of a GAN network file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetFileMeta {
    pub kind: NetKind,
    pub spec: NetSpec,
    /// Epochs trained when the file was written.
    pub epoch: usize,
}

/// File bytes: a [`container`] of kind `Gan`: the JSON header, then the burnpack weights.
pub fn encode_net<M: Module>(meta: &NetFileMeta, net: M) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(meta).map_err(|e| Error::Model(e.to_string()))?;
    let weights = net
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Model(format!("cannot serialise weights: {e}")))?;
    Ok(container::encode(container::Kind::Gan, &json, &weights))
}

/// Split file bytes into header and weight record; `path` names the file in errors.
pub fn decode_net(bytes: &[u8], path: &Path) -> Result<(NetFileMeta, ModuleRecord)> {
    let bad = |m: String| Error::ModelFile {
        path: path.to_path_buf(),
        message: m,
    };
    let parts = container::decode(container::Kind::Gan, bytes, path)?;
    let meta: NetFileMeta =
        serde_json::from_slice(parts.header).map_err(|e| bad(format!("header: {e}")))?;
    if !matches!(meta.spec.image_size, 32 | 64) || meta.spec.width == 0 || meta.spec.latent == 0 {
        return Err(bad(format!("unsupported network spec {:?}", meta.spec)));
    }
    let record =
        ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(parts.payload.to_vec()))
            .map_err(|e| bad(format!("weights: {e}")))?;
    Ok((meta, record))
}

/// Load a generator file (as written by `gan train`).
pub fn load_generator(path: &Path, device: &Device) -> Result<(NetFileMeta, Generator)> {
    let (meta, record) = decode_net(&crate::error::read_file(path)?, path)?;
    if meta.kind != NetKind::Generator {
        return Err(Error::ModelFile {
            path: path.to_path_buf(),
            message: "holds a discriminator; pass the generator file (G-*.gan)".into(),
        });
    }
    let g = Generator::new(&meta.spec, device)
        .try_load_record(record)
        .map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            message: format!("weights do not fit the generator: {e}"),
        })?;
    Ok((meta, g))
}

/// Load a discriminator file.
pub fn load_discriminator(path: &Path, device: &Device) -> Result<(NetFileMeta, Discriminator)> {
    let (meta, record) = decode_net(&crate::error::read_file(path)?, path)?;
    if meta.kind != NetKind::Discriminator {
        return Err(Error::ModelFile {
            path: path.to_path_buf(),
            message: "holds a generator, not a discriminator".into(),
        });
    }
    let d = Discriminator::new(&meta.spec, device)
        .try_load_record(record)
        .map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            message: format!("weights do not fit the discriminator: {e}"),
        })?;
    Ok((meta, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: u32) -> NetSpec {
        NetSpec {
            image_size: size,
            latent: 8,
            width: 4,
        }
    }

    #[test]
    fn generator_and_discriminator_shapes_at_32_and_64() {
        let device = Device::default();
        for size in [32u32, 64] {
            let s = size as usize;
            let g = Generator::new(&spec(size), &device);
            let img = g.forward(Tensor::zeros([3, 8], &device));
            assert_eq!(img.dims(), [3, 3, s, s], "G at {size}");
            let hi: f32 = img.clone().abs().max().into_scalar();
            assert!(hi <= 1.0, "tanh output");
            let d = Discriminator::new(&spec(size), &device);
            assert_eq!(d.forward(img).dims(), [3], "D at {size}");
        }
    }

    #[test]
    fn weights_start_near_n0_002() {
        let d = Discriminator::new(&spec(32), &Device::default());
        let w = d.blocks[1].conv.weight.val();
        let std: f32 = w.clone().var(0).mean().sqrt().into_scalar();
        assert!((0.01..0.03).contains(&std), "std {std}");
    }

    #[test]
    fn file_round_trip_and_wrong_kind() {
        let device = Device::default();
        let g = Generator::new(&spec(32), &device);
        let meta = NetFileMeta {
            kind: NetKind::Generator,
            spec: spec(32),
            epoch: 3,
        };
        let bytes = encode_net(&meta, g.clone()).unwrap();
        let dir = std::env::temp_dir().join(format!("synthscan-ganfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("G.gan");
        std::fs::write(&p, &bytes).unwrap();
        let (back_meta, back) = load_generator(&p, &device).unwrap();
        assert_eq!(back_meta, meta);
        let z = Tensor::<2>::ones([2, 8], &device);
        let diff: f32 = (g.forward(z.clone()) - back.forward(z))
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-6);
        let err = load_discriminator(&p, &device).unwrap_err();
        assert!(err.to_string().contains("G.gan"), "{err}");
        std::fs::write(&p, &bytes[..30]).unwrap();
        assert!(load_generator(&p, &device).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
