//! `synthscan gan train|sample|detect`.

use crate::error::{Error, Result};
use crate::gan::detect::{self, DetectOptions};
use crate::gan::train::{self as gan_train, GanEvent, GanTrainOptions};
use crate::gan::{GanConfig, model, sample};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct GanArgs {
    #[command(subcommand)]
    pub command: GanCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum GanCommand {
    /// Train a DCGAN on a folder of images (searched recursively).
    Train {
        /// GAN experiment file (default: every setting at its default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Folder of training images (default with --resume: the run's own).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Parent folder for run folders.
        #[arg(long, default_value = "runs")]
        out: PathBuf,
        /// Continue a run folder after its last epoch.
        #[arg(long, value_name = "RUN")]
        resume: Option<PathBuf>,
        /// With --resume: train to this many epochs instead of the configured number.
        #[arg(long)]
        epochs: Option<usize>,
        /// Detector whose penultimate features define the Fréchet distance (default: embedded).
        #[arg(long)]
        feature_model: Option<PathBuf>,
        #[arg(long)]
        quiet: bool,
    },
    /// Write N generated images (PNG) and optionally a grid of them.
    Sample {
        /// Generator file (G.gan or checkpoints/G-epoch-NNNN.gan).
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 64)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also write these images as one grid PNG.
        #[arg(long)]
        grid: Option<PathBuf>,
    },
    /// Fréchet distance (in a detector's penultimate features; not Inception FID) and diversity
    /// between two folders of images, e.g. real images vs `gan sample` output.
    Fid {
        #[arg(long)]
        a: PathBuf,
        #[arg(long)]
        b: PathBuf,
        /// Images compared per folder (a seeded choice).
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Side the images are resized to first.
        #[arg(long, default_value_t = 32)]
        size: u32,
        /// Detector whose features are used (default: embedded).
        #[arg(long)]
        feature_model: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Train a detector on real images vs this generator's fakes and score the fakes with
    /// every bundled model.
    Detect {
        /// Folder of real images.
        #[arg(long)]
        real: PathBuf,
        /// Generator file.
        #[arg(long)]
        generator: PathBuf,
        /// Images per class.
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// Detector experiment file (default: the fast preset, 4 epochs).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Folder for the dataset and the detector run.
        #[arg(long, default_value = "runs/gan-detect")]
        out: PathBuf,
        /// Folder of bundled model files (*.synthscan) to score the fakes with.
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// Share of each class held out as the test split.
        #[arg(long, default_value_t = 0.25)]
        test_fraction: f64,
        /// Write both classes as JPEG of this quality instead of PNG.
        #[arg(long)]
        jpeg: Option<u8>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// JSON report instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        quiet: bool,
    },
}

pub fn run(args: GanArgs) -> Result<ExitCode> {
    match args.command {
        GanCommand::Train {
            config,
            data,
            out,
            resume,
            epochs,
            feature_model,
            quiet,
        } => {
            let opts = GanTrainOptions {
                data: data.clone().unwrap_or_default(),
                out,
                resume: None,
                feature_model,
                quiet,
            };
            let mut print = |e: GanEvent| print_event(e, quiet);
            let outcome = match (resume, config) {
                (Some(dir), _) => gan_train::resume(&dir, epochs, &opts, &mut print)?,
                (None, cfg) => {
                    let cfg = match cfg {
                        Some(p) => GanConfig::load(&p)?,
                        None => GanConfig::default(),
                    };
                    if data.is_none() {
                        return Err(Error::Invalid(
                            "gan train needs --data DIR (a folder of images)".into(),
                        ));
                    }
                    gan_train::train(&cfg, &opts, &mut print)?
                }
            };
            eprintln!(
                "done: {} epochs in {:.1} min; {} and {}",
                outcome.info.epochs_run,
                outcome.info.train_seconds / 60.0,
                outcome.gif.display(),
                outcome.generator.display()
            );
            println!("{}", outcome.generator.display());
            Ok(ExitCode::SUCCESS)
        }
        GanCommand::Sample {
            model: path,
            count,
            out,
            seed,
            grid,
        } => {
            let device = crate::detector::default_device();
            let (meta, g) = model::load_generator(&path, &device)?;
            let z = sample::noise(seed, count, meta.spec.latent);
            let set = sample::generate(&g, &z, meta.spec.image_size, &device);
            let files = sample::write_folder(&set, &out, "gan")?;
            if let Some(p) = grid {
                sample::save_png(&sample::grid(&set, count), &p)?;
                eprintln!("grid written to {}", p.display());
            }
            println!("{} images written to {}", files.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        GanCommand::Fid {
            a,
            b,
            count,
            size,
            feature_model,
            seed,
        } => {
            let det = crate::detector::Detector::load_or_default(feature_model.as_deref())?;
            let r = crate::gan::fid::folder_distance(&det, &a, &b, size, count, seed)?;
            println!(
                "frechet      {:.4}  (detector features, not Inception FID)",
                r.frechet
            );
            println!("images       {} vs {}", r.count_a, r.count_b);
            println!(
                "diversity    {:.4} vs {:.4}  (mean pairwise RMS pixel distance)",
                r.diversity_a, r.diversity_b
            );
            Ok(ExitCode::SUCCESS)
        }
        GanCommand::Detect {
            real,
            generator,
            count,
            config,
            out,
            models,
            test_fraction,
            jpeg,
            seed,
            json,
            quiet,
        } => {
            let report = detect::detect(&DetectOptions {
                real,
                generator,
                count,
                out,
                config,
                models: detect::bundled_models(&models),
                test_fraction,
                jpeg_quality: jpeg,
                seed,
                quiet,
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print_report(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_event(e: GanEvent, quiet: bool) {
    match e {
        GanEvent::Started {
            run_dir,
            info,
            resumed_after,
        } => eprintln!(
            "run {}: {} images ({} skipped), G {} params, D {} params, backend {}, {} threads{}",
            run_dir.display(),
            info.images,
            info.skipped_files,
            info.g_params,
            info.d_params,
            info.backend,
            info.threads,
            if resumed_after > 0 {
                format!(", resuming after epoch {resumed_after}")
            } else {
                String::new()
            }
        ),
        GanEvent::Epoch(r) if !quiet => eprintln!(
            "epoch {}: D loss {:.4} G loss {:.4} D(x) {:.3} D(G(z)) {:.3} | {:.0} img/s, {:.0}s",
            r.epoch, r.d_loss, r.g_loss, r.d_real, r.d_fake, r.images_per_second, r.seconds
        ),
        GanEvent::Frechet(f) if !quiet => eprintln!(
            "epoch {}: Fréchet distance {:.3} (detector features), diversity {:.4} (real {:.4})",
            f.epoch, f.frechet, f.diversity_fake, f.diversity_real
        ),
        GanEvent::Checkpoint(p) if !quiet => eprintln!("checkpoint {}", p.display()),
        _ => {}
    }
}

fn print_report(r: &detect::DetectReport) {
    println!(
        "dataset     {} (train {} REAL + {} FAKE, test {} REAL + {} FAKE)",
        r.dataset.display(),
        r.train_count[0],
        r.train_count[1],
        r.test_count[0],
        r.test_count[1]
    );
    println!("detector    {}", r.model_path.display());
    println!();
    println!("| model | accuracy | AUC | fakes caught | real kept |");
    println!("|---|---|---|---|---|");
    for s in std::iter::once(&r.trained).chain(&r.bundled) {
        println!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} |",
            s.name, s.metrics.accuracy, s.metrics.roc_auc, s.fakes_caught, s.real_kept
        );
    }
}
