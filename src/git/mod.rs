//! Who asked for a manifest: the edge between mfactl and git. For each manifest file it finds the
//! latest commit that changed it (`git log -1 -- FILE`, default history simplification), checks
//! that commit's SSH signature in-process against an allowed-signers file, and returns a
//! [`Verdict`]: the signer's principals, key fingerprint and commit, or a refusal whose reason
//! names the file, the commit and what was wrong. Files that are not committed and unmodified are
//! an [`Error`], not a verdict. Nothing here prints; git is run, never ssh-keygen.
//!
//! - [`signers`]: the allowed-signers file and the judgement of one signature against it;
//! - [`commit`]: a raw commit object split into signature, signed payload and committer time;
//! - `repo`: every `git` invocation.

pub mod commit;
mod repo;
pub mod signers;

pub use commit::{CommitObject, ObjectFormat};
pub use repo::FileState;
pub use signers::{Entry, Problem, Signer, Signers, Skipped};

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that stops a check as a whole (a refused signature is a [`Verdict`], not this).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: cannot read the allowed-signers file: {source}", path.display())]
    SignersRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {problem}", path.display())]
    SignersLine {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("cannot run git (is it installed and on PATH?): {source}")]
    GitUnavailable { source: std::io::Error },
    #[error("`git {args}` failed in {}: {stderr}", dir.display())]
    Git {
        dir: PathBuf,
        args: String,
        stderr: String,
    },
    #[error("{}: cannot read the manifest: {source}", file.display())]
    Manifest {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not in a git work tree, so no commit says who asked for it ({detail})", file.display())]
    NotInWorkTree { file: PathBuf, detail: String },
    #[error("{}: resolves to {}, outside the git work tree {}", file.display(), resolved.display(), top.display())]
    OutsideWorkTree {
        file: PathBuf,
        resolved: PathBuf,
        top: PathBuf,
    },
    #[error("{}", uncommitted_message(files))]
    NotCommitted { files: Vec<Uncommitted> },
    #[error("{}: git finds no commit that changed it", file.display())]
    NoHistory { file: PathBuf },
    #[error(
        "{}: the repository is a shallow clone whose history stops at commit {}, so git cannot \
         tell which commit last changed it; fetch the whole history (`git fetch --unshallow`, \
         or `fetch-depth: 0` with actions/checkout)",
        file.display(),
        short(commit)
    )]
    Shallow { file: PathBuf, commit: String },
}

/// A manifest that is not committed and unmodified, and in what way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncommitted {
    /// As the caller named it.
    pub file: PathBuf,
    pub state: FileState,
}

fn uncommitted_message(files: &[Uncommitted]) -> String {
    let each: Vec<String> = files
        .iter()
        .map(|u| format!("{} is {}", u.file.display(), u.state.describe()))
        .collect();
    format!(
        "only committed, unmodified manifests have a signer: {}; commit them (signed) first",
        each.join("; ")
    )
}

/// The requester of one manifest file: who signed the latest commit that changed it, or why
/// nobody can be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Signed(Signed),
    Refused(Refusal),
}

/// A manifest whose latest commit carries a valid signature by a listed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// As the caller named it.
    pub file: PathBuf,
    /// The full id of the latest commit that changed the file.
    pub commit: String,
    /// Every principal the key is listed for at the commit time; the caller picks.
    pub principals: Vec<String>,
    /// `SHA256:<base64-no-pad>` of the signing key, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// A manifest whose latest commit names no signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// As the caller named it.
    pub file: PathBuf,
    /// The full id of the latest commit that changed the file.
    pub commit: String,
    /// The allowed-signers file the signature was checked against (named in the reason).
    pub signers: PathBuf,
    pub problem: Problem,
}

impl Verdict {
    pub fn file(&self) -> &Path {
        match self {
            Verdict::Signed(s) => &s.file,
            Verdict::Refused(r) => &r.file,
        }
    }

    pub fn commit(&self) -> &str {
        match self {
            Verdict::Signed(s) => &s.commit,
            Verdict::Refused(r) => &r.commit,
        }
    }

    pub fn signed(&self) -> Option<&Signed> {
        match self {
            Verdict::Signed(s) => Some(s),
            Verdict::Refused(_) => None,
        }
    }

    /// The refusal's sentence; `None` when signed.
    pub fn reason(&self) -> Option<String> {
        match self {
            Verdict::Signed(_) => None,
            Verdict::Refused(r) => Some(r.to_string()),
        }
    }
}

