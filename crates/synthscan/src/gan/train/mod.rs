//! `gan train`: the DCGAN loop and its run folder.
//!
//! A run folder holds `config.yaml` (resolved), `run.json` (seed, git revision, versions,
//! backend, data, timings), `losses.csv` (one row per epoch), `frechet.csv` (one row per
//! sampled epoch), `samples/epoch-NNNN.png` (the fixed-noise grid), `checkpoints/G-epoch-NNNN.gan`
//! and `D-epoch-NNNN.gan` at the configured epochs, `G.gan` / `D.gan` (last epoch),
//! `progress.gif` (every grid, in order) and `state/` (what `--resume` needs).

use super::config::GanConfig;
use super::fid::{self, Gaussian};
use super::model::{Discriminator, Generator, NetFileMeta, NetKind, NetSpec, encode_net};
use super::sample;
use super::step::{HostBatch, d_step, g_step};
use crate::data::{self, AugmentConfig, ImageSet, Normalization};
use crate::detector::{Detector, default_device};
use crate::error::{Error, Result, write_file};
use crate::run::{self, Column, CsvRow};
use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use burn::store::ModuleRecord;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One epoch of `losses.csv`: means over the epoch's steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossRow {
    pub epoch: usize,
    pub steps: usize,
    pub d_loss: f64,
    pub g_loss: f64,
    /// Mean D(x) on real batches, as a probability.
    pub d_real: f64,
    /// Mean D(G(z)) on generated batches, before the D update.
    pub d_fake: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

impl CsvRow for LossRow {
    const COLUMNS: &'static [Column<Self>] = &[
        Column::new("epoch", 0, |r| r.epoch as f64, |r, v| r.epoch = v as usize),
        Column::new("steps", 0, |r| r.steps as f64, |r, v| r.steps = v as usize),
        Column::new("d_loss", 6, |r| r.d_loss, |r, v| r.d_loss = v),
        Column::new("g_loss", 6, |r| r.g_loss, |r, v| r.g_loss = v),
        Column::new("d_real", 6, |r| r.d_real, |r, v| r.d_real = v),
        Column::new("d_fake", 6, |r| r.d_fake, |r, v| r.d_fake = v),
        Column::new("seconds", 6, |r| r.seconds, |r, v| r.seconds = v),
        Column::new(
            "images_per_second",
            6,
            |r| r.images_per_second,
            |r, v| r.images_per_second = v,
        ),
    ];
}

/// One row of `frechet.csv`: quality and variety of the samples after `epoch`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrechetRow {
    pub epoch: usize,
    /// Fréchet distance to the real images in the feature model's space (not Inception FID).
    pub frechet: f64,
    /// Mean pairwise RMS pixel distance between generated images.
    pub diversity_fake: f64,
    /// The same measure between real images.
    pub diversity_real: f64,
}

impl CsvRow for FrechetRow {
    const COLUMNS: &'static [Column<Self>] = &[
        Column::new("epoch", 0, |r| r.epoch as f64, |r, v| r.epoch = v as usize),
        Column::new("frechet", 6, |r| r.frechet, |r, v| r.frechet = v),
        Column::new(
            "diversity_fake",
            6,
            |r| r.diversity_fake,
            |r, v| r.diversity_fake = v,
        ),
        Column::new(
            "diversity_real",
            6,
            |r| r.diversity_real,
            |r, v| r.diversity_real = v,
        ),
    ];
}

/// Where `gan train` reads and writes, beyond `gan.yaml`.
#[derive(Clone, Debug, Default)]
pub struct GanTrainOptions {
    /// Folder of images (searched recursively).
    pub data: PathBuf,
    /// Parent folder of run folders.
    pub out: PathBuf,
    /// Continue this run folder from its last epoch.
    pub resume: Option<PathBuf>,
    /// Detector whose penultimate features define the Fréchet distance (default: embedded).
    pub feature_model: Option<PathBuf>,
    /// No progress bar.
    pub quiet: bool,
}

