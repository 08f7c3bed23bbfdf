//! Dynamic batching: requests put decoded, resized images on a bounded queue; worker threads
//! (off the async runtime) gather whatever arrives within `max_wait` of the first image, up to
//! `max_batch`, and score them in one forward pass. Under load the batches grow, so throughput
//! grows with load; when the queue is full, [`Batcher::submit`] refuses at once (the caller
//! answers 503) instead of letting memory grow.

use super::metrics::Metrics;
use crate::data::ImageSet;
use crate::detector::Detector;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How batches are formed.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// Most images per forward pass.
    pub max_batch: usize,
    /// Longest time the first image of a batch waits for others.
    pub max_wait: Duration,
    /// Threads running forward passes (each pass uses one core on the CPU backends).
    pub workers: usize,
    /// Images that may wait; beyond this, submissions are refused.
    pub queue_capacity: usize,
    /// Extra sleep per batch, to make a slow model for tests of back-pressure. Zero in use.
    pub simulate_slow: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 64,
            // Greedy batching: whatever is queued when a worker is free. With the compiled CPU
            // path a pass costs about the same per image at any batch size, so waiting for
            // company only adds latency (docs/benchmarks.md, serving).
            max_wait: Duration::ZERO,
            workers: rayon::current_num_threads().max(1),
            queue_capacity: 1024,
            simulate_slow: Duration::ZERO,
        }
    }
}

/// A worker's answer for one image: p_fake, or why it could not be scored.
pub type Score = std::result::Result<f32, String>;

struct Job {
    pixels: Vec<u8>,
    reply: oneshot::Sender<Score>,
}

/// Why an image was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full: try again later.
    Full,
    /// The workers have stopped.
    Closed,
}

/// The sending side; cheap to share behind an `Arc`.
pub struct Batcher {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
    input_len: usize,
    /// Images being decoded that will be submitted soon: a worker waits for more images only
    /// while some are on their way, so a lone request is not delayed by `max_wait`.
    incoming: Arc<AtomicUsize>,
}

/// Held while an image is decoded, before [`Batcher::submit`]; see [`Batcher::expect`].
pub struct Incoming(Arc<AtomicUsize>);

impl Drop for Incoming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Batcher {
    /// Start `config.workers` threads scoring with `detector`.
    pub fn start(detector: Arc<Detector>, config: BatchConfig, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        let size = detector.meta.input_size as usize;
        let incoming = Arc::new(AtomicUsize::new(0));
        for i in 0..config.workers.max(1) {
            let (rx, det, cfg, m, inc) = (
                rx.clone(),
                detector.clone(),
                config.clone(),
                metrics.clone(),
                incoming.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("synthscan-batch-{i}"))
                .spawn(move || worker(&rx, &det, &cfg, &m, &inc));
            if let Err(e) = spawned {
                tracing::error!("cannot start batch worker {i}: {e}");
            }
        }
        Self {
            tx,
            metrics,
            input_len: size * size * 3,
            incoming,
        }
    }

    /// Announce an image that is being decoded; drop the guard once it is submitted (or failed).
    pub fn expect(&self) -> Incoming {
        self.incoming.fetch_add(1, Ordering::Relaxed);
        Incoming(self.incoming.clone())
    }

    /// Queue one image (`input_size`² RGB bytes, HWC); the receiver yields its score.
    pub fn submit(&self, pixels: Vec<u8>) -> Result<oneshot::Receiver<Score>, SubmitError> {
        debug_assert_eq!(pixels.len(), self.input_len);
        let (reply, rx) = oneshot::channel();
        // Counted before sending so a fast worker never sees the depth go below zero.
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Job { pixels, reply }) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::Full,
                    TrySendError::Disconnected(_) => SubmitError::Closed,
                })
            }
        }
    }
}

/// Longest single wait while gathering, so that a worker notices soon when no more images
/// are on their way.
const POLL: Duration = Duration::from_micros(200);

