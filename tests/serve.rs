//! `synthscan serve` on an ephemeral port: every endpoint, every error the API promises,
//! slow clients, a full queue, graceful shutdown, and agreement with `predict --json`.
//! The server runs the embedded default model (32×32 input).

mod common;
mod serve_http;

use image::ImageFormat;
use serve_http::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `POST /v1/detect` of a JPEG on its own thread, so that several can be in flight at once.
fn post_jpeg_in_background(
    addr: std::net::SocketAddr,
    body: Vec<u8>,
) -> std::thread::JoinHandle<Result<Response, String>> {
    std::thread::spawn(move || {
        request(
            addr,
            "POST",
            "/v1/detect",
            &[("Content-Type", "image/jpeg")],
            &body,
        )
    })
}

fn jpeg32() -> Vec<u8> {
    encode(&picture(32, 32, 1), ImageFormat::Jpeg)
}

#[test]
fn probes_model_page_and_metrics() {
    let s = Server::start(&[]);
    let r = s.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let r = s.get("/readyz");
    assert_eq!(r.status, 200, "{}", r.text());
    let m = s.get("/v1/model").json();
    // The default is `auto`: CIFAKE-sized images to the cifake model, others to realworld.
    assert_eq!(m["name"], "auto");
    assert_eq!(m["routed"], true);
    assert_eq!(m["members"][0]["name"], "cifake");
    assert_eq!(m["members"][0]["input_size"], 32);
    assert_eq!(m["members"][1]["name"], "realworld");
    let m = m["members"][0].clone();
    assert!(m["threshold"].as_f64().is_some_and(|t| t > 0.0 && t < 1.0));
    assert!(m["metrics"]["test"]["accuracy"].as_f64().is_some(), "{m}");
    assert_eq!(m["class_names"][1], "FAKE");
    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap_or("")
            .starts_with("text/html")
    );
    let html = page.text();
    assert!(html.contains("/v1/detect?explain=gradcam") && html.contains("id=\"verdict\""));
    // No resource from elsewhere: the page works offline.
    assert!(!html.contains("http://") && !html.contains("https://"));

    s.post("/v1/detect", "image/jpeg", &jpeg32());
    let metrics = s.get("/metrics");
    assert!(
        metrics
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/plain")
    );
    let text = metrics.text();
    for want in [
        "synthscan_http_requests_total{route=\"/v1/detect\",status=\"200\"} 1",
        "synthscan_http_requests_total{route=\"/healthz\",status=\"200\"} 1",
        "synthscan_http_request_duration_seconds_bucket{route=\"/v1/detect\",le=\"+Inf\"} 1",
        "synthscan_batch_size_count 1",
        "synthscan_batch_size_sum 1",
        "synthscan_queue_depth 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn detect_agrees_with_predict_and_explains() {
    let dir = common::temp_dir("serve-detect");
    let jpeg = jpeg32();
    let file = dir.join("x.jpg");
    std::fs::write(&file, &jpeg).unwrap();
    let out = common::run(&["predict", "--json", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let pred: serde_json::Value = serde_json::from_str(common::stdout(&out).trim()).unwrap();

    let s = Server::start(&[]);
    let raw = s.post("/v1/detect", "image/jpeg", &jpeg);
    assert_eq!(raw.status, 200, "{}", raw.text());
    let v = raw.json();
    // Every field predict gives, except the path, with the same values.
    for (k, want) in pred.as_object().unwrap() {
        if k == "path" {
            continue;
        }
        match want.as_f64() {
            Some(x) => assert!((v[k].as_f64().unwrap() - x).abs() < 1e-5, "{k}: {v}"),
            None => assert_eq!(&v[k], want, "{k}"),
        }
    }
    for k in ["threshold", "ms"] {
        assert!(v[k].as_f64().is_some(), "{k}: {v}");
    }
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(32), Some(32))
    );
    assert_eq!(v["model"], "cifake");
    assert!(v.get("explain").is_none());

    let (ct, body) = multipart(&[("image", "x.jpg", &jpeg)]);
    let m = s.post("/v1/detect", &ct, &body).json();
    assert_eq!(m["p_fake"], v["p_fake"]);

    let e = s
        .post("/v1/detect?explain=gradcam", "image/jpeg", &jpeg)
        .json();
    assert_eq!(e["p_fake"], v["p_fake"]);
    let ex = &e["explain"];
    assert_eq!(ex["method"], "gradcam");
    assert!(ex["map_width"].as_u64().unwrap() >= 2 && ex["map_height"].as_u64().unwrap() >= 2);
    let png = base64_decode(ex["overlay_png"].as_str().unwrap());
    let overlay = image::load_from_memory_with_format(&png, ImageFormat::Png).unwrap();
    assert_eq!(
        overlay.width() as u64,
        ex["overlay_width"].as_u64().unwrap()
    );
    assert!(
        overlay.width() >= 256,
        "a 32-px upload is enlarged for viewing"
    );

    s.post("/v1/detect?explain=saliency", "image/jpeg", &jpeg)
        .assert_error(400, "bad_explain");
}

