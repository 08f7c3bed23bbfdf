//! A depthwise convolution (one k×k filter per channel, no bias) as one autodiff node on the
//! CPU backend, with direct kernels for the forward pass and both gradients.
//!
//! burn computes a grouped convolution's weight gradient one group at a time: for a depthwise
//! layer that is one small convolution per channel (up to 1,152 of them per layer in
//! EfficientNet-Lite0), each with its slices, axis swaps and copies; its input gradient goes
//! through a grouped transposed convolution, and "same" padding at stride 2 (uneven sides) adds
//! a padded copy of the input on the way in and a crop on the way out. Here a channel's padded
//! planes are split by stride phase (`Phases`), after which every filter tap, for every
//! output, is one contiguous run of the flattened planes: the forward pass and the input
//! gradient are sums of shifted runs (`Correlate`, the outputs held in vector registers
//! across all taps), the weight gradient one dot product per tap (`Dots`). Channels (and, for
//! large planes, images) are spread over the threads; every sum is made by one thread in a fixed
//! order, so results do not depend on the thread count. Tested against burn's grouped
//! convolution, forward and backward. Where burn's CPU backend could take it upstream: as
//! `conv2d_weight_backward` / `conv2d_x_backward` for `groups == channels_in == channels_out`.

mod channels_last;

use super::conv_op::{self, ConvShape, out_size};
use super::zeroed;
use crate::vector::{Kernel, LANES, Vector, dispatch};
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use rayon::prelude::*;

/// The depthwise convolution as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait DepthwiseBackend: Backend {
    /// `x` `[n, c, h, w]`, `weight` `[c, 1, k, k]`; `padding` is `[top, left, bottom, right]`.
    fn depthwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self>;
}

/// Sizes of one depthwise convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    /// Padding `[top, left, bottom, right]`.
    pub padding: [usize; 4],
}

impl Shape {
    /// Output height and width.
    pub fn out(&self) -> (usize, usize) {
        out_size([self.h, self.w], self.k, self.stride, self.padding)
    }

    fn phases(&self) -> Phases {
        let [t, l, b, r] = self.padding;
        let s = self.stride;
        let (ho, wo) = self.out();
        let (ph, pw) = ((self.h + t + b).div_ceil(s), (self.w + l + r).div_ceil(s));
        let reach = (self.k - 1) / s;
        let margin = reach * pw + reach;
        let span = ho * pw;
        Phases {
            s,
            pw,
            ho,
            wo,
            margin,
            plane: (ph * pw).max(span + margin),
            // Large planes one image at a time (the buffers stay in cache), small ones all
            // images of a channel at once (one long run instead of many short ones).
            images: if ph * pw >= 1024 { 1 } else { self.n },
        }
    }
}

/// One channel's padded planes, all images, split by stride phase: pixel `(R, C)` of image
/// `b`'s padded plane lies in phase `p = (R mod s)·s + C mod s` at
/// `(p·images + b)·plane + (R / s)·pw + C / s`. Tap `(i, j)` of output `(oh, ow)` of image `b`
/// then reads position `b·plane + oh·pw + ow` shifted by the tap's offset
/// `((i mod s)·s + j mod s)·images·plane + (i / s)·pw + j / s`: every tap is one contiguous run
/// over the flattened planes of all the images (the positions between real outputs are
/// computed and dropped), whatever the stride and however small the planes.
struct Phases {
    s: usize,
    pw: usize,
    ho: usize,
    wo: usize,
    /// The largest offset of a tap inside its phase plane.
    margin: usize,
    /// Positions per image and phase (room for `ho·pw` outputs at any offset).
    plane: usize,
    /// Images per task: all of them, or one for large planes.
    images: usize,
}

impl Phases {
    /// The tasks: `(channel, first image)`, channel-major.
    fn tasks(&self, sh: &Shape) -> Vec<(usize, usize)> {
        let starts = (0..sh.n).step_by(self.images);
        (0..sh.c)
            .flat_map(|ch| starts.clone().map(move |b| (ch, b)))
            .collect()
    }

