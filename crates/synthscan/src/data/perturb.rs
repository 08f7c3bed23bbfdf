//! Image degradations that real uploads go through — re-encoding, resizing, blur, noise,
//! cropping — implemented once: the robustness sweep applies them at fixed strengths, and
//! training augmentation draws their strengths at random (see [`super::AugmentConfig`]).
//!
//! A perturbation is written as `name[:value]`, and several joined by `+` make a chain applied
//! left to right: `jpeg:75`, `webp`, `down:0.5`, `up:2`, `blur:1`, `noise:0.02`, `crop:0.8`,
//! `down:0.5+jpeg:75`, and `none`.

use crate::error::{Error, Result};
use image::{RgbImage, imageops::FilterType};
use rand::{Rng, RngExt, SeedableRng, rngs::StdRng};
use std::fmt;

/// One degradation at a fixed strength.
#[derive(Clone, Debug, PartialEq)]
pub enum Perturbation {
    /// The image unchanged.
    None,
    /// Re-encode as JPEG at this quality (1–100).
    Jpeg(u8),
    /// Re-encode as WebP. The `image` crate writes lossless WebP only, so this changes the
    /// container, not the pixels.
    Webp,
    /// Downscale by this factor (< 1) with a bilinear filter, then back up to the original size
    /// (a thumbnail round trip).
    Down(f32),
    /// Upscale by this factor (> 1) with a bicubic filter; the image stays larger.
    Up(f32),
    /// Gaussian blur with this σ in pixels.
    Blur(f32),
    /// Add Gaussian noise with this σ (pixel values in [0, 1]), seeded.
    Noise(f32),
    /// Keep the centred part of this fraction of each side.
    Crop(f32),
    /// Several in order.
    Chain(Vec<Perturbation>),
}

/// The sweep `synthscan robustness` runs by default.
pub const DEFAULT_SWEEP: &str = "none,jpeg:90,jpeg:75,jpeg:50,jpeg:30,webp,down:0.5,down:0.25,up:2,\
blur:0.5,blur:1,blur:2,noise:0.02,noise:0.05,crop:0.8,down:0.5+jpeg:75";

impl Perturbation {
    /// Parse one perturbation (or a `+` chain).
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec.contains('+') {
            let parts = spec
                .split('+')
                .map(Self::parse)
                .collect::<Result<Vec<_>>>()?;
            return Ok(Perturbation::Chain(parts));
        }
        let (name, value) = match spec.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        let bad = |why: &str| Error::Invalid(format!("perturbation '{spec}': {why}"));
        let num = |lo: f32, hi: f32| -> Result<f32> {
            let v: f32 = value
                .ok_or_else(|| bad("needs a value, e.g. blur:1"))?
                .parse()
                .map_err(|_| bad("the value is not a number"))?;
            if !(lo..=hi).contains(&v) {
                return Err(bad(&format!("the value must be in [{lo}, {hi}]")));
            }
            Ok(v)
        };
        Ok(match name {
            "none" => Perturbation::None,
            "webp" => Perturbation::Webp,
            "jpeg" => Perturbation::Jpeg(num(1.0, 100.0)? as u8),
            "down" => Perturbation::Down(num(0.01, 0.99)?),
            "up" => Perturbation::Up(num(1.01, 8.0)?),
            "blur" => Perturbation::Blur(num(0.05, 20.0)?),
            "noise" => Perturbation::Noise(num(0.0, 1.0)?),
            "crop" => Perturbation::Crop(num(0.05, 1.0)?),
            _ => {
                return Err(bad(
                    "unknown; expected none, jpeg:Q, webp, down:F, up:F, blur:S, noise:S, crop:F or a chain a+b",
                ));
            }
        })
    }

    /// Parse a comma-separated list.
    pub fn parse_list(list: &str) -> Result<Vec<Self>> {
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Self::parse)
            .collect()
    }

    /// Apply to one image; `seed` drives the random parts (noise), so the result is the same for
    /// the same seed.
    pub fn apply(&self, img: &RgbImage, seed: u64) -> RgbImage {
        self.apply_with(img, &mut StdRng::seed_from_u64(seed))
    }

    fn apply_with<R: Rng>(&self, img: &RgbImage, rng: &mut R) -> RgbImage {
        match self {
            Perturbation::None => img.clone(),
            Perturbation::Jpeg(q) => jpeg(img, *q),
            Perturbation::Webp => webp(img),
            Perturbation::Down(f) => down_up(img, *f),
            Perturbation::Up(f) => {
                let (w, h) = scaled(img, *f);
                image::imageops::resize(img, w, h, FilterType::CatmullRom)
            }
            Perturbation::Blur(sigma) => image::imageops::blur(img, *sigma),
            Perturbation::Noise(sigma) => noise(img, *sigma, rng),
            Perturbation::Crop(f) => {
                let (w, h) = scaled(img, *f);
                let (x, y) = ((img.width() - w) / 2, (img.height() - h) / 2);
                image::imageops::crop_imm(img, x, y, w, h).to_image()
            }
            Perturbation::Chain(steps) => {
                let mut out = img.clone();
                for step in steps {
                    out = step.apply_with(&out, rng);
                }
                out
            }
        }
    }
}

