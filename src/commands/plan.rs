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
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

pub struct Options {
    pub detailed: bool,
    pub format: PlanFormat,
    pub out: Option<PathBuf>,
    pub diff: bool,
    pub signers: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, paths: &[PathBuf], opts: &Options) -> CmdResult {
    let input = manifests(paths)?;
    ctx.warn_skipped_links(&input.skipped_links);
    let policy = ctx.policy()?;
    let sigs = ctx.signatures(opts.signers.as_deref(), &input)?;
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
        &input,
        &policy,
        ctx.who(&sigs),
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
/// temporary file beside FILE (removed if anything fails) and persisted over FILE once whole and
/// synced, then the directory synced, so FILE is never half a plan, even after a power loss.
/// When the plan's id is known only at the end, the head holds a placeholder of the same length,
/// overwritten in place before the rename.
struct Saved {
    path: PathBuf,
    sink: Sink<BufWriter<NamedTempFile>>,
    writer: render::json::Writer,
    /// Where the placeholder id lies in the file.
    id_at: Option<u64>,
}

/// Stands for a plan id not yet known: as long as one, and not one.
const PLACEHOLDER_ID: &str = "________________________________________________________________";

impl Saved {
    fn create(path: &Path, head: &Plan) -> Result<Saved, Failure> {
        use std::os::unix::fs::PermissionsExt;
        let mut prefix = path.file_name().unwrap_or_default().to_os_string();
        prefix.push(".partial-");
        // Mode 0666 less the umask, as a file the shell creates (tempfile's default is 0600).
        let file = tempfile::Builder::new()
            .prefix(&prefix)
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(dir_of(path))
            .map_err(|e| fail(path, &e))?;
        let mut saved = Saved {
            path: path.to_path_buf(),
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
        f: impl FnOnce(&mut render::json::Writer, &mut Sink<BufWriter<NamedTempFile>>) -> fmt::Result,
    ) -> Result<Saved, Failure> {
        match f(&mut self.writer, &mut self.sink) {
            Ok(()) => Ok(self),
            Err(e) => {
                let error = self
                    .sink
                    .finish(Err(e))
                    .err()
                    .unwrap_or_else(|| std::io::Error::other("formatting failed"));
                Err(fail(&self.path, &error)) // the temporary file is removed as it drops
            }
        }
    }

    fn finish(mut self, end: &End) -> Result<(), Failure> {
        use std::os::unix::fs::FileExt;
        let written = self.writer.finish(&mut self.sink, end);
        let id_at = self.id_at;
        let path = self.path;
        let tmp = self
            .sink
            .finish(written)
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|tmp| {
                if let Some(at) = id_at {
                    tmp.as_file().write_all_at(end.plan_id.as_bytes(), at)?;
                }
                tmp.as_file().sync_all()?;
                Ok(tmp)
            })
            .map_err(|e| fail(&path, &e))?;
        tmp.persist(&path)
            .map_err(|e| fail(&path, &e.error))
            .and_then(|_| {
                std::fs::File::open(dir_of(&path))
                    .and_then(|d| d.sync_all())
                    .map_err(|e| fail(&path, &e))
            })
    }

    /// Drops the partial plan (its temporary file is removed).
    fn abandon(self) {}
}

/// The directory FILE is in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn fail(path: &Path, e: &std::io::Error) -> Failure {
    Failure::error(format!("--out {}: {}", path.display(), io_reason(e)))
}
