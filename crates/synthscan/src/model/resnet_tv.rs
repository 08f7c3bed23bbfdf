//! ResNet-18/34/50 in torchvision's layout (He et al. 2016, ImageNet variant; torchvision's
//! "v1.5" puts the stride of a bottleneck on its 3×3 convolution), so that a torchvision
//! `state_dict` (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`, …) loads through
//! [`super::import`]. `width` scales every channel count (64 in torchvision) for small fixtures.
//!
//! Named blocks (Grad-CAM targets): `stem` (conv1, bn1, ReLU, max-pool), `layer1` … `layer4`.

use super::Head;
use crate::error::{Error, Result};
use burn::nn::{
    BatchNorm, BatchNormConfig, PaddingConfig2d,
    conv::{Conv2d, Conv2dConfig},
};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

/// `model: {arch: tvresnet, depth: 18|34|50, ...}` in an experiment file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TvResNetConfig {
    pub depth: usize,
    /// Channels of the stem and of layer1 (torchvision: 64).
    #[serde(default = "sixty_four")]
    pub width: usize,
    /// Hidden dense layers of the head (the frozen-ResNet50 recipe uses [256, 128]).
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Batch-norm after the first hidden dense layer (the frozen-ResNet50 recipe's head).
    #[serde(default)]
    pub hidden_batch_norm: bool,
    #[serde(default)]
    pub dropout: f64,
    #[serde(
        default = "super::efficientnet::two",
        skip_serializing_if = "super::efficientnet::is_two"
    )]
    pub classes: usize,
}

fn sixty_four() -> usize {
    64
}

impl TvResNetConfig {
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            width: 64,
            hidden: vec![],
            hidden_batch_norm: false,
            dropout: 0.0,
            classes: 2,
        }
    }

    fn layout(&self) -> Option<([usize; 4], bool)> {
        match self.depth {
            18 => Some(([2, 2, 2, 2], false)),
            34 => Some(([3, 4, 6, 3], false)),
            50 => Some(([3, 4, 6, 3], true)),
            _ => None,
        }
    }

    pub fn validate(&self, input_size: usize) -> Result<()> {
        if self.layout().is_none() {
            return Err(Error::Invalid(format!(
                "model.depth = {}: torchvision ResNets here are 18, 34 or 50",
                self.depth
            )));
        }
        if self.width == 0 || self.classes < 2 {
            return Err(Error::Invalid(
                "model.width must be at least 1 and model.classes at least 2".into(),
            ));
        }
        if input_size < 32 {
            return Err(Error::Invalid(format!(
                "input size {input_size}: a ResNet needs at least 32"
            )));
        }
        Ok(())
    }

    /// Channels of the final feature map.
    pub fn features(&self) -> usize {
        let (_, bottleneck) = self.layout().unwrap_or(([2; 4], false));
        self.width * 8 * if bottleneck { 4 } else { 1 }
    }
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device)
}

fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c).init(device)
}

/// `downsample.0` (1×1 convolution) and `downsample.1` (batch-norm) in torchvision.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

/// A torchvision BasicBlock (two 3×3) or Bottleneck (1×1, 3×3, 1×1); `conv3` marks the latter.
#[derive(Module, Debug)]
pub struct TvBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Option<Conv2d>,
    bn3: Option<BatchNorm>,
    downsample: Option<Downsample>,
}

impl TvBlock {
    fn new(c_in: usize, planes: usize, stride: usize, bottleneck: bool, device: &Device) -> Self {
        let c_out = if bottleneck { planes * 4 } else { planes };
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample {
            conv: conv(c_in, c_out, 1, stride, device),
            bn: bn(c_out, device),
        });
        if bottleneck {
            Self {
                conv1: conv(c_in, planes, 1, 1, device),
                bn1: bn(planes, device),
                conv2: conv(planes, planes, 3, stride, device),
                bn2: bn(planes, device),
                conv3: Some(conv(planes, c_out, 1, 1, device)),
                bn3: Some(bn(c_out, device)),
                downsample,
            }
        } else {
            Self {
                conv1: conv(c_in, planes, 3, stride, device),
                bn1: bn(planes, device),
                conv2: conv(planes, planes, 3, 1, device),
                bn2: bn(planes, device),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        y = self.bn2.forward(self.conv2.forward(y));
        if let (Some(c3), Some(b3)) = (&self.conv3, &self.bn3) {
            y = b3.forward(c3.forward(relu(y)));
        }
        let skip = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x)),
            None => x,
        };
        relu(y + skip)
    }
}

/// conv1 (7×7, stride 2), bn1, ReLU, 3×3 max-pool with stride 2.
#[derive(Module, Debug)]
pub struct TvStem {
    conv1: Conv2d,
    bn1: BatchNorm,
}

impl TvStem {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        burn::tensor::module::max_pool2d(
            x,
            burn::tensor::ops::MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
        )
    }
}

/// Blocks, names and head of a torchvision-layout ResNet with fresh weights.
pub(super) fn init(c: &TvResNetConfig, device: &Device) -> (Vec<super::Block>, Vec<String>, Head) {
    let (counts, bottleneck) = c.layout().unwrap_or(([2; 4], false));
    let stem = TvStem {
        conv1: conv(3, c.width, 7, 2, device),
        bn1: bn(c.width, device),
    };
    let mut blocks = vec![super::Block::TvStem(stem)];
    let mut names = vec!["stem".to_string()];
    let mut c_in = c.width;
    for (l, &n) in counts.iter().enumerate() {
        let planes = c.width << l;
        let layer = (0..n)
            .map(|i| {
                let stride = if l > 0 && i == 0 { 2 } else { 1 };
                let b = TvBlock::new(c_in, planes, stride, bottleneck, device);
                c_in = if bottleneck { planes * 4 } else { planes };
                b
            })
            .collect();
        blocks.push(super::Block::TvLayer(layer));
        names.push(format!("layer{}", l + 1));
    }
    let mut head = super::pretrained_head(c_in, &c.hidden, c.dropout, c.classes, device);
    if c.hidden_batch_norm
        && let Some(&first) = c.hidden.first()
    {
        head = head.with_hidden_batch_norm(first, device);
    }
    (blocks, names, head)
}
