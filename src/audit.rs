//! The tamper-evident audit chain (pure): each record's hash covers its fields and the previous
//! record's hash, so editing, deleting, inserting or reordering records breaks the chain at the
//! first record touched. `--accept-broken-audit` appends a record that acknowledges the breaks
//! before it; verification reports those as acknowledged, never as intact.

use crate::model::AuditRecord;
use sha2::{Digest, Sha256};

/// The action of the record that acknowledges a broken chain.
pub const ACCEPT_BROKEN: &str = "accept-broken-audit";

/// SHA-256 (hex) of a record's canonical encoding: a JSON array of its fields in a fixed order.
pub fn record_hash(r: &AuditRecord) -> String {
    Canonical {
        seq: r.seq,
        at: r.at.unix(),
        actor: &r.actor,
        role: &r.role,
        action: &r.action,
        user: &r.user,
        before: &r.before.to_string(),
        after: &r.after.to_string(),
        sources: &serde_json::to_string(&r.sources).unwrap_or_default(),
        plan_id: &r.plan_id,
        prev_hash: &r.prev_hash,
        requested_by: requested_by_text(r).as_deref(),
    }
    .hash(&mut Vec::new())
}

/// The compact JSON the store keeps of a record's requester (`None` without `--signers`).
pub fn requested_by_text(r: &AuditRecord) -> Option<String> {
    r.requested_by
        .as_ref()
        .and_then(|by| serde_json::to_string(by).ok())
}

/// A record's fields as the store holds them: `before`, `after` and `sources` are the JSON text
/// stored (compact, as `serde_json` writes them), so verifying a stored record parses nothing.
/// Its encoding is `[seq,at,"actor","role","action","user",before,after,sources,"plan_id",
/// "prev_hash"]`, the compact JSON of the record's fields in that order, with `,requested_by`
/// (its stored JSON) before the `]` when the record has a requester: records written without
/// `--signers`, and every record written before requesters existed, hash as they always did.
pub struct Canonical<'a> {
    pub seq: i64,
    pub at: i64,
    pub actor: &'a str,
    pub role: &'a str,
    pub action: &'a str,
    pub user: &'a str,
    pub before: &'a str,
    pub after: &'a str,
    pub sources: &'a str,
    pub plan_id: &'a str,
    pub prev_hash: &'a str,
    pub requested_by: Option<&'a str>,
}

impl Canonical<'_> {
    /// SHA-256 (hex) of the encoding, built in `buf` (reused between records).
    pub fn hash(&self, buf: &mut Vec<u8>) -> String {
        buf.clear();
        let string = |buf: &mut Vec<u8>, s: &str| {
            // Writing a string to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, s);
        };
        buf.push(b'[');
        buf.extend_from_slice(self.seq.to_string().as_bytes());
        buf.push(b',');
        buf.extend_from_slice(self.at.to_string().as_bytes());
        for s in [self.actor, self.role, self.action, self.user] {
            buf.push(b',');
            string(buf, s);
        }
        for raw in [self.before, self.after, self.sources] {
            buf.push(b',');
            buf.extend_from_slice(raw.as_bytes());
        }
        for s in [self.plan_id, self.prev_hash] {
            buf.push(b',');
            string(buf, s);
        }
        if let Some(raw) = self.requested_by {
            buf.push(b',');
            buf.extend_from_slice(raw.as_bytes());
        }
        buf.push(b']');
        crate::util::hex(&Sha256::digest(&buf[..]))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first record that does not verify (or, for a truncated log, the last one present).
    pub seq: i64,
    pub what: String,
    /// The `accept-broken-audit` record that acknowledged it, if any.
    pub acknowledged_by: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub records: usize,
    pub breaks: Vec<Break>,
    /// The hash of the last record: record it elsewhere to detect a rewritten chain later.
    pub head: String,
}

impl Report {
    pub fn unacknowledged(&self) -> impl Iterator<Item = &Break> {
        self.breaks.iter().filter(|b| b.acknowledged_by.is_none())
    }
    pub fn intact(&self) -> bool {
        self.unacknowledged().next().is_none()
    }
}

