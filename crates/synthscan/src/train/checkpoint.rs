//! Checkpoints: the evaluated model as `best`/`last`, and what `--resume` continues from.
//!
//! A checkpoint is a *generation*: its files (`best`/`last` model, training record, optimiser
//! state, EMA record) are written into `weights/gen-NNNNNN/`, each atomically, and the
//! generation is then committed by one atomic write of `weights/resume.json` naming it. Only
//! after that commit are `weights/best.synthscan`/`last.synthscan` (copies for people) replaced
//! and the earlier generations removed. A crash at any moment leaves the last committed
//! generation complete, and `--resume` continues from it.

use super::ema::Ema;
use super::schedule::Patience;
use crate::config::OptimizerConfig;
use crate::detector::{ModelMeta, encode_model};
use crate::error::{Error, Result, read_file, write_file};
use crate::model::Network;
use crate::run::RunDir;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const TRAIN_MODEL: &str = "train-model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const EMA_MODEL: &str = "ema-model.bpk";
pub const BEST: &str = "best.synthscan";
pub const LAST: &str = "last.synthscan";
const GEN_PREFIX: &str = "gen-";

/// Where the epoch loop stands, saved after every epoch so that `--resume` can continue. Its
/// atomic write commits the generation it names.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResumeState {
    /// The committed generation (`weights/gen-NNNNNN/`); absent in checkpoints written before
    /// generations, whose files lie directly in `weights/`.
    #[serde(default)]
    pub generation: Option<usize>,
    pub epoch: usize,
    pub step: usize,
    pub stop: Patience,
    pub plateau: Patience,
    pub plateau_scale: f64,
    pub train_seconds: f64,
}

impl Default for ResumeState {
    fn default() -> Self {
        Self {
            generation: None,
            epoch: 0,
            step: 0,
            stop: Patience::default(),
            plateau: Patience::default(),
            plateau_scale: 1.0,
            train_seconds: 0.0,
        }
    }
}

/// The training state a checkpoint holds besides [`ResumeState`].
pub struct Trainee<'a> {
    pub model: &'a Network,
    pub optim: &'a ModuleOptimizer,
    pub ema: Option<&'a Ema>,
}

/// The folder of generation `generation` (`None`: the pre-generation layout, `weights/`).
fn files_dir(run: &RunDir, generation: Option<usize>) -> PathBuf {
    match generation {
        Some(g) => run.checkpoint(&format!("{GEN_PREFIX}{g:06}")),
        None => run.weights_dir(),
    }
}

/// A file of the last committed generation (e.g. [`BEST`]), or of `weights/` when none is.
pub fn committed_file(run: &RunDir, name: &str) -> PathBuf {
    match run.load_state::<ResumeState>() {
        Ok(state) => files_dir(run, state.generation).join(name),
        Err(_) => run.checkpoint(name),
    }
}

/// Save the evaluated network as `last` (and `best` when it improved) and everything
/// `--resume` needs, as generation `state.epoch`, and commit it (setting `state.generation`).
pub fn save(
    run: &RunDir,
    meta: &ModelMeta,
    eval_net: &Network,
    improved: bool,
    trainee: Trainee,
    state: &mut ResumeState,
) -> Result<()> {
    let generation = state.epoch;
    let dir = files_dir(run, Some(generation));
    let last = encode_model(meta, eval_net.clone())?;
    let best = if improved {
        last.clone()
    } else {
        read_file(&files_dir(run, state.generation).join(BEST))?
    };
    write_file(&dir.join(BEST), &best)?;
    write_file(&dir.join(LAST), &last)?;
    write_file(
        &dir.join(TRAIN_MODEL),
        &*record_bytes(&dir, TRAIN_MODEL, trainee.model)?,
    )?;
    let optim = trainee
        .optim
        .into_bytes()
        .map_err(|e| Error::output(dir.join(OPTIMIZER), e))?;
    write_file(&dir.join(OPTIMIZER), &*optim)?;
    if let Some(ema) = trainee.ema {
        write_file(
            &dir.join(EMA_MODEL),
            &*record_bytes(&dir, EMA_MODEL, &ema.model)?,
        )?;
    }
    // The commit: one atomic write naming the new generation.
    let previous = state.generation.replace(generation);
    if let Err(e) = run.save_state(&*state) {
        state.generation = previous;
        return Err(e);
    }
    publish(run, &best, &last)?;
    remove_other_generations(run, generation);
    Ok(())
}

/// The copies people and reports read, `weights/best.synthscan` and `last.synthscan`.
fn publish(run: &RunDir, best: &[u8], last: &[u8]) -> Result<()> {
    write_file(&run.checkpoint(BEST), best)?;
    write_file(&run.checkpoint(LAST), last)
}

