//! PNG charts drawn with plotters into an RGB buffer and encoded with `image`.
//!
//! Text uses the bundled DejaVu Sans (registered once as "sans-serif"), so no system font or
//! fontconfig is needed.

use crate::data::FAKE;
use crate::error::{Error, Result, write_file};
use crate::eval::{Confusion, roc_auc, roc_curve};
use crate::run::EpochRow;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::OnceLock;

static FONT: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Colours (matplotlib's tab10), cycled for series.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const REAL_COLOR: RGBColor = PALETTE[0];
const FAKE_COLOR: RGBColor = PALETTE[3];

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Register the bundled font with plotters, once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(
            "the bundled font assets/fonts/DejaVuSans.ttf could not be parsed".into(),
        ))
    }
}

/// Draw on a white `width`×`height` canvas and write it to `path` as PNG.
pub(crate) fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<()> {
    ensure_font()?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        draw(&root).map_err(|e| Error::output(path, format!("cannot draw: {e}")))?;
        root.present()
            .map_err(|e| Error::output(path, format!("cannot draw: {e}")))?;
    }
    let img = image::RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| Error::output(path, "image buffer has the wrong size"))?;
    let mut png = Vec::new();
    img.write_with_encoder(image::codecs::png::PngEncoder::new(&mut png))
        .map_err(|e| Error::output(path, format!("cannot encode PNG: {e}")))?;
    write_file(path, png)
}

fn font(size: u32) -> FontDesc<'static> {
    (FAMILY, size).into_font()
}

/// (min, max) of the finite values, padded; a fallback range when there are none.
fn padded_range(values: impl IntoIterator<Item = f64>, pad_fraction: f64) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * pad_fraction
    } else {
        lo.abs().max(1e-3) * 0.05 + 1e-3
    };
    (lo - pad, hi + pad)
}

/// Decimals for tick labels over a span of `span`.
fn tick_digits(span: f64) -> usize {
    if span >= 5.0 {
        1
    } else if span >= 0.5 {
        2
    } else if span >= 0.05 {
        3
    } else {
        4
    }
}

fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
}

fn legend_box(color: RGBColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
}

/// The last epoch of any series, at least 2 so the x axis has a span.
fn last_epoch<S>(series: &[(S, Vec<(usize, f64)>)]) -> usize {
    series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(2)
}

/// x-axis labels on whole epochs only.
fn whole_epoch_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

type EpochChart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Each series as a line with a marker per epoch (so one epoch still shows), legend entries
/// included; non-finite values are left out.
fn draw_epoch_series<S: AsRef<str>>(
    chart: &mut EpochChart<'_, '_>,
    series: &[(S, Vec<(usize, f64)>)],
    marker_radius: u32,
) -> DrawResult {
    for (i, (name, points)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(e, v)| (e as f64, v))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name.as_ref())
            .legend(legend_line(color));
        chart.draw_series(
            pts.into_iter()
                .map(|p| Circle::new(p, marker_radius, color.filled())),
        )?;
    }
    Ok(())
}

/// One or more named series over epochs, with markers (so one epoch still shows).
pub(crate) fn epoch_chart(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[(&str, Vec<(usize, f64)>)],
    log_like: bool,
) -> Result<()> {
    let max_epoch = last_epoch(series);
    let min_epoch = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.0))
        .min()
        .unwrap_or(1)
        .min(max_epoch - 1);
    let (mut lo, hi) = padded_range(series.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)), 0.08);
    if log_like {
        // Learning rates: anchor at zero so warm-up and decay read as such.
        lo = 0.0;
    }
    let digits = tick_digits(hi - lo);
    render(path, (800, 500), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(min_epoch as f64..max_epoch as f64, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(y_desc)
            .x_labels((max_epoch - min_epoch + 1).min(12))
            .x_label_formatter(&whole_epoch_label)
            .y_label_formatter(&|y| {
                if log_like {
                    format!("{y:.1e}")
                } else {
                    format!("{y:.digits$}")
                }
            })
            .label_style(font(14))
            .draw()?;
        draw_epoch_series(&mut chart, series, 3)?;
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .label_font(font(14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }
        Ok(())
    })
}

