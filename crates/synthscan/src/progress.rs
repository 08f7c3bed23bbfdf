//! How a pass over many files (`predict`, `evaluate`, `robustness`) tells its caller how far it
//! has come, from whichever thread finished a file: the library counts, the binary draws (a bar
//! on stderr when it is a terminal).

/// Told of files done; shared by the threads that do them.
pub trait Tally: Sync {
    /// `total` files are to be done (said once, before any is).
    fn start(&self, total: usize) {
        let _ = total;
    }
    /// `n` more files are done (scored, or given up with an error).
    fn advance(&self, n: usize);
}

/// Counts nothing: the library's own callers and tests.
pub struct NoTally;

impl Tally for NoTally {
    fn advance(&self, _: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts what it is told (for tests of the passes that report to a tally).
    #[derive(Default)]
    pub struct Counted {
        pub total: AtomicUsize,
        pub done: AtomicUsize,
    }

    impl Tally for Counted {
        fn start(&self, total: usize) {
            self.total.store(total, Ordering::Relaxed);
        }
        fn advance(&self, n: usize) {
            self.done.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_tally_is_told_from_many_threads() {
        use rayon::prelude::*;
        let c = Counted::default();
        c.start(100);
        (0..100).into_par_iter().for_each(|_| c.advance(1));
        assert_eq!(c.done.load(Ordering::Relaxed), 100);
        NoTally.advance(3);
    }
}
