//! Backbone features of image files, cached by content: the pooled activations a model's head
//! reads, keyed by the SHA-256 of the file's bytes, in one file per base model
//! (`features-<model hash>.bin`), so that a second `adapt` with the same images (or the same
//! replay sample) decodes and runs nothing.

use crate::data::decode::{Need, decode_within};
use crate::data::prepare::{Preprocess, prepare};
use crate::detector::Detector;
use crate::error::{Error, Result};
use crate::model::container::hex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Images larger than this are refused before decoding (decompression bombs).
pub const MAX_PIXELS: u64 = 100_000_000;

/// Entries kept in one cache file; past it the oldest-inserted are not written back.
pub const MAX_ENTRIES: usize = 200_000;

/// Feature rows by content hash, for one base model.
#[derive(Debug, Default)]
pub struct FeatureCache {
    path: Option<PathBuf>,
    dim: usize,
    rows: HashMap<String, Vec<f32>>,
    order: Vec<String>,
    dirty: bool,
    /// Lookups answered from the cache in this process.
    pub hits: usize,
}

impl FeatureCache {
    /// No file: features live only as long as the process.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The cache file of the model with content hash `model_hash` in `dir` (read when present;
    /// an unreadable or foreign file is ignored with a warning and replaced on save).
    pub fn open(dir: &Path, model_hash: &str) -> Self {
        let path = dir.join(format!(
            "features-{}.bin",
            &model_hash[..16.min(model_hash.len())]
        ));
        let mut cache = Self {
            path: Some(path.clone()),
            ..Self::default()
        };
        if path.is_file() {
            match read_cache(&path, model_hash) {
                Ok((dim, rows, order)) => (cache.dim, cache.rows, cache.order) = (dim, rows, order),
                Err(e) => tracing::warn!("{}: feature cache ignored: {e}", path.display()),
            }
        }
        cache
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn get(&self, key: &str) -> Option<&Vec<f32>> {
        self.rows.get(key)
    }

    fn insert(&mut self, key: String, row: Vec<f32>) {
        self.dim = row.len();
        if self.rows.insert(key.clone(), row).is_none() {
            self.order.push(key);
        }
        self.dirty = true;
    }

    /// Write the cache back (atomically) when something was added.
    pub fn save(&self, model_hash: &str) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let keep = &self.order[self.order.len().saturating_sub(MAX_ENTRIES)..];
        let header = serde_json::json!({ "model": model_hash, "dim": self.dim, "keys": keep });
        let mut out = serde_json::to_vec(&header).map_err(|e| Error::output(path, e))?;
        out.push(b'\n');
        for key in keep {
            for v in &self.rows[key] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        crate::error::write_file(path, out)
    }
}

type CacheParts = (usize, HashMap<String, Vec<f32>>, Vec<String>);

fn read_cache(path: &Path, model_hash: &str) -> std::result::Result<CacheParts, String> {
    let bytes = crate::error::read_file(path).map_err(|e| e.to_string())?;
    let nl = bytes.iter().position(|&b| b == b'\n').ok_or("no header")?;
    let h: serde_json::Value = serde_json::from_slice(&bytes[..nl]).map_err(|e| e.to_string())?;
    if h["model"].as_str() != Some(model_hash) {
        return Err("written for another model".into());
    }
    let dim = h["dim"].as_u64().ok_or("no dim")? as usize;
    let keys: Vec<String> = serde_json::from_value(h["keys"].clone()).map_err(|e| e.to_string())?;
    let floats = &bytes[nl + 1..];
    if dim == 0 || floats.len() != keys.len() * dim * 4 {
        return Err("truncated".into());
    }
    let mut rows = HashMap::with_capacity(keys.len());
    for (key, chunk) in keys.iter().zip(floats.chunks_exact(dim * 4)) {
        let row = chunk
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        rows.insert(key.clone(), row);
    }
    Ok((dim, rows, keys))
}

/// Hex SHA-256 of a file's bytes (the cache key and the corrections' fingerprint).
pub fn content_key(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Features of labelled files.
#[derive(Debug, Default)]
pub struct Extracted {
    pub dim: usize,
    /// One row per kept file, in the order of `items`.
    pub rows: Vec<Vec<f32>>,
    pub labels: Vec<u8>,
    pub keys: Vec<String>,
    pub paths: Vec<PathBuf>,
    /// Files that could not be read or decoded, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Extracted {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn counts(&self) -> [usize; 2] {
        let fake = self
            .labels
            .iter()
            .filter(|&&l| l == crate::data::FAKE)
            .count();
        [self.labels.len() - fake, fake]
    }
}

/// One file read: its key and, when not cached, its prepared pixels.
enum Read {
    Cached(String),
    Fresh(String, Vec<u8>),
    Failed(String),
}

/// Features of `items` through `det`'s backbone, from `cache` where present; the rest are
/// decoded and run on all cores (8 images per pass) and added to the cache. `progress` gets the
/// number of files done.
pub fn extract(
    det: &Detector,
    items: &[(PathBuf, u8)],
    cache: &mut FeatureCache,
    progress: &(dyn Fn(usize) + Sync),
) -> Extracted {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let done = AtomicUsize::new(0);
    let known = &*cache;
    let parts: Vec<(Vec<Read>, Vec<f32>)> = items
        .par_chunks(8)
        .map(|chunk| {
            let reads: Vec<Read> = chunk.iter().map(|(p, _)| read_one(p, known, det)).collect();
            let fresh: Vec<Vec<u8>> = reads
                .iter()
                .filter_map(|r| match r {
                    Read::Fresh(_, px) => Some(px.clone()),
                    _ => None,
                })
                .collect();
            let flat = if fresh.is_empty() {
                Vec::new()
            } else {
                det.pooled_features(&fresh)
            };
            progress(done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len());
            (reads, flat)
        })
        .collect();
    assemble(items, parts, cache)
}

fn read_one(path: &Path, cache: &FeatureCache, det: &Detector) -> Read {
    let bytes = match crate::error::read_file(path) {
        Ok(b) => b,
        Err(e) => return Read::Failed(e.to_string()),
    };
    let key = content_key(&bytes);
    if cache.get(&key).is_some() {
        return Read::Cached(key);
    }
    // Decoded as scoring decodes it (a large JPEG at a reduced scale when the model resizes),
    // so the head learns from what it will see.
    let need = match det.meta.preprocess {
        Preprocess::Resize => Need::Side(det.meta.input_size),
        Preprocess::CenterCrop => Need::All,
    };
    match decode_within(&bytes, path, MAX_PIXELS, need, false) {
        Ok(d) => {
            let px = prepare(&d.image, det.meta.input_size, det.meta.preprocess).into_raw();
            Read::Fresh(key, px)
        }
        Err(e) => Read::Failed(e.to_string()),
    }
}

fn assemble(
    items: &[(PathBuf, u8)],
    parts: Vec<(Vec<Read>, Vec<f32>)>,
    cache: &mut FeatureCache,
) -> Extracted {
    let mut out = Extracted::default();
    let mut item = items.iter();
    for (reads, flat) in parts {
        let fresh = reads
            .iter()
            .filter(|r| matches!(r, Read::Fresh(..)))
            .count();
        let dim = flat.len() / fresh.max(1);
        let mut fresh_rows = flat.chunks(dim.max(1));
        for read in reads {
            let Some((path, label)) = item.next() else {
                break;
            };
            let (key, row) = match read {
                Read::Failed(why) => {
                    out.skipped.push((path.clone(), why));
                    continue;
                }
                Read::Cached(key) => {
                    cache.hits += 1;
                    let row = cache.get(&key).cloned().unwrap_or_default();
                    (key, row)
                }
                Read::Fresh(key, _) => {
                    let row = fresh_rows.next().unwrap_or_default().to_vec();
                    cache.insert(key.clone(), row.clone());
                    (key, row)
                }
            };
            out.dim = row.len();
            out.rows.push(row);
            out.labels.push(*label);
            out.keys.push(key);
            out.paths.push(path.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_round_trips_and_refuses_another_models_file() {
        let dir = std::env::temp_dir().join(format!("synthscan-fcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let hash = "ab".repeat(32);
        let mut c = FeatureCache::open(&dir, &hash);
        assert!(c.is_empty());
        c.insert("k1".into(), vec![1.0, 2.0]);
        c.insert("k2".into(), vec![3.0, 4.5]);
        c.save(&hash).unwrap();
        let again = FeatureCache::open(&dir, &hash);
        assert_eq!(again.len(), 2);
        assert_eq!(again.get("k2"), Some(&vec![3.0, 4.5]));
        // Same file name (first 16 hex digits), other model: ignored.
        let other = format!("{}{}", &hash[..16], "cd".repeat(24));
        assert!(FeatureCache::open(&dir, &other).is_empty());
        // A cut file is ignored, not trusted.
        let path = again.path().unwrap().to_path_buf();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(FeatureCache::open(&dir, &hash).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn content_keys_are_sha256() {
        assert_eq!(
            content_key(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
