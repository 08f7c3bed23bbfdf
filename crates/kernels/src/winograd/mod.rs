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
pub use super::vector::transpose;
use super::vector::{Kernel, LANES, Vector, dispatch, transpose_with};
use tile::{filter_gradient, gather, transform_in, transform_out, transform_out_adjoint};

mod tile;

/// Positions of the 4×4 transformed tile.
pub(super) const TAPS: usize = 16;

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
    /// `[16][c_in][c_out]`, zero until the first block is added.
    du: Vec<f32>,
}

impl FilterGradient {
    pub fn new(c_in: usize, c_out: usize) -> Self {
        Self {
            c_in,
            c_out,
            du: vec![0f32; TAPS * c_in * c_out],
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
        dispatch(Add {
            grad: self,
            x,
            dy,
            count,
            size,
            scratch,
        });
    }
}

/// The arguments of [`FilterGradient::add`], its body run on vectors `V`.
struct Add<'a> {
    grad: &'a mut FilterGradient,
    x: (&'a [f32], Layout),
    dy: &'a [f32],
    count: usize,
    size: usize,
    scratch: &'a mut Scratch,
}

impl Kernel for Add<'_> {
    #[inline(always)]
    fn run<V: Vector>(self) {
        let Add {
            grad,
            x,
            dy,
            count,
            size,
            scratch,
        } = self;
        let (ci, co) = (grad.c_in, grad.c_out);
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
                &mut grad.du[xi * ci * co..][..ci * co],
                co,
                true,
                (&scratch.v[xi * ci..], 1, TAPS * ci),
                (&scratch.m[xi * co..], TAPS * co, 1),
            );
        }
    }
}

impl FilterGradient {
    /// `dW` in burn's `[c_out][c_in][3][3]` layout.
    pub fn finish(&self) -> Vec<f32> {
        let (ci, co) = (self.c_in, self.c_out);
        let mut dw = vec![0f32; co * ci * 9];
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
    /// Images, padded side, channels and written side `padded` was zeroed for: only the written
    /// square is overwritten, so the rest stays zero while none of the four changes.
    padded_for: [usize; 4],
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
        struct Run<'a, 'b>(
            &'a Block<'b>,
            &'a [f32],
            [usize; 2],
            &'a mut [f32],
            &'a mut Scratch,
        );
        impl Kernel for Run<'_, '_> {
            #[inline(always)]
            fn run<V: Vector>(self) {
                let Run(block, x, [count, size], out, scratch) = self;
                block.run_with::<V>((x, count, size), out, scratch);
            }
        }
        dispatch(Run(self, x, [count, size], out, scratch));
    }

    /// [`Self::run`] with the transforms on vectors `V`.
    #[inline(always)]
    fn run_with<V: Vector>(
        &self,
        (x, count, size): (&[f32], usize, usize),
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
                        let y = transform_out(gather(ld));
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
                    let s = transform_in(gather(ld));
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
    (padded, zeroed_for): (&'a mut Vec<f32>, &mut [usize; 4]),
) -> &'a [f32] {
    let inside = size.min(side - 1);
    if *zeroed_for != [count, side, c, inside] {
        padded.clear();
        padded.resize(count * side * side * c, 0.0);
        *zeroed_for = [count, side, c, inside];
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::Lanes;

    /// Equal to 1e-4, relative to each expected value (absolute below 1).
    fn assert_close(got: &[f32], want: &[f32], case: &str) {
        assert_eq!(got.len(), want.len(), "{case}");
        for (i, (g, r)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                "{case} at {i}: {g} vs {r}"
            );
        }
    }

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
            block.run_with::<Lanes>((&x, n, size), &mut portable, &mut Scratch::default());
            got.extend(portable);
            let want = [want.clone(), want].concat();
            assert_close(
                &got,
                &want,
                &format!("n{n} size{size} ci{ci} co{co} pool{pool}"),
            );
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
            let case = format!("n{n} size{size} ci{ci} co{co}");
            assert_close(&grad.finish(), &want, &format!("dW {case}"));
            assert_close(&dx, &want_dx, &format!("dX {case}"));
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

    #[test]
    fn a_reused_scratch_keeps_a_zero_border_for_a_smaller_image_of_the_same_tiling() {
        // Sides 8 and 7 without a pool both make 4 tiles a side (a padded side of 10): the 7-pixel
        // image leaves a column of the padded buffer unwritten that the 8-pixel one wrote.
        let mut seed = 9;
        let (n, ci, co) = (2, 3, 4);
        let w = rand(&mut seed, 9 * ci * co);
        let (scale, shift) = (vec![1.0f32; co], vec![0.0f32; co]);
        let filters = Filters::new(&w, ci, co);
        let block = Block {
            input: Layout::ChannelsLast,
            output: Layout::ChannelsLast,
            filters: &filters,
            scale: &scale,
            shift: &shift,
            clamp: (f32::NEG_INFINITY, f32::INFINITY),
            pool: false,
        };
        let mut scratch = Scratch::default();
        for size in [8, 7] {
            let x: Vec<f32> = rand(&mut seed, n * size * size * ci)
                .iter()
                .map(|v| v + 2.0)
                .collect();
            let mut got = vec![f32::NAN; n * size * size * co];
            block.run(&x, n, size, &mut got, &mut scratch);
            let want = reference(&x, (n, size, ci, co, false), &w, (&scale, &shift));
            // The reference clamps at zero; compare where it did not.
            let positive: Vec<(f32, f32)> = got
                .iter()
                .zip(&want)
                .filter(|(_, r)| **r > 0.0)
                .map(|(g, r)| (*g, *r))
                .collect();
            let (g, r): (Vec<f32>, Vec<f32>) = positive.into_iter().unzip();
            assert_close(&g, &r, &format!("side {size} after side 8"));
        }
    }
}
