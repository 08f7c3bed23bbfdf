//! Noise, generated pixels, sample grids and folders of generated PNGs.
//!
//! Noise comes from a seeded CPU generator (not the backend's), so the same seed gives the same
//! images on every backend and thread count.

use super::model::Generator;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use burn::prelude::*;
use image::RgbImage;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::path::{Path, PathBuf};

/// Images generated per forward pass.
const GEN_BATCH: usize = 256;

/// `n` × `latent` standard-normal values (Box–Muller), row-major, from `seed`.
pub fn noise(seed: u64, n: usize, latent: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let total = n * latent;
    let mut out = Vec::with_capacity(total + 1);
    while out.len() < total {
        let u1: f64 = rng.random::<f64>().max(1e-12);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(total);
    out
}

/// `[n, 3, s, s]` floats in [-1, 1] → HWC u8 pixels, one image after the other.
pub fn to_pixels(images: Tensor<4>) -> Vec<u8> {
    let [n, c, h, w] = images.dims();
    let floats: Vec<f32> = images
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    let plane = h * w;
    let mut out = vec![0u8; n * plane * c];
    for i in 0..n {
        let src = &floats[i * c * plane..(i + 1) * c * plane];
        let dst = &mut out[i * c * plane..(i + 1) * c * plane];
        for p in 0..plane {
            for ch in 0..c {
                let v = (src[ch * plane + p] + 1.0) * 127.5;
                dst[p * c + ch] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Generate one image per row of `z` (`n` × latent) with an inference-mode generator;
/// returns an [`ImageSet`] (labels all FAKE) of HWC pixels.
pub fn generate(g: &Generator, z: &[f32], size: u32, device: &Device) -> ImageSet {
    let latent = g.latent();
    let n = z.len() / latent.max(1);
    let mut pixels = Vec::with_capacity(n * (size as usize).pow(2) * 3);
    for start in (0..n).step_by(GEN_BATCH) {
        let end = (start + GEN_BATCH).min(n);
        let zt = Tensor::<2>::from_data(
            TensorData::new(
                z[start * latent..end * latent].to_vec(),
                [end - start, latent],
            ),
            device,
        );
        pixels.extend(to_pixels(g.forward(zt)));
    }
    ImageSet {
        size,
        pixels,
        labels: vec![crate::data::FAKE; n],
        paths: vec![],
    }
}

/// Lay the first `count` images of a set out in a near-square grid with a 2-pixel gap.
pub fn grid(set: &ImageSet, count: usize) -> RgbImage {
    let n = count.min(set.len()).max(1);
    let cols = (n as f64).sqrt().ceil() as u32;
    let rows = (n as u32).div_ceil(cols);
    let s = set.size;
    let gap = 2;
    let mut img = RgbImage::from_pixel(
        cols * (s + gap) + gap,
        rows * (s + gap) + gap,
        image::Rgb([255, 255, 255]),
    );
    for i in 0..n.min(set.len()) {
        let (x0, y0) = (
            gap + (i as u32 % cols) * (s + gap),
            gap + (i as u32 / cols) * (s + gap),
        );
        let px = set.image(i);
        for y in 0..s {
            for x in 0..s {
                let o = ((y * s + x) * 3) as usize;
                img.put_pixel(x0 + x, y0 + y, image::Rgb([px[o], px[o + 1], px[o + 2]]));
            }
        }
    }
    img
}

/// One image of a set as an [`RgbImage`].
pub fn image_at(set: &ImageSet, i: usize) -> RgbImage {
    RgbImage::from_raw(set.size, set.size, set.image(i).to_vec())
        .unwrap_or_else(|| RgbImage::new(set.size, set.size))
}

/// Save a PNG, creating parent folders, naming the file on failure.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| Error::output(path, e))
}

/// Write every image of a set as `{prefix}-NNNNN.png` into `dir`; returns the paths.
pub fn write_folder(set: &ImageSet, dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    (0..set.len())
        .map(|i| {
            let p = dir.join(format!("{prefix}-{i:05}.png"));
            save_png(&image_at(set, i), &p)?;
            Ok(p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_seeded_and_standard() {
        let a = noise(7, 100, 50);
        assert_eq!(a.len(), 5000);
        assert_eq!(a, noise(7, 100, 50));
        assert_ne!(a, noise(8, 100, 50));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.1, "{mean} {var}");
    }

    #[test]
    fn pixels_map_minus_one_to_zero_and_one_to_255() {
        let t = Tensor::<4>::from_data(
            TensorData::new(vec![-1.0f32, 1.0, 0.0, 1.0, -1.0, 1.0], [1, 3, 1, 2]),
            &Device::default(),
        );
        // Pixel 0 is (-1, 0, -1), pixel 1 is (1, 1, 1).
        assert_eq!(to_pixels(t), vec![0, 128, 0, 255, 255, 255]);
    }

    #[test]
    fn grid_size_follows_count() {
        let set = ImageSet {
            size: 8,
            pixels: vec![9; 10 * 8 * 8 * 3],
            labels: vec![1; 10],
            paths: vec![],
        };
        let g = grid(&set, 10);
        // 10 images → 4 columns × 3 rows of 8 px with 2-px gaps.
        assert_eq!((g.width(), g.height()), (4 * 10 + 2, 3 * 10 + 2));
        assert_eq!(g.get_pixel(2, 2).0, [9, 9, 9]);
        assert_eq!(g.get_pixel(0, 0).0, [255, 255, 255]);
    }
}
