//! A CPU inference path for the plain CNNs (`arch: cnn`, ReLU) and EfficientNet-Lite0: the
//! network's weights compiled once, at load time, into channels-last (NHWC) kernels that fuse
//! what the general backend runs as separate passes.
//!
//! Each convolution unit (convolution → optional 2×2 max-pool → batch-norm → ReLU) is one
//! im2col copy of contiguous NHWC runs, one matrix product through the `gemm` crate (the kernels
//! burn's CPU backend uses too) with weights packed at load time, and one epilogue pass that
//! pools, applies batch-norm as a per-channel scale and shift (with the convolution bias folded
//! into the shift: a per-channel constant commutes with the max) and clamps at zero. A 3×3,
//! stride-1 convolution goes through Winograd's F(2×2, 3×3) instead ([`super::winograd`]:
//! filters transformed at load time, 16 products of 2.25× fewer multiplications in all, the
//! pool and epilogue done in the output transform). Activations
//! stay channels-last from the first layer to the global pool, so no layout conversion runs
//! between layers, and no tensor is allocated per operation. EfficientNet's 1×1 convolutions are
//! one matrix product each without any copy, its depthwise convolutions a direct kernel over
//! contiguous channels, each followed by the same fused epilogue (ReLU6, or none before a
//! residual sum). Training and Grad-CAM keep using
//! burn's modules; this path only scores, and [`CnnEngine::compile`] declines any network it
//! does not reproduce exactly (other activations, heads with batch-norm, other architectures).
//! Tested against burn's forward pass to 1e-4 on random networks and odd sizes.

use super::efficientnet::{ConvBnRelu6, MbConv};
use super::{Activation, Block, ConvUnit, GlobalPool, Network};
use super::{matrix, winograd};
use burn::nn::{BatchNorm, Linear, PaddingConfig2d, conv::Conv2d};
use burn::prelude::*;

/// Rows of one im2col block: big enough for the matrix kernels to run at speed, small enough
/// that the block (512 × 288 floats for a 3×3 convolution of 32 channels, ~0.6 MB) is still in
/// the core's cache when the product reads it (2,048 rows: ~13,100 img/s at batch 256 on the
/// default net; 512: ~15,000).
const BLOCK_ROWS: usize = 512;

/// Floats of the widest Winograd-domain matrix (`16 × tiles × channels`) of one block.
const WINOGRAD_FLOATS: usize = 1 << 16;

/// What follows the per-channel scale and shift.
#[derive(Clone, Copy, PartialEq)]
enum Act {
    Relu,
    Relu6,
    None,
}

impl Act {
    /// The activation as a clamp.
    fn bounds(self) -> (f32, f32) {
        match self {
            Act::Relu => (0.0, f32::INFINITY),
            Act::Relu6 => (0.0, 6.0),
            Act::None => (f32::NEG_INFINITY, f32::INFINITY),
        }
    }

    fn apply(self, v: f32) -> f32 {
        match self {
            Act::Relu => v.max(0.0),
            Act::Relu6 => v.clamp(0.0, 6.0),
            Act::None => v,
        }
    }
}

/// Zero padding: the same on every side, or burn's `Same` (TensorFlow's: output ⌈size/stride⌉,
/// any odd pixel of padding at the end).
#[derive(Clone, Copy)]
enum Pad {
    Fixed(usize),
    Same,
}

/// Output size and padding before the first row/column for an input of `size`.
fn geometry(pad: Pad, k: usize, stride: usize, size: usize) -> (usize, usize) {
    match pad {
        Pad::Fixed(p) => ((size + 2 * p).saturating_sub(k) / stride + 1, p),
        Pad::Same => {
            let out = size.div_ceil(stride);
            let total = ((out.max(1) - 1) * stride + k).saturating_sub(size);
            (out, total / 2)
        }
    }
}

fn padding(conv: &Conv2d) -> Option<Pad> {
    match &conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => Some(Pad::Fixed(*t)),
        PaddingConfig2d::Valid => Some(Pad::Fixed(0)),
        PaddingConfig2d::Same => Some(Pad::Same),
        _ => None,
    }
}

