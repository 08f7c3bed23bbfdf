//! Comparing run folders: one table row per variant, seed repeats folded into mean ± std.

use crate::error::{Error, Result};
use crate::run::{EpochRow, RunDir, RunInfo, read_metrics};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One run folder's headline numbers.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunSummary {
    pub name: String,
    pub dir: PathBuf,
    /// The name without a `-seedN` suffix.
    pub variant: String,
    pub seed: u64,
    pub params: usize,
    pub epochs: usize,
    pub best_epoch: usize,
    /// Final validation accuracy (at the chosen threshold); for an unfinished run, the best
    /// epoch's validation accuracy at 0.5.
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub auc: Option<f64>,
    /// Which data precision/recall/F1/AUC come from: `test`, `val`, or `val@0.5` (unfinished run).
    pub metrics_on: String,
    pub train_minutes: f64,
    /// Mean training images per second over the epochs.
    pub images_per_second: Option<f64>,
    pub finished: bool,
    /// Validation accuracy per epoch.
    #[serde(skip)]
    pub val_curve: Vec<(usize, f64)>,
}

/// Mean and sample standard deviation (n − 1; 0 for a single value).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        // Equal values can leave rounding noise; call that zero.
        let std = if std <= 1e-12 * mean.abs().max(1.0) {
            0.0
        } else {
            std
        };
        Some(Stat { mean, std, n })
    }

    fn show(&self, digits: usize) -> String {
        if self.n > 1 && self.std > 0.0 {
            format!("{:.digits$} ± {:.digits$}", self.mean, self.std)
        } else {
            format!("{:.digits$}", self.mean)
        }
    }
}

/// One table row: a variant and the statistics over its seed repeats.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VariantRow {
    pub variant: String,
    /// Run names folded into this row.
    pub runs: Vec<String>,
    pub metrics_on: String,
    pub params: Stat,
    pub epochs: Stat,
    pub best_epoch: Stat,
    pub val_accuracy: Option<Stat>,
    pub test_accuracy: Option<Stat>,
    pub precision: Option<Stat>,
    pub recall: Option<Stat>,
    pub f1: Option<Stat>,
    pub auc: Option<Stat>,
    pub train_minutes: Stat,
    pub images_per_second: Option<Stat>,
}

/// The result of [`compare`].
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Comparison {
    pub rows: Vec<VariantRow>,
    pub runs: Vec<RunSummary>,
}

/// `name` without a trailing `-seedN` (N digits).
pub fn variant_name(name: &str) -> &str {
    match name.rsplit_once("-seed") {
        Some((base, n))
            if !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => name,
    }
}

/// Run folders named by the arguments: a folder with `run.json`, or every sub-folder with one.
pub fn expand_run_dirs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        if RunDir::is_run(p) {
            out.push(p.clone());
            continue;
        }
        if !p.is_dir() {
            return Err(Error::run_folder(p, "no such run folder"));
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| Error::io(p, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|d| RunDir::is_run(d))
            .collect();
        if subs.is_empty() {
            return Err(Error::run_folder(
                p,
                "not a run folder (no run.json) and holds no run folders",
            ));
        }
        subs.sort();
        out.extend(subs);
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|d| seen.insert(d.canonicalize().unwrap_or_else(|_| d.clone())));
    Ok(out)
}

