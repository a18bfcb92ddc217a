//! `store import` / `store export` / `show`: the directory format (docs/store.md). Import replaces
//! each listed user's record as a whole in one transaction; export prints everything but secrets.

use super::load::{load_groups, load_users, normalize, Scope};
use super::{bump_revision, map_err, Result, Store, StoreError};
use crate::model::{key_of, Directory, Group, User};
use rusqlite::params;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Parses and checks a directory file; errors are `FILE:LINE:COL: message` lines.
pub fn parse(file: &str, text: &str) -> std::result::Result<Directory, Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Every serde_yaml parse sits behind the nesting guard (libyaml takes quadratic time on
    // deep nesting); the plain-YAML reader limits its own depth.
    let parsed = match parse_in_pieces(text) {
        Some(dir) => Ok(dir),
        None => {
            if let Err((line, col, msg)) = crate::manifest::guard::check_nesting(text) {
                return Err(vec![format!("{file}:{line}:{col}: {msg}")]);
            }
            serde_yaml::from_str(text)
        }
    };
    let dir: Directory = parsed.map_err(|e| {
        let loc = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        vec![format!(
            "{file}:{}:{}: {}",
            loc.0,
            loc.1,
            crate::util::escape_text(&msg)
        )]
    })?;
    let mut problems = Vec::new();
    check_groups(file, &dir.groups, &mut problems);
    check_users(file, &dir.users, &mut BTreeSet::new(), &mut problems);
    if problems.is_empty() {
        Ok(dir)
    } else {
        Err(problems)
    }
}

/// Groups with an empty name or listed twice, as `FILE: message` lines.
pub(super) fn check_groups(file: &str, groups: &[Group], problems: &mut Vec<String>) {
    let mut seen_groups = BTreeSet::new();
    for g in groups {
        if g.name.trim().is_empty() {
            problems.push(format!("{file}: a group has an empty name"));
        } else if !seen_groups.insert(key_of(&g.name)) {
            problems.push(format!("{file}: group `{}` is listed twice", esc(&g.name)));
        }
    }
}

/// Users with an empty id, listed twice (`seen` holds the keys of the users before), or with two
/// objects of a kind under one id, as `FILE: message` lines.
pub(super) fn check_users(
    file: &str,
    users: &[User],
    seen: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    for u in users {
        if u.id.trim().is_empty() {
            problems.push(format!("{file}: a user has an empty id"));
            continue;
        }
        if !seen.insert(u.key()) {
            problems.push(format!("{file}: user `{}` is listed twice", esc(&u.id)));
        }
        let kinds: [(&str, Vec<&str>); 4] = [
            ("methods", u.methods.iter().map(|m| m.id.as_str()).collect()),
            (
                "sessions",
                u.sessions.iter().map(|m| m.id.as_str()).collect(),
            ),
            (
                "trusted-devices",
                u.trusted_devices.iter().map(|m| m.id.as_str()).collect(),
            ),
            (
                "app-passwords",
                u.app_passwords.iter().map(|m| m.id.as_str()).collect(),
            ),
        ];
        for (kind, ids) in kinds {
            let mut seen = BTreeSet::new();
            for id in ids {
                if !seen.insert(id) {
                    problems.push(format!(
                        "{file}: user `{}` has two {kind} with id `{}`",
                        esc(&u.id),
                        esc(id)
                    ));
                }
            }
        }
    }
}

/// About this many bytes of users per piece.
pub(super) const PIECE_BYTES: usize = 1 << 20;

/// A piece of the users list: by the plain-YAML reader when it lies in its subset, else by
/// serde_yaml (behind the nesting guard); `None` when neither reads it.
pub(super) fn piece_users(text: &str) -> Option<Vec<User>> {
    super::plain_yaml::users(text).or_else(|| {
        crate::manifest::guard::check_nesting(text).ok()?;
        serde_yaml::from_str(text).ok()
    })
}

