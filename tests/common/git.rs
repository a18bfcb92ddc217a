//! Real git repositories, real SSH keys and real signed commits, for the tests of `--signers`
//! and of `mfactl::git`.
//!
//! A [`Repo`] is a work tree plus a *home*: a separate temp dir that holds everything that must
//! not be in the work tree: the private and public keys (from `ssh-keygen`), the allowed-signers
//! file, `$HOME` for every git run, and (for [`signed_env`]) the store. Commits are made by
//! `git commit -S` with `gpg.format=ssh` and `user.signingkey=KEY.pub` given with `-c`, at a
//! given time (`GIT_AUTHOR_DATE` and `GIT_COMMITTER_DATE`), and git runs with no system or global
//! configuration, so nothing of the machine's git setup leaks in.
//!
//! With [`signed_env`], the [`Env`]'s temp dir *is* the work tree: `mfactl` runs at its top, so
//! `./manifests` and `./policies` are found there as in a CI checkout, while the store and the
//! signers file live in the home, outside the work tree, as they do on a runner (the store is
//! never tracked, and a signers file from the branch under review would let the branch choose its
//! own signers).

use super::{Env, EXAMPLES};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Times, as seconds since the epoch (UTC).
pub const Y2019: i64 = 1_546_300_800; // 2019-01-01
pub const Y2020: i64 = 1_577_836_800; // 2020-01-01
pub const Y2025: i64 = 1_735_689_600; // 2025-01-01
pub const Y2030: i64 = 1_893_456_000; // 2030-01-01
/// 2026-11-01T00:00:00Z, a month before the tests' clock (`super::NOW`).
pub const NOV_2026: i64 = 1_793_491_200;
/// 2026-11-29T00:00:00Z, the day before the tests' clock.
pub const NOV_29: i64 = 1_795_910_400;

/// Whether git and ssh-keygen can run here; if not, says so and the caller's test returns.
pub fn tools() -> bool {
    let runs = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    let ok = runs("git", "--version") && runs("ssh-keygen", "-?");
    if !ok {
        eprintln!("skipped: this test needs git and ssh-keygen on PATH");
    }
    ok
}

/// An SSH key pair made by `ssh-keygen`, with the fingerprint `ssh-keygen -l` prints for it.
#[derive(Debug, Clone)]
pub struct Key {
    pub private: PathBuf,
    /// The public key line (`ssh-ed25519 AAAA… comment`).
    pub public: String,
    /// `SHA256:…`.
    pub fingerprint: String,
}

impl Key {
    pub fn pub_path(&self) -> PathBuf {
        PathBuf::from(format!("{}.pub", self.private.display()))
    }

    /// An allowed-signers line for this key: `PRINCIPALS [OPTIONS] KEY`.
    pub fn line(&self, principals: &str, options: &str) -> String {
        line(principals, options, self)
    }
}

/// An allowed-signers line: `PRINCIPALS [OPTIONS] KEY`.
pub fn line(principals: &str, options: &str, key: &Key) -> String {
    if options.is_empty() {
        format!("{principals} {}", key.public)
    } else {
        format!("{principals} {options} {}", key.public)
    }
}

/// A git work tree, its home (keys, signers file, `$HOME`), and every commit made in it.
pub struct Repo {
    /// Keys, the allowed-signers file, `$HOME`; never inside the work tree.
    pub home: tempfile::TempDir,
    /// The top of the work tree.
    pub dir: PathBuf,
    /// The allowed-signers file (written by [`Repo::write_signers`]).
    pub signers: PathBuf,
    /// Every commit this fixture made or forged, in order.
    pub commits: Vec<String>,
    /// Commits whose signature git could only check with gpg.
    pub gpg_commits: Vec<String>,
}

impl Repo {
    /// A new repository (SHA-1) in `HOME/repo`.
    pub fn new() -> Repo {
        Repo::with_format("sha1")
    }

    /// A new repository with object format `format` (`sha1` or `sha256`) in `HOME/repo`.
    pub fn with_format(format: &str) -> Repo {
        let home = tempfile::tempdir().expect("temp dir");
        let dir = home.path().join("repo");
        std::fs::create_dir(&dir).expect("repo dir");
        Repo::init(home, dir, format)
    }

    /// A new repository whose work tree is `dir` (which must exist), with a home of its own.
    pub fn at(dir: &Path) -> Repo {
        let home = tempfile::tempdir().expect("temp dir");
        Repo::init(home, dir.to_path_buf(), "sha1")
    }

