//! A hostile-input corpus, generated here (seeded): truncations at many offsets, bit flips,
//! swapped magic bytes, wrong extensions, empty files, headers claiming huge dimensions in
//! every format, animated GIF, 16-bit PNG, CMYK JPEG, grayscale, alpha. Every file goes to
//! `predict` and to `/v1/detect`: no panic, no dropped connection, each answered with a result
//! or a clear error, and the server's memory stays bounded. Files with malformed metadata (huge
//! XMP, thousands of text chunks, chunks lying about their length, malformed JUMBF, looping
//! EXIF) go to `predict`: each gets its provenance record or an error, never a panic.

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

/// A PNG chunk with its CRC.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let body = [&kind[..], data].concat();
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32(&body).to_be_bytes());
    c
}

/// A valid 40×30 PNG with `extra` bytes (chunks) right after its IHDR.
fn png_with(extra: &[u8]) -> Vec<u8> {
    let png = encode(&picture(40, 30, 5), ImageFormat::Png);
    // Signature (8) + IHDR (4 + 4 + 13 + 4).
    [&png[..33], extra, &png[33..]].concat()
}

/// A valid 40×30 JPEG with `segments` right after its SOI.
fn jpeg_with(segments: &[Vec<u8>]) -> Vec<u8> {
    let jpeg = encode(&picture(40, 30, 5), ImageFormat::Jpeg);
    [&jpeg[..2], &segments.concat(), &jpeg[2..]].concat()
}

fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0xFF, marker];
    v.extend_from_slice(&((payload.len() + 2).min(0xFFFF) as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An XMP packet of about `bytes` bytes: a generator claim buried in deep, repeated markup.
fn huge_xmp(bytes: usize) -> String {
    let mut x = String::from(
        "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?><x:xmpmeta xmlns:x='adobe:ns:meta/'>\
         <rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description \
         xmlns:xmp='http://ns.adobe.com/xap/1.0/' xmp:CreatorTool='Midjourney'>",
    );
    while x.len() < bytes {
        x.push_str("<rdf:Bag><rdf:li>");
        x.push_str(&"x".repeat(200));
    }
    x.push_str("</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end='w'?>");
    x
}

/// Files whose metadata is malformed or enormous, for the provenance reader in front of
/// `predict`: (file name, bytes).
fn malformed_metadata() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    // Huge XMP: 6 MB in one iTXt chunk (over the reader's 4 MB cap), and 80 JPEG APP1 packets.
    let xmp = huge_xmp(6 << 20);
    let itxt = [b"XML:com.adobe.xmp\0\0\0\0\0".as_slice(), xmp.as_bytes()].concat();
    out.push((
        "md-huge-xmp.png".into(),
        png_with(&png_chunk(b"iTXt", &itxt)),
    ));
    let app1 = |k: usize| {
        let body = huge_xmp(60_000 + k);
        [
            b"http://ns.adobe.com/xap/1.0/\0".as_slice(),
            &body.as_bytes()[..60_000],
        ]
        .concat()
    };
    let segments: Vec<Vec<u8>> = (0..80).map(|k| jpeg_segment(0xE1, &app1(k))).collect();
    out.push(("md-huge-xmp.jpg".into(), jpeg_with(&segments)));
    // Thousands of text chunks (the reader keeps at most 1000).
    let many: Vec<u8> = (0..5000)
        .flat_map(|k| png_chunk(b"tEXt", format!("k{k}\0value {k}").as_bytes()))
        .collect();
    out.push(("md-many-text.png".into(), png_with(&many)));
    let many_params: Vec<u8> = (0..3000)
        .flat_map(|k| {
            png_chunk(
                b"tEXt",
                format!("parameters\0cat {k}\nSteps: 20").as_bytes(),
            )
        })
        .collect();
    out.push(("md-many-params.png".into(), png_with(&many_params)));
    // Chunks that lie about their length: past the end of the file, into the next chunk, and
    // a zTXt whose compressed text is garbage.
    let mut past_end = 0x7FFF_FFF0u32.to_be_bytes().to_vec();
    past_end.extend_from_slice(b"tEXtparameters\0Steps: 20");
    out.push((
        "md-lying-past-end.png".into(),
        [&png_with(&[])[..33], &past_end[..]].concat(),
    ));
    let mut short = png_chunk(b"tEXt", b"parameters\0Steps: 20, Sampler: Euler");
    short[..4].copy_from_slice(&5u32.to_be_bytes());
    out.push(("md-lying-short.png".into(), png_with(&short)));
    let mut long = png_chunk(b"iTXt", b"Comment\0\0\0\0\0hello");
    long[..4].copy_from_slice(&400u32.to_be_bytes());
    out.push(("md-lying-long.png".into(), png_with(&long)));
    out.push((
        "md-ztxt-garbage.png".into(),
        png_with(&png_chunk(
            b"zTXt",
            b"parameters\0\0\xff\xfe\xfd garbage, not zlib",
        )),
    ));
    // JUMBF (C2PA) boxes that lie about their sizes, in a JPEG's APP11 and a PNG's caBX.
    for (k, lbox) in [0u32, 1, 7, 0xFFFF_FFFF, 0x7FFF_FFFF]
        .into_iter()
        .enumerate()
    {
        let mut p = b"JP".to_vec();
        p.extend_from_slice(&[0, 1, 0, 0, 0, 1]);
        p.extend_from_slice(&lbox.to_be_bytes());
        p.extend_from_slice(b"jumb");
        p.extend_from_slice(&30u32.to_be_bytes());
        p.extend_from_slice(b"jumd");
        p.extend_from_slice(&[
            0x63, 0x32, 0x70, 0x61, 0, 0x11, 0, 0x10, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71, 3,
        ]);
        p.extend_from_slice(b"c2pa\0");
        p.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        p.extend_from_slice(b"jumbgarbage");
        out.push((
            format!("md-jumbf{k}.jpg"),
            jpeg_with(&[jpeg_segment(0xEB, &p)]),
        ));
        out.push((
            format!("md-cabx{k}.png"),
            png_with(&png_chunk(b"caBX", &p[8..])),
        ));
    }
    // EXIF whose IFD points at itself, and one whose entry counts run past the block.
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
    exif.extend_from_slice(&[0, 1, 0x01, 0x31, 0, 2, 0, 0, 0, 0x40, 0, 0, 0, 0x08]);
    exif.extend_from_slice(&8u32.to_be_bytes());
    out.push((
        "md-exif-loop.jpg".into(),
        jpeg_with(&[jpeg_segment(0xE1, &exif)]),
    ));
    let mut exif = b"Exif\0\0II\x2a\0\x08\0\0\0".to_vec();
    exif.extend_from_slice(&[0xFF, 0xFF, 0x31, 0x01, 2, 0, 0xFF, 0xFF, 0xFF, 0x0F]);
    out.push((
        "md-exif-counts.jpg".into(),
        jpeg_with(&[jpeg_segment(0xE1, &exif)]),
    ));
    out
}

#[test]
fn predict_answers_every_file_with_malformed_metadata() {
    let dir = common::temp_dir("hostile-provenance");
    let files = malformed_metadata();
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let started = std::time::Instant::now();
    let out = common::run(&["predict", "--json", dir.to_str().unwrap()]);
    let took = started.elapsed();
    let stderr = common::stderr(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(matches!(out.status.code(), Some(0 | 1)), "{stderr}");
    let lines: Vec<serde_json::Value> = common::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len(), "one JSON line per file");
    let mut scored = 0;
    for v in &lines {
        let path = v["path"].as_str().unwrap();
        match (v["p_fake"].as_f64(), v["error"].as_str()) {
            (Some(_), None) => {
                scored += 1;
                let verdict = v["provenance"]["verdict"].as_str();
                assert!(verdict.is_some(), "a scored file has its record: {v}");
                // Nothing here is a signed credential or a watermark: the pixels decide.
                let reason = v["reason"].as_str().unwrap_or("");
                assert!(!reason.starts_with("provenance"), "{v}");
            }
            (None, Some(e)) => assert!(e.contains(path), "the error names the file: {v}"),
            _ => panic!("neither a score nor an error: {v}"),
        }
    }
    eprintln!(
        "{} malformed-metadata files: {scored} scored, in {took:?}",
        files.len()
    );
    // Each carrier image is valid apart from its metadata; most decode and are scored.
    assert!(scored >= files.len() / 2, "{scored} scored");
    assert!(took < std::time::Duration::from_secs(120), "{took:?}");
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
