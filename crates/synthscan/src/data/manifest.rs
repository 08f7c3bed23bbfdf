//! A collection's `manifest.csv`: one row per image file with columns such as `source`,
//! `generator` or `kind`, so that metrics can be reported per group (`evaluate --by kind`):
//! one global accuracy hides "every painting flagged".

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The file name a collection's manifest has.
pub const FILE_NAME: &str = "manifest.csv";
/// Most rows read from one manifest (a hostile file cannot grow memory without bound).
const MAX_ROWS: usize = 1_000_000;

/// A manifest: each row's columns, found by the image file's path.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    columns: Vec<String>,
    /// Rows by the image's path as the manifest's folder joined with its `file` column, and
    /// by the file name alone (for folders copied elsewhere).
    by_path: HashMap<PathBuf, usize>,
    by_name: HashMap<String, usize>,
    rows: Vec<Vec<String>>,
}

impl Manifest {
    /// Read `path`; image paths are its `file` column, relative to its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |m: String| Error::dataset(path, m);
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(path)
            .map_err(|e| bad(e.to_string()))?;
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        let file_col = columns
            .iter()
            .position(|c| c == "file")
            .ok_or_else(|| bad("no `file` column".into()))?;
        let root = path.parent().unwrap_or(Path::new("."));
        let mut m = Manifest {
            columns,
            ..Default::default()
        };
        for record in reader.records().take(MAX_ROWS) {
            let record = record.map_err(|e| bad(e.to_string()))?;
            let row: Vec<String> = record.iter().map(str::to_string).collect();
            let Some(file) = row.get(file_col) else {
                continue;
            };
            let i = m.rows.len();
            m.by_path.insert(normal(&root.join(file)), i);
            if let Some(name) = Path::new(file).file_name() {
                m.by_name.insert(name.to_string_lossy().into_owned(), i);
            }
            m.rows.push(row);
        }
        Ok(m)
    }

    /// The manifest of a data folder: `manifest.csv` in `dir` or one of its two parents
    /// (`collection/train/REAL` → `collection/manifest.csv`), if there is one.
    pub fn find(dir: &Path) -> Result<Option<Self>> {
        let found = dir
            .ancestors()
            .take(3)
            .map(|d| d.join(FILE_NAME))
            .find(|p| p.is_file());
        found.map(|p| Self::load(&p)).transpose()
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The value of `column` for the image at `path`, or `None` when the manifest has no row
    /// for it (or no such column).
    pub fn value(&self, path: &Path, column: &str) -> Option<&str> {
        let c = self.columns.iter().position(|x| x == column)?;
        let row = self.by_path.get(&normal(path)).or_else(|| {
            let name = path.file_name()?.to_string_lossy();
            self.by_name.get(name.as_ref())
        })?;
        self.rows[*row].get(c).map(String::as_str)
    }
}

/// A path made absolute and free of `.` parts, for matching without touching the disk.
fn normal(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    abs.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_found_by_path_or_file_name_with_quoted_fields() {
        let dir = std::env::temp_dir().join(format!("synthscan-manifest-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("train/REAL")).unwrap();
        std::fs::write(
            dir.join(FILE_NAME),
            "sha16,kind,title,file\n\
             a1,painting,\"Still life, with apples\",train/REAL/a.jpg\n\
             b2,poster,plain,train/REAL/b.jpg\n",
        )
        .unwrap();
        let m = Manifest::find(&dir.join("train/REAL")).unwrap().unwrap();
        assert_eq!(
            m.value(&dir.join("train/REAL/a.jpg"), "kind"),
            Some("painting")
        );
        assert_eq!(
            m.value(&dir.join("train/./REAL/a.jpg"), "title"),
            Some("Still life, with apples")
        );
        assert_eq!(
            m.value(Path::new("/elsewhere/b.jpg"), "kind"),
            Some("poster")
        );
        assert_eq!(m.value(&dir.join("train/REAL/c.jpg"), "kind"), None);
        assert_eq!(m.value(&dir.join("train/REAL/a.jpg"), "colour"), None);
        std::fs::write(dir.join(FILE_NAME), "sha16,kind\na1,painting\n").unwrap();
        let err = Manifest::find(&dir).unwrap_err().to_string();
        assert!(err.contains("no `file` column"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
