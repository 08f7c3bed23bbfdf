//! Command-line layer: arguments → library call → table or JSON. No logic of its own.

use crate::detector::Detector;
use crate::error::Result;
use crate::{bench, explain, predict, train};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub mod import;
pub mod transfer;

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
        /// Also write roc.png, confusion.png and histogram.png into this folder.
        #[arg(long, value_name = "DIR")]
        plots: Option<PathBuf>,
        /// Override the model's stored flip test-time augmentation (`true`: score each image and
        /// its mirror, about half the speed; `false`: one pass).
        #[arg(long)]
        tta: Option<bool>,
    },
    /// Score image files or folders.
    Predict {
        #[arg(long)]
        model: Option<PathBuf>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Override the model's stored flip test-time augmentation (`true`: score each image and
        /// its mirror, about half the speed; `false`: one pass).
        #[arg(long)]
        tta: Option<bool>,
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
        /// Time the model of this experiment file instead of a preset.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Timed training steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
    },
    /// Grad-CAM heat maps: where the detector looks. Writes <stem>.cam.png (over the image),
    /// <stem>.cam.large.png (images under 128 px) and <stem>.cam.csv (raw map) per image.
    Explain {
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = explain::CamMethod::GradCam)]
        method: explain::CamMethod,
        /// Class whose evidence is mapped.
        #[arg(long, value_enum, default_value_t = explain::CamTarget::Fake)]
        target: explain::CamTarget,
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
    },
    /// Build a detector from pretrained .pth/.safetensors weights with a fresh head.
    Import(import::ImportArgs),
    /// Transfer learning with a frozen pretrained backbone: features, cross-validation, model.
    Transfer(transfer::TransferArgs),
    /// Show what a model file says about itself.
    Info {
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Compare run folders (or parents of run folders); `-seedN` repeats are shown as mean ± std.
    Compare {
        /// Run folders (with run.json) or folders holding run folders.
        #[arg(required = true, value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
        /// CSV instead of a Markdown table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// JSON: the table rows (mean, std, n per column) and every run's summary.
        #[arg(long)]
        json: bool,
        /// Folder for compare.png and curves.png.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train {
            config,
            data,
            out,
            resume,
            quiet,
        } => {
            let opts = train::TrainOptions {
                data,
                out,
                resume: resume.clone(),
                quiet,
            };
            let outcomes = match (config, resume) {
                (_, Some(dir)) => vec![train::resume(&dir, &opts)?],
                (Some(cfg), None) => train::train_experiments(&cfg, &opts)?,
                (None, None) => {
                    return Err(crate::Error::Invalid(
                        "train needs --config FILE.yaml (or --resume RUN_DIR)".into(),
                    ));
                }
            };
            for o in outcomes {
                println!("{}", o.model_path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Evaluate {
            model,
            data,
            json,
            strict,
            plots,
            tta,
        } => {
            let det = load_detector(model.as_deref(), tta)?;
            let ev = predict::evaluate_folder(&det, &data, strict)?;
            if let Some(dir) = &plots {
                crate::report::write_evaluation_plots(
                    dir,
                    &ev.scores,
                    &ev.labels,
                    det.meta.threshold,
                )?;
                eprintln!("plots written to {}", dir.display());
            }
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
                println!(
                    "  FAKE      {:>14}  {:>14}",
                    m.confusion.tp, m.confusion.fn_
                );
                println!("  REAL      {:>14}  {:>14}", m.confusion.fp, m.confusion.tn);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Predict {
            model,
            json,
            tta,
            paths,
        } => {
            let det = load_detector(model.as_deref(), tta)?;
            let preds = predict::predict_paths(&det, &paths);
            let mut failed = false;
            for p in &preds {
                failed |= p.error.is_some();
                if json {
                    println!("{}", serde_json::to_string(p).unwrap_or_default());
                } else if let Some(e) = &p.error {
                    eprintln!("error: {e}");
                } else {
                    println!(
                        "{:<5} p_fake={:.4}  {}",
                        p.label.as_deref().unwrap_or("?"),
                        p.p_fake.unwrap_or(f32::NAN),
                        p.path.display()
                    );
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Bench {
            data,
            preset,
            config,
            batch_size,
            steps,
        } => {
            let (name, arch) = match config {
                Some(path) => {
                    let c = crate::config::load(&path)?;
                    (c.name, c.model.into())
                }
                None => {
                    let arch = crate::model::preset(&preset)?;
                    (preset, arch)
                }
            };
            bench::run(&bench::BenchOptions {
                data,
                name,
                arch,
                batch_size,
                steps,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            model,
            method,
            target,
            layer,
            list_layers,
            out,
            paths,
        } => {
            let det = Detector::load_or_default(model.as_deref())?;
            if list_layers {
                for l in explain::layers(&det) {
                    println!("{:<10} {}x{}x{}", l.name, l.channels, l.height, l.width);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let opts = explain::ExplainOptions {
                layer,
                method,
                target,
                out_dir: out,
                ..Default::default()
            };
            let mut failed = false;
            for (path, result) in explain::explain_paths(&det, &paths, &opts)? {
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
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Import(args) => import::run(args),
        Command::Transfer(args) => transfer::run(args),
        Command::Info { model } => {
            let det = Detector::load_or_default(model.as_deref())?;
            let mut v = serde_json::to_value(&det.meta).unwrap_or_default();
            v["params"] = det.num_params().into();
            v["layers"] = serde_json::to_value(det.network.layer_names()).unwrap_or_default();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare {
            runs,
            csv,
            json,
            out,
        } => {
            let cmp = crate::report::compare(&runs)?;
            let table = if json {
                cmp.to_json()
            } else if csv {
                cmp.to_csv()
            } else {
                cmp.to_markdown()
            };
            print!("{}", table.trim_end());
            println!();
            cmp.write_plots(&out)?;
            eprintln!(
                "wrote {} and {}",
                out.join("compare.png").display(),
                out.join("curves.png").display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The model file (or the embedded one), with the TTA switch overridden when asked.
fn load_detector(model: Option<&std::path::Path>, tta: Option<bool>) -> Result<Detector> {
    let mut det = Detector::load_or_default(model)?;
    if let Some(on) = tta {
        det.meta.tta = on;
    }
    Ok(det)
}