    fn init(home: tempfile::TempDir, dir: PathBuf, format: &str) -> Repo {
        let repo = Repo {
            signers: home.path().join("allowed_signers"),
            home,
            dir,
            commits: Vec::new(),
            gpg_commits: Vec::new(),
        };
        repo.git(&[
            "init",
            "-q",
            "-b",
            "main",
            &format!("--object-format={format}"),
        ]);
        repo.git(&["config", "user.name", "Test Person"]);
        repo.git(&["config", "user.email", "test@example.com"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo
    }

    /// A path in the home (outside the work tree).
    pub fn outside(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// A path in the work tree.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The environment every git run gets, mfactl's included (see [`SignedEnv::run`]): this
    /// repository's home as `$HOME`, no system or global configuration.
    pub fn git_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HOME", self.home.path().display().to_string()),
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
            ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
            ("LC_ALL", "C".into()),
        ]
    }

    /// git in the work tree, with [`Repo::git_env`] and none of the variables that point git
    /// elsewhere.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.current_dir(&self.dir)
            .args(args)
            .envs(self.git_env())
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .stdin(Stdio::null());
        c
    }

    /// Runs git with extra environment and optional stdin; its output, whatever the status.
    pub fn output(&self, args: &[&str], env: &[(&str, String)], input: Option<&[u8]>) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        if let Some(input) = input {
            use std::io::Write;
            c.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = c.spawn().expect("git runs");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input)
                .expect("write stdin");
            child.wait_with_output().expect("git runs")
        } else {
            c.output().expect("git runs")
        }
    }

    /// Runs git and asserts success; its stdout, trimmed.
    pub fn git_with(&self, args: &[&str], env: &[(&str, String)], input: Option<&[u8]>) -> String {
        let out = self.output(args, env, input);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn git(&self, args: &[&str]) -> String {
        self.git_with(args, &[], None)
    }

    /// A new key pair `HOME/NAME` of type `kind` (`ed25519`, `ecdsa`, `rsa`), with `bits` if given.
    pub fn key(&self, name: &str, kind: &str, bits: Option<&str>) -> Key {
        let private = self.home.path().join(name);
        let mut c = Command::new("ssh-keygen");
        c.args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
            .arg(&private);
        if let Some(bits) = bits {
            c.args(["-b", bits]);
        }
        let out = c.output().expect("ssh-keygen runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public_path = PathBuf::from(format!("{}.pub", private.display()));
        let public = std::fs::read_to_string(&public_path).expect("public key");
        let listed = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&public_path)
            .output()
            .expect("ssh-keygen -l");
        let listed = String::from_utf8_lossy(&listed.stdout).to_string();
        let fingerprint = listed
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_string();
        assert!(fingerprint.starts_with("SHA256:"), "{listed}");
        Key {
            private,
            public: public.trim().to_string(),
            fingerprint,
        }
    }

    /// Writes the allowed-signers file (one line each).
    pub fn write_signers(&self, lines: &[String]) {
        std::fs::write(&self.signers, lines.join("\n") + "\n").expect("write signers");
    }

    /// Writes `content` to `file` in the work tree (creating directories), without adding it.
    pub fn write(&self, file: &str, content: &str) {
        let path = self.dir.join(file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("dir");
        }
        std::fs::write(path, content).expect("write file");
    }

    /// `GIT_AUTHOR_DATE` and `GIT_COMMITTER_DATE` at `when` (UTC).
    pub fn dates(when: i64) -> Vec<(&'static str, String)> {
        vec![
            ("GIT_AUTHOR_DATE", format!("@{when} +0000")),
            ("GIT_COMMITTER_DATE", format!("@{when} +0000")),
        ]
    }

    /// `-c gpg.format=ssh -c user.signingkey=KEY.pub`, or nothing.
    pub fn sign_args(key: Option<&Key>) -> Vec<String> {
        match key {
            Some(k) => vec![
                "-c".into(),
                "gpg.format=ssh".into(),
                "-c".into(),
                format!("user.signingkey={}", k.pub_path().display()),
            ],
            None => vec![],
        }
    }

    /// Writes, adds and commits `files`, signed by `key` (or not), at `when`; the new HEAD.
    pub fn commit(&mut self, files: &[(&str, &str)], key: Option<&Key>, when: i64) -> String {
        for (file, content) in files {
            self.write(file, content);
            self.git(&["add", "--", file]);
        }
        self.commit_staged(key, when, &["-m", "change"])
    }

    /// Removes `files` and commits that, signed by `key` (or not), at `when`; the new HEAD.
    pub fn remove(&mut self, files: &[&str], key: Option<&Key>, when: i64) -> String {
        for file in files {
            self.git(&["rm", "-q", "--", file]);
        }
        self.commit_staged(key, when, &["-m", "remove"])
    }

    /// `git commit ARGS` of whatever is staged (or, with `--no-edit`, a merge in progress),
    /// signed by `key` (`-S`) or explicitly not (`--no-gpg-sign`), at `when`; the new HEAD.
    pub fn commit_staged(&mut self, key: Option<&Key>, when: i64, args: &[&str]) -> String {
        let mut all = Repo::sign_args(key);
        all.extend(["commit".into(), "-q".into()]);
        all.extend(args.iter().map(|a| a.to_string()));
        all.push(if key.is_some() { "-S" } else { "--no-gpg-sign" }.into());
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.git_with(&all, &Repo::dates(when), None);
        self.head()
    }

    /// `git merge --no-ff BRANCH` into the current branch, the merge commit signed by `key` (or
    /// not), at `when`; the new HEAD. Panics on a conflict (see [`Repo::commit_staged`] for
    /// merges that need resolving).
    pub fn merge(&mut self, branch: &str, key: Option<&Key>, when: i64) -> String {
        let mut all = Repo::sign_args(key);
        all.extend(
            ["merge", "-q", "--no-ff", "-m", "merge", branch]
                .iter()
                .map(|a| a.to_string()),
        );
        all.push(if key.is_some() { "-S" } else { "--no-gpg-sign" }.into());
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.git_with(&all, &Repo::dates(when), None);
        self.head()
    }

    /// `git checkout -q [-b] BRANCH`.
    pub fn checkout(&self, branch: &str, new: bool) {
        if new {
            self.git(&["checkout", "-q", "-b", branch]);
        } else {
            self.git(&["checkout", "-q", branch]);
        }
    }

    /// The full id of HEAD, remembered in [`Repo::commits`].
    pub fn head(&mut self) -> String {
        let head = self.git(&["rev-parse", "HEAD"]);
        if !self.commits.contains(&head) {
            self.commits.push(head.clone());
        }
        head
    }

    /// Writes `object` as a commit and points the current branch at it: a commit git never
    /// signed itself. The index and work tree are left alone.
    pub fn forge(&mut self, object: &[u8]) -> String {
        let id = self.git_with(
            &["hash-object", "-t", "commit", "-w", "--stdin"],
            &[],
            Some(object),
        );
        self.git(&["update-ref", "HEAD", &id]);
        self.head()
    }

    /// The raw commit object.
    pub fn cat(&self, commit: &str) -> String {
        let out = self.output(&["cat-file", "commit", commit], &[], None);
        String::from_utf8(out.stdout).expect("utf-8 commit")
    }

    /// `commit`'s headers and signature, moved onto the tree of the index: the signature of one
    /// commit copied onto content it never signed. Points the current branch at the forgery;
    /// the work tree stays clean when it matches the index.
    pub fn transplant_signature(&mut self, commit: &str) -> String {
        let tree = self.git(&["write-tree"]);
        let object = self.cat(commit);
        let (_, after_tree) = object.split_once('\n').expect("tree line");
        self.forge(format!("tree {tree}\n{after_tree}").as_bytes())
    }

    /// `git log -1 --format=%H -- FILE`: the commit that mfactl names as the file's latest change.
    pub fn last_change(&self, file: &str) -> String {
        self.git(&["log", "-1", "--format=%H", "--", file])
    }

    /// `git verify-commit` with this fixture's allowed-signers file: true when git says valid.
    pub fn git_verifies(&self, commit: &str) -> bool {
        let file = format!("gpg.ssh.allowedSignersFile={}", self.signers.display());
        self.output(&["-c", &file, "verify-commit", commit], &[], None)
            .status
            .success()
    }
}

