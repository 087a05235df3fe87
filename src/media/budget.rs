//! One memory budget for every thumbnail render of the process: requests and
//! the pre-render worker alike. A render works out its peak from the file's
//! header (dimensions, bytes it must hold, the decoder's buffers) and
//! reserves that much before it allocates; it waits while the budget is
//! used up, and one that could never fit is refused at once. So however
//! many renders run and whatever the files are, the decoders together never
//! hold more than the budget (`thumbnails.memory_mb`, docs/appliance.md).
//!
//! Requests are served first come, first served (a large render is not
//! starved by a stream of small ones), level 0 before level 1 (what the
//! user looks at first, as in `lanes.rs`), and wait at most [`REQUEST_WAIT`].
//! The pre-render worker (class [`Class::Background`]) yields: it takes
//! memory only while no request waits, and past half of the budget only
//! when nothing else is rendering, so a request never waits long behind it.
//!
//! A render holds one lease at a time (it never waits while holding one:
//! that could deadlock two renders each waiting for the other); a nested
//! attempt uses [`Budget::try_reserve`], which does not wait.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::model::ThumbLevel;

/// Default budget: with the server's ~20 MB at rest, the 300 MB bound of a
/// Pi with 1 GB (docs/appliance.md) leaves room for what is not counted
/// (thread stacks, sockets, allocator slack).
pub const DEFAULT_BUDGET_BYTES: u64 = 160 << 20;
/// How long a request waits for memory before it is told to try again.
pub(crate) const REQUEST_WAIT: Duration = Duration::from_secs(20);
/// How long the pre-render worker waits before it moves on (the original is
/// visited again by the next sweep).
pub(crate) const BACKGROUND_WAIT: Duration = Duration::from_secs(300);
/// A lease at least this large gives the freed memory back to the system
/// when it ends, so the process's resident size follows the live leases
/// rather than what glibc's arenas keep (`heap::release_free_memory`).
const TRIM_AFTER_BYTES: u64 = 8 << 20;

/// Who asks: a request for a level (first served, level 0 first) or the
/// pre-render worker (yields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request(ThumbLevel),
    Background,
}

/// Why memory was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BudgetError {
    /// More than the whole budget: this render can never run.
    #[error("needs {need_mib} MiB, more than the {total_mib} MiB thumbnails may use")]
    TooLarge { need_mib: u64, total_mib: u64 },
    /// The budget stayed used up for the whole wait.
    #[error("the server is busy rendering other thumbnails; try again")]
    Busy,
}

pub struct Budget {
    total: u64,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    used: u64,
    /// Leases held, to tell "nothing else renders" apart.
    leases: usize,
    /// Tickets of the requests waiting, oldest first, by level.
    queues: [VecDeque<u64>; 2],
    next_ticket: u64,
    /// Largest `used` seen: for tests and the bench.
    peak: u64,
}

impl Budget {
    pub(crate) fn new(total: u64) -> Budget {
        Budget {
            total: total.max(1),
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    /// The budget of renders made outside a server (tests, benches): the
    /// default size, shared by all of them.
    pub(crate) fn shared_default() -> &'static Budget {
        static DEFAULT: OnceLock<Budget> = OnceLock::new();
        DEFAULT.get_or_init(|| Budget::new(DEFAULT_BUDGET_BYTES))
    }

    /// Bytes reserved now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.lock().used
    }

