//! The compiled path's 1×1 convolutions: `out = act(scale · (x · W) + shift) (+ skip)` for
//! channels-last activations `x` (`[m, k]`: one row per pixel), with `W` (`[k, n]`) packed once,
//! at load time, into panels of 16 output channels, so that no call packs or copies anything.
//!
//! Each tile is [`ROWS`] pixels × 16 channels held in registers across the whole `k` sum (one
//! broadcast of an input value and one fused multiply-add per row and step, the panel's row
//! loaded once for all of them), then scaled, shifted, clamped and, before a residual sum, added
//! to the block's input on the way out: the layer writes its output once, and the residual sum
//! is no separate pass. Written over [`Vector`], so it runs on AVX-512, AVX2 + FMA or plain
//! arrays, whichever the CPU has.

use crate::vector::{Kernel, LANES, Vector, dispatch_closure_free};

/// Pixels per tile: 6 rows × 16 channels is 12 of AVX2's 16 registers (6 of AVX-512's 32).
const ROWS: usize = 6;

/// Weights of at most this many floats stay in cache while every row block passes over all of
/// them; larger ones are taken one panel at a time over all rows.
const ROWS_FIRST: usize = 64 * 1024;

/// `W` (`[k, n]`) as `⌈n / 16⌉` panels of `[k, 16]`, the last one padded with zeros.
pub struct Packed {
    k: usize,
    n: usize,
    panels: Vec<f32>,
}

impl Packed {
    /// Pack row-major `w` (`[k, n]`).
    pub fn new(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "pointwise weights are [k, n]");
        let count = n.div_ceil(LANES);
        let mut panels = vec![0f32; count * k * LANES];
        for (p, panel) in panels.chunks_exact_mut(k * LANES).enumerate() {
            for (row, dst) in panel.chunks_exact_mut(LANES).enumerate() {
                let cols = p * LANES..(p * LANES + LANES).min(n);
                dst[..cols.len()].copy_from_slice(&w[row * n..][cols]);
            }
        }
        Self { k, n, panels }
    }

    /// Input channels.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// What happens to each output on its way out of the registers: `act(scale · v + shift)`, with
/// `act` a clamp to `[lo, hi]`, then `+ skip` when there is one.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    pub lo: f32,
    pub hi: f32,
    /// `[m, n]`, added after the clamp (a residual block's input).
    pub skip: Option<&'a [f32]>,
}

/// `out` (`[m, n]`) = the epilogue of `x · W` for `x` `[m, k]`, its rows in `parts` blocks side
/// by side on the thread pool (one block, on the calling thread, for `parts` ≤ 1).
pub fn product(x: &[f32], w: &Packed, epilogue: Epilogue, out: &mut [f32], parts: usize) {
    let (k, n) = (w.k, w.n.max(1));
    let m = out.len() / n;
    assert!(x.len() >= m * k && out.len() == m * w.n);
    assert!(epilogue.scale.len() >= w.n && epilogue.shift.len() >= w.n);
    assert!(epilogue.skip.is_none_or(|s| s.len() == out.len()));
    let block = m.div_ceil(parts.max(1)).next_multiple_of(ROWS).max(ROWS);
    crate::parts::each_block(out, block * n, |i, out| {
        let rows = i * block..i * block + out.len() / n;
        dispatch_closure_free(Product {
            x: &x[rows.start * k..rows.end * k],
            w,
            epilogue: Epilogue {
                skip: epilogue.skip.map(|s| &s[rows.start * n..rows.end * n]),
                ..epilogue
            },
            out,
        })
    });
}

struct Product<'a> {
    x: &'a [f32],
    w: &'a Packed,
    epilogue: Epilogue<'a>,
    out: &'a mut [f32],
}

impl Kernel for Product<'_> {
    #[inline(always)]
    fn run<V: Vector>(self) {
        let Self {
            x,
            w,
            epilogue,
            out,
        } = self;
        let (k, n) = (w.k, w.n);
        let m = out.len() / n.max(1);
        let panels = n.div_ceil(LANES);
        // Plain loops, no closure: a closure is compiled out of line, without the dispatch's
        // vector features, and every intrinsic in it becomes a call.
        if k * n <= ROWS_FIRST {
            for r0 in (0..m).step_by(ROWS) {
                for p in 0..panels {
                    tile::<V>(x, w, (r0, p), epilogue, out);
                }
            }
        } else {
            for p in 0..panels {
                for r0 in (0..m).step_by(ROWS) {
                    tile::<V>(x, w, (r0, p), epilogue, out);
                }
            }
        }
    }
}