/// The first characters of a commit id, as people quote them.
pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// `2024-05-01 12:00:00 UTC`, or the raw number where it is out of range.
fn when(t: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_else(|| format!("@{t}"))
}

impl fmt::Display for Refusal {
    /// One sentence: the file, the short commit, and what was wrong with its signature.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        let commit = short(&self.commit);
        let signers = self.signers.display();
        let head = format!("{file}: commit {commit}, the latest to change it,");
        let who = |fingerprint: &str, principals: &[String]| {
            format!("is signed by key {fingerprint} ({})", principals.join(", "))
        };
        match &self.problem {
            Problem::Unsigned => write!(
                f,
                "{head} is not signed; only commits signed with an SSH key listed in {signers} name who asked for a change"
            ),
            Problem::Gpg => write!(
                f,
                "{head} is signed with GPG (OpenPGP); only SSH signatures by keys listed in {signers} are accepted"
            ),
            Problem::BadSignature { detail } => {
                write!(f, "{head} has a signature that is not valid: {detail}")
            }
            Problem::UnknownKey {
                fingerprint,
                skipped: None,
            } => write!(
                f,
                "{head} is signed by key {fingerprint}, which {signers} does not list"
            ),
            Problem::UnknownKey {
                fingerprint,
                skipped: Some(s),
            } => write!(
                f,
                "{head} is signed by key {fingerprint}, which {signers} lists only on line {}, and that line is skipped: {}",
                s.line, s.why
            ),
            Problem::Expired {
                fingerprint,
                principals,
                line,
                valid_before,
                committed,
            } => write!(
                f,
                "{head} {}, whose listing expired at {} (valid-before, line {line} of {signers}), before the commit time {}",
                who(fingerprint, principals),
                when(*valid_before),
                when(*committed)
            ),
            Problem::NotYetValid {
                fingerprint,
                principals,
                line,
                valid_after,
                committed,
            } => write!(
                f,
                "{head} {}, whose listing starts only at {} (valid-after, line {line} of {signers}), after the commit time {}",
                who(fingerprint, principals),
                when(*valid_after),
                when(*committed)
            ),
            Problem::NamespaceNotAllowed {
                fingerprint,
                principals,
                line,
                namespaces,
            } => write!(
                f,
                "{head} {}, which line {line} of {signers} allows only in the namespaces \"{namespaces}\", not \"git\"",
                who(fingerprint, principals)
            ),
        }
    }
}

/// A work tree found for some manifest: its top (canonical) and object format.
struct WorkTree {
    top: PathBuf,
    format: ObjectFormat,
}

/// A manifest located in a work tree.
struct Located {
    given: PathBuf,
    tree: usize,
    relative: PathBuf,
}

/// Names requesters against one allowed-signers file, remembering what cannot change: the latest
/// change of a path as of a given HEAD, and the judgement of a commit (commits are immutable and
/// the signers are fixed for its lifetime), so that `watch` re-asks git only about what moved.
#[derive(Debug)]
pub struct Provenance {
    signers: Signers,
    /// (work tree top, HEAD id, relative path) → latest commit that changed the path.
    changes: HashMap<(PathBuf, String, PathBuf), String>,
    /// Commit id → judgement.
    judged: HashMap<String, Result<Signer, Problem>>,
    /// Work tree top → the commits where a shallow clone's history stops (none in a full one).
    shallow: HashMap<PathBuf, Vec<String>>,
}

impl Provenance {
    pub fn new(signers: Signers) -> Provenance {
        Provenance {
            signers,
            changes: HashMap::new(),
            judged: HashMap::new(),
            shallow: HashMap::new(),
        }
    }

    pub fn signers(&self) -> &Signers {
        &self.signers
    }

