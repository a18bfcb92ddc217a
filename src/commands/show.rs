//! `mfactl show USER`: one user's actual state, in the directory format.

use super::{out, Ctx};
use crate::error::{CmdResult, Exit, Failure};
use crate::util::escape_text;

pub fn run(ctx: &Ctx, user: &str) -> CmdResult {
    let st = ctx.open_store()?;
    match crate::store::show(&st, user)? {
        Some(u) => {
            out(&crate::directory::yaml::to_yaml(&u).map_err(Failure::error)?);
            Ok(Exit::Ok)
        }
        None => Err(Failure::error(format!(
            "no user `{}` in store {}; `mfactl store export` lists them all",
            escape_text(user),
            st.path().display()
        ))),
    }
}
