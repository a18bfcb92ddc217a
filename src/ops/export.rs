//! `store export`: the whole directory, read a batch of users at a time in one snapshot and
//! written as YAML or JSON Lines. A second thread turns each batch into text while this one reads
//! the next from SQLite, so a million users are never all in memory, nor their text.

use super::import::Format;
use crate::directory::{jsonl, yaml};
use crate::error::Failure;
use crate::model::User;
use crate::store::{self, Store};

/// Writes the directory to `w` in `format`: the groups, then the users. A failure of the store
/// or the formatter is the `Err`; `Ok` holds how writing to `w` went, for the caller to report.
pub fn write(
    st: &Store,
    format: Format,
    w: &mut dyn std::fmt::Write,
) -> Result<std::fmt::Result, Failure> {
    let yaml = format == Format::Yaml;
    // Streamed a batch at a time, so a million users are never all in memory, nor their text;
    // a second thread turns each batch into text while this one reads the next from SQLite.
    let mut failure: Option<Failure> = None;
    let written = {
        std::thread::scope(|scope| {
            let (batches, to_format) = std::sync::mpsc::sync_channel::<Vec<User>>(1);
            type Formatted = (Result<String, Halt>, Vec<User>);
            let (texts, formatted) = std::sync::mpsc::sync_channel::<Formatted>(1);
            scope.spawn(move || {
                for users in to_format {
                    let mut text = String::with_capacity(users.len() * 800);
                    let done = if yaml {
                        users
                            .iter()
                            .try_for_each(|u| yaml::write_user(&mut text, u))
                            .map_err(Halt::from)
                    } else {
                        users.iter().for_each(|u| jsonl::write_user(&mut text, u));
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
            let stopped = |e: Halt, failure: &mut Option<Failure>, write_failed: &mut bool| match e
            {
                Halt::Write => *write_failed = true,
                Halt::Fail(f) => *failure = Some(f),
            };
            // Writes formatted batches until at most `keep` are still being formatted.
            let drain = |keep: usize, in_flight: &mut usize, w: &mut dyn std::fmt::Write| {
                while *in_flight > keep {
                    *in_flight -= 1;
                    match formatted.recv() {
                        Ok((Ok(text), _)) => w.write_str(&text).map_err(Halt::from)?,
                        Ok((Err(e), _)) => return Err(e),
                        Err(_) => {
                            return Err(Halt::Fail(Failure::error("export: the formatter stopped")))
                        }
                    }
                }
                Ok(())
            };
            let read = store::export_with(st, store::EXPORT_BATCH, &mut |part| {
                let written = match part {
                    store::ExportPart::Groups(groups) if yaml => {
                        yaml::write_groups(w, &groups).map_err(Halt::from)
                    }
                    store::ExportPart::Groups(groups) => {
                        let mut text = String::new();
                        groups.iter().for_each(|g| jsonl::write_group(&mut text, g));
                        w.write_str(&text).map_err(Halt::from)
                    }
                    store::ExportPart::Users(users) => {
                        let head = if wrote_users || !yaml {
                            Ok(())
                        } else {
                            w.write_str("users:\n").map_err(Halt::from)
                        };
                        wrote_users = true;
                        in_flight += 1;
                        head.and_then(|_| {
                            batches.send(users).map_err(|_| {
                                Halt::Fail(Failure::error("export: the formatter stopped"))
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
                return Err(std::fmt::Error); // the caller reports what the output said
            }
            if failure.is_none() && !wrote_users && yaml {
                w.write_str("users: []\n")?;
            }
            Ok(())
        })
    };
    match failure {
        Some(f) => Err(f),
        None => Ok(written),
    }
}

/// Why writing the export stopped.
enum Halt {
    /// The output refused the bytes.
    Write,
    Fail(Failure),
}

impl From<std::fmt::Error> for Halt {
    fn from(_: std::fmt::Error) -> Halt {
        Halt::Write
    }
}

impl From<yaml::Stop> for Halt {
    fn from(s: yaml::Stop) -> Halt {
        match s {
            yaml::Stop::Write => Halt::Write,
            yaml::Stop::Yaml(msg) => Halt::Fail(Failure::error(msg)),
        }
    }
}
