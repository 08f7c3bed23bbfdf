//! # Provenance evidence: what an image file says about how it was made
//!
//! Bytes in, [`Evidence`] out. Three kinds of [`Signal`] are read from the original bytes
//! (before any decoding for a network), and combined into one [`Verdict`]:
//!
//! * **C2PA content credentials** (`kind: "c2pa"`), read and validated with the C2PA
//!   reference SDK (`c2pa` crate, behind the default-on `c2pa` feature; native-Rust crypto,
//!   no network: remote manifests and OCSP are never fetched). No trust list is bundled, so
//!   a signature that verifies is reported as `signed-untrusted` ("signed, signer not on a
//!   trust list"); an expired certificate is reported as such. (The C2PA conformance trust
//!   list is published online only, and nothing here may fetch it; a caller that has a
//!   trust list can extend this crate to pass it to the SDK's `trust` settings.)
//! * **Generator metadata** (`kind: "metadata"`): PNG `tEXt`/`zTXt`/`iTXt` chunks
//!   (AUTOMATIC1111/Forge `parameters`, ComfyUI `prompt`/`workflow`, InvokeAI, NovelAI,
//!   Fooocus, …), A1111 stealth PNG info, EXIF (`Software`, `UserComment`,
//!   `ImageDescription`, `Make`/`Model`/exposure) and XMP (`DigitalSourceType`,
//!   `CreatorTool`, history `softwareAgent`, the IPTC AI properties). Known strings are kept
//!   in one table, `generators.json`. **Metadata is a claim, not proof**: anyone can write
//!   or strip it, and every such signal is marked `unsigned-claim`.
//! * **Invisible watermarks** (`kind: "watermark"`): the `invisible-watermark` `dwtDct`
//!   marks of the Stable Diffusion 1.x/2.x/SDXL (and FLUX) reference code, with their bit
//!   agreement (`statistical`).
//!
//! ## The decision rule
//! Each signal says one verdict; the record's verdict is the highest-ranked one said, in
//! this order:
//!
//! 1. **`AI`** — a C2PA manifest that is not tampered whose digital source type is
//!    `trainedAlgorithmicMedia`, `compositeWithTrainedAlgorithmicMedia` or
//!    `algorithmicMedia` (in an action of any manifest of the store), an AI vendor's claim
//!    or generator parameters/workflow in metadata, an XMP AI source type, or a decoded
//!    generator watermark (bit agreement ≥ [`watermark::THRESHOLD`]).
//! 2. **`INVALID`** — a C2PA manifest that fails validation: tampered hashes, a signature
//!    that does not verify, an unparseable or pre-release store, a failing CAWG identity
//!    assertion, or an expired signing certificate (an AI source type in a manifest whose
//!    claim itself verifies still gives `AI`: identity and certificate problems do not
//!    make its statement about the content less likely).
//! 3. **`EDITED`** — credentials record edit actions, or metadata names an editor
//!    (GIMP, Photoshop…) or an editing source type, with no AI sign.
//! 4. **`CAMERA`** — a capture credential (`digitalCapture`), or camera EXIF (Make/Model
//!    with exposure data) with no AI or edit sign: unsigned EXIF is weak evidence.
//! 5. **`NONE`** — nothing usable. Absence of evidence means nothing: most platforms strip
//!    metadata.
//!
//! Signals are listed strongest first. Problems reading the file (malformed boxes,
//! truncated chunks, caps hit) go to [`Evidence::errors`]; [`inspect`] never panics, reads
//! at most the caps in [`limits`], and takes time linear in the input.

mod c2pa_info;
mod c2pa_record;
mod container;
mod evidence;
mod exif_read;
mod generators;
pub mod limits;
mod metadata;
mod pixels;
pub mod watermark;
mod xmp;

pub use c2pa_record::{C2paAction, C2paInfo, Validation};
pub use evidence::{Evidence, Signal, SignalKind, Strength, Verdict};

use container::Format;
use std::path::Path;

/// Why a file could not be inspected at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`limits::MAX_FILE_BYTES`].
    #[error("{path} is {size} bytes, over the {max} byte limit")]
    TooLarge { path: String, size: u64, max: u64 },
}

/// The note attached to every record that has metadata signals.
pub const METADATA_NOTE: &str = "metadata is a claim, not proof: anyone can write or strip it; unsigned fields are weak evidence";

