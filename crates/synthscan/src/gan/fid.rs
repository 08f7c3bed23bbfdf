//! A Fréchet distance between two image sets in the feature space of a synthscan classifier,
//! and a pixel-space diversity measure.
//!
//! This is **not** the Inception-based FID of Heusel et al. (2017): the features are the
//! penultimate layer of a synthscan detector (by default the embedded CIFAKE model, 128
//! dimensions), not Inception-v3 pool3 (2048 dimensions). Its values are comparable only with
//! each other — same feature model, same image counts — never with published FID numbers.
//!
//! d² = |μ₁ − μ₂|² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½), with the symmetric square roots taken by
//! a cyclic Jacobi eigen-decomposition (exact for symmetric matrices; no extra dependency).

use crate::data::ImageSet;
use crate::detector::Detector;
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Mean and covariance of a set of feature vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussian {
    pub mean: Vec<f64>,
    /// Row-major `d × d`.
    pub cov: Vec<f64>,
}

impl Gaussian {
    /// Fit to `rows` (each of the same length; at least two rows).
    pub fn fit(rows: &[Vec<f32>]) -> Self {
        let n = rows.len().max(2) as f64;
        let d = rows.first().map(Vec::len).unwrap_or(0);
        let mut mean = vec![0f64; d];
        for r in rows {
            for (m, &v) in mean.iter_mut().zip(r) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows.len().max(1) as f64);
        let mut cov = vec![0f64; d * d];
        for r in rows {
            let c: Vec<f64> = r.iter().zip(&mean).map(|(&v, m)| v as f64 - m).collect();
            for i in 0..d {
                for j in i..d {
                    cov[i * d + j] += c[i] * c[j];
                }
            }
        }
        for i in 0..d {
            for j in i..d {
                cov[i * d + j] /= n - 1.0;
                cov[j * d + i] = cov[i * d + j];
            }
        }
        Self { mean, cov }
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }
}

/// Eigenvalues and eigenvectors (columns of the row-major `d × d` result) of a symmetric matrix.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; d * d];
    (0..d).for_each(|i| v[i * d + i] = 1.0);
    for _sweep in 0..60 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j].powi(2))
            .sum();
        let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(1e-300);
        if off <= 1e-24 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

