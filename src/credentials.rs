//! Where an apply's temporary passwords go, so that the file at `--credentials-out FILE` exists
//! if and only if the apply committed, whatever interrupts it (SIGINT, SIGTERM, SIGKILL, power
//! loss).
//!
//! Before the commit, the passwords go to `FILE.uncommitted-<plan id>` beside FILE: a new 0600
//! file, synced, its name synced, and locked (`flock`) by the apply that writes it, under a name
//! that says they are not issued. Only once the apply has committed is that file linked to FILE.
//! A crash between the two leaves the pending file; the next `apply --credentials-out FILE` (and
//! each reconcile of `watch --credentials-dir DIR`) settles it under the store's write lock: it
//! becomes FILE when its plan committed with these very passwords (the store's hashes verify
//! them), and is deleted otherwise. A pending file still locked belongs to a running apply and is
//! left alone.

use crate::model::{key_of, Secret};
use crate::sources::io_reason;
use crate::store;
use crate::util::escape_text;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a credentials file could not be written or a leftover settled.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is in the way, or cannot be created: nothing was applied.
    #[error("{0}")]
    Refused(String),
    /// The store could not be read to settle a leftover.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What a pending file's name adds to FILE's: `FILE.uncommitted-<plan id>`.
pub const UNCOMMITTED: &str = ".uncommitted-";

/// Plan ids are hexadecimal (128 random bits, or a SHA-256); anything else never names a file.
const MAX_ID_LEN: usize = 128;

/// A leftover larger than this is not one mfactl wrote (a password line is under 300 bytes).
const MAX_PENDING_BYTES: u64 = 64 * 1024 * 1024;

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn shown(p: &Path) -> String {
    escape_text(&p.display().to_string()).into_owned()
}

/// The directory a file lives in (`.` for a bare name).
fn dir_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes the directory's entries (a new name, a removed one) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The file `watch --credentials-dir DIR` writes for a plan.
pub fn daemon_file(dir: &Path, plan_id: &str) -> PathBuf {
    dir.join(format!("credentials-{plan_id}.tsv"))
}

/// The temporary passwords of an apply that has not committed yet, in a file whose name says so;
/// this process holds its lock until it is published or discarded.
pub struct Pending {
    file: File,
    pending: PathBuf,
    target: PathBuf,
    count: usize,
}

/// Writes `user<TAB>password` lines to `TARGET.uncommitted-<plan_id>`: a new 0600 file (never an
/// existing file or a symlink), synced with its name. Refuses when TARGET exists, and when another
/// pending file of TARGET is in the way (a running apply's, or a leftover not settled).
pub fn write(target: &Path, plan_id: &str, issued: &[(&str, Secret)]) -> Result<Pending, Error> {
    let refuse = |why: String| {
        Error::Refused(format!(
            "--credentials-out {}: {why}; nothing was applied",
            shown(target)
        ))
    };
    if !valid_id(plan_id) {
        return Err(refuse(format!(
            "plan id {} cannot name a file (plan ids are hexadecimal)",
            escape_text(plan_id)
        )));
    }
    let Some(name) = target.file_name() else {
        return Err(refuse("not a file name".into()));
    };
    if std::fs::symlink_metadata(target).is_ok() {
        return Err(refuse("already exists; it must be a new file".into()));
    }
    if let Some(other) = leftovers_of(target).first() {
        return Err(refuse(format!(
            "{} is in the way: another apply is writing this file, or it is the leftover of an \
             interrupted apply that mfactl could not settle (see above); it must be a new file",
            shown(&other.pending)
        )));
    }
    let mut pending_name = name.to_os_string();
    pending_name.push(UNCOMMITTED);
    pending_name.push(plan_id);
    let pending = target.with_file_name(pending_name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&pending)
        .map_err(|e| refuse(format!("{}: {}", shown(&pending), io_reason(&e))))?;
    let mut body = zeroize::Zeroizing::new(String::new());
    for (u, pw) in issued {
        body.push_str(u);
        body.push('\t');
        body.push_str(pw.expose());
        body.push('\n');
    }
    let written = file
        .try_lock()
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|_| file.write_all(body.as_bytes()))
        .and_then(|_| file.sync_all())
        .and_then(|_| sync_dir(&dir_of(target)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&pending);
        return Err(refuse(format!("{}: {}", shown(&pending), io_reason(&e))));
    }
    Ok(Pending {
        file,
        pending,
        target: target.to_path_buf(),
        count: issued.len(),
    })
}

impl Pending {
    pub fn count(&self) -> usize {
        self.count
    }

