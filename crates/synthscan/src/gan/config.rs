//! `gan.yaml`: the DCGAN experiment schema, defaults and validation. Unknown keys are rejected.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which adversarial loss trains the pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// Goodfellow et al.'s non-saturating loss: D minimises binary cross-entropy, G maximises
    /// log D(G(z)).
    #[default]
    NonSaturating,
    /// Hinge loss (Lim & Ye 2017; used by SAGAN / BigGAN).
    Hinge,
}

/// A DCGAN run: networks, optimiser, loss, schedule of samples and checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GanConfig {
    /// Run name (the run folder is named after it).
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Side of the square images: 32 or 64.
    #[serde(default = "default_image_size")]
    pub image_size: u32,
    /// Length of the noise vector z.
    #[serde(default = "default_latent")]
    pub latent: usize,
    /// Channels of the generator's last hidden layer (doubled towards its input, as in DCGAN).
    #[serde(default = "default_width")]
    pub g_width: usize,
    /// Channels of the discriminator's first layer (doubled towards its output).
    #[serde(default = "default_width")]
    pub d_width: usize,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Adam learning rate (both networks); DCGAN uses 2e-4.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Adam β1; DCGAN uses 0.5.
    #[serde(default = "default_beta1")]
    pub beta1: f32,
    #[serde(default = "default_beta2")]
    pub beta2: f32,
    #[serde(default)]
    pub loss: GanLoss,
    /// One-sided label smoothing: the discriminator's target for real images is `1 - this`
    /// (non-saturating loss only; Salimans et al. 2016 use 0.1).
    #[serde(default)]
    pub label_smoothing: f32,
    /// Use at most this many training images (seeded choice); all when absent.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Mirror real images at random (doubles the variety of a small folder).
    #[serde(default = "yes")]
    pub hflip: bool,
    /// Write `samples/epoch-NNNN.png` (the fixed-noise grid) every this many epochs.
    #[serde(default = "one")]
    pub sample_every: usize,
    /// Images in the fixed-noise grid (a square number is drawn as a square).
    #[serde(default = "default_grid")]
    pub grid_count: usize,
    /// Epochs after which G and D are saved (the final epoch is always saved).
    #[serde(default)]
    pub checkpoints: Vec<usize>,
    /// Images per side for the Fréchet distance logged at each checkpoint; 0 turns it off.
    #[serde(default = "default_fid_count")]
    pub fid_count: usize,
    /// Stop after the epoch during which this many minutes of training have passed (that epoch
    /// is then the last: it is sampled and saved as the final one). No limit when absent.
    #[serde(default)]
    pub max_minutes: Option<f64>,
    /// Milliseconds each frame of `progress.gif` is shown.
    #[serde(default = "default_frame_ms")]
    pub gif_frame_ms: u32,
}

fn default_name() -> String {
    "gan".into()
}
fn default_seed() -> u64 {
    42
}
fn default_image_size() -> u32 {
    32
}
fn default_latent() -> usize {
    64
}
fn default_width() -> usize {
    32
}
fn default_epochs() -> usize {
    10
}
fn default_batch() -> usize {
    64
}
fn default_lr() -> f64 {
    2e-4
}
fn default_beta1() -> f32 {
    0.5
}
fn default_beta2() -> f32 {
    0.999
}
fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn default_grid() -> usize {
    64
}
fn default_fid_count() -> usize {
    1000
}
fn default_frame_ms() -> u32 {
    500
}

impl Default for GanConfig {
    fn default() -> Self {
        yaml_serde::from_str("{}").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

impl GanConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if !matches!(self.image_size, 32 | 64) {
            return bad(format!(
                "image_size = {}: must be 32 or 64",
                self.image_size
            ));
        }
        if self.latent == 0 || self.g_width == 0 || self.d_width == 0 {
            return bad("latent, g_width and d_width must be at least 1".into());
        }
        if self.batch_size < 2 {
            return bad(format!(
                "batch_size = {}: batch-norm needs at least 2",
                self.batch_size
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr = {}: must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("beta1 and beta2 must be in [0, 1)".into());
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return bad(format!(
                "label_smoothing = {}: must be in [0, 0.5)",
                self.label_smoothing
            ));
        }
        if self.sample_every == 0 || self.grid_count == 0 {
            return bad("sample_every and grid_count must be at least 1".into());
        }
        if self.max_minutes.is_some_and(|m| m.is_nan() || m <= 0.0) {
            return bad("max_minutes must be positive".into());
        }
        if self.fid_count == 1 {
            return bad("fid_count = 1: needs at least 2 images (or 0 for off)".into());
        }
        Ok(())
    }

    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap_or_default()
    }

    /// Parse YAML text; `path` names the source in errors.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self> {
        let cfg: GanConfig =
            yaml_serde::from_str(text).map_err(|e| Error::config(path, e.to_string()))?;
        cfg.validate()
            .map_err(|e| Error::config(path, e.to_string()))?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::error::read_file(path)?;
        Self::from_yaml(&String::from_utf8_lossy(&bytes), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_dcgan_and_unknown_keys_are_named() {
        let c = GanConfig::default();
        assert_eq!((c.lr, c.beta1, c.image_size), (2e-4, 0.5, 32));
        let err = GanConfig::from_yaml("epochs: 3\nwidht: 8\n", Path::new("g.yaml")).unwrap_err();
        assert!(err.to_string().contains("widht"), "{err}");
        assert!(err.to_string().contains("g.yaml"), "{err}");
        let err = GanConfig::from_yaml("image_size: 48\n", Path::new("g.yaml")).unwrap_err();
        assert!(err.to_string().contains("image_size"), "{err}");
        let c = GanConfig::from_yaml("loss: hinge\ncheckpoints: [2, 4]\n", Path::new("g")).unwrap();
        assert_eq!(
            (c.loss, c.checkpoints.clone()),
            (GanLoss::Hinge, vec![2, 4])
        );
        assert_eq!(
            GanConfig::from_yaml(&c.to_yaml(), Path::new("g")).unwrap(),
            c
        );
    }
}
