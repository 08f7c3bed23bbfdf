//! A depthwise convolution (one k×k filter per channel, no bias) as one autodiff node on the
//! CPU backend, with direct kernels for the forward pass and both gradients.
//!
//! burn computes a grouped convolution's weight gradient one group at a time: for a depthwise
//! layer that is one small convolution per channel (up to 1,152 of them per layer in
//! EfficientNet-Lite0), each with its slices, axis swaps and copies; its input gradient goes
//! through a grouped transposed convolution, and "same" padding at stride 2 (uneven sides) adds
//! a padded copy of the input on the way in and a crop on the way out. Here each gradient is a
//! loop over one channel's planes: rows of the output against rows of the input, offset by the
//! filter tap, with the padding handled by clipping the rows rather than by copying the input.
//! Planes (forward, input gradient) and channels (weight gradient) are spread over the threads;
//! each is summed by one thread in a fixed order, so results do not depend on the thread count.
//! Tested against burn's grouped convolution, forward and backward. Where burn's CPU backend
//! could take it upstream: as `conv2d_weight_backward` / `conv2d_x_backward` for
//! `groups == channels_in == channels_out`.

use super::{tensor, with_floats};
use crate::model::vector::wide;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::nn::{PaddingConfig2d, conv::Conv2d};
use burn::prelude::*;
use burn::tensor::DType;
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
        let [t, l, b, r] = self.padding;
        let side = |len: usize, p: usize| (len + p - self.k) / self.stride + 1;
        (side(self.h + t, b), side(self.w + l, r))
    }

    /// The output positions `o` whose input `o·stride + tap − pad` lies inside `0..len`.
    fn valid(&self, tap: usize, pad: usize, len: usize, out: usize) -> (usize, usize) {
        let s = self.stride;
        let lo = pad.saturating_sub(tap).div_ceil(s);
        let hi = if len + pad > tap {
            ((len + pad - tap - 1) / s + 1).min(out)
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

/// `out[o] += wv · src[o·stride]` over a row (the tap's input columns, already offset).
#[inline(always)]
fn axpy(out: &mut [f32], wv: f32, src: &[f32], stride: usize) {
    if stride == 1 {
        out.iter_mut().zip(src).for_each(|(o, x)| *o += wv * x);
    } else {
        out.iter_mut()
            .zip(src.iter().step_by(stride))
            .for_each(|(o, x)| *o += wv * x);
    }
}

/// One output row's taps: for each `(i, j)` with input row `ih` inside the image, `f(tap index,
/// input row, output columns, first input column)`.
#[inline(always)]
fn for_taps(
    s: &Shape,
    oh: usize,
    cols: &[(usize, usize)],
    mut f: impl FnMut(usize, usize, (usize, usize), usize),
) {
    let [t, l, _, _] = s.padding;
    for i in 0..s.k {
        let Some(ih) = (oh * s.stride + i).checked_sub(t).filter(|&r| r < s.h) else {
            continue;
        };
        for (j, &(c0, c1)) in cols.iter().enumerate() {
            if c0 < c1 {
                f(i * s.k + j, ih, (c0, c1), c0 * s.stride + j - l);
            }
        }
    }
}

fn tap_cols(s: &Shape) -> Vec<(usize, usize)> {
    let wo = s.out().1;
    (0..s.k)
        .map(|j| s.valid(j, s.padding[1], s.w, wo))
        .collect()
}

/// The output `[n, c, ho, wo]`.
pub fn forward(x: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    let (ho, wo) = s.out();
    let cols = tap_cols(&s);
    let mut y = vec![0.0f32; s.n * s.c * ho * wo];
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(s.h * s.w))
        .enumerate()
        .for_each(|(plane, (y, x))| {
            let taps = &weight[(plane % s.c) * s.k * s.k..][..s.k * s.k];
            wide(
                #[inline(always)]
                || {
                    for (oh, row) in y.chunks_exact_mut(wo).enumerate() {
                        for_taps(
                            &s,
                            oh,
                            &cols,
                            #[inline(always)]
                            |tap, ih, (c0, c1), start| {
                                axpy(
                                    &mut row[c0..c1],
                                    taps[tap],
                                    &x[ih * s.w + start..],
                                    s.stride,
                                );
                            },
                        );
                    }
                },
            );
        });
    y
}

/// The input gradient `[n, c, h, w]` from the output gradient `dy`.
pub fn backward_input(dy: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    let (ho, wo) = s.out();
    let cols = tap_cols(&s);
    let mut dx = vec![0.0f32; s.n * s.c * s.h * s.w];
    dx.par_chunks_mut(s.h * s.w)
        .zip(dy.par_chunks(ho * wo))
        .enumerate()
        .for_each(|(plane, (dx, dy))| {
            let taps = &weight[(plane % s.c) * s.k * s.k..][..s.k * s.k];
            wide(
                #[inline(always)]
                || {
                    for (oh, g) in dy.chunks_exact(wo).enumerate() {
                        for_taps(
                            &s,
                            oh,
                            &cols,
                            #[inline(always)]
                            |tap, ih, (c0, c1), start| {
                                let row = &mut dx[ih * s.w + start..];
                                let wv = taps[tap];
                                if s.stride == 1 {
                                    row.iter_mut()
                                        .zip(&g[c0..c1])
                                        .for_each(|(d, g)| *d += wv * g);
                                } else {
                                    row.iter_mut()
                                        .step_by(s.stride)
                                        .zip(&g[c0..c1])
                                        .for_each(|(d, g)| *d += wv * g);
                                }
                            },
                        );
                    }
                },
            );
        });
    dx
}

/// The weight gradient `[c, 1, k, k]`: per channel and tap, the products of each output row
/// with the tap's input row added column by column into one row of sums (independent lanes,
/// vectorised), that row summed in f64 at the end; a fixed order throughout.
pub fn backward_weight(x: &[f32], dy: &[f32], s: Shape) -> Vec<f32> {
    let (ho, wo) = s.out();
    let cols = tap_cols(&s);
    let kk = s.k * s.k;
    let per_channel: Vec<Vec<f32>> = (0..s.c)
        .into_par_iter()
        .map(|ch| {
            let mut rows = vec![0.0f32; kk * wo];
            wide(
                #[inline(always)]
                || {
                    for b in 0..s.n {
                        let plane = b * s.c + ch;
                        let x = &x[plane * s.h * s.w..][..s.h * s.w];
                        let dy = &dy[plane * ho * wo..][..ho * wo];
                        for (oh, g) in dy.chunks_exact(wo).enumerate() {
                            for_taps(
                                &s,
                                oh,
                                &cols,
                                #[inline(always)]
                                |tap, ih, (c0, c1), start| {
                                    let sums = &mut rows[tap * wo + c0..tap * wo + c1];
                                    let src = &x[ih * s.w + start..];
                                    if s.stride == 1 {
                                        sums.iter_mut()
                                            .zip(&g[c0..c1])
                                            .zip(src)
                                            .for_each(|((a, g), x)| *a += g * x);
                                    } else {
                                        sums.iter_mut()
                                            .zip(&g[c0..c1])
                                            .zip(src.iter().step_by(s.stride))
                                            .for_each(|((a, g), x)| *a += g * x);
                                    }
                                },
                            );
                        }
                    }
                },
            );
            rows.chunks_exact(wo)
                .map(|r| r.iter().map(|&v| v as f64).sum::<f64>() as f32)
                .collect()
        })
        .collect();
    per_channel.concat()
}

fn shape_of(x: &FlexTensor, weight: &FlexTensor, stride: usize, padding: [usize; 4]) -> Shape {
    let [n, c, h, w] = x.layout().shape().dims::<4>();
    let k = weight.layout().shape().dims::<4>()[3];
    Shape {
        n,
        c,
        h,
        w,
        k,
        stride,
        padding,
    }
}

fn run_forward(x: &FlexTensor, weight: &FlexTensor, s: Shape) -> FlexTensor {
    let (ho, wo) = s.out();
    let y = with_floats(x, |x| with_floats(weight, |w| forward(x, w, s)));
    tensor(y, vec![s.n, s.c, ho, wo])
}

impl DepthwiseBackend for Flex {
    fn depthwise_conv(
        x: FlexTensor,
        weight: FlexTensor,
        stride: usize,
        padding: [usize; 4],
    ) -> FlexTensor {
        run_forward(&x, &weight, shape_of(&x, &weight, stride, padding))
    }
}

#[derive(Debug)]
struct DepthwiseBackward;

impl Backward<Flex, 2> for DepthwiseBackward {
    /// The shape, the input and the weight.
    type State = (Shape, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (s, x, weight) = ops.state;
        with_floats(&dy, |dy| {
            if let Some(node) = px {
                let dx = with_floats(&weight, |w| backward_input(dy, w, s));
                grads.register::<Flex>(node.id, tensor(dx, vec![s.n, s.c, s.h, s.w]));
            }
            if let Some(node) = pw {
                let dw = with_floats(&x, |x| backward_weight(x, dy, s));
                grads.register::<Flex>(node.id, tensor(dw, vec![s.c, 1, s.k, s.k]));
            }
        });
    }
}

impl<C: CheckpointStrategy> DepthwiseBackend for Autodiff<Flex, C> {
    fn depthwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self> {
        let s = shape_of(x.primitive(), weight.primitive(), stride, padding);
        let y = run_forward(x.primitive(), weight.primitive(), s);
        match DepthwiseBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (s, x.primitive().clone(), weight.primitive().clone());
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// Padding `[top, left, bottom, right]` of `conv` on an `h`×`w` input, as burn's `Conv2d` pads:
/// "same" puts the odd pixel at the end.
fn padding(conv: &Conv2d, h: usize, w: usize) -> [usize; 4] {
    let (k, s) = (conv.kernel_size[0], conv.stride[0]);
    let same = |len: usize| {
        let total = (len.div_ceil(s).max(1) - 1) * s + k;
        let total = total.saturating_sub(len);
        (total / 2, total - total / 2)
    };
    match conv.padding {
        PaddingConfig2d::Same => {
            let ((t, b), (l, r)) = (same(h), same(w));
            [t, l, b, r]
        }
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
    }
}

/// Whether `conv` on `x` runs as the op: a depthwise convolution (one input channel per group,
/// as many outputs as inputs), square kernel, equal strides, no bias or dilation, f32, on the
/// autodiff CPU backend; the kernel must fit inside the padded input.
pub fn fits(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let device = x.device();
    let [_, c, h, w] = x.dims();
    let [co, per_group, k, k2] = conv.weight.val().dims();
    let [t, l, b, r] = padding(conv, h, w);
    super::enabled()
        && device.is_autodiff()
        && device == Device::flex()
        && x.dtype() == DType::F32
        && conv.bias.is_none()
        && conv.groups == c
        && per_group == 1
        && co == c
        && k == k2
        && conv.stride[0] == conv.stride[1]
        && conv.stride[0] >= 1
        && conv.dilation == [1, 1]
        && h + t + b >= k
        && w + l + r >= k
}

/// `conv.forward(x)`: through the op when it [`fits`], else through burn's module.
pub fn depthwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !fits(conv, &x) {
        return conv.forward(x);
    }
    let [_, _, h, w] = x.dims();
    let y = <Dispatch as DepthwiseBackend>::depthwise_conv(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        conv.stride[0],
        padding(conv, h, w),
    );
    Tensor::from_dispatch(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    fn close(a: Tensor<4>, b: Tensor<4>, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shape");
        let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
        let err = (a - b).abs().max().into_scalar::<f32>();
        assert!(
            err <= 1e-4 * scale,
            "{what}: max error {err} (scale {scale})"
        );
    }

    /// Output, input gradient and weight gradient against burn's grouped convolution, on odd
    /// and even sides, kernels 1/3/5, strides 1–3, "same" (uneven at stride 2), explicit and no
    /// padding, and an input smaller than the kernel's reach.
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
            let run = |op: bool| {
                let x = x.clone().require_grad();
                let y = if op {
                    depthwise(&conv, x.clone())
                } else {
                    conv.forward(x.clone())
                };
                let weights = y.clone().ones_like().cumsum(3).sin();
                let grads = (y.clone() * weights).sum().backward();
                let dx = x.grad(&grads).expect("dx");
                let dw = conv.weight.val().grad(&grads).expect("dw");
                (y, dx, dw)
            };
            let (y, dx, dw) = run(true);
            let (ry, rdx, rdw) = run(false);
            close(y, ry, &format!("{case}: output"));
            close(dx, rdx, &format!("{case}: dx"));
            close(dw, rdw, &format!("{case}: dweight"));
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
