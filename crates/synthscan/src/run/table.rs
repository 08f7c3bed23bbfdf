//! Typed rows ↔ CSV: a row type lists its columns once, and the header, the writer and the
//! reader are all derived from that list, so they cannot drift apart.

use crate::error::{Error, Result};
use std::path::Path;

/// One CSV column of a row type `R`: its header name, how many decimals it is written with,
/// and how to read it from / write it into a row.
pub struct Column<R> {
    pub name: &'static str,
    pub decimals: usize,
    pub get: fn(&R) -> f64,
    pub set: fn(&mut R, f64),
}

impl<R> Column<R> {
    pub const fn new(
        name: &'static str,
        decimals: usize,
        get: fn(&R) -> f64,
        set: fn(&mut R, f64),
    ) -> Self {
        Self {
            name,
            decimals,
            get,
            set,
        }
    }
}

/// A row of a run-folder table (`metrics.csv`, the GAN's `losses.csv`, …).
pub trait CsvRow: Default + Sized + 'static {
    const COLUMNS: &'static [Column<Self>];

    /// The header line (no newline).
    fn header() -> String {
        Self::COLUMNS
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The row as one CSV line (no newline).
    fn to_line(&self) -> String {
        Self::COLUMNS
            .iter()
            .map(|c| format!("{:.*}", c.decimals, (c.get)(self)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A whole table: the header line, then one line per row.
pub fn to_text<R: CsvRow>(rows: &[R]) -> String {
    let mut text = R::header() + "\n";
    for r in rows {
        text.push_str(&r.to_line());
        text.push('\n');
    }
    text
}

/// Read a table file written by [`to_text`] or row by row.
pub fn read_rows<R: CsvRow>(path: &Path) -> Result<Vec<R>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_rows(path, &text)
}

/// Parse a table written by [`CsvRow::to_line`]; columns are matched by header name, and a
/// missing column, a short line or a non-number is an error naming `path` and the line.
pub fn parse_rows<R: CsvRow>(path: &Path, text: &str) -> Result<Vec<R>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    let positions = R::COLUMNS
        .iter()
        .map(|c| {
            header.iter().position(|h| *h == c.name).ok_or_else(|| {
                Error::run_folder(path, format!("header lacks the column '{}'", c.name))
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let mut row = R::default();
        for (col, &at) in R::COLUMNS.iter().zip(&positions) {
            let field = fields.get(at).ok_or_else(|| {
                Error::run_folder(
                    path,
                    format!(
                        "line {}: {} columns, expected {}",
                        n + 2,
                        fields.len(),
                        header.len()
                    ),
                )
            })?;
            let value = field.parse::<f64>().map_err(|e| {
                Error::run_folder(path, format!("line {}, column {}: {e}", n + 2, col.name))
            })?;
            (col.set)(&mut row, value);
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct Pair {
        step: usize,
        loss: f64,
    }

    impl CsvRow for Pair {
        const COLUMNS: &'static [Column<Self>] = &[
            Column::new("step", 0, |r| r.step as f64, |r, v| r.step = v as usize),
            Column::new("loss", 3, |r| r.loss, |r, v| r.loss = v),
        ];
    }

    #[test]
    fn rows_round_trip_through_their_own_header() {
        let rows = [
            Pair { step: 1, loss: 0.5 },
            Pair {
                step: 2,
                loss: 0.25,
            },
        ];
        let text = to_text(&rows);
        assert_eq!(text, "step,loss\n1,0.500\n2,0.250\n");
        assert_eq!(parse_rows::<Pair>(Path::new("t.csv"), &text).unwrap(), rows);
    }

    #[test]
    fn columns_are_found_by_name_and_bad_lines_are_named() {
        let swapped = "loss,step\n0.5,7\n";
        let rows = parse_rows::<Pair>(Path::new("t.csv"), swapped).unwrap();
        assert_eq!(rows, [Pair { step: 7, loss: 0.5 }]);
        let missing = parse_rows::<Pair>(Path::new("t.csv"), "step\n1\n").unwrap_err();
        assert!(missing.to_string().contains("'loss'"), "{missing}");
        let short = parse_rows::<Pair>(Path::new("t.csv"), "step,loss\n1\n").unwrap_err();
        assert!(short.to_string().contains("line 2"), "{short}");
        let nan = parse_rows::<Pair>(Path::new("t.csv"), "step,loss\n1,x\n").unwrap_err();
        assert!(nan.to_string().contains("column loss"), "{nan}");
    }
}