    /// Most bytes ever reserved at once.
    #[cfg(test)]
    pub(crate) fn peak(&self) -> u64 {
        self.lock().peak
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `bytes`, waiting (up to [`REQUEST_WAIT`] or
    /// [`BACKGROUND_WAIT`]) while the budget is used up. Blocking: call it
    /// from the render's thread, never on an async task.
    pub(crate) fn reserve(&self, bytes: u64, class: Class) -> Result<Lease<'_>, BudgetError> {
        self.reserve_within(bytes, class, wait_for(class))
    }

    pub(crate) fn reserve_within(
        &self,
        bytes: u64,
        class: Class,
        wait: Duration,
    ) -> Result<Lease<'_>, BudgetError> {
        if bytes > self.total {
            return Err(BudgetError::TooLarge {
                need_mib: bytes.div_ceil(1 << 20),
                total_mib: self.total >> 20,
            });
        }
        let deadline = Instant::now() + wait;
        let mut st = self.lock();
        let ticket = match class {
            Class::Request(level) => {
                let t = st.next_ticket;
                st.next_ticket += 1;
                st.queues[level.queue()].push_back(t);
                Some((level.queue(), t))
            }
            Class::Background => None,
        };
        loop {
            if self.grantable(&st, bytes, ticket) {
                if let Some((q, t)) = ticket {
                    st.queues[q].retain(|x| *x != t);
                }
                st.used += bytes;
                st.leases += 1;
                st.peak = st.peak.max(st.used);
                drop(st);
                // The next in line may fit beside this one.
                self.freed.notify_all();
                return Ok(Lease {
                    budget: self,
                    bytes,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if let Some((q, t)) = ticket {
                    st.queues[q].retain(|x| *x != t);
                }
                drop(st);
                self.freed.notify_all();
                return Err(BudgetError::Busy);
            }
            st = self
                .freed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Reserves `bytes` only if that is possible at once (for a render that
    /// already holds a lease and must not wait).
    pub(crate) fn try_reserve(&self, bytes: u64) -> Option<Lease<'_>> {
        let mut st = self.lock();
        if st.used + bytes > self.total {
            return None;
        }
        st.used += bytes;
        st.leases += 1;
        st.peak = st.peak.max(st.used);
        Some(Lease {
            budget: self,
            bytes,
        })
    }

    fn grantable(&self, st: &State, bytes: u64, ticket: Option<(usize, u64)>) -> bool {
        let fits = st.used + bytes <= self.total;
        match ticket {
            // First come, first served among requests of a level; level 1
            // only when no level 0 waits.
            Some((q, t)) => {
                fits && st.queues[q].front() == Some(&t) && (q == 0 || st.queues[0].is_empty())
            }
            // Never ahead of a waiting request; past half the budget only
            // alone, so a request finds room beside the worker.
            None => {
                st.queues.iter().all(VecDeque::is_empty)
                    && fits
                    && (st.used + bytes <= self.total / 2 || st.leases == 0)
            }
        }
    }

    fn release(&self, bytes: u64) {
        let mut st = self.lock();
        st.used -= bytes;
        st.leases -= 1;
        drop(st);
        self.freed.notify_all();
        if bytes >= TRIM_AFTER_BYTES {
            crate::heap::release_free_memory();
        }
    }
}

fn wait_for(class: Class) -> Duration {
    match class {
        Class::Request(_) => REQUEST_WAIT,
        Class::Background => BACKGROUND_WAIT,
    }
}

/// Memory reserved for one render; given back when dropped.
#[must_use = "the reservation ends when the lease is dropped"]
pub(crate) struct Lease<'a> {
    budget: &'a Budget,
    bytes: u64,
}

impl Lease<'_> {
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl std::fmt::Debug for Lease<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({} bytes)", self.bytes)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// What a render may use: the budget and the class it asks as, and how
/// many threads one JPEG decode may take.
#[derive(Clone, Copy)]
pub struct Allowance<'a> {
    pub budget: &'a Budget,
    pub class: Class,
    /// Bands (threads) one JPEG decode may be split into: 0 for one per
    /// core, up to 4 (the default); 1 decodes every file in one piece (the
    /// benchmark's baseline). Set per cache by
    /// [`ThumbCache::set_decode_bands`](super::thumbcache::ThumbCache::set_decode_bands).
    pub decode_bands: usize,
}

impl<'a> Allowance<'a> {
    /// `budget` as `class`, decoding on one thread per core.
    pub(crate) fn new(budget: &'a Budget, class: Class) -> Allowance<'a> {
        Allowance {
            budget,
            class,
            decode_bands: 0,
        }
    }

    /// The same allowance with `bands` as its decode-bands setting.
    pub fn with_decode_bands(self, bands: usize) -> Allowance<'a> {
        Allowance {
            decode_bands: bands,
            ..self
        }
    }

    /// For renders outside a server: the shared default budget, as a
    /// level-1 request.
    pub fn standalone() -> Allowance<'static> {
        Allowance::new(Budget::shared_default(), Class::Request(ThumbLevel::Screen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn too_large_is_refused_at_once_and_leases_add_up() {
        let b = Budget::new(100 * MIB);
        let err = b
            .reserve(101 * MIB, Class::Request(ThumbLevel::Screen))
            .unwrap_err();
        assert_eq!(
            err,
            BudgetError::TooLarge {
                need_mib: 101,
                total_mib: 100
            }
        );
        assert!(err.to_string().contains("101 MiB"), "{err}");
        let a = b
            .reserve(60 * MIB, Class::Request(ThumbLevel::Screen))
            .unwrap();
        let c = b
            .reserve(40 * MIB, Class::Request(ThumbLevel::Screen))
            .unwrap();
        assert_eq!(b.used(), 100 * MIB);
        assert!(b.try_reserve(1).is_none(), "full");
        drop(a);
        assert_eq!(b.used(), 40 * MIB);
        let d = b.try_reserve(60 * MIB).expect("fits now");
        drop((c, d));
        assert_eq!((b.used(), b.peak()), (0, 100 * MIB));
    }

    #[test]
    fn a_request_waits_for_memory_and_gives_up_past_its_bound() {
        let b = Budget::new(100 * MIB);
        let held = b
            .reserve(80 * MIB, Class::Request(ThumbLevel::Screen))
            .unwrap();
        let err = b
            .reserve_within(
                30 * MIB,
                Class::Request(ThumbLevel::Screen),
                Duration::from_millis(20),
            )
            .unwrap_err();
        assert_eq!(err, BudgetError::Busy);
        // Granted as soon as the holder lets go.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                b.reserve(30 * MIB, Class::Request(ThumbLevel::Screen))
                    .map(|l| l.bytes())
            });
            while b.lock().queues[1].is_empty() {
                std::thread::yield_now();
            }
            drop(held);
            assert_eq!(waiter.join().unwrap(), Ok(30 * MIB));
        });
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn background_yields_to_waiting_requests_and_keeps_to_half_beside_others() {
        let b = Budget::new(100 * MIB);
        // Alone, the worker may take more than half.
        let big = b.reserve(70 * MIB, Class::Background).unwrap();
        drop(big);
        let request = b
            .reserve(10 * MIB, Class::Request(ThumbLevel::Screen))
            .unwrap();
        // Beside a request, at most half of the budget in all.
        let short = Duration::from_millis(20);
        assert_eq!(
            b.reserve_within(45 * MIB, Class::Background, short)
                .unwrap_err(),
            BudgetError::Busy
        );
        let bg = b.reserve(40 * MIB, Class::Background).unwrap();
        // A request waits for memory: the worker gets nothing meanwhile,
        // even what would fit.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                b.reserve(60 * MIB, Class::Request(ThumbLevel::Screen))
                    .map(|l| l.bytes())
            });
            while b.lock().queues[1].is_empty() {
                std::thread::yield_now();
            }
            assert_eq!(
                b.reserve_within(MIB, Class::Background, short).unwrap_err(),
                BudgetError::Busy
            );
            drop(bg);
            assert_eq!(waiter.join().unwrap(), Ok(60 * MIB));
        });
        drop(request);
    }

    #[test]
    fn requests_are_served_in_order() {
        let b = Budget::new(100 * MIB);
        let held = b
            .reserve(90 * MIB, Class::Request(ThumbLevel::Screen))
            .unwrap();
        let small_done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // A large request first, then a small one that would fit now:
            // the small one waits its turn.
            let large = s.spawn(|| {
                b.reserve(50 * MIB, Class::Request(ThumbLevel::Screen))
                    .map(|l| l.bytes())
            });
            while b.lock().queues[1].is_empty() {
                std::thread::yield_now();
            }
            let small = s.spawn(|| {
                let got = b
                    .reserve(5 * MIB, Class::Request(ThumbLevel::Screen))
                    .map(|l| l.bytes());
                small_done.store(true, std::sync::atomic::Ordering::SeqCst);
                got
            });
            while b.lock().queues[1].len() < 2
                && !small_done.load(std::sync::atomic::Ordering::SeqCst)
            {
                std::thread::yield_now();
            }
            assert!(
                !small_done.load(std::sync::atomic::Ordering::SeqCst),
                "the small request jumped the queue"
            );
            assert_eq!(b.used(), 90 * MIB);
            drop(held);
            assert_eq!(large.join().unwrap(), Ok(50 * MIB));
            assert_eq!(small.join().unwrap(), Ok(5 * MIB));
        });
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn level_0_is_served_before_level_1_that_came_first() {
        let b = Budget::new(100 * MIB);
        let held = b
            .reserve(90 * MIB, Class::Request(ThumbLevel::Screen))
            .unwrap();
        let order = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let screen = s.spawn(|| {
                let l = b
                    .reserve(60 * MIB, Class::Request(ThumbLevel::Screen))
                    .unwrap();
                order.lock().unwrap().push(1);
                drop(l);
            });
            while b.lock().queues[1].is_empty() {
                std::thread::yield_now();
            }
            let small = s.spawn(|| {
                // Holds its lease until level 1 is in: level 1 cannot have
                // gone first, it needs this memory too.
                let l = b
                    .reserve(60 * MIB, Class::Request(ThumbLevel::Small))
                    .unwrap();
                order.lock().unwrap().push(0);
                std::thread::sleep(Duration::from_millis(5));
                drop(l);
            });
            while b.lock().queues[0].is_empty() {
                std::thread::yield_now();
            }
            drop(held);
            small.join().unwrap();
            screen.join().unwrap();
        });
        assert_eq!(*order.lock().unwrap(), [0, 1]);
    }
}
