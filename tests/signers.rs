//! `mfactl::git` against real git: repositories in temp dirs, keys from `ssh-keygen`, commits
//! signed by `git commit -S` with `gpg.format=ssh`, forgeries written with `git hash-object`.
//! Every test builds its scenario with a builder below; `differential_against_git_verify_commit`
//! builds them all again and checks, for every commit they made, that the module calls a
//! signature valid exactly when `git verify-commit` does.

mod common;

use common::git::{insert_signature, line, tools, Key, Repo, Y2019, Y2020, Y2025, Y2030};
use mfactl::git::{Error, FileState, Problem, Provenance, Signers, Verdict};
use std::path::PathBuf;
use std::process::Command;

/// The module under test, asked about a fixture's repository and allowed-signers file.
trait Judge {
    fn provenance(&self) -> Provenance;
    fn verdicts(&self, files: &[&str]) -> Result<Vec<Verdict>, Error>;
    fn verdict(&self, file: &str) -> Verdict;
    fn judge(&self, commit: &str) -> Result<mfactl::git::Signer, Problem>;
}

impl Judge for Repo {
    fn provenance(&self) -> Provenance {
        Provenance::new(Signers::load(&self.signers).expect("signers parse"))
    }

    fn verdicts(&self, files: &[&str]) -> Result<Vec<Verdict>, Error> {
        let paths: Vec<PathBuf> = files.iter().map(|f| self.dir.join(f)).collect();
        self.provenance().verdicts(&paths)
    }

