//! `mfactl store import FILE` / `mfactl store export`.

use super::Ctx;
use crate::cli::DirectoryFormat;
use crate::error::{CmdResult, Exit, Failure, Kind};
use crate::model::{Group, Timestamp, User};
use crate::policy::{Policy, RoleName};
use crate::printer::out_with;
use crate::sources;
use crate::store::{self, Store};
use crate::util::escape_text;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub fn import(ctx: &Ctx, file: &Path, format: Option<DirectoryFormat>) -> CmdResult {
    let stdin = file.as_os_str() == "-";
    let name = if stdin {
        "<stdin>".to_string()
    } else {
        file.display().to_string()
    };
    let format = format.unwrap_or_else(|| match file.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "ndjson") => DirectoryFormat::Jsonl,
        _ => DirectoryFormat::Yaml,
    });
    let mut progress = ctx.progress("importing users");
    // Role names are checked against the policies in force, as plans will read them.
    let policy = ctx.policy()?;
    let mut roles = RoleCheck::new(&policy);
    // The text of a directory read whole, where role names are located.
    let mut whole: Option<String> = None;
    let refused = |lines: Vec<String>, roles: &RoleCheck, whole: Option<&str>| {
        let mut lines = if lines.is_empty() {
            roles.refusals(&name, whole.unwrap_or(""))
        } else {
            lines
        };
        lines.push("error: nothing was imported".into());
        Failure::many(Kind::Invalid, lines)
    };
    let (g, u, rev) = match format {
        DirectoryFormat::Jsonl => {
            let mut input: Box<dyn std::io::BufRead + Send> = if stdin {
                Box::new(std::io::BufReader::with_capacity(1 << 20, std::io::stdin()))
            } else {
                let f = std::fs::File::open(file)
                    .map_err(|e| Failure::error(format!("{name}: {}", sources::io_reason(&e))))?;
                Box::new(std::io::BufReader::with_capacity(1 << 20, f))
            };
            let mut st = ctx.open_store()?;
            let imported = store::jsonl::import(
                &mut st,
                &name,
                &mut *input,
                &mut |first, users, lines| roles.accept_at(first, users, lines),
                &mut |d, t| progress.update(d, t),
            )?;
            imported.map_err(|lines| refused(lines, &roles, None))?
        }
        DirectoryFormat::Yaml => {
            use std::io::Read;
            let mut input: Box<dyn Read + Send> =
                if stdin {
                    Box::new(std::io::stdin())
                } else {
                    Box::new(std::fs::File::open(file).map_err(|e| {
                        Failure::error(format!("{name}: {}", sources::io_reason(&e)))
                    })?)
                };
            // Up to the manifest limit the file is read whole, in any layout YAML allows; a
            // larger one is read a piece at a time, so that memory stays flat at any size.
            let mut head = Vec::new();
            (&mut input)
                .take(sources::MAX_FILE_BYTES + 1)
                .read_to_end(&mut head)
                .map_err(|e| Failure::error(format!("{name}: {}", sources::io_reason(&e))))?;
            let mut st = ctx.open_store()?;
            if head.len() as u64 <= sources::MAX_FILE_BYTES {
                let text = whole.insert(
                    String::from_utf8(head)
                        .map_err(|_| Failure::error(format!("{name}: not UTF-8")))?,
                );
                import_text_with(&mut st, &name, text, Some(&mut roles), &mut |d, t| {
                    progress.update(d, t)
                })?
            } else {
                let mut rest = std::io::BufReader::with_capacity(
                    1 << 20,
                    std::io::Cursor::new(head).chain(input),
                );
                let imported = store::yaml_stream::import(
                    &mut st,
                    &name,
                    &mut rest,
                    &mut |first, users, lines| roles.accept_at(first, users, lines),
                    &mut |d, t| progress.update(d, t),
                )?;
                imported.map_err(|lines| refused(lines, &roles, None))?
            }
        }
    };
    drop(progress);
    for w in roles.warnings(&name, whole.as_deref().unwrap_or("")) {
        ctx.status(&w);
    }
    ctx.status(&format!(
        "Imported {} and {} from {name}; store revision {rev}.",
        plural(u, "user", "users"),
        plural(g, "group", "groups")
    ));
    Ok(Exit::Ok)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Parses and imports a directory document; shared with `init --demo` and `demo`, whose
