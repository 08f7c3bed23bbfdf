//! `gan train`: the DCGAN loop and its run folder.
//!
//! A run folder holds `config.yaml` (resolved), `run.json` (seed, git revision, versions,
//! backend, data, timings), `losses.csv` (one row per epoch), `frechet.csv` (one row per
//! sampled epoch), `samples/epoch-NNNN.png` (the fixed-noise grid), `checkpoints/G-epoch-NNNN.gan`
//! and `D-epoch-NNNN.gan` at the configured epochs, `G.gan` / `D.gan` (last epoch),
//! `progress.gif` (every grid, in order) and `state/` (what `--resume` needs).
//!
//! The loop is assembled from parts: [`rows`] (the two tables), [`info`] (`run.json` and the
//! events an observer hears), `pair` (the networks, their optimisers and their files), `epoch`
//! (one pass over the images), `judge` (the Fréchet distance), `outputs` (grids, checkpoints,
//! plots, the GIF). The folder is named by [`run::fresh_path`], the provenance in `run.json`
//! is [`Provenance::current`], and progress goes to a [`crate::run::RunObserver`] as a
//! detector's training does.

mod epoch;
pub mod info;
mod judge;
mod outputs;
mod pair;
pub mod rows;

pub use info::{GanEvent, GanObserver, GanRunInfo};
pub use outputs::write_plots;
pub use rows::{FrechetRow, LossRow};

use super::config::GanConfig;
use super::images::load_images;
use super::sample;
use crate::data::ImageSet;
use crate::detector::default_device;
use crate::error::{Error, Result, write_file};
use crate::run::{self, Provenance};
use burn::prelude::*;
use judge::Judge;
use outputs::Outputs;
use pair::Pair;
use std::path::{Path, PathBuf};

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

