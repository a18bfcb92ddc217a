//! `mfactl demo`: the walkthrough on the built-in example tenant and manifests.
//!
//! A fresh `./demo.db`; the plan as erin (authentication administrator), with allowed and denied
//! changes; erin's apply, refused as a whole because of the denied ones; the apply by gary (global
//! administrator); and the plan again, now empty.

use super::Ctx;
use crate::error::{CmdResult, Exit, Failure, Kind};
use crate::examples::{DIRECTORY, EXAMPLE_ADMIN, GLOBAL_ADMIN, MANIFESTS};
use crate::manifest::SourceFile;
use crate::model::Timestamp;
use crate::ops::apply::{self, Applied, Options};
use crate::ops::load::{parse_all, Loaded};
use crate::ops::plan::{compute_plan, Who};
use crate::plan::Plan;
use crate::policy::Policy;
use crate::printer::{self, out};
use crate::render;
use crate::store::Store;
use std::path::{Path, PathBuf};

const DB: &str = "demo.db";
const CREDENTIALS: &str = "demo-credentials.txt";

pub fn run(ctx: &Ctx) -> CmdResult {
    let db = PathBuf::from(DB);
    for f in [DB, "demo.db-wal", "demo.db-shm", CREDENTIALS] {
        remove_if_present(Path::new(f))?;
    }
    let (mut st, _) = Store::init(&db, ctx.lock_timeout)?;
    let (g, u, _) = crate::ops::import::import_text(&mut st, "examples/directory.yaml", DIRECTORY)?;
    let files: Vec<SourceFile> = MANIFESTS
        .iter()
        .map(|(p, t)| SourceFile {
            path: p.to_string(),
            text: t.to_string(),
        })
        .collect();
    let (manifests, problems) = parse_all(&files);
    let input = Loaded {
        files,
        skipped_links: Vec::new(),
        manifests,
        problems,
    };
    // The walkthrough runs on the example tenant, so with the repository's example policies
    // (built in), whose guardrails protect the tenant's break-glass account; whatever
    // ./policies holds. The plans name them as their source.
    let policy = Policy::example();
    let st_style = ctx.style;
    let heading = |s: &str| out(&format!("\n{}\n\n", st_style.bold(&format!("== {s}"))));

    heading(&format!(
        "mfactl demo: a fresh {DB} with {u} users and {g} groups, and the {} manifests in examples/manifests",
        input.files.len()
    ));
    heading(&format!(
        "1. mfactl plan --actor {EXAMPLE_ADMIN}   (authentication-administrator)"
    ));
    let plan = compute_plan(
        st.conn(),
        &input,
        &policy,
        Who::Actor(Some(EXAMPLE_ADMIN)),
        ctx.now,
    )?;
    out(&render::text::plan(&plan, ctx.style));

    heading(&format!(
        "2. mfactl apply --actor {EXAMPLE_ADMIN}   (refused: an apply is all or nothing)"
    ));
    let opts = Options {
        allow_large: false,
        credentials_out: Some(PathBuf::from(CREDENTIALS)),
        accept_broken_audit: false,
        fence: None,
    };
    match approve(
        &mut st,
        &input,
        &policy,
        EXAMPLE_ADMIN,
        ctx.now,
        &opts,
        &plan,
    ) {
        Err(f) if f.kind == Kind::Denied => out(&format!(
            "{}\n(exit code 3: nothing was applied)\n",
            f.lines.join("\n")
        )),
        Err(f) => return Err(f),
        Ok(_) => out("(unexpected: erin's apply went through)\n"),
    }

    heading(&format!("3. mfactl apply --actor {GLOBAL_ADMIN} --credentials-out {CREDENTIALS}   (global-administrator)"));
    let approved = compute_plan(
        st.conn(),
        &input,
        &policy,
        Who::Actor(Some(GLOBAL_ADMIN)),
        ctx.now,
    )?;
    out(&format!(
        "(the same {} changes, now all allowed as global-administrator)\n",
        approved.changes.len()
    ));
    let applied = approve(
        &mut st,
        &input,
        &policy,
        GLOBAL_ADMIN,
        ctx.now,
        &opts,
        &approved,
    )?;
    if let Some(applied) = applied {
        printer::applied(ctx.quiet, &approved, &applied);
    }

    heading(&format!(
        "4. mfactl plan --actor {GLOBAL_ADMIN}   (again: the store now matches the manifests)"
    ));
    let again = compute_plan(
        st.conn(),
        &input,
        &policy,
        Who::Actor(Some(GLOBAL_ADMIN)),
        ctx.now,
    )?;
    out(&render::text::plan(&again, ctx.style));
    out(&format!(
        "\nExplore further: mfactl --store {DB} audit · mfactl --store {DB} show carol@contoso.example\n"
    ));
    Ok(Exit::Ok)
}

/// An apply of the plan shown (as `apply` does after its prompt): refused if the store no longer
/// gives it, or if any change is denied.
#[allow(clippy::too_many_arguments)]
fn approve(
    st: &mut Store,
    input: &Loaded,
    policy: &Policy,
    actor: &str,
    now: Timestamp,
    opts: &Options,
    shown: &Plan,
) -> Result<Option<Applied>, Failure> {
    let tx = st.begin()?;
    let plan = apply::plan_locked(
        &tx,
        input,
        policy,
        Who::Actor(Some(actor)),
        now,
        Some(shown),
    )?;
    apply::apply_locked(tx, &plan, policy, actor, now, opts)
}

fn remove_if_present(p: &Path) -> Result<(), Failure> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::error(format!(
            "{}: cannot remove: {}",
            p.display(),
            crate::sources::io_reason(&e)
        ))),
    }
}
