//! A dense convolution (one group, no bias, square kernel; any stride and padding) as one
//! autodiff node on the CPU backend: the forward pass and both gradients as matrix products.
//!
//! burn computes a convolution's weight gradient as a convolution of the input by the output
//! gradient with batch and channel axes swapped: for a 1×1 layer of EfficientNet-Lite0 that is
//! a convolution with a 112×112 "kernel" and a 1×1 output, copies of both tensors into the
//! swapped layout, and a matrix product with one output column. Here, per image, with `X` the
//! input's columns `[c_in·k·k × ho·wo]` (im2col; for a 1×1 stride-1 unpadded convolution the
//! NCHW planes themselves, no copy), `W` the weights `[c_out × c_in·k·k]` and `dY` the output
//! gradient: `Y = W·X`, `dX = col2im(Wᵀ·dY)`, `dW = Σ dY·Xᵀ` — three `gemm` products.
//! Images (forward, input gradient) and blocks of output channels (weight gradient) are spread
//! over the threads; each weight-gradient block adds the images in a fixed order, so results do
//! not depend on the thread count. Tested against burn's convolution, forward and backward.
//! Where burn's CPU backend could take it upstream: as `conv2d_weight_backward` /
//! `conv2d_x_backward` for one group.

use super::depthwise::padding;
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
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

/// The dense convolution as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait DenseBackend: Backend {
    /// `x` `[n, c_in, h, w]`, `weight` `[c_out, c_in, k, k]`; `padding` is
    /// `[top, left, bottom, right]`; returns `[n, c_out, ho, wo]`.
    fn dense_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self>;
}

/// Sizes of one dense convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub ci: usize,
    pub co: usize,
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

    /// Output pixels per plane.
    fn howo(&self) -> usize {
        let (ho, wo) = self.out();
        ho * wo
    }

    /// Rows of the column matrix, `c_in·k·k`.
    fn rows(&self) -> usize {
        self.ci * self.k * self.k
    }

    /// Whether the input planes are the column matrix already (1×1, stride 1, no padding).
    fn direct(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.padding == [0; 4]
    }

    /// The input `[c_in, h, w]` of one image as its column matrix `[c_in·k·k, ho·wo]`: row
    /// `(c, i, j)` holds input pixel `(o_h·stride + i − top, o_w·stride + j − left)` of channel
    /// `c` for each output pixel, zero in the padding. Borrowed when [`direct`](Self::direct).
    fn columns<'a>(&self, x: &'a [f32], col: &'a mut Vec<f32>) -> &'a [f32] {
        if self.direct() {
            return x;
        }
        let (ho, wo) = self.out();
        col.clear();
        col.resize(self.rows() * ho * wo, 0.0);
        for (r, row) in col.chunks_exact_mut(ho * wo).enumerate() {
            let (c, i, j) = (r / (self.k * self.k), r / self.k % self.k, r % self.k);
            let plane = &x[c * self.h * self.w..][..self.h * self.w];
            self.taps(i, j, |o, at| row[o] = plane[at]);
        }
        col
    }

    /// For tap `(i, j)`: `f(output pixel, input pixel)` for each output pixel whose input lies
    /// inside the plane.
    fn taps(&self, i: usize, j: usize, mut f: impl FnMut(usize, usize)) {
        let (ho, wo) = self.out();
        let [t, l, _, _] = self.padding;
        for oh in 0..ho {
            let Some(ih) = (oh * self.stride + i)
                .checked_sub(t)
                .filter(|&v| v < self.h)
            else {
                continue;
            };
            for ow in 0..wo {
                if let Some(iw) = (ow * self.stride + j)
                    .checked_sub(l)
                    .filter(|&v| v < self.w)
                {
                    f(oh * wo + ow, ih * self.w + iw);
                }
            }
        }
    }

    /// `dx` `[c_in, h, w]` ← the column gradient `[c_in·k·k, ho·wo]` added back onto the pixels
    /// each column came from (the adjoint of [`columns`](Self::columns)).
    fn add_columns(&self, col: &[f32], dx: &mut [f32]) {
        dx.fill(0.0);
        for (r, row) in col.chunks_exact(self.howo()).enumerate() {
            let (c, i, j) = (r / (self.k * self.k), r / self.k % self.k, r % self.k);
            let plane = &mut dx[c * self.h * self.w..][..self.h * self.w];
            self.taps(i, j, |o, at| plane[at] += row[o]);
        }
    }
}