/// A convolution with one group: im2col (none for 1×1, stride 1) and a matrix product.
struct ConvLayer {
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: Pad,
    act: Act,
    /// `[k·k·c_in, c_out]`, row `(ky·k + kx)·c_in + ci`: the im2col order of NHWC input.
    weight: Vec<f32>,
    pool: bool,
    /// After the optional pool: `relu(scale · x + shift)` per channel.
    scale: Vec<f32>,
    shift: Vec<f32>,
    /// The filters in the Winograd domain, for 3×3, stride-1, padding-1 convolutions.
    winograd: Option<winograd::Filters>,
}

struct Dense {
    /// `[d_in, d_out]`, as burn stores it.
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

/// The compiled network: convolution units, then global pooling and the dense head.
pub struct CnnEngine {
    ops: Vec<Op>,
    pool: GlobalPool,
    hidden: Vec<Dense>,
    output: Dense,
}

fn values<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().ok()
}

impl ConvLayer {
    fn from_unit(u: &ConvUnit) -> Option<Self> {
        if u.act != Activation::Relu {
            return None;
        }
        Self::compile(&u.conv, u.norm.as_ref(), u.pool, Act::Relu)
    }

    fn compile(conv: &Conv2d, norm: Option<&BatchNorm>, pool: bool, act: Act) -> Option<Self> {
        let [c_out, c_in, kh, kw] = conv.weight.val().dims();
        let pad = padding(conv)?;
        let square = kh == kw && conv.stride[0] == conv.stride[1];
        if !square || conv.groups != 1 || conv.dilation != [1, 1] {
            return None;
        }
        let k = kh;
        let w = values(conv.weight.val())?;
        let mut weight = vec![0f32; k * k * c_in * c_out];
        for co in 0..c_out {
            for ci in 0..c_in {
                for ky in 0..k {
                    for kx in 0..k {
                        let src = ((co * c_in + ci) * k + ky) * k + kx;
                        weight[((ky * k + kx) * c_in + ci) * c_out + co] = w[src];
                    }
                }
            }
        }
        let (scale, shift) = affine(conv, norm, c_out)?;
        let same = matches!(pad, Pad::Fixed(1) | Pad::Same);
        let winograd = (k == 3 && conv.stride[0] == 1 && same)
            .then(|| winograd::Filters::new(&weight, c_in, c_out));
        Some(Self {
            c_in,
            c_out,
            k,
            stride: conv.stride[0],
            pad,
            act,
            weight,
            pool,
            scale,
            shift,
            winograd,
        })
    }

    /// Channels-last `[n, size, size, c_in]` → `([n, s, s, c_out], s)`.
    fn forward(&self, x: &[f32], n: usize, size: usize) -> (Vec<f32>, usize) {
        let (o, pad) = geometry(self.pad, self.k, self.stride, size);
        if let Some(filters) = &self.winograd {
            return self.forward_winograd(filters, x, n, size);
        }
        let kk = self.k * self.k * self.c_in;
        let pixels = o * o;
        if self.k == 1 && self.stride == 1 && pad == 0 {
            // A pointwise convolution is a matrix product of the activations as they are.
            let mut y = vec![0f32; n * pixels * self.c_out];
            matrix::product(x, &self.weight, &mut y, [n * pixels, kk, self.c_out]);
            return self.finish(y, n, o);
        }
        // Whole images per block (at least one), so a block is one contiguous run of rows; the
        // pool and the epilogue run on each block while it is still in cache.
        let per_block = (BLOCK_ROWS / pixels).max(1);
        let side = if self.pool { o / 2 } else { o };
        let out_pixels = side * side;
        let mut y = vec![0f32; n * out_pixels * self.c_out];
        let mut cols = vec![0f32; per_block.min(n) * pixels * kk];
        let mut block = vec![
            0f32;
            if self.pool {
                per_block.min(n) * pixels * self.c_out
            } else {
                0
            }
        ];
        for first in (0..n).step_by(per_block) {
            let count = per_block.min(n - first);
            let rows = count * pixels;
            for i in 0..count {
                let img = &x[(first + i) * size * size * self.c_in..][..size * size * self.c_in];
                let patch = &mut cols[i * pixels * kk..][..pixels * kk];
                self.im2col(img, size, o, pad, patch);
            }
            let out = &mut y[first * out_pixels * self.c_out..][..count * out_pixels * self.c_out];
            if self.pool {
                let conv = &mut block[..rows * self.c_out];
                matrix::product(
                    &cols[..rows * kk],
                    &self.weight,
                    conv,
                    [rows, kk, self.c_out],
                );
                max_pool2_nhwc_into(conv, count, o, self.c_out, out);
            } else {
                matrix::product(
                    &cols[..rows * kk],
                    &self.weight,
                    out,
                    [rows, kk, self.c_out],
                );
            }
            epilogue_in_place(out, &self.scale, &self.shift, self.act);
        }
        (y, side)
    }

