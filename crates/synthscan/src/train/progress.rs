//! What training tells the person watching: a progress bar per epoch on a terminal, and one
//! line per epoch and per event otherwise (nothing when quiet).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

pub struct Progress {
    quiet: bool,
    interactive: bool,
}

/// The bar of one epoch, with the running loss, accuracy and speed.
pub struct EpochBar {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            interactive: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// One line on stderr unless quiet.
    pub fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    pub fn epoch(&self, epoch: usize, epochs: usize, steps: usize) -> EpochBar {
        let bar = self.interactive.then(|| {
            let b = ProgressBar::new(steps as u64);
            b.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(format!("{epoch}/{epochs}"));
            b
        });
        EpochBar {
            bar,
            started: Instant::now(),
        }
    }
}

impl EpochBar {
    /// Advance by one step; refresh the message every ten steps.
    pub fn step(&self, step: usize, loss_sum: f64, correct: usize, seen: usize) {
        let Some(bar) = &self.bar else { return };
        bar.inc(1);
        if step.is_multiple_of(10) && seen > 0 {
            let rate = seen as f64 / self.started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4} acc {:.4} {:.0} img/s",
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                rate
            ));
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
