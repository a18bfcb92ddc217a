//! The directory format (docs/store.md): what `store import` reads and `store export` writes,
//! as YAML ([`yaml`] writes it, [`plain_yaml`] reads its plain layout fast, serde_yaml reads
//! everything else) or as JSON Lines ([`jsonl`]). Parsing, the checks of groups and users,
//! and cutting a large file into pieces that parse on their own. Pure: no store, no files.

pub mod fields;
pub mod jsonl;
pub mod plain_yaml;
pub mod yaml;

use crate::model::{key_of, Directory, Group, User};
use std::collections::BTreeSet;

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
pub fn check_groups(file: &str, groups: &[Group], problems: &mut Vec<String>) {
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
pub fn check_users(
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
pub const PIECE_BYTES: usize = 1 << 20;

/// A piece of the users list: by the plain-YAML reader when it lies in its subset, else by
/// serde_yaml (behind the nesting guard); `None` when neither reads it.
pub fn piece_users(text: &str) -> Option<Vec<User>> {
    plain_yaml::users(text).or_else(|| {
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
pub fn parse_in_pieces(text: &str) -> Option<Directory> {
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
pub struct Layout<'a> {
    pub groups: Vec<Group>,
    pub body: &'a str,
    pub indent: usize,
}

/// Whether a part of a document may be read in pieces: no anchor, alias or tag (which could
/// reach across pieces), no tab or carriage return, and only characters YAML accepts anywhere.
pub fn piecewise(part: &str) -> bool {
    // One pass over the bytes (`str::contains` with a set of chars goes char by char).
    let odd = |b: &u8| {
        matches!(b, b'&' | b'*' | b'!' | b'\t' | b'\r') || (b.is_ascii_control() && *b != b'\n')
    };
    !part.as_bytes().iter().any(odd) && (part.is_ascii() || printable(part))
}

/// The plain layout of [`parse_in_pieces`] up to the users list, whose pieces [`cut`] then
/// checks and cuts; `None` for any other layout.
pub fn layout(text: &str) -> Option<Layout<'_>> {
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
pub fn head_groups(head: &str) -> Option<Vec<Group>> {
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
pub fn piece_problem(file: &str, piece: &str, at: usize) -> String {
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
pub fn cut<'a>(layout: &Layout<'a>, each: &mut dyn FnMut(&'a str) -> bool) -> Option<()> {
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

#[cfg(test)]
/// For tests: a directory of `n` users in the export layout (or flow style), with a head of groups.
pub fn sample(n: usize, flow: bool, head: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let text = sample(40_000, flow, head);
            assert!(text.len() > 2 * PIECE_BYTES, "several pieces");
            let pieces = parse_in_pieces(&text).expect("the plain layout parses in pieces");
            let whole: Directory = serde_yaml::from_str(&text).expect("valid");
            assert_eq!(pieces, whole);
        }
    }
}
