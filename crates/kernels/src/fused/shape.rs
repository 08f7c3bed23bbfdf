//! The shape of one fused unit's pass, shared by its im2col and Winograd kernels.

/// The shape of one unit's pass: input `[n, c, h, w]`, `co` square `k`×`k` filters (odd `k`,
/// padding `k / 2`), one stride, and whether a 2×2 max-pool follows the convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub k: usize,
    pub stride: usize,
    pub pool: bool,
}

impl UnitShape {
    pub(crate) fn pad(&self) -> usize {
        self.k / 2
    }

    /// Height and width of the convolution's output.
    pub fn conv_out(&self) -> (usize, usize) {
        let out = |x: usize| (x + 2 * self.pad()).saturating_sub(self.k) / self.stride.max(1) + 1;
        (out(self.h), out(self.w))
    }

    /// Height and width of the unit's output (after the pool, if any).
    pub fn out(&self) -> (usize, usize) {
        let (ho, wo) = self.conv_out();
        if self.pool {
            (ho / 2, wo / 2)
        } else {
            (ho, wo)
        }
    }

    /// Rows of the im2col matrix: one per filter tap.
    pub(crate) fn taps(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Columns of the im2col matrix: one per output position of the convolution over the batch.
    pub(crate) fn positions(&self) -> usize {
        let (ho, wo) = self.conv_out();
        self.n * ho * wo
    }

    /// Values per channel that batch-norm averages over.
    pub(crate) fn per_channel(&self) -> usize {
        let (hp, wp) = self.out();
        self.n * hp * wp
    }
}
