//! The plan and the audit log as a person reads them in a terminal.

use super::{escape_text as esc, Style};
use crate::model::AuditRecord;
use crate::plan::{Plan, Slice, Summary, Val};
use crate::policy::Verdict;
use std::fmt::Write;

fn val(v: &Val) -> String {
    match v {
        Val::Time(Some(t)) => t.to_string(),
        Val::Time(None) => "never".into(),
        Val::Count(n) => n.to_string(),
        Val::Flag(b) => b.to_string(),
    }
}

/// `field: before → after` for every field that differs, or all fields when none does.
fn transition(before: &Slice, after: &Slice) -> String {
    before
        .iter()
        .zip(after)
        .map(|((k, b), (_, a))| format!("{k}: {} → {}", val(b), val(a)))
        .collect::<Vec<_>>()
        .join(", ")
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
    let who = p
        .actor
        .as_deref()
        .map_or("no actor (verdicts show who could approve)".into(), |a| {
            format!("actor {}", esc(a))
        });
    let _ = writeln!(
        out,
        "{}",
        st.dim(&format!(
            "Plan at {} for {who}, store revision {}.",
            p.created_at, p.store_revision
        ))
    );
    let mut last_user: Option<&str> = None;
    for c in &p.changes {
        if last_user != Some(c.user.as_str()) {
            let _ = writeln!(out, "\n{}", st.bold(&esc(&c.user)));
            last_user = Some(&c.user);
        }
        let mark = if c.is_denied() {
            st.red("✗")
        } else {
            st.yellow("~")
        };
        let _ = writeln!(
            out,
            "  {mark} {:<24} {}",
            c.kind().verb(),
            transition(&c.before, &c.after)
        );
        if !c.removes.is_empty() {
            let ids: Vec<_> = c.removes.iter().map(|r| esc(r).into_owned()).collect();
            let _ = writeln!(out, "      removes: {}", ids.join(", "));
        }
        let srcs: Vec<_> = c.sources.iter().map(|s| esc(s).into_owned()).collect();
        let _ = writeln!(out, "      sources: {}", srcs.join(", "));
        let verdict = match &c.verdict {
            Some(Verdict::Allowed { role }) => st.green(&format!("allowed as {role}")),
            Some(Verdict::Denied { reason }) => st.red(&format!("denied: {}", esc(reason))),
            None if c.could_approve.is_empty() => st.red("no role in the policy may approve this"),
            None => format!("needs one of: {}", c.could_approve.join(", ")),
        };
        let _ = writeln!(out, "      {verdict}");
    }
    if !p.skipped.is_empty() {
        let _ = writeln!(out, "\nSkipped:");
        for k in &p.skipped {
            let srcs: Vec<_> = k.sources.iter().map(|s| esc(s).into_owned()).collect();
            let _ = writeln!(
                out,
                "  {} ({}; selected by {})",
                esc(&k.user),
                k.reason,
                srcs.join(", ")
            );
        }
    }
    let s = p.summary();
    out.push('\n');
    if p.is_empty() {
        let _ = writeln!(out, "No changes: the store matches the manifests.");
    }
    let line = summary_line(&s);
    let _ = writeln!(
        out,
        "{}",
        if s.denied > 0 {
            st.red(&line)
        } else {
            st.bold(&line)
        }
    );
    out
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
            r.role,
            st.yellow(&r.action),
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
    }
    if records.is_empty() {
        out.push_str("No audit records.\n");
    }
    out
}
