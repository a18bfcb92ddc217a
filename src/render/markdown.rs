//! The plan as a pull-request comment: a summary table, denied changes called out, then one
//! collapsible section per user; never longer than [`LIMIT`] characters, saying what it left out.
//!
//! Every string that came from a manifest or the store is escaped for its context (Markdown text or
//! HTML), so a hostile id cannot inject links, images or markup into the comment.

use super::escape_text;
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
    let s = p.summary();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### mfactl plan: {} for {}, {} denied\n",
        plural(s.changes, "change", "changes"),
        plural(s.users, "user", "users"),
        s.denied
    );
    let actor = p.actor.as_deref().map_or("no actor".to_string(), md);
    let _ = writeln!(
        out,
        "Actor {actor} · store revision {} · {} · plan {}\n",
        p.store_revision,
        p.created_at,
        md(&p.id)
    );
    if p.is_empty() {
        out.push_str("**No changes.** The store matches the manifests.\n");
    } else {
        out.push_str("| action | changes | denied |\n|---|---:|---:|\n");
        let mut per: BTreeMap<ActionKind, (usize, usize)> = BTreeMap::new();
        for c in &p.changes {
            let e = per.entry(c.kind()).or_default();
            e.0 += 1;
            e.1 += usize::from(c.is_denied());
        }
        for (k, (n, d)) in &per {
            let _ = writeln!(out, "| {} | {n} | {d} |", k.verb());
        }
        let _ = writeln!(out, "| **all** | **{}** | **{}** |\n", s.changes, s.denied);
    }
    if s.denied > 0 {
        let _ = writeln!(
            out,
            "> [!WARNING]\n> **{} denied** for the actor: an apply would be refused as a whole.",
            plural(s.denied, "change is", "changes are")
        );
        for c in p
            .changes
            .iter()
            .filter(|c| c.is_denied())
            .take(MAX_DENIED_LISTED)
        {
            let reason = match &c.verdict {
                Some(Verdict::Denied { reason }) => md(reason),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "> - {} for **{}**: {reason}",
                c.kind().verb(),
                md(&c.user)
            );
        }
        if s.denied > MAX_DENIED_LISTED {
            let _ = writeln!(out, "> - … and {} more", s.denied - MAX_DENIED_LISTED);
        }
        out.push('\n');
    }
    if !p.skipped.is_empty() {
        let names: Vec<String> = p.skipped.iter().take(20).map(|k| md(&k.user)).collect();
        let more = p.skipped.len().saturating_sub(20);
        let _ = writeln!(
            out,
            "Skipped as protected: {}{}\n",
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }

    // Per-user sections, while they fit.
    let mut groups: Vec<(&str, Vec<&Change>)> = Vec::new();
    for c in &p.changes {
        match groups.last_mut() {
            Some((u, cs)) if *u == c.user => cs.push(c),
            _ => groups.push((&c.user, vec![c])),
        }
    }
    let budget = LIMIT - TRAILER_RESERVE;
    let mut shown_users = 0;
    let mut shown_changes = 0;
    for (user, changes) in &groups {
        let section = user_section(user, changes, diffs.get(*user));
        if out.len() + section.len() > budget {
            break;
        }
        out.push_str(&section);
        shown_users += 1;
        shown_changes += changes.len();
    }
    if shown_users < groups.len() {
        let _ = writeln!(
            out,
            "\n_{} ({}) not shown: this comment is limited to {LIMIT} characters. \
             Run `mfactl plan --format json` for the whole plan._",
            plural(groups.len() - shown_users, "more user", "more users"),
            plural(s.changes - shown_changes, "change", "changes"),
        );
    }
    out
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
