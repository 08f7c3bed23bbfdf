//! One epoch of GAN training: a D step then a G step per full batch, reported as it goes.

use super::pair::Pair;
use super::rows::LossRow;
use crate::data::{self, AugmentConfig, ImageSet};
use crate::error::{Error, Result};
use crate::gan::config::GanConfig;
use crate::gan::images::gan_normalization;
use crate::gan::sample;
use crate::gan::step::{HostBatch, d_step, g_step};
use crate::run::{Progress, RunObserver, Running};
use burn::prelude::*;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use std::time::Instant;

/// The order an epoch visits the images in, seeded by the run's seed and the epoch.
fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        seed.wrapping_add(epoch as u64 * 7919),
    ));
    order
}

/// One batch's D step and G step: `[D loss, G loss, D(x), D(G(z))]`, or an error when the
/// losses are no longer finite.
fn batch_step(
    pair: &mut Pair,
    cfg: &GanConfig,
    set: &ImageSet,
    (epoch, k, chunk): (usize, usize, &[usize]),
    workers: usize,
    device: &Device,
) -> Result<[f64; 4]> {
    let (b, l) = (cfg.batch_size, cfg.latent);
    let augment = AugmentConfig {
        hflip: cfg.hflip,
        ..AugmentConfig::none()
    };
    let seed = cfg.seed ^ ((epoch as u64) << 32) ^ ((k as u64) << 8);
    let batch = HostBatch {
        real: data::batch_floats(set, chunk, &gan_normalization(), Some((&augment, seed))),
        z_d: sample::noise(seed ^ 1, b, l),
        z_g: sample::noise(seed ^ 2, b, l),
        n: b,
        size: cfg.image_size as usize,
        latent: l,
    };
    let hyper_d = (cfg.loss, cfg.label_smoothing, cfg.lr);
    let d = pair.d.clone();
    let (d, ds) = d_step(
        &pair.g,
        d,
        &mut pair.opt_d,
        &batch,
        hyper_d,
        workers,
        device,
    );
    pair.d = d;
    let g = pair.g.clone();
    let hyper_g = (cfg.loss, cfg.lr);
    let (g, gl) = g_step(
        g,
        &pair.d,
        &mut pair.opt_g,
        &batch,
        hyper_g,
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
    Ok([ds.loss, gl, ds.real_prob, ds.fake_prob])
}

/// One pass over the images: a D step then a G step per full batch (a short last batch is
/// dropped, as batch-norm needs real batches). Each step is told to `observer`.
pub(super) fn run_epoch(
    pair: &mut Pair,
    cfg: &GanConfig,
    set: &ImageSet,
    epoch: usize,
    observer: &mut dyn RunObserver,
    device: &Device,
) -> Result<LossRow> {
    let t0 = Instant::now();
    let order = epoch_order(set.len(), cfg.seed, epoch);
    let b = cfg.batch_size;
    let steps = set.len() / b;
    observer.progress(&Progress::EpochStarted {
        epoch,
        epochs: cfg.epochs,
        steps,
    });
    // Parts below ~16 images cost more in overhead than they gain.
    let workers = crate::detector::parallel_passes(device).min(b / 16).max(1);
    let mut sums = [0f64; 4];
    for (k, chunk) in order.chunks_exact(b).enumerate() {
        let means = batch_step(pair, cfg, set, (epoch, k, chunk), workers, device)?;
        sums.iter_mut().zip(means).for_each(|(acc, v)| *acc += v);
        let n = (k + 1) as f64;
        observer.progress(&Progress::Step {
            step: k,
            running: Running::Adversarial {
                d_loss: sums[0] / n,
                g_loss: sums[1] / n,
            },
            images_per_second: n * b as f64 / t0.elapsed().as_secs_f64(),
        });
    }
    observer.progress(&Progress::EpochSteps);
    Ok(loss_row(epoch, steps, b, sums, t0.elapsed().as_secs_f64()))
}

/// The epoch's row of `losses.csv` from the sums of its steps.
fn loss_row(epoch: usize, steps: usize, batch: usize, sums: [f64; 4], secs: f64) -> LossRow {
    let n = steps.max(1) as f64;
    LossRow {
        epoch,
        steps,
        d_loss: sums[0] / n,
        g_loss: sums[1] / n,
        d_real: sums[2] / n,
        d_fake: sums[3] / n,
        seconds: secs,
        images_per_second: (steps * batch) as f64 / secs.max(1e-9),
    }
}

#[cfg(test)]
mod tests {
    use super::super::pair::tests::tiny_config;
    use super::*;

    #[derive(Default)]
    struct Recorder {
        started: Vec<(usize, usize, usize)>,
        steps: Vec<usize>,
        ended: usize,
    }

    impl RunObserver for Recorder {
        fn progress(&mut self, event: &Progress) {
            match *event {
                Progress::EpochStarted {
                    epoch,
                    epochs,
                    steps,
                } => self.started.push((epoch, epochs, steps)),
                Progress::Step { step, running, .. } => {
                    assert!(matches!(running, Running::Adversarial { .. }));
                    self.steps.push(step);
                }
                Progress::EpochSteps => self.ended += 1,
                Progress::Message(_) => {}
            }
        }
    }

    #[test]
    fn an_epoch_orders_the_images_by_its_seed() {
        let a = epoch_order(20, 42, 1);
        assert_eq!(a, epoch_order(20, 42, 1));
        assert_ne!(a, epoch_order(20, 42, 2));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_loss_row_holds_the_means_of_its_steps() {
        let row = loss_row(2, 4, 8, [4.0, 2.0, 3.0, 1.0], 2.0);
        assert_eq!(
            (row.d_loss, row.g_loss, row.d_real, row.d_fake),
            (1.0, 0.5, 0.75, 0.25)
        );
        assert_eq!(row.images_per_second, 16.0);
        assert_eq!(loss_row(1, 0, 8, [0.0; 4], 0.0).d_loss, 0.0);
    }

    #[test]
    fn an_epoch_trains_on_full_batches_and_reports_every_step() {
        let cfg = tiny_config();
        let device = Device::default().autodiff();
        let mut pair = Pair::fresh(&cfg, &device);
        // 20 images of 32 px: two full batches of 8, the last 4 dropped.
        let set = ImageSet {
            size: 32,
            pixels: (0..20 * 3 * 32 * 32).map(|i| (i % 251) as u8).collect(),
            labels: vec![data::REAL; 20],
            paths: vec![Default::default(); 20],
        };
        let mut seen = Recorder::default();
        let row = run_epoch(&mut pair, &cfg, &set, 1, &mut seen, &device).unwrap();
        assert_eq!((row.epoch, row.steps), (1, 2));
        assert!(row.d_loss.is_finite() && row.g_loss.is_finite());
        assert!((0.0..=1.0).contains(&row.d_real) && (0.0..=1.0).contains(&row.d_fake));
        assert_eq!(seen.started, vec![(1, cfg.epochs, 2)]);
        assert_eq!((seen.steps, seen.ended), (vec![0, 1], 1));
    }
}
