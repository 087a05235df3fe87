//! Failed-login limiting, per client address and per user name, built so the
//! limiter cannot lock a person out for good:
//!
//! - **Per address:** after `max_failures` failed logins (or registration
//!   attempts) from one address within `window_secs`, that address is
//!   refused until the oldest of those failures leaves the window. Only the
//!   guessing device is slowed.
//! - **Per user:** after `max_failures` failures for one user name from any
//!   addresses within the window, further attempts for that name are
//!   refused — except from an address where this user logged in
//!   successfully in the last 30 days (a *known device*, the OWASP "device
//!   cookie" idea keyed by address). So someone hammering `mom` from the
//!   guest Wi-Fi slows guessing of her password to `max_failures` per window,
//!   while mom's own phone and laptop still get in.
//! - Every refusal ends by itself within `window_secs`; nothing is stored on
//!   disk, and memory is bounded (oldest entries are dropped first).
//!
//! An attempt is **counted before its password is hashed**
//! ([`LoginLimiter::reserve`]), as a failure until it proves otherwise: 200
//! simultaneous guesses cannot all pass the check while the first ones are
//! still hashing, so a flood costs at most `max_failures` Argon2 runs per
//! window, and a client that hangs up mid-check is still counted.

use crate::clock::Clock;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a successful login makes an address a known device for a user.
pub const TRUST_FOR: Duration = Duration::from_secs(30 * 86_400);
/// Bound on tracked addresses, names and known devices (each).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_failures: u32,
    pub window: Duration,
}

pub struct LoginLimiter {
    limits: Limits,
    inner: Mutex<Inner>,
    /// What windows and known devices' 30 days are measured by.
    clock: Clock,
}

#[derive(Default)]
struct Inner {
    by_ip: HashMap<IpAddr, VecDeque<Instant>>,
    by_user: HashMap<String, VecDeque<Instant>>,
    known: HashMap<(String, IpAddr), Instant>,
}

fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
}

/// Seconds until the oldest failure leaves the window (at least 1).
fn wait(q: &VecDeque<Instant>, now: Instant, window: Duration) -> u64 {
    q.front()
        .map(|t| {
            window
                .saturating_sub(now.duration_since(*t))
                .as_secs()
                .max(1)
        })
        .unwrap_or(1)
}

fn bound<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    newest: impl Fn(&V) -> Instant,
) {
    if map.len() <= MAX_ENTRIES {
        return;
    }
    // Drop the oldest tenth in one go, so this runs rarely.
    let mut ages: Vec<(Instant, K)> = map.iter().map(|(k, v)| (newest(v), k.clone())).collect();
    ages.sort_by_key(|(t, _)| *t);
    for (_, k) in ages.into_iter().take(MAX_ENTRIES / 10) {
        map.remove(&k);
    }
}

impl LoginLimiter {
    pub(crate) fn new(limits: Limits) -> LoginLimiter {
        LoginLimiter {
            limits,
            inner: Mutex::new(Inner::default()),
            clock: Clock::default(),
        }
    }

