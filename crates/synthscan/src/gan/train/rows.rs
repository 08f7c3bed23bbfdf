//! The two tables of a GAN run folder: `losses.csv` and `frechet.csv`.

use crate::run::{Column, CsvRow};

/// One epoch of `losses.csv`: means over the epoch's steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossRow {
    pub epoch: usize,
    pub steps: usize,
    pub d_loss: f64,
    pub g_loss: f64,
    /// Mean D(x) on real batches, as a probability.
    pub d_real: f64,
    /// Mean D(G(z)) on generated batches, before the D update.
    pub d_fake: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

impl CsvRow for LossRow {
    const COLUMNS: &'static [Column<Self>] = &[
        Column::new("epoch", 0, |r| r.epoch as f64, |r, v| r.epoch = v as usize),
        Column::new("steps", 0, |r| r.steps as f64, |r, v| r.steps = v as usize),
        Column::new("d_loss", 6, |r| r.d_loss, |r, v| r.d_loss = v),
        Column::new("g_loss", 6, |r| r.g_loss, |r, v| r.g_loss = v),
        Column::new("d_real", 6, |r| r.d_real, |r, v| r.d_real = v),
        Column::new("d_fake", 6, |r| r.d_fake, |r, v| r.d_fake = v),
        Column::new("seconds", 6, |r| r.seconds, |r, v| r.seconds = v),
        Column::new(
            "images_per_second",
            6,
            |r| r.images_per_second,
            |r, v| r.images_per_second = v,
        ),
    ];
}

/// One row of `frechet.csv`: quality and variety of the samples after `epoch`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrechetRow {
    pub epoch: usize,
    /// Fréchet distance to the real images in the feature model's space (not Inception FID).
    pub frechet: f64,
    /// Mean pairwise RMS pixel distance between generated images.
    pub diversity_fake: f64,
    /// The same measure between real images.
    pub diversity_real: f64,
}

impl CsvRow for FrechetRow {
    const COLUMNS: &'static [Column<Self>] = &[
        Column::new("epoch", 0, |r| r.epoch as f64, |r, v| r.epoch = v as usize),
        Column::new("frechet", 6, |r| r.frechet, |r, v| r.frechet = v),
        Column::new(
            "diversity_fake",
            6,
            |r| r.diversity_fake,
            |r, v| r.diversity_fake = v,
        ),
        Column::new(
            "diversity_real",
            6,
            |r| r.diversity_real,
            |r, v| r.diversity_real = v,
        ),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{parse_rows, to_text};
    use std::path::Path;

    #[test]
    fn loss_rows_round_trip_through_their_table() {
        let rows = vec![
            LossRow {
                epoch: 1,
                steps: 5,
                d_loss: 1.25,
                g_loss: 0.75,
                d_real: 0.5,
                d_fake: 0.25,
                seconds: 2.0,
                images_per_second: 40.0,
            },
            LossRow {
                epoch: 2,
                ..Default::default()
            },
        ];
        let text = to_text(&rows);
        assert!(
            text.starts_with("epoch,steps,d_loss,g_loss,d_real,d_fake,seconds,images_per_second\n"),
            "{text}"
        );
        assert!(text.contains("\n1,5,1.250000,0.750000,0.500000,0.250000,2.000000,40.000000\n"));
        let back: Vec<LossRow> = parse_rows(Path::new("losses.csv"), &text).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn frechet_rows_round_trip_through_their_table() {
        let rows = vec![FrechetRow {
            epoch: 3,
            frechet: 12.5,
            diversity_fake: 0.125,
            diversity_real: 0.25,
        }];
        let text = to_text(&rows);
        assert_eq!(
            text.lines().next(),
            Some("epoch,frechet,diversity_fake,diversity_real")
        );
        let back: Vec<FrechetRow> = parse_rows(Path::new("frechet.csv"), &text).unwrap();
        assert_eq!(back, rows);
    }
}