/// Rows `r0..r0 + 6` (fewer at the end) of panel `p`'s sixteen channels, into `out`.
#[inline(always)]
fn tile<V: Vector>(x: &[f32], w: &Packed, (r0, p): (usize, usize), e: Epilogue, out: &mut [f32]) {
    let (k, n) = (w.k, w.n);
    let m = out.len() / n;
    let panel = &w.panels[p * k * LANES..][..k * LANES];
    let rows = ROWS.min(m - r0);
    if rows == ROWS {
        let sums = tile_sums::<V, ROWS>(&x[r0 * k..][..ROWS * k], panel, k);
        store(&sums, r0, p, n, e, out);
    } else {
        for r in r0..r0 + rows {
            let sums = tile_sums::<V, 1>(&x[r * k..][..k], panel, k);
            store(&sums, r, p, n, e, out);
        }
    }
}

/// The `R` rows of `x` (`[R, k]`) times one panel (`[k, 16]`): sixteen channels of `R` pixels.
#[inline(always)]
fn tile_sums<V: Vector, const R: usize>(x: &[f32], panel: &[f32], k: usize) -> [V; R] {
    let rows: [&[f32]; R] = std::array::from_fn(|r| &x[r * k..][..k]);
    let mut acc = [V::splat(0.0); R];
    for (i, b) in (0..k).zip(panel.chunks_exact(LANES)) {
        let b = V::load(b);
        for (a, row) in acc.iter_mut().zip(&rows) {
            *a = V::splat(row[i]).mul_add(b, *a);
        }
    }
    acc
}

/// Rows `r0..r0 + R` of panel `p`'s channels, through the epilogue, into `out` (`[m, n]`).
#[inline(always)]
fn store<V: Vector, const R: usize>(
    sums: &[V; R],
    r0: usize,
    p: usize,
    n: usize,
    e: Epilogue,
    out: &mut [f32],
) {
    let c0 = p * LANES;
    let lanes = LANES.min(n - c0);
    let scale = V::load(&e.scale[c0..][..lanes]);
    let shift = V::load(&e.shift[c0..][..lanes]);
    for (r, v) in sums.iter().enumerate() {
        let at = (r0 + r) * n + c0;
        let mut y = v.mul_add(scale, shift).clamp(e.lo, e.hi);
        if let Some(skip) = e.skip {
            y = y.add(V::load(&skip[at..][..lanes]));
        }
        y.store(&mut out[at..][..lanes]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product the plain way, in f64.
    fn reference(x: &[f32], w: &[f32], [m, k, n]: [usize; 3], e: Epilogue) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let s: f64 = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[i * n + c] as f64)
                    .sum();
                let y = (s as f32 * e.scale[c] + e.shift[c]).clamp(e.lo, e.hi);
                out[r * n + c] = y + e.skip.map_or(0.0, |s| s[r * n + c]);
            }
        }
        out
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i + seed) * 7919 + seed * 31) % 1009) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn the_packed_product_equals_the_plain_one_on_odd_shapes() {
        // Rows off the 6-row tiles, channels off the 16-lane panels, and weights on both sides
        // of the rows-first limit; with and without a clamp and a residual input.
        let shapes = [
            [1, 1, 1],
            [7, 3, 5],
            [13, 16, 24],
            [49, 1152, 192],
            [50, 320, 40],
            [37, 24, 144],
            [12, 96, 16],
        ];
        for (s, [m, k, n]) in shapes.into_iter().enumerate() {
            let x = values(m * k, s);
            let w = values(k * n, s + 1);
            let scale = values(n, s + 2);
            let shift = values(n, s + 3);
            let skip = values(m * n, s + 4);
            for (lo, hi, with_skip) in [(0.0, 6.0, false), (f32::MIN, f32::MAX, true)] {
                let e = Epilogue {
                    scale: &scale,
                    shift: &shift,
                    lo,
                    hi,
                    skip: with_skip.then_some(&skip[..]),
                };
                let want = reference(&x, &w, [m, k, n], e);
                // In one block, and in three side by side (the same values, to the bit).
                let packed = Packed::new(&w, k, n);
                let mut got = vec![f32::NAN; m * n];
                product(&x, &packed, e, &mut got, 1);
                for (i, (g, v)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - v).abs() <= 1e-4 * (1.0 + v.abs()) * (k as f32).sqrt(),
                        "[{m}, {k}, {n}] value {i}: {g} vs {v}"
                    );
                }
                let mut split = vec![f32::NAN; m * n];
                product(&x, &packed, e, &mut split, 3);
                assert_eq!(
                    split.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }
}
