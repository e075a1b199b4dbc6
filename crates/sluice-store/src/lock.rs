//! One scheduler per SQLite file: an exclusive OS lock on a file beside the database.
//!
//! `dagctl scheduler` takes the lock before it opens the database and holds it for its whole
//! life; a second scheduler on the same file fails at once with [`LockError::Held`], naming the
//! holder (pid, host, since when) from what the holder wrote into the lock file, and touches
//! nothing. The CLI's other commands never take it: they work beside a running daemon.
//!
//! Why an OS lock (`flock`, through `File::try_lock`) and not a lease row with a heartbeat:
//! the kernel releases it the instant the holder dies, `kill -9` included, so a crashed daemon
//! never blocks the next start and nothing has to expire; it costs no write and no wake-up
//! while held (the daemon stays idle at zero I/O); and it needs no clock. SQLite itself needs
//! a local file system, where `flock` works. The descriptor is opened close-on-exec (Rust's
//! default), so a task process that outlives a killed daemon does not keep the lock. Several
//! schedulers sharing one PostgreSQL database coordinate through the database instead.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::DbUrl;

/// Who holds (or held) the lock, as the holder wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub since: DateTime<Utc>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on host {}, since {}", self.pid, self.host, self.since.format("%Y-%m-%d %H:%M:%S UTC"))
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another scheduler is already running on this database: {} (lock {}); stop it first, or give this one its own --db",
        holder.as_ref().map_or_else(|| "its pid is not written yet".to_string(), |h| h.to_string()),
        path.display()
    )]
    Held { path: PathBuf, holder: Option<Holder> },
    #[error("cannot use the lock file {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct SchedulerLock {
    _file: File,
    path: PathBuf,
}

impl SchedulerLock {
    /// Takes the lock of the SQLite database at `url` (`sqlite:PATH`, `sqlite://PATH` or a
    /// path): the file `PATH.lock`. `Ok(None)` for an in-memory database, which no other
    /// process can open.
    pub fn acquire(url: &str) -> Result<Option<SchedulerLock>, LockError> {
        match lock_path(url) {
            Some(path) => SchedulerLock::acquire_at(path).map(Some),
            None => Ok(None),
        }
    }

    /// Takes the lock at `path`, writing this process's pid, host and start time into it.
    pub fn acquire_at(path: PathBuf) -> Result<SchedulerLock, LockError> {
        let io = |source| LockError::Io { path: path.clone(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Never truncated on open: the holder's details stay readable for whoever fails.
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LockError::Held { holder: read_holder(&path), path }),
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let me = Holder { pid: std::process::id(), host: hostname(), since: Utc::now() };
        let text = format!("pid={}\nhost={}\nsince={}\n", me.pid, me.host, me.since.to_rfc3339());
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(SchedulerLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file of a SQLite URL; `None` for an in-memory database (and for a URL that names no
/// SQLite file: a server database coordinates its schedulers itself, and an unsupported URL
/// fails when the store opens it).
pub fn lock_path(url: &str) -> Option<PathBuf> {
    match DbUrl::parse(url).ok()? {
        DbUrl::Sqlite { path } => {
            let mut name = path.into_os_string();
            name.push(".lock");
            Some(PathBuf::from(name))
        }
        DbUrl::SqliteMemory | DbUrl::Postgres(_) => None,
    }
}

/// What the holder of the lock at `path` wrote, if it could be read.
/// The scheduler holding the lock of database `url` now, without touching the lock (a daemon
/// starting meanwhile must not find it taken): the holder the file names, if that process is
/// alive (on this host; a holder on another host is taken at its word).
pub fn live_holder(url: &str) -> Option<Holder> {
    let holder = read_holder(&lock_path(url)?)?;
    let here = holder.host == hostname();
    (!here || pid_alive(holder.pid)).then_some(holder)
}

/// Whether a process `pid` exists on this host.
pub(crate) fn pid_alive(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

pub fn read_holder(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(path).ok()?.take(4096).read_to_string(&mut text).ok()?;
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::trim);
    Some(Holder {
        pid: field("pid")?.parse().ok()?,
        host: field("host")?.to_string(),
        since: DateTime::parse_from_rfc3339(field("since")?).ok()?.with_timezone(&Utc),
    })
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_paths() {
        assert_eq!(lock_path("sqlite:sluice.db"), Some(PathBuf::from("sluice.db.lock")));
        assert_eq!(lock_path("sqlite:///var/lib/s.db?mode=rwc"), Some(PathBuf::from("/var/lib/s.db.lock")));
        assert_eq!(lock_path("state/s.db"), Some(PathBuf::from("state/s.db.lock")));
        assert_eq!(lock_path("sqlite::memory:"), None);
        assert_eq!(lock_path(":memory:"), None);
        assert_eq!(lock_path("postgres://u@h/d"), None);
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_named_and_the_lock_is_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db.lock");
        let first = SchedulerLock::acquire_at(path.clone()).unwrap();
        // flock locks belong to open file descriptions: a second open in the same process
        // conflicts just as another process would.
        match SchedulerLock::acquire_at(path.clone()) {
            Err(LockError::Held { holder: Some(h), .. }) => {
                assert_eq!(h.pid, std::process::id());
                assert!(!h.host.is_empty());
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let again = SchedulerLock::acquire_at(path.clone()).unwrap();
        assert_eq!(again.path(), path);
    }
}