/// A directory file parsed in pieces, on every core, each piece by the plain-YAML reader when
/// it can (several times faster than serde_yaml, which also holds all of a document's events in
/// memory: over a gigabyte for 100,000 users). Only for the plain layout that export and the
/// usual tools write — the groups, then `users:` on a line of its own as the last top-level key,
/// then a block list of users, with no anchors, aliases, tags or document markers — and only
/// when the head and every piece parse. `None` otherwise, and the whole document is parsed by
/// serde_yaml, so every message stays the same.
fn parse_in_pieces(text: &str) -> Option<Directory> {
    let layout = layout(text)?;
    let mut pieces = Vec::new();
    cut(&layout, &mut |piece| {
        pieces.push(piece);
        true
    })?;
    let groups = layout.groups;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(pieces.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Parsed = Option<Vec<(usize, Vec<User>)>>;
    let parsed: Vec<Parsed> = std::thread::scope(|s| {
        let work = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(piece) = pieces.get(i) else {
                    return Some(done);
                };
                done.push((i, piece_users(piece)?));
            }
        };
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut all = vec![work()];
        all.extend(helpers.into_iter().map(|h| h.join().ok().flatten()));
        all
    });
    let mut parts: Vec<(usize, Vec<User>)> = Vec::with_capacity(pieces.len());
    for p in parsed {
        parts.extend(p?);
    }
    parts.sort_by_key(|(i, _)| *i);
    Some(Directory {
        groups,
        users: parts.into_iter().flat_map(|(_, u)| u).collect(),
    })
}

/// Whether every character is one YAML accepts anywhere, comments included (a text with a NUL
/// in a comment the pieces skip must still be refused, as serde_yaml refuses it).
fn printable(text: &str) -> bool {
    let bad = |c: char| {
        (c.is_control() && c != '\n' && c != '\u{85}')
            || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}')
    };
    if text.is_ascii() {
        return !text.bytes().any(|b| b.is_ascii_control() && b != b'\n');
    }
    !text.chars().any(bad)
}

/// A document in the plain layout: its groups, and its users list, whose items sit at `indent`.
struct Layout<'a> {
    groups: Vec<Group>,
    body: &'a str,
    indent: usize,
}

/// Whether a part of a document may be read in pieces: no anchor, alias or tag (which could
/// reach across pieces), no tab or carriage return, and only characters YAML accepts anywhere.
pub(super) fn piecewise(part: &str) -> bool {
    // One pass over the bytes (`str::contains` with a set of chars goes char by char).
    let odd = |b: &u8| {
        matches!(b, b'&' | b'*' | b'!' | b'\t' | b'\r') || (b.is_ascii_control() && *b != b'\n')
    };
    !part.as_bytes().iter().any(odd) && (part.is_ascii() || printable(part))
}

/// The plain layout of [`parse_in_pieces`] up to the users list, whose pieces [`cut`] then
/// checks and cuts; `None` for any other layout.
fn layout(text: &str) -> Option<Layout<'_>> {
    let at = if text.starts_with("users:\n") {
        0
    } else {
        text.find("\nusers:\n")? + 1
    };
    let (head, body) = text.split_at(at);
    let body = &body["users:\n".len()..];
    let is_comment = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let groups = head_groups(head)?;
    // The list's indent is that of its first item; the comments before it are checked here,
    // the rest with the pieces.
    let first = body.lines().find(|l| !is_comment(l))?;
    let before = body.find(first).unwrap_or(0);
    if !piecewise(&body[..before]) {
        return None;
    }
    let indent = first.len() - first.trim_start_matches(' ').len();
    Some(Layout {
        groups,
        body,
        indent,
    })
}

/// The groups of the part of a plain-layout document before its `users:` line; `None` when that
/// part is not in the plain layout: the root mapping at column 0, nothing in it named `users`,
/// no document marker, and nothing [`piecewise`] refuses.
pub(super) fn head_groups(head: &str) -> Option<Vec<Group>> {
    let is_comment = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    if !piecewise(head)
        || head
            .lines()
            .find(|l| !is_comment(l))
            .is_some_and(|l| l.starts_with(' '))
        || head
            .lines()
            .any(|l| l.starts_with("users") || l.starts_with("---") || l.starts_with("..."))
    {
        return None;
    }
    if head.trim().is_empty() {
        return Some(Vec::new());
    }
    crate::manifest::guard::check_nesting(head).ok()?;
    let head: Directory = serde_yaml::from_str(head).ok()?;
    if !head.users.is_empty() {
        return None;
    }
    Some(head.groups)
}

