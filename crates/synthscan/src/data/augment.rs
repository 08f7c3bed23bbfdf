//! Training-time augmentation on u8 HWC images. Every operation draws from the caller's seeded RNG.

use super::perturb;
use image::RgbImage;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Mirror left-right with probability 0.5.
    pub hflip: bool,
    /// Pad by this many pixels (reflection) and crop back at a random offset; 0 disables.
    pub crop_padding: u32,
    /// Zero a random square of this side (cutout / random erasing); 0 disables.
    pub cutout: u32,
    /// Probability of re-encoding as JPEG at a quality drawn from `jpeg_quality`.
    pub jpeg_probability: f64,
    pub jpeg_quality: [u8; 2],
    /// Probability of a 3×3 box blur.
    pub blur_probability: f64,
    /// Probability of a thumbnail round trip: down by a factor drawn from `resize_scale`, back up.
    pub resize_probability: f64,
    pub resize_scale: [f32; 2],
    /// Probability of a Gaussian blur with σ (pixels) drawn from `blur_sigma`.
    pub gaussian_blur_probability: f64,
    pub blur_sigma: [f32; 2],
    /// Probability of Gaussian noise with σ (pixel values in [0, 1]) drawn from `noise_sigma`.
    pub noise_probability: f64,
    pub noise_sigma: [f32; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            hflip: true,
            crop_padding: 2,
            cutout: 0,
            jpeg_probability: 0.0,
            jpeg_quality: [60, 95],
            blur_probability: 0.0,
            resize_probability: 0.0,
            resize_scale: [0.25, 0.9],
            gaussian_blur_probability: 0.0,
            blur_sigma: [0.3, 2.0],
            noise_probability: 0.0,
            noise_sigma: [0.0, 0.05],
        }
    }
}

impl AugmentConfig {
    pub fn none() -> Self {
        Self {
            hflip: false,
            crop_padding: 0,
            ..Self::default()
        }
    }

    /// Apply the configured operations to one `size`×`size` RGB image.
    pub fn apply<R: Rng>(&self, pixels: &[u8], size: u32, rng: &mut R) -> Vec<u8> {
        let s = size as usize;
        let mut img = pixels.to_vec();
        if self.crop_padding > 0 {
            let p = self.crop_padding as i64;
            let dx = rng.random_range(-p..=p);
            let dy = rng.random_range(-p..=p);
            img = shift_reflect(&img, s, dx, dy);
        }
        if self.hflip && rng.random_bool(0.5) {
            hflip(&mut img, s);
        }
        img = self.degrade(img, size, rng);
        if self.cutout > 0 {
            let c = (self.cutout as usize).min(s);
            let x0 = rng.random_range(0..=s - c);
            let y0 = rng.random_range(0..=s - c);
            for y in y0..y0 + c {
                img[(y * s + x0) * 3..(y * s + x0 + c) * 3].fill(0);
            }
        }
        img
    }
}

/// Whether an operation with probability `p` happens (no draw at all when `p` is 0, so that
/// configurations without it keep their random sequence).
fn happens<R: Rng>(p: f64, rng: &mut R) -> bool {
    p > 0.0 && rng.random_bool(p.min(1.0))
}

/// A value drawn uniformly from `[lo, hi]` (in either order).
fn draw<R: Rng>([a, b]: [f32; 2], rng: &mut R) -> f32 {
    let (lo, hi) = (a.min(b), a.max(b));
    if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

impl AugmentConfig {
    /// The degradations of real uploads, each with its probability: thumbnail round trip,
    /// Gaussian blur, box blur, JPEG re-encoding, noise (see [`super::perturb`]).
    fn degrade<R: Rng>(&self, mut img: Vec<u8>, size: u32, rng: &mut R) -> Vec<u8> {
        let as_image = |v: Vec<u8>| RgbImage::from_raw(size, size, v);
        if happens(self.resize_probability, rng) {
            let f = draw(self.resize_scale, rng).clamp(0.05, 1.0);
            if let Some(im) = as_image(img.clone()) {
                img = perturb::down_up(&im, f).into_raw();
            }
        }
        if happens(self.gaussian_blur_probability, rng) {
            let sigma = draw(self.blur_sigma, rng).max(0.05);
            if let Some(im) = as_image(img.clone()) {
                img = image::imageops::blur(&im, sigma).into_raw();
            }
        }
        if happens(self.blur_probability, rng) {
            img = box_blur3(&img, size as usize);
        }
        if happens(self.jpeg_probability, rng) {
            let [lo, hi] = self.jpeg_quality;
            let q = rng.random_range(lo.min(hi)..=hi.max(lo));
            if let Some(im) = as_image(img.clone()) {
                img = perturb::jpeg(&im, q).into_raw();
            }
        }
        if happens(self.noise_probability, rng) {
            let sigma = draw(self.noise_sigma, rng);
            if let Some(im) = as_image(img.clone()) {
                img = perturb::noise(&im, sigma, rng).into_raw();
            }
        }
        img
    }
}

pub fn hflip(img: &mut [u8], s: usize) {
    for row in img.chunks_exact_mut(s * 3) {
        for x in 0..s / 2 {
            for c in 0..3 {
                row.swap(x * 3 + c, (s - 1 - x) * 3 + c);
            }
        }
    }
}

/// Translate by (dx, dy), filling the uncovered border by reflection: the same as padding with
/// reflection and cropping at an offset.
fn shift_reflect(img: &[u8], s: usize, dx: i64, dy: i64) -> Vec<u8> {
    let reflect = |v: i64| -> usize {
        let n = s as i64;
        let r = if v < 0 {
            -v
        } else if v >= n {
            2 * n - 2 - v
        } else {
            v
        };
        r.clamp(0, n - 1) as usize
    };
    let mut out = vec![0u8; img.len()];
    for y in 0..s {
        let sy = reflect(y as i64 + dy);
        for x in 0..s {
            let sx = reflect(x as i64 + dx);
            out[(y * s + x) * 3..(y * s + x) * 3 + 3]
                .copy_from_slice(&img[(sy * s + sx) * 3..(sy * s + sx) * 3 + 3]);
        }
    }
    out
}

fn box_blur3(img: &[u8], s: usize) -> Vec<u8> {
    let mut out = vec![0u8; img.len()];
    for y in 0..s {
        for x in 0..s {
            for c in 0..3 {
                let mut sum = 0u32;
                let mut n = 0u32;
                for yy in y.saturating_sub(1)..=(y + 1).min(s - 1) {
                    for xx in x.saturating_sub(1)..=(x + 1).min(s - 1) {
                        sum += img[(yy * s + xx) * 3 + c] as u32;
                        n += 1;
                    }
                }
                out[(y * s + x) * 3 + c] = ((sum + n / 2) / n) as u8;
            }
        }
    }
    out
}

/// How an image is re-saved before it is seen, so that no container or quality is a shortcut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reencode {
    Jpeg(u8),
    Png,
}

