//! Slice kernels of the fused training unit: convolution → optional 2×2 max-pool → batch-norm
//! with batch statistics → ReLU, forward and backward, on contiguous `f32` buffers.
//!
//! Between its steps the unit keeps activations channel-major ("CNHW": one row per channel over
//! the whole batch). The convolution is then a matrix product (weights `[Co, C·k·k]` times the
//! transposed im2col matrix `[C·k·k, N·Ho·Wo]`), its two gradients are two more, and the pool
//! and batch-norm reductions run over contiguous rows. The im2col matrix is built for a few
//! images at a time, sized to stay in the core's cache, and rebuilt in the backward pass rather
//! than kept. Inputs and outputs are NCHW, as
//! burn's tensors are. Every kernel is single-threaded: the training step already runs one pass
//! per core.

pub use super::shape::UnitShape;
use super::winograd_pass;
use crate::matrix::gemm_into;
use crate::winograd::Strides;
use std::fmt;
use std::ops::Range;

/// What the backward pass needs from the forward one.
pub struct Saved {
    pub shape: UnitShape,
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

/// Floats of im2col matrix that one block may hold: about a megabyte, so that the block is
/// still in cache when the matrix product reads it.
const BLOCK_FLOATS: usize = 1 << 18;

/// Images per im2col block.
fn block_images(s: &UnitShape) -> usize {
    let (ho, wo) = s.conv_out();
    (BLOCK_FLOATS / (s.taps() * ho * wo).max(1)).clamp(1, s.n.max(1))
}

/// For a stride-1 tap `(ky, kx)` on an `h`×`w` plane: the flat offset from an output pixel to
/// the input pixel it reads, the output rows that read inside the plane, and the output columns
/// that wrap around a row edge instead (to be zeroed).
fn shift(
    s: &UnitShape,
    ky: usize,
    kx: usize,
) -> (isize, std::ops::Range<usize>, std::ops::Range<usize>) {
    let (h, w, p) = (s.h, s.w, s.pad());
    let rows = p.saturating_sub(ky).min(h)..(h + p).saturating_sub(ky).min(h);
    let wrap = if kx < p {
        0..(p - kx).min(w)
    } else {
        w.saturating_sub(kx - p)..w
    };
    let offset = (ky as isize - p as isize) * w as isize + (kx as isize - p as isize);
    (offset, rows, wrap)
}

/// Zeroes columns `cols` of rows `rows` of a plane `w` wide.
fn zero_columns(plane: &mut [f32], w: usize, rows: &Range<usize>, cols: &Range<usize>) {
    if cols.is_empty() || rows.is_empty() {
        return;
    }
    let region = &mut plane[rows.start * w..rows.end * w];
    for c in cols.clone() {
        region[c..].iter_mut().step_by(w).for_each(|v| *v = 0.0);
    }
}

/// For a stride-1 tap: the output range `lo..hi` of a plane that is copied from (or added onto)
/// the input, and the input index `from` where it starts; the rest of the plane reads zero.
fn copied(rows: &Range<usize>, offset: isize, w: usize, plane: usize) -> (usize, usize, usize) {
    let (q0, q1) = (rows.start * w, rows.end * w);
    let lo = q0.max((-offset).max(0) as usize);
    let hi = q1.min((plane as isize - offset).max(0) as usize).max(lo);
    (lo, hi, (lo as isize + offset) as usize)
}

/// Stride-1 convolutions: each tap row of the block is the input plane shifted by a flat offset,
/// so it is copied a whole plane at a time, then the wrapped columns and overhanging rows zeroed.
fn im2col_unit_stride(x: &[f32], s: &UnitShape, images: Range<usize>, out: &mut [f32]) {
    let plane = s.h * s.w;
    for (row, dst_row) in out
        .chunks_exact_mut(images.len() * plane)
        .enumerate()
        .take(s.taps())
    {
        let (ci, ky, kx) = (row / (s.k * s.k), row / s.k % s.k, row % s.k);
        let (offset, rows, wrap) = shift(s, ky, kx);
        let (lo, hi, from) = copied(&rows, offset, s.w, plane);
        for (ni, dst) in images.clone().zip(dst_row.chunks_exact_mut(plane)) {
            let src = &x[(ni * s.c + ci) * plane..][..plane];
            dst[lo..hi].copy_from_slice(&src[from..from + hi - lo]);
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            zero_columns(dst, s.w, &rows, &wrap);
        }
    }
}

/// The adjoint of [`im2col_unit_stride`]: zeroes the wrapped entries of the block, then adds
/// each tap row onto the input plane at its flat offset.
fn col2im_unit_stride(cols: &mut [f32], s: &UnitShape, images: Range<usize>, dx: &mut [f32]) {
    let plane = s.h * s.w;
    for (row, src_row) in cols
        .chunks_exact_mut(images.len() * plane)
        .enumerate()
        .take(s.taps())
    {
        let (ci, ky, kx) = (row / (s.k * s.k), row / s.k % s.k, row % s.k);
        let (offset, rows, wrap) = shift(s, ky, kx);
        let (lo, hi, from) = copied(&rows, offset, s.w, plane);
        for (ni, src) in images.clone().zip(src_row.chunks_exact_mut(plane)) {
            zero_columns(src, s.w, &rows, &wrap);
            let dst = &mut dx[(ni * s.c + ci) * plane..][..plane];
            for (d, v) in dst[from..from + hi - lo].iter_mut().zip(&src[lo..hi]) {
                *d += v;
            }
        }
    }
}

/// Planes at most this large (and every strided convolution) build their im2col rows by a
/// table gather: whole-plane shifts cost more in calls than they save on so few values.
const GATHER_PLANE: usize = 4;

/// Whether the block is built by whole-plane shifts (stride 1, larger planes).
fn by_shift(s: &UnitShape) -> bool {
    s.stride == 1 && s.h * s.w > GATHER_PLANE
}

/// For each tap `(ky, kx)`, the input pixel (index in its plane) that each output pixel reads;
/// a tap that falls outside the input reads index `h·w`, a zero slot after the plane.
fn tap_table(s: &UnitShape) -> Vec<u32> {
    let (ho, wo) = s.conv_out();
    let outside = (s.h * s.w) as u32;
    let mut table = Vec::with_capacity(s.k * s.k * ho * wo);
    for ky in 0..s.k {
        for kx in 0..s.k {
            for oy in 0..ho {
                let iy = (oy * s.stride + ky)
                    .checked_sub(s.pad())
                    .filter(|&y| y < s.h);
                for ox in 0..wo {
                    let ix = (ox * s.stride + kx)
                        .checked_sub(s.pad())
                        .filter(|&x| x < s.w);
                    table.push(match (iy, ix) {
                        (Some(iy), Some(ix)) => (iy * s.w + ix) as u32,
                        _ => outside,
                    });
                }
            }
        }
    }
    table
}

/// The rows of the block by table gather: each input plane `(ni, ci)` is copied once beside a
/// zero slot, then read by the `k·k` tap rows of channel `ci` without a branch.
fn im2col_gather(x: &[f32], s: &UnitShape, images: Range<usize>, out: &mut [f32], table: &[u32]) {
    let taps = s.k * s.k;
    let (plane_in, plane_out) = (s.h * s.w, table.len() / taps);
    let width = images.len() * plane_out;
    let mut padded = vec![0.0f32; plane_in + 1];
    for ci in 0..s.c {
        for (j, ni) in images.clone().enumerate() {
            padded[..plane_in].copy_from_slice(&x[(ni * s.c + ci) * plane_in..][..plane_in]);
            for tap in 0..taps {
                let sources = &table[tap * plane_out..][..plane_out];
                let dst = &mut out[(ci * taps + tap) * width + j * plane_out..][..plane_out];
                for (d, &i) in dst.iter_mut().zip(sources) {
                    *d = padded[i as usize];
                }
            }
        }
    }
}

/// The adjoint of [`im2col_gather`]: the tap rows of channel `ci` are summed into a plane with
/// a discard slot, which is then added onto the input gradient.
fn col2im_scatter(
    cols: &[f32],
    s: &UnitShape,
    images: Range<usize>,
    dx: &mut [f32],
    table: &[u32],
) {
    let taps = s.k * s.k;
    let (plane_in, plane_out) = (s.h * s.w, table.len() / taps);
    let width = images.len() * plane_out;
    let mut acc = vec![0.0f32; plane_in + 1];
    for ci in 0..s.c {
        for (j, ni) in images.clone().enumerate() {
            acc.fill(0.0);
            for tap in 0..taps {
                let sources = &table[tap * plane_out..][..plane_out];
                let src = &cols[(ci * taps + tap) * width + j * plane_out..][..plane_out];
                for (&v, &i) in src.iter().zip(sources) {
                    acc[i as usize] += v;
                }
            }
            let dst = &mut dx[(ni * s.c + ci) * plane_in..][..plane_in];
            for (d, a) in dst.iter_mut().zip(&acc) {
                *d += a;
            }
        }
    }
}

/// The transposed im2col block `[c·k·k, g·ho·wo]` of images `images` of an NCHW input (zeros
/// where the filter overhangs the border), written into `out`.
fn im2col(x: &[f32], s: &UnitShape, images: Range<usize>, out: &mut [f32], table: &[u32]) {
    if by_shift(s) {
        im2col_unit_stride(x, s, images, out);
    } else {
        im2col_gather(x, s, images, out, table);
    }
}

/// The adjoint of [`im2col`]: adds each block entry onto the input pixel it was read from
/// (`cols` is scratch: its wrapped entries may be zeroed).
fn col2im(cols: &mut [f32], s: &UnitShape, images: Range<usize>, dx: &mut [f32], table: &[u32]) {
    if by_shift(s) {
        col2im_unit_stride(cols, s, images, dx);
    } else {
        col2im_scatter(cols, s, images, dx, table);
    }
}

/// 2×2 max-pool of one block (`[co][g][ho][wo]`, rows `width` long) into the channel-major
/// pooled rows (`[co][n][hp][wp]`) at image `first`, an odd last row or column dropped, with
/// the winner of each window (row · 2 + column).
fn pool_block(zb: &[f32], s: &UnitShape, first: usize, out: &mut [f32], arg: &mut [u8]) {
    let (ho, wo) = s.conv_out();
    let (hp, wp) = s.out();
    let (m, pooled) = (s.per_channel(), hp * wp);
    let width = zb.len() / s.co.max(1);
    for (c, row) in zb.chunks_exact(width.max(1)).enumerate() {
        let base = c * m + first * pooled;
        for (j, img) in row.chunks_exact((ho * wo).max(1)).enumerate() {
            let at = base + j * pooled;
            let (o, a) = (&mut out[at..at + pooled], &mut arg[at..at + pooled]);
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
                    o[py * wp + px] = cands[best];
                    a[py * wp + px] = best as u8;
                }
            }
        }
    }
}

