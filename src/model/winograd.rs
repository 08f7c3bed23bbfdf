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

use super::matrix::gemm_into;

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
        // U[a][b] = Σ G[a][ky] · G[b][kx] · g[ky][kx], a whole row of output channels at a time.
        const G: [[f32; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        for ci in 0..c_in {
            for xi in 0..TAPS {
                let out = &mut u[(xi * c_in + ci) * c_out..][..c_out];
                for tap in 0..9 {
                    let coef = G[xi / 4][tap / 3] * G[xi % 4][tap % 3];
                    if coef != 0.0 {
                        let row = &weight[(tap * c_in + ci) * c_out..][..c_out];
                        out.iter_mut().zip(row).for_each(|(o, g)| *o += coef * g);
                    }
                }
            }
        }
        Self { c_in, c_out, u }
    }
}

impl Filters {
    /// From burn's `[c_out][c_in][3][3]` filters. `flipped`: the filters of the gradient with
    /// respect to the input instead (a convolution from `c_out` channels to `c_in`, each filter
    /// rotated by 180°).
    pub fn from_oihw(w: &[f32], c_out: usize, c_in: usize, flipped: bool) -> Self {
        assert_eq!(w.len(), 9 * c_in * c_out);
        let (from, to) = if flipped {
            (c_out, c_in)
        } else {
            (c_in, c_out)
        };
        let mut hwio = vec![0f32; 9 * c_in * c_out];
        for o in 0..c_out {
            for i in 0..c_in {
                for tap in 0..9 {
                    let value = w[(o * c_in + i) * 9 + tap];
                    let at = if flipped {
                        ((8 - tap) * from + o) * to + i
                    } else {
                        (tap * from + i) * to + o
                    };
                    hwio[at] = value;
                }
            }
        }
        Self::new(&hwio, from, to)
    }
}

/// The filter gradient of a 3×3, stride-1, padding-1 convolution, accumulated block by block
/// in the Winograd domain: `dU[ξ] += V[ξ]ᵀ · (A dY Aᵀ)[ξ]` over the tiles of each block, then
/// `dW = Gᵀ dU G` once at the end (the exact adjoint of the forward transforms).
pub struct FilterGradient {
    c_in: usize,
    c_out: usize,
    /// `[16][c_in][c_out]`.
    du: Vec<f32>,
    blocks: usize,
}

impl FilterGradient {
    pub fn new(c_in: usize, c_out: usize) -> Self {
        Self {
            c_in,
            c_out,
            du: vec![0f32; TAPS * c_in * c_out],
            blocks: 0,
        }
    }

    /// Adds the contribution of `count` images: input `x` `[size, size, c_in]` and output
    /// gradient `dy` `[size, size, c_out]` each, channels-last.
    pub fn add(
        &mut self,
        x: (&[f32], Layout),
        dy: &[f32],
        count: usize,
        size: usize,
        scratch: &mut Scratch,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { self.add_avx512(x, dy, count, size, scratch) };
        }
        self.add_with::<Lanes>(x, dy, count, size, scratch);
    }

    /// [`Self::add_with`] on AVX-512 registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn add_avx512(
        &mut self,
        x: (&[f32], Layout),
        dy: &[f32],
        count: usize,
        size: usize,
        scratch: &mut Scratch,
    ) {
        self.add_with::<avx512::F32x16>(x, dy, count, size, scratch);
    }

    #[inline(always)]
    fn add_with<V: Vector>(
        &mut self,
        x: (&[f32], Layout),
        dy: &[f32],
        count: usize,
        size: usize,
        scratch: &mut Scratch,
    ) {
        let (ci, co) = (self.c_in, self.c_out);
        let t = tiles_per_side(size, false);
        let tiles = count * t * t;
        if tiles == 0 {
            return;
        }
        scratch.v.resize(tiles * TAPS * ci, 0.0);
        scratch.m.resize(tiles * TAPS * co, 0.0);
        input_transform::<V>(x, count, size, ci, t, scratch);
        output_adjoint::<V>(dy, count, size, co, t, &mut scratch.m);
        for xi in 0..TAPS {
            gemm_into(
                [ci, co, tiles],
                &mut self.du[xi * ci * co..][..ci * co],
                co,
                self.blocks > 0,
                (&scratch.v[xi * ci..], 1, TAPS * ci),
                (&scratch.m[xi * co..], TAPS * co, 1),
            );
        }
        self.blocks += 1;
    }

    /// `dW` in burn's `[c_out][c_in][3][3]` layout.
    pub fn finish(&self) -> Vec<f32> {
        let (ci, co) = (self.c_in, self.c_out);
        let mut dw = vec![0f32; co * ci * 9];
        if self.blocks == 0 {
            return dw;
        }
        for i in 0..ci {
            for o in 0..co {
                let du: [f32; TAPS] = std::array::from_fn(|xi| self.du[(xi * ci + i) * co + o]);
                let g = filter_gradient(&du);
                dw[(o * ci + i) * 9..][..9].copy_from_slice(&g);
            }
        }
        dw
    }
}

