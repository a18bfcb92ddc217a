//! Importing a directory file into the store (`store import`, `init --demo`, the demo): the
//! format's reader, the role-name check against the policies in force, and the store's write,
//! all in one transaction. Files up to the manifest size limit are read whole, in any layout YAML
//! allows (the plain layout is parsed on a second thread while this one writes); larger YAML
//! files (`yaml_stream`) and JSON Lines (`jsonl`) are read as streams, so memory stays flat
//! at any size.

mod jsonl;
mod yaml_stream;

use super::Settings;
use crate::directory::{self, check_groups, check_users, cut, layout, piece_users};
use crate::error::{Failure, Kind};
use crate::model::{key_of, User};
use crate::policy::{Policy, RoleName};
use crate::sources;
use crate::store::{self, Store};
use crate::util::escape_text;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The two forms of the directory format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Jsonl,
}

/// What an import wrote.
#[derive(Debug)]
pub struct Imported {
    /// The file's name as messages give it (`<stdin>` for `-`).
    pub name: String,
    pub groups: usize,
    pub users: usize,
    pub revision: i64,
    /// `warning: FILE:LINE:COL: …` for each role name the role table never mentions.
    pub warnings: Vec<String>,
}

/// Shown each batch of users a streamed import reads, before it is written: the first one's
/// index in the file, the users, and the line each starts on (empty when unknown). Returns false
/// to refuse the import.
pub type AcceptUsers<'a> = dyn FnMut(usize, &[User], &[usize]) -> bool + 'a;

