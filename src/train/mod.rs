//! The training loop, its run folder, checkpoints and resume.
//!
//! A run folder holds `config.yaml` (resolved), `run.json` (seed, git revision, versions,
//! backend, threads, data counts, final metrics), `metrics.csv` (one row per epoch),
//! `weights/best.synthscan` and `weights/last.synthscan` (self-describing models), the state
//! needed by `--resume`, and the plots and report written by [`crate::report`].

pub mod ema;
pub mod schedule;

use crate::config::{self, OptimizerKind, StopMetric, TrainConfig};
use crate::data::{self, ImageSet, Normalization, Part};
use crate::detector::{Detector, ModelMeta, default_device, encode_model};
use crate::error::{Error, Result, write_file};
use crate::eval::{self, Metrics};
use crate::model::Network;
use burn::module::{Module, ParamGroup};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, MultiGradientsParams, SgdConfig,
};
use burn::prelude::*;
use burn::store::ModuleRecord;
use ema::Ema;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use schedule::{Patience, Schedule};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
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
    /// No progress bars or per-epoch lines.
    pub quiet: bool,
}

/// One epoch's row of `metrics.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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

pub const METRICS_HEADER: &str = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,val_precision,val_recall,val_f1,val_auc,lr,seconds,images_per_second";

impl EpochRow {
    /// The row as a `metrics.csv` line (no newline).
    pub fn csv(&self) -> String {
        format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.8},{:.2},{:.1}",
            self.epoch,
            self.train_loss,
            self.train_accuracy,
            self.val_loss,
            self.val_accuracy,
            self.val_precision,
            self.val_recall,
            self.val_f1,
            self.val_auc,
            self.lr,
            self.seconds,
            self.images_per_second
        )
    }
}

/// Read a run's `metrics.csv`.
pub fn read_metrics(run_dir: &Path) -> Result<Vec<EpochRow>> {
    let path = run_dir.join("metrics.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let v: Vec<f64> = line
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::dataset(&path, format!("line {}: {e}", n + 1)))?;
        if v.len() != 12 {
            return Err(Error::dataset(
                &path,
                format!("line {}: expected 12 columns", n + 1),
            ));
        }
        rows.push(EpochRow {
            epoch: v[0] as usize,
            train_loss: v[1],
            train_accuracy: v[2],
            val_loss: v[3],
            val_accuracy: v[4],
            val_precision: v[5],
            val_recall: v[6],
            val_f1: v[7],
            val_auc: v[8],
            lr: v[9],
            seconds: v[10],
            images_per_second: v[11],
        });
    }
    Ok(rows)
}

/// Everything `run.json` records.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct RunInfo {
    pub name: String,
    pub seed: u64,
    pub git_revision: String,
    pub synthscan_version: String,
    pub burn_version: String,
    pub backend: String,
    pub threads: usize,
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
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join("run.json");
        let bytes = crate::error::read_file(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::dataset(&path, e.to_string()))
    }
    fn save(&self, run_dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::Model(e.to_string()))?;
        write_file(&run_dir.join("run.json"), json)
    }
}

/// State saved after every epoch so that `--resume` can continue.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
struct ResumeState {
    epoch: usize,
    step: usize,
    stop: Patience,
    plateau: Patience,
    plateau_scale: f64,
    train_seconds: f64,
}

/// What a finished run produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub model_path: PathBuf,
    pub info: RunInfo,
}

pub fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub fn backend_name(device: &Device) -> String {
    format!("{device:?}")
}

