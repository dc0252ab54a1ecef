//! Learning-rate schedules (the paper's multistep in iterations, the ResNet-110 warm-up,
//! epoch-based multistep, cosine with warm-up, constant) and manual overrides on top of them.

use serde::{Deserialize, Serialize};

use crate::config::ScheduleConfig;
use crate::protocol::LrSource;

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    /// LR times `gamma` at each milestone (in steps).
    MultiStep(Vec<u64>),
    Cosine {
        warmup_steps: u64,
        min_lr: f64,
    },
    Constant,
}

/// What a manual change does to the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManualPolicy {
    /// The manual LR holds until "back to schedule".
    Hold,
    /// The manual LR holds until the schedule's next change point.
    NextMilestone,
    /// The rest of the schedule is scaled by manual / planned.
    Rescale,
}

/// The planned schedule of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    base_lr: f64,
    gamma: f64,
    kind: Kind,
    /// ResNet-110 warm-up: (lr, leave when the training error is below this, at most steps).
    warmup: Option<(f64, f64, u64)>,
    max_steps: u64,
    policy: ManualPolicy,
}

impl Schedule {
    pub fn from_config(c: &ScheduleConfig, max_steps: u64, steps_per_epoch: u64) -> Schedule {
        let kind = match c.kind.as_str() {
            "multistep" => Kind::MultiStep(c.milestones.clone()),
            "multistep_epochs" => Kind::MultiStep(
                c.milestones
                    .iter()
                    .map(|e| e * steps_per_epoch.max(1))
                    .collect(),
            ),
            "cosine" => Kind::Cosine {
                warmup_steps: c.warmup_steps,
                min_lr: c.min_lr,
            },
            _ => Kind::Constant,
        };
        let policy = match c.manual.as_str() {
            "next_milestone" => ManualPolicy::NextMilestone,
            "rescale" => ManualPolicy::Rescale,
            _ => ManualPolicy::Hold,
        };
        let warmup =
            (c.warmup_lr > 0.0).then_some((c.warmup_lr, c.warmup_until_err, c.warmup_max_steps));
        Schedule {
            base_lr: c.lr,
            gamma: c.gamma,
            kind,
            warmup,
            max_steps,
            policy,
        }
    }

    /// The paper's CIFAR schedule: 0.1, divided by 10 at 32k and 48k, stop at 64k.
    pub fn paper() -> Schedule {
        Schedule {
            base_lr: 0.1,
            gamma: 0.1,
            kind: Kind::MultiStep(vec![32_000, 48_000]),
            warmup: None,
            max_steps: 64_000,
            policy: ManualPolicy::Hold,
        }
    }

    /// The scheduled LR at `step` once any warm-up is over.
    fn after_warmup(&self, step: u64) -> f64 {
        match &self.kind {
            Kind::MultiStep(ms) => {
                let passed = ms.iter().filter(|m| step >= **m).count() as i32;
                self.base_lr * self.gamma.powi(passed)
            }
            Kind::Cosine {
                warmup_steps,
                min_lr,
            } => {
                if step < *warmup_steps {
                    return self.base_lr * (step + 1) as f64 / *warmup_steps as f64;
                }
                let span = self.max_steps.saturating_sub(*warmup_steps).max(1) as f64;
                let t = ((step - warmup_steps) as f64 / span).min(1.0);
                min_lr + (self.base_lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Kind::Constant => self.base_lr,
        }
    }

    /// The planned LR at `step`, assuming a warm-up lasts its maximum number of steps.
    pub fn planned(&self, step: u64) -> f64 {
        match self.warmup {
            Some((lr, _, steps)) if step < steps => lr,
            _ => self.after_warmup(step),
        }
    }

    /// The planned schedule of the whole run as (step, lr) breakpoints, for drawing ahead.
    pub fn series(&self) -> Vec<(u64, f64)> {
        let mut points: Vec<u64> = vec![0];
        if let Some((_, _, steps)) = self.warmup {
            points.push(steps);
        }
        match &self.kind {
            Kind::MultiStep(ms) => points.extend(ms.iter().copied()),
            Kind::Cosine { warmup_steps, .. } => {
                points.extend((0..=200).map(|i| i * self.max_steps / 200));
                points.extend(0..(*warmup_steps).min(200));
            }
            Kind::Constant => {}
        }
        points.retain(|p| *p < self.max_steps);
        points.sort_unstable();
        points.dedup();
        let mut out: Vec<(u64, f64)> = Vec::new();
        for p in points {
            let lr = self.planned(p);
            if out.last().is_none_or(|(_, last)| *last != lr) {
                out.push((p, lr));
            }
        }
        out
    }

    /// The first step after `step` where the planned LR changes, if any.
    fn next_change(&self, step: u64) -> Option<u64> {
        self.series()
            .into_iter()
            .map(|(s, _)| s)
            .find(|s| *s > step)
    }
}

/// The part of the LR control that a checkpoint must carry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LrState {
    /// A manual LR in force, and the step it was set at.
    pub manual: Option<(f64, u64)>,
    /// Under the "rescale" policy: the factor applied to the rest of the schedule.
    pub scale: Option<f64>,
    pub warmup_done: bool,
}

/// A schedule with manual overrides: the LR to use at each step, and where it came from.
#[derive(Clone, Debug)]
pub struct LrControl {
    pub schedule: Schedule,
    pub state: LrState,
}

impl LrControl {
    pub fn new(schedule: Schedule) -> LrControl {
        LrControl {
            schedule,
            state: LrState::default(),
        }
    }

