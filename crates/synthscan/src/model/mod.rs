//! Network families behind one [`Network`] type, configured by one serialisable [`ArchConfig`].
//!
//! Every network is a stack of named blocks followed by a head, so that Grad-CAM can cut it at
//! any block: `features(x, k)` runs blocks `0..=k`, `classify_from(f, k)` the rest.

pub mod container;
mod describe;
pub mod efficientnet;
pub mod engine;
pub mod import;
mod presets;
pub mod resnet_tv;

use crate::error::{Error, Result};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
    conv::{Conv2d, Conv2dConfig},
};
use burn::prelude::*;
use burn::tensor::activation;
use serde::{Deserialize, Serialize};

pub use describe::serde_name;
pub use efficientnet::EfficientNetConfig;
pub use presets::{PRESETS, preset};
pub use resnet_tv::TvResNetConfig;
pub use synthscan_kernels::engine::CnnEngine;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Relu,
    Gelu,
    Sigmoid,
    Silu,
}

impl Activation {
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => activation::relu(x),
            Activation::Gelu => activation::gelu(x),
            Activation::Sigmoid => activation::sigmoid(x),
            Activation::Silu => activation::silu(x),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GlobalPool {
    #[default]
    Max,
    Avg,
    /// Keep the spatial map and flatten it (the CIFAKE paper's dense head).
    Flatten,
}

/// One stage of a plain CNN: `convs` convolutions, max-pooling after the first when `pool`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub channels: usize,
    #[serde(default = "one")]
    pub convs: usize,
    #[serde(default = "yes")]
    pub pool: bool,
}

fn one() -> usize {
    1
}
fn is_one(n: &usize) -> bool {
    *n == 1
}
fn yes() -> bool {
    true
}

/// A configurable plain CNN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// Channels of a stem convolution before the stages; 0 for none.
    #[serde(default)]
    pub stem: usize,
    /// Stride of the stem: 2 halves the resolution at once (a patchifying stem), which makes
    /// every later layer four times cheaper.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub stem_stride: usize,
    pub stages: Vec<StageConfig>,
    #[serde(default = "three")]
    pub kernel: usize,
    #[serde(default = "yes")]
    pub batch_norm: bool,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default)]
    pub global_pool: GlobalPool,
    /// Hidden dense layers of the head.
    #[serde(default)]
    pub hidden: Vec<usize>,
    #[serde(default)]
    pub dropout: f64,
}

fn three() -> usize {
    3
}

/// A ResNet for small inputs (He et al. 2016, CIFAR variant): depth = 6n + 2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    pub depth: usize,
    /// Channels of the first stage; doubled at each of the next two.
    #[serde(default = "sixteen")]
    pub width: usize,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default)]
    pub dropout: f64,
}

fn sixteen() -> usize {
    16
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "lowercase")]
pub enum ArchConfig {
    Cnn(CnnConfig),
    Resnet(ResNetConfig),
    /// EfficientNet-Lite0 with the ImageNet weights' layer names (see [`efficientnet`]).
    Efficientnet(EfficientNetConfig),
    /// ResNet-18/34/50 with torchvision's layer names (see [`resnet_tv`]).
    Tvresnet(TvResNetConfig),
}