/// `loss.png`, `accuracy.png` and `lr.png` from a run's metrics.
pub(crate) fn curve_plots(dir: &Path, rows: &[EpochRow]) -> Vec<(String, Result<()>)> {
    type Series = (&'static str, fn(&EpochRow) -> f64);
    let charts: [(&str, &str, &str, &[Series], bool); 3] = [
        (
            "loss.png",
            "Loss",
            "cross-entropy",
            &[("train", |r| r.train_loss), ("validation", |r| r.val_loss)],
            false,
        ),
        (
            "accuracy.png",
            "Accuracy",
            "accuracy",
            &[
                ("train", |r| r.train_accuracy),
                ("validation (threshold 0.5)", |r| r.val_accuracy),
            ],
            false,
        ),
        (
            "lr.png",
            "Learning rate (last step of each epoch)",
            "learning rate",
            &[("lr", |r| r.lr)],
            true,
        ),
    ];
    charts
        .iter()
        .map(|(file, title, y_desc, series, log_like)| {
            let data: Vec<(&str, Vec<(usize, f64)>)> = series
                .iter()
                .map(|(name, pick)| (*name, rows.iter().map(|r| (r.epoch, pick(r))).collect()))
                .collect();
            let result = epoch_chart(&dir.join(file), title, y_desc, &data, *log_like);
            (file.to_string(), result)
        })
        .collect()
}

/// ROC curves, one per named score set, with the AUC in the legend.
pub fn roc_plot(path: &Path, sets: &[(&str, &[f32], &[u8])]) -> Result<()> {
    let curves = sets
        .iter()
        .map(|(name, scores, labels)| {
            let auc = roc_auc(scores, labels);
            let label = format!("{name}: AUC {auc:.4} (n={})", scores.len());
            (label, roc_curve(scores, labels))
        })
        .collect();
    let axes = (
        "false-positive rate (REAL called FAKE)",
        "true-positive rate (FAKE caught)",
    );
    unit_square_curves(path, "ROC curve (FAKE = positive)", axes, curves, false)
}

/// Curves on [0, 1]² with the diagonal for reference (ROC, reliability): one colour and legend
/// entry per curve, dots on the points when `dots`.
fn unit_square_curves(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    curves: Vec<(String, Vec<(f64, f64)>)>,
    dots: bool,
) -> Result<()> {
    render(path, (640, 600), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(22))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(font(14))
            .draw()?;
        chart.draw_series(LineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            RGBColor(170, 170, 170).stroke_width(1),
        ))?;
        for (i, (label, points)) in curves.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(label.as_str())
                .legend(legend_line(color));
            if dots {
                chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .label_font(font(15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        Ok(())
    })
}

/// 2×2 confusion matrix: rows are the true class, columns the predicted one (REAL, FAKE).
pub fn confusion_plot(
    path: &Path,
    confusion: &Confusion,
    threshold: f32,
    set_name: &str,
) -> Result<()> {
    // cells[true][pred]
    let cells = [[confusion.tn, confusion.fp], [confusion.fn_, confusion.tp]];
    render(path, (560, 520), |root| {
        root.fill(&WHITE)?;
        let title = format!("Confusion matrix: {set_name}, threshold {threshold:.3}");
        root.draw(&Text::new(
            title,
            (280, 22),
            font(19)
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        let (x0, y0, cell) = (150i32, 110i32, 180i32);
        let names = crate::data::CLASS_NAMES;
        root.draw(&Text::new(
            "predicted",
            (x0 + cell, y0 - 50),
            font(16)
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        root.draw(&Text::new(
            "true",
            (28, y0 + cell),
            font(16)
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        for (i, name) in names.iter().enumerate() {
            let c = i as i32;
            root.draw(&Text::new(
                *name,
                (x0 + c * cell + cell / 2, y0 - 18),
                font(16)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
            root.draw(&Text::new(
                *name,
                (x0 - 14, y0 + c * cell + cell / 2),
                font(16)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
        }
        for (t, row) in cells.iter().enumerate() {
            let row_total = row.iter().sum::<usize>().max(1) as f64;
            for (p, &count) in row.iter().enumerate() {
                let share = count as f64 / row_total;
                // Correct cells in blue, errors in red; darker for a larger share of the row.
                let base = if t == p { PALETTE[0] } else { PALETTE[3] };
                let mix =
                    |c: u8| (255.0 - (255.0 - c as f64) * (0.12 + 0.88 * share)).round() as u8;
                let fill = RGBColor(mix(base.0), mix(base.1), mix(base.2));
                let (cx, cy) = (x0 + p as i32 * cell, y0 + t as i32 * cell);
                root.draw(&Rectangle::new(
                    [(cx, cy), (cx + cell, cy + cell)],
                    fill.filled(),
                ))?;
                root.draw(&Rectangle::new(
                    [(cx, cy), (cx + cell, cy + cell)],
                    BLACK.stroke_width(1),
                ))?;
                let ink = if share > 0.55 { WHITE } else { BLACK };
                let centre = (cx + cell / 2, cy + cell / 2);
                root.draw(&Text::new(
                    count.to_string(),
                    (centre.0, centre.1 - 12),
                    font(26)
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                ))?;
                root.draw(&Text::new(
                    format!("{:.1}% of true {}", share * 100.0, names[t]),
                    (centre.0, centre.1 + 20),
                    font(13)
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                ))?;
            }
        }
        Ok(())
    })
}

/// Per-class histograms of p_fake with the decision threshold marked.
pub fn histogram_plot(path: &Path, scores: &[f32], labels: &[u8], threshold: f32) -> Result<()> {
    const BINS: usize = 40;
    let mut counts = [[0usize; BINS]; 2];
    for (&s, &l) in scores.iter().zip(labels) {
        if s.is_finite() {
            let bin = ((s.clamp(0.0, 1.0) * BINS as f32) as usize).min(BINS - 1);
            counts[(l == FAKE) as usize][bin] += 1;
        }
    }
    // Headroom above the tallest bar keeps the legend (upper right) off the bars.
    let top = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64 * 1.3;
    render(path, (820, 500), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption("Scores by true class", font(22))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..1.0, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("p_fake")
            .y_desc("images")
            .y_label_formatter(&|y| {
                if (y - y.round()).abs() < 1e-6 {
                    format!("{y:.0}")
                } else {
                    String::new()
                }
            })
            .label_style(font(14))
            .draw()?;
        for (class, color) in [(0usize, REAL_COLOR), (1, FAKE_COLOR)] {
            let n = counts[class].iter().sum::<usize>();
            let bars = counts[class]
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(move |(b, &c)| {
                    let (lo, hi) = (b as f64 / BINS as f64, (b + 1) as f64 / BINS as f64);
                    Rectangle::new([(lo, 0.0), (hi, c as f64)], color.mix(0.5).filled())
                });
            chart
                .draw_series(bars)?
                .label(format!("true {} (n={n})", crate::data::CLASS_NAMES[class]))
                .legend(legend_box(color));
        }
        let t = threshold as f64;
        chart
            .draw_series(LineSeries::new(
                vec![(t, 0.0), (t, top)],
                BLACK.stroke_width(2),
            ))?
            .label(format!("threshold {threshold:.3}"))
            .legend(legend_line(RGBColor(0, 0, 0)));
        chart
            .configure_series_labels()
            .label_font(font(14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    })
}

/// The y range of a bar chart of (mean, std) values: bars start below the lowest value (so
/// differences show) and leave room on top for value labels and the legend.
fn bar_range(values: &[Vec<(f64, f64)>]) -> (f64, f64) {
    let finite = values.iter().flatten().filter(|v| v.0.is_finite());
    let lowest = finite
        .clone()
        .map(|v| v.0 - v.1.max(0.0))
        .fold(f64::INFINITY, f64::min);
    let highest = finite
        .map(|v| v.0 + v.1.max(0.0))
        .fold(f64::NEG_INFINITY, f64::max);
    if !lowest.is_finite() {
        return (0.0, 1.0);
    }
    let lo = ((lowest - 0.02) * 20.0).floor().max(0.0) / 20.0;
    (lo, highest + ((highest - lo) * 0.35).max(0.02))
}

/// `name` cut to `max` characters, the last one an ellipsis when cut.
fn shorten(name: &str, max: usize) -> String {
    if name.chars().count() > max {
        name.chars().take(max - 1).chain(['…']).collect()
    } else {
        name.to_string()
    }
}

/// One bar group per variant with a bar per metric; `values[v][m]` is (mean, std), NaN for none.
pub fn grouped_bars(
    path: &Path,
    title: &str,
    variants: &[String],
    metrics: &[&str],
    values: &[Vec<(f64, f64)>],
) -> Result<()> {
    let n = variants.len().max(1);
    let width = (220 + 150 * n as u32).clamp(700, 4000);
    let (lo, hi) = bar_range(values);
    render(path, (width, 560), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(22))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..n as f64, lo..hi)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&|y| format!("{y:.3}"))
            .label_style(font(14))
            .draw()?;
        let slot = 0.8 / metrics.len().max(1) as f64;
        for (m, metric) in metrics.iter().enumerate() {
            let color = PALETTE[m % PALETTE.len()];
            let bars: Vec<_> = values
                .iter()
                .enumerate()
                .filter_map(|(v, row)| row.get(m).filter(|x| x.0.is_finite()).map(|x| (v, *x)))
                .collect();
            let x_of = |v: usize| v as f64 + 0.1 + slot * m as f64;
            chart
                .draw_series(bars.iter().map(|&(v, (mean, _))| {
                    Rectangle::new(
                        [
                            (x_of(v) + slot * 0.08, lo),
                            (x_of(v) + slot * 0.92, mean.max(lo)),
                        ],
                        color.filled(),
                    )
                }))?
                .label(*metric)
                .legend(legend_box(color));
            // ± one standard deviation.
            for &(v, (mean, std)) in bars.iter().filter(|b| b.1.1 > 0.0) {
                let x = x_of(v) + slot / 2.0;
                let (a, b) = ((mean - std).max(lo), (mean + std).min(hi));
                let w = slot * 0.2;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![
                        (x - w, a),
                        (x + w, a),
                        (x, a),
                        (x, b),
                        (x - w, b),
                        (x + w, b),
                    ],
                    BLACK.stroke_width(1),
                )))?;
            }
            for &(v, (mean, std)) in &bars {
                let (px, py) =
                    chart.backend_coord(&(x_of(v) + slot / 2.0, (mean + std.max(0.0)).min(hi)));
                root.draw(&Text::new(
                    format!("{mean:.3}"),
                    (px, py - 3),
                    font(12)
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                ))?;
            }
        }
        for (v, name) in variants.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(v as f64 + 0.5, lo));
            root.draw(&Text::new(
                shorten(name, 24),
                (px, py + 10),
                font(14)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
        chart
            .configure_series_labels()
            .label_font(font(14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    })
}

/// Validation accuracy per epoch, one line per run.
pub(crate) fn run_curves(path: &Path, runs: &[(String, Vec<(usize, f64)>)]) -> Result<()> {
    let max_epoch = last_epoch(runs);
    let (lo, hi) = padded_range(runs.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)), 0.08);
    let height = (520 + 18 * runs.len().saturating_sub(8) as u32).min(2000);
    render(path, (900, height), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption("Validation accuracy per epoch", font(22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(1.0..max_epoch as f64, lo..hi.min(1.0).max(lo + 1e-3))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("validation accuracy (threshold 0.5)")
            .x_labels(max_epoch.min(12))
            .x_label_formatter(&whole_epoch_label)
            .y_label_formatter(&|y| format!("{y:.3}"))
            .label_style(font(14))
            .draw()?;
        draw_epoch_series(&mut chart, runs, 2)?;
        chart
            .configure_series_labels()
            .label_font(font(13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        Ok(())
    })
}

/// `roc.png`, `confusion.png` and `histogram.png` for any model on any labelled data.
pub fn write_evaluation_plots(
    dir: &Path,
    scores: &[f32],
    labels: &[u8],
    threshold: f32,
) -> Result<()> {
    if scores.len() != labels.len() {
        return Err(Error::Invalid(format!(
            "{} scores but {} labels",
            scores.len(),
            labels.len()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    roc_plot(&dir.join("roc.png"), &[("data", scores, labels)])?;
    let confusion = Confusion::from_scores(scores, labels, threshold);
    confusion_plot(&dir.join("confusion.png"), &confusion, threshold, "data")?;
    histogram_plot(&dir.join("histogram.png"), scores, labels, threshold)?;
    reliability_plot(&dir.join("reliability.png"), &[("data", scores, labels)])
}

/// Observed share of FAKE against mean p_fake in 15 equal-width bins of p_fake: points on the
/// diagonal are calibrated.
fn reliability_points(scores: &[f32], labels: &[u8]) -> Vec<(f64, f64)> {
    let bins = crate::decision::calibration::ECE_BINS;
    let mut sum = vec![(0f64, 0f64, 0usize); bins];
    for (&p, &l) in scores.iter().zip(labels) {
        let b = ((p as f64 * bins as f64) as usize).min(bins - 1);
        sum[b].0 += p as f64;
        sum[b].1 += l as f64;
        sum[b].2 += 1;
    }
    sum.iter()
        .filter(|b| b.2 > 0)
        .map(|b| (b.0 / b.2 as f64, b.1 / b.2 as f64))
        .collect()
}

/// Reliability diagram of one or more score sets, with each set's ECE in the legend.
pub fn reliability_plot(path: &Path, sets: &[(&str, &[f32], &[u8])]) -> Result<()> {
    use crate::decision::calibration::{ECE_BINS, ece};
    let curves = sets
        .iter()
        .map(|(name, scores, labels)| {
            let e = ece(scores, labels, ECE_BINS);
            let label = format!("{name}: ECE {e:.4} (n={})", scores.len());
            (label, reliability_points(scores, labels))
        })
        .collect();
    let axes = ("mean p_fake in the bin", "share of FAKE images in the bin");
    unit_square_curves(path, "Reliability (calibration)", axes, curves, true)
}
