//! Reading the directory back out, from either store: the whole of it in batches of users (one
//! snapshot), for `store export`, and one user for `show`. Secrets never leave.

use super::{Result, Store};
use crate::model::{key_of, Directory, User};
use std::collections::BTreeMap;

/// The whole directory, sorted, without secrets.
pub fn export(store: &Store) -> Result<Directory> {
    let mut dir = Directory::default();
    export_with(store, EXPORT_BATCH, &mut |part| {
        match part {
            ExportPart::Groups(g) => dir.groups = g,
            ExportPart::Users(u) => dir.users.extend(u),
        }
        true
    })?;
    Ok(dir)
}

/// Users per batch of [`export_with`]: large enough that each query's fixed cost vanishes,
/// small enough that a batch takes a few megabytes.
pub const EXPORT_BATCH: usize = 5_000;

/// One piece of the directory, in the order of the export format.
pub enum ExportPart {
    /// Every group, sorted by key; always first, exactly once.
    Groups(Vec<crate::model::Group>),
    /// The next users by key (never empty).
    Users(Vec<User>),
}

/// The whole directory, sorted, without secrets, handed to `each` a batch of users at a time
/// (all read in one snapshot), so that exporting a million users never holds them all. `each`
/// returns false to stop early.
pub fn export_with(
    store: &Store,
    batch: usize,
    each: &mut dyn FnMut(ExportPart) -> bool,
) -> Result<()> {
    let conn = store.conn();
    super::read_snapshot(conn, || {
        let groups: BTreeMap<_, _> = conn.load_groups()?;
        if !each(ExportPart::Groups(groups.into_values().collect())) {
            return Ok(());
        }
        conn.user_batches(batch, &mut |users| {
            each(ExportPart::Users(users.into_values().collect()))
        })
    })
}

/// One user's state, or `None` when the store has no such user.
pub fn show(store: &Store, id: &str) -> Result<Option<User>> {
    let keys = [key_of(id)];
    let mut users = store.conn().load_keys(&keys)?;
    Ok(users.remove(&keys[0]).map(|mut u| {
        u.normalize();
        u
    }))
}
