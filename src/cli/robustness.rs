use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::Result;
use synthscan::data::perturb::{DEFAULT_SWEEP, Perturbation};
use synthscan::robust::{self, Sweep};

#[derive(Args, Debug)]
pub struct RobustnessArgs {
    /// Model file (default: `auto`, the built-in models: CIFAKE-sized images to `cifake`, others to `realworld`; `cifake` and `realworld` name one of them). Repeat it to sweep several
    /// models as one ensemble: the mean of their scores against the mean of their thresholds.
    #[arg(long)]
    model: Vec<PathBuf>,
    /// Override the models' stored flip test-time augmentation.
    #[arg(long)]
    tta: Option<bool>,
    /// Labelled folder: REAL/ + FAKE/, or a parent of test/.
    #[arg(long)]
    data: PathBuf,
    /// Comma-separated perturbations: none, jpeg:Q, webp, down:F, up:F, blur:S, noise:S,
    /// crop:F, and chains such as down:0.5+jpeg:75.
    #[arg(long, default_value = DEFAULT_SWEEP)]
    perturbations: String,
    /// Use at most this many images per class.
    #[arg(long)]
    limit: Option<usize>,
    /// Seed of the random perturbations (noise).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder for robustness.md, robustness.csv, robustness.json and robustness.png.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print JSON instead of a Markdown table.
    #[arg(long)]
    json: bool,
    /// No progress bar on stderr (it is drawn only when stderr is a terminal).
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: RobustnessArgs) -> Result<ExitCode> {
    let perturbations = Perturbation::parse_list(&a.perturbations)?;
    let members = super::load_members(&a.model, a.tta, None)?;
    let (images, labels) = robust::load_originals(&a.data, a.limit)?;
    let name = members.name();
    eprintln!(
        "{} images × {} perturbations with model {}",
        images.len(),
        perturbations.len(),
        name
    );
    let bar = super::progress::FileBar::new(a.quiet);
    let sweep = Sweep {
        model: name,
        data: a.data.display().to_string(),
        threshold: members.threshold(),
        rows: robust::sweep_with(&members, &images, &labels, &perturbations, a.seed, &bar),
    };
    bar.finish();
    if let Some(dir) = &a.out {
        let write = |name: &str, text: String| synthscan::error::write_file(&dir.join(name), text);
        write("robustness.md", sweep.to_markdown())?;
        write("robustness.csv", sweep.to_csv())?;
        write("robustness.json", sweep.to_json()?)?;
        sweep.write_plot(&dir.join("robustness.png"))?;
        eprintln!("wrote robustness.{{md,csv,json,png}} in {}", dir.display());
    }
    if a.json {
        println!("{}", sweep.to_json()?);
    } else {
        print!("{}", sweep.to_markdown());
    }
    Ok(ExitCode::SUCCESS)
}
