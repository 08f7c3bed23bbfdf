//! Command-line layer: arguments → library call → table or JSON. No logic of its own.

use crate::detector::Detector;
use crate::error::Result;
use crate::{bench, predict, train};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "synthscan", version, about = "Tell real photographs from AI-generated images")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a detector (or every run of a grid) from a YAML experiment file.
    Train {
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
    },
    /// Metrics of a model on a labelled folder (FAKE is the positive class).
    Evaluate {
        /// Model file (default: the model built into this binary).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        json: bool,
        /// Fail on an undecodable file instead of skipping it.
        #[arg(long)]
        strict: bool,
    },
    /// Score image files or folders.
    Predict {
        #[arg(long)]
        model: Option<PathBuf>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Throughput of data loading, training and inference, with ratios.
    Bench {
        /// Dataset folder to decode (default: generated images).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Model preset to time.
        #[arg(long, default_value = "default")]
        preset: String,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Timed training steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
    },
    /// Show what a model file says about itself.
    Info {
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train { config, data, out, resume, quiet } => {
            let opts = train::TrainOptions { data, out, resume: resume.clone(), quiet };
            let outcomes = match (config, resume) {
                (_, Some(dir)) => vec![train::resume(&dir, &opts)?],
                (Some(cfg), None) => train::train_experiments(&cfg, &opts)?,
                (None, None) => return Err(crate::Error::Invalid("train needs --config FILE.yaml (or --resume RUN_DIR)".into())),
            };
            for o in outcomes {
                println!("{}", o.model_path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Evaluate { model, data, json, strict } => {
            let det = Detector::load_or_default(model.as_deref())?;
            let ev = predict::evaluate_folder(&det, &data, strict)?;
            let m = &ev.metrics;
            if json {
                println!("{}", serde_json::to_string(m).unwrap_or_default());
            } else {
                println!("images      {}  ({} skipped)", m.count, ev.skipped.len());
                println!("accuracy    {:.4}", m.accuracy);
                println!("precision   {:.4}", m.precision);
                println!("recall      {:.4}", m.recall);
                println!("f1          {:.4}", m.f1);
                println!("roc_auc     {:.4}", m.roc_auc);
                println!("threshold   {:.4}", m.threshold);
                println!("img/s       {:.0}", m.images_per_second);
                println!("confusion   predicted FAKE  predicted REAL");
                println!("  FAKE      {:>14}  {:>14}", m.confusion.tp, m.confusion.fn_);
                println!("  REAL      {:>14}  {:>14}", m.confusion.fp, m.confusion.tn);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Predict { model, json, paths } => {
            let det = Detector::load_or_default(model.as_deref())?;
            let preds = predict::predict_paths(&det, &paths);
            let mut failed = false;
            for p in &preds {
                failed |= p.error.is_some();
                if json {
                    println!("{}", serde_json::to_string(p).unwrap_or_default());
                } else if let Some(e) = &p.error {
                    eprintln!("error: {e}");
                } else {
                    println!("{:<5} p_fake={:.4}  {}", p.label.as_deref().unwrap_or("?"), p.p_fake.unwrap_or(f32::NAN), p.path.display());
                }
            }
            Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Bench { data, preset, batch_size, steps } => {
            bench::run(&bench::BenchOptions { data, preset, batch_size, steps })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Info { model } => {
            let det = Detector::load_or_default(model.as_deref())?;
            let mut v = serde_json::to_value(&det.meta).unwrap_or_default();
            v["params"] = det.num_params().into();
            v["layers"] = serde_json::to_value(det.network.layer_names()).unwrap_or_default();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
    }
}
