//! Users' passwords (Argon2id) and login sessions. Sessions live in memory
//! (spec §4 allows it; clients log in again on −10001): a random 128-bit
//! cookie value, sliding idle timeout, at most `max_online`, least recently
//! used dropped first.

use crate::accounts::{self, Perm, Perms};
use crate::config::SessionConfig;
use crate::db::{self, accounts as q, users, Db};
use crate::error::{Error, Result};
use crate::model::{CatalogId, User, UserId};
use crate::ratelimit::LoginLimiter;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use std::collections::HashMap;
use std::net::IpAddr;
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
pub const MAX_PASSWORD_CHARS: usize = 1024;

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

/// A logged-in session (cookie or access key) as handlers see it.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: UserId,
    /// Root catalogs this user may access (looked up at login, refreshed
    /// when access changes).
    pub roots: Vec<CatalogId>,
    /// What the account's type allows (refreshed when accounts change).
    pub perms: Perms,
    /// The access key used, when the caller sent one instead of a cookie.
    pub key_id: Option<i64>,
}

impl Session {
    pub fn can(&self, p: Perm) -> bool {
        self.perms.has(p)
    }

    /// −10002 unless the account's type has `p`.
    pub fn require(&self, p: Perm) -> Result<()> {
        if self.can(p) {
            Ok(())
        } else {
            Err(Error::NoPermission(format!(
                "your account type does not allow this (it needs the `{}` permission; ask an admin)",
                p.name()
            )))
        }
    }
}

/// What a session becomes after accounts changed: `None` when it must end
/// (user gone or disabled, key revoked). Blocking.
pub fn revalidate(
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
        accounts::perms_of_type(c, u.account_type_id)?,
        users::roots(c, user)?,
    )))
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
}

struct SessionsInner {
    map: HashMap<String, Entry>,
    /// Sessions of access keys, by `key:<digest>`.
    keys: HashMap<String, Entry>,
    /// Bumped whenever root grants change, so sessions re-read their roots.
    generation: u64,
}

/// The cookie name legacy clients know (spec §4).
pub const COOKIE: &str = "session";

impl Sessions {
    pub fn new(cfg: SessionConfig) -> Sessions {
        Sessions {
            inner: Arc::new(Mutex::new(SessionsInner {
                map: HashMap::new(),
                keys: HashMap::new(),
                generation: 0,
            })),
            cfg,
        }
    }

    fn idle(&self) -> Duration {
        Duration::from_secs(self.cfg.idle_timeout_secs)
    }

    /// Starts a session and returns its cookie value.
    pub fn create(&self, session: Session) -> String {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let idle = self.idle();
        g.map.retain(|_, e| now.duration_since(e.last_seen) < idle);
        while g.map.len() >= self.cfg.max_online as usize {
            let oldest = g
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    g.map.remove(&k);
                }
                None => break,
            }
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
        token
    }

    /// The live session for `token`, touching it (sliding timeout). The bool
    /// is true when its root set may be stale.
    pub fn get(&self, token: &str) -> Option<(Session, bool)> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
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
    pub fn refresh(&self, token: &str, perms: Perms, roots: Vec<CatalogId>) {
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
    /// outside the cookie sessions' count and idle limits.
    pub fn insert_key(&self, token: String, session: Session) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let generation = g.generation;
        // Bounded: a key entry is made only for a key found in the database.
        if g.keys.len() >= 10_000 {
            g.keys.clear();
        }
        g.keys.insert(
            token,
            Entry {
                session,
                last_seen: Instant::now(),
                generation,
            },
        );
    }

    /// The cached session of an access key, and whether it is stale.
    pub fn get_key(&self, token: &str) -> Option<(Session, bool)> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = g.keys.get(token)?;
        Some((e.session.clone(), e.generation != g.generation))
    }

    pub fn remove_key(&self, token: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.keys.remove(token);
    }

    /// Marks every session stale (after grants, roots or accounts change):
    /// each re-reads its user, type and roots on its next request.
    pub fn access_changed(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.generation += 1;
    }

    pub fn remove(&self, token: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.map.remove(token);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
/// per name (`ratelimit`); a disabled account fails like a wrong password.
/// SQL runs on the blocking pool, Argon2 on the hashing thread.
pub async fn login(
    db: &Db,
    limiter: &LoginLimiter,
    ip: IpAddr,
    name: String,
    password: String,
) -> Result<(User, Perms)> {
    if let Err(secs) = limiter.check(Some(&name), ip) {
        log::warn!("login of {name:?} from {ip} refused: too many failed attempts");
        return Err(Error::TooManyAttempts {
            retry_after_secs: secs,
        });
    }
    let lookup = name.clone();
    let found = db
        .read_async(move |c| {
            let Some(u) = users::by_name(c, &lookup)? else {
                return Ok(None);
            };
            let perms = accounts::perms_of_type(c, u.account_type_id)?;
            Ok(Some((u, perms)))
        })
        .await?;
    let ok = match &found {
        Some((user, _)) => {
            let phc = user.password_hash.clone();
            on_hasher(move || verify_password(&password, &phc)).await? && !user.disabled
        }
        None => {
            // Same work as a real check, so timing does not reveal names.
            on_hasher(move || verify_password(&password, DUMMY_HASH.as_str())).await?;
            false
        }
    };
    let Some((user, perms)) = found.filter(|_| ok) else {
        limiter.failure(Some(&name), ip);
        log::info!("failed login for {name:?} from {ip}");
        return Err(Error::BadLogin);
    };
    limiter.success(&user.name, ip);
    let id = user.id;
    db.write_async(move |tx| users::set_last_login(tx, id, db::now()))
        .await?;
    Ok((user, perms))
}

/// Hashes a password on the hashing thread (for account creation).
pub async fn hash_password_async(password: String) -> Result<String> {
    on_hasher(move || hash_password(&password)).await
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
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("hunter2", &a));
        assert!(!verify_password("hunter3", &a));
        assert!(!verify_password("hunter2", "garbage"));
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = Sessions::new(SessionConfig {
            max_online: 2,
            idle_timeout_secs: 3600,
        });
        let mk = |id| Session {
            user_id: UserId(id),
            roots: vec![],
            perms: Perms::default(),
            key_id: None,
        };
        let a = s.create(mk(1));
        std::thread::sleep(Duration::from_millis(2));
        let b = s.create(mk(2));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(s.get(&a).is_some()); // touch a: b is now least recent
        std::thread::sleep(Duration::from_millis(2));
        let c = s.create(mk(3));
        assert!(s.get(&b).is_none(), "least recently used dropped");
        assert!(s.get(&a).is_some());
        assert!(s.get(&c).is_some());
        s.remove(&a);
        assert!(s.get(&a).is_none());

        let short = Sessions::new(SessionConfig {
            max_online: 5,
            idle_timeout_secs: 1,
        });
        let t = short.create(mk(1));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(short.get(&t).is_none(), "idle timeout");
    }
}
