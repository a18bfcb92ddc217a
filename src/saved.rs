//! The saved-plan file: the JSON plan that `plan --out` writes, plus a fingerprint of each user it
//! changes; `apply --plan` reads it back. Pure: text in, values out.

use crate::model::{ActionKind, Timestamp};
use crate::plan::Planned;
use serde::Deserialize;
use std::collections::BTreeMap;

/// What `apply --plan` needs from a saved plan. Unknown fields are ignored: later versions only add.
#[derive(Debug, Deserialize)]
pub struct SavedPlan {
    pub format_version: u64,
    pub plan_id: String,
    pub changes: Vec<SavedChange>,
    /// User id → [`crate::plan::fingerprint`] at plan time.
    #[serde(default)]
    pub fingerprints: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
pub struct SavedChange {
    pub user: String,
    pub action: ActionKind,
    #[serde(default)]
    pub cutoff: Option<Timestamp>,
    #[serde(default)]
    pub sources: Vec<String>,
}

pub fn parse(file: &str, text: &str) -> Result<SavedPlan, String> {
    let p: SavedPlan = serde_json::from_str(text).map_err(|e| {
        format!("{file}: not a saved mfactl plan ({e}); write one with `mfactl plan --out FILE`")
    })?;
    if p.format_version != crate::render::json::FORMAT_VERSION {
        return Err(format!(
            "{file}: saved plan format_version {} is not the {} this mfactl reads",
            p.format_version,
            crate::render::json::FORMAT_VERSION
        ));
    }
    if p.fingerprints.is_none() {
        return Err(format!(
            "{file}: this JSON plan has no fingerprints, so its freshness cannot be checked; \
             save plans with `mfactl plan --out FILE`"
        ));
    }
    Ok(p)
}

impl SavedPlan {
    pub fn planned(&self) -> Vec<Planned> {
        self.changes
            .iter()
            .map(|c| Planned {
                user: c.user.clone(),
                kind: c.action,
                cutoff: c.cutoff,
                sources: c.sources.clone(),
            })
            .collect()
    }
}
