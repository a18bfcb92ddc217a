//! Failures as the user sees them: what went wrong and where, and what kind of failure it is.
//!
//! `ops/` and the store return a [`Failure`] whose [`Kind`] says what happened (invalid input, a
//! denied change, a conflict, a locked store, …); the shell turns the kind into an exit code
//! (docs/commands.md, "Exit codes") and the daemon into a reconcile outcome and metric label.
//! Nothing branches on a message's wording.

use std::fmt;

/// Exit codes (docs/commands.md); scripts depend on these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Error = 1,
    Changes = 2,
    Denied = 3,
    Conflict = 4,
}

/// What kind of failure ended a command or a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Manifests, policies, a saved plan or an option that is malformed or fails a check.
    Invalid,
    /// A change the actor may not make, or an apply a guardrail refuses.
    Denied,
    /// What was reviewed is no longer what would be applied (a stale or already applied saved
    /// plan, another plan id, a store that changed during the confirmation prompt).
    Conflict,
    /// Another writer kept the store's write lock past `--lock-timeout`.
    Locked,
    /// The plan resets passwords and no credentials file was given to receive them.
    NeedsCredentials,
    /// Anything else: I/O, an unreadable or damaged store, the operating system.
    Error,
}

impl Kind {
    /// The exit code the shell ends with for this kind.
    pub fn exit(self) -> Exit {
        match self {
            Kind::Invalid | Kind::NeedsCredentials | Kind::Error => Exit::Error,
            Kind::Denied => Exit::Denied,
            Kind::Conflict | Kind::Locked => Exit::Conflict,
        }
    }
}

/// A failure that ends a command: one or more human-readable lines, and its kind.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub lines: Vec<String>,
}

impl Failure {
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Failure {
            kind,
            lines: vec![format!("error: {}", msg.into())],
        }
    }
    /// A failure of kind [`Kind::Error`].
    pub fn error(msg: impl Into<String>) -> Self {
        Self::new(Kind::Error, msg)
    }
    /// A failure of kind [`Kind::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, msg)
    }
    /// Several lines (each already prefixed as it should print).
    pub fn many(kind: Kind, lines: Vec<String>) -> Self {
        Failure { kind, lines }
    }
    /// The exit code for this failure.
    pub fn code(&self) -> Exit {
        self.kind.exit()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

impl std::error::Error for Failure {}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        let kind = if e.is_lock_timeout() {
            Kind::Locked
        } else {
            Kind::Error
        };
        Failure::new(kind, e.to_string())
    }
}

impl From<crate::credentials::Error> for Failure {
    fn from(e: crate::credentials::Error) -> Self {
        match e {
            crate::credentials::Error::Store(s) => s.into(),
            other => Failure::error(other.to_string()),
        }
    }
}

pub type CmdResult = Result<Exit, Failure>;
