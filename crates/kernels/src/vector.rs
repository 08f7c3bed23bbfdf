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
    /// `x` in every lane.
    fn splat(x: f32) -> Self;
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
    fn splat(x: f32) -> Self {
        [x; LANES]
    }
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
        fn splat(x: f32) -> Self {
            // SAFETY: AVX-512F is present (see the type).
            unsafe { Self(_mm512_set1_ps(x)) }
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
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::{LANES, Vector};
    use std::arch::x86_64::*;

    /// Sixteen channels in two AVX2 registers: the vectors of CPUs without AVX-512 (AMD's
    /// EPYCs among them). Values of this type are only made inside `dispatch_avx2`, which runs
    /// only after `is_x86_feature_detected!` found AVX2 and FMA; that is what makes the
    /// intrinsics below sound.
    #[derive(Clone, Copy)]
    pub(crate) struct F32x16(__m256, __m256);

    const HALF: usize = LANES / 2;

    /// The lanes `i < len` of one half.
    #[inline(always)]
    unsafe fn mask(len: usize) -> __m256i {
        // SAFETY: AVX2 is present (see the type).
        unsafe {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_cmpgt_epi32(_mm256_set1_epi32(len.min(HALF) as i32), lanes)
        }
    }

    /// Rows `r` of an 8×8 block transposed (the usual unpack, shuffle, lane-swap sequence).
    #[inline(always)]
    unsafe fn transpose8(r: [__m256; HALF]) -> [__m256; HALF] {
        // SAFETY: AVX is present (see the type).
        unsafe {
            let t: [__m256; HALF] = [
                _mm256_unpacklo_ps(r[0], r[1]),
                _mm256_unpackhi_ps(r[0], r[1]),
                _mm256_unpacklo_ps(r[2], r[3]),
                _mm256_unpackhi_ps(r[2], r[3]),
                _mm256_unpacklo_ps(r[4], r[5]),
                _mm256_unpackhi_ps(r[4], r[5]),
                _mm256_unpacklo_ps(r[6], r[7]),
                _mm256_unpackhi_ps(r[6], r[7]),
            ];
            let u: [__m256; HALF] = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            [
                _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
                _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
                _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
                _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
                _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
                _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
                _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
                _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
            ]
        }
    }

    impl Vector for F32x16 {
        #[inline(always)]
        fn load(src: &[f32]) -> Self {
            let (n, p) = (src.len(), src.as_ptr());
            // SAFETY: AVX2 is present (see the type); full loads read 16 floats of a slice at
            // least that long, masked loads only the `n` floats `src` holds (a zero mask
            // touches no memory, so the pointer one past the end is never read).
            unsafe {
                if n >= LANES {
                    Self(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(HALF)))
                } else if n >= HALF {
                    Self(
                        _mm256_loadu_ps(p),
                        _mm256_maskload_ps(p.add(HALF), mask(n - HALF)),
                    )
                } else {
                    Self(_mm256_maskload_ps(p, mask(n)), _mm256_setzero_ps())
                }
            }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: AVX is present (see the type).
            unsafe {
                let v = _mm256_set1_ps(x);
                Self(v, v)
            }
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32]) {
            let (n, p) = (dst.len(), dst.as_mut_ptr());
            // SAFETY: as in `load`: only the first `min(n, 16)` floats of `dst` are written.
            unsafe {
                if n >= LANES {
                    _mm256_storeu_ps(p, self.0);
                    _mm256_storeu_ps(p.add(HALF), self.1);
                } else if n >= HALF {
                    _mm256_storeu_ps(p, self.0);
                    _mm256_maskstore_ps(p.add(HALF), mask(n - HALF), self.1);
                } else {
                    _mm256_maskstore_ps(p, mask(n), self.0);
                }
            }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: AVX is present (see the type).
            unsafe { Self(_mm256_add_ps(self.0, o.0), _mm256_add_ps(self.1, o.1)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: AVX is present (see the type).
            unsafe { Self(_mm256_sub_ps(self.0, o.0), _mm256_sub_ps(self.1, o.1)) }
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            // SAFETY: AVX is present (see the type).
            unsafe { Self(_mm256_max_ps(self.0, o.0), _mm256_max_ps(self.1, o.1)) }
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            // SAFETY: FMA is present (see the type).
            unsafe {
                Self(
                    _mm256_fmadd_ps(self.0, a.0, b.0),
                    _mm256_fmadd_ps(self.1, a.1, b.1),
                )
            }
        }
        #[inline(always)]
        fn clamp(self, lo: f32, hi: f32) -> Self {
            // SAFETY: AVX is present (see the type).
            unsafe {
                let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
                Self(
                    _mm256_min_ps(_mm256_max_ps(self.0, lo), hi),
                    _mm256_min_ps(_mm256_max_ps(self.1, lo), hi),
                )
            }
        }
        #[inline(always)]
        fn transpose(rows: [Self; LANES]) -> [Self; LANES] {
            // SAFETY: AVX is present (see the type).
            unsafe {
                // Four 8×8 blocks: the top-right and bottom-left ones change places (no
                // closure around the intrinsics: it would be compiled without the features).
                let mut q = [[_mm256_setzero_ps(); HALF]; 4];
                for i in 0..HALF {
                    q[0][i] = rows[i].0;
                    q[1][i] = rows[i].1;
                    q[2][i] = rows[HALF + i].0;
                    q[3][i] = rows[HALF + i].1;
                }
                let (a, b) = (transpose8(q[0]), transpose8(q[1]));
                let (c, d) = (transpose8(q[2]), transpose8(q[3]));
                std::array::from_fn(|j| {
                    if j < HALF {
                        Self(a[j], c[j])
                    } else {
                        Self(b[j - HALF], d[j - HALF])
                    }
                })
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

/// [`dispatch`], with pairs of AVX2 registers where the CPU has AVX2 and FMA but not AVX-512,
/// for kernels written without closures around vector operations (the 1×1 products, the
/// compiled path's depthwise rows). A closure is compiled out of line, without the dispatch's
/// features, and each AVX2 intrinsic in it becomes a function call: the Winograd transforms,
/// written with such closures, ran the CIFAKE net at 0.65× on this tier; the plain arrays'
/// operations are ordinary code and do not suffer from it.
pub(crate) fn dispatch_closure_free(kernel: impl Kernel) {
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { dispatch_avx2(kernel) };
    }
    dispatch(kernel)
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

/// [`dispatch_closure_free`]'s AVX2 side (CPUs without AVX-512): `kernel` inlined here, compiled with AVX2
/// and FMA, on pairs of 8-lane registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dispatch_avx2(kernel: impl Kernel) {
    kernel.run::<avx2::F32x16>();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation of [`Vector`] on `V`, at every load and store length up to 16, written
    /// out in order.
    fn exercise<V: Vector>(data: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        let mut put = |v: V, len: usize| {
            let mut dst = vec![-7.0f32; LANES + 1];
            v.store(&mut dst[..len]);
            out.extend(dst);
        };
        for len in 0..=LANES {
            let a = V::load(&data[..len]);
            let b = V::load(&data[len..][..LANES]);
            let c = V::load(&data[2 * LANES..][..LANES]);
            put(a, LANES);
            put(b, len);
            put(a.add(b), LANES);
            put(a.sub(b), LANES);
            put(a.max(b), LANES);
            put(a.mul_add(b, c), LANES);
            put(c.clamp(-0.5, 0.75), LANES);
            put(V::splat(data[len]), LANES);
        }
        let rows: [V; LANES] = std::array::from_fn(|i| V::load(&data[i * LANES..][..LANES]));
        for (i, r) in V::transpose(rows).into_iter().enumerate() {
            put(r, LANES - i % 3);
        }
        out
    }

    #[test]
    fn each_vector_kind_computes_what_the_plain_arrays_do() {
        let data: Vec<f32> = (0..LANES * LANES + 40)
            .map(|i| ((i * 7919) % 211) as f32 / 37.0 - 2.5)
            .collect();
        let want = exercise::<Lanes>(&data);
        struct Check<'a>(&'a [f32], &'a [f32]);
        impl Kernel for Check<'_> {
            fn run<V: Vector>(self) {
                let got = exercise::<V>(self.0);
                assert_eq!(got.len(), self.1.len());
                for (i, (g, w)) in got.iter().zip(self.1).enumerate() {
                    // A fused multiply-add rounds once, the plain arrays twice.
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "value {i}: {g} vs {w}"
                    );
                }
            }
        }
        // Whatever the CPU offers: each dispatch takes its widest vectors.
        dispatch(Check(&data, &want));
        dispatch_closure_free(Check(&data, &want));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { dispatch_avx2(Check(&data, &want)) };
        }
    }
}