/// Why a piece of the users list that starts at line `at` of `file` does not read, as
/// `FILE:LINE:COL: message`.
pub(super) fn piece_problem(file: &str, piece: &str, at: usize) -> String {
    if !piecewise(piece) {
        return format!(
            "{file}:{at}: the users from this line on hold an anchor, alias, tag, tab or control \
             character, which a directory file this large may not; use JSON Lines"
        );
    }
    if let Err((line, col, msg)) = crate::manifest::guard::check_nesting(piece) {
        return format!("{file}:{}:{col}: {msg}", at + line - 1);
    }
    match serde_yaml::from_str::<Vec<User>>(piece) {
        Ok(_) => format!("{file}:{at}: these users do not read as a list of users"),
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            format!(
                "{file}:{}:{col}: {}",
                at + line - 1,
                crate::util::escape_text(&msg)
            )
        }
    }
}

/// Cuts the users list into pieces of about [`PIECE_BYTES`] at items and hands each to `each`
/// as it is found (`each` returns false to stop). Every line must be a comment, an item at the
/// list's indent, or deeper; `None` when one is not, or a piece is not [`piecewise`], after the
/// pieces before it were handed on.
fn cut<'a>(layout: &Layout<'a>, each: &mut dyn FnMut(&'a str) -> bool) -> Option<()> {
    let (body, indent) = (layout.body, layout.indent);
    let is_comment = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let mut start: Option<usize> = None;
    let mut offset = 0;
    let mut hand = |piece: &'a str| -> Option<bool> { piecewise(piece).then(|| each(piece)) };
    for line in body.split_inclusive('\n') {
        if !is_comment(line) {
            let this = line.len() - line.trim_start_matches(' ').len();
            if this < indent || (this == indent && !line[indent..].starts_with("- ")) {
                return None;
            }
            if this == indent {
                match start {
                    None => start = Some(offset),
                    Some(s) if offset - s >= PIECE_BYTES => {
                        if !hand(&body[s..offset])? {
                            return Some(());
                        }
                        start = Some(offset);
                    }
                    Some(_) => {}
                }
            }
        }
        offset += line.len();
    }
    if let Some(s) = start {
        hand(&body[s..])?;
    }
    Some(())
}

