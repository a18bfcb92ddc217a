//! Importing a JSON Lines directory file as a stream: a second thread parses the lines while
//! this one checks and writes a batch of users at a time, in one transaction, so neither the
//! file nor the directory is ever held whole.

use crate::directory::jsonl::{parse_line, Line};
use crate::directory::{check_groups, check_users};
use crate::model::{key_of, Group, User};
use crate::store::{in_import_transaction, write_groups, write_users, Result, Store};
use std::collections::BTreeSet;
use std::io::BufRead;

/// Users per batch written: a few megabytes.
const BATCH: usize = 2_000;

/// How many problems an import reports before it stops reading.
const MAX_PROBLEMS: usize = 20;

/// What a parsed batch carries: users with their line numbers, or the problems found.
enum Parsed {
    Groups(Vec<(usize, Group)>),
    Users(Vec<(usize, User)>),
    Problems(Vec<String>),
}

/// Imports the lines of `input` in one transaction. `Ok(Err(lines))`, with nothing written,
/// when a line or entry is bad: each as `FILE:LINE[:COL]: message`. Each batch of users is first
/// shown to `accept` (its first user's index in the file, the users, their lines); when it
/// refuses one, nothing is written and the lines are empty: the caller says why.
pub fn import(
    store: &mut Store,
    file: &str,
    input: &mut (dyn BufRead + Send),
    accept: &mut super::AcceptUsers,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<std::result::Result<(usize, usize, i64), Vec<String>>> {
    let mut refused = false;
    let mut problems: Vec<String> = Vec::new();
    let imported = in_import_transaction(store, |tx| {
        std::thread::scope(|scope| {
            let (out, parsed) = std::sync::mpsc::sync_channel::<Parsed>(4);
            // Written batches go back to the reading thread, which allocated them, to be freed
            // there: glibc frees memory of another thread's arena slowly.
            let (give_back, written) = std::sync::mpsc::channel::<Vec<User>>();
            scope.spawn(move || read_lines(file, input, &out, &written));
            let mut known: Option<BTreeSet<String>> = None;
            let mut seen = BTreeSet::new();
            let mut groups: Vec<(usize, Group)> = Vec::new();
            let (mut n_groups, mut n_users, mut n_seen) = (0, 0, 0);
            for batch in parsed {
                match batch {
                    Parsed::Problems(p) => problems.extend(p),
                    Parsed::Groups(g) => groups.extend(g),
                    Parsed::Users(users) => {
                        if known.is_none() {
                            let mut bad = Vec::new();
                            for (line, g) in &groups {
                                check_groups(
                                    &format!("{file}:{line}"),
                                    std::slice::from_ref(g),
                                    &mut bad,
                                );
                            }
                            let mut names = BTreeSet::new();
                            for (line, g) in &groups {
                                if !names.insert(key_of(&g.name)) {
                                    bad.push(format!(
                                        "{file}:{line}: group `{}` is listed twice",
                                        crate::util::escape_text(&g.name)
                                    ));
                                }
                            }
                            problems.extend(bad);
                            let gs: Vec<Group> = groups.iter().map(|(_, g)| g.clone()).collect();
                            n_groups = gs.len();
                            known = Some(write_groups(tx, &gs)?);
                        }
                        let Some(known) = known.as_mut() else {
                            continue;
                        };
                        for (line, u) in &users {
                            let at = format!("{file}:{line}");
                            check_users(&at, std::slice::from_ref(u), &mut seen, &mut problems);
                            for g in &u.groups {
                                if !known.contains(&key_of(g)) {
                                    problems.push(format!(
                                        "{at}: user `{}` is in group `{}`, which is neither in the \
                                         file's group lines nor in the store; add a group line",
                                        crate::util::escape_text(&u.id),
                                        crate::util::escape_text(g)
                                    ));
                                }
                            }
                        }
                        let (lines, users): (Vec<usize>, Vec<User>) = users.into_iter().unzip();
                        refused |= !accept(n_seen, &users, &lines);
                        n_seen += users.len();
                        if problems.is_empty() && !refused {
                            write_users(tx, file, &users, known, &mut |_, _| {})?;
                            n_users += users.len();
                            progress(n_users, n_users);
                            // Once the reader has finished, it is dropped here instead.
                            let _ = give_back.send(users);
                        }
                    }
                }
                if problems.len() >= MAX_PROBLEMS {
                    break; // dropping the receiver stops the reader
                }
            }
            if known.is_none() && problems.is_empty() {
                let gs: Vec<Group> = groups.iter().map(|(_, g)| g.clone()).collect();
                let mut bad = Vec::new();
                check_groups(file, &gs, &mut bad);
                problems.extend(bad);
                n_groups = gs.len();
                if problems.is_empty() {
                    write_groups(tx, &gs)?;
                }
            }
            Ok((problems.is_empty() && !refused).then_some((n_groups, n_users)))
        })
    })?;
    match imported {
        Some(done) => Ok(Ok(done)),
        None => {
            problems.truncate(MAX_PROBLEMS);
            Ok(Err(problems))
        }
    }
}

/// The reading thread: parses lines into batches and sends them on, in order; frees the
/// batches `written` gives back.
fn read_lines(
    file: &str,
    input: &mut (dyn BufRead + Send),
    out: &std::sync::mpsc::SyncSender<Parsed>,
    written: &std::sync::mpsc::Receiver<Vec<User>>,
) {
    let mut users = Vec::with_capacity(BATCH);
    let mut groups = Vec::new();
    let mut line = String::new();
    let mut number = 0usize;
    let mut bad = 0usize;
    let mut seen_user = false;
    loop {
        line.clear();
        number += 1;
        let read = read_line(input, &mut line);
        let problem = match read {
            Ok(0) => break,
            Ok(_) => {
                let text = line.trim_end_matches(['\n', '\r']);
                if text.trim().is_empty() {
                    continue;
                }
                let mut text = text.to_string();
                match parse_line(&mut text) {
                    Ok(Line::Group(g)) if seen_user => Some(format!(
                        "{file}:{number}: group `{}` comes after the first user; group lines come first",
                        crate::util::escape_text(&g.name)
                    )),
                    Ok(Line::Group(g)) => {
                        groups.push((number, g));
                        None
                    }
                    Ok(Line::User(u)) => {
                        if !seen_user {
                            seen_user = true;
                            if out.send(Parsed::Groups(std::mem::take(&mut groups))).is_err() {
                                return;
                            }
                        }
                        users.push((number, *u));
                        if users.len() == BATCH {
                            written.try_iter().for_each(drop);
                        }
                        if users.len() == BATCH
                            && out
                                .send(Parsed::Users(std::mem::replace(
                                    &mut users,
                                    Vec::with_capacity(BATCH),
                                )))
                                .is_err()
                        {
                            return;
                        }
                        None
                    }
                    Err((0, m)) => Some(format!("{file}:{number}: {m}")),
                    Err((col, m)) => Some(format!("{file}:{number}:{col}: {m}")),
                }
            }
            Err(m) => {
                let _ = out.send(Parsed::Problems(vec![format!("{file}:{number}: {m}")]));
                return;
            }
        };
        if let Some(p) = problem {
            bad += 1;
            // The users read before go first, so that problems are reported in line order.
            if !users.is_empty()
                && out
                    .send(Parsed::Users(std::mem::replace(
                        &mut users,
                        Vec::with_capacity(BATCH),
                    )))
                    .is_err()
            {
                return;
            }
            if out.send(Parsed::Problems(vec![p])).is_err() || bad >= MAX_PROBLEMS {
                return;
            }
        }
    }
    if !groups.is_empty() {
        let _ = out.send(Parsed::Groups(groups));
    }
    if !users.is_empty() {
        let _ = out.send(Parsed::Users(users));
    }
}

/// The longest line read: a user with this many bytes of JSON is not a directory entry.
const MAX_LINE_BYTES: u64 = 64 * 1024 * 1024;

fn read_line(
    input: &mut (dyn BufRead + Send),
    buf: &mut String,
) -> std::result::Result<usize, String> {
    super::read_line(input, buf, MAX_LINE_BYTES)
}
