//! The token-protected endpoints: `POST /v1/feedback` (an image with the label it should have
//! had, stored content-addressed where `synthscan adapt --data` reads it) and
//! `POST /v1/admin/reload` (swap in the model file again, as SIGHUP does).
//!
//! Both are off unless the server was started with a token (`--feedback-token` or
//! `SYNTHSCAN_FEEDBACK_TOKEN`); a request must carry `Authorization: Bearer <token>`.

use super::AppState;
use super::error::ApiError;
use super::upload::uploads_with_fields;
use crate::data::{CLASS_NAMES, FAKE, REAL};
use crate::error::{Error, Result};
use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A folder of corrections: `REAL/<sha256>.<ext>` and `FAKE/<sha256>.<ext>`, each image with a
/// `<sha256>.json` note beside it, at most `max_bytes` in all.
pub struct Store {
    dir: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
    /// One write at a time (deduplication looks before it writes).
    lock: tokio::sync::Mutex<()>,
}

/// What became of one correction.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The same image with the same label was already there.
    Duplicate,
    /// The same image was there under the other label: moved (the latest label wins).
    Relabelled,
}

impl Store {
    /// Open (creating) the folder and count what it holds.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self> {
        for class in CLASS_NAMES {
            let d = dir.join(class);
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        let used = CLASS_NAMES
            .iter()
            .flat_map(|c| std::fs::read_dir(dir.join(c)).into_iter().flatten())
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            used: AtomicU64::new(used),
            lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where an image of this content and label lives, if it is stored.
    fn find(&self, key: &str, label: u8) -> Option<PathBuf> {
        let d = self.dir.join(CLASS_NAMES[label as usize]);
        std::fs::read_dir(d)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_stem().and_then(|s| s.to_str()) == Some(key)
                    && p.extension().is_some_and(|e| e != "json")
            })
    }

    /// Store `bytes` (an image in a known format) as an example of `label`, with `note`.
    pub async fn save(
        &self,
        bytes: &[u8],
        label: u8,
        note: &str,
        model: &str,
    ) -> std::result::Result<(String, Stored), ApiError> {
        let format = image::guess_format(bytes).map_err(|_| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_image",
                "the upload is not an image in a format synthscan reads",
            )
        })?;
        let ext = format.extensions_str().first().copied().unwrap_or("img");
        let key = crate::adapt::cache::content_key(bytes);
        let _one = self.lock.lock().await;
        if self.find(&key, label).is_some() {
            return Ok((key, Stored::Duplicate));
        }
        let other = self.find(&key, 1 - label);
        let target = self
            .dir
            .join(CLASS_NAMES[label as usize])
            .join(format!("{key}.{ext}"));
        let note_json = json!({
            "label": CLASS_NAMES[label as usize], "note": note, "model": model,
            "received": crate::adapt::today(), "sha256": key,
        });
        let size = bytes.len() as u64 + 512;
        if other.is_none() && self.used.load(Ordering::Relaxed) + size > self.max_bytes {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "feedback_full",
                format!(
                    "the feedback folder is full ({} bytes, --feedback-max-mb): adapt on it and \
                     clear it",
                    self.max_bytes
                ),
            ));
        }
        let result = match other {
            Some(old) => self.relabel(&old, &target, &key, &note_json),
            None => self.write_new(bytes, size, &target, &note_json),
        };
        result.map_err(ApiError::from).map(|how| (key, how))
    }

    fn write_new(&self, bytes: &[u8], size: u64, target: &Path, note: &Value) -> Result<Stored> {
        crate::error::write_file(target, bytes)?;
        write_note(target, note)?;
        self.used.fetch_add(size, Ordering::Relaxed);
        Ok(Stored::New)
    }

    fn relabel(&self, old: &Path, target: &Path, key: &str, note: &Value) -> Result<Stored> {
        std::fs::rename(old, target).map_err(|e| Error::io(old, e))?;
        let _ = std::fs::remove_file(old.with_file_name(format!("{key}.json")));
        write_note(target, note)?;
        Ok(Stored::Relabelled)
    }
}

fn write_note(image: &Path, note: &Value) -> Result<()> {
    let text = serde_json::to_vec_pretty(note).map_err(|e| Error::output(image, e))?;
    crate::error::write_file(&image.with_extension("json"), text)
}

