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

/// Read a whole file, naming it on failure.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Write a whole file (creating parent folders), naming it on failure.
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