/// Output channels per block of the weight gradient (a fixed split, whatever the threads).
const ROWS: usize = 32;

/// The output `[n, c_out, ho·wo]`.
pub fn forward(x: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    let (howo, hw) = (s.howo(), s.h * s.w);
    let mut y = vec![0.0f32; s.n * s.co * howo];
    y.par_chunks_mut(s.co * howo)
        .zip(x.par_chunks(s.ci * hw))
        .for_each_init(Vec::new, |col, (y, x)| {
            let x = s.columns(x, col);
            let rows = s.rows();
            gemm_into(
                [s.co, howo, rows],
                y,
                howo,
                false,
                (weight, rows, 1),
                (x, howo, 1),
            );
        });
    y
}

/// The input gradient `[n, c_in, h·w]`: `Wᵀ·dY` per image, added back onto the input pixels.
pub fn backward_input(dy: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    let (howo, hw, rows) = (s.howo(), s.h * s.w, s.rows());
    let mut dx = vec![0.0f32; s.n * s.ci * hw];
    dx.par_chunks_mut(s.ci * hw)
        .zip(dy.par_chunks(s.co * howo))
        .for_each_init(Vec::new, |col, (dx, dy)| {
            let product = |dst: &mut [f32]| {
                gemm_into(
                    [rows, howo, s.co],
                    dst,
                    howo,
                    false,
                    (weight, 1, rows),
                    (dy, howo, 1),
                );
            };
            if s.direct() {
                product(dx);
            } else {
                col.resize(rows * howo, 0.0);
                product(col);
                s.add_columns(col, dx);
            }
        });
    dx
}

/// The weight gradient `[c_out, c_in·k·k]`: `Σ dY·Xᵀ` over the images, in image order, for
/// each block of output channels (the column matrix is rebuilt per block: one block for up to
/// 32 output channels).
pub fn backward_weight(x: &[f32], dy: &[f32], s: Shape) -> Vec<f32> {
    let (howo, hw, rows) = (s.howo(), s.h * s.w, s.rows());
    let mut dw = vec![0.0f32; s.co * rows];
    dw.par_chunks_mut(ROWS * rows)
        .enumerate()
        .for_each_init(Vec::new, |col, (block, dw)| {
            let (r0, out) = (block * ROWS, dw.len() / rows);
            for b in 0..s.n {
                let dy = &dy[(b * s.co + r0) * howo..][..out * howo];
                let x = s.columns(&x[b * s.ci * hw..][..s.ci * hw], col);
                gemm_into(
                    [out, rows, howo],
                    dw,
                    rows,
                    b > 0,
                    (dy, howo, 1),
                    (x, 1, howo),
                );
            }
        });
    dw
}