    /// [`Self::forward`] through Winograd's F(2×2, 3×3), a few whole images per block.
    fn forward_winograd(
        &self,
        filters: &winograd::Filters,
        x: &[f32],
        n: usize,
        size: usize,
    ) -> (Vec<f32>, usize) {
        let side = if self.pool { size / 2 } else { size };
        let t = winograd::tiles_per_side(size, self.pool);
        let widest = self.c_in.max(self.c_out);
        let per_block = (WINOGRAD_FLOATS / (winograd::TAPS * t * t * widest).max(1)).max(1);
        let block = winograd::Block {
            input: winograd::Layout::ChannelsLast,
            output: winograd::Layout::ChannelsLast,
            filters,
            scale: &self.scale,
            shift: &self.shift,
            clamp: self.act.bounds(),
            pool: self.pool,
        };
        let mut y = vec![0f32; n * side * side * self.c_out];
        let mut scratch = winograd::Pooled::take();
        let (in_img, out_img) = (size * size * self.c_in, side * side * self.c_out);
        for first in (0..n).step_by(per_block) {
            let count = per_block.min(n - first);
            let src = &x[first * in_img..][..count * in_img];
            let dst = &mut y[first * out_img..][..count * out_img];
            block.run(src, count, size, dst, &mut scratch);
        }
        (y, side)
    }

    /// The pool (if any) and the epilogue of a whole convolution output.
    fn finish(&self, y: Vec<f32>, n: usize, o: usize) -> (Vec<f32>, usize) {
        if self.pool {
            let (pooled, p) = max_pool2_nhwc(&y, n, o, self.c_out);
            (epilogue(pooled, &self.scale, &self.shift, self.act), p)
        } else {
            (epilogue(y, &self.scale, &self.shift, self.act), o)
        }
    }

    /// One image's patches, row `oy·o + ox`, column `(ky·k + kx)·c_in + ci`, zeros off the edge.
    fn im2col(&self, img: &[f32], size: usize, o: usize, pad: usize, cols: &mut [f32]) {
        let (k, c, s, p) = (self.k, self.c_in, self.stride, pad as isize);
        let kk = k * k * c;
        for oy in 0..o {
            for ox in 0..o {
                let row = &mut cols[(oy * o + ox) * kk..][..kk];
                for ky in 0..k {
                    let iy = (oy * s + ky) as isize - p;
                    let dst = &mut row[ky * k * c..][..k * c];
                    if iy < 0 || iy >= size as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let line = &img[iy as usize * size * c..][..size * c];
                    let x0 = (ox * s) as isize - p;
                    if x0 >= 0 && x0 as usize + k <= size {
                        // The whole kernel row is inside: k neighbouring pixels, one copy.
                        dst.copy_from_slice(&line[x0 as usize * c..][..k * c]);
                        continue;
                    }
                    for kx in 0..k {
                        let ix = x0 + kx as isize;
                        let d = &mut dst[kx * c..][..c];
                        if ix < 0 || ix >= size as isize {
                            d.fill(0.0);
                        } else {
                            d.copy_from_slice(&line[ix as usize * c..][..c]);
                        }
                    }
                }
            }
        }
    }
}

