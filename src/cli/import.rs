//! `synthscan import FILE --arch efficientnet-lite0|resnet18|resnet34|resnet50 --out M.synthscan`:
//! pretrained weights into a ready detector file with a fresh two-class head.

use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::detector::{Detector, ModelMeta, default_device};
use synthscan::error::{Error, Result};
use synthscan::model::import::{HeadWeights, load_weights};
use synthscan::model::{ArchConfig, EfficientNetConfig, TvResNetConfig};

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// PyTorch state_dict (.pth/.pt) or .safetensors file.
    pub weights: PathBuf,
    /// efficientnet-lite0, resnet18, resnet34 or resnet50 (torchvision layout).
    #[arg(long)]
    pub arch: String,
    /// Input size of the detector (any size of at least 32).
    #[arg(long, default_value_t = 224)]
    pub input_size: u32,
    /// Channel width of a ResNet (64 for torchvision's; smaller only for test fixtures).
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    #[arg(long)]
    pub out: PathBuf,
}

/// The architecture named on the command line.
pub fn arch_named(name: &str, width: usize) -> Result<ArchConfig> {
    Ok(match name {
        "efficientnet-lite0" => ArchConfig::Efficientnet(EfficientNetConfig::lite0()),
        "resnet18" | "resnet34" | "resnet50" => ArchConfig::Tvresnet(TvResNetConfig {
            width,
            ..TvResNetConfig::new(name[6..].parse().unwrap_or(18))
        }),
        other => {
            return Err(Error::Invalid(format!(
                "--arch {other}: expected efficientnet-lite0, resnet18, resnet34 or resnet50"
            )));
        }
    })
}

pub fn run(args: ImportArgs) -> Result<ExitCode> {
    let arch = arch_named(&args.arch, args.width)?;
    arch.validate(args.input_size as usize)?;
    let device = default_device();
    let net = arch.init(args.input_size as usize, &device);
    let (net, report) = load_weights(net, &arch, &args.weights, HeadWeights::Fresh)?;
    let norm = arch
        .declared_normalization()
        .unwrap_or_else(synthscan::data::Normalization::imagenet);
    let meta = ModelMeta {
        provenance: serde_json::json!({
            "imported_from": args.weights.file_name().map(|n| n.to_string_lossy().to_string()),
            "head": "fresh, untrained",
        }),
        ..ModelMeta::untrained(arch, args.input_size, norm)
    };
    Detector::new(meta, net, device).save(&args.out)?;
    println!(
        "{}: {} tensors loaded, {} classifier tensors replaced by a fresh 2-class head",
        args.out.display(),
        report.loaded,
        report.skipped.len()
    );
    Ok(ExitCode::SUCCESS)
}