/// `object` with a `gpgsig` header holding `sig` after the committer line, as git writes it.
pub fn insert_signature(object: &str, sig: &str) -> String {
    let (headers, message) = object.split_once("\n\n").expect("headers");
    let mut header = String::from("gpgsig");
    for line in sig.trim_end().lines() {
        header.push(' ');
        header.push_str(line);
        header.push('\n');
    }
    format!("{headers}\n{header}\n{message}")
}

/// An [`Env`] whose temp dir is a git work tree, and that [`Repo`].
pub struct SignedEnv {
    pub env: Env,
    pub repo: Repo,
}

/// A store holding `examples/directory.yaml`, in the home of a new repository whose work tree is
/// the Env's dir (empty, no commit yet). The store and the signers file are outside the work
/// tree: nothing mfactl writes there can make the tree dirty.
pub fn signed_env() -> SignedEnv {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = Repo::at(dir.path());
    let env = Env {
        store: repo.outside("mfactl.db"),
        dir,
    };
    let s = SignedEnv { env, repo };
    s.ok(&["init"]);
    s.ok(&["store", "import", &format!("{EXAMPLES}/directory.yaml")]);
    s
}

impl SignedEnv {
    /// mfactl at the top of the work tree, with git's environment (see [`Repo::git_env`]).
    pub fn run(&self, args: &[&str]) -> super::Out {
        let env = self.repo.git_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.env.run_env(args, &env)
    }

    /// Runs and asserts exit 0.
    pub fn ok(&self, args: &[&str]) -> super::Out {
        let o = self.run(args);
        assert_eq!(o.code, 0, "mfactl {args:?} failed:\n{}", o.all());
        o
    }

    /// Imports a directory document given as YAML text, from a file outside the work tree.
    pub fn import(&self, yaml: &str) {
        let p = self.repo.outside("import.yaml");
        std::fs::write(&p, yaml).expect("write import");
        self.ok(&["store", "import", p.to_str().unwrap()]);
    }

    /// The signers file's path, as an argument.
    pub fn signers(&self) -> String {
        self.repo.signers.display().to_string()
    }
}
