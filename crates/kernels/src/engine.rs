//! A CPU inference path for the plain CNNs (`arch: cnn`, ReLU) and EfficientNet-Lite0: the
//! network's weights compiled once, at load time, into channels-last (NHWC) kernels that fuse
//! what the general backend runs as separate passes.
//!
//! Each convolution unit (convolution → optional 2×2 max-pool → batch-norm → ReLU) is, per
//! block of output rows, one im2col copy of contiguous NHWC runs, one matrix product through
//! the `gemm` crate (the kernels burn's CPU backend uses too) with weights laid out at load time,
//! and one epilogue pass that pools, applies batch-norm as a per-channel scale and shift (with the convolution bias folded
//! into the shift: a per-channel constant commutes with the max) and clamps at zero. A 3×3,
//! stride-1 convolution goes through Winograd's F(2×2, 3×3) instead ([`super::winograd`]:
//! filters transformed at load time, 16 products of 2.25× fewer multiplications in all, the
//! pool and epilogue done in the output transform). Activations
//! stay channels-last from the first layer to the global pool, so no layout conversion runs
//! between layers, and no tensor is allocated per operation. EfficientNet's 1×1 convolutions are
//! one matrix product each without any copy, followed by the same epilogue (ReLU6, or none
//! before a residual sum); its depthwise convolutions a direct kernel on 16-channel vectors
//! ([`super::vector`], AVX-512 where the CPU has it), four pixels at a time, with the epilogue
//! applied on the way out of the registers. Training and Grad-CAM keep using
//! burn's modules; this path only scores, and [`CnnEngine::compile`] declines any network it
//! does not reproduce exactly (other activations, heads with batch-norm, other architectures).
//! Tested against burn's forward pass to 1e-4 on random networks and odd sizes.

use crate::vector::{self, Kernel, LANES, Vector};
use crate::{matrix, pointwise, winograd};
use burn::nn::{BatchNorm, Linear, PaddingConfig2d, conv::Conv2d};
use burn::prelude::*;
use std::ops::Range;

/// Rows of one im2col block: big enough for the matrix kernels to run at speed, small enough
/// that the block (512 × 288 floats for a 3×3 convolution of 32 channels, ~0.6 MB) is still in
/// the core's cache when the product reads it (2,048 rows: ~13,100 img/s at batch 256 on the
/// default net; 512: ~15,000).
const BLOCK_ROWS: usize = 512;

/// Floats of the widest Winograd-domain matrix (`16 × tiles × channels`) of one block.
const WINOGRAD_FLOATS: usize = 1 << 16;

/// What follows the per-channel scale and shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
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

    /// The activation of one value: the clamp of [`Self::bounds`] (as the vector kernels apply
    /// it), written per variant because `v.max(lo).min(hi)` with the bounds as values made the
    /// scalar epilogue run at about half the speed end to end on EfficientNet (it did not vectorise).
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
pub struct ConvLayer {
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
    /// The weights packed for [`pointwise::product`], for 1×1, stride-1 convolutions.
    pointwise: Option<pointwise::Packed>,
}

struct Dense {
    /// `[d_in, d_out]`, as burn stores it.
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

/// Global pooling after the last op: the maximum or mean of each channel, or the whole map
/// flattened in channels-first order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Max,
    Avg,
    Flatten,
}

/// The compiled network: convolution units, then global pooling and the dense head.
pub struct CnnEngine {
    ops: Vec<Op>,
    pool: Pool,
    hidden: Vec<Dense>,
    output: Dense,
}

/// Activation buffers handed from layer to layer: a layer's input, once consumed, holds a later
/// layer's output, and a thread's buffers outlive its pass (up to [`KEPT_FLOATS`]), so that
/// passes after the first allocate (and the allocator zeroes) nothing. Buffers are not cleared:
/// every kernel here writes each element of its output (test builds fill taken buffers with NaN,
/// so the engine's tests fail on any element left unwritten).
#[derive(Default)]
struct Buffers(Vec<Vec<f32>>);

/// Floats a thread keeps between passes: 256 MiB.
const KEPT_FLOATS: usize = 64 << 20;

