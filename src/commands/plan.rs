//! `mfactl plan`: show what apply would change, and who may approve it; optionally save it.
//!
//! The plan is rendered as it is computed (see [`plan_batches`]): a plan of a whole directory
//! goes to stdout, and to `--out`, a batch of users at a time.

use super::Ctx;
use crate::cli::PlanFormat;
use crate::error::{CmdResult, Exit, Failure};
use crate::ops::load::{manifests, unprotected_warning};
use crate::ops::plan::{plan_batches, Step};
use crate::plan::{Plan, Summary};
use crate::printer::{Sink, Stdout};
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
    ctx.warn_skipped_links(&input.skipped_links);
    let policy = ctx.policy()?;
    let st = ctx.open_store()?;
    let unprotected = unprotected_warning(&st, &policy)?;
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
        // JSON names the id at its top; the other formats only at their end.
        opts.format == PlanFormat::Json,
        &mut |step| {
            match step {
                Step::Start(h) => {
                    // Created only now, so that invalid manifests leave no file behind.
                    if let Some(file) = &opts.out {
                        saved = Some(Saved::create(file, h)?);
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
                    fingerprints,
                } => {
                    let diffs = if opts.diff {
                        render::diff::user_diffs(&changes, users)
                    } else {
                        BTreeMap::new()
                    };
                    if let Some(s) = saved.take() {
                        saved = Some(s.write(|w, out| {
                            w.fingerprints(fingerprints.clone());
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
    let plan_id = match planned {
        Ok(id) => id,
        Err(f) => {
            if let Some(s) = saved.take() {
                s.abandon();
            }
            if let Some(out) = stdout.take() {
                out.finish(Ok(()));
            }
            return Err(f);
        }
    };
    let end = End {
        plan_id: &plan_id,
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
    if let (Some(s), Some(_)) = (saved.take(), &head) {
        let file = s.path.clone();
        s.finish(&end)?;
        ctx.status(&format!(
            "Saved plan {} to {}; apply it with `mfactl apply --plan {} --expect-plan-id {}`.",
            plan_id,
            file.display(),
            file.display(),
            plan_id
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
/// When the plan's id is known only at the end, the head holds a placeholder of the same length,
/// overwritten in place before the rename.
struct Saved {
    path: PathBuf,
    partial: PathBuf,
    sink: Sink<BufWriter<File>>,
    writer: render::json::Writer,
    /// Where the placeholder id lies in the file.
    id_at: Option<u64>,
}

/// Stands for a plan id not yet known: as long as one, and not one.
const PLACEHOLDER_ID: &str = "________________________________________________________________";

impl Saved {
    fn create(path: &Path, head: &Plan) -> Result<Saved, Failure> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".partial-{}", std::process::id()));
        let partial = path.with_file_name(name);
        let file = File::create(&partial).map_err(|e| fail(path, &e))?;
        let mut saved = Saved {
            path: path.to_path_buf(),
            partial,
            sink: Sink::new(BufWriter::with_capacity(1 << 16, file)),
            writer: render::json::Writer::new(false),
            id_at: None,
        };
        let mut text = String::new();
        if head.id.is_empty() {
            let mut h = head.clone();
            h.id = PLACEHOLDER_ID.to_string();
            let _ = saved.writer.head(&mut text, &h);
            saved.id_at = text.find(PLACEHOLDER_ID).map(|i| i as u64);
        } else {
            let _ = saved.writer.head(&mut text, head);
        }
        use std::fmt::Write as _;
        saved.write(|_, out| out.write_str(&text))
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
        use std::os::unix::fs::FileExt;
        let written = self.writer.finish(&mut self.sink, end);
        let id_at = self.id_at;
        let done = self
            .sink
            .finish(written)
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| match id_at {
                Some(at) => f.write_all_at(end.plan_id.as_bytes(), at).map(|_| f),
                None => Ok(f),
            })
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
