//! File events: notify watches on the manifest paths, turned into "something changed" signals.
//!
//! A directory path is watched recursively; every path's nearest existing ancestor is watched too,
//! non-recursively, so that a manifest directory that is deleted or renamed is seen coming back.
//! [`Watches::rearm`] re-establishes the watches whenever a path reappears (as a new inode).
//! Events are only a hint — the reconcile reloads everything — so they carry no detail.
//!
//! When the kernel's inotify watches run out, the watches fall back to polling the same paths
//! every [`POLL_INTERVAL`] (notify's `PollWatcher`): slower to notice, but nothing goes unseen.

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, PollWatcher, RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use tokio::sync::mpsc;

/// What the watcher thread tells the loop.
#[derive(Debug)]
pub enum Signal {
    /// A manifest path (or one of its ancestors) changed.
    Changed,
    /// The watcher reported an error (e.g. too many watches); logged, and the timer still runs.
    Error(String),
}

/// Turns a watcher's events into [`Signal`]s.
type Handler = Box<dyn FnMut(notify::Result<Event>) + Send>;

/// How often the polling fallback looks at the files.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Watches {
    watcher: Box<dyn Watcher + Send>,
    /// Whether the watcher is the polling fallback.
    polling: bool,
    /// Builds the fallback's event handler.
    handler: Box<dyn Fn() -> Handler + Send>,
    roots: Vec<PathBuf>,
    /// Watched path → (device, inode, recursive), to notice a path replaced by a new one.
    armed: BTreeMap<PathBuf, (u64, u64, bool)>,
    missing: BTreeMap<PathBuf, bool>,
}

/// What [`Watches::rearm`] noticed, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Note {
    Missing {
        path: PathBuf,
        watching: PathBuf,
    },
    Back(PathBuf),
    Failed {
        path: PathBuf,
        error: String,
    },
    /// The inotify watches ran out: polling from now on.
    Polling {
        error: String,
    },
}

impl Watches {
    /// `roots` are the manifest paths as given; they are made absolute here.
    pub fn new(roots: &[PathBuf], tx: mpsc::Sender<Signal>) -> notify::Result<Watches> {
        let roots: Vec<PathBuf> = roots
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect();
        let filter = roots.clone();
        let handler = move || -> Handler {
            let (filter, tx) = (filter.clone(), tx.clone());
            Box::new(move |res: notify::Result<Event>| {
                let signal = match res {
                    Ok(ev) if relevant(&filter, &ev) => Signal::Changed,
                    Ok(_) => return,
                    Err(e) => Signal::Error(e.to_string()),
                };
                // A full channel already holds a wake-up; level-triggered, so dropping is harmless.
                let _ = tx.try_send(signal);
            })
        };
        let watcher: Box<dyn Watcher + Send> = if exhausted_for_tests() {
            Box::new(Exhausted)
        } else {
            Box::new(notify::recommended_watcher(handler())?)
        };
        Ok(Watches {
            watcher,
            polling: false,
            handler: Box::new(handler),
            roots,
            armed: BTreeMap::new(),
            missing: BTreeMap::new(),
        })
    }

    /// Watches what exists now: each directory root recursively and each root's nearest existing
    /// ancestor non-recursively; re-watches a path that was replaced, drops watches no longer needed.
    pub fn rearm(&mut self) -> Vec<Note> {
        let mut notes = Vec::new();
        let mut want: BTreeMap<PathBuf, bool> = BTreeMap::new();
        for root in &self.roots {
            let exists = std::fs::metadata(root).ok();
            if let Some(m) = &exists {
                if m.is_dir() {
                    want.insert(root.clone(), true);
                }
            }
            let anchor = nearest_existing(root.parent().unwrap_or(root));
            if let Some(a) = &anchor {
                want.entry(a.clone()).or_insert(false);
            }
            let was_missing = self.missing.get(root).copied().unwrap_or(false);
            match (exists.is_some(), was_missing) {
                (false, false) => notes.push(Note::Missing {
                    path: root.clone(),
                    watching: anchor.unwrap_or_else(|| PathBuf::from("/")),
                }),
                (true, true) => notes.push(Note::Back(root.clone())),
                _ => {}
            }
            self.missing.insert(root.clone(), exists.is_none());
        }
        let stale: Vec<PathBuf> = self
            .armed
            .keys()
            .filter(|p| !want.contains_key(*p))
            .cloned()
            .collect();
        for p in stale {
            let _ = self.watcher.unwatch(&p); // it may be gone already
            self.armed.remove(&p);
        }
        for (path, recursive) in want {
            let Ok(m) = std::fs::metadata(&path) else {
                continue;
            };
            let id = (m.dev(), m.ino(), recursive);
            if self.armed.get(&path) == Some(&id) {
                continue;
            }
            if self.armed.remove(&path).is_some() {
                let _ = self.watcher.unwatch(&path);
            }
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match self.watcher.watch(&path, mode) {
                Ok(()) => {
                    self.armed.insert(path, id);
                }
                Err(e) if !self.polling && out_of_watches(&e) => {
                    // Every path is watched again by polling, once; later notes come from it.
                    match PollWatcher::new(
                        (self.handler)(),
                        notify::Config::default().with_poll_interval(POLL_INTERVAL),
                    ) {
                        Ok(poll) => {
                            self.watcher = Box::new(poll);
                            self.polling = true;
                            self.armed.clear();
                            notes.push(Note::Polling {
                                error: e.to_string(),
                            });
                            notes.extend(
                                self.rearm()
                                    .into_iter()
                                    .filter(|n| !matches!(n, Note::Missing { .. } | Note::Back(_))),
                            );
                        }
                        Err(pe) => notes.push(Note::Failed {
                            path,
                            error: format!("{e}; polling instead failed too: {pe}"),
                        }),
                    }
                    return notes;
                }
                Err(e) => notes.push(Note::Failed {
                    path,
                    error: e.to_string(),
                }),
            }
        }
        notes
    }
}

