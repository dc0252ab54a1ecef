//! Bounded history of a series: the recent points at full resolution plus the whole run
//! downsampled, so a run of any length keeps a flat memory profile.

use std::collections::VecDeque;

/// A sample that can be merged with its neighbour when the full history is downsampled.
pub trait Sample: Clone {
    /// One sample standing for `self` and the later `other`.
    fn merge(&self, other: &Self) -> Self;
    /// The step the sample was taken at (the x of the plots).
    fn step(&self) -> f64;
}

/// A plain `(step, value)` point; merged pairs keep their mean.
impl Sample for (f64, f64) {
    fn merge(&self, other: &Self) -> Self {
        ((self.0 + other.0) / 2.0, (self.1 + other.1) / 2.0)
    }
    fn step(&self) -> f64 {
        self.0
    }
}

/// Recent samples in full plus the whole series at a stride that doubles whenever it fills up.
#[derive(Clone, Debug)]
pub struct History<T: Sample> {
    capacity: usize,
    recent: VecDeque<T>,
    full: Vec<T>,
    /// Raw samples merged into each `full` entry.
    stride: usize,
    /// The part of the next `full` entry gathered so far and how many raw samples it holds.
    pending: Option<(T, usize)>,
    total: u64,
}

impl<T: Sample> History<T> {
    /// Keeps at most `capacity` recent samples and at most `capacity` downsampled ones.
    pub fn new(capacity: usize) -> History<T> {
        let capacity = capacity.max(2);
        History {
            capacity,
            recent: VecDeque::with_capacity(capacity),
            full: Vec::with_capacity(capacity),
            stride: 1,
            pending: None,
            total: 0,
        }
    }

    pub fn push(&mut self, sample: T) {
        self.total += 1;
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(sample.clone());
        let (merged, count) = match self.pending.take() {
            None => (sample, 1),
            // A running merge weights earlier samples less; good enough for a plot.
            Some((acc, n)) => (acc.merge(&sample), n + 1),
        };
        if count < self.stride {
            self.pending = Some((merged, count));
            return;
        }
        self.full.push(merged);
        if self.full.len() == self.capacity {
            self.full = self
                .full
                .chunks(2)
                .map(|c| c[0].merge(c.last().unwrap_or(&c[0])))
                .collect();
            self.stride *= 2;
        }
    }

    /// Samples pushed so far (not how many are kept).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Samples held in memory now.
    pub fn kept(&self) -> usize {
        self.recent.len() + self.full.len() + usize::from(self.pending.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    pub fn last(&self) -> Option<&T> {
        self.recent.back()
    }

    /// The whole series in step order: downsampled before the recent window, full after.
    pub fn points(&self) -> impl Iterator<Item = &T> {
        let first_recent = self.recent.front().map_or(f64::INFINITY, Sample::step);
        self.full
            .iter()
            .take_while(move |s| s.step() < first_recent)
            .chain(self.recent.iter())
    }

    /// The recent samples only, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &T> {
        self.recent.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_100k_steps_keeps_at_most_twice_the_capacity() {
        let mut h = History::new(2000);
        for step in 0..100_000 {
            h.push((step as f64, 1.0));
            assert!(h.kept() <= 4001, "kept {} at step {step}", h.kept());
        }
        assert_eq!(h.total(), 100_000);
    }

    #[test]
    fn the_points_span_the_whole_run_in_step_order() {
        let mut h = History::new(100);
        for step in 0..10_000 {
            h.push((step as f64, step as f64));
        }
        let pts: Vec<_> = h.points().copied().collect();
        assert!(
            pts.first().unwrap().0 < 100.0,
            "starts at {:?}",
            pts.first()
        );
        assert_eq!(pts.last().unwrap().0, 9999.0);
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(pts.len() <= 200);
    }

    #[test]
    fn the_recent_window_is_at_full_resolution() {
        let mut h = History::new(50);
        for step in 0..1000 {
            h.push((step as f64, 0.5));
        }
        let recent: Vec<_> = h.recent().map(|p| p.0).collect();
        assert_eq!(recent, (950..1000).map(f64::from).collect::<Vec<_>>());
    }

    #[test]
    fn downsampled_points_keep_the_mean() {
        let mut h = History::new(4);
        for step in 0..8 {
            h.push((step as f64, if step % 2 == 0 { 0.0 } else { 2.0 }));
        }
        let old: Vec<_> = h.points().take_while(|p| p.0 < 4.0).collect();
        assert!(old.iter().all(|p| (p.1 - 1.0).abs() < 1e-9), "{old:?}");
    }
}
