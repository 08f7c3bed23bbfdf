//! Pictures and documents from runs: per-run plots and report, comparison, model cards.
//!
//! - [`RunReporter`]: a [`RunObserver`] that training is handed by its caller; after each epoch
//!   it writes `loss.png`, `accuracy.png`, `lr.png`, and at the end of the run `roc.png`,
//!   `confusion.png`, `report.html` and `MODEL_CARD.md` into the run folder, and only logs
//!   (never fails) when something cannot be written.
//! - [`write_evaluation_plots`]: `roc.png`, `confusion.png`, `histogram.png` for any scores.
//! - [`compare`]: a table (and `compare.png`, `curves.png`) over run folders.
//! - [`write_model_card`]: `MODEL_CARD.md` for any detector.

mod card;
mod compare;
mod html;
mod plots;

pub use card::{ModelCardFacts, training_summary, write_model_card};
pub use compare::{
    Comparison, RunSummary, Stat, VariantRow, compare, expand_run_dirs, variant_name,
};
pub use html::{base64, write_run_report};
pub(crate) use plots::epoch_chart;
pub use plots::{
    confusion_plot, grouped_bars, histogram_plot, reliability_plot, roc_plot,
    write_evaluation_plots,
};

use crate::error::Result;
use crate::eval::Confusion;
use crate::run::{FinishedRun, RunDir, RunObserver, read_metrics};
use std::path::Path;

/// The (name, metrics) pairs present, validation first.
pub(crate) fn metric_sets<'a>(
    val: Option<&'a crate::eval::Metrics>,
    test: Option<&'a crate::eval::Metrics>,
) -> Vec<(&'static str, &'a crate::eval::Metrics)> {
    [("validation", val), ("test", test)]
        .into_iter()
        .filter_map(|(n, m)| m.map(|m| (n, m)))
        .collect()
}

fn warn_on(run_dir: &Path, file: &str, result: Result<()>) {
    if let Err(e) = result {
        tracing::warn!(file = %run_dir.join(file).display(), "report: cannot write {file}: {e}");
    }
}

/// Write `loss.png`, `accuracy.png` and `lr.png` from the run's `metrics.csv`.
pub fn write_curve_plots(run_dir: &Path) -> Vec<(String, Result<()>)> {
    match read_metrics(run_dir) {
        Ok(rows) if rows.is_empty() => Vec::new(),
        Ok(rows) => plots::curve_plots(run_dir, &rows),
        Err(e) => vec![("metrics.csv".into(), Err(e))],
    }
}

/// Called after every epoch: refresh the run's curve plots.
pub fn after_epoch(run_dir: &Path) {
    for (file, result) in write_curve_plots(run_dir) {
        warn_on(run_dir, &file, result);
    }
}

/// Called when a run finishes: final plots, report and model card, from the final detector's
/// scores of the validation and test sets (which training has already computed).
pub fn after_run(run: &FinishedRun) {
    let run_dir = run.dir.path();
    after_epoch(run_dir);
    let threshold = run.detector.meta.threshold;
    let mut sets: Vec<(&str, &[f32], &[u8])> = Vec::new();
    if !run.val.is_empty() {
        sets.push(("validation", run.val_scores, &run.val.labels));
    }
    if let Some((t, s)) = run.test
        && !t.is_empty()
    {
        sets.push(("test", s, &t.labels));
    }
    if let Some(&(name, scores, labels)) = sets.last() {
        warn_on(
            run_dir,
            "roc.png",
            roc_plot(&run_dir.join("roc.png"), &sets),
        );
        let confusion = Confusion::from_scores(scores, labels, threshold);
        warn_on(
            run_dir,
            "confusion.png",
            confusion_plot(&run_dir.join("confusion.png"), &confusion, threshold, name),
        );
    }
    warn_on(run_dir, "report.html", write_run_report(run_dir));
    let facts = ModelCardFacts::from_run(run_dir).unwrap_or_else(|e| {
        tracing::warn!(file = %run_dir.join("run.json").display(), "report: model card without run facts: {e}");
        ModelCardFacts::default()
    });
    warn_on(
        run_dir,
        "MODEL_CARD.md",
        write_model_card(run.detector, &run_dir.join("MODEL_CARD.md"), &facts),
    );
}

/// The observer that keeps a run folder's plots, report and model card up to date.
pub struct RunReporter;

