use super::progress::Watched;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::report::RunReporter;
use synthscan::train::{self, TrainOptions};
use synthscan::{Error, Result};

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Dataset folder: REAL/ + FAKE/, or a parent of train/ and test/.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Parent folder for run folders.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Continue a run folder from its last checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: TrainArgs) -> Result<ExitCode> {
    let opts = TrainOptions {
        data: a.data,
        out: a.out,
        resume: a.resume.clone(),
    };
    // Plots, report and model card are refreshed as the run goes; progress drawn on stderr.
    let mut reporter = Watched::new(RunReporter, a.quiet);
    let outcomes = match (a.config, a.resume) {
        (_, Some(dir)) => vec![train::resume(&dir, &opts, &mut reporter)?],
        (Some(cfg), None) => train::train_experiments(&cfg, &opts, &mut reporter)?,
        (None, None) => {
            return Err(Error::Invalid(
                "train needs --config FILE.yaml (or --resume RUN_DIR)".into(),
            ));
        }
    };
    for o in outcomes {
        println!("{}", o.model_path.display());
    }
    Ok(ExitCode::SUCCESS)
}
