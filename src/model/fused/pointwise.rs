//! A pointwise (1×1, stride 1, no bias) convolution as one autodiff node on the CPU backend:
//! the forward pass and both gradients as matrix products on the NCHW planes themselves.
//!
//! burn computes a convolution's weight gradient as a convolution of the input by the output
//! gradient with batch and channel axes swapped: for a 1×1 layer of EfficientNet-Lite0 that is
//! a convolution with a 112×112 "kernel" and a 1×1 output, copies of both tensors into the
//! swapped layout, and a matrix product with one output column. Here, per image, with `X` the
//! input `[c_in × h·w]`, `W` the weights `[c_out × c_in]` and `dY` the output gradient:
//! `Y = W·X`, `dX = Wᵀ·dY`, `dW = Σ dY·Xᵀ` — three `gemm` products on the planes as they lie.
//! Images (forward, input gradient) and blocks of output channels (weight gradient) are spread
//! over the threads; each weight-gradient block adds the images in a fixed order, so results do
//! not depend on the thread count. Tested against burn's convolution, forward and backward.
//! Where burn's CPU backend could take it upstream: as `conv2d_weight_backward` /
//! `conv2d_x_backward` for 1×1 kernels with stride 1, no padding and one group.

use super::{tensor, with_floats};
use crate::model::matrix::gemm_into;
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

/// The pointwise convolution as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait PointwiseBackend: Backend {
    /// `x` `[n, c_in, h, w]`, `weight` `[c_out, c_in, 1, 1]`; returns `[n, c_out, h, w]`.
    fn pointwise_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Sizes of one pointwise convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub ci: usize,
    pub co: usize,
    /// Pixels per plane.
    pub hw: usize,
}

/// Output channels per block of the weight gradient (a fixed split, whatever the threads).
const ROWS: usize = 32;

/// The output `[n, c_out, h·w]`.
pub fn forward(x: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    let mut y = vec![0.0f32; s.n * s.co * s.hw];
    y.par_chunks_mut(s.co * s.hw)
        .zip(x.par_chunks(s.ci * s.hw))
        .for_each(|(y, x)| {
            gemm_into(
                [s.co, s.hw, s.ci],
                y,
                s.hw,
                false,
                (weight, s.ci, 1),
                (x, s.hw, 1),
            );
        });
    y
}

/// The input gradient `[n, c_in, h·w]`: `Wᵀ·dY` per image.
pub fn backward_input(dy: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    let mut dx = vec![0.0f32; s.n * s.ci * s.hw];
    dx.par_chunks_mut(s.ci * s.hw)
        .zip(dy.par_chunks(s.co * s.hw))
        .for_each(|(dx, dy)| {
            gemm_into(
                [s.ci, s.hw, s.co],
                dx,
                s.hw,
                false,
                (weight, 1, s.ci),
                (dy, s.hw, 1),
            );
        });
    dx
}

/// The weight gradient `[c_out, c_in]`: `Σ dY·Xᵀ` over the images, in image order, for each
/// block of output channels.
pub fn backward_weight(x: &[f32], dy: &[f32], s: Shape) -> Vec<f32> {
    let mut dw = vec![0.0f32; s.co * s.ci];
    dw.par_chunks_mut(ROWS * s.ci)
        .enumerate()
        .for_each(|(block, dw)| {
            let (r0, rows) = (block * ROWS, dw.len() / s.ci);
            for b in 0..s.n {
                let dy = &dy[(b * s.co + r0) * s.hw..][..rows * s.hw];
                let x = &x[b * s.ci * s.hw..][..s.ci * s.hw];
                gemm_into(
                    [rows, s.ci, s.hw],
                    dw,
                    s.ci,
                    b > 0,
                    (dy, s.hw, 1),
                    (x, 1, s.hw),
                );
            }
        });
    dw
}

fn shape_of(x: &FlexTensor, weight: &FlexTensor) -> Shape {
    let [n, ci, h, w] = x.layout().shape().dims::<4>();
    let co = weight.layout().shape().dims::<4>()[0];
    Shape {
        n,
        ci,
        co,
        hw: h * w,
    }
}

fn run_forward(x: &FlexTensor, weight: &FlexTensor) -> FlexTensor {
    let s = shape_of(x, weight);
    let [n, _, h, w] = x.layout().shape().dims::<4>();
    let y = with_floats(x, |x| with_floats(weight, |w| forward(x, w, s)));
    tensor(y, vec![n, s.co, h, w])
}