/// built-in directory holds only roles of the built-in table.
pub fn import_text(st: &mut Store, name: &str, text: &str) -> Result<(usize, usize, i64), Failure> {
    import_text_with(st, name, text, None, &mut |_, _| {})
}

fn import_text_with(
    st: &mut Store,
    name: &str,
    text: &str,
    mut roles: Option<&mut RoleCheck>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(usize, usize, i64), Failure> {
    // The usual layout is parsed and written in one pass; anything else, and any problem, goes
    // through the whole-document parse, which reports every problem.
    let streamed = store::import_streamed(st, name, text, progress, &mut |first, users| {
        roles.as_mut().is_none_or(|r| r.accept(first, users))
    });
    if let Some(imported) = streamed {
        return Ok(imported?);
    }
    let dir = store::directory_parse(name, text).map_err(|lines| {
        let mut lines = lines;
        lines.push("error: nothing was imported".into());
        Failure::many(Kind::Invalid, lines)
    })?;
    if let Some(r) = roles {
        // Afresh: the streamed pass may have seen some users before it declined.
        r.reset();
        if !r.accept(0, &dir.users) {
            let mut lines = r.refusals(name, text);
            lines.push("error: nothing was imported".into());
            return Err(Failure::many(Kind::Invalid, lines));
        }
    }
    let imported = store::import_with_progress(st, name, &dir, progress)?;
    // The process ends soon: freeing every parsed user one by one would only add to the wall time.
    std::mem::forget(dir);
    Ok(imported)
}

/// How many role names a refusal or the warnings list before counting the rest.
const ROLES_LISTED: usize = 20;

/// The role names an import's users hold, against the role table in force. Roles compare
/// exactly, so a role the table spells in another case (`Global-Administrator`) would silently
/// grant nothing: the import is refused. A role the table never mentions is imported with a
/// warning: it grants no action, and only `targets: any` roles may change its holders.
pub struct RoleCheck<'p> {
    policy: &'p Policy,
    mentioned: BTreeSet<&'p str>,
    /// Each role name the table does not know exactly, with where it was first held.
    found: BTreeMap<String, Held<'p>>,
}

struct Held<'p> {
    /// The first user holding it (its index in the file) and the role's index in its list.
    first: (usize, usize),
    /// That user's line, when the reader knew it (streamed formats).
    line: Option<usize>,
    holders: usize,
    /// The table's spelling, when it differs only in case.
    spelled: Option<&'p str>,
}