impl fmt::Display for Perturbation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Perturbation::None => write!(f, "none"),
            Perturbation::Jpeg(q) => write!(f, "jpeg:{q}"),
            Perturbation::Webp => write!(f, "webp"),
            Perturbation::Down(v) => write!(f, "down:{v}"),
            Perturbation::Up(v) => write!(f, "up:{v}"),
            Perturbation::Blur(v) => write!(f, "blur:{v}"),
            Perturbation::Noise(v) => write!(f, "noise:{v}"),
            Perturbation::Crop(v) => write!(f, "crop:{v}"),
            Perturbation::Chain(steps) => {
                let names: Vec<String> = steps.iter().map(ToString::to_string).collect();
                write!(f, "{}", names.join("+"))
            }
        }
    }
}

/// Width and height scaled by `f`, at least 1 pixel each.
fn scaled(img: &RgbImage, f: f32) -> (u32, u32) {
    let s = |v: u32| ((v as f32 * f).round() as u32).max(1);
    (s(img.width()), s(img.height()))
}

/// Re-encode as JPEG at `quality`; the input when encoding fails (it cannot for RGB8 data).
pub fn jpeg(img: &RgbImage, quality: u8) -> RgbImage {
    let mut buf = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality.clamp(1, 100));
    if img.write_with_encoder(enc).is_err() {
        return img.clone();
    }
    image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg)
        .map(|d| d.to_rgb8())
        .unwrap_or_else(|_| img.clone())
}

fn webp(img: &RgbImage) -> RgbImage {
    let mut buf = Vec::new();
    let enc = image::codecs::webp::WebPEncoder::new_lossless(&mut buf);
    if img.write_with_encoder(enc).is_err() {
        return img.clone();
    }
    image::load_from_memory_with_format(&buf, image::ImageFormat::WebP)
        .map(|d| d.to_rgb8())
        .unwrap_or_else(|_| img.clone())
}

/// Downscale by `f` (bilinear) and back up to the original size (bilinear).
pub fn down_up(img: &RgbImage, f: f32) -> RgbImage {
    let (w, h) = scaled(img, f);
    let small = image::imageops::resize(img, w, h, FilterType::Triangle);
    image::imageops::resize(&small, img.width(), img.height(), FilterType::Triangle)
}

/// Add N(0, σ²) noise to every channel (σ in units of the full [0, 255] range).
pub fn noise<R: Rng>(img: &RgbImage, sigma: f32, rng: &mut R) -> RgbImage {
    let mut out = img.clone();
    for v in out.iter_mut() {
        // Box–Muller: one standard normal from two uniforms.
        let u1: f32 = rng.random_range(f32::EPSILON..1.0);
        let u2: f32 = rng.random_range(0.0..1.0);
        let z = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
        *v = (*v as f32 + z * sigma * 255.0).round().clamp(0.0, 255.0) as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let edge = if (x / 4 + y / 4) % 2 == 0 { 220 } else { 30 };
            image::Rgb([edge, (x * 7 % 256) as u8, (y * 5 % 256) as u8])
        })
    }

    fn diff(a: &RgbImage, b: &RgbImage) -> f64 {
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn every_default_perturbation_parses_and_prints_back() {
        for p in Perturbation::parse_list(DEFAULT_SWEEP).unwrap() {
            assert_eq!(Perturbation::parse(&p.to_string()).unwrap(), p);
        }
        for bad in ["jpeg", "jpeg:0", "down:2", "up:0.5", "sharpen:1", "blur:x"] {
            let e = Perturbation::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn each_perturbation_changes_the_image_as_intended() {
        let img = picture(32, 32);
        let get = |s: &str| Perturbation::parse(s).unwrap().apply(&img, 7);
        assert_eq!(get("none"), img);
        assert_eq!(get("webp"), img, "lossless WebP keeps the pixels");
        let q30 = get("jpeg:30");
        assert_eq!(q30.dimensions(), (32, 32));
        assert!(diff(&q30, &img) > diff(&get("jpeg:90"), &img));
        assert!(diff(&q30, &img) > 1.0);
        let half = get("down:0.5");
        assert_eq!(half.dimensions(), (32, 32), "a round trip keeps the size");
        assert!(diff(&half, &img) > 1.0);
        assert_eq!(get("up:2").dimensions(), (64, 64));
        assert!(diff(&get("blur:2"), &img) > diff(&get("blur:0.5"), &img));
        assert_eq!(get("crop:0.8").dimensions(), (26, 26));
        let chain = get("down:0.5+jpeg:75");
        assert_eq!(chain, Perturbation::Jpeg(75).apply(&half, 0));
        assert_eq!(
            Perturbation::parse("down:0.5+jpeg:75").unwrap().to_string(),
            "down:0.5+jpeg:75"
        );
    }

    #[test]
    fn noise_is_deterministic_for_a_seed_and_has_its_sigma() {
        let flat = RgbImage::from_pixel(64, 64, image::Rgb([128, 128, 128]));
        let p = Perturbation::Noise(0.05);
        let (a, b, c) = (p.apply(&flat, 1), p.apply(&flat, 1), p.apply(&flat, 2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let var = a.iter().map(|&v| (v as f64 - 128.0).powi(2)).sum::<f64>() / a.len() as f64;
        let sigma = var.sqrt() / 255.0;
        assert!((sigma - 0.05).abs() < 0.005, "measured σ {sigma}");
    }
}
