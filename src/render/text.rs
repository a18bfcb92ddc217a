//! The plan and the audit log as a person reads them in a terminal.

use super::{End, PlanWriter, Style};
use crate::model::AuditRecord;
use crate::plan::{Change, Plan, Slice, Summary, Val};
use crate::policy::Verdict;
use crate::util::escape_text as esc;
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// A value as the plan prints it.
struct V<'a>(&'a Val);

impl fmt::Display for V<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Val::Time(Some(t)) => t.fmt(f),
            Val::Time(None) => f.write_str("never"),
            Val::Count(n) => n.fmt(f),
            Val::Flag(b) => b.fmt(f),
        }
    }
}

/// `field: before → after` for every field that differs, or all fields when none does.
struct Transition<'a>(&'a Slice, &'a Slice);

impl fmt::Display for Transition<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, ((k, b), (_, a))) in self.0.iter().zip(self.1).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}: {} → {}", V(b), V(a))?;
        }
        Ok(())
    }
}

/// Escaped items joined by `, `.
struct Escaped<'a>(&'a [String]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&esc(s))?;
        }
        Ok(())
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `Plan: 5 changes for 3 users, 1 denied.`
pub fn summary_line(s: &Summary) -> String {
    format!(
        "Plan: {} for {}, {} denied.",
        plural(s.changes, "change", "changes"),
        plural(s.users, "user", "users"),
        s.denied
    )
}

pub fn plan(p: &Plan, st: Style) -> String {
    let mut out = String::new();
    let _ = write_plan(&mut out, p, st);
    out
}

/// The whole plan, written piece by piece (the shell streams it to stdout rather than building
/// one string).
pub fn write_plan(out: &mut dyn Write, p: &Plan, st: Style) -> fmt::Result {
    super::write_whole(&mut Writer::new(st), out, p, &BTreeMap::new())
}

/// The text plan as a [`PlanWriter`]: the head lines (time, actor, revision; the policies'
/// source), each user's changes with their verdicts,
/// the skipped users, the summary line, then any `--diff` diffs (held until the end).
pub struct Writer {
    st: Style,
    last_user: Option<String>,
    /// The previous verdict, the roles that could approve, and its line: consecutive changes
    /// mostly share it.
    last_verdict: Option<(Option<Verdict>, Vec<String>, String)>,
    diffs: String,
}

impl Writer {
    pub fn new(st: Style) -> Writer {
        Writer {
            st,
            last_user: None,
            last_verdict: None,
            diffs: String::new(),
        }
    }
}

impl PlanWriter for Writer {
    fn head(&mut self, out: &mut dyn Write, p: &Plan) -> fmt::Result {
        let who = match (&p.actor, &p.requesters) {
            (Some(a), Some(_)) => format!("the signers of the manifests (run by {})", esc(a)),
            (None, Some(_)) => "the signers of the manifests".into(),
            (Some(a), None) => format!("actor {}", esc(a)),
            (None, None) => "no actor (verdicts show who could approve)".into(),
        };
        writeln!(
            out,
            "{}",
            self.st.dim(&format!(
                "Plan at {} for {who}, store revision {}.",
                p.created_at, p.store_revision
            ))
        )?;
        writeln!(
            out,
            "{}",
            self.st.dim(&format!("Policies: {}.", esc(&p.policies)))
        )
    }

    fn changes(
        &mut self,
        out: &mut dyn Write,
        changes: &[Change],
        diffs: &BTreeMap<String, String>,
    ) -> fmt::Result {
        let st = self.st;
        let (allowed_mark, denied_mark) = (st.yellow("~"), st.red("✗"));
        for c in changes {
            if self.last_user.as_deref() != Some(c.user.as_str()) {
                writeln!(out, "\n{}", st.bold(&esc(&c.user)))?;
                self.last_user = Some(c.user.clone());
            }
            let mark = if c.is_denied() {
                &denied_mark
            } else {
                &allowed_mark
            };
            writeln!(
                out,
                "  {mark} {:<24} {}",
                c.kind().verb(),
                Transition(&c.before, &c.after)
            )?;
            if !c.removes.is_empty() {
                writeln!(out, "      removes: {}", Escaped(&c.removes))?;
            }
            writeln!(out, "      sources: {}", Escaped(&c.sources))?;
            let same = self
                .last_verdict
                .as_ref()
                .is_some_and(|(v, could, _)| *v == c.verdict && *could == c.could_approve);
            if !same {
                let verdict = match &c.verdict {
                    Some(Verdict::Allowed { role }) => st.green(&format!("allowed as {role}")),
                    Some(Verdict::Denied { reason }) => st.red(&format!("denied: {}", esc(reason))),
                    None if c.could_approve.is_empty() => {
                        st.red("no role in the policy may approve this")
                    }
                    None => format!("needs one of: {}", c.could_approve.join(", ")),
                };
                self.last_verdict = Some((c.verdict.clone(), c.could_approve.clone(), verdict));
            }
            if let Some((_, _, verdict)) = &self.last_verdict {
                writeln!(out, "      {verdict}")?;
            }
            if let Some(by) = &c.requested_by {
                writeln!(
                    out,
                    "      requested by {} · commit {} · key {}",
                    esc(&by.user),
                    esc(by.commit.get(..7).unwrap_or(&by.commit)),
                    esc(&by.key)
                )?;
            }
        }
        for d in diffs.values() {
            self.diffs.push('\n');
            self.diffs.push_str(d);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write, end: &End) -> fmt::Result {
        let st = self.st;
        if !end.skipped.is_empty() {
            writeln!(out, "\nSkipped:")?;
            for k in end.skipped {
                writeln!(
                    out,
                    "  {} ({}; selected by {})",
                    esc(&k.user),
                    k.reason,
                    Escaped(&k.sources)
                )?;
            }
        }
        let s = end.summary;
        out.write_char('\n')?;
        if s.changes == 0 {
            writeln!(out, "No changes: the store matches the manifests.")?;
        }
        let line = summary_line(&s);
        writeln!(
            out,
            "{}",
            if s.denied > 0 {
                st.red(&line)
            } else {
                st.bold(&line)
            }
        )?;
        out.write_str(&std::mem::take(&mut self.diffs))
    }
}

fn json_compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}: {}",
                    if v.is_null() {
                        "never".into()
                    } else {
                        v.to_string().trim_matches('"').to_string()
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

pub fn audit(records: &[AuditRecord], st: Style) -> String {
    let mut out = String::new();
    for r in records {
        let _ = writeln!(
            out,
            "#{} {} {} as {}: {} {}",
            r.seq,
            st.dim(&r.at.to_string()),
            esc(&r.actor),
            esc(&r.role),
            st.yellow(&esc(&r.action)),
            st.bold(&esc(&r.user)),
        );
        let _ = writeln!(out, "    before: {}", esc(&json_compact(&r.before)));
        let _ = writeln!(out, "    after:  {}", esc(&json_compact(&r.after)));
        let srcs: Vec<_> = r.sources.iter().map(|s| esc(s).into_owned()).collect();
        let _ = writeln!(
            out,
            "    sources: {} · plan {}",
            srcs.join(", "),
            esc(&r.plan_id)
        );
        if let Some(by) = &r.requested_by {
            let _ = writeln!(
                out,
                "    requested by {} · commit {} · key {}",
                esc(&by.user),
                esc(&by.commit),
                esc(&by.key)
            );
        }
    }
    if records.is_empty() {
        out.push_str("No audit records.\n");
    }
    out
}
