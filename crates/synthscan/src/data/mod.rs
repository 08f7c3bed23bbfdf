//! Datasets: labelled folders in, decoded pixels cached in memory, seeded splits and batches out.

pub mod augment;
pub mod decode;
pub mod manifest;
pub mod perturb;
pub mod prepare;
pub mod shard;
pub mod walk;

use crate::error::{Error, Result};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use augment::AugmentConfig;

/// Class names in label order: label 0 is REAL, label 1 is FAKE (the positive class).
pub const CLASS_NAMES: [&str; 2] = ["REAL", "FAKE"];
pub const REAL: u8 = 0;
pub const FAKE: u8 = 1;

/// File extensions picked up when a folder is scanned: every format cameras, phones and
/// generators write, decodable by this build or not (a file this build cannot decode is named in
/// an error line, never passed over: [`decode::unsupported_format`]).
pub const IMAGE_EXTENSIONS: [&str; 12] = [
    "jpg", "jpeg", "jfif", "png", "webp", "bmp", "gif", "tif", "tiff", "heic", "heif", "avif",
];

pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Which part of a `train/` + `test/` parent folder to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Train,
    Test,
}

fn child_ci(dir: &Path, name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.flatten().map(|e| e.path()).find(|p| {
        p.is_dir()
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// The folder holding `REAL/` and `FAKE/`: `dir` itself, or its `train/` / `test/` child.
pub fn resolve_class_root(dir: &Path, part: Part) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(Error::dataset(dir, "not a folder"));
    }
    if child_ci(dir, "REAL").is_some() || child_ci(dir, "FAKE").is_some() {
        return Ok(dir.to_path_buf());
    }
    let name = match part {
        Part::Train => "train",
        Part::Test => "test",
    };
    match child_ci(dir, name) {
        Some(sub) if child_ci(&sub, "REAL").is_some() || child_ci(&sub, "FAKE").is_some() => {
            Ok(sub)
        }
        _ => Err(Error::dataset(
            dir,
            format!("expected REAL/ and FAKE/ sub-folders (or {name}/REAL and {name}/FAKE)"),
        )),
    }
}

/// A parent's `test/` folder, when `dir` is a `train/` + `test/` parent.
pub fn sibling_test_root(dir: &Path) -> Option<PathBuf> {
    if child_ci(dir, "REAL").is_some() {
        return None;
    }
    resolve_class_root(dir, Part::Test).ok()
}

/// Every image file under `dir` (recursively), sorted so that the order is reproducible; what
/// was passed over (pipes, dangling links, cycles) is logged as a warning ([`walk::walk_images`]).
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let w = walk::walk_images(dir)?;
    for (path, why) in &w.problems {
        tracing::warn!("{}: {why}", path.display());
    }
    Ok(w.files)
}

/// Labelled image paths of a class root (`REAL/` → 0, `FAKE/` → 1).
pub fn discover(root: &Path) -> Result<Vec<(PathBuf, u8)>> {
    let mut items = Vec::new();
    for (label, name) in CLASS_NAMES.iter().enumerate() {
        if let Some(dir) = child_ci(root, name) {
            items.extend(list_images(&dir)?.into_iter().map(|p| (p, label as u8)));
        }
    }
    if items.is_empty() {
        return Err(Error::dataset(root, "no images found under REAL/ or FAKE/"));
    }
    Ok(items)
}

/// Decoded images of one size, kept as u8 HWC in one buffer and shared by every epoch.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    pub size: u32,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub paths: Vec<PathBuf>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image_len(&self) -> usize {
        (self.size * self.size * 3) as usize
    }
    pub fn image(&self, index: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[index * n..(index + 1) * n]
    }
    /// Images per class, in label order.
    pub fn class_counts(&self) -> [usize; 2] {
        let fake = self.labels.iter().filter(|&&l| l == FAKE).count();
        [self.len() - fake, fake]
    }
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            size: self.size,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            // In-memory sets (generated, single uploads) carry no paths.
            paths: indices
                .iter()
                .filter_map(|&i| self.paths.get(i).cloned())
                .collect(),
        }
    }
    /// Per-channel mean and standard deviation of the pixels, in [0, 1] units.
    pub fn channel_stats(&self) -> ([f32; 3], [f32; 3]) {
        let mut sum = [0f64; 3];
        let mut sq = [0f64; 3];
        for px in self.pixels.chunks_exact(3) {
            for c in 0..3 {
                let v = px[c] as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        let n = (self.pixels.len() / 3).max(1) as f64;
        let mean = sum.map(|s| s / n);
        let std = [0, 1, 2].map(|c| ((sq[c] / n - mean[c] * mean[c]).max(1e-8)).sqrt() as f32);
        (mean.map(|m| m as f32), std)
    }
}

/// Files that could not be used, with the reason, so the summary can count them.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub skipped: Vec<(PathBuf, String)>,
}

