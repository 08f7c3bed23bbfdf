//! Splitting a collection of image files into `n` shards for parallel batch scans
//! (`predict --shard i/n`, one Kubernetes Indexed Job pod per shard).
//!
//! A file's shard is FNV-1a (64-bit) of its path relative to the input it was found under,
//! with `/` between components, modulo `n`. The hash has no random key, so every machine
//! assigns the same file to the same shard, and every file lands in exactly one shard.

use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// Shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl FromStr for Shard {
    type Err = Error;

    /// `i/n` with `0 <= i < n`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Invalid(format!("shard {s:?}: expected i/n with 0 <= i < n"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A path as `a/b/c.jpg`, whatever the platform's separator (`.` components dropped).
pub fn shard_key(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

impl Shard {
    /// The shard a key belongs to.
    pub fn of(key: &str, count: u64) -> u64 {
        fnv1a64(key.as_bytes()) % count.max(1)
    }

    pub fn contains(&self, key: &str) -> bool {
        Self::of(key, self.count) == self.index
    }

    /// This shard's part of `inputs`: image files under folders (keyed by their path relative
    /// to the folder) and files named directly (keyed by the path as given). An input that is
    /// missing, unreadable or holds no images is kept in shard 0 only, so that its error is
    /// reported once across all shards.
    pub fn select(&self, inputs: &[PathBuf]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for input in inputs {
            if input.is_dir() {
                match super::list_images(input) {
                    Ok(files) if !files.is_empty() => out.extend(files.into_iter().filter(|f| {
                        let rel = f.strip_prefix(input).unwrap_or(f);
                        self.contains(&shard_key(rel))
                    })),
                    _ if self.index == 0 => out.push(input.clone()),
                    _ => {}
                }
            } else if !input.exists() {
                if self.index == 0 {
                    out.push(input.clone());
                }
            } else if self.contains(&shard_key(input)) {
                out.push(input.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            "2/5".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 5 }
        );
        for bad in ["5/5", "1/0", "a/2", "3", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fnv_matches_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn keys_use_forward_slashes() {
        assert_eq!(shard_key(Path::new("./a/b/c.jpg")), "a/b/c.jpg");
    }

    #[test]
    fn missing_inputs_are_reported_by_shard_zero_only() {
        let missing = vec![PathBuf::from("/no/such/synthscan/folder")];
        assert_eq!(Shard { index: 0, count: 3 }.select(&missing), missing);
        assert!(Shard { index: 1, count: 3 }.select(&missing).is_empty());
        assert!(Shard { index: 2, count: 3 }.select(&missing).is_empty());
    }

    #[test]
    fn every_key_in_exactly_one_shard_and_spread() {
        let keys: Vec<String> = (0..2000)
            .map(|i| format!("dir{}/img{i}.jpg", i % 7))
            .collect();
        let n = 4;
        let mut counts = [0usize; 4];
        for k in &keys {
            let owners: Vec<u64> = (0..n)
                .filter(|&i| Shard { index: i, count: n }.contains(k))
                .collect();
            assert_eq!(owners.len(), 1, "{k}");
            counts[owners[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 400), "{counts:?}");
    }
}