    fn scheduled(&self, step: u64) -> f64 {
        match self.schedule.warmup {
            Some((lr, _, steps)) if !self.state.warmup_done && step < steps => lr,
            _ => self.schedule.after_warmup(step),
        }
    }

    /// The LR for `step` and its source.
    pub fn lr_at(&mut self, step: u64) -> (f64, LrSource) {
        if let Some((lr, since)) = self.state.manual {
            let expired = self.schedule.policy == ManualPolicy::NextMilestone
                && self.schedule.next_change(since).is_some_and(|c| step >= c);
            if !expired {
                return (lr, LrSource::Manual);
            }
            self.state.manual = None;
        }
        match self.state.scale {
            Some(k) => (k * self.scheduled(step), LrSource::Manual),
            None => (self.scheduled(step), LrSource::Schedule),
        }
    }

    /// Sets an exact LR from `step` on (by hand).
    pub fn set_manual(&mut self, lr: f64, step: u64) {
        if self.schedule.policy == ManualPolicy::Rescale {
            self.state.scale = Some(lr / self.scheduled(step));
        } else {
            self.state.manual = Some((lr, step));
        }
    }

    pub fn back_to_schedule(&mut self) {
        self.state.manual = None;
        self.state.scale = None;
    }

    /// Ends a ResNet-110 style warm-up once the training error is low enough.
    pub fn observe_train_error(&mut self, err: f64) {
        if let Some((_, until, _)) = self.schedule.warmup
            && err < until
        {
            self.state.warmup_done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: &str) -> ScheduleConfig {
        ScheduleConfig {
            kind: kind.into(),
            milestones: vec![100, 200],
            ..ScheduleConfig::default()
        }
    }

    #[test]
    fn the_paper_schedule_divides_by_ten_at_32k_and_48k() {
        let s = Schedule::paper();
        assert_eq!(s.planned(0), 0.1);
        assert!((s.planned(31_999) - 0.1).abs() < 1e-12);
        assert!((s.planned(32_000) - 0.01).abs() < 1e-12);
        assert!((s.planned(48_000) - 0.001).abs() < 1e-12);
        let series = s.series();
        assert_eq!(series.len(), 3);
        assert_eq!(series[1].0, 32_000);
        assert_eq!(series[2].0, 48_000);
    }

    #[test]
    fn epoch_milestones_are_converted_to_steps() {
        let s = Schedule::from_config(&config("multistep_epochs"), 100_000, 10);
        assert!((s.planned(999) - 0.1).abs() < 1e-12);
        assert!((s.planned(1000) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn the_warm_up_ends_when_the_training_error_drops_below_the_threshold() {
        let c = ScheduleConfig {
            warmup_lr: 0.01,
            warmup_max_steps: 400,
            milestones: vec![500, 800],
            ..config("multistep")
        };
        let mut lr = LrControl::new(Schedule::from_config(&c, 1000, 10));
        assert_eq!(lr.lr_at(5).0, 0.01);
        lr.observe_train_error(0.85);
        assert_eq!(lr.lr_at(6).0, 0.01);
        lr.observe_train_error(0.79);
        assert_eq!(lr.lr_at(7).0, 0.1);
        // Without the error dropping, the warm-up ends after its maximum number of steps.
        let mut lr = LrControl::new(Schedule::from_config(&c, 1000, 10));
        assert_eq!(lr.lr_at(400).0, 0.1);
        assert_eq!(lr.schedule.series()[0], (0, 0.01));
    }

    #[test]
    fn cosine_starts_with_a_linear_warm_up_and_ends_at_min_lr() {
        let c = ScheduleConfig {
            warmup_steps: 10,
            min_lr: 0.001,
            ..config("cosine")
        };
        let s = Schedule::from_config(&c, 1000, 10);
        assert!((s.planned(0) - 0.01).abs() < 1e-12);
        assert!((s.planned(10) - 0.1).abs() < 1e-12);
        assert!((s.planned(1000) - 0.001).abs() < 1e-9);
        assert!(s.planned(500) < 0.1 && s.planned(500) > 0.001);
    }

    #[test]
    fn a_manual_lr_holds_until_back_to_schedule() {
        let mut lr = LrControl::new(Schedule::from_config(&config("multistep"), 1000, 10));
        lr.set_manual(0.05, 10);
        assert_eq!(lr.lr_at(11), (0.05, LrSource::Manual));
        assert_eq!(lr.lr_at(500), (0.05, LrSource::Manual));
        lr.back_to_schedule();
        assert!((lr.lr_at(500).0 - 0.001).abs() < 1e-12);
        assert_eq!(lr.lr_at(500).1, LrSource::Schedule);
    }

    #[test]
    fn under_next_milestone_a_manual_lr_ends_at_the_next_change() {
        let c = ScheduleConfig {
            manual: "next_milestone".into(),
            ..config("multistep")
        };
        let mut lr = LrControl::new(Schedule::from_config(&c, 1000, 10));
        lr.set_manual(0.05, 10);
        assert_eq!(lr.lr_at(99).0, 0.05);
        assert!((lr.lr_at(100).0 - 0.01).abs() < 1e-12);
    }

    #[test]
    fn under_rescale_the_rest_of_the_schedule_is_scaled() {
        let c = ScheduleConfig {
            manual: "rescale".into(),
            ..config("multistep")
        };
        let mut lr = LrControl::new(Schedule::from_config(&c, 1000, 10));
        lr.set_manual(0.05, 10);
        assert!((lr.lr_at(11).0 - 0.05).abs() < 1e-12);
        assert!((lr.lr_at(150).0 - 0.005).abs() < 1e-12);
    }
}
