//! The one container every synthscan file of weights is written in: model files
//! (`.synthscan`), ensemble files and GAN networks (`.gan`).
//!
//! Layout, format version 2 (little-endian):
//!
//! ```text
//! magic (per kind) | u32 version = 2 | u64 header length | [u8; 32] SHA-256 of header ‖ payload
//! | header (JSON) | payload (weights, or an ensemble's member files)
//! ```
//!
//! A file whose checksum does not match (truncated, bit-flipped, half-written) is refused with an
//! error naming it. Version 1 (the same without the checksum) is still read, so files written
//! before the checksum keep working; every file is written as version 2.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// What a container holds; each kind has its own magic bytes, so one kind is never read as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One detector: its [`crate::detector::ModelMeta`] and the network's weights.
    Model,
    /// Several detectors: the ensemble header and each member's own model file in turn.
    Ensemble,
    /// A GAN generator or discriminator.
    Gan,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Model, Kind::Ensemble, Kind::Gan];

    pub fn magic(self) -> &'static [u8] {
        match self {
            Kind::Model => b"SYNTHSCAN\0",
            Kind::Ensemble => b"SYNTHSCAN-ENSEMBLE\0",
            Kind::Gan => b"SYNTHGAN\0",
        }
    }

    /// How the kind is named in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Model => "a synthscan model file",
            Kind::Ensemble => "an ensemble of several models (synthscan ensemble)",
            Kind::Gan => "a GAN network file (synthscan gan train)",
        }
    }

    /// The kind whose magic `bytes` start with.
    pub fn of(bytes: &[u8]) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| bytes.starts_with(k.magic()))
    }
}

/// The version every file is written in.
pub const VERSION: u32 = 2;
const CHECKSUM_LEN: usize = 32;

/// A container's parts, borrowed from its bytes.
#[derive(Debug)]
pub struct Parts<'a> {
    pub version: u32,
    pub header: &'a [u8],
    pub payload: &'a [u8],
}

/// The SHA-256 of a container's header and payload: the checksum it stores, and a content hash
/// that names a model independently of its file name.
pub fn digest(header: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header);
    h.update(payload);
    h.finalize().into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A container of `kind` holding `header` (JSON) and `payload`.
pub fn encode(kind: Kind, header: &[u8], payload: &[u8]) -> Vec<u8> {
    let magic = kind.magic();
    let mut out =
        Vec::with_capacity(magic.len() + 12 + CHECKSUM_LEN + header.len() + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&digest(header, payload));
    out.extend_from_slice(header);
    out.extend_from_slice(payload);
    out
}

/// The parts of a container of `kind`, checked: magic, version, lengths and (version 2) the
/// checksum. `path` names the file in errors.
pub fn decode<'a>(kind: Kind, bytes: &'a [u8], path: &Path) -> Result<Parts<'a>> {
    let bad = |message: String| Error::ModelFile {
        path: path.to_path_buf(),
        message,
    };
    let magic = kind.magic();
    if !bytes.starts_with(magic) {
        return Err(bad(match Kind::of(bytes) {
            Some(other) => format!("{}, not {}", other.describe(), kind.describe()),
            None => format!(
                "not {} (its first bytes are not the header)",
                kind.describe()
            ),
        }));
    }
    let at = magic.len();
    let field = |from: usize, len: usize| bytes.get(from..from + len);
    let (Some(version), Some(header_len)) = (field(at, 4), field(at + 4, 8)) else {
        return Err(bad("truncated header".into()));
    };
    let version = u32::from_le_bytes(version.try_into().unwrap_or_default());
    let header_len = u64::from_le_bytes(header_len.try_into().unwrap_or_default());
    let (sum, start) = match version {
        1 => (None, at + 12),
        2 => (field(at + 12, CHECKSUM_LEN), at + 12 + CHECKSUM_LEN),
        v => {
            return Err(bad(format!(
                "format version {v}; this build reads versions 1 and {VERSION}"
            )));
        }
    };
    let end = usize::try_from(header_len)
        .ok()
        .and_then(|l| start.checked_add(l))
        .filter(|&e| e <= bytes.len() && start <= bytes.len())
        .ok_or_else(|| bad("truncated header".into()))?;
    let (header, payload) = (&bytes[start..end], &bytes[end..]);
    if version == 2 {
        let sum = sum.ok_or_else(|| bad("truncated header".into()))?;
        if sum != digest(header, payload) {
            return Err(bad(
                "checksum mismatch: the file is truncated or corrupted (was it written \
                 completely?)"
                    .into(),
            ));
        }
    }
    Ok(Parts {
        version,
        header,
        payload,
    })
}

/// The content hash (hex SHA-256 of header and payload) of a container's bytes, whatever its
/// version; `None` when `bytes` are not a container.
pub fn content_hash(bytes: &[u8]) -> Option<String> {
    let kind = Kind::of(bytes)?;
    let parts = decode(kind, bytes, Path::new("")).ok()?;
    Some(hex(&digest(parts.header, parts.payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        encode(Kind::Model, br#"{"a":1}"#, &[1, 2, 3, 4, 5])
    }

    #[test]
    fn a_container_round_trips_its_header_and_payload() {
        let bytes = sample();
        let p = decode(Kind::Model, &bytes, Path::new("m")).unwrap();
        assert_eq!(
            (p.version, p.header, p.payload),
            (2, &br#"{"a":1}"#[..], &[1u8, 2, 3, 4, 5][..])
        );
        assert_eq!(Kind::of(&bytes), Some(Kind::Model));
        assert_eq!(content_hash(&bytes).unwrap().len(), 64);
    }

    #[test]
    fn a_flipped_or_cut_byte_is_refused_naming_the_file() {
        let bytes = sample();
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let cut = &bytes[..bytes.len() - 1];
        for broken in [&flipped[..], cut, &bytes[..20]] {
            let err = decode(Kind::Model, broken, Path::new("x.synthscan")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("x.synthscan"), "{msg}");
            assert!(
                msg.contains("checksum") || msg.contains("truncated"),
                "{msg}"
            );
        }
    }

    #[test]
    fn version_1_files_are_read_without_a_checksum() {
        let mut v1 = Kind::Gan.magic().to_vec();
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&2u64.to_le_bytes());
        v1.extend_from_slice(b"{}");
        v1.extend_from_slice(&[9, 9]);
        let p = decode(Kind::Gan, &v1, Path::new("g")).unwrap();
        assert_eq!(
            (p.version, p.header, p.payload),
            (1, &b"{}"[..], &[9u8, 9][..])
        );
    }

    #[test]
    fn one_kind_is_not_read_as_another() {
        let msg = decode(Kind::Gan, &sample(), Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("a synthscan model file, not a GAN"), "{msg}");
        let mut future = sample();
        future[10] = 9;
        let msg = decode(Kind::Model, &future, Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("format version 9"), "{msg}");
    }
}
