use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::data::manifest::Manifest;
use synthscan::eval::{Evaluation, GroupMetrics, evaluate_ensemble_with};
use synthscan::{Error, Result};

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// Model file (default: `auto`, the built-in models: CIFAKE-sized images to `cifake`, others to `realworld`; `cifake` and `realworld` name one of them). Repeat it to evaluate several
    /// models as one ensemble: the mean of their scores against the mean of their thresholds.
    #[arg(long)]
    model: Vec<PathBuf>,
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
    /// Set the threshold so that at most this share of REAL validation images are called FAKE
    /// (e.g. 0.01), from the quantiles stored in the model at calibration.
    #[arg(long, value_name = "SHARE")]
    max_fpr: Option<f64>,
    /// Also report metrics per value of this column of the collection's manifest.csv (found in
    /// the data folder or its two parents; `--manifest` names another), e.g. `kind`, `source`,
    /// `generator`.
    #[arg(long, value_name = "COLUMN")]
    by: Option<String>,
    /// The manifest for `--by` (a CSV with a `file` column relative to its folder).
    #[arg(long, value_name = "FILE", requires = "by")]
    manifest: Option<PathBuf>,
    /// No progress bar on stderr (it is drawn only when stderr is a terminal).
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: EvaluateArgs) -> Result<ExitCode> {
    let members = super::load_members(&a.model, a.tta, a.max_fpr)?;
    let bar = super::progress::FileBar::new(a.quiet);
    let ev = evaluate_ensemble_with(&members, &a.data, a.strict, &bar)?;
    bar.finish();
    if let Some(dir) = &a.plots {
        synthscan::report::write_evaluation_plots(
            dir,
            &ev.scores,
            &ev.labels,
            ev.metrics.threshold,
        )?;
        eprintln!("plots written to {}", dir.display());
    }
    let groups = match &a.by {
        Some(column) => Some(groups(&a, column, &ev)?),
        None => None,
    };
    if a.json {
        let mut v = serde_json::to_value(&ev.metrics).map_err(json_error)?;
        if let (Some(column), Some(g)) = (&a.by, &groups) {
            v["by"] = serde_json::json!({ "column": column, "groups": g });
        }
        println!("{}", super::json_line(&v)?);
    } else {
        print_table(&ev);
        if let (Some(column), Some(g)) = (&a.by, &groups) {
            print_groups(column, g);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Metrics per value of `column` of the data folder's manifest.
fn groups(a: &EvaluateArgs, column: &str, ev: &Evaluation) -> Result<Vec<GroupMetrics>> {
    let manifest = match &a.manifest {
        Some(path) => Manifest::load(path)?,
        None => Manifest::find(&a.data)?.ok_or_else(|| {
            Error::Invalid(format!(
                "--by {column}: no manifest.csv in {} or its two parents (name one with --manifest)",
                a.data.display()
            ))
        })?,
    };
    if !manifest.columns().iter().any(|c| c == column) {
        return Err(Error::Invalid(format!(
            "--by {column}: the manifest has no such column (it has {})",
            manifest.columns().join(", ")
        )));
    }
    Ok(ev.by_group(|p| manifest.value(p, column).map(str::to_string)))
}

fn print_groups(column: &str, groups: &[GroupMetrics]) {
    println!();
    println!(
        "{:<24} {:>6} {:>6} {:>8} {:>8} {:>12} {:>9} {:>9}",
        column, "REAL", "FAKE", "accuracy", "roc_auc", "false alarms", "coverage", "confident"
    );
    for g in groups {
        let m = &g.metrics;
        let both = g.real > 0 && g.fake > 0;
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        println!(
            "{:<24} {:>6} {:>6} {:>8.4} {:>8} {:>12} {:>9} {:>9}",
            g.group,
            g.real,
            g.fake,
            m.accuracy,
            if both {
                format!("{:.4}", m.roc_auc)
            } else {
                "-".into()
            },
            if g.real > 0 {
                format!("{:.4}", m.false_alarm_rate)
            } else {
                "-".into()
            },
            opt(m.coverage),
            opt(m.confident_accuracy),
        );
    }
}

fn json_error(e: serde_json::Error) -> Error {
    Error::Invalid(format!("JSON output: {e}"))
}

fn print_table(ev: &Evaluation) {
    let m = &ev.metrics;
    println!("images      {}  ({} skipped)", m.count, ev.skipped.len());
    println!("accuracy    {:.4}", m.accuracy);
    println!("precision   {:.4}", m.precision);
    println!("recall      {:.4}", m.recall);
    println!("f1          {:.4}", m.f1);
    println!("roc_auc     {:.4}", m.roc_auc);
    println!("threshold   {:.4}", m.threshold);
    println!("false alarms {:.4}  (REAL called FAKE)", m.false_alarm_rate);
    println!("TPR@1%FPR   {:.4}", m.tpr_at_1pct_fpr);
    println!("TPR@5%FPR   {:.4}", m.tpr_at_5pct_fpr);
    println!("avg prec    {:.4}", m.average_precision);
    println!("ECE         {:.4}", m.ece);
    if let (Some(c), Some(a)) = (m.coverage, m.confident_accuracy) {
        println!("coverage    {c:.4}  (answered REAL or FAKE; the rest UNCERTAIN)");
        println!("confident   {a:.4}  (accuracy of those answers)");
    }
    println!("img/s       {:.0}", m.images_per_second);
    println!("confusion   predicted FAKE  predicted REAL");
    println!(
        "  FAKE      {:>14}  {:>14}",
        m.confusion.tp, m.confusion.fn_
    );
    println!("  REAL      {:>14}  {:>14}", m.confusion.fp, m.confusion.tn);
}
