//! Backbone features of every image, computed once: pooled activations of the last block for the
//! image as it is and for re-saved, mirrored views of it.

use super::{Preprocess, ViewsConfig};
use crate::data::augment::{Reencode, hflip, reencode};
use crate::data::prepare::prepare;
use crate::data::{self, Normalization};
use crate::error::{Error, Result};
use crate::model::Network;
use burn::prelude::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::path::{Path, PathBuf};

/// One row per (image, view): `dim` floats each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Features {
    pub dim: usize,
    pub data: Vec<f32>,
    /// Index of the image the row came from (folds split by image, never by view).
    pub image: Vec<usize>,
    /// 0 for the image as it is, 1.. for re-saved views.
    pub view: Vec<u8>,
    /// Label of each image (not of each row).
    pub labels: Vec<u8>,
    pub paths: Vec<PathBuf>,
}

impl Features {
    pub fn rows(&self) -> usize {
        self.image.len()
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }

    /// Rows of the given images, only view 0 when `all_views` is false.
    pub fn rows_of(&self, images: &[usize], all_views: bool) -> Vec<usize> {
        let mut keep = vec![false; self.labels.len()];
        for &i in images {
            keep[i] = true;
        }
        (0..self.rows())
            .filter(|&r| keep[self.image[r]] && (all_views || self.view[r] == 0))
            .collect()
    }

    /// Only the images whose path lies under one of `dirs` (a recipe on part of a cached set).
    pub fn restrict_to(&self, dirs: &[PathBuf]) -> Features {
        let keep: Vec<bool> = self
            .paths
            .iter()
            .map(|p| dirs.iter().any(|d| p.starts_with(d)))
            .collect();
        let mut new_index = vec![usize::MAX; keep.len()];
        let mut out = Features {
            dim: self.dim,
            ..Default::default()
        };
        for (i, &k) in keep.iter().enumerate() {
            if k {
                new_index[i] = out.labels.len();
                out.labels.push(self.labels[i]);
                out.paths.push(self.paths[i].clone());
            }
        }
        for r in 0..self.rows() {
            if keep[self.image[r]] {
                out.data.extend_from_slice(self.row(r));
                out.image.push(new_index[self.image[r]]);
                out.view.push(self.view[r]);
            }
        }
        out
    }

    /// Save as a small binary cache: a JSON header line, then the floats little-endian.
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = serde_json::json!({
            "dim": self.dim, "image": self.image, "view": self.view,
            "labels": self.labels, "paths": self.paths,
        });
        let mut out = serde_json::to_vec(&header).map_err(|e| Error::output(path, e))?;
        out.push(b'\n');
        for v in &self.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
        crate::error::write_file(path, out)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::error::read_file(path)?;
        let bad = |m: String| Error::dataset(path, format!("feature cache: {m}"));
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("no header".into()))?;
        let h: serde_json::Value =
            serde_json::from_slice(&bytes[..nl]).map_err(|e| bad(e.to_string()))?;
        let mut f = Features {
            dim: field(&h, "dim").map_err(bad)?,
            image: field(&h, "image").map_err(bad)?,
            view: field(&h, "view").map_err(bad)?,
            labels: field(&h, "labels").map_err(bad)?,
            paths: field(&h, "paths").map_err(bad)?,
            data: Vec::new(),
        };
        f.data = bytes[nl + 1..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if f.data.len() != f.rows() * f.dim {
            return Err(bad("truncated".into()));
        }
        Ok(f)
    }
}

fn field<T: serde::de::DeserializeOwned>(
    h: &serde_json::Value,
    key: &str,
) -> std::result::Result<T, String> {
    serde_json::from_value(h[key].clone()).map_err(|e| format!("{key}: {e}"))
}

/// The views of one image: view 0 as it is; each further view re-saved (a random JPEG quality,
/// or PNG) and mirrored at random, seeded by (`seed`, image index).
fn views(
    img: &image::RgbImage,
    cfg: &ViewsConfig,
    size: u32,
    how: Preprocess,
    seed: u64,
) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![prepare(img, size, how).into_raw()];
    for _ in 0..cfg.extra {
        let format = if rng.random_bool(cfg.png_probability.clamp(0.0, 1.0)) {
            Reencode::Png
        } else {
            Reencode::Jpeg(rng.random_range(cfg.jpeg_quality[0]..=cfg.jpeg_quality[1]))
        };
        let re = reencode(img, format).unwrap_or_else(|| img.clone());
        let mut px = prepare(&re, size, how).into_raw();
        if cfg.hflip && rng.random_bool(0.5) {
            hflip(&mut px, size as usize);
        }
        out.push(px);
    }
    out
}