/// Where `users[i].roles[j]` lies in a directory document, as 1-based `(line, column)`, for each
/// `(i, j)` of `wanted`; or where its deepest ancestor does (a `roles:` given by an alias), or
/// `None`. One pass of yaml-rust2's event parser, which keeps marks: it holds only the path to the
/// current node, and stops once every node is found, so a problem near the top of a large file
/// is located at once. Run only for what a check reports.
pub fn locate_roles(text: &str, wanted: &[(usize, usize)]) -> Vec<Option<(usize, usize)>> {
    use yaml_rust2::parser::{Event, Parser};
    /// One open collection: a mapping (the key whose value is being read, if any) or a
    /// sequence (the index of the item being read).
    enum Frame {
        Map {
            key: Option<String>,
            reading_key: bool,
        },
        Seq(usize),
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut found: Vec<(usize, Option<(usize, usize)>)> = vec![(0, None); wanted.len()];
    let mut frames: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    // The depth of the node that starts (1: the root's values), and whether `path` matches
    // `users[i].roles[j]`'s path that deep.
    let depth_of = |frames: &[Frame], (i, j): (usize, usize)| -> usize {
        let mut depth = 0;
        for (n, f) in frames.iter().enumerate() {
            let ok = match (n, f) {
                (
                    0,
                    Frame::Map {
                        key: Some(k),
                        reading_key: false,
                    },
                ) => k == "users",
                (1, Frame::Seq(at)) => *at == i,
                (
                    2,
                    Frame::Map {
                        key: Some(k),
                        reading_key: false,
                    },
                ) => k == "roles",
                (3, Frame::Seq(at)) => *at == j,
                _ => false,
            };
            if !ok {
                break;
            }
            depth = n + 1;
        }
        depth
    };
    while let Ok((event, mark)) = parser.next_token() {
        let starts = matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
        );
        if starts {
            let is_key = matches!(
                frames.last(),
                Some(Frame::Map {
                    reading_key: true,
                    ..
                })
            );
            if !is_key && frames.len() <= 4 {
                let at = (mark.line().max(1), mark.col() + 1);
                for (w, f) in wanted.iter().zip(found.iter_mut()) {
                    // A node counts when the whole path above it matches.
                    let d = depth_of(&frames, *w);
                    if d == frames.len() && d + 1 > f.0 {
                        *f = (d + 1, Some(at));
                    }
                }
                if found.iter().all(|(d, _)| *d == 5) {
                    break;
                }
            }
        }
        // The node just read ends at a scalar or alias, or at the end of a collection.
        let ended = match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { key, reading_key }) = frames.last_mut() {
                    if *reading_key {
                        *key = Some(value);
                        *reading_key = false;
                        continue;
                    }
                }
                true
            }
            Event::Alias(..) => true,
            Event::MappingStart(..) => {
                frames.push(Frame::Map {
                    key: None,
                    reading_key: true,
                });
                false
            }
            Event::SequenceStart(..) => {
                frames.push(Frame::Seq(0));
                false
            }
            Event::MappingEnd | Event::SequenceEnd => {
                frames.pop();
                true
            }
            Event::DocumentEnd | Event::StreamEnd => break,
            _ => false,
        };
        if ended {
            match frames.last_mut() {
                Some(Frame::Map { key, reading_key }) => {
                    // A value ends: the next node is a key. (A collection as a key leaves `key`
                    // unset, so nothing under it matches.)
                    if !*reading_key {
                        *key = None;
                    }
                    *reading_key = !*reading_key;
                }
                Some(Frame::Seq(at)) => *at += 1,
                None => {}
            }
        }
    }
    found.into_iter().map(|(_, at)| at).collect()
}

fn esc(s: &str) -> String {
    crate::util::escape_text(s).into_owned()
}

/// Upserts the directory in one transaction. Returns (groups, users) written and the new revision.
pub fn import(store: &mut Store, file: &str, dir: &Directory) -> Result<(usize, usize, i64)> {
    import_with_progress(store, file, dir, &mut |_, _| {})
}