    /// Offset of tap `(i, j)` in the split buffer.
    fn tap(&self, i: usize, j: usize) -> usize {
        let s = self.s;
        ((i % s) * s + j % s) * self.images * self.plane + (i / s) * self.pw + j / s
    }

    /// Positions of one phase, all images.
    fn phase_len(&self) -> usize {
        self.images * self.plane
    }

    /// The runs of row `r` of image `b`'s input plane in the split buffer: for each column
    /// phase, the first column `c0` with that phase and where it lies (every `s`-th column
    /// follows contiguously).
    fn runs(&self, sh: &Shape, b: usize, r: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (s, l) = (self.s, sh.padding[1]);
        let rr = r + sh.padding[0];
        (0..s.min(sh.w)).map(move |c0| {
            let (cc, phase) = (c0 + l, (rr % s) * s + (c0 + l) % s);
            let at = (phase * self.images + b) * self.plane + (rr / s) * self.pw + cc / s;
            (c0, at)
        })
    }

    /// `buf` ← the zero-padded input planes of one channel (`planes(b)`: image `b`'s `[h × w]`),
    /// split by phase; long enough for every tap's run. `buf` is empty or was split for the
    /// same shape (see [`zeroed`]).
    fn split<'a>(&self, sh: &Shape, planes: impl Fn(usize) -> &'a [f32], buf: &mut Vec<f32>) {
        zeroed(buf, self.s * self.s * self.phase_len() + self.margin);
        for b in 0..self.images {
            for (r, row) in planes(b).chunks_exact(sh.w).enumerate() {
                for (c0, at) in self.runs(sh, b, r) {
                    buf[at..]
                        .iter_mut()
                        .zip(row[c0..].iter().step_by(self.s))
                        .for_each(|(d, &v)| *d = v);
                }
            }
        }
    }

    /// Image `b`'s real pixels `[h × w]` of a split buffer (the inverse of `split`).
    fn gather(&self, sh: &Shape, buf: &[f32], b: usize, x: &mut [f32]) {
        for (r, row) in x.chunks_exact_mut(sh.w).enumerate() {
            for (c0, at) in self.runs(sh, b, r) {
                row[c0..]
                    .iter_mut()
                    .step_by(self.s)
                    .zip(&buf[at..])
                    .for_each(|(d, &v)| *d = v);
            }
        }
    }

    /// `buf` ← one channel's output-gradient planes (`planes(b)`: image `b`'s `[ho × wo]`), image
    /// `b` at `b·plane + lead` with pitch `pw`, zeros everywhere else; `lead + margin` more
    /// values at the end. `buf` is empty or was spread for the same shape and `lead`.
    fn spread<'a>(&self, planes: impl Fn(usize) -> &'a [f32], lead: usize, buf: &mut Vec<f32>) {
        zeroed(buf, self.phase_len() + lead + self.margin);
        for b in 0..self.images {
            for (oh, row) in planes(b).chunks_exact(self.wo).enumerate() {
                buf[b * self.plane + lead + oh * self.pw..][..self.wo].copy_from_slice(row);
            }
        }
    }
}

/// `out[q] = Σ w · src[off + q]` over the taps `(w, off)`, for every `q < out.len()`, four
/// vectors of outputs at a time in registers.
struct Correlate<'a> {
    out: &'a mut [f32],
    src: &'a [f32],
    taps: &'a [(f32, usize)],
}

impl Kernel for Correlate<'_> {
    #[inline(always)]
    fn run<V: Vector>(self) {
        let Self { out, src, taps } = self;
        let mut blocks = out.chunks_exact_mut(4 * LANES);
        let mut q = 0;
        for block in &mut blocks {
            let mut acc = [V::load(&[]); 4];
            for &(w, off) in taps {
                let (w, src) = (V::load(&[w; LANES]), &src[off + q..][..4 * LANES]);
                for (a, s) in acc.iter_mut().zip(src.chunks_exact(LANES)) {
                    *a = V::load(s).mul_add(w, *a);
                }
            }
            for (a, o) in acc.into_iter().zip(block.chunks_exact_mut(LANES)) {
                a.store(o);
            }
            q += 4 * LANES;
        }
        for o in blocks.into_remainder().chunks_mut(LANES) {
            let mut acc = V::load(&[]);
            for &(w, off) in taps {
                acc = V::load(&src[off + q..][..o.len()]).mul_add(V::load(&[w; LANES]), acc);
            }
            acc.store(o);
            q += LANES;
        }
    }
}