/// Read a file and inspect it.
pub fn inspect_path(path: impl AsRef<Path>) -> Result<Evidence, Error> {
    use std::io::Read;
    let path = path.as_ref();
    let shown = path.display().to_string();
    let io = |source| Error::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > limits::MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: shown,
            size,
            max: limits::MAX_FILE_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limits::MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let name = path.file_name().and_then(|n| n.to_str());
    Ok(inspect(&bytes, name))
}

/// Where the pixel readers (invisible watermark, stealth PNG info) get their pixels from.
#[derive(Clone, Copy, Debug)]
pub enum Pixels<'a> {
    /// Decoded from the bytes here, under [`limits`] (what [`inspect`] does).
    Decode,
    /// The caller's own decode of these same bytes: whole, as the `image` crate decodes them,
    /// before any EXIF orientation or colour conversion. Read as if decoded here, so a caller
    /// that decodes the file anyway does not decode it twice. Used only for the formats the
    /// readers take (PNG, JPEG, WebP).
    Decoded(&'a image::DynamicImage),
    /// Not read; the reason is noted in the record.
    Skip(&'a str),
}

/// Inspect the bytes of one image. `file_name_hint` (e.g. `photo.jpg`) only helps when the
/// format cannot be told from the bytes. Never panics.
pub fn inspect(bytes: &[u8], file_name_hint: Option<&str>) -> Evidence {
    inspect_with(bytes, file_name_hint, Pixels::Decode)
}

/// [`inspect`], with the pixel readers reading `pixels`.
pub fn inspect_with(bytes: &[u8], file_name_hint: Option<&str>, pixels: Pixels<'_>) -> Evidence {
    let mut format = Format::sniff(bytes);
    if format == Format::Other {
        format = hint_format(file_name_hint);
    }
    let mut ev = Evidence {
        verdict: Verdict::None,
        reason: String::new(),
        signals: Vec::new(),
        notes: Vec::new(),
        errors: Vec::new(),
        format: (format != Format::Other).then(|| format.name().to_string()),
    };
    if bytes.is_empty() {
        ev.errors.push("empty file".into());
        decide(&mut ev);
        return ev;
    }
    let blobs = container::extract(bytes, format);
    ev.errors.extend(blobs.errors.iter().cloned());
    let exif = blobs.exif.as_deref().map(|d| {
        let (facts, errs) = exif_read::read(d);
        ev.errors.extend(errs);
        facts
    });
    c2pa_info::add_signals(bytes, format, &blobs, &mut ev);
    ev.signals.extend(metadata::signals(&blobs, exif.as_ref()));
    match pixels {
        Pixels::Decode => match pixels::decode(bytes, format) {
            Ok(Some(img)) => ev.signals.extend(pixels::signals(&img)),
            Ok(None) => {}
            Err(e) => ev.errors.push(e),
        },
        Pixels::Decoded(img) if pixels::readable(format) => match pixels::within_cap(img) {
            Ok(()) => ev.signals.extend(pixels::signals(img)),
            Err(e) => ev.errors.push(e),
        },
        Pixels::Decoded(_) => {}
        Pixels::Skip(reason) => ev.notes.push(reason.to_string()),
    }
    decide(&mut ev);
    ev
}

fn hint_format(hint: Option<&str>) -> Format {
    let ext = hint
        .and_then(|h| h.rsplit('.').next())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jpg" | "jpeg") => Format::Jpeg,
        Some("png") => Format::Png,
        Some("webp") => Format::Webp,
        Some("tif" | "tiff" | "dng") => Format::Tiff,
        Some("heic" | "heif" | "avif") => Format::Heif,
        _ => Format::Other,
    }
}

