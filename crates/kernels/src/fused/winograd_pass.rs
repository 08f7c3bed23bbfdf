//! The unit's 3×3, stride-1 convolution and both of its gradients through Winograd's
//! F(2×2, 3×3) ([`crate::winograd`]) instead of im2col and three matrix products. The
//! transforms read the unit's NCHW input and write the channel-major rows its pool and
//! batch-norm work on directly; only the output gradient is moved to channels-last, once per
//! block, for the filter gradient and for the input gradient (the same transform, run on the
//! output gradient with the filters flipped).

use super::shape::UnitShape;
use crate::winograd::{Block, FilterGradient, Filters, Layout, Pooled, Strides, transpose};
use std::ops::Range;

/// Whether the unit's convolution goes through this path: 3×3, stride 1, square planes.
pub fn fits(s: &UnitShape) -> bool {
    s.k == 3 && s.stride == 1 && s.h == s.w
}

/// `count` images of `c` planes from `src` into channels-last `dst` (`[count][plane][c]`).
pub fn to_channels_last(
    src: &[f32],
    at: Strides,
    count: usize,
    c: usize,
    plane: usize,
    dst: &mut Vec<f32>,
) {
    dst.resize(count * plane * c, 0.0);
    for j in 0..count {
        let out = &mut dst[j * plane * c..][..plane * c];
        transpose((&src[j * at.image..], at.channel), (out, c), c, plane);
    }
}

/// One pass (the forward convolution, or the input gradient) of a unit through Winograd.
pub struct Pass {
    s: UnitShape,
    filters: Filters,
    ones: Vec<f32>,
    zeros: Vec<f32>,
    scratch: Pooled,
}

impl Pass {
    /// For the forward pass (`flipped` false) or the input gradient (`flipped` true) of a unit
    /// with filters `weight` (`[co][c][3][3]`).
    pub fn new(s: &UnitShape, weight: &[f32], flipped: bool) -> Self {
        let out = if flipped { s.c } else { s.co };
        Self {
            s: *s,
            filters: Filters::from_oihw(weight, s.co, s.c, flipped),
            ones: vec![1.0; out],
            zeros: vec![0.0; out],
            scratch: Pooled::take(),
        }
    }

    /// `count` images from `x` (laid out as `input`) through the convolution into `out`.
    fn run(
        &mut self,
        (x, input): (&[f32], Layout),
        count: usize,
        (out, output): (&mut [f32], Layout),
    ) {
        let block = Block {
            input,
            output,
            filters: &self.filters,
            scale: &self.ones,
            shift: &self.zeros,
            clamp: (f32::NEG_INFINITY, f32::INFINITY),
            pool: false,
        };
        block.run(x, count, self.s.h, out, &mut self.scratch);
    }

    /// The convolution of images `images` of the NCHW input `x` into channel-major `dst`
    /// (row stride `rs`, image `j` of the block at `j·h·w`).
    pub fn forward(&mut self, x: &[f32], images: Range<usize>, dst: &mut [f32], rs: usize) {
        let (s, plane) = (self.s, self.s.h * self.s.w);
        let input = Layout::Planar(Strides {
            image: s.c * plane,
            channel: plane,
        });
        let output = Layout::Planar(Strides {
            image: plane,
            channel: rs,
        });
        let x = &x[images.start * s.c * plane..];
        self.run((x, input), images.len(), (dst, output));
    }
}

/// Filter gradient (`[co][c][3][3]`) and, when `dx` is given, the input gradient (NCHW) of the
/// unit's convolution from the gradient of its output, block by block: `dy(images, buf)` puts
/// that gradient for `images` into `buf`, channels-last.
pub fn backward(
    s: &UnitShape,
    weight: &[f32],
    x: &[f32],
    group: usize,
    mut dy: impl FnMut(Range<usize>, &mut Vec<f32>),
    mut dx: Option<&mut [f32]>,
) -> Vec<f32> {
    let plane = s.h * s.w;
    let nchw = Layout::Planar(Strides {
        image: s.c * plane,
        channel: plane,
    });
    let mut grad = FilterGradient::new(s.c, s.co);
    let mut pass = dx.is_some().then(|| Pass::new(s, weight, true));
    let mut dyb = Vec::new();
    let mut scratch = Pooled::take();
    for first in (0..s.n).step_by(group.max(1)) {
        let images = first..(first + group).min(s.n);
        let count = images.len();
        dy(images, &mut dyb);
        let xb = &x[first * s.c * plane..];
        grad.add((xb, nchw), &dyb, count, s.h, &mut scratch);
        if let (Some(pass), Some(dx)) = (pass.as_mut(), dx.as_deref_mut()) {
            let dst = &mut dx[first * s.c * plane..];
            pass.run((&dyb, Layout::ChannelsLast), count, (dst, nchw));
        }
    }
    grad.finish()
}
