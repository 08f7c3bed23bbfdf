//! What the two convolution ops of this folder ([`dense`](super::dense) and
//! [`depthwise`](super::depthwise)) share around their kernels: when a convolution can take
//! them, "same" padding as burn computes it, and the backend plumbing — one node with the
//! input and the weight as parents, the forward pass on the CPU backend, and a backward pass
//! that asks the kernels for the gradients of whichever parents need one.

use super::{enabled, tensor, with_floats};
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Dispatch};
use burn::nn::{PaddingConfig2d, conv::Conv2d};
use burn::prelude::*;
use burn::tensor::DType;
use std::marker::PhantomData;

/// A convolution op's sizes, and its kernels on flat f32 slices in NCHW order.
pub(super) trait ConvShape: Copy + Send + Sync + std::fmt::Debug + 'static {
    /// From the input's `[n, c, h, w]` and the weight's `[c_out, c_in / groups, k, k]`.
    fn new(x: [usize; 4], weight: [usize; 4], stride: usize, padding: [usize; 4]) -> Self;
    /// The output's `[n, c_out, ho, wo]`.
    fn out_dims(&self) -> [usize; 4];
    fn forward(&self, x: &[f32], weight: &[f32]) -> Vec<f32>;
    fn backward_input(&self, dy: &[f32], weight: &[f32]) -> Vec<f32>;
    fn backward_weight(&self, x: &[f32], dy: &[f32]) -> Vec<f32>;
}

/// Output height and width of a `k`×`k` convolution with `stride` and `padding`
/// (`[top, left, bottom, right]`) on an `h`×`w` input.
pub(super) fn out_size(
    [h, w]: [usize; 2],
    k: usize,
    stride: usize,
    [t, l, b, r]: [usize; 4],
) -> (usize, usize) {
    let side = |len: usize| (len - k) / stride + 1;
    (side(h + t + b), side(w + l + r))
}

fn run_forward<S: ConvShape>(
    x: &FlexTensor,
    weight: &FlexTensor,
    stride: usize,
    padding: [usize; 4],
) -> (S, FlexTensor) {
    let dims = |t: &FlexTensor| t.layout().shape().dims::<4>();
    let s = S::new(dims(x), dims(weight), stride, padding);
    let y = with_floats(x, |x| with_floats(weight, |w| s.forward(x, w)));
    (s, tensor(y, s.out_dims().to_vec()))
}

/// The op's forward pass on the CPU backend.
pub(super) fn flex_conv<S: ConvShape>(
    x: FlexTensor,
    weight: FlexTensor,
    stride: usize,
    padding: [usize; 4],
) -> FlexTensor {
    run_forward::<S>(&x, &weight, stride, padding).1
}

#[derive(Debug)]
struct ConvBackward<S>(PhantomData<S>);

impl<S: ConvShape> Backward<Flex, 2> for ConvBackward<S> {
    /// The sizes, the input and the weight.
    type State = (S, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (s, x, weight) = ops.state;
        with_floats(&dy, |dy| {
            if let Some(node) = px {
                let dx = with_floats(&weight, |w| s.backward_input(dy, w));
                grads.register::<Flex>(node.id, tensor(dx, x.layout().shape().to_vec()));
            }
            if let Some(node) = pw {
                let dw = with_floats(&x, |x| s.backward_weight(x, dy));
                grads.register::<Flex>(node.id, tensor(dw, weight.layout().shape().to_vec()));
            }
        });
    }
}

/// The op on the autodiff CPU backend: the forward pass, and the node whose backward pass
/// computes the gradients.
pub(super) fn autodiff_conv<S: ConvShape, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    stride: usize,
    padding: [usize; 4],
) -> FloatTensor<Autodiff<Flex, C>> {
    let (s, y) = run_forward::<S>(x.primitive(), weight.primitive(), stride, padding);
    match ConvBackward::<S>(PhantomData)
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

/// Padding `[top, left, bottom, right]` of `conv` on an `h`×`w` input, as burn's `Conv2d` pads:
/// "same" puts the odd pixel at the end.
pub(super) fn padding(conv: &Conv2d, h: usize, w: usize) -> [usize; 4] {
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

/// What both ops need of `conv` on `x`, whatever its groups: a training pass (autodiff) on the
/// CPU backend, f32, no bias or dilation, a square kernel that fits inside the padded input,
/// equal strides.
pub(super) fn fits(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let device = x.device();
    let [_, _, h, w] = x.dims();
    let [_, _, k, k2] = conv.weight.val().dims();
    let [t, l, b, r] = padding(conv, h, w);
    enabled()
        && device.is_autodiff()
        && device == Device::flex()
        && x.dtype() == DType::F32
        && conv.bias.is_none()
        && k == k2
        && conv.stride[0] == conv.stride[1]
        && conv.stride[0] >= 1
        && conv.dilation == [1, 1]
        && h + t + b >= k
        && w + l + r >= k
}

/// `conv.forward(x)`: through `op` (an op's `Dispatch` entry point) when `fits`, else through
/// burn's module.
pub(super) fn through(
    conv: &Conv2d,
    x: Tensor<4>,
    fits: bool,
    op: impl FnOnce(
        FloatTensor<Dispatch>,
        FloatTensor<Dispatch>,
        usize,
        [usize; 4],
    ) -> FloatTensor<Dispatch>,
) -> Tensor<4> {
    if !fits {
        return conv.forward(x);
    }
    let [_, _, h, w] = x.dims();
    let y = op(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        conv.stride[0],
        padding(conv, h, w),
    );
    Tensor::from_dispatch(y)
}
