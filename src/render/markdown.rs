//! The plan as a pull-request comment: a summary table, denied changes called out, then one
//! collapsible section per user; never longer than [`LIMIT`] bytes whatever the input (every part
//! is capped in bytes after escaping), saying what it left out or shortened.
//!
//! Every string that came from a manifest or the store is escaped for its context (Markdown text or
//! HTML), so a hostile id cannot inject links, images or markup into the comment.

use super::{End, PlanWriter};
use crate::model::ActionKind;
use crate::plan::{Change, Plan};
use crate::policy::Verdict;
use crate::util::escape_text;
use std::collections::BTreeMap;
use std::fmt::Write;

/// GitHub rejects comments over 65,536 characters; keep a margin. Counted in bytes, which are
/// never fewer than characters.
pub const LIMIT: usize = 65_000;
/// Room kept for the closing notes about what was left out (at most a few hundred bytes).
const TRAILER_RESERVE: usize = 1_000;
/// Every part is capped in bytes after escaping (escaping can double a string or worse), so no
/// input makes the comment longer than [`LIMIT`]: an id, name or role in any place...
const ID_BYTES: usize = 256;
/// ...a denial's reason or a warning...
const REASON_BYTES: usize = 1_000;
/// ...a table cell's list (removed objects, sources, roles)...
const LIST_BYTES: usize = 2_000;
/// ...a user's `--diff`...
const DIFF_BYTES: usize = 8_000;
/// ...and the lists at the top: denied changes and skipped users.
const DENIED_BYTES: usize = 8_000;
const SKIPPED_BYTES: usize = 4_000;
const MAX_DENIED_LISTED: usize = 50;
const MAX_SKIPPED_LISTED: usize = 20;
/// What ends a shortened value.
const CUT: &str = "…";

/// Escapes for Markdown text and table cells: HTML specials become entities, Markdown punctuation
/// is backslash-escaped, control characters are shown, newlines become spaces.
pub fn md(s: &str) -> String {
    escaped(s, usize::MAX, md_char).0
}

