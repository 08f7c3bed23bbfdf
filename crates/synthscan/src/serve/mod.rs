//! `synthscan serve`: an HTTP API and a web page for real-time detection.
//!
//! * `POST /v1/detect` (one image), `POST /v1/detect/batch` (several), `GET /v1/model`,
//!   `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus text), `GET /` (the page).
//! * Images are decoded on tokio's blocking pool and scored by [`batcher`] threads that gather
//!   concurrent requests into one forward pass.
//! * Limits ([`limits`]): body size (tower-http), image dimensions and pixel count from the
//!   header before decoding, request timeout, header-read timeout (slow clients), concurrency,
//!   memory budgets for the bodies held (`max_upload_bytes`) and the images being decoded
//!   (`max_decode_bytes`, weighed from each image's header before it is decoded), a bounded
//!   queue (503 + `Retry-After` when full). Every failure is JSON ([`error`]).
//! * Stateless: the model is loaded at start, so replicas scale behind any load balancer.

pub mod batcher;
pub mod error;
pub mod feedback;
mod handlers;
pub mod limits;
pub mod metrics;
pub mod overlay;
mod upload;

use crate::ensemble::Ensemble;
use crate::error::{Error, Result};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use batcher::{BatchConfig, Batcher};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics::Metrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

/// Everything `serve` can be told; the CLI fills it from flags.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub batch: BatchConfig,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Largest width × height decoded (422 above), read from the header first.
    pub max_pixels: u64,
    /// Reading the body plus answering must end within this (408).
    pub request_timeout: Duration,
    /// The request line and headers must arrive within this, or the connection is closed.
    pub header_timeout: Duration,
    /// Detection requests handled at once (503 above).
    pub max_concurrency: usize,
    /// Images decoded at once (bounds the CPU decoding takes; memory is `max_decode_bytes`').
    pub decode_concurrency: usize,
    /// Memory that the images being decoded may take together: each image is weighed from its
    /// header before decoding ([`crate::data::decode::decode_bytes`]); one heavier than this is
    /// refused (422), others wait for room up to `budget_wait` (then 503).
    pub max_decode_bytes: u64,
    /// Memory that the request bodies in flight may take together: each request holds its
    /// `Content-Length` (or `max_body_bytes` without one) from before its body is read until
    /// it is answered; at least `max_body_bytes`.
    pub max_upload_bytes: u64,
    /// Longest wait for room in a budget before answering 503.
    pub budget_wait: Duration,
    /// Images per `/v1/detect/batch` request.
    pub max_batch_items: usize,
    /// After SIGTERM, how long in-flight requests get to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let cores = rayon::current_num_threads().max(1);
        Self {
            batch: BatchConfig::default(),
            max_body_bytes: 20 * 1024 * 1024,
            max_pixels: 40_000_000,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_concurrency: 512,
            decode_concurrency: 2 * cores,
            max_decode_bytes: 1024 * 1024 * 1024,
            max_upload_bytes: 1024 * 1024 * 1024,
            budget_wait: Duration::from_secs(25),
            max_batch_items: 32,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The model being served with what is derived from it (its batch workers, its Grad-CAM
/// layers); a reload swaps it whole, and a request keeps the one it started with.
pub struct Served {
    /// The model, or several answering as one.
    pub ensemble: Arc<Ensemble>,
    pub name: String,
    batcher: Batcher,
    /// The block of each member Grad-CAM is taken at, resolved once (it runs the networks on a
    /// blank image).
    cam_layers: Vec<String>,
}

impl Served {
    /// Resolve the Grad-CAM layers and start the batch workers of `ensemble`.
    fn start(ensemble: Ensemble, config: &ServeConfig, metrics: &Arc<Metrics>) -> Result<Self> {
        let name = ensemble.name();
        let cam_layers =
            crate::explain::EnsembleCam::new(&ensemble, &[], crate::explain::CamMethod::GradCam)?
                .layer_names();
        let ensemble = Arc::new(ensemble);
        let batcher = Batcher::start(ensemble.clone(), config.batch.clone(), metrics.clone());
        Ok(Self {
            ensemble,
            name,
            batcher,
            cam_layers,
        })
    }
}

/// Loads the model again from where it came from (`reload`, SIGHUP).
pub type Loader = Box<dyn Fn() -> Result<Ensemble> + Send + Sync>;

/// What every handler sees.
pub struct AppState {
    served: RwLock<Arc<Served>>,
    pub config: ServeConfig,
    pub metrics: Arc<Metrics>,
    ready: AtomicBool,
    permits: Arc<Semaphore>,
    decode_permits: Arc<Semaphore>,
    decode_budget: limits::Budget,
    upload_budget: limits::Budget,
    /// The bearer token of `/v1/feedback` and `/v1/admin/reload` (both off without one).
    token: Option<String>,
    feedback: Option<feedback::Store>,
    loader: Option<Loader>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl AppState {
    /// Start the batch workers for a model (`Ensemble::from(detector)`) or an ensemble.
    pub fn new(ensemble: Ensemble, mut config: ServeConfig) -> Result<Self> {
        // A body the size limit admits must fit the upload budget, or it could never be read.
        config.max_upload_bytes = config.max_upload_bytes.max(config.max_body_bytes as u64);
        let worst = crate::data::decode::worst_decode_bytes(config.max_pixels);
        if worst > config.max_decode_bytes {
            tracing::warn!(
                "an image of --max-pixels {} may take up to {} to decode, more than the decode \
                 budget of {}: such images are refused (422)",
                config.max_pixels,
                limits::mib(worst),
                limits::mib(config.max_decode_bytes)
            );
        }
        let metrics = Arc::new(Metrics::default());
        let served = Served::start(ensemble, &config, &metrics)?;
        Ok(Self {
            served: RwLock::new(Arc::new(served)),
            metrics,
            ready: AtomicBool::new(true),
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            decode_permits: Arc::new(Semaphore::new(config.decode_concurrency.max(1))),
            decode_budget: limits::Budget::new(config.max_decode_bytes, config.budget_wait),
            upload_budget: limits::Budget::new(config.max_upload_bytes, config.budget_wait),
            config,
            token: None,
            feedback: None,
            loader: None,
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The bearer token of `/v1/feedback` and `/v1/admin/reload` (both off without one).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// How to load the model again (`/v1/admin/reload`, SIGHUP).
    pub fn with_loader(mut self, loader: Loader) -> Self {
        self.loader = Some(loader);
        self
    }

    /// Where `/v1/feedback` stores corrections.
    pub fn with_feedback(mut self, store: feedback::Store) -> Self {
        self.feedback = Some(store);
        self
    }

    /// The model answering now.
    pub fn served(&self) -> Arc<Served> {
        match self.served.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The name of the model answering now.
    pub fn model_name(&self) -> String {
        self.served().name.clone()
    }

    /// Load the model again and swap it in: requests under way finish on the old one (they
    /// hold it), new ones get the new one; on failure the old one stays. Returns the names
    /// (before, after).
    pub async fn reload(self: &Arc<Self>) -> Result<(String, String)> {
        let _one = self.reloading.lock().await;
        let st = self.clone();
        let fresh = tokio::task::spawn_blocking(move || {
            let loader = st
                .loader
                .as_ref()
                .ok_or_else(|| Error::Invalid("this server cannot reload its model".into()))?;
            Served::start(loader()?, &st.config, &st.metrics)
        })
        .await
        .map_err(|_| Error::Model("the reload task failed".into()))??;
        let after = fresh.name.clone();
        let old = {
            let mut slot = match self.served.write() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            std::mem::replace(&mut *slot, Arc::new(fresh))
        };
        self.metrics.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(from = %old.name, to = %after, "model reloaded");
        Ok((old.name.clone(), after))
    }
}

/// All routes with their layers.
pub fn router(state: Arc<AppState>) -> Router {
    use axum::middleware::{from_fn, from_fn_with_state};
    // Detection routes: body limit, timeout and concurrency limit (probes and metrics stay
    // answerable under any load).
    let detect = Router::new()
        .route("/v1/detect", post(handlers::detect))
        .route("/v1/detect/batch", post(handlers::detect_batch))
        .route("/v1/feedback", post(feedback::feedback))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(state.config.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), limits::upload_budget))
        .layer(from_fn_with_state(state.clone(), limits::timeout))
        .layer(from_fn_with_state(state.clone(), limits::concurrency));
    Router::new()
        .route("/", get(handlers::page))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/v1/model", get(handlers::model))
        .route("/v1/admin/reload", post(feedback::reload))
        .merge(detect)
        .fallback(handlers::not_found)
        .layer(from_fn(error::json_errors))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(from_fn_with_state(state.clone(), limits::observe))
        .with_state(state)
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Server {
    pub async fn bind(addr: SocketAddr, state: AppState) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Invalid(format!("cannot listen on {addr}: {e}")))?;
        Ok(Self {
            listener,
            state: Arc::new(state),
        })
    }

    /// The address actually bound (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Invalid(format!("listening socket: {e}")))
    }

    /// Serve until `shutdown` resolves; then refuse new connections, report not-ready, and let
    /// in-flight requests finish (up to `shutdown_grace`).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let app = router(self.state.clone());
        let hangup = self
            .state
            .can_reload()
            .then(|| tokio::spawn(feedback::reload_on_hangup(self.state.clone())));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.state.config.header_timeout);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, _peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let svc = TowerToHyperService::new(app.clone());
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("connection ended: {e}");
                }
            });
        }
        self.state.ready.store(false, Ordering::Relaxed);
        if let Some(h) = hangup {
            h.abort();
        }
        drop(self.listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(self.state.config.shutdown_grace) => {
                tracing::warn!("shutdown grace period over with requests still in flight");
            }
        }
        Ok(())
    }
}

/// Bind `addr`, call `listening` with the bound address, and serve until Ctrl-C or SIGTERM, on a
/// runtime of its own (what `synthscan serve` runs; tests drive [`Server`] on theirs).
pub fn serve_blocking(
    addr: SocketAddr,
    state: AppState,
    listening: impl FnOnce(SocketAddr),
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(rayon::current_num_threads().clamp(1, 4))
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start the async runtime: {e}")))?;
    let served = runtime.block_on(async {
        let server = Server::bind(addr, state).await?;
        let addr = server.local_addr()?;
        listening(addr);
        tracing::info!(%addr, "serving");
        server.run(shutdown_signal()).await
    });
    // A decode still running on the blocking pool after the grace period is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
