//! The one retry policy: capped exponential backoff with jitter.
//!
//! Every loop that waits before trying again (a reader reconnecting, an event that could not be
//! written, a job that failed to claim) takes its pauses from a [`Backoff`], so that many nodes
//! retrying against one Redis spread out instead of arriving together. A loop logs a run of
//! failures once, and its end, through [`Failing`] — never a line per attempt.

use std::time::{Duration, Instant};

use rand::RngExt;

/// Pauses that double from `initial` up to `max`, each shortened by up to a quarter at random.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The pause before the next try.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let quarter = base.as_micros() as u64 / 4;
        let cut = if quarter == 0 {
            0
        } else {
            rand::rng().random_range(0..=quarter)
        };
        base - Duration::from_micros(cut)
    }

    /// Sleeps for [`Backoff::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Starts again from `initial` (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A loop's run of failures, so that it is logged when it starts and when it ends, not once per
/// attempt. A failure because Redis is away is logged at `debug`: the daemon's connection logs
/// the outage itself, once (see [`crate::conn`]).
#[derive(Debug)]
pub struct Failing {
    /// What the loop does, as the log lines say it ("reading berth:events").
    what: String,
    /// Since when it fails, how many attempts failed, and whether the first was logged as a
    /// warning (its end is then logged too).
    since: Option<(Instant, u32, bool)>,
}

impl Failing {
    pub fn new(what: impl Into<String>) -> Self {
        Failing {
            what: what.into(),
            since: None,
        }
    }

    /// An attempt failed with `error`; `redis_away` says it failed because Redis cannot be
    /// reached. Logs the first failure of a run.
    pub fn failed(&mut self, error: &dyn std::fmt::Display, redis_away: bool) {
        let what = &self.what;
        match &mut self.since {
            Some((_, n, _)) => {
                *n += 1;
                tracing::debug!(%error, attempt = *n, "{what}: failed again");
            }
            None => {
                self.since = Some((Instant::now(), 1, !redis_away));
                if redis_away {
                    tracing::debug!(%error, "{what}: failed (Redis away); retrying with backoff");
                } else {
                    tracing::warn!(%error, "{what}: failed; retrying with backoff");
                }
            }
        }
    }

    /// An attempt worked: logs the end of a run of failures, if there was one.
    pub fn ok(&mut self) {
        if let Some((since, n, loud)) = self.since.take() {
            let (what, after_s) = (&self.what, since.elapsed().as_secs_f64());
            if loud {
                tracing::info!(
                    after_s = format!("{after_s:.1}"),
                    attempts = n,
                    "{what}: working again"
                );
            } else {
                tracing::debug!(
                    after_s = format!("{after_s:.1}"),
                    attempts = n,
                    "{what}: working again"
                );
            }
        }
    }

    /// Whether the last attempt failed.
    pub fn is_failing(&self) -> bool {
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_below() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let bases = [100, 200, 400, 700, 700];
        for base in bases {
            let d = b.next_delay();
            let base = Duration::from_millis(base);
            assert!(d <= base && d >= base * 3 / 4, "{d:?} vs {base:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
