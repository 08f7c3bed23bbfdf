use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::decision::ThresholdRule;
use synthscan::eval::score_files;
use synthscan::{Error, Result};

#[derive(Args, Debug)]
pub struct EnsembleArgs {
    /// Member model files (or ensemble files, whose members are taken); at least two in all.
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Store this flip test-time augmentation in every member instead of its own.
    #[arg(long)]
    tta: Option<bool>,
    /// Calibrate on this dataset's validation split (drawn as training drew it: the data
    /// settings and seed of `--config`, else 5 % with seed 42): the ensemble's own threshold,
    /// uncertain band and false-alarm quantiles, fitted on its mean scores. Without it, the
    /// mean of the members' thresholds and no uncertain band.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The experiment the members were trained with (its data settings and seed).
    #[arg(long, requires = "data")]
    config: Option<PathBuf>,
    /// Choose the threshold that keeps false alarms on REAL validation images within this
    /// share, instead of the most accurate one.
    #[arg(long, value_name = "SHARE", requires = "data")]
    max_fpr: Option<f64>,
    /// Accuracy the answers outside the uncertain band must reach on validation.
    #[arg(long, default_value_t = 0.99)]
    confident_accuracy: f64,
    /// The ensemble file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: EnsembleArgs) -> Result<ExitCode> {
    let mut ensemble = super::load_members(&a.model, a.tta, None)?;
    if ensemble.len() < 2 {
        return Err(Error::Invalid(
            "an ensemble file needs at least two models (--model A --model B)".into(),
        ));
    }
    if let Some(dir) = &a.data {
        let cfg = synthscan::config::load_or_default(a.config.as_deref())?;
        let files = synthscan::train::data::validation_files(&cfg, dir)?;
        // Fitted on the members' plain mean, not on an earlier calibration's output.
        ensemble.clear_calibration();
        let val = score_files(&ensemble, &files, cfg.data.strict)?;
        let rule = a
            .max_fpr
            .map_or(ThresholdRule::Accuracy, ThresholdRule::MaxFpr);
        let c = ensemble.calibrate(&val.scores, &val.labels, a.confident_accuracy, rule)?;
        let [lo, hi] = c.uncertain.unwrap_or([c.threshold; 2]);
        eprintln!(
            "calibrated on {} validation images: threshold {:.4}, uncertain band [{lo:.4}, {hi:.4}), \
             ECE {:.4}, coverage {:.4} at accuracy {:.4}",
            c.facts.images,
            c.threshold,
            c.facts.ece_after,
            c.facts.coverage,
            c.facts.confident_accuracy
        );
    }
    ensemble.save(&a.out)?;
    println!(
        "{}: {} (threshold {:.4}, {} parameters)",
        a.out.display(),
        ensemble.name(),
        ensemble.threshold(),
        ensemble.iter().map(|d| d.num_params()).sum::<usize>()
    );
    Ok(ExitCode::SUCCESS)
}
