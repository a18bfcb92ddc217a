//! `--signers FILE`: who asked for each manifest's changes. Git names the signer of the latest
//! commit that changed each manifest file (and each policy file); the store then says what roles
//! each signer holds. The verdict on each change is the core's (`policy::Requesters::judge`).

use super::load::Loaded;
use crate::error::Failure;
use crate::git::{self, Provenance, Signers, Verdict};
use crate::model::key_of;
use crate::plan::Actual;
use crate::policy::{Actor, Requester, Requesters};
use crate::store;
use crate::store::Conn as Connection;
use crate::util::escape_text;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The role a policy file's signer must hold for the role table to count.
pub const POLICY_SIGNER_ROLE: &str = "global-administrator";

/// One manifest's (or policy file's) signature as git verified it: the principals its key is
/// listed for, the key and the commit; or why no one can be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    Signed {
        file: String,
        principals: Vec<String>,
        key: String,
        commit: String,
    },
    Refused {
        file: String,
        reason: String,
    },
}

impl Signature {
    fn of(v: &Verdict) -> Signature {
        match v {
            Verdict::Signed(s) => Signature::Signed {
                file: s.file.display().to_string(),
                principals: s.principals.clone(),
                key: s.fingerprint.clone(),
                commit: s.commit.clone(),
            },
            Verdict::Refused(r) => Signature::Refused {
                file: r.file.display().to_string(),
                reason: escape_text(&r.to_string()).into_owned(),
            },
        }
    }
}

/// Git's answer for every manifest and policy file, before the store is asked about roles.
#[derive(Debug, Clone, Default)]
pub struct Signatures {
    /// `--actor`, recorded as who ran the command.
    pub ran_by: Option<String>,
    /// By manifest name.
    pub manifests: BTreeMap<String, Signature>,
    /// The policy files, when they lie in a git work tree; empty for built-in policies or a
    /// policy directory outside git.
    pub policies: Vec<Signature>,
    /// Why the policy files cannot count at all (not committed and unmodified).
    pub policies_refused: Option<String>,
}

/// Reads the allowed-signers file and asks git who signed each manifest (and each policy file
/// of `policy_dir`). Manifests that are not committed and unmodified fail (exit 1, naming them).
pub fn read(
    signers: &Path,
    input: &Loaded,
    policy_dir: Option<&Path>,
    ran_by: Option<&str>,
) -> Result<Signatures, Failure> {
    let named: Vec<(&str, &str)> = input
        .manifests
        .iter()
        .map(|m| (m.name.as_str(), m.file.as_str()))
        .collect();
    read_named(signers, &named, policy_dir, ran_by)
}

/// [`read`], for manifests given as (name, file): a saved plan's, checked again at apply.
pub fn read_named(
    signers: &Path,
    named: &[(&str, &str)],
    policy_dir: Option<&Path>,
    ran_by: Option<&str>,
) -> Result<Signatures, Failure> {
    let signers = Signers::load(signers).map_err(|e| Failure::invalid(e.to_string()))?;
    let mut git = Provenance::new(signers);
    let files: Vec<&str> = {
        let mut f: Vec<&str> = named.iter().map(|(_, file)| *file).collect();
        f.sort_unstable();
        f.dedup();
        f
    };
    let verdicts = git
        .verdicts(&files)
        .map_err(|e| Failure::invalid(format!("--signers: {e}")))?;
    let by_file: BTreeMap<&str, Signature> = files
        .iter()
        .zip(&verdicts)
        .map(|(f, v)| (*f, Signature::of(v)))
        .collect();
    let manifests = named
        .iter()
        .filter_map(|(name, file)| Some((name.to_string(), by_file.get(file)?.clone())))
        .collect();
    let (policies, policies_refused) = match policy_dir {
        None => (Vec::new(), None),
        Some(dir) => policy_signatures(&mut git, dir)?,
    };
    Ok(Signatures {
        ran_by: ran_by.map(str::to_string),
        manifests,
        policies,
        policies_refused,
    })
}

/// The signatures of `DIR/roles.yaml` and `DIR/guardrails.yaml`. A directory outside any git
/// work tree is the operator's own (nothing to check); one inside must be committed and
/// unmodified, or every change is denied.
fn policy_signatures(
    git: &mut Provenance,
    dir: &Path,
) -> Result<(Vec<Signature>, Option<String>), Failure> {
    let files: Vec<PathBuf> = ["roles.yaml", "guardrails.yaml"]
        .iter()
        .map(|n| dir.join(n))
        .collect();
    match git.verdicts(&files) {
        Ok(v) => Ok((v.iter().map(Signature::of).collect(), None)),
        Err(git::Error::NotInWorkTree { .. }) => Ok((Vec::new(), None)),
        Err(e @ (git::Error::NotCommitted { .. } | git::Error::NoHistory { .. })) => Ok((
            Vec::new(),
            Some(format!(
                "the policy files in {} are not signed: {}; every change is denied",
                dir.display(),
                escape_text(&e.to_string())
            )),
        )),
        Err(e) => Err(Failure::invalid(format!("--signers: {e}"))),
    }
}

/// The requesters the core judges with: each signer as the store knows them (roles, enabled),
/// read in the snapshot `conn` is in. A key listed for several principals names the first one
/// that is a user in the store.
pub fn requesters(conn: &Connection, sigs: &Signatures) -> Result<Requesters, Failure> {
    let mut wanted: Vec<String> = sigs
        .manifests
        .values()
        .chain(&sigs.policies)
        .filter_map(|s| match s {
            Signature::Signed { principals, .. } => Some(principals.iter().map(|p| key_of(p))),
            Signature::Refused { .. } => None,
        })
        .flatten()
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let known = Actual {
        users: conn.load_keys(&wanted)?,
        ..Actual::default()
    };
    let signer = |principals: &[String]| -> Actor {
        let id = principals
            .iter()
            .find(|p| known.users.contains_key(&key_of(p)))
            .or(principals.first())
            .map(String::as_str);
        store::load_actor(&known, id)
    };
    let by_manifest = sigs
        .manifests
        .iter()
        .map(|(name, s)| {
            let r = match s {
                Signature::Signed {
                    file,
                    principals,
                    key,
                    commit,
                } => Requester::Signed {
                    signer: signer(principals),
                    key: key.clone(),
                    commit: commit.clone(),
                    file: file.clone(),
                },
                Signature::Refused { file, reason } => Requester::Refused {
                    file: file.clone(),
                    reason: reason.clone(),
                },
            };
            (name.clone(), r)
        })
        .collect();
    let mut policy_refused = sigs.policies_refused.clone();
    for s in &sigs.policies {
        if policy_refused.is_some() {
            break;
        }
        policy_refused = match s {
            Signature::Refused { reason, .. } => Some(format!(
                "the role table cannot be trusted: {reason}; every change is denied"
            )),
            Signature::Signed {
                file,
                principals,
                commit,
                ..
            } => match signer(principals) {
                Actor::Known { roles, .. } if roles.iter().any(|r| r == POLICY_SIGNER_ROLE) => None,
                who => Some(format!(
                    "policy file {file}: commit {}, the latest to change it, is signed by {}, \
                     who is not an enabled {POLICY_SIGNER_ROLE}; only a {POLICY_SIGNER_ROLE} \
                     may change the role table, so every change is denied",
                    git::short(commit),
                    escape_text(who.id().unwrap_or("nobody"))
                )),
            },
        };
    }
    Ok(Requesters {
        ran_by: sigs.ran_by.clone(),
        by_manifest,
        policy_refused,
    })
}
