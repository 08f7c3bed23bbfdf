//! The token-protected endpoints of `synthscan serve`: corrections through `/v1/feedback`
//! (refused without the token, stored once per distinct image) and a model swapped in by
//! `/v1/admin/reload` while 64 clients keep posting (no request fails; answers name the new
//! model afterwards).

mod common;
mod serve_http;

use image::ImageFormat;
use serve_http::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const TOKEN: &str = "s3cret-token";

fn post_with(
    s: &Server,
    path: &str,
    auth: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Response {
    let bearer = auth.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    request(s.addr, "POST", path, &headers, body).expect("answered")
}

fn stored(dir: &Path, class: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join(class))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e != "json"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn feedback_needs_the_token_and_stores_each_image_once() {
    let dir = common::temp_dir("feedback-store");
    let fb = dir.join("fb");
    let fb_arg = fb.to_string_lossy().to_string();
    let s = Server::start(&["--feedback-token", TOKEN, "--feedback-dir", &fb_arg]);
    assert_eq!(s.get("/v1/model").json()["feedback"], true);
    let a = encode(&picture(40, 30, 1), ImageFormat::Png);
    let b = encode(&picture(40, 30, 2), ImageFormat::Jpeg);
    let (ct, body) = multipart(&[("image", "a.png", &a), ("label", "", b"REAL")]);
    post_with(&s, "/v1/feedback", None, &ct, &body).assert_error(401, "unauthorized");
    post_with(&s, "/v1/feedback", Some("wrong"), &ct, &body).assert_error(401, "unauthorized");
    assert!(stored(&fb, "REAL").is_empty());
    let r = post_with(&s, "/v1/feedback", Some(TOKEN), &ct, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "stored");
    let again = post_with(&s, "/v1/feedback", Some(TOKEN), &ct, &body);
    assert_eq!(again.json()["status"], "duplicate");
    // Raw bytes with the label in the query; a bad label is a 400.
    let r = post_with(
        &s,
        "/v1/feedback?label=fake&note=midjourney",
        Some(TOKEN),
        "image/jpeg",
        &b,
    );
    assert_eq!(r.json()["status"], "stored", "{}", r.text());
    post_with(
        &s,
        "/v1/feedback?label=maybe",
        Some(TOKEN),
        "image/jpeg",
        &b,
    )
    .assert_error(400, "bad_label");
    assert_eq!(stored(&fb, "REAL").len(), 1);
    assert_eq!(stored(&fb, "FAKE").len(), 1);
    let note = std::fs::read_to_string(stored(&fb, "FAKE")[0].with_extension("json")).unwrap();
    assert!(note.contains("midjourney"), "{note}");
    // The folder is what adapt reads.
    let names: Vec<String> = stored(&fb, "REAL")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names[0].ends_with(".png") && names[0].len() == 64 + 4,
        "{names:?}"
    );
    drop(s);
    // Without a token both endpoints are off.
    let s = Server::start(&[]);
    post_with(&s, "/v1/feedback?label=REAL", Some(TOKEN), "image/png", &a)
        .assert_error(404, "not_enabled");
    post_with(&s, "/v1/admin/reload", Some(TOKEN), "application/json", b"")
        .assert_error(404, "not_enabled");
    let _ = std::fs::remove_dir_all(dir);
}

fn link(target: &Path, link: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

#[test]
fn reload_under_load_fails_no_request_and_switches_the_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let dir = common::temp_dir("reload");
    let current = dir.join("current.synthscan");
    link(&root.join("default.synthscan"), &current);
    let model = current.to_string_lossy().to_string();
    let s = Server::start(&[
        "--model",
        &model,
        "--feedback-token",
        TOKEN,
        "--feedback-dir",
        &dir.join("fb").to_string_lossy(),
    ]);
    assert_eq!(s.get("/v1/model").json()["name"], "default");
    let body = Arc::new(encode(&picture(32, 32, 3), ImageFormat::Jpeg));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let new_seen = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (addr, body, stop) = (s.addr, body.clone(), stop.clone());
            let (ok, failed, new_seen) = (ok.clone(), failed.clone(), new_seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ct = [("Content-Type", "image/jpeg")];
                    match request(addr, "POST", "/v1/detect", &ct, &body) {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if r.json()["model"] == "cifake-v1" {
                                new_seen.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    link(&root.join("cifake-v1.synthscan"), &current);
    let before = ok.load(Ordering::Relaxed);
    let r = post_with(
        &s,
        "/v1/admin/reload",
        Some("wrong"),
        "application/json",
        b"",
    );
    r.assert_error(401, "unauthorized");
    let r = post_with(&s, "/v1/admin/reload", Some(TOKEN), "application/json", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["previous"], "default");
    assert_eq!(r.json()["model"], "cifake-v1");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(
        before > 64 && ok > before + 64,
        "requests before {before}, in all {ok}"
    );
    assert!(
        new_seen.load(Ordering::Relaxed) > 0,
        "no answer named the new model"
    );
    assert_eq!(s.get("/v1/model").json()["name"], "cifake-v1");
    let metrics = s.get("/metrics").text();
    assert!(
        metrics.contains("synthscan_model_reloads_total 1"),
        "{metrics}"
    );
    // A broken file is not swapped in: the old model keeps answering.
    std::fs::write(dir.join("broken.synthscan"), b"SYNTHSCAN\0 nope").unwrap();
    link(&dir.join("broken.synthscan"), &current);
    let r = post_with(&s, "/v1/admin/reload", Some(TOKEN), "application/json", b"");
    r.assert_error(422, "reload_failed");
    assert_eq!(s.get("/v1/model").json()["name"], "cifake-v1");
    let _ = std::fs::remove_dir_all(dir);
}
