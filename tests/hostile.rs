//! A hostile-input corpus, generated here (seeded): truncations at many offsets, bit flips,
//! swapped magic bytes, wrong extensions, empty files, headers claiming huge dimensions in
//! every format, animated GIF, 16-bit PNG, CMYK JPEG, grayscale, alpha. Every file goes to
//! `predict` and to `/v1/detect`: no panic, no dropped connection, each answered with a result
//! or a clear error, and the server's memory stays bounded.

mod common;
mod serve_http;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{DynamicImage, Frame, ImageFormat, RgbaImage};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serve_http::*;
use std::path::Path;

/// A 16×16 CMYK JPEG (Adobe APP14), written by Pillow 11:
/// `Image.new("CMYK", (16, 16))` with a gradient, `save(..., "JPEG", quality=80)`.
const CMYK_JPEG_B64: &str = "/9j/7gAOQWRvYmUAZAAAAAAA/9sAQwAGBAUGBQQGBgUGBwcGCAoQCgoJCQoUDg8MEBcUGBgXFBYWGh0lHxobIxwWFiAsICMmJykqKRkfLTAtKDAlKCko/8AAFAgAEAAQBEMRAE0RAFkRAEsRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/aAA4EQwBNAFkASwAAPwD1/wCJP/LX8a9f/wCE6/6a/rXr/iTXfv8Az19H18qfEn/lr+NH/Cdf9Nf1rynxJrv3/nor6r+JP/LX8a+VP+E6/wCmv60eJNd+/wDPRXyp8Sf+Wv40f8J1/wBNf1ryrxJrv3/nor//2Q==";

fn animated_gif() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut out);
        enc.set_repeat(Repeat::Infinite).unwrap();
        let frames = (0..3).map(|k| {
            Frame::new(RgbaImage::from_fn(24, 24, |x, y| {
                image::Rgba([(x * 10) as u8, (y * 10) as u8, k * 80, 255])
            }))
        });
        enc.encode_frames(frames).unwrap();
    }
    out
}

/// Valid images of every kind the decoder meets, with their natural extensions.
fn valid_images() -> Vec<(&'static str, Vec<u8>)> {
    let rgb = picture(40, 30, 5);
    let dynamic = DynamicImage::ImageRgb8(rgb.clone());
    let enc = |img: &DynamicImage, f| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, f).unwrap();
        out.into_inner()
    };
    vec![
        ("jpg", enc(&dynamic, ImageFormat::Jpeg)),
        ("png", enc(&dynamic, ImageFormat::Png)),
        (
            "png",
            enc(
                &DynamicImage::ImageRgba8(dynamic.to_rgba8()),
                ImageFormat::Png,
            ),
        ),
        (
            "png",
            enc(
                &DynamicImage::ImageRgb16(dynamic.to_rgb16()),
                ImageFormat::Png,
            ),
        ),
        (
            "png",
            enc(
                &DynamicImage::ImageLuma8(dynamic.to_luma8()),
                ImageFormat::Png,
            ),
        ),
        (
            "jpg",
            enc(
                &DynamicImage::ImageLuma8(dynamic.to_luma8()),
                ImageFormat::Jpeg,
            ),
        ),
        ("bmp", enc(&dynamic, ImageFormat::Bmp)),
        ("gif", enc(&dynamic, ImageFormat::Gif)),
        ("gif", animated_gif()),
        (
            "webp",
            enc(
                &DynamicImage::ImageRgba8(dynamic.to_rgba8()),
                ImageFormat::WebP,
            ),
        ),
        ("jpg", base64_decode(CMYK_JPEG_B64)),
    ]
}

/// Headers that claim enormous images with (almost) nothing behind them, one per format.
fn huge_headers() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![
        ("png", png_header_only(100_000, 100_000)),
        ("png", png_header_only(1, 2_000_000_000)),
        ("png", png_header_only(u32::MAX, u32::MAX)),
    ];
    // JPEG: SOI, SOF0 claiming 65535x65535, 3 components, then EOI.
    let mut jpeg = vec![
        0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x03,
    ];
    jpeg.extend_from_slice(&[1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 0xFF, 0xD9]);
    out.push(("jpg", jpeg));
    // GIF: logical screen and one image descriptor of 65535x65535, no data.
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00]);
    gif.extend_from_slice(&[
        0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x02, 0x00, 0x3B,
    ]);
    out.push(("gif", gif));
    // WebP VP8X: a 16384x16384 canvas (24-bit minus-one fields).
    let mut vp8x = b"VP8X".to_vec();
    vp8x.extend_from_slice(&10u32.to_le_bytes());
    vp8x.extend_from_slice(&[0, 0, 0, 0]);
    vp8x.extend_from_slice(&[0xFF, 0x3F, 0x00, 0xFF, 0x3F, 0x00]);
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&((4 + vp8x.len()) as u32).to_le_bytes());
    webp.extend_from_slice(b"WEBP");
    webp.extend_from_slice(&vp8x);
    out.push(("webp", webp));
    // BMP: 100000x100000, 24 bits.
    for (w, h) in [
        (100_000i32, 100_000i32),
        (30_000, -30_000),
        (11_000, 11_000),
    ] {
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&54u32.to_le_bytes());
        bmp.extend_from_slice(&[0; 4]);
        bmp.extend_from_slice(&54u32.to_le_bytes());
        bmp.extend_from_slice(&40u32.to_le_bytes());
        bmp.extend_from_slice(&w.to_le_bytes());
        bmp.extend_from_slice(&h.to_le_bytes());
        bmp.extend_from_slice(&1u16.to_le_bytes());
        bmp.extend_from_slice(&24u16.to_le_bytes());
        bmp.extend_from_slice(&[0; 24]);
        out.push(("bmp", bmp));
    }
    out
}

