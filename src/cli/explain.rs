use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::explain::{self, CamMethod, CamTarget, ExplainOptions};
use synthscan::{Detector, Result};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[arg(long)]
    model: Option<PathBuf>,
    /// gradcam or gradcam++.
    #[arg(long, default_value = "gradcam")]
    method: CamMethod,
    /// Class whose evidence is mapped: fake, real or predicted.
    #[arg(long, default_value = "fake")]
    target: CamTarget,
    /// Block to take the map at (default: the last with a map of at least 4×4; see --list-layers).
    #[arg(long)]
    layer: Option<String>,
    /// Print the layer names with their output shapes (channels x height x width) and exit.
    #[arg(long)]
    list_layers: bool,
    #[arg(long, default_value = "explain")]
    out: PathBuf,
    #[arg(required_unless_present = "list_layers")]
    paths: Vec<PathBuf>,
}

pub fn run(a: ExplainArgs) -> Result<ExitCode> {
    let det = Detector::load_or_default(a.model.as_deref())?;
    if a.list_layers {
        for l in explain::layers(&det) {
            println!("{:<10} {}x{}x{}", l.name, l.channels, l.height, l.width);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = ExplainOptions {
        layer: a.layer,
        method: a.method,
        target: a.target,
        out_dir: a.out,
        ..Default::default()
    };
    let mut failed = false;
    for (path, result) in explain::explain_paths(&det, &a.paths, &opts)? {
        match result {
            Ok(e) => println!(
                "{}  p_fake={:.4}  {:<5} layer={}  {}",
                path.display(),
                e.map.p_fake,
                e.map.label,
                e.map.layer,
                e.files.overlay.display()
            ),
            Err(err) => {
                failed = true;
                eprintln!("error: {err}");
            }
        }
    }
    Ok(super::status(failed))
}
