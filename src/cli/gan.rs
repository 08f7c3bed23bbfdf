//! `synthscan gan train|sample|fid|detect`.

use super::progress::{Bars, Watched};
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::error::{Error, Result};
use synthscan::gan::detect::{self, DetectOptions};
use synthscan::gan::train::{self as gan_train, GanEvent, GanObserver, GanTrainOptions};
use synthscan::gan::{GanConfig, model, sample};

#[derive(clap::Args, Debug)]
pub struct GanArgs {
    #[command(subcommand)]
    pub command: GanCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum GanCommand {
    /// Train a DCGAN on a folder of images (searched recursively).
    Train(TrainArgs),
    /// Write N generated images (PNG) and optionally a grid of them.
    Sample(SampleArgs),
    /// Fréchet distance (in a detector's penultimate features; not Inception FID) and diversity
    /// between two folders of images, e.g. real images vs `gan sample` output.
    Fid(FidArgs),
    /// Train a detector on real images vs this generator's fakes and score the fakes with
    /// every bundled model.
    Detect(DetectArgs),
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// GAN experiment file (default: every setting at its default).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Folder of training images (default with --resume: the run's own).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Parent folder for run folders.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Continue a run folder after its last epoch.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<PathBuf>,
    /// With --resume: train to this many epochs instead of the configured number.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Detector whose penultimate features define the Fréchet distance (default: embedded).
    #[arg(long)]
    pub feature_model: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// Generator file (G.gan or checkpoints/G-epoch-NNNN.gan).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub count: usize,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write these images as one grid PNG.
    #[arg(long)]
    pub grid: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct FidArgs {
    #[arg(long)]
    pub a: PathBuf,
    #[arg(long)]
    pub b: PathBuf,
    /// Images compared per folder (a seeded choice).
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Side the images are resized to first.
    #[arg(long, default_value_t = 32)]
    pub size: u32,
    /// Detector whose features are used (default: embedded).
    #[arg(long)]
    pub feature_model: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    /// Folder of real images.
    #[arg(long)]
    pub real: PathBuf,
    /// Generator file.
    #[arg(long)]
    pub generator: PathBuf,
    /// Images per class.
    #[arg(long, default_value_t = 2000)]
    pub count: usize,
    /// Detector experiment file (default: the fast preset, 4 epochs).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Folder for the dataset and the detector run.
    #[arg(long, default_value = "runs/gan-detect")]
    pub out: PathBuf,
    /// Folder of bundled model files (*.synthscan) to score the fakes with.
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    /// Share of each class held out as the test split.
    #[arg(long, default_value_t = 0.25)]
    pub test_fraction: f64,
    /// Write both classes as JPEG of this quality instead of PNG.
    #[arg(long)]
    pub jpeg: Option<u8>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// JSON report instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: GanArgs) -> Result<ExitCode> {
    match args.command {
        GanCommand::Train(a) => train(a),
        GanCommand::Sample(a) => sample_cmd(a),
        GanCommand::Fid(a) => fid(a),
        GanCommand::Detect(a) => detect_cmd(a),
    }
}

fn train(a: TrainArgs) -> Result<ExitCode> {
    let opts = GanTrainOptions {
        data: a.data.clone().unwrap_or_default(),
        out: a.out,
        resume: None,
        feature_model: a.feature_model,
    };
    let mut print = GanPrinter(Bars::new(a.quiet));
    let outcome = match (a.resume, a.config) {
        (Some(dir), _) => gan_train::resume(&dir, a.epochs, &opts, &mut print)?,
        (None, cfg) => {
            let cfg = match cfg {
                Some(p) => GanConfig::load(&p)?,
                None => GanConfig::default(),
            };
            if a.data.is_none() {
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

fn sample_cmd(a: SampleArgs) -> Result<ExitCode> {
    let device = synthscan::detector::default_device();
    let (meta, g) = model::load_generator(&a.model, &device)?;
    let z = sample::noise(a.seed, a.count, meta.spec.latent);
    let set = sample::generate(&g, &z, meta.spec.image_size, &device);
    let files = sample::write_folder(&set, &a.out, "gan")?;
    if let Some(p) = a.grid {
        sample::save_png(&sample::grid(&set, a.count), &p)?;
        eprintln!("grid written to {}", p.display());
    }
    println!("{} images written to {}", files.len(), a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn fid(a: FidArgs) -> Result<ExitCode> {
    let det = synthscan::detector::Detector::load_or_default(a.feature_model.as_deref())?;
    let r = synthscan::gan::fid::folder_distance(&det, &a.a, &a.b, a.size, a.count, a.seed)?;
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

fn detect_cmd(a: DetectArgs) -> Result<ExitCode> {
    let report = detect::detect(
        &DetectOptions {
            real: a.real,
            generator: a.generator,
            count: a.count,
            out: a.out,
            config: a.config,
            models: detect::bundled_models(&a.models),
            test_fraction: a.test_fraction,
            jpeg_quality: a.jpeg,
            seed: a.seed,
        },
        &mut Watched::new(synthscan::run::Silent, a.quiet),
    )?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// `gan train`'s progress bars and lines.
struct GanPrinter(Bars);

impl synthscan::run::RunObserver for GanPrinter {
    fn progress(&mut self, event: &synthscan::run::Progress) {
        self.0.show(event);
    }
}

impl GanObserver for GanPrinter {
    fn gan_event(&mut self, event: &GanEvent) {
        print_event(event, self.0.quiet());
    }
}

fn print_event(e: &GanEvent, quiet: bool) {
    match *e {
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
            info.provenance.backend,
            info.provenance.threads,
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
