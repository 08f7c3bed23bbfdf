use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::ensemble::Ensemble;
use synthscan::{Detector, Error, Result};

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn run(a: InfoArgs) -> Result<ExitCode> {
    let ensemble = Ensemble::load_or_default(a.model.as_deref())?;
    let v = match ensemble.single() {
        Some(det) => describe(det)?,
        None => {
            let members: Vec<Value> = ensemble.iter().map(describe).collect::<Result<_>>()?;
            serde_json::json!({
                "ensemble": ensemble.name(),
                "routed": ensemble.is_routed(),
                "threshold": ensemble.threshold(),
                "calibration": ensemble.calibration(),
                "params": ensemble.iter().map(|d| d.num_params()).sum::<usize>(),
                "members": members,
            })
        }
    };
    println!("{}", serde_json::to_string_pretty(&v).map_err(bad)?);
    Ok(ExitCode::SUCCESS)
}

/// One model's metadata, parameter count and layer names.
fn describe(det: &Detector) -> Result<Value> {
    let mut v = serde_json::to_value(&det.meta).map_err(bad)?;
    v["name"] = det.name.clone().into();
    v["params"] = det.num_params().into();
    // The false-alarm quantiles are for --max-fpr, not for reading.
    if let Some(q) = v.get_mut("real_quantiles") {
        *q = format!("{} values", det.meta.real_quantiles.len()).into();
    }
    v["layers"] = serde_json::to_value(det.network.layer_names()).map_err(bad)?;
    // An adapted model: the models it came from, oldest first, then itself.
    let chain = synthscan::adapt::report::chain_of(&det.meta.provenance);
    if !chain.is_empty() {
        let adapted = &det.meta.provenance["adapted"];
        let mut lines = chain;
        lines.push(format!(
            "{} (adapted {} with {} REAL + {} FAKE corrections, sha256 {})",
            det.name,
            adapted["date"].as_str().unwrap_or("?"),
            adapted["corrections"]["real"],
            adapted["corrections"]["fake"],
            adapted["corrections"]["sha256"]
                .as_str()
                .map_or("?", |h| &h[..16.min(h.len())]),
        ));
        v["lineage"] = serde_json::to_value(lines).map_err(bad)?;
    }
    Ok(v)
}

fn bad(e: serde_json::Error) -> Error {
    Error::Invalid(format!("model metadata as JSON: {e}"))
}