impl ArchConfig {
    pub fn validate(&self, input_size: usize) -> Result<()> {
        match self {
            ArchConfig::Cnn(c) => {
                if c.stages.is_empty() {
                    return Err(Error::Invalid("model.stages must not be empty".into()));
                }
                if c.kernel % 2 == 0 || c.kernel == 0 {
                    return Err(Error::Invalid(format!(
                        "model.kernel = {}: must be odd",
                        c.kernel
                    )));
                }
                if !(1..=4).contains(&c.stem_stride) || (c.stem_stride > 1 && c.stem == 0) {
                    return Err(Error::Invalid(format!(
                        "model.stem_stride = {}: must be 1 to 4, and above 1 only with a stem",
                        c.stem_stride
                    )));
                }
                let pools = c.stages.iter().filter(|s| s.pool).count() as u32;
                if (input_size / c.stem_stride) >> pools == 0 {
                    return Err(Error::Invalid(format!(
                        "input size {input_size} is too small for {pools} pooling stages"
                    )));
                }
                if c.stages.iter().any(|s| s.channels == 0 || s.convs == 0) {
                    return Err(Error::Invalid(
                        "model.stages: channels and convs must be at least 1".into(),
                    ));
                }
            }
            ArchConfig::Resnet(r) => {
                if r.depth < 8 || (r.depth - 2) % 6 != 0 {
                    return Err(Error::Invalid(format!(
                        "model.depth = {}: a CIFAR ResNet has depth 6n+2 (8, 14, 20, 32, …)",
                        r.depth
                    )));
                }
                if r.width == 0 {
                    return Err(Error::Invalid("model.width must be at least 1".into()));
                }
            }
            ArchConfig::Efficientnet(e) => e.validate(input_size)?,
            ArchConfig::Tvresnet(r) => r.validate(input_size)?,
        }
        if !(0.0..1.0).contains(&self.dropout()) {
            return Err(Error::Invalid(format!(
                "model.dropout = {}: must be in [0, 1)",
                self.dropout()
            )));
        }
        Ok(())
    }

    fn dropout(&self) -> f64 {
        match self {
            ArchConfig::Cnn(c) => c.dropout,
            ArchConfig::Resnet(r) => r.dropout,
            ArchConfig::Efficientnet(e) => e.dropout,
            ArchConfig::Tvresnet(r) => r.dropout,
        }
    }

    /// The input normalisation a pretrained architecture's weights expect, if it has one.
    pub fn declared_normalization(&self) -> Option<crate::data::Normalization> {
        match self {
            ArchConfig::Efficientnet(_) => Some(efficientnet::normalization()),
            ArchConfig::Tvresnet(_) => Some(crate::data::Normalization::imagenet()),
            _ => None,
        }
    }

    /// Build the network with fresh weights for `input_size`×`input_size` RGB inputs.
    pub fn init(&self, input_size: usize, device: &Device) -> Network {
        match self {
            ArchConfig::Cnn(c) => init_cnn(c, input_size, device),
            ArchConfig::Resnet(r) => init_resnet(r, device),
            ArchConfig::Efficientnet(e) => {
                let (blocks, names, head) = efficientnet::init(e, device);
                Network {
                    blocks,
                    head,
                    names,
                }
            }
            ArchConfig::Tvresnet(r) => {
                let (blocks, names, head) = resnet_tv::init(r, device);
                Network {
                    blocks,
                    head,
                    names,
                }
            }
        }
    }
}

fn conv(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    let p = kernel / 2;
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(bias)
        .init(device)
}

/// Convolution, optional max-pool, optional batch-norm, activation.
#[derive(Module, Debug)]
pub struct ConvUnit {
    conv: Conv2d,
    norm: Option<BatchNorm>,
    pool: bool,
    #[module(skip)]
    act: Activation,
}

impl ConvUnit {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        #[cfg(feature = "flex")]
        if let Some(norm) = &self.norm
            && self.act == Activation::Relu
            && synthscan_kernels::fused::fits(&self.conv, norm, &x)
        {
            return synthscan_kernels::fused::conv_unit(&self.conv, norm, self.pool, x);
        }
        self.forward_modules(x)
    }

    /// The unit through burn's modules (every backend; the reference of the fused op).
    fn forward_modules(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv.forward(x);
        if self.pool {
            x = max_pool2(x);
        }
        if let Some(norm) = &self.norm {
            x = norm.forward(x);
        }
        self.act.forward(x)
    }
}

