//! Every call to the `git` program: finding a file's work tree, asking in bulk whether files are
//! committed and unmodified, the latest commit that changed a file, and a commit's raw object.
//! Only plumbing-stable output is read (`-z`, `--porcelain=v1`, object ids), never messages.
//!
//! Hygiene, so that what git answers depends on the repository and not on the caller's
//! environment: the variables that point git at another repository or inject configuration are
//! removed; replace refs, pathspec magic, lazy fetches, prompts, optional index writes and the
//! fsmonitor are off; paths are passed after `--` and read back NUL-separated and unquoted.
//! The system and global configuration stay (`GIT_CONFIG_NOSYSTEM` is not set): they carry
//! `safe.directory` and the line-ending rules by which git itself decides whether a file is
//! modified, and nothing read here changes with the rest of them.

use super::commit::ObjectFormat;
use super::Error;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Variables that would make git read another repository, index or object store than the one
/// around the file, or add configuration the user did not write.
const REMOVED_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_REPLACE_REF_BASE",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG",
    "GIT_GLOB_PATHSPECS",
    "GIT_NOGLOB_PATHSPECS",
    "GIT_ICASE_PATHSPECS",
];

/// Paths per command line: well under any ARG_MAX, few enough calls for thousands of files.
const PATHS_PER_CALL: usize = 500;

/// A `git` command run in `dir`, with the hygiene of the module doc.
fn git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args([
            "--no-replace-objects",
            "--literal-pathspecs",
            "--no-optional-locks",
            "-c",
            "core.quotepath=off",
            "-c",
            "core.fsmonitor=false",
        ])
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_NO_LAZY_FETCH", "1");
    for name in REMOVED_ENV {
        command.env_remove(name);
    }
    command
}

