//! Who renders when, among the thumbnails requests ask for (issue #13).
//!
//! A burst of cold requests — a folder of new photos and videos opened in
//! the app — asks for level 0 (the grid) of every file and level 1 of a few.
//! Level 0 is what the user is looking at, so it goes first, in its own
//! lane: it never waits in a queue behind level 1, and level-1 renders
//! already running when level-0 work arrives are demoted to the lowest CPU
//! priority (their thread and their ffmpeg child's threads, `setpriority`
//! to nice 19), as is a level-1 render that starts while level 0 renders,
//! so that they take almost nothing from level 0. A
//! demoted render still runs at full speed on a core nobody else wants,
//! and ends on its own thread; the next level-1 render starts on a new
//! thread at normal priority (lowering a priority needs no privilege,
//! raising it back would).
//!
//! Each lane runs as many renders at once as there are cores: an in-process
//! decode already spreads over the cores (`jpegpar`), and an ffmpeg child
//! (one decoding thread, most of its time spent starting up) uses one, so a
//! burst of videos keeps every core busy too. Level 1 starts only while no
//! level-0 render waits and the cores are not all taken. Memory is the
//! budget's business (`budget.rs`, where level 0 is also served first).
//!
//! Each render runs on a thread of its own (a thread start is ~30 µs, a
//! render 1–300 ms), which is what lets its priority be changed alone.
//! Threads inherit their creator's priority, so they are all created by
//! one spawner thread that is never demoted.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::model::ThumbLevel;

/// Nice value of a demoted level-1 render: the lowest priority, that of the
/// pre-render worker.
const DEMOTED_NICE: i32 = 19;

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct Lanes {
    /// Renders at once per lane.
    width: usize,
    /// The scheduling before lanes (one FIFO queue, cores − 1 renders at
    /// once), kept for `benches/burst.rs` to measure against in the same
    /// run: see [`Lanes::set_fifo_scheduling`].
    fifo: AtomicBool,
    state: Mutex<State>,
    /// To the spawner thread: a render to start.
    spawner: Mutex<std::sync::mpsc::Sender<(u64, ThumbLevel, Job)>>,
}

#[derive(Default)]
struct State {
    /// Waiting jobs by level, with their arrival number (for FIFO mode).
    queues: [VecDeque<(u64, Job)>; 2],
    arrivals: u64,
    running: Vec<Running>,
    next_id: u64,
}

struct Running {
    id: u64,
    level: ThumbLevel,
    /// The render thread's id, once it has started.
    tid: Option<rustix::process::Pid>,
    /// Its ffmpeg child, while one runs.
    child: Option<rustix::process::Pid>,
    demoted: bool,
}

