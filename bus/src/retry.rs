//! The one retry policy: capped exponential backoff with jitter.
//!
//! Every loop that waits before trying again (a reader reconnecting, an event that could not be
//! written, a job that failed to claim) takes its pauses from a [`Backoff`], so that many nodes
//! retrying against one Redis spread out instead of arriving together.

use std::time::Duration;

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