impl<'p> RoleCheck<'p> {
    pub fn new(policy: &'p Policy) -> RoleCheck<'p> {
        RoleCheck {
            policy,
            mentioned: policy.mentioned_roles(),
            found: BTreeMap::new(),
        }
    }

    fn reset(&mut self) {
        self.found.clear();
    }

    /// Notes the roles of `users` (the file's users from the `first`th on); false once any role
    /// name differs from the table's only by case.
    pub fn accept(&mut self, first: usize, users: &[User]) -> bool {
        self.accept_at(first, users, &[])
    }

    /// [`RoleCheck::accept`], knowing the line each user starts on (`lines[i]` for `users[i]`).
    pub fn accept_at(&mut self, first: usize, users: &[User], lines: &[usize]) -> bool {
        for (i, u) in users.iter().enumerate() {
            for (j, role) in u.roles.iter().enumerate() {
                if self.mentioned.contains(role.as_str()) || u.roles[..j].contains(role) {
                    continue;
                }
                match self.found.get_mut(role) {
                    Some(held) => held.holders += 1,
                    None => {
                        let spelled = match Policy::role_name(&self.mentioned, role) {
                            RoleName::OtherCase(s) => Some(s),
                            _ => None,
                        };
                        self.found.insert(
                            role.clone(),
                            Held {
                                first: (first + i, j),
                                line: lines.get(i).copied(),
                                holders: 1,
                                spelled,
                            },
                        );
                    }
                }
            }
        }
        self.found.values().all(|h| h.spelled.is_none())
    }

    /// `FILE:LINE:COL: message` for each name spelled in another case than the table's.
    pub fn refusals(&self, file: &str, text: &str) -> Vec<String> {
        let bad = self.in_file_order(true);
        let mut lines = self.located(file, text, &bad, |role, h| {
            format!(
                "role `{}`{} is not in the role table, which spells it `{}` (policies: {}); role \
                 names compare exactly, so it would grant nothing: write it as the table does",
                escape_text(role),
                held_by(h.holders),
                escape_text(h.spelled.unwrap_or_default()),
                escape_text(&self.policy.source.to_string())
            )
        });
        if bad.len() > ROLES_LISTED {
            lines.push(format!(
                "{file}: … and {} more role names spelled in another case than the role table's",
                bad.len() - ROLES_LISTED
            ));
        }
        lines
    }

    /// `warning: FILE:LINE:COL: message` for each name the table never mentions.
    pub fn warnings(&self, file: &str, text: &str) -> Vec<String> {
        let unknown = self.in_file_order(false);
        let mut lines = self.located(file, text, &unknown, |role, h| {
            format!(
                "role `{}`{} is not in the role table (policies: {}): it grants no action, and \
                 only roles with `targets: any` may change its holders; check its spelling, or \
                 add it to roles.yaml",
                escape_text(role),
                held_by(h.holders),
                escape_text(&self.policy.source.to_string())
            )
        });
        if unknown.len() > ROLES_LISTED {
            lines.push(format!(
                "{file}: … and {} more role names the role table does not mention",
                unknown.len() - ROLES_LISTED
            ));
        }
        lines.into_iter().map(|l| format!("warning: {l}")).collect()
    }

    /// The names spelled in another case (or the unmentioned ones), by first holder.
    fn in_file_order(&self, spelled: bool) -> Vec<(&String, &Held<'p>)> {
        let mut roles: Vec<(&String, &Held)> = self
            .found
            .iter()
            .filter(|(_, h)| h.spelled.is_some() == spelled)
            .collect();
        roles.sort_by_key(|(_, h)| h.first);
        roles
    }

    /// The first [`ROLES_LISTED`] of `roles`, each as `FILE:LINE:COL: message` at its first holder.
    fn located(
        &self,
        file: &str,
        text: &str,
        roles: &[(&String, &Held)],
        message: impl Fn(&str, &Held) -> String,
    ) -> Vec<String> {
        let roles = &roles[..roles.len().min(ROLES_LISTED)];
        let wanted: Vec<(usize, usize)> = roles.iter().map(|(_, h)| h.first).collect();
        let at = store::locate_roles(text, &wanted);
        roles
            .iter()
            .zip(at)
            .map(|((role, h), at)| match (h.line, at) {
                (Some(line), _) => format!("{file}:{line}: {}", message(role, h)),
                (None, at) => {
                    let (line, col) = at.unwrap_or((1, 1));
                    format!("{file}:{line}:{col}: {}", message(role, h))
                }
            })
            .collect()
    }
}

fn held_by(n: usize) -> String {
    match n {
        1 => String::new(),
        n => format!(" (held by {n} users)"),
    }
}

pub fn export(ctx: &Ctx, format: DirectoryFormat) -> CmdResult {
    export_text(ctx, format == DirectoryFormat::Yaml)
}

/// The directory as YAML, or (`yaml` false) as JSON Lines: the groups, then the users.
fn export_text(ctx: &Ctx, yaml: bool) -> CmdResult {
    let st = ctx.open_store()?;
    // Streamed a batch at a time, so a million users are never all in memory, nor their text;
    // a second thread turns each batch into text while this one reads the next from SQLite.
    let mut failure: Option<Failure> = None;
    out_with(|w| {
        std::thread::scope(|scope| {
            let (batches, to_format) = std::sync::mpsc::sync_channel::<Vec<User>>(1);
            type Formatted = (Result<String, Stop>, Vec<User>);
            let (texts, formatted) = std::sync::mpsc::sync_channel::<Formatted>(1);
            scope.spawn(move || {
                for users in to_format {
                    let mut text = String::with_capacity(users.len() * 800);
                    let done = if yaml {
                        users.iter().try_for_each(|u| write_user(&mut text, u))
                    } else {
                        users
                            .iter()
                            .for_each(|u| store::jsonl::write_user(&mut text, u));
                        Ok(())
                    };
                    // The users go back to be freed by the thread that allocated them: glibc's
                    // malloc is much slower when threads free each other's small blocks.
                    if texts.send((done.map(|_| text), users)).is_err() {
                        return;
                    }
                }
            });
            let (mut wrote_users, mut in_flight, mut write_failed) = (false, 0usize, false);
            let stopped = |e: Stop, failure: &mut Option<Failure>, write_failed: &mut bool| match e
            {
                Stop::Write => *write_failed = true,
                Stop::Fail(f) => *failure = Some(f),
            };
            // Writes formatted batches until at most `keep` are still being formatted.
            let drain = |keep: usize, in_flight: &mut usize, w: &mut dyn std::fmt::Write| {
                while *in_flight > keep {
                    *in_flight -= 1;
                    match formatted.recv() {
                        Ok((Ok(text), _)) => w.write_str(&text).map_err(Stop::from)?,
                        Ok((Err(e), _)) => return Err(e),
                        Err(_) => {
                            return Err(Stop::Fail(Failure::error("export: the formatter stopped")))
                        }
                    }
                }
                Ok(())
            };
            let read = store::export_with(&st, store::EXPORT_BATCH, &mut |part| {
                let written = match part {
                    store::ExportPart::Groups(groups) if yaml => write_groups(w, &groups),
                    store::ExportPart::Groups(groups) => {
                        let mut text = String::new();
                        groups
                            .iter()
                            .for_each(|g| store::jsonl::write_group(&mut text, g));
                        w.write_str(&text).map_err(Stop::from)
                    }
                    store::ExportPart::Users(users) => {
                        let head = if wrote_users || !yaml {
                            Ok(())
                        } else {
                            w.write_str("users:\n").map_err(Stop::from)
                        };
                        wrote_users = true;
                        in_flight += 1;
                        head.and_then(|_| {
                            batches.send(users).map_err(|_| {
                                Stop::Fail(Failure::error("export: the formatter stopped"))
                            })
                        })
                        .and_then(|_| drain(1, &mut in_flight, w))
                    }
                };
                match written {
                    Ok(()) => true,
                    Err(e) => {
                        stopped(e, &mut failure, &mut write_failed);
                        false
                    }
                }
            });
            drop(batches);
            if let Err(e) = read {
                failure = Some(e.into());
            } else if failure.is_none() && !write_failed {
                if let Err(e) = drain(0, &mut in_flight, w) {
                    stopped(e, &mut failure, &mut write_failed);
                }
            }
            if write_failed {
                return Err(std::fmt::Error); // out_with reports what stdout said
            }
            if failure.is_none() && !wrote_users && yaml {
                w.write_str("users: []\n")?;
            }
            Ok(())
        })
    });
    match failure {
        Some(f) => Err(f),
        None => Ok(Exit::Ok),
    }
}

/// Why writing the export stopped.
enum Stop {
    /// stdout refused the bytes.
    Write,
    Fail(Failure),
}

impl From<std::fmt::Error> for Stop {
    fn from(_: std::fmt::Error) -> Stop {
        Stop::Write
    }
}

/// The directory format's `groups:` section, exactly as `to_yaml` of a `Directory` writes it.
fn write_groups(w: &mut dyn std::fmt::Write, groups: &[Group]) -> Result<(), Stop> {
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
            w.write_str(&to_yaml(&[g]).map_err(Stop::Fail)?)?;
        }
    }
    Ok(())
}

