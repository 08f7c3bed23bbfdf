use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::{Detector, Error, Result};

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn run(a: InfoArgs) -> Result<ExitCode> {
    let det = Detector::load_or_default(a.model.as_deref())?;
    let bad = |e: serde_json::Error| Error::Invalid(format!("model metadata as JSON: {e}"));
    let mut v = serde_json::to_value(&det.meta).map_err(bad)?;
    v["params"] = det.num_params().into();
    // The false-alarm quantiles are for --max-fpr, not for reading.
    if let Some(q) = v.get_mut("real_quantiles") {
        *q = format!("{} values", det.meta.real_quantiles.len()).into();
    }
    v["layers"] = serde_json::to_value(det.network.layer_names()).map_err(bad)?;
    println!("{}", serde_json::to_string_pretty(&v).map_err(bad)?);
    Ok(ExitCode::SUCCESS)
}
