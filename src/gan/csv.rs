//! Typed CSV rows: one macro defines the struct, its header, its writer and its reader from the
//! same field list, so the header can never drift from the values.

use crate::error::{Error, Result};
use std::path::Path;

/// One CSV cell.
pub trait Cell: Sized {
    fn cell(&self) -> String;
    fn parse_cell(s: &str) -> Option<Self>;
}

impl Cell for usize {
    fn cell(&self) -> String {
        self.to_string()
    }
    fn parse_cell(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
}

impl Cell for f64 {
    fn cell(&self) -> String {
        format!("{self:.6}")
    }
    fn parse_cell(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
}

/// A row type that knows its header and how to write and read itself.
pub trait CsvRow: Sized {
    const FIELDS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
    fn from_cells(cells: &[&str]) -> Option<Self>;

    fn header() -> String {
        Self::FIELDS.join(",")
    }
    fn line(&self) -> String {
        self.cells().join(",")
    }
}

/// Define a `pub struct` of [`Cell`] fields that implements [`CsvRow`].
#[macro_export]
macro_rules! csv_row {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }

        impl $crate::gan::csv::CsvRow for $name {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn cells(&self) -> Vec<String> {
                vec![$($crate::gan::csv::Cell::cell(&self.$field)),*]
            }
            fn from_cells(cells: &[&str]) -> Option<Self> {
                let mut it = cells.iter();
                let row = Self {
                    $($field: <$ty as $crate::gan::csv::Cell>::parse_cell(it.next()?)?),*
                };
                it.next().is_none().then_some(row)
            }
        }
    };
}

/// The whole file: header line, then one line per row.
pub fn to_text<R: CsvRow>(rows: &[R]) -> String {
    let mut s = R::header();
    s.push('\n');
    for r in rows {
        s.push_str(&r.line());
        s.push('\n');
    }
    s
}

/// Read a file written by [`to_text`]; the header must match `R`'s.
pub fn read<R: CsvRow>(path: &Path) -> Result<Vec<R>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    if lines.next() != Some(R::header().as_str()) {
        return Err(Error::dataset(
            path,
            format!("expected the header `{}`", R::header()),
        ));
    }
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            R::from_cells(&l.split(',').collect::<Vec<_>>()).ok_or_else(|| {
                Error::dataset(
                    path,
                    format!("line {}: expected {} numbers", n + 2, R::FIELDS.len()),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    csv_row! {
        #[derive(Debug, PartialEq)]
        pub struct Demo {
            pub epoch: usize,
            pub loss: f64,
        }
    }

    #[test]
    fn header_and_rows_round_trip() {
        let rows = vec![
            Demo {
                epoch: 1,
                loss: 0.5,
            },
            Demo {
                epoch: 2,
                loss: 0.25,
            },
        ];
        let text = to_text(&rows);
        assert!(text.starts_with("epoch,loss\n1,0.500000\n"));
        let dir = std::env::temp_dir().join(format!("synthscan-csvrow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.csv");
        std::fs::write(&p, &text).unwrap();
        assert_eq!(read::<Demo>(&p).unwrap(), rows);
        std::fs::write(&p, "epoch,loss\n1,zz\n").unwrap();
        assert!(read::<Demo>(&p).unwrap_err().to_string().contains("line 2"));
        std::fs::write(&p, "epoch\n1\n").unwrap();
        assert!(read::<Demo>(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
