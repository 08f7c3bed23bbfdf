//! The images a GAN learns from or is compared with: a folder decoded at the generator's size,
//! and the pixel range its networks work in.

use crate::data::{self, ImageSet, Normalization};
use crate::error::{Error, Result};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use std::path::{Path, PathBuf};

/// Pixels in [0, 255] → [-1, 1], the generator's tanh range.
pub fn gan_normalization() -> Normalization {
    Normalization {
        mean: [0.5; 3],
        std: [0.5; 3],
    }
}

/// Decode every image under `dir` at `size` (at most `limit`, a seeded choice); also the
/// number of files that could not be decoded.
pub fn load_images(
    dir: &Path,
    size: u32,
    limit: Option<usize>,
    seed: u64,
) -> Result<(ImageSet, usize)> {
    let mut files = data::list_images(dir)?;
    if files.is_empty() {
        return Err(Error::dataset(
            dir,
            "no image files found (searched recursively)",
        ));
    }
    if let Some(n) = limit.filter(|&n| n < files.len()) {
        files.shuffle(&mut StdRng::seed_from_u64(seed));
        files.truncate(n);
        files.sort();
    }
    let items: Vec<(PathBuf, u8)> = files.into_iter().map(|p| (p, data::REAL)).collect();
    let (set, report) = data::load_labelled(&items, size, false)?;
    Ok((set, report.skipped.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(tag: &str, n: usize) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("synthscan-ganimg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_pixel(12, 10, image::Rgb([i as u8 * 20, 100, 7]));
            let sub = if i % 2 == 0 {
                dir.join("sub")
            } else {
                dir.clone()
            };
            img.save(sub.join(format!("{i}.png"))).unwrap();
        }
        std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
        dir
    }

    #[test]
    fn a_folder_is_read_recursively_at_the_size_asked_and_a_limit_is_a_seeded_choice() {
        let dir = folder("limit", 6);
        let (all, skipped) = load_images(&dir, 8, None, 1).unwrap();
        assert_eq!((all.len(), skipped), (6, 1));
        std::fs::remove_file(dir.join("broken.png")).unwrap();
        let (a, _) = load_images(&dir, 8, Some(3), 5).unwrap();
        let (b, _) = load_images(&dir, 8, Some(3), 5).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a.paths, b.paths);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_empty_folder_is_named_in_the_error() {
        let dir = folder("empty", 0);
        std::fs::remove_file(dir.join("broken.png")).unwrap();
        let err = load_images(&dir, 8, None, 0).unwrap_err();
        assert!(err.to_string().contains("no image files"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_normalisation_maps_pixels_onto_minus_one_to_one() {
        let n = gan_normalization();
        let map = |p: f32| (p / 255.0 - n.mean[0]) / n.std[0];
        assert_eq!((map(0.0), map(255.0)), (-1.0, 1.0));
    }
}