    /// A verdict for each file, in the order given. Errors when a file cannot be located in a
    /// git work tree, or when any file is not committed and unmodified (all such files named in
    /// one error); git's own failures are errors too.
    pub fn verdicts<P: AsRef<Path>>(&mut self, files: &[P]) -> Result<Vec<Verdict>, Error> {
        let (trees, located) = locate(files)?;

        let mut uncommitted = Vec::new();
        for (index, tree) in trees.iter().enumerate() {
            let mine: Vec<&Located> = located.iter().filter(|l| l.tree == index).collect();
            let paths: Vec<&Path> = mine.iter().map(|l| l.relative.as_path()).collect();
            let states = repo::uncommitted(&tree.top, &paths)?;
            for l in mine {
                if let Some(&state) = states.get(&l.relative) {
                    uncommitted.push((l.given.clone(), state));
                }
            }
        }
        if !uncommitted.is_empty() {
            // In the caller's order, whatever the work trees.
            let order: HashMap<&Path, usize> = located
                .iter()
                .enumerate()
                .map(|(i, l)| (l.given.as_path(), i))
                .collect();
            uncommitted.sort_by_key(|(file, _)| order.get(file.as_path()).copied());
            let files = uncommitted
                .into_iter()
                .map(|(file, state)| Uncommitted { file, state })
                .collect();
            return Err(Error::NotCommitted { files });
        }
        // One HEAD per work tree, read once, so that every file of a call is judged as of it.
        let heads = trees
            .iter()
            .map(|t| repo::head(&t.top))
            .collect::<Result<Vec<String>, Error>>()?;
        // Latest changes as of a HEAD that has moved on are never asked for again.
        self.changes.retain(|(top, head, _), _| {
            trees
                .iter()
                .zip(&heads)
                .all(|(t, h)| &t.top != top || h == head)
        });

        let mut verdicts = Vec::with_capacity(located.len());
        for l in &located {
            let tree = &trees[l.tree];
            let commit = self.last_change(tree, &heads[l.tree], l)?;
            let judged = self.judge_cached(&tree.top, tree.format, &commit)?;
            verdicts.push(match judged {
                Ok(signer) => Verdict::Signed(Signed {
                    file: l.given.clone(),
                    commit,
                    principals: signer.principals,
                    fingerprint: signer.fingerprint,
                }),
                Err(problem) => Verdict::Refused(Refusal {
                    file: l.given.clone(),
                    commit,
                    signers: self.signers.path().to_path_buf(),
                    problem,
                }),
            });
        }
        Ok(verdicts)
    }

    /// The judgement of one commit (any revision git resolves in the repository around `dir`),
    /// with its full id: whether its signature names a signer, whatever files it changed.
    pub fn judge_commit(
        &mut self,
        dir: &Path,
        rev: &str,
    ) -> Result<(String, Result<Signer, Problem>), Error> {
        let id = repo::commit_id(dir, rev)?;
        let format = repo::object_format(dir)?;
        let judged = self.judge_cached(dir, format, &id)?;
        Ok((id, judged))
    }

    fn last_change(&mut self, tree: &WorkTree, head: &str, l: &Located) -> Result<String, Error> {
        let key = (tree.top.clone(), head.to_string(), l.relative.clone());
        if let Some(commit) = self.changes.get(&key) {
            return Ok(commit.clone());
        }
        let commit =
            repo::last_change(&tree.top, head, &l.relative)?.ok_or_else(|| Error::NoHistory {
                file: l.given.clone(),
            })?;
        // Where a shallow clone's history stops, git attributes every file the kept history did
        // not change to the boundary commit: its signer did not ask for them.
        if !self.shallow.contains_key(&tree.top) {
            let boundaries = repo::shallow_boundaries(&tree.top)?;
            self.shallow.insert(tree.top.clone(), boundaries);
        }
        if self
            .shallow
            .get(&tree.top)
            .is_some_and(|b| b.contains(&commit))
        {
            return Err(Error::Shallow {
                file: l.given.clone(),
                commit,
            });
        }
        self.changes.insert(key, commit.clone());
        Ok(commit)
    }

    fn judge_cached(
        &mut self,
        dir: &Path,
        format: ObjectFormat,
        commit: &str,
    ) -> Result<Result<Signer, Problem>, Error> {
        if let Some(judged) = self.judged.get(commit) {
            return Ok(judged.clone());
        }
        let raw = repo::cat_commit(dir, commit)?;
        let judged = self.signers.judge(&CommitObject::parse(&raw, format));
        self.judged.insert(commit.to_string(), judged.clone());
        Ok(judged)
    }
}

