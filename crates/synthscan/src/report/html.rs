//! `report.html`: one self-contained page per run (plots embedded as base64 data URIs).

use crate::error::{Result, read_file, write_file};
use crate::eval::Metrics;
use crate::run::{EpochRow, RunInfo, read_metrics};
use std::fmt::Write as _;
use std::path::Path;

/// The plots a run folder may hold, in page order, with their captions.
pub(crate) const RUN_PLOTS: [(&str, &str); 6] = [
    ("loss.png", "Loss per epoch"),
    ("accuracy.png", "Accuracy per epoch"),
    ("lr.png", "Learning rate"),
    ("roc.png", "ROC curve"),
    ("confusion.png", "Confusion matrix"),
    ("histogram.png", "Score histogram"),
];

/// Standard base64 (RFC 4648) with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Escape text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}\
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f3f3f3}td.k,th.k{text-align:left}pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.85em}\
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{max-width:100%;border:1px solid #eee}\
figcaption{text-align:center;color:#555;font-size:.9em}.muted{color:#777}";

fn counts(c: [usize; 2]) -> String {
    format!("{} ({} REAL + {} FAKE)", c[0] + c[1], c[0], c[1])
}

fn fact_rows(info: &RunInfo) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("seed", info.provenance.seed.to_string()),
        ("git revision", info.provenance.git_revision.clone()),
        (
            "synthscan / burn",
            format!(
                "{} / {}",
                info.provenance.synthscan_version, info.provenance.burn_version
            ),
        ),
        (
            "backend",
            format!(
                "{} ({} threads)",
                info.provenance.backend, info.provenance.threads
            ),
        ),
        ("data", info.data_dir.display().to_string()),
        ("train images", counts(info.train_count)),
        ("validation images", counts(info.val_count)),
    ];
    if let Some(t) = info.test_count {
        let dir = info
            .test_dir
            .as_ref()
            .map(|d| format!(" from {}", d.display()))
            .unwrap_or_default();
        rows.push(("test images", format!("{}{dir}", counts(t))));
    }
    rows.extend([
        ("skipped files", info.skipped_files.to_string()),
        ("parameters", info.params.to_string()),
        ("epochs run", info.epochs_run.to_string()),
        ("best epoch", info.best_epoch.to_string()),
        ("train minutes", format!("{:.1}", info.train_seconds / 60.0)),
        (
            "finished",
            if info.finished {
                "yes".into()
            } else {
                "no".into()
            },
        ),
    ]);
    rows
}

fn metrics_table(out: &mut String, sets: &[(&str, &Metrics)]) {
    out.push_str(
        "<table><tr><th class=k>set</th><th>images</th><th>threshold</th><th>accuracy</th><th>precision</th><th>recall</th>\
         <th>F1</th><th>ROC AUC</th><th>img/s</th><th>TP</th><th>FP</th><th>TN</th><th>FN</th></tr>\n",
    );
    for (name, m) in sets {
        let c = &m.confusion;
        let _ = writeln!(
            out,
            "<tr><td class=k>{name}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            m.count,
            m.threshold,
            m.accuracy,
            m.precision,
            m.recall,
            m.f1,
            m.roc_auc,
            if m.images_per_second > 0.0 {
                format!("{:.0}", m.images_per_second)
            } else {
                "–".into()
            },
            c.tp,
            c.fp,
            c.tn,
            c.fn_
        );
    }
    out.push_str("</table>\n");
}

fn epoch_table(out: &mut String, rows: &[EpochRow]) {
    out.push_str(
        "<table><tr><th>epoch</th><th>train loss</th><th>train acc</th><th>val loss</th><th>val acc</th><th>val precision</th>\
         <th>val recall</th><th>val F1</th><th>val AUC</th><th>lr</th><th>seconds</th><th>img/s</th></tr>\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td>\
             <td>{:.4}</td><td>{:.2e}</td><td>{:.1}</td><td>{:.0}</td></tr>",
            r.epoch,
            r.train_loss,
            r.train_accuracy,
            r.val_loss,
            r.val_accuracy,
            r.val_precision,
            r.val_recall,
            r.val_f1,
            r.val_auc,
            r.lr,
            r.seconds,
            r.images_per_second
        );
    }
    out.push_str("</table>\n");
}

/// Write `report.html` into a run folder from its `run.json`, `config.yaml`, `metrics.csv` and
/// whichever plots are present. Only `run.json` is required.
pub fn write_run_report(run_dir: &Path) -> Result<()> {
    let info = RunInfo::load(run_dir)?;
    let config = std::fs::read_to_string(run_dir.join("config.yaml")).ok();
    let rows = read_metrics(run_dir).unwrap_or_default();
    let name = if info.provenance.name.is_empty() {
        run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        info.provenance.name.clone()
    };

    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>synthscan run {}</title><style>{STYLE}</style></head><body>\n",
        escape(&name)
    );
    let _ = writeln!(
        out,
        "<h1>Run {}</h1>\n<p class=muted>{}</p>",
        escape(&name),
        escape(&run_dir.display().to_string())
    );

    out.push_str("<h2>Facts</h2>\n<table>\n");
    for (k, v) in fact_rows(&info) {
        let _ = writeln!(
            out,
            "<tr><th class=k>{k}</th><td class=k>{}</td></tr>",
            escape(&v)
        );
    }
    out.push_str("</table>\n");

    let sets = super::metric_sets(info.val.as_ref(), info.test.as_ref());
    out.push_str("<h2>Final metrics</h2>\n");
    if sets.is_empty() {
        out.push_str("<p class=muted>The run has not finished: no final metrics yet.</p>\n");
    } else {
        out.push_str("<p class=muted>FAKE is the positive class; the threshold on p_fake was chosen on the validation split.</p>\n");
        metrics_table(&mut out, &sets);
    }

    out.push_str("<h2>Plots</h2>\n");
    let mut any = false;
    for (file, caption) in RUN_PLOTS {
        let path = run_dir.join(file);
        if !path.is_file() {
            continue;
        }
        let png = read_file(&path)?;
        any = true;
        let _ = writeln!(
            out,
            "<figure><img alt=\"{caption}\" src=\"data:image/png;base64,{}\"><figcaption>{caption}</figcaption></figure>",
            base64(&png)
        );
    }
    if !any {
        out.push_str("<p class=muted>No plots yet.</p>\n");
    }

    out.push_str("<h2>Per-epoch metrics</h2>\n");
    if rows.is_empty() {
        out.push_str("<p class=muted>No epochs recorded.</p>\n");
    } else {
        out.push_str("<p class=muted>Validation columns use the fixed threshold 0.5.</p>\n");
        epoch_table(&mut out, &rows);
    }

    out.push_str("<h2>Configuration</h2>\n");
    match config {
        Some(text) => {
            let _ = writeln!(out, "<pre>{}</pre>", escape(&text));
        }
        None => out.push_str("<p class=muted>config.yaml is missing.</p>\n"),
    }
    out.push_str("</body></html>\n");
    write_file(&run_dir.join("report.html"), out)
}
