//! The vocabulary shared by every module: user ids, timestamps, the five actions, a user's MFA state
//! and the directory format (see docs/store.md). Pure data; no I/O.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use zeroize::Zeroize;

/// The case-insensitive key of a user id or group name (ASCII lowercase, as UPNs compare).
pub fn key_of(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// An instant with one-second precision, always UTC. Printed as `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix(secs: i64) -> Self {
        Timestamp(secs)
    }
    pub const fn unix(self) -> i64 {
        self.0
    }
    pub fn plus_secs(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs))
    }

    /// Parses RFC 3339 with a zone (`Z` or an offset), or a date `YYYY-MM-DD` meaning 00:00 UTC.
    pub fn parse(s: &str) -> Result<Self, String> {
        use time::format_description::well_known::Rfc3339;
        let s = s.trim();
        if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            let date = time::Date::parse(s, &fmt)
                .map_err(|_| format!("`{s}` is not a valid date (expected YYYY-MM-DD)"))?;
            return Ok(Timestamp(date.midnight().assume_utc().unix_timestamp()));
        }
        let t = time::OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            format!(
                "`{}` is not a timestamp: use RFC 3339 with a zone (2026-11-27T09:00:00Z, \
                 2026-11-27T10:00:00+01:00) or a date (2026-11-27)",
                crate::util::escape_text(s)
            )
        })?;
        // `time` reads a leap second (`23:59:60`) as 23:59:59.999999999: name it rather than
        // call it a fraction. Unix time has no leap seconds, so neither does mfactl.
        if s.get(17..19) == Some("60") && s.as_bytes().get(16) == Some(&b':') {
            let before = Timestamp(t.unix_timestamp());
            return Err(format!(
                "`{s}` is a leap second; leap seconds are not supported: use {before} or the next \
                 second, {}",
                before.plus_secs(1)
            ));
        }
        if t.nanosecond() != 0 {
            return Err(format!(
                "`{s}` has fractional seconds; mfactl timestamps have one-second precision"
            ));
        }
        Ok(Timestamp(t.unix_timestamp()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::util::time::Rfc3339(self.0).fmt(f)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "RFC 3339 with a zone (2026-11-27T09:00:00Z, 2026-11-27T10:00:00+01:00) or a date YYYY-MM-DD (00:00 UTC); one-second precision",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
        })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a timestamp (RFC 3339 with a zone, or YYYY-MM-DD); a bare flag is not \
                     accepted because it would repeat the action on every reconcile",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                if matches!(v, "true" | "false" | "yes" | "no" | "on" | "off") {
                    return Err(E::custom(format!(
                        "`{v}` is a flag, but a timestamp is required (e.g. 2026-11-27T09:00:00Z): \
                         the setting means \"nothing older than T\", and a bare flag would repeat \
                         the action on every reconcile"
                    )));
                }
                Timestamp::parse(v).map_err(E::custom)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Timestamp, E> {
                self.visit_str(if v { "true" } else { "false" })
            }
        }
        d.deserialize_str(V)
    }
}

/// The five admin actions (docs/manifests.md), in the order plans sort them (alphabetical by verb).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    DeleteAppPasswords,
    RequireReregistration,
    ResetPassword,
    RevokeSessions,
    RevokeTrustedDevices,
}

impl ActionKind {
    pub fn verb(self) -> &'static str {
        match self {
            ActionKind::DeleteAppPasswords => "delete-app-passwords",
            ActionKind::RequireReregistration => "require-reregistration",
            ActionKind::ResetPassword => "reset-password",
            ActionKind::RevokeSessions => "revoke-sessions",
            ActionKind::RevokeTrustedDevices => "revoke-trusted-devices",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

/// One concrete action with its data: what the plan will do to one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Watermark := max(watermark, before); delete methods registered before it.
    RequireReregistration {
        before: Timestamp,
    },
    RevokeSessions {
        before: Timestamp,
    },
    RevokeTrustedDevices {
        before: Timestamp,
    },
    /// New temporary password; set-at := `set_at`, must-change := true.
    ResetPassword {
        before: Timestamp,
        set_at: Timestamp,
    },
    DeleteAppPasswords,
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::RequireReregistration { .. } => ActionKind::RequireReregistration,
            Action::RevokeSessions { .. } => ActionKind::RevokeSessions,
            Action::RevokeTrustedDevices { .. } => ActionKind::RevokeTrustedDevices,
            Action::ResetPassword { .. } => ActionKind::ResetPassword,
            Action::DeleteAppPasswords => ActionKind::DeleteAppPasswords,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a method: {id, kind, registered-at}"
)]
pub struct Method {
    pub id: String,
    pub kind: String,
    pub registered_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a session: {id, issued-at}"
)]
pub struct Session {
    pub id: String,
    pub issued_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a trusted device: {id, name, remembered-at}"
)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub remembered_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "an app password: {id, name, created-at}"
)]
pub struct AppPassword {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
}

