//! Walking a folder for image files so that every scan finishes: only regular files are
//! listed; named pipes, sockets and devices are reported, never opened (opening a FIFO blocks
//! forever); symbolic links to folders are followed once, a cycle (`ln -s . loop`) detected by
//! device and inode; dangling links are reported; names that are not UTF-8 are kept as they are.
//! `predict`, `evaluate`, `robustness` and `train` list their folders through here.

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// Deepest folder nesting followed below the root (deeper folders are reported, not entered).
pub const MAX_DEPTH: usize = 256;

/// The image files under a folder, sorted, and what was passed over with why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walk {
    pub files: Vec<PathBuf>,
    pub problems: Vec<(PathBuf, String)>,
}

/// A folder's identity: device and inode on Unix (the canonical path elsewhere).
#[cfg(unix)]
fn identity(meta: &Metadata, _path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn identity(_meta: &Metadata, path: &Path) -> (u64, u64) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.canonicalize().unwrap_or_default().hash(&mut h);
    (0, h.finish())
}

/// What a non-regular, non-folder entry is, for messages.
fn kind_of(meta: &Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    let _ = meta;
    "not a regular file"
}

/// Every image file under `root` (by extension, [`super::is_image_path`]), each listed once.
pub fn walk_images(root: &Path) -> Result<Walk> {
    let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !meta.is_dir() {
        return Err(Error::dataset(root, "not a folder"));
    }
    let mut walk = Walk::default();
    let mut seen = HashSet::from([identity(&meta, root)]);
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if depth == 0 => return Err(Error::io(&dir, e)),
            Err(e) => {
                walk.problems
                    .push((dir, format!("cannot read the folder: {e}")));
                continue;
            }
        };
        for entry in entries {
            let path = match entry {
                Ok(e) => e.path(),
                Err(e) => {
                    walk.problems
                        .push((dir.clone(), format!("cannot read an entry: {e}")));
                    continue;
                }
            };
            visit(path, depth, &mut seen, &mut stack, &mut walk);
        }
    }
    walk.files.sort();
    walk.problems.sort();
    Ok(walk)
}

/// One folder entry: a file to list, a folder to enter, or a problem to report.
fn visit(
    path: PathBuf,
    depth: usize,
    seen: &mut HashSet<(u64, u64)>,
    stack: &mut Vec<(PathBuf, usize)>,
    walk: &mut Walk,
) {
    let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
    // The entry itself, or what a link points at.
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if link => {
            let why = format!("dangling symbolic link ({e}); skipped");
            walk.problems.push((path, why));
            return;
        }
        Err(e) => {
            walk.problems.push((path, format!("cannot read: {e}")));
            return;
        }
    };
    if meta.is_dir() {
        if !seen.insert(identity(&meta, &path)) {
            if link {
                let why = "symbolic link to a folder already scanned (a cycle); not followed";
                walk.problems.push((path, why.into()));
            }
        } else if depth + 1 > MAX_DEPTH {
            let why = format!("more than {MAX_DEPTH} folders deep; not entered");
            walk.problems.push((path, why));
        } else {
            stack.push((path, depth + 1));
        }
    } else if super::is_image_path(&path) {
        if meta.is_file() {
            walk.files.push(path);
        } else {
            let why = format!("{}, not an image file; skipped", kind_of(&meta));
            walk.problems.push((path, why));
        }
    }
}

/// Whether `path` may be opened for reading without blocking: a regular file (after links).
pub fn check_regular(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        Ok(())
    } else if meta.is_dir() {
        Err(Error::dataset(path, "a folder, not an image file"))
    } else {
        let why = format!("{}, not an image file", kind_of(&meta));
        Err(Error::dataset(path, why))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_hostile_folder_is_scanned_once_and_every_problem_named() {
        let dir = std::env::temp_dir().join(format!("synthscan-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut deep = dir.join("nest");
        for i in 0..40 {
            deep = deep.join(format!("d{i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("deep.jpg"), b"x").unwrap();
        std::fs::write(dir.join("a.png"), b"x").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        std::fs::create_dir(dir.join("x.jpg")).unwrap();
        let weird = std::ffi::OsStr::from_bytes(b"bad-\xff-name.jpg");
        std::fs::write(dir.join(weird), b"x").unwrap();
        std::os::unix::fs::symlink(".", dir.join("loop")).unwrap();
        std::os::unix::fs::symlink("missing.jpg", dir.join("dangling.jpg")).unwrap();
        let fifo = dir.join("pipe.jpg");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());

        let w = walk_images(&dir).unwrap();
        let names: Vec<String> = w
            .files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["a.png", "bad-\u{fffd}-name.jpg", "deep.jpg"],
            "{w:?}"
        );
        let problem = |name: &str| {
            w.problems
                .iter()
                .find(|(p, _)| p.ends_with(name))
                .map(|(_, why)| why.clone())
                .unwrap_or_default()
        };
        assert!(problem("pipe.jpg").contains("named pipe"), "{w:?}");
        assert!(problem("dangling.jpg").contains("dangling"), "{w:?}");
        assert!(problem("loop").contains("cycle"), "{w:?}");
        assert_eq!(w.problems.len(), 3, "{w:?}");
        assert!(
            check_regular(&fifo)
                .unwrap_err()
                .to_string()
                .contains("named pipe")
        );
        assert!(check_regular(&dir.join("x.jpg")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