fn summarise(dir: &Path) -> Result<RunSummary> {
    let info = RunInfo::load(dir)?;
    let rows: Vec<EpochRow> = match read_metrics(dir) {
        Ok(r) => r,
        Err(e) if dir.join("metrics.csv").exists() => return Err(e),
        Err(_) => Vec::new(),
    };
    let name = if info.provenance.name.is_empty() {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        info.provenance.name.clone()
    };
    let best_row = rows
        .iter()
        .find(|r| r.epoch == info.best_epoch)
        .or(rows.last());
    let (precision, recall, f1, auc, metrics_on) =
        match (info.test.as_ref(), info.val.as_ref(), best_row) {
            (Some(m), _, _) => (
                Some(m.precision),
                Some(m.recall),
                Some(m.f1),
                Some(m.roc_auc),
                "test",
            ),
            (None, Some(m), _) => (
                Some(m.precision),
                Some(m.recall),
                Some(m.f1),
                Some(m.roc_auc),
                "val",
            ),
            (None, None, Some(r)) => (
                Some(r.val_precision),
                Some(r.val_recall),
                Some(r.val_f1),
                Some(r.val_auc),
                "val@0.5",
            ),
            (None, None, None) => (None, None, None, None, "-"),
        };
    Ok(RunSummary {
        variant: variant_name(&name).to_string(),
        name,
        dir: dir.to_path_buf(),
        seed: info.provenance.seed,
        params: info.params,
        epochs: info.epochs_run.max(rows.len()),
        best_epoch: info.best_epoch,
        val_accuracy: info
            .val
            .as_ref()
            .map(|m| m.accuracy)
            .or(best_row.map(|r| r.val_accuracy)),
        test_accuracy: info.test.as_ref().map(|m| m.accuracy),
        precision,
        recall,
        f1,
        auc,
        metrics_on: metrics_on.into(),
        train_minutes: info.train_seconds / 60.0,
        images_per_second: (!rows.is_empty())
            .then(|| rows.iter().map(|r| r.images_per_second).sum::<f64>() / rows.len() as f64),
        finished: info.finished,
        val_curve: rows.iter().map(|r| (r.epoch, r.val_accuracy)).collect(),
    })
}

fn stat_opt(runs: &[&RunSummary], f: impl Fn(&RunSummary) -> Option<f64>) -> Option<Stat> {
    let v: Vec<f64> = runs
        .iter()
        .filter_map(|r| f(r))
        .filter(|x| x.is_finite())
        .collect();
    Stat::of(&v)
}

fn stat(runs: &[&RunSummary], f: impl Fn(&RunSummary) -> f64) -> Stat {
    stat_opt(runs, |r| Some(f(r))).unwrap_or(Stat {
        mean: f64::NAN,
        std: 0.0,
        n: 0,
    })
}

/// Summarise run folders (or parents of run folders) and fold `-seedN` repeats together.
/// Variants keep the order in which they first appear.
pub fn compare(runs: &[PathBuf]) -> Result<Comparison> {
    let dirs = expand_run_dirs(runs)?;
    let summaries = dirs
        .iter()
        .map(|d| summarise(d))
        .collect::<Result<Vec<_>>>()?;
    let mut variants: Vec<&str> = Vec::new();
    for s in &summaries {
        if !variants.contains(&s.variant.as_str()) {
            variants.push(&s.variant);
        }
    }
    let rows = variants
        .iter()
        .map(|v| {
            let group: Vec<&RunSummary> = summaries.iter().filter(|s| s.variant == *v).collect();
            let first = group[0].metrics_on.clone();
            let metrics_on = if group.iter().all(|s| s.metrics_on == first) {
                first
            } else {
                "mixed".into()
            };
            VariantRow {
                variant: v.to_string(),
                runs: group.iter().map(|s| s.name.clone()).collect(),
                metrics_on,
                params: stat(&group, |r| r.params as f64),
                epochs: stat(&group, |r| r.epochs as f64),
                best_epoch: stat(&group, |r| r.best_epoch as f64),
                val_accuracy: stat_opt(&group, |r| r.val_accuracy),
                test_accuracy: stat_opt(&group, |r| r.test_accuracy),
                precision: stat_opt(&group, |r| r.precision),
                recall: stat_opt(&group, |r| r.recall),
                f1: stat_opt(&group, |r| r.f1),
                auc: stat_opt(&group, |r| r.auc),
                train_minutes: stat(&group, |r| r.train_minutes),
                images_per_second: stat_opt(&group, |r| r.images_per_second),
            }
        })
        .collect();
    Ok(Comparison {
        rows,
        runs: summaries,
    })
}

