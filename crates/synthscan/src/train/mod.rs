//! Training: an experiment in, a run folder out.
//!
//! The loop is assembled from small parts: [`data`] (what a run trains on), [`optim`] (the
//! optimiser and its parameter groups), [`step`] (the data-parallel optimisation step),
//! [`checkpoint`] (best/last models and resume state), [`finish`] (the final detector). Every
//! file goes through [`crate::run::RunDir`]; a [`RunObserver`] hears how far the run has got
//! ([`Progress`]: what the person watching sees is its choice) and when an epoch or the run
//! has finished.

pub mod checkpoint;
pub mod data;
pub mod ema;
pub mod finish;
pub mod optim;
pub mod schedule;
pub mod step;

pub use data::{RunData, load_run_data};
pub use step::{BatchSpec, StepOutcome, train_step};

use crate::config::{self, ScheduleKind, StopMetric, TrainConfig};
use crate::detector::{ModelMeta, default_device};
use crate::error::{Error, Result};
use crate::eval::Metrics;
use crate::model::Network;
use crate::run::{
    EpochRow, FinishedRun, METRICS_FILE, Progress, Provenance, RunDir, RunInfo, RunObserver,
    Running,
};
use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use checkpoint::{ResumeState, Trainee};
use ema::Ema;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use schedule::Schedule;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where training reads and writes, beyond the experiment file itself.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Dataset folder (overrides `data.dir`).
    pub data: Option<PathBuf>,
    /// Parent folder of run folders.
    pub out: PathBuf,
    /// Continue this run folder from its last checkpoint.
    pub resume: Option<PathBuf>,
}

/// What a finished run produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub model_path: PathBuf,
    pub info: RunInfo,
}