/// What `run.json` records.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GanRunInfo {
    pub name: String,
    pub seed: u64,
    pub git_revision: String,
    pub synthscan_version: String,
    pub burn_version: String,
    pub backend: String,
    pub threads: usize,
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
    fn save(&self, run_dir: &Path) -> Result<()> {
        run::write_json(&run_dir.join(run::INFO_FILE), self)
    }
}

/// What the loop reports as it goes; the caller decides what to print.
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

/// What a finished run produced.
#[derive(Clone, Debug)]
pub struct GanOutcome {
    pub run_dir: PathBuf,
    pub generator: PathBuf,
    pub gif: PathBuf,
    pub info: GanRunInfo,
    pub losses: Vec<LossRow>,
    pub frechet: Vec<FrechetRow>,
}

/// Resume bookkeeping, saved after every epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ResumeState {
    epoch: usize,
    train_seconds: f64,
}

/// Pixels in [0, 255] → [-1, 1], the generator's tanh range.
pub fn gan_normalization() -> Normalization {
    Normalization {
        mean: [0.5; 3],
        std: [0.5; 3],
    }
}

/// Decode every image under `dir` at `size` (at most `limit`, a seeded choice).
pub fn load_images(
    dir: &Path,
    size: u32,
    limit: Option<usize>,
    seed: u64,
) -> Result<(ImageSet, usize)> {
    let mut files = data::list_images(dir)?;
    if files.is_empty() {
        return Err(Error::dataset(
            dir,
            "no image files found (searched recursively)",
        ));
    }
    if let Some(n) = limit.filter(|&n| n < files.len()) {
        files.shuffle(&mut StdRng::seed_from_u64(seed));
        files.truncate(n);
        files.sort();
    }
    let items: Vec<(PathBuf, u8)> = files.into_iter().map(|p| (p, data::REAL)).collect();
    let (set, report) = data::load_labelled(&items, size, false)?;
    Ok((set, report.skipped.len()))
}

fn spec_g(cfg: &GanConfig) -> NetSpec {
    NetSpec {
        image_size: cfg.image_size,
        latent: cfg.latent,
        width: cfg.g_width,
    }
}

fn spec_d(cfg: &GanConfig) -> NetSpec {
    NetSpec {
        width: cfg.d_width,
        ..spec_g(cfg)
    }
}

fn adam(cfg: &GanConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(cfg.beta1)
        .with_beta_2(cfg.beta2)
        .with_epsilon(1e-8)
        .init()
}