    fn verdict(&self, file: &str) -> Verdict {
        let mut v = self.verdicts(&[file]).expect("verdict");
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    fn judge(&self, commit: &str) -> Result<mfactl::git::Signer, Problem> {
        let (id, judged) = self
            .provenance()
            .judge_commit(&self.dir, commit)
            .expect("judge commit");
        assert_eq!(id, commit);
        judged
    }
}

fn signed(v: &Verdict) -> &mfactl::git::Signed {
    v.signed()
        .unwrap_or_else(|| panic!("expected a signer, got: {:?}", v.reason()))
}

fn refused(v: &Verdict) -> (&Problem, String) {
    match v {
        Verdict::Refused(r) => (&r.problem, r.to_string()),
        Verdict::Signed(s) => panic!("expected a refusal, got signed by {:?}", s.principals),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario builders: each returns its fixture and what the test checks.

/// Five key types, a key with several principals on two lines, and file names that glob, quote
/// and escape badly.
fn build_authorised() -> (Repo, Vec<(&'static str, Key)>) {
    let mut fx = Repo::new();
    let keys = vec![
        ("alice.yaml", fx.key("alice", "ed25519", None)),
        ("bob [eu] *.yaml", fx.key("bob", "ecdsa", None)),
        ("équipe/carol.yaml", fx.key("carol", "ecdsa", Some("384"))),
        ("dave?.yaml", fx.key("dave", "ecdsa", Some("521"))),
        ("erin.yaml", fx.key("erin", "rsa", Some("2048"))),
    ];
    fx.write_signers(&[
        "# who may ask for MFA changes".into(),
        line("alice@example.com,alice", "", &keys[0].1),
        line("bob@example.com", "namespaces=\"file,git\"", &keys[1].1),
        line("\"Carol Q <carol@example.com>\"", "", &keys[2].1),
        line("dave@example.com", "valid-after=\"20200101Z\"", &keys[3].1),
        line("erin@example.com", "", &keys[4].1),
        line("alice.admin", "namespaces=\"git\"", &keys[0].1),
    ]);
    for (i, (file, key)) in keys.iter().enumerate() {
        fx.commit(&[(file, "users: []\n")], Some(key), Y2025 + i as i64);
    }
    (fx, keys)
}

fn build_unsigned_and_unknown() -> (Repo, String, String) {
    let mut fx = Repo::new();
    let alice = fx.key("alice", "ed25519", None);
    let mallory = fx.key("mallory", "ed25519", None);
    fx.write_signers(&[line("alice@example.com", "", &alice)]);
    let unsigned = fx.commit(&[("unsigned.yaml", "a\n")], None, Y2025);
    let unknown = fx.commit(&[("unknown.yaml", "b\n")], Some(&mallory), Y2025 + 1);
    (fx, unsigned, unknown)
}

/// One key listed until 2020-01-01 and one from 2030-01-01; commits before, at and after.
fn build_validity_windows() -> (Repo, Vec<(String, bool)>) {
    let mut fx = Repo::new();
    let old = fx.key("old", "ed25519", None);
    let new = fx.key("new", "ecdsa", None);
    fx.write_signers(&[
        line("old@example.com", "valid-before=\"20200101Z\"", &old),
        line("new@example.com", "valid-after=\"20300101000000Z\"", &new),
    ]);
    let expect = vec![
        (fx.commit(&[("old.yaml", "1\n")], Some(&old), Y2019), true),
        (fx.commit(&[("old.yaml", "2\n")], Some(&old), Y2020), true),
        (fx.commit(&[("new.yaml", "1\n")], Some(&new), Y2025), false),
        (fx.commit(&[("new.yaml", "2\n")], Some(&new), Y2030), true),
        (
            fx.commit(&[("new.yaml", "3\n")], Some(&new), Y2030 - 1),
            false,
        ),
        (
            fx.commit(&[("old.yaml", "3\n")], Some(&old), Y2020 + 1),
            false,
        ),
    ];
    (fx, expect)
}

/// A signed commit whose tree was swapped afterwards, and an SSH signature made for another
/// namespace pasted onto a commit.
fn build_forgeries() -> (Repo, String, String, String) {
    let mut fx = Repo::new();
    let alice = fx.key("alice", "ed25519", None);
    fx.write_signers(&[line("alice@example.com", "", &alice)]);
    fx.commit(&[("base.yaml", "base\n")], Some(&alice), Y2025);
    let genuine = fx.commit(
        &[("team.yaml", "admins: [alice]\n")],
        Some(&alice),
        Y2025 + 1,
    );

    // The signature of `genuine`, copied onto a tree where mallory is an admin.
    fx.write("team.yaml", "admins: [mallory]\n");
    fx.git(&["add", "team.yaml"]);
    let tampered = fx.transplant_signature(&genuine);

    // An unsigned commit, then the same object with a signature made by `ssh-keygen -Y sign -n
    // file` over it: valid cryptography, wrong purpose.
    let plain = fx.commit(&[("other.yaml", "x\n")], None, Y2025 + 2);
    let object = fx.cat(&plain);
    let payload = fx.home.path().join("payload");
    std::fs::write(&payload, &object).expect("payload");
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(&alice.private)
        .arg(&payload)
        .output()
        .expect("ssh-keygen -Y sign");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sig_path = payload.into_os_string();
    sig_path.push(".sig");
    let sig = std::fs::read_to_string(sig_path).expect("signature");
    let wrong_namespace = fx.forge(insert_signature(&object, &sig).as_bytes());
    (fx, genuine, tampered, wrong_namespace)
}

/// main and a branch both touch files; merged with a signed merge commit, one conflict
/// resolved in the merge itself.
fn build_merge() -> (Repo, [String; 3]) {
    let mut fx = Repo::new();
    let alice = fx.key("alice", "ed25519", None);
    let bob = fx.key("bob", "ed25519", None);
    let carol = fx.key("carol", "ed25519", None);
    fx.write_signers(&[
        line("alice@example.com", "", &alice),
        line("bob@example.com", "", &bob),
        line("carol@example.com", "", &carol),
    ]);
    fx.commit(
        &[("f.yaml", "v1\n"), ("g.yaml", "v1\n"), ("h.yaml", "v1\n")],
        Some(&alice),
        Y2025,
    );
    fx.checkout("feature", true);
    let on_branch = fx.commit(
        &[("f.yaml", "v2\n"), ("h.yaml", "branch\n")],
        Some(&bob),
        Y2025 + 10,
    );
    fx.checkout("main", false);
    let on_main = fx.commit(
        &[("g.yaml", "v2\n"), ("h.yaml", "main\n")],
        Some(&alice),
        Y2025 + 20,
    );
    let merge = fx.output(
        &["merge", "--no-commit", "feature"],
        &Repo::dates(Y2025 + 30),
        None,
    );
    assert!(!merge.status.success(), "h.yaml should conflict");
    fx.write("h.yaml", "resolved\n");
    fx.git(&["add", "h.yaml"]);
    let merged = fx.commit_staged(Some(&carol), Y2025 + 30, &["--no-edit"]);
    (fx, [on_branch, on_main, merged])
}

/// A commit whose header holds an OpenPGP block (written by hand: no gpg needed).
fn build_gpg() -> (Repo, String) {
    let mut fx = Repo::new();
    let alice = fx.key("alice", "ed25519", None);
    fx.write_signers(&[line("alice@example.com", "", &alice)]);
    let plain = fx.commit(&[("team.yaml", "a\n")], None, Y2025);
    let pgp = "-----BEGIN PGP SIGNATURE-----\n\niHUEABYKAB0WIQTmZ2ZkZmRmZGZkZmRmZGZkZmRmZGZkZgUCZ1sAAAAKCRBmZGZk\n=AbCd\n-----END PGP SIGNATURE-----\n";
    let object = fx.cat(&plain);
    let forged = fx.forge(insert_signature(&object, pgp).as_bytes());
    fx.gpg_commits.push(forged.clone());
    (fx, forged)
}

/// One key whose line excludes git, one whose pattern-list allows it.
fn build_namespaces() -> (Repo, String, String) {
    let mut fx = Repo::new();
    let files_only = fx.key("files", "ed25519", None);
    let any_g = fx.key("anyg", "ed25519", None);
    fx.write_signers(&[
        line("files@example.com", "namespaces=\"file,!git\"", &files_only),
        line("g@example.com", "namespaces=\"file,g*\"", &any_g),
    ]);
    let refused = fx.commit(&[("a.yaml", "a\n")], Some(&files_only), Y2025);
    let allowed = fx.commit(&[("b.yaml", "b\n")], Some(&any_g), Y2025 + 1);
    (fx, refused, allowed)
}

fn build_sha256() -> (Repo, Key) {
    let mut fx = Repo::with_format("sha256");
    let alice = fx.key("alice", "ed25519", None);
    fx.write_signers(&[line("alice@example.com", "", &alice)]);
    fx.commit(&[("team.yaml", "a\n")], Some(&alice), Y2025);
    (fx, alice)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn authorised_signers_are_named_for_every_key_type() {
    if !tools() {
        return;
    }
    let (fx, keys) = build_authorised();
    let files: Vec<&str> = keys.iter().map(|(f, _)| *f).collect();
    let verdicts = fx.verdicts(&files).expect("verdicts");
    let principals = [
        vec!["alice@example.com", "alice", "alice.admin"],
        vec!["bob@example.com"],
        vec!["Carol Q <carol@example.com>"],
        vec!["dave@example.com"],
        vec!["erin@example.com"],
    ];
    for ((v, (file, key)), want) in verdicts.iter().zip(&keys).zip(principals) {
        let s = signed(v);
        assert_eq!(s.file, fx.dir.join(file));
        assert_eq!(s.principals, want, "{file}");
        assert_eq!(s.fingerprint, key.fingerprint, "{file}");
        assert_eq!(s.commit, fx.last_change(file), "{file}");
        assert_eq!(s.commit.len(), 40);
    }
}

#[test]
fn unsigned_commits_and_unknown_keys_are_refused() {
    if !tools() {
        return;
    }
    let (fx, unsigned, unknown) = build_unsigned_and_unknown();
    let v = fx
        .verdicts(&["unsigned.yaml", "unknown.yaml"])
        .expect("verdicts");
    let (problem, reason) = refused(&v[0]);
    assert_eq!(problem, &Problem::Unsigned);
    assert_eq!(v[0].commit(), unsigned);
    assert!(reason.contains("unsigned.yaml"), "{reason}");
    assert!(
        reason.contains(&format!("commit {}", &unsigned[..7])),
        "{reason}"
    );
    assert!(reason.contains("is not signed"), "{reason}");

    let (problem, reason) = refused(&v[1]);
    let Problem::UnknownKey {
        fingerprint,
        skipped: None,
    } = problem
    else {
        panic!("expected an unknown key: {problem:?}");
    };
    assert_eq!(v[1].commit(), unknown);
    assert!(fingerprint.starts_with("SHA256:"));
    assert!(reason.contains(fingerprint.as_str()), "{reason}");
    assert!(reason.contains("does not list"), "{reason}");
}

#[test]
fn keys_outside_their_validity_window_are_refused() {
    if !tools() {
        return;
    }
    let (fx, expect) = build_validity_windows();
    for (commit, valid) in &expect {
        assert_eq!(fx.judge(commit).is_ok(), *valid, "commit {commit}");
    }
    // The files' latest changes: old.yaml expired (2020-01-01 + 1 s), new.yaml not yet valid.
    let v = fx.verdicts(&["old.yaml", "new.yaml"]).expect("verdicts");
    let (problem, reason) = refused(&v[0]);
    assert!(
        matches!(problem, Problem::Expired { valid_before, committed, line: 1, .. }
            if *valid_before == Y2020 && *committed == Y2020 + 1),
        "{problem:?}"
    );
    assert!(
        reason.contains("expired at 2020-01-01 00:00:00 UTC"),
        "{reason}"
    );
    let (problem, reason) = refused(&v[1]);
    assert!(
        matches!(problem, Problem::NotYetValid { valid_after, committed, line: 2, .. }
            if *valid_after == Y2030 && *committed == Y2030 - 1),
        "{problem:?}"
    );
    assert!(
        reason.contains("starts only at 2030-01-01 00:00:00 UTC"),
        "{reason}"
    );
}

#[test]
fn forged_commits_are_bad_signatures() {
    if !tools() {
        return;
    }
    let (fx, genuine, tampered, wrong_namespace) = build_forgeries();
    assert!(fx.judge(&genuine).is_ok());
    match fx.judge(&tampered) {
        Err(Problem::BadSignature { detail }) => {
            assert!(detail.contains("does not match"), "{detail}")
        }
        other => panic!("tampered commit: {other:?}"),
    }
    let v = fx.verdicts(&["team.yaml", "other.yaml"]).expect("verdicts");
    assert_eq!(v[0].commit(), tampered);
    let (_, reason) = refused(&v[0]);
    assert!(reason.contains("signature that is not valid"), "{reason}");
    let (problem, _) = refused(&v[1]);
    assert!(
        matches!(problem, Problem::BadSignature { detail } if detail.contains("namespace \"file\"")),
        "{problem:?}"
    );
    assert_eq!(v[1].commit(), wrong_namespace);
}

#[test]
fn the_latest_change_follows_git_log_through_merges() {
    if !tools() {
        return;
    }
    let (fx, [on_branch, on_main, merged]) = build_merge();
    // f.yaml changed only on the branch: the merge is TREESAME to that parent for it.
    assert_eq!(fx.last_change("f.yaml"), on_branch);
    assert_eq!(fx.last_change("g.yaml"), on_main);
    assert_eq!(fx.last_change("h.yaml"), merged);
    let v = fx
        .verdicts(&["f.yaml", "g.yaml", "h.yaml"])
        .expect("verdicts");
    let who: Vec<(&str, Vec<String>)> = v
        .iter()
        .map(|v| (v.commit(), signed(v).principals.clone()))
        .collect();
    assert_eq!(
        who,
        vec![
            (on_branch.as_str(), vec!["bob@example.com".to_string()]),
            (on_main.as_str(), vec!["alice@example.com".to_string()]),
            (merged.as_str(), vec!["carol@example.com".to_string()]),
        ]
    );
}

#[test]
fn only_committed_unmodified_files_have_a_requester() {
    if !tools() {
        return;
    }
    let mut fx = Repo::new();
    let alice = fx.key("alice", "ed25519", None);
    fx.write_signers(&[line("alice@example.com", "", &alice)]);
    fx.write(".gitignore", "ignored.yaml\n");
    fx.commit(
        &[
            (".gitignore", "ignored.yaml\n"),
            ("clean.yaml", "c\n"),
            ("modified.yaml", "m\n"),
            ("restaged.yaml", "r\n"),
            ("hidden.yaml", "h\n"),
        ],
        Some(&alice),
        Y2025,
    );
    fx.write("modified.yaml", "m2\n");
    fx.write("untracked.yaml", "u\n");
    fx.write("staged.yaml", "s\n");
    fx.git(&["add", "staged.yaml"]);
    fx.write("restaged.yaml", "r2\n");
    fx.git(&["add", "restaged.yaml"]);
    fx.write("ignored.yaml", "i\n");
    fx.git(&["update-index", "--assume-unchanged", "hidden.yaml"]);
    fx.write("hidden.yaml", "h2\n");

    let files = [
        "clean.yaml",
        "modified.yaml",
        "untracked.yaml",
        "staged.yaml",
        "restaged.yaml",
        "ignored.yaml",
        "hidden.yaml",
    ];
    let err = fx.verdicts(&files).expect_err("dirty files");
    let shown = err.to_string();
    let Error::NotCommitted { files: dirty } = err else {
        panic!("expected NotCommitted: {shown}");
    };
    let got: Vec<(PathBuf, FileState)> = dirty.into_iter().map(|u| (u.file, u.state)).collect();
    let want: Vec<(PathBuf, FileState)> = [
        ("modified.yaml", FileState::Modified),
        ("untracked.yaml", FileState::Untracked),
        ("staged.yaml", FileState::Staged),
        ("restaged.yaml", FileState::Staged),
        ("ignored.yaml", FileState::Untracked),
        ("hidden.yaml", FileState::Unwatched),
    ]
    .into_iter()
    .map(|(f, s)| (fx.dir.join(f), s))
    .collect();
    assert_eq!(got, want);
    for f in &files[1..] {
        assert!(shown.contains(f), "{f} not named in: {shown}");
    }
    assert!(signed(&fx.verdict("clean.yaml")).principals == ["alice@example.com"]);

    // A repository with no commit yet: staged is still not committed.
    let empty = Repo::new();
    empty.write("new.yaml", "n\n");
    empty.git(&["add", "new.yaml"]);
    std::fs::copy(&fx.signers, &empty.signers).expect("copy signers");
    match empty.verdicts(&["new.yaml"]) {
        Err(Error::NotCommitted { files }) => assert_eq!(files[0].state, FileState::Staged),
        other => panic!("expected NotCommitted: {other:?}"),
    }
    // Outside any work tree, and missing altogether.
    let outside = fx.home.path().join("outside.yaml");
    std::fs::write(&outside, "o\n").expect("write");
    let err = fx.provenance().verdicts(&[&outside]).expect_err("outside");
    assert!(
        matches!(err, Error::NotInWorkTree { ref file, .. } if file == &outside),
        "{err}"
    );
    let err = fx.verdicts(&["missing.yaml"]).expect_err("missing");
    assert!(matches!(err, Error::Manifest { .. }), "{err}");
}

#[test]
fn gpg_signatures_are_named_as_such() {
    if !tools() {
        return;
    }
    let (fx, forged) = build_gpg();
    let v = fx.verdict("team.yaml");
    assert_eq!(v.commit(), forged);
    let (problem, reason) = refused(&v);
    assert_eq!(problem, &Problem::Gpg);
    assert!(reason.contains("signed with GPG"), "{reason}");
    assert!(reason.contains(&forged[..7]), "{reason}");
}

#[test]
fn the_namespaces_option_must_allow_git() {
    if !tools() {
        return;
    }
    let (fx, refused_commit, allowed) = build_namespaces();
    let v = fx.verdicts(&["a.yaml", "b.yaml"]).expect("verdicts");
    assert_eq!(v[0].commit(), refused_commit);
    let (problem, reason) = refused(&v[0]);
    assert!(
        matches!(problem, Problem::NamespaceNotAllowed { line: 1, namespaces, .. } if namespaces == "file,!git"),
        "{problem:?}"
    );
    assert!(reason.contains("not \"git\""), "{reason}");
    assert_eq!(v[1].commit(), allowed);
    assert_eq!(signed(&v[1]).principals, ["g@example.com"]);
}

#[test]
fn sha256_repositories_sign_with_gpgsig_sha256() {
    if !tools() {
        return;
    }
    let (fx, alice) = build_sha256();
    let head = fx.git(&["rev-parse", "HEAD"]);
    assert_eq!(head.len(), 64);
    assert!(fx
        .cat(&head)
        .contains("\ngpgsig-sha256 -----BEGIN SSH SIGNATURE-----"));
    let v = fx.verdict("team.yaml");
    let s = signed(&v);
    assert_eq!(
        (s.commit.as_str(), s.fingerprint.as_str()),
        (head.as_str(), alice.fingerprint.as_str())
    );
}

#[test]
fn a_reused_provenance_sees_new_commits() {
    if !tools() {
        return;
    }
    let mut fx = Repo::new();
    let alice = fx.key("alice", "ed25519", None);
    let bob = fx.key("bob", "ed25519", None);
    fx.write_signers(&[line("alice", "", &alice), line("bob", "", &bob)]);
    fx.commit(&[("team.yaml", "1\n")], Some(&alice), Y2025);
    let mut p = fx.provenance();
    let file = [fx.dir.join("team.yaml")];
    assert_eq!(
        signed(&p.verdicts(&file).expect("first")[0]).principals,
        ["alice"]
    );
    fx.commit(&[("team.yaml", "2\n")], Some(&bob), Y2025 + 1);
    assert_eq!(
        signed(&p.verdicts(&file).expect("second")[0]).principals,
        ["bob"]
    );
}

/// Lines that ssh-keygen accepts but mfactl skips (see `mfactl::git::signers`): git verifies
/// these commits, mfactl refuses them and says which line it skipped and why. The one place the
/// two disagree by design, so it stays out of the differential.
#[test]
fn skipped_lines_refuse_what_git_would_accept() {
    if !tools() {
        return;
    }
    let mut fx = Repo::new();
    let pattern = fx.key("pattern", "ed25519", None);
    let zoneless = fx.key("zoneless", "ed25519", None);
    fx.write_signers(&[
        line("*@example.com", "", &pattern),
        line("z@example.com", "valid-before=\"20990101\"", &zoneless),
    ]);
    let by_pattern = fx.commit(&[("p.yaml", "p\n")], Some(&pattern), Y2025);
    let by_zoneless = fx.commit(&[("z.yaml", "z\n")], Some(&zoneless), Y2025 + 1);
    let signers = Signers::load(&fx.signers).expect("parses");
    assert_eq!(signers.skipped().len(), 2);
    for (commit, file, line, why) in [
        (&by_pattern, "p.yaml", 1, "is a pattern"),
        (&by_zoneless, "z.yaml", 2, "\"20990101Z\""),
    ] {
        assert!(fx.git_verifies(commit), "git accepts {file}");
        let v = fx.verdict(file);
        let (problem, reason) = refused(&v);
        assert!(
            matches!(problem, Problem::UnknownKey { skipped: Some(s), .. } if s.line == line && s.why.contains(why)),
            "{problem:?}"
        );
        assert!(reason.contains(&format!("only on line {line}")), "{reason}");
    }
}

/// For every commit the scenarios above create, the module's verdict (valid or not) is git's:
/// `git -c gpg.ssh.allowedSignersFile=FILE verify-commit` exits 0 exactly when the module names
/// a signer. Commits with a hand-written OpenPGP block are left out: git would need gpg for them.
#[test]
fn differential_against_git_verify_commit() {
    if !tools() {
        return;
    }
    let fixtures = vec![
        build_authorised().0,
        build_unsigned_and_unknown().0,
        build_validity_windows().0,
        build_forgeries().0,
        build_merge().0,
        build_gpg().0,
        build_namespaces().0,
        build_sha256().0,
    ];
    let (mut valid, mut invalid, mut compared) = (0, 0, 0);
    for fx in &fixtures {
        let mut p = fx.provenance();
        assert!(!fx.commits.is_empty());
        for commit in fx.commits.iter().filter(|c| !fx.gpg_commits.contains(c)) {
            let (_, judged) = p.judge_commit(&fx.dir, commit).expect("judge");
            let git = fx.git_verifies(commit);
            assert_eq!(
                judged.is_ok(),
                git,
                "commit {commit} in {}: module says {judged:?}, git verify-commit says {}",
                fx.dir.display(),
                if git { "valid" } else { "not valid" }
            );
            compared += 1;
            if git {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
    }
    assert!(
        valid >= 10 && invalid >= 8,
        "valid {valid}, invalid {invalid}"
    );
    assert_eq!(compared, valid + invalid);
}