fn fresh_run_dir(out: &Path, name: &str) -> PathBuf {
    let first = out.join(name);
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|i| out.join(format!("{name}-{i}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// `whole` for every parameter, plus `bare` (the same optimiser without weight decay) for the
/// rank-1 parameters when `no_decay` names them.
fn with_no_decay_group<O: burn::optim::DynOptimizer + 'static>(
    whole: ModuleOptimizer,
    bare: O,
    no_decay: Option<ParamGroup>,
) -> ModuleOptimizer {
    match no_decay {
        Some(group) => whole.with_group(group, bare, None),
        None => whole,
    }
}

fn build_optimizer(cfg: &TrainConfig, model: &Network) -> ModuleOptimizer {
    let o = &cfg.optimizer;
    let split = o.weight_decay > 0.0 && !o.decay_norms_and_biases;
    let no_decay = split.then(|| ParamGroup::from_ids(ema::rank1_param_ids(model)));
    let decay = |wd: f64| (wd > 0.0).then_some(WeightDecayConfig::new(wd as f32));
    match o.kind {
        OptimizerKind::Adam => {
            let make = |wd: f64| {
                AdamConfig::new()
                    .with_beta_1(o.beta1)
                    .with_beta_2(o.beta2)
                    .with_epsilon(1e-8)
                    .with_weight_decay(decay(wd))
            };
            with_no_decay_group(make(o.weight_decay).init(), make(0.0).build(), no_decay)
        }
        OptimizerKind::Adamw => {
            let make = |wd: f64| {
                AdamWConfig::new()
                    .with_beta_1(o.beta1)
                    .with_beta_2(o.beta2)
                    .with_epsilon(1e-8)
                    .with_weight_decay(wd as f32)
            };
            with_no_decay_group(make(o.weight_decay).init(), make(0.0).build(), no_decay)
        }
        OptimizerKind::Sgd => {
            let momentum = (o.momentum > 0.0).then_some(MomentumConfig {
                momentum: o.momentum,
                dampening: 0.0,
                nesterov: o.nesterov,
            });
            let make = |wd: f64| {
                SgdConfig::new()
                    .with_momentum(momentum.clone())
                    .with_weight_decay(decay(wd))
            };
            with_no_decay_group(make(o.weight_decay).init(), make(0.0).build(), no_decay)
        }
    }
}

/// The data a run trains and validates on.
pub struct RunData {
    pub train: ImageSet,
    pub val: ImageSet,
    pub test: Option<ImageSet>,
    pub data_dir: PathBuf,
    pub test_dir: Option<PathBuf>,
    pub skipped: usize,
}

/// Load the dataset once: training folder, seeded stratified validation split, and the sibling
/// `test/` folder when the data directory is a `train/` + `test/` parent.
pub fn load_run_data(cfg: &TrainConfig, data_dir: &Path) -> Result<RunData> {
    let root = data::resolve_class_root(data_dir, Part::Train)?;
    let mut items = data::discover(&root)?;
    if let Some(limit) = cfg.data.limit_per_class {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        items.shuffle(&mut rng);
        let mut counts = [0usize; 2];
        items.retain(|(_, l)| {
            counts[*l as usize] += 1;
            counts[*l as usize] <= limit
        });
        items.sort();
    }
    let (all, report) = data::load_labelled(&items, cfg.input_size, cfg.data.strict)?;
    let (tr, va) = data::stratified_split(&all.labels, cfg.data.val_fraction, cfg.seed);
    let test_dir = data::sibling_test_root(data_dir);
    let (test, test_skipped) = match &test_dir {
        Some(t) => {
            let (set, rep) = data::load_folder(t, cfg.input_size, cfg.data.strict)?;
            (Some(set), rep.skipped.len())
        }
        None => (None, 0),
    };
    if tr.is_empty() {
        return Err(Error::dataset(
            &root,
            "no training images left after the validation split",
        ));
    }
    Ok(RunData {
        train: all.subset(&tr),
        val: all.subset(&va),
        test,
        data_dir: data_dir.to_path_buf(),
        test_dir,
        skipped: report.skipped.len() + test_skipped,
    })
}

/// Score a set with a network (no TTA) and return (scores, mean cross-entropy).
fn score_and_loss(meta: &ModelMeta, network: &Network, set: &ImageSet) -> (Vec<f32>, f64) {
    let det = Detector::new(
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
            let q = if l == data::FAKE { p } else { 1.0 - p };
            -(q.max(1e-7) as f64).ln()
        })
        .sum::<f64>()
        / set.len().max(1) as f64;
    (scores, loss)
}

/// Train every run of an experiment file. A grid's runs go into one parent folder.
pub fn train_experiments(path: &Path, opts: &TrainOptions) -> Result<Vec<RunOutcome>> {
    let configs = config::load_experiments(path)?;
    if configs.len() == 1 {
        return Ok(vec![train(&configs[0], opts)?]);
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("grid");
    let parent = fresh_run_dir(&opts.out, stem);
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
        outcomes.push(train_with_data(&cfg, &run_opts, &data, None)?);
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
pub fn train(cfg: &TrainConfig, opts: &TrainOptions) -> Result<RunOutcome> {
    let data_dir = resolve_data_dir(cfg, opts)?;
    let data = load_run_data(cfg, &data_dir)?;
    train_with_data(cfg, opts, &data, None)
}

/// Continue a run folder from its last checkpoint, with the config it was started with.
pub fn resume(run_dir: &Path, opts: &TrainOptions) -> Result<RunOutcome> {
    let cfg = config::load(&run_dir.join("config.yaml"))?;
    let info = RunInfo::load(run_dir)?;
    let data_dir = opts.data.clone().unwrap_or(info.data_dir.clone());
    let data = load_run_data(&cfg, &data_dir)?;
    train_with_data(&cfg, opts, &data, Some(run_dir.to_path_buf()))
}

/// One training batch: which images of which set, and how to prepare them.
pub struct BatchSpec<'a> {
    pub set: &'a ImageSet,
    pub indices: &'a [usize],
    pub normalization: &'a Normalization,
    pub augment: Option<(&'a data::AugmentConfig, u64)>,
}

/// What one optimisation step returns.
pub struct StepOutcome {
    pub model: Network,
    /// Mean loss over the batch.
    pub loss: f64,
    /// Correct argmax predictions in the batch.
    pub correct: usize,
}

/// Re-roots every trainable parameter as a new autodiff leaf: same id, same values.
struct FreshLeaves;

impl burn::module::ModuleMapper for FreshLeaves {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        param.map(|t| {
            if t.is_require_grad() {
                t.detach().require_grad()
            } else {
                t
            }
        })
    }
}

/// One optimisation step, data-parallel over the CPU's cores: the batch is cut into one part per
/// core, each part runs forward and backward on its own thread (the CPU backend runs one pass on
/// one core), and the gradients — each part's loss weighted by its share of the batch — are
/// summed before a single optimiser step. On a GPU the batch stays whole. Batch-norm statistics are per part, as in
/// data-parallel training on several GPUs.
pub fn train_step(
    model: Network,
    optim: &mut ModuleOptimizer,
    loss_fn: &burn::nn::loss::CrossEntropyLoss,
    batch: &BatchSpec,
    lr: f64,
    device: &Device,
) -> StepOutcome {
    use rayon::prelude::*;
    let size = batch.set.size as usize;
    let total = batch.indices.len();
    // Parts below ~16 images cost more in overhead than they gain.
    let workers = crate::detector::parallel_passes(device)
        .min(total / 16)
        .max(1);
    let parts: Vec<&[usize]> = batch.indices.chunks(total.div_ceil(workers)).collect();
    let outcomes: Vec<(GradientsParams, f64, usize)> = parts
        .par_iter()
        .enumerate()
        .map(|(k, part)| {
            // Each pass gets its own autodiff leaves, hence its own graph: burn locks a graph
            // for a whole backward pass, and passes sharing leaves would share one graph.
            let fresh;
            let model = if workers > 1 {
                fresh = model.clone().map(&mut FreshLeaves);
                &fresh
            } else {
                &model
            };
            let augment = batch
                .augment
                .map(|(a, seed)| (a, seed.wrapping_add(k as u64)));
            let floats = data::batch_floats(batch.set, part, batch.normalization, augment);
            let x = Tensor::<4>::from_data(
                TensorData::new(floats, [part.len(), 3, size, size]),
                device,
            );
            let labels: Vec<i64> = part.iter().map(|&i| batch.set.labels[i] as i64).collect();
            let y =
                Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [part.len()]), device);
            let logits = model.forward(x);
            let loss = loss_fn.forward(logits.clone(), y);
            let pred: Vec<i64> = logits
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .try_to_vec()
                .unwrap_or_default();
            let correct = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
            let weight = part.len() as f64 / total as f64;
            let loss_value: f32 = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.mul_scalar(weight).backward(), model);
            (grads, loss_value as f64 * weight, correct)
        })
        .collect();
    let loss = outcomes.iter().map(|o| o.1).sum();
    let correct = outcomes.iter().map(|o| o.2).sum();
    let grads = MultiGradientsParams {
        grads: outcomes
            .into_iter()
            .map(|(g, _, _)| (g, device.clone()))
            .collect(),
    };
    StepOutcome {
        model: optim.step_multi(lr, model, grads),
        loss,
        correct,
    }
}

