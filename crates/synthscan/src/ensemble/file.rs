//! The ensemble file: a [`container`] of kind `Ensemble` whose header is [`Header`] and whose
//! payload is each member's own model file in turn; and loading models by path or built-in name.

use super::{Ensemble, Header, MAX_MEMBERS, MemberEntry};
use crate::detector::Detector;
use crate::error::{Error, Result};
use crate::model::container;
use std::path::{Path, PathBuf};

impl Ensemble {
    /// A model file or an ensemble file; a built-in name (`realworld`); the embedded default
    /// when `None`.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self> {
        match path {
            None => Self::auto(),
            Some(p) if crate::zoo::is_auto(p) => Self::auto(),
            Some(p) if is_ensemble_file(p) => Self::load(p),
            Some(_) => Ok(Detector::load_or_default(path)?.into()),
        }
    }

    /// The built-in default (`--model auto`): CIFAKE-sized images to the CIFAKE model,
    /// everything else to the real-world model, each answering alone ([`Self::routed`]).
    pub fn auto() -> Result<Self> {
        let members = crate::zoo::AUTO_MEMBERS
            .iter()
            .map(|name| Detector::load_or_default(Some(Path::new(name))))
            .collect::<Result<_>>()?;
        Self::routed(members)
    }

    /// Every model of several `--model` paths (each a model or an ensemble file) as one
    /// ensemble; the built-in default (`auto`) when there are none. One path is that file, calibration
    /// included; several make a new, uncalibrated combination of all their members.
    pub fn load_all(paths: &[PathBuf]) -> Result<Self> {
        if let [] | [_] = paths {
            return Self::load_or_default(paths.first().map(PathBuf::as_path));
        }
        let mut members = Vec::new();
        for p in paths {
            members.extend(Self::load_or_default(Some(p))?.into_members());
        }
        Self::new(members)
    }

    /// Read an ensemble file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_bytes(&crate::error::read_file(path)?, path)
    }

    /// Parse an ensemble file's bytes; `path` names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |m: String| Error::ModelFile {
            path: path.to_path_buf(),
            message: m,
        };
        let (header, mut rest) = read_header(bytes, path)?;
        let mut members = Vec::with_capacity(header.members.len());
        for m in &header.members {
            let len = usize::try_from(m.bytes)
                .ok()
                .filter(|&l| l <= rest.len())
                .ok_or_else(|| bad(format!("member '{}' is truncated", m.name)))?;
            let label = PathBuf::from(format!("{}#{}", path.display(), m.name));
            let mut det = Detector::from_bytes(&rest[..len], &label)?;
            det.name = m.name.clone();
            members.push(det);
            rest = &rest[len..];
        }
        if !rest.is_empty() {
            return Err(bad(format!("{} bytes after the last member", rest.len())));
        }
        let mut ensemble = Self::new(members).map_err(|e| bad(e.to_string()))?;
        ensemble.routed = header.routed;
        ensemble.calibration = header.calibration;
        Ok(ensemble)
    }

    /// Serialise to the ensemble-file format (each member as its own model file).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let files: Vec<Vec<u8>> = self
            .members
            .iter()
            .map(Detector::to_bytes)
            .collect::<Result<_>>()?;
        let header = Header {
            members: self
                .members
                .iter()
                .zip(&files)
                .map(|(d, f)| MemberEntry {
                    name: d.name.clone(),
                    bytes: f.len() as u64,
                })
                .collect(),
            calibration: self.calibration.clone(),
            routed: self.routed,
        };
        let json = serde_json::to_vec(&header).map_err(|e| Error::Model(e.to_string()))?;
        Ok(container::encode(
            container::Kind::Ensemble,
            &json,
            &files.concat(),
        ))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::error::write_file(path, self.to_bytes()?)
    }
}

/// The header and the bytes after it, or what is wrong.
fn read_header<'a>(bytes: &'a [u8], path: &Path) -> Result<(Header, &'a [u8])> {
    let bad = |message: String| Error::ModelFile {
        path: path.to_path_buf(),
        message,
    };
    let parts = container::decode(container::Kind::Ensemble, bytes, path)?;
    let header: Header =
        serde_json::from_slice(parts.header).map_err(|e| bad(format!("ensemble header: {e}")))?;
    if header.members.is_empty() || header.members.len() > MAX_MEMBERS {
        return Err(bad(format!(
            "{} members: an ensemble has 1 to {MAX_MEMBERS}",
            header.members.len()
        )));
    }
    Ok((header, parts.payload))
}

/// Whether the file at `path` is an ensemble file (its first bytes; false when unreadable,
/// so that the model loader reports the error).
pub fn is_ensemble_file(path: &Path) -> bool {
    use std::io::Read;
    let magic = container::Kind::Ensemble.magic();
    let mut head = vec![0u8; magic.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == magic)
}
