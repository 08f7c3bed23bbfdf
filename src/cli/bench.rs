use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::Result;
use synthscan::bench::{self, BenchOptions, BenchReport};

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
    /// Timed training steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    let (name, arch) = match a.config {
        Some(path) => {
            let c = synthscan::config::load(&path)?;
            (c.name, c.model.into())
        }
        None => {
            let arch = synthscan::model::preset(&a.preset)?;
            (a.preset, arch)
        }
    };
    let report = bench::run(&BenchOptions {
        data: a.data,
        name,
        arch,
        batch_size: a.batch_size,
        steps: a.steps,
    })?;
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &BenchReport) {
    println!(
        "synthscan bench: model {}, batch {}, {} threads, device {}",
        r.model, r.batch_size, r.threads, r.device
    );
    println!("decode + resize           {:>10.0} img/s", r.decode);
    println!("augment + batch           {:>10.0} img/s", r.augment_batch);
    println!(
        "train step ({})      {:>10.0} img/s  ({} params)",
        r.model, r.train_step, r.params
    );
    println!("inference                 {:>10.0} img/s", r.inference);
    println!(
        "ratio loader / train step {:>10.1}x  (above 1: the model, not the loader, is the bottleneck)",
        r.loader_over_train()
    );
    println!(
        "ratio decode / inference  {:>10.1}x",
        r.decode_over_inference()
    );
}
