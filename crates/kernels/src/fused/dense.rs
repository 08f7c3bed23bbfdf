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

use super::conv_op::{self, ConvShape, out_size};
use super::zeroed;
use crate::matrix::gemm_into;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::nn::conv::Conv2d;
use burn::prelude::*;
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
        out_size([self.h, self.w], self.k, self.stride, self.padding)
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

    /// Images per product of the 1×1 layers' forward pass and input gradient: several when the
    /// planes are small ([`SMALL_PLANE`]), so that each product has a few hundred columns and
    /// the weights are packed once for them all, not once per image. At least four groups per
    /// batch, whatever the thread count, so that both cores have work and results do not
    /// depend on the threads.
    fn images_per_product(&self) -> usize {
        if !self.direct() || self.howo() >= SMALL_PLANE {
            return 1;
        }
        (COLUMNS / self.howo()).clamp(1, self.n.div_ceil(4).max(1))
    }

    /// The input `[c_in, h, w]` of one image as its column matrix `[c_in·k·k, ho·wo]`: row
    /// `(c, i, j)` holds input pixel `(o_h·stride + i − top, o_w·stride + j − left)` of channel
    /// `c` for each output pixel, zero in the padding. Borrowed when [`direct`](Self::direct).
    /// `col` is empty or holds the columns of an image of the same shape (see [`zeroed`]).
    fn columns<'a>(&self, x: &'a [f32], col: &'a mut Vec<f32>) -> &'a [f32] {
        if self.direct() {
            return x;
        }
        let (ho, wo) = self.out();
        zeroed(col, self.rows() * ho * wo);
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

    /// `dx` `[c_in, h, w]` (zeros on entry) ← the column gradient `[c_in·k·k, ho·wo]` added back
    /// onto the pixels each column came from (the adjoint of [`columns`](Self::columns)).
    fn add_columns(&self, col: &[f32], dx: &mut [f32]) {
        for (r, row) in col.chunks_exact(self.howo()).enumerate() {
            let (c, i, j) = (r / (self.k * self.k), r / self.k % self.k, r % self.k);
            let plane = &mut dx[c * self.h * self.w..][..self.h * self.w];
            self.taps(i, j, |o, at| plane[at] += row[o]);
        }
    }
}

/// Output channels per block of the weight gradient (a fixed split, whatever the threads).
const ROWS: usize = 32;

/// Output planes smaller than this (EfficientNet's 7×7 at 224 px; 6×6, 3×3, 2×2 at 48 px) are
/// multiplied several images at a time in the 1×1 layers' forward pass and input gradient
/// ([`Shape::images_per_product`]).
const SMALL_PLANE: usize = 64;

/// Columns a product of several images' small planes aims at.
const COLUMNS: usize = 256;

/// `dst` `[c, m·hw]` ← `src` `[m, c, hw]` (the planes of `m` images, channel-major).
fn channel_major(src: &[f32], [m, c, hw]: [usize; 3], dst: &mut Vec<f32>) {
    dst.resize(m * c * hw, 0.0);
    for (b, image) in src.chunks_exact(c * hw).enumerate() {
        for (ch, plane) in image.chunks_exact(hw).enumerate() {
            dst[(ch * m + b) * hw..][..hw].copy_from_slice(plane);
        }
    }
}

/// `dst` `[m, c, hw]` ← `src` `[c, m·hw]` (the inverse of [`channel_major`]).
fn image_major(src: &[f32], [m, c, hw]: [usize; 3], dst: &mut [f32]) {
    for (b, image) in dst.chunks_exact_mut(c * hw).enumerate() {
        for (ch, plane) in image.chunks_exact_mut(hw).enumerate() {
            plane.copy_from_slice(&src[(ch * m + b) * hw..][..hw]);
        }
    }
}

/// The 1×1 product `out = A·in` for a group of images whose planes are small: `input`
/// `[m, k, hw]` and `out` `[m, rows, hw]` (NCHW), `a` the `[rows × k]` operand; both sides
/// are laid out channel-major (`[k, m·hw]`) so that one product serves the group.
fn grouped_product(
    [rows, k, hw]: [usize; 3],
    a: (&[f32], usize, usize),
    input: &[f32],
    out: &mut [f32],
    (cols, prod): (&mut Vec<f32>, &mut Vec<f32>),
) {
    let m = input.len() / (k * hw);
    channel_major(input, [m, k, hw], cols);
    // Every element of `prod` is written by the product (no accumulation).
    prod.resize(rows * m * hw, 0.0);
    gemm_into([rows, m * hw, k], prod, m * hw, false, a, (cols, m * hw, 1));
    image_major(prod, [m, rows, hw], out);
}

