//! The saved-plan file and the plan id.
//!
//! `plan --out` writes the JSON plan plus a fingerprint of each user it changes; `apply --plan`
//! reads it back. The plan id is the SHA-256 of the plan's canonical content — the actor, the
//! store revision, every change (user, action, cutoff, before, after, removed ids, sources) and
//! the fingerprint of every user changed — so the id shown in review names exactly those changes.
//! A file whose content does not give its id, or that no planner could have written (unknown
//! actions, duplicate or unsorted changes, fingerprints that do not match its users), is refused
//! as "not a plan mfactl wrote". Pure: text in, values out.

use crate::model::{key_of, ActionKind, Timestamp};
use crate::plan::{Change, Planned};
use crate::util::json_str;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The plan id accumulated change by change, in plan order, as the plan is computed in batches.
pub struct PlanDigest {
    hasher: Sha256,
    last_user: Option<String>,
    buf: String,
}

impl PlanDigest {
    pub fn new(actor: Option<&str>, store_revision: i64) -> PlanDigest {
        let mut d = PlanDigest {
            hasher: Sha256::new(),
            last_user: None,
            buf: String::new(),
        };
        d.line(
            "mfactl-plan-v1",
            &json!({"actor": actor, "store_revision": store_revision}),
        );
        d
    }

    /// Adds the requesters of a plan made with `--signers` ([`crate::plan::requesters_value`]),
    /// before any change.
    pub fn requesters(&mut self, v: &Value) {
        self.line("requesters", v);
    }

    fn line(&mut self, tag: &str, v: &Value) {
        self.buf.clear();
        self.buf.push_str(tag);
        self.buf.push(' ');
        canonical(v, &mut self.buf);
        self.buf.push('\n');
        self.hasher.update(self.buf.as_bytes());
    }

    /// Adds one change, given as its content (see [`change_content`]: any JSON value, hashed in
    /// its canonical spelling), and the fingerprint of its user (hashed once per user, before the
    /// user's first change).
    pub fn add(&mut self, user: &str, fingerprint: &str, content: &Value) {
        let mut canon = String::new();
        canonical(content, &mut canon);
        self.add_canonical(user, fingerprint, &canon);
    }

    /// [`PlanDigest::add`], with the content already in canonical spelling.
    fn add_canonical(&mut self, user: &str, fingerprint: &str, content: &str) {
        self.add_hashed(
            user,
            fingerprint,
            &Sha256::digest(content.as_bytes()).into(),
        );
    }

    /// [`PlanDigest::add`], with the SHA-256 of the content's canonical spelling: the id covers
    /// each change through its own digest, so a saved plan keeps 32 bytes of each change's
    /// before, after and removed ids rather than the values.
    fn add_hashed(&mut self, user: &str, fingerprint: &str, content_sha: &[u8; 32]) {
        if self.last_user.as_deref() != Some(user) {
            self.line("user", &json!([user, fingerprint]));
            self.last_user = Some(user.to_string());
        }
        self.hasher.update(b"change ");
        self.hasher.update(crate::util::hex(content_sha).as_bytes());
        self.hasher.update(b"\n");
    }

    /// Adds planned changes, with the fingerprints of their users (by id as the store spells it).
    pub fn add_changes(&mut self, changes: &[Change], fingerprints: &BTreeMap<String, String>) {
        for c in changes {
            let fp = fingerprints.get(&c.user).map_or("", String::as_str);
            self.add_canonical(&c.user, fp, &change_content(c));
        }
    }

    /// [`PlanDigest::add_changes`] with each change's [`change_hash`] already taken (on another
    /// thread, as [`crate::ops`] plans the next batch while this one is handed on).
    pub fn add_hashed_changes(
        &mut self,
        changes: &[Change],
        fingerprints: &BTreeMap<String, String>,
        hashes: &[[u8; 32]],
    ) {
        for (c, h) in changes.iter().zip(hashes) {
            let fp = fingerprints.get(&c.user).map_or("", String::as_str);
            self.add_hashed(&c.user, fp, h);
        }
    }

    /// The id: 64 lowercase hex digits.
    pub fn finish(self) -> String {
        crate::util::hex(&self.hasher.finalize())
    }
}

/// The SHA-256 of [`change_content`]: what the plan id takes of one change.
pub fn change_hash(c: &Change) -> [u8; 32] {
    Sha256::digest(change_content(c).as_bytes()).into()
}

