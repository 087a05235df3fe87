//! Users' passwords (Argon2id) and login sessions. Sessions live in memory
//! (spec §4 allows it; clients log in again on −10001): a random 128-bit
//! cookie value, sliding idle timeout, at most `max_per_user` per user (that
//! user's least recently used dropped first) and `max_online` in all (the
//! user holding the most gives one up), so no account can log others out.

use crate::clock::Clock;
use crate::config::SessionConfig;
use crate::db::{self, accounts as q, users, Db};
use crate::error::{Error, Result};
use crate::model::{CatalogId, User, UserId};
use crate::perms::{self, Perms, Session};
use crate::ratelimit::LoginLimiter;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Argon2id sized for a Raspberry Pi: 7 MiB, 5 passes, 1 lane — one of the
/// OWASP-recommended equivalent profiles (as strong as 19 MiB × 2 passes).
/// We pick the low-memory one on purpose: glibc keeps a freed block of that
/// size in its arena after the second login, so the hash's memory shows up in
/// the server's idle RSS (target < 20 MB), and on a 1 GB Pi several
/// concurrent logins must not crowd out the page cache. Stored hashes carry
/// their own parameters, so these can change without invalidating any.
const ARGON2_MEM_KIB: u32 = 7 * 1024;
const ARGON2_PASSES: u32 = 5;
const ARGON2_LANES: u32 = 1;
/// Longest password accepted (bounds hashing cost).
pub(crate) const MAX_PASSWORD_CHARS: usize = 1024;
/// Shortest password a new account or a reset may set.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;

/// The one rule for a new password, however an account is made or reset
/// (`isync user add`, `isync admin init`, `POST /api/v1/register`): 8 to
/// 1024 characters (code points, as people count them).
pub(crate) fn check_new_password(password: &str) -> std::result::Result<(), String> {
    let n = password.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "the password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long \
             (this one has {n})"
        ))
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_MEM_KIB, ARGON2_PASSES, ARGON2_LANES, None)
        .expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string. CPU-heavy: call off the runtime.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid params")
        .to_string()
}

/// Checks a password against a stored PHC string. CPU-heavy.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// What a session becomes after accounts changed: `None` when it must end
/// (user gone or disabled, key revoked). Blocking.
pub(crate) fn revalidate(
    c: &rusqlite::Connection,
    user: UserId,
    key: Option<i64>,
) -> Result<Option<(Perms, Vec<CatalogId>)>, db::DbError> {
    let Some(u) = users::by_id(c, user)? else {
        return Ok(None);
    };
    if u.disabled {
        return Ok(None);
    }
    if let Some(k) = key {
        if !q::key_exists(c, k)? {
            return Ok(None);
        }
    }
    Ok(Some((
        perms::of_type(c, u.account_type_id)?,
        users::roots(c, user)?,
    )))
}

/// Where a caller's credentials came from.
pub(crate) enum Credential<'a> {
    /// An access key (`Authorization: Bearer <key>`).
    Key(&'a str),
    /// The value of the `session` cookie.
    Cookie(String),
}

/// The caller's live session and its token — or −10001. A session made
/// stale by an account change re-reads its user first: a disabled account
/// or a revoked key ends here. SQL runs on the blocking pool.
pub(crate) async fn session_of(
    db: &Db,
    sessions: &Sessions,
    credential: Credential<'_>,
) -> Result<(String, Session)> {
    let token = match credential {
        Credential::Key(key) => return key_session(db, sessions, key).await,
        Credential::Cookie(token) => token,
    };
    let (mut s, stale) = sessions.get(&token).ok_or(Error::NeedLogin)?;
    if stale {
        let (uid, key) = (s.user_id, s.key_id);
        match db.read_async(move |c| revalidate(c, uid, key)).await? {
            Some((perms, roots)) => {
                s.perms = perms;
                s.roots = roots;
                sessions.refresh(&token, perms, s.roots.clone());
            }
            None => {
                sessions.remove(&token);
                return Err(Error::NeedLogin);
            }
        }
    }
    Ok((token, s))
}

