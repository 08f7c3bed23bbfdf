//! Slice kernels of the fused training unit: convolution → optional 2×2 max-pool → batch-norm
//! with batch statistics → ReLU, forward and backward, on contiguous `f32` buffers.
//!
//! Between its steps the unit keeps activations channel-major ("CNHW": one row per channel over
//! the whole batch). The convolution is then one matrix product per pass (weights `[Co, C·k·k]`
//! times the transposed im2col matrix `[C·k·k, N·Ho·Wo]`), its two gradients are two more, and
//! the pool and batch-norm reductions run over contiguous rows. Inputs and outputs are NCHW, as
//! burn's tensors are. Every kernel is single-threaded: the training step already runs one pass
//! per core.

use std::fmt;

/// The shape of one unit's pass: input `[n, c, h, w]`, `co` square `k`×`k` filters (odd `k`,
/// padding `k / 2`), one stride, and whether a 2×2 max-pool follows the convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub k: usize,
    pub stride: usize,
    pub pool: bool,
}

impl UnitShape {
    fn pad(&self) -> usize {
        self.k / 2
    }

    /// Height and width of the convolution's output.
    pub fn conv_out(&self) -> (usize, usize) {
        let out = |x: usize| (x + 2 * self.pad()).saturating_sub(self.k) / self.stride.max(1) + 1;
        (out(self.h), out(self.w))
    }

    /// Height and width of the unit's output (after the pool, if any).
    pub fn out(&self) -> (usize, usize) {
        let (ho, wo) = self.conv_out();
        if self.pool {
            (ho / 2, wo / 2)
        } else {
            (ho, wo)
        }
    }

    /// Rows of the im2col matrix: one per filter tap.
    fn taps(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Columns of the im2col matrix: one per output position of the convolution over the batch.
    fn positions(&self) -> usize {
        let (ho, wo) = self.conv_out();
        self.n * ho * wo
    }

    /// Values per channel that batch-norm averages over.
    fn per_channel(&self) -> usize {
        let (hp, wp) = self.out();
        self.n * hp * wp
    }
}

/// What the backward pass needs from the forward one.
pub struct Saved {
    pub shape: UnitShape,
    cols: Vec<f32>,
    weight: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    /// Normalised pre-activation, channel-major.
    xhat: Vec<f32>,
    inv_std: Vec<f32>,
    /// Which of the four pooled values won (row · 2 + column), channel-major; empty without pool.
    argmax: Vec<u8>,
}

impl fmt::Debug for Saved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saved").field("shape", &self.shape).finish()
    }
}

/// The forward pass's results.
pub struct Forward {
    /// The unit's output, NCHW.
    pub y: Vec<f32>,
    /// Batch mean and (biased) variance per channel, as burn's `batch_norm_train` returns them.
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub saved: Saved,
}

/// Gradients with respect to the input (when asked for), the filters, gamma and beta.
pub struct Grads {
    pub dx: Option<Vec<f32>>,
    pub dweight: Vec<f32>,
    pub dgamma: Vec<f32>,
    pub dbeta: Vec<f32>,
}

