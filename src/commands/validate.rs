//! `mfactl validate`: every check of docs/manifests.md, every problem in one run.

use super::Ctx;
use crate::cli::ValidateFormat;
use crate::error::{CmdResult, Exit};
use crate::manifest::{self, Located};
use crate::ops::load::{self, invalid};
use crate::printer::out;
use crate::sources;
use std::path::PathBuf;

pub fn run(ctx: &Ctx, paths: &[PathBuf], offline: bool, format: ValidateFormat) -> CmdResult {
    let input = load::manifests(paths)?;
    if format == ValidateFormat::Github {
        out(&input
            .skipped_links
            .iter()
            .map(|l| github_warning(l, &sources::skipped_link_warning(l)))
            .collect::<String>());
    }
    ctx.warn_skipped_links(&input.skipped_links);
    let policy = ctx.policy()?;
    let mut problems = load::offline_problems(&input, &policy, ctx.now);
    if !offline {
        // Whether the named users and groups exist; no user's state is loaded.
        problems.extend(load::unknown_names(&ctx.open_store()?, &input.manifests)?);
    }
    let (ms, files) = (&input.manifests, &input.files);
    let located = manifest::locate_all(problems, files);
    match format {
        ValidateFormat::Text => {
            if !located.is_empty() {
                // As plan and apply report them, but validate plans and applies nothing anyway.
                let mut f = invalid(located);
                if let Some(last) = f.lines.last_mut() {
                    *last = last.replace("; nothing was planned or applied", "");
                }
                return Err(f);
            }
        }
        ValidateFormat::Json => out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&located).unwrap_or_default()
        )),
        ValidateFormat::Github => out(&located.iter().map(github).collect::<String>()),
    }
    if located.is_empty() {
        ctx.status(&format!(
            "{} manifest{} in {} file{} valid{}.",
            ms.len(),
            if ms.len() == 1 { "" } else { "s" },
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            if offline {
                " (offline: users and groups not checked)"
            } else {
                ""
            }
        ));
        Ok(Exit::Ok)
    } else {
        Ok(Exit::Error)
    }
}

/// `::error file=F,line=L,col=C::message`, escaped as GitHub's workflow commands require.
pub fn github(l: &Located) -> String {
    format!(
        "::error file={},line={},col={}::{}\n",
        gh_prop(&l.file),
        l.line,
        l.col,
        gh_data(&l.message)
    )
}

/// `::warning file=F::message`, for what validate reports without failing.
pub fn github_warning(file: &str, message: &str) -> String {
    format!("::warning file={}::{}\n", gh_prop(file), gh_data(message))
}

fn gh_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn gh_prop(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}
