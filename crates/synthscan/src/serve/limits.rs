//! Middleware: the request timeout, the concurrency limit, and the access log + request metrics.

use super::AppState;
use super::error::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

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