/// The output `[n, c_out, ho·wo]`.
pub fn forward(x: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    let (howo, hw) = (s.howo(), s.h * s.w);
    let (mut y, g) = (vec![0.0f32; s.n * s.co * howo], s.images_per_product());
    y.par_chunks_mut(g * s.co * howo)
        .zip(x.par_chunks(g * s.ci * hw))
        .for_each_init(Default::default, |(col, prod), (y, x)| {
            let rows = s.rows();
            let w = (weight, rows, 1);
            if g > 1 {
                return grouped_product([s.co, rows, howo], w, x, y, (col, prod));
            }
            let x = s.columns(x, col);
            gemm_into([s.co, howo, rows], y, howo, false, w, (x, howo, 1));
        });
    y
}

/// The input gradient `[n, c_in, h·w]`: `Wᵀ·dY` per image, added back onto the input pixels.
pub fn backward_input(dy: &[f32], weight: &[f32], s: Shape) -> Vec<f32> {
    let (howo, hw, rows) = (s.howo(), s.h * s.w, s.rows());
    let (mut dx, g) = (vec![0.0f32; s.n * s.ci * hw], s.images_per_product());
    dx.par_chunks_mut(g * s.ci * hw)
        .zip(dy.par_chunks(g * s.co * howo))
        .for_each_init(Default::default, |(col, prod), (dx, dy)| {
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
            if g > 1 {
                let wt = (weight, 1, rows);
                grouped_product([rows, s.co, howo], wt, dy, dx, (col, prod));
            } else if s.direct() {
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

impl ConvShape for Shape {
    fn new(
        [n, ci, h, w]: [usize; 4],
        weight: [usize; 4],
        stride: usize,
        padding: [usize; 4],
    ) -> Self {
        let [co, _, k, _] = weight;
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
    fn out_dims(&self) -> [usize; 4] {
        let (ho, wo) = self.out();
        [self.n, self.co, ho, wo]
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

impl DenseBackend for Flex {
    fn dense_conv(
        x: FlexTensor,
        weight: FlexTensor,
        stride: usize,
        padding: [usize; 4],
    ) -> FlexTensor {
        conv_op::flex_conv::<Shape>(x, weight, stride, padding)
    }
}

impl<C: CheckpointStrategy> DenseBackend for Autodiff<Flex, C> {
    fn dense_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self> {
        conv_op::autodiff_conv::<Shape, C>(x, weight, stride, padding)
    }
}

/// Whether `conv` on `x` runs as the op: one group (and what both convolution ops need,
/// `conv_op::fits`).
pub fn fits(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let [_, c, _, _] = x.dims();
    conv_op::fits(conv, x) && conv.groups == 1 && conv.weight.val().dims()[1] == c
}

/// `conv.forward(x)`: through the op when it [`fits`], else through burn's module.
pub fn dense(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let fits = fits(conv, &x);
    conv_op::through(conv, x, fits, <Dispatch as DenseBackend>::dense_conv)
}

#[cfg(test)]
mod tests {
    use super::super::tests::conv_op_equals_burn;
    use super::*;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    /// Output, input gradient and weight gradient against burn's convolution: 1×1 (the planes as
    /// they lie) on odd sides and channel counts on both sides of the 32-row weight-gradient
    /// blocks, and on small planes in groups of images (the last group short: 7 images of 2×2
    /// in groups of 2, 5 of 6×6 in groups of 2); 3×3 and 5×5 through the column matrix at strides 1–3 with "same" (uneven at
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
            (9, 12, 20, 3, 3, 1, 1, same.clone()),
            (7, 10, 6, 2, 2, 1, 1, same.clone()),
            (5, 40, 17, 6, 6, 1, 1, same.clone()),
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
            conv_op_equals_burn(&conv, &x, dense, &case);
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