/// The session of an access key: cached under `key:<digest>` once found in
/// the database.
async fn key_session(db: &Db, sessions: &Sessions, key: &str) -> Result<(String, Session)> {
    let digest = crate::accounts::digest(key);
    let token = format!("key:{}", hex::encode(digest));
    if let Some((mut s, stale)) = sessions.get_key(&token) {
        if !stale {
            return Ok((token, s));
        }
        let (uid, kid) = (s.user_id, s.key_id);
        return match db.read_async(move |c| revalidate(c, uid, kid)).await? {
            Some((perms, roots)) => {
                s.perms = perms;
                s.roots = roots;
                sessions.refresh(&token, perms, s.roots.clone());
                Ok((token, s))
            }
            None => {
                sessions.remove_key(&token);
                Err(Error::NeedLogin)
            }
        };
    }
    // Before the read: a disable or reset committed after it ends the
    // user's sessions, and this one must not be kept past that.
    let mark = sessions.mark();
    let found = db
        .read_async(move |c| {
            let Some((kid, uid)) = q::key_by_hash(c, &digest)? else {
                return Ok(None);
            };
            Ok(revalidate(c, uid, Some(kid))?.map(|v| (kid, uid, v)))
        })
        .await?;
    let Some((kid, uid, (perms, roots))) = found else {
        return Err(Error::NeedLogin);
    };
    // Last use is recorded once per server run and key (not per call).
    db.write_async(move |tx| q::touch_key(tx, kid, db::now()))
        .await?;
    let s = Session {
        user_id: uid,
        roots,
        perms,
        key_id: Some(kid),
    };
    if !sessions.insert_key(token.clone(), s.clone(), mark) {
        return Err(Error::NeedLogin);
    }
    Ok((token, s))
}

struct Entry {
    session: Session,
    last_seen: Instant,
    generation: u64,
}

#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Mutex<SessionsInner>>,
    cfg: SessionConfig,
    /// What idle timeouts are measured by.
    clock: Clock,
}

struct SessionsInner {
    map: HashMap<String, Entry>,
    /// Sessions of access keys, by `key:<digest>`.
    keys: HashMap<String, Entry>,
    /// Bumped whenever root grants change, so sessions re-read their roots.
    generation: u64,
    /// Bumped by every [`Sessions::end_user`]; `ended` keeps, per user, its
    /// value then. A login that started before (its [`Sessions::mark`] is
    /// older) makes no session: a password checked just before a reset or a
    /// disable must not outlive it.
    revocations: u64,
    ended: HashMap<UserId, u64>,
}

/// The cookie name legacy clients know (spec §4).
pub(crate) const COOKIE: &str = "session";

impl Sessions {
    pub(crate) fn new(cfg: SessionConfig) -> Sessions {
        Sessions {
            inner: Arc::new(Mutex::new(SessionsInner {
                map: HashMap::new(),
                keys: HashMap::new(),
                generation: 0,
                revocations: 0,
                ended: HashMap::new(),
            })),
            cfg,
            clock: Clock::default(),
        }
    }

    /// These sessions with their idle time measured by `clock` (the app's,
    /// which a test can advance).
    pub(crate) fn with_clock(mut self, clock: Clock) -> Sessions {
        self.clock = clock;
        self
    }

    fn idle(&self) -> Duration {
        Duration::from_secs(self.cfg.idle_timeout_secs)
    }

    /// Where revocations stand: take it before reading the account a
    /// session is made for, and hand it to [`Sessions::create`].
    pub(crate) fn mark(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .revocations
    }

    /// Starts a session and returns its cookie value; `None` when the
    /// user's sessions were ended since `mark` (see [`Sessions::mark`]).
    ///
    /// Past `max_per_user` sessions of this user, its least recently used
    /// goes; past `max_online` in all, the least recently used session of
    /// the user holding the most. So logging in again and again evicts
    /// only one's own sessions.
    pub(crate) fn create(&self, session: Session, mark: u64) -> Option<String> {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.ended.get(&session.user_id).is_some_and(|&at| at > mark) {
            return None;
        }
        let now = self.clock.instant();
        let idle = self.idle();
        g.map.retain(|_, e| now.duration_since(e.last_seen) < idle);
        let uid = session.user_id;
        while count_of(&g.map, uid) >= self.cfg.max_per_user.max(1) as usize {
            match least_recent(&g.map, uid) {
                Some(k) => g.map.remove(&k),
                None => break,
            };
        }
        while g.map.len() >= self.cfg.max_online.max(1) as usize {
            match busiest_users_oldest(&g.map) {
                Some(k) => g.map.remove(&k),
                None => break,
            };
        }
        let generation = g.generation;
        g.map.insert(
            token.clone(),
            Entry {
                session,
                last_seen: now,
                generation,
            },
        );
        Some(token)
    }