#[test]
fn batch_answers_each_item_in_order() {
    let s = Server::start(&["--max-batch-items", "4"]);
    let png = encode(&picture(48, 20, 3), ImageFormat::Png);
    let jpeg = jpeg32();
    let (ct, body) = multipart(&[
        ("image", "a.jpg", &jpeg),
        ("image", "b.txt", b"not an image at all"),
        ("image", "c.png", &png),
    ]);
    let r = s.post("/v1/detect/batch", &ct, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0]["p_fake"].as_f64().is_some());
    assert_eq!(results[1]["code"], "undecodable_image");
    assert!(results[1]["error"].as_str().unwrap().contains("b.txt"));
    assert_eq!(
        (results[2]["width"].as_u64(), results[2]["height"].as_u64()),
        (Some(48), Some(20))
    );
    let single = s.post("/v1/detect", "image/jpeg", &jpeg).json();
    assert_eq!(results[0]["p_fake"], single["p_fake"]);

    let five: Vec<(&str, &str, &[u8])> = (0..5).map(|_| ("image", "a.jpg", &jpeg[..])).collect();
    let (ct, body) = multipart(&five);
    s.post("/v1/detect/batch", &ct, &body)
        .assert_error(400, "too_many_images");
    // A raw image is a batch of one.
    let one = s.post("/v1/detect/batch", "image/jpeg", &jpeg).json();
    assert_eq!(one["results"].as_array().map(Vec::len), Some(1));
}

#[test]
fn client_errors_are_json_with_the_right_status() {
    let s = Server::start(&["--max-body-mb", "1"]);
    let jpeg = jpeg32();
    s.post("/v1/detect", "image/png", b"")
        .assert_error(400, "empty_body");
    s.post("/v1/detect", "text/plain", b"hello")
        .assert_error(415, "unsupported_media_type");
    let r = request(s.addr, "POST", "/v1/detect", &[], &jpeg).unwrap();
    r.assert_error(415, "unsupported_media_type");
    s.post("/v1/detect", "image/png", b"these bytes are not an image")
        .assert_error(422, "undecodable_image");
    s.post("/v1/detect", "image/jpeg", &jpeg[..jpeg.len() / 2])
        .assert_error(422, "undecodable_image");
    let big = vec![0xAB; 1536 * 1024];
    s.post("/v1/detect", "image/jpeg", &big)
        .assert_error(413, "body_too_large");
    let (ct, body) = multipart(&[("image", "big.jpg", &big)]);
    s.post("/v1/detect", &ct, &body)
        .assert_error(413, "body_too_large");
    let (ct, body) = multipart(&[("picture", "x.jpg", &jpeg)]);
    s.post("/v1/detect", &ct, &body)
        .assert_error(400, "no_image");
    s.post(
        "/v1/detect",
        "multipart/form-data; boundary=zzz",
        b"garbage",
    )
    .assert_error(400, "bad_request");
    s.get("/no/such/page").assert_error(404, "not_found");
    s.get("/v1/detect").assert_error(405, "method_not_allowed");

    // A header claiming 100,000 x 100,000 pixels (30 GB decoded) is refused from the header.
    let rss_before = s.mem_kib("VmRSS:");
    let bomb = png_header_only(100_000, 100_000);
    let r = s.post("/v1/detect", "image/png", &bomb);
    r.assert_error(422, "image_too_large");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("100000x100000"),
        "{}",
        r.text()
    );
    // Within the 12,000-px side limit but over --max-pixels.
    s.post("/v1/detect", "image/png", &png_header_only(9_000, 9_000))
        .assert_error(422, "image_too_large");
    let grown_mib = s.mem_kib("VmRSS:").saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 64, "server grew by {grown_mib} MiB");
    // Still serving.
    assert_eq!(s.post("/v1/detect", "image/jpeg", &jpeg).status, 200);
}

