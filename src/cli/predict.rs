use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::Result;
use synthscan::decision::{decisive_signal, describe_signal};
use synthscan::predict::predict_ensemble_with;
use synthscan::provenance::{Evidence, Verdict};

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model file (default: `auto`, the built-in models: CIFAKE-sized images to `cifake`, others to `realworld`; `cifake` and `realworld` name one of them). Repeat it to score with several
    /// models as one ensemble: the mean of their scores against the mean of their thresholds.
    #[arg(long)]
    model: Vec<PathBuf>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Override the model's stored flip test-time augmentation (`true`: score each image and
    /// its mirror, about half the speed; `false`: one pass).
    #[arg(long)]
    tta: Option<bool>,
    /// Set the threshold so that at most this share of REAL validation images are called FAKE
    /// (e.g. 0.01), from the quantiles stored in the model at calibration.
    #[arg(long, value_name = "SHARE")]
    max_fpr: Option<f64>,
    /// Score only shard i of n (0-based): a file belongs to the shard given by a fixed hash
    /// of its path relative to the folder named, so the n shards are disjoint and cover
    /// every file, on every machine.
    #[arg(long, value_name = "i/n")]
    shard: Option<synthscan::data::shard::Shard>,
    /// No progress bar and no summary line on stderr (the bar is drawn only when stderr is a
    /// terminal).
    #[arg(long)]
    quiet: bool,
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub fn run(a: PredictArgs) -> Result<ExitCode> {
    let members = super::load_members(&a.model, a.tta, a.max_fpr)?;
    let paths = match a.shard {
        Some(s) => s.select(&a.paths),
        None => a.paths,
    };
    let bar = super::progress::FileBar::new(a.quiet);
    let preds = predict_ensemble_with(&members, &paths, &bar);
    bar.finish();
    let mut failed = false;
    for p in &preds {
        failed |= p.error.is_some();
        if a.json {
            println!("{}", super::json_line(p)?);
        } else if let Some(e) = &p.error {
            eprintln!("error: {e}");
        } else {
            let why = p
                .decision
                .as_ref()
                .and_then(|d| d.reason.as_deref())
                // Decided by provenance: the line below says why.
                .map(|r| match r.starts_with("provenance:") {
                    true => "  (decided by provenance)".to_string(),
                    false => format!("  ({r})"),
                })
                .unwrap_or_default();
            println!(
                "{:<5} p_fake={:.4}  {}{why}",
                p.label().unwrap_or("?"),
                p.p_fake().unwrap_or(f32::NAN),
                p.path.display()
            );
            if let Some(line) = p.evidence().and_then(provenance_line) {
                println!("  {line}");
            }
        }
    }
    if !a.quiet {
        eprintln!("{}", summary(&preds));
    }
    Ok(super::status(failed))
}

/// `3 files: 2 scored, 1 not scored (named above)`: every file found is counted, scored or not.
fn summary(preds: &[synthscan::predict::Prediction]) -> String {
    let errors = preds.iter().filter(|p| p.error.is_some()).count();
    let files = match preds.len() {
        1 => "1 file".to_string(),
        n => format!("{n} files"),
    };
    let not = match errors {
        0 => String::new(),
        n => format!(", {n} not scored (each named in an error)"),
    };
    format!("{files}: {} scored{not}", preds.len() - errors)
}

/// `provenance: AI — C2PA credential (signed, signer not on a trust list): … by …`: the
/// verdict and its strongest signal (the decisive one when there is one), or `None` when
/// nothing was found.
fn provenance_line(ev: &Evidence) -> Option<String> {
    if ev.verdict == Verdict::None {
        return None;
    }
    let top = decisive_signal(ev).or(ev.signals.first())?;
    Some(format!(
        "provenance: {} — {}",
        ev.verdict,
        describe_signal(top)
    ))
}
