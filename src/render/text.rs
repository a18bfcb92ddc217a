//! The plan and the audit log as a person reads them in a terminal.

use super::{escape_text as esc, End, PlanWriter, Style};
use crate::model::{AuditRecord, Timestamp};
use crate::plan::{Change, Plan, Slice, Summary, Val};
use crate::policy::Verdict;
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// A timestamp as [`Timestamp`]'s `Display` prints it (`YYYY-MM-DDTHH:MM:SSZ`), several times
/// faster: large plans and exports print millions of them. Years outside 1000..=9999 go through
/// `Display` itself.
pub struct Time(pub Timestamp);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match rfc3339(self.0) {
            Some(b) => f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?),
            None => self.0.fmt(f),
        }
    }
}

/// The 20 bytes of `YYYY-MM-DDTHH:MM:SSZ`, or `None` for a year outside 1000..=9999.
pub fn rfc3339(t: Timestamp) -> Option<[u8; 20]> {
    let secs = t.unix();
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(1000..=9999).contains(&year) {
        return None;
    }
    let mut b = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    Some(b)
}

/// A value as the plan prints it.
struct V<'a>(&'a Val);

impl fmt::Display for V<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Val::Time(Some(t)) => Time(*t).fmt(f),
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
        let who = p
            .actor
            .as_deref()
            .map_or("no actor (verdicts show who could approve)".into(), |a| {
                format!("actor {}", esc(a))
            });
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
    }
    if records.is_empty() {
        out.push_str("No audit records.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_times_print_as_display_does() {
        let mut t = -40_000_000_000i64;
        while t < 260_000_000_000 {
            let ts = Timestamp::from_unix(t);
            assert_eq!(Time(ts).to_string(), ts.to_string(), "{t}");
            t += 7_777_777 + t.rem_euclid(86_399);
        }
        for t in [
            0,
            -1,
            86_399,
            86_400,
            951_782_400,
            4_107_542_399,
            253_402_300_799,
            253_402_300_800,
            i64::MIN,
            i64::MAX,
        ] {
            let ts = Timestamp::from_unix(t);
            assert_eq!(Time(ts).to_string(), ts.to_string(), "{t}");
        }
    }
}
