use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::Result;
use synthscan::explain::{self, CamMethod, CamTarget, ExplainOptions};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Model or ensemble file (default: `auto`, the built-in models: CIFAKE-sized images to `cifake`, others to `realworld`; `cifake` and `realworld` name one of them); repeat it to explain
    /// several models as one ensemble (the mean of their maps).
    #[arg(long)]
    model: Vec<PathBuf>,
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
    let ensemble = super::load_members(&a.model, None, None)?;
    if a.list_layers {
        for det in ensemble.iter() {
            if ensemble.len() > 1 {
                println!("{}:", det.name);
            }
            for l in explain::layers(det) {
                println!("{:<10} {}x{}x{}", l.name, l.channels, l.height, l.width);
            }
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
    for (path, result) in explain::explain_paths(&ensemble, &a.paths, &opts)? {
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
