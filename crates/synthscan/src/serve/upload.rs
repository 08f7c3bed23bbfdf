//! Getting image bytes out of a request: raw bytes with an image content type, or
//! `multipart/form-data` with one (`/v1/detect`) or several (`/v1/detect/batch`) `image` fields.
//! The body size limit is enforced below this (tower-http), so reading here is bounded.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use std::collections::BTreeMap;

/// One uploaded image and the name it is called by in error messages.
#[derive(Debug)]
pub struct Upload {
    pub name: String,
    pub bytes: Bytes,
}

fn content_type(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn unsupported(ct: &str) -> ApiError {
    let got = if ct.is_empty() {
        "no Content-Type".to_string()
    } else {
        format!("Content-Type {ct:?}")
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "{got}: send the image as multipart/form-data (field \"image\") or as raw bytes \
             with an image/* or application/octet-stream Content-Type"
        ),
    )
}

fn body_error(e: impl std::fmt::Display, status: StatusCode) -> ApiError {
    let code = super::error::code_for(status);
    ApiError::new(status, code, format!("cannot read the request body: {e}"))
}

/// Keep a client-supplied file name printable and short.
fn clean_name(name: Option<&str>) -> String {
    let n: String = name
        .unwrap_or("upload")
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    if n.trim().is_empty() {
        "upload".into()
    } else {
        n
    }
}

fn is_raw_image_type(ct: &str) -> bool {
    ct.starts_with("image/") || ct.starts_with("application/octet-stream")
}

/// The images of a request, in order; at most `max_items` (beyond that: 400).
pub async fn uploads(req: Request, max_items: usize) -> Result<Vec<Upload>, ApiError> {
    Ok(uploads_with_fields(req, max_items, &[]).await?.0)
}

/// Longest text field read from a multipart body.
const MAX_FIELD_BYTES: usize = 4096;

/// [`uploads`], with the multipart text fields named in `fields` (at most 4 KiB each).
pub async fn uploads_with_fields(
    req: Request,
    max_items: usize,
    fields: &[&str],
) -> Result<(Vec<Upload>, BTreeMap<String, String>), ApiError> {
    let ct = content_type(&req);
    if ct.starts_with("multipart/form-data") {
        return multipart_uploads(req, max_items, fields).await;
    }
    if !is_raw_image_type(&ct) {
        return Err(unsupported(&ct));
    }
    let bytes = Bytes::from_request(req, &())
        .await
        .map_err(|r| body_error(r.body_text(), r.status()))?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "empty_body",
            "the request body is empty: send an image",
        ));
    }
    let upload = Upload {
        name: "upload".into(),
        bytes,
    };
    Ok((vec![upload], BTreeMap::new()))
}

async fn multipart_uploads(
    req: Request,
    max_items: usize,
    fields: &[&str],
) -> Result<(Vec<Upload>, BTreeMap<String, String>), ApiError> {
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|r| body_error(r.body_text(), r.status()))?;
    let mut out = Vec::new();
    let mut texts = BTreeMap::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(body_error(e.body_text(), e.status())),
        };
        let name = field.name().unwrap_or("").to_string();
        if fields.contains(&name.as_str()) {
            let text = field
                .bytes()
                .await
                .map_err(|e| body_error(e.body_text(), e.status()))?;
            if text.len() > MAX_FIELD_BYTES {
                return Err(ApiError::bad_request(
                    "field_too_long",
                    format!("field {name:?}: at most {MAX_FIELD_BYTES} bytes"),
                ));
            }
            texts.insert(name, String::from_utf8_lossy(&text).into_owned());
            continue;
        }
        if name != "image" {
            continue;
        }
        if out.len() == max_items {
            return Err(ApiError::bad_request(
                "too_many_images",
                format!("at most {max_items} images per request"),
            ));
        }
        let name = clean_name(field.file_name());
        let bytes = field
            .bytes()
            .await
            .map_err(|e| body_error(e.body_text(), e.status()))?;
        out.push(Upload { name, bytes });
    }
    if out.is_empty() {
        return Err(ApiError::bad_request(
            "no_image",
            "the multipart body has no field named \"image\"",
        ));
    }
    Ok((out, texts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name(None), "upload");
        assert_eq!(clean_name(Some("a\nb.png")), "ab.png");
        assert_eq!(clean_name(Some("  ")), "upload");
        assert_eq!(clean_name(Some(&"x".repeat(500))).len(), 100);
    }

    #[test]
    fn raw_types() {
        assert!(is_raw_image_type("image/png"));
        assert!(is_raw_image_type("application/octet-stream"));
        assert!(!is_raw_image_type("text/plain"));
        assert!(!is_raw_image_type(""));
    }
}