/// `Gᵀ dU G` of one 4×4 gradient (row-major) into a 3×3 one: the adjoint of the filter transform
/// `G g Gᵀ` in [`Filters::new`].
fn filter_gradient(du: &[f32; TAPS]) -> [f32; 9] {
    let apply = |[a, b, c, d]: [f32; 4]| [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d];
    let rows: [[f32; 3]; 4] =
        std::array::from_fn(|r| apply([du[4 * r], du[4 * r + 1], du[4 * r + 2], du[4 * r + 3]]));
    let columns: [[f32; 3]; 3] =
        std::array::from_fn(|kx| apply([rows[0][kx], rows[1][kx], rows[2][kx], rows[3][kx]]));
    std::array::from_fn(|tap| columns[tap % 3][tap / 3])
}

/// `dM = A dY Aᵀ` of every tile of `dy` (`count` images `[o, o, c]`) into `m`
/// (`[tiles][16][c]`): the adjoint of the output transform, zero off the edge.
#[inline(always)]
fn output_adjoint<V: Vector>(
    dy: &[f32],
    count: usize,
    o: usize,
    c: usize,
    t: usize,
    m: &mut [f32],
) {
    for img in 0..count {
        let src = &dy[img * o * o * c..][..o * o * c];
        for ty in 0..t {
            for tx in 0..t {
                let tile = (img * t + ty) * t + tx;
                let mt = &mut m[tile * TAPS * c..][..TAPS * c];
                for ch in (0..c).step_by(LANES) {
                    let w = LANES.min(c - ch);
                    let ld = |i: usize| {
                        let (oy, ox) = (2 * ty + i / 2, 2 * tx + i % 2);
                        if oy < o && ox < o {
                            V::load(&src[(oy * o + ox) * c + ch..][..w])
                        } else {
                            V::load(&[])
                        }
                    };
                    let dm = transform_out_adjoint([ld(0), ld(1), ld(2), ld(3)]);
                    for (xi, val) in dm.into_iter().enumerate() {
                        val.store(&mut mt[xi * c + ch..][..w]);
                    }
                }
            }
        }
    }
}

/// `A y Aᵀ` of one tile's 2×2 gradient (row-major), `A` rows (1,0), (1,1), (1,−1), (0,−1).
#[inline(always)]
fn transform_out_adjoint<V: Vector>(y: [V; 4]) -> [V; TAPS] {
    let zero = V::load(&[]);
    let apply = |a: V, b: V| [a, a.add(b), a.sub(b), zero.sub(b)];
    let (r0, r1) = (apply(y[0], y[1]), apply(y[2], y[3]));
    // Column j of the result is `apply(r0[j], r1[j])`; tap ξ = 4i + j is its row i.
    let (c0, c1, c2, c3) = (
        apply(r0[0], r1[0]),
        apply(r0[1], r1[1]),
        apply(r0[2], r1[2]),
        apply(r0[3], r1[3]),
    );
    [
        c0[0], c1[0], c2[0], c3[0], c0[1], c1[1], c2[1], c3[1], c0[2], c1[2], c2[2], c3[2], c0[3],
        c1[3], c2[3], c3[3],
    ]
}

/// Tiles per side for a convolution output of `o`×`o`: with `pool`, the 2×2 windows of the
/// pool (an odd last row and column dropped, as burn's `max_pool2d` does), otherwise ⌈o/2⌉.
pub fn tiles_per_side(o: usize, pool: bool) -> usize {
    if pool { o / 2 } else { o.div_ceil(2) }
}

