//! What a long command shows the person watching, drawn from the library's progress events.
//! A training run: a bar per epoch on a terminal, the library's lines (run started, epoch
//! summaries, the end) on stderr, and nothing when quiet; `train` and `gan train` draw through
//! [`Bars`]. A pass over files (`predict`, `evaluate`, `robustness`): one bar of files done of
//! the total, images per second and time left ([`FileBar`]); one such bar per stage for
//! `adapt` ([`StageBars`]). Bars go to stderr, only when it
//! is a terminal, never when quiet, and never into stdout.

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use synthscan::progress::Tally;
use synthscan::run::{FinishedRun, Progress, RunDir, RunObserver, Running};

/// The bar of a pass over files, told by the library ([`Tally`]) from its decoding threads.
pub struct FileBar {
    interactive: bool,
    bar: OnceLock<ProgressBar>,
}

impl FileBar {
    /// A bar on stderr when it is a terminal and not `quiet`; else nothing is drawn.
    pub fn new(quiet: bool) -> Self {
        Self::drawn(!quiet && std::io::stderr().is_terminal())
    }

    fn drawn(interactive: bool) -> Self {
        Self {
            interactive,
            bar: OnceLock::new(),
        }
    }

    /// Take the bar off the terminal (before the command prints its results).
    pub fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

impl Tally for FileBar {
    fn start(&self, total: usize) {
        if self.interactive {
            let _ = self.bar.set(files_bar(total as u64));
        }
    }

    fn advance(&self, n: usize) {
        if let Some(bar) = self.bar.get() {
            bar.inc(n as u64);
        }
    }
}

impl Drop for FileBar {
    fn drop(&mut self) {
        self.finish();
    }
}

fn files_bar(total: u64) -> ProgressBar {
    let b = ProgressBar::new(total);
    b.set_style(
        ProgressStyle::with_template("{prefix}[{bar:30}] {pos}/{len} files  {rate}  {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} images/s", s.per_sec());
            })
            .progress_chars("=> "),
    );
    b
}

/// One [`FileBar`] per stage of a command that passes over several sets of files in turn
/// (`adapt`: the corrections, the replay sample, the base validation sample), named on its
/// line; told `(stage, done, total)` from any thread.
pub struct StageBars {
    interactive: bool,
    current: std::sync::Mutex<Option<(String, ProgressBar)>>,
}

impl StageBars {
    /// Bars on stderr when it is a terminal and not `quiet`; else nothing is drawn.
    pub fn new(quiet: bool) -> Self {
        Self {
            interactive: !quiet && std::io::stderr().is_terminal(),
            current: std::sync::Mutex::new(None),
        }
    }

    /// `done` of `total` files of `stage` are done.
    pub fn show(&self, stage: &str, done: usize, total: usize) {
        if !self.interactive {
            return;
        }
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        if current.as_ref().is_none_or(|(name, _)| name != stage) {
            if let Some((_, old)) = current.take() {
                old.finish();
            }
            let bar = files_bar(total as u64);
            bar.set_prefix(stage.to_string());
            *current = Some((stage.to_string(), bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_position(done as u64);
        }
    }

    /// The last stage's bar left on the terminal, finished.
    pub fn finish(&self) {
        if let Ok(mut current) = self.current.lock()
            && let Some((_, bar)) = current.take()
        {
            bar.finish();
        }
    }
}

/// The bar of the epoch under way (on a terminal) and the lines of a run.
pub struct Bars {
    quiet: bool,
    interactive: bool,
    bar: Option<ProgressBar>,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            interactive: !quiet && std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    pub fn show(&mut self, event: &Progress) {
        match *event {
            Progress::Message(line) if !self.quiet => eprintln!("{line}"),
            Progress::Message(_) => {}
            Progress::EpochStarted {
                epoch,
                epochs,
                steps,
            } => self.bar = self.interactive.then(|| epoch_bar(epoch, epochs, steps)),
            Progress::Step {
                step,
                running,
                images_per_second,
            } => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    if let Some(msg) = running_message(step, running, images_per_second) {
                        bar.set_message(msg);
                    }
                }
            }
            Progress::EpochSteps => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }
}

fn epoch_bar(epoch: usize, epochs: usize, steps: usize) -> ProgressBar {
    let b = ProgressBar::new(steps as u64);
    b.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_prefix(format!("{epoch}/{epochs}"));
    b
}

/// The bar's message after step `step` (from 0): a detector's every ten steps, a GAN's every
/// step.
fn running_message(step: usize, running: Running, images_per_second: f64) -> Option<String> {
    match running {
        Running::Detector { loss, accuracy } => step
            .is_multiple_of(10)
            .then(|| format!("loss {loss:.4} acc {accuracy:.4} {images_per_second:.0} img/s")),
        Running::Adversarial { d_loss, g_loss } => Some(format!(
            "D {d_loss:.3} G {g_loss:.3} {images_per_second:.0} img/s"
        )),
    }
}

/// Another observer (plots and reports of a run, or nothing) with the progress drawn by
/// [`Bars`].
pub struct Watched<O> {
    pub inner: O,
    pub bars: Bars,
}

impl<O: RunObserver> Watched<O> {
    pub fn new(inner: O, quiet: bool) -> Self {
        Self {
            inner,
            bars: Bars::new(quiet),
        }
    }
}

impl<O: RunObserver> RunObserver for Watched<O> {
    fn progress(&mut self, event: &Progress) {
        self.bars.show(event);
        self.inner.progress(event);
    }
    fn epoch_finished(&mut self, dir: &RunDir) {
        self.inner.epoch_finished(dir);
    }
    fn run_finished(&mut self, run: &FinishedRun) {
        self.inner.run_finished(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detector_bar_refreshes_every_ten_steps_and_a_gan_bar_every_step() {
        let det = Running::Detector {
            loss: 0.5,
            accuracy: 0.75,
        };
        assert_eq!(
            running_message(0, det, 123.4).as_deref(),
            Some("loss 0.5000 acc 0.7500 123 img/s")
        );
        assert_eq!(running_message(7, det, 123.4), None);
        assert!(running_message(20, det, 1.0).is_some());
        let gan = Running::Adversarial {
            d_loss: 1.0,
            g_loss: 0.25,
        };
        assert_eq!(
            running_message(7, gan, 99.6).as_deref(),
            Some("D 1.000 G 0.250 100 img/s")
        );
    }

    #[test]
    fn a_file_bar_counts_on_a_terminal_and_draws_nothing_elsewhere() {
        let bar = FileBar::drawn(true);
        bar.start(10);
        bar.advance(3);
        assert_eq!(
            bar.bar.get().map(|b| (b.position(), b.length())),
            Some((3, Some(10)))
        );
        bar.finish();
        let off = FileBar::drawn(false);
        off.start(10);
        off.advance(1);
        assert!(off.bar.get().is_none());
        assert!(FileBar::new(true).bar.get().is_none());
    }

    #[test]
    fn quiet_bars_draw_nothing() {
        let mut bars = Bars::new(true);
        bars.show(&Progress::EpochStarted {
            epoch: 1,
            epochs: 2,
            steps: 3,
        });
        assert!(bars.bar.is_none() && bars.quiet());
    }
}
