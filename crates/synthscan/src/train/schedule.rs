//! Learning-rate schedules, per optimisation step.

use crate::config::{ScheduleConfig, ScheduleKind};

#[derive(Clone, Debug)]
pub struct Schedule {
    cfg: ScheduleConfig,
    peak: f64,
    steps_per_epoch: usize,
    total_steps: usize,
    /// Current multiplier of the plateau schedule.
    pub plateau_scale: f64,
}

impl Schedule {
    pub fn new(cfg: &ScheduleConfig, peak: f64, steps_per_epoch: usize, epochs: usize) -> Self {
        Self {
            cfg: cfg.clone(),
            peak,
            steps_per_epoch: steps_per_epoch.max(1),
            total_steps: (steps_per_epoch * epochs).max(1),
            plateau_scale: 1.0,
        }
    }

    /// Learning rate at optimisation step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        let floor = self.peak * self.cfg.min_lr_fraction;
        let t = step as f64 / self.total_steps as f64;
        let warm = match self.cfg.kind {
            ScheduleKind::OneCycle if self.cfg.warmup_fraction == 0.0 => 0.15,
            _ => self.cfg.warmup_fraction,
        };
        if warm > 0.0 && t < warm {
            return self.peak * ((step + 1) as f64 / (warm * self.total_steps as f64)).min(1.0);
        }
        let after = if warm < 1.0 {
            ((t - warm) / (1.0 - warm)).clamp(0.0, 1.0)
        } else {
            1.0
        };
        match self.cfg.kind {
            ScheduleKind::Constant => self.peak,
            ScheduleKind::Step => {
                let epoch = step / self.steps_per_epoch;
                self.peak
                    * self
                        .cfg
                        .gamma
                        .powi((epoch / self.cfg.step_epochs.max(1)) as i32)
            }
            ScheduleKind::Cosine => {
                floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * after).cos())
            }
            ScheduleKind::OneCycle => floor + (self.peak - floor) * (1.0 - after),
            ScheduleKind::Plateau => (self.peak * self.plateau_scale).max(floor),
        }
    }
}

/// Tracks epochs without improvement of a minimised quantity.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Patience {
    pub best: Option<f64>,
    pub best_epoch: usize,
    pub bad_epochs: usize,
}

impl Patience {
    /// Record `value` (lower is better); returns true when it improved by more than `min_delta`.
    pub fn observe(&mut self, epoch: usize, value: f64, min_delta: f64) -> bool {
        match self.best {
            Some(b) if value >= b - min_delta => {
                self.bad_epochs += 1;
                false
            }
            _ => {
                self.best = Some(value);
                self.best_epoch = epoch;
                self.bad_epochs = 0;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: ScheduleKind) -> ScheduleConfig {
        ScheduleConfig {
            kind,
            ..Default::default()
        }
    }

    #[test]
    fn shapes_of_schedules() {
        let s = Schedule::new(&cfg(ScheduleKind::Cosine), 1.0, 10, 10);
        assert!((s.lr(0) - 1.0).abs() < 1e-3);
        assert!((s.lr(50) - 0.5).abs() < 1e-2);
        assert!(s.lr(99) < 0.01);

        let s = Schedule::new(&cfg(ScheduleKind::OneCycle), 1.0, 10, 10);
        assert!(s.lr(0) < 0.1);
        assert!((s.lr(14) - 1.0).abs() < 1e-9);
        assert!(s.lr(99) < 0.02);
        assert!(s.lr(60) < s.lr(30));

        let s = Schedule::new(
            &ScheduleConfig {
                step_epochs: 3,
                gamma: 0.5,
                ..cfg(ScheduleKind::Step)
            },
            1.0,
            10,
            10,
        );
        assert_eq!(s.lr(29), 1.0);
        assert_eq!(s.lr(30), 0.5);
        assert_eq!(s.lr(65), 0.25);

        let mut s = Schedule::new(&cfg(ScheduleKind::Plateau), 1.0, 10, 10);
        s.plateau_scale = 0.1;
        assert!((s.lr(5) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn patience_counts_bad_epochs() {
        let mut p = Patience::default();
        assert!(p.observe(1, 1.0, 0.0));
        assert!(!p.observe(2, 1.0, 0.0));
        assert!(!p.observe(3, 1.5, 0.0));
        assert_eq!(p.bad_epochs, 2);
        assert!(p.observe(4, 0.5, 0.0));
        assert_eq!((p.best_epoch, p.bad_epochs), (4, 0));
    }
}
