//! The time the server judges expiry by — idle sessions, share links, the
//! login limiter's window and its known devices: the system's clocks plus
//! an offset that only moves forward and is zero unless a test advances it.
//!
//! A test that wants to know whether a 1 s session survives 0.55 s of
//! silence would otherwise sleep and hope the machine keeps up (on two
//! shared cores it did not, always); with [`Clock::advance`] it says how
//! much time passed and the answer no longer depends on the load. The
//! offset is shared (`Arc`) by every holder of one app's clock, and read
//! with one relaxed atomic load: nothing measurable on a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The system time, plus what [`Clock::advance`] added. `Default` is the
/// real clock. Clones share the offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    ahead_ms: Arc<AtomicU64>,
}

impl Clock {
    fn ahead(&self) -> Duration {
        Duration::from_millis(self.ahead_ms.load(Ordering::Relaxed))
    }

    /// Now, on the monotonic clock (for durations).
    pub(crate) fn instant(&self) -> Instant {
        Instant::now() + self.ahead()
    }

    /// Now, in milliseconds since the Unix epoch (for times stored in the
    /// database).
    pub(crate) fn unix_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        real.saturating_add(self.ahead().as_millis() as i64)
    }

    /// Moves this clock (and its clones) `by` into the future. For tests:
    /// the server never calls it.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ahead_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone_and_only_forward() {
        let c = Clock::default();
        let other = c.clone();
        let (i0, u0) = (c.instant(), c.unix_ms());
        other.advance(Duration::from_secs(3600));
        assert!(c.instant().duration_since(i0) >= Duration::from_secs(3600));
        assert!(c.unix_ms() - u0 >= 3_600_000);
        // A separate clock is not moved.
        let fresh = Clock::default();
        assert!(fresh.instant() < c.instant());
    }
}
