//! The JSON plan of SPEC §5 (`format_version: 1`; later versions only add fields) and JSON audit.

use crate::model::AuditRecord;
use crate::plan::{Change, Plan, Slice, Val};
use crate::policy::Verdict;
use serde_json::{json, Map, Value};

pub const FORMAT_VERSION: u64 = 1;

pub fn slice_value(s: &Slice) -> Value {
    let mut m = Map::new();
    for (k, v) in s {
        let v = match v {
            Val::Time(t) => t.map_or(Value::Null, |t| Value::String(t.to_string())),
            Val::Count(n) => json!(n),
            Val::Flag(b) => json!(b),
        };
        m.insert((*k).to_string(), v);
    }
    Value::Object(m)
}

fn verdict_value(v: &Option<Verdict>) -> Value {
    match v {
        None => Value::Null,
        Some(Verdict::Allowed { role }) => json!({"allowed": true, "role": role}),
        Some(Verdict::Denied { reason }) => json!({"allowed": false, "reason": reason}),
    }
}

pub fn change_value(c: &Change) -> Value {
    json!({
        "user": c.user,
        "action": c.kind().verb(),
        "before": slice_value(&c.before),
        "after": slice_value(&c.after),
        "cutoff": crate::plan::cutoff(&c.action).map(|t| t.to_string()),
        "removes": c.removes,
        "sources": c.sources,
        "verdict": verdict_value(&c.verdict),
    })
}

pub fn plan_value(p: &Plan) -> Value {
    let s = p.summary();
    json!({
        "format_version": FORMAT_VERSION,
        "plan_id": p.id,
        "created_at": p.created_at.to_string(),
        "actor": p.actor,
        "store_revision": p.store_revision,
        "changes": p.changes.iter().map(change_value).collect::<Vec<_>>(),
        "skipped": p.skipped.iter().map(|k| json!({"user": k.user, "reason": k.reason, "sources": k.sources})).collect::<Vec<_>>(),
        "summary": {"users": s.users, "changes": s.changes, "denied": s.denied},
    })
}

/// The JSON plan; `extra` fields (the saved plan's fingerprints, diffs) are appended.
pub fn plan(p: &Plan, extra: &[(&str, Value)]) -> String {
    let mut v = plan_value(p);
    if let Value::Object(m) = &mut v {
        for (k, x) in extra {
            m.insert((*k).to_string(), x.clone());
        }
    }
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

pub fn audit(records: &[AuditRecord]) -> String {
    let mut s = serde_json::to_string_pretty(records).unwrap_or_default();
    s.push('\n');
    s
}