/// `act(scale · x + shift)` per channel of channels-last `y`, in place.
fn epilogue(mut y: Vec<f32>, scale: &[f32], shift: &[f32], act: Act) -> Vec<f32> {
    epilogue_in_place(&mut y, scale, shift, act);
    y
}

/// [`epilogue`] on a borrowed slice.
fn epilogue_in_place(y: &mut [f32], scale: &[f32], shift: &[f32], act: Act) {
    for px in y.chunks_exact_mut(scale.len()) {
        for ((v, a), b) in px.iter_mut().zip(scale).zip(shift) {
            *v = act.apply(*v * a + b);
        }
    }
}

/// A depthwise convolution (one filter per channel) with its scale, shift and activation.
struct DepthwiseLayer {
    c: usize,
    k: usize,
    stride: usize,
    pad: Pad,
    /// `[k·k, c]`: tap-major, so the inner loop runs over contiguous channels.
    weight: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
    act: Act,
}

impl DepthwiseLayer {
    fn compile(conv: &Conv2d, norm: &BatchNorm, act: Act) -> Option<Self> {
        let [c, per_group, kh, kw] = conv.weight.val().dims();
        if per_group != 1 || conv.groups != c || kh != kw || conv.dilation != [1, 1] {
            return None;
        }
        if conv.stride[0] != conv.stride[1] {
            return None;
        }
        let k = kh;
        let w = values(conv.weight.val())?;
        let mut weight = vec![0f32; k * k * c];
        for ch in 0..c {
            for t in 0..k * k {
                weight[t * c + ch] = w[ch * k * k + t];
            }
        }
        let (scale, shift) = affine(conv, Some(norm), c)?;
        Some(Self {
            c,
            k,
            stride: conv.stride[0],
            pad: padding(conv)?,
            weight,
            scale,
            shift,
            act,
        })
    }

    fn forward(&self, x: &[f32], n: usize, size: usize) -> (Vec<f32>, usize) {
        let (o, pad) = geometry(self.pad, self.k, self.stride, size);
        let c = self.c;
        let mut y = vec![0f32; n * o * o * c];
        for img in 0..n {
            let src = &x[img * size * size * c..][..size * size * c];
            for oy in 0..o {
                for ox in 0..o {
                    let dst = &mut y[((img * o + oy) * o + ox) * c..][..c];
                    for ky in 0..self.k {
                        let iy = (oy * self.stride + ky) as isize - pad as isize;
                        if iy < 0 || iy >= size as isize {
                            continue;
                        }
                        for kx in 0..self.k {
                            let ix = (ox * self.stride + kx) as isize - pad as isize;
                            if ix < 0 || ix >= size as isize {
                                continue;
                            }
                            let px = &src[(iy as usize * size + ix as usize) * c..][..c];
                            let w = &self.weight[(ky * self.k + kx) * c..][..c];
                            for ((d, a), b) in dst.iter_mut().zip(px).zip(w) {
                                *d += a * b;
                            }
                        }
                    }
                }
            }
        }
        (epilogue(y, &self.scale, &self.shift, self.act), o)
    }
}

/// One step of the compiled network.
enum Op {
    Conv(ConvLayer),
    Depthwise(DepthwiseLayer),
    /// `x + body(x)` (or just `body(x)` without the skip).
    Block {
        body: Vec<Op>,
        residual: bool,
    },
}

impl Op {
    fn forward(&self, x: Vec<f32>, n: usize, size: usize) -> (Vec<f32>, usize) {
        match self {
            Op::Conv(l) => l.forward(&x, n, size),
            Op::Depthwise(l) => l.forward(&x, n, size),
            Op::Block { body, residual } => {
                let (mut y, mut s) = (x.clone(), size);
                for op in body {
                    (y, s) = op.forward(y, n, s);
                }
                if *residual && y.len() == x.len() {
                    y.iter_mut().zip(&x).for_each(|(a, b)| *a += b);
                }
                (y, s)
            }
        }
    }

