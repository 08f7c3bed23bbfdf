//! Sixteen channels at a time: the [`Vector`] operations the CPU kernels need (the Winograd
//! transforms, the compiled path's depthwise convolution), as a plain array (any CPU) and as an
//! AVX-512 register (chosen at run time), and 16×16 transposes built on them.

/// Channels processed together: one AVX-512 register.
pub(crate) const LANES: usize = 16;

/// Sixteen channels as a plain array: the portable [`Vector`].
pub(crate) type Lanes = [f32; LANES];

/// Up to [`LANES`] channels, the operations the transforms and the epilogue need. The
/// transforms are written once over this trait and compiled for a plain array (any CPU) and
/// for an AVX-512 register (chosen at run time).
pub(crate) trait Vector: Copy {
    /// `src.len()` ≤ [`LANES`] values, the rest zero.
    fn load(src: &[f32]) -> Self;
    /// The first `dst.len()` ≤ [`LANES`] values into `dst`.
    fn store(self, dst: &mut [f32]);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn max(self, o: Self) -> Self;
    /// `self · a + b`.
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn clamp(self, lo: f32, hi: f32) -> Self;
    /// Row `i` of the result is lane `i` of every input, in order.
    fn transpose(rows: [Self; LANES]) -> [Self; LANES];
}

impl Vector for Lanes {
    #[inline(always)]
    fn load(src: &[f32]) -> Self {
        let mut v = [0f32; LANES];
        v[..src.len()].copy_from_slice(src);
        v
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32]) {
        let w = dst.len();
        dst.copy_from_slice(&self[..w]);
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        std::array::from_fn(|l| self[l] + o[l])
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        std::array::from_fn(|l| self[l] - o[l])
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        std::array::from_fn(|l| self[l].max(o[l]))
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        std::array::from_fn(|l| self[l] * a[l] + b[l])
    }
    #[inline(always)]
    fn clamp(self, lo: f32, hi: f32) -> Self {
        std::array::from_fn(|l| self[l].clamp(lo, hi))
    }
    #[inline(always)]
    fn transpose(rows: [Self; LANES]) -> [Self; LANES] {
        std::array::from_fn(|i| std::array::from_fn(|j| rows[j][i]))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::{LANES, Vector};
    use std::arch::x86_64::*;

    /// Sixteen channels in one AVX-512 register. Values of this type are only made inside the
    /// `dispatch_avx512`, which run only after
    /// `is_x86_feature_detected!("avx512f")`; that is what makes the intrinsics below sound.
    #[derive(Clone, Copy)]
    pub(crate) struct F32x16(__m512);

    /// The lanes of a `len`-value slice.
    #[inline(always)]
    fn mask(len: usize) -> __mmask16 {
        debug_assert!(len <= LANES);
        ((1u32 << len.min(LANES)) - 1) as __mmask16
    }

    impl Vector for F32x16 {
        #[inline(always)]
        fn load(src: &[f32]) -> Self {
            // SAFETY: AVX-512F is present (see the type); the mask reads only `src.len()` floats.
            unsafe { Self(_mm512_maskz_loadu_ps(mask(src.len()), src.as_ptr())) }
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32]) {
            // SAFETY: AVX-512F is present; the mask writes only `dst.len()` floats.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask(dst.len()), self.0) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe { Self(_mm512_add_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe { Self(_mm512_sub_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe { Self(_mm512_max_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe { Self(_mm512_fmadd_ps(self.0, a.0, b.0)) }
        }
        #[inline(always)]
        fn clamp(self, lo: f32, hi: f32) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe {
                Self(_mm512_min_ps(
                    _mm512_max_ps(self.0, _mm512_set1_ps(lo)),
                    _mm512_set1_ps(hi),
                ))
            }
        }
        #[inline(always)]
        fn transpose(rows: [Self; LANES]) -> [Self; LANES] {
            // SAFETY: AVX-512F is present (see the type).
            unsafe {
                // Interleave pairs of rows, then pairs of pairs, then 128-bit lanes twice (plain
                // loops, not closures, so that the intrinsics inline into the AVX-512 caller).
                let r = rows;
                let mut t = [_mm512_setzero_ps(); LANES];
                for i in (0..LANES).step_by(2) {
                    t[i] = _mm512_unpacklo_ps(r[i].0, r[i + 1].0);
                    t[i + 1] = _mm512_unpackhi_ps(r[i].0, r[i + 1].0);
                }
                let mut u = [_mm512_setzero_ps(); LANES];
                for base in (0..LANES).step_by(4) {
                    for k in 0..2 {
                        let (a, b) = (t[base + k], t[base + 2 + k]);
                        u[base + 2 * k] = _mm512_shuffle_ps::<0x44>(a, b);
                        u[base + 2 * k + 1] = _mm512_shuffle_ps::<0xEE>(a, b);
                    }
                }
                let mut v = [_mm512_setzero_ps(); LANES];
                for base in (0..LANES).step_by(8) {
                    for k in 0..4 {
                        let (a, b) = (u[base + k], u[base + 4 + k]);
                        v[base + k] = _mm512_shuffle_f32x4::<0x88>(a, b);
                        v[base + 4 + k] = _mm512_shuffle_f32x4::<0xDD>(a, b);
                    }
                }
                let mut w = [Self(_mm512_setzero_ps()); LANES];
                for k in 0..8 {
                    let (a, b) = (v[k], v[8 + k]);
                    w[k] = Self(_mm512_shuffle_f32x4::<0x88>(a, b));
                    w[8 + k] = Self(_mm512_shuffle_f32x4::<0xDD>(a, b));
                }
                w
            }
        }
    }
}
/// `dst[j·dst_rs + i] = src[i·src_rs + j]` for `i < rows`, `j < cols`: 16×16 tiles
/// transposed in registers.
pub fn transpose(src: (&[f32], usize), dst: (&mut [f32], usize), rows: usize, cols: usize) {
    struct Transpose<'a>((&'a [f32], usize), (&'a mut [f32], usize), usize, usize);
    impl Kernel for Transpose<'_> {
        #[inline(always)]
        fn run<V: Vector>(self) {
            transpose_with::<V>(self.0, self.1, self.2, self.3);
        }
    }
    dispatch(Transpose(src, dst, rows, cols));
}