/// 2×2 max-pooling with stride 2 (the last row or column of an odd size dropped, as
/// `max_pool2d` does), as two pairwise maxima over a reshaped view: on the CPU backend this is
/// several times faster than its general `max_pool2d`, and exact (a maximum is a maximum).
pub fn max_pool2(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let (ho, wo) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.slice([0..b, 0..c, 0..ho * 2, 0..wo * 2])
    } else {
        x
    };
    // Neighbouring columns, then neighbouring rows.
    let x = x.reshape([b * c * ho * 2, wo, 2]).max_dim(2);
    x.reshape([b * c * ho, 2, wo])
        .max_dim(1)
        .reshape([b, c, ho, wo])
}

/// A post-activation basic residual block.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    norm1: BatchNorm,
    conv2: Conv2d,
    norm2: BatchNorm,
    shortcut: Option<Conv2d>,
    shortcut_norm: Option<BatchNorm>,
    #[module(skip)]
    act: Activation,
}

impl BasicBlock {
    fn new(c_in: usize, c_out: usize, stride: usize, act: Activation, device: &Device) -> Self {
        let project = stride != 1 || c_in != c_out;
        Self {
            conv1: conv(c_in, c_out, 3, stride, false, device),
            norm1: BatchNormConfig::new(c_out).init(device),
            conv2: conv(c_out, c_out, 3, 1, false, device),
            norm2: BatchNormConfig::new(c_out).init(device),
            shortcut: project.then(|| conv(c_in, c_out, 1, stride, false, device)),
            shortcut_norm: project.then(|| BatchNormConfig::new(c_out).init(device)),
            act,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self
            .act
            .forward(self.norm1.forward(self.conv1.forward(x.clone())));
        let y = self.norm2.forward(self.conv2.forward(y));
        let skip = match (&self.shortcut, &self.shortcut_norm) {
            (Some(c), Some(n)) => n.forward(c.forward(x)),
            _ => x,
        };
        self.act.forward(y + skip)
    }
}

/// One named block of a network: the unit Grad-CAM can cut at.
#[derive(Module, Debug)]
pub enum Block {
    Plain(Vec<ConvUnit>),
    Residual(Vec<BasicBlock>),
    ConvBn(efficientnet::ConvBnRelu6),
    MbConv(Vec<efficientnet::MbConv>),
    TvStem(resnet_tv::TvStem),
    TvLayer(Vec<resnet_tv::TvBlock>),
}

impl Block {
    fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        match self {
            Block::Plain(units) => {
                for u in units {
                    x = u.forward(x);
                }
            }
            Block::Residual(blocks) => {
                for b in blocks {
                    x = b.forward(x);
                }
            }
            Block::ConvBn(unit) => x = unit.forward(x),
            Block::MbConv(blocks) => {
                for b in blocks {
                    x = b.forward(x);
                }
            }
            Block::TvStem(stem) => x = stem.forward(x),
            Block::TvLayer(blocks) => {
                for b in blocks {
                    x = b.forward(x);
                }
            }
        }
        x
    }
}

/// Global pooling, optional hidden dense layers and the two-logit classifier.
#[derive(Module, Debug)]
pub struct Head {
    hidden: Vec<Linear>,
    /// Batch-norm after the first hidden layer (the frozen-ResNet50 recipe's head).
    hidden_norm: Option<BatchNorm>,
    dropout: Dropout,
    output: Linear,
    #[module(skip)]
    pool: GlobalPool,
    #[module(skip)]
    act: Activation,
}

impl Head {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.output.forward(self.dropout.forward(self.embed(x)))
    }

    /// Pooled features after the hidden layers: the input of the classifier.
    fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        let [b, c, h, w] = x.dims();
        let mut x: Tensor<2> = match self.pool {
            GlobalPool::Max => x.reshape([b, c, h * w]).max_dim(2).reshape([b, c]),
            GlobalPool::Avg => x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]),
            GlobalPool::Flatten => x.reshape([b, c * h * w]),
        };
        for (i, layer) in self.hidden.iter().enumerate() {
            x = self.act.forward(layer.forward(self.dropout.forward(x)));
            if let (0, Some(norm)) = (i, &self.hidden_norm) {
                x = norm.forward(x);
            }
        }
        x
    }
}

