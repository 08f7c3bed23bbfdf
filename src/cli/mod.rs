//! The command line: one file per subcommand, each turning its arguments into a library call
//! and printing the result (a table or JSON). The library knows nothing of clap and prints
//! nothing of its own.

mod adapt;
mod bench;
mod calibrate;
mod compare;
mod ensemble;
mod evaluate;
mod explain;
mod gan;
mod import;
mod info;
mod predict;
mod progress;
mod provenance;
mod robustness;
mod serve;
mod train;
mod transfer;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::Result;
use synthscan::ensemble::Ensemble;

#[derive(Parser, Debug)]
#[command(
    name = "synthscan",
    version,
    about = "Tell real photographs from AI-generated images"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a detector (or every run of a grid) from a YAML experiment file.
    Train(train::TrainArgs),
    /// Metrics of a model on a labelled folder (FAKE is the positive class).
    Evaluate(evaluate::EvaluateArgs),
    /// Score image files or folders.
    Predict(predict::PredictArgs),
    /// What image files say about their own origin: C2PA content credentials, generator
    /// metadata and invisible watermarks, every signal in detail (no model is used).
    Provenance(provenance::ProvenanceArgs),
    /// Throughput of data loading, training and inference, with ratios.
    Bench(bench::BenchArgs),
    /// Grad-CAM heat maps: where the detector looks. Writes <stem>.cam.png (over the image),
    /// <stem>.cam.large.png (images under 128 px) and <stem>.cam.csv (raw map) per image.
    Explain(explain::ExplainArgs),
    /// Show what a model file says about itself.
    Info(info::InfoArgs),
    /// Save several models as one ensemble file scoring the mean of their scores, calibrated on
    /// validation data with --data (else decided by the mean of their thresholds); usable
    /// wherever a model file is.
    Ensemble(ensemble::EnsembleArgs),
    /// Compare run folders (or parents of run folders); `-seedN` repeats are shown as mean ± std.
    Compare(compare::CompareArgs),
    /// Accuracy, ROC-AUC and TPR at low false-alarm rates under JPEG, resizing, blur, noise and
    /// cropping of a labelled folder.
    Robustness(robustness::RobustnessArgs),
    /// Fit temperature, false-alarm quantiles and the uncertain band of a model on labelled
    /// validation data, and write the calibrated model.
    Calibrate(calibrate::CalibrateArgs),
    /// HTTP API and web page: POST images to /v1/detect, open / in a browser.
    Serve(serve::ServeArgs),
    /// Generative adversarial network: train a DCGAN on a folder, sample it, measure it, and
    /// test detectors on its fakes.
    Gan(gan::GanArgs),
    /// Build a detector from pretrained .pth/.safetensors weights with a fresh head.
    Import(import::ImportArgs),
    /// Transfer learning with a frozen pretrained backbone: features, cross-validation, model.
    Transfer(transfer::TransferArgs),
    /// Adapt a model to your own labelled images: a new head on its backbone, cross-validated,
    /// recalibrated, and written only if the base task holds (see --margin).
    Adapt(adapt::AdaptArgs),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Provenance(a) => provenance::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Info(a) => info::run(a),
        Command::Ensemble(a) => ensemble::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Robustness(a) => robustness::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Gan(a) => gan::run(a),
        Command::Import(a) => import::run(a),
        Command::Transfer(a) => transfer::run(a),
        Command::Adapt(a) => adapt::run(a),
    }
}

/// The models of `--model` (the built-in `auto` when none), each a model file or an
/// ensemble file, as one ensemble, with the TTA switch applied to every member and the
/// false-alarm budget to the ensemble's decision (one model's, or a calibrated ensemble's).
fn load_members(models: &[PathBuf], tta: Option<bool>, max_fpr: Option<f64>) -> Result<Ensemble> {
    let mut ensemble = Ensemble::load_all(models)?;
    if let Some(budget) = max_fpr {
        ensemble.set_max_fpr(budget)?;
    }
    if let Some(on) = tta {
        ensemble
            .members_mut()
            .iter_mut()
            .for_each(|d| d.meta.tta = on);
    }
    Ok(ensemble)
}

/// Exit status 1 when any item failed, else success.
fn status(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// A value as one line of JSON (an error, not an empty line, when it cannot be written).
fn json_line<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| synthscan::Error::Invalid(format!("JSON output: {e}")))
}