/// `sums[t] += Σ_q a[q] · src[off_t + q]` for each tap offset `off_t`, over `q < a.len()`: four
/// vectors of lanes per tap, added up in f64 at the end.
struct Dots<'a> {
    a: &'a [f32],
    src: &'a [f32],
    taps: &'a [usize],
    sums: &'a mut [f64],
}

impl Kernel for Dots<'_> {
    #[inline(always)]
    fn run<V: Vector>(self) {
        let Self { a, src, taps, sums } = self;
        for (&off, sum) in taps.iter().zip(sums) {
            let b = &src[off..][..a.len()];
            let mut acc = [V::load(&[]); 4];
            let (mut ab, mut bb) = (a.chunks_exact(4 * LANES), b.chunks_exact(4 * LANES));
            for (x, y) in (&mut ab).zip(&mut bb) {
                for (v, acc) in acc.iter_mut().enumerate() {
                    let at = v * LANES..(v + 1) * LANES;
                    *acc = V::load(&x[at.clone()]).mul_add(V::load(&y[at]), *acc);
                }
            }
            let rest = ab
                .remainder()
                .chunks(LANES)
                .zip(bb.remainder().chunks(LANES));
            for (x, y) in rest {
                acc[0] = V::load(x).mul_add(V::load(y), acc[0]);
            }
            let mut lanes = [0.0f32; 4 * LANES];
            for (a, l) in acc.into_iter().zip(lanes.chunks_exact_mut(LANES)) {
                a.store(l);
            }
            *sum += lanes.iter().map(|&v| v as f64).sum::<f64>();
        }
    }
}

/// The tasks' planes (`per_task[t]`: task `t`'s images of its channel) → `out[b][ch]` (planes
/// of `len` values), in parallel.
fn interleave(per_task: Vec<Vec<f32>>, g: &Phases, s: &Shape, len: usize) -> Vec<f32> {
    let groups = s.n.div_ceil(g.images);
    super::gather_planes(s.n * s.c, len, |i| {
        let (b, ch) = (i / s.c, i % s.c);
        let task = &per_task[ch * groups + b / g.images];
        &task[(b % g.images) * len..][..len]
    })
}

/// The output `[n, c, ho, wo]`: per channel, all images split by phase, then one
/// `Correlate` over the flattened outputs.
pub fn forward(x: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    if channels_last::fits(&s) {
        return channels_last::forward(x, weight, s);
    }
    let g = s.phases();
    let (ho, wo, hw) = (g.ho, g.wo, s.h * s.w);
    let per_task: Vec<Vec<f32>> = g
        .tasks(&s)
        .into_par_iter()
        .map_init(
            || (Vec::new(), vec![0.0f32; g.phase_len()]),
            |(buf, out), (ch, b0)| {
                g.split(&s, |b| &x[((b0 + b) * s.c + ch) * hw..][..hw], buf);
                let w = &weight[ch * s.k * s.k..][..s.k * s.k];
                let taps: Vec<(f32, usize)> = (0..s.k * s.k)
                    .map(|t| (w[t], g.tap(t / s.k, t % s.k)))
                    .collect();
                dispatch(Correlate {
                    out,
                    src: buf,
                    taps: &taps,
                });
                let mut y = Vec::with_capacity(g.images * ho * wo);
                for b in 0..g.images {
                    for o in out[b * g.plane..].chunks(g.pw).take(ho) {
                        y.extend_from_slice(&o[..wo]);
                    }
                }
                y
            },
        )
        .collect();
    interleave(per_task, &g, &s, ho * wo)
}

