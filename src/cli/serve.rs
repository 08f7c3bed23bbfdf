//! `synthscan serve`: flags → [`synthscan::serve::ServeConfig`], then run until Ctrl-C / SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use synthscan::error::{Error, Result};
use synthscan::serve::{self, AppState, ServeConfig, batcher::BatchConfig};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Model or ensemble file (default: `auto`, the built-in models: CIFAKE-sized images to `cifake`, others to `realworld`; `cifake` and `realworld` name one of them); repeat it to serve
    /// several models as one ensemble.
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Largest request body, in MiB (413 above).
    #[arg(long, default_value_t = 20.0)]
    pub max_body_mb: f64,
    /// Largest image, in pixels (width × height), checked from the header before decoding.
    #[arg(long, default_value_t = 40_000_000)]
    pub max_pixels: u64,
    /// Most images per forward pass.
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// Longest wait, in ms, for more images to join a batch (0: a pass takes whatever is
    /// queued when it starts, so batches still grow with load but no image waits for others).
    #[arg(long, default_value_t = 0)]
    pub max_wait_ms: u64,
    /// Inference threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Images that may wait for inference; beyond this, 503 with Retry-After.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,
    /// Detection requests handled at once; beyond this, 503 with Retry-After.
    #[arg(long, default_value_t = 512)]
    pub max_concurrency: usize,
    /// Memory, in MiB, that the images being decoded may take together: each upload is weighed
    /// from its header (width × height × bytes per pixel) before decoding; one heavier than
    /// this is refused (422), others wait for room (503 after --budget-wait-ms).
    #[arg(long, default_value_t = 1024.0)]
    pub max_decode_mb: f64,
    /// Memory, in MiB, that the request bodies in flight may take together (each holds its
    /// Content-Length, or --max-body-mb without one, until answered; at least --max-body-mb);
    /// beyond it, requests wait for room (503 after --budget-wait-ms).
    #[arg(long, default_value_t = 1024.0)]
    pub max_upload_mb: f64,
    /// Longest wait, in ms, for room in the decode or upload budget before 503 (below
    /// --timeout-ms, so that a request queued behind others gets 503 + Retry-After, not 408).
    #[arg(long, default_value_t = 25_000)]
    pub budget_wait_ms: u64,
    /// Images per /v1/detect/batch request.
    #[arg(long, default_value_t = 32)]
    pub max_batch_items: usize,
    /// Time to receive and answer a detection request, in ms (408 after).
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Time to receive a request's headers, in ms (the connection is closed after).
    #[arg(long, default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// After SIGTERM, seconds that in-flight requests get to finish.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace_s: u64,
    /// Turn on POST /v1/feedback and POST /v1/admin/reload for requests carrying
    /// `Authorization: Bearer TOKEN` (also read from SYNTHSCAN_FEEDBACK_TOKEN; off without one).
    #[arg(long)]
    pub feedback_token: Option<String>,
    /// Where /v1/feedback stores corrections (REAL/ and FAKE/, content-addressed): the folder
    /// `synthscan adapt --data` reads.
    #[arg(long, default_value = "feedback")]
    pub feedback_dir: PathBuf,
    /// Most MiB the feedback folder may hold (507 beyond).
    #[arg(long, default_value_t = 1024)]
    pub feedback_max_mb: u64,
    /// Sleep this long before each forward pass: a deliberately slow model, for tests of
    /// back-pressure and shutdown. Never set in use.
    #[arg(long, default_value_t = 0, hide = true)]
    pub simulate_slow_ms: u64,
}

impl ServeArgs {
    fn config(&self) -> Result<ServeConfig> {
        if !(self.max_body_mb > 0.0 && self.max_body_mb.is_finite()) {
            return Err(Error::Invalid(format!(
                "--max-body-mb {}: must be a positive number",
                self.max_body_mb
            )));
        }
        for (flag, v) in [
            ("--max-decode-mb", self.max_decode_mb),
            ("--max-upload-mb", self.max_upload_mb),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Error::Invalid(format!(
                    "{flag} {v}: must be a positive number"
                )));
            }
        }
        let base = ServeConfig::default();
        Ok(ServeConfig {
            batch: BatchConfig {
                max_batch: self.max_batch.max(1),
                max_wait: Duration::from_millis(self.max_wait_ms),
                workers: self.workers.unwrap_or(base.batch.workers).max(1),
                queue_capacity: self.queue,
                simulate_slow: Duration::from_millis(self.simulate_slow_ms),
            },
            max_body_bytes: (self.max_body_mb * 1024.0 * 1024.0) as usize,
            max_pixels: self.max_pixels,
            request_timeout: Duration::from_millis(self.timeout_ms.max(1)),
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            max_concurrency: self.max_concurrency.max(1),
            max_decode_bytes: (self.max_decode_mb * 1024.0 * 1024.0) as u64,
            max_upload_bytes: (self.max_upload_mb * 1024.0 * 1024.0) as u64,
            budget_wait: Duration::from_millis(self.budget_wait_ms),
            max_batch_items: self.max_batch_items.max(1),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_s),
            ..base
        })
    }
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let config = args.config()?;
    let ensemble = super::load_members(&args.model, None, None)?;
    let models = args.model.clone();
    let token = args
        .feedback_token
        .clone()
        .or_else(|| std::env::var("SYNTHSCAN_FEEDBACK_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let mut state = AppState::new(ensemble, config)?
        .with_loader(Box::new(move || super::load_members(&models, None, None)))
        .with_token(token.clone());
    if token.is_some() {
        let cap = args.feedback_max_mb.saturating_mul(1024 * 1024);
        state = state.with_feedback(serve::feedback::Store::open(&args.feedback_dir, cap)?);
    }
    serve::serve_blocking(args.addr, state, |addr| {
        println!("listening on http://{addr}");
        // Tests and scripts read the address from the first line.
        let _ = std::io::stdout().flush();
    })?;
    eprintln!("shut down");
    Ok(ExitCode::SUCCESS)
}