/// [`import`], calling `progress(done, total)` now and then as the users are written.
pub fn import_with_progress(
    store: &mut Store,
    file: &str,
    dir: &Directory,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(usize, usize, i64)> {
    let imported = in_import_transaction(store, |tx, path| {
        let mut known = write_groups(tx, path, &dir.groups)?;
        write_users(tx, path, file, &dir.users, &mut known, progress)?;
        progress(dir.users.len(), dir.users.len());
        Ok(Some((dir.groups.len(), dir.users.len())))
    })?;
    Ok(imported.unwrap_or((0, 0, 0)))
}

/// Parses and imports `text` in one pass when it is in the plain layout of [`parse_in_pieces`]:
/// a second thread parses the pieces of the users list, in order, while this one checks and
/// writes the pieces before, so parsing costs little wall time and only a few pieces are held at
/// once. `None`, with nothing written, when the text is in another layout or any piece does not
/// parse or check: the caller then parses the whole document and reports its problems as usual.
/// `accept(first, users)` sees each piece's users (the first being the file's `first`th user)
/// before they are written; it declines the import by returning false.
pub fn import_streamed(
    store: &mut Store,
    file: &str,
    text: &str,
    progress: &mut dyn FnMut(usize, usize),
    accept: &mut dyn FnMut(usize, &[User]) -> bool,
) -> Option<Result<(usize, usize, i64)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let layout = layout(text)?;
    let mut problems = Vec::new();
    check_groups(file, &layout.groups, &mut problems);
    if !problems.is_empty() {
        return None;
    }
    let imported = in_import_transaction(store, |tx, path| {
        let mut known = write_groups(tx, path, &layout.groups)?;
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
                write_users(tx, path, file, &users, &mut known, &mut |_, _| {})?;
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

/// Runs `write` in one `BEGIN IMMEDIATE` transaction with a large page cache, bumping the revision
/// and committing when it returns `Some((groups, users))`; rolling back when it returns `None`.
pub(super) fn in_import_transaction(
    store: &mut Store,
    write: impl FnOnce(&rusqlite::Transaction, &Path) -> Result<Option<(usize, usize)>>,
) -> Result<Option<(usize, usize, i64)>> {
    let path = store.path().to_path_buf();
    // A 64 MiB page cache for the import's transaction: with SQLite's default 2 MB, an import of
    // 100,000 users spills dirty pages to the WAL over and over, which measured 1.7× slower.
    let cache: i64 = store
        .conn()
        .pragma_query_value(None, "cache_size", |r| r.get(0))
        .map_err(|e| map_err(&path, "import", e))?;
    store
        .conn()
        .pragma_update(None, "cache_size", IMPORT_CACHE_KIB)
        .map_err(|e| map_err(&path, "import", e))?;
    // Foreign keys are not checked row by row during the import (a quarter of its writes'
    // time): it writes a user's rows only after the user, and refuses a group the store does
    // not know before writing, so it cannot break one. They are on again afterwards.
    store
        .conn()
        .execute_batch("PRAGMA foreign_keys = OFF")
        .map_err(|e| map_err(&path, "import", e))?;
    let imported = (|| {
        let tx = store.begin()?;
        let Some((groups, users)) = write(&tx, &path)? else {
            return Ok(None); // dropped: rolled back
        };
        tx.execute_batch("DELETE FROM temp.imported")
            .map_err(|e| map_err(&path, "import", e))?;
        let revision = bump_revision(&tx, &path)?;
        super::commit(tx, &path)?;
        Ok(Some((groups, users, revision)))
    })();
    store
        .conn()
        .pragma_update(None, "cache_size", cache)
        .and_then(|_| store.conn().execute_batch("PRAGMA foreign_keys = ON"))
        .map_err(|e| map_err(&path, "import", e))?;
    imported
}

/// The import's page cache, in KiB (negative: SQLite's unit for a size rather than pages).
const IMPORT_CACHE_KIB: i64 = -65_536;

/// Upserts the groups; the keys of every group the store then knows.
pub(super) fn write_groups(
    tx: &rusqlite::Transaction,
    path: &Path,
    groups: &[Group],
) -> Result<BTreeSet<String>> {
    let e = |e| map_err(path, "import", e);
    let mut known: BTreeSet<String> = load_groups(tx, path)?.into_keys().collect();
    let mut up = tx
        .prepare_cached(
            "INSERT INTO groups (key, name, role_assignable) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET name = excluded.name, role_assignable = excluded.role_assignable",
        )
        .map_err(e)?;
    for g in groups {
        up.execute(params![key_of(&g.name), g.name, g.role_assignable])
            .map_err(e)?;
        known.insert(key_of(&g.name));
    }
    Ok(known)
}

/// Rows for one `INSERT`, written [`Rows::PER_STATEMENT`] to a statement: SQLite's cost per
/// statement (binding, stepping, resetting) is most of a small row's, so an import of 100,000
/// users (830,000 rows) writes a fraction of the statements.
struct Rows<'t, 'v> {
    tx: &'t rusqlite::Transaction<'t>,
    path: &'t Path,
    /// `INSERT … VALUES `, and what follows the rows (an upsert clause).
    head: &'static str,
    tail: &'static str,
    columns: usize,
    values: Vec<&'v dyn rusqlite::ToSql>,
    /// The statement for a full batch of rows, once built.
    full: Option<String>,
}

impl<'t, 'v> Rows<'t, 'v> {
    const PER_STATEMENT: usize = 64;

    fn new(
        tx: &'t rusqlite::Transaction<'t>,
        path: &'t Path,
        head: &'static str,
        columns: usize,
        tail: &'static str,
    ) -> Self {
        Rows {
            tx,
            path,
            head,
            tail,
            columns,
            values: Vec::with_capacity(columns * Self::PER_STATEMENT),
            full: None,
        }
    }

    fn sql(&self, rows: usize) -> String {
        let one = format!("({})", vec!["?"; self.columns].join(", "));
        format!("{}{}{}", self.head, vec![one; rows].join(", "), self.tail)
    }

    fn push(&mut self, row: &[&'v dyn rusqlite::ToSql]) -> Result<()> {
        self.values.extend_from_slice(row);
        if self.values.len() == self.columns * Self::PER_STATEMENT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let rows = self.values.len() / self.columns;
        if rows == 0 {
            return Ok(());
        }
        let sql = if rows == Self::PER_STATEMENT {
            let full = self.full.take().unwrap_or_else(|| self.sql(rows));
            self.full.insert(full).clone()
        } else {
            self.sql(rows)
        };
        self.tx
            .prepare_cached(&sql)
            .and_then(|mut st| st.execute(self.values.as_slice()))
            .map_err(|e| map_err(self.path, "import", e))?;
        self.values.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.flush()
    }
}

impl rusqlite::ToSql for crate::model::Timestamp {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.unix().into())
    }
}

/// Replaces each of `users`' records as a whole (a user listed twice by its last record). Every
/// group a user is in must be `known`. `progress(done, total)` is called as the rows are written.
pub(super) fn write_users(
    tx: &rusqlite::Transaction,
    path: &Path,
    file: &str,
    users: &[User],
    known: &mut BTreeSet<String>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let e = |e| map_err(path, "import", e);
    for u in users {
        for g in &u.groups {
            if !known.contains(&key_of(g)) {
                return Err(StoreError::Invalid(format!(
                    "{file}: user `{}` is in group `{}`, which is neither in the file's `groups:` nor in the store; add it to `groups:`",
                    esc(&u.id),
                    esc(g)
                )));
            }
        }
    }
    // Each listed user's old rows go in one statement per table, through a temporary table of
    // their keys, rather than six statements per user (most of an import's statements).
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS imported (key TEXT PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.imported;",
    )
    .map_err(e)?;
    let keys: Vec<String> = users.iter().map(User::key).collect();
    // A user listed twice (only possible past `parse`) is replaced by its last record.
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        last.insert(k, i);
    }
    let latest: Vec<(&str, &User)> = keys
        .iter()
        .zip(users)
        .enumerate()
        .filter(|(i, (k, _))| last.get(k.as_str()) == Some(i))
        .map(|(_, (k, u))| (k.as_str(), u))
        .collect();
    let mut listed = Rows::new(
        tx,
        path,
        "INSERT OR IGNORE INTO temp.imported (key) VALUES ",
        1,
        "",
    );
    let mut user_up = Rows::new(
        tx,
        path,
        "INSERT INTO users (key, id, display_name, enabled, password_set_at, must_change_password,
                            registration_valid_from, sessions_valid_from, devices_valid_from)
         VALUES ",
        9,
        " ON CONFLICT (key) DO UPDATE SET
            id = excluded.id, display_name = excluded.display_name, enabled = excluded.enabled,
            password_hash = CASE WHEN users.password_set_at IS excluded.password_set_at
                                 THEN users.password_hash END,
            password_set_at = excluded.password_set_at,
            must_change_password = excluded.must_change_password,
            registration_valid_from = excluded.registration_valid_from,
            sessions_valid_from = excluded.sessions_valid_from,
            devices_valid_from = excluded.devices_valid_from",
    );
    // Rows in file order, so that a user listed twice ends as its last record, as before.
    for (k, u) in keys.iter().zip(users) {
        listed.push(&[k])?;
        user_up.push(&[
            k,
            &u.id,
            &u.display_name,
            &u.enabled,
            &u.password_set_at,
            &u.must_change_password,
            &u.registration_valid_from,
            &u.sessions_valid_from,
            &u.devices_valid_from,
        ])?;
    }
    listed.finish()?;
    user_up.finish()?;
    for t in [
        "user_roles",
        "memberships",
        "methods",
        "sessions",
        "trusted_devices",
        "app_passwords",
    ] {
        tx.execute(
            &format!("DELETE FROM {t} WHERE user_key IN (SELECT key FROM temp.imported)"),
            [],
        )
        .map_err(e)?;
    }
    let mut role = Rows::new(
        tx,
        path,
        "INSERT OR IGNORE INTO user_roles (user_key, role) VALUES ",
        2,
        "",
    );
    let mut member = Rows::new(
        tx,
        path,
        "INSERT OR IGNORE INTO memberships (user_key, group_key) VALUES ",
        2,
        "",
    );
    let mut method = Rows::new(
        tx,
        path,
        "INSERT INTO methods (user_key, id, kind, registered_at) VALUES ",
        4,
        "",
    );
    let mut session = Rows::new(
        tx,
        path,
        "INSERT INTO sessions (user_key, id, issued_at) VALUES ",
        3,
        "",
    );
    let mut device = Rows::new(
        tx,
        path,
        "INSERT INTO trusted_devices (user_key, id, name, remembered_at) VALUES ",
        4,
        "",
    );
    let mut app = Rows::new(
        tx,
        path,
        "INSERT INTO app_passwords (user_key, id, name, created_at) VALUES ",
        4,
        "",
    );
    let group_keys: Vec<Vec<String>> = latest
        .iter()
        .map(|(_, u)| u.groups.iter().map(|g| key_of(g)).collect())
        .collect();
    for (i, ((k, u), groups)) in latest.iter().zip(&group_keys).enumerate() {
        if i % 1024 == 0 {
            progress(i, latest.len());
        }
        for r in &u.roles {
            role.push(&[k, r])?;
        }
        for g in groups {
            member.push(&[k, g])?;
        }
        for m in &u.methods {
            method.push(&[k, &m.id, &m.kind, &m.registered_at])?;
        }
        for s in &u.sessions {
            session.push(&[k, &s.id, &s.issued_at])?;
        }
        for d in &u.trusted_devices {
            device.push(&[k, &d.id, &d.name, &d.remembered_at])?;
        }
        for a in &u.app_passwords {
            app.push(&[k, &a.id, &a.name, &a.created_at])?;
        }
    }
    for rows in [role, member, method, session, device, app] {
        rows.finish()?;
    }
    Ok(())
}