fn fresh_run_dir(out: &Path, name: &str) -> PathBuf {
    (1..)
        .map(|i| match i {
            1 => out.join(name),
            _ => out.join(format!("{name}-{i}")),
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| out.join(name))
}

/// The pair being trained, their optimisers and where they stand.
struct Pair {
    g: Generator,
    d: Discriminator,
    opt_g: ModuleOptimizer,
    opt_d: ModuleOptimizer,
    state: ResumeState,
}

fn save_net<M: Module>(
    path: &Path,
    kind: NetKind,
    spec: &NetSpec,
    epoch: usize,
    net: M,
) -> Result<()> {
    let meta = NetFileMeta {
        kind,
        spec: spec.clone(),
        epoch,
    };
    write_file(path, encode_net(&meta, net)?)
}

impl Pair {
    fn fresh(cfg: &GanConfig, device: &Device) -> Self {
        Self {
            g: Generator::new(&spec_g(cfg), device),
            d: Discriminator::new(&spec_d(cfg), device),
            opt_g: adam(cfg),
            opt_d: adam(cfg),
            state: ResumeState::default(),
        }
    }

    fn save_state(&self, cfg: &GanConfig, run_dir: &Path) -> Result<()> {
        let st = run_dir.join("state");
        let e = self.state.epoch;
        save_net(
            &st.join("G.gan"),
            NetKind::Generator,
            &spec_g(cfg),
            e,
            self.g.clone(),
        )?;
        save_net(
            &st.join("D.gan"),
            NetKind::Discriminator,
            &spec_d(cfg),
            e,
            self.d.clone(),
        )?;
        for (name, opt) in [("optim-G.bpk", &self.opt_g), ("optim-D.bpk", &self.opt_d)] {
            opt.save(st.join(name))
                .map_err(|err| Error::output(st.join(name), err))?;
        }
        write_file(
            &st.join("resume.json"),
            serde_json::to_vec(&self.state).unwrap_or_default(),
        )
    }

    fn load_state(cfg: &GanConfig, run_dir: &Path, device: &Device) -> Result<Self> {
        let st = run_dir.join("state");
        let mut pair = Self::fresh(cfg, device);
        let record = |name: &str| -> Result<ModuleRecord> {
            let p = st.join(name);
            super::model::decode_net(&crate::error::read_file(&p)?, &p).map(|(_, r)| r)
        };
        let bad = |name: &str| {
            let path = st.join(name);
            move |e: String| Error::ModelFile { path, message: e }
        };
        pair.g = pair
            .g
            .try_load_record(record("G.gan")?)
            .map_err(|e| bad("G.gan")(e.to_string()))?;
        pair.d = pair
            .d
            .try_load_record(record("D.gan")?)
            .map_err(|e| bad("D.gan")(e.to_string()))?;
        pair.opt_g = pair
            .opt_g
            .load(st.join("optim-G.bpk"))
            .map_err(|e| bad("optim-G.bpk")(e.to_string()))?;
        pair.opt_d = pair
            .opt_d
            .load(st.join("optim-D.bpk"))
            .map_err(|e| bad("optim-D.bpk")(e.to_string()))?;
        let p = st.join("resume.json");
        pair.state = serde_json::from_slice(&crate::error::read_file(&p)?)
            .map_err(|e| Error::dataset(&p, e.to_string()))?;
        Ok(pair)
    }
}

/// Features of the real images, fitted once per run, and what each sampled epoch is compared to.
struct Judge {
    det: Detector,
    real: Gaussian,
    diversity_real: f64,
    noise: Vec<f32>,
}

impl Judge {
    fn new(cfg: &GanConfig, set: &ImageSet, feature_model: Option<&Path>) -> Result<Option<Self>> {
        if cfg.fid_count == 0 {
            return Ok(None);
        }
        let det = Detector::load_or_default(feature_model)?;
        let mut idx: Vec<usize> = (0..set.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(cfg.seed ^ 0xF1D));
        idx.truncate(cfg.fid_count);
        let real = set.subset(&idx);
        Ok(Some(Self {
            real: Gaussian::fit(&fid::features(&det, &real)),
            diversity_real: fid::diversity(&real, 2000, cfg.seed),
            det,
            noise: sample::noise(cfg.seed ^ 0xFEED, idx.len(), cfg.latent),
        }))
    }

    fn score(&self, g: &Generator, cfg: &GanConfig, epoch: usize) -> FrechetRow {
        let fake = sample::generate(g, &self.noise, cfg.image_size, &default_device());
        FrechetRow {
            epoch,
            frechet: fid::frechet(&self.real, &Gaussian::fit(&fid::features(&self.det, &fake))),
            diversity_fake: fid::diversity(&fake, 2000, cfg.seed),
            diversity_real: self.diversity_real,
        }
    }
}

fn progress_bar(
    steps: usize,
    epoch: usize,
    epochs: usize,
    show: bool,
) -> Option<indicatif::ProgressBar> {
    show.then(|| {
        let b = indicatif::ProgressBar::new(steps as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_prefix(format!("{epoch}/{epochs}"));
        b
    })
}

/// One pass over the images: a D step then a G step per full batch (a short last batch is
/// dropped, as batch-norm needs real batches).
fn run_epoch(
    pair: &mut Pair,
    cfg: &GanConfig,
    set: &ImageSet,
    epoch: usize,
    show: bool,
    device: &Device,
) -> Result<LossRow> {
    let t0 = Instant::now();
    let mut order: Vec<usize> = (0..set.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        cfg.seed.wrapping_add(epoch as u64 * 7919),
    ));
    let steps = set.len() / cfg.batch_size;
    let bar = progress_bar(steps, epoch, cfg.epochs, show);
    let augment = AugmentConfig {
        hflip: cfg.hflip,
        ..AugmentConfig::none()
    };
    let norm = gan_normalization();
    let (s, b, l) = (cfg.image_size as usize, cfg.batch_size, cfg.latent);
    // Parts below ~16 images cost more in overhead than they gain.
    let workers = crate::detector::parallel_passes(device).min(b / 16).max(1);
    let mut sums = [0f64; 4];
    for (k, chunk) in order.chunks_exact(b).enumerate() {
        let seed = cfg.seed ^ ((epoch as u64) << 32) ^ ((k as u64) << 8);
        let batch = HostBatch {
            real: data::batch_floats(set, chunk, &norm, Some((&augment, seed))),
            z_d: sample::noise(seed ^ 1, b, l),
            z_g: sample::noise(seed ^ 2, b, l),
            n: b,
            size: s,
            latent: l,
        };
        let d = pair.d.clone();
        let (d, ds) = d_step(
            &pair.g,
            d,
            &mut pair.opt_d,
            &batch,
            (cfg.loss, cfg.label_smoothing, cfg.lr),
            workers,
            device,
        );
        pair.d = d;
        let (g, gl) = g_step(
            pair.g.clone(),
            &pair.d,
            &mut pair.opt_g,
            &batch,
            (cfg.loss, cfg.lr),
            workers,
            device,
        );
        pair.g = g;
        if !(ds.loss.is_finite() && gl.is_finite()) {
            return Err(Error::Model(format!(
                "GAN training diverged at epoch {epoch} step {k} (D loss {}, G loss {gl}); lower lr",
                ds.loss
            )));
        }
        for (acc, v) in sums
            .iter_mut()
            .zip([ds.loss, gl, ds.real_prob, ds.fake_prob])
        {
            *acc += v;
        }
        if let Some(bar) = &bar {
            bar.inc(1);
            let n = (k + 1) as f64;
            bar.set_message(format!(
                "D {:.3} G {:.3} {:.0} img/s",
                sums[0] / n,
                sums[1] / n,
                n * b as f64 / t0.elapsed().as_secs_f64()
            ));
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let n = steps.max(1) as f64;
    let secs = t0.elapsed().as_secs_f64();
    Ok(LossRow {
        epoch,
        steps,
        d_loss: sums[0] / n,
        g_loss: sums[1] / n,
        d_real: sums[2] / n,
        d_fake: sums[3] / n,
        seconds: secs,
        images_per_second: (steps * b) as f64 / secs.max(1e-9),
    })
}

fn epoch_grid_path(run_dir: &Path, epoch: usize) -> PathBuf {
    run_dir
        .join("samples")
        .join(format!("epoch-{epoch:04}.png"))
}

/// Every `samples/epoch-*.png`, in epoch order, decoded.
fn read_grids(run_dir: &Path) -> Result<Vec<image::RgbImage>> {
    let dir = run_dir.join("samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("epoch-") && n.ends_with(".png"))
        })
        .collect();
    files.sort();
    files.iter().map(|p| data::decode::read_rgb(p)).collect()
}

fn new_info(
    cfg: &GanConfig,
    opts: &GanTrainOptions,
    set: &ImageSet,
    skipped: usize,
    pair: &Pair,
    device: &Device,
) -> GanRunInfo {
    GanRunInfo {
        name: cfg.name.clone(),
        seed: cfg.seed,
        git_revision: crate::train::git_revision(),
        synthscan_version: env!("CARGO_PKG_VERSION").into(),
        burn_version: env!("SYNTHSCAN_BURN_VERSION").into(),
        backend: crate::train::backend_name(device),
        threads: rayon::current_num_threads(),
        data_dir: opts.data.clone(),
        images: set.len(),
        skipped_files: skipped,
        g_params: pair.g.num_params(),
        d_params: pair.d.num_params(),
        feature_model: opts
            .feature_model
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "embedded default".into()),
        ..Default::default()
    }
}

/// What is written after an epoch besides the resume state: the fixed-noise grid, the Fréchet
/// distance and the configured checkpoints.
struct Outputs<'a> {
    cfg: &'a GanConfig,
    run_dir: &'a Path,
    judge: Option<Judge>,
    fixed: Vec<f32>,
}