/// Square root of a symmetric positive semi-definite matrix (negative eigenvalues, from
/// rounding, are clipped to zero).
pub fn sqrt_psd(a: &[f64], d: usize) -> Vec<f64> {
    let (vals, vecs) = symmetric_eigen(a, d);
    let roots: Vec<f64> = vals.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut out = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            out[i * d + j] = (0..d)
                .map(|k| vecs[i * d + k] * roots[k] * vecs[j * d + k])
                .sum();
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0f64; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                out[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    out
}

/// The Fréchet distance between two Gaussians (squared form, as FID reports it).
pub fn frechet(a: &Gaussian, b: &Gaussian) -> f64 {
    let d = a.dim();
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let root_a = sqrt_psd(&a.cov, d);
    let mut m = matmul(&matmul(&root_a, &b.cov, d), &root_a, d);
    // Symmetrise away rounding before the eigen-decomposition.
    for i in 0..d {
        for j in i + 1..d {
            let s = 0.5 * (m[i * d + j] + m[j * d + i]);
            m[i * d + j] = s;
            m[j * d + i] = s;
        }
    }
    let (vals, _) = symmetric_eigen(&m, d);
    let tr_sqrt: f64 = vals.iter().map(|&l| l.max(0.0).sqrt()).sum();
    let tr = |c: &[f64]| (0..d).map(|i| c[i * d + i]).sum::<f64>();
    (mean_term + tr(&a.cov) + tr(&b.cov) - 2.0 * tr_sqrt).max(0.0)
}

/// Penultimate-layer features of every image of a set under `det` (images are resized to the
/// detector's input size first).
pub fn features(det: &Detector, set: &ImageSet) -> Vec<Vec<f32>> {
    use rayon::prelude::*;
    let size = det.meta.input_size;
    let resized;
    let set = if set.size == size {
        set
    } else {
        let mut pixels = Vec::with_capacity(set.len() * (size as usize).pow(2) * 3);
        for i in 0..set.len() {
            let img = super::sample::image_at(set, i);
            pixels.extend(crate::data::decode::resize_square(&img, size).into_raw());
        }
        resized = ImageSet {
            size,
            pixels,
            labels: set.labels.clone(),
            paths: vec![],
        };
        &resized
    };
    let idx: Vec<usize> = (0..set.len()).collect();
    idx.par_chunks(crate::detector::INFER_BATCH)
        .map(|chunk| {
            let f = det.network.embed(det.input_tensor(set, chunk));
            let [n, dim] = f.dims();
            let flat: Vec<f32> = f
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            (0..n)
                .map(|i| flat[i * dim..(i + 1) * dim].to_vec())
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .concat()
}

/// Mean Euclidean distance between random pairs of distinct images, per pixel in [0, 1]
/// (root-mean-square difference): near 0 when a generator repeats one image.
pub fn diversity(set: &ImageSet, pairs: usize, seed: u64) -> f64 {
    if set.len() < 2 {
        return 0.0;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total = 0.0;
    for _ in 0..pairs {
        let i = rng.random_range(0..set.len());
        let mut j = rng.random_range(0..set.len() - 1);
        if j >= i {
            j += 1;
        }
        let sq: f64 = set
            .image(i)
            .iter()
            .zip(set.image(j))
            .map(|(&a, &b)| ((a as f64 - b as f64) / 255.0).powi(2))
            .sum();
        total += (sq / set.image_len() as f64).sqrt();
    }
    total / pairs.max(1) as f64
}

/// Fréchet distance and diversity between two folders of images.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FolderDistance {
    pub frechet: f64,
    pub count_a: usize,
    pub count_b: usize,
    pub diversity_a: f64,
    pub diversity_b: f64,
}

/// Compare up to `count` images (a seeded choice) of each folder, resized to `size`, in the
/// feature space of `det`.
pub fn folder_distance(
    det: &Detector,
    a: &std::path::Path,
    b: &std::path::Path,
    size: u32,
    count: usize,
    seed: u64,
) -> crate::error::Result<FolderDistance> {
    let (set_a, _) = super::images::load_images(a, size, Some(count), seed)?;
    let (set_b, _) = super::images::load_images(b, size, Some(count), seed)?;
    if set_a.len() < 2 || set_b.len() < 2 {
        return Err(crate::error::Error::Invalid(
            "each folder needs at least 2 images".into(),
        ));
    }
    Ok(FolderDistance {
        frechet: frechet(
            &Gaussian::fit(&features(det, &set_a)),
            &Gaussian::fit(&features(det, &set_b)),
        ),
        count_a: set_a.len(),
        count_b: set_b.len(),
        diversity_a: diversity(&set_a, 2000, seed),
        diversity_b: diversity(&set_b, 2000, seed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(n: usize, d: usize, shift: f32, seed: u64) -> Vec<Vec<f32>> {
        let z = super::super::sample::noise(seed, n, d);
        z.chunks(d)
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(k, v)| v * (1.0 + k as f32 * 0.1) + shift)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn eigen_and_sqrt_reconstruct_the_matrix() {
        let g = Gaussian::fit(&cloud(200, 6, 0.0, 1));
        let r = sqrt_psd(&g.cov, 6);
        let back = matmul(&r, &r, 6);
        for (x, y) in back.iter().zip(&g.cov) {
            assert!((x - y).abs() < 1e-8, "{x} {y}");
        }
    }

    #[test]
    fn distance_to_itself_is_zero_and_grows_with_a_shift() {
        let a = Gaussian::fit(&cloud(500, 16, 0.0, 2));
        assert!(frechet(&a, &a) < 1e-6, "{}", frechet(&a, &a));
        let mut last = 0.0;
        for shift in [0.25f32, 0.5, 1.0, 2.0] {
            let b = Gaussian::fit(&cloud(500, 16, shift, 2));
            let f = frechet(&a, &b);
            // Same cloud moved by `shift` in every one of 16 dimensions: d² = 16 shift².
            assert!(
                (f - 16.0 * (shift as f64).powi(2)).abs() < 1e-3,
                "{shift}: {f}"
            );
            assert!(f > last);
            last = f;
        }
        let c = Gaussian::fit(&cloud(500, 16, 0.0, 3));
        let fresh = frechet(&a, &c);
        assert!(
            fresh > 0.0 && fresh < 2.0,
            "two samples of one law: {fresh}"
        );
    }

    #[test]
    fn diversity_is_zero_for_copies() {
        let same = ImageSet {
            size: 4,
            pixels: [10u8; 48].repeat(5),
            labels: vec![1; 5],
            paths: vec![],
        };
        assert_eq!(diversity(&same, 20, 1), 0.0);
        let mut varied = same.clone();
        varied.pixels[48..96].fill(200);
        assert!(diversity(&varied, 50, 1) > 0.0);
    }
}
