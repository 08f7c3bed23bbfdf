//! The depthwise op's kernels for small planes (at most [`SMALL_PLANE`] input pixels:
//! EfficientNet-Lite0's 6×6, 3×3 and 2×2 planes at 48 px, its 7×7 planes at 224 px), channels-last.
//!
//! On a small plane most of a filter's taps fall in the padding: a 5×5 filter on a 2×2 plane
//! has 16 links between an output pixel and an input pixel inside the plane, against the 100
//! products per plane that the phase-split runs compute (`super::Phases`: whole padded rows,
//! every tap). Here each image's planes are transposed to `[pixel, channel]`, and every link
//! `(output pixel, tap, input pixel)` inside the plane is one multiply-add of rows of channels
//! — vectors across the channels, which small planes have many of (240 to 1,152 in Lite0) —
//! then transposed back. Images are spread over the threads; the weight gradient adds fixed
//! groups of images, then the groups in order, so results do not depend on the thread count.

use super::Shape;
use crate::vector::{Kernel, LANES, Vector, dispatch, transpose};
use rayon::prelude::*;

/// Input planes up to this many pixels take these kernels.
pub const SMALL_PLANE: usize = 64;

/// Images per partial sum of the weight gradient.
const GROUP: usize = 8;

/// Whether `s` takes these kernels.
pub fn fits(s: &Shape) -> bool {
    s.h * s.w <= SMALL_PLANE
}

/// Every `[output pixel, tap, input pixel]` whose input pixel lies inside the plane (not in
/// the padding), output pixels in order.
fn links(s: &Shape) -> Vec<[usize; 3]> {
    let (ho, wo) = s.out();
    let [top, left, _, _] = s.padding;
    let inside = |o: usize, t: usize, pad: usize, len: usize| {
        (o * s.stride + t).checked_sub(pad).filter(|&v| v < len)
    };
    let mut links = Vec::new();
    for (oh, ow) in (0..ho).flat_map(|oh| (0..wo).map(move |ow| (oh, ow))) {
        for (i, j) in (0..s.k).flat_map(|i| (0..s.k).map(move |j| (i, j))) {
            if let (Some(ih), Some(iw)) = (inside(oh, i, top, s.h), inside(ow, j, left, s.w)) {
                links.push([oh * wo + ow, i * s.k + j, ih * s.w + iw]);
            }
        }
    }
    links
}

/// `dst[d] += a[p] ⊙ b[q]` for each `[d, p, q]`, over rows of `c` values.
struct Accumulate<'a> {
    dst: &'a mut [f32],
    a: &'a [f32],
    b: &'a [f32],
    c: usize,
    rows: &'a [[usize; 3]],
}

impl Kernel for Accumulate<'_> {
    #[inline(always)]
    fn run<V: Vector>(self) {
        let Self { dst, a, b, c, rows } = self;
        for &[d, p, q] in rows {
            let (dst, a, b) = (&mut dst[d * c..][..c], &a[p * c..][..c], &b[q * c..][..c]);
            for ((d, a), b) in dst
                .chunks_mut(LANES)
                .zip(a.chunks(LANES))
                .zip(b.chunks(LANES))
            {
                V::load(a).mul_add(V::load(b), V::load(d)).store(d);
            }
        }
    }
}

/// `dst` `[cols, rows]` ← `src` `[rows, cols]`.
fn transposed(src: &[f32], rows: usize, cols: usize, dst: &mut Vec<f32>) {
    dst.resize(rows * cols, 0.0);
    transpose((src, cols), (dst, rows), rows, cols);
}

/// The filters `[c, k·k]` applied through the links `rows` (`[d, t, q]`: row `d` of the result
/// += filter row `t` ⊙ row `q` of the input), image by image: `input` `[n, c, in_px]` →
/// `[n, c, out_px]`, each image transposed channels-last and back. The forward pass and the
/// input gradient differ only in their links' direction and plane sizes.
fn through_links(
    s: &Shape,
    weight: &[f32],
    rows: &[[usize; 3]],
    (input, in_px): (&[f32], usize),
    out_px: usize,
) -> Vec<f32> {
    let mut wt = Vec::new();
    transposed(weight, s.c, s.k * s.k, &mut wt);
    let mut out = vec![0.0f32; s.n * s.c * out_px];
    out.par_chunks_mut(s.c * out_px)
        .zip(input.par_chunks(s.c * in_px))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(t_in, t_out), (out, input)| {
                transposed(input, s.c, in_px, t_in);
                t_out.clear();
                t_out.resize(out_px * s.c, 0.0);
                dispatch(Accumulate {
                    dst: t_out,
                    a: &wt,
                    b: t_in,
                    c: s.c,
                    rows,
                });
                transpose((t_out, s.c), (out, out_px), out_px, s.c);
            },
        );
    out
}

/// The output `[n, c, ho, wo]`: output row `o` += filter row `t` ⊙ input row `i`.
pub fn forward(x: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    let (ho, wo) = s.out();
    through_links(&s, weight, &links(&s), (x, s.h * s.w), ho * wo)
}

/// The input gradient `[n, c, h, w]`: input row `i` += filter row `t` ⊙ output-gradient row `o`.
pub fn backward_input(dy: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    let (ho, wo) = s.out();
    let rows: Vec<[usize; 3]> = links(&s).into_iter().map(|[o, t, i]| [i, t, o]).collect();
    through_links(&s, weight, &rows, (dy, ho * wo), s.h * s.w)
}

/// The weight gradient `[c, 1, k, k]`: per group of [`GROUP`] images a sum over the links, then
/// the groups added in order.
pub fn backward_weight(x: &[f32], dy: &[f32], s: Shape) -> Vec<f32> {
    let (hw, (ho, wo), kk) = (s.h * s.w, s.out(), s.k * s.k);
    // Filter row `t` += output-gradient row `o` ⊙ input row `i`.
    let rows: Vec<[usize; 3]> = links(&s).into_iter().map(|[o, t, i]| [t, o, i]).collect();
    let partials: Vec<Vec<f32>> = x
        .par_chunks(GROUP * s.c * hw)
        .zip(dy.par_chunks(GROUP * s.c * ho * wo))
        .map_init(
            || (Vec::new(), Vec::new()),
            |(xt, dyt), (x, dy)| {
                let mut dwt = vec![0.0f32; kk * s.c];
                for (x, dy) in x.chunks_exact(s.c * hw).zip(dy.chunks_exact(s.c * ho * wo)) {
                    transposed(x, s.c, hw, xt);
                    transposed(dy, s.c, ho * wo, dyt);
                    dispatch(Accumulate {
                        dst: &mut dwt,
                        a: dyt,
                        b: xt,
                        c: s.c,
                        rows: &rows,
                    });
                }
                dwt
            },
        )
        .collect();
    let mut total = vec![0.0f32; kk * s.c];
    for part in &partials {
        total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
    }
    let mut dw = vec![0.0f32; s.c * kk];
    transpose((&total, s.c), (&mut dw, kk), kk, s.c);
    dw
}