/// Re-save a decoded image of any size in `format` and decode it again (`None` on an encoder
/// error, which these in-memory formats do not produce for RGB images).
pub fn reencode(img: &image::RgbImage, format: Reencode) -> Option<image::RgbImage> {
    match format {
        Reencode::Jpeg(q) => Some(perturb::jpeg(img, q)),
        Reencode::Png => {
            let mut buf = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
                .ok()?;
            let png = image::load_from_memory_with_format(&buf, image::ImageFormat::Png);
            Some(png.ok()?.to_rgb8())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    fn gradient(s: usize) -> Vec<u8> {
        (0..s * s * 3).map(|i| ((i / 3) % s * 8) as u8).collect()
    }

    #[test]
    fn hflip_twice_is_identity_and_mirrors_rows() {
        let img = gradient(4);
        let mut f = img.clone();
        hflip(&mut f, 4);
        assert_eq!(&f[0..3], &img[9..12]);
        hflip(&mut f, 4);
        assert_eq!(f, img);
    }

    #[test]
    fn zero_shift_is_identity() {
        let img = gradient(8);
        assert_eq!(shift_reflect(&img, 8, 0, 0), img);
        assert_ne!(shift_reflect(&img, 8, 2, 0), img);
    }

    #[test]
    fn same_seed_same_result_and_sizes_kept() {
        let cfg = AugmentConfig {
            cutout: 4,
            jpeg_probability: 1.0,
            blur_probability: 0.5,
            resize_probability: 0.5,
            gaussian_blur_probability: 0.5,
            noise_probability: 0.5,
            ..Default::default()
        };
        let img = gradient(16);
        let a = cfg.apply(&img, 16, &mut StdRng::seed_from_u64(3));
        let b = cfg.apply(&img, 16, &mut StdRng::seed_from_u64(3));
        assert_eq!(a, b);
        assert_eq!(a.len(), img.len());
    }

    #[test]
    fn degradations_happen_at_their_rate_and_change_the_image() {
        let img = gradient(16);
        let only = |cfg: AugmentConfig| {
            (0..200)
                .filter(|&k| cfg.apply(&img, 16, &mut StdRng::seed_from_u64(k)) != img)
                .count()
        };
        let none = AugmentConfig::none();
        assert_eq!(only(none.clone()), 0);
        for cfg in [
            AugmentConfig {
                resize_probability: 0.5,
                resize_scale: [0.5, 0.5],
                ..none.clone()
            },
            AugmentConfig {
                gaussian_blur_probability: 0.5,
                blur_sigma: [1.0, 1.0],
                ..none.clone()
            },
            AugmentConfig {
                noise_probability: 0.5,
                noise_sigma: [0.05, 0.05],
                ..none.clone()
            },
        ] {
            let changed = only(cfg.clone());
            assert!(
                (70..=130).contains(&changed),
                "{cfg:?}: {changed} of 200 changed"
            );
        }
    }

    #[test]
    fn reencoding_keeps_size_and_png_is_lossless() {
        let img =
            image::RgbImage::from_fn(37, 21, |x, y| image::Rgb([x as u8 * 6, y as u8 * 11, 90]));
        assert_eq!(reencode(&img, Reencode::Png).unwrap(), img);
        let j = reencode(&img, Reencode::Jpeg(40)).unwrap();
        assert_eq!(j.dimensions(), (37, 21));
        assert_ne!(j, img);
    }

    #[test]
    fn cutout_zeroes_a_square() {
        let cfg = AugmentConfig {
            hflip: false,
            crop_padding: 0,
            cutout: 3,
            ..Default::default()
        };
        let img = vec![200u8; 8 * 8 * 3];
        let out = cfg.apply(&img, 8, &mut StdRng::seed_from_u64(1));
        assert_eq!(out.iter().filter(|&&v| v == 0).count(), 27);
    }
}
