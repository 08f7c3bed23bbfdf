//! Provenance evidence of files, on its own: what `synthscan provenance` does. Each file is read
//! (within [`provenance::limits::MAX_FILE_BYTES`]) and inspected by the `provenance` crate:
//! content credentials, generator metadata, invisible watermarks. No model is involved; the
//! scoring path carries the same record beside each pixel verdict
//! ([`crate::ensemble::Ensemble::prepare_bytes`], [`crate::decision::with_provenance`]).

use crate::data;
use provenance::Evidence;
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;

/// One line of `synthscan provenance --json`: the path and its evidence record (`verdict`,
/// `reason`, `signals`, `notes`, `errors`, `format`), or the error that kept the file from
/// being read.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FileEvidence {
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// Why the file could not be read at all (missing, unreadable, over the size limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn lossy_path<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// The evidence of every file named, and of the image files in every folder named, in order.
pub fn inspect_files(inputs: &[PathBuf]) -> Vec<FileEvidence> {
    data::expand_inputs(inputs)
        .into_par_iter()
        .map(|item| match item {
            Ok(path) => match provenance::inspect_path(&path) {
                Ok(ev) => FileEvidence {
                    path,
                    evidence: Some(ev),
                    error: None,
                },
                Err(e) => FileEvidence {
                    path,
                    evidence: None,
                    error: Some(e.to_string()),
                },
            },
            Err((path, msg)) => FileEvidence {
                error: Some(format!("{}: {msg}", path.display())),
                path,
                evidence: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_give_records_and_missing_ones_errors() {
        let dir = std::env::temp_dir().join(format!("synthscan-evidence-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("a.png");
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        img.save(&png).unwrap();
        let missing = dir.join("missing.png");
        let out = inspect_files(&[png.clone(), missing.clone()]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].path, png);
        let ev = out[0].evidence.as_ref().unwrap();
        assert_eq!(ev.verdict, provenance::Verdict::None);
        let v = serde_json::to_value(&out[0]).unwrap();
        assert_eq!(v["verdict"], "NONE");
        assert!(v["signals"].is_array() && v.get("error").is_none());
        assert!(out[1].evidence.is_none() && out[1].error.is_some());
        std::fs::remove_dir_all(&dir).ok();
    }
}