thread_local! {
    static SPARE: std::cell::RefCell<Buffers> = std::cell::RefCell::default();
}

impl Buffers {
    /// The calling thread's spare buffers (none in a thread's first pass).
    fn of_this_thread() -> Self {
        SPARE.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }

    /// Back to the calling thread, the largest first, up to [`KEPT_FLOATS`] in all.
    fn keep(mut self) {
        self.0.sort_by_key(|b| std::cmp::Reverse(b.len()));
        let mut total = 0;
        self.0.retain(|b| {
            total += b.len();
            total <= KEPT_FLOATS
        });
        SPARE.with(|s| *s.borrow_mut() = self);
    }

    /// A buffer of `len` values: the smallest spare one that holds them, else a new one.
    fn take(&mut self, len: usize) -> Buf {
        let fits = (0..self.0.len())
            .filter(|&i| self.0[i].len() >= len)
            .min_by_key(|&i| self.0[i].len());
        let mut data = fits.map_or_else(|| vec![0.0; len], |i| self.0.swap_remove(i));
        if cfg!(test) {
            data.fill(f32::NAN);
        }
        Buf { data, len }
    }

    fn give(&mut self, b: Buf) {
        if !b.data.is_empty() {
            self.0.push(b.data);
        }
    }
}

/// The first `len` values of a buffer from [`Buffers`] (which keeps its whole length, so that
/// reusing it never fills it again).
struct Buf {
    data: Vec<f32>,
    len: usize,
}

impl std::ops::Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.data[..self.len]
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data[..self.len]
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().ok()
}

