use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::Result;
use synthscan::eval::{Evaluation, evaluate_ensemble};

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
}

pub fn run(a: EvaluateArgs) -> Result<ExitCode> {
    let members = super::load_members(&a.model, a.tta, a.max_fpr)?;
    let ev = evaluate_ensemble(&members, &a.data, a.strict)?;
    if let Some(dir) = &a.plots {
        synthscan::report::write_evaluation_plots(
            dir,
            &ev.scores,
            &ev.labels,
            ev.metrics.threshold,
        )?;
        eprintln!("plots written to {}", dir.display());
    }
    if a.json {
        println!("{}", super::json_line(&ev.metrics)?);
    } else {
        print_table(&ev);
    }
    Ok(ExitCode::SUCCESS)
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
