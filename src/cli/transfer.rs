//! `synthscan transfer --config FILE.yaml --out M.synthscan`: frozen-backbone transfer learning
//! with k-fold cross-validation (see [`synthscan::transfer`]).

use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::error::Result;
use synthscan::transfer::{self, TransferConfig, features::Features};

#[derive(clap::Args, Debug)]
pub struct TransferArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// Where to write the final model (omit to cross-validate only).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Feature cache: read it when it exists, else write it after extraction.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Write the cross-validation report as JSON here too.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

pub fn run(args: TransferArgs) -> Result<ExitCode> {
    let cfg = TransferConfig::load(&args.config)?;
    let features = match &args.cache {
        Some(p) if p.is_file() => {
            let all = Features::load(p)?;
            let f = all.restrict_to(&cfg.data);
            eprintln!(
                "features from {}: {} of its {} images lie under the configured folders",
                p.display(),
                f.labels.len(),
                all.labels.len()
            );
            f
        }
        _ => {
            let t0 = std::time::Instant::now();
            let (f, skipped) = transfer::extract_features(&cfg, &|done, total| {
                eprint!("\rfeatures: {done}/{total} images");
            })?;
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "\rfeatures: {} images, {} rows in {secs:.0} s ({:.1} rows/s)",
                f.labels.len(),
                f.rows(),
                f.rows() as f64 / secs.max(1e-9)
            );
            for (p, e) in &skipped {
                eprintln!("skipped {}: {e}", p.display());
            }
            if let Some(p) = &args.cache {
                f.save(p)?;
            }
            f
        }
    };
    let cv = transfer::cross_validate(&cfg, &features)?;
    for r in &cv.folds {
        println!(
            "fold {}: {} images, accuracy {:.4}, ROC-AUC {:.4}",
            r.fold, r.images, r.accuracy, r.roc_auc
        );
    }
    println!(
        "{}-fold CV: accuracy {:.4} ± {:.4}, ROC-AUC {:.4} ± {:.4}; threshold {:.3} (out-of-fold accuracy {:.4})",
        cfg.folds,
        cv.accuracy_mean,
        cv.accuracy_std,
        cv.auc_mean,
        cv.auc_std,
        cv.threshold,
        cv.oof_accuracy
    );
    if let Some(p) = &args.report {
        let json = serde_json::to_vec_pretty(&cv).map_err(|e| synthscan::Error::output(p, e))?;
        synthscan::error::write_file(p, json)?;
    }
    if let Some(out) = &args.out {
        let det = transfer::fit_final(&cfg, &features, &cv)?;
        det.save(out)?;
        println!("{}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