    /// Ends every session of `user` at once (cookies and cached access
    /// keys), and any login of it still checking a password (see
    /// [`Sessions::mark`]). For a disabled account or a password reset.
    pub(crate) fn end_user(&self, user: UserId) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.revocations += 1;
        let at = g.revocations;
        g.ended.insert(user, at);
        g.map.retain(|_, e| e.session.user_id != user);
        g.keys.retain(|_, e| e.session.user_id != user);
    }

    /// The live session for `token`, touching it (sliding timeout). The bool
    /// is true when its root set may be stale.
    pub(crate) fn get(&self, token: &str) -> Option<(Session, bool)> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.instant();
        let idle = self.idle();
        let current = g.generation;
        let e = g.map.get_mut(token)?;
        if now.duration_since(e.last_seen) >= idle {
            g.map.remove(token);
            return None;
        }
        e.last_seen = now;
        Some((e.session.clone(), e.generation != current))
    }

    /// Stores what [`revalidate`] found for a stale session.
    pub(crate) fn refresh(&self, token: &str, perms: Perms, roots: Vec<CatalogId>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let current = g.generation;
        let g = &mut *g;
        if let Some(e) = match g.map.get_mut(token) {
            Some(e) => Some(e),
            None => g.keys.get_mut(token),
        } {
            e.session.roots = roots;
            e.session.perms = perms;
            e.generation = current;
        }
    }

    /// Remembers an access key's session under `token` (`key:<digest>`),
    /// outside the cookie sessions' count and idle limits. False (nothing
    /// kept) when the user's sessions were ended since `mark`.
    pub(crate) fn insert_key(&self, token: String, session: Session, mark: u64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.ended.get(&session.user_id).is_some_and(|&at| at > mark) {
            return false;
        }
        let generation = g.generation;
        // Bounded: a key entry is made only for a key found in the database.
        if g.keys.len() >= 10_000 {
            g.keys.clear();
        }
        g.keys.insert(
            token,
            Entry {
                session,
                last_seen: self.clock.instant(),
                generation,
            },
        );
        true
    }

    /// The cached session of an access key, and whether it is stale.
    pub(crate) fn get_key(&self, token: &str) -> Option<(Session, bool)> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = g.keys.get(token)?;
        Some((e.session.clone(), e.generation != g.generation))
    }

    pub(crate) fn remove_key(&self, token: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.keys.remove(token);
    }

    /// Marks every session stale (after grants, roots or accounts change):
    /// each re-reads its user, type and roots on its next request.
    pub(crate) fn access_changed(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.generation += 1;
    }

    pub(crate) fn remove(&self, token: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.map.remove(token);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map(|g| g.map.len()).unwrap_or(0)
    }

    /// How many cookie sessions `user` has.
    pub fn count_of(&self, user: UserId) -> usize {
        self.inner
            .lock()
            .map(|g| count_of(&g.map, user))
            .unwrap_or(0)
    }
}

fn count_of(map: &HashMap<String, Entry>, user: UserId) -> usize {
    map.values().filter(|e| e.session.user_id == user).count()
}

/// The least recently used session of `user`.
fn least_recent(map: &HashMap<String, Entry>, user: UserId) -> Option<String> {
    map.iter()
        .filter(|(_, e)| e.session.user_id == user)
        .min_by_key(|(_, e)| e.last_seen)
        .map(|(k, _)| k.clone())
}

/// The least recently used session of the user holding the most sessions
/// (of those tied, the one whose oldest session is oldest).
fn busiest_users_oldest(map: &HashMap<String, Entry>) -> Option<String> {
    let mut per_user: HashMap<UserId, (usize, Instant, &String)> = HashMap::new();
    for (k, e) in map {
        let slot = per_user
            .entry(e.session.user_id)
            .or_insert((0, e.last_seen, k));
        slot.0 += 1;
        if e.last_seen < slot.1 {
            (slot.1, slot.2) = (e.last_seen, k);
        }
    }
    per_user
        .into_values()
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, _, k)| k.clone())
}

/// The password checks of one server: at most `max_pending` wait for (or
/// run on) the hashing thread at once — past that a check is refused at
/// once (−10012 with `Retry-After`) instead of queueing without bound — and
/// how many ran is counted (tests prove a flood costs no Argon2).
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<tokio::sync::Semaphore>,
    runs: Arc<AtomicU64>,
}

