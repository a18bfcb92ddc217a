//! What an import writes, on either store: one write transaction that upserts the groups and
//! replaces each listed user's record as a whole, keeping the password hash of a user whose
//! password time is unchanged, and keeping the group index true. Reading and checking the file
//! is `directory`'s; streaming it through here is `ops::import`'s.

use super::backend::Backend;
use super::record::{self, Stored};
use super::{Result, Store, StoreError};
use crate::model::{key_of, Directory, Group, Timestamp, User};
use crate::util::escape_text;
use std::collections::{BTreeSet, HashMap};

/// Upserts the directory in one transaction. Returns (groups, users) written and the new revision.
pub fn import(store: &mut Store, file: &str, dir: &Directory) -> Result<(usize, usize, i64)> {
    import_with_progress(store, file, dir, &mut |_, _| {})
}

/// [`import`], calling `progress(done, total)` now and then as the users are written.
pub fn import_with_progress(
    store: &mut Store,
    file: &str,
    dir: &Directory,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(usize, usize, i64)> {
    let imported = in_import_transaction(store, |tx| {
        let mut known = write_groups(tx, &dir.groups)?;
        write_users(tx, file, &dir.users, &mut known, progress)?;
        progress(dir.users.len(), dir.users.len());
        Ok(Some((dir.groups.len(), dir.users.len())))
    })?;
    Ok(imported.unwrap_or((0, 0, 0)))
}

/// Runs `write` in one write transaction, bumping the revision and committing when it returns
/// `Some((groups, users))`; rolling back when it returns `None`.
pub fn in_import_transaction(
    store: &mut Store,
    write: impl FnOnce(&dyn Backend) -> Result<Option<(usize, usize)>>,
) -> Result<Option<(usize, usize, i64)>> {
    store.conn().bulk_mode(true)?;
    let imported = (|| {
        let tx = store.begin()?;
        let Some((groups, users)) = write(&*tx)? else {
            return Ok(None); // dropped: rolled back
        };
        let revision = tx.bump_revision()?;
        tx.commit()?;
        Ok(Some((groups, users, revision)))
    })();
    let restored = store.conn().bulk_mode(false);
    let imported = imported?;
    restored?;
    Ok(imported)
}

/// Upserts the groups; the keys of every group the store then knows.
pub fn write_groups(tx: &dyn Backend, groups: &[Group]) -> Result<BTreeSet<String>> {
    let mut known: BTreeSet<String> = tx.load_groups()?.into_keys().collect();
    tx.upsert_groups(groups)?;
    known.extend(groups.iter().map(|g| key_of(&g.name)));
    Ok(known)
}

/// Users encoded and written per round of an import's writes.
const BATCH: usize = 8_192;

/// Replaces each of `users`' records as a whole (a user listed twice by its last record). Every
/// group a user is in must be `known`. `progress(done, total)` is called as the rows are written.
pub fn write_users(
    tx: &dyn Backend,
    file: &str,
    users: &[User],
    known: &mut BTreeSet<String>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    for u in users {
        for g in &u.groups {
            if !known.contains(&key_of(g)) {
                return Err(StoreError::Invalid(format!(
                    "{file}: user `{}` is in group `{}`, which is neither in the file's `groups:` nor in the store; add it to `groups:`",
                    escape_text(&u.id),
                    escape_text(g)
                )));
            }
        }
    }
    // A user listed twice (only possible past `parse`) is replaced by its last record.
    let keys: Vec<String> = users.iter().map(User::key).collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        last.insert(k, i);
    }
    let latest: Vec<(&str, &User)> = keys
        .iter()
        .zip(users)
        .enumerate()
        .filter(|(i, (k, _))| last.get(k.as_str()) == Some(i))
        .map(|(_, (k, u))| (k.as_str(), u))
        .collect();
    let mut encoded: Vec<Vec<u8>> = Vec::with_capacity(BATCH.min(latest.len()));
    let mut members: Vec<(String, usize)> = Vec::new();
    for (n, chunk) in latest.chunks(BATCH).enumerate() {
        progress(n * BATCH, latest.len());
        // What the store holds of these users now: a password hash survives an import that
        // leaves the password's time alone, and the old groups' index rows go.
        let old = old_records(tx, chunk)?;
        encoded.clear();
        members.clear();
        for (i, (k, u)) in chunk.iter().enumerate() {
            let mut user = (*u).clone();
            user.normalize();
            let mut stored = Stored::new(user);
            if let Some(Some((at, hash))) = old.get(*k) {
                if stored.user.password_set_at == Some(*at) {
                    stored.password_hash = Some(hash.clone());
                }
            }
            encoded.push(record::to_bytes(k, &stored));
            members.extend(stored.user.groups.iter().map(|g| (key_of(g), i)));
        }
        let rows: Vec<(&str, &[u8])> = (chunk.iter())
            .zip(&encoded)
            .map(|((k, _), r)| (*k, r.as_slice()))
            .collect();
        let pairs: Vec<(&str, &str)> = (members.iter())
            .map(|(g, i)| (g.as_str(), chunk[*i].0))
            .collect();
        if old.is_empty() {
            // None of these users is in the store (a first import, say).
            tx.insert_new_users(&rows, &pairs)?;
        } else {
            tx.upsert_records(&rows)?;
            tx.insert_members(&pairs)?;
        }
    }
    Ok(())
}

/// For each of `users` the store holds: the time and hash of their password, if it has a hash
/// (none for a record that does not decode). Their old group-index rows are deleted here (every
/// member row of a user whose record does not decode: the import replaces that record).
fn old_records(
    tx: &dyn Backend,
    users: &[(&str, &User)],
) -> Result<HashMap<String, Option<(Timestamp, String)>>> {
    let keys: Vec<&str> = users.iter().map(|(k, _)| *k).collect();
    let mut out = HashMap::new();
    let mut gone: Vec<(String, String)> = Vec::new();
    let mut damaged: Vec<String> = Vec::new();
    for (key, stored) in tx.read_records_lenient(&keys)? {
        match stored {
            Some(s) => {
                gone.extend(s.user.groups.iter().map(|g| (key_of(g), key.clone())));
                out.insert(key, s.user.password_set_at.zip(s.password_hash));
            }
            None => {
                out.insert(key.clone(), None);
                damaged.push(key);
            }
        }
    }
    let pairs: Vec<(&str, &str)> = gone.iter().map(|(g, u)| (g.as_str(), u.as_str())).collect();
    tx.delete_members(&pairs)?;
    let damaged: Vec<&str> = damaged.iter().map(String::as_str).collect();
    tx.delete_members_of(&damaged)?;
    Ok(out)
}