    /// The apply did not commit: these passwords were never set.
    pub fn discard(self) {
        if std::fs::remove_file(&self.pending).is_ok() {
            let _ = sync_dir(&dir_of(&self.target));
        }
    }

    /// The apply committed: the passwords become TARGET (never replacing a file that appeared
    /// meanwhile). The error says where the passwords are then.
    pub fn publish(self) -> Result<PathBuf, String> {
        link_new(&self.pending, &self.target).map_err(|e| {
            format!(
                "--credentials-out {}: {}, so its {} temporary password{} stay in {}: hand them \
                 over from there",
                shown(&self.target),
                io_reason(&e),
                self.count,
                if self.count == 1 { "" } else { "s" },
                shown(&self.pending)
            )
        })?;
        drop(self.file); // the lock: held until the passwords are where they belong
        Ok(self.target)
    }
}

/// Gives `from` the name `to` (which must not exist), drops the name `from`, and syncs both.
fn link_new(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
        // A file system without hard links: a rename, after checking by hand.
        Err(_) if std::fs::symlink_metadata(to).is_err() => std::fs::rename(from, to)?,
        Err(e) => return Err(e),
    }
    let _ = std::fs::remove_file(from); // a second name left over is settled later
    sync_dir(&dir_of(to))
}

/// A pending file found beside its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pending: PathBuf,
    pub target: PathBuf,
    pub plan_id: String,
}

/// The pending files of `target`: `TARGET.uncommitted-<id>`, sorted.
pub fn leftovers_of(target: &Path) -> Vec<Leftover> {
    let Some(name) = target.file_name() else {
        return Vec::new();
    };
    let parent = target.parent().unwrap_or(Path::new(""));
    scan(&dir_of(target), parent, &|base, _| base == name)
}

/// The pending files that `watch --credentials-dir DIR` leaves: `credentials-<id>.tsv.uncommitted-<id>`.
pub fn leftovers_in(dir: &Path) -> Vec<Leftover> {
    scan(dir, dir, &|base, id| {
        daemon_file(Path::new(""), id).as_os_str() == base
    })
}

/// Reads `dir` and names what it finds as under `named` (the directory as the user spelled it).
fn scan(dir: &Path, named: &Path, wanted: &dyn Fn(&OsStr, &str) -> bool) -> Vec<Leftover> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new(); // then writing there fails, and says why
    };
    let mut found: Vec<Leftover> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let (base, id) = split_pending(&name)?;
            wanted(base, id).then(|| Leftover {
                pending: named.join(&name),
                target: named.join(base),
                plan_id: id.to_string(),
            })
        })
        .collect();
    found.sort_by(|a, b| a.pending.cmp(&b.pending));
    found
}

/// `NAME.uncommitted-ID` → (NAME, ID), for a well-formed ID only.
fn split_pending(name: &OsStr) -> Option<(&OsStr, &str)> {
    let bytes = name.as_bytes();
    let marker = UNCOMMITTED.as_bytes();
    let at = bytes.windows(marker.len()).rposition(|w| w == marker)?;
    let id = std::str::from_utf8(&bytes[at + marker.len()..]).ok()?;
    (at > 0 && valid_id(id)).then(|| (OsStr::from_bytes(&bytes[..at]), id))
}

/// Settles leftovers; the caller holds the store's write lock. One line per leftover says what
/// became of it. Only a store that cannot be read is an error.
pub fn settle(conn: &crate::store::Conn, found: &[Leftover]) -> Result<Vec<String>, Error> {
    let mut notes = Vec::new();
    for l in found {
        if let Some(note) = settle_one(conn, l)? {
            notes.push(note);
        }
    }
    Ok(notes)
}