/// Walks the chain in `seq` order. `head` is the store's record of the last hash and count, which
/// catches records deleted from the end.
pub fn verify(records: &[AuditRecord], head: Option<(&str, i64)>) -> Report {
    let mut v = Verifier::default();
    for r in records {
        v.push(r);
    }
    v.finish(head)
}

/// The chain check one record at a time, so a store can stream its log through it in constant
/// memory.
#[derive(Debug, Default)]
pub struct Verifier {
    breaks: Vec<Break>,
    prev_hash: String,
    prev_seq: Option<i64>,
    records: usize,
}

impl Verifier {
    pub fn push(&mut self, r: &AuditRecord) {
        self.check(r.seq, &r.action, &r.prev_hash, &r.hash, &record_hash(r));
    }

    /// One record, given its stored fields and the hash of its content (see [`Canonical`]).
    pub fn check(&mut self, seq: i64, action: &str, prev_hash: &str, hash: &str, computed: &str) {
        struct R<'a> {
            seq: i64,
            action: &'a str,
            prev_hash: &'a str,
            hash: &'a str,
        }
        let r = R {
            seq,
            action,
            prev_hash,
            hash,
        };
        let mut what = Vec::new();
        if let Some(p) = self.prev_seq.filter(|p| r.seq != p + 1) {
            what.push(format!(
                "follows record #{p} (records were deleted or renumbered)"
            ));
        }
        if r.prev_hash != self.prev_hash {
            what.push(
                "does not chain to the record before it (a record was deleted, inserted or reordered)"
                    .to_string(),
            );
        }
        if computed != r.hash {
            what.push("was edited (its hash does not match its content)".to_string());
        }
        if !what.is_empty() {
            self.breaks.push(Break {
                seq: r.seq,
                what: what.join("; "),
                acknowledged_by: None,
            });
        }
        if r.action == ACCEPT_BROKEN {
            for b in self
                .breaks
                .iter_mut()
                .filter(|b| b.acknowledged_by.is_none() && b.seq < r.seq)
            {
                b.acknowledged_by = Some(r.seq);
            }
        }
        self.prev_hash.clear();
        self.prev_hash.push_str(r.hash);
        self.prev_seq = Some(r.seq);
        self.records += 1;
    }

    pub fn finish(mut self, head: Option<(&str, i64)>) -> Report {
        if let Some((head_hash, count)) = head {
            let last = self.prev_seq.unwrap_or(0);
            if head_hash != self.prev_hash || count != self.records as i64 {
                self.breaks.push(Break {
                    seq: last,
                    what: format!(
                        "the log holds {} records ending in {}, but the store recorded {count} ending in {}: records were deleted from the end or the chain was replaced",
                        self.records,
                        short(&self.prev_hash),
                        short(head_hash)
                    ),
                    acknowledged_by: None,
                });
            }
        }
        Report {
            records: self.records,
            breaks: self.breaks,
            head: self.prev_hash,
        }
    }

    /// Ends the walk when the store's record of the head cannot be read (`what` says why, e.g.
    /// "is missing"): that is a break at the last record, as records deleted from the end
    /// would not show otherwise.
    pub fn finish_without_head(mut self, what: &str) -> Report {
        self.breaks.push(Break {
            seq: self.prev_seq.unwrap_or(0),
            what: format!(
                "the store's record of the chain's head {what}, so records deleted from the end \
                 would not show"
            ),
            acknowledged_by: None,
        });
        self.finish(None)
    }
}