/// Remove every generation but `keep`, the files of the pre-generation layout and temporary
/// files a killed write left in `weights/` (a failure to remove is harmless: it is retried at
/// the next checkpoint).
fn remove_other_generations(run: &RunDir, keep: usize) {
    let keep_name = format!("{GEN_PREFIX}{keep:06}");
    let weights = run.weights_dir();
    for old in [TRAIN_MODEL, OPTIMIZER, EMA_MODEL] {
        let _ = std::fs::remove_file(weights.join(old));
    }
    let Ok(entries) = std::fs::read_dir(&weights) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(GEN_PREFIX) && name != keep_name {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn record_bytes(dir: &Path, name: &str, net: &Network) -> Result<Bytes> {
    net.clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::output(dir.join(name), e))
}

fn load_record(dir: &Path, name: &str, net: Network) -> Result<Network> {
    let path = dir.join(name);
    let bytes = read_file(&path)?;
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| Error::ModelFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
    net.try_load_record(record).map_err(|e| Error::ModelFile {
        path,
        message: e.to_string(),
    })
}

/// Restore model, optimiser and EMA from the run's last committed generation; returns the loop
/// state (the default, from epoch 0, when no generation was ever committed).
///
/// The optimiser is rebuilt from `optimizer` over the *restored* network before its state is
/// loaded: its parameter groups (weight decay off for biases and norms) name parameters by id,
/// and the restored network carries the ids of the run that saved it, not those of the network
/// `model` was initialised as.
pub fn restore(
    run: &RunDir,
    optimizer: &OptimizerConfig,
    model: &mut Network,
    optim: &mut ModuleOptimizer,
    ema: Option<&mut Ema>,
) -> Result<ResumeState> {
    if !run.has_state() {
        remove_other_generations(run, usize::MAX);
        return Ok(ResumeState::default());
    }
    let state: ResumeState = run.load_state()?;
    let dir = files_dir(run, state.generation);
    *model = load_record(&dir, TRAIN_MODEL, model.clone())?;
    let path = dir.join(OPTIMIZER);
    let bytes = read_file(&path)?;
    *optim = super::optim::build_optimizer(optimizer, model)
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::ModelFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
    if let Some(ema) = ema {
        ema.model = load_record(&dir, EMA_MODEL, ema.model.clone())?;
    }
    if let Some(g) = state.generation {
        // A kill between the commit and these copies left them a generation behind.
        let (best, last) = (read_file(&dir.join(BEST))?, read_file(&dir.join(LAST))?);
        publish(run, &best, &last)?;
        remove_other_generations(run, g);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Normalization;
    use crate::run::RunInfo;
    use burn::prelude::*;

    #[test]
    fn a_checkpoint_restores_model_and_state_and_keeps_one_generation() {
        let out = std::env::temp_dir().join(format!("synthscan-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let run = RunDir::create_fresh(&out, "c").unwrap();
        run.save_info(&RunInfo::default()).unwrap();
        let arch = crate::model::preset("fast").unwrap();
        let device = Device::default().autodiff();
        let model = arch.init(16, &device);
        let cfg: crate::config::TrainConfig =
            yaml_serde::from_str("model: {preset: fast}").unwrap();
        let optim = super::super::optim::build_optimizer(&cfg.optimizer, &model);
        let meta = ModelMeta::untrained(arch.clone(), 16, Normalization::unit());
        let mut state = ResumeState {
            epoch: 1,
            step: 20,
            plateau_scale: 0.5,
            ..Default::default()
        };
        let trainee = || Trainee {
            model: &model,
            optim: &optim,
            ema: None,
        };
        save(&run, &meta, &model.valid(), true, trainee(), &mut state).unwrap();
        state.epoch = 2;
        state.step = 40;
        save(&run, &meta, &model.valid(), false, trainee(), &mut state).unwrap();
        assert_eq!(state.generation, Some(2));
        assert!(run.checkpoint(BEST).is_file() && run.checkpoint(LAST).is_file());
        assert!(run.checkpoint("gen-000002").join(BEST).is_file());
        assert!(
            !run.checkpoint("gen-000001").exists(),
            "the old generation stays"
        );
        assert_eq!(
            committed_file(&run, BEST),
            run.checkpoint("gen-000002").join(BEST)
        );

        let mut fresh = arch.init(16, &device);
        let mut fresh_optim = super::super::optim::build_optimizer(&cfg.optimizer, &fresh);
        let back = restore(&run, &cfg.optimizer, &mut fresh, &mut fresh_optim, None).unwrap();
        assert_eq!(back, state);
        let x = Tensor::<4>::ones([1, 3, 16, 16], &device);
        let diff: f32 = (model.valid().forward(x.clone().inner())
            - fresh.valid().forward(x.inner()))
        .abs()
        .max()
        .into_scalar();
        assert!(diff < 1e-6, "{diff}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