impl Outputs<'_> {
    fn after_epoch(
        &self,
        pair: &Pair,
        last: bool,
        frechet: &mut Vec<FrechetRow>,
        on_event: &mut dyn FnMut(GanEvent),
    ) -> Result<()> {
        let (cfg, epoch) = (self.cfg, pair.state.epoch);
        let g_eval = pair.g.valid();
        if epoch % cfg.sample_every == 0 || last || epoch == 1 {
            let set = sample::generate(&g_eval, &self.fixed, cfg.image_size, &default_device());
            sample::save_png(
                &sample::grid(&set, cfg.grid_count),
                &epoch_grid_path(self.run_dir, epoch),
            )?;
            if let Some(j) = &self.judge {
                let f = j.score(&g_eval, cfg, epoch);
                on_event(GanEvent::Frechet(&f));
                frechet.push(f);
                write_file(&self.run_dir.join("frechet.csv"), run::to_text(frechet))?;
            }
        }
        if cfg.checkpoints.contains(&epoch) {
            let dir = self.run_dir.join("checkpoints");
            let gp = dir.join(format!("G-epoch-{epoch:04}.gan"));
            save_net(&gp, NetKind::Generator, &spec_g(cfg), epoch, g_eval)?;
            save_net(
                &dir.join(format!("D-epoch-{epoch:04}.gan")),
                NetKind::Discriminator,
                &spec_d(cfg),
                epoch,
                pair.d.valid(),
            )?;
            on_event(GanEvent::Checkpoint(&gp));
        }
        Ok(())
    }
}

