//! The JSON plan (see docs/commands.md; `format_version: 1`, later versions only add fields) and
//! JSON audit.

use super::{End, PlanWriter};
use crate::model::AuditRecord;
use crate::plan::{Change, Plan, Skip, Summary};
use crate::policy::Verdict;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::{self, Write};

use crate::plan::{slice_value, FORMAT_VERSION};

fn verdict_value(v: &Option<Verdict>) -> Value {
    match v {
        None => Value::Null,
        Some(Verdict::Allowed { role }) => json!({"allowed": true, "role": role}),
        Some(Verdict::Denied { reason }) => json!({"allowed": false, "reason": reason}),
    }
}

/// A change as the JSON plan writes it; `signed` (a plan made with `--signers`) adds its
/// `requested_by` (`null` when denied).
pub fn change_value(c: &Change, signed: bool) -> Value {
    let mut v = json!({
        "user": c.user,
        "action": c.kind().verb(),
        "before": slice_value(&c.before),
        "after": slice_value(&c.after),
        "cutoff": crate::plan::cutoff(&c.action).map(|t| t.to_string()),
        "removes": c.removes,
        "sources": c.sources,
        "verdict": verdict_value(&c.verdict),
    });
    if signed {
        if let Some(m) = v.as_object_mut() {
            m.insert("requested_by".into(), json!(c.requested_by));
        }
    }
    v
}

pub fn plan_value(p: &Plan) -> Value {
    let s = p.summary();
    let mut v = json!({
        "format_version": FORMAT_VERSION,
        "plan_id": p.id,
        "created_at": p.created_at.to_string(),
        "actor": p.actor,
        "store_revision": p.store_revision,
        "policies": p.policies,
        "requesters": p.requesters.as_ref().map(crate::plan::requesters_value),
        "changes": p
            .changes
            .iter()
            .map(|c| change_value(c, p.requesters.is_some()))
            .collect::<Vec<_>>(),
        "skipped": p.skipped.iter().map(skip_value).collect::<Vec<_>>(),
        "summary": summary_value(&s),
    });
    if p.requesters.is_none() {
        if let Some(m) = v.as_object_mut() {
            m.shift_remove("requesters");
        }
    }
    v
}

fn skip_value(k: &Skip) -> Value {
    json!({"user": k.user, "reason": k.reason, "sources": k.sources})
}

fn summary_value(s: &Summary) -> Value {
    json!({"users": s.users, "changes": s.changes, "denied": s.denied})
}

/// The whole JSON plan, as [`Writer`] writes it.
pub fn plan(p: &Plan) -> String {
    let mut out = String::new();
    let _ = super::write_whole(&mut Writer::new(false), &mut out, p, &BTreeMap::new());
    out
}

/// The JSON plan as a [`PlanWriter`]: the document `serde_json::to_string_pretty` makes of
/// [`plan_value`] (keys in the order written, two-space indents), written a change at a time. With `diffs`,
/// a `diffs` object (user → unified diff) is added; [`Writer::fingerprints`] adds the saved
/// plan's `fingerprints`. Both are held until the end, where their keys fall.
pub struct Writer {
    written: usize,
    /// The plan was made with `--signers`: changes carry `requested_by`.
    signed: bool,
    diffs: Option<BTreeMap<String, String>>,
    fingerprints: Option<BTreeMap<String, String>>,
}

impl Writer {
    pub fn new(diffs: bool) -> Writer {
        Writer {
            written: 0,
            signed: false,
            diffs: diffs.then(BTreeMap::new),
            fingerprints: None,
        }
    }

    /// Adds fingerprints (user → digest) for the saved plan's `fingerprints` object.
    pub fn fingerprints(&mut self, more: BTreeMap<String, String>) {
        self.fingerprints
            .get_or_insert_with(BTreeMap::new)
            .extend(more);
    }
}

/// `value` pretty-printed as it would be nested `depth` levels deep.
fn write_nested(out: &mut dyn Write, value: &impl serde::Serialize, depth: usize) -> fmt::Result {
    let text = serde_json::to_string_pretty(value).map_err(|_| fmt::Error)?;
    let indent = "  ".repeat(depth);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.write_char('\n')?;
            out.write_str(&indent)?;
        }
        out.write_str(line)?;
    }
    Ok(())
}

/// `,\n  "key": value` at the top level, for a map of strings written entry by entry.
fn write_map(out: &mut dyn Write, key: &str, map: &BTreeMap<String, String>) -> fmt::Result {
    write!(out, ",\n  {}: ", Value::from(key))?;
    if map.is_empty() {
        return out.write_str("{}");
    }
    out.write_char('{')?;
    for (i, (k, v)) in map.iter().enumerate() {
        out.write_str(if i == 0 { "\n    " } else { ",\n    " })?;
        write_nested(out, k, 2)?;
        out.write_str(": ")?;
        write_nested(out, v, 2)?;
    }
    out.write_str("\n  }")
}

