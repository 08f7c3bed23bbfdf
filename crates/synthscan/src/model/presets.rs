//! Named starting points for `model.preset` in experiment files.

use super::*;

pub const PRESETS: [&str; 8] = [
    "cifake-paper",
    "fast",
    "default",
    "fullres",
    "fullres-small",
    "resnet8",
    "resnet14",
    "resnet20",
];

fn stage(channels: usize, convs: usize) -> StageConfig {
    StageConfig {
        channels,
        convs,
        pool: true,
    }
}

/// A fast-CIFAR-style net: a stem, then three conv-pool-BN-activation stages, global max-pool.
fn fast_cifar(
    stem: usize,
    stem_stride: usize,
    widths: [usize; 3],
    convs: usize,
    activation: Activation,
) -> ArchConfig {
    ArchConfig::Cnn(CnnConfig {
        stem,
        stem_stride,
        stages: widths.iter().map(|&w| stage(w, convs)).collect(),
        kernel: 3,
        batch_norm: true,
        activation,
        global_pool: GlobalPool::Max,
        hidden: vec![],
        dropout: 0.0,
    })
}

/// The configuration behind a preset name.
pub fn preset(name: &str) -> Result<ArchConfig> {
    Ok(match name {
        // Bird & Lotfi 2024: two 3×3 conv layers of 32 filters with max-pooling, dense 64.
        "cifake-paper" => ArchConfig::Cnn(CnnConfig {
            stem: 0,
            stem_stride: 1,
            stages: vec![stage(32, 1), stage(32, 1)],
            kernel: 3,
            batch_norm: false,
            activation: Activation::Relu,
            global_pool: GlobalPool::Flatten,
            hidden: vec![64],
            dropout: 0.0,
        }),
        // A stride-2 stem: every layer after it runs at a quarter of the pixels, which is what
        // makes these two train and predict fast on a CPU.
        "fast" => fast_cifar(24, 2, [32, 64, 128], 1, Activation::Relu),
        "default" => fast_cifar(32, 2, [32, 64, 128], 2, Activation::Relu),
        // The same kind of net at full resolution (GPU-sized; the first embedded model).
        "fullres" => fast_cifar(24, 1, [32, 64, 128], 2, Activation::Gelu),
        "fullres-small" => fast_cifar(16, 1, [24, 48, 96], 2, Activation::Gelu),
        "resnet8" | "resnet14" | "resnet20" => ArchConfig::Resnet(ResNetConfig {
            depth: name[6..].parse().unwrap_or(8),
            width: 16,
            activation: Activation::Relu,
            dropout: 0.0,
        }),
        other => {
            return Err(Error::Invalid(format!(
                "model.preset = '{other}': unknown; presets: {}",
                PRESETS.join(", ")
            )));
        }
    })
}