/// The first characters of a stored hash, for a message: whatever the store holds (a hash is
/// hex, but a tampered one may be anything), cut on a character boundary and escaped.
pub fn short(h: &str) -> std::borrow::Cow<'_, str> {
    if h.is_empty() {
        return "(nothing)".into();
    }
    let end = h.char_indices().nth(12).map_or(h.len(), |(i, _)| i);
    match crate::util::escape_text(&h[..end]) {
        std::borrow::Cow::Borrowed(b) => b.into(),
        std::borrow::Cow::Owned(o) => o.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use serde_json::json;

    /// The first definition of the hash, which stores' existing records were chained with.
    fn record_hash_v1(r: &AuditRecord) -> String {
        let canonical = json!([
            r.seq,
            r.at.unix(),
            r.actor,
            r.role,
            r.action,
            r.user,
            r.before,
            r.after,
            r.sources,
            r.plan_id,
            r.prev_hash
        ]);
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn the_hash_is_the_first_definitions_for_any_record() {
        use proptest::prelude::*;
        let text = "(?s).{0,12}";
        let strategy = (
            any::<i64>(),
            any::<i64>(),
            proptest::collection::vec(proptest::string::string_regex(text).unwrap(), 8),
            proptest::option::of(any::<i64>()),
            any::<u32>(),
        );
        proptest!(|((seq, at, t, time, count) in strategy)| {
            let mut before = serde_json::Map::new();
            before.insert(t[6].clone(), time.map_or(json!(null), |t| json!(t.to_string())));
            before.insert("count".into(), json!(count));
            let r = AuditRecord {
                requested_by: None,
                seq,
                at: Timestamp::from_unix(at),
                actor: t[0].clone(),
                role: t[1].clone(),
                action: t[2].clone(),
                user: t[3].clone(),
                before: serde_json::Value::Object(before),
                after: json!({"problems": [t[7].clone()], "ok": true}),
                sources: vec![t[4].clone(), t[5].clone()],
                plan_id: t[5].clone(),
                prev_hash: t[7].clone(),
                hash: String::new(),
            };
            prop_assert_eq!(record_hash(&r), record_hash_v1(&r));
        });
    }

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for seq in 1..=n {
            let mut r = AuditRecord {
                requested_by: None,
                seq,
                at: Timestamp::from_unix(1_700_000_000 + seq),
                actor: "a".into(),
                role: "r".into(),
                action: "revoke-sessions".into(),
                user: format!("u{seq}"),
                before: json!({"sessions": 1}),
                after: json!({"sessions": 0}),
                sources: vec!["m".into()],
                plan_id: "p".into(),
                prev_hash: out.last().map_or(String::new(), |p| p.hash.clone()),
                hash: String::new(),
            };
            r.hash = record_hash(&r);
            out.push(r);
        }
        out
    }

    fn head(c: &[AuditRecord]) -> Option<(&str, i64)> {
        Some((c.last().map_or("", |r| r.hash.as_str()), c.len() as i64))
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(5);
        let r = verify(&c, head(&c));
        assert!(r.intact(), "{r:?}");
        assert_eq!(r.head, c[4].hash);
    }

    #[test]
    fn edits_deletions_insertions_and_reorders_name_the_first_record_touched() {
        let c = chain(5);
        let h = (c[4].hash.clone(), 5);
        let mut edited = c.clone();
        edited[2].user = "mallory".into();
        assert_eq!(verify(&edited, Some((&h.0, h.1))).breaks[0].seq, 3);
        let mut deleted = c.clone();
        deleted.remove(1);
        assert_eq!(verify(&deleted, Some((&h.0, h.1))).breaks[0].seq, 3);
        let mut reordered = c.clone();
        reordered.swap(1, 2);
        assert_eq!(verify(&reordered, Some((&h.0, h.1))).breaks[0].seq, 3);
        let mut truncated = c.clone();
        truncated.pop();
        assert!(!verify(&truncated, Some((&h.0, h.1))).intact());
    }

    #[test]
    fn a_non_ascii_or_short_head_is_reported_not_sliced() {
        let c = chain(2);
        for head in ["aéééééééééééé", "ab", "\u{1b}[31m\n", ""] {
            let r = verify(&c, Some((head, 2)));
            assert!(!r.intact(), "{head:?}");
            let what = &r.breaks[0].what;
            assert!(!what.contains('\x1b') && !what.contains('\n'), "{what}");
        }
        assert_eq!(short("aéééééééééééééé"), "aééééééééééé");
    }

    #[test]
    fn an_accept_record_acknowledges_earlier_breaks_only() {
        let mut c = chain(3);
        c[0].user = "mallory".into();
        let mut accept = c[2].clone();
        accept.seq = 4;
        accept.action = ACCEPT_BROKEN.into();
        accept.prev_hash = c[2].hash.clone();
        accept.hash = record_hash(&accept);
        c.push(accept);
        let r = verify(&c, head(&c));
        assert!(r.intact(), "{r:?}");
        assert_eq!(r.breaks[0].acknowledged_by, Some(4));
    }
}