impl Hasher {
    pub(crate) fn new(max_pending: usize) -> Hasher {
        Hasher {
            permits: Arc::new(tokio::sync::Semaphore::new(max_pending.max(1))),
            runs: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Password hashes computed (checks and new hashes) so far.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Runs `job` (one Argon2 hash) on the hashing thread, or refuses when
    /// `max_pending` checks are queued already. The queue place is held by
    /// the job itself, so a client that hangs up does not free it before
    /// its hash has run.
    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Err(Error::TooManyPending {
                retry_after_secs: 1,
            });
        };
        let runs = self.runs.clone();
        on_hasher(move || {
            runs.fetch_add(1, Ordering::Relaxed);
            let out = job();
            drop(permit);
            out
        })
        .await
    }

    /// Hashes a new password (account creation).
    pub(crate) async fn hash(&self, password: String) -> Result<String> {
        self.run(move || hash_password(&password)).await
    }
}

/// Runs `job` on the one password-hashing thread. Serialising Argon2 bounds
/// its memory to one 7 MiB buffer at a time on a 1 GB Pi, and keeps that
/// buffer in one malloc arena, which is trimmed after each hash: hashed on
/// the blocking pool, every thread's arena would keep a freed buffer of its
/// own and idle RSS would grow with each thread that ever checked a
/// password.
async fn on_hasher<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    type Job = Box<dyn FnOnce() + Send>;
    static HASHER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    let tx = HASHER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("isync-argon2".into())
            .spawn(move || {
                for job in rx {
                    job();
                    // glibc keeps the freed buffer in this thread's arena
                    // (its mmap threshold rises past 7 MiB after the first
                    // hash): 7 MiB of idle RSS for a server nobody logs
                    // into for days. Returning it costs the next hash
                    // ~1 ms of page faults (docs/performance.md, "Memory").
                    crate::heap::release_free_memory();
                }
            })
            .expect("spawn the password hashing thread");
        std::sync::Mutex::new(tx)
    });
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done_tx.send(job());
    });
    tx.lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(job)
        .map_err(|_| Error::Internal("password hashing thread is gone".into()))?;
    done_rx
        .await
        .map_err(|_| Error::Internal("password check was dropped".into()))
}