impl ConvLayer {
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
        let pointwise = (k == 1 && conv.stride[0] == 1 && geometry(pad, 1, 1, 1).1 == 0 && !pool)
            .then(|| pointwise::Packed::new(&weight, c_in, c_out));
        Some(Self {
            c_in,
            c_out,
            k,
            stride: conv.stride[0],
            pad,
            act,
            // The Winograd filters, or the packed panels, replace the im2col weights.
            weight: if winograd.is_some() || pointwise.is_some() {
                Vec::new()
            } else {
                weight
            },
            pool,
            scale,
            shift,
            winograd,
            pointwise,
        })
    }

    /// Channels-last `[n, size, size, c_in]` → `([n, s, s, c_out], s, skipped)`: `skip` (a
    /// residual block's input, `[n, s, s, c_out]`) is added on the way out where the layer can
    /// (`skipped`), else left to the caller. A pointwise layer splits its rows into `parts`
    /// blocks side by side; the others run on the calling thread.
    fn forward(
        &self,
        x: &[f32],
        (n, size, parts): (usize, usize, usize),
        bufs: &mut Buffers,
        skip: Option<&[f32]>,
    ) -> (Buf, usize, bool) {
        let (o, pad) = geometry(self.pad, self.k, self.stride, size);
        if let Some(filters) = &self.winograd {
            let (y, side) = self.forward_winograd(filters, x, n, size, bufs);
            return (y, side, false);
        }
        let side = if self.pool { o / 2 } else { o };
        let mut y = bufs.take(n * side * side * self.c_out);
        if let Some(packed) = &self.pointwise {
            // A pointwise convolution is a matrix product of the activations as they are.
            let skip = skip.filter(|s| s.len() == y.len());
            let (lo, hi) = self.act.bounds();
            let epilogue = pointwise::Epilogue {
                scale: &self.scale,
                shift: &self.shift,
                lo,
                hi,
                skip,
            };
            pointwise::product(x, packed, epilogue, &mut y, parts);
            return (y, side, skip.is_some());
        }
        self.im2col_rows(x, size, (o, pad), n * side, (&mut y, bufs));
        (y, side, false)
    }

    /// All `units` output rows (image-major: unit `u` is row `u % side` of image `u / side`,
    /// after the pool) into `out`, through im2col blocks of a few rows: each block's patches, one
    /// matrix product, then the pool and the epilogue while the block is still in cache.
    fn im2col_rows(
        &self,
        x: &[f32],
        size: usize,
        (o, pad): (usize, usize),
        units: usize,
        (out, bufs): (&mut [f32], &mut Buffers),
    ) {
        let (kk, c_out) = (self.k * self.k * self.c_in, self.c_out);
        let conv_rows = if self.pool { 2 } else { 1 };
        let side = o / conv_rows;
        let m = conv_rows * o;
        let per_block = (BLOCK_ROWS / m.max(1)).clamp(1, units.max(1));
        let mut cols = bufs.take(per_block * m * kk);
        let mut conv = bufs.take(if self.pool { per_block * m * c_out } else { 0 });
        let in_img = size * size * self.c_in;
        for first in (0..units).step_by(per_block) {
            let count = per_block.min(units - first);
            for (i, u) in (first..first + count).enumerate() {
                let img = &x[u / side * in_img..][..in_img];
                for j in 0..conv_rows {
                    let oy = u % side * conv_rows + j;
                    let row = &mut cols[(i * conv_rows + j) * o * kk..][..o * kk];
                    self.im2col_row(img, size, (o, pad), oy, row);
                }
            }
            let rows = count * m;
            let dst = &mut out[first * side * c_out..][..count * side * c_out];
            let target = if self.pool {
                &mut conv[..rows * c_out]
            } else {
                &mut *dst
            };
            matrix::product(&cols[..rows * kk], &self.weight, target, [rows, kk, c_out]);
            if self.pool {
                max_pool_row_pairs(&conv[..rows * c_out], count, o, c_out, dst);
            }
            epilogue_in_place(dst, &self.scale, &self.shift, self.act);
        }
        bufs.give(cols);
        bufs.give(conv);
    }

    /// [`Self::forward`] through Winograd's F(2×2, 3×3), a few whole images per block.
    fn forward_winograd(
        &self,
        filters: &winograd::Filters,
        x: &[f32],
        n: usize,
        size: usize,
        bufs: &mut Buffers,
    ) -> (Buf, usize) {
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
        let mut y = bufs.take(n * side * side * self.c_out);
        let (in_img, out_img) = (size * size * self.c_in, side * side * self.c_out);
        let mut scratch = winograd::Pooled::take();
        for first in (0..n).step_by(per_block) {
            let count = per_block.min(n - first);
            let src = &x[first * in_img..][..count * in_img];
            let dst = &mut y[first * out_img..][..count * out_img];
            block.run(src, count, size, dst, &mut scratch);
        }
        (y, side)
    }

    /// The patches of output row `oy` of one image: row `ox`, column `(ky·k + kx)·c_in + ci`,
    /// zeros off the edge.
    fn im2col_row(
        &self,
        img: &[f32],
        size: usize,
        (o, pad): (usize, usize),
        oy: usize,
        cols: &mut [f32],
    ) {
        let (k, c, s, p) = (self.k, self.c_in, self.stride, pad as isize);
        let kk = k * k * c;
        for ox in 0..o {
            let row = &mut cols[ox * kk..][..kk];
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

/// `act(scale · x + shift)` per channel of channels-last `y`, in place.
fn epilogue_in_place(y: &mut [f32], scale: &[f32], shift: &[f32], act: Act) {
    for px in y.chunks_exact_mut(scale.len()) {
        for ((v, a), b) in px.iter_mut().zip(scale).zip(shift) {
            *v = act.apply(*v * a + b);
        }
    }
}

/// A depthwise convolution (one filter per channel) with its scale, shift and activation.
pub struct DepthwiseLayer {
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

    /// Channels-last `[n, size, size, c]` → `([n, o, o, c], o)`, on the widest vectors the CPU
    /// has ([`DepthwiseRows`]), the output rows in `parts` blocks side by side.
    fn forward(
        &self,
        x: &[f32],
        (n, size, parts): (usize, usize, usize),
        bufs: &mut Buffers,
    ) -> (Buf, usize) {
        let (o, pad) = geometry(self.pad, self.k, self.stride, size);
        let mut y = bufs.take(n * o * o * self.c);
        let rows = (n * o).div_ceil(parts.max(1)).max(1);
        crate::parts::each_block(&mut y, rows * o * self.c, |i, out| {
            vector::dispatch_closure_free(DepthwiseRows {
                layer: self,
                x,
                size,
                geometry: (o, pad),
                first: i * rows,
                out,
            })
        });
        (y, o)
    }
}

/// [`DepthwiseLayer::forward`] as a [`Kernel`]: for each output row `u` (row `u % o` of image
/// `u / o`) and each group of [`LANES`] channels, each pixel's sum over the taps inside the
/// image in one register, then scaled, shifted and clamped on its way out (neighbouring pixels'
/// taps read the same input lines, which one row of one channel group keeps in cache).
struct DepthwiseRows<'a> {
    layer: &'a DepthwiseLayer,
    x: &'a [f32],
    size: usize,
    geometry: (usize, usize),
    /// The output row `out` starts with.
    first: usize,
    out: &'a mut [f32],
}

impl Kernel for DepthwiseRows<'_> {
    #[inline(always)]
    fn run<V: Vector>(self) {
        // Channel counts in whole groups of 16 (all of EfficientNet-Lite's) compile to loads
        // and stores of a known width, without the partial-group branches.
        if self.layer.c.is_multiple_of(LANES) {
            self.rows::<V, true>()
        } else {
            self.rows::<V, false>()
        }
    }
}

