//! The directory format as YAML, written: byte for byte what serde_yaml writes for a
//! `Directory`, but several times faster for the users whose values all print as plain scalars
//! (the tests compare the two on generated directories). `store export` writes a million users.

use crate::model::{Group, Timestamp, User};

/// Why writing the directory stopped.
#[derive(Debug)]
pub enum Stop {
    /// The output refused the bytes.
    Write,
    /// serde_yaml could not render a value (never for plain data; kept rather than unwrapped).
    Yaml(String),
}

impl From<std::fmt::Error> for Stop {
    fn from(_: std::fmt::Error) -> Stop {
        Stop::Write
    }
}

/// The directory format's `groups:` section, exactly as `to_yaml` of a `Directory` writes it.
pub fn write_groups(w: &mut dyn std::fmt::Write, groups: &[Group]) -> Result<(), Stop> {
    if groups.is_empty() {
        return Ok(w.write_str("groups: []\n")?);
    }
    w.write_str("groups:\n")?;
    for g in groups {
        if plain(&g.name) {
            w.write_str("- name: ")?;
            w.write_str(&g.name)?;
            w.write_str(if g.role_assignable {
                "\n  role-assignable: true\n"
            } else {
                "\n"
            })?;
        } else {
            w.write_str(&to_yaml(&[g]).map_err(Stop::Yaml)?)?;
        }
    }
    Ok(())
}

/// One user as an item of the `users:` list, byte for byte what serde_yaml writes for it
/// (the tests below compare the two). serde_yaml is slow (under 20 MB/s here), so users whose
/// strings and times all print as plain scalars are written directly; any other user goes
/// through serde_yaml as a one-item list, which it prints exactly as an item of the whole list.
pub fn write_user(w: &mut dyn std::fmt::Write, u: &User) -> Result<(), Stop> {
    let mut buf = String::with_capacity(768);
    if fast_user(&mut buf, u).is_none() {
        buf = to_yaml(&[u]).map_err(Stop::Yaml)?;
    }
    Ok(w.write_str(&buf)?)
}

/// `None` when some value of `u` needs quoting or escaping (then serde_yaml writes it).
fn fast_user(out: &mut String, u: &User) -> Option<()> {
    use super::fields::{app_password, device, method, session, user};
    // `INDENT KEY: ` (the first field of a list item is indented `- ` instead).
    fn key(out: &mut String, indent: &str, key: &str) {
        out.push_str(indent);
        out.push_str(key);
        out.push_str(": ");
    }
    // `INDENT KEY: value\n`, when the value prints plain.
    fn text(out: &mut String, indent: &str, k: &str, value: &str) -> Option<()> {
        plain(value).then_some(())?;
        key(out, indent, k);
        out.push_str(value);
        out.push('\n');
        Some(())
    }
    fn time(out: &mut String, indent: &str, k: &str, t: Option<Timestamp>) -> Option<()> {
        key(out, indent, k);
        match t {
            None => out.push_str("null"),
            // `YYYY-MM-DDTHH:MM:SSZ` with a four-digit year prints plain (`@secs` would not).
            Some(t) => {
                let b = crate::util::time::bytes(t.unix()).filter(|b| b[0] != b'0')?;
                out.push_str(std::str::from_utf8(&b).ok()?)
            }
        }
        out.push('\n');
        Some(())
    }
    fn flag(out: &mut String, k: &str, b: bool) {
        key(out, "  ", k);
        out.push_str(if b { "true\n" } else { "false\n" });
    }
    // `KEY: []`, or `KEY:` and per item its lines (an object's fields, the first after `  - `).
    fn objects<T>(
        out: &mut String,
        k: &str,
        items: &[T],
        each: impl Fn(&mut String, &T) -> Option<()>,
    ) -> Option<()> {
        out.push_str("  ");
        out.push_str(k);
        if items.is_empty() {
            out.push_str(": []\n");
            return Some(());
        }
        out.push_str(":\n");
        items.iter().try_for_each(|i| each(out, i))
    }
    const FIRST: &str = "  - ";
    const NEXT: &str = "    ";
    text(out, "- ", user::ID, &u.id)?;
    text(out, "  ", user::DISPLAY_NAME, &u.display_name)?;
    flag(out, user::ENABLED, u.enabled);
    // A list of strings: one `  - item` line each.
    let item = |out: &mut String, i: &String| {
        plain(i).then(|| {
            out.push_str("  - ");
            out.push_str(i);
            out.push('\n');
        })
    };
    objects(out, user::ROLES, &u.roles, item)?;
    objects(out, user::GROUPS, &u.groups, item)?;
    time(out, "  ", user::PASSWORD_SET_AT, u.password_set_at)?;
    flag(out, user::MUST_CHANGE_PASSWORD, u.must_change_password);
    time(
        out,
        "  ",
        user::REGISTRATION_VALID_FROM,
        u.registration_valid_from,
    )?;
    time(out, "  ", user::SESSIONS_VALID_FROM, u.sessions_valid_from)?;
    time(out, "  ", user::DEVICES_VALID_FROM, u.devices_valid_from)?;
    objects(out, user::METHODS, &u.methods, |out, m| {
        text(out, FIRST, method::ID, &m.id)?;
        text(out, NEXT, method::KIND, &m.kind)?;
        time(out, NEXT, method::REGISTERED_AT, Some(m.registered_at))
    })?;
    objects(out, user::SESSIONS, &u.sessions, |out, s| {
        text(out, FIRST, session::ID, &s.id)?;
        time(out, NEXT, session::ISSUED_AT, Some(s.issued_at))
    })?;
    objects(out, user::TRUSTED_DEVICES, &u.trusted_devices, |out, d| {
        text(out, FIRST, device::ID, &d.id)?;
        text(out, NEXT, device::NAME, &d.name)?;
        time(out, NEXT, device::REMEMBERED_AT, Some(d.remembered_at))
    })?;
    objects(out, user::APP_PASSWORDS, &u.app_passwords, |out, a| {
        text(out, FIRST, app_password::ID, &a.id)?;
        text(out, NEXT, app_password::NAME, &a.name)?;
        time(out, NEXT, app_password::CREATED_AT, Some(a.created_at))
    })
}

