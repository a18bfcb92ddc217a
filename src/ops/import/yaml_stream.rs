//! A directory file too large to hold in memory, imported as it is read: the plain layout that
//! export writes (groups first, then `users:` on a line of its own, then a block list of users)
//! is cut at list items into pieces of about a megabyte, each parsed and written in turn within
//! one transaction, so memory stays flat however large the file. Files up to the manifest size
//! are read whole instead (see [`super`]), where any layout YAML allows is accepted.

use crate::directory::{
    check_groups, check_users, head_groups, piece_problem, piece_users, piecewise, PIECE_BYTES,
};
use crate::model::{key_of, User};
use crate::store::{in_import_transaction, write_groups, write_users, Result, Store};
use std::collections::BTreeSet;
use std::io::BufRead;

/// How many problems an import reports before it stops.
const MAX_PROBLEMS: usize = 20;

/// A parsed piece: its users and the line each starts on, or the problem that stopped the
/// reading.
enum Piece {
    Users(Vec<User>, Vec<usize>),
    Problem(String),
}

/// Imports the directory `input` holds. `Ok(Err(lines))`, with nothing written, when it is not in
/// the plain layout or an entry is bad. Each piece's users are first shown to `accept` (the
/// first one's index in the file, the users, their lines); when it refuses one, nothing is
/// written and the lines are empty: the caller says why.
pub fn import(
    store: &mut Store,
    file: &str,
    input: &mut (dyn BufRead + Send),
    accept: &mut super::AcceptUsers,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<std::result::Result<(usize, usize, i64), Vec<String>>> {
    let mut refused = false;
    let not_plain = |why: &str| {
        vec![format!(
            "{file}: {why}; a directory file larger than {} bytes is read a piece at a time, \
             which needs the layout `store export` writes (groups, then `users:` and a block list \
             of users, without anchors, aliases or tags); for other bulk files use JSON Lines",
            crate::sources::MAX_FILE_BYTES
        )]
    };
    // The head: everything before the `users:` line.
    let mut head = String::new();
    let mut line_no = 0usize;
    loop {
        let mut line = String::new();
        match read_line(input, &mut line) {
            Err(m) => return Ok(Err(vec![format!("{file}:{}: {m}", line_no + 1)])),
            Ok(0) => return Ok(Err(not_plain("no `users:` line"))),
            Ok(_) => {}
        }
        line_no += 1;
        if line_no == 1 {
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_string();
            }
        }
        if line == "users:\n" {
            break;
        }
        head.push_str(&line);
        if head.len() as u64 > crate::sources::MAX_FILE_BYTES {
            return Ok(Err(not_plain("no `users:` line in its first part")));
        }
    }
    let Some(groups) = head_groups(&head) else {
        return Ok(Err(not_plain(
            "the part before `users:` is not in that layout",
        )));
    };
    let mut problems = Vec::new();
    check_groups(file, &groups, &mut problems);
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let body_starts = line_no + 1;
    let imported = in_import_transaction(store, |tx| {
        let mut known = write_groups(tx, &groups)?;
        let mut seen = BTreeSet::new();
        let (mut done, mut seen_users) = (0, 0);
        std::thread::scope(|scope| {
            let (out, parsed) = std::sync::mpsc::sync_channel::<Piece>(2);
            scope.spawn(move || cut_and_parse(file, input, body_starts, &out));
            for piece in parsed {
                let (users, lines) = match piece {
                    Piece::Problem(p) => {
                        problems.push(p);
                        break;
                    }
                    Piece::Users(users, lines) => (users, lines),
                };
                // Each user's line, when the items counted match the users read.
                let lines = if lines.len() == users.len() {
                    lines
                } else {
                    Vec::new()
                };
                refused |= !accept(seen_users, &users, &lines);
                seen_users += users.len();
                check_users(file, &users, &mut seen, &mut problems);
                for u in &users {
                    for g in &u.groups {
                        if !known.contains(&key_of(g)) {
                            problems.push(format!(
                                "{file}: user `{}` is in group `{}`, which is neither in the \
                                 file's `groups:` nor in the store; add it to `groups:`",
                                crate::util::escape_text(&u.id),
                                crate::util::escape_text(g)
                            ));
                        }
                    }
                }
                if !problems.is_empty() || refused {
                    if problems.len() >= MAX_PROBLEMS {
                        break;
                    }
                    continue;
                }
                write_users(tx, file, &users, &mut known, &mut |_, _| {})?;
                done += users.len();
                progress(done, done);
            }
            Ok((problems.is_empty() && !refused).then_some((groups.len(), done)))
        })
    })?;
    match imported {
        Some(n) => Ok(Ok(n)),
        None => {
            problems.truncate(MAX_PROBLEMS);
            Ok(Err(problems))
        }
    }
}

/// The reading thread: cuts the users list into pieces at its items and parses each, sending
/// them on in order; stops at the first problem.
fn cut_and_parse(
    file: &str,
    input: &mut (dyn BufRead + Send),
    first_line: usize,
    out: &std::sync::mpsc::SyncSender<Piece>,
) {
    let is_comment = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let mut indent: Option<usize> = None;
    let mut piece = String::new();
    let mut piece_line = first_line;
    let mut line_no = first_line - 1;
    let mut items: Vec<usize> = Vec::new();
    let send = |piece: &str, at: usize, items: Vec<usize>| -> bool {
        let parsed = if piecewise(piece) {
            piece_users(piece).map(|u| Piece::Users(u, items))
        } else {
            None
        };
        let parsed = parsed.unwrap_or_else(|| Piece::Problem(piece_problem(file, piece, at)));
        let stop = matches!(parsed, Piece::Problem(_));
        out.send(parsed).is_ok() && !stop
    };
    loop {
        let mut line = String::new();
        match read_line(input, &mut line) {
            Err(m) => {
                let _ = out.send(Piece::Problem(format!("{file}:{}: {m}", line_no + 1)));
                return;
            }
            Ok(0) => break,
            Ok(_) => line_no += 1,
        }
        if !is_comment(&line) {
            let this = line.len() - line.trim_start_matches(' ').len();
            let at = *indent.get_or_insert(this);
            if this < at || (this == at && !line[at..].starts_with("- ")) {
                let _ = out.send(Piece::Problem(format!(
                    "{file}:{line_no}:{}: expected an item of the users list (`- id: …`) or a \
                     field of one; a directory file this large must be in the layout `store \
                     export` writes",
                    this + 1
                )));
                return;
            }
            if this == at && piece.len() >= PIECE_BYTES {
                if !send(&piece, piece_line, std::mem::take(&mut items)) {
                    return;
                }
                piece.clear();
                piece_line = line_no;
            }
            if this == at {
                items.push(line_no);
            }
        }
        if piece.is_empty() {
            piece_line = line_no;
        }
        piece.push_str(&line);
    }
    if !piece.trim().is_empty() {
        send(&piece, piece_line, items);
    }
}

/// The longest line read.
const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// A line with its newline (one is added at the end of a file that lacks it).
fn read_line(
    input: &mut (dyn BufRead + Send),
    buf: &mut String,
) -> std::result::Result<usize, String> {
    let n = super::read_line(input, buf, MAX_LINE_BYTES)?;
    if n > 0 && !buf.ends_with('\n') {
        buf.push('\n');
    }
    Ok(n)
}