const COLUMNS: [&str; 14] = [
    "variant",
    "runs",
    "metrics on",
    "params",
    "epochs",
    "best epoch",
    "val accuracy",
    "test accuracy",
    "precision",
    "recall",
    "F1",
    "AUC",
    "train minutes",
    "img/s",
];

impl VariantRow {
    /// Numeric columns after `metrics on`, with the digits each is shown with.
    fn numbers(&self) -> [(Option<Stat>, usize); 11] {
        [
            (Some(self.params), 0),
            (Some(self.epochs), 1),
            (Some(self.best_epoch), 1),
            (self.val_accuracy, 4),
            (self.test_accuracy, 4),
            (self.precision, 4),
            (self.recall, 4),
            (self.f1, 4),
            (self.auc, 4),
            (Some(self.train_minutes), 1),
            (self.images_per_second, 0),
        ]
    }
}

/// At most 6 decimals, without trailing zeros.
fn csv_number(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

impl Comparison {
    /// A Markdown table; grouped values read `mean ± std`.
    pub fn to_markdown(&self) -> String {
        let mut md = format!(
            "| {} |\n|{}\n",
            COLUMNS.join(" | "),
            "---|".repeat(COLUMNS.len())
        );
        for row in &self.rows {
            let mut cells = vec![
                row.variant.replace('|', "\\|"),
                row.runs.len().to_string(),
                row.metrics_on.clone(),
            ];
            for (s, digits) in row.numbers() {
                cells.push(match s {
                    // Integers that agree across seeds read as integers.
                    Some(s) if digits == 1 && s.std == 0.0 && s.mean.fract() == 0.0 => {
                        format!("{:.0}", s.mean)
                    }
                    Some(s) if s.n > 0 => s.show(digits),
                    _ => "–".into(),
                });
            }
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        md
    }

    /// CSV with a `_std` column after every numeric one.
    pub fn to_csv(&self) -> String {
        let mut header = vec!["variant".to_string(), "runs".into(), "metrics_on".into()];
        for c in &COLUMNS[3..] {
            let c = c
                .replace(' ', "_")
                .replace("img/s", "images_per_second")
                .to_lowercase();
            header.push(c.clone());
            header.push(format!("{c}_std"));
        }
        let mut out = header.join(",");
        out.push('\n');
        for row in &self.rows {
            let mut cells = vec![
                csv_field(&row.variant),
                row.runs.len().to_string(),
                csv_field(&row.metrics_on),
            ];
            for (s, _) in row.numbers() {
                match s {
                    Some(s) if s.n > 0 => {
                        cells.push(csv_number(s.mean));
                        cells.push(csv_number(s.std));
                    }
                    _ => cells.extend([String::new(), String::new()]),
                }
            }
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// `compare.png` (val accuracy, test accuracy and AUC per variant, ± std) and `curves.png`
    /// (validation accuracy per epoch, one line per run) into `out`.
    pub fn write_plots(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let variants: Vec<String> = self.rows.iter().map(|r| r.variant.clone()).collect();
        let pick = |s: Option<Stat>| s.map(|s| (s.mean, s.std)).unwrap_or((f64::NAN, 0.0));
        let values: Vec<Vec<(f64, f64)>> = self
            .rows
            .iter()
            .map(|r| vec![pick(r.val_accuracy), pick(r.test_accuracy), pick(r.auc)])
            .collect();
        super::plots::grouped_bars(
            &out.join("compare.png"),
            "Variants (mean ± std over seeds)",
            &variants,
            &["val accuracy", "test accuracy", "AUC"],
            &values,
        )?;
        let curves: Vec<(String, Vec<(usize, f64)>)> = self
            .runs
            .iter()
            .map(|r| (r.name.clone(), r.val_curve.clone()))
            .collect();
        super::plots::run_curves(&out.join("curves.png"), &curves)
    }
}
