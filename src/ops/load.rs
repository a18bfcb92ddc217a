//! Loading a workflow's inputs: the manifests (read, then parsed on up to two threads), the
//! policies in force, and the checks of the manifests that need the store.

use super::Settings;
use crate::error::{Failure, Kind};
use crate::manifest::{self, Manifest, SourceFile};
use crate::model::Timestamp;
use crate::policy::{Policy, PolicySource};
use crate::sources;
use crate::store::Store;
use std::path::{Path, PathBuf};

/// The policies in force and, for `-v`, where they were read from.
pub struct Policies {
    pub policy: Policy,
    /// `policies: built-in (…)` or `policies: DIR/roles.yaml, DIR/guardrails.yaml`.
    pub note: String,
}

/// `--policies DIR`, else `./policies` when it exists, else the built-in defaults; the policy
/// records which of them it is, for the plan's header and `mfactl policies`. Unreadable or
/// invalid policy files are invalid input, like invalid manifests.
pub fn policies(settings: &Settings) -> Result<Policies, Failure> {
    let (dir, source) = match policy_dir(settings) {
        Some(d) if settings.policies.is_some() => {
            let source = PolicySource::Dir(d.display().to_string());
            (d, source)
        }
        Some(d) => (d, PolicySource::WorkingDir),
        None => {
            return Ok(Policies {
                policy: Policy::defaults(),
                note: "policies: built-in (no --policies, and no ./policies here)".into(),
            })
        }
    };
    let read = |name: &str| sources::read_text(&dir.join(name)).map_err(Failure::invalid);
    let (rn, rt) = read("roles.yaml")?;
    let (gn, gt) = read("guardrails.yaml")?;
    let note = format!("policies: {rn}, {gn}");
    Policy::parse(&rn, &rt, &gn, &gt)
        .map(|p| Policies {
            policy: p.with_source(source),
            note,
        })
        .map_err(|e| Failure::invalid(e.to_string()))
}

/// The policy directory in force: `--policies DIR`, else `./policies` when it exists; `None` for
/// the built-in policies.
pub fn policy_dir(settings: &Settings) -> Option<PathBuf> {
    settings
        .policies
        .clone()
        .or_else(|| Some(PathBuf::from("policies")).filter(|d| Path::new(d).is_dir()))
}

/// The warning for guardrails that protect nobody in the store (none listed, or none of those
/// listed exists), or `None`. A real tenant's break-glass accounts are its own to list.
pub fn unprotected_warning(st: &Store, policy: &Policy) -> Result<Option<String>, Failure> {
    let protected = &policy.guardrails.protected_users;
    if !protected.is_empty() && !st.conn().existing_users(protected)?.is_empty() {
        return Ok(None);
    }
    let why = if protected.is_empty() {
        "protected-users is empty"
    } else {
        "none of protected-users is a user in the store"
    };
    Ok(Some(format!(
        "the guardrails protect no user in the store ({why}; policies: {}); list your \
         break-glass accounts under protected-users in guardrails.yaml (./policies or \
         --policies DIR); see `mfactl policies`",
        crate::util::escape_text(&policy.source.to_string())
    )))
}

/// The manifests' problems that only the store can show: users and groups it does not hold.
pub fn unknown_names(
    st: &Store,
    manifests: &[Manifest],
) -> Result<Vec<manifest::Problem>, Failure> {
    let needs = crate::plan::needs(manifests);
    let users = st.conn().existing_users(&needs.user_keys)?;
    let groups = st.conn().load_groups()?;
    Ok(crate::plan::check_known_in(
        manifests,
        &|k| users.contains(k),
        &|g| groups.contains_key(g),
    ))
}

/// The problems every manifest check finds without the store: parsing's, then the offline
/// checks against the policies (future cutoffs, unknown settings).
pub fn offline_problems(input: &Loaded, policy: &Policy, now: Timestamp) -> Vec<manifest::Problem> {
    let mut problems = input.problems.clone();
    problems.extend(crate::plan::check_offline(&input.manifests, policy, now));
    problems
}

/// The manifests as read and parsed, with the problems parsing found. Checks that need the store
/// run in [`super::plan::compute_plan`], which reports these problems together with its own.
pub struct Loaded {
    pub files: Vec<SourceFile>,
    /// Symlinks inside manifest directories, not followed (see [`sources::Found`]).
    pub skipped_links: Vec<String>,
    pub manifests: Vec<Manifest>,
    pub problems: Vec<manifest::Problem>,
}

/// Reads and parses the manifests; unreadable files fail at once.
pub fn manifests(paths: &[PathBuf]) -> Result<Loaded, Failure> {
    let found = sources::read(paths).map_err(|lines| Failure::many(Kind::Invalid, lines))?;
    let (manifests, problems) = parse_all(&found.files);
    Ok(Loaded {
        files: found.files,
        skipped_links: found.skipped_links,
        manifests,
        problems,
    })
}

pub fn parse_all(files: &[SourceFile]) -> (Vec<Manifest>, Vec<manifest::Problem>) {
    // Files parse independently: with more than a few megabytes of them, a second thread parses
    // the second half of the list (by size). Results are joined in file order either way.
    let total: usize = files.iter().map(|f| f.text.len()).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parallel = total >= PARALLEL_PARSE_BYTES && threads >= 2 && files.len() >= 2;
    let parsed: Vec<(Vec<Manifest>, Vec<manifest::Problem>)> = if !parallel {
        files.iter().map(manifest::parse_file).collect()
    } else {
        let mut split = 0;
        let mut seen = 0;
        while split < files.len() - 1 && seen + files[split].text.len() / 2 < total / 2 {
            seen += files[split].text.len();
            split += 1;
        }
        let (first, second) = files.split_at(split.max(1));
        std::thread::scope(|s| {
            let later = s.spawn(|| second.iter().map(manifest::parse_file).collect::<Vec<_>>());
            let mut parsed: Vec<_> = first.iter().map(manifest::parse_file).collect();
            match later.join() {
                Ok(rest) => parsed.extend(rest),
                Err(panic) => std::panic::resume_unwind(panic),
            }
            parsed
        })
    };
    let mut ms = Vec::new();
    let mut problems = Vec::new();
    for (m, p) in parsed {
        ms.extend(m);
        problems.extend(p);
    }
    (ms, problems)
}

/// Below this many bytes of manifests, a second parsing thread costs more than it saves.
const PARALLEL_PARSE_BYTES: usize = 1 << 20;

/// The failure for invalid manifests: every problem, then a one-line verdict.
pub fn invalid(located: Vec<manifest::Located>) -> Failure {
    let n = located.len();
    let mut lines: Vec<String> = located.iter().map(|l| l.to_string()).collect();
    lines.push(format!(
        "error: {n} problem{} in the manifests; nothing was planned or applied",
        if n == 1 { "" } else { "s" }
    ));
    Failure::many(Kind::Invalid, lines)
}
