//! `mfactl validate`: every check of docs/manifests.md, every problem in one run.

use super::{out, parse_all, Ctx};
use crate::cli::ValidateFormat;
use crate::error::{CmdResult, Exit, Failure};
use crate::manifest::{self, Located};
use crate::sources;
use std::path::PathBuf;

pub fn run(ctx: &Ctx, paths: &[PathBuf], offline: bool, format: ValidateFormat) -> CmdResult {
    let found = sources::read(paths).map_err(|lines| Failure::many(Exit::Error, lines))?;
    let files = found.files;
    if format == ValidateFormat::Github {
        out(&found
            .skipped_links
            .iter()
            .map(|l| github_warning(l, &sources::skipped_link_warning(l)))
            .collect::<String>());
    }
    ctx.warn_skipped_links(&found.skipped_links);
    let policy = ctx.policy()?;
    let (ms, mut problems) = parse_all(&files);
    problems.extend(crate::plan::check_offline(&ms, &policy, ctx.now));
    if !offline {
        // Whether the named users and groups exist; no user's state is loaded.
        let st = ctx.open_store()?;
        let needs = crate::plan::needs(&ms);
        let users = crate::store::existing_users(st.conn(), st.path(), &needs.user_keys)?;
        let groups = crate::store::load_groups(st.conn(), st.path())?;
        problems.extend(crate::plan::check_known_in(
            &ms,
            &|k| users.contains(k),
            &|g| groups.contains_key(g),
        ));
    }
    let located = manifest::locate_all(problems, &files);
    match format {
        ValidateFormat::Text => {
            if !located.is_empty() {
                return Err(super::invalid(located));
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