/// `Σ f(a_i, b_i)` over two equal-length rows: sixteen f32 lanes (so that it vectorises) over
/// blocks of 4,096 values, the blocks added in f64. Always inlined, so that it vectorises for
/// the caller's target features (`model::vector::wide`).
#[inline(always)]
pub(super) fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for (a, b) in a.chunks(4096).zip(b.chunks(4096)) {
        let mut lanes = [0.0f32; 16];
        let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
        let tail: f32 = a16
            .remainder()
            .iter()
            .zip(b16.remainder())
            .map(|(&x, &y)| f(x, y))
            .sum();
        for (x, y) in a16.zip(b16) {
            for l in 0..16 {
                lanes[l] += f(x[l], y[l]);
            }
        }
        total += lanes.iter().sum::<f32>() as f64 + tail as f64;
    }
    total
}

/// Mean and biased variance of a row.
fn moments(row: &[f32]) -> (f64, f64) {
    let m = row.len().max(1) as f64;
    let mean = lane_sum(row, row, |v, _| v) / m;
    let mu = mean as f32;
    let var = lane_sum(row, row, |v, _| (v - mu) * (v - mu)) / m;
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
    let positions = s.positions();
    let (ho, wo) = s.conv_out();
    let per_image = ho * wo;
    let group = block_images(&s);
    let mut winograd = winograd_pass::fits(&s).then(|| winograd_pass::Pass::new(&s, weight, false));
    let mut cols = vec![
        0.0f32;
        if winograd.is_some() {
            0
        } else {
            s.taps() * group * per_image
        }
    ];
    let table = if by_shift(&s) {
        Vec::new()
    } else {
        tap_table(&s)
    };
    // Without a pool the product lands in its rows directly; with one, each block is pooled
    // while it is still in cache.
    let mut xhat = vec![0.0f32; s.co * s.per_channel()];
    let mut argmax = vec![0u8; if s.pool { xhat.len() } else { 0 }];
    let mut block = block_buffer(&s, group);
    for first in (0..s.n).step_by(group) {
        let images = first..(first + group).min(s.n);
        let width = images.len() * per_image;
        let (dst, rs) = if s.pool {
            (&mut block[..s.co * width], width)
        } else {
            (&mut xhat[first * per_image..], positions)
        };
        if let Some(pass) = winograd.as_mut() {
            pass.forward(x, images, dst, rs);
        } else {
            im2col(x, &s, images, &mut cols, &table);
            gemm_into(
                [s.co, width, s.taps()],
                dst,
                rs,
                false,
                (weight, s.taps(), 1),
                (&cols, width, 1),
            );
        }
        if s.pool {
            pool_block(&block[..s.co * width], &s, first, &mut xhat, &mut argmax);
        }
    }
    let m = s.per_channel();
    let plane = m / s.n.max(1);
    let (mut mean, mut var, mut inv_std) = (vec![0.0; s.co], vec![0.0; s.co], vec![0.0; s.co]);
    for (c, row) in xhat.chunks_exact_mut(m.max(1)).enumerate().take(s.co) {
        let (mu, v) = moments(row);
        let inv = 1.0 / (v + epsilon).sqrt();
        (mean[c], var[c], inv_std[c]) = (mu as f32, v as f32, inv as f32);
        let (mu, inv) = (mu as f32, inv as f32);
        row.iter_mut()
            .for_each(|value| *value = (*value - mu) * inv);
    }
    let mut y = Vec::with_capacity(s.co * m);
    for ni in 0..s.n {
        for c in 0..s.co {
            let (g, b) = (gamma[c], beta[c]);
            let xs = &xhat[c * m + ni * plane..][..plane];
            y.extend(xs.iter().map(|&v| (g * v + b).max(0.0)));
        }
    }
    Forward {
        y,
        mean,
        var,
        saved: Saved {
            shape: s,
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
    let mut dz = Vec::with_capacity(s.co * m);
    for c in 0..s.co {
        let xhat = &saved.xhat[c * m..][..m];
        let (g, b) = (saved.gamma[c], saved.beta[c]);
        for (ni, xs) in xhat.chunks_exact(plane.max(1)).enumerate() {
            let grads = &dy[(ni * s.co + c) * plane..][..plane];
            dz.extend(
                xs.iter()
                    .zip(grads)
                    .map(|(&xh, &grad)| if g * xh + b > 0.0 { grad } else { 0.0 }),
            );
        }
        let row = &dz[c * m..];
        let sum = lane_sum(row, row, |d, _| d);
        let sum_x = lane_sum(row, xhat, |d, x| d * x);
        (dbeta[c], dgamma[c]) = (sum as f32, sum_x as f32);
        let (mean_d, mean_dx) = ((sum / m as f64) as f32, (sum_x / m as f64) as f32);
        let scale = g * saved.inv_std[c];
        for (d, &xh) in dz[c * m..].iter_mut().zip(xhat) {
            *d = scale * (*d - mean_d - xh * mean_dx);
        }
    }
    (dz, dgamma, dbeta)
}

/// Routes the pooled gradients of images `images` back to their window winners: a block
/// `[co][g·ho·wo]` (zero elsewhere), written into `dz`.
fn unpool_block(dp: &[f32], saved: &Saved, images: Range<usize>, dz: &mut [f32]) {
    let s = &saved.shape;
    let (ho, wo) = s.conv_out();
    let (hp, wp) = s.out();
    let (m, pooled) = (s.per_channel(), hp * wp);
    let width = images.len() * ho * wo;
    dz[..s.co * width].fill(0.0);
    for (c, row) in dz.chunks_exact_mut(width.max(1)).enumerate().take(s.co) {
        for (j, img) in row.chunks_exact_mut((ho * wo).max(1)).enumerate() {
            let at = c * m + (images.start + j) * pooled;
            let (g, a) = (&dp[at..at + pooled], &saved.argmax[at..at + pooled]);
            for (i, (&g, &a)) in g.iter().zip(a).enumerate() {
                let (py, px) = (i / wp.max(1), i % wp.max(1));
                let (dy, dx) = (usize::from(a >> 1), usize::from(a & 1));
                img[(2 * py + dy) * wo + 2 * px + dx] = g;
            }
        }
    }
}

/// The gradient rows `[co][images·ho·wo]` of the convolution's output for block `images`, and
/// their row stride: un-pooled into `block` after a pool, else a view of `dz` itself.
fn gradient_rows<'a>(
    dz: &'a [f32],
    saved: &Saved,
    images: Range<usize>,
    block: &'a mut [f32],
) -> (&'a [f32], usize) {
    let s = &saved.shape;
    let (ho, wo) = s.conv_out();
    if s.pool {
        let width = images.len() * ho * wo;
        unpool_block(dz, saved, images, block);
        (&block[..], width)
    } else {
        (&dz[images.start * ho * wo..], s.positions())
    }
}

/// A buffer for the full-size convolution output of `group` images, which a pool needs beside
/// the pooled rows (forward: before pooling; backward: un-pooled); empty without a pool.
fn block_buffer(s: &UnitShape, group: usize) -> Vec<f32> {
    let (ho, wo) = s.conv_out();
    vec![0.0f32; if s.pool { s.co * group * ho * wo } else { 0 }]
}

/// The convolution's part of [`backward`] through Winograd: the filter gradient, and the input
/// gradient into `dx` when given, from the channel-major gradient `dz` before the pool.
fn backward_winograd(saved: &Saved, dz: &[f32], x: &[f32], dx: Option<&mut [f32]>) -> Vec<f32> {
    let s = &saved.shape;
    let (ho, wo) = s.conv_out();
    let group = block_images(s);
    let mut block = block_buffer(s, group);
    let dy = |images: Range<usize>, out: &mut Vec<f32>| {
        let count = images.len();
        let (rows, channel) = gradient_rows(dz, saved, images, &mut block);
        let at = Strides {
            image: ho * wo,
            channel,
        };
        winograd_pass::to_channels_last(rows, at, count, s.co, ho * wo, out);
    };
    winograd_pass::backward(s, &saved.weight, x, group, dy, dx)
}

/// The convolution's part of [`backward`] through im2col blocks and two matrix products.
fn backward_im2col(saved: &Saved, dz: &[f32], x: &[f32], mut dx: Option<&mut [f32]>) -> Vec<f32> {
    let s = &saved.shape;
    let taps = s.taps();
    let (ho, wo) = s.conv_out();
    let per_image = ho * wo;
    let group = block_images(s);
    let mut cols = vec![0.0f32; taps * group * per_image];
    let table = if by_shift(s) {
        Vec::new()
    } else {
        tap_table(s)
    };
    // The filter gradient is accumulated transposed (`[taps, co]`): with the few output channels
    // as the product's narrow side, the `gemm` kernels run two to three times faster.
    let mut dweight_t = vec![0.0f32; taps * s.co];
    let mut block = block_buffer(s, group);
    for first in (0..s.n).step_by(group) {
        let images = first..(first + group).min(s.n);
        let width = images.len() * per_image;
        let (rows, rs) = gradient_rows(dz, saved, images.clone(), &mut block);
        im2col(x, s, images.clone(), &mut cols, &table);
        gemm_into(
            [taps, s.co, width],
            &mut dweight_t,
            s.co,
            first > 0,
            (&cols, width, 1),
            (rows, 1, rs),
        );
        if let Some(dx) = dx.as_deref_mut() {
            gemm_into(
                [taps, width, s.co],
                &mut cols,
                width,
                false,
                (&saved.weight, 1, taps),
                (rows, rs, 1),
            );
            col2im(&mut cols, s, images, dx, &table);
        }
    }
    (0..s.co * taps)
        .map(|i| dweight_t[(i % taps) * s.co + i / taps])
        .collect()
}

/// Backward pass: gradients of the unit given its input `x` (NCHW, as passed forward) and the
/// gradient `dy` of its NCHW output.
pub fn backward(saved: &Saved, x: &[f32], dy: &[f32], want_dx: bool) -> Grads {
    let s = &saved.shape;
    let (dz, dgamma, dbeta) = norm_backward(saved, dy);
    let mut dx = want_dx.then(|| vec![0.0f32; s.n * s.c * s.h * s.w]);
    let dweight = if winograd_pass::fits(s) {
        backward_winograd(saved, &dz, x, dx.as_deref_mut())
    } else {
        backward_im2col(saved, &dz, x, dx.as_deref_mut())
    };
    Grads {
        dx,
        dweight,
        dgamma,
        dbeta,
    }
}