/// A user's actual state, exactly the record of the directory format (docs/store.md). Secrets are
/// not part of it: they live only as hashes inside the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a user: a mapping with id and the fields of the directory format"
)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub password_set_at: Option<Timestamp>,
    #[serde(default)]
    pub must_change_password: bool,
    #[serde(default)]
    pub registration_valid_from: Option<Timestamp>,
    #[serde(default)]
    pub sessions_valid_from: Option<Timestamp>,
    #[serde(default)]
    pub devices_valid_from: Option<Timestamp>,
    #[serde(default)]
    pub methods: Vec<Method>,
    #[serde(default)]
    pub sessions: Vec<Session>,
    #[serde(default)]
    pub trusted_devices: Vec<Device>,
    #[serde(default)]
    pub app_passwords: Vec<AppPassword>,
}

fn yes() -> bool {
    true
}

impl User {
    pub fn key(&self) -> String {
        key_of(&self.id)
    }

    /// Sorts a user's lists so that every output of the same state is the same bytes.
    pub fn normalize(&mut self) {
        self.roles.sort();
        // By case-folded name, compared byte by byte without allocating a key per comparison.
        self.groups.sort_by(|a, b| {
            a.bytes()
                .map(|c| c.to_ascii_lowercase())
                .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
        });
        self.methods
            .sort_by(|a, b| (a.registered_at, &a.id).cmp(&(b.registered_at, &b.id)));
        self.sessions
            .sort_by(|a, b| (a.issued_at, &a.id).cmp(&(b.issued_at, &b.id)));
        self.trusted_devices
            .sort_by(|a, b| (a.remembered_at, &a.id).cmp(&(b.remembered_at, &b.id)));
        self.app_passwords
            .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a group: {name, role-assignable}"
)]
pub struct Group {
    pub name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub role_assignable: bool,
}

/// The directory format of `store import` / `store export`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a directory: a mapping with `groups` and `users`"
)]
pub struct Directory {
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub users: Vec<User>,
}

/// A temporary password. Its `Debug` hides the value, it has no `Display` or `Serialize`, and its
/// memory is zeroed on drop; the only way out is [`Secret::expose`], used by the credentials writer
/// and the hasher.
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_zones_and_dates_and_print_utc() {
        let t = Timestamp::parse("2026-01-01T00:00:00+01:00").unwrap();
        assert_eq!(t.to_string(), "2025-12-31T23:00:00Z");
        assert_eq!(
            Timestamp::parse("2026-11-20").unwrap().to_string(),
            "2026-11-20T00:00:00Z"
        );
        assert!(
            Timestamp::parse("2026-11-20T10:00:00").is_err(),
            "a zone is required"
        );
        assert!(Timestamp::parse("true").is_err());
        assert!(Timestamp::parse("2026-11-20T10:00:00.5Z").is_err());
        assert!(Timestamp::parse("2026-02-30").is_err());
    }

    #[test]
    fn a_leap_second_is_named_not_called_a_fraction() {
        let e = Timestamp::parse("2016-12-31T23:59:60Z").unwrap_err();
        assert!(e.contains("leap second"), "{e}");
        assert!(
            e.contains("use 2016-12-31T23:59:59Z or the next second, 2017-01-01T00:00:00Z"),
            "{e}"
        );
        let e = Timestamp::parse("2017-01-01T00:59:60+01:00").unwrap_err();
        assert!(e.contains("use 2016-12-31T23:59:59Z"), "{e}");
        let e = Timestamp::parse("2016-12-31T23:59:60.5Z").unwrap_err();
        assert!(e.contains("leap second"), "{e}");
        assert!(Timestamp::parse("2016-12-31T23:59:59.5Z")
            .unwrap_err()
            .contains("fractional"));
    }

    #[test]
    fn secret_debug_hides_value() {
        let s = Secret::new("hunter2hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}

/// One audit record: a change that an apply committed (see docs/store.md, "The audit log").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub user: String,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    pub sources: Vec<String>,
    pub plan_id: String,
    /// The previous record's `hash` ("" for the first record).
    pub prev_hash: String,
    /// SHA-256 over this record's canonical encoding, `prev_hash` included.
    pub hash: String,
    /// Under `--signers`: the signer whose request allowed the change (covered by the hash).
    pub requested_by: Option<RequestedBy>,
}

/// Who a change was requested by under `--signers`: the signer (a directory user id), their
/// key's fingerprint (`SHA256:…`) and the commit, as plans and the audit log name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedBy {
    pub user: String,
    pub key: String,
    pub commit: String,
}