    /// This limiter measuring time by `clock` (the app's, which a test can
    /// advance).
    pub(crate) fn with_clock(mut self, clock: Clock) -> LoginLimiter {
        self.clock = clock;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an attempt for `user` (None: a registration) from `ip`, or
    /// `Err(seconds)` when it must be refused now. Check and count are one
    /// step under the lock, so concurrent attempts cannot all slip in. The
    /// attempt stays counted as a failure — also when its [`Attempt`] is
    /// dropped — unless [`LoginLimiter::succeeded`] or
    /// [`LoginLimiter::release`] takes it back.
    pub(crate) fn reserve(&self, user: Option<&str>, ip: IpAddr) -> Result<Attempt, u64> {
        let (max, window) = (self.limits.max_failures as usize, self.limits.window);
        let now = self.clock.instant();
        let mut g = self.lock();
        if let Some(q) = g.by_ip.get_mut(&ip) {
            prune(q, now, window);
            if q.len() >= max {
                return Err(wait(q, now, window));
            }
        }
        let name = user.map(str::to_lowercase);
        if let Some(name) = &name {
            let known = g
                .known
                .get(&(name.clone(), ip))
                .is_some_and(|t| now.duration_since(*t) < TRUST_FOR);
            if let Some(q) = g.by_user.get_mut(name) {
                prune(q, now, window);
                if q.len() >= max && !known {
                    return Err(wait(q, now, window));
                }
            }
        }
        let q = g.by_ip.entry(ip).or_default();
        q.push_back(now);
        if q.len() > max {
            q.pop_front();
        }
        bound(&mut g.by_ip, |q| q.back().copied().unwrap_or(now));
        if let Some(name) = &name {
            let q = g.by_user.entry(name.clone()).or_default();
            q.push_back(now);
            // A known device may go past the name's limit: keep the last few.
            if q.len() > max {
                q.pop_front();
            }
            bound(&mut g.by_user, |q| q.back().copied().unwrap_or(now));
        }
        Ok(Attempt { ip, name, at: now })
    }

    /// Takes a counted attempt back: it turned out not to be a guess (the
    /// password check queue was full, or a registration succeeded).
    pub(crate) fn release(&self, a: Attempt) {
        let mut g = self.lock();
        if let Some(q) = g.by_ip.get_mut(&a.ip) {
            unqueue(q, a.at);
        }
        if let Some(name) = &a.name {
            if let Some(q) = g.by_user.get_mut(name) {
                unqueue(q, a.at);
            }
        }
    }

    /// A successful login: the attempt is taken back, the address becomes a
    /// known device for the user, and its own failures are forgotten.
    pub(crate) fn succeeded(&self, a: Attempt, user: &str) {
        let ip = a.ip;
        self.release(a);
        let now = self.clock.instant();
        let mut g = self.lock();
        g.by_ip.remove(&ip);
        g.known.insert((user.to_lowercase(), ip), now);
        bound(&mut g.known, |t| *t);
    }
}

/// An attempt counted by [`LoginLimiter::reserve`]. Dropping it leaves it
/// counted as a failure.
#[derive(Debug)]
#[must_use = "an attempt stays counted as a failure unless released or succeeded"]
pub(crate) struct Attempt {
    ip: IpAddr,
    name: Option<String>,
    at: Instant,
}

/// Removes one entry recorded at `at` (the newest such, searching from the
/// back where fresh reservations are).
fn unqueue(q: &mut VecDeque<Instant>, at: Instant) {
    if let Some(i) = q.iter().rposition(|t| *t == at) {
        q.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_limited_and_recovers() {
        // A window no stall of a loaded machine reaches, passed by moving
        // the clock: a 300 ms window could expire between the third
        // failure and the fourth attempt, to be refused, if the thread
        // waited that long.
        let clock = Clock::default();
        let l = LoginLimiter::new(Limits {
            max_failures: 3,
            window: Duration::from_secs(600),
        })
        .with_clock(clock.clone());
        let a = ip("192.168.1.9");
        for _ in 0..3 {
            // Counted as a failure as soon as it is reserved.
            drop(l.reserve(Some("x"), a).unwrap());
        }
        assert!(
            l.reserve(Some("y"), a).is_err(),
            "the address is limited for any name"
        );
        assert!(
            l.reserve(Some("y"), ip("192.168.1.10")).is_ok(),
            "other addresses are not"
        );
        clock.advance(Duration::from_secs(601));
        assert!(l.reserve(Some("y"), a).is_ok(), "the limit ends by itself");
    }

    #[test]
    fn reservations_count_before_the_outcome_and_can_be_taken_back() {
        let l = LoginLimiter::new(Limits {
            max_failures: 3,
            window: Duration::from_secs(600),
        });
        let a = ip("192.168.1.9");
        // Three attempts in flight at once: a fourth is refused before any
        // of them has finished.
        let held: Vec<Attempt> = (0..3).map(|_| l.reserve(Some("bob"), a).unwrap()).collect();
        assert!(l.reserve(Some("bob"), a).is_err());
        // One was not a guess (the check queue was full): its slot is free.
        let mut held = held.into_iter();
        l.release(held.next().unwrap());
        let again = l.reserve(Some("bob"), a).unwrap();
        assert!(l.reserve(Some("bob"), a).is_err());
        // A success forgets the address's failures and trusts the device.
        l.succeeded(again, "Bob");
        assert!(l.reserve(Some("carol"), a).is_ok());
        drop(held);
    }

    #[test]
    fn a_hammered_user_still_gets_in_from_a_known_device() {
        let l = LoginLimiter::new(Limits {
            max_failures: 3,
            window: Duration::from_secs(600),
        });
        let home = ip("192.168.1.20");
        let first = l.reserve(Some("Mom"), home).unwrap();
        l.succeeded(first, "Mom");
        // An attacker spreads guesses over many addresses.
        for i in 0..5 {
            let _ = l.reserve(Some("mom"), ip(&format!("10.0.0.{i}")));
        }
        let retry = l.reserve(Some("mom"), ip("10.0.0.99")).unwrap_err();
        assert!(retry > 0 && retry <= 600);
        assert!(
            l.reserve(Some("MOM"), home).is_ok(),
            "known device not locked out"
        );
        assert!(
            l.reserve(Some("dad"), ip("10.0.0.99")).is_ok(),
            "other users unaffected"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let l = LoginLimiter::new(Limits {
            max_failures: 2,
            window: Duration::from_secs(600),
        });
        for i in 0..(MAX_ENTRIES as u32 + 50) {
            let a = IpAddr::from(i.to_be_bytes());
            let _ = l.reserve(Some(&format!("u{i}")), a);
        }
        let g = l.lock();
        assert!(g.by_ip.len() <= MAX_ENTRIES && g.by_user.len() <= MAX_ENTRIES);
    }
}