#[test]
fn slow_clients_time_out() {
    let s = Server::start(&["--timeout-ms", "400", "--header-timeout-ms", "400"]);
    // Headers complete, body promised but never sent: 408 in the usual shape.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(
        b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    parse_response(&raw)
        .unwrap()
        .assert_error(408, "request_timeout");

    // Headers never finished (slowloris): the connection is closed, not held.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 512];
    let closed = loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break true,
            Ok(_) => continue,
        }
    };
    assert!(closed && t0.elapsed() < Duration::from_secs(15));
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn full_queue_answers_503_with_retry_after() {
    // One worker, one image per pass, a 1 s pass and room for one waiting image: of eight
    // simultaneous requests two are taken at once and one more per second.
    let s = Server::start(&[
        "--workers",
        "1",
        "--max-batch",
        "1",
        "--queue",
        "1",
        "--simulate-slow-ms",
        "1000",
    ]);
    let jpeg = jpeg32();
    let addr = s.addr;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let body = jpeg.clone();
            post_jpeg_in_background(addr, body)
        })
        .collect();
    let responses: Vec<Response> = handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("every request answered"))
        .collect();
    let ok = responses.iter().filter(|r| r.status == 200).count();
    let busy: Vec<&Response> = responses.iter().filter(|r| r.status == 503).collect();
    assert_eq!(ok + busy.len(), 8, "{responses:?}");
    assert!(ok >= 1 && busy.len() >= 3, "{ok} ok, {} busy", busy.len());
    for r in busy {
        r.assert_error(503, "overloaded");
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    let text = s.get("/metrics").text();
    assert!(text.contains("status=\"503\"}"), "{text}");
}

#[test]
fn decode_budget_refuses_what_it_cannot_hold_and_admits_the_rest() {
    // A 1 MiB decode budget. A 200×200 JPEG is weighed at 10 bytes a pixel (its RGB output, as
    // much again for the decoder, the RGB copy, a byte for resizing): 400,000 bytes, so two
    // decode at once, not three.
    let s = Server::start(&["--max-decode-mb", "1", "--budget-wait-ms", "20000"]);
    let m = s.get("/v1/model").json();
    assert_eq!(m["serving"]["max_decode_bytes"], 1024 * 1024, "{m}");
    // 1000×1000 is 10 MB: more than the whole budget, refused at once with the reason.
    let big = encode(&picture(1000, 1000, 2), ImageFormat::Jpeg);
    let r = s.post("/v1/detect", "image/jpeg", &big);
    r.assert_error(422, "image_too_large");
    let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        msg.contains("1000×1000")
            && msg.contains("decode budget")
            && msg.contains("--max-decode-mb"),
        "{msg}"
    );
    // Sixteen at once within the budget: they take turns, and every one is answered.
    let small = encode(&picture(200, 200, 3), ImageFormat::Jpeg);
    let handles: Vec<_> = (0..16)
        .map(|_| post_jpeg_in_background(s.addr, small.clone()))
        .collect();
    for h in handles {
        let r = h.join().unwrap().expect("answered");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["width"], 200);
    }
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn upload_budget_answers_503_when_no_room_comes() {
    // Room for one body at a time, held while a slow model answers it; others wait 100 ms for
    // room and then get 503 with Retry-After.
    let s = Server::start(&[
        "--max-body-mb",
        "0.05",
        "--max-upload-mb",
        "0.05",
        "--budget-wait-ms",
        "100",
        "--simulate-slow-ms",
        "1500",
    ]);
    // 30 KB each (a JPEG, then padding its decoder ignores): two do not fit in 51 KiB.
    let mut jpeg = jpeg32();
    jpeg.resize(30_000, 0);
    let first = post_jpeg_in_background(s.addr, jpeg.clone());
    std::thread::sleep(Duration::from_millis(300));
    let r = s.post("/v1/detect", "image/jpeg", &jpeg);
    r.assert_error(503, "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("--max-upload-mb")
    );
    assert_eq!(first.join().unwrap().expect("answered").status, 200);
    // Once it is answered, its room is free again.
    assert_eq!(s.post("/v1/detect", "image/jpeg", &jpeg).status, 200);
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let mut s = Server::start(&["--simulate-slow-ms", "1200"]);
    let addr = s.addr;
    let body = jpeg32();
    let inflight = post_jpeg_in_background(addr, body);
    // Wait until the detection request is being handled (the gauge counts this poll as well).
    let t0 = Instant::now();
    while !s
        .get("/metrics")
        .text()
        .contains("synthscan_requests_in_flight 2")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "request never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let r = inflight
        .join()
        .unwrap()
        .expect("in-flight request answered");
    assert_eq!(r.status, 200, "{}", r.text());
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(addr).is_err(),
        "new connections are refused"
    );
}