/// Whether a watch failed because the kernel's inotify watches (or instances) ran out.
fn out_of_watches(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        notify::ErrorKind::Io(io) => {
            io.raw_os_error() == Some(28) // ENOSPC: fs.inotify.max_user_watches reached
                || io.raw_os_error() == Some(24) // EMFILE: fs.inotify.max_user_instances reached
        }
        _ => false,
    }
}

/// Test hook (`failpoints` builds only): `MFACTL_FAILPOINT=inotify-exhausted` makes every
/// inotify watch fail as when the kernel's limit is reached, so the fallback can be tested
/// without lowering a machine-wide limit.
fn exhausted_for_tests() -> bool {
    #[cfg(feature = "failpoints")]
    if std::env::var("MFACTL_FAILPOINT").is_ok_and(|v| v == "inotify-exhausted") {
        return true;
    }
    false
}

/// A watcher whose every watch fails as an exhausted inotify does (see [`exhausted_for_tests`]).
struct Exhausted;

impl Watcher for Exhausted {
    fn new<F: notify::EventHandler>(_: F, _: notify::Config) -> notify::Result<Self> {
        Ok(Exhausted)
    }
    fn watch(&mut self, _: &Path, _: RecursiveMode) -> notify::Result<()> {
        Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch))
    }
    fn unwatch(&mut self, _: &Path) -> notify::Result<()> {
        Ok(())
    }
    fn kind() -> notify::WatcherKind {
        notify::WatcherKind::NullWatcher
    }
}

fn nearest_existing(p: &Path) -> Option<PathBuf> {
    p.ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.is_dir())
        .map(Path::to_path_buf)
}

/// Whether an event can change what the manifests say: something under a root (outside hidden
/// entries, which are never read), or a root's ancestor created, removed or renamed. Reads are
/// not changes — the reconcile's own reads must not trigger the next one.
pub fn relevant(roots: &[PathBuf], ev: &Event) -> bool {
    if let EventKind::Access(a) = ev.kind {
        if a != AccessKind::Close(AccessMode::Write) {
            return false;
        }
    }
    if ev.need_rescan() {
        return true;
    }
    ev.paths
        .iter()
        .any(|p| roots.iter().any(|root| concerns(root, p)))
}

fn concerns(root: &Path, p: &Path) -> bool {
    match p.strip_prefix(root) {
        Ok(rest) => !rest.components().any(|c| match c {
            Component::Normal(s) => s.as_encoded_bytes().starts_with(b"."),
            _ => false,
        }),
        Err(_) => root.starts_with(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    fn ev(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn changes_under_a_root_or_to_its_ancestors_count_and_reads_do_not() {
        let roots = [PathBuf::from("/srv/repo/manifests")];
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(relevant(&roots, &ev(modify, "/srv/repo/manifests/a.yaml")));
        assert!(relevant(
            &roots,
            &ev(modify, "/srv/repo/manifests/sub/b.yml")
        ));
        assert!(relevant(
            &roots,
            &ev(EventKind::Create(CreateKind::Folder), "/srv/repo/manifests")
        ));
        assert!(relevant(
            &roots,
            &ev(
                EventKind::Remove(notify::event::RemoveKind::Any),
                "/srv/repo"
            )
        ));
        assert!(relevant(
            &roots,
            &ev(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/srv/repo/manifests/a.yaml"
            )
        ));
        // Siblings of the root (the store next to it), hidden files (editor swap files, .git),
        // and reads (our own reconcile) do not.
        assert!(!relevant(&roots, &ev(modify, "/srv/repo/mfactl.db-wal")));
        assert!(!relevant(
            &roots,
            &ev(modify, "/srv/repo/manifests/.a.yaml.swp")
        ));
        assert!(!relevant(
            &roots,
            &ev(modify, "/srv/repo/manifests/.git/index")
        ));
        assert!(!relevant(
            &roots,
            &ev(
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                "/srv/repo/manifests/a.yaml"
            )
        ));
        assert!(!relevant(
            &roots,
            &ev(
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                "/srv/repo/manifests/a.yaml"
            )
        ));
    }

    #[test]
    fn the_nearest_existing_ancestor_is_watched_for_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone/deeper/manifests");
        assert_eq!(
            nearest_existing(missing.parent().unwrap()).as_deref(),
            Some(dir.path())
        );
    }
}
