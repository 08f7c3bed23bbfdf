//! Every file of the shared provenance fixtures gives the verdict its `manifest.csv` expects
//! (`UNKNOWN` there is `NONE` here). The archive is read in place, never copied into the
//! repository; without it the tests say so and pass.

use provenance::{Verdict, inspect, watermark};
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

fn archive() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/provenance/provenance-fixtures.tar.gz")
}

/// The archive's files by path, or `None` (with the reason printed) when it is absent.
fn files() -> Option<HashMap<String, Vec<u8>>> {
    let path = archive();
    let Ok(file) = std::fs::File::open(&path) else {
        eprintln!("SKIPPED: fixture archive not found at {}", path.display());
        return None;
    };
    let mut out = HashMap::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().expect("archive readable") {
        let mut entry = entry.expect("entry readable");
        let name = entry
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry data");
        out.insert(name, data);
    }
    Some(out)
}

/// Split one CSV line with double-quoted fields.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("one field").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// (file, category, expected verdict, how_verified) rows of manifest.csv.
fn manifest(files: &HashMap<String, Vec<u8>>) -> Vec<(String, String, String, String)> {
    let csv = String::from_utf8_lossy(&files["manifest.csv"]).into_owned();
    let mut lines = csv.lines();
    let header = csv_fields(lines.next().expect("header"));
    let col = |name: &str| header.iter().position(|h| h == name).expect("column");
    let (file, cat, verdict, how) = (
        col("file"),
        col("category"),
        col("expected_verdict"),
        col("how_verified"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f = csv_fields(l);
            (
                f[file].clone(),
                f[cat].clone(),
                f[verdict].clone(),
                f[how].clone(),
            )
        })
        .collect()
}

fn expected(v: &str) -> &str {
    if v == "UNKNOWN" { "NONE" } else { v }
}

/// Files whose manifest label contradicts the issue's own definition of EDITED ("an
/// editor in Software, without an AI source type"): each names Photoshop, GIMP or
/// Fireworks as the writing software, and was labelled UNKNOWN for the role it plays in its
/// source test suite (a "no manifest" or "long description" negative). The crate applies
/// the definition and says EDITED; the test pins that, so any other change shows.
const LABEL_CONFLICTS: &[(&str, &str)] = &[
    (
        "files/E/1a6e4a1b7fab6040.jpg",
        "EXIF Software GIMP 2.4.5, XMP CreatorTool Adobe Photoshop 7.0",
    ),
    (
        "files/E/8e8c4a3233e1293f.jpg",
        "EXIF Software Adobe Photoshop CC, XMP CreatorTool Photoshop CS5.1",
    ),
    (
        "files/E/99366772dd3e323d.jpg",
        "XMP CreatorTool Adobe Fireworks CS5, history Photoshop CS5",
    ),
    (
        "files/E/9ac395ca04fc9d34.jpg",
        "EXIF Software Adobe Photoshop 24.1",
    ),
    (
        "files/E/e6ad9f51be5bb83f.jpg",
        "EXIF Software Adobe Photoshop 21.1",
    ),
];

#[test]
fn every_fixture_gives_its_expected_verdict() {
    if !cfg!(feature = "c2pa") {
        eprintln!("SKIPPED: built without the `c2pa` feature, so credentials are not read");
        return;
    }
    let Some(files) = files() else { return };
    let rows = manifest(&files);
    assert_eq!(rows.len(), 75, "manifest rows");
    let mut failures = Vec::new();
    let mut per_verdict: HashMap<String, (usize, usize)> = HashMap::new();
    for (file, cat, want, _) in &rows {
        let bytes = &files[file.as_str()];
        let name = file.rsplit('/').next();
        let ev = inspect(bytes, name);
        let got = ev.verdict.as_str();
        if let Some((_, why)) = LABEL_CONFLICTS.iter().find(|c| c.0 == file) {
            println!("label conflict {file}: manifest {want}, crate {got} ({why})");
            assert_eq!(ev.verdict, Verdict::Edited, "{file}");
            continue;
        }
        let ok = got == expected(want);
        let tally = per_verdict.entry(want.clone()).or_default();
        tally.1 += 1;
        if ok {
            tally.0 += 1;
        } else {
            failures.push(format!(
                "{cat} {file}: expected {want}, got {got} ({})",
                ev.reason
            ));
        }
        assert!(serde_json::to_string(&ev).is_ok());
    }
    let mut tallies: Vec<_> = per_verdict.into_iter().collect();
    tallies.sort();
    for (v, (ok, n)) in &tallies {
        println!("{v}: {ok}/{n}");
    }
    let matched: usize = tallies.iter().map(|(_, (ok, _))| ok).sum();
    println!(
        "{matched} of {} match the manifest; {} label conflicts",
        rows.len(),
        LABEL_CONFLICTS.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} wrong:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    assert_eq!(matched + LABEL_CONFLICTS.len(), rows.len());
}

/// Parse `SDV1=0.471 SDV2=0.406 SDXL=1.0` from the manifest's `how_verified`.
fn python_agreements(how: &str) -> Option<[f64; 3]> {
    let get = |k: &str| -> Option<f64> {
        let at = how.find(&format!("{k}="))? + k.len() + 1;
        let num: String = how[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        num.parse().ok()
    };
    Some([get("SDV1")?, get("SDV2")?, get("SDXL")?])
}

#[test]
fn watermark_agreements_match_the_python_decoder() {
    let Some(files) = files() else { return };
    let mut checked = 0;
    for (file, _, _, how) in manifest(&files) {
        let Some(want) = python_agreements(&how) else {
            continue;
        };
        let img = image::load_from_memory(&files[file.as_str()])
            .expect("decodes")
            .to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let got = watermark::agreements(img.as_raw(), w, h).expect("big enough");
        for (k, (name, _, agree)) in got.iter().enumerate() {
            // Python rounds to 3 places; allow one bit of the shortest payload for float ties.
            assert!(
                (agree - want[k]).abs() <= 1.0 / 32.0 + 1e-3,
                "{file} {name}: {agree} vs {}",
                want[k]
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 7, "watermarked fixtures with Python agreements");
}

#[test]
fn camera_photos_carry_no_watermark() {
    let Some(files) = files() else { return };
    let mut worst: f64 = 0.0;
    for (file, cat, _, _) in manifest(&files) {
        if cat != "D" {
            continue;
        }
        let Ok(img) = image::load_from_memory(&files[file.as_str()]) else {
            continue;
        };
        let img = img.to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        if let Some((_, _, agree)) = watermark::best_match(img.as_raw(), w, h) {
            worst = worst.max(agree);
        }
    }
    println!("highest bit agreement on unwatermarked camera photos: {worst:.3}");
    assert!(worst < watermark::THRESHOLD - 0.1, "{worst}");
    let ev = inspect(&files["files/D/17307b1207eb6487.jpg"], None);
    assert_eq!(ev.verdict, Verdict::Camera);
}