/// An ensemble file served: `/v1/model` lists its members, `/v1/detect` answers what
/// `predict --model` of the same file answers (the members' mean against their mean threshold),
/// and Grad-CAM is the members' mean map, taken at each member's block.
#[test]
fn an_ensemble_file_is_served_like_predict_scores_it() {
    let dir = common::temp_dir("serve-ensemble");
    let root = env!("CARGO_MANIFEST_DIR");
    let (default, wide) = (
        format!("{root}/models/default.synthscan"),
        format!("{root}/models/cifake-wide.synthscan"),
    );
    let ens = dir.join("pair.synthscan");
    let out = common::run(&[
        "ensemble",
        "--model",
        &default,
        "--model",
        &wide,
        "--out",
        ens.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let file = dir.join("x.jpg");
    std::fs::write(&file, jpeg32()).unwrap();
    let out = common::run(&[
        "predict",
        "--json",
        "--model",
        ens.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let pred: serde_json::Value = serde_json::from_str(common::stdout(&out).trim()).unwrap();

    let s = Server::start(&["--model", ens.to_str().unwrap()]);
    let m = s.get("/v1/model").json();
    assert_eq!(m["name"], "default + cifake-wide");
    assert_eq!(m["members"].as_array().map(Vec::len), Some(2), "{m}");
    let mean = (m["members"][0]["threshold"].as_f64().unwrap()
        + m["members"][1]["threshold"].as_f64().unwrap())
        / 2.0;
    assert!(
        (m["threshold"].as_f64().unwrap() - mean).abs() < 1e-6,
        "{m}"
    );
    let v = s
        .post("/v1/detect?explain=gradcam", "image/jpeg", &jpeg32())
        .json();
    assert!((v["p_fake"].as_f64().unwrap() - pred["p_fake"].as_f64().unwrap()).abs() < 1e-5);
    for k in ["label", "model"] {
        assert_eq!(v[k], pred[k], "{k}: {v}");
    }
    let t = v["threshold"].as_f64().unwrap();
    assert!((t - pred["threshold"].as_f64().unwrap()).abs() < 1e-6 && (t - mean).abs() < 1e-6);
    let layer = v["explain"]["layer"].as_str().unwrap_or_default();
    assert!(
        layer.starts_with("default:") && layer.contains(" + cifake-wide:"),
        "{v}"
    );
    let png = base64_decode(v["explain"]["overlay_png"].as_str().unwrap());
    assert!(image::load_from_memory_with_format(&png, ImageFormat::Png).is_ok());
}
