//! One daemon per SQLite store: `mfactl watch` holds an OS file lock on `<store>.watch.lock` for
//! its whole life, with `pid N on HOST since TIME` written inside, so that a second daemon on
//! the same store fails at start naming the first. The kernel drops the lock when the process
//! ends, however it ends, so a killed daemon never leaves a stale lock behind (the file stays,
//! unlocked; the next daemon takes it over). That daemon always leads, in epoch 0: with no
//! other replica there is nothing to fence.

use super::{Elector, Role};
use crate::model::Timestamp;
use crate::store::{Result, StoreError};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lock file of the store at `store`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".watch.lock");
    PathBuf::from(p)
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
}

impl LockFile {
    /// Takes the lock of the store at `store`, or fails naming the daemon holding it.
    pub fn acquire(store: &Path) -> Result<LockFile> {
        let path = lock_path(store);
        let io = |what: &str, e: std::io::Error| StoreError::Io {
            path: store.to_path_buf(),
            detail: format!("{what} the watch lock file {}: {e}", path.display()),
        };
        // Not truncated on open: until we hold the lock, the text is the running daemon's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("cannot open", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::Io {
                    path: store.to_path_buf(),
                    detail: running_elsewhere(&holder, &path),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("cannot lock", e)),
        }
        let text = holder_text(std::process::id(), &super::hostname(), now());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| io("cannot write", e))?;
        Ok(LockFile { _file: file })
    }
}

impl Elector for LockFile {
    fn poll(&mut self) -> Result<Role> {
        Ok(Role::Leader { epoch: 0 })
    }

    fn next_poll(&self) -> Option<Duration> {
        None
    }

    fn resign(&mut self) {}
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Timestamp::from_unix(secs)
}

/// What the lock file says about the daemon holding it.
fn holder_text(pid: u32, host: &str, since: Timestamp) -> String {
    format!("pid {pid} on {host} since {since}\n")
}

/// The message for a second daemon: who holds the lock (as its file says), and what to do.
fn running_elsewhere(holder: &str, lock: &Path) -> String {
    let holder = holder.trim();
    let who = if holder.is_empty() {
        "a daemon that has not written its pid yet".to_string()
    } else {
        crate::util::escape_text(holder).into_owned()
    };
    format!(
        "another `mfactl watch` runs on this store ({who}; it holds {}); only one daemon may \
         watch a SQLite store: stop that one first (replicas need a PostgreSQL store)",
        lock.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_store() {
        assert_eq!(
            lock_path(Path::new("/var/lib/mfactl/mfactl.db")),
            PathBuf::from("/var/lib/mfactl/mfactl.db.watch.lock")
        );
    }

    #[test]
    fn a_second_lock_names_the_first_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.db");
        let first = LockFile::acquire(&store).unwrap();
        let text = std::fs::read_to_string(lock_path(&store)).unwrap();
        assert!(
            text.starts_with(&format!("pid {} on ", std::process::id())),
            "{text}"
        );
        let err = LockFile::acquire(&store).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("s.db.watch.lock"), "{err}");
        assert_eq!(
            std::fs::read_to_string(lock_path(&store)).unwrap(),
            text,
            "the running daemon's text is left alone"
        );
        drop(first);
        let again = LockFile::acquire(&store);
        assert!(again.is_ok(), "released on drop: {again:?}");
    }

    #[test]
    fn hostile_text_in_the_lock_file_is_escaped() {
        let msg = running_elsewhere("pid 1\x1b[2J", Path::new("x.lock"));
        assert!(!msg.contains('\x1b'), "{msg}");
    }
}
