use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::bench::reference::{self, Measure, ReferenceOptions};
use synthscan::bench::{self, BenchOptions, BenchReport};
use synthscan::detector::{Detector, ModelMeta, default_device};
use synthscan::ensemble::Ensemble;
use synthscan::{Error, Result};

#[derive(Args, Debug)]
pub struct BenchArgs {
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
    /// Time the network of this model file (or built-in model name, e.g. `realworld`) at its
    /// input size, with its weights.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Timed training steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Time the same network in PyTorch and ONNX Runtime too, in interleaved rounds, and print
    /// the ratios (needs a Python with torch, onnxruntime and onnx).
    #[arg(long)]
    reference: bool,
    /// Interleaved rounds of `--reference`.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The Python interpreter of `--reference`.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// The reference script.
    #[arg(long, default_value_os_t = reference::default_script())]
    reference_script: PathBuf,
    /// Batch sizes of the `--reference` inference rows.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64, 256])]
    infer_batches: Vec<usize>,
    /// Seconds each `--reference` inference measurement runs at least.
    #[arg(long, default_value_t = 2.0)]
    min_secs: f64,
    /// Leave the training step out of `--reference` (inference and the folder only).
    #[arg(long)]
    no_train: bool,
    /// Write the `--reference` table (Markdown) here too.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    let (name, optimizer, det) = subject(&a)?;
    let opts = BenchOptions {
        data: a.data.clone(),
        name,
        arch: det.meta.arch.clone(),
        input_size: det.meta.input_size,
        batch_size: a.batch_size,
        steps: a.steps,
        optimizer,
    };
    if a.reference {
        return run_reference(&a, &opts, det.into());
    }
    print_report(&bench::run(&opts)?);
    Ok(ExitCode::SUCCESS)
}

/// What to time: a model file's network (with its weights, at its input size), an experiment's
/// or a preset's (fresh weights); the optimiser of its training steps; a detector of it.
fn subject(a: &BenchArgs) -> Result<(String, synthscan::config::OptimizerConfig, Detector)> {
    if let Some(path) = &a.model {
        let det = Detector::load_or_default(Some(path))?;
        return Ok((det.name.clone(), bench::default_optimizer(), det));
    }
    let (name, arch, optimizer, size) = match &a.config {
        Some(path) => {
            let c = synthscan::config::load(path)?;
            (c.name, c.model.into(), c.optimizer, c.input_size)
        }
        None => {
            let arch = synthscan::model::preset(&a.preset)?;
            (a.preset.clone(), arch, bench::default_optimizer(), 32)
        }
    };
    let norm = synthscan::data::Normalization::unit();
    let device = default_device();
    let network = synthscan::model::ArchConfig::init(&arch, size as usize, &device);
    let meta = ModelMeta::untrained(arch, size, norm);
    Ok((name, optimizer, Detector::new(meta, network, device)))
}

fn run_reference(a: &BenchArgs, opts: &BenchOptions, model: Ensemble) -> Result<ExitCode> {
    let mut measures = Vec::new();
    if !a.no_train {
        measures.push(Measure::Train(a.batch_size));
    }
    measures.extend(a.infer_batches.iter().map(|&b| Measure::Infer(b)));
    if a.data.is_some() {
        measures.push(Measure::Evaluate);
    }
    let ropts = ReferenceOptions {
        python: a.python.clone(),
        script: a.reference_script.clone(),
        rounds: a.rounds.max(1),
        measures,
        data: a.data.clone(),
        min_secs: a.min_secs,
    };
    if let Some(why) = reference::unavailable(&ropts) {
        return Err(Error::Invalid(format!("bench --reference: {why}")));
    }
    let table = reference::compare(opts, &model, &ropts)?.to_markdown();
    println!("{table}");
    if let Some(out) = &a.out {
        std::fs::write(out, &table).map_err(|e| Error::io(out, e))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &BenchReport) {
    println!(
        "synthscan bench: model {}, batch {}, {} threads, device {}",
        r.model, r.batch_size, r.threads, r.device
    );
    // Rates under 100 img/s (a photograph-sized backbone) keep a decimal.
    let rate = |v: f64| format!("{v:>10.*}", usize::from(v < 100.0));
    println!("decode + resize           {} img/s", rate(r.decode));
    println!("augment + batch           {} img/s", rate(r.augment_batch));
    println!(
        "train step ({})      {} img/s  ({} params)",
        r.model,
        rate(r.train_step),
        r.params
    );
    println!("inference                 {} img/s", rate(r.inference));
    println!(
        "ratio loader / train step {:>10.1}x  (above 1: the model, not the loader, is the bottleneck)",
        r.loader_over_train()
    );
    println!(
        "ratio decode / inference  {:>10.1}x",
        r.decode_over_inference()
    );
}