fn settle_one(conn: &crate::store::Conn, l: &Leftover) -> Result<Option<String>, Error> {
    let p = shown(&l.pending);
    let Ok(meta) = std::fs::symlink_metadata(&l.pending) else {
        return Ok(None); // gone meanwhile
    };
    let alien = |why: &str| -> Result<Option<String>, Error> {
        Ok(Some(format!(
            "{p}: {why}, so not a file mfactl wrote; left alone"
        )))
    };
    if !meta.file_type().is_file() || meta.mode() & 0o777 != 0o600 {
        return alien("not a private (0600) regular file");
    }
    let mut file = match File::open(&l.pending) {
        Ok(f) => f,
        Err(e) => return Ok(Some(format!("{p}: {}; left alone", io_reason(&e)))),
    };
    match file.metadata() {
        Ok(m) if m.ino() == meta.ino() && m.dev() == meta.dev() => {}
        _ => return Ok(Some(format!("{p}: replaced while being read; left alone"))),
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Ok(Some(format!(
                "{p}: belongs to an apply that is still running; left alone"
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Ok(Some(format!(
                "{p}: cannot lock: {}; left alone",
                io_reason(&e)
            )))
        }
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    if (&mut file)
        .take(MAX_PENDING_BYTES + 1)
        .read_to_string(&mut text)
        .is_err()
        || text.len() as u64 > MAX_PENDING_BYTES
    {
        return alien("not UTF-8 text of a sane size");
    }
    let lines: Option<Vec<(&str, &str)>> = text
        .lines()
        .map(|l| {
            l.split_once('\t')
                .filter(|(u, pw)| !u.is_empty() && !pw.is_empty())
        })
        .collect();
    let Some(lines) = lines.filter(|l| !l.is_empty()) else {
        return alien("not user<TAB>password lines");
    };
    let id = &l.plan_id;
    let n = lines.len();
    let (passwords, were, are) = if n == 1 {
        ("password", "was", "is")
    } else {
        ("passwords", "were", "are")
    };
    if !conn.plan_applied(id)? {
        return Ok(Some(removed(
            &l.pending,
            &format!(
                "plan {id} never committed, so its {n} temporary {passwords} {were} never set"
            ),
        )));
    }
    let mut set = false;
    for (user, pw) in &lines {
        let hash = store::password_hash(conn, &key_of(user))?;
        if hash.is_some_and(|h| verifies(pw, &h)) {
            set = true;
            break;
        }
    }
    if !set {
        return Ok(Some(removed(
            &l.pending,
            &format!(
                "plan {id} committed, but with other passwords than the {n} in it (another run of \
                 the same plan), or they have been replaced since; they do not work"
            ),
        )));
    }
    let t = shown(&l.target);
    Ok(Some(match std::fs::symlink_metadata(&l.target) {
        Ok(m) if m.ino() == meta.ino() && m.dev() == meta.dev() => removed(
            &l.pending,
            &format!("a second name of {t}, left by an apply stopped while handing it over"),
        ),
        Ok(_) => format!(
            "{p} holds the {n} temporary {passwords} of plan {id}, which committed, but {t} \
             exists, so they stay there: hand them over from {p}"
        ),
        Err(_) => match link_new(&l.pending, &l.target) {
            Ok(()) => format!(
                "plan {id} had committed when its apply was interrupted: its {n} temporary \
                 {passwords} {are} now in {t} (mode 0600); hand them over out of band, then delete it"
            ),
            Err(e) => format!(
                "{p} holds the {n} temporary {passwords} of plan {id}, which committed; moving it \
                 to {t} failed ({}): move it by hand",
                io_reason(&e)
            ),
        },
    }))
}

/// Removes a leftover, saying why (or that it could not).
fn removed(pending: &Path, why: &str) -> String {
    let p = shown(pending);
    match std::fs::remove_file(pending) {
        Ok(()) => {
            let _ = sync_dir(&dir_of(pending));
            format!("removed {p}: {why}")
        }
        Err(e) => format!(
            "{p}: {why}; removing it failed ({}): remove it by hand",
            io_reason(&e)
        ),
    }
}

fn verifies(password: &str, stored: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(stored).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// `TARGET.uncommitted-<id>` for a target given as a string (tests).
#[cfg(test)]
fn pending_of(target: &str, id: &str) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(target);
    s.push(UNCOMMITTED);
    s.push(id);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hexadecimal_plan_ids_name_a_pending_file() {
        for bad in [
            "",
            "../x",
            "a/b",
            "ab\ncd",
            "abc.tsv",
            "xyz",
            "ab cd",
            &"a".repeat(MAX_ID_LEN + 1),
        ] {
            assert!(!valid_id(bad), "{bad:?}");
            assert_eq!(
                split_pending(&pending_of("creds.tsv", bad)),
                None,
                "{bad:?}"
            );
        }
        let name = pending_of("creds.tsv", "0123abcdef");
        assert_eq!(
            split_pending(&name),
            Some((OsStr::new("creds.tsv"), "0123abcdef"))
        );
        // The last marker counts: a target whose own name holds one is still found.
        let name = pending_of("a.uncommitted-1.tsv", "ff");
        assert_eq!(
            split_pending(&name),
            Some((OsStr::new("a.uncommitted-1.tsv"), "ff"))
        );
        assert_eq!(split_pending(OsStr::new(".uncommitted-ff")), None);
    }

    #[test]
    fn a_hostile_plan_id_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("creds.tsv");
        for bad in ["../../escaped", "x/y", "a\nb"] {
            let issued = [("u", Secret::new("pw".into()))];
            let err = write(&target, bad, &issued).err().unwrap();
            assert!(err.to_string().contains("cannot name a file"), "{err}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