/// One user as an item of the `users:` list, byte for byte what serde_yaml writes for it
/// (the tests below compare the two). serde_yaml is slow (under 20 MB/s here), so users whose
/// strings and times all print as plain scalars are written directly; any other user goes
/// through serde_yaml as a one-item list, which it prints exactly as an item of the whole list.
fn write_user(w: &mut dyn std::fmt::Write, u: &User) -> Result<(), Stop> {
    let mut buf = String::with_capacity(768);
    if fast_user(&mut buf, u).is_none() {
        buf = to_yaml(&[u]).map_err(Stop::Fail)?;
    }
    Ok(w.write_str(&buf)?)
}

/// `None` when some value of `u` needs quoting or escaping (then serde_yaml writes it).
fn fast_user(out: &mut String, u: &User) -> Option<()> {
    // `prefix value\n`, when the value prints plain.
    fn text(out: &mut String, prefix: &str, value: &str) -> Option<()> {
        plain(value).then_some(())?;
        out.push_str(prefix);
        out.push_str(value);
        out.push('\n');
        Some(())
    }
    fn time(out: &mut String, prefix: &str, t: Option<Timestamp>) -> Option<()> {
        out.push_str(prefix);
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
    fn flag(out: &mut String, prefix: &str, b: bool) {
        out.push_str(prefix);
        out.push_str(if b { "true\n" } else { "false\n" });
    }
    fn list(out: &mut String, key: &str, items: &[String]) -> Option<()> {
        out.push_str(key);
        if items.is_empty() {
            out.push_str(" []\n");
            return Some(());
        }
        out.push('\n');
        items.iter().try_for_each(|i| text(out, "  - ", i))
    }
    // `KEY []`, or `KEY` and per object its fields, the first after `  - `.
    fn objects<T>(
        out: &mut String,
        key: &str,
        items: &[T],
        each: impl Fn(&mut String, &T) -> Option<()>,
    ) -> Option<()> {
        out.push_str(key);
        if items.is_empty() {
            out.push_str(" []\n");
            return Some(());
        }
        out.push('\n');
        items.iter().try_for_each(|i| each(out, i))
    }
    text(out, "- id: ", &u.id)?;
    text(out, "  display-name: ", &u.display_name)?;
    flag(out, "  enabled: ", u.enabled);
    list(out, "  roles:", &u.roles)?;
    list(out, "  groups:", &u.groups)?;
    time(out, "  password-set-at: ", u.password_set_at)?;
    flag(out, "  must-change-password: ", u.must_change_password);
    time(
        out,
        "  registration-valid-from: ",
        u.registration_valid_from,
    )?;
    time(out, "  sessions-valid-from: ", u.sessions_valid_from)?;
    time(out, "  devices-valid-from: ", u.devices_valid_from)?;
    objects(out, "  methods:", &u.methods, |out, m| {
        text(out, "  - id: ", &m.id)?;
        text(out, "    kind: ", &m.kind)?;
        time(out, "    registered-at: ", Some(m.registered_at))
    })?;
    objects(out, "  sessions:", &u.sessions, |out, s| {
        text(out, "  - id: ", &s.id)?;
        time(out, "    issued-at: ", Some(s.issued_at))
    })?;
    objects(out, "  trusted-devices:", &u.trusted_devices, |out, d| {
        text(out, "  - id: ", &d.id)?;
        text(out, "    name: ", &d.name)?;
        time(out, "    remembered-at: ", Some(d.remembered_at))
    })?;
    objects(out, "  app-passwords:", &u.app_passwords, |out, a| {
        text(out, "  - id: ", &a.id)?;
        text(out, "    name: ", &a.name)?;
        time(out, "    created-at: ", Some(a.created_at))
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

pub fn to_yaml<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    serde_yaml::to_string(v).map_err(|e| Failure::error(format!("cannot render YAML: {e}")))
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
                let fast = store::plain_yaml::users(&text);
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
        let dir = store::directory_parse("d", crate::commands::demo::DIRECTORY).unwrap();
        assert_eq!(streamed(&dir), to_yaml(&dir).unwrap());
        assert!(dir
            .users
            .iter()
            .all(|u| fast_user(&mut String::new(), u).is_some()));
    }
}
