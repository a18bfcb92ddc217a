//! `mfactl plan`: show what apply would change, and who may approve it; optionally save it.
//!
//! The plan is rendered as it is computed (see [`plan_batches`]): a plan of a whole directory
//! goes to stdout, and to `--out`, a batch of users at a time.

use super::planning::Step;
use super::{manifests, plan_batches, Ctx, Sink, Stdout};
use crate::cli::PlanFormat;
use crate::error::{CmdResult, Exit, Failure};
use crate::plan::{Plan, Summary};
use crate::render::{self, End, PlanWriter};
use crate::sources::io_reason;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

pub struct Options {
    pub detailed: bool,
    pub format: PlanFormat,
    pub out: Option<PathBuf>,
    pub diff: bool,
}

pub fn run(ctx: &Ctx, paths: &[PathBuf], opts: &Options) -> CmdResult {
    let input = manifests(paths)?;
    let policy = ctx.policy()?;
    let st = ctx.open_store()?;
    let unprotected = ctx.unprotected_warning(&st, &policy)?;
    let mut writer: Box<dyn PlanWriter> = match opts.format {
        PlanFormat::Text => Box::new(render::text::Writer::new(ctx.style)),
        PlanFormat::Json => Box::new(render::json::Writer::new(opts.diff)),
        PlanFormat::Markdown => Box::new(render::markdown::Writer::with_warnings(
            unprotected.iter().cloned().collect(),
        )),
    };
    let mut stdout: Option<Stdout> = None;
    let mut saved: Option<Saved> = None;
    let mut head: Option<Plan> = None;
    let mut summary = Summary::default();
    let mut skipped = Vec::new();
    let planned = plan_batches(
        st.conn(),
        st.path(),
        &input,
        &policy,
        ctx.actor.as_deref(),
        ctx.now,
        &mut |step| {
            match step {
                Step::Start(h) => {
                    // Created only now, so that invalid manifests leave no file behind.
                    if let Some(file) = &opts.out {
                        saved = Some(Saved::create(file)?.write(|w, out| w.head(out, h))?);
                    }
                    let out = stdout.insert(Stdout::new());
                    head = Some(h.clone());
                    let written = writer.head(out, h);
                    stdout_ok(written, &mut stdout, &mut saved);
                }
                Step::Batch {
                    changes,
                    skipped: skips,
                    users,
                } => {
                    let diffs = if opts.diff {
                        render::diff::user_diffs(&changes, users)
                    } else {
                        BTreeMap::new()
                    };
                    if let Some(s) = saved.take() {
                        let fingerprints = crate::plan::fingerprints(&changes, users);
                        saved = Some(s.write(|w, out| {
                            w.fingerprints(fingerprints);
                            w.changes(out, &changes, &BTreeMap::new())
                        })?);
                    }
                    if let Some(out) = &mut stdout {
                        let written = writer.changes(out, &changes, &diffs);
                        stdout_ok(written, &mut stdout, &mut saved);
                    }
                    summary.add(Summary::of(&changes));
                    skipped.extend(skips);
                }
            }
            Ok(())
        },
    );
    if let Err(f) = planned {
        if let Some(s) = saved.take() {
            s.abandon();
        }
        if let Some(out) = stdout.take() {
            out.finish(Ok(()));
        }
        return Err(f);
    }
    let end = End {
        skipped: &skipped,
        summary,
    };
    if let Some(mut out) = stdout.take() {
        let written = writer.finish(&mut out, &end);
        if written.is_err() {
            if let Some(s) = saved.take() {
                s.abandon();
            }
        }
        out.finish(written);
    }
    if let (Some(s), Some(h)) = (saved.take(), &head) {
        let file = s.path.clone();
        s.finish(&end)?;
        ctx.status(&format!(
            "Saved plan {} to {}; apply it with `mfactl apply --plan {}`.",
            h.id,
            file.display(),
            file.display()
        ));
    }
    if let Some(w) = &unprotected {
        ctx.status(&format!("warning: {w}"));
    }
    if summary.users > policy.guardrails.max_users_per_apply {
        ctx.status(&format!(
            "warning: this plan changes {} users, more than max-users-per-apply ({}); apply will need --allow-large",
            summary.users, policy.guardrails.max_users_per_apply
        ));
    }
    Ok(match (opts.detailed, summary.changes, summary.denied) {
        (false, _, _) | (true, 0, _) => Exit::Ok,
        (true, _, 0) => Exit::Changes,
        (true, _, _) => Exit::Denied,
    })
}

/// Ends the process when stdout failed (a closed pipe quietly), removing a half-written `--out`.
fn stdout_ok(written: fmt::Result, stdout: &mut Option<Stdout>, saved: &mut Option<Saved>) {
    if written.is_err() {
        if let Some(s) = saved.take() {
            s.abandon();
        }
        if let Some(out) = stdout.take() {
            out.finish(written);
        }
    }
}

/// `--out FILE`: the JSON plan with the fingerprints of the users it changes, written to a
/// partial file beside FILE and renamed over FILE once whole, so FILE is never half a plan.
struct Saved {
    path: PathBuf,
    partial: PathBuf,
    sink: Sink<BufWriter<File>>,
    writer: render::json::Writer,
}

impl Saved {
    fn create(path: &Path) -> Result<Saved, Failure> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".partial-{}", std::process::id()));
        let partial = path.with_file_name(name);
        let file = File::create(&partial).map_err(|e| fail(path, &e))?;
        Ok(Saved {
            path: path.to_path_buf(),
            partial,
            sink: Sink::new(BufWriter::with_capacity(1 << 16, file)),
            writer: render::json::Writer::new(false),
        })
    }

    /// Runs one write; on failure the partial file is removed and the error named.
    fn write(
        mut self,
        f: impl FnOnce(&mut render::json::Writer, &mut Sink<BufWriter<File>>) -> fmt::Result,
    ) -> Result<Saved, Failure> {
        match f(&mut self.writer, &mut self.sink) {
            Ok(()) => Ok(self),
            Err(e) => {
                let error = self
                    .sink
                    .finish(Err(e))
                    .err()
                    .unwrap_or_else(|| std::io::Error::other("formatting failed"));
                let _ = std::fs::remove_file(&self.partial);
                Err(fail(&self.path, &error))
            }
        }
    }

    fn finish(mut self, end: &End) -> Result<(), Failure> {
        let written = self.writer.finish(&mut self.sink, end);
        let done = self
            .sink
            .finish(written)
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_all())
            .and_then(|_| std::fs::rename(&self.partial, &self.path));
        done.map_err(|e| {
            let _ = std::fs::remove_file(&self.partial);
            fail(&self.path, &e)
        })
    }

    fn abandon(self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

fn fail(path: &Path, e: &std::io::Error) -> Failure {
    Failure::error(format!("--out {}: {}", path.display(), io_reason(e)))
}
