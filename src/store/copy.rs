//! `store copy`: every row of one store into a blank store of either kind, in one write
//! transaction on the destination and one snapshot of the source. Records move as their bytes
//! (password and app-password hashes included) and audit rows as their stored text, so the copy's
//! audit chain verifies exactly as the source's does and its export is the same, byte for byte.

use super::backend::Piece;
use super::{Result, Store, StoreError};

/// Pieces written to the destination per call.
const PER_WRITE: usize = 4_096;

/// What a copy moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub users: usize,
    pub groups: usize,
    pub audit_records: usize,
    pub applied_plans: usize,
    pub revision: i64,
}

/// Copies `from` into `to`, which must be blank (initialised, nothing imported or applied).
pub fn copy(from: &Store, to: &mut Store) -> Result<Copied> {
    if !to.conn().is_blank()? {
        return Err(StoreError::Invalid(format!(
            "store {} is not empty; `store copy` writes only into a store that `mfactl init` \
             just created, so that nothing in it is overwritten",
            to.path().display()
        )));
    }
    let tx = to.begin()?;
    // Checked again under the write lock: another copy or import may have got there first.
    if !tx.is_blank()? {
        return Err(StoreError::Invalid(format!(
            "store {} stopped being empty while the copy began; nothing was copied",
            tx.name().display()
        )));
    }
    let mut copied = Copied::default();
    let mut pending: Vec<Piece> = Vec::with_capacity(PER_WRITE);
    super::read_snapshot(from.conn(), || {
        from.conn().dump(&mut |piece| {
            match &piece {
                Piece::Revision(r) => copied.revision = *r,
                Piece::Group { .. } => copied.groups += 1,
                Piece::User { .. } => copied.users += 1,
                Piece::Audit(_) => copied.audit_records += 1,
                Piece::AppliedPlan { .. } => copied.applied_plans += 1,
                Piece::Member { .. } | Piece::AuditHead { .. } => {}
            }
            pending.push(piece);
            if pending.len() == PER_WRITE {
                tx.restore(&pending)?;
                pending.clear();
            }
            Ok(())
        })
    })?;
    tx.restore(&pending)?;
    tx.commit()?;
    Ok(copied)
}
