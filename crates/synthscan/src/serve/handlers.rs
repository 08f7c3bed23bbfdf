//! The endpoints. Decoding runs on tokio's blocking pool, scoring on the batch workers, so the
//! async runtime only moves bytes.

use super::batcher::SubmitError;
use super::error::ApiError;
use super::limits::{self, BudgetError};
use super::overlay;
use super::upload::{Upload, uploads};
use super::{AppState, Served};
use crate::data::decode;
use crate::decision::Decision;
use crate::ensemble::Prepared;
use crate::predict::Prediction;
use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use image::RgbImage;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

static PAGE: &str = include_str!("page.html");

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.ready.load(Ordering::Relaxed) {
        Json(json!({ "status": "ready", "model": st.model_name() })).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the server is starting or shutting down",
        )
        .into_response()
    }
}

pub async fn model(State(st): State<Arc<AppState>>) -> Json<Value> {
    let c = &st.config;
    let served = st.served();
    let members: Vec<Value> = served
        .ensemble
        .iter()
        .zip(&served.cam_layers)
        .map(|(det, layer)| describe(det, layer))
        .collect();
    // One model: its own fields at the top, as before ensembles; several: the members.
    let mut v = match members.as_slice() {
        [one] => one.clone(),
        _ => json!({
            "members": members,
            "calibration": served.ensemble.calibration(),
            "routed": served.ensemble.is_routed(),
        }),
    };
    v["name"] = json!(served.name);
    v["threshold"] = json!(served.ensemble.threshold());
    v["params"] = json!(
        served
            .ensemble
            .iter()
            .map(|d| d.num_params())
            .sum::<usize>()
    );
    v["feedback"] = json!(st.feedback_enabled());
    v["reload"] = json!(st.reload_enabled());
    v["serving"] = json!({
        "max_batch": c.batch.max_batch,
        "max_wait_ms": c.batch.max_wait.as_secs_f64() * 1e3,
        "workers": c.batch.workers,
        "queue_capacity": c.batch.queue_capacity,
        "max_body_bytes": c.max_body_bytes,
        "max_pixels": c.max_pixels,
        "request_timeout_ms": c.request_timeout.as_millis() as u64,
        "max_concurrency": c.max_concurrency,
        "max_decode_bytes": c.max_decode_bytes,
        "max_upload_bytes": c.max_upload_bytes,
        "max_batch_items": c.max_batch_items,
    });
    Json(v)
}

/// What `/v1/model` says of one model.
fn describe(det: &crate::Detector, cam_layer: &str) -> Value {
    let prov = &det.meta.provenance;
    json!({
        "name": det.name,
        "input_size": det.meta.input_size,
        "threshold": det.meta.threshold,
        "class_names": det.meta.class_names,
        "tta": det.meta.tta,
        "params": det.num_params(),
        "arch": det.meta.arch,
        "metrics": { "test": prov.get("test"), "val": prov.get("val") },
        "provenance": prov,
        "explain_layer": cam_layer,
    })
}

pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct DetectQuery {
    explain: Option<String>,
}

fn wants_gradcam(q: &DetectQuery) -> Result<bool, ApiError> {
    match q.explain.as_deref() {
        None | Some("") | Some("none") => Ok(false),
        Some("gradcam") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "bad_explain",
            format!("explain={other:?}: the only method is \"gradcam\""),
        )),
    }
}

pub async fn detect(
    State(st): State<Arc<AppState>>,
    Query(q): Query<DetectQuery>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let explain = wants_gradcam(&q)?;
    let upload = uploads(req, 1).await?.into_iter().next();
    let upload = upload.ok_or_else(|| ApiError::bad_request("no_image", "no image was sent"))?;
    Ok(Json(analyse(st, upload, explain).await?))
}

pub async fn detect_batch(
    State(st): State<Arc<AppState>>,
    Query(q): Query<DetectQuery>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let explain = wants_gradcam(&q)?;
    let items = uploads(req, st.config.max_batch_items).await?;
    // All items go through decoding and the queue at the same time, so they share batches.
    let tasks: Vec<_> = items
        .into_iter()
        .map(|u| tokio::spawn(analyse(st.clone(), u, explain)))
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(match t.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => e.body(),
            Err(_) => ApiError::internal("this item's task failed").body(),
        });
    }
    Ok(Json(json!({ "results": results })))
}

