//! Scoring files and folders: what `predict` does, through [`Ensemble::score`].

use crate::data;
use crate::decision::Decision;
use crate::ensemble::{Ensemble, Prepared};
use crate::error::Error;
use crate::progress::{NoTally, Tally};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One line of `predict --json`: the decision (`p_fake` calibrated, `label` REAL, FAKE or
/// UNCERTAIN, `threshold`, `reason` when uncertain or decided by provenance, `provenance`: the
/// file's own evidence, always present for a scored file), the model and the image's size; or
/// the error that kept the file from being scored (with the file's provenance evidence when its
/// bytes could be read but not decoded: a HEIC or TIFF may still carry credentials).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Prediction {
    /// The path as text (a name that is not UTF-8 is written lossily, with its raw bytes in
    /// `path_base64`).
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_base64: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Only for a file that was not scored (a scored file's evidence is in its decision, which
    /// is flattened into the same object: never both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<provenance::Evidence>,
}

/// A path as UTF-8 text, lossily where it is not.
fn lossy_path<S: serde::Serializer>(
    path: &std::path::Path,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// The raw bytes of a path that is not UTF-8, in base64 (`None` for a UTF-8 path), so that a
/// script can still find the file.
pub fn raw_path_base64(path: &std::path::Path) -> Option<String> {
    use base64::Engine;
    if path.to_str().is_some() {
        return None;
    }
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().into_owned().into_bytes();
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl Prediction {
    pub fn p_fake(&self) -> Option<f32> {
        self.decision.as_ref().map(|d| d.p_fake)
    }

    pub fn label(&self) -> Option<&str> {
        self.decision.as_ref().map(|d| d.label.as_str())
    }

    /// The file's provenance evidence: its decision's, or the unscored file's own.
    pub fn evidence(&self) -> Option<&provenance::Evidence> {
        self.decision
            .as_ref()
            .and_then(|d| d.provenance.as_ref())
            .or(self.provenance.as_ref())
    }
}

/// Score every input with a model or an ensemble: each file is read once, its provenance
/// evidence taken from the original bytes, decoded once, prepared the way of each member
/// ([`Ensemble::prepare_bytes`]) and scored through [`Ensemble::score`] (the members' mean
/// `p_fake`, decided by the ensemble's rule; one member: its own; combined with the evidence by
/// [`crate::decision::with_provenance`]), the model named `a + b`. Bad files get an error entry
/// and do not stop the others.
pub fn predict_ensemble(ensemble: &Ensemble, inputs: &[PathBuf]) -> Vec<Prediction> {
    predict_ensemble_with(ensemble, inputs, &NoTally)
}

/// [`predict_ensemble`], telling `tally` of every file done (scored or not): the files are
/// decoded and scored [`Ensemble::chunk_len`] at a time, so memory stays bounded on a folder of
/// any size, the next chunk decoded while this one is scored ([`crate::pipeline::overlapped`]).
pub fn predict_ensemble_with(
    ensemble: &Ensemble,
    inputs: &[PathBuf],
    tally: &dyn Tally,
) -> Vec<Prediction> {
    let items = data::expand_inputs(inputs);
    tally.start(items.len());
    let decode = |part| decode_chunk(ensemble, part, tally);
    let score = |decoded| Ok::<_, std::convert::Infallible>(score_chunk(ensemble, decoded));
    match crate::pipeline::overlapped(items.chunks(ensemble.chunk_len()), decode, score) {
        Ok(chunks) => chunks.concat(),
        Err(never) => match never {},
    }
}

/// The files of one chunk read and prepared, side by side: each decoded only long enough to
/// note its size and prepare the members' inputs.
fn decode_chunk(
    ensemble: &Ensemble,
    items: &[std::result::Result<PathBuf, (PathBuf, String)>],
    tally: &dyn Tally,
) -> Vec<(PathBuf, Unscored)> {
    items
        .par_iter()
        .map(|item| {
            let out = match item {
                Ok(path) => (path.clone(), read_and_prepare(ensemble, path)),
                Err((path, msg)) => (path.clone(), Err((Error::dataset(path, msg), None))),
            };
            tally.advance(1);
            out
        })
        .collect()
}

/// One decoded chunk scored as one batch: a prediction per file, in order.
fn score_chunk(ensemble: &Ensemble, decoded: Vec<(PathBuf, Unscored)>) -> Vec<Prediction> {
    let mut batch = ensemble.batch();
    let mut outcomes = Vec::with_capacity(decoded.len());
    for (path, r) in decoded {
        outcomes.push(match r {
            Ok(p) => {
                let size = (p.width, p.height);
                batch.push(p);
                (path, Ok(size))
            }
            Err(e) => (path, Err(e)),
        });
    }
    let mut decisions = ensemble.score(&batch).into_iter();
    outcomes
        .into_iter()
        .map(|(path, r)| {
            let scored = r.and_then(|(w, h)| {
                let d = decisions.next();
                d.map(|d| (d, w, h)).ok_or_else(|| {
                    let e = Error::Model(format!("{}: no score was produced", path.display()));
                    (e, None)
                })
            });
            match scored {
                Ok((decision, w, h)) => Prediction {
                    path_base64: raw_path_base64(&path),
                    path,
                    model: Some(decision.model.clone()),
                    decision: Some(decision),
                    width: Some(w),
                    height: Some(h),
                    error: None,
                    provenance: None,
                },
                Err((e, evidence)) => Prediction {
                    path_base64: raw_path_base64(&path),
                    path,
                    decision: None,
                    model: None,
                    width: None,
                    height: None,
                    error: Some(e.to_string()),
                    provenance: evidence.map(|b| *b),
                },
            }
        })
        .collect()
}

/// A file prepared for scoring, or why not (with its evidence when its bytes were read).
type Unscored = Result<Prepared, (Error, Option<Box<provenance::Evidence>>)>;

/// Read a file once and prepare it with its provenance ([`Ensemble::prepare_bytes_within`]); a
/// file that reads but does not decode keeps the evidence read from its bytes for the error
/// entry.
fn read_and_prepare(ensemble: &Ensemble, path: &Path) -> Unscored {
    let bytes = crate::error::read_file(path).map_err(|e| (e, None))?;
    ensemble
        .prepare_bytes_within(&bytes, path, data::decode::MAX_PIXELS, false)
        .map(|(prepared, _)| prepared)
        .map_err(|u| (u.error, u.evidence))
}