/// Finds each file's work tree (one `git rev-parse` per distinct directory) and its path there.
fn locate<P: AsRef<Path>>(files: &[P]) -> Result<(Vec<WorkTree>, Vec<Located>), Error> {
    let mut trees: Vec<WorkTree> = Vec::new();
    let mut by_dir: HashMap<PathBuf, usize> = HashMap::new();
    let mut located = Vec::with_capacity(files.len());
    for file in files {
        let given = file.as_ref().to_path_buf();
        let manifest = |source| Error::Manifest {
            file: given.clone(),
            source,
        };
        // Symlinks are followed: the file judged is the one whose content is read.
        let resolved = std::fs::canonicalize(&given).map_err(manifest)?;
        if !resolved.is_file() {
            return Err(manifest(std::io::Error::other("not a regular file")));
        }
        let dir = resolved.parent().unwrap_or(Path::new("/")).to_path_buf();
        let tree = match by_dir.get(&dir) {
            Some(&tree) => tree,
            None => {
                let (top, format) =
                    repo::work_tree(&dir)?.map_err(|detail| Error::NotInWorkTree {
                        file: given.clone(),
                        detail,
                    })?;
                let top = std::fs::canonicalize(&top).map_err(manifest)?;
                let index = match trees.iter().position(|t| t.top == top) {
                    Some(index) => index,
                    None => {
                        trees.push(WorkTree { top, format });
                        trees.len() - 1
                    }
                };
                by_dir.insert(dir, index);
                index
            }
        };
        let top = &trees[tree].top;
        let relative = match resolved.strip_prefix(top) {
            Ok(relative) => relative.to_path_buf(),
            Err(_) => {
                return Err(Error::OutsideWorkTree {
                    file: given,
                    resolved,
                    top: top.clone(),
                })
            }
        };
        located.push(Located {
            given,
            tree,
            relative,
        });
    }
    Ok((trees, located))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(problem: Problem) -> String {
        Refusal {
            file: PathBuf::from("manifests/team.yaml"),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            signers: PathBuf::from("/etc/mfactl/signers"),
            problem,
        }
        .to_string()
    }

    #[test]
    fn every_reason_names_the_file_the_short_commit_and_the_fault() {
        let fp = "SHA256:POxZ/H68/uI/Po/6xnKqY/sltdc0lHjsDkdKWnkR1ZE".to_string();
        let cases = [
            (Problem::Unsigned, "is not signed"),
            (Problem::Gpg, "signed with GPG"),
            (
                Problem::BadSignature {
                    detail: "it does not match".into(),
                },
                "not valid: it does not match",
            ),
            (
                Problem::UnknownKey {
                    fingerprint: fp.clone(),
                    skipped: None,
                },
                "which /etc/mfactl/signers does not list",
            ),
            (
                Problem::UnknownKey {
                    fingerprint: fp.clone(),
                    skipped: Some(Skipped {
                        line: 4,
                        fingerprint: fp.clone(),
                        why: "it is a cert-authority line".into(),
                    }),
                },
                "only on line 4, and that line is skipped: it is a cert-authority line",
            ),
            (
                Problem::Expired {
                    fingerprint: fp.clone(),
                    principals: vec!["alice".into()],
                    line: 2,
                    valid_before: 1_704_067_200,
                    committed: 1_704_067_201,
                },
                "(alice), whose listing expired at 2024-01-01 00:00:00 UTC (valid-before, line 2 of /etc/mfactl/signers), before the commit time 2024-01-01 00:00:01 UTC",
            ),
            (
                Problem::NotYetValid {
                    fingerprint: fp.clone(),
                    principals: vec!["alice".into(), "al".into()],
                    line: 3,
                    valid_after: 1_704_067_200,
                    committed: 0,
                },
                "(alice, al), whose listing starts only at 2024-01-01 00:00:00 UTC",
            ),
            (
                Problem::NamespaceNotAllowed {
                    fingerprint: fp.clone(),
                    principals: vec!["alice".into()],
                    line: 5,
                    namespaces: "file".into(),
                },
                "line 5 of /etc/mfactl/signers allows only in the namespaces \"file\", not \"git\"",
            ),
        ];
        for (problem, want) in cases {
            let reason = refusal(problem);
            assert!(
                reason
                    .starts_with("manifests/team.yaml: commit 0123456, the latest to change it, "),
                "{reason}"
            );
            assert!(reason.contains(want), "{reason}");
        }
    }

    #[test]
    fn uncommitted_files_are_all_named() {
        let e = Error::NotCommitted {
            files: vec![
                Uncommitted {
                    file: "a.yaml".into(),
                    state: FileState::Untracked,
                },
                Uncommitted {
                    file: "b.yaml".into(),
                    state: FileState::Modified,
                },
            ],
        };
        let shown = e.to_string();
        assert!(shown.contains("a.yaml is untracked"), "{shown}");
        assert!(shown.contains("b.yaml is modified"), "{shown}");
        assert_eq!(short("abc"), "abc");
        assert_eq!(when(i64::MAX), format!("@{}", i64::MAX));
    }
}