    fn channels(&self) -> Option<usize> {
        match self {
            Op::Conv(l) => Some(l.c_out),
            Op::Depthwise(l) => Some(l.c),
            Op::Block { body, .. } => body.last().and_then(Op::channels),
        }
    }

    fn conv_bn_relu6(u: &ConvBnRelu6) -> Option<Op> {
        ConvLayer::compile(&u.conv, Some(&u.bn), false, Act::Relu6).map(Op::Conv)
    }

    fn mbconv(b: &MbConv) -> Option<Op> {
        let mut body = Vec::new();
        match (&b.expand_conv, &b.bn0) {
            (Some(conv), Some(bn)) => body.push(Op::Conv(ConvLayer::compile(
                conv,
                Some(bn),
                false,
                Act::Relu6,
            )?)),
            (None, None) => {}
            _ => return None,
        }
        body.push(Op::Depthwise(DepthwiseLayer::compile(
            &b.depthwise_conv,
            &b.bn1,
            Act::Relu6,
        )?));
        body.push(Op::Conv(ConvLayer::compile(
            &b.project_conv,
            Some(&b.bn2),
            false,
            Act::None,
        )?));
        Some(Op::Block {
            body,
            residual: b.residual,
        })
    }
}

/// Batch-norm in inference as `scale · x + shift` per channel.
fn batch_norm_affine(bn: &BatchNorm) -> Option<(Vec<f32>, Vec<f32>)> {
    let gamma = values(bn.gamma.val())?;
    let beta = values(bn.beta.val())?;
    let mean = values(bn.running_mean.value())?;
    let var = values(bn.running_var.value())?;
    let eps = bn.epsilon as f32;
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + eps).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(&mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    Some((scale, shift))
}

/// The per-channel scale and shift after a convolution: batch-norm's, with the convolution's
/// bias folded into the shift (identity without batch-norm).
fn affine(conv: &Conv2d, norm: Option<&BatchNorm>, c_out: usize) -> Option<(Vec<f32>, Vec<f32>)> {
    let bias = match &conv.bias {
        Some(b) => values(b.val())?,
        None => vec![0.0; c_out],
    };
    let (scale, shift) = match norm {
        Some(bn) => batch_norm_affine(bn)?,
        None => (vec![1.0; c_out], vec![0.0; c_out]),
    };
    let shift = shift
        .iter()
        .zip(&scale)
        .zip(&bias)
        .map(|((s, a), b)| s + a * b)
        .collect();
    Some((scale, shift))
}

/// 2×2, stride-2 max-pool of channels-last `[n, size, size, c]` (an odd last row or column is
/// dropped, as burn's `max_pool2d` does).
fn max_pool2_nhwc(x: &[f32], n: usize, size: usize, c: usize) -> (Vec<f32>, usize) {
    let p = size / 2;
    let mut y = vec![0f32; n * p * p * c];
    max_pool2_nhwc_into(x, n, size, c, &mut y);
    (y, p)
}

/// [`max_pool2_nhwc`] into `y` (`[n, size/2, size/2, c]`).
fn max_pool2_nhwc_into(x: &[f32], n: usize, size: usize, c: usize, y: &mut [f32]) {
    let p = size / 2;
    for img in 0..n {
        let src = &x[img * size * size * c..][..size * size * c];
        for py in 0..p {
            for px in 0..p {
                let dst = &mut y[((img * p + py) * p + px) * c..][..c];
                let at =
                    |dy: usize, dx: usize| &src[((2 * py + dy) * size + 2 * px + dx) * c..][..c];
                let (a, b, cc, d) = (at(0, 0), at(0, 1), at(1, 0), at(1, 1));
                for ch in 0..c {
                    dst[ch] = a[ch].max(b[ch]).max(cc[ch]).max(d[ch]);
                }
            }
        }
    }
}

