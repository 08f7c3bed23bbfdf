//! `synthscan bench --reference`: synthscan and the same network in PyTorch (eager,
//! channels-last) and ONNX Runtime, timed in interleaved rounds on the same machine, so that the
//! ratios compare like with like under the same load. The reference side is
//! `scripts/bench_reference.py`, run once per round with the network's configuration as JSON.

use super::{BenchOptions, rate, train_stage};
use crate::data::{ImageSet, Normalization};
use crate::detector::Detector;
use crate::ensemble::Ensemble;
use crate::error::{Error, Result};
use crate::eval::evaluate_ensemble;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// One thing timed, at one batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Measure {
    /// Forward, loss, backward and optimiser step.
    Train(usize),
    /// Forward passes of one batch (the batch as one request).
    Infer(usize),
    /// Read, decode, resize and score a labelled folder end to end (the ORT column: a script of
    /// ONNX Runtime and Pillow with `draft`, JPEG's DCT-domain scaling, decoding on every core).
    Evaluate,
}

impl Measure {
    fn key(&self) -> (&'static str, usize) {
        match *self {
            Measure::Train(b) => ("train", b),
            Measure::Infer(b) => ("infer", b),
            Measure::Evaluate => ("evaluate", crate::detector::INFER_BATCH),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Measure::Train(b) => format!("training step, batch {b}"),
            Measure::Infer(b) => format!("inference, batch {b}"),
            Measure::Evaluate => "evaluate a folder (decode + resize + score)".into(),
        }
    }
}

/// Where the reference runs and what it times.
pub struct ReferenceOptions {
    /// The Python interpreter with torch (and onnxruntime + onnx for the ORT column).
    pub python: PathBuf,
    pub script: PathBuf,
    pub rounds: usize,
    pub measures: Vec<Measure>,
    /// The labelled folder of `Measure::Evaluate`.
    pub data: Option<PathBuf>,
    /// Each timed measurement runs at least this long (and at least 5 times).
    pub min_secs: f64,
}

/// Images/second of one measure in each round, per framework.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub measure: Measure,
    pub synthscan: Vec<f64>,
    pub pytorch: Vec<f64>,
    pub onnxruntime: Vec<f64>,
}

/// What `bench --reference` measured.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub model: String,
    pub input_size: usize,
    pub threads: usize,
    pub rounds: usize,
    pub rows: Vec<Row>,
}

#[derive(Deserialize)]
struct ReferenceLine {
    what: String,
    batch: usize,
    framework: String,
    img_per_s: f64,
}

/// Why the reference cannot run here, if it cannot: the script is missing or the interpreter has
/// no torch.
pub fn unavailable(opts: &ReferenceOptions) -> Option<String> {
    if !opts.script.is_file() {
        return Some(format!(
            "{} not found (run from the repository root or pass --reference-script)",
            opts.script.display()
        ));
    }
    let ok = Command::new(&opts.python)
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    (!ok).then(|| {
        format!(
            "`{} -c \"import torch\"` failed: install torch (and onnxruntime, onnx) for it",
            opts.python.display()
        )
    })
}

/// Time every measure on both sides, `rounds` times, alternating which side goes first.
/// `model` is one network (its first member is timed; `evaluate` scores through the whole).
pub fn compare(
    bench: &BenchOptions,
    model: &Ensemble,
    opts: &ReferenceOptions,
) -> Result<Comparison> {
    let det = &model[0];
    let size = det.meta.input_size as usize;
    let set = synthetic_set(size, max_batch(&opts.measures), 7);
    let mut rows: Vec<Row> = opts
        .measures
        .iter()
        .map(|&measure| Row {
            measure,
            synthscan: vec![],
            pytorch: vec![],
            onnxruntime: vec![],
        })
        .collect();
    for round in 0..opts.rounds {
        // Alternate who goes first, so that a drift in the machine's speed favours neither.
        let ours_first = round % 2 == 0;
        if ours_first {
            synthscan_round(&mut rows, bench, model, &set, opts)?;
        }
        add_reference(&mut rows, &run_reference(det, opts)?);
        if !ours_first {
            synthscan_round(&mut rows, bench, model, &set, opts)?;
        }
    }
    Ok(Comparison {
        model: bench.name.clone(),
        input_size: size,
        threads: rayon::current_num_threads(),
        rounds: opts.rounds,
        rows,
    })
}