fn md_char(c: char, out: &mut String) {
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

/// Escapes for an HTML context such as `<summary>`: HTML specials and Markdown punctuation become
/// character references, which render as themselves and can form neither tags nor links.
pub fn html(s: &str) -> String {
    escaped(s, usize::MAX, html_char).0
}

fn html_char(c: char, out: &mut String) {
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

/// `s` escaped character by character with `unit`, at most `max` bytes: when longer, cut
/// after a whole escaped character (never inside an entity or after a lone backslash) and
/// ended with [`CUT`]. Also whether it was cut.
fn escaped(s: &str, max: usize, unit: fn(char, &mut String)) -> (String, bool) {
    let shown = escape_text(s);
    let mut out = String::with_capacity(shown.len().min(max) + 8);
    // The length at the last whole character that still leaves room for the mark.
    let mut room = 0;
    for c in shown.chars() {
        let before = out.len();
        unit(c, &mut out);
        if out.len() > max {
            out.truncate(room.min(before));
            out.push_str(CUT);
            return (out, true);
        }
        if out.len() + CUT.len() <= max {
            room = out.len();
        }
    }
    (out, false)
}

/// What the comment left out or shortened, for its closing note.
#[derive(Default)]
struct Cuts {
    shortened: bool,
}

impl Cuts {
    /// [`md`] capped at `max` bytes.
    fn md(&mut self, s: &str, max: usize) -> String {
        let (out, cut) = escaped(s, max, md_char);
        self.shortened |= cut;
        out
    }

    /// [`html`] capped at `max` bytes.
    fn html(&mut self, s: &str, max: usize) -> String {
        let (out, cut) = escaped(s, max, html_char);
        self.shortened |= cut;
        out
    }

    /// At most `count` items escaped with [`md`] (each at most [`ID_BYTES`]) and joined by `, `,
    /// at most `max` bytes in all; the items left out are counted in `… and N more`.
    fn md_list<'a>(
        &mut self,
        items: impl ExactSizeIterator<Item = &'a str>,
        count: usize,
        max: usize,
    ) -> String {
        let total = items.len();
        let mut out = String::new();
        for (i, item) in items.enumerate() {
            let one = if i < count {
                self.md(item, ID_BYTES)
            } else {
                String::new()
            };
            let sep = if i == 0 { "" } else { ", " };
            // Room for this item and for the note that would follow it.
            if i >= count || out.len() + sep.len() + one.len() + 40 > max {
                self.shortened = true;
                let _ = write!(out, "{sep}… and {} more", total - i);
                return out;
            }
            out.push_str(sep);
            out.push_str(&one);
        }
        out
    }
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
    /// Shown at the top as a `> [!WARNING]` each (from the shell: guardrails that protect nobody).
    warnings: Vec<String>,
    head: Option<Plan>,
    per: BTreeMap<ActionKind, (usize, usize)>,
    denied: Vec<String>,
    denied_len: usize,
    /// The sections that may fit, each with its user's change count; then whether one did not.
    sections: Vec<(String, usize)>,
    sections_len: usize,
    full: bool,
    users: usize,
    cuts: Cuts,
}

impl Writer {
    /// A writer that opens the comment with these warnings (plain text; escaped and capped here).
    pub fn with_warnings(warnings: Vec<String>) -> Writer {
        Writer {
            warnings,
            ..Writer::default()
        }
    }
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
            if c.is_denied()
                && self.denied.len() < MAX_DENIED_LISTED
                && self.denied_len < DENIED_BYTES
            {
                let reason = match &c.verdict {
                    Some(Verdict::Denied { reason }) => self.cuts.md(reason, REASON_BYTES),
                    _ => String::new(),
                };
                let line = format!(
                    "> - {} for **{}**: {reason}",
                    c.kind().verb(),
                    self.cuts.md(&c.user, ID_BYTES)
                );
                if self.denied_len + line.len() < DENIED_BYTES {
                    self.denied_len += line.len() + 1;
                    self.denied.push(line);
                } else {
                    // The list is full: no later line is listed either, and `finish` says how
                    // many were left out.
                    self.denied_len = DENIED_BYTES;
                }
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
            let section = user_section(&mut self.cuts, &first.user, &mine, diffs.get(&first.user));
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
        let cuts = &mut self.cuts;
        let s = end.summary;
        let mut head = String::new();
        let _ = writeln!(
            head,
            "### mfactl plan: {} for {}, {} denied\n",
            plural(s.changes, "change", "changes"),
            plural(s.users, "user", "users"),
            s.denied
        );
        let actor = match (p.actor.as_deref(), &p.requesters) {
            (Some(a), Some(_)) => format!(
                "the signers of the manifests (run by {})",
                cuts.md(a, ID_BYTES)
            ),
            (None, Some(_)) => "the signers of the manifests".to_string(),
            (Some(a), None) => cuts.md(a, ID_BYTES),
            (None, None) => "none (verdicts name the roles that could approve)".to_string(),
        };
        let _ = writeln!(
            head,
            "Actor: {actor} · store revision {} · {} · policies {} · plan {}\n",
            p.store_revision,
            p.created_at,
            cuts.md(&p.policies, ID_BYTES),
            cuts.md(end.plan_id, ID_BYTES)
        );
        for w in &self.warnings {
            let mut w = cuts.md(w, REASON_BYTES);
            // A sentence of its own here (on stderr it follows `warning: `).
            if let Some(first) = w.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            let _ = writeln!(head, "> [!WARNING]\n> {w}\n");
        }
        if s.changes == 0 {
            head.push_str("**No changes.** The store matches the manifests.\n\n");
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
                "> [!WARNING]\n> **{} denied** for {}: an apply would be refused as a whole.",
                plural(s.denied, "change is", "changes are"),
                if p.requesters.is_some() {
                    "the signers"
                } else {
                    "the actor"
                }
            );
            for line in &self.denied {
                let _ = writeln!(head, "{line}");
            }
            if s.denied > self.denied.len() {
                let _ = writeln!(head, "> - … and {} more", s.denied - self.denied.len());
            }
            head.push('\n');
        }
        if !end.skipped.is_empty() {
            let names = end.skipped.iter().map(|k| k.user.as_str());
            let list = cuts.md_list(names, MAX_SKIPPED_LISTED, SKIPPED_BYTES);
            let _ = writeln!(head, "Skipped as protected: {list}\n");
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
        if cuts.shortened {
            writeln!(
                out,
                "\n_Some values were shortened to fit this comment (they end in {CUT}, or a list \
                 says how many more it has). `mfactl plan --format json` has them whole._"
            )?;
        }
        Ok(())
    }
}

fn user_section(cuts: &mut Cuts, user: &str, changes: &[&Change], diff: Option<&String>) -> String {
    let denied = changes.iter().filter(|c| c.is_denied()).count();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<details><summary><b>{}</b>: {}{}</summary>\n",
        cuts.html(user, ID_BYTES),
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
        let removes = cuts.md_list(c.removes.iter().map(String::as_str), usize::MAX, LIST_BYTES);
        let sources = cuts.md_list(c.sources.iter().map(String::as_str), usize::MAX, LIST_BYTES);
        let verdict = match &c.verdict {
            Some(Verdict::Allowed { role }) => match &c.requested_by {
                Some(by) => format!(
                    "✅ {}, requested by {} (commit {}, key {})",
                    cuts.md(role, ID_BYTES),
                    cuts.md(&by.user, ID_BYTES),
                    cuts.md(by.commit.get(..7).unwrap_or(&by.commit), ID_BYTES),
                    cuts.md(&by.key, ID_BYTES)
                ),
                None => format!("✅ {}", cuts.md(role, ID_BYTES)),
            },
            Some(Verdict::Denied { reason }) => format!("⛔ {}", cuts.md(reason, REASON_BYTES)),
            None => format!(
                "needs one of: {}",
                cuts.md_list(
                    c.could_approve.iter().map(String::as_str),
                    usize::MAX,
                    LIST_BYTES
                )
            ),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {removes} | {sources} | {verdict} |",
            c.kind().verb(),
            transition.join("<br>"),
        );
    }
    if let Some(d) = diff {
        let mut d = d.as_str();
        let mut note = "";
        if d.len() > DIFF_BYTES {
            // Cut after the last whole line that fits, or inside a line longer than that.
            let mut at = DIFF_BYTES;
            while !d.is_char_boundary(at) {
                at -= 1;
            }
            d = &d[..d[..at].rfind('\n').map_or(at, |i| i + 1)];
            note = if d.ends_with('\n') {
                "… (diff shortened)\n"
            } else {
                "…\n… (diff shortened)\n"
            };
            cuts.shortened = true;
        }
        // A fence longer than any backtick run inside cannot be closed by the content.
        let longest = d.split(|c| c != '`').map(str::len).max().unwrap_or(0);
        let fence = "`".repeat(longest.max(2) + 1);
        let _ = write!(s, "\n{fence}diff\n{d}{note}{fence}\n");
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

    #[test]
    fn escaped_values_are_cut_between_whole_escapes() {
        assert_eq!(escaped("abc", 10, md_char), ("abc".to_string(), false));
        // `|` escapes to two bytes, `&` to five: a cut never leaves half of one.
        let (s, cut) = escaped(&"|".repeat(100), 10, md_char);
        assert!(cut && s.len() <= 10 && s.ends_with(CUT), "{s}");
        assert_eq!(s, format!("{}{CUT}", "\\|".repeat(3)));
        let (s, cut) = escaped(&"&".repeat(100), 12, html_char);
        assert!(cut && s.len() <= 12, "{s}");
        assert_eq!(s, format!("&amp;{CUT}"));
        // Exactly at the cap: not cut.
        assert_eq!(escaped("abcd", 4, md_char), ("abcd".to_string(), false));
    }

    use crate::model::{Action, Timestamp};
    use crate::plan::{Skip, Val};
    use proptest::prelude::*;

    /// Unescaped `|` in a line: what makes table cells.
    fn cells(line: &str) -> usize {
        let mut n = 0;
        let mut backslashes = 0;
        for c in line.chars() {
            if c == '|' && backslashes % 2 == 0 {
                n += 1;
            }
            backslashes = if c == '\\' { backslashes + 1 } else { 0 };
        }
        n
    }

    fn change(
        user: &str,
        k: usize,
        removes: &[String],
        sources: &[String],
        verdict: u8,
        reason: &str,
    ) -> Change {
        let t = Timestamp::from_unix(1_700_000_000);
        let action = match k % 5 {
            0 => Action::DeleteAppPasswords,
            1 => Action::RequireReregistration { before: t },
            2 => Action::ResetPassword {
                before: t,
                set_at: t,
            },
            3 => Action::RevokeSessions { before: t },
            _ => Action::RevokeTrustedDevices { before: t },
        };
        Change {
            requested_by: None,
            user: user.to_string(),
            action,
            before: vec![("sessions", Val::Count(removes.len()))],
            after: vec![("sessions", Val::Count(0))],
            removes: removes.to_vec(),
            sources: sources.to_vec(),
            verdict: match verdict % 3 {
                0 => Some(Verdict::Denied {
                    reason: reason.to_string(),
                }),
                1 => Some(Verdict::Allowed {
                    role: reason.to_string(),
                }),
                _ => None,
            },
            could_approve: vec![reason.to_string()],
        }
    }

    /// A user of a generated plan: id, which actions (bits), removes, sources, verdict kind,
    /// reason (or role), diff.
    type TestUser = (
        String,
        u8,
        Vec<String>,
        Vec<String>,
        u8,
        String,
        Option<String>,
    );

    /// Renders a plan of these users as the shell does, with a warning at the top.
    fn render(users: &[TestUser], actor: &str, skipped: &[String]) -> (String, usize) {
        let mut changes = Vec::new();
        let mut diffs = BTreeMap::new();
        let mut input = actor.len();
        for (i, (id, kinds, removes, sources, verdict, reason, diff)) in users.iter().enumerate() {
            let id = format!("{id}{i}");
            for k in 0..5 {
                if kinds & (1 << k) != 0 || k == 0 {
                    changes.push(change(&id, k, removes, sources, *verdict, reason));
                    input += id.len() + reason.len();
                    input += removes
                        .iter()
                        .chain(sources)
                        .map(String::len)
                        .sum::<usize>();
                }
            }
            if let Some(d) = diff {
                input += d.len();
                diffs.insert(id, d.clone());
            }
        }
        input += skipped.iter().map(String::len).sum::<usize>();
        let p = Plan {
            requesters: None,
            id: actor.to_string(),
            created_at: Timestamp::from_unix(1_764_504_000),
            actor: Some(actor.to_string()),
            store_revision: 7,
            policies: format!("--policies {actor}"),
            changes,
            skipped: skipped
                .iter()
                .map(|u| Skip {
                    user: u.clone(),
                    reason: "protected".into(),
                    sources: vec![],
                })
                .collect(),
        };
        let mut w = Writer::with_warnings(vec![format!("the guardrails protect no user {actor}")]);
        let mut out = String::new();
        super::super::write_whole(&mut w, &mut out, &p, &diffs).unwrap();
        (out, input)
    }

    fn assert_bounded(out: &str, input: usize) {
        assert!(out.len() <= LIMIT, "{} bytes", out.len());
        assert_eq!(
            out.matches("<details>").count(),
            out.matches("</details>").count()
        );
        for line in out.lines() {
            if line.starts_with("| ") && !line.starts_with("| action ") && !line.starts_with("|---")
            {
                // A section's row has five cells; the summary table's, three.
                let n = cells(line);
                assert!(
                    n == 6 || n == 4,
                    "a cell was broken open: {n} in {line:.200}"
                );
            }
        }
        if input > LIMIT {
            assert!(
                out.contains("not shown") || out.contains("shortened"),
                "says what it left out"
            );
        }
    }

    /// The reproduction: ids of 40,000 `|` made a 160,694-byte comment.
    #[test]
    fn ids_of_forty_thousand_pipes_stay_under_the_cap() {
        let id = "|".repeat(40_000);
        let users: Vec<_> = (0..60)
            .map(|_| {
                (
                    id.clone(),
                    0b11111,
                    vec![id.clone()],
                    vec![id.clone()],
                    0,
                    id.clone(),
                    Some(id.clone()),
                )
            })
            .collect();
        let skipped: Vec<String> = (0..30).map(|i| format!("{id}{i}")).collect();
        let (out, input) = render(&users, &id, &skipped);
        assert_bounded(&out, input);
        assert!(out.contains("_Some values were shortened"), "{:.2000}", out);
        assert!(
            out.contains("> - … and "),
            "the denied list says how many more"
        );
        assert!(
            out.contains("not shown"),
            "and the sections that did not fit"
        );
    }

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-z@.]{1,20}",
            2 => (
                prop::sample::select(vec!["|", "<", "&", "\\", "`", "_", "\n", "\u{202e}", "é", "\"", "#"]),
                1..45_000usize
            )
                .prop_map(|(c, n)| c.repeat(n)),
            1 => "\\PC{0,300}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn the_comment_never_exceeds_its_cap(
            users in prop::collection::vec(
                (
                    hostile(),
                    any::<u8>(),
                    prop::collection::vec(hostile(), 0..4),
                    prop::collection::vec(hostile(), 1..3),
                    any::<u8>(),
                    hostile(),
                    prop::option::of(hostile()),
                ),
                1..25,
            ),
            actor in hostile(),
            skipped in prop::collection::vec(hostile(), 0..25),
        ) {
            let (out, input) = render(&users, &actor, &skipped);
            assert_bounded(&out, input);
        }
    }
}