impl Head {
    /// The same head with `classes` outputs (2 for a detector; 1000 for ImageNet logits).
    pub fn with_classes(mut self, classes: usize, device: &Device) -> Self {
        if classes != 2 {
            let [d_in, _] = self.output.weight.dims();
            self.output = LinearConfig::new(d_in, classes).init(device);
        }
        self
    }

    /// Batch-norm after the first hidden layer, of `features` channels.
    pub fn with_hidden_batch_norm(mut self, features: usize, device: &Device) -> Self {
        self.hidden_norm = Some(BatchNormConfig::new(features).init(device));
        self
    }
}

/// Any synthscan detector network: named blocks, then a head producing [REAL, FAKE] logits.
#[derive(Module, Debug)]
pub struct Network {
    blocks: Vec<Block>,
    head: Head,
    #[module(skip)]
    names: Vec<String>,
}

impl Network {
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<2> {
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.head.forward(x)
    }

    /// Penultimate features `[batch, d]`: what the final linear layer sees (pooled block output,
    /// after any hidden dense layers). Used as the feature space of the GAN Fréchet distance.
    pub fn embed(&self, mut x: Tensor<4>) -> Tensor<2> {
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.head.embed(x)
    }

    /// The same network with its blocks frozen: no gradient, and batch-norm in inference mode
    /// (running statistics kept), so that only the head trains.
    pub fn freeze_blocks(mut self) -> Self {
        self.blocks = self.blocks.into_iter().map(|b| b.freeze()).collect();
        self
    }

    /// Names of the blocks, in order; any of them can be a Grad-CAM target layer.
    pub fn layer_names(&self) -> &[String] {
        &self.names
    }

    pub fn layer_index(&self, name: &str) -> Result<usize> {
        self.names.iter().position(|n| n == name).ok_or_else(|| {
            Error::Invalid(format!(
                "layer '{name}' does not exist; layers: {}",
                self.names.join(", ")
            ))
        })
    }

    /// Activations after block `upto` (inclusive).
    pub fn features(&self, mut x: Tensor<4>, upto: usize) -> Tensor<4> {
        for block in &self.blocks[..=upto] {
            x = block.forward(x);
        }
        x
    }

    /// Logits from the activations after block `after`.
    pub fn classify_from(&self, mut x: Tensor<4>, after: usize) -> Tensor<2> {
        for block in &self.blocks[after + 1..] {
            x = block.forward(x);
        }
        self.head.forward(x)
    }
}

/// The head of an ImageNet backbone: average pooling, optional hidden ReLU layers, and
/// `classes` outputs.
pub(crate) fn pretrained_head(
    features: usize,
    hidden: &[usize],
    dropout: f64,
    classes: usize,
    device: &Device,
) -> Head {
    head(
        features,
        hidden,
        dropout,
        GlobalPool::Avg,
        Activation::Relu,
        device,
    )
    .with_classes(classes, device)
}

fn head(
    features: usize,
    hidden: &[usize],
    dropout: f64,
    pool: GlobalPool,
    act: Activation,
    device: &Device,
) -> Head {
    let mut dims = vec![features];
    dims.extend_from_slice(hidden);
    Head {
        hidden: dims
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect(),
        hidden_norm: None,
        dropout: DropoutConfig::new(dropout).init(),
        output: LinearConfig::new(*dims.last().unwrap_or(&features), 2).init(device),
        pool,
        act,
    }
}

