//! The run folder: every file a training run writes, with its one writer and one reader.
//!
//! ```text
//! RUN/config.yaml          the resolved experiment
//! RUN/run.json             [`RunInfo`]: seed, git revision, versions, data counts, final metrics
//! RUN/metrics.csv          one [`EpochRow`] per epoch (header derived from the row type)
//! RUN/model.synthscan      the final detector
//! RUN/weights/             best.synthscan, last.synthscan (copies of the committed generation),
//!                          resume.json (the commit) and gen-NNNNNN/ (the checkpoint's files)
//! ```
//!
//! Training writes through [`RunDir`]; reports and comparisons read through it. The two never
//! call each other: training tells a [`RunObserver`] when an epoch or the run has finished, and
//! the caller (the CLI) decides what that observer does.

mod table;

pub use table::{Column, CsvRow, parse_rows, read_rows, to_text};

use crate::data::ImageSet;
use crate::detector::Detector;
use crate::error::{Error, Result, read_file, write_file};
use crate::eval::Metrics;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.yaml";
pub const INFO_FILE: &str = "run.json";
pub const METRICS_FILE: &str = "metrics.csv";
pub const MODEL_FILE: &str = "model.synthscan";
const STATE_FILE: &str = "resume.json";

/// One run folder on disk.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Create `out/name`, or `out/name-2`, `-3`, … when it exists, with its `weights/` folder.
    pub fn create_fresh(out: &Path, name: &str) -> Result<Self> {
        let run = Self {
            root: fresh_path(out, name),
        };
        let weights = run.weights_dir();
        std::fs::create_dir_all(&weights)
            .map_err(|e| Error::output(&weights, format!("cannot create the run folder: {e}")))?;
        run.probe_writable()?;
        Ok(run)
    }

    /// Fail now, with a clear error, when files cannot be written into the run folder and its
    /// `weights/` (a read-only or full output folder), rather than at the first checkpoint.
    pub fn probe_writable(&self) -> Result<()> {
        for dir in [self.root.clone(), self.weights_dir()] {
            let probe = dir.join(format!(".write-probe-{}", std::process::id()));
            let made = std::fs::File::create(&probe).and_then(|mut f| {
                use std::io::Write;
                f.write_all(b"probe")?;
                f.sync_all()
            });
            let _ = std::fs::remove_file(&probe);
            if let Err(e) = made {
                return Err(Error::output(
                    &dir,
                    format!("cannot write into the run folder: {e}"),
                ));
            }
        }
        Ok(())
    }

    /// An existing run folder (one with `run.json`).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join(INFO_FILE).is_file() {
            return Err(Error::run_folder(path, "not a run folder (no run.json)"));
        }
        Ok(Self {
            root: path.to_path_buf(),
        })
    }

    /// Whether `path` is a run folder.
    pub fn is_run(path: &Path) -> bool {
        path.join(INFO_FILE).is_file()
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A file directly in the run folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn weights_dir(&self) -> PathBuf {
        self.root.join("weights")
    }

    /// A checkpoint file in `weights/`.
    pub fn checkpoint(&self, name: &str) -> PathBuf {
        self.weights_dir().join(name)
    }

    pub fn model_path(&self) -> PathBuf {
        self.file(MODEL_FILE)
    }

    pub fn write_config(&self, yaml: &str) -> Result<()> {
        write_file(&self.file(CONFIG_FILE), yaml)
    }

    pub fn config_path(&self) -> PathBuf {
        self.file(CONFIG_FILE)
    }

    /// Write any serialisable value as pretty JSON into `name`.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        write_json(&self.file(name), value)
    }

    /// Read `name` as JSON.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        read_json(&self.file(name))
    }

    pub fn save_info(&self, info: &RunInfo) -> Result<()> {
        self.write_json(INFO_FILE, info)
    }

    pub fn load_info(&self) -> Result<RunInfo> {
        self.read_json(INFO_FILE)
    }

    /// Start a table with its header line (replacing any earlier file).
    pub fn start_table<R: CsvRow>(&self, name: &str) -> Result<()> {
        write_file(&self.file(name), format!("{}\n", R::header()))
    }

    /// Append one row to a table started with [`RunDir::start_table`]. The whole (small) file
    /// is rewritten atomically, so that a crash leaves it with or without the row, never half.
    pub fn append_row<R: CsvRow>(&self, name: &str, row: &R) -> Result<()> {
        let path = self.file(name);
        let mut text = String::from_utf8(read_file(&path)?)
            .map_err(|e| Error::run_folder(&path, e.to_string()))?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&row.to_line());
        text.push('\n');
        write_file(&path, text)
    }

    /// Cut a table back to its header and first `rows` rows (what a resumed run has committed),
    /// starting it afresh when it is missing. Rewritten atomically, and only when it changes.
    pub fn keep_rows<R: CsvRow>(&self, name: &str, rows: usize) -> Result<()> {
        let path = self.file(name);
        if !path.exists() {
            return self.start_table::<R>(name);
        }
        let text = String::from_utf8(read_file(&path)?)
            .map_err(|e| Error::run_folder(&path, e.to_string()))?;
        let mut lines = text.lines();
        let mut kept = format!("{}\n", lines.next().unwrap_or(&R::header()));
        for line in lines.filter(|l| !l.trim().is_empty()).take(rows) {
            kept.push_str(line);
            kept.push('\n');
        }
        if kept == text {
            return Ok(());
        }
        write_file(&path, kept)
    }

    pub fn read_table<R: CsvRow>(&self, name: &str) -> Result<Vec<R>> {
        read_rows(&self.file(name))
    }

    /// The state `--resume` continues from, in `weights/resume.json`.
    pub fn save_state<S: Serialize>(&self, state: &S) -> Result<()> {
        write_json(&self.checkpoint(STATE_FILE), state)
    }

    pub fn load_state<S: DeserializeOwned>(&self) -> Result<S> {
        read_json(&self.checkpoint(STATE_FILE))
    }

    /// Whether a checkpoint was ever committed (`weights/resume.json` exists).
    pub fn has_state(&self) -> bool {
        self.checkpoint(STATE_FILE).exists()
    }
}