/// Global-average-pooled activations after block `upto` for a batch of square images.
pub fn pooled(
    net: &Network,
    upto: usize,
    pixels: &[Vec<u8>],
    size: u32,
    norm: &Normalization,
    device: &Device,
) -> Vec<f32> {
    let s = size as usize;
    let floats = data::normalize_all(pixels, s, norm);
    let x = Tensor::<4>::from_data(TensorData::new(floats, [pixels.len(), 3, s, s]), device);
    let f = net.features(x, upto);
    let [b, c, h, w] = f.dims();
    f.reshape([b, c, h * w])
        .mean_dim(2)
        .reshape([b * c])
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// One image's index, label, and feature rows (one per view) or why it could not be read.
type ImageRows = (usize, u8, std::result::Result<Vec<Vec<f32>>, String>);

/// What [`extract`] needs besides the network.
pub struct ExtractSpec<'a> {
    pub items: &'a [(PathBuf, u8)],
    pub size: u32,
    pub preprocess: Preprocess,
    pub views: &'a ViewsConfig,
    pub normalization: &'a Normalization,
    pub seed: u64,
}

/// Features of every image and view; undecodable files are skipped and returned by name.
/// `progress` is called with the number of images done so far.
pub fn extract(
    net: &Network,
    spec: &ExtractSpec,
    device: &Device,
    progress: &(dyn Fn(usize) + Sync),
) -> (Features, Vec<(PathBuf, String)>) {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let upto = net.layer_names().len() - 1;
    let done = AtomicUsize::new(0);
    let chunks: Vec<(usize, &[(PathBuf, u8)])> = spec
        .items
        .chunks(8)
        .enumerate()
        .map(|(k, c)| (k * 8, c))
        .collect();
    let parts: Vec<Vec<ImageRows>> = chunks
        .par_iter()
        .map(|(first, chunk)| {
            let mut per_image = Vec::new();
            let mut batch = Vec::new();
            for (k, (path, label)) in chunk.iter().enumerate() {
                let img = data::decode::read_rgb(path);
                match img {
                    Ok(img) => {
                        let v = views(
                            &img,
                            spec.views,
                            spec.size,
                            spec.preprocess,
                            spec.seed ^ (*first + k) as u64,
                        );
                        per_image.push((first + k, *label, Ok(v.len())));
                        batch.extend(v);
                    }
                    Err(e) => per_image.push((first + k, *label, Err(e.to_string()))),
                }
            }
            let flat = if batch.is_empty() {
                Vec::new()
            } else {
                pooled(net, upto, &batch, spec.size, spec.normalization, device)
            };
            let dim = if batch.is_empty() {
                0
            } else {
                flat.len() / batch.len()
            };
            let mut rows = flat.chunks(dim.max(1)).map(<[f32]>::to_vec);
            let out = per_image
                .into_iter()
                .map(|(i, l, r)| (i, l, r.map(|n| rows.by_ref().take(n).collect())))
                .collect();
            progress(done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len());
            out
        })
        .collect();
    let mut f = Features::default();
    let mut skipped = Vec::new();
    for (i, label, r) in parts.into_iter().flatten() {
        match r {
            Ok(rows) => {
                let image = f.labels.len();
                f.labels.push(label);
                f.paths.push(spec.items[i].0.clone());
                for (v, row) in rows.into_iter().enumerate() {
                    f.dim = row.len();
                    f.data.extend(row);
                    f.image.push(image);
                    f.view.push(v as u8);
                }
            }
            Err(e) => skipped.push((spec.items[i].0.clone(), e)),
        }
    }
    (f, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_crop_is_native_and_small_images_are_upscaled() {
        let img = image::RgbImage::from_fn(100, 60, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let c = prepare(&img, 32, Preprocess::CenterCrop);
        assert_eq!(c.dimensions(), (32, 32));
        assert_eq!(c.get_pixel(0, 0).0, [34, 14, 0]);
        let r = prepare(&img, 80, Preprocess::CenterCrop);
        assert_eq!(r.dimensions(), (80, 80));
        assert_eq!(prepare(&img, 16, Preprocess::Resize).dimensions(), (16, 16));
    }

    #[test]
    fn views_are_seeded_and_view_zero_is_the_image() {
        let img =
            image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([x as u8 * 5, y as u8 * 3, 7]));
        let cfg = ViewsConfig {
            extra: 3,
            jpeg_quality: [50, 90],
            png_probability: 0.25,
            hflip: true,
        };
        let a = views(&img, &cfg, 32, Preprocess::Resize, 9);
        assert_eq!(a, views(&img, &cfg, 32, Preprocess::Resize, 9));
        assert_eq!(a.len(), 4);
        assert_eq!(a[0], prepare(&img, 32, Preprocess::Resize).into_raw());
    }

    #[test]
    fn feature_cache_round_trips() {
        let f = Features {
            dim: 2,
            data: vec![1.0, 2.0, 3.0, 4.5],
            image: vec![0, 0],
            view: vec![0, 1],
            labels: vec![1],
            paths: vec!["a.jpg".into()],
        };
        let dir = std::env::temp_dir().join(format!("synthscan-feat-{}", std::process::id()));
        let p = dir.join("f.bin");
        f.save(&p).unwrap();
        assert_eq!(Features::load(&p).unwrap(), f);
        assert_eq!(f.rows_of(&[0], false), vec![0]);
        assert_eq!(f.restrict_to(&["a.jpg".into()]), f);
        assert_eq!(f.restrict_to(&["b".into()]).rows(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