/// Runs `git ARGS` in `dir`; its stdout, or an error with its stderr.
fn run(dir: &Path, args: &[&OsStr]) -> Result<Vec<u8>, Error> {
    let output = git(dir)
        .args(args)
        .output()
        .map_err(|source| Error::GitUnavailable { source })?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(Error::Git {
            dir: dir.to_path_buf(),
            args: args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// The top of the work tree around `dir` and its object format; `Err(detail)` when `dir` is in
/// no work tree (git's own words), an [`Error`] when git cannot run at all.
pub(crate) fn work_tree(dir: &Path) -> Result<Result<(PathBuf, ObjectFormat), String>, Error> {
    let args = [
        os("rev-parse"),
        os("--show-toplevel"),
        os("--show-object-format"),
    ];
    let out = match run(dir, &args) {
        Ok(out) => out,
        Err(Error::Git { stderr, .. }) => return Ok(Err(stderr)),
        Err(e) => return Err(e),
    };
    // Two lines; the first, a path, may itself hold a newline, so cut at the last one.
    let out = out.strip_suffix(b"\n").unwrap_or(&out);
    let Some(cut) = out.iter().rposition(|&b| b == b'\n') else {
        return Ok(Err("git printed no work tree".into()));
    };
    let (top, format) = (&out[..cut], &out[cut + 1..]);
    let Some(format) = std::str::from_utf8(format)
        .ok()
        .and_then(ObjectFormat::from_name)
    else {
        return Ok(Err(format!(
            "unknown object format {:?}",
            String::from_utf8_lossy(format)
        )));
    };
    if top.is_empty() {
        return Ok(Err("not in a work tree (a bare repository?)".into()));
    }
    Ok(Ok((PathBuf::from(OsStr::from_bytes(top)), format)))
}

/// Why git cannot vouch that a file is what HEAD holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Not in the index (including ignored files).
    Untracked,
    /// The index differs from HEAD: added, changed, removed or renamed, not yet committed.
    Staged,
    /// The work tree differs from the index.
    Modified,
    /// Deleted from the work tree.
    Deleted,
    /// An unresolved merge conflict.
    Unmerged,
    /// Marked assume-unchanged or skip-worktree, so `git status` does not look at it.
    Unwatched,
}

impl FileState {
    /// A phrase for "FILE is …".
    pub fn describe(self) -> &'static str {
        match self {
            FileState::Untracked => "untracked (never added to git, or ignored)",
            FileState::Staged => "staged but not committed",
            FileState::Modified => "modified since it was committed",
            FileState::Deleted => "deleted from the work tree",
            FileState::Unmerged => "in an unresolved merge conflict",
            FileState::Unwatched => {
                "marked assume-unchanged or skip-worktree, so git cannot say whether it changed"
            }
        }
    }
}

/// For each of `paths` (relative to the work tree `top`) that is not committed and unmodified,
/// why not. Two git calls per [`PATHS_PER_CALL`] paths, whatever their number.
pub(crate) fn uncommitted(
    top: &Path,
    paths: &[&Path],
) -> Result<HashMap<PathBuf, FileState>, Error> {
    let mut found = HashMap::new();
    for chunk in paths.chunks(PATHS_PER_CALL) {
        // Tracked files with their tag: lower case is assume-unchanged, S is skip-worktree.
        let mut args = vec![os("ls-files"), os("-v"), os("-z"), os("--")];
        args.extend(chunk.iter().map(|p| p.as_os_str()));
        let listed = run(top, &args)?;
        let mut tracked: HashMap<&[u8], u8> = HashMap::new();
        for entry in listed.split(|&b| b == 0).filter(|e| e.len() > 2) {
            tracked.insert(&entry[2..], entry[0]);
        }
        // Differences between HEAD, index and work tree, for tracked files only (-uno).
        let mut args = vec![
            os("status"),
            os("--porcelain=v1"),
            os("-z"),
            os("--untracked-files=no"),
            os("--no-renames"),
            os("--ignore-submodules=none"),
            os("--"),
        ];
        args.extend(chunk.iter().map(|p| p.as_os_str()));
        let status = run(top, &args)?;
        let mut changed: HashMap<&[u8], (u8, u8)> = HashMap::new();
        for entry in status.split(|&b| b == 0).filter(|e| e.len() > 3) {
            changed.insert(&entry[3..], (entry[0], entry[1]));
        }
        for path in chunk {
            let key = path.as_os_str().as_bytes();
            let state = match (tracked.get(key), changed.get(key)) {
                (None, _) => Some(FileState::Untracked),
                (Some(_), Some(&(x, y))) => Some(classify(x, y)),
                (Some(&tag), None) if tag.is_ascii_lowercase() || tag == b'S' => {
                    Some(FileState::Unwatched)
                }
                (Some(_), None) => None,
            };
            if let Some(state) = state {
                found.insert(path.to_path_buf(), state);
            }
        }
    }
    Ok(found)
}

/// A porcelain v1 `XY` pair: index status, then work-tree status.
fn classify(x: u8, y: u8) -> FileState {
    match (x, y) {
        (b'U', _) | (_, b'U') | (b'A', b'A') | (b'D', b'D') => FileState::Unmerged,
        (b' ', b'D') => FileState::Deleted,
        (b' ', _) => FileState::Modified,
        _ => FileState::Staged,
    }
}

/// The full id of HEAD.
pub(crate) fn head(top: &Path) -> Result<String, Error> {
    commit_id(top, "HEAD")
}

/// The full id of the commit `rev` names.
pub(crate) fn commit_id(dir: &Path, rev: &str) -> Result<String, Error> {
    let spec = format!("{rev}^{{commit}}");
    let out = run(
        dir,
        &[
            os("rev-parse"),
            os("--verify"),
            os("--end-of-options"),
            os(&spec),
        ],
    )?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The object format of the repository around `dir` (work tree or not).
pub(crate) fn object_format(dir: &Path) -> Result<ObjectFormat, Error> {
    let out = run(dir, &[os("rev-parse"), os("--show-object-format")])?;
    let name = String::from_utf8_lossy(&out).trim().to_string();
    ObjectFormat::from_name(&name).ok_or_else(|| Error::Git {
        dir: dir.to_path_buf(),
        args: "rev-parse --show-object-format".into(),
        stderr: format!("unknown object format {name:?}"),
    })
}

/// The latest commit reachable from `head` that changed `path`, with git's default history
/// simplification: what `git log -1 --format=%H -- PATH` prints. Asked of `git rev-list`, the
/// plumbing under `log`, because `log` obeys `log.follow` and `log.showSignature`.
pub(crate) fn last_change(top: &Path, head: &str, path: &Path) -> Result<Option<String>, Error> {
    let out = run(
        top,
        &[
            os("rev-list"),
            os("-1"),
            os(head),
            os("--"),
            path.as_os_str(),
        ],
    )?;
    let id = String::from_utf8_lossy(&out).trim().to_string();
    Ok((!id.is_empty()).then_some(id))
}

/// The commits where a shallow clone's history stops (`$GIT_DIR/shallow`); empty for a full
/// clone.
pub(crate) fn shallow_boundaries(top: &Path) -> Result<Vec<String>, Error> {
    let out = run(top, &[os("rev-parse"), os("--git-path"), os("shallow")])?;
    let path = PathBuf::from(String::from_utf8_lossy(&out).trim());
    let path = if path.is_absolute() {
        path
    } else {
        top.join(path)
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().map(|l| l.trim().to_string()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Git {
            dir: top.to_path_buf(),
            args: format!("reading {}", path.display()),
            stderr: e.to_string(),
        }),
    }
}

/// The raw commit object, as signed (`git cat-file commit ID`).
pub(crate) fn cat_commit(dir: &Path, id: &str) -> Result<Vec<u8>, Error> {
    run(dir, &[os("cat-file"), os("commit"), os(id)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_pairs_map_to_states() {
        assert_eq!(classify(b' ', b'M'), FileState::Modified);
        assert_eq!(classify(b' ', b'T'), FileState::Modified);
        assert_eq!(classify(b' ', b'D'), FileState::Deleted);
        assert_eq!(classify(b'M', b' '), FileState::Staged);
        assert_eq!(classify(b'A', b' '), FileState::Staged);
        assert_eq!(classify(b'M', b'M'), FileState::Staged);
        assert_eq!(classify(b'D', b' '), FileState::Staged);
        assert_eq!(classify(b'U', b'U'), FileState::Unmerged);
        assert_eq!(classify(b'A', b'A'), FileState::Unmerged);
    }
}