/// Checks the credentials; on success records the login time and returns
/// the user as it was *before* (spec §3.1: `lastLoginDate` is the previous
/// login) with its permissions. Failed attempts are limited per address and
/// per name (`ratelimit`), each counted before its hash; a disabled account
/// fails like a wrong password. SQL runs on the blocking pool, Argon2 on
/// the hashing thread (at most `login.max_pending_checks` queued).
pub(crate) async fn login(
    db: &Db,
    limiter: &LoginLimiter,
    hasher: &Hasher,
    ip: IpAddr,
    name: String,
    password: String,
) -> Result<(User, Perms)> {
    let attempt = match limiter.reserve(Some(&name), ip) {
        Ok(a) => a,
        Err(secs) => {
            log::warn!("login of {name:?} from {ip} refused: too many failed attempts");
            return Err(Error::TooManyAttempts {
                retry_after_secs: secs,
            });
        }
    };
    let lookup = name.clone();
    let found = db
        .read_async(move |c| {
            let Some(u) = users::by_name(c, &lookup)? else {
                return Ok(None);
            };
            let perms = perms::of_type(c, u.account_type_id)?;
            Ok(Some((u, perms)))
        })
        .await?;
    // Same work for an unknown name as for a real check, so timing does
    // not reveal names.
    let phc = found.as_ref().map(|(u, _)| u.password_hash.clone());
    let checked = hasher
        .run(move || verify_password(&password, phc.as_deref().unwrap_or(&DUMMY_HASH)))
        .await;
    let ok = match checked {
        Ok(ok) => ok && found.as_ref().is_some_and(|(u, _)| !u.disabled),
        Err(e @ Error::TooManyPending { .. }) => {
            // Not a guess: nothing was checked.
            limiter.release(attempt);
            log::warn!("login of {name:?} from {ip} refused: too many password checks waiting");
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let Some((user, perms)) = found.filter(|_| ok) else {
        log::info!("failed login for {name:?} from {ip}");
        return Err(Error::BadLogin);
    };
    // The account may have been disabled or its password reset while the
    // hash ran: the login counts only if it still stands as checked.
    let (id, phc) = (user.id, user.password_hash.clone());
    let still = db
        .write_async(move |tx| {
            let now = users::by_id(tx, id)?;
            let still = now.is_some_and(|u| !u.disabled && u.password_hash == phc);
            if still {
                users::set_last_login(tx, id, db::now())?;
            }
            Ok(still)
        })
        .await?;
    if !still {
        log::info!("login of {name:?} from {ip} raced a disable or a password reset");
        return Err(Error::BadLogin);
    }
    limiter.succeeded(attempt, &user.name);
    Ok((user, perms))
}

static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("not a real password"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash_password("hunter2");
        let b = hash_password("hunter2");
        assert_ne!(a, b, "salted");
        // The promised profile, read back from the PHC string: Argon2id
        // v1.3, 7 MiB, 5 passes, 1 lane.
        let h = PasswordHash::new(&a).unwrap();
        assert_eq!(h.algorithm.as_str(), "argon2id");
        assert_eq!(h.version, Some(0x13));
        let p = Params::try_from(&h).unwrap();
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (7168, 5, 1), "{a}");
        assert!(a.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{a}");
        assert!(verify_password("hunter2", &a));
        assert!(!verify_password("hunter3", &a));
        assert!(!verify_password("hunter2", "garbage"));
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = Sessions::new(SessionConfig {
            max_online: 2,
            idle_timeout_secs: 3600,
            max_per_user: 10,
        });
        let a = s.create(mk(1), 0).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let b = s.create(mk(2), 0).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(s.get(&a).is_some()); // touch a: b is now least recent
        std::thread::sleep(Duration::from_millis(2));
        let c = s.create(mk(3), 0).unwrap();
        assert!(s.get(&b).is_none(), "least recently used dropped");
        assert!(s.get(&a).is_some());
        assert!(s.get(&c).is_some());
        s.remove(&a);
        assert!(s.get(&a).is_none());

        let short = Sessions::new(SessionConfig {
            max_online: 5,
            idle_timeout_secs: 1,
            max_per_user: 10,
        });
        let t = short.create(mk(1), 0).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(short.get(&t).is_none(), "idle timeout");
    }

    fn mk(id: i64) -> Session {
        Session {
            user_id: UserId(id),
            roots: vec![],
            perms: Perms::default(),
            key_id: None,
        }
    }

    #[test]
    fn one_user_evicts_only_its_own_sessions() {
        let s = Sessions::new(SessionConfig {
            max_online: 6,
            idle_timeout_secs: 3600,
            max_per_user: 3,
        });
        let alice = s.create(mk(1), 0).unwrap();
        let bob: Vec<String> = (0..50).map(|_| s.create(mk(2), 0).unwrap()).collect();
        assert!(s.get(&alice).is_some(), "alice kept");
        assert_eq!(s.count_of(UserId(2)), 3);
        assert!(bob[..47].iter().all(|t| s.get(t).is_none()));
        assert!(bob[47..].iter().all(|t| s.get(t).is_some()));
        // Past the global cap, the user holding the most gives one up.
        let carol: Vec<String> = (0..3).map(|_| s.create(mk(3), 0).unwrap()).collect();
        assert_eq!(s.len(), 6);
        assert!(s.get(&alice).is_some(), "the user with one session kept it");
        assert!(carol.iter().all(|t| s.get(t).is_some()));
        assert_eq!(s.count_of(UserId(2)), 2);
    }

    #[test]
    fn ending_a_user_ends_its_sessions_and_logins_in_flight() {
        let s = Sessions::new(SessionConfig::default());
        let before = s.mark();
        let a = s.create(mk(1), before).unwrap();
        let other = s.create(mk(2), before).unwrap();
        assert!(s.insert_key("key:x".into(), mk(1), before));
        s.end_user(UserId(1));
        assert!(s.get(&a).is_none() && s.get_key("key:x").is_none());
        assert!(s.get(&other).is_some(), "other users untouched");
        // A login whose password was checked before the end makes nothing.
        assert!(s.create(mk(1), before).is_none());
        assert!(!s.insert_key("key:y".into(), mk(1), before));
        // A login that starts afterwards works.
        assert!(s.create(mk(1), s.mark()).is_some());
        assert!(
            s.create(mk(2), before).is_some(),
            "other users' logins go on"
        );
    }
}
