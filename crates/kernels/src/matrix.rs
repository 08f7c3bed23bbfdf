//! Matrix products through the `gemm` crate (the kernels burn's CPU backend uses too), on the
//! calling thread, for the compiled inference path and the fused training op.

/// A matrix operand: its values, row stride and column stride.
pub type Operand<'a> = (&'a [f32], usize, usize);

/// `dst = lhs · rhs` (`dst += lhs · rhs` when `accumulate`) for `lhs` `[m×k]`, `rhs` `[k×n]` and
/// `dst` `[m×n]` with row stride `dst_rs` (columns contiguous), through the `gemm` crate's
/// kernels on the calling thread.
pub fn gemm_into(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Operand,
    rhs: Operand,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(dst.len() > last(m, n, dst_rs, 1) && dst_rs >= n);
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(dst_rs).for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    assert!(lhs.0.len() > last(m, k, lhs.1, lhs.2) && rhs.0.len() > last(k, n, rhs.1, rhs.2));
    // SAFETY: every index the strides reach is in bounds (checked above), and `dst` is borrowed
    // mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `out = a · b` for row-major `a` `[m×k]`, `b` `[k×n]` and `out` `[m×n]`.
pub fn product(a: &[f32], b: &[f32], out: &mut [f32], [m, k, n]: [usize; 3]) {
    gemm_into([m, n, k], out, n, false, (a, k, 1), (b, n, 1));
}
