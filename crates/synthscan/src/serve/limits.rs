//! Middleware: the request timeout, the concurrency limit, the upload budget, and the access
//! log + request metrics; [`Budget`], the weighted semaphore behind the memory budgets.

use super::AppState;
use super::error::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Answer 408 when reading the body and handling the request take longer than the limit (a
/// client that sends its body slowly, or never, holds nothing for longer than that).
pub async fn timeout(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = st.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request was not received and answered within {} ms",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// Refuse (503 + Retry-After) rather than queue when `max_concurrency` requests are in flight.
pub async fn concurrency(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match st.permits.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::overloaded(format!(
            "more than {} requests in flight; retry shortly",
            st.config.max_concurrency
        ))
        .into_response(),
    }
}

/// Count every request by route and status, time it, and write one access-log line.
pub async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let method = req.method().clone();
    // The route pattern, not the raw path, so that a scan of random URLs adds no new series.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    st.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let resp = next.run(req).await;
    st.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    st.metrics.record_request(&route, status, secs);
    tracing::info!(
        target: "synthscan::serve::access",
        method = %method,
        route = %route,
        status,
        ms = format_args!("{:.2}", secs * 1e3),
        "request"
    );
    resp
}

/// Memory shared by the requests in flight, as a weighted semaphore counted in KiB: a request
/// takes what it will hold before it holds it, waits at most `wait` for that much to be free,
/// and gives it back when done. The decode budget (`--max-decode-mb`) and the upload budget
/// (`--max-upload-mb`) are two of these.
pub struct Budget {
    sem: Arc<Semaphore>,
    total_kib: u32,
    wait: Duration,
}

/// Why [`Budget::take`] gave nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum BudgetError {
    /// More than the whole budget: it can never be granted.
    TooBig,
    /// Not enough was free within the wait.
    Busy,
}

fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).clamp(1, u32::MAX as u64) as u32
}

impl Budget {
    pub fn new(bytes: u64, wait: Duration) -> Self {
        let total_kib = kib(bytes);
        Self {
            sem: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            wait,
        }
    }

    /// The whole budget, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_kib as u64 * 1024
    }

    /// Bytes taken now.
    pub fn in_use_bytes(&self) -> u64 {
        (self.total_kib as u64).saturating_sub(self.sem.available_permits() as u64) * 1024
    }

    /// Take `bytes` of the budget, waiting up to the budget's wait for them to be free; given
    /// back when the permit is dropped.
    pub async fn take(&self, bytes: u64) -> Result<OwnedSemaphorePermit, BudgetError> {
        let n = kib(bytes);
        if n > self.total_kib {
            return Err(BudgetError::TooBig);
        }
        match tokio::time::timeout(self.wait, self.sem.clone().acquire_many_owned(n)).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(BudgetError::Busy),
        }
    }
}

/// MiB, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Hold the upload budget for the request's body: its `Content-Length` (at most the body
/// limit, which tower-http enforces below), or the body limit when no length is given. A
/// request that does not get its share within the wait is answered 503 before its body is read.
pub async fn upload_budget(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = st.config.max_body_bytes as u64;
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(limit, |n| n.min(limit));
    match st.upload_budget.take(len).await {
        Ok(_held) => next.run(req).await,
        // Only when the budget is below the body limit, which `AppState::new` rules out.
        Err(BudgetError::TooBig) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "a body of {len} bytes is more than the upload budget ({})",
                mib(st.upload_budget.total_bytes())
            ),
        )
        .into_response(),
        Err(BudgetError::Busy) => ApiError::overloaded(format!(
            "the upload budget ({}, --max-upload-mb) is held by other uploads; retry shortly",
            mib(st.upload_budget.total_bytes())
        ))
        .into_response(),
    }
}