/// Work written once over [`Vector`], run by [`dispatch`] on the widest vectors the CPU has.
pub(crate) trait Kernel {
    fn run<V: Vector>(self);
}

/// Runs `kernel` on AVX-512 registers where the CPU has them, on plain arrays otherwise.
pub(crate) fn dispatch(kernel: impl Kernel) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { dispatch_avx512(kernel) };
    }
    kernel.run::<Lanes>();
}

/// Runs `f` inlined into [`dispatch`]'s AVX-512 side where the CPU has it, so that the
/// compiler's own vectorisation of `f`'s loops (plain Rust over slices) uses 16-lane registers
/// instead of the baseline's 4. Mark `f` (and closures it calls with loops in them)
/// `#[inline(always)]`: left to itself the compiler kept such closures out of line, compiled
/// for the baseline.
#[inline(always)]
pub(crate) fn wide(f: impl FnOnce()) {
    struct Wide<F>(F);
    impl<F: FnOnce()> Kernel for Wide<F> {
        #[inline(always)]
        fn run<V: Vector>(self) {
            (self.0)()
        }
    }
    dispatch(Wide(f));
}

/// [`dispatch`]'s AVX-512 side: `kernel` inlined here, compiled with the feature.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dispatch_avx512(kernel: impl Kernel) {
    kernel.run::<avx512::F32x16>();
}

#[inline(always)]
pub(crate) fn transpose_with<V: Vector>(
    (src, src_rs): (&[f32], usize),
    (dst, dst_rs): (&mut [f32], usize),
    rows: usize,
    cols: usize,
) {
    for i0 in (0..rows).step_by(LANES) {
        let h = LANES.min(rows - i0);
        for j0 in (0..cols).step_by(LANES) {
            let w = LANES.min(cols - j0);
            let mut rows_in = [V::load(&[]); LANES];
            for (i, row) in rows_in.iter_mut().enumerate().take(h) {
                *row = V::load(&src[(i0 + i) * src_rs + j0..][..w]);
            }
            for (j, row) in V::transpose(rows_in).into_iter().take(w).enumerate() {
                row.store(&mut dst[(j0 + j) * dst_rs + i0..][..h]);
            }
        }
    }
}