impl Dense {
    fn compile(l: &Linear) -> Option<Self> {
        let [d_in, d_out] = l.weight.val().dims();
        Some(Self {
            weight: values(l.weight.val())?,
            bias: match &l.bias {
                Some(b) => values(b.val())?,
                None => vec![0.0; d_out],
            },
            d_in,
            d_out,
        })
    }

    fn forward(&self, x: &[f32], n: usize, relu: bool) -> Vec<f32> {
        let mut y = vec![0f32; n * self.d_out];
        matrix::product(x, &self.weight, &mut y, [n, self.d_in, self.d_out]);
        for row in y.chunks_exact_mut(self.d_out) {
            for (v, b) in row.iter_mut().zip(&self.bias) {
                *v += b;
                if relu {
                    *v = v.max(0.0);
                }
            }
        }
        y
    }
}

impl CnnEngine {
    /// The engine for `net`, or `None` when it has parts this path does not reproduce exactly.
    pub fn compile(net: &Network) -> Option<Self> {
        let mut ops = Vec::new();
        for block in &net.blocks {
            match block {
                Block::Plain(units) => {
                    for u in units {
                        ops.push(Op::Conv(ConvLayer::from_unit(u)?));
                    }
                }
                Block::ConvBn(u) => ops.push(Op::conv_bn_relu6(u)?),
                Block::MbConv(blocks) => {
                    for b in blocks {
                        ops.push(Op::mbconv(b)?);
                    }
                }
                _ => return None,
            }
        }
        let h = &net.head;
        if h.hidden_norm.is_some() || (h.act != Activation::Relu && !h.hidden.is_empty()) {
            return None;
        }
        let hidden = h.hidden.iter().map(Dense::compile).collect::<Option<_>>()?;
        Some(Self {
            ops,
            pool: h.pool,
            hidden,
            output: Dense::compile(&h.output)?,
        })
    }

    /// Logits `[n, 2]` (row-major) of `n` normalised channels-first `[n, 3, size, size]` images.
    pub fn logits(&self, nchw: &[f32], n: usize, size: usize) -> Vec<f32> {
        let c = nchw.len() / (n * size * size).max(1);
        let mut x = vec![0f32; nchw.len()];
        for img in 0..n {
            for ch in 0..c {
                let src = &nchw[(img * c + ch) * size * size..][..size * size];
                for (p, v) in src.iter().enumerate() {
                    x[(img * size * size + p) * c + ch] = *v;
                }
            }
        }
        let mut size = size;
        for op in &self.ops {
            (x, size) = op.forward(x, n, size);
        }
        let c = self.ops.last().and_then(Op::channels).unwrap_or(c);
        let mut feat = global_pool(&x, n, size, c, self.pool);
        for layer in &self.hidden {
            feat = layer.forward(&feat, n, true);
        }
        self.output.forward(&feat, n, false)
    }
}

