//! What a GAN run writes besides its state: the fixed-noise grid of an epoch, the Fréchet
//! table, the configured checkpoints, and at the end the plots and `progress.gif`.

use super::info::{GanEvent, GanObserver};
use super::judge::Judge;
use super::pair::Pair;
use super::rows::{FrechetRow, LossRow};
use crate::data;
use crate::detector::default_device;
use crate::error::{Error, Result, write_file};
use crate::gan::config::GanConfig;
use crate::gan::sample;
use crate::run;
use burn::module::Module;
use std::path::{Path, PathBuf};

/// `samples/epoch-NNNN.png`.
pub(super) fn epoch_grid_path(run_dir: &Path, epoch: usize) -> PathBuf {
    run_dir
        .join("samples")
        .join(format!("epoch-{epoch:04}.png"))
}

/// Every `samples/epoch-*.png`, in epoch order, decoded.
pub(super) fn read_grids(run_dir: &Path) -> Result<Vec<image::RgbImage>> {
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

/// What is written after an epoch besides the resume state: the fixed-noise grid, the Fréchet
/// distance and the configured checkpoints.
pub(super) struct Outputs<'a> {
    pub cfg: &'a GanConfig,
    pub run_dir: &'a Path,
    pub judge: Option<Judge>,
    pub fixed: Vec<f32>,
}

impl Outputs<'_> {
    /// Whether the grid (and the Fréchet distance) of `epoch` is written.
    fn samples_after(&self, epoch: usize, last: bool) -> bool {
        epoch.is_multiple_of(self.cfg.sample_every) || last || epoch == 1
    }

    pub fn after_epoch(
        &self,
        pair: &Pair,
        last: bool,
        frechet: &mut Vec<FrechetRow>,
        observer: &mut dyn GanObserver,
    ) -> Result<()> {
        let (cfg, epoch) = (self.cfg, pair.state.epoch);
        if self.samples_after(epoch, last) {
            let g_eval = pair.g.valid();
            let set = sample::generate(&g_eval, &self.fixed, cfg.image_size, &default_device());
            sample::save_png(
                &sample::grid(&set, cfg.grid_count),
                &epoch_grid_path(self.run_dir, epoch),
            )?;
            if let Some(j) = &self.judge {
                let f = j.score(&g_eval, cfg, epoch);
                observer.gan_event(&GanEvent::Frechet(&f));
                frechet.push(f);
                write_file(&self.run_dir.join("frechet.csv"), run::to_text(frechet))?;
            }
        }
        if cfg.checkpoints.contains(&epoch) {
            let dir = self.run_dir.join("checkpoints");
            let gp = dir.join(format!("G-epoch-{epoch:04}.gan"));
            let dp = dir.join(format!("D-epoch-{epoch:04}.gan"));
            pair.save_nets(cfg, &gp, &dp)?;
            observer.gan_event(&GanEvent::Checkpoint(&gp));
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_are_read_back_in_epoch_order_and_other_files_are_ignored() {
        let dir = std::env::temp_dir().join(format!("synthscan-gangrids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (epoch, shade) in [(10, 200u8), (2, 100), (1, 50)] {
            let img = image::RgbImage::from_pixel(4, 4, image::Rgb([shade; 3]));
            sample::save_png(&img, &epoch_grid_path(&dir, epoch)).unwrap();
        }
        assert!(epoch_grid_path(&dir, 2).ends_with("samples/epoch-0002.png"));
        std::fs::write(dir.join("samples/notes.txt"), "x").unwrap();
        let grids = read_grids(&dir).unwrap();
        let shades: Vec<u8> = grids.iter().map(|g| g.get_pixel(0, 0)[0]).collect();
        assert_eq!(shades, vec![50, 100, 200]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn grids_are_written_on_the_first_the_last_and_every_nth_epoch() {
        let mut cfg = super::super::pair::tests::tiny_config();
        cfg.sample_every = 3;
        let out = Outputs {
            cfg: &cfg,
            run_dir: Path::new("unused"),
            judge: None,
            fixed: Vec::new(),
        };
        let when: Vec<usize> = (1..=7).filter(|&e| out.samples_after(e, e == 7)).collect();
        assert_eq!(when, vec![1, 3, 6, 7]);
    }

    #[test]
    fn the_plots_are_written_and_frechet_only_when_measured() {
        let dir = std::env::temp_dir().join(format!("synthscan-ganplots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let losses: Vec<LossRow> = (1..=3)
            .map(|epoch| LossRow {
                epoch,
                d_loss: 1.0 / epoch as f64,
                g_loss: 0.5,
                ..Default::default()
            })
            .collect();
        write_plots(&dir, &losses, &[]).unwrap();
        assert!(dir.join("losses.png").is_file());
        assert!(!dir.join("frechet.png").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