fn shape_of(x: &FlexTensor, weight: &FlexTensor, stride: usize, padding: [usize; 4]) -> Shape {
    let [n, ci, h, w] = x.layout().shape().dims::<4>();
    let [co, _, k, _] = weight.layout().shape().dims::<4>();
    Shape {
        n,
        ci,
        co,
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
    tensor(y, vec![s.n, s.co, ho, wo])
}

impl DenseBackend for Flex {
    fn dense_conv(
        x: FlexTensor,
        weight: FlexTensor,
        stride: usize,
        padding: [usize; 4],
    ) -> FlexTensor {
        run_forward(&x, &weight, shape_of(&x, &weight, stride, padding))
    }
}

#[derive(Debug)]
struct DenseBackward;

impl Backward<Flex, 2> for DenseBackward {
    /// The shape, the input and the weight.
    type State = (Shape, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (s, x, weight) = ops.state;
        with_floats(&dy, |dy| {
            if let Some(node) = px {
                let dx = with_floats(&weight, |w| backward_input(dy, w, s));
                grads.register::<Flex>(node.id, tensor(dx, vec![s.n, s.ci, s.h, s.w]));
            }
            if let Some(node) = pw {
                let dw = with_floats(&x, |x| backward_weight(x, dy, s));
                grads.register::<Flex>(node.id, tensor(dw, vec![s.co, s.ci, s.k, s.k]));
            }
        });
    }
}

impl<C: CheckpointStrategy> DenseBackend for Autodiff<Flex, C> {
    fn dense_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self> {
        let s = shape_of(x.primitive(), weight.primitive(), stride, padding);
        let y = run_forward(x.primitive(), weight.primitive(), s);
        match DenseBackward
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

/// Whether `conv` on `x` runs as the op: one group, square kernel, equal strides, no bias or
/// dilation, f32, on the autodiff CPU backend; the kernel must fit inside the padded input.
pub fn fits(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let device = x.device();
    let [_, c, h, w] = x.dims();
    let [_, c_in, k, k2] = conv.weight.val().dims();
    let [t, l, b, r] = padding(conv, h, w);
    super::enabled()
        && device.is_autodiff()
        && device == Device::flex()
        && x.dtype() == DType::F32
        && conv.bias.is_none()
        && conv.groups == 1
        && c_in == c
        && k == k2
        && conv.stride[0] == conv.stride[1]
        && conv.stride[0] >= 1
        && conv.dilation == [1, 1]
        && h + t + b >= k
        && w + l + r >= k
}

/// `conv.forward(x)`: through the op when it [`fits`], else through burn's module.
pub fn dense(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !fits(conv, &x) {
        return conv.forward(x);
    }
    let [_, _, h, w] = x.dims();
    let y = <Dispatch as DenseBackend>::dense_conv(
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
    use burn::nn::PaddingConfig2d;
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

    /// Output, input gradient and weight gradient against burn's convolution: 1×1 (the planes as
    /// they lie) on odd sides and channel counts on both sides of the 32-row weight-gradient
    /// blocks; 3×3 and 5×5 through the column matrix at strides 1–3 with "same" (uneven at
    /// stride 2, like the backbone's stem), explicit and no padding.
    #[test]
    fn the_dense_op_equals_burns_convolution_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(12);
        let same = PaddingConfig2d::Same;
        let cases = [
            (2, 3, 5, 7, 9, 1, 1, same.clone()),
            (3, 16, 40, 4, 4, 1, 1, same.clone()),
            (1, 33, 7, 3, 5, 1, 1, PaddingConfig2d::Valid),
            (4, 8, 70, 1, 1, 1, 1, same.clone()),
            (2, 65, 33, 6, 11, 1, 1, same.clone()),
            (2, 3, 8, 12, 12, 3, 2, same.clone()),
            (2, 3, 36, 11, 9, 3, 2, same.clone()),
            (1, 4, 6, 9, 10, 3, 1, same.clone()),
            (2, 2, 5, 10, 9, 5, 3, PaddingConfig2d::Explicit(1, 0, 2, 1)),
            (2, 3, 4, 7, 6, 3, 1, PaddingConfig2d::Valid),
            (2, 5, 3, 6, 6, 1, 2, PaddingConfig2d::Valid),
        ];
        for (n, ci, co, h, w, k, stride, pad) in cases {
            let conv = Conv2dConfig::new([ci, co], [k, k])
                .with_stride([stride, stride])
                .with_padding(pad.clone())
                .with_bias(false)
                .init(&device);
            let x = Tensor::<4>::random([n, ci, h, w], Distribution::Normal(0.0, 1.0), &device);
            let case = format!("n{n} {ci}→{co} {h}x{w} k{k} s{stride} {pad:?}");
            assert!(fits(&conv, &x), "{case}: fits");
            let run = |op: bool| {
                let x = x.clone().require_grad();
                let y = if op {
                    dense(&conv, x.clone())
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
    fn only_dense_training_convolutions_take_the_op() {
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
        assert!(fits(&conv(3, 2, 1), &x));
        assert!(!fits(&conv(1, 1, 2), &x), "two groups");
        assert!(!fits(&conv(3, 1, 4), &x), "depthwise");
        let plain = Tensor::<4>::zeros([1, 4, 8, 8], &Device::flex());
        assert!(
            !fits(&conv(1, 1, 1), &plain),
            "inference keeps burn's modules"
        );
        let biased = Conv2dConfig::new([4, 8], [1, 1]).init(&device);
        assert!(!fits(&biased, &x), "a bias");
        let dilated = Conv2dConfig::new([4, 8], [3, 3])
            .with_dilation([2, 2])
            .with_bias(false)
            .init(&device);
        assert!(!fits(&dilated, &x), "dilation");
    }
}