/// The whole directory, sorted, without secrets.
pub fn export(store: &Store) -> Result<Directory> {
    let mut dir = Directory::default();
    export_with(store, EXPORT_BATCH, &mut |part| {
        match part {
            ExportPart::Groups(g) => dir.groups = g,
            ExportPart::Users(u) => dir.users.extend(u),
        }
        true
    })?;
    Ok(dir)
}

/// Users per batch of [`export_with`]: large enough that each query's fixed cost vanishes,
/// small enough that a batch takes a few megabytes.
pub const EXPORT_BATCH: usize = 5_000;

/// One piece of the directory, in the order of the export format.
pub enum ExportPart {
    /// Every group, sorted by key; always first, exactly once.
    Groups(Vec<crate::model::Group>),
    /// The next users by key (never empty).
    Users(Vec<User>),
}

/// The whole directory, sorted, without secrets, handed to `each` a batch of users at a time
/// (all read in one snapshot), so that exporting a million users never holds them all. `each`
/// returns false to stop early.
pub fn export_with(
    store: &Store,
    batch: usize,
    each: &mut dyn FnMut(ExportPart) -> bool,
) -> Result<()> {
    let (conn, path) = (store.conn(), store.path());
    super::read_snapshot(conn, path, || {
        let groups: BTreeMap<_, _> = load_groups(conn, path)?;
        if !each(ExportPart::Groups(groups.into_values().collect())) {
            return Ok(());
        }
        user_batches(conn, path, batch, &mut |users| {
            each(ExportPart::Users(users.into_values().collect()))
        })
    })
}

