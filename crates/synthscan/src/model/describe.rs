//! Architectures described in words, for model cards, `info` and error messages.

use super::ArchConfig;
use serde::Serialize;

impl ArchConfig {
    /// One line describing an architecture.
    pub fn describe(&self) -> String {
        match self {
            ArchConfig::Cnn(c) => {
                let stages: Vec<String> = c
                    .stages
                    .iter()
                    .map(|s| {
                        format!(
                            "{}×{}ch{}",
                            s.convs,
                            s.channels,
                            if s.pool { "+pool" } else { "" }
                        )
                    })
                    .collect();
                let stem = if c.stem > 0 {
                    match c.stem_stride {
                        1 => format!("stem {}ch, ", c.stem),
                        s => format!("stem {}ch stride {s}, ", c.stem),
                    }
                } else {
                    String::new()
                };
                let head = if c.hidden.is_empty() {
                    "linear head".to_string()
                } else {
                    format!("dense head {:?}", c.hidden)
                };
                format!(
                    "plain CNN: {stem}stages [{}], {k}×{k} convolutions, {}{} activation, global {} pooling, {head}, dropout {}",
                    stages.join(", "),
                    if c.batch_norm { "batch norm, " } else { "" },
                    serde_name(&c.activation),
                    serde_name(&c.global_pool),
                    c.dropout,
                    k = c.kernel
                )
            }
            ArchConfig::Resnet(r) => format!(
                "ResNet-{} (CIFAR variant, basic blocks, widths {}/{}/{}), {} activation, dropout {}",
                r.depth,
                r.width,
                r.width * 2,
                r.width * 4,
                serde_name(&r.activation),
                r.dropout
            ),
            ArchConfig::Efficientnet(e) => format!(
                "EfficientNet-{} (ReLU6, no squeeze-excitation), head {:?} → {} outputs, dropout {}",
                e.variant, e.hidden, e.classes, e.dropout
            ),
            ArchConfig::Tvresnet(r) => format!(
                "ResNet-{} (torchvision layout, width {}), head {:?}{} → {} outputs, dropout {}",
                r.depth,
                r.width,
                r.hidden,
                if r.hidden_batch_norm {
                    " with batch norm"
                } else {
                    ""
                },
                r.classes,
                r.dropout
            ),
        }
    }
}

/// The name serde gives a value (an enum variant's `rename`), for messages and cards.
pub fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => "?".into(),
    }
}