impl Lanes {
    /// Lanes running up to `width` renders each (at least one). Call it from
    /// a thread at normal priority: the spawner thread inherits it.
    pub(crate) fn new(width: usize) -> Arc<Lanes> {
        let (tx, rx) = std::sync::mpsc::channel::<(u64, ThumbLevel, Job)>();
        let lanes = Arc::new(Lanes {
            width: width.max(1),
            fifo: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            spawner: Mutex::new(tx),
        });
        let weak = Arc::downgrade(&lanes);
        let spawner = std::thread::Builder::new()
            .name("isync-render-spawn".into())
            .spawn(move || {
                // Ends when the lanes are dropped (the sender with them).
                for (id, level, job) in rx {
                    let Some(lanes) = weak.upgrade() else {
                        break;
                    };
                    let me = Arc::clone(&lanes);
                    let spawned = std::thread::Builder::new()
                        .name(format!("isync-render-{}", level.as_u8()))
                        .spawn(move || me.run(id, job));
                    if let Err(e) = spawned {
                        // The job (and the sender of its result) is dropped:
                        // its waiters get an error, and nothing else is held.
                        log::warn!("cannot start a thumbnail render thread: {e}");
                        let mut st = lanes.lock();
                        st.running.retain(|r| r.id != id);
                        lanes.dispatch(&mut st);
                    }
                }
            });
        if let Err(e) = spawner {
            log::error!("cannot start the thumbnail render spawner: {e}");
        }
        lanes
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job`, a render of `level`, to run on its own thread when its
    /// lane lets it. Returns at once.
    pub(crate) fn submit(&self, level: ThumbLevel, job: impl FnOnce() + Send + 'static) {
        let mut st = self.lock();
        let n = st.arrivals;
        st.arrivals += 1;
        st.queues[lane(level)].push_back((n, Box::new(job)));
        self.dispatch(&mut st);
    }

    /// Makes these lanes schedule as before this module (one first-come,
    /// first-served queue for both levels, cores − 1 renders, no demotion),
    /// or back: for the burst bench's baseline. Renders already running
    /// keep their priority.
    pub fn set_fifo_scheduling(&self, on: bool) {
        self.fifo.store(on, Ordering::Relaxed);
    }

    /// Whether [`Lanes::set_fifo_scheduling`] turned FIFO scheduling on.
    pub(crate) fn fifo_scheduling(&self) -> bool {
        self.fifo.load(Ordering::Relaxed)
    }

    /// Renders waiting, by level (for tests).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> [usize; 2] {
        let st = self.lock();
        [st.queues[0].len(), st.queues[1].len()]
    }

    /// Starts what may start now.
    fn dispatch(&self, st: &mut State) {
        while let Some(level) = self.next_to_start(st) {
            let (_, job) = st.queues[lane(level)].pop_front().expect("chosen from it");
            let id = st.next_id;
            st.next_id += 1;
            let fifo = self.fifo_scheduling();
            // Level 1 beside level 0 starts at the lowest priority: it takes
            // only what level 0 leaves.
            let beside_small = st.running.iter().any(|r| r.level == ThumbLevel::Small);
            st.running.push(Running {
                id,
                level,
                tid: None,
                child: None,
                demoted: !fifo && level == ThumbLevel::Screen && beside_small,
            });
            if level == ThumbLevel::Small && !fifo {
                demote_level_1(st);
            }
            let sent = self
                .spawner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send((id, level, job));
            if sent.is_err() {
                log::warn!("thumbnail render spawner is gone");
                st.running.retain(|r| r.id != id);
                return;
            }
        }
    }

    /// Which lane starts a render next, if any.
    fn next_to_start(&self, st: &State) -> Option<ThumbLevel> {
        let count = |level| st.running.iter().filter(|r| r.level == level).count();
        let (small, screen) = (count(ThumbLevel::Small), count(ThumbLevel::Screen));
        if self.fifo_scheduling() {
            // One queue by arrival, cores − 1 at once.
            let slots = self.width.saturating_sub(1).max(1);
            if small + screen >= slots {
                return None;
            }
            let head = |q: &VecDeque<(u64, Job)>| q.front().map(|(n, _)| *n);
            return match (head(&st.queues[0]), head(&st.queues[1])) {
                (Some(a), Some(b)) => Some(if a < b {
                    ThumbLevel::Small
                } else {
                    ThumbLevel::Screen
                }),
                (Some(_), None) => Some(ThumbLevel::Small),
                (None, Some(_)) => Some(ThumbLevel::Screen),
                (None, None) => None,
            };
        }
        if !st.queues[0].is_empty() && small < self.width {
            return Some(ThumbLevel::Small);
        }
        // Level 1 only when level 0 has nothing waiting and a core is free
        // of renders (demoted ones count: they still hold a thread).
        if st.queues[0].is_empty() && !st.queues[1].is_empty() && small + screen < self.width {
            return Some(ThumbLevel::Screen);
        }
        None
    }

    /// The body of a render thread.
    fn run(self: Arc<Self>, id: u64, job: Job) {
        let tid = rustix::thread::gettid();
        {
            let mut st = self.lock();
            if let Some(r) = st.running.iter_mut().find(|r| r.id == id) {
                r.tid = Some(tid);
                if r.demoted {
                    // Demoted before it began.
                    lower(tid);
                }
            }
        }
        // Ends the entry and starts the next render even if the job panics.
        struct Done(Arc<Lanes>, u64);
        impl Drop for Done {
            fn drop(&mut self) {
                CURRENT.with(|c| *c.borrow_mut() = None);
                let mut st = self.0.lock();
                st.running.retain(|r| r.id != self.1);
                self.0.dispatch(&mut st);
            }
        }
        let _done = Done(Arc::clone(&self), id);
        CURRENT.with(|c| *c.borrow_mut() = Some((Arc::downgrade(&self), id)));
        job();
    }

    fn set_child(&self, id: u64, child: Option<rustix::process::Pid>) {
        let mut st = self.lock();
        if let Some(r) = st.running.iter_mut().find(|r| r.id == id) {
            r.child = child;
            // A child started by a demoted thread inherited its priority;
            // one started just before the demotion is lowered here.
            if let (true, Some(pid)) = (r.demoted, child) {
                lower(pid);
            }
        }
    }
}

fn lane(level: ThumbLevel) -> usize {
    level.queue()
}

/// Lowers every running level-1 render (thread and ffmpeg child) to the
/// lowest priority: level-0 work has arrived.
fn demote_level_1(st: &mut State) {
    for r in st
        .running
        .iter_mut()
        .filter(|r| r.level == ThumbLevel::Screen && !r.demoted)
    {
        r.demoted = true;
        for pid in [r.tid, r.child].into_iter().flatten() {
            lower(pid);
        }
    }
}

/// Lowers the thread `tid`, or every thread of the process `tid` leads
/// (an ffmpeg child's filter and encoder threads too).
fn lower(tid: rustix::process::Pid) {
    let threads: Vec<rustix::process::Pid> =
        std::fs::read_dir(format!("/proc/{}/task", tid.as_raw_nonzero()))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter_map(rustix::process::Pid::from_raw)
            .collect();
    // Not a process leader (a thread of ours): /proc/<tid>/task lists the
    // whole process, so set that thread alone.
    let own = std::process::id() as i32;
    let alone = threads.is_empty() || threads.iter().any(|t| t.as_raw_nonzero().get() == own);
    let targets = if alone { vec![tid] } else { threads };
    for t in targets {
        // PRIO_PROCESS with a thread id sets that thread alone (Linux).
        if let Err(e) = rustix::process::setpriority_process(Some(t), DEMOTED_NICE) {
            log::debug!("cannot lower a level-1 render's priority: {e}");
        }
    }
}

thread_local! {
    /// The render this thread runs, for `process` to report its children.
    static CURRENT: RefCell<Option<(Weak<Lanes>, u64)>> = const { RefCell::new(None) };
}

/// Called by `process` when the current thread starts (`Some`) or has
/// reaped (`None`) a child: a render's ffmpeg is demoted with its render.
pub(crate) fn child_of_current_render(child: Option<rustix::process::Pid>) {
    CURRENT.with(|c| {
        if let Some((lanes, id)) = c.borrow().as_ref() {
            if let Some(lanes) = lanes.upgrade() {
                lanes.set_child(*id, child);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// The nice value of thread `tid`, from /proc.
    fn nice_of(tid: rustix::process::Pid) -> i64 {
        let stat =
            std::fs::read_to_string(format!("/proc/self/task/{}/stat", tid.as_raw_nonzero()))
                .unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        after.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    /// A job that reports its thread and level when it starts, then waits
    /// for its release.
    fn job(
        level: ThumbLevel,
        started: &mpsc::Sender<(ThumbLevel, rustix::process::Pid)>,
    ) -> (impl FnOnce() + Send + 'static, mpsc::Sender<()>) {
        let (release, wait) = mpsc::channel::<()>();
        let started = started.clone();
        let f = move || {
            started.send((level, rustix::thread::gettid())).unwrap();
            let _ = wait.recv();
        };
        (f, release)
    }

    fn next(
        rx: &mpsc::Receiver<(ThumbLevel, rustix::process::Pid)>,
    ) -> (ThumbLevel, rustix::process::Pid) {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("a render started")
    }

    #[test]
    fn level_0_never_waits_behind_level_1_and_demotes_it() {
        let lanes = Lanes::new(2);
        let (tx, rx) = mpsc::channel();
        // Two level-1 renders take both cores.
        let (a, release_a) = job(ThumbLevel::Screen, &tx);
        let (b, release_b) = job(ThumbLevel::Screen, &tx);
        lanes.submit(ThumbLevel::Screen, a);
        lanes.submit(ThumbLevel::Screen, b);
        let (_, ta) = next(&rx);
        let (_, tb) = next(&rx);
        assert_eq!((nice_of(ta), nice_of(tb)), (0, 0));
        // A third level 1 waits; level 0 starts at once, past it, and the
        // running level-1 renders drop to nice 19.
        let (c, release_c) = job(ThumbLevel::Screen, &tx);
        lanes.submit(ThumbLevel::Screen, c);
        let (d, release_d) = job(ThumbLevel::Small, &tx);
        lanes.submit(ThumbLevel::Small, d);
        let (level, td) = next(&rx);
        assert_eq!(level, ThumbLevel::Small);
        assert_eq!(nice_of(td), 0);
        assert_eq!((nice_of(ta), nice_of(tb)), (19, 19));
        assert_eq!(lanes.waiting(), [0, 1]);
        // Level 1 resumes when level 0 is done and a core is free, on a new
        // thread at normal priority.
        drop(release_d);
        drop(release_a);
        let (level, tc) = next(&rx);
        assert_eq!((level, nice_of(tc)), (ThumbLevel::Screen, 0));
        drop((release_b, release_c));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !lanes.lock().running.is_empty() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn level_1_beside_level_0_starts_demoted() {
        let lanes = Lanes::new(2);
        let (tx, rx) = mpsc::channel();
        let (small, release_small) = job(ThumbLevel::Small, &tx);
        lanes.submit(ThumbLevel::Small, small);
        let (_, ts) = next(&rx);
        let (screen, release_screen) = job(ThumbLevel::Screen, &tx);
        lanes.submit(ThumbLevel::Screen, screen);
        let (level, t1) = next(&rx);
        assert_eq!(level, ThumbLevel::Screen);
        assert_eq!((nice_of(ts), nice_of(t1)), (0, 19));
        drop((release_small, release_screen));
    }

    /// FIFO scheduling is a setting of one `Lanes`: in those lanes level 0
    /// waits behind level 1 (one render at once on two cores), which keeps
    /// its priority, while other lanes at the same time start level 0 at
    /// once and demote level 1.
    #[test]
    fn fifo_scheduling_is_set_per_lanes() {
        let (fifo, lanes) = (Lanes::new(2), Lanes::new(2));
        fifo.set_fifo_scheduling(true);
        assert!(fifo.fifo_scheduling() && !lanes.fifo_scheduling());
        let (tx, rx) = mpsc::channel();
        let (a, release_a) = job(ThumbLevel::Screen, &tx);
        fifo.submit(ThumbLevel::Screen, a);
        let (_, ta) = next(&rx);
        let (b, release_b) = job(ThumbLevel::Small, &tx);
        fifo.submit(ThumbLevel::Small, b);
        assert_eq!(fifo.waiting(), [1, 0], "level 0 waits its turn");
        assert_eq!(nice_of(ta), 0);
        let (c, release_c) = job(ThumbLevel::Screen, &tx);
        lanes.submit(ThumbLevel::Screen, c);
        let (_, tc) = next(&rx);
        let (d, release_d) = job(ThumbLevel::Small, &tx);
        lanes.submit(ThumbLevel::Small, d);
        assert_eq!(next(&rx).0, ThumbLevel::Small);
        assert_eq!((lanes.waiting(), nice_of(tc)), ([0, 0], 19));
        assert_eq!(nice_of(ta), 0, "the FIFO lanes' level 1 is not demoted");
        assert_eq!(fifo.waiting(), [1, 0], "still behind level 1");
        // The FIFO lanes start level 0 once level 1 is done.
        drop(release_a);
        assert_eq!(next(&rx).0, ThumbLevel::Small);
        drop((release_b, release_c, release_d));
    }

    #[test]
    fn a_panicking_render_frees_its_slot() {
        let lanes = Lanes::new(1);
        lanes.submit(ThumbLevel::Small, || panic!("a render bug"));
        let (tx, rx) = mpsc::channel();
        let (f, release) = job(ThumbLevel::Small, &tx);
        lanes.submit(ThumbLevel::Small, f);
        assert_eq!(next(&rx).0, ThumbLevel::Small);
        drop(release);
    }
}