fn init_cnn(c: &CnnConfig, input_size: usize, device: &Device) -> Network {
    let unit = |c_in: usize, c_out: usize, pool: bool, stride: usize| ConvUnit {
        conv: conv(c_in, c_out, c.kernel, stride, !c.batch_norm, device),
        norm: c
            .batch_norm
            .then(|| BatchNormConfig::new(c_out).init(device)),
        pool,
        act: c.activation,
    };
    let mut blocks = Vec::new();
    let mut names = Vec::new();
    let mut channels = 3;
    if c.stem > 0 {
        blocks.push(Block::Plain(vec![unit(3, c.stem, false, c.stem_stride)]));
        names.push("stem".to_string());
        channels = c.stem;
    }
    // The stem's padding is kernel/2, so a stride-s stem gives ceil(size / s).
    let mut spatial = input_size.div_ceil(c.stem_stride);
    for (i, stage) in c.stages.iter().enumerate() {
        let units = (0..stage.convs)
            .map(|j| {
                unit(
                    if j == 0 { channels } else { stage.channels },
                    stage.channels,
                    j == 0 && stage.pool,
                    1,
                )
            })
            .collect();
        if stage.pool {
            spatial /= 2;
        }
        channels = stage.channels;
        blocks.push(Block::Plain(units));
        names.push(format!("stage{}", i + 1));
    }
    let features = match c.global_pool {
        GlobalPool::Flatten => channels * spatial * spatial,
        _ => channels,
    };
    Network {
        blocks,
        head: head(
            features,
            &c.hidden,
            c.dropout,
            c.global_pool,
            c.activation,
            device,
        ),
        names,
    }
}