/// `out/name`, or `out/name-2`, `-3`, … when it exists (e.g. the parent folder of a grid).
pub fn fresh_path(out: &Path, name: &str) -> PathBuf {
    let first = out.join(name);
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|i| out.join(format!("{name}-{i}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Write any serialisable value as pretty JSON (naming the file on failure).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::output(path, e))?;
    write_file(path, json)
}

/// Read a JSON file of the run folder (a broken one is a run-folder error naming it).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    serde_json::from_slice(&read_file(path)?).map_err(|e| Error::run_folder(path, e.to_string()))
}

/// Where a run came from: what every `run.json` (a detector's [`RunInfo`], a GAN's run info)
/// starts with. Flattened into those, so its fields stay top-level keys of the file.
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
pub struct Provenance {
    pub name: String,
    pub seed: u64,
    pub git_revision: String,
    pub synthscan_version: String,
    pub burn_version: String,
    pub backend: String,
    pub threads: usize,
}

impl Provenance {
    /// This build, this machine and the revision checked out now, for a run named `name`.
    pub fn current(name: &str, seed: u64, device: &burn::prelude::Device) -> Self {
        Self {
            name: name.into(),
            seed,
            git_revision: git_revision(),
            synthscan_version: env!("CARGO_PKG_VERSION").into(),
            burn_version: env!("SYNTHSCAN_BURN_VERSION").into(),
            backend: backend_name(device),
            threads: rayon::current_num_threads(),
        }
    }

    /// A resumed run keeps the revision it was started from.
    pub fn resumed_from(mut self, started: &Provenance) -> Self {
        self.git_revision = started.git_revision.clone();
        self
    }
}

/// `git rev-parse --short=12 HEAD`, or `unknown` outside a checkout.
pub fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The device a run trains on, in words.
pub fn backend_name(device: &burn::prelude::Device) -> String {
    format!("{device:?}")
}

/// Everything `run.json` records.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct RunInfo {
    #[serde(flatten)]
    pub provenance: Provenance,
    pub data_dir: PathBuf,
    pub test_dir: Option<PathBuf>,
    pub train_count: [usize; 2],
    pub val_count: [usize; 2],
    pub test_count: Option<[usize; 2]>,
    pub skipped_files: usize,
    pub params: usize,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub train_seconds: f64,
    pub val: Option<Metrics>,
    pub test: Option<Metrics>,
    pub finished: bool,
}

