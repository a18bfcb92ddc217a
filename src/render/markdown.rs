//! The plan as a pull-request comment: a summary table, denied changes called out, then one
//! collapsible section per user; never longer than [`LIMIT`] characters, saying what it left out.
//!
//! Every string that came from a manifest or the store is escaped for its context (Markdown text or
//! HTML), so a hostile id cannot inject links, images or markup into the comment.

use super::{escape_text, End, PlanWriter};
use crate::model::ActionKind;
use crate::plan::{Change, Plan};
use crate::policy::Verdict;
use std::collections::BTreeMap;
use std::fmt::Write;

/// GitHub rejects comments over 65,536 characters; keep a margin.
pub const LIMIT: usize = 65_000;
/// Room kept for the closing note about what was left out.
const TRAILER_RESERVE: usize = 600;
const MAX_DENIED_LISTED: usize = 50;

/// Escapes for Markdown text and table cells: HTML specials become entities, Markdown punctuation
/// is backslash-escaped, control characters are shown, newlines become spaces.
pub fn md(s: &str) -> String {
    let s = escape_text(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '!' | '~' | '{' | '}'
            | '+' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Escapes for an HTML context such as `<summary>`: HTML specials and Markdown punctuation become
/// character references, which render as themselves and can form neither tags nor links.
pub fn html(s: &str) -> String {
    let s = escape_text(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' | '\'' | '`' | '[' | ']' | '(' | ')' | '|' | '*' | '_' | '!' | '\\' | '~' => {
                out.push_str(&format!("&#{};", c as u32))
            }
            _ => out.push(c),
        }
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Renders the plan; `diffs` (user → unified diff) are added inside each user's section.
pub fn plan(p: &Plan, diffs: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let _ = super::write_whole(&mut Writer::default(), &mut out, p, diffs);
    out
}

/// The Markdown plan as a [`PlanWriter`]. Its summary comes first, so it writes everything at
/// [`finish`](PlanWriter::finish), holding only what the comment can show: the counts, the first
/// denied changes, and the user sections that fit in [`LIMIT`] (a section that would not fit
/// whatever comes before it ends the list, as it does in the whole comment).
#[derive(Default)]
pub struct Writer {
    head: Option<Plan>,
    per: BTreeMap<ActionKind, (usize, usize)>,
    denied: Vec<String>,
    /// The sections that may fit, each with its user's change count; then whether one did not.
    sections: Vec<(String, usize)>,
    sections_len: usize,
    full: bool,
    users: usize,
}

impl PlanWriter for Writer {
    fn head(&mut self, _: &mut dyn Write, p: &Plan) -> std::fmt::Result {
        self.head = Some(Plan {
            changes: Vec::new(),
            skipped: Vec::new(),
            ..p.clone()
        });
        Ok(())
    }

    fn changes(
        &mut self,
        _: &mut dyn Write,
        changes: &[Change],
        diffs: &BTreeMap<String, String>,
    ) -> std::fmt::Result {
        for c in changes {
            let e = self.per.entry(c.kind()).or_default();
            e.0 += 1;
            e.1 += usize::from(c.is_denied());
            if c.is_denied() && self.denied.len() < MAX_DENIED_LISTED {
                let reason = match &c.verdict {
                    Some(Verdict::Denied { reason }) => md(reason),
                    _ => String::new(),
                };
                self.denied.push(format!(
                    "> - {} for **{}**: {reason}",
                    c.kind().verb(),
                    md(&c.user)
                ));
            }
        }
        let mut rest = changes;
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|c| c.user == first.user).count();
            let (mine, later) = rest.split_at(n);
            rest = later;
            self.users += 1;
            if self.full {
                continue;
            }
            let mine: Vec<&Change> = mine.iter().collect();
            let section = user_section(&first.user, &mine, diffs.get(&first.user));
            if self.sections_len + section.len() > LIMIT - TRAILER_RESERVE {
                self.full = true;
                continue;
            }
            self.sections_len += section.len();
            self.sections.push((section, n));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write, end: &End) -> std::fmt::Result {
        let p = self.head.take().ok_or(std::fmt::Error)?;
        let s = end.summary;
        let mut head = String::new();
        let _ = writeln!(
            head,
            "### mfactl plan: {} for {}, {} denied\n",
            plural(s.changes, "change", "changes"),
            plural(s.users, "user", "users"),
            s.denied
        );
        let actor = p.actor.as_deref().map_or("no actor".to_string(), md);
        let _ = writeln!(
            head,
            "Actor {actor} · store revision {} · {} · plan {}\n",
            p.store_revision,
            p.created_at,
            md(end.plan_id)
        );
        if s.changes == 0 {
            head.push_str("**No changes.** The store matches the manifests.\n");
        } else {
            head.push_str("| action | changes | denied |\n|---|---:|---:|\n");
            for (k, (n, d)) in &self.per {
                let _ = writeln!(head, "| {} | {n} | {d} |", k.verb());
            }
            let _ = writeln!(head, "| **all** | **{}** | **{}** |\n", s.changes, s.denied);
        }
        if s.denied > 0 {
            let _ = writeln!(
                head,
                "> [!WARNING]\n> **{} denied** for the actor: an apply would be refused as a whole.",
                plural(s.denied, "change is", "changes are")
            );
            for line in &self.denied {
                let _ = writeln!(head, "{line}");
            }
            if s.denied > MAX_DENIED_LISTED {
                let _ = writeln!(head, "> - … and {} more", s.denied - MAX_DENIED_LISTED);
            }
            head.push('\n');
        }
        if !end.skipped.is_empty() {
            let names: Vec<String> = end.skipped.iter().take(20).map(|k| md(&k.user)).collect();
            let more = end.skipped.len().saturating_sub(20);
            let _ = writeln!(
                head,
                "Skipped as protected: {}{}\n",
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        out.write_str(&head)?;
        // Per-user sections, while they fit.
        let budget = LIMIT - TRAILER_RESERVE;
        let mut len = head.len();
        let mut shown_users = 0;
        let mut shown_changes = 0;
        for (section, n) in &self.sections {
            if len + section.len() > budget {
                break;
            }
            out.write_str(section)?;
            len += section.len();
            shown_users += 1;
            shown_changes += n;
        }
        if shown_users < self.users {
            writeln!(
                out,
                "\n_{} ({}) not shown: this comment is limited to {LIMIT} characters. \
                 Run `mfactl plan --format json` for the whole plan._",
                plural(self.users - shown_users, "more user", "more users"),
                plural(s.changes - shown_changes, "change", "changes"),
            )?;
        }
        Ok(())
    }
}

fn user_section(user: &str, changes: &[&Change], diff: Option<&String>) -> String {
    let denied = changes.iter().filter(|c| c.is_denied()).count();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<details><summary><b>{}</b>: {}{}</summary>\n",
        html(user),
        plural(changes.len(), "change", "changes"),
        if denied > 0 {
            format!(", {denied} denied")
        } else {
            String::new()
        }
    );
    s.push_str(
        "| action | before → after | removes | sources | verdict |\n|---|---|---|---|---|\n",
    );
    for c in changes {
        let transition: Vec<String> = c
            .before
            .iter()
            .zip(&c.after)
            .map(|((k, b), (_, a))| format!("{k}: {} → {}", val(b), val(a)))
            .collect();
        let removes: Vec<String> = c.removes.iter().map(|r| md(r)).collect();
        let sources: Vec<String> = c.sources.iter().map(|r| md(r)).collect();
        let verdict = match &c.verdict {
            Some(Verdict::Allowed { role }) => format!("✅ {}", md(role)),
            Some(Verdict::Denied { reason }) => format!("⛔ {}", md(reason)),
            None => format!("needs one of: {}", md(&c.could_approve.join(", "))),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {verdict} |",
            c.kind().verb(),
            transition.join("<br>"),
            removes.join(", "),
            sources.join(", ")
        );
    }
    if let Some(d) = diff {
        // A fence longer than any backtick run inside cannot be closed by the content.
        let longest = d.split(|c| c != '`').map(str::len).max().unwrap_or(0);
        let fence = "`".repeat(longest.max(2) + 1);
        let _ = write!(s, "\n{fence}diff\n{d}{fence}\n");
    }
    s.push_str("\n</details>\n\n");
    s
}

fn val(v: &crate::plan::Val) -> String {
    use crate::plan::Val;
    match v {
        Val::Time(Some(t)) => t.to_string(),
        Val::Time(None) => "never".into(),
        Val::Count(n) => n.to_string(),
        Val::Flag(b) => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_strings_cannot_inject_markup() {
        let s = md("<img src=x onerror=alert(1)>](javascript:alert(1)) `code` a|b");
        assert!(!s.contains('<') && !s.contains("]("), "{s}");
        assert!(
            s.contains("a\\|b") && s.contains("\\`code\\`"),
            "pipes and backticks escaped: {s}"
        );
        assert_eq!(html("<b>&"), "&lt;b&gt;&amp;");
    }
}