/// What a change contributes to the plan id, in canonical spelling: everything in its JSON form
/// except the verdict, which is the applying actor's and is decided again at apply time.
pub fn change_content(c: &Change) -> String {
    content(
        &c.user,
        c.kind().verb(),
        crate::plan::cutoff(&c.action)
            .map(|t| t.to_string())
            .as_deref(),
        &canonical_slice(&c.before),
        &canonical_slice(&c.after),
        &c.removes,
        c.requested_by
            .as_ref()
            .map(|by| canonical_string(&json!(by)))
            .as_deref(),
        &c.sources,
    )
}

/// The canonical spelling of `{"action", "after", "before", "cutoff", "removes", "sources",
/// "user"}` (keys sorted), with `before` and `after` given already canonical: the one spelling
/// shared by a planned change and a change read back from a file.
#[allow(clippy::too_many_arguments)]
fn content(
    user: &str,
    action: &str,
    cutoff: Option<&str>,
    before: &str,
    after: &str,
    removes: &[String],
    requested_by: Option<&str>,
    sources: &[String],
) -> String {
    let mut out = Vec::with_capacity(
        96 + before.len() + after.len() + user.len() + removes.len() * 24 + sources.len() * 24,
    );
    let list = |out: &mut Vec<u8>, items: &[String]| {
        out.push(b'[');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, x);
        }
        out.push(b']');
    };
    out.extend_from_slice(b"{\"action\":");
    json_str(&mut out, action);
    out.extend_from_slice(b",\"after\":");
    out.extend_from_slice(after.as_bytes());
    out.extend_from_slice(b",\"before\":");
    out.extend_from_slice(before.as_bytes());
    out.extend_from_slice(b",\"cutoff\":");
    match cutoff {
        Some(t) => json_str(&mut out, t),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"removes\":");
    list(&mut out, removes);
    // `requested_by` (under `--signers`) sorts between `removes` and `sources`; plans made
    // without it keep the spelling, and so the ids, they always had.
    if let Some(by) = requested_by {
        out.extend_from_slice(b",\"requested_by\":");
        out.extend_from_slice(by.as_bytes());
    }
    out.extend_from_slice(b",\"sources\":");
    list(&mut out, sources);
    out.extend_from_slice(b",\"user\":");
    json_str(&mut out, user);
    out.push(b'}');
    text(out)
}

/// Bytes built from `str`s and ASCII as a `String` (always valid UTF-8; never lossy in fact).
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The canonical spelling of [`crate::plan::slice_value`]`(s)`, written directly: keys sorted,
/// times as strings, counts as numbers, flags as booleans.
pub fn canonical_slice(s: &crate::plan::Slice) -> String {
    use crate::plan::Val;
    let mut order: Vec<usize> = (0..s.len()).collect();
    // As a JSON map: sorted by key, and a repeated key holds its last value.
    order.sort_by_key(|&i| (s[i].0, std::cmp::Reverse(i)));
    order.dedup_by_key(|i| s[*i].0);
    let mut out = Vec::with_capacity(24 * s.len() + 2);
    out.push(b'{');
    for (n, &i) in order.iter().enumerate() {
        let (k, v) = &s[i];
        if n > 0 {
            out.push(b',');
        }
        json_str(&mut out, k);
        out.push(b':');
        match v {
            Val::Time(t) => match t.and_then(|t| crate::util::time::bytes(t.unix())) {
                Some(b) => {
                    out.push(b'"');
                    out.extend_from_slice(&b);
                    out.push(b'"');
                }
                None => match t {
                    Some(t) => json_str(&mut out, &t.to_string()),
                    None => out.extend_from_slice(b"null"),
                },
            },
            Val::Count(c) => {
                let _ = std::io::Write::write_fmt(&mut out, format_args!("{c}"));
            }
            Val::Flag(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        }
    }
    out.push(b'}');
    text(out)
}

fn canonical_string(v: &Value) -> String {
    let mut out = String::new();
    canonical(v, &mut out);
    out
}

/// Reads any JSON value and keeps only its canonical spelling: a saved plan of 100,000 changes
/// holds two short strings per change rather than two maps.
fn canonical_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Value::deserialize(d).map(|v| canonical_string(&v))
}

/// Compact JSON with every object's keys sorted: one spelling per value, whatever order or
/// whitespace a file uses.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}", Value::from(k.as_str()));
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// A saved plan that passed every check of [`parse_from`].
#[derive(Debug)]
pub struct SavedPlan {
    pub plan_id: String,
    pub created_at: Timestamp,
    pub actor: Option<String>,
    pub store_revision: i64,
    pub changes: Vec<SavedChange>,
    /// User id (as the store spells it) → [`crate::plan::fingerprint`] at plan time.
    pub fingerprints: BTreeMap<String, String>,
    /// Under `--signers`: the plan's requesters ([`crate::plan::requesters_value`]).
    pub requesters: Option<Value>,
}

