//! Dynamic batching: requests put decoded, resized images on a bounded queue; worker threads
//! (off the async runtime) gather whatever arrives within `max_wait` of the first image, up to
//! `max_batch`, and score them in one forward pass. Under load the batches grow, so throughput
//! grows with load; when the queue is full, [`Batcher::submit`] refuses at once (the caller
//! answers 503) instead of letting memory grow.

use super::metrics::Metrics;
use crate::decision::Decision;
use crate::ensemble::{Ensemble, Passes, Prepared};
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

/// A worker's answer for one image: the ensemble's decision, or why it could not be scored.
pub type Score = std::result::Result<Decision, String>;

struct Job {
    /// The image prepared for each member of the ensemble.
    image: Prepared,
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
    /// Bytes of each member's input.
    input_lens: Vec<usize>,
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
    /// Start `config.workers` threads scoring with `detector` (a model or an ensemble).
    pub fn start(detector: Arc<Ensemble>, config: BatchConfig, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        let input_lens = detector
            .iter()
            .map(|d| (d.meta.input_size as usize).pow(2) * 3)
            .collect();
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
            input_lens,
            incoming,
        }
    }

    /// Announce an image that is being decoded; drop the guard once it is submitted (or failed).
    pub fn expect(&self) -> Incoming {
        self.incoming.fetch_add(1, Ordering::Relaxed);
        Incoming(self.incoming.clone())
    }

    /// Queue one image, prepared for each member ([`Ensemble::prepare`]: `input_size`² RGB
    /// bytes, HWC, each); the receiver yields its decision.
    pub fn submit(&self, image: Prepared) -> Result<oneshot::Receiver<Score>, SubmitError> {
        debug_assert!(
            image
                .inputs
                .iter()
                .map(Vec::len)
                .eq(self.input_lens.iter().copied())
        );
        let (reply, rx) = oneshot::channel();
        // Counted before sending so a fast worker never sees the depth go below zero.
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Job { image, reply }) {
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
    det: &Ensemble,
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
        let (images, replies): (Vec<Prepared>, Vec<_>) =
            live.into_iter().map(|j| (j.image, j.reply)).unzip();
        let n = images.len();
        let scores = score_batch(det, images);
        metrics.record_batch(n, t0.elapsed().as_secs_f64());
        for (reply, score) in replies.into_iter().zip(scores) {
            // The receiver may have gone meanwhile; nothing to do then.
            let _ = reply.send(score);
        }
    }
}

/// The batch through [`Ensemble::score_with`], one pass per member on this worker's thread (a
/// lone image runs a flip-TTA model's mirror pass beside it on another core: lower latency when
/// traffic is light); a panic inside a model becomes an error for each image instead of killing
/// the worker.
fn score_batch(det: &Ensemble, images: Vec<Prepared>) -> Vec<Score> {
    let n = images.len();
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
        det.score_with(&det.batch_of(images), Passes::ThisThread)
    }));
    match run {
        Ok(decisions) if decisions.len() == n => decisions.into_iter().map(Ok).collect(),
        Ok(decisions) => {
            let msg = format!("model gave {} scores for {n} images", decisions.len());
            vec![Err(msg); n]
        }
        Err(_) => vec![Err("the model failed on this batch".to_string()); n],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ImageSet, Normalization};
    use crate::detector::{Detector, ModelMeta};

    fn model(size: u32) -> Detector {
        let arch = crate::model::preset("cifake-paper").unwrap();
        let device = crate::detector::default_device();
        let meta = ModelMeta::untrained(arch.clone(), size, Normalization::unit());
        Detector::new(meta, arch.init(size as usize, &device), device)
    }

    /// One 16×16 image's pixels as a one-member input.
    fn prepared(px: Vec<u8>) -> Prepared {
        Prepared {
            inputs: vec![px],
            width: 16,
            height: 16,
            provenance: None,
        }
    }

    fn tiny() -> Arc<Ensemble> {
        Arc::new(model(16).into())
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
            .map(|px| batcher.submit(prepared(px.clone())).unwrap())
            .collect();
        drop(guards);
        for (px, rx) in images.iter().zip(rxs) {
            let got = rx.blocking_recv().unwrap().unwrap().p_fake;
            let set = ImageSet {
                size: 16,
                pixels: px.clone(),
                labels: vec![0],
                paths: vec![],
            };
            let alone = det[0].score_set(&set)[0];
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
        let results: Vec<_> = (0..8)
            .map(|_| batcher.submit(prepared(px.clone())))
            .collect();
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

    /// An ensemble of two models of different input sizes: each image is prepared for both,
    /// and a batch answers the mean of what each model says of it alone.
    #[test]
    fn an_ensemble_batch_answers_the_members_mean() {
        let ens = Arc::new(Ensemble::new(vec![model(16), model(24)]).unwrap());
        let metrics = Arc::new(Metrics::default());
        let cfg = BatchConfig {
            max_batch: 4,
            max_wait: Duration::from_millis(50),
            workers: 1,
            ..BatchConfig::default()
        };
        let batcher = Batcher::start(ens.clone(), cfg, metrics);
        let images: Vec<image::RgbImage> = (0..3u32)
            .map(|k| {
                image::RgbImage::from_fn(20 + k, 18, |x, y| {
                    image::Rgb([(x * 13 + k) as u8, (y * 7) as u8, (x * y) as u8])
                })
            })
            .collect();
        let guards: Vec<_> = images.iter().map(|_| batcher.expect()).collect();
        let rxs: Vec<_> = images
            .iter()
            .map(|img| batcher.submit(ens.prepare(img)).unwrap())
            .collect();
        drop(guards);
        for (img, rx) in images.iter().zip(rxs) {
            let got = rx.blocking_recv().unwrap().unwrap().p_fake;
            let alone: Vec<f32> = ens
                .iter()
                .map(|d| d.score_set(&d.single(img.clone()))[0])
                .collect();
            let mean = (alone[0] + alone[1]) / 2.0;
            assert!((got - mean).abs() < 1e-5, "{got} vs {alone:?}");
            assert!(
                (alone[0] - alone[1]).abs() > 1e-6,
                "the members differ: {alone:?}"
            );
        }
    }
}
