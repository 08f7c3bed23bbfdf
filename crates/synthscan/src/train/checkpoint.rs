//! Checkpoints: the evaluated model as `best`/`last`, and what `--resume` continues from.

use super::ema::Ema;
use super::schedule::Patience;
use crate::detector::{ModelMeta, encode_model};
use crate::error::{Error, Result, write_file};
use crate::model::Network;
use crate::run::RunDir;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

const TRAIN_MODEL: &str = "train-model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const EMA_MODEL: &str = "ema-model.bpk";
pub const BEST: &str = "best.synthscan";
pub const LAST: &str = "last.synthscan";

/// Where the epoch loop stands, saved after every epoch so that `--resume` can continue.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResumeState {
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

/// Save the evaluated network as `last` (and `best` when it improved) and everything
/// `--resume` needs.
pub fn save(
    run: &RunDir,
    meta: &ModelMeta,
    eval_net: &Network,
    improved: bool,
    trainee: Trainee,
    state: &ResumeState,
) -> Result<()> {
    let model_bytes = encode_model(meta, eval_net.clone())?;
    if improved {
        write_file(&run.checkpoint(BEST), &model_bytes)?;
    }
    write_file(&run.checkpoint(LAST), model_bytes)?;
    save_record(run, TRAIN_MODEL, trainee.model)?;
    let path = run.checkpoint(OPTIMIZER);
    trainee
        .optim
        .save(&path)
        .map_err(|e| Error::output(&path, e))?;
    if let Some(ema) = trainee.ema {
        save_record(run, EMA_MODEL, &ema.model)?;
    }
    run.save_state(state)
}

fn save_record(run: &RunDir, name: &str, net: &Network) -> Result<()> {
    let path = run.checkpoint(name);
    net.clone()
        .into_record()
        .save(&path)
        .map_err(|e| Error::output(&path, e))
}

fn load_record(run: &RunDir, name: &str, net: Network) -> Result<Network> {
    let path = run.checkpoint(name);
    let record = ModuleRecord::load(&path).map_err(|e| Error::ModelFile {
        path: path.clone(),
        message: e.to_string(),
    })?;
    net.try_load_record(record).map_err(|e| Error::ModelFile {
        path,
        message: e.to_string(),
    })
}

/// Restore model, optimiser and EMA from the run's last checkpoint; returns the loop state.
pub fn restore(
    run: &RunDir,
    model: &mut Network,
    optim: &mut ModuleOptimizer,
    ema: Option<&mut Ema>,
) -> Result<ResumeState> {
    let state: ResumeState = run.load_state()?;
    *model = load_record(run, TRAIN_MODEL, model.clone())?;
    let path = run.checkpoint(OPTIMIZER);
    *optim = optim.clone().load(&path).map_err(|e| Error::ModelFile {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if let Some(ema) = ema {
        ema.model = load_record(run, EMA_MODEL, ema.model.clone())?;
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
    fn a_checkpoint_restores_model_and_state() {
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
        let state = ResumeState {
            epoch: 2,
            step: 40,
            plateau_scale: 0.5,
            ..Default::default()
        };
        let trainee = Trainee {
            model: &model,
            optim: &optim,
            ema: None,
        };
        save(&run, &meta, &model.valid(), true, trainee, &state).unwrap();
        assert!(run.checkpoint(BEST).is_file() && run.checkpoint(LAST).is_file());

        let mut fresh = arch.init(16, &device);
        let mut fresh_optim = super::super::optim::build_optimizer(&cfg.optimizer, &fresh);
        let back = restore(&run, &mut fresh, &mut fresh_optim, None).unwrap();
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