/// Take the next batch: block for the first job, then gather more until `max_batch`, or
/// `max_wait` after the first, or no image is queued or being decoded. Holding the lock
/// meanwhile lets another worker run its pass while this one gathers. `None` when every sender
/// is gone.
fn next_batch(
    rx: &Mutex<Receiver<Job>>,
    cfg: &BatchConfig,
    incoming: &AtomicUsize,
) -> Option<Vec<Job>> {
    let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
    let first = rx.recv().ok()?;
    let deadline = Instant::now() + cfg.max_wait;
    let mut batch = vec![first];
    while batch.len() < cfg.max_batch.max(1) {
        if let Ok(job) = rx.try_recv() {
            batch.push(job);
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || incoming.load(Ordering::Relaxed) == 0 {
            break;
        }
        match rx.recv_timeout(left.min(POLL)) {
            Ok(job) => batch.push(job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(batch)
}

fn worker(
    rx: &Mutex<Receiver<Job>>,
    det: &Detector,
    cfg: &BatchConfig,
    metrics: &Metrics,
    incoming: &AtomicUsize,
) {
    while let Some(batch) = next_batch(rx, cfg, incoming) {
        metrics
            .queue_depth
            .fetch_sub(batch.len(), Ordering::Relaxed);
        // Requests that timed out or whose client left are not scored.
        let live: Vec<Job> = batch.into_iter().filter(|j| !j.reply.is_closed()).collect();
        if live.is_empty() {
            continue;
        }
        if !cfg.simulate_slow.is_zero() {
            std::thread::sleep(cfg.simulate_slow);
        }
        let t0 = Instant::now();
        let scores = score_batch(det, &live);
        metrics.record_batch(live.len(), t0.elapsed().as_secs_f64());
        for (job, score) in live.into_iter().zip(scores) {
            // The receiver may have gone meanwhile; nothing to do then.
            let _ = job.reply.send(score);
        }
    }
}

/// One forward pass over the batch (a lone image through `score_set`, which runs a flip-TTA
/// model's mirror pass beside it on another core: lower latency when traffic is light); a panic
/// inside the model becomes an error for each image instead of killing the worker.
fn score_batch(det: &Detector, jobs: &[Job]) -> Vec<Score> {
    let size = det.meta.input_size;
    let mut set = ImageSet {
        size,
        ..Default::default()
    };
    for j in jobs {
        set.pixels.extend_from_slice(&j.pixels);
        set.labels.push(0);
    }
    let indices: Vec<usize> = (0..jobs.len()).collect();
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if indices.len() == 1 {
            det.score_set(&set)
        } else {
            det.score_batch(&set, &indices)
        }
    }));
    match run {
        Ok(scores) if scores.len() == jobs.len() => scores.into_iter().map(Ok).collect(),
        Ok(scores) => {
            let msg = format!(
                "model gave {} scores for {} images",
                scores.len(),
                jobs.len()
            );
            vec![Err(msg); jobs.len()]
        }
        Err(_) => vec![Err("the model failed on this batch".to_string()); jobs.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Normalization;
    use crate::detector::ModelMeta;

    fn tiny() -> Arc<Detector> {
        let arch = crate::model::preset("cifake-paper").unwrap();
        let device = crate::detector::default_device();
        let meta = ModelMeta::untrained(arch.clone(), 16, Normalization::unit());
        Arc::new(Detector::new(meta, arch.init(16, &device), device))
    }

    #[test]
    fn batched_scores_match_one_at_a_time() {
        let det = tiny();
        let metrics = Arc::new(Metrics::default());
        let cfg = BatchConfig {
            max_batch: 8,
            max_wait: Duration::from_millis(50),
            workers: 1,
            queue_capacity: 16,
            simulate_slow: Duration::ZERO,
        };
        let batcher = Batcher::start(det.clone(), cfg, metrics.clone());
        let images: Vec<Vec<u8>> = (0..5)
            .map(|k| {
                (0..16 * 16 * 3)
                    .map(|i| ((i * 31 + k * 17) % 251) as u8)
                    .collect()
            })
            .collect();
        // Announced as on their way, as the server does while decoding.
        let guards: Vec<_> = images.iter().map(|_| batcher.expect()).collect();
        let rxs: Vec<_> = images
            .iter()
            .map(|px| batcher.submit(px.clone()).unwrap())
            .collect();
        drop(guards);
        for (px, rx) in images.iter().zip(rxs) {
            let got = rx.blocking_recv().unwrap().unwrap();
            let set = ImageSet {
                size: 16,
                pixels: px.clone(),
                labels: vec![0],
                paths: vec![],
            };
            let alone = det.score_set(&set)[0];
            assert!((got - alone).abs() < 1e-5, "{got} vs {alone}");
        }
        // All five were queued before the worker's 50 ms window closed: fewer passes than images.
        let h = metrics.batch_sizes();
        assert_eq!(h.sum, 5.0);
        assert!(h.count < 5, "{h:?}");
        assert_eq!(metrics.queue_depth.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn full_queue_is_refused_not_grown() {
        let det = tiny();
        let metrics = Arc::new(Metrics::default());
        let cfg = BatchConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            workers: 1,
            queue_capacity: 2,
            simulate_slow: Duration::from_millis(300),
        };
        let batcher = Batcher::start(det, cfg, metrics);
        let px = vec![0u8; 16 * 16 * 3];
        let results: Vec<_> = (0..8).map(|_| batcher.submit(px.clone())).collect();
        let refused = results.iter().filter(|r| r.is_err()).count();
        // At most 1 being scored + 2 waiting; the rest are refused.
        assert!(refused >= 5, "{refused} refused");
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| *e == SubmitError::Full)
        );
    }
}