fn synthscan_round(
    rows: &mut [Row],
    bench: &BenchOptions,
    model: &Ensemble,
    set: &ImageSet,
    opts: &ReferenceOptions,
) -> Result<()> {
    for row in rows.iter_mut() {
        row.synthscan
            .push(measure_synthscan(bench, model, set, row.measure, opts)?);
    }
    Ok(())
}

fn add_reference(rows: &mut [Row], lines: &[ReferenceLine]) {
    for row in rows.iter_mut() {
        let (what, batch) = row.measure.key();
        for line in lines.iter().filter(|l| l.batch == batch) {
            match (line.what.as_str(), line.framework.as_str()) {
                ("ort", _) if what == "infer" => row.onnxruntime.push(line.img_per_s),
                ("ortevaluate", _) if what == "evaluate" => row.onnxruntime.push(line.img_per_s),
                (w, _) if w == what => row.pytorch.push(line.img_per_s),
                _ => {}
            }
        }
    }
}

fn max_batch(measures: &[Measure]) -> usize {
    measures
        .iter()
        .map(|m| match *m {
            Measure::Train(b) | Measure::Infer(b) => b,
            Measure::Evaluate => 1,
        })
        .max()
        .unwrap_or(1)
}

/// `n` images of random pixels at `size`×`size` (speed does not depend on the content).
fn synthetic_set(size: usize, n: usize, seed: u64) -> ImageSet {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pixels = vec![0u8; n * size * size * 3];
    rng.fill_bytes(&mut pixels);
    ImageSet {
        size: size as u32,
        pixels,
        labels: (0..n).map(|i| (i % 2) as u8).collect(),
        paths: vec![],
    }
}

fn measure_synthscan(
    bench: &BenchOptions,
    model: &Ensemble,
    set: &ImageSet,
    measure: Measure,
    opts: &ReferenceOptions,
) -> Result<f64> {
    Ok(match measure {
        Measure::Train(b) => {
            let steps = bench.steps.max(3);
            train_stage(bench, set, &Normalization::unit(), b, steps).1
        }
        Measure::Infer(b) => {
            let batch = set.subset(&(0..b).collect::<Vec<_>>());
            let secs = median_secs(|| drop(model[0].score_set(&batch)), opts.min_secs);
            b as f64 / secs
        }
        Measure::Evaluate => {
            let dir = opts
                .data
                .as_deref()
                .ok_or_else(|| Error::Invalid("bench --reference: evaluate needs --data".into()))?;
            let t0 = Instant::now();
            let n = evaluate_ensemble(model, dir, false)?.labels.len();
            rate(n, t0.elapsed().as_secs_f64())
        }
    })
}

