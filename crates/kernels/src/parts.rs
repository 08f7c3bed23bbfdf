//! A layer's output in blocks of rows, side by side on the thread pool: how the compiled path
//! puts both cores on one photograph.

/// `f(i, block)` for each `block_len`-long block `i` of `out` (the last may be shorter): on the
/// calling thread when one block holds all of `out` — never a hand-off to the pool, which a
/// server's batch worker (not one of the pool's threads) would pay on every layer — else the
/// blocks side by side on the pool.
pub(crate) fn each_block(out: &mut [f32], block_len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    if block_len >= out.len() {
        return f(0, out);
    }
    out.par_chunks_mut(block_len.max(1))
        .enumerate()
        .for_each(|(i, block)| f(i, block));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_block_is_numbered_and_covers_the_output_once() {
        for (len, block) in [(10, 3), (9, 3), (4, 10), (0, 5), (7, 7)] {
            let mut out = vec![-1.0f32; len];
            each_block(&mut out, block, |i, b| {
                assert!(b.len() <= block);
                b.iter_mut().for_each(|v| *v = i as f32);
            });
            let want: Vec<f32> = (0..len).map(|j| (j / block) as f32).collect();
            assert_eq!(out, want, "{len} in blocks of {block}");
        }
    }
}
