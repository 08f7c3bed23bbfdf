//! Fréchet scoring during training: the real images' features, fitted once per run, and what
//! each sampled epoch's generator is compared to them with.

use super::rows::FrechetRow;
use crate::data::ImageSet;
use crate::detector::{Detector, default_device};
use crate::error::Result;
use crate::gan::config::GanConfig;
use crate::gan::fid::{self, Gaussian};
use crate::gan::model::Generator;
use crate::gan::sample;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use std::path::Path;

/// Features of the real images, fitted once per run, and the noise every epoch is sampled at.
pub(super) struct Judge {
    det: Detector,
    real: Gaussian,
    diversity_real: f64,
    noise: Vec<f32>,
}

/// The real images a run's Fréchet distance is measured against: `count` of `len`, a choice
/// seeded by the run's seed.
fn real_choice(len: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed ^ 0xF1D));
    idx.truncate(count);
    idx
}

impl Judge {
    /// `None` when the configuration measures nothing (`fid_count: 0`).
    pub fn new(
        cfg: &GanConfig,
        set: &ImageSet,
        feature_model: Option<&Path>,
    ) -> Result<Option<Self>> {
        if cfg.fid_count == 0 {
            return Ok(None);
        }
        let det = Detector::load_or_default(feature_model)?;
        let idx = real_choice(set.len(), cfg.fid_count, cfg.seed);
        let real = set.subset(&idx);
        Ok(Some(Self {
            real: Gaussian::fit(&fid::features(&det, &real)),
            diversity_real: fid::diversity(&real, 2000, cfg.seed),
            det,
            noise: sample::noise(cfg.seed ^ 0xFEED, idx.len(), cfg.latent),
        }))
    }

    /// The generator after `epoch`, measured.
    pub fn score(&self, g: &Generator, cfg: &GanConfig, epoch: usize) -> FrechetRow {
        let fake = sample::generate(g, &self.noise, cfg.image_size, &default_device());
        FrechetRow {
            epoch,
            frechet: fid::frechet(&self.real, &Gaussian::fit(&fid::features(&self.det, &fake))),
            diversity_fake: fid::diversity(&fake, 2000, cfg.seed),
            diversity_real: self.diversity_real,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_images_measured_are_a_seeded_choice_without_repeats() {
        let a = real_choice(50, 16, 7);
        assert_eq!(a, real_choice(50, 16, 7));
        assert_ne!(a, real_choice(50, 16, 8));
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 16);
        assert_eq!(real_choice(5, 16, 7).len(), 5);
    }

    #[test]
    fn no_judge_when_nothing_is_measured() {
        let cfg = super::super::pair::tests::tiny_config();
        assert_eq!(cfg.fid_count, 0);
        let set = ImageSet {
            size: 32,
            pixels: Vec::new(),
            labels: Vec::new(),
            paths: Vec::new(),
        };
        assert!(Judge::new(&cfg, &set, None).unwrap().is_none());
    }
}