/// The input gradient `[n, c, h, w]` from the output gradient `dy`: per channel and phase of
/// the padded input, a `Correlate` of the spread-out gradient with that phase's taps, offsets
/// negated.
pub fn backward_input(dy: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    if channels_last::fits(&s) {
        return channels_last::backward_input(dy, weight, s);
    }
    let g = s.phases();
    let (st, howo, hw) = (s.stride, g.ho * g.wo, s.h * s.w);
    let per_task: Vec<Vec<f32>> = g
        .tasks(&s)
        .into_par_iter()
        .map_init(
            || (Vec::new(), vec![0.0f32; st * st * g.phase_len()]),
            |(spread, dxp), (ch, b0)| {
                let dy = |b: usize| &dy[((b0 + b) * s.c + ch) * howo..][..howo];
                g.spread(dy, g.margin, spread);
                let w = &weight[ch * s.k * s.k..][..s.k * s.k];
                for (p, out) in dxp.chunks_exact_mut(g.phase_len()).enumerate() {
                    let taps: Vec<(f32, usize)> = (0..s.k * s.k)
                        .filter(|t| (t / s.k % st) * st + t % s.k % st == p)
                        .map(|t| {
                            let off = g.tap(t / s.k, t % s.k) - p * g.phase_len();
                            (w[t], g.margin - off)
                        })
                        .collect();
                    dispatch(Correlate {
                        out,
                        src: spread,
                        taps: &taps,
                    });
                }
                let mut dx = vec![0.0f32; g.images * hw];
                for (b, dx) in dx.chunks_exact_mut(hw).enumerate() {
                    g.gather(&s, dxp, b, dx);
                }
                dx
            },
        )
        .collect();
    interleave(per_task, &g, &s, hw)
}

/// The weight gradient `[c, 1, k, k]`: per channel, `Dots` of the spread-out output gradient
/// of all images with each tap's run of the phase-split input, in a fixed order.
pub fn backward_weight(x: &[f32], dy: &[f32], s: Shape) -> Vec<f32> {
    if channels_last::fits(&s) {
        return channels_last::backward_weight(x, dy, s);
    }
    let g = s.phases();
    let (kk, howo, hw) = (s.k * s.k, g.ho * g.wo, s.h * s.w);
    let taps: Vec<usize> = (0..kk).map(|t| g.tap(t / s.k, t % s.k)).collect();
    let per_channel: Vec<Vec<f32>> = (0..s.c)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(buf, spread), ch| {
                let mut sums = vec![0.0f64; kk];
                for b0 in (0..s.n).step_by(g.images) {
                    let plane = |b: usize| (b0 + b) * s.c + ch;
                    g.split(&s, |b| &x[plane(b) * hw..][..hw], buf);
                    g.spread(|b| &dy[plane(b) * howo..][..howo], 0, spread);
                    dispatch(Dots {
                        a: &spread[..g.phase_len()],
                        src: buf,
                        taps: &taps,
                        sums: &mut sums,
                    });
                }
                sums.into_iter().map(|v| v as f32).collect()
            },
        )
        .collect();
    per_channel.concat()
}

impl ConvShape for Shape {
    fn new(
        [n, c, h, w]: [usize; 4],
        weight: [usize; 4],
        stride: usize,
        padding: [usize; 4],
    ) -> Self {
        Shape {
            n,
            c,
            h,
            w,
            k: weight[3],
            stride,
            padding,
        }
    }
    fn out_dims(&self) -> [usize; 4] {
        let (ho, wo) = self.out();
        [self.n, self.c, ho, wo]
    }
    fn forward(&self, x: &[f32], weight: &[f32]) -> Vec<f32> {
        forward(x, weight, *self)
    }
    fn backward_input(&self, dy: &[f32], weight: &[f32]) -> Vec<f32> {
        backward_input(dy, weight, *self)
    }
    fn backward_weight(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        backward_weight(x, dy, *self)
    }
}

impl DepthwiseBackend for Flex {
    fn depthwise_conv(
        x: FlexTensor,
        weight: FlexTensor,
        stride: usize,
        padding: [usize; 4],
    ) -> FlexTensor {
        conv_op::flex_conv::<Shape>(x, weight, stride, padding)
    }
}

impl<C: CheckpointStrategy> DepthwiseBackend for Autodiff<Flex, C> {
    fn depthwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self> {
        conv_op::autodiff_conv::<Shape, C>(x, weight, stride, padding)
    }
}

