//! `plan --diff`: per user, a unified diff of the actual state against the state after apply, both
//! in the `store export` format, so a reviewer sees exactly which objects go.

use crate::model::{key_of, Action};
use crate::plan::{simulate, Actual, Change};
use crate::util::escape_text;
use std::collections::BTreeMap;

/// User id (as the store spells it) → unified diff, for every user these changes touch.
pub fn user_diffs(changes: &[Change], actual: &Actual) -> BTreeMap<String, String> {
    let mut actions: BTreeMap<&str, Vec<Action>> = BTreeMap::new();
    for c in changes {
        actions.entry(&c.user).or_default().push(c.action.clone());
    }
    let mut out = BTreeMap::new();
    for (user, acts) in actions {
        let Some(before) = actual.users.get(&key_of(user)) else {
            continue;
        };
        let after = simulate(before, &acts);
        let a = serde_yaml::to_string(before).unwrap_or_default();
        let b = serde_yaml::to_string(&after).unwrap_or_default();
        let diff = similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(3)
            // The id is escaped here, before the lines are split: a newline in it would
            // otherwise end the header and forge the lines after it.
            .header(
                &format!("{} (actual)", escape_text(user)),
                &format!("{} (after apply)", escape_text(user)),
            )
            .to_string();
        // Lines stay lines; anything else that could steer a terminal is shown escaped.
        let safe: String = diff
            .lines()
            .map(|l| format!("{}\n", escape_text(l)))
            .collect();
        out.insert(user.to_string(), safe);
    }
    out
}

/// The diffs as text, after the plan.
pub fn text(diffs: &BTreeMap<String, String>) -> String {
    diffs.values().map(|d| format!("\n{d}")).collect()
}
