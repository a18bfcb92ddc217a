//! Renderers: a [`Plan`], audit records or the policies in, text out. Pure;
//! the shell decides colour once and owns stdout.

pub mod diff;
pub mod json;
pub mod markdown;
pub mod policies;
pub mod text;

use crate::plan::{Change, Plan, Skip, Summary};
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// What a plan's rendering can only say once every change is in.
pub struct End<'a> {
    /// The plan id, known only once every change is in (see [`crate::saved::PlanDigest`]).
    pub plan_id: &'a str,
    pub skipped: &'a [Skip],
    pub summary: Summary,
}

/// A plan rendered as it is computed, so that a plan of a whole directory is written a batch of
/// users at a time and never held whole: [`head`](PlanWriter::head) once (from a plan's id,
/// time, actor and revision; its changes are ignored), then [`changes`](PlanWriter::changes)
/// for each batch in order (a user's changes all in one batch, with the `--diff` diffs of its
/// users), then [`finish`](PlanWriter::finish) once. A whole plan is the same calls with one batch.
pub trait PlanWriter {
    fn head(&mut self, out: &mut dyn Write, plan: &Plan) -> fmt::Result;
    fn changes(
        &mut self,
        out: &mut dyn Write,
        changes: &[Change],
        diffs: &BTreeMap<String, String>,
    ) -> fmt::Result;
    fn finish(&mut self, out: &mut dyn Write, end: &End) -> fmt::Result;
}

/// Renders a whole plan through `w`.
pub fn write_whole(
    w: &mut dyn PlanWriter,
    out: &mut dyn Write,
    plan: &Plan,
    diffs: &BTreeMap<String, String>,
) -> fmt::Result {
    w.head(out, plan)?;
    w.changes(out, &plan.changes, diffs)?;
    w.finish(
        out,
        &End {
            plan_id: &plan.id,
            skipped: &plan.skipped,
            summary: plan.summary(),
        },
    )
}

/// ANSI styling, on or off as the shell decided.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}