#[derive(Debug)]
pub struct SavedChange {
    pub user: String,
    pub kind: ActionKind,
    pub cutoff: Option<Timestamp>,
    pub sources: Vec<String>,
    /// The SHA-256 of the change's content (see [`change_content`]), which covers its before,
    /// after and removed ids.
    pub content_sha: [u8; 32],
}

/// The file as written; unknown fields are ignored, since later versions only add fields.
#[derive(Deserialize)]
struct RawPlan {
    format_version: u64,
    plan_id: String,
    created_at: String,
    actor: Option<String>,
    store_revision: i64,
    #[serde(deserialize_with = "compact_changes")]
    changes: Vec<Result<SavedChange, String>>,
    #[serde(default)]
    fingerprints: Option<BTreeMap<String, String>>,
    /// Under `--signers`: who asked for each manifest's changes.
    #[serde(default)]
    requesters: Option<Value>,
}

#[derive(Deserialize)]
struct RawChange {
    user: String,
    action: String,
    cutoff: Option<String>,
    #[serde(deserialize_with = "canonical_value")]
    before: String,
    #[serde(deserialize_with = "canonical_value")]
    after: String,
    removes: Vec<String>,
    sources: Vec<String>,
    #[serde(default)]
    requested_by: Option<Value>,
}

/// Reads the changes one at a time, keeping of each only what [`SavedChange`] holds (or why it
/// is not a change mfactl writes), so that a plan of 100,000 changes never holds them all as
/// values.
fn compact_changes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<Result<SavedChange, String>>, D::Error> {
    struct Changes;
    impl<'de> serde::de::Visitor<'de> for Changes {
        type Value = Vec<Result<SavedChange, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of changes")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(raw) = seq.next_element::<RawChange>()? {
                out.push(typed(raw));
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Changes)
}

/// How many offending entries a refusal names before summarising.
const NAMED: usize = 5;