impl RunInfo {
    /// `run.json` of the run folder at `run_dir`.
    pub fn load(run_dir: &Path) -> Result<Self> {
        read_json(&run_dir.join(INFO_FILE))
    }
}

/// One epoch's row of `metrics.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_precision: f64,
    pub val_recall: f64,
    pub val_f1: f64,
    pub val_auc: f64,
    pub lr: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

macro_rules! f64_column {
    ($name:ident, $decimals:expr) => {
        Column::new(
            stringify!($name),
            $decimals,
            |r: &EpochRow| r.$name,
            |r: &mut EpochRow, v| r.$name = v,
        )
    };
}

impl CsvRow for EpochRow {
    const COLUMNS: &'static [Column<Self>] = &[
        Column::new("epoch", 0, |r| r.epoch as f64, |r, v| r.epoch = v as usize),
        f64_column!(train_loss, 6),
        f64_column!(train_accuracy, 6),
        f64_column!(val_loss, 6),
        f64_column!(val_accuracy, 6),
        f64_column!(val_precision, 6),
        f64_column!(val_recall, 6),
        f64_column!(val_f1, 6),
        f64_column!(val_auc, 6),
        f64_column!(lr, 8),
        f64_column!(seconds, 2),
        f64_column!(images_per_second, 1),
    ];
}

/// A run's `metrics.csv`.
pub fn read_metrics(run_dir: &Path) -> Result<Vec<EpochRow>> {
    RunDir {
        root: run_dir.to_path_buf(),
    }
    .read_table(METRICS_FILE)
}

/// What a finished run hands to its observer: the final detector and its scores of the
/// validation and (when there is one) test sets.
pub struct FinishedRun<'a> {
    pub dir: &'a RunDir,
    pub detector: &'a Detector,
    pub val: &'a ImageSet,
    pub val_scores: &'a [f32],
    pub test: Option<(&'a ImageSet, &'a [f32])>,
}

/// The running means of an epoch so far, as a progress bar shows them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Running {
    /// A detector: mean cross-entropy and accuracy over the images seen.
    Detector { loss: f64, accuracy: f64 },
    /// A generator and its discriminator: mean losses over the steps done.
    Adversarial { d_loss: f64, g_loss: f64 },
}

/// How far a run has got, as it goes. The library only reports; what the person watching
/// sees (a bar on a terminal, lines elsewhere, nothing when quiet) is the observer's choice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Progress<'a> {
    /// A line of news: the run started or resumed, an epoch's summary, an early stop, the end.
    Message(&'a str),
    /// The steps of epoch `epoch` of `epochs` begin; there will be `steps` of them.
    EpochStarted {
        epoch: usize,
        epochs: usize,
        steps: usize,
    },
    /// Step `step` (counted from 0) of the epoch is done.
    Step {
        step: usize,
        running: Running,
        images_per_second: f64,
    },
    /// The epoch's steps are done (validation and checkpoints may follow).
    EpochSteps,
}

/// Told by training as it goes (progress) and when an epoch or the whole run has finished
/// (e.g. to draw plots).
pub trait RunObserver {
    fn progress(&mut self, _event: &Progress) {}
    fn epoch_finished(&mut self, _dir: &RunDir) {}
    fn run_finished(&mut self, _run: &FinishedRun) {}
}

/// An observer that does nothing.
pub struct Silent;