/// Where a planar tensor keeps image `j` (of a block), channel `c`: at `j·image + c·channel`,
/// then the plane's pixels, contiguous.
#[derive(Clone, Copy)]
pub struct Strides {
    pub image: usize,
    pub channel: usize,
}

/// How a block's images are laid out.
#[derive(Clone, Copy)]
pub enum Layout {
    /// `[image][pixel][channel]`, contiguous.
    ChannelsLast,
    /// One contiguous plane per image and channel, at [`Strides`].
    Planar(Strides),
}

/// One block of whole images through the convolution, pool and epilogue.
pub struct Block<'a> {
    pub input: Layout,
    pub output: Layout,
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
    /// A channels-last output on its way to a planar one.
    y: Vec<f32>,
    padded: Vec<f32>,
    /// Images, side and channels `padded` was zeroed for: only its interior is written, so its
    /// border stays zero while this does not change.
    padded_for: (usize, usize, usize),
}

thread_local! {
    /// Scratch buffers of finished passes on this thread, kept for the next ones (a training
    /// step runs the same shapes again, so the buffers are neither allocated nor zeroed again).
    static POOL: std::cell::RefCell<Vec<Scratch>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A [`Scratch`] taken from this thread's pool, given back when dropped.
pub struct Pooled(Scratch);

impl Pooled {
    pub fn take() -> Self {
        Self(POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default())
    }
}

impl std::ops::Deref for Pooled {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Scratch {
        &mut self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let scratch = std::mem::take(&mut self.0);
        // At most a few per thread: one per pass alive at once.
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < 4 {
                pool.push(scratch);
            }
        });
    }
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
        input_transform::<V>((x, self.input), count, size, ci, t, scratch);
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
        let Layout::Planar(at) = self.output else {
            self.output_transform::<V>(&scratch.m, count, size, t, out);
            return;
        };
        // Channels-last first, then each image's planes in 16×16 register transposes.
        let side = if self.pool { size / 2 } else { size };
        let plane = side * side;
        let mut y = std::mem::take(&mut scratch.y);
        y.resize(count * plane * co, 0.0);
        self.output_transform::<V>(&scratch.m, count, size, t, &mut y);
        for img in 0..count {
            let dst = &mut out[img * at.image..];
            transpose_with::<V>((&y[img * plane * co..], co), (dst, at.channel), plane, co);
        }
        scratch.y = y;
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
        let plane = side * side;
        for img in 0..count {
            for ty in 0..t {
                for tx in 0..t {
                    let tile = (img * t + ty) * t + tx;
                    let mt = &m[tile * TAPS * co..][..TAPS * co];
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
                            epilogue(max)
                                .store(&mut out[(img * plane + ty * side + tx) * co + ch..][..w]);
                            continue;
                        }
                        for (i, yi) in y.into_iter().enumerate() {
                            let (oy, ox) = (2 * ty + i / 2, 2 * tx + i % 2);
                            if oy < o && ox < o {
                                epilogue(yi).store(
                                    &mut out[(img * plane + oy * side + ox) * co + ch..][..w],
                                );
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
    /// Row `i` of the result is lane `i` of every input, in order.
    fn transpose(rows: [Self; LANES]) -> [Self; LANES];
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
    #[inline(always)]
    fn transpose(rows: [Self; LANES]) -> [Self; LANES] {
        std::array::from_fn(|i| std::array::from_fn(|j| rows[j][i]))
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
        #[inline(always)]
        fn transpose(rows: [Self; LANES]) -> [Self; LANES] {
            // SAFETY: AVX-512F is present (see the type).
            unsafe {
                // Interleave pairs of rows, then pairs of pairs, then 128-bit lanes twice (plain
                // loops, not closures, so that the intrinsics inline into the AVX-512 caller).
                let r = rows;
                let mut t = [_mm512_setzero_ps(); LANES];
                for i in (0..LANES).step_by(2) {
                    t[i] = _mm512_unpacklo_ps(r[i].0, r[i + 1].0);
                    t[i + 1] = _mm512_unpackhi_ps(r[i].0, r[i + 1].0);
                }
                let mut u = [_mm512_setzero_ps(); LANES];
                for base in (0..LANES).step_by(4) {
                    for k in 0..2 {
                        let (a, b) = (t[base + k], t[base + 2 + k]);
                        u[base + 2 * k] = _mm512_shuffle_ps::<0x44>(a, b);
                        u[base + 2 * k + 1] = _mm512_shuffle_ps::<0xEE>(a, b);
                    }
                }
                let mut v = [_mm512_setzero_ps(); LANES];
                for base in (0..LANES).step_by(8) {
                    for k in 0..4 {
                        let (a, b) = (u[base + k], u[base + 4 + k]);
                        v[base + k] = _mm512_shuffle_f32x4::<0x88>(a, b);
                        v[base + 4 + k] = _mm512_shuffle_f32x4::<0xDD>(a, b);
                    }
                }
                let mut w = [Self(_mm512_setzero_ps()); LANES];
                for k in 0..8 {
                    let (a, b) = (v[k], v[8 + k]);
                    w[k] = Self(_mm512_shuffle_f32x4::<0x88>(a, b));
                    w[8 + k] = Self(_mm512_shuffle_f32x4::<0xDD>(a, b));
                }
                w
            }
        }
    }
}

/// `V = Bᵀ d B` of every tile into `v` (`[tiles][16][c]`), zeros off the edge of the image.
#[inline(always)]
fn input_transform<V: Vector>(
    (x, layout): (&[f32], Layout),
    count: usize,
    size: usize,
    c: usize,
    t: usize,
    scratch: &mut Scratch,
) {
    let side = 2 * t + 2;
    let key = &mut scratch.padded_for;
    let padded = fill_padded::<V>(
        x,
        layout,
        (count, size, c),
        side,
        (&mut scratch.padded, key),
    );
    let v = &mut scratch.v;
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

/// The block's images channels-last with a zero border, `side` = 2t + 2 pixels a side, so that
/// every tile reads four runs of four pixels and none is off the edge.
#[inline(always)]
fn fill_padded<'a, V: Vector>(
    x: &[f32],
    layout: Layout,
    (count, size, c): (usize, usize, usize),
    side: usize,
    (padded, zeroed_for): (&'a mut Vec<f32>, &mut (usize, usize, usize)),
) -> &'a [f32] {
    if *zeroed_for != (count, side, c) {
        padded.clear();
        padded.resize(count * side * side * c, 0.0);
        *zeroed_for = (count, side, c);
    }
    let inside = size.min(side - 1);
    let row = |img: usize, iy: usize| ((img * side + iy + 1) * side + 1) * c;
    for img in 0..count {
        match layout {
            Layout::ChannelsLast => {
                for iy in 0..inside {
                    let src = &x[(img * size + iy) * size * c..][..inside * c];
                    padded[row(img, iy)..][..inside * c].copy_from_slice(src);
                }
            }
            Layout::Planar(at) => {
                for iy in 0..inside {
                    let src = &x[img * at.image + iy * size..];
                    let dst = &mut padded[row(img, iy)..];
                    transpose_with::<V>((src, at.channel), (dst, c), c, inside);
                }
            }
        }
    }
    &padded[..count * side * side * c]
}

/// `dst[j·dst_rs + i] = src[i·src_rs + j]` for `i < rows`, `j < cols`: 16×16 tiles
/// transposed in registers.
pub fn transpose(src: (&[f32], usize), dst: (&mut [f32], usize), rows: usize, cols: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { transpose_avx512(src, dst, rows, cols) };
    }
    transpose_with::<Lanes>(src, dst, rows, cols);
}

/// [`transpose_with`] on AVX-512 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_avx512(
    src: (&[f32], usize),
    dst: (&mut [f32], usize),
    rows: usize,
    cols: usize,
) {
    transpose_with::<avx512::F32x16>(src, dst, rows, cols);
}

#[inline(always)]
fn transpose_with<V: Vector>(
    (src, src_rs): (&[f32], usize),
    (dst, dst_rs): (&mut [f32], usize),
    rows: usize,
    cols: usize,
) {
    for i0 in (0..rows).step_by(LANES) {
        let h = LANES.min(rows - i0);
        for j0 in (0..cols).step_by(LANES) {
            let w = LANES.min(cols - j0);
            let mut rows_in = [V::load(&[]); LANES];
            for (i, row) in rows_in.iter_mut().enumerate().take(h) {
                *row = V::load(&src[(i0 + i) * src_rs + j0..][..w]);
            }
            for (j, row) in V::transpose(rows_in).into_iter().take(w).enumerate() {
                row.store(&mut dst[(j0 + j) * dst_rs + i0..][..h]);
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
                input: Layout::ChannelsLast,
                output: Layout::ChannelsLast,
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

    #[test]
    fn the_filter_gradient_and_the_flipped_filters_equal_direct_sums_on_odd_sizes() {
        let mut seed = 5;
        for (n, size, ci, co) in [(3, 5, 3, 4), (2, 1, 2, 3), (4, 8, 17, 33), (2, 3, 16, 16)] {
            let x = rand(&mut seed, n * size * size * ci);
            let dy = rand(&mut seed, n * size * size * co);
            let w = rand(&mut seed, co * ci * 9);
            let at = |img: usize, y: isize, x_: isize, c: usize, ch: usize, v: &[f32]| {
                let inside = y >= 0 && x_ >= 0 && y < size as isize && x_ < size as isize;
                if inside {
                    v[((img * size + y as usize) * size + x_ as usize) * c + ch]
                } else {
                    0.0
                }
            };
            // dW[o][i][ky][kx] = Σ dy[o] · x[i] shifted by the tap.
            let mut want = vec![0f32; co * ci * 9];
            // dX[i] = Σ_o Σ_tap dy[o] shifted back · w[o][i][tap].
            let mut want_dx = vec![0f32; n * size * size * ci];
            for img in 0..n {
                for y in 0..size {
                    for x_ in 0..size {
                        for tap in 0..9 {
                            let (ky, kx) = ((tap / 3) as isize - 1, (tap % 3) as isize - 1);
                            for o in 0..co {
                                let g = dy[((img * size + y) * size + x_) * co + o];
                                for i in 0..ci {
                                    want[(o * ci + i) * 9 + tap] +=
                                        g * at(img, y as isize + ky, x_ as isize + kx, ci, i, &x);
                                    let back =
                                        at(img, y as isize - ky, x_ as isize - kx, co, o, &dy);
                                    want_dx[((img * size + y) * size + x_) * ci + i] +=
                                        back * w[(o * ci + i) * 9 + tap];
                                }
                            }
                        }
                    }
                }
            }
            let mut grad = FilterGradient::new(ci, co);
            let mut scratch = Scratch::default();
            let split = n / 2;
            let (px, pd) = (size * size * ci, size * size * co);
            grad.add(
                (&x[..split * px], Layout::ChannelsLast),
                &dy[..split * pd],
                split,
                size,
                &mut scratch,
            );
            grad.add(
                (&x[split * px..], Layout::ChannelsLast),
                &dy[split * pd..],
                n - split,
                size,
                &mut scratch,
            );
            let flipped = Filters::from_oihw(&w, co, ci, true);
            let (ones, zeros) = (vec![1f32; ci], vec![0f32; ci]);
            let block = Block {
                input: Layout::ChannelsLast,
                output: Layout::ChannelsLast,
                filters: &flipped,
                scale: &ones,
                shift: &zeros,
                clamp: (f32::NEG_INFINITY, f32::INFINITY),
                pool: false,
            };
            let mut dx = vec![f32::NAN; want_dx.len()];
            block.run(&dy, n, size, &mut dx, &mut scratch);
            for (got, want) in [(grad.finish(), want), (dx, want_dx)] {
                for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                        "n{n} size{size} ci{ci} co{co} at {i}: {g} vs {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_register_transpose_equals_the_definition() {
        let mut seed = 3;
        for (rows, cols, src_rs, dst_rs) in [
            (16, 16, 16, 16),
            (5, 37, 40, 9),
            (33, 7, 7, 40),
            (1, 1, 1, 1),
        ] {
            let src = rand(&mut seed, rows * src_rs);
            let mut dst = vec![f32::NAN; cols * dst_rs];
            transpose((&src, src_rs), (&mut dst, dst_rs), rows, cols);
            let mut portable = vec![f32::NAN; cols * dst_rs];
            transpose_with::<Lanes>((&src, src_rs), (&mut portable, dst_rs), rows, cols);
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(
                        dst[j * dst_rs + i],
                        src[i * src_rs + j],
                        "{rows}x{cols} at {i},{j}"
                    );
                    assert_eq!(portable[j * dst_rs + i], src[i * src_rs + j]);
                }
            }
        }
    }
}