/// `[n, size, size, c]` → `[n, features]`: max or mean per channel, or everything flattened in
/// burn's channels-first order (channel, then row, then column).
fn global_pool(x: &[f32], n: usize, size: usize, c: usize, pool: GlobalPool) -> Vec<f32> {
    let pixels = size * size;
    let mut out = Vec::with_capacity(
        n * c
            * if pool == GlobalPool::Flatten {
                pixels
            } else {
                1
            },
    );
    for img in x.chunks_exact(pixels * c).take(n) {
        match pool {
            GlobalPool::Max | GlobalPool::Avg => {
                let mut acc = img[..c].to_vec();
                for px in img.chunks_exact(c).skip(1) {
                    for (a, v) in acc.iter_mut().zip(px) {
                        *a = if pool == GlobalPool::Max {
                            a.max(*v)
                        } else {
                            *a + v
                        };
                    }
                }
                if pool == GlobalPool::Avg {
                    acc.iter_mut().for_each(|a| *a /= pixels as f32);
                }
                out.extend(acc);
            }
            GlobalPool::Flatten => {
                for ch in 0..c {
                    out.extend((0..pixels).map(|p| img[p * c + ch]));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ArchConfig, CnnConfig, StageConfig};
    use burn::tensor::Distribution;

    fn cnn(
        stem: usize,
        stride: usize,
        pool: GlobalPool,
        hidden: Vec<usize>,
        bn: bool,
    ) -> ArchConfig {
        ArchConfig::Cnn(CnnConfig {
            stem,
            stem_stride: stride,
            stages: vec![
                StageConfig {
                    channels: 8,
                    convs: 2,
                    pool: true,
                },
                StageConfig {
                    channels: 12,
                    convs: 1,
                    pool: false,
                },
                StageConfig {
                    channels: 16,
                    convs: 2,
                    pool: true,
                },
            ],
            kernel: 3,
            batch_norm: bn,
            activation: Activation::Relu,
            global_pool: pool,
            hidden,
            dropout: 0.0,
        })
    }

    /// A network whose batch-norm statistics are not the identity: one training-mode forward
    /// pass on the autodiff device moves the running mean and variance.
    fn trained_stats(arch: &ArchConfig, size: usize) -> Network {
        let ad = Device::default().autodiff();
        ad.seed(11);
        let net = arch.init(size, &ad);
        let x = Tensor::<4>::random([6, 3, size, size], Distribution::Normal(0.3, 1.5), &ad);
        let _ = net.forward(x);
        net.valid()
    }

    /// The engine's logits for `n` random images against burn's forward pass of the same
    /// network, to 1e-4 of the largest logit.
    fn assert_matches_burn(arch: &ArchConfig, size: usize, n: usize) {
        let net = trained_stats(arch, size);
        let engine = CnnEngine::compile(&net).expect("the network compiles");
        let d = Device::default();
        let x = Tensor::<4>::random([n, 3, size, size], Distribution::Normal(0.0, 1.0), &d);
        let floats = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let want = net.forward(x).into_data().try_to_vec::<f32>().unwrap();
        let got = engine.logits(&floats, n, size);
        assert_eq!(got.len(), want.len());
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        assert!(
            err <= 1e-4 * scale,
            "{arch:?} at {size}: max error {err} (scale {scale})"
        );
    }

    #[test]
    fn the_engine_matches_burns_forward_on_random_networks_and_odd_sizes() {
        let cases = [
            (cnn(8, 2, GlobalPool::Max, vec![], true), 32, 5),
            (cnn(6, 1, GlobalPool::Avg, vec![10], true), 19, 3),
            (cnn(0, 1, GlobalPool::Flatten, vec![7], false), 17, 2),
            (cnn(5, 3, GlobalPool::Max, vec![], true), 33, 1),
            (crate::model::preset("default").unwrap(), 32, 4),
        ];
        for (arch, size, n) in cases {
            assert_matches_burn(&arch, size, n);
        }
    }

    #[test]
    fn the_engine_matches_burns_forward_on_efficientnet_lite0() {
        let arch = ArchConfig::Efficientnet(crate::model::EfficientNetConfig {
            hidden: vec![16],
            ..crate::model::EfficientNetConfig::lite0()
        });
        // 64 and an odd 45: "same" padding is asymmetric at stride 2 on odd sizes.
        for (size, n) in [(64, 2), (45, 1)] {
            assert_matches_burn(&arch, size, n);
        }
    }

    #[test]
    fn networks_it_cannot_reproduce_are_declined() {
        let d = Device::default();
        let gelu = crate::model::preset("fullres").unwrap();
        assert!(CnnEngine::compile(&gelu.init(32, &d)).is_none());
        let resnet = crate::model::preset("resnet8").unwrap();
        assert!(CnnEngine::compile(&resnet.init(32, &d)).is_none());
    }

    #[test]
    fn the_nhwc_pool_keeps_the_maximum_of_each_window() {
        // One image, 3×3, two channels: channel 1 is channel 0 negated.
        let mut x = Vec::new();
        for v in 0..9 {
            x.extend([v as f32, -(v as f32)]);
        }
        let (y, p) = max_pool2_nhwc(&x, 1, 3, 2);
        assert_eq!((p, y), (1, vec![4.0, 0.0]));
    }
}