/// The whole corpus: (file name, bytes).
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(13);
    let valid = valid_images();
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, (ext, bytes)) in valid.iter().enumerate() {
        out.push((format!("valid{i}.{ext}"), bytes.clone()));
        // Truncations at many offsets, from inside the magic to one byte short.
        for (k, frac) in [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
            .iter()
            .enumerate()
        {
            let cut = ((bytes.len() as f64 * frac) as usize)
                .max(1)
                .min(bytes.len() - 1);
            out.push((format!("trunc{i}-{k}.{ext}"), bytes[..cut].to_vec()));
        }
        out.push((
            format!("trunc{i}-last.{ext}"),
            bytes[..bytes.len() - 1].to_vec(),
        ));
        // Bit flips: one, a few, many.
        for k in 0..8 {
            let mut b = bytes.clone();
            for _ in 0..[1, 1, 2, 4, 8, 16, 64, 256][k] {
                let at = rng.random_range(0..b.len());
                b[at] ^= 1 << rng.random_range(0..8u32);
            }
            out.push((format!("flip{i}-{k}.{ext}"), b));
        }
        // Swapped magic: this file's body behind another format's first bytes.
        let (other_ext, other) = &valid[(i + 3) % valid.len()];
        let mut b = other[..8.min(other.len())].to_vec();
        b.extend_from_slice(&bytes[8.min(bytes.len())..]);
        out.push((format!("magic{i}.{other_ext}"), b));
        // Wrong extension on a valid file.
        let wrong = ["png", "gif", "webp", "bmp", "jpg"][i % 5];
        out.push((format!("ext{i}.{wrong}"), bytes.clone()));
    }
    for ext in ["jpg", "png", "gif", "webp", "bmp"] {
        out.push((format!("empty.{ext}"), Vec::new()));
        out.push((format!("text.{ext}"), b"<html>not an image</html>".to_vec()));
    }
    for (i, (ext, bytes)) in huge_headers().into_iter().enumerate() {
        out.push((format!("huge{i}.{ext}"), bytes));
    }
    out
}

#[test]
fn corpus_is_large_and_varied() {
    let c = corpus();
    assert!(c.len() >= 200, "{} files", c.len());
    let names: std::collections::HashSet<_> = c.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names.len(), c.len(), "file names are unique");
    // The valid CMYK JPEG, animated GIF and 16-bit PNG really decode.
    for (name, bytes) in &c[..] {
        if name.starts_with("valid") {
            synthscan::data::decode::decode_rgb(bytes, Path::new(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn predict_answers_every_hostile_file() {
    let dir = common::temp_dir("hostile-predict");
    let files = corpus();
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let out = common::run(&["predict", "--json", dir.to_str().unwrap()]);
    let stderr = common::stderr(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "some files fail, none crash: {stderr}"
    );
    let lines: Vec<serde_json::Value> = common::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len());
    let mut ok = 0;
    for v in &lines {
        let path = v["path"].as_str().unwrap();
        match (v["p_fake"].as_f64(), v["error"].as_str()) {
            (Some(p), None) => {
                assert!((0.0..=1.0).contains(&p), "{v}");
                ok += 1;
            }
            (None, Some(e)) => assert!(e.contains(path), "the error names the file: {v}"),
            _ => panic!("neither a score nor an error: {v}"),
        }
    }
    // Every valid file and every wrong-extension copy is scored.
    assert!(ok >= 2 * valid_images().len(), "{ok} scored");
}

#[test]
fn server_answers_every_hostile_file() {
    let s = Server::start(&["--max-body-mb", "2"]);
    let files = corpus();
    let (mut ok, mut refused) = (0, 0);
    for (i, (name, bytes)) in files.iter().enumerate() {
        // Alternate raw bodies and multipart uploads.
        let r = if i % 2 == 0 {
            request(
                s.addr,
                "POST",
                "/v1/detect",
                &[("Content-Type", "application/octet-stream")],
                bytes,
            )
        } else {
            let (ct, body) = multipart(&[("image", name, bytes)]);
            request(
                s.addr,
                "POST",
                "/v1/detect",
                &[("Content-Type", &ct)],
                &body,
            )
        }
        .unwrap_or_else(|e| panic!("{name}: connection dropped: {e}"));
        match r.status {
            200 => {
                let p = r.json()["p_fake"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&p));
                ok += 1;
            }
            400 | 422 => {
                let v = r.json();
                assert!(
                    v["error"].as_str().is_some() && v["code"].as_str().is_some(),
                    "{name}: {v}"
                );
                refused += 1;
            }
            other => panic!("{name}: status {other}: {}", r.text()),
        }
    }
    assert_eq!(ok + refused, files.len());
    eprintln!(
        "{} files: {ok} scored, {refused} refused with a JSON error",
        files.len()
    );
    assert!(ok >= 2 * valid_images().len(), "{ok} scored");
    // Bounded memory: the peak stays far below what any huge header claimed.
    let peak_mib = s.mem_kib("VmHWM:") / 1024;
    assert!(peak_mib < 1024, "server peak RSS {peak_mib} MiB");
    assert_eq!(s.get("/healthz").status, 200, "still alive");
}