/// Train a DCGAN on a folder of images into a fresh run folder (or continue `opts.resume`).
pub fn train(
    cfg: &GanConfig,
    opts: &GanTrainOptions,
    on_event: &mut dyn FnMut(GanEvent),
) -> Result<GanOutcome> {
    cfg.validate()?;
    let device = default_device().autodiff();
    device.seed(cfg.seed);
    let run_dir = opts
        .resume
        .clone()
        .unwrap_or_else(|| fresh_run_dir(&opts.out, &cfg.name));
    let (set, skipped) = load_images(&opts.data, cfg.image_size, cfg.limit, cfg.seed)?;
    if set.len() < cfg.batch_size {
        return Err(Error::dataset(
            &opts.data,
            format!(
                "{} images, fewer than one batch of {}",
                set.len(),
                cfg.batch_size
            ),
        ));
    }
    let mut pair = match &opts.resume {
        Some(dir) => Pair::load_state(cfg, dir, &device)?,
        None => Pair::fresh(cfg, &device),
    };
    let mut info = new_info(cfg, opts, &set, skipped, &pair, &device);
    let (mut losses, mut frechet) = if opts.resume.is_some() {
        info.git_revision = GanRunInfo::load(&run_dir)?.git_revision;
        (
            run::read_rows(&run_dir.join("losses.csv"))?,
            run::read_rows(&run_dir.join("frechet.csv"))?,
        )
    } else {
        write_file(&run_dir.join("config.yaml"), cfg.to_yaml())?;
        (Vec::new(), Vec::new())
    };
    info.save(&run_dir)?;
    on_event(GanEvent::Started {
        run_dir: &run_dir,
        info: &info,
        resumed_after: pair.state.epoch,
    });
    let outputs = Outputs {
        cfg,
        run_dir: &run_dir,
        judge: Judge::new(cfg, &set, opts.feature_model.as_deref())?,
        fixed: sample::noise(cfg.seed ^ 0xF1_4ED, cfg.grid_count, cfg.latent),
    };
    let show = !opts.quiet && std::io::stderr().is_terminal();
    for epoch in pair.state.epoch + 1..=cfg.epochs {
        let row = run_epoch(&mut pair, cfg, &set, epoch, show, &device)?;
        on_event(GanEvent::Epoch(&row));
        pair.state.train_seconds += row.seconds;
        pair.state.epoch = epoch;
        losses.push(row);
        write_file(&run_dir.join("losses.csv"), run::to_text(&losses))?;
        let out_of_time = cfg
            .max_minutes
            .is_some_and(|m| pair.state.train_seconds >= m * 60.0);
        let last = epoch == cfg.epochs || out_of_time;
        outputs.after_epoch(&pair, last, &mut frechet, on_event)?;
        pair.save_state(cfg, &run_dir)?;
        info.epochs_run = epoch;
        info.train_seconds = pair.state.train_seconds;
        info.save(&run_dir)?;
        if last {
            break;
        }
    }
    finish(cfg, &run_dir, pair, info, losses, frechet)
}