/// Decode labelled files in parallel into an [`ImageSet`]. Undecodable files are skipped with a
/// warning naming them, or fail the whole load when `strict`.
pub fn load_labelled(
    items: &[(PathBuf, u8)],
    size: u32,
    strict: bool,
) -> Result<(ImageSet, LoadReport)> {
    let (mut sets, report) = load_labelled_with(items, &[size], strict, &|path| {
        Ok(vec![decode::load_rgb(path, size)?])
    })?;
    Ok((sets.remove(0), report))
}

/// [`load_labelled`] into one set per entry of `sizes`, each file read once: `load` turns a file
/// into the pixels of every set (`sizes[i]`×`sizes[i]` for set `i`; models' own preprocessing,
/// e.g. an ensemble's members at their input sizes). The sets hold the same files in the same
/// order.
pub fn load_labelled_with(
    items: &[(PathBuf, u8)],
    sizes: &[u32],
    strict: bool,
    load: &(dyn Fn(&Path) -> Result<Vec<Vec<u8>>> + Sync),
) -> Result<(Vec<ImageSet>, LoadReport)> {
    let decoded: Vec<(usize, Result<Vec<Vec<u8>>>)> = items
        .par_iter()
        .enumerate()
        .map(|(i, (path, _))| (i, load(path)))
        .collect();
    let mut sets: Vec<ImageSet> = sizes
        .iter()
        .map(|&size| ImageSet {
            size,
            ..Default::default()
        })
        .collect();
    for set in &mut sets {
        set.pixels.reserve(items.len() * set.image_len());
    }
    let mut report = LoadReport::default();
    for (i, result) in decoded {
        match result {
            Ok(pixels) => {
                for (set, p) in sets.iter_mut().zip(&pixels) {
                    set.pixels.extend_from_slice(p);
                    set.labels.push(items[i].1);
                    set.paths.push(items[i].0.clone());
                }
            }
            Err(err) if strict => return Err(err),
            Err(err) => {
                tracing::warn!("skipping {err}");
                report.skipped.push((items[i].0.clone(), err.to_string()));
            }
        }
    }
    Ok((sets, report))
}

/// Discover and decode a class root folder.
pub fn load_folder(root: &Path, size: u32, strict: bool) -> Result<(ImageSet, LoadReport)> {
    load_labelled(&discover(root)?, size, strict)
}

