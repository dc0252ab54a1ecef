//! Images that could not be decoded: each is reported (warning naming the file, with the count so
//! far, in the status line and metrics.jsonl) and left out; one bad file never stops a multi-day
//! run, but a batch with more than `data.max_bad_share` of its images bad does.

use super::Trainer;
use super::timing::Clock;
use crate::data::{Batch, Loader, too_many_bad};
use crate::protocol::Event;

impl Trainer {
    pub(super) fn check_input(
        &mut self,
        batch: &Batch,
        loader: &Loader,
        clock: &Clock,
    ) -> Result<(), String> {
        if batch.skipped.is_empty() {
            return Ok(());
        }
        let total = loader.skipped();
        for s in &batch.skipped {
            let t = clock.now();
            let message = format!(
                "{}: skipped {}: {} ({total} images skipped so far)",
                self.name,
                s.path.display(),
                s.reason
            );
            tracing::warn!(run = %self.name, "{message}");
            self.emit(
                Event::Warning {
                    run: Some(self.id),
                    message,
                },
                t,
            );
        }
        let requested = batch.labels.len() + batch.skipped.len();
        match too_many_bad(&batch.skipped, requested, self.config.data.max_bad_share) {
            Some(message) => Err(message),
            None => Ok(()),
        }
    }
}