/// Median seconds of `f` over at least 5 calls and `min_secs`, after 2 warm-up calls.
fn median_secs(mut f: impl FnMut(), min_secs: f64) -> f64 {
    f();
    f();
    let mut times = Vec::new();
    let t0 = Instant::now();
    while times.len() < 5 || (t0.elapsed().as_secs_f64() < min_secs && times.len() < 1000) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    median(&times)
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn measure_arg(measures: &[Measure]) -> String {
    let mut items = Vec::new();
    for m in measures {
        let (what, batch) = m.key();
        items.push(format!("{what}:{batch}"));
        match what {
            "infer" => items.push(format!("ort:{batch}")),
            "evaluate" => items.push(format!("ortevaluate:{batch}")),
            _ => {}
        }
    }
    items.join(",")
}

fn run_reference(det: &Detector, opts: &ReferenceOptions) -> Result<Vec<ReferenceLine>> {
    let arch = serde_json::to_string(&det.meta.arch).map_err(|e| Error::Model(e.to_string()))?;
    let mut cmd = Command::new(&opts.python);
    cmd.arg(&opts.script)
        .args(["--arch", &arch])
        .args(["--input-size", &det.meta.input_size.to_string()])
        .args(["--measure", &measure_arg(&opts.measures)])
        .args(["--min-secs", &opts.min_secs.to_string()])
        .env("BENCH_THREADS", rayon::current_num_threads().to_string());
    if let Some(d) = &opts.data {
        cmd.arg("--data").arg(d);
    }
    let out = cmd.output().map_err(|e| Error::io(&opts.python, e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no message");
        return Err(Error::Invalid(format!(
            "{} failed: {last}",
            opts.script.display()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// `x` as "1,234".
fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Median, and the lowest and highest per-round ratio, of `ours[i] / theirs[i]`.
fn ratio(ours: &[f64], theirs: &[f64]) -> Option<(f64, f64, f64)> {
    let r: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
    if r.is_empty() {
        return None;
    }
    let lo = r.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    Some((median(&r), lo, hi))
}

impl Comparison {
    /// The comparison as a Markdown table: medians over rounds, ratios with their range.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "{} at {}×{}, {} threads, median of {} interleaved rounds (images/second)\n\n\
             | measure | synthscan | PyTorch | ONNX Runtime | synthscan / PyTorch [min–max] | synthscan / ORT [min–max] |\n\
             |---|---:|---:|---:|---:|---:|\n",
            self.model, self.input_size, self.input_size, self.threads, self.rounds
        );
        let cell = |v: &[f64]| {
            if v.is_empty() {
                "–".to_string()
            } else {
                thousands(median(v))
            }
        };
        let rcell = |r: Option<(f64, f64, f64)>| match r {
            Some((m, lo, hi)) => format!("**{m:.2}×** [{lo:.2}–{hi:.2}]"),
            None => "–".into(),
        };
        for row in &self.rows {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                row.measure.label(),
                cell(&row.synthscan),
                cell(&row.pytorch),
                cell(&row.onnxruntime),
                rcell(ratio(&row.synthscan, &row.pytorch)),
                rcell(ratio(&row.synthscan, &row.onnxruntime)),
            );
        }
        s
    }
}

/// The reference script beside the working directory, as the repository lays it out.
pub fn default_script() -> PathBuf {
    Path::new("scripts").join("bench_reference.py")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_per_round_and_the_table_names_every_measure() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        let (m, lo, hi) = ratio(&[100.0, 200.0, 300.0], &[100.0, 100.0, 100.0]).unwrap();
        assert_eq!((m, lo, hi), (2.0, 1.0, 3.0));
        assert!(ratio(&[1.0], &[]).is_none());
        let c = Comparison {
            model: "default".into(),
            input_size: 32,
            threads: 2,
            rounds: 1,
            rows: vec![Row {
                measure: Measure::Infer(64),
                synthscan: vec![12_345.0],
                pytorch: vec![6_172.0],
                onnxruntime: vec![],
            }],
        };
        let md = c.to_markdown();
        assert!(
            md.contains("| inference, batch 64 | 12,345 | 6,172 | – | **2.00×**"),
            "{md}"
        );
    }

    #[test]
    fn the_reference_is_asked_for_pytorch_and_ort_at_every_inference_batch() {
        let m = [Measure::Train(256), Measure::Infer(1), Measure::Evaluate];
        assert_eq!(
            measure_arg(&m),
            "train:256,infer:1,ort:1,evaluate:256,ortevaluate:256"
        );
        assert_eq!(max_batch(&m), 256);
    }

    #[test]
    fn a_missing_script_is_named() {
        let opts = ReferenceOptions {
            python: "python3".into(),
            script: "does/not/exist.py".into(),
            rounds: 1,
            measures: vec![],
            data: None,
            min_secs: 0.1,
        };
        let why = unavailable(&opts).unwrap();
        assert!(why.contains("does/not/exist.py"), "{why}");
    }
}
