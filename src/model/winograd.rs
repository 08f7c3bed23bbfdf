//! Winograd's minimal filtering F(2×2, 3×3) for 3×3, stride-1, padding-1 convolutions of
//! channels-last (NHWC) activations: each 2×2 block of outputs comes from a 4×4 input tile with
//! 16 multiplications per channel pair instead of 36.
//!
//! With the transforms of Lavin & Gray (2016), `Y = Aᵀ [Σ_c (G g Gᵀ) ⊙ (Bᵀ d B)] A`:
//! the filters are transformed once, when the layer is compiled (`U[ξ] = [c_in × c_out]` for
//! each of the 16 positions ξ of the 4×4 tile); a block of images is transformed into
//! `V[ξ] = [tiles × c_in]` (additions only), the sum over input channels is 16 matrix products
//! `M[ξ] = V[ξ] · U[ξ]`, and the output transform (additions only) turns each tile's 16 values
//! per channel into its 2×2 outputs. When a 2×2 max-pool follows, the tiles are exactly its
//! windows, so the output transform pools too, and it applies the per-channel epilogue, so the
//! convolution's full-size output is never written. All kernels run on the calling thread and
//! vectorise over channels.

use super::fused::kernels::gemm_into;

/// Positions of the 4×4 transformed tile.
const TAPS: usize = 16;

/// A 3×3 filter bank in the Winograd domain: `[16][c_in][c_out]`.
pub struct Filters {
    pub c_in: usize,
    pub c_out: usize,
    u: Vec<f32>,
}

impl Filters {
    /// Transforms filters stored `[(ky·3 + kx)·c_in + ci][c_out]` (the im2col order of NHWC).
    pub fn new(weight: &[f32], c_in: usize, c_out: usize) -> Self {
        assert_eq!(weight.len(), 9 * c_in * c_out);
        let mut u = vec![0f32; TAPS * c_in * c_out];
        for ci in 0..c_in {
            for co in 0..c_out {
                let tap = |ky: usize, kx: usize| weight[((ky * 3 + kx) * c_in + ci) * c_out + co];
                let rows = filter_transform([0, 1, 2].map(|ky| [0, 1, 2].map(|kx| tap(ky, kx))));
                for (xi, value) in rows.into_iter().flatten().enumerate() {
                    u[(xi * c_in + ci) * c_out + co] = value;
                }
            }
        }
        Self { c_in, c_out, u }
    }
}

/// `G g Gᵀ` of one 3×3 filter, with `G` rows (1,0,0), (½,½,½), (½,−½,½), (0,0,1).
fn filter_transform(g: [[f32; 3]; 3]) -> [[f32; 4]; 4] {
    let apply = |[a, b, c]: [f32; 3]| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    // G g, column by column, then each of its rows times Gᵀ.
    let columns = [0, 1, 2].map(|kx| apply([g[0][kx], g[1][kx], g[2][kx]]));
    [0, 1, 2, 3].map(|r| apply([columns[0][r], columns[1][r], columns[2][r]]))
}

/// Tiles per side for a convolution output of `o`×`o`: with `pool`, the 2×2 windows of the
/// pool (an odd last row and column dropped, as burn's `max_pool2d` does), otherwise ⌈o/2⌉.
pub fn tiles_per_side(o: usize, pool: bool) -> usize {
    if pool { o / 2 } else { o.div_ceil(2) }
}

/// One block of whole images through the convolution, pool and epilogue.
pub struct Block<'a> {
    pub filters: &'a Filters,
    /// Per-channel `(scale · x + shift).clamp(lo, hi)` after the pool.
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    pub clamp: (f32, f32),
    pub pool: bool,
}

/// Scratch buffers reused across blocks.
#[derive(Default)]
pub struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
    padded: Vec<f32>,
}

