//! `synthscan adapt --model BASE --data DIR --out NEW.synthscan`: a team's labelled images
//! become a new head on the base model's backbone, written only when the guard passes
//! (see [`synthscan::adapt`]).

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::adapt::{self, AdaptOptions, cache::FeatureCache};
use synthscan::{Detector, Error, Result};

#[derive(Args, Debug)]
pub struct AdaptArgs {
    /// No progress bars on stderr (they are drawn only when stderr is a terminal).
    #[arg(long)]
    quiet: bool,
    /// The base model: a model file, or `realworld`.
    #[arg(long, default_value = "realworld")]
    model: PathBuf,
    /// Your labelled images: REAL/ and FAKE/ (one of them may be missing), a handful to
    /// thousands.
    #[arg(long)]
    data: PathBuf,
    /// Where to write the adapted model.
    #[arg(long)]
    out: PathBuf,
    /// The base model's training data (REAL/ + FAKE/ folders; repeat the flag for several):
    /// a sample is replayed so the general task is not forgotten, another checks it. Default:
    /// the folders the base model file records, where they exist here.
    #[arg(long = "base-data")]
    base_data: Vec<PathBuf>,
    /// Base images replayed beside yours.
    #[arg(long, default_value_t = 200)]
    replay: usize,
    /// Base images (never trained on) scored before and after by the guard.
    #[arg(long, default_value_t = 200)]
    base_val: usize,
    /// Most ROC-AUC (as a share: 0.02 = 2 points) the base task may lose before `adapt`
    /// refuses to write.
    #[arg(long, default_value_t = 0.02)]
    margin: f64,
    /// Most balanced accuracy at the threshold (as a share) the base task may lose before
    /// `adapt` refuses to write.
    #[arg(long, default_value_t = 0.05)]
    accuracy_margin: f64,
    /// Write the model even when the guard refuses it.
    #[arg(long)]
    force: bool,
    /// Choose the threshold that keeps false alarms on REAL images within this share.
    #[arg(long, value_name = "SHARE")]
    max_fpr: Option<f64>,
    /// Cross-validation folds on your images.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Head training epochs.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Feature cache folder (default: $XDG_CACHE_HOME/synthscan or ~/.cache/synthscan).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Do not read or write the feature cache.
    #[arg(long)]
    no_cache: bool,
    /// Write the report as JSON here too.
    #[arg(long)]
    report: Option<PathBuf>,
}

impl AdaptArgs {
    fn options(&self) -> Result<AdaptOptions> {
        for (flag, v) in [
            ("--margin", self.margin),
            ("--accuracy-margin", self.accuracy_margin),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Invalid(format!(
                    "{flag} {v}: a share between 0 and 1"
                )));
            }
        }
        if let Some(b) = self.max_fpr.filter(|b| !(0.0..=1.0).contains(b)) {
            return Err(Error::Invalid(format!(
                "--max-fpr {b}: a share between 0 and 1"
            )));
        }
        let mut o = AdaptOptions::new(self.data.clone());
        o.base_data = self.base_data.clone();
        o.replay = self.replay;
        o.base_val = self.base_val;
        o.folds = self.folds.max(2);
        o.head.epochs = self.epochs.max(1);
        o.max_fpr = self.max_fpr;
        o.seed = self.seed;
        Ok(o)
    }
}

pub fn run(a: AdaptArgs) -> Result<ExitCode> {
    let t0 = std::time::Instant::now();
    let opts = a.options()?;
    let base = Detector::load_or_default(Some(&a.model))?;
    adapt::check_adaptable(&base)?;
    let hash = adapt::source_hash(&a.model)?;
    let mut cache = match (&a.cache, a.no_cache) {
        (_, true) => FeatureCache::in_memory(),
        (Some(dir), false) => FeatureCache::open(dir, &hash),
        (None, false) => adapt::default_cache_dir()
            .map(|dir| FeatureCache::open(&dir, &hash))
            .unwrap_or_else(FeatureCache::in_memory),
    };
    if adapt::base_folders(&base, &opts.base_data).is_empty() {
        eprintln!("{}", no_base_data(&base));
    }
    let bars = super::progress::StageBars::new(a.quiet);
    let inputs = adapt::gather(&base, &hash, &opts, &mut cache, &|stage, done, total| {
        bars.show(&format!("features of {stage} "), done, total)
    });
    bars.finish();
    let inputs = inputs?;
    if let Err(e) = cache.save(&hash) {
        eprintln!("feature cache not saved: {e}");
    }
    for (path, why) in inputs
        .user
        .skipped
        .iter()
        .chain(&inputs.replay.skipped)
        .chain(&inputs.guard.skipped)
    {
        eprintln!("skipped {}: {why}", path.display());
    }
    let features_secs = t0.elapsed().as_secs_f64();
    let (model, report) = adapt::fit(&base, &inputs, &opts)?;
    let secs = t0.elapsed().as_secs_f64();
    print_summary(&report, &inputs, cache.hits, [features_secs, secs]);
    if let Some(p) = &a.report {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::output(p, e))?;
        synthscan::error::write_file(p, json)?;
    }
    let margins = adapt::Margins {
        auc: a.margin,
        accuracy: a.accuracy_margin,
    };
    if let Some(why) = report.refusal(margins) {
        if !a.force {
            eprintln!("{}: not written: {why}", a.out.display());
            return Ok(ExitCode::from(3));
        }
        eprintln!("--force: writing although {why}");
    }
    model.save(&a.out)?;
    let card = a.out.with_extension("MODEL_CARD.md");
    let name = a
        .out
        .file_stem()
        .map_or("adapted".into(), |s| s.to_string_lossy());
    synthscan::error::write_file(&card, report.card(&name, margins))?;
    println!("{}\n{}", a.out.display(), card.display());
    Ok(ExitCode::SUCCESS)
}

fn print_summary(r: &adapt::AdaptReport, inputs: &adapt::Inputs, hits: usize, secs: [f64; 2]) {
    println!(
        "adapted {} (sha256 {}) with {} REAL + {} FAKE images of {}; {} replayed base images, \
         {} folds; {} features from the cache; {:.1} s ({:.1} s reading and features)",
        r.base.name,
        &r.base.sha256[..16],
        r.corrections.real,
        r.corrections.fake,
        r.corrections.folder,
        r.replay_images,
        r.folds,
        hits,
        secs[1],
        secs[0],
    );
    print!("{}", r.table());
    let band = r.uncertain.map_or(String::new(), |[lo, hi]| {
        format!(", uncertain band [{lo:.3}, {hi:.3})")
    });
    println!("threshold {:.3}{band}", r.threshold);
    if inputs.guard.is_empty() {
        println!("base task: not checked (no base training data)");
    }
}

/// What is lost without the base model's training data, and how to supply it.
fn no_base_data(base: &Detector) -> String {
    let recorded = adapt::recorded_training_data(&base.meta.provenance);
    let where_ = if recorded.is_empty() {
        "its file records no training folders (the built-in realworld model was trained on \
         realworld-train and realworld-extra: ../shared/data/realworld/*.tar.gz, extracted)"
            .to_string()
    } else {
        format!(
            "the folders it records are not on this machine: {}",
            recorded
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "no base training data: {where_}. Without it nothing is replayed (the new head may \
         forget the general task) and the guard cannot check the base task; pass --base-data DIR"
    )
}
