//! What a GAN run records in `run.json` and what it tells its observer as it goes.

use super::rows::{FrechetRow, LossRow};
use crate::error::Result;
use crate::run::{self, Provenance, RunObserver};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `run.json` records: the run's [`Provenance`] (top-level keys, as a detector run's),
/// then the data, the networks and how far training got.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GanRunInfo {
    #[serde(flatten)]
    pub provenance: Provenance,
    pub data_dir: PathBuf,
    pub images: usize,
    pub skipped_files: usize,
    pub g_params: usize,
    pub d_params: usize,
    pub feature_model: String,
    pub epochs_run: usize,
    pub train_seconds: f64,
    pub finished: bool,
}

impl GanRunInfo {
    pub fn load(run_dir: &Path) -> Result<Self> {
        run::read_json(&run_dir.join(run::INFO_FILE))
    }
    pub(super) fn save(&self, run_dir: &Path) -> Result<()> {
        run::write_json(&run_dir.join(run::INFO_FILE), self)
    }
}

/// What the loop reports besides its progress; the caller decides what to print.
#[derive(Debug)]
pub enum GanEvent<'a> {
    Started {
        run_dir: &'a Path,
        info: &'a GanRunInfo,
        resumed_after: usize,
    },
    Epoch(&'a LossRow),
    Frechet(&'a FrechetRow),
    Checkpoint(&'a Path),
}

/// A [`RunObserver`] (the progress of each epoch) that also hears the GAN's own events.
pub trait GanObserver: RunObserver {
    fn gan_event(&mut self, _event: &GanEvent) {}
}

impl GanObserver for run::Silent {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GAN `run.json` written before [`Provenance`] existed, as `serde_json` writes it
    /// compactly.
    const OLD_GAN_RUN_JSON: &str = concat!(
        r#"{"name":"tiny","seed":42,"git_revision":"080b379abcde","synthscan_version":"0.1.0","#,
        r#""burn_version":"0.22.1","backend":"Flex","threads":4,"data_dir":"images","#,
        r#""images":40,"skipped_files":1,"g_params":1000,"d_params":900,"#,
        r#""feature_model":"embedded default","epochs_run":2,"train_seconds":3.5,"finished":true}"#
    );

    #[test]
    fn an_old_gan_run_json_parses_and_is_written_back_unchanged() {
        let info: GanRunInfo = serde_json::from_str(OLD_GAN_RUN_JSON).unwrap();
        let p = &info.provenance;
        assert_eq!((p.name.as_str(), p.seed, p.threads), ("tiny", 42, 4));
        assert_eq!((info.images, info.epochs_run, info.finished), (40, 2, true));
        assert_eq!(serde_json::to_string(&info).unwrap(), OLD_GAN_RUN_JSON);
    }

    #[test]
    fn run_json_round_trips_through_its_folder() {
        let dir = std::env::temp_dir().join(format!("synthscan-ganinfo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let info = GanRunInfo {
            provenance: Provenance {
                name: "g".into(),
                seed: 5,
                ..Default::default()
            },
            images: 12,
            ..Default::default()
        };
        info.save(&dir).unwrap();
        let back = GanRunInfo::load(&dir).unwrap();
        assert_eq!((back.provenance, back.images), (info.provenance, 12));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