/// Every field `predict --json` gives for a scored file (the decision of `Ensemble::score`,
/// the model, the image's size), without the path.
fn prediction_fields(
    decision: Decision,
    width: u32,
    height: u32,
) -> serde_json::Map<String, Value> {
    let p = Prediction {
        path: PathBuf::new(),
        path_base64: None,
        model: Some(decision.model.clone()),
        decision: Some(decision),
        width: Some(width),
        height: Some(height),
        error: None,
        provenance: None,
    };
    let mut v = match serde_json::to_value(p) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    v.remove("path");
    v
}

struct Decoded {
    /// The image prepared for each model, with its size.
    prepared: Prepared,
    image: Option<RgbImage>,
    /// The decode budget, held while `image` is kept for an explanation.
    _held: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Header check, provenance evidence from the upload's original bytes, decode and resize
/// ([`crate::ensemble::Ensemble::prepare_bytes_within`], as `predict` does), on the blocking
/// pool. Before decoding, the image is weighed from its header ([`decode::decode_bytes`]) and
/// that much of the decode budget is taken (waiting for room up to `budget_wait`: 503 after;
/// more than the whole budget: 422), so the images being decoded never take more memory
/// than the budget; at most `decode_permits` decode at once.
async fn decode_upload(
    st: &Arc<AppState>,
    served: &Served,
    upload: Upload,
    keep: bool,
) -> Result<Decoded, ApiError> {
    let max_pixels = st.config.max_pixels;
    let (width, height, cost) =
        decode::decode_bytes(&upload.bytes, Path::new(&upload.name), max_pixels)?;
    let budget = &st.decode_budget;
    let held = budget.take(cost).await.map_err(|e| match e {
        BudgetError::TooBig => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "image_too_large",
            format!(
                "{}: decoding this {width}×{height} image takes about {}, more than the \
                 server's decode budget of {} (--max-decode-mb)",
                upload.name,
                limits::mib(cost),
                limits::mib(budget.total_bytes())
            ),
        ),
        BudgetError::Busy => ApiError::overloaded(format!(
            "the decode budget ({}, --max-decode-mb) is taken by other uploads; retry shortly",
            limits::mib(budget.total_bytes())
        )),
    })?;
    let _permit = st
        .decode_permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::internal("decoder closed"))?;
    let ensemble = served.ensemble.clone();
    let job = tokio::task::spawn_blocking(move || {
        let name = Path::new(&upload.name);
        let (prepared, image) =
            ensemble.prepare_bytes_within(&upload.bytes, name, max_pixels, keep)?;
        Ok::<_, crate::Error>((prepared, image))
    });
    let (prepared, image) = match job.await {
        Ok(r) => r.map_err(ApiError::from)?,
        Err(_) => return Err(ApiError::internal("the decoder failed on this image")),
    };
    Ok(Decoded {
        prepared,
        _held: image.is_some().then_some(held),
        image,
    })
}

/// Decode, score through the batch queue, optionally explain; the JSON answer for one image.
async fn analyse(st: Arc<AppState>, upload: Upload, explain: bool) -> Result<Value, ApiError> {
    let t0 = Instant::now();
    // The model answering now answers this request to the end, even if another is swapped in.
    let served = st.served();
    let on_its_way = served.batcher.expect();
    let decoded = decode_upload(&st, &served, upload, explain).await?;
    let (width, height) = (decoded.prepared.width, decoded.prepared.height);
    let submitted = served.batcher.submit(decoded.prepared);
    drop(on_its_way);
    let rx = submitted.map_err(|e| match e {
        SubmitError::Full => ApiError::overloaded("the inference queue is full; retry shortly"),
        SubmitError::Closed => ApiError::internal("the inference workers have stopped"),
    })?;
    let decision = rx
        .await
        .map_err(|_| ApiError::internal("the inference worker dropped the request"))?
        .map_err(ApiError::internal)?;
    let mut out = prediction_fields(decision, width, height);
    if let Some(img) = decoded.image {
        let ex = tokio::task::spawn_blocking(move || {
            overlay::gradcam(&served.ensemble, &img, &served.cam_layers)
        })
        .await
        .map_err(|_| ApiError::internal("the explanation failed on this image"))??;
        out.insert("explain".into(), json!(ex));
    }
    out.insert("ms".into(), json!(t0.elapsed().as_secs_f64() * 1e3));
    Ok(Value::Object(out))
}

pub async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint at {}", req.uri().path()),
    )
}
