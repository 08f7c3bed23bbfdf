//! Decoding and the network side by side: a pass over many files (`predict`, `evaluate`)
//! prepares the next chunk of files while the current one is scored, on the same thread pool,
//! so that neither waits for the other's slowest file, and at most two chunks are held at once.

/// `finish(prepare(c))` for each chunk `c`, in order, with chunk `i + 1` prepared while chunk
/// `i` is finished (the two on [`rayon::join`]'s two sides; each may itself run in parallel);
/// what `finish` returned, in order. Stops at the first `Err` from `finish`.
pub fn overlapped<C, P, R, E>(
    chunks: impl IntoIterator<Item = C>,
    prepare: impl Fn(C) -> P + Sync,
    mut finish: impl FnMut(P) -> Result<R, E> + Send,
) -> Result<Vec<R>, E>
where
    C: Send,
    P: Send,
    R: Send,
    E: Send,
{
    let mut chunks = chunks.into_iter();
    let mut out = Vec::new();
    let Some(first) = chunks.next() else {
        return Ok(out);
    };
    let mut ready = prepare(first);
    loop {
        let next = chunks.next();
        let (done, prepared) = rayon::join(|| finish(ready), || next.map(&prepare));
        out.push(done?);
        match prepared {
            Some(p) => ready = p,
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_chunk_is_prepared_once_and_finished_in_order() {
        let log = Mutex::new(Vec::new());
        let out: Result<Vec<usize>, ()> = overlapped(
            (0..5).map(|i| i * 10),
            |c| {
                log.lock().unwrap().push(format!("prepare {c}"));
                c + 1
            },
            |p| Ok(p * 2),
        );
        assert_eq!(out, Ok(vec![2, 22, 42, 62, 82]));
        let mut log = log.into_inner().unwrap();
        log.sort();
        let want: Vec<String> = (0..5).map(|i| format!("prepare {}", i * 10)).collect();
        assert_eq!(log, want);
    }

    #[test]
    fn the_next_chunk_is_prepared_while_this_one_finishes_and_an_error_stops_the_pass() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let prepared = AtomicUsize::new(0);
        let out: Result<Vec<usize>, String> = overlapped(
            0..100usize,
            |c| {
                prepared.fetch_add(1, Ordering::SeqCst);
                c
            },
            |c| {
                if c == 3 {
                    Err(format!("chunk {c}"))
                } else {
                    Ok(c)
                }
            },
        );
        assert_eq!(out, Err("chunk 3".into()));
        // Chunks 0–3 finished or failed, chunk 4 prepared beside chunk 3, nothing after it.
        assert_eq!(prepared.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn no_chunks_is_no_work() {
        let out: Result<Vec<u8>, ()> = overlapped(std::iter::empty::<u8>(), |c| c, Ok);
        assert_eq!(out, Ok(vec![]));
    }
}