fn init_resnet(r: &ResNetConfig, device: &Device) -> Network {
    let n = (r.depth - 2) / 6;
    let stem = ConvUnit {
        conv: conv(3, r.width, 3, 1, false, device),
        norm: Some(BatchNormConfig::new(r.width).init(device)),
        pool: false,
        act: r.activation,
    };
    let mut blocks = vec![Block::Plain(vec![stem])];
    let mut names = vec!["stem".to_string()];
    let mut c_in = r.width;
    for stage in 0..3 {
        let c_out = r.width << stage;
        let stage_blocks = (0..n)
            .map(|i| {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let b = BasicBlock::new(c_in, c_out, stride, r.activation, device);
                c_in = c_out;
                b
            })
            .collect();
        blocks.push(Block::Residual(stage_blocks));
        names.push(format!("stage{}", stage + 1));
    }
    Network {
        blocks,
        head: head(c_in, &[], r.dropout, GlobalPool::Avg, r.activation, device),
        names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::default()
    }

    #[test]
    fn max_pool2_equals_burns_max_pool2d_on_odd_and_even_shapes() {
        use burn::tensor::Distribution;
        let d = device();
        for [b, c, h, w] in [
            [2, 3, 8, 8],
            [1, 5, 7, 9],
            [3, 2, 2, 3],
            [1, 1, 5, 4],
            [4, 16, 16, 16],
        ] {
            let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &d);
            let want = burn::tensor::module::max_pool2d(
                x.clone(),
                burn::tensor::ops::MaxPoolOptions::new([2, 2]),
            );
            let got = max_pool2(x);
            assert_eq!(got.dims(), want.dims(), "shape {:?}", [b, c, h, w]);
            let diff: f32 = (got - want).abs().max().into_scalar();
            assert!(
                diff <= 1e-6,
                "shape {:?}: max difference {diff}",
                [b, c, h, w]
            );
        }
    }

    #[test]
    fn max_pool2_passes_the_same_gradient_back_as_max_pool2d() {
        use burn::tensor::Distribution;
        let d = device().autodiff();
        for [b, c, h, w] in [[2, 3, 6, 6], [1, 4, 5, 7]] {
            let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &d);
            // A loss that weighs every output differently, so a misrouted gradient shows.
            let weights = Tensor::<4>::random([b, c, h / 2, w / 2], Distribution::Default, &d);
            let grad = |pool: &dyn Fn(Tensor<4>) -> Tensor<4>| {
                let x = x.clone().require_grad();
                let g = (pool(x.clone()) * weights.clone()).sum().backward();
                x.grad(&g).expect("input gradient")
            };
            let want = grad(&|x| {
                burn::tensor::module::max_pool2d(x, burn::tensor::ops::MaxPoolOptions::new([2, 2]))
            });
            let got = grad(&max_pool2);
            let diff: f32 = (got - want).abs().max().into_scalar();
            assert!(
                diff <= 1e-6,
                "shape {:?}: gradient differs by {diff}",
                [b, c, h, w]
            );
        }
    }

    #[test]
    fn every_preset_gives_two_logits_at_32_and_48() {
        for name in PRESETS {
            let arch = preset(name).unwrap();
            for size in [32, 48] {
                arch.validate(size).unwrap();
                let net = arch.init(size, &device());
                let out = net.forward(Tensor::zeros([2, 3, size, size], &device()));
                assert_eq!(out.dims(), [2, 2], "{name} at {size}");
            }
        }
    }

    #[test]
    fn paper_preset_matches_published_parameter_count() {
        let net = preset("cifake-paper").unwrap().init(32, &device());
        assert_eq!(net.num_params(), 141_410);
    }

    #[test]
    fn features_then_classify_equals_forward() {
        let arch = preset("resnet8").unwrap();
        let net = arch.init(32, &device()).valid();
        let x = Tensor::<4>::random(
            [2, 3, 32, 32],
            burn::tensor::Distribution::Default,
            &device(),
        );
        let full = net.forward(x.clone());
        for k in 0..net.layer_names().len() {
            let split = net.classify_from(net.features(x.clone(), k), k);
            let diff: f32 = (full.clone() - split).abs().max().into_scalar();
            assert!(diff < 1e-4, "layer {k}: {diff}");
        }
    }

    #[test]
    fn a_stride_two_stem_halves_the_resolution() {
        let net = preset("fast").unwrap().init(32, &device());
        let x = Tensor::<4>::zeros([1, 3, 32, 32], &device());
        assert_eq!(net.features(x, 0).dims(), [1, 24, 16, 16]);
        let bad = ArchConfig::Cnn(CnnConfig {
            stem: 0,
            stem_stride: 2,
            ..match preset("fast").unwrap() {
                ArchConfig::Cnn(c) => c,
                _ => unreachable!(),
            }
        });
        assert!(
            bad.validate(32)
                .unwrap_err()
                .to_string()
                .contains("stem_stride")
        );
    }

    #[test]
    fn frozen_blocks_get_no_gradient_and_the_head_does() {
        let device = device().autodiff();
        let net = preset("resnet8").unwrap().init(32, &device);
        let x = Tensor::<4>::ones([2, 3, 32, 32], &device);
        let all =
            burn::optim::GradientsParams::from_grads(net.forward(x.clone()).sum().backward(), &net);
        let net = net.freeze_blocks();
        let head = burn::optim::GradientsParams::from_grads(net.forward(x).sum().backward(), &net);
        assert!(all.len() > 10, "{}", all.len());
        assert_eq!(head.len(), 2, "only the output layer's weight and bias");
    }

    #[test]
    fn pretrained_architectures_give_logits_at_small_sizes_and_cut_at_every_block() {
        for arch in [
            ArchConfig::Efficientnet(EfficientNetConfig::lite0()),
            ArchConfig::Tvresnet(TvResNetConfig {
                width: 4,
                ..TvResNetConfig::new(50)
            }),
        ] {
            arch.validate(33).unwrap();
            assert!(arch.validate(31).is_err());
            assert!(arch.declared_normalization().is_some());
            let net = arch.init(33, &device()).valid();
            let x = Tensor::<4>::random(
                [1, 3, 33, 45],
                burn::tensor::Distribution::Default,
                &device(),
            );
            let full = net.forward(x.clone());
            assert_eq!(full.dims(), [1, 2]);
            for k in 0..net.layer_names().len() {
                let split = net.classify_from(net.features(x.clone(), k), k);
                let diff: f32 = (full.clone() - split).abs().max().into_scalar();
                assert!(diff < 1e-4, "{k}: {diff}");
            }
        }
    }

    #[test]
    fn invalid_configs_are_named() {
        let bad = ArchConfig::Resnet(ResNetConfig {
            depth: 10,
            width: 16,
            activation: Activation::Relu,
            dropout: 0.0,
        });
        assert!(bad.validate(32).unwrap_err().to_string().contains("depth"));
    }
}