impl RunObserver for Silent {}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("synthscan-run-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn metrics_rows_round_trip_with_the_old_line_format() {
        let out = temp("metrics");
        let run = RunDir::create_fresh(&out, "r").unwrap();
        run.start_table::<EpochRow>(METRICS_FILE).unwrap();
        let row = EpochRow {
            epoch: 3,
            train_loss: 0.5,
            lr: 0.001,
            seconds: 1.234,
            images_per_second: 99.96,
            ..Default::default()
        };
        run.append_row(METRICS_FILE, &row).unwrap();
        let text = std::fs::read_to_string(run.file(METRICS_FILE)).unwrap();
        assert_eq!(
            text,
            "epoch,train_loss,train_accuracy,val_loss,val_accuracy,val_precision,val_recall,val_f1,val_auc,lr,seconds,images_per_second\n\
             3,0.500000,0.000000,0.000000,0.000000,0.000000,0.000000,0.000000,0.000000,0.00100000,1.23,100.0\n"
        );
        let back = read_metrics(run.path()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].epoch, 3);
        assert_eq!(back[0].lr, 0.001);
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn a_table_is_cut_back_to_its_committed_rows() {
        let out = temp("cut");
        let run = RunDir::create_fresh(&out, "r").unwrap();
        run.start_table::<EpochRow>(METRICS_FILE).unwrap();
        for epoch in 1..=3 {
            let row = EpochRow {
                epoch,
                ..Default::default()
            };
            run.append_row(METRICS_FILE, &row).unwrap();
        }
        run.keep_rows::<EpochRow>(METRICS_FILE, 2).unwrap();
        let rows = read_metrics(run.path()).unwrap();
        assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
        run.keep_rows::<EpochRow>(METRICS_FILE, 0).unwrap();
        let text = std::fs::read_to_string(run.file(METRICS_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", EpochRow::header()));
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn fresh_folders_never_reuse_a_name_and_open_needs_run_json() {
        let out = temp("fresh");
        let a = RunDir::create_fresh(&out, "x").unwrap();
        let b = RunDir::create_fresh(&out, "x").unwrap();
        assert_eq!(b.path(), out.join("x-2"));
        let err = RunDir::open(a.path()).unwrap_err();
        assert!(err.to_string().contains("no run.json"), "{err}");
        a.save_info(&RunInfo {
            provenance: Provenance {
                name: "x".into(),
                seed: 7,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        let info = RunDir::open(a.path()).unwrap().load_info().unwrap();
        let p = &info.provenance;
        assert_eq!((p.name.as_str(), p.seed), ("x", 7));
        let _ = std::fs::remove_dir_all(&out);
    }

    /// A `run.json` written before [`Provenance`] existed (its fields at the top level), as
    /// `serde_json` writes it compactly.
    const OLD_RUN_JSON: &str = concat!(
        r#"{"name":"fast","seed":42,"git_revision":"080b379abcde","synthscan_version":"0.1.0","#,
        r#""burn_version":"0.22.1","backend":"Flex","threads":8,"data_dir":"data/cifake","#,
        r#""test_dir":null,"train_count":[90,90],"val_count":[5,5],"test_count":null,"#,
        r#""skipped_files":0,"params":1234,"epochs_run":2,"best_epoch":2,"train_seconds":12.5,"#,
        r#""val":null,"test":null,"finished":true}"#
    );

    #[test]
    fn an_old_run_json_parses_and_is_written_back_unchanged() {
        let info: RunInfo = serde_json::from_str(OLD_RUN_JSON).unwrap();
        let p = &info.provenance;
        assert_eq!((p.name.as_str(), p.seed, p.threads), ("fast", 42, 8));
        assert_eq!(p.git_revision, "080b379abcde");
        assert_eq!((info.epochs_run, info.train_seconds), (2, 12.5));
        // Same keys, same order, same values.
        assert_eq!(serde_json::to_string(&info).unwrap(), OLD_RUN_JSON);
    }

    #[test]
    fn provenance_names_this_build_and_a_resume_keeps_the_first_revision() {
        let device = burn::prelude::Device::default();
        let p = Provenance::current("r", 3, &device);
        assert_eq!((p.name.as_str(), p.seed), ("r", 3));
        assert_eq!(p.synthscan_version, env!("CARGO_PKG_VERSION"));
        assert!(p.threads >= 1 && !p.backend.is_empty() && !p.git_revision.is_empty());
        let first = Provenance {
            git_revision: "first".into(),
            ..p.clone()
        };
        assert_eq!(p.resumed_from(&first).git_revision, "first");
    }

    #[test]
    fn resume_state_round_trips_and_a_broken_one_is_named() {
        let out = temp("state");
        let run = RunDir::create_fresh(&out, "s").unwrap();
        run.save_state(&(4usize, 0.5f64)).unwrap();
        assert_eq!(run.load_state::<(usize, f64)>().unwrap(), (4, 0.5));
        std::fs::write(run.checkpoint(STATE_FILE), "").unwrap();
        let err = run.load_state::<(usize, f64)>().unwrap_err();
        assert!(err.to_string().contains("resume.json"), "{err}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