/// Equal in time whatever the bytes (a token is not guessed a byte at a time).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 404 when the server has no token, 401 without the right bearer token.
fn authorise(st: &AppState, headers: &HeaderMap, what: &str) -> std::result::Result<(), ApiError> {
    let Some(token) = &st.token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_enabled",
            format!(
                "{what} is off: start the server with --feedback-token (or SYNTHSCAN_FEEDBACK_TOKEN)"
            ),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the server's token as Authorization: Bearer <token>",
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct FeedbackQuery {
    label: Option<String>,
    note: Option<String>,
}

fn parse_label(text: &str) -> std::result::Result<u8, ApiError> {
    match text.trim().to_ascii_uppercase().as_str() {
        "REAL" => Ok(REAL),
        "FAKE" => Ok(FAKE),
        _ => Err(ApiError::bad_request(
            "bad_label",
            format!("label {text:?}: REAL or FAKE (the label the image should have)"),
        )),
    }
}

/// `POST /v1/feedback`: the image (multipart field `image`, or the raw body) and `label`
/// (multipart field or query), optional `note`.
pub async fn feedback(
    State(st): State<Arc<AppState>>,
    Query(q): Query<FeedbackQuery>,
    req: Request,
) -> std::result::Result<Json<Value>, ApiError> {
    authorise(&st, req.headers(), "feedback")?;
    let store = st.feedback.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_enabled",
            "feedback is off on this server",
        )
    })?;
    let (mut images, fields) = uploads_with_fields(req, 1, &["label", "note"]).await?;
    let label_text = fields.get("label").or(q.label.as_ref()).ok_or_else(|| {
        ApiError::bad_request("no_label", "say the right label: label=REAL or label=FAKE")
    })?;
    let label = parse_label(label_text)?;
    let note: String = fields
        .get("note")
        .or(q.note.as_ref())
        .map(|n| n.chars().filter(|c| !c.is_control()).take(1000).collect())
        .unwrap_or_default();
    let upload = images
        .pop()
        .ok_or_else(|| ApiError::bad_request("no_image", "no image was sent"))?;
    let (key, how) = store
        .save(&upload.bytes, label, &note, &st.model_name())
        .await?;
    let status = match how {
        Stored::New => "stored",
        Stored::Duplicate => "duplicate",
        Stored::Relabelled => "relabelled",
    };
    Ok(Json(json!({
        "status": status, "sha256": key, "label": CLASS_NAMES[label as usize],
    })))
}

/// `POST /v1/admin/reload`: load the model file again and swap it in.
pub async fn reload(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> std::result::Result<Json<Value>, ApiError> {
    authorise(&st, &headers, "reload")?;
    let t0 = std::time::Instant::now();
    let (before, after) = st.reload().await.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reload_failed",
            format!("the model was not replaced: {e}"),
        )
    })?;
    Ok(Json(json!({
        "status": "reloaded", "previous": before, "model": after,
        "ms": t0.elapsed().as_secs_f64() * 1e3,
    })))
}

impl AppState {
    pub fn feedback_enabled(&self) -> bool {
        self.token.is_some() && self.feedback.is_some()
    }

    pub fn reload_enabled(&self) -> bool {
        self.token.is_some() && self.loader.is_some()
    }

    /// Whether the model can be loaded again (SIGHUP needs no token: it comes from the host).
    pub fn can_reload(&self) -> bool {
        self.loader.is_some()
    }
}

/// Reload on every SIGHUP (Unix), for as long as the server runs.
pub async fn reload_on_hangup(st: Arc<AppState>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match st.reload().await {
                Ok((from, to)) => tracing::info!("SIGHUP: {from} → {to}"),
                Err(e) => tracing::error!("SIGHUP: the model was not replaced: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = st;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[tokio::test]
    async fn corrections_are_stored_once_relabelled_and_capped() {
        let dir = std::env::temp_dir().join(format!("synthscan-fb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, 10_000).unwrap();
        let img = png();
        let (key, how) = store.save(&img, REAL, "night shot", "m").await.unwrap();
        assert_eq!(how, Stored::New);
        assert!(dir.join("REAL").join(format!("{key}.png")).is_file());
        assert!(dir.join("REAL").join(format!("{key}.json")).is_file());
        assert_eq!(
            store.save(&img, REAL, "", "m").await.unwrap().1,
            Stored::Duplicate
        );
        assert_eq!(
            store.save(&img, FAKE, "", "m").await.unwrap().1,
            Stored::Relabelled
        );
        assert!(!dir.join("REAL").join(format!("{key}.png")).exists());
        assert!(dir.join("FAKE").join(format!("{key}.png")).is_file());
        assert!(store.save(b"not an image", REAL, "", "m").await.is_err());
        let small = Store::open(&dir, 10).unwrap();
        let other = image::RgbImage::from_pixel(9, 9, image::Rgb([4, 5, 6]));
        let mut bytes = std::io::Cursor::new(Vec::new());
        other.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
        let full = small.save(&bytes.into_inner(), REAL, "", "m").await;
        assert!(full.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