/// Every user, in key order, handed to `each` `batch` users at a time (the last batch may be
/// smaller; never an empty one), all read in one snapshot. `each` returns false to stop early.
pub fn user_batches(
    conn: &rusqlite::Connection,
    path: &Path,
    batch: usize,
    each: &mut dyn FnMut(BTreeMap<String, User>) -> bool,
) -> Result<()> {
    let e = |e| map_err(path, "read users", e);
    super::read_snapshot(conn, path, || {
        let mut first_keys = conn
            .prepare_cached("SELECT key FROM users ORDER BY key LIMIT ?1")
            .map_err(e)?;
        let mut next_keys = conn
            .prepare_cached("SELECT key FROM users WHERE key > ?1 ORDER BY key LIMIT ?2")
            .map_err(e)?;
        let mut last: Option<String> = None;
        loop {
            let key = |r: &rusqlite::Row| {
                r.get::<_, String>(0).map_err(|e| {
                    super::damage::name_row(e, r, &|r| {
                        format!("users, user {}", super::damage::cell(r, 0))
                    })
                })
            };
            let keys: Vec<String> = match &last {
                None => first_keys
                    .query_map([batch as i64], key)
                    .and_then(|rows| rows.collect()),
                Some(k) => next_keys
                    .query_map(params![k, batch as i64], key)
                    .and_then(|rows| rows.collect()),
            }
            .map_err(e)?;
            let (Some(first), Some(end)) = (keys.first(), keys.last()) else {
                return Ok(());
            };
            let users = load_users(conn, path, Scope::Range { first, last: end })?;
            if !each(users) || keys.len() < batch {
                return Ok(());
            }
            last = Some(end.to_string());
        }
    })
}