impl Block<'_> {
    /// `x`: `count` images `[size, size, c_in]`; `out`: `count` images `[side, side, c_out]`
    /// where `side` is `size / 2` with the pool, `size` without.
    pub fn run(
        &self,
        x: &[f32],
        count: usize,
        size: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { self.run_avx512(x, count, size, out, scratch) };
        }
        self.run_with::<Lanes>(x, count, size, out, scratch);
    }

    /// [`Self::run_with`] on AVX-512 registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512(
        &self,
        x: &[f32],
        count: usize,
        size: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) {
        self.run_with::<avx512::F32x16>(x, count, size, out, scratch);
    }

    /// [`Self::run`] with the transforms on vectors `V`.
    #[inline(always)]
    fn run_with<V: Vector>(
        &self,
        x: &[f32],
        count: usize,
        size: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) {
        let (ci, co) = (self.filters.c_in, self.filters.c_out);
        let t = tiles_per_side(size, self.pool);
        let tiles = count * t * t;
        if tiles == 0 {
            return;
        }
        scratch.v.resize(tiles * TAPS * ci, 0.0);
        scratch.m.resize(tiles * TAPS * co, 0.0);
        input_transform::<V>(x, count, size, ci, t, &mut scratch.padded, &mut scratch.v);
        for xi in 0..TAPS {
            gemm_into(
                [tiles, co, ci],
                &mut scratch.m[xi * co..],
                TAPS * co,
                false,
                (&scratch.v[xi * ci..], TAPS * ci, 1),
                (&self.filters.u[xi * ci * co..][..ci * co], co, 1),
            );
        }
        self.output_transform::<V>(&scratch.m, count, size, t, out);
    }

    /// The 2×2 outputs (or their maximum) of every tile, through the epilogue, into `out`.
    #[inline(always)]
    fn output_transform<V: Vector>(
        &self,
        m: &[f32],
        count: usize,
        o: usize,
        t: usize,
        out: &mut [f32],
    ) {
        let co = self.filters.c_out;
        let (lo, hi) = self.clamp;
        let side = if self.pool { o / 2 } else { o };
        for img in 0..count {
            for ty in 0..t {
                for tx in 0..t {
                    let tile = (img * t + ty) * t + tx;
                    let mt = &m[tile * TAPS * co..][..TAPS * co];
                    let dst = |oy: usize, ox: usize| ((img * side + oy) * side + ox) * co;
                    for ch in (0..co).step_by(LANES) {
                        let w = LANES.min(co - ch);
                        let ld = |xi: usize| V::load(&mt[xi * co + ch..][..w]);
                        let y = transform_out([
                            ld(0),
                            ld(1),
                            ld(2),
                            ld(3),
                            ld(4),
                            ld(5),
                            ld(6),
                            ld(7),
                            ld(8),
                            ld(9),
                            ld(10),
                            ld(11),
                            ld(12),
                            ld(13),
                            ld(14),
                            ld(15),
                        ]);
                        let scale = V::load(&self.scale[ch..ch + w]);
                        let shift = V::load(&self.shift[ch..ch + w]);
                        let epilogue = |v: V| v.mul_add(scale, shift).clamp(lo, hi);
                        if self.pool {
                            let max = y[0].max(y[1]).max(y[2].max(y[3]));
                            epilogue(max).store(&mut out[dst(ty, tx) + ch..][..w]);
                            continue;
                        }
                        for (i, yi) in y.into_iter().enumerate() {
                            let (oy, ox) = (2 * ty + i / 2, 2 * tx + i % 2);
                            if oy < o && ox < o {
                                epilogue(yi).store(&mut out[dst(oy, ox) + ch..][..w]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Channels processed together: one AVX-512 register.
const LANES: usize = 16;

/// Sixteen channels as a plain array: the portable [`Vector`].
type Lanes = [f32; LANES];

/// Up to [`LANES`] channels, the operations the transforms and the epilogue need. The
/// transforms are written once over this trait and compiled for a plain array (any CPU) and
/// for an AVX-512 register (chosen at run time).
trait Vector: Copy {
    /// `src.len()` ≤ [`LANES`] values, the rest zero.
    fn load(src: &[f32]) -> Self;
    /// The first `dst.len()` ≤ [`LANES`] values into `dst`.
    fn store(self, dst: &mut [f32]);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn max(self, o: Self) -> Self;
    /// `self · a + b`.
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn clamp(self, lo: f32, hi: f32) -> Self;
}

impl Vector for Lanes {
    #[inline(always)]
    fn load(src: &[f32]) -> Self {
        let mut v = [0f32; LANES];
        v[..src.len()].copy_from_slice(src);
        v
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32]) {
        let w = dst.len();
        dst.copy_from_slice(&self[..w]);
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        std::array::from_fn(|l| self[l] + o[l])
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        std::array::from_fn(|l| self[l] - o[l])
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        std::array::from_fn(|l| self[l].max(o[l]))
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        std::array::from_fn(|l| self[l] * a[l] + b[l])
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        std::array::from_fn(|l| self[l].clamp(lo, hi))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{LANES, Vector};
    use std::arch::x86_64::*;

    /// Sixteen channels in one AVX-512 register. Values of this type are only made inside the
    /// `*_avx512` functions of this module's parent, which run only after
    /// `is_x86_feature_detected!("avx512f")`; that is what makes the intrinsics below sound.
    #[derive(Clone, Copy)]
    pub(super) struct F32x16(__m512);

    /// The lanes of a `len`-value slice.
    #[inline(always)]
    fn mask(len: usize) -> __mmask16 {
        debug_assert!(len <= LANES);
        ((1u32 << len.min(LANES)) - 1) as __mmask16
    }

    impl Vector for F32x16 {
        #[inline(always)]
        fn load(src: &[f32]) -> Self {
            // SAFETY: AVX-512F is present (see the type); the mask reads only `src.len()` floats.
            unsafe { Self(_mm512_maskz_loadu_ps(mask(src.len()), src.as_ptr())) }
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32]) {
            // SAFETY: AVX-512F is present; the mask writes only `dst.len()` floats.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask(dst.len()), self.0) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe { Self(_mm512_add_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe { Self(_mm512_sub_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe { Self(_mm512_max_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe { Self(_mm512_fmadd_ps(self.0, a.0, b.0)) }
        }
        #[inline(always)]
        fn clamp(self, lo: f32, hi: f32) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe {
                Self(_mm512_min_ps(
                    _mm512_max_ps(self.0, _mm512_set1_ps(lo)),
                    _mm512_set1_ps(hi),
                ))
            }
        }
    }
}

/// `V = Bᵀ d B` of every tile into `v` (`[tiles][16][c]`), zeros off the edge of the image.
#[inline(always)]
fn input_transform<V: Vector>(
    x: &[f32],
    count: usize,
    size: usize,
    c: usize,
    t: usize,
    padded: &mut Vec<f32>,
    v: &mut [f32],
) {
    // The images with a zero border, `side` = 2t + 2 pixels a side, so every tile reads four
    // runs of four pixels and none is off the edge.
    let side = 2 * t + 2;
    padded.clear();
    padded.resize(count * side * side * c, 0.0);
    let (rows, cols) = (size.min(side - 1), size.min(side - 1));
    for img in 0..count {
        for iy in 0..rows {
            let src = &x[(img * size + iy) * size * c..][..cols * c];
            padded[((img * side + iy + 1) * side + 1) * c..][..cols * c].copy_from_slice(src);
        }
    }
    let padded = &padded[..];
    for img in 0..count {
        for ty in 0..t {
            for tx in 0..t {
                let tile = (img * t + ty) * t + tx;
                let corner = ((img * side + 2 * ty) * side + 2 * tx) * c;
                let din = &padded[corner..][..(3 * side + 4) * c];
                let vt = &mut v[tile * TAPS * c..][..TAPS * c];
                for ch in (0..c).step_by(LANES) {
                    let w = LANES.min(c - ch);
                    let ld = |p: usize| V::load(&din[((p / 4) * side + p % 4) * c + ch..][..w]);
                    let s = transform_in([
                        ld(0),
                        ld(1),
                        ld(2),
                        ld(3),
                        ld(4),
                        ld(5),
                        ld(6),
                        ld(7),
                        ld(8),
                        ld(9),
                        ld(10),
                        ld(11),
                        ld(12),
                        ld(13),
                        ld(14),
                        ld(15),
                    ]);
                    for (xi, val) in s.into_iter().enumerate() {
                        val.store(&mut vt[xi * c + ch..][..w]);
                    }
                }
            }
        }
    }
}

/// `Bᵀ d B` of one 4×4 tile (row-major), with `Bᵀ` rows (1,0,−1,0), (0,1,1,0), (0,−1,1,0),
/// (0,1,0,−1).
#[inline(always)]
fn transform_in<V: Vector>(d: [V; TAPS]) -> [V; TAPS] {
    // Rows of Bᵀ d.
    let r = |j: usize| {
        [
            d[j].sub(d[8 + j]),
            d[4 + j].add(d[8 + j]),
            d[8 + j].sub(d[4 + j]),
            d[4 + j].sub(d[12 + j]),
        ]
    };
    let (c0, c1, c2, c3) = (r(0), r(1), r(2), r(3));
    // Each row times B: (r0 − r2, r1 + r2, r2 − r1, r1 − r3).
    let row = |i: usize| {
        [
            c0[i].sub(c2[i]),
            c1[i].add(c2[i]),
            c2[i].sub(c1[i]),
            c1[i].sub(c3[i]),
        ]
    };
    let (s0, s1, s2, s3) = (row(0), row(1), row(2), row(3));
    [
        s0[0], s0[1], s0[2], s0[3], s1[0], s1[1], s1[2], s1[3], s2[0], s2[1], s2[2], s2[3], s3[0],
        s3[1], s3[2], s3[3],
    ]
}

/// `Aᵀ M A` of one tile, with `Aᵀ` rows (1,1,1,0), (0,1,−1,−1): output `i` is the tile's
/// pixel `(i / 2, i % 2)`.
#[inline(always)]
fn transform_out<V: Vector>(m: [V; TAPS]) -> [V; 4] {
    // Aᵀ M, column j: (m0j + m1j + m2j, m1j − m2j − m3j).
    let a = |j: usize| m[j].add(m[4 + j]).add(m[8 + j]);
    let b = |j: usize| m[4 + j].sub(m[8 + j]).sub(m[12 + j]);
    let (a0, a1, a2, a3) = (a(0), a(1), a(2), a(3));
    let (b0, b1, b2, b3) = (b(0), b(1), b(2), b(3));
    [
        a0.add(a1).add(a2),
        a1.sub(a2).sub(a3),
        b0.add(b1).add(b2),
        b1.sub(b2).sub(b3),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Direct 3×3, padding-1 convolution, pool and epilogue, NHWC.
    fn reference(
        x: &[f32],
        (n, size, ci, co, pool): (usize, usize, usize, usize, bool),
        w: &[f32],
        (scale, shift): (&[f32], &[f32]),
    ) -> Vec<f32> {
        let mut y = vec![0f32; n * size * size * co];
        for img in 0..n {
            for oy in 0..size {
                for ox in 0..size {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) =
                                (oy as isize + ky as isize - 1, ox as isize + kx as isize - 1);
                            if iy < 0 || ix < 0 || iy >= size as isize || ix >= size as isize {
                                continue;
                            }
                            for c in 0..ci {
                                let a =
                                    x[((img * size + iy as usize) * size + ix as usize) * ci + c];
                                for o in 0..co {
                                    y[((img * size + oy) * size + ox) * co + o] +=
                                        a * w[((ky * 3 + kx) * ci + c) * co + o];
                                }
                            }
                        }
                    }
                }
            }
        }
        let side = if pool { size / 2 } else { size };
        let mut out = vec![0f32; n * side * side * co];
        for img in 0..n {
            for py in 0..side {
                for px in 0..side {
                    for o in 0..co {
                        let v = if pool {
                            let at = |dy: usize, dx: usize| {
                                y[((img * size + 2 * py + dy) * size + 2 * px + dx) * co + o]
                            };
                            at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1))
                        } else {
                            y[((img * size + py) * size + px) * co + o]
                        };
                        out[((img * side + py) * side + px) * co + o] =
                            (v * scale[o] + shift[o]).max(0.0);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn winograd_equals_a_direct_convolution_with_pool_and_epilogue_on_odd_sizes() {
        let mut seed = 11;
        for (n, size, ci, co, pool) in [
            (2, 5, 3, 4, false),
            (3, 7, 5, 6, true),
            (1, 1, 2, 3, false),
            (2, 2, 8, 8, true),
            (2, 16, 32, 32, true),
            (1, 9, 17, 33, false),
            (2, 3, 4, 5, true),
        ] {
            let x = rand(&mut seed, n * size * size * ci);
            let w = rand(&mut seed, 9 * ci * co);
            let scale = rand(&mut seed, co);
            let shift = rand(&mut seed, co);
            let want = reference(&x, (n, size, ci, co, pool), &w, (&scale, &shift));
            let filters = Filters::new(&w, ci, co);
            let block = Block {
                filters: &filters,
                scale: &scale,
                shift: &shift,
                clamp: (0.0, f32::INFINITY),
                pool,
            };
            let mut got = vec![f32::NAN; want.len()];
            block.run(&x, n, size, &mut got, &mut Scratch::default());
            // The portable path too (`run` takes AVX-512 registers where the CPU has them).
            let mut portable = vec![f32::NAN; want.len()];
            block.run_with::<Lanes>(&x, n, size, &mut portable, &mut Scratch::default());
            got.extend(portable);
            let want = [want.clone(), want].concat();
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                    "n{n} size{size} ci{ci} co{co} pool{pool} at {i}: {g} vs {r}"
                );
            }
        }
    }
}