/// Whether serde_yaml prints `s` as a plain scalar, as is: a conservative subset of what it
/// does (letters, digits, `@ . - _` and inner spaces, starting with a letter, and not one of
/// the words it quotes because they would read back as null or a boolean).
fn plain(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.last() != Some(&b' ')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b'-' | b'_' | b' '))
        && !matches!(
            s,
            "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
        )
}

/// `v` as serde_yaml writes it (a user for `show`, a whole directory in the tests).
pub fn to_yaml<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_yaml::to_string(v).map_err(|e| format!("cannot render YAML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppPassword, Device, Directory, Method, Session};
    use proptest::prelude::*;

    /// The streaming writer, as `store export` uses it, for a whole directory.
    fn streamed(dir: &Directory) -> String {
        let mut out = String::new();
        assert!(write_groups(&mut out, &dir.groups).is_ok());
        if dir.users.is_empty() {
            out.push_str("users: []\n");
        } else {
            out.push_str("users:\n");
            for u in &dir.users {
                assert!(write_user(&mut out, u).is_ok());
            }
        }
        out
    }

    /// Mostly strings that print plain, so that whole users take the fast path, and now and then
    /// one that serde_yaml must quote, escape or fold.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => "[a-z][a-z0-9.@_-]{0,12}",
            4 => "[A-Za-z][A-Za-z0-9 ]{0,20}",
            1 => awkward(),
        ]
    }

    fn awkward() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            prop::sample::select(vec![
                "null",
                "Null",
                "true",
                "FALSE",
                "yes",
                "no",
                "on",
                "~",
                "inf",
                "nan",
                "NaN",
                "infinity",
                "123",
                "0123",
                "1e5",
                "0x1f",
                "-1",
                "+1",
                ".inf",
                "a: b",
                "a #b",
                "#x",
                "- x",
                "x ",
                " x",
                "a  b",
                "@x",
                "`x",
                "'x'",
                "\"x\"",
                "a\nb",
                "a\tb",
                "\u{1b}[31m",
                "é",
                "日本",
                "x,y",
                "[x]",
                "{x}",
                "a:b",
                "%x",
                "!x",
                "&x",
                "*x",
                "|x",
                ">x",
                "?x",
                "x?",
                "-",
                ".",
                "_x",
                "a_b",
                "A1",
            ])
            .prop_map(str::to_string),
            "\\PC{0,8}",
            "[ -~]{0,10}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn what_plain_accepts_serde_yaml_prints_as_is(s in prop_oneof![awkward(), "[a-zA-Z0-9 @._:#-]{1,12}"]) {
            if plain(&s) {
                prop_assert_eq!(to_yaml(&s).unwrap(), format!("{s}\n"));
            }
        }
    }

    fn time() -> impl Strategy<Value = Timestamp> {
        prop_oneof![
            (0i64..4_000_000_000).prop_map(Timestamp::from_unix),
            Just(Timestamp::from_unix(-70_000_000_000)),
            Just(Timestamp::from_unix(i64::MAX)),
        ]
    }

    fn user() -> impl Strategy<Value = User> {
        (
            (
                text(),
                text(),
                any::<bool>(),
                prop::collection::vec(text(), 0..3),
                prop::collection::vec(text(), 0..3),
            ),
            (
                prop::option::of(time()),
                any::<bool>(),
                prop::option::of(time()),
                prop::option::of(time()),
                prop::option::of(time()),
            ),
            prop::collection::vec((text(), text(), time()), 0..3),
            prop::collection::vec((text(), time()), 0..3),
            prop::collection::vec((text(), text(), time()), 0..2),
            prop::collection::vec((text(), text(), time()), 0..2),
        )
            .prop_map(
                |((id, display_name, enabled, roles, groups), (p, m, r, s, d), ms, ss, ds, aps)| {
                    User {
                        id,
                        display_name,
                        enabled,
                        roles,
                        groups,
                        password_set_at: p,
                        must_change_password: m,
                        registration_valid_from: r,
                        sessions_valid_from: s,
                        devices_valid_from: d,
                        methods: ms
                            .into_iter()
                            .map(|(id, kind, registered_at)| Method {
                                id,
                                kind,
                                registered_at,
                            })
                            .collect(),
                        sessions: ss
                            .into_iter()
                            .map(|(id, issued_at)| Session { id, issued_at })
                            .collect(),
                        trusted_devices: ds
                            .into_iter()
                            .map(|(id, name, remembered_at)| Device {
                                id,
                                name,
                                remembered_at,
                            })
                            .collect(),
                        app_passwords: aps
                            .into_iter()
                            .map(|(id, name, created_at)| AppPassword {
                                id,
                                name,
                                created_at,
                            })
                            .collect(),
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn streamed_export_is_byte_for_byte_serde_yaml(
            users in prop::collection::vec(user(), 0..4),
            groups in prop::collection::vec((text(), any::<bool>()), 0..3),
        ) {
            let dir = Directory {
                groups: groups.into_iter().map(|(name, role_assignable)| Group { name, role_assignable }).collect(),
                users,
            };
            prop_assert_eq!(streamed(&dir), to_yaml(&dir).unwrap());
        }
    }

    /// A flow rendering of users, as generators write them (values unquoted: an awkward one
    /// makes it another document, or no YAML at all).
    fn flow(users: &[User]) -> String {
        let t = |t: &Timestamp| t.to_string();
        let opt = |t: &Option<Timestamp>| t.as_ref().map_or("null".to_string(), t_str);
        fn t_str(t: &Timestamp) -> String {
            t.to_string()
        }
        let mut out = String::new();
        for u in users {
            out.push_str(&format!(
                "  - {{id: {}, display-name: {}, enabled: {}, roles: [{}], groups: [{}], password-set-at: {},\n      must-change-password: {}, sessions-valid-from: {},\n      methods: [{}],\n      sessions: [{}]}}\n",
                u.id,
                u.display_name,
                u.enabled,
                u.roles.join(", "),
                u.groups.join(", "),
                opt(&u.password_set_at),
                u.must_change_password,
                opt(&u.sessions_valid_from),
                u.methods
                    .iter()
                    .map(|m| format!("{{id: {}, kind: {}, registered-at: {}}}", m.id, m.kind, t(&m.registered_at)))
                    .collect::<Vec<_>>()
                    .join(",\n        "),
                u.sessions
                    .iter()
                    .map(|s| format!("{{id: {}, issued-at: {}}}", s.id, t(&s.issued_at)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// The plain-YAML reader reads the export layout and the flow layout as serde_yaml does,
        /// or leaves the text to it; and it does read every user whose strings print plain.
        #[test]
        fn the_plain_reader_agrees_with_serde_yaml_or_declines(users in prop::collection::vec(user(), 1..4)) {
            let mut block = String::new();
            for u in &users {
                prop_assert!(write_user(&mut block, u).is_ok());
            }
            for text in [block, flow(&users)] {
                let slow: Option<Vec<User>> = serde_yaml::from_str(&text).ok();
                let fast = crate::directory::plain_yaml::users(&text);
                if fast.is_some() {
                    prop_assert_eq!(&fast, &slow, "{}", text);
                }
                let plain_strings = users.iter().all(|u| {
                    let mut all = vec![&u.id, &u.display_name];
                    all.extend(&u.roles);
                    all.extend(&u.groups);
                    all.extend(u.methods.iter().flat_map(|m| [&m.id, &m.kind]));
                    all.extend(u.sessions.iter().map(|s| &s.id));
                    all.extend(u.trusted_devices.iter().flat_map(|d| [&d.id, &d.name]));
                    all.extend(u.app_passwords.iter().flat_map(|a| [&a.id, &a.name]));
                    let times = [u.password_set_at, u.registration_valid_from, u.sessions_valid_from, u.devices_valid_from]
                        .into_iter()
                        .flatten()
                        .chain(u.methods.iter().map(|m| m.registered_at))
                        .chain(u.sessions.iter().map(|s| s.issued_at))
                        .chain(u.trusted_devices.iter().map(|d| d.remembered_at))
                        .chain(u.app_passwords.iter().map(|a| a.created_at));
                    all.iter().all(|s| plain(s) && !matches!(s.to_ascii_lowercase().as_str(), "y" | "n" | "yes" | "no" | "on" | "off"))
                        && times.into_iter().all(|t| crate::util::time::bytes(t.unix()).is_some_and(|b| b[0] != b'0'))
                });
                if plain_strings && slow.is_some() {
                    prop_assert!(fast.is_some(), "declined a plain document:\n{}", text);
                }
            }
        }
    }

    #[test]
    fn the_example_directory_exports_as_serde_yaml_writes_it() {
        let dir = super::super::parse("d", crate::examples::DIRECTORY).unwrap();
        assert_eq!(streamed(&dir), to_yaml(&dir).unwrap());
        assert!(dir
            .users
            .iter()
            .all(|u| fast_user(&mut String::new(), u).is_some()));
    }
}
