//! Named starting points for `model.preset` in experiment files.

use super::*;

pub const PRESETS: [&str; 6] = [
    "cifake-paper",
    "fast",
    "default",
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

/// The configuration behind a preset name.
pub fn preset(name: &str) -> Result<ArchConfig> {
    let fast_cifar = |stem: usize, widths: [usize; 3]| {
        ArchConfig::Cnn(CnnConfig {
            stem,
            stages: widths.iter().map(|&w| stage(w, 2)).collect(),
            kernel: 3,
            batch_norm: true,
            activation: Activation::Gelu,
            global_pool: GlobalPool::Max,
            hidden: vec![],
            dropout: 0.0,
        })
    };
    Ok(match name {
        // Bird & Lotfi 2024: two 3×3 conv layers of 32 filters with max-pooling, dense 64.
        "cifake-paper" => ArchConfig::Cnn(CnnConfig {
            stem: 0,
            stages: vec![stage(32, 1), stage(32, 1)],
            kernel: 3,
            batch_norm: false,
            activation: Activation::Relu,
            global_pool: GlobalPool::Flatten,
            hidden: vec![64],
            dropout: 0.0,
        }),
        // Fast-CIFAR-style nets: conv-pool-BN-GELU blocks, few wide layers, global max-pool.
        "fast" => fast_cifar(16, [24, 48, 96]),
        "default" => fast_cifar(24, [32, 64, 128]),
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