/// Reads a saved plan and checks that mfactl wrote it exactly so: its id is the digest of its
/// content, its changes are in plan order with no duplicate, each action is known and carries the
/// cutoff its kind needs, and it has a fingerprint for exactly the users it changes. The file is
/// read as it is parsed: a saved plan is as large as its plan (100,000 changes are ~100 MB), so
/// it has no size cap and is never held whole as text.
pub fn parse_from(file: &str, reader: impl std::io::Read) -> Result<SavedPlan, String> {
    let not_ours = |why: String| {
        format!(
            "{file}: not a plan mfactl wrote ({why}); nothing was applied; save a new one with \
             `mfactl plan --out FILE`"
        )
    };
    let raw: RawPlan = serde_json::from_reader(std::io::BufReader::with_capacity(1 << 20, reader))
        .map_err(|e| {
            if e.is_io() {
                format!("{file}: {e}")
            } else {
                not_ours(e.to_string())
            }
        })?;
    if raw.format_version != crate::plan::FORMAT_VERSION {
        return Err(format!(
            "{file}: saved plan format_version {} is not the {} this mfactl reads",
            raw.format_version,
            crate::plan::FORMAT_VERSION
        ));
    }
    let Some(fingerprints) = raw.fingerprints else {
        return Err(format!(
            "{file}: this JSON plan has no fingerprints, so its freshness cannot be checked; \
             save plans with `mfactl plan --out FILE`"
        ));
    };
    if !is_plan_id(&raw.plan_id) {
        return Err(not_ours(format!(
            "its plan_id `{}` is not 64 lowercase hex digits",
            crate::util::escape_text(&truncated(&raw.plan_id))
        )));
    }
    let created_at =
        Timestamp::parse(&raw.created_at).map_err(|m| not_ours(format!("created_at: {m}")))?;
    let mut changes = Vec::with_capacity(raw.changes.len());
    let mut problems = Vec::new();
    for (i, c) in raw.changes.into_iter().enumerate() {
        match c {
            Ok(c) => changes.push(c),
            Err(why) => problems.push(format!("change #{}: {why}", i + 1)),
        }
    }
    let mut prev: Option<(String, ActionKind)> = None;
    for (i, c) in changes.iter().enumerate() {
        let at = (key_of(&c.user), c.kind);
        if let Some(p) = &prev {
            if *p == at {
                problems.push(format!(
                    "change #{}: {} for {} is listed twice",
                    i + 1,
                    c.kind.verb(),
                    crate::util::escape_text(&c.user)
                ));
            } else if *p > at {
                problems.push(format!(
                    "change #{}: {} for {} is out of plan order (changes are sorted by user, then action)",
                    i + 1,
                    c.kind.verb(),
                    crate::util::escape_text(&c.user)
                ));
            }
        }
        prev = Some(at);
    }
    let mut used: BTreeMap<&str, ()> = BTreeMap::new();
    for c in &changes {
        if !fingerprints.contains_key(&c.user) {
            problems.push(format!(
                "no fingerprint for {}",
                crate::util::escape_text(&c.user)
            ));
        }
        used.insert(c.user.as_str(), ());
    }
    for u in fingerprints.keys() {
        if !used.contains_key(u.as_str()) {
            problems.push(format!(
                "a fingerprint for {}, which no change touches",
                crate::util::escape_text(u)
            ));
        }
    }
    if problems.is_empty() {
        let mut d = PlanDigest::new(raw.actor.as_deref(), raw.store_revision);
        if let Some(r) = &raw.requesters {
            d.requesters(r);
        }
        for c in &changes {
            let fp = fingerprints.get(&c.user).map_or("", String::as_str);
            d.add_hashed(&c.user, fp, &c.content_sha);
        }
        if d.finish() != raw.plan_id {
            problems.push(format!(
                "its content does not match its plan_id {}",
                raw.plan_id
            ));
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        let mut why: Vec<String> = problems.into_iter().take(NAMED).collect();
        if n > NAMED {
            why.push(format!("and {} more", n - NAMED));
        }
        return Err(not_ours(why.join("; ")));
    }
    Ok(SavedPlan {
        plan_id: raw.plan_id,
        created_at,
        actor: raw.actor,
        store_revision: raw.store_revision,
        changes,
        fingerprints,
        requesters: raw.requesters,
    })
}

fn typed(c: RawChange) -> Result<SavedChange, String> {
    let kind = kind_of(&c.action).ok_or_else(|| {
        format!(
            "unknown action `{}`",
            crate::util::escape_text(&truncated(&c.action))
        )
    })?;
    let cutoff = match &c.cutoff {
        None => None,
        Some(s) => Some(Timestamp::parse(s).map_err(|m| format!("cutoff: {m}"))?),
    };
    if (kind == ActionKind::DeleteAppPasswords) != cutoff.is_none() {
        return Err(format!(
            "{} {} a cutoff",
            kind.verb(),
            if cutoff.is_none() { "needs" } else { "has no" }
        ));
    }
    let content = content(
        &c.user,
        kind.verb(),
        cutoff.map(|t| t.to_string()).as_deref(),
        &c.before,
        &c.after,
        &c.removes,
        c.requested_by
            .as_ref()
            .filter(|v| !v.is_null())
            .map(canonical_string)
            .as_deref(),
        &c.sources,
    );
    Ok(SavedChange {
        user: c.user,
        kind,
        cutoff,
        sources: c.sources,
        content_sha: Sha256::digest(content.as_bytes()).into(),
    })
}

fn kind_of(verb: &str) -> Option<ActionKind> {
    [
        ActionKind::DeleteAppPasswords,
        ActionKind::RequireReregistration,
        ActionKind::ResetPassword,
        ActionKind::RevokeSessions,
        ActionKind::RevokeTrustedDevices,
    ]
    .into_iter()
    .find(|k| k.verb() == verb)
}

/// At most 80 characters of a hostile string, for a message.
fn truncated(s: &str) -> String {
    truncated_to(s, 80)
}

fn truncated_to(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Whether `s` has the shape of a plan id.
pub fn is_plan_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl SavedPlan {
    pub fn planned(&self) -> Vec<Planned> {
        self.changes
            .iter()
            .map(|c| Planned {
                user: c.user.clone(),
                kind: c.kind,
                cutoff: c.cutoff,
                sources: c.sources.clone(),
            })
            .collect()
    }

    /// Checks that `remade` — the saved changes rebuilt against the state the plan fingerprinted
    /// (with the applying clock: a reset's new set-at is compared as of the plan's creation) — is
    /// what the file says: the same before, after and removed ids. Returns a description of each
    /// change that differs.
    pub fn differences(&self, remade: &[Change]) -> Vec<String> {
        self.differences_from(0, remade)
    }

    /// [`SavedPlan::differences`] for the changes from the `first`th on (a batch of them).
    pub fn differences_from(&self, first: usize, remade: &[Change]) -> Vec<String> {
        let mut out = Vec::new();
        for (s, r) in self.changes[first.min(self.changes.len())..]
            .iter()
            .zip(remade)
        {
            let after = match r.action {
                crate::model::Action::ResetPassword { before: t, .. } => {
                    let mut a = r.after.clone();
                    for (field, v) in &mut a {
                        if *field == "password-set-at" {
                            *v = crate::plan::Val::Time(Some(self.created_at.max(t)));
                        }
                    }
                    a
                }
                _ => r.after.clone(),
            };
            let before = canonical_string(&crate::plan::slice_value(&r.before));
            let after = canonical_string(&crate::plan::slice_value(&after));
            let remade = content(
                &r.user,
                r.kind().verb(),
                crate::plan::cutoff(&r.action)
                    .map(|t| t.to_string())
                    .as_deref(),
                &before,
                &after,
                &r.removes,
                r.requested_by
                    .as_ref()
                    .map(|by| canonical_string(&json!(by)))
                    .as_deref(),
                &r.sources,
            );
            if <[u8; 32]>::from(Sha256::digest(remade.as_bytes())) != s.content_sha {
                out.push(format!(
                    "{} for {}: the file's before, after, removed ids or requester are not what \
                     the state it fingerprinted gives ({before} → {after} removing {:?})",
                    s.kind.verb(),
                    crate::util::escape_text(&s.user),
                    r.removes
                ));
            }
        }
        out
    }

    /// [`parse_from`]'s refusal for a file whose changes the state does not give.
    pub fn refusal(file: &str, why: &[String]) -> String {
        let n = why.len();
        let mut shown: Vec<String> = why
            .iter()
            .take(NAMED)
            .map(|w| crate::util::escape_text(&truncated_to(w, 400)).into_owned())
            .collect();
        if n > NAMED {
            shown.push(format!("and {} more", n - NAMED));
        }
        format!(
            "{file}: not a plan mfactl wrote ({}); nothing was applied; save a new one with \
             `mfactl plan --out FILE`",
            shown.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_spelling_of_a_slice_and_a_change_is_the_canonical_one() {
        use crate::plan::Val;
        let t = |s: &str| Some(Timestamp::parse(s).unwrap());
        let slices: Vec<crate::plan::Slice> = vec![
            vec![],
            vec![
                ("sessions", Val::Count(3)),
                ("sessions-valid-from", Val::Time(None)),
            ],
            vec![
                ("password-set-at", Val::Time(t("2026-01-01"))),
                ("must-change-password", Val::Flag(true)),
                ("app-passwords", Val::Count(0)),
                ("must-change-password", Val::Flag(false)),
            ],
        ];
        for s in &slices {
            assert_eq!(
                canonical_slice(s),
                canonical_string(&crate::plan::slice_value(s)),
                "{s:?}"
            );
        }
        for user in ["a@b", "quote\"back\\slash", "ctl\u{1}\u{7f}é☃"] {
            let via_values = {
                let v = json!({
                    "action": "revoke-sessions", "after": json!({"n": 1}), "before": json!({}),
                    "cutoff": null, "removes": [user, "x"], "sources": [user], "user": user
                });
                canonical_string(&v)
            };
            let direct = content(
                user,
                "revoke-sessions",
                None,
                "{}",
                "{\"n\":1}",
                &[user.to_string(), "x".to_string()],
                None,
                &[user.to_string()],
            );
            assert_eq!(direct, via_values);
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let a: Value =
            serde_json::from_str(r#"{"b": [1, {"d": null, "c": "x\n"}], "a": true}"#).unwrap();
        let mut s = String::new();
        canonical(&a, &mut s);
        assert_eq!(s, r#"{"a":true,"b":[1,{"c":"x\n","d":null}]}"#);
    }

    #[test]
    fn the_digest_depends_on_every_part() {
        let c = json!({"user": "a"});
        let id = |actor: Option<&str>, rev: i64, fp: &str, c: &Value| {
            let mut d = PlanDigest::new(actor, rev);
            d.add("a", fp, c);
            d.finish()
        };
        let base = id(None, 1, "f", &c);
        assert!(is_plan_id(&base));
        assert_ne!(base, id(Some("x"), 1, "f", &c));
        assert_ne!(base, id(None, 2, "f", &c));
        assert_ne!(base, id(None, 1, "g", &c));
        assert_ne!(base, id(None, 1, "f", &json!({"user": "b"})));
        assert_eq!(base, id(None, 1, "f", &c));
    }
}
