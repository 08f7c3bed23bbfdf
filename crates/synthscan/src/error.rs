//! One error type for the library. Every message names the file or value at fault.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot decode image: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: image is {width}x{height}, above the {limit}x{limit} limit")]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        limit: u32,
    },
    #[error("{path}: image is {width}x{height}, above the limit of {limit} pixels")]
    TooManyPixels {
        path: PathBuf,
        width: u32,
        height: u32,
        limit: u64,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    Dataset { path: PathBuf, message: String },
    #[error("{path}: not a synthscan model file: {message}")]
    ModelFile { path: PathBuf, message: String },
    #[error("{0}")]
    Model(String),
    #[error("{path}: {message}")]
    Output { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    RunFolder { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn config(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Config {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn dataset(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Dataset {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn run_folder(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::RunFolder {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn output(path: impl AsRef<Path>, message: impl std::fmt::Display) -> Self {
        Error::Output {
            path: path.as_ref().to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// Read a whole file, naming it on failure; only a regular file is opened (a named pipe would
/// block the read forever).
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a pipe, socket or device)"
        };
        return Err(Error::dataset(path, format!("{what}; not read")));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Write a whole file atomically (creating parent folders), naming it on failure: the bytes go
/// to a temporary file in the same folder, which is flushed to disk (`fsync`), renamed over
/// `path` and the folder synced, so that a crash, a kill or a full disk leaves either the
/// previous file or the new one, never half of each. Every file synthscan writes goes
/// through here.
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    use std::io::Write;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let n = fault::next_write();
    let tmp = parent.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let written = (|| {
        fault::before_write(n)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes.as_ref())?;
        f.sync_all()?;
        fault::after_write(n);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // The rename is durable once the folder is; some file systems cannot sync a folder.
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A fault hook for tests of crashes and full disks, off unless `SYNTHSCAN_FAULT` is set:
/// `write:N:enospc` makes the N-th atomic write of the process fail as a full disk would (before
/// the target is touched); `write:N:abort` aborts the process in the middle of the N-th write
/// (its temporary file written, the target not yet replaced), as `kill -9` would.
pub mod fault {
    use std::sync::atomic::{AtomicU64, Ordering};

    static WRITES: AtomicU64 = AtomicU64::new(0);

    /// The number of the write about to happen (1-based).
    pub fn next_write() -> u64 {
        WRITES.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn planned(n: u64) -> Option<String> {
        let spec = std::env::var("SYNTHSCAN_FAULT").ok()?;
        let mut parts = spec.split(':');
        let (kind, at, what) = (parts.next()?, parts.next()?, parts.next()?);
        (kind == "write" && at.parse::<u64>().ok()? == n).then(|| what.to_string())
    }

    pub(crate) fn before_write(n: u64) -> std::io::Result<()> {
        match planned(n).as_deref() {
            // ENOSPC: "No space left on device".
            Some("enospc") => Err(std::io::Error::from_raw_os_error(28)),
            _ => Ok(()),
        }
    }

    pub(crate) fn after_write(n: u64) {
        if planned(n).as_deref() == Some("abort") {
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("synthscan-atomic-{}", std::process::id()));
        let path = dir.join("sub/model.synthscan");
        write_file(&path, b"old").unwrap();
        write_file(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        let left: Vec<_> = std::fs::read_dir(dir.join("sub"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        // A folder or a pipe is refused, not read (reading a FIFO would block forever).
        assert!(
            read_file(&dir)
                .unwrap_err()
                .to_string()
                .contains("a folder")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