impl PlanWriter for Writer {
    fn head(&mut self, out: &mut dyn Write, p: &Plan) -> fmt::Result {
        write!(out, "{{\n  \"format_version\": {FORMAT_VERSION}")?;
        out.write_str(",\n  \"plan_id\": ")?;
        write_nested(out, &p.id, 1)?;
        out.write_str(",\n  \"created_at\": ")?;
        write_nested(out, &p.created_at.to_string(), 1)?;
        out.write_str(",\n  \"actor\": ")?;
        write_nested(out, &p.actor, 1)?;
        write!(out, ",\n  \"store_revision\": {}", p.store_revision)?;
        out.write_str(",\n  \"policies\": ")?;
        write_nested(out, &p.policies, 1)?;
        self.signed = p.requesters.is_some();
        if let Some(r) = &p.requesters {
            out.write_str(",\n  \"requesters\": ")?;
            write_nested(out, &crate::plan::requesters_value(r), 1)?;
        }
        out.write_str(",\n  \"changes\": [")
    }

    fn changes(
        &mut self,
        out: &mut dyn Write,
        changes: &[Change],
        diffs: &BTreeMap<String, String>,
    ) -> fmt::Result {
        for c in changes {
            out.write_str(if self.written == 0 {
                "\n    "
            } else {
                ",\n    "
            })?;
            write_nested(out, &change_value(c, self.signed), 2)?;
            self.written += 1;
        }
        if let Some(all) = &mut self.diffs {
            all.extend(diffs.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write, end: &End) -> fmt::Result {
        out.write_str(if self.written == 0 { "]" } else { "\n  ]" })?;
        out.write_str(",\n  \"skipped\": ")?;
        let skipped: Vec<Value> = end.skipped.iter().map(skip_value).collect();
        write_nested(out, &skipped, 1)?;
        out.write_str(",\n  \"summary\": ")?;
        write_nested(out, &summary_value(&end.summary), 1)?;
        if let Some(d) = self.diffs.take() {
            write_map(out, "diffs", &d)?;
        }
        if let Some(f) = self.fingerprints.take() {
            write_map(out, "fingerprints", &f)?;
        }
        out.write_str("\n}\n")
    }
}

pub fn audit(records: &[AuditRecord]) -> String {
    let mut s = serde_json::to_string_pretty(records).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Timestamp};
    use crate::plan::Val;

    fn change(user: &str, denied: bool) -> Change {
        Change {
            requested_by: None,
            user: user.into(),
            action: Action::RevokeSessions {
                before: Timestamp::from_unix(1_700_000_000),
            },
            before: vec![
                ("sessions", Val::Count(2)),
                ("sessions-valid-from", Val::Time(None)),
            ],
            after: vec![
                ("sessions", Val::Count(0)),
                (
                    "sessions-valid-from",
                    Val::Time(Some(Timestamp::from_unix(1_700_000_000))),
                ),
            ],
            removes: vec!["s1".into(), "s\"2".into()],
            sources: vec!["incident".into()],
            verdict: Some(if denied {
                Verdict::Denied {
                    reason: "no role <allows> \u{1b}this".into(),
                }
            } else {
                Verdict::Allowed {
                    role: "security-operator".into(),
                }
            }),
            could_approve: vec![],
        }
    }

    /// The streamed document is exactly serde_json's pretty print of the whole value, with
    /// and without changes, skips and extra maps, and whichever way the changes are batched.
    #[test]
    fn the_streamed_plan_is_serde_jsons_pretty_print() {
        let mut p = Plan {
            requesters: None,
            id: "abc".into(),
            created_at: Timestamp::from_unix(1_764_504_000),
            actor: Some("gary@contoso.example".into()),
            store_revision: 7,
            policies: "--policies \"odd\"\n dir".into(),
            changes: vec![],
            skipped: vec![],
        };
        let pretty = |p: &Plan, extra: &[(&str, &BTreeMap<String, String>)]| {
            let mut v = plan_value(p);
            for (k, m) in extra {
                v.as_object_mut().unwrap().insert((*k).into(), json!(m));
            }
            serde_json::to_string_pretty(&v).unwrap() + "\n"
        };
        assert_eq!(plan(&p), pretty(&p, &[]));
        p.changes = vec![
            change("a@x", false),
            change("b@x", true),
            change("b@x", false),
        ];
        p.skipped = vec![Skip {
            user: "breakglass@x".into(),
            reason: "protected".into(),
            sources: vec!["all".into()],
        }];
        p.actor = None;
        assert_eq!(plan(&p), pretty(&p, &[]));

        let diffs: BTreeMap<String, String> =
            [("a@x".to_string(), "--- a\n+++ b\n".to_string())].into();
        let fps: BTreeMap<String, String> =
            [("a@x".into(), "00ff".into()), ("b@x".into(), "11ee".into())].into();
        let mut w = Writer::new(true);
        let mut out = String::new();
        w.head(&mut out, &p).unwrap();
        w.changes(&mut out, &p.changes[..1], &diffs).unwrap();
        w.fingerprints([("a@x".to_string(), "00ff".to_string())].into());
        w.changes(&mut out, &p.changes[1..], &BTreeMap::new())
            .unwrap();
        w.fingerprints([("b@x".to_string(), "11ee".to_string())].into());
        w.finish(
            &mut out,
            &End {
                plan_id: &p.id,
                skipped: &p.skipped,
                summary: p.summary(),
            },
        )
        .unwrap();
        assert_eq!(
            out,
            pretty(&p, &[("diffs", &diffs), ("fingerprints", &fps)])
        );
    }
}