/// Seeded, stratified split: returns (train indices, validation indices). The same seed and
/// labels always give the same split.
pub fn stratified_split(labels: &[u8], val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut train = Vec::new();
    let mut val = Vec::new();
    for class in [REAL, FAKE] {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        idx.shuffle(&mut rng);
        let n_val = ((idx.len() as f64) * val_fraction).round() as usize;
        val.extend_from_slice(&idx[..n_val]);
        train.extend_from_slice(&idx[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Per-channel normalisation a model declares; stored in the model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    pub fn unit() -> Self {
        Self {
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }
    pub fn imagenet() -> Self {
        Self {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// Square RGB images (`size`² HWC bytes each) as one normalised NCHW float batch.
pub fn normalize_all(pixels: &[Vec<u8>], size: usize, norm: &Normalization) -> Vec<f32> {
    let mut floats = vec![0.0; pixels.len() * 3 * size * size];
    for (px, out) in pixels.iter().zip(floats.chunks_mut(3 * size * size)) {
        normalize_into(px, size, norm, out);
    }
    floats
}

/// Write one HWC u8 image as normalised CHW floats into `out`.
pub fn normalize_into(pixels: &[u8], size: usize, norm: &Normalization, out: &mut [f32]) {
    let plane = size * size;
    let scale = norm.std.map(|s| 1.0 / (255.0 * s));
    let shift = [0, 1, 2].map(|c| norm.mean[c] / norm.std[c]);
    for (p, px) in pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + p] = px[c] as f32 * scale[c] - shift[c];
        }
    }
}

/// Build a normalised NCHW float batch from images of `set`, augmenting when asked. Runs on all
/// cores; each image's randomness comes from (`seed`, its position), so results do not depend
/// on the thread count.
pub fn batch_floats(
    set: &ImageSet,
    indices: &[usize],
    norm: &Normalization,
    augment: Option<(&AugmentConfig, u64)>,
) -> Vec<f32> {
    let size = set.size as usize;
    let per = 3 * size * size;
    let mut out = vec![0f32; indices.len() * per];
    out.par_chunks_mut(per)
        .zip(indices.par_iter())
        .for_each(|(dst, &i)| match augment {
            Some((cfg, seed)) => {
                let mut rng =
                    StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let img = cfg.apply(set.image(i), set.size, &mut rng);
                normalize_into(&img, size, norm, dst);
            }
            None => normalize_into(set.image(i), size, norm, dst),
        });
    out
}

/// Files named directly are always tried (if they are regular files); folders are searched
/// recursively for image files ([`walk::walk_images`]), and each entry passed over is an error
/// item naming it, so that a scan reports everything it did not score.
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<std::result::Result<PathBuf, (PathBuf, String)>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            match walk::walk_images(input) {
                Ok(w) => {
                    if w.files.is_empty() && w.problems.is_empty() {
                        out.push(Err((input.clone(), "folder holds no image files".into())));
                    }
                    out.extend(w.files.into_iter().map(Ok));
                    out.extend(w.problems.into_iter().map(Err));
                }
                Err(e) => out.push(Err((input.clone(), e.to_string()))),
            }
        } else if std::fs::symlink_metadata(input).is_ok() {
            out.push(match walk::check_regular(input) {
                Ok(()) => Ok(input.clone()),
                Err(e) => Err((input.clone(), e.to_string())),
            });
        } else {
            out.push(Err((input.clone(), "no such file or folder".into())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_and_seeded() {
        let labels: Vec<u8> = (0..1000).map(|i| (i % 4 == 0) as u8).collect();
        let (train, val) = stratified_split(&labels, 0.1, 7);
        assert_eq!(train.len() + val.len(), 1000);
        let val_fake = val.iter().filter(|&&i| labels[i] == FAKE).count();
        assert_eq!(val_fake, 25);
        assert_eq!(val.len(), 100);
        assert_eq!(stratified_split(&labels, 0.1, 7).1, val);
        assert_ne!(stratified_split(&labels, 0.1, 8).1, val);
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn normalisation_maps_pixels_to_chw() {
        let px = [255u8, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        let mut out = [0f32; 12];
        normalize_into(&px, 2, &Normalization::unit(), &mut out);
        assert_eq!(&out[0..4], &[1.0, 0.0, 0.0, 1.0]);
        assert_eq!(&out[4..8], &[0.0, 1.0, 0.0, 1.0]);
        let mut out = [0f32; 12];
        normalize_into(&px, 2, &Normalization::imagenet(), &mut out);
        assert!((out[1] - (-0.485 / 0.229)).abs() < 1e-5);
    }

    #[test]
    fn resolves_train_test_parent() {
        let tmp = std::env::temp_dir().join(format!("synthscan-resolve-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("train/REAL")).unwrap();
        std::fs::create_dir_all(tmp.join("test/FAKE")).unwrap();
        assert_eq!(
            resolve_class_root(&tmp, Part::Train).unwrap(),
            tmp.join("train")
        );
        assert_eq!(
            resolve_class_root(&tmp, Part::Test).unwrap(),
            tmp.join("test")
        );
        assert!(resolve_class_root(&tmp.join("train/REAL"), Part::Train).is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