impl PointwiseBackend for Flex {
    fn pointwise_conv(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        run_forward(&x, &weight)
    }
}

#[derive(Debug)]
struct PointwiseBackward;

impl Backward<Flex, 2> for PointwiseBackward {
    /// The input and the weight.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, weight) = ops.state;
        let s = shape_of(&x, &weight);
        let x_dims = x.layout().shape().dims::<4>().to_vec();
        with_floats(&dy, |dy| {
            if let Some(node) = px {
                let dx = with_floats(&weight, |w| backward_input(dy, w, s));
                grads.register::<Flex>(node.id, tensor(dx, x_dims));
            }
            if let Some(node) = pw {
                let dw = with_floats(&x, |x| backward_weight(x, dy, s));
                grads.register::<Flex>(node.id, tensor(dw, vec![s.co, s.ci, 1, 1]));
            }
        });
    }
}

impl<C: CheckpointStrategy> PointwiseBackend for Autodiff<Flex, C> {
    fn pointwise_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let y = run_forward(x.primitive(), weight.primitive());
        match PointwiseBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (x.primitive().clone(), weight.primitive().clone());
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// Whether `conv` on `x` runs as the op: a 1×1 kernel, stride 1, no padding, one group, no
/// bias, f32, on the autodiff CPU backend.
pub fn fits(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let device = x.device();
    let [_, c, _, _] = x.dims();
    let [_, c_in, kh, kw] = conv.weight.val().dims();
    let unpadded = match conv.padding {
        PaddingConfig2d::Same | PaddingConfig2d::Valid => true,
        PaddingConfig2d::Explicit(t, l, b, r) => t + l + b + r == 0,
    };
    super::enabled()
        && device.is_autodiff()
        && device == Device::flex()
        && x.dtype() == DType::F32
        && conv.bias.is_none()
        && conv.groups == 1
        && c_in == c
        && [kh, kw] == [1, 1]
        && conv.stride == [1, 1]
        && unpadded
}

/// `conv.forward(x)`: through the op when it [`fits`], else through burn's module.
pub fn pointwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !fits(conv, &x) {
        return conv.forward(x);
    }
    let y = <Dispatch as PointwiseBackend>::pointwise_conv(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
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

    /// Output, input gradient and weight gradient against burn's convolution, on odd sides,
    /// channel counts on both sides of the 32-row weight-gradient blocks, one and several images.
    #[test]
    fn the_pointwise_op_equals_burns_convolution_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(12);
        let cases = [
            (2, 3, 5, 7, 9),
            (3, 16, 40, 4, 4),
            (1, 33, 7, 3, 5),
            (4, 8, 70, 1, 1),
            (2, 65, 33, 6, 11),
        ];
        for (n, ci, co, h, w) in cases {
            let conv = Conv2dConfig::new([ci, co], [1, 1])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .init(&device);
            let x = Tensor::<4>::random([n, ci, h, w], Distribution::Normal(0.0, 1.0), &device);
            let case = format!("n{n} {ci}→{co} {h}x{w}");
            assert!(fits(&conv, &x), "{case}: fits");
            let run = |op: bool| {
                let x = x.clone().require_grad();
                let y = if op {
                    pointwise(&conv, x.clone())
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
    fn only_pointwise_training_convolutions_take_the_op() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::zeros([1, 4, 8, 8], &device);
        let conv = |k: usize, stride: usize, groups: usize| {
            Conv2dConfig::new([4, 8], [k, k])
                .with_stride([stride, stride])
                .with_groups(groups)
                .with_bias(false)
                .init(&device)
        };
        assert!(fits(&conv(1, 1, 1), &x));
        assert!(!fits(&conv(3, 1, 1), &x), "a 3×3 kernel");
        assert!(!fits(&conv(1, 2, 1), &x), "stride 2");
        assert!(!fits(&conv(1, 1, 2), &x), "two groups");
        let plain = Tensor::<4>::zeros([1, 4, 8, 8], &Device::flex());
        assert!(
            !fits(&conv(1, 1, 1), &plain),
            "inference keeps burn's modules"
        );
        let biased = Conv2dConfig::new([4, 8], [1, 1]).init(&device);
        assert!(!fits(&biased, &x), "a bias");
        let padded = Conv2dConfig::new([4, 8], [1, 1])
            .with_padding(PaddingConfig2d::Explicit(1, 0, 0, 0))
            .with_bias(false)
            .init(&device);
        assert!(!fits(&padded, &x), "padding");
    }
}