/// Whether `conv` on `x` runs as the op: a depthwise convolution — one input channel per
/// group, as many outputs as inputs — (and what both convolution ops need, `conv_op::fits`).
pub fn fits(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let [_, c, _, _] = x.dims();
    let [co, per_group, _, _] = conv.weight.val().dims();
    conv_op::fits(conv, x) && conv.groups == c && per_group == 1 && co == c
}

/// `conv.forward(x)`: through the op when it [`fits`], else through burn's module.
pub fn depthwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let fits = fits(conv, &x);
    conv_op::through(
        conv,
        x,
        fits,
        <Dispatch as DepthwiseBackend>::depthwise_conv,
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::conv_op_equals_burn;
    use super::*;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    /// Output, input gradient and weight gradient against burn's grouped convolution, on odd
    /// and even sides, kernels 1/3/5, strides 1–3, "same" (uneven at stride 2), explicit and no
    /// padding, an input smaller than the kernel's reach, small planes (up to 64 pixels: the
    /// channels-last kernels; the others run over phase-split planes) and planes large enough
    /// for one image per task.
    #[test]
    fn the_depthwise_op_equals_burns_grouped_convolution_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let cases = [
            (2, 5, 9, 7, 3, 1, PaddingConfig2d::Same),
            (3, 4, 12, 12, 3, 2, PaddingConfig2d::Same),
            (2, 3, 11, 13, 5, 2, PaddingConfig2d::Same),
            (2, 6, 8, 8, 5, 1, PaddingConfig2d::Same),
            (2, 2, 10, 9, 3, 3, PaddingConfig2d::Explicit(1, 0, 2, 1)),
            (1, 3, 7, 6, 3, 1, PaddingConfig2d::Valid),
            (2, 4, 2, 3, 3, 2, PaddingConfig2d::Same),
            (2, 17, 6, 5, 1, 1, PaddingConfig2d::Valid),
            // Small planes, channels-last (`channels_last`): more channels than one vector,
            // more images than one weight-gradient group, 5×5 filters on 2×2 and 3×3 planes.
            (10, 37, 2, 2, 5, 1, PaddingConfig2d::Same),
            (9, 20, 3, 3, 3, 1, PaddingConfig2d::Same),
            (3, 18, 6, 6, 5, 2, PaddingConfig2d::Same),
            (2, 5, 3, 3, 5, 2, PaddingConfig2d::Same),
            // Planes large enough to be taken one image at a time.
            (3, 3, 40, 37, 3, 1, PaddingConfig2d::Same),
            (2, 2, 70, 67, 5, 2, PaddingConfig2d::Same),
        ];
        for (n, c, h, w, k, stride, pad) in cases {
            let conv = Conv2dConfig::new([c, c], [k, k])
                .with_stride([stride, stride])
                .with_groups(c)
                .with_padding(pad.clone())
                .with_bias(false)
                .init(&device);
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let case = format!("n{n} c{c} {h}x{w} k{k} s{stride} {pad:?}");
            assert!(fits(&conv, &x), "{case}: fits");
            conv_op_equals_burn(&conv, &x, depthwise, &case);
        }
    }

    #[test]
    fn only_depthwise_training_convolutions_take_the_op() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::zeros([1, 4, 8, 8], &device);
        let conv = |groups: usize, out: usize| {
            Conv2dConfig::new([4, out], [3, 3])
                .with_groups(groups)
                .with_bias(false)
                .init(&device)
        };
        assert!(fits(&conv(4, 4), &x));
        assert!(!fits(&conv(1, 4), &x), "a dense convolution");
        assert!(!fits(&conv(2, 4), &x), "two channels per group");
        assert!(!fits(&conv(4, 8), &x), "a depth multiplier of 2");
        let plain = Tensor::<4>::zeros([1, 4, 8, 8], &Device::flex());
        assert!(!fits(&conv(4, 4), &plain), "inference keeps burn's modules");
        let biased = Conv2dConfig::new([4, 4], [3, 3])
            .with_groups(4)
            .init(&device);
        assert!(!fits(&biased, &x), "a bias");
    }
}
