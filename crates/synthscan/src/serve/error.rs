//! Every failure the API answers with, as JSON `{"error": "...", "code": "..."}`, in one place:
//! [`ApiError`] for the handlers, [`json_errors`] for what axum and tower-http answer by
//! themselves (404, 405, 413 from the body limit, extractor rejections), and [`panic_response`]
//! for a handler that panicked.

use crate::error::Error;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_S: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON object (also used for one failed item of a batch).
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": self.message, "code": self.code })
    }
}

impl From<Error> for ApiError {
    /// Image errors are the client's (422); anything else is ours (500).
    fn from(e: Error) -> Self {
        match e {
            Error::TooLarge { .. } | Error::TooManyPixels { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "image_too_large",
                e.to_string(),
            ),
            Error::Decode { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "undecodable_image",
                e.to_string(),
            ),
            other => Self::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        resp
    }
}

/// The machine-readable code for a status that a layer below the handlers answered with.
pub fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "overloaded",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Middleware: an error response that is not JSON yet (plain-text rejections, empty 404/405,
/// tower-http's 413) becomes `{"error", "code"}` with the same status and headers.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text
    };
    let mut err = ApiError::new(status, code_for(status), message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    for (k, v) in err.headers() {
        parts.headers.insert(k, v.clone());
    }
    *err.headers_mut() = parts.headers;
    err
}

/// What `CatchPanicLayer` answers when a handler panics: a 500 in the usual shape.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a request handler panicked");
    ApiError::internal("internal error while handling the request").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn image_errors_are_422_with_codes() {
        let e = ApiError::from(Error::Decode {
            path: PathBuf::from("upload"),
            reason: "bad".into(),
        });
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.code, "undecodable_image");
        let e = ApiError::from(Error::TooLarge {
            path: PathBuf::from("upload"),
            width: 1,
            height: 100_000,
            limit: 10,
        });
        assert_eq!(e.code, "image_too_large");
        assert_eq!(
            ApiError::from(Error::Model("x".into())).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn overloaded_carries_retry_after() {
        let resp = ApiError::overloaded("full").into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }
}
