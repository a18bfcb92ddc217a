//! The per-user record: one user's whole state, secrets' hashes included, in one compact value,
//! so that reading a user is one B-tree seek (docs/store.md, "Layout"). Pure encoding; the SQL
//! that stores it is in the modules beside this one.
//!
//! ```text
//! version (1) | flags | [id] | display name | [password set at] [registration valid from]
//! [sessions valid from] [devices valid from] | [password hash]
//! roles: n, text… | group keys: n, text…
//! methods: n, (id kind time)… | sessions: n, (id time)…
//! trusted devices: n, (id name time)… | app passwords: n, (id name time has-secret [secret])…
//! ```
//!
//! Lengths and counts are unsigned LEB128 varints, times zigzag varints of Unix seconds, texts a
//! length then UTF-8. Flags: 1 enabled, 2 must change password, 4 the id differs from the key
//! (otherwise it is not stored), 8/16/32/64 the four times present, 128 a password hash present.
//! Groups are stored by key; their names come from `groups`. Lists are stored in the order
//! [`User::normalize`] gives, so a record decodes ready to print.

use crate::model::{AppPassword, Device, Method, Session, Timestamp, User};
use std::fmt;

/// The first byte of every record this build writes; a record of another version is refused.
pub const VERSION: u8 = 1;

/// A user as the store keeps them: the state plus the hashes of their secrets, which `User`
/// leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub user: User,
    /// The argon2 hash of the last temporary password mfactl issued.
    pub password_hash: Option<String>,
    /// `(app password id, secret hash)` for the app passwords that have one.
    pub secrets: Vec<(String, String)>,
}

impl Stored {
    pub fn new(user: User) -> Stored {
        Stored {
            user,
            password_hash: None,
            secrets: Vec::new(),
        }
    }
}

/// The smallest and largest times a record may hold: years 0000 to 9999, what RFC 3339 spells.
pub const FIRST_TIME: i64 = -62_167_219_200;
pub const LAST_TIME: i64 = 253_402_300_799;