impl DepthwiseRows<'_> {
    /// [`Kernel::run`], every channel group [`LANES`] wide when `FULL`.
    #[inline(always)]
    fn rows<V: Vector, const FULL: bool>(self) {
        let Self {
            layer,
            x,
            size,
            geometry: (o, pad),
            first,
            out,
        } = self;
        let (c, k, stride) = (layer.c, layer.k, layer.stride);
        let (lo, hi) = layer.act.bounds();
        // The taps `t` with `0 ≤ first + t < size`, for a window starting at `first`.
        let inside = |first: isize| {
            (-first).max(0) as usize..(size as isize - first).clamp(0, k as isize) as usize
        };
        // The first input row or column of the window of output row or column `i`.
        let start = |i: usize| (i * stride) as isize - pad as isize;
        // Pixels whose whole window lies inside the row: [`PIXELS`] of them at a time.
        let whole = |ox: usize| start(ox) >= 0 && start(ox) as usize + k <= size;
        for (u, row) in (first..).zip(out.chunks_exact_mut(o * c)) {
            let (img, oy) = (u / o, u % o);
            let y0 = start(oy);
            let taps = Taps {
                src: &x[img * size * size * c..][..size * size * c],
                weight: &layer.weight,
                rows: inside(y0),
                y0,
                size,
                c,
                k,
                stride,
            };
            for ch in (0..c).step_by(LANES) {
                let lanes = if FULL { LANES } else { LANES.min(c - ch) };
                let scale = V::load(&layer.scale[ch..][..lanes]);
                let shift = V::load(&layer.shift[ch..][..lanes]);
                let epilogue = Epilogue {
                    scale,
                    shift,
                    lo,
                    hi,
                    lanes,
                };
                let mut ox = 0;
                while ox < o {
                    let dst = &mut row[ox * c + ch..];
                    if ox + PIXELS <= o && whole(ox) && whole(ox + PIXELS - 1) {
                        let sums = taps.sums::<V, PIXELS>(start(ox), 0..k, ch..ch + lanes);
                        epilogue.store(sums, dst, c);
                        ox += PIXELS;
                    } else {
                        let x0 = start(ox);
                        epilogue.store(taps.sums::<V, 1>(x0, inside(x0), ch..ch + lanes), dst, c);
                        ox += 1;
                    }
                }
            }
        }
    }
}

/// Scale, shift and clamp of one channel group, on the way out of a register.
struct Epilogue<V> {
    scale: V,
    shift: V,
    lo: f32,
    hi: f32,
    lanes: usize,
}

impl<V: Vector> Epilogue<V> {
    /// `P` pixels' sums into `dst`, pixel `p` at `p·c`.
    #[inline(always)]
    fn store<const P: usize>(&self, sums: [V; P], dst: &mut [f32], c: usize) {
        for (p, v) in sums.into_iter().enumerate() {
            let y = v.mul_add(self.scale, self.shift).clamp(self.lo, self.hi);
            y.store(&mut dst[p * c..][..self.lanes]);
        }
    }
}