/// One user's state, or `None` when the store has no such user.
pub fn show(store: &Store, id: &str) -> Result<Option<User>> {
    let keys = [key_of(id)];
    let mut users = load_users(
        store.conn(),
        store.path(),
        Scope::Keys {
            users: &keys,
            groups: &[],
        },
    )?;
    Ok(users.remove(&keys[0]).map(|mut u| {
        normalize(&mut u);
        u
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of `n` users in the export layout (or flow style), with a head of groups.
    fn big(n: usize, flow: bool, head: &str) -> String {
        let mut t = String::from(head);
        for i in 0..n {
            if flow {
                t.push_str(&format!(
                    "  - {{id: u{i}@x, display-name: User {i}, groups: [g],\n      sessions: [{{id: s-{i}, issued-at: 2026-01-02T00:00:00Z}}]}}\n"
                ));
            } else {
                t.push_str(&format!(
                    "- id: u{i}@x\n  display-name: 'User: {i}'\n  # a comment\n  groups:\n  - g\n  sessions:\n  - id: s-{i}\n    issued-at: 2026-01-02T00:00:00Z\n\n"
                ));
            }
        }
        t
    }

    #[test]
    fn roles_are_located_by_user_and_index() {
        let text = "groups: []\nusers:\n  - id: a\n    roles: [x, y]\n  - id: b\n    roles:\n      - z\n  \
                    - {id: c, roles: &r [w]}\n  - {id: d, roles: *r}\n";
        assert_eq!(
            locate_roles(text, &[(0, 1), (1, 0), (2, 0), (3, 0), (9, 0)]),
            [
                Some((4, 16)),
                Some((7, 9)),
                Some((8, 24)),
                // Given by an alias: where the alias is.
                Some((9, 20)),
                // No such user: nothing deeper than the users list.
                Some((3, 3)),
            ]
        );
    }

    #[test]
    fn large_files_parse_in_pieces_exactly_as_whole() {
        for (flow, head) in [
            (false, "groups:\n- name: g\nusers:\n"),
            (
                true,
                "# head\ngroups: [{name: g, role-assignable: true}]\nusers:\n# first\n",
            ),
            (true, "users:\n"),
        ] {
            let text = big(40_000, flow, head);
            assert!(text.len() > 2 * PIECE_BYTES, "several pieces");
            let pieces = parse_in_pieces(&text).expect("the plain layout parses in pieces");
            let whole: Directory = serde_yaml::from_str(&text).expect("valid");
            assert_eq!(pieces, whole);
        }
    }

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
                // is broken, and enforcement is back on.
                let broken: i64 = st
                    .conn()
                    .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                        r.get(0)
                    })
                    .unwrap();
                assert_eq!(broken, 0);
                let on: i64 = st
                    .conn()
                    .pragma_query_value(None, "foreign_keys", |r| r.get(0))
                    .unwrap();
                assert_eq!(on, 1);
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
        import(&mut st, "f", &parse("f", text).unwrap()).unwrap();
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
            let text = big(20_000, flow, head);
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
        let ok = big(20_000, true, "groups: [{name: g}]\nusers:\n");
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
        let ok = big(40_000, false, "groups:\n- name: g\nusers:\n");
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
