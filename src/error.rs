//! Errors as the user sees them: what went wrong, where, and the exit code a pipeline branches on.
//!
//! Library modules return typed errors; the shell wraps them in [`Failure`], which carries the exit
//! code (see docs/commands.md, "Exit codes") and a message that already says what and where.

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

/// A failure that ends a command: one or more human-readable lines and an exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: Exit,
    pub lines: Vec<String>,
}

impl Failure {
    pub fn new(code: Exit, msg: impl Into<String>) -> Self {
        Failure {
            code,
            lines: vec![format!("error: {}", msg.into())],
        }
    }
    pub fn error(msg: impl Into<String>) -> Self {
        Self::new(Exit::Error, msg)
    }
    pub fn many(code: Exit, lines: Vec<String>) -> Self {
        Failure { code, lines }
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
        let code = if e.is_lock_timeout() {
            Exit::Conflict
        } else {
            Exit::Error
        };
        Failure::new(code, e.to_string())
    }
}

pub type CmdResult = Result<Exit, Failure>;