/// Output pixels computed together by the depthwise kernel: independent sums that keep the
/// multiply-add unit busy (one pixel's taps form a chain of dependent additions) and share each
/// tap's weights.
const PIXELS: usize = 4;

/// The input and filter of one output row of a depthwise convolution.
struct Taps<'a> {
    /// One image, channels-last.
    src: &'a [f32],
    /// `[k·k, c]`.
    weight: &'a [f32],
    /// The kernel rows inside the image, and the input row of kernel row 0.
    rows: Range<usize>,
    y0: isize,
    size: usize,
    c: usize,
    k: usize,
    stride: usize,
}

impl Taps<'_> {
    /// The sums over kernel rows `self.rows` and columns `cols` of channels `ch` for `P`
    /// neighbouring output pixels, the first one's window starting at input column `x0`.
    #[inline(always)]
    fn sums<V: Vector, const P: usize>(
        &self,
        x0: isize,
        cols: Range<usize>,
        ch: Range<usize>,
    ) -> [V; P] {
        let lanes = ch.len();
        let mut acc = [V::load(&[]); P];
        for ky in self.rows.clone() {
            let line = (self.y0 + ky as isize) as usize * self.size;
            for kx in cols.clone() {
                let w = V::load(&self.weight[(ky * self.k + kx) * self.c + ch.start..][..lanes]);
                for (p, a) in acc.iter_mut().enumerate() {
                    let col = (x0 + (p * self.stride + kx) as isize) as usize;
                    let at = (line + col) * self.c + ch.start;
                    *a = V::load(&self.src[at..][..lanes]).mul_add(w, *a);
                }
            }
        }
        acc
    }
}

/// One step of the compiled network, built by [`Op::conv`], [`Op::depthwise`] and [`Op::block`].
pub enum Op {
    Conv(ConvLayer),
    Depthwise(DepthwiseLayer),
    /// `x + body(x)` (or just `body(x)` without the skip).
    Block {
        body: Vec<Op>,
        residual: bool,
    },
}

