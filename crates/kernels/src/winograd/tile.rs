//! The arithmetic of one F(2×2, 3×3) tile: the input, output and adjoint output transforms on
//! vectors of channels, and the filter-gradient transform on one filter.

use super::TAPS;
use crate::vector::Vector;

/// `Gᵀ dU G` of one 4×4 gradient (row-major) into a 3×3 one: the adjoint of the filter transform
/// `G g Gᵀ` in [`Filters::new`].
pub(super) fn filter_gradient(du: &[f32; TAPS]) -> [f32; 9] {
    let apply = |[a, b, c, d]: [f32; 4]| [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d];
    let rows: [[f32; 3]; 4] =
        std::array::from_fn(|r| apply([du[4 * r], du[4 * r + 1], du[4 * r + 2], du[4 * r + 3]]));
    let columns: [[f32; 3]; 3] =
        std::array::from_fn(|kx| apply([rows[0][kx], rows[1][kx], rows[2][kx], rows[3][kx]]));
    std::array::from_fn(|tap| columns[tap % 3][tap / 3])
}
/// `A y Aᵀ` of one tile's 2×2 gradient (row-major), `A` rows (1,0), (1,1), (1,−1), (0,−1).
#[inline(always)]
pub(super) fn transform_out_adjoint<V: Vector>(y: [V; 4]) -> [V; TAPS] {
    let zero = V::load(&[]);
    let apply = |a: V, b: V| [a, a.add(b), a.sub(b), zero.sub(b)];
    let (r0, r1) = (apply(y[0], y[1]), apply(y[2], y[3]));
    // Column j of the result is `apply(r0[j], r1[j])`; tap ξ = 4i + j is its row i.
    let (c0, c1, c2, c3) = (
        apply(r0[0], r1[0]),
        apply(r0[1], r1[1]),
        apply(r0[2], r1[2]),
        apply(r0[3], r1[3]),
    );
    [
        c0[0], c1[0], c2[0], c3[0], c0[1], c1[1], c2[1], c3[1], c0[2], c1[2], c2[2], c3[2], c0[3],
        c1[3], c2[3], c3[3],
    ]
}
/// The 16 vectors of one tile in tap order, `ld(ξ)` each.
#[inline(always)]
pub(super) fn gather<V: Vector>(ld: impl Fn(usize) -> V) -> [V; TAPS] {
    [
        ld(0),
        ld(1),
        ld(2),
        ld(3),
        ld(4),
        ld(5),
        ld(6),
        ld(7),
        ld(8),
        ld(9),
        ld(10),
        ld(11),
        ld(12),
        ld(13),
        ld(14),
        ld(15),
    ]
}

/// `Bᵀ d B` of one 4×4 tile (row-major), with `Bᵀ` rows (1,0,−1,0), (0,1,1,0), (0,−1,1,0),
/// (0,1,0,−1).
#[inline(always)]
pub(super) fn transform_in<V: Vector>(d: [V; TAPS]) -> [V; TAPS] {
    // Rows of Bᵀ d.
    let r = |j: usize| {
        [
            d[j].sub(d[8 + j]),
            d[4 + j].add(d[8 + j]),
            d[8 + j].sub(d[4 + j]),
            d[4 + j].sub(d[12 + j]),
        ]
    };
    let (c0, c1, c2, c3) = (r(0), r(1), r(2), r(3));
    // Each row times B: (r0 − r2, r1 + r2, r2 − r1, r1 − r3).
    let row = |i: usize| {
        [
            c0[i].sub(c2[i]),
            c1[i].add(c2[i]),
            c2[i].sub(c1[i]),
            c1[i].sub(c3[i]),
        ]
    };
    let (s0, s1, s2, s3) = (row(0), row(1), row(2), row(3));
    [
        s0[0], s0[1], s0[2], s0[3], s1[0], s1[1], s1[2], s1[3], s2[0], s2[1], s2[2], s2[3], s3[0],
        s3[1], s3[2], s3[3],
    ]
}

/// `Aᵀ M A` of one tile, with `Aᵀ` rows (1,1,1,0), (0,1,−1,−1): output `i` is the tile's
/// pixel `(i / 2, i % 2)`.
#[inline(always)]
pub(super) fn transform_out<V: Vector>(m: [V; TAPS]) -> [V; 4] {
    // Aᵀ M, column j: (m0j + m1j + m2j, m1j − m2j − m3j).
    let a = |j: usize| m[j].add(m[4 + j]).add(m[8 + j]);
    let b = |j: usize| m[4 + j].sub(m[8 + j]).sub(m[12 + j]);
    let (a0, a1, a2, a3) = (a(0), a(1), a(2), a(3));
    let (b0, b1, b2, b3) = (b(0), b(1), b(2), b(3));
    [
        a0.add(a1).add(a2),
        a1.sub(a2).sub(a3),
        b0.add(b1).add(b2),
        b1.sub(b2).sub(b3),
    ]
}
