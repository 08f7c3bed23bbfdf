use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::decision::ThresholdRule;
use synthscan::train::load_run_data;
use synthscan::{Detector, Error, Result};

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Model file (default: the built-in `cifake` model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Dataset folder as for `train`: the validation split is drawn from it exactly as the
    /// experiment's training run drew it (same `data` settings and seed).
    #[arg(long)]
    data: PathBuf,
    /// The experiment the model was trained with (its data settings and seed give the
    /// validation split); without it, 5 % of the folder with seed 42.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Choose the threshold that keeps false alarms on REAL validation images within this
    /// share, instead of keeping the model's decisions.
    #[arg(long, value_name = "SHARE")]
    max_fpr: Option<f64>,
    /// Accuracy the answers outside the uncertain band must reach on validation.
    #[arg(long, default_value_t = 0.99)]
    confident_accuracy: f64,
    /// Where to write the calibrated model.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: CalibrateArgs) -> Result<ExitCode> {
    let mut cfg = synthscan::config::load_or_default(a.config.as_deref())?;
    let mut det = Detector::load_or_default(a.model.as_deref())?;
    cfg.input_size = det.meta.input_size;
    let data = load_run_data(&cfg, &a.data)?;
    if data.val.is_empty() {
        return Err(Error::dataset(&a.data, "the validation split is empty"));
    }
    let rule = a.max_fpr.map(ThresholdRule::MaxFpr);
    let (_, facts) = det.calibrate(&data.val, a.confident_accuracy, rule);
    det.save(&a.out)?;
    let [lo, hi] = det.meta.uncertain.unwrap_or([det.meta.threshold; 2]);
    println!(
        "{}: temperature {:.3}, threshold {:.4}, uncertain band [{lo:.4}, {hi:.4}); on {} validation images ECE {:.4} → {:.4}, coverage {:.4} at accuracy {:.4}",
        a.out.display(),
        det.meta.temperature,
        det.meta.threshold,
        facts.images,
        facts.ece_before,
        facts.ece_after,
        facts.coverage,
        facts.confident_accuracy
    );
    Ok(ExitCode::SUCCESS)
}