fn new_info(
    cfg: &GanConfig,
    opts: &GanTrainOptions,
    (set, skipped): (&ImageSet, usize),
    pair: &Pair,
    device: &Device,
) -> GanRunInfo {
    GanRunInfo {
        provenance: Provenance::current(&cfg.name, cfg.seed, device),
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

/// The images of a run, refused when they do not fill one batch.
fn load_run_images(cfg: &GanConfig, opts: &GanTrainOptions) -> Result<(ImageSet, usize)> {
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
    Ok((set, skipped))
}

/// A run under way: its folder, its tables so far and what `run.json` says.
struct Run {
    dir: PathBuf,
    info: GanRunInfo,
    losses: Vec<LossRow>,
    frechet: Vec<FrechetRow>,
}

impl Run {
    /// A fresh folder (`config.yaml` written), or the tables of the folder being resumed.
    fn begin(cfg: &GanConfig, opts: &GanTrainOptions, info: GanRunInfo) -> Result<Self> {
        let Some(dir) = opts.resume.clone() else {
            let dir = run::fresh_path(&opts.out, &cfg.name);
            write_file(&dir.join(run::CONFIG_FILE), cfg.to_yaml())?;
            return Ok(Self {
                dir,
                info,
                losses: Vec::new(),
                frechet: Vec::new(),
            });
        };
        let started = GanRunInfo::load(&dir)?.provenance;
        Ok(Self {
            info: GanRunInfo {
                provenance: info.provenance.clone().resumed_from(&started),
                ..info
            },
            losses: run::read_rows(&dir.join("losses.csv"))?,
            frechet: run::read_rows(&dir.join("frechet.csv"))?,
            dir,
        })
    }
}

/// Train a DCGAN on a folder of images into a fresh run folder (or continue `opts.resume`).
pub fn train(
    cfg: &GanConfig,
    opts: &GanTrainOptions,
    observer: &mut dyn GanObserver,
) -> Result<GanOutcome> {
    cfg.validate()?;
    let device = default_device().autodiff();
    device.seed(cfg.seed);
    let (set, skipped) = load_run_images(cfg, opts)?;
    let mut pair = match &opts.resume {
        Some(dir) => Pair::load_state(cfg, dir, &device)?,
        None => Pair::fresh(cfg, &device),
    };
    let info = new_info(cfg, opts, (&set, skipped), &pair, &device);
    let mut r = Run::begin(cfg, opts, info)?;
    r.info.save(&r.dir)?;
    observer.gan_event(&GanEvent::Started {
        run_dir: &r.dir,
        info: &r.info,
        resumed_after: pair.state.epoch,
    });
    let outputs = Outputs {
        cfg,
        run_dir: &r.dir,
        judge: Judge::new(cfg, &set, opts.feature_model.as_deref())?,
        fixed: sample::noise(cfg.seed ^ 0xF1_4ED, cfg.grid_count, cfg.latent),
    };
    for epoch in pair.state.epoch + 1..=cfg.epochs {
        let row = epoch::run_epoch(&mut pair, cfg, &set, epoch, observer, &device)?;
        observer.gan_event(&GanEvent::Epoch(&row));
        pair.state.train_seconds += row.seconds;
        pair.state.epoch = epoch;
        r.losses.push(row);
        write_file(&r.dir.join("losses.csv"), run::to_text(&r.losses))?;
        let out_of_time = cfg
            .max_minutes
            .is_some_and(|m| pair.state.train_seconds >= m * 60.0);
        let last = epoch == cfg.epochs || out_of_time;
        outputs.after_epoch(&pair, last, &mut r.frechet, observer)?;
        pair.save_state(cfg, &r.dir)?;
        r.info.epochs_run = epoch;
        r.info.train_seconds = pair.state.train_seconds;
        r.info.save(&r.dir)?;
        if last {
            break;
        }
    }
    finish(cfg, pair, r)
}

/// The last networks, the plots, the GIF, and `run.json` marked finished.
fn finish(cfg: &GanConfig, pair: Pair, mut r: Run) -> Result<GanOutcome> {
    let generator = r.dir.join("G.gan");
    pair.save_nets(cfg, &generator, &r.dir.join("D.gan"))?;
    write_plots(&r.dir, &r.losses, &r.frechet)?;
    let gif = r.dir.join("progress.gif");
    super::gif::write(&outputs::read_grids(&r.dir)?, cfg.gif_frame_ms, &gif)?;
    r.info.finished = true;
    r.info.save(&r.dir)?;
    Ok(GanOutcome {
        run_dir: r.dir,
        generator,
        gif,
        info: r.info,
        losses: r.losses,
        frechet: r.frechet,
    })
}

/// Continue a run folder with the config it was started with (epochs may be raised by `epochs`).
pub fn resume(
    run_dir: &Path,
    epochs: Option<usize>,
    opts: &GanTrainOptions,
    observer: &mut dyn GanObserver,
) -> Result<GanOutcome> {
    let mut cfg = GanConfig::load(&run_dir.join(run::CONFIG_FILE))?;
    if let Some(e) = epochs {
        // An explicit epoch count replaces any time limit the run was started with.
        cfg.epochs = e;
        cfg.max_minutes = None;
        write_file(&run_dir.join(run::CONFIG_FILE), cfg.to_yaml())?;
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
    train(&cfg, &opts, observer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("synthscan-gantrain-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn a_fresh_run_takes_a_new_folder_beside_an_existing_one() {
        let out = temp("fresh");
        let cfg = pair::tests::tiny_config();
        let opts = GanTrainOptions {
            out: out.clone(),
            ..Default::default()
        };
        let first = Run::begin(&cfg, &opts, GanRunInfo::default()).unwrap();
        assert_eq!(first.dir, out.join("gan"));
        assert!(first.dir.join("config.yaml").is_file());
        let second = Run::begin(&cfg, &opts, GanRunInfo::default()).unwrap();
        assert_eq!(second.dir, out.join("gan-2"));
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn a_resumed_run_keeps_its_first_revision_and_its_tables() {
        let out = temp("resume");
        let cfg = pair::tests::tiny_config();
        let dir = out.join("gan");
        let first = GanRunInfo {
            provenance: Provenance {
                git_revision: "first".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        first.save(&dir).unwrap();
        let rows = vec![LossRow {
            epoch: 1,
            ..Default::default()
        }];
        write_file(&dir.join("losses.csv"), run::to_text(&rows)).unwrap();
        write_file(&dir.join("frechet.csv"), run::to_text::<FrechetRow>(&[])).unwrap();
        let opts = GanTrainOptions {
            resume: Some(dir.clone()),
            ..Default::default()
        };
        let now = GanRunInfo {
            provenance: Provenance::current("gan", 1, &Device::default()),
            ..Default::default()
        };
        let r = Run::begin(&cfg, &opts, now).unwrap();
        assert_eq!(r.info.provenance.git_revision, "first");
        assert_eq!((r.losses, r.frechet.len()), (rows, 0));
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn too_few_images_for_a_batch_are_refused() {
        let data = temp("few");
        std::fs::create_dir_all(&data).unwrap();
        for i in 0..3 {
            let img = image::RgbImage::from_pixel(8, 8, image::Rgb([i * 50, 0, 0]));
            img.save(data.join(format!("{i}.png"))).unwrap();
        }
        let cfg = pair::tests::tiny_config();
        let opts = GanTrainOptions {
            data: data.clone(),
            ..Default::default()
        };
        let err = load_run_images(&cfg, &opts).unwrap_err();
        assert!(
            err.to_string().contains("fewer than one batch of 8"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&data);
    }
}