impl RunObserver for RunReporter {
    fn epoch_finished(&mut self, dir: &RunDir) {
        after_epoch(dir.path());
    }

    fn run_finished(&mut self, run: &FinishedRun) {
        after_run(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ImageSet, Normalization};
    use crate::detector::{Detector, ModelMeta, default_device};
    use crate::eval::Metrics;
    use crate::run::{CsvRow, EpochRow, Provenance, RunInfo};
    use std::path::PathBuf;

    /// A fresh, empty temporary folder removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("synthscan-report-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn assert_png(path: &Path, size: (u32, u32)) {
        let img = image::open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .to_rgb8();
        assert_eq!(img.dimensions(), size, "{}", path.display());
        let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(
            colours.len() > 10,
            "{} looks blank: {} colours",
            path.display(),
            colours.len()
        );
        // Text was drawn: dark anti-aliased pixels exist besides the series colours.
        assert!(
            img.pixels().any(|p| p.0.iter().all(|&c| c < 60)),
            "{} has no dark (text/axis) pixels",
            path.display()
        );
    }

    fn synthetic_scores(n: usize) -> (Vec<f32>, Vec<u8>) {
        let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
        let scores = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let jitter = ((i * 7919) % 100) as f32 / 100.0;
                if l == 1 {
                    0.35 + 0.65 * jitter
                } else {
                    0.65 * jitter
                }
            })
            .collect();
        (scores, labels)
    }

    fn metrics(acc: f64) -> Metrics {
        Metrics {
            accuracy: acc,
            precision: acc - 0.01,
            recall: acc + 0.01,
            f1: acc,
            roc_auc: acc + 0.02,
            threshold: 0.5,
            count: 100,
            images_per_second: 1000.0,
            confusion: Confusion {
                tp: 45,
                fp: 5,
                tn: 45,
                fn_: 5,
            },
            false_alarm_rate: 0.1,
            tpr_at_1pct_fpr: acc - 0.1,
            tpr_at_5pct_fpr: acc - 0.05,
            average_precision: acc,
            ece: 0.02,
            coverage: None,
            confident_accuracy: None,
        }
    }

    /// A run folder as training leaves it (run.json, config.yaml, metrics.csv).
    fn fake_run(
        parent: &Path,
        name: &str,
        val_acc: f64,
        test_acc: Option<f64>,
        epochs: usize,
    ) -> PathBuf {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let info = RunInfo {
            provenance: Provenance {
                name: name.into(),
                seed: 7,
                git_revision: "abc123".into(),
                backend: "test".into(),
                ..Default::default()
            },
            data_dir: "data/cifake".into(),
            train_count: [90, 90],
            val_count: [5, 5],
            test_count: test_acc.map(|_| [50, 50]),
            params: 1234,
            epochs_run: epochs,
            best_epoch: epochs,
            train_seconds: 120.0,
            val: Some(metrics(val_acc)),
            test: test_acc.map(metrics),
            finished: true,
            ..Default::default()
        };
        std::fs::write(
            dir.join("run.json"),
            serde_json::to_string_pretty(&info).unwrap(),
        )
        .unwrap();
        let cfg: crate::TrainConfig = yaml_serde::from_str(&format!(
            "name: {name}\nmodel:\n  preset: cifake-paper\nepochs: {epochs}\n"
        ))
        .unwrap();
        std::fs::write(dir.join("config.yaml"), cfg.to_yaml().unwrap()).unwrap();
        let mut csv = format!("{}\n", EpochRow::header());
        for e in 1..=epochs {
            let f = e as f64 / epochs as f64;
            let r = EpochRow {
                epoch: e,
                train_loss: 0.7 - 0.3 * f,
                train_accuracy: 0.6 + 0.3 * f,
                val_loss: 0.72 - 0.25 * f,
                val_accuracy: val_acc - 0.1 * (1.0 - f),
                val_precision: 0.8,
                val_recall: 0.8,
                val_f1: 0.8,
                val_auc: 0.85,
                lr: 0.1 * (1.0 - f) + 0.001,
                seconds: 10.0,
                images_per_second: 100.0 * e as f64,
            };
            csv.push_str(&r.to_line());
            csv.push('\n');
        }
        std::fs::write(dir.join("metrics.csv"), csv).unwrap();
        dir
    }

    #[test]
    fn base64_known_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn evaluation_plots_are_real_pngs() {
        let tmp = TempDir::new("eval");
        let (scores, labels) = synthetic_scores(400);
        write_evaluation_plots(&tmp.0.join("plots"), &scores, &labels, 0.42).unwrap();
        assert_png(&tmp.0.join("plots/roc.png"), (640, 600));
        assert_png(&tmp.0.join("plots/confusion.png"), (560, 520));
        assert_png(&tmp.0.join("plots/histogram.png"), (820, 500));
        assert_png(&tmp.0.join("plots/reliability.png"), (640, 600));
        assert!(write_evaluation_plots(&tmp.0, &scores, &labels[..3], 0.5).is_err());
    }

    #[test]
    fn after_run_writes_plots_report_and_model_card() {
        let tmp = TempDir::new("run");
        let run = fake_run(&tmp.0, "tiny-run", 0.9, Some(0.88), 3);
        after_epoch(&run);
        for f in ["loss.png", "accuracy.png", "lr.png"] {
            assert_png(&run.join(f), (800, 500));
        }

        let arch = crate::model::preset("cifake-paper").unwrap();
        let device = default_device();
        let meta = ModelMeta::untrained(arch.clone(), 16, Normalization::unit());
        let det = Detector::new(meta, arch.init(16, &device), device);
        let set = |n: usize, salt: usize| ImageSet {
            size: 16,
            pixels: (0..n * 16 * 16 * 3)
                .map(|i| ((i * 37 + salt * 11) % 251) as u8)
                .collect(),
            labels: (0..n).map(|i| (i % 2) as u8).collect(),
            paths: vec![],
        };
        let val = set(10, 1);
        let val_scores = det.score_set(&val);
        let dir = RunDir::open(&run).unwrap();
        RunReporter.run_finished(&FinishedRun {
            dir: &dir,
            detector: &det,
            val: &val,
            val_scores: &val_scores,
            test: None,
        });
        assert_png(&run.join("roc.png"), (640, 600));
        assert_png(&run.join("confusion.png"), (560, 520));

        let html = std::fs::read_to_string(run.join("report.html")).unwrap();
        assert!(html.contains("tiny-run"));
        assert!(
            html.matches("data:image/png;base64,").count() >= 5,
            "all plots embedded"
        );
        assert!(html.contains("<pre>name: tiny-run"), "config shown");
        assert!(html.contains("abc123"), "git revision shown");
        assert!(!html.contains("src=\"http"), "no external assets");

        let card = std::fs::read_to_string(run.join("MODEL_CARD.md")).unwrap();
        assert!(card.starts_with("# Model card: tiny-run"));
        assert!(card.contains(&format!("Parameters: {}", det.num_params())));
        assert!(card.contains("| test | 100 | 0.5000 | 0.8800 |"), "{card}");
        assert!(card.contains("Stable Diffusion 1.4"), "CIFAKE limits named");
        assert!(card.contains("not evidence on its own"));
    }

    #[test]
    fn after_epoch_never_panics_on_a_broken_run_folder() {
        let tmp = TempDir::new("broken");
        after_epoch(&tmp.0.join("missing"));
        std::fs::write(tmp.0.join("metrics.csv"), "header\n1,2,x\n").unwrap();
        after_epoch(&tmp.0);
        assert!(!tmp.0.join("loss.png").exists());
    }

    #[test]
    fn variant_names_strip_seed_suffixes() {
        assert_eq!(variant_name("resnet20-seed3"), "resnet20");
        assert_eq!(variant_name("a-b-seed12"), "a-b");
        assert_eq!(variant_name("resnet20-seedless"), "resnet20-seedless");
        assert_eq!(variant_name("-seed1"), "-seed1");
        assert_eq!(variant_name("plain"), "plain");
    }

    #[test]
    fn compare_groups_seed_repeats() {
        let tmp = TempDir::new("compare");
        let grid = tmp.0.join("grid");
        fake_run(&grid, "wide-seed1", 0.90, Some(0.89), 3);
        fake_run(&grid, "wide-seed2", 0.92, Some(0.91), 3);
        fake_run(&grid, "wide-seed3", 0.94, Some(0.90), 4);
        let single = fake_run(&tmp.0, "narrow", 0.80, None, 2);

        let cmp = compare(&[grid.clone(), single.clone()]).unwrap();
        assert_eq!(cmp.runs.len(), 4);
        assert_eq!(cmp.rows.len(), 2);
        let wide = &cmp.rows[0];
        assert_eq!(wide.variant, "wide");
        assert_eq!(wide.runs, vec!["wide-seed1", "wide-seed2", "wide-seed3"]);
        let va = wide.val_accuracy.unwrap();
        assert_eq!(va.n, 3);
        assert!((va.mean - 0.92).abs() < 1e-12);
        assert!(
            (va.std - 0.02).abs() < 1e-12,
            "sample std of 0.90, 0.92, 0.94 is 0.02: {}",
            va.std
        );
        let ta = wide.test_accuracy.unwrap();
        assert!((ta.mean - 0.90).abs() < 1e-12);
        assert!((ta.std - 0.01).abs() < 1e-12);
        // AUC comes from the test metrics when present: test acc + 0.02.
        assert!((wide.auc.unwrap().mean - 0.92).abs() < 1e-12);
        assert_eq!(wide.metrics_on, "test");
        assert!((wide.epochs.mean - 10.0 / 3.0).abs() < 1e-12);
        // Mean img/s over epochs: (100+200+300)/3 for 3 epochs, (100..400)/4 = 250 for 4.
        assert!(
            (wide.images_per_second.unwrap().mean - (200.0 + 200.0 + 250.0) / 3.0).abs() < 1e-9
        );
        assert!((wide.train_minutes.mean - 2.0).abs() < 1e-12 && wide.train_minutes.std == 0.0);

        let narrow = &cmp.rows[1];
        assert_eq!(narrow.variant, "narrow");
        assert_eq!(narrow.test_accuracy, None);
        assert_eq!(narrow.metrics_on, "val");
        assert_eq!(
            narrow.val_accuracy,
            Some(Stat {
                mean: 0.8,
                std: 0.0,
                n: 1
            })
        );

        let md = cmp.to_markdown();
        assert!(md.starts_with("| variant | runs |"));
        assert!(md.contains("| wide | 3 | test | 1234 |"), "{md}");
        assert!(md.contains("0.9200 ± 0.0200"), "{md}");
        assert!(
            md.lines().nth(3).unwrap().contains("| narrow | 1 | val |"),
            "{md}"
        );

        let csv = cmp.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        let header: Vec<&str> = lines[0].split(',').collect();
        let wide_row: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(header.len(), wide_row.len());
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        assert!((wide_row[col("val_accuracy")].parse::<f64>().unwrap() - 0.92).abs() < 1e-12);
        assert!((wide_row[col("val_accuracy_std")].parse::<f64>().unwrap() - 0.02).abs() < 1e-12);
        assert_eq!(lines[2].split(',').nth(col("test_accuracy")), Some(""));

        let json: serde_json::Value = serde_json::from_str(&cmp.to_json()).unwrap();
        assert_eq!(json["rows"][0]["runs"].as_array().unwrap().len(), 3);
        assert!((json["rows"][0]["val_accuracy"]["std"].as_f64().unwrap() - 0.02).abs() < 1e-12);

        let out = tmp.0.join("out");
        cmp.write_plots(&out).unwrap();
        assert_png(&out.join("compare.png"), (700, 560));
        assert_png(&out.join("curves.png"), (900, 520));

        // Same folder twice counts once; a folder without runs is an error naming it.
        assert_eq!(
            compare(&[single.clone(), single.clone()])
                .unwrap()
                .runs
                .len(),
            1
        );
        let empty = tmp.0.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let err = compare(&[empty]).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn model_card_from_facts_alone() {
        let tmp = TempDir::new("card");
        let arch = crate::model::preset("cifake-paper").unwrap();
        let device = default_device();
        let meta = ModelMeta {
            threshold: 0.61,
            tta: true,
            provenance: serde_json::json!({"run": "bundled"}),
            ..ModelMeta::untrained(arch.clone(), 32, Normalization::unit())
        };
        let det = Detector::new(meta, arch.init(32, &device), device);
        let path = tmp.0.join("models/MODEL_CARD.md");
        write_model_card(
            &det,
            &path,
            &ModelCardFacts {
                val: Some(metrics(0.9)),
                ..Default::default()
            },
        )
        .unwrap();
        let card = std::fs::read_to_string(&path).unwrap();
        assert!(card.starts_with("# Model card: bundled"));
        assert!(card.contains("p_fake ≥ 0.6100"));
        assert!(card.contains("| validation | 100 |"));
        assert!(card.contains("## Known limits"));
        assert!(
            !card.contains("## Training"),
            "no training section without facts"
        );
    }
}