fn say(quiet: bool, msg: String) {
    if !quiet {
        eprintln!("{msg}");
    }
}

fn train_with_data(
    cfg: &TrainConfig,
    opts: &TrainOptions,
    data: &RunData,
    resume: Option<PathBuf>,
) -> Result<RunOutcome> {
    let started = Instant::now();
    let run_dir = resume
        .clone()
        .unwrap_or_else(|| fresh_run_dir(&opts.out, &cfg.name));
    let weights = run_dir.join("weights");
    std::fs::create_dir_all(&weights).map_err(|e| Error::io(&weights, e))?;
    let device = default_device().autodiff();
    device.seed(cfg.seed);

    let normalization: Normalization = match (&cfg.weights, cfg.model.0.declared_normalization()) {
        (Some(_), Some(declared)) => declared,
        _ => cfg.normalization.resolve(&data.train),
    };
    let meta = ModelMeta {
        tta: cfg.tta,
        ..ModelMeta::untrained(cfg.model.0.clone(), cfg.input_size, normalization)
    };
    let mut model = crate::model::import::init_pretrained(cfg, &device)?;
    let mut optim = build_optimizer(cfg, &model);
    let mut ema = cfg
        .ema
        .as_ref()
        .map(|e| (Ema::new(&model, e.decay), e.every.max(1)));
    let steps_per_epoch = data.train.len().div_ceil(cfg.batch_size);
    let mut sched = Schedule::new(&cfg.schedule, cfg.optimizer.lr, steps_per_epoch, cfg.epochs);
    let mut state = ResumeState {
        plateau_scale: 1.0,
        ..Default::default()
    };

    let mut info = RunInfo {
        name: cfg.name.clone(),
        seed: cfg.seed,
        git_revision: git_revision(),
        synthscan_version: env!("CARGO_PKG_VERSION").into(),
        burn_version: env!("SYNTHSCAN_BURN_VERSION").into(),
        backend: backend_name(&device),
        threads: rayon::current_num_threads(),
        data_dir: data.data_dir.clone(),
        test_dir: data.test_dir.clone(),
        train_count: data.train.class_counts(),
        val_count: data.val.class_counts(),
        test_count: data.test.as_ref().map(ImageSet::class_counts),
        skipped_files: data.skipped,
        params: model.num_params(),
        ..Default::default()
    };

    if resume.is_some() {
        let st: ResumeState =
            serde_json::from_slice(&crate::error::read_file(&weights.join("resume.json"))?)
                .map_err(|e| Error::dataset(weights.join("resume.json"), e.to_string()))?;
        let load = |name: &str| -> Result<ModuleRecord> {
            let p = weights.join(name);
            ModuleRecord::load(&p).map_err(|e| Error::ModelFile {
                path: p.clone(),
                message: e.to_string(),
            })
        };
        model = model
            .try_load_record(load("train-model.bpk")?)
            .map_err(|e| Error::Model(e.to_string()))?;
        optim = optim
            .load(weights.join("optimizer.bpk"))
            .map_err(|e| Error::ModelFile {
                path: weights.join("optimizer.bpk"),
                message: e.to_string(),
            })?;
        if let Some((e, _)) = ema.as_mut() {
            e.model = e
                .model
                .clone()
                .try_load_record(load("ema-model.bpk")?)
                .map_err(|e| Error::Model(e.to_string()))?;
        }
        sched.plateau_scale = st.plateau_scale;
        state = st;
        let old = RunInfo::load(&run_dir)?;
        info.git_revision = old.git_revision;
        say(
            opts.quiet,
            format!("resuming {} after epoch {}", run_dir.display(), state.epoch),
        );
    } else {
        write_file(&run_dir.join("config.yaml"), cfg.to_yaml())?;
        write_file(&run_dir.join("metrics.csv"), format!("{METRICS_HEADER}\n"))?;
        info.save(&run_dir)?;
    }
    say(
        opts.quiet,
        format!(
            "run {}: {} params, train {}+{} / val {}+{} (REAL+FAKE), {} threads, backend {}",
            run_dir.display(),
            info.params,
            info.train_count[0],
            info.train_count[1],
            info.val_count[0],
            info.val_count[1],
            info.threads,
            info.backend
        ),
    );

    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing))
        .init(&device);
    let interactive = !opts.quiet && std::io::stderr().is_terminal();
    let mut csv = std::fs::read_to_string(run_dir.join("metrics.csv"))
        .unwrap_or_else(|_| format!("{METRICS_HEADER}\n"));

    for epoch in state.epoch + 1..=cfg.epochs {
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(
            cfg.seed.wrapping_add(epoch as u64 * 7919),
        ));
        let bar = interactive.then(|| {
            let b = indicatif::ProgressBar::new(steps_per_epoch as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(format!("{epoch}/{}", cfg.epochs));
            b
        });
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let mut lr = sched.lr(state.step);
        for (b, chunk) in order.chunks(cfg.batch_size).enumerate() {
            lr = sched.lr(state.step);
            let seed = cfg.seed ^ ((epoch as u64) << 40) ^ ((b as u64) << 20);
            let batch = BatchSpec {
                set: &data.train,
                indices: chunk,
                normalization: &meta.normalization,
                augment: Some((&cfg.augment, seed)),
            };
            let step = train_step(model, &mut optim, &loss_fn, &batch, lr, &device);
            model = step.model;
            if !step.loss.is_finite() {
                return Err(Error::Model(format!(
                    "training diverged at epoch {epoch} step {b} (loss {}); lower optimizer.lr (now {lr})",
                    step.loss
                )));
            }
            correct += step.correct;
            loss_sum += step.loss * chunk.len() as f64;
            seen += chunk.len();
            state.step += 1;
            if let Some((e, every)) = ema.as_mut()
                && state.step.is_multiple_of(*every)
            {
                e.update(&model, *every);
            }
            if let Some(bar) = &bar {
                bar.inc(1);
                if b % 10 == 0 {
                    let rate = seen as f64 / t0.elapsed().as_secs_f64();
                    bar.set_message(format!(
                        "loss {:.4} acc {:.4} {:.0} img/s",
                        loss_sum / seen as f64,
                        correct as f64 / seen as f64,
                        rate
                    ));
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let eval_net = ema
            .as_ref()
            .map(|(e, _)| e.model.clone())
            .unwrap_or_else(|| model.valid());
        let (val_scores, val_loss) = score_and_loss(&meta, &eval_net, &data.val);
        let vm = Metrics::compute(&val_scores, &data.val.labels, 0.5);
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
        csv.push_str(&row.csv());
        csv.push('\n');
        write_file(&run_dir.join("metrics.csv"), &csv)?;
        say(
            opts.quiet,
            format!(
                "epoch {epoch}/{}: train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} auc {:.4} | lr {:.2e} | {:.0} img/s, {:.0}s",
                cfg.epochs,
                row.train_loss,
                row.train_accuracy,
                row.val_loss,
                row.val_accuracy,
                row.val_auc,
                lr,
                row.images_per_second,
                row.seconds
            ),
        );

        // Checkpoints: the model we evaluate (EMA when enabled) as best/last, plus resume state.
        let stop_value = match cfg
            .early_stopping
            .as_ref()
            .map(|e| e.metric)
            .unwrap_or_default()
        {
            StopMetric::ValLoss => val_loss,
            StopMetric::ValAccuracy => -vm.accuracy,
            StopMetric::ValAuc => -vm.roc_auc,
        };
        let min_delta = cfg
            .early_stopping
            .as_ref()
            .map(|e| e.min_delta)
            .unwrap_or(0.0);
        let improved = state.stop.observe(epoch, stop_value, min_delta);
        if cfg.schedule.kind == config::ScheduleKind::Plateau
            && !state.plateau.observe(epoch, val_loss, 0.0)
            && state.plateau.bad_epochs >= cfg.schedule.patience
        {
            sched.plateau_scale *= cfg.schedule.gamma;
            state.plateau.bad_epochs = 0;
        }
        state.plateau_scale = sched.plateau_scale;
        write_file(
            &weights.join("last.synthscan"),
            encode_model(&meta, eval_net.clone())?,
        )?;
        if improved {
            write_file(
                &weights.join("best.synthscan"),
                encode_model(&meta, eval_net.clone())?,
            )?;
        }
        state.epoch = epoch;
        state.train_seconds += t0.elapsed().as_secs_f64();
        model
            .clone()
            .into_record()
            .save(weights.join("train-model.bpk"))
            .map_err(|e| Error::output(weights.join("train-model.bpk"), e))?;
        optim
            .save(weights.join("optimizer.bpk"))
            .map_err(|e| Error::output(weights.join("optimizer.bpk"), e))?;
        if let Some((e, _)) = &ema {
            e.model
                .clone()
                .into_record()
                .save(weights.join("ema-model.bpk"))
                .map_err(|e| Error::output(weights.join("ema-model.bpk"), e))?;
        }
        write_file(
            &weights.join("resume.json"),
            serde_json::to_vec(&state).unwrap_or_default(),
        )?;
        info.epochs_run = epoch;
        info.best_epoch = state.stop.best_epoch;
        info.train_seconds = state.train_seconds;
        info.save(&run_dir)?;
        crate::report::after_epoch(&run_dir);

        if let Some(es) = &cfg.early_stopping
            && state.stop.bad_epochs >= es.patience
        {
            say(
                opts.quiet,
                format!(
                    "early stop after epoch {epoch}: no improvement for {} epochs",
                    es.patience
                ),
            );
            break;
        }
    }

    // Final model: best checkpoint, threshold chosen on validation, TTA as configured.
    let best_net = Detector::load(&weights.join("best.synthscan"))?.network;
    let mut final_det = Detector::new(meta, best_net, default_device());
    let val_scores = final_det.score_set(&data.val);
    let threshold = if data.val.is_empty() {
        0.5
    } else {
        eval::choose_threshold(&val_scores, &data.val.labels, cfg.threshold)
    };
    let val_metrics = Metrics::compute(&val_scores, &data.val.labels, threshold);
    final_det.meta.threshold = threshold;
    final_det.meta.provenance = serde_json::json!({
        "run": cfg.name,
        "seed": cfg.seed,
        "git_revision": info.git_revision,
        "train_count": info.train_count,
        "val_count": info.val_count,
        "best_epoch": state.stop.best_epoch,
        "val": val_metrics,
    });
    let test_scored = data.test.as_ref().map(|t| {
        let t0 = Instant::now();
        let scores = final_det.score_set(t);
        let mut m = Metrics::compute(&scores, &t.labels, threshold);
        m.images_per_second = t.len() as f64 / t0.elapsed().as_secs_f64();
        (scores, m)
    });
    let test_metrics = test_scored.as_ref().map(|(_, m)| m.clone());
    if let Some(tm) = &test_metrics {
        final_det.meta.provenance["test"] = serde_json::to_value(tm).unwrap_or_default();
    }
    let model_path = run_dir.join("model.synthscan");
    final_det.save(&model_path)?;
    info.val = Some(val_metrics.clone());
    info.test = test_metrics.clone();
    info.finished = true;
    info.save(&run_dir)?;
    crate::report::after_run(
        &run_dir,
        &final_det,
        data,
        &val_scores,
        test_scored.as_ref().map(|(s, _)| s.as_slice()),
    );
    say(
        opts.quiet,
        format!(
            "done in {:.1} min: best epoch {}, threshold {:.3}, val acc {:.4} auc {:.4}{} → {}",
            started.elapsed().as_secs_f64() / 60.0,
            state.stop.best_epoch,
            threshold,
            val_metrics.accuracy,
            val_metrics.roc_auc,
            test_metrics
                .map(|m| format!(", test acc {:.4} auc {:.4}", m.accuracy, m.roc_auc))
                .unwrap_or_default(),
            model_path.display()
        ),
    );
    Ok(RunOutcome {
        run_dir,
        model_path,
        info,
    })
}