/// Apply the decision rule: sort the signals, set the verdict, reason and notes.
fn decide(ev: &mut Evidence) {
    let rank = |s: &Signal| {
        let strength = match s.strength {
            Strength::SignedValid => 4,
            Strength::SignedUntrusted | Strength::SignedInvalid => 3,
            Strength::Statistical => 2,
            Strength::UnsignedClaim => 1,
        };
        (s.says, strength)
    };
    ev.signals.sort_by_key(|s| std::cmp::Reverse(rank(s)));
    match ev.signals.first().filter(|s| s.says != Verdict::None) {
        Some(top) => {
            ev.verdict = top.says;
            ev.reason = top.detail.clone();
        }
        None => {
            ev.verdict = Verdict::None;
            ev.reason = "no usable provenance found (absence of evidence means nothing: most \
                         platforms strip metadata)"
                .into();
        }
    }
    if ev
        .signals
        .iter()
        .any(|s| s.strength == Strength::UnsignedClaim && s.says != Verdict::None)
    {
        ev.notes.push(METADATA_NOTE.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(chunks: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in chunks {
            v.extend_from_slice(&(data.len() as u32).to_be_bytes());
            v.extend_from_slice(kind);
            v.extend_from_slice(data);
            v.extend_from_slice(&[0; 4]);
        }
        v
    }

    #[test]
    fn the_callers_pixels_read_as_if_decoded_here() {
        use std::io::Cursor;
        // An image of watermark size (the fixtures' marked images are checked through the CLI
        // in tests/provenance.rs): the same readers run on both paths.
        let img = image::RgbImage::from_fn(320, 300, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 3 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let mut bytes = Cursor::new(Vec::new());
        img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
        let bytes = bytes.into_inner();
        let here = inspect(&bytes, Some("a.png"));
        let decoded = image::load_from_memory(&bytes).unwrap();
        let given = inspect_with(&bytes, Some("a.png"), Pixels::Decoded(&decoded));
        assert_eq!(format!("{here:?}"), format!("{given:?}"));
        let skipped = inspect_with(&bytes, Some("a.png"), Pixels::Skip("not read: scaled"));
        assert!(
            skipped
                .signals
                .iter()
                .all(|s| s.kind != SignalKind::Watermark)
        );
        assert!(skipped.notes.iter().any(|n| n == "not read: scaled"));
    }

    #[test]
    fn empty_and_garbage_give_none_without_panicking() {
        let e = inspect(b"", Some("x.png"));
        assert_eq!(e.verdict, Verdict::None);
        assert_eq!(e.errors, vec!["empty file".to_string()]);
        for junk in [
            &b"\x00"[..],
            b"\xFF\xD8\xFF",
            b"\x89PNG\r\n\x1a\n\xff\xff\xff\xff",
            b"RIFF\0\0\0\0WEBP",
        ] {
            let e = inspect(junk, None);
            assert_eq!(e.verdict, Verdict::None, "{junk:?}");
        }
    }

    #[test]
    fn a1111_png_is_ai_with_the_metadata_note() {
        let e = inspect(
            &png(&[(b"tEXt", b"parameters\0cat\nSteps: 20, Sampler: Euler")]),
            None,
        );
        assert_eq!(e.verdict, Verdict::Ai);
        assert_eq!(e.signals[0].kind, SignalKind::Metadata);
        assert!(e.notes.iter().any(|n| n.contains("claim, not proof")));
        assert!(e.errors.iter().any(|x| x.contains("pixels not decoded")));
        let v = serde_json::to_value(&e).expect("serializes");
        assert_eq!(v["verdict"], "AI");
        assert_eq!(v["signals"][0]["strength"], "unsigned-claim");
    }

    #[test]
    fn ai_outranks_editor_and_camera() {
        let mut ev = inspect(b"", None);
        ev.signals = vec![
            Signal::metadata(Verdict::Camera, "EXIF Make/Model", "x", None),
            Signal::metadata(Verdict::Edited, "EXIF Software", "GIMP", Some("GIMP")),
            Signal::new(
                SignalKind::Watermark,
                Verdict::Ai,
                Strength::Statistical,
                "wm".into(),
            ),
        ];
        decide(&mut ev);
        assert_eq!(ev.verdict, Verdict::Ai);
        assert_eq!(ev.reason, "wm");
        assert_eq!(ev.signals[2].says, Verdict::Camera);
    }

    #[test]
    fn inspect_path_errors() {
        let err = inspect_path("/nonexistent/dir/x.png").expect_err("missing");
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("cannot read"));
    }

    #[test]
    fn hint_only_used_when_bytes_are_unknown() {
        assert_eq!(hint_format(Some("a.JPG")), Format::Jpeg);
        assert_eq!(hint_format(None), Format::Other);
        let e = inspect(b"\x89PNG\r\n\x1a\n", Some("a.jpg"));
        assert_eq!(e.format.as_deref(), Some("png"));
    }
}