fn finish(
    cfg: &GanConfig,
    run_dir: &Path,
    pair: Pair,
    mut info: GanRunInfo,
    losses: Vec<LossRow>,
    frechet: Vec<FrechetRow>,
) -> Result<GanOutcome> {
    let epoch = pair.state.epoch;
    let generator = run_dir.join("G.gan");
    save_net(
        &generator,
        NetKind::Generator,
        &spec_g(cfg),
        epoch,
        pair.g.valid(),
    )?;
    save_net(
        &run_dir.join("D.gan"),
        NetKind::Discriminator,
        &spec_d(cfg),
        epoch,
        pair.d.valid(),
    )?;
    write_plots(run_dir, &losses, &frechet)?;
    let gif = run_dir.join("progress.gif");
    super::gif::write(&read_grids(run_dir)?, cfg.gif_frame_ms, &gif)?;
    info.finished = true;
    info.save(run_dir)?;
    Ok(GanOutcome {
        run_dir: run_dir.to_path_buf(),
        generator,
        gif,
        info,
        losses,
        frechet,
    })
}

/// `losses.png` (D and G loss per epoch) and `frechet.png` (when measured).
pub fn write_plots(run_dir: &Path, losses: &[LossRow], frechet: &[FrechetRow]) -> Result<()> {
    let pts = |f: fn(&LossRow) -> f64| losses.iter().map(|r| (r.epoch, f(r))).collect::<Vec<_>>();
    crate::report::epoch_chart(
        &run_dir.join("losses.png"),
        "GAN losses (mean per epoch)",
        "loss",
        &[("D loss", pts(|r| r.d_loss)), ("G loss", pts(|r| r.g_loss))],
        false,
    )?;
    if !frechet.is_empty() {
        crate::report::epoch_chart(
            &run_dir.join("frechet.png"),
            "Fréchet distance to the real images (synthscan detector features, not Inception FID)",
            "Fréchet distance",
            &[(
                "generated vs real",
                frechet.iter().map(|r| (r.epoch, r.frechet)).collect(),
            )],
            false,
        )?;
    }
    Ok(())
}

/// Continue a run folder with the config it was started with (epochs may be raised by `epochs`).
pub fn resume(
    run_dir: &Path,
    epochs: Option<usize>,
    opts: &GanTrainOptions,
    on_event: &mut dyn FnMut(GanEvent),
) -> Result<GanOutcome> {
    let mut cfg = GanConfig::load(&run_dir.join("config.yaml"))?;
    if let Some(e) = epochs {
        // An explicit epoch count replaces any time limit the run was started with.
        cfg.epochs = e;
        cfg.max_minutes = None;
        write_file(&run_dir.join("config.yaml"), cfg.to_yaml())?;
    }
    let info = GanRunInfo::load(run_dir)?;
    let opts = GanTrainOptions {
        resume: Some(run_dir.to_path_buf()),
        data: if opts.data.as_os_str().is_empty() {
            info.data_dir
        } else {
            opts.data.clone()
        },
        ..opts.clone()
    };
    train(&cfg, &opts, on_event)
}