/// Train every run of an experiment file. A grid's runs go into one parent folder.
pub fn train_experiments(
    path: &Path,
    opts: &TrainOptions,
    observer: &mut dyn RunObserver,
) -> Result<Vec<RunOutcome>> {
    let configs = config::load_experiments(path)?;
    if configs.len() == 1 {
        return Ok(vec![train(&configs[0], opts, observer)?]);
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("grid");
    let parent = crate::run::fresh_path(&opts.out, stem);
    let mut outcomes = Vec::new();
    // Runs of a grid share one decoded dataset when their data settings agree.
    let mut cache: Option<(config::DataConfig, u32, u64, std::sync::Arc<RunData>)> = None;
    for cfg in configs {
        let data_dir = resolve_data_dir(&cfg, opts)?;
        let key = (cfg.data.clone(), cfg.input_size, cfg.seed);
        let data = match &cache {
            Some((d, s, seed, data)) if (d, *s, *seed) == (&key.0, key.1, key.2) => data.clone(),
            _ => {
                let d = std::sync::Arc::new(load_run_data(&cfg, &data_dir)?);
                cache = Some((key.0, key.1, key.2, d.clone()));
                d
            }
        };
        let run_opts = TrainOptions {
            out: parent.clone(),
            ..opts.clone()
        };
        outcomes.push(train_with_data(&cfg, &run_opts, &data, None, observer)?);
    }
    Ok(outcomes)
}

fn resolve_data_dir(cfg: &TrainConfig, opts: &TrainOptions) -> Result<PathBuf> {
    opts.data
        .clone()
        .or_else(|| cfg.data.dir.clone())
        .ok_or_else(|| {
            Error::Invalid("no dataset: pass --data DIR or set data.dir in the experiment".into())
        })
}

/// Train one experiment into a fresh run folder.
pub fn train(
    cfg: &TrainConfig,
    opts: &TrainOptions,
    observer: &mut dyn RunObserver,
) -> Result<RunOutcome> {
    let data_dir = resolve_data_dir(cfg, opts)?;
    let data = load_run_data(cfg, &data_dir)?;
    train_with_data(cfg, opts, &data, None, observer)
}

/// Continue a run folder from its last checkpoint, with the config it was started with.
pub fn resume(
    run_dir: &Path,
    opts: &TrainOptions,
    observer: &mut dyn RunObserver,
) -> Result<RunOutcome> {
    let run = RunDir::open(run_dir)?;
    let cfg = config::load(&run.config_path())?;
    let info = run.load_info()?;
    let data_dir = opts.data.clone().unwrap_or(info.data_dir.clone());
    let data = load_run_data(&cfg, &data_dir)?;
    train_with_data(&cfg, opts, &data, Some(run), observer)
}

/// Train `cfg` on already-loaded data, into a fresh run folder or continuing `resume`.
pub fn train_with_data(
    cfg: &TrainConfig,
    opts: &TrainOptions,
    data: &RunData,
    resume: Option<RunDir>,
    observer: &mut dyn RunObserver,
) -> Result<RunOutcome> {
    let started = Instant::now();
    let mut t = Trainer::start(cfg, opts, data, resume, observer)?;
    // A run killed after the checkpoint of the epoch that stopped it early has nothing left.
    let stopped = t.state.epoch > 0 && t.stop_reached();
    for epoch in t.state.epoch + 1..=cfg.epochs {
        if stopped {
            break;
        }
        t.epoch(epoch)?;
        t.observer.epoch_finished(&t.run);
        if t.should_stop(epoch) {
            break;
        }
    }
    t.finish(started)
}

/// Everything the epoch loop carries from one epoch to the next.
struct Trainer<'a, 'o> {
    cfg: &'a TrainConfig,
    data: &'a RunData,
    run: RunDir,
    device: Device,
    meta: ModelMeta,
    model: Network,
    optim: ModuleOptimizer,
    ema: Option<(Ema, usize)>,
    sched: Schedule,
    state: ResumeState,
    info: RunInfo,
    loss_fn: CrossEntropyLoss,
    observer: &'o mut dyn RunObserver,
}

impl<'a, 'o> Trainer<'a, 'o> {
    /// Build model, optimiser and schedule; create the run folder or restore its checkpoint.
    fn start(
        cfg: &'a TrainConfig,
        opts: &TrainOptions,
        data: &'a RunData,
        resume: Option<RunDir>,
        observer: &'o mut dyn RunObserver,
    ) -> Result<Self> {
        let resuming = resume.is_some();
        let run = match resume {
            Some(run) => {
                run.probe_writable()?;
                run
            }
            None => RunDir::create_fresh(&opts.out, &cfg.name)?,
        };
        let device = default_device().autodiff();
        device.seed(cfg.seed);
        let (model, normalization) = match &cfg.init {
            Some(path) => init_from(cfg, path, &device)?,
            None => {
                // Imported weights expect the normalisation they were trained with.
                let norm = match (&cfg.weights, cfg.model.0.declared_normalization()) {
                    (Some(_), Some(declared)) => declared,
                    _ => cfg.normalization.resolve(&data.train),
                };
                (
                    crate::model::import::init_pretrained(
                        &cfg.model.0,
                        cfg.input_size,
                        cfg.weights.as_deref(),
                        cfg.freeze_backbone,
                        &device,
                    )?,
                    norm,
                )
            }
        };
        let meta = ModelMeta {
            tta: cfg.tta,
            ..ModelMeta::untrained(cfg.model.0.clone(), cfg.input_size, normalization)
        };
        let optim = optim::build_optimizer(&cfg.optimizer, &model);
        let ema = cfg
            .ema
            .as_ref()
            .map(|e| (Ema::new(&model, e.decay), e.every.max(1)));
        let steps_per_epoch = data.train.len().div_ceil(cfg.batch_size);
        let sched = Schedule::new(&cfg.schedule, cfg.optimizer.lr, steps_per_epoch, cfg.epochs);
        let loss_fn = CrossEntropyLossConfig::new()
            .with_smoothing((cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing))
            .init(&device);
        let info = Self::fresh_info(cfg, data, &device, model.num_params());
        let mut t = Trainer {
            cfg,
            data,
            run,
            device,
            meta,
            model,
            optim,
            ema,
            sched,
            state: ResumeState::default(),
            info,
            loss_fn,
            observer,
        };
        if resuming {
            t.restore()?;
        } else {
            t.run.write_config(&cfg.to_yaml()?)?;
            t.run.start_table::<EpochRow>(METRICS_FILE)?;
            t.run.save_info(&t.info)?;
        }
        t.announce();
        Ok(t)
    }

    fn fresh_info(cfg: &TrainConfig, data: &RunData, device: &Device, params: usize) -> RunInfo {
        RunInfo {
            provenance: Provenance::current(&cfg.name, cfg.seed, device),
            data_dir: data.data_dir.clone(),
            test_dir: data.test_dir.clone(),
            train_count: data.train.class_counts(),
            val_count: data.val.class_counts(),
            test_count: data.test.as_ref().map(|t| t.class_counts()),
            skipped_files: data.skipped,
            params,
            ..Default::default()
        }
    }

    fn restore(&mut self) -> Result<()> {
        let ema = self.ema.as_mut().map(|(e, _)| e);
        self.state = checkpoint::restore(
            &self.run,
            &self.cfg.optimizer,
            &mut self.model,
            &mut self.optim,
            ema,
        )?;
        self.sched.plateau_scale = self.state.plateau_scale;
        // Rows written after the last commit (before a kill) are written again.
        self.run
            .keep_rows::<EpochRow>(METRICS_FILE, self.state.epoch)?;
        self.info.epochs_run = self.state.epoch;
        self.info.best_epoch = self.state.stop.best_epoch;
        self.info.train_seconds = self.state.train_seconds;
        let started = self.run.load_info()?.provenance;
        self.info.provenance = self.info.provenance.clone().resumed_from(&started);
        self.say(&format!(
            "resuming {} after epoch {}",
            self.run.path().display(),
            self.state.epoch
        ));
        Ok(())
    }

    /// A line for the person watching.
    fn say(&mut self, line: &str) {
        self.observer.progress(&Progress::Message(line));
    }

    fn announce(&mut self) {
        let i = &self.info;
        let line = format!(
            "run {}: {} params, train {}+{} / val {}+{} (REAL+FAKE), {} threads, backend {}",
            self.run.path().display(),
            i.params,
            i.train_count[0],
            i.train_count[1],
            i.val_count[0],
            i.val_count[1],
            i.provenance.threads,
            i.provenance.backend
        );
        self.say(&line);
    }

    /// One epoch: a pass over the shuffled training set, validation, `metrics.csv`, checkpoints.
    fn epoch(&mut self, epoch: usize) -> Result<EpochRow> {
        let cfg = self.cfg;
        let t0 = Instant::now();
        // Every draw of an epoch is a function of (seed, epoch) alone, so that a resumed run
        // draws what the uninterrupted one did: the order and the augmentation are seeded below,
        // and the backend's generator (dropout) is reseeded here.
        self.device.seed(epoch_seed(cfg.seed, epoch));
        let mut order: Vec<usize> = (0..self.data.train.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(
            cfg.seed.wrapping_add(epoch as u64 * 7919),
        ));
        let steps = order.len().div_ceil(cfg.batch_size);
        self.observer.progress(&Progress::EpochStarted {
            epoch,
            epochs: cfg.epochs,
            steps,
        });
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let mut lr = self.sched.lr(self.state.step);
        for (b, chunk) in order.chunks(cfg.batch_size).enumerate() {
            lr = self.sched.lr(self.state.step);
            let seed = cfg.seed ^ ((epoch as u64) << 40) ^ ((b as u64) << 20);
            let batch = BatchSpec {
                set: &self.data.train,
                indices: chunk,
                normalization: &self.meta.normalization,
                augment: Some((&cfg.augment, seed)),
                parts: step::step_parts(&self.device, chunk.len()),
            };
            let model = self.model.clone();
            let step = train_step(
                model,
                &mut self.optim,
                &self.loss_fn,
                &batch,
                lr,
                &self.device,
            );
            self.model = step.model;
            if !step.loss.is_finite() {
                return Err(Error::Model(format!(
                    "training diverged at epoch {epoch} step {b} (loss {}); lower optimizer.lr (now {lr})",
                    step.loss
                )));
            }
            correct += step.correct;
            loss_sum += step.loss * chunk.len() as f64;
            seen += chunk.len();
            self.state.step += 1;
            if let Some((e, every)) = self.ema.as_mut()
                && self.state.step.is_multiple_of(*every)
            {
                e.update(&self.model, *every);
            }
            self.observer.progress(&Progress::Step {
                step: b,
                running: Running::Detector {
                    loss: loss_sum / seen as f64,
                    accuracy: correct as f64 / seen as f64,
                },
                images_per_second: seen as f64 / t0.elapsed().as_secs_f64(),
            });
        }
        self.observer.progress(&Progress::EpochSteps);
        let train_secs = t0.elapsed().as_secs_f64();
        let (row, eval_net, vm) =
            self.validate(epoch, t0, train_secs, lr, (loss_sum, correct, seen));
        self.run.append_row(METRICS_FILE, &row)?;
        self.report_epoch(&row);
        self.checkpoint(epoch, &row, &vm, &eval_net, t0)?;
        Ok(row)
    }

    /// Score the validation set with the network we evaluate (EMA when enabled).
    fn validate(
        &self,
        epoch: usize,
        t0: Instant,
        train_secs: f64,
        lr: f64,
        (loss_sum, correct, seen): (f64, usize, usize),
    ) -> (EpochRow, Network, Metrics) {
        let eval_net = self
            .ema
            .as_ref()
            .map(|(e, _)| e.model.clone())
            .unwrap_or_else(|| self.model.valid());
        let (val_scores, val_loss) = score_and_loss(&self.meta, &eval_net, &self.data.val);
        let vm = Metrics::compute(&val_scores, &self.data.val.labels, 0.5);
        let row = EpochRow {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_accuracy: vm.accuracy,
            val_precision: vm.precision,
            val_recall: vm.recall,
            val_f1: vm.f1,
            val_auc: vm.roc_auc,
            lr,
            seconds: t0.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / train_secs,
        };
        (row, eval_net, vm)
    }

    fn report_epoch(&mut self, row: &EpochRow) {
        let line = format!(
            "epoch {}/{}: train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} auc {:.4} | lr {:.2e} | {:.0} img/s, {:.0}s",
            row.epoch,
            self.cfg.epochs,
            row.train_loss,
            row.train_accuracy,
            row.val_loss,
            row.val_accuracy,
            row.val_auc,
            row.lr,
            row.images_per_second,
            row.seconds
        );
        self.say(&line);
    }

    /// Early-stopping and plateau bookkeeping, then the checkpoint of this epoch.
    fn checkpoint(
        &mut self,
        epoch: usize,
        row: &EpochRow,
        vm: &Metrics,
        eval_net: &Network,
        t0: Instant,
    ) -> Result<()> {
        let cfg = self.cfg;
        let es = cfg.early_stopping.as_ref();
        let stop_value = match es.map(|e| e.metric).unwrap_or_default() {
            StopMetric::ValLoss => row.val_loss,
            StopMetric::ValAccuracy => -vm.accuracy,
            StopMetric::ValAuc => -vm.roc_auc,
        };
        let min_delta = es.map(|e| e.min_delta).unwrap_or(0.0);
        let improved = self.state.stop.observe(epoch, stop_value, min_delta);
        if cfg.schedule.kind == ScheduleKind::Plateau
            && !self.state.plateau.observe(epoch, row.val_loss, 0.0)
            && self.state.plateau.bad_epochs >= cfg.schedule.patience
        {
            self.sched.plateau_scale *= cfg.schedule.gamma;
            self.state.plateau.bad_epochs = 0;
        }
        self.state.plateau_scale = self.sched.plateau_scale;
        self.state.epoch = epoch;
        self.state.train_seconds += t0.elapsed().as_secs_f64();
        let trainee = Trainee {
            model: &self.model,
            optim: &self.optim,
            ema: self.ema.as_ref().map(|(e, _)| e),
        };
        checkpoint::save(
            &self.run,
            &self.meta,
            eval_net,
            improved,
            trainee,
            &mut self.state,
        )?;
        self.info.epochs_run = epoch;
        self.info.best_epoch = self.state.stop.best_epoch;
        self.info.train_seconds = self.state.train_seconds;
        self.run.save_info(&self.info)
    }

    /// Whether early stopping ends the run after `epoch`.
    fn should_stop(&mut self, epoch: usize) -> bool {
        let stop = self.stop_reached();
        if let (true, Some(es)) = (stop, &self.cfg.early_stopping) {
            let line = format!(
                "early stop after epoch {epoch}: no improvement for {} epochs",
                es.patience
            );
            self.say(&line);
        }
        stop
    }

    /// Whether early stopping's patience has run out.
    fn stop_reached(&self) -> bool {
        self.cfg
            .early_stopping
            .as_ref()
            .is_some_and(|es| self.state.stop.bad_epochs >= es.patience)
    }

    fn finish(mut self, started: Instant) -> Result<RunOutcome> {
        let f = finish::finish(
            self.cfg,
            &self.run,
            self.meta.clone(),
            self.data,
            &mut self.info,
        )?;
        self.observer.run_finished(&FinishedRun {
            dir: &self.run,
            detector: &f.detector,
            val: &self.data.val,
            val_scores: &f.val_scores,
            test: self
                .data
                .test
                .as_ref()
                .zip(f.test.as_ref())
                .map(|(set, (scores, _))| (set, scores.as_slice())),
        });
        let line = format!(
            "done in {:.1} min: best epoch {}, threshold {:.3}, val acc {:.4} auc {:.4}{} → {}",
            started.elapsed().as_secs_f64() / 60.0,
            self.state.stop.best_epoch,
            f.detector.meta.threshold,
            f.val.accuracy,
            f.val.roc_auc,
            f.test
                .as_ref()
                .map(|(_, m)| format!(", test acc {:.4} auc {:.4}", m.accuracy, m.roc_auc))
                .unwrap_or_default(),
            self.run.model_path().display()
        );
        self.say(&line);
        Ok(RunOutcome {
            run_dir: self.run.path().to_path_buf(),
            model_path: self.run.model_path(),
            info: self.info,
        })
    }
}

/// The seed of the backend's generator for `epoch`: a function of the run's seed and the epoch
/// only (splitmix64 of the two), whatever happened before.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The network and normalisation of the model file `init` names, checked against the experiment.
fn init_from(
    cfg: &TrainConfig,
    path: &Path,
    device: &Device,
) -> Result<(Network, crate::data::Normalization)> {
    let det = crate::detector::Detector::load(path)?;
    if det.meta.arch != cfg.model.0 || det.meta.input_size != cfg.input_size {
        return Err(Error::config(
            path,
            format!(
                "init: this model is a {}-pixel {:?}, the experiment trains a {}-pixel {:?}",
                det.meta.input_size, det.meta.arch, cfg.input_size, cfg.model.0
            ),
        ));
    }
    let model = cfg
        .model
        .0
        .init(cfg.input_size as usize, device)
        .load_record(det.network.into_record());
    Ok((model, det.meta.normalization))
}

/// Score a set with a network (no TTA) and return (scores, mean cross-entropy).
fn score_and_loss(
    meta: &ModelMeta,
    network: &Network,
    set: &crate::data::ImageSet,
) -> (Vec<f32>, f64) {
    let det = crate::detector::Detector::new(
        ModelMeta {
            tta: false,
            ..meta.clone()
        },
        network.valid(),
        default_device(),
    );
    let scores = det.score_set(set);
    let loss = scores
        .iter()
        .zip(&set.labels)
        .map(|(&p, &l)| {
            let q = if l == crate::data::FAKE { p } else { 1.0 - p };
            -(q.max(1e-7) as f64).ln()
        })
        .sum::<f64>()
        / set.len().max(1) as f64;
    (scores, loss)
}
