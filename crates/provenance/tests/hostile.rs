//! Hostile inputs: malformed JUMBF, huge XMP, thousands of text chunks, chunks lying about
//! their length, truncated files. Each gives a record (errors noted), never a panic, and
//! comes back quickly.

use provenance::{Verdict, inspect};
use std::time::{Duration, Instant};

fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(data);
    v.extend_from_slice(&[0; 4]);
    v
}

fn png(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [0, 0, 0, 16, 0, 0, 0, 16, 8, 2, 0, 0, 0];
    v.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    for c in chunks {
        v.extend_from_slice(c);
    }
    v
}

fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0xFF, marker];
    v.extend_from_slice(&((payload.len() + 2).min(0xFFFF) as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An APP11 JUMBF segment announcing a C2PA store whose boxes lie about their sizes.
fn malformed_jumbf(lbox: u32) -> Vec<u8> {
    let mut p = b"JP".to_vec();
    p.extend_from_slice(&[0, 1, 0, 0, 0, 1]); // box instance, sequence number
    p.extend_from_slice(&lbox.to_be_bytes());
    p.extend_from_slice(b"jumb");
    p.extend_from_slice(&30u32.to_be_bytes());
    p.extend_from_slice(b"jumd");
    p.extend_from_slice(&[
        0x63, 0x32, 0x70, 0x61, 0, 0x11, 0, 0x10, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
    ]);
    p.extend_from_slice(&[3]);
    p.extend_from_slice(b"c2pa\0");
    p.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    p.extend_from_slice(b"jumbgarbage");
    let mut j = vec![0xFF, 0xD8];
    j.extend_from_slice(&jpeg_segment(0xEB, &p));
    j.extend_from_slice(&[0xFF, 0xDA, 0, 2, 1, 2, 3, 0xFF, 0xD9]);
    j
}

fn check(name: &str, bytes: &[u8]) -> provenance::Evidence {
    let start = Instant::now();
    let ev = inspect(bytes, None);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(20), "{name} took {took:?}");
    assert!(serde_json::to_string(&ev).is_ok(), "{name} serializes");
    ev
}

#[test]
fn malformed_jumbf_is_recorded_not_panicked_on() {
    for lbox in [0, 1, 7, 8, 9, 0xFFFF_FFFF, 60] {
        let ev = check("jumbf", &malformed_jumbf(lbox));
        assert!(
            matches!(ev.verdict, Verdict::Invalid | Verdict::None),
            "lbox {lbox}: {:?}",
            ev.verdict
        );
        if cfg!(feature = "c2pa") && ev.verdict == Verdict::Invalid {
            assert_eq!(ev.signals[0].strength, provenance::Strength::SignedInvalid);
        }
    }
}

#[test]
fn huge_xmp_is_capped() {
    let mut xmp = b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta xmp:CreatorTool=\"GIMP\">".to_vec();
    xmp.resize(24 << 20, b' ');
    let ev = check("huge xmp", &png(&[png_chunk(b"iTXt", &xmp)]));
    assert!(
        ev.errors
            .iter()
            .any(|e| e.contains("over the cap") || e.contains("cap")),
        "{:?}",
        ev.errors
    );
}

#[test]
fn thousands_of_text_chunks() {
    let chunks: Vec<_> = (0..20_000)
        .map(|i| png_chunk(b"tEXt", format!("k{i}\0v").as_bytes()))
        .collect();
    let ev = check("text chunks", &png(&chunks));
    assert!(
        ev.errors.iter().any(|e| e.contains("text chunks")),
        "{:?}",
        ev.errors
    );
    assert_eq!(ev.verdict, Verdict::None);
}

#[test]
fn chunks_lying_about_their_length() {
    for len in [u32::MAX, 0x8000_0000, 1 << 20, 13] {
        let mut bytes = png(&[png_chunk(b"tEXt", b"parameters\0Steps: 1, Sampler: x")]);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(b"zTXtparameters\0\0xx");
        let ev = check("lying chunk", &bytes);
        assert_eq!(
            ev.verdict,
            Verdict::Ai,
            "the honest chunk before is still read"
        );
        // A length past the end is caught by the walker; a short one leaves a zTXt whose
        // compressed text is garbage.
        let want = if len == 13 { "unreadable" } else { "claims" };
        assert!(
            ev.errors.iter().any(|e| e.contains(want)),
            "{:?}",
            ev.errors
        );
    }
    let lying_jpeg = [&[0xFF, 0xD8][..], &[0xFF, 0xE1, 0xFF, 0xFF], b"Exif\0\0MM"].concat();
    let ev = check("lying jpeg", &lying_jpeg);
    assert!(
        ev.errors.iter().any(|e| e.contains("past the end")),
        "{:?}",
        ev.errors
    );
}

#[test]
fn truncated_and_random_files() {
    let good = png(&[
        png_chunk(b"tEXt", b"parameters\0Steps: 1, Sampler: x"),
        png_chunk(b"IEND", b""),
    ]);
    for cut in 0..good.len() {
        check("truncated png", &good[..cut]);
    }
    let jumbf = malformed_jumbf(200);
    for cut in (0..jumbf.len()).step_by(3) {
        check("truncated jumbf", &jumbf[..cut]);
    }
    // A fixed pseudo-random stream behind each magic number.
    let mut x: u32 = 0x1234_5678;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    for magic in [
        &b"\xFF\xD8\xFF"[..],
        b"\x89PNG\r\n\x1a\n",
        b"RIFF\0\0\0\0WEBP",
        b"II*\0",
        b"MM\0*",
        b"GIF89a",
    ] {
        check("noise", &[magic, &noise].concat());
    }
}