/// `dst[m×n]` (row-major, contiguous) `= lhs · rhs`, each operand `[m×k]` / `[k×n]` given with its
/// row and column strides, through the `gemm` crate's kernels on the calling thread.
pub fn gemm_strided(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(dst.len() >= m * n);
    if k == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    assert!(lhs.0.len() > last(m, k, lhs.1, lhs.2) && rhs.0.len() > last(k, n, rhs.1, rhs.2));
    // SAFETY: every index the strides reach is in bounds (checked above), `dst` holds m·n floats
    // and is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Output columns `ox` whose input column `ox·s + kx − p` lies inside `0..w`.
fn valid_columns(s: &UnitShape, kx: usize, wo: usize) -> std::ops::Range<usize> {
    let p = s.pad();
    let lo = p.saturating_sub(kx).div_ceil(s.stride);
    let hi = if s.w + p > kx {
        ((s.w + p - kx - 1) / s.stride + 1).min(wo)
    } else {
        0
    };
    lo.min(hi)..hi
}

/// The transposed im2col matrix `[c·k·k, n·ho·wo]` of an NCHW input (zeros where the filter
/// overhangs the border).
fn im2col(x: &[f32], s: &UnitShape) -> Vec<f32> {
    let (ho, wo) = s.conv_out();
    let (plane, cols) = (ho * wo, s.positions());
    let mut out = vec![0.0f32; s.taps() * cols];
    for (row, dst) in out.chunks_exact_mut(cols).enumerate() {
        let (ci, ky, kx) = (row / (s.k * s.k), row / s.k % s.k, row % s.k);
        let valid = valid_columns(s, kx, wo);
        if valid.is_empty() {
            continue;
        }
        for ni in 0..s.n {
            let src = &x[(ni * s.c + ci) * s.h * s.w..][..s.h * s.w];
            for oy in 0..ho {
                let Some(iy) = (oy * s.stride + ky)
                    .checked_sub(s.pad())
                    .filter(|&y| y < s.h)
                else {
                    continue;
                };
                let d = &mut dst[ni * plane + oy * wo..][..wo];
                let line = &src[iy * s.w..][..s.w];
                let first = valid.start * s.stride + kx - s.pad();
                if s.stride == 1 {
                    d[valid.clone()].copy_from_slice(&line[first..first + valid.len()]);
                } else {
                    for (j, v) in d[valid.clone()].iter_mut().enumerate() {
                        *v = line[first + j * s.stride];
                    }
                }
            }
        }
    }
    out
}

/// The adjoint of [`im2col`]: sums each column entry back onto the input pixel it was read from.
fn col2im(cols: &[f32], s: &UnitShape) -> Vec<f32> {
    let (ho, wo) = s.conv_out();
    let (plane, width) = (ho * wo, s.positions());
    let mut dx = vec![0.0f32; s.n * s.c * s.h * s.w];
    for (row, src) in cols.chunks_exact(width).enumerate() {
        let (ci, ky, kx) = (row / (s.k * s.k), row / s.k % s.k, row % s.k);
        let valid = valid_columns(s, kx, wo);
        if valid.is_empty() {
            continue;
        }
        for ni in 0..s.n {
            let img = &mut dx[(ni * s.c + ci) * s.h * s.w..][..s.h * s.w];
            for oy in 0..ho {
                let Some(iy) = (oy * s.stride + ky)
                    .checked_sub(s.pad())
                    .filter(|&y| y < s.h)
                else {
                    continue;
                };
                let g = &src[ni * plane + oy * wo..][..wo];
                let line = &mut img[iy * s.w..][..s.w];
                let first = valid.start * s.stride + kx - s.pad();
                for (j, v) in g[valid.clone()].iter().enumerate() {
                    line[first + j * s.stride] += v;
                }
            }
        }
    }
    dx
}

/// 2×2 max-pool of each channel-major row (`[n][ho][wo]` → `[n][ho/2][wo/2]`, an odd last row or
/// column dropped), with the winner of each window.
fn pool_rows(z: &[f32], s: &UnitShape) -> (Vec<f32>, Vec<u8>) {
    let (ho, wo) = s.conv_out();
    let (hp, wp) = s.out();
    let mut out = Vec::with_capacity(s.co * s.per_channel());
    let mut arg = Vec::with_capacity(out.capacity());
    for img in z.chunks_exact(ho * wo) {
        for py in 0..hp {
            let (r0, r1) = (&img[2 * py * wo..][..wo], &img[(2 * py + 1) * wo..][..wo]);
            for px in 0..wp {
                let cands = [r0[2 * px], r0[2 * px + 1], r1[2 * px], r1[2 * px + 1]];
                let mut best = 0;
                for (i, v) in cands.iter().enumerate().skip(1) {
                    if *v > cands[best] {
                        best = i;
                    }
                }
                out.push(cands[best]);
                arg.push(best as u8);
            }
        }
    }
    (out, arg)
}

/// Mean and biased variance of a row, accumulated in f64.
fn moments(row: &[f32]) -> (f64, f64) {
    let m = row.len().max(1) as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / m;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m;
    (mean, var)
}

/// Forward pass of the unit on an NCHW input `x`, filters `[co, c, k, k]` and per-channel
/// `gamma`, `beta`.
pub fn forward(
    x: &[f32],
    s: UnitShape,
    weight: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> Forward {
    let cols = im2col(x, &s);
    let positions = s.positions();
    let mut z = vec![0.0f32; s.co * positions];
    gemm_strided(
        [s.co, positions, s.taps()],
        &mut z,
        (weight, s.taps(), 1),
        (&cols, positions, 1),
    );
    let (mut xhat, argmax) = if s.pool {
        pool_rows(&z, &s)
    } else {
        (z, Vec::new())
    };
    let m = s.per_channel();
    let plane = m / s.n.max(1);
    let (mut mean, mut var, mut inv_std) = (vec![0.0; s.co], vec![0.0; s.co], vec![0.0; s.co]);
    let mut y = vec![0.0f32; s.co * m];
    for (c, row) in xhat.chunks_exact_mut(m.max(1)).enumerate().take(s.co) {
        let (mu, v) = moments(row);
        let inv = 1.0 / (v + epsilon).sqrt();
        (mean[c], var[c], inv_std[c]) = (mu as f32, v as f32, inv as f32);
        let (g, b, mu, inv) = (gamma[c], beta[c], mu as f32, inv as f32);
        for (ni, img) in row.chunks_exact_mut(plane.max(1)).enumerate() {
            let out = &mut y[(ni * s.co + c) * plane..][..plane];
            for (value, o) in img.iter_mut().zip(out) {
                *value = (*value - mu) * inv;
                *o = (g * *value + b).max(0.0);
            }
        }
    }
    Forward {
        y,
        mean,
        var,
        saved: Saved {
            shape: s,
            cols,
            weight: weight.to_vec(),
            gamma: gamma.to_vec(),
            beta: beta.to_vec(),
            xhat,
            inv_std,
            argmax,
        },
    }
}

/// Gradient with respect to the pre-batch-norm rows (channel-major) given the output's NCHW
/// gradient `dy`, with dgamma and dbeta.
fn norm_backward(saved: &Saved, dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let s = &saved.shape;
    let m = s.per_channel();
    let plane = m / s.n.max(1);
    let (mut dgamma, mut dbeta) = (vec![0.0f32; s.co], vec![0.0f32; s.co]);
    let mut dz = vec![0.0f32; s.co * m];
    for c in 0..s.co {
        let xhat = &saved.xhat[c * m..][..m];
        let row = &mut dz[c * m..][..m];
        let (g, b) = (saved.gamma[c], saved.beta[c]);
        let (mut sum, mut sum_x) = (0.0f64, 0.0f64);
        for (ni, (img, xs)) in row
            .chunks_exact_mut(plane.max(1))
            .zip(xhat.chunks_exact(plane.max(1)))
            .enumerate()
        {
            let grads = &dy[(ni * s.co + c) * plane..][..plane];
            let (mut part, mut part_x) = (0.0f32, 0.0f32);
            for ((d, &xh), &grad) in img.iter_mut().zip(xs).zip(grads) {
                *d = if g * xh + b > 0.0 { grad } else { 0.0 };
                part += *d;
                part_x += *d * xh;
            }
            sum += part as f64;
            sum_x += part_x as f64;
        }
        (dbeta[c], dgamma[c]) = (sum as f32, sum_x as f32);
        let (mean_d, mean_dx) = ((sum / m as f64) as f32, (sum_x / m as f64) as f32);
        let scale = g * saved.inv_std[c];
        for (d, &xh) in row.iter_mut().zip(xhat) {
            *d = scale * (*d - mean_d - xh * mean_dx);
        }
    }
    (dz, dgamma, dbeta)
}

/// Routes pooled gradients back to the window winners: `[co][n·hp·wp]` → `[co][n·ho·wo]`.
fn unpool_rows(dp: &[f32], saved: &Saved) -> Vec<f32> {
    let s = &saved.shape;
    let (ho, wo) = s.conv_out();
    let (hp, wp) = s.out();
    let mut dz = vec![0.0f32; s.co * s.positions()];
    for (img, (grads, args)) in dz.chunks_exact_mut(ho * wo).zip(
        dp.chunks_exact((hp * wp).max(1))
            .zip(saved.argmax.chunks_exact((hp * wp).max(1))),
    ) {
        for (i, (&g, &a)) in grads.iter().zip(args).enumerate() {
            let (py, px) = (i / wp, i % wp);
            let (dy, dx) = (usize::from(a >> 1), usize::from(a & 1));
            img[(2 * py + dy) * wo + 2 * px + dx] = g;
        }
    }
    dz
}

/// Backward pass: gradients of the unit given the gradient `dy` of its NCHW output.
pub fn backward(saved: &Saved, dy: &[f32], want_dx: bool) -> Grads {
    let s = &saved.shape;
    let (dp, dgamma, dbeta) = norm_backward(saved, dy);
    let dz = if s.pool { unpool_rows(&dp, saved) } else { dp };
    let (taps, positions) = (s.taps(), s.positions());
    let mut dweight = vec![0.0f32; s.co * taps];
    gemm_strided(
        [s.co, taps, positions],
        &mut dweight,
        (&dz, positions, 1),
        (&saved.cols, 1, positions),
    );
    let dx = want_dx.then(|| {
        let mut dcols = vec![0.0f32; taps * positions];
        gemm_strided(
            [taps, positions, s.co],
            &mut dcols,
            (&saved.weight, 1, taps),
            (&dz, positions, 1),
        );
        col2im(&dcols, s)
    });
    Grads {
        dx,
        dweight,
        dgamma,
        dbeta,
    }
}