/// Why a record does not decode: where (the byte offset and the part being read) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub at: usize,
    pub len: usize,
    pub part: &'static str,
    pub what: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at byte {} of {}, in {}: {}",
            self.at, self.len, self.part, self.what
        )
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn time(out: &mut Vec<u8>, t: Timestamp) {
    let v = t.unix();
    varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn text(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends the record of `s`, whose key is `key`, to `out`. `s.user`'s lists must be normalized
/// ([`User::normalize`]) and its groups given by name (stored by key).
pub fn encode(key: &str, s: &Stored, out: &mut Vec<u8>) {
    let u = &s.user;
    let times = [
        u.password_set_at,
        u.registration_valid_from,
        u.sessions_valid_from,
        u.devices_valid_from,
    ];
    let mut flags = u8::from(u.enabled) | (u8::from(u.must_change_password) << 1);
    flags |= u8::from(u.id != key) << 2;
    for (i, t) in times.iter().enumerate() {
        flags |= u8::from(t.is_some()) << (3 + i);
    }
    flags |= u8::from(s.password_hash.is_some()) << 7;
    out.push(VERSION);
    out.push(flags);
    if u.id != key {
        text(out, &u.id);
    }
    text(out, &u.display_name);
    for t in times.into_iter().flatten() {
        time(out, t);
    }
    if let Some(h) = &s.password_hash {
        text(out, h);
    }
    varint(out, u.roles.len() as u64);
    for r in &u.roles {
        text(out, r);
    }
    varint(out, u.groups.len() as u64);
    for g in &u.groups {
        text(out, &crate::model::key_of(g));
    }
    varint(out, u.methods.len() as u64);
    for m in &u.methods {
        text(out, &m.id);
        text(out, &m.kind);
        time(out, m.registered_at);
    }
    varint(out, u.sessions.len() as u64);
    for x in &u.sessions {
        text(out, &x.id);
        time(out, x.issued_at);
    }
    varint(out, u.trusted_devices.len() as u64);
    for d in &u.trusted_devices {
        text(out, &d.id);
        text(out, &d.name);
        time(out, d.remembered_at);
    }
    varint(out, u.app_passwords.len() as u64);
    for a in &u.app_passwords {
        text(out, &a.id);
        text(out, &a.name);
        time(out, a.created_at);
        match s.secrets.iter().find(|(id, _)| *id == a.id) {
            Some((_, h)) => {
                out.push(1);
                text(out, h);
            }
            None => out.push(0),
        }
    }
}

/// The record of `s` as a new value.
pub fn to_bytes(key: &str, s: &Stored) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode(key, s, &mut out);
    out
}

struct Reader<'b> {
    b: &'b [u8],
    at: usize,
    part: &'static str,
    /// The ids of the list being read, with the byte each item starts at (kept only for lists
    /// of two items or more; one buffer for the whole record).
    ids: Vec<(&'b str, usize)>,
}

impl<'b> Reader<'b> {
    fn fail<T>(&self, at: usize, what: impl Into<String>) -> Result<T, Damage> {
        Err(Damage {
            at,
            len: self.b.len(),
            part: self.part,
            what: what.into(),
        })
    }

    fn byte(&mut self) -> Result<u8, Damage> {
        match self.b.get(self.at) {
            Some(&v) => {
                self.at += 1;
                Ok(v)
            }
            None => self.fail(self.at, "the record ends early"),
        }
    }

    fn varint(&mut self) -> Result<u64, Damage> {
        let start = self.at;
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let b = self.byte()?;
            if shift > 63 || (shift == 63 && b > 1) {
                return self.fail(start, "a number longer than 64 bits");
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    fn time(&mut self) -> Result<Timestamp, Damage> {
        let start = self.at;
        let v = self.varint()?;
        let t = (v >> 1) as i64 ^ -((v & 1) as i64);
        if !(FIRST_TIME..=LAST_TIME).contains(&t) {
            return self.fail(
                start,
                format!("the time {t} lies outside the years 0000 to 9999"),
            );
        }
        Ok(Timestamp::from_unix(t))
    }

    fn str(&mut self) -> Result<&'b str, Damage> {
        let start = self.at;
        let n = self.varint()?;
        let left = (self.b.len() - self.at) as u64;
        if n > left {
            return self.fail(
                start,
                format!("a text of {n} bytes where {left} bytes are left"),
            );
        }
        let bytes = &self.b[self.at..self.at + n as usize];
        self.at += n as usize;
        std::str::from_utf8(bytes).or_else(|_| self.fail(start, "a text that is not UTF-8"))
    }

    fn string(&mut self) -> Result<String, Damage> {
        self.str().map(str::to_string)
    }

    /// The id of an item of a list of `n` items, noted with the byte the item starts at for
    /// [`Self::unique`].
    fn id(&mut self, n: usize) -> Result<String, Damage> {
        let start = self.at;
        let id = self.str()?;
        if n > 1 {
            self.ids.push((id, start));
        }
        Ok(id.to_string())
    }

    /// Refuses a list that holds two `item`s of one id, at the second: mfactl never writes one
    /// (schema 3 had the ids as primary keys, and an import refuses them), and the secret of an
    /// app password is kept by its id, so such a record would not encode back to itself.
    fn unique(&mut self, item: &str) -> Result<(), Damage> {
        if self.ids.len() > 1 {
            self.ids.sort_unstable();
            let second = self
                .ids
                .windows(2)
                .filter(|w| w[0].0 == w[1].0)
                .map(|w| w[1])
                .min_by_key(|&(_, at)| at);
            if let Some((id, at)) = second {
                let mut shown: String = id.chars().take(60).collect();
                if shown.len() < id.len() {
                    shown.push('…');
                }
                let shown = crate::util::escape_text(&shown);
                return self.fail(at, format!("a second {item} with id `{shown}`"));
            }
        }
        self.ids.clear();
        Ok(())
    }

    /// A count, refused when it exceeds the bytes left (each item takes at least one).
    fn count(&mut self, part: &'static str) -> Result<usize, Damage> {
        self.part = part;
        let start = self.at;
        let n = self.varint()?;
        let left = (self.b.len() - self.at) as u64;
        if n > left {
            return self.fail(start, format!("a count of {n} where {left} bytes are left"));
        }
        Ok(n as usize)
    }
}

/// The user of key `key` from its record; `group` turns a stored group key into the name the
/// user carries.
pub fn decode(key: &str, b: &[u8], group: impl Fn(&str) -> String) -> Result<Stored, Damage> {
    let mut r = Reader {
        b,
        at: 0,
        part: "the header",
        ids: Vec::new(),
    };
    let version = r.byte()?;
    if version != VERSION {
        return r.fail(
            0,
            format!("record version {version}, where this mfactl reads version {VERSION}"),
        );
    }
    let flags = r.byte()?;
    r.part = "the id";
    let id = if flags & 4 != 0 {
        r.string()?
    } else {
        key.to_string()
    };
    r.part = "the display name";
    let display_name = r.string()?;
    r.part = "the times";
    let mut times = [None; 4];
    for (i, t) in times.iter_mut().enumerate() {
        if flags & (8 << i) != 0 {
            *t = Some(r.time()?);
        }
    }
    r.part = "the password hash";
    let password_hash = if flags & 128 != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let n = r.count("the roles")?;
    let mut roles = Vec::with_capacity(n);
    for _ in 0..n {
        roles.push(r.string()?);
    }
    let n = r.count("the groups")?;
    let mut groups = Vec::with_capacity(n);
    for _ in 0..n {
        groups.push(group(r.str()?));
    }
    let n = r.count("the methods")?;
    let mut methods = Vec::with_capacity(n);
    for _ in 0..n {
        methods.push(Method {
            id: r.id(n)?,
            kind: r.string()?,
            registered_at: r.time()?,
        });
    }
    r.unique("method")?;
    let n = r.count("the sessions")?;
    let mut sessions = Vec::with_capacity(n);
    for _ in 0..n {
        sessions.push(Session {
            id: r.id(n)?,
            issued_at: r.time()?,
        });
    }
    r.unique("session")?;
    let n = r.count("the trusted devices")?;
    let mut trusted_devices = Vec::with_capacity(n);
    for _ in 0..n {
        trusted_devices.push(Device {
            id: r.id(n)?,
            name: r.string()?,
            remembered_at: r.time()?,
        });
    }
    r.unique("trusted device")?;
    let n = r.count("the app passwords")?;
    let mut app_passwords = Vec::with_capacity(n);
    let mut secrets = Vec::new();
    for _ in 0..n {
        let a = AppPassword {
            id: r.id(n)?,
            name: r.string()?,
            created_at: r.time()?,
        };
        match r.byte()? {
            0 => {}
            1 => secrets.push((a.id.clone(), r.string()?)),
            other => return r.fail(r.at - 1, format!("a secret marker of {other}")),
        }
        app_passwords.push(a);
    }
    r.unique("app password")?;
    if r.at != b.len() {
        r.part = "the end";
        let n = b.len() - r.at;
        let unit = if n == 1 { "byte" } else { "bytes" };
        return r.fail(r.at, format!("{n} {unit} after the record"));
    }
    let [password_set_at, registration_valid_from, sessions_valid_from, devices_valid_from] = times;
    let mut user = User {
        id,
        display_name,
        enabled: flags & 1 != 0,
        roles,
        groups,
        password_set_at,
        must_change_password: flags & 2 != 0,
        registration_valid_from,
        sessions_valid_from,
        devices_valid_from,
        methods,
        sessions,
        trusted_devices,
        app_passwords,
    };
    // Written sorted; sorting again is a linear pass then, and keeps a hand-edited record's
    // output the same bytes as any other.
    user.normalize();
    Ok(Stored {
        user,
        password_hash,
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn sample() -> Stored {
        let mut user = User {
            id: "Carol@Contoso.example".into(),
            display_name: "Carol — ☃".into(),
            enabled: true,
            roles: vec!["helpdesk-administrator".into()],
            groups: vec!["Contractors".into(), "admins".into()],
            password_set_at: Some(t("2026-01-02T03:04:05Z")),
            must_change_password: true,
            registration_valid_from: None,
            sessions_valid_from: Some(t("1970-01-01")),
            devices_valid_from: Some(t("1969-12-31T23:59:59Z")),
            methods: vec![Method {
                id: "m1".into(),
                kind: "fido2".into(),
                registered_at: t("2025-05-05"),
            }],
            sessions: vec![
                Session {
                    id: "s1".into(),
                    issued_at: t("0000-01-01"),
                },
                Session {
                    id: "s2".into(),
                    issued_at: t("9999-12-31T23:59:59Z"),
                },
            ],
            trusted_devices: vec![Device {
                id: "d1".into(),
                name: "".into(),
                remembered_at: t("2026-11-01"),
            }],
            app_passwords: vec![
                AppPassword {
                    id: "a1".into(),
                    name: "mail".into(),
                    created_at: t("2020-01-01"),
                },
                AppPassword {
                    id: "a2".into(),
                    name: "cal".into(),
                    created_at: t("2021-01-01"),
                },
            ],
        };
        user.normalize();
        Stored {
            user,
            password_hash: Some("$argon2id$v=19$x".into()),
            secrets: vec![("a2".into(), "hash-of-a2".into())],
        }
    }

    fn names(k: &str) -> String {
        match k {
            "contractors" => "Contractors".into(),
            other => other.into(),
        }
    }

    #[test]
    fn a_record_round_trips_with_its_secrets() {
        let s = sample();
        let key = s.user.key();
        let b = to_bytes(&key, &s);
        assert_eq!(b[0], VERSION);
        assert_eq!(decode(&key, &b, names).unwrap(), s);
        // The id is stored only when it differs from the key.
        let mut plain = s.clone();
        plain.user.id = key.clone();
        let short = to_bytes(&key, &plain);
        assert_eq!(short.len() + 1 + s.user.id.len(), b.len());
        assert_eq!(decode(&key, &short, names).unwrap(), plain);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused_or_decodes_without_panic() {
        let s = sample();
        let key = s.user.key();
        let b = to_bytes(&key, &s);
        for n in 0..b.len() {
            let e = decode(&key, &b[..n], names).unwrap_err();
            assert!(e.at <= n, "{e}");
        }
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                let _ = decode(&key, &c, names);
            }
        }
    }

    #[test]
    fn damage_names_the_part_and_the_byte() {
        let s = sample();
        let key = s.user.key();
        let mut b = to_bytes(&key, &s);
        b.push(0);
        let e = decode(&key, &b, names).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "at byte {} of {}, in the end: 1 byte after the record",
                b.len() - 1,
                b.len()
            )
        );
        let e = decode(&key, &[2, 0], names).unwrap_err();
        assert!(e.to_string().contains("record version 2"), "{e}");
        // A time past the year 9999.
        let mut u = Stored::new(User {
            sessions_valid_from: Some(Timestamp::from_unix(LAST_TIME)),
            ..sample().user
        });
        u.user.id = key.clone();
        let mut b = to_bytes(&key, &u);
        let ok = decode(&key, &b, names).unwrap();
        assert_eq!(ok.user.sessions_valid_from, u.user.sessions_valid_from);
        // Re-encode with one second more by hand: find the time's varint and bump it.
        let mut more = Vec::new();
        time(&mut more, Timestamp::from_unix(LAST_TIME));
        let at = b.windows(more.len()).position(|w| w == more).unwrap();
        let mut next = Vec::new();
        time(&mut next, Timestamp::from_unix(LAST_TIME + 1));
        assert_eq!(next.len(), more.len());
        b.splice(at..at + more.len(), next);
        let e = decode(&key, &b, names).unwrap_err();
        assert!(
            e.to_string().contains("outside the years 0000 to 9999"),
            "{e}"
        );
        assert_eq!(e.part, "the times");
    }

    /// Found by `cargo fuzz run record`: two app passwords of one id, one with a secret, decoded
    /// to one secret, and encoded back to two (the secret is kept by id). Two items of one id
    /// are refused in every list, at the second, naming it.
    #[test]
    fn two_items_of_one_id_are_refused() {
        let fuzzed = [
            1, 0, 0, // version, flags, display name ``
            0, 0, 0, 0, 0, // no roles, groups, methods, sessions or trusted devices
            2, // two app passwords: id ``, name ``, time 0, with the secret ``…
            0, 0, 0, 1, 0, //
            0, 0, 0, 0, // …and id `` again, without one
        ];
        let e = decode("", &fuzzed, names).unwrap_err();
        assert_eq!(
            e.to_string(),
            "at byte 14 of 18, in the app passwords: a second app password with id ``"
        );
        let s = sample();
        let key = s.user.key();
        let mut twice = s.clone();
        twice.user.app_passwords[1].id = "a1".into();
        twice.secrets = vec![("a1".into(), "hash".into())];
        let b = to_bytes(&key, &twice);
        let second = b.windows(3).rposition(|w| w == b"\x02a1").unwrap();
        let e = decode(&key, &b, names).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "at byte {second} of {}, in the app passwords: a second app password with id `a1`",
                b.len()
            )
        );
        let mut twice = s.clone();
        twice.user.sessions[1].id = "s1".into();
        let e = decode(&key, &to_bytes(&key, &twice), names).unwrap_err();
        assert_eq!(e.part, "the sessions");
        assert!(e.what.ends_with("a second session with id `s1`"), "{e}");
        // Shown escaped: an id cannot steer the terminal.
        let mut twice = s.clone();
        for m in ["\u{1b}[31m", "\u{1b}[31m"] {
            twice.user.methods.push(Method {
                id: m.into(),
                kind: "sms".into(),
                registered_at: t("2025-05-05"),
            });
        }
        let e = decode(&key, &to_bytes(&key, &twice), names).unwrap_err();
        assert_eq!(e.part, "the methods");
        assert!(!e.to_string().contains('\u{1b}'), "{e}");
        // Items of one id in different lists are fine.
        let mut shared = s.clone();
        shared.user.sessions[0].id = "m1".into();
        shared.user.sessions[1].id = "m1x".into();
        decode(&key, &to_bytes(&key, &shared), names).unwrap();
    }
}