/// Imports FILE (`-` for stdin) in `format`, all or nothing; `progress(done, total)` now and then.
pub fn import(
    settings: &Settings,
    policy: &Policy,
    file: &Path,
    format: Format,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Imported, Failure> {
    let stdin = file.as_os_str() == "-";
    let name = if stdin {
        "<stdin>".to_string()
    } else {
        file.display().to_string()
    };
    // Role names are checked against the policies in force, as plans will read them.
    let mut roles = RoleCheck::new(policy);
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
        Format::Jsonl => {
            let mut input: Box<dyn std::io::BufRead + Send> = if stdin {
                Box::new(std::io::BufReader::with_capacity(1 << 20, std::io::stdin()))
            } else {
                let f = sources::open(file).map_err(Failure::error)?;
                Box::new(std::io::BufReader::with_capacity(1 << 20, f))
            };
            let mut st = settings.open_store()?;
            let imported = jsonl::import(
                &mut st,
                &name,
                &mut *input,
                &mut |first, users, lines| roles.accept_at(first, users, lines),
                &mut *progress,
            )?;
            imported.map_err(|lines| refused(lines, &roles, None))?
        }
        Format::Yaml => {
            use std::io::Read;
            let mut input: Box<dyn Read + Send> = if stdin {
                Box::new(std::io::stdin())
            } else {
                Box::new(sources::open(file).map_err(Failure::error)?)
            };
            // Up to the manifest limit the file is read whole, in any layout YAML allows; a
            // larger one is read a piece at a time, so that memory stays flat at any size.
            let mut head = Vec::new();
            (&mut input)
                .take(sources::MAX_FILE_BYTES + 1)
                .read_to_end(&mut head)
                .map_err(|e| Failure::error(format!("{name}: {}", sources::io_reason(&e))))?;
            let mut st = settings.open_store()?;
            if head.len() as u64 <= sources::MAX_FILE_BYTES {
                let text = whole.insert(
                    String::from_utf8(head)
                        .map_err(|_| Failure::error(format!("{name}: not UTF-8")))?,
                );
                import_text_with(&mut st, &name, text, Some(&mut roles), progress)?
            } else {
                let mut rest = std::io::BufReader::with_capacity(
                    1 << 20,
                    std::io::Cursor::new(head).chain(input),
                );
                let imported = yaml_stream::import(
                    &mut st,
                    &name,
                    &mut rest,
                    &mut |first, users, lines| roles.accept_at(first, users, lines),
                    &mut *progress,
                )?;
                imported.map_err(|lines| refused(lines, &roles, None))?
            }
        }
    };
    let warnings = roles.warnings(&name, whole.as_deref().unwrap_or(""));
    Ok(Imported {
        name,
        groups: g,
        users: u,
        revision: rev,
        warnings,
    })
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
    let streamed = import_streamed(st, name, text, progress, &mut |first, users| {
        roles.as_mut().is_none_or(|r| r.accept(first, users))
    });
    if let Some(imported) = streamed {
        return Ok(imported?);
    }
    let dir = directory::parse(name, text).map_err(|lines| {
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
        let at = directory::locate_roles(text, &wanted);
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

/// Parses and imports `text` in one pass when it is in the plain layout of [`parse_in_pieces`]:
/// a second thread parses the pieces of the users list, in order, while this one checks and
/// writes the pieces before, so parsing costs little wall time and only a few pieces are held at
/// once. `None`, with nothing written, when the text is in another layout or any piece does not
/// parse or check: the caller then parses the whole document and reports its problems as usual.
/// `accept(first, users)` sees each piece's users (the first being the file's `first`th user)
/// before they are written; it declines the import by returning false.
fn import_streamed(
    store: &mut Store,
    file: &str,
    text: &str,
    progress: &mut dyn FnMut(usize, usize),
    accept: &mut dyn FnMut(usize, &[User]) -> bool,
) -> Option<store::Result<(usize, usize, i64)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let layout = layout(text)?;
    let mut problems = Vec::new();
    check_groups(file, &layout.groups, &mut problems);
    if !problems.is_empty() {
        return None;
    }
    let imported = store::in_import_transaction(store, |tx| {
        let mut known = store::write_groups(tx, &layout.groups)?;
        let mut seen = BTreeSet::new();
        let (mut done, mut bytes) = (0, 0);
        std::thread::scope(|scope| {
            // (users, the piece's length), or `None`: a piece this path does not read.
            type Parsed = Option<(Vec<User>, usize)>;
            let (parsed_out, parsed) = std::sync::mpsc::sync_channel::<Parsed>(2);
            // Written pieces come back to be freed where they were allocated: freed on the
            // writer, they cost it a tenth of its time in glibc's cross-thread frees.
            let (written_out, written) = std::sync::mpsc::channel::<Vec<User>>();
            let layout = &layout;
            scope.spawn(move || {
                let cut_whole = cut(layout, &mut |piece| {
                    while let Ok(done) = written.try_recv() {
                        drop(done);
                    }
                    let users = piece_users(piece).map(|u| (u, piece.len()));
                    let read = users.is_some();
                    parsed_out.send(users).is_ok() && read
                });
                if cut_whole.is_none() {
                    let _ = parsed_out.send(None);
                }
                drop(parsed_out);
                for done in written {
                    drop(done);
                }
            });
            for piece in parsed {
                let Some((users, len)) = piece else {
                    return Ok(None);
                };
                check_users(file, &users, &mut seen, &mut problems);
                let unknown_group = users
                    .iter()
                    .flat_map(|u| &u.groups)
                    .any(|g| !known.contains(&key_of(g)));
                // The whole-document path reports these, in its order.
                if !problems.is_empty() || unknown_group || !accept(done, &users) {
                    return Ok(None);
                }
                store::write_users(tx, file, &users, &mut known, &mut |_, _| {})?;
                done += users.len();
                bytes += len;
                let _ = written_out.send(users);
                // The total is estimated from the bytes read so far.
                let total = (done as f64 * layout.body.len() as f64 / bytes.max(1) as f64) as usize;
                progress(done, total.max(done));
            }
            Ok(Some((layout.groups.len(), done)))
        })
    });
    match imported {
        Ok(None) => None,
        other => Some(other.map(|i| i.unwrap_or((0, 0, 0)))),
    }
}

/// Reads one line of a directory file into `buf` for the streamed imports, refusing one longer
/// than `max` bytes or not UTF-8; the bytes read, 0 at the end.
pub fn read_line(
    input: &mut (dyn std::io::BufRead + Send),
    buf: &mut String,
    max: u64,
) -> std::result::Result<usize, String> {
    use std::io::BufRead;
    let mut bytes = Vec::new();
    let reader: &mut (dyn BufRead + Send) = &mut *input;
    let n = std::io::Read::take(reader, max + 1)
        .read_until(b'\n', &mut bytes)
        .map_err(|e| crate::sources::io_reason(&e))?;
    if bytes.len() as u64 > max {
        return Err(format!("a line longer than {max} bytes"));
    }
    let s = String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 (invalid byte at column {})",
            e.utf8_error().valid_up_to() + 1
        )
    })?;
    buf.push_str(&s);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::parse_in_pieces;
    use crate::model::Directory;
    use crate::store::{export, import};

    /// The store after importing `text` the streamed way, or `None` when that declined (and then
    /// the store must be untouched).
    fn streamed(text: &str) -> Option<Directory> {
        let tmp = tempfile::tempdir().unwrap();
        let (mut st, _) = Store::init(&tmp.path().join("s.db"), std::time::Duration::ZERO).unwrap();
        let before = export(&st).unwrap();
        match import_streamed(&mut st, "f", text, &mut |_, _| {}, &mut |_, _| true) {
            Some(imported) => {
                imported.unwrap();
                // Written with foreign keys off (the import keeps them by construction): none
                // is broken (that enforcement is back on is the SQLite store's own test).
                let broken: i64 = rusqlite::Connection::open(tmp.path().join("s.db"))
                    .unwrap()
                    .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                        r.get(0)
                    })
                    .unwrap();
                assert_eq!(broken, 0);
                Some(export(&st).unwrap())
            }
            None => {
                assert_eq!(export(&st).unwrap(), before, "a declined import wrote");
                None
            }
        }
    }

    /// The store after the whole-document parse and import.
    fn whole(text: &str) -> Directory {
        let tmp = tempfile::tempdir().unwrap();
        let (mut st, _) = Store::init(&tmp.path().join("s.db"), std::time::Duration::ZERO).unwrap();
        import(&mut st, "f", &directory::parse("f", text).unwrap()).unwrap();
        export(&st).unwrap()
    }

    #[test]
    fn a_streamed_import_writes_what_the_whole_import_writes() {
        for (flow, head) in [
            (false, "groups:\n- name: g\nusers:\n"),
            (
                true,
                "# head\ngroups: [{name: g, role-assignable: true}]\nusers:\n",
            ),
        ] {
            let text = directory::sample(20_000, flow, head);
            let mut pieces = 0;
            let cut_whole = layout(&text).and_then(|l| {
                cut(&l, &mut |_| {
                    pieces += 1;
                    true
                })
            });
            assert!(cut_whole.is_some() && pieces > 1, "several pieces");
            assert_eq!(streamed(&text), Some(whole(&text)));
        }
        // Problems in a late piece decline the whole import, with nothing written: the
        // whole-document parse then reports them.
        let ok = directory::sample(20_000, true, "groups: [{name: g}]\nusers:\n");
        for bad in [
            format!("{ok}  - {{id: u5@x}}\n"),                   // listed twice
            format!("{ok}  - {{id: late@x, groups: [nope]}}\n"), // an unknown group
            format!("{ok}  - {{id: late@x, colour: red}}\n"),    // an unknown field
            format!("{ok}  - {{id: late@x, sessions: [{{id: s, issued-at: 2026-01-01T00:00:00Z}}, {{id: s, issued-at: 2026-01-01T00:00:00Z}}]}}\n"),
        ] {
            assert_eq!(streamed(&bad), None, "{}", &bad[bad.len() - 60..]);
        }
    }

    #[test]
    fn other_layouts_and_errors_are_parsed_whole() {
        let ok = directory::sample(40_000, false, "groups:\n- name: g\nusers:\n");
        for text in [
            format!("{ok}groups: []\n"),           // a key after users
            format!("{ok}- id: bad\n  nope: 1\n"), // an unknown field
            format!("{ok}---\n"),                  // a second document
            format!("  groups: []\n{}", &ok["groups:\n- name: g\n".len()..]), // indented root
            ok.replacen("- id: u5@x", "- &a\n  id: u5@x", 1), // an anchor
            format!("users: []\n{ok}"),            // users twice
        ] {
            assert!(
                parse_in_pieces(&text).is_none(),
                "{}",
                &text[..80.min(text.len())]
            );
        }
        // Lines that look like items inside quoted strings: a piece cut there fails to parse,
        // so the whole document is parsed; wherever no cut falls, the pieces agree with it.
        let tricky = ok.replace("User: 1", "User:\n- 1");
        match (
            parse_in_pieces(&tricky),
            serde_yaml::from_str::<Directory>(&tricky),
        ) {
            (Some(pieces), Ok(whole)) => assert_eq!(pieces, whole),
            (Some(_), Err(e)) => panic!("pieces parsed what the whole document rejects: {e}"),
            (None, _) => {}
        }
    }
}