impl Op {
    /// The op on channels-last `x`; `skip` as in [`ConvLayer::forward`].
    fn forward(
        &self,
        x: &[f32],
        (n, size, parts): (usize, usize, usize),
        bufs: &mut Buffers,
        skip: Option<&[f32]>,
    ) -> (Buf, usize, bool) {
        match self {
            Op::Conv(l) => l.forward(x, (n, size, parts), bufs, skip),
            Op::Depthwise(l) => {
                let (y, s) = l.forward(x, (n, size, parts), bufs);
                (y, s, false)
            }
            Op::Block { body, residual } => {
                let mut out: Option<(Buf, usize)> = None;
                let mut skipped = false;
                for (i, op) in body.iter().enumerate() {
                    let (src, s) = out.as_ref().map_or((x, size), |(y, s)| (&**y, *s));
                    // The residual sum rides on the last op's way out where it can.
                    let skip = (*residual && i + 1 == body.len()).then_some(x);
                    let (y, s, done) = op.forward(src, (n, s, parts), bufs, skip);
                    skipped = done;
                    if let Some((used, _)) = out.replace((y, s)) {
                        bufs.give(used);
                    }
                }
                let (mut y, s) = out.unwrap_or_else(|| {
                    let mut copy = bufs.take(x.len());
                    copy.copy_from_slice(x);
                    (copy, size)
                });
                if *residual && !skipped && y.len() == x.len() {
                    y.iter_mut().zip(x).for_each(|(a, b)| *a += b);
                }
                (y, s, false)
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

    /// A convolution with one group, its optional batch-norm (folded into a per-channel scale
    /// and shift), an optional 2×2 max-pool before the norm, then `act`; `None` for what this
    /// path does not reproduce exactly (groups, dilation, non-square kernels or padding).
    pub fn conv(conv: &Conv2d, norm: Option<&BatchNorm>, pool: bool, act: Act) -> Option<Op> {
        ConvLayer::compile(conv, norm, pool, act).map(Op::Conv)
    }

    /// A depthwise convolution (groups = channels) with its batch-norm folded in, then `act`.
    pub fn depthwise(conv: &Conv2d, norm: &BatchNorm, act: Act) -> Option<Op> {
        DepthwiseLayer::compile(conv, norm, act).map(Op::Depthwise)
    }

    /// `x + body(x)` when `residual` (and the shapes agree), else `body(x)`.
    pub fn block(body: Vec<Op>, residual: bool) -> Op {
        Op::Block { body, residual }
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

/// 2×2, stride-2 max-pool of `pairs` pairs of channels-last rows of `width` pixels
/// (`[pairs, 2, width, c]`) into `[pairs, width/2, c]` (an odd last column is dropped, as burn's
/// `max_pool2d` does).
fn max_pool_row_pairs(x: &[f32], pairs: usize, width: usize, c: usize, y: &mut [f32]) {
    let p = width / 2;
    for (pair, dst_row) in y.chunks_exact_mut(p * c).take(pairs).enumerate() {
        let (top, bottom) = x[pair * 2 * width * c..][..2 * width * c].split_at(width * c);
        for (px, dst) in dst_row.chunks_exact_mut(c).enumerate() {
            let (a, b) = (&top[2 * px * c..][..2 * c], &bottom[2 * px * c..][..2 * c]);
            for ch in 0..c {
                dst[ch] = a[ch].max(a[c + ch]).max(b[ch]).max(b[c + ch]);
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
    /// The engine for `ops`, then `pool`, then the ReLU `hidden` layers and the `output` layer;
    /// `None` when a dense layer's weights cannot be read.
    pub fn new(ops: Vec<Op>, pool: Pool, hidden: &[Linear], output: &Linear) -> Option<Self> {
        let hidden = hidden.iter().map(Dense::compile).collect::<Option<_>>()?;
        Some(Self {
            ops,
            pool,
            hidden,
            output: Dense::compile(output)?,
        })
    }

    /// Logits `[n, 2]` (row-major) of `n` normalised channels-first `[n, 3, size, size]` images,
    /// on the calling thread.
    pub fn logits(&self, nchw: &[f32], n: usize, size: usize) -> Vec<f32> {
        self.logits_in_parts(nchw, (n, size), 1)
    }

    /// [`Self::logits`] with each layer's rows split into `parts` blocks side by side on the
    /// thread pool: one pass over few images on every core. The same values as one part, to the
    /// bit (each output is summed by one thread in the same order).
    pub fn logits_in_parts(
        &self,
        nchw: &[f32],
        (n, size): (usize, usize),
        parts: usize,
    ) -> Vec<f32> {
        let mut feat = self.pooled_in_parts(nchw, (n, size), parts);
        for layer in &self.hidden {
            feat = layer.forward(&feat, n, true);
        }
        self.output.forward(&feat, n, false)
    }

    /// The globally pooled activations `[n, features]` the dense layers read (what a frozen
    /// backbone hands its head), on the calling thread.
    pub fn pooled(&self, nchw: &[f32], n: usize, size: usize) -> Vec<f32> {
        self.pooled_in_parts(nchw, (n, size), 1)
    }

    /// [`Self::pooled`], each layer in `parts` blocks side by side ([`Self::logits_in_parts`]).
    fn pooled_in_parts(&self, nchw: &[f32], (n, size): (usize, usize), parts: usize) -> Vec<f32> {
        if parts > 1 && rayon::current_thread_index().is_none() {
            // On a worker of the pool, so that each layer's split is a cheap fork.
            return rayon::scope(|_| self.pooled_in_parts(nchw, (n, size), parts));
        }
        let c = nchw.len() / (n * size * size).max(1);
        let mut bufs = Buffers::of_this_thread();
        let mut x = bufs.take(nchw.len());
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
            let (y, s, _) = op.forward(&x, (n, size, parts), &mut bufs, None);
            bufs.give(std::mem::replace(&mut x, y));
            size = s;
        }
        let c = self.ops.last().and_then(Op::channels).unwrap_or(c);
        let feat = global_pool(&x, n, size, c, self.pool);
        bufs.give(x);
        bufs.keep();
        feat
    }
}

/// `[n, size, size, c]` → `[n, features]`: max or mean per channel, or everything flattened in
/// burn's channels-first order (channel, then row, then column).
fn global_pool(x: &[f32], n: usize, size: usize, c: usize, pool: Pool) -> Vec<f32> {
    let pixels = size * size;
    let mut out = Vec::with_capacity(n * c * if pool == Pool::Flatten { pixels } else { 1 });
    for img in x.chunks_exact(pixels * c).take(n) {
        match pool {
            Pool::Max | Pool::Avg => {
                let mut acc = img[..c].to_vec();
                for px in img.chunks_exact(c).skip(1) {
                    for (a, v) in acc.iter_mut().zip(px) {
                        *a = if pool == Pool::Max { a.max(*v) } else { *a + v };
                    }
                }
                if pool == Pool::Avg {
                    acc.iter_mut().for_each(|a| *a /= pixels as f32);
                }
                out.extend(acc);
            }
            Pool::Flatten => {
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
    use burn::tensor::Distribution;

    #[test]
    fn the_depthwise_kernel_equals_burns_grouped_convolution_on_odd_shapes() {
        use burn::module::{Param, RunningState};
        use burn::nn::{BatchNormConfig, conv::Conv2dConfig};
        let d = Device::default();
        let same = PaddingConfig2d::Same;
        // (channels, kernel, stride, padding, side): channel counts off the 16-lane groups,
        // rows with groups of 4 pixels and edges, "same" padding on odd sides at stride 2.
        let cases = [
            (20, 3, 1, same.clone(), 13),
            (33, 5, 2, same.clone(), 11),
            (16, 3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), 9),
            (5, 5, 1, same.clone(), 12),
            (40, 3, 1, same.clone(), 4),
            // Whole groups of 16 channels (loads and stores of a known width): 3×3 and 5×5,
            // strides 1 and 2, planes with and without interior groups of four pixels.
            (32, 5, 1, same.clone(), 13),
            (48, 5, 2, same.clone(), 14),
            (64, 3, 1, same.clone(), 10),
            (16, 5, 1, same.clone(), 7),
            (32, 3, 2, same, 17),
        ];
        for (c, k, stride, padding, side) in cases {
            let conv = Conv2dConfig::new([c, c], [k, k])
                .with_groups(c)
                .with_stride([stride, stride])
                .with_padding(padding)
                .with_bias(false)
                .init(&d);
            let mut bn = BatchNormConfig::new(c).init(&d);
            let r = |lo: f64, hi: f64| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), &d);
            bn.gamma = Param::from_tensor(r(0.5, 1.5));
            bn.beta = Param::from_tensor(r(-0.5, 0.5));
            bn.running_mean = RunningState::new(r(-0.3, 0.3));
            bn.running_var = RunningState::new(r(0.5, 2.0));
            let layer = DepthwiseLayer::compile(&conv, &bn, Act::Relu6).expect("depthwise");
            let x = Tensor::<4>::random([2, c, side, side], Distribution::Normal(0.0, 2.0), &d);
            let want = bn.forward(conv.forward(x.clone())).clamp(0.0, 6.0);
            let want = want
                .permute([0, 2, 3, 1])
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let nhwc = x
                .permute([0, 2, 3, 1])
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let (got, _) = layer.forward(&nhwc, (2, side, 1), &mut Buffers::default());
            // Split into three blocks of rows side by side: the same values, to the bit.
            let (split, _) = layer.forward(&nhwc, (2, side, 3), &mut Buffers::default());
            assert!(
                split
                    .iter()
                    .zip(got.iter())
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{c} ch, k {k}, s {stride}, side {side}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn the_nhwc_pool_keeps_the_maximum_of_each_window() {
        // One image, 3×3, two channels: channel 1 is channel 0 negated.
        let mut x = Vec::new();
        for v in 0..9 {
            x.extend([v as f32, -(v as f32)]);
        }
        // Rows 0 and 1 pool into the one output pixel; row 2 and column 2 are dropped.
        let mut y = vec![f32::NAN; 2];
        max_pool_row_pairs(&x, 1, 3, 2, &mut y);
        assert_eq!(y, vec![4.0, 0.0]);
    }
}
