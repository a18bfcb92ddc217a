//! `--signers`: every change is bound to the person who signed the commit that asked for it.
//! End to end: the real binary, real git repositories, keys from `ssh-keygen`, commits signed by
//! `git commit -S` with `gpg.format=ssh`, forgeries written with `git hash-object`.
//!
//! Each test's work tree is its Env's temp dir (mfactl runs at its top, so `./manifests` and
//! `./policies` are found there as in a CI checkout); the store, the keys, the allowed-signers
//! file and saved plans live outside it (see `common::git`). The example tenant is in the store:
//! gary@contoso.example is a global administrator, frank@ a helpdesk administrator, erin@ an
//! authentication administrator, olga@ a disabled authentication administrator, carol@ holds no
//! role.

mod common;

use common::git::{signed_env, tools, Key, Repo, SignedEnv, NOV_2026, NOV_29};
use common::{manifest, Out, EXAMPLE_POLICIES};
use serde_json::Value;
use std::collections::BTreeMap;

const GARY: &str = "gary@contoso.example";
const FRANK: &str = "frank@contoso.example";
const ERIN: &str = "erin@contoso.example";
const OLGA: &str = "olga@contoso.example";
const CAROL: &str = "carol@contoso.example";
const BREAKGLASS: &str = "breakglass@contoso.example";

/// A tenant in a git work tree, with one key per signer and an allowed-signers file listing them.
struct Tenant {
    s: SignedEnv,
    /// User id → key.
    keys: BTreeMap<String, Key>,
}

impl Tenant {
    /// Keys for `users` (ed25519, except every third: ecdsa), each listed for its user id.
    fn new(users: &[&str]) -> Tenant {
        let s = signed_env();
        let mut keys = BTreeMap::new();
        for (i, user) in users.iter().enumerate() {
            let name = user.split('@').next().unwrap();
            let kind = if i % 3 == 2 { "ecdsa" } else { "ed25519" };
            keys.insert(user.to_string(), s.repo.key(name, kind, None));
        }
        let t = Tenant { s, keys };
        t.list(users);
        t
    }

    /// Rewrites the allowed-signers file to list exactly these users' keys.
    fn list(&self, users: &[&str]) {
        let lines: Vec<String> = users.iter().map(|u| self.key(u).line(u, "")).collect();
        self.s.repo.write_signers(&lines);
    }

    fn key(&self, user: &str) -> &Key {
        &self.keys[user]
    }

    fn fingerprint(&self, user: &str) -> &str {
        &self.key(user).fingerprint
    }

    fn repo(&mut self) -> &mut Repo {
        &mut self.s.repo
    }

    /// Commits `files`, signed by `signer`'s key (or unsigned), at `when`; the commit id.
    fn commit(&mut self, files: &[(&str, &str)], signer: Option<&str>, when: i64) -> String {
        let key = signer.map(|u| self.keys[u].clone());
        self.s.repo.commit(files, key.as_ref(), when)
    }

    /// Writes a one-entry manifest `manifests/NAME.yaml` asking `setting` for `user`, and commits it.
    fn ask(
        &mut self,
        name: &str,
        user: &str,
        setting: &str,
        signer: Option<&str>,
        when: i64,
    ) -> String {
        let text = one(name, user, setting);
        self.commit(&[(&format!("manifests/{name}.yaml"), &text)], signer, when)
    }

    /// mfactl with `--signers FILE` added after the command (and its subcommand-free args).
    fn signed(&self, args: &[&str]) -> Out {
        let signers = self.s.signers();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--signers", &signers]);
        self.s.run(&all)
    }

    /// `plan --signers FILE --format json`, asserting exit 0.
    fn plan_json(&self, extra: &[&str]) -> Value {
        let mut args = vec!["plan", "--format", "json"];
        args.extend(extra);
        let o = self.signed(&args);
        assert_eq!(o.code, 0, "plan failed:\n{}", o.all());
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
    }

    /// `plan --signers FILE` (text), asserting exit 0.
    fn plan_text(&self) -> String {
        let o = self.signed(&["plan"]);
        assert_eq!(o.code, 0, "plan failed:\n{}", o.all());
        o.stdout
    }

    /// The audit log as JSON records.
    fn audit(&self) -> Vec<Value> {
        let o = self.s.ok(&["audit", "--format", "json"]);
        serde_json::from_str::<Value>(&o.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn export(&self) -> String {
        self.s.ok(&["store", "export"]).stdout
    }

    /// A path outside the work tree (for saved plans, credentials files, other signers files).
    fn outside(&self, name: &str) -> String {
        self.s.repo.outside(name).display().to_string()
    }
}

/// A manifest named `name` with one entry: `users: [user]` and `setting` (one `key: value` line).
fn one(name: &str, user: &str, setting: &str) -> String {
    manifest(name, &format!("  - users: [{user}]\n    {setting}\n"))
}

fn short(commit: &str) -> &str {
    &commit[..7]
}

/// The plan's change for (user, action); panics naming the plan when there is none.
fn change<'a>(plan: &'a Value, user: &str, action: &str) -> &'a Value {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["user"] == user && c["action"] == action)
        .unwrap_or_else(|| panic!("no {action} for {user} in {plan:#}"))
}

fn allowed(c: &Value) -> bool {
    c["verdict"]["allowed"] == true
}

/// The denial's reason; panics when the change is allowed.
fn reason(c: &Value) -> String {
    assert_eq!(c["verdict"]["allowed"], false, "expected a denial: {c:#}");
    c["verdict"]["reason"]
        .as_str()
        .expect("a reason")
        .to_string()
}

/// Asserts that the change names `user`, `key` and `commit` as its requester.
fn assert_requested(c: &Value, user: &str, key: &str, commit: &str) {
    assert!(allowed(c), "expected an allowed change: {c:#}");
    let r = &c["requested_by"];
    assert_eq!(r["user"], user, "{c:#}");
    assert_eq!(r["key"], key, "{c:#}");
    assert_eq!(r["commit"], commit, "{c:#}");
}

/// `{"user", "key", "commit"}`: a requester, as plans and audit records name one.
fn requester(user: &str, key: &str, commit: &str) -> Value {
    serde_json::json!({"user": user, "key": key, "commit": commit})
}

/// Asserts that the change is denied, names no requester, and that its reason holds every one of
/// `words`; the reason.
fn assert_denied(c: &Value, words: &[&str]) -> String {
    let why = reason(c);
    assert!(
        c["requested_by"].is_null(),
        "a denied change names no requester: {c:#}"
    );
    for w in words {
        assert!(why.contains(w), "{w:?} not in the reason: {why}");
    }
    why
}

/// Asserts that the text plan has a line naming `user` as requester, with the short commit and
/// the key's fingerprint.
fn assert_text_names(text: &str, user: &str, commit: &str, key: &str) {
    let wanted = format!("requested by {user}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&wanted)).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(short(commit)) && l.contains(key)),
        "no line with {wanted:?}, {} and {key} in:\n{text}",
        short(commit)
    );
}

/// `apply --signers FILE --auto-approve [extra]`.
fn apply(t: &Tenant, extra: &[&str]) -> Out {
    let mut args = vec!["apply", "--auto-approve"];
    args.extend(extra);
    t.signed(&args)
}

const T1: &str = "2026-11-20T00:00:00Z";
const T2: &str = "2026-11-27T09:00:00Z";

// ---------------------------------------------------------------------------------------------

/// A global administrator's signed request is allowed and names them, their key and their commit;
/// a helpdesk administrator asking to revoke a global administrator's sessions is denied with a
/// reason naming them, while what their own role allows stays allowed; apply refuses the whole.
#[test]
fn a_global_administrator_may_and_a_helpdesk_administrator_may_not_revoke_an_administrators_sessions(
) {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY, FRANK]);
    let by_gary = t.ask(
        "carol-sessions",
        CAROL,
        &format!("revoke-sessions-before: {T2}"),
        Some(GARY),
        NOV_29,
    );

    let plan = t.plan_json(&[]);
    assert_requested(
        change(&plan, CAROL, "revoke-sessions"),
        GARY,
        t.fingerprint(GARY),
        &by_gary,
    );
    assert_eq!(plan["summary"]["denied"], 0, "{plan:#}");
    assert_text_names(&t.plan_text(), GARY, &by_gary, t.fingerprint(GARY));
    assert_eq!(t.signed(&["plan", "--detailed-exitcode"]).code, 2);

    let by_frank = t.commit(
        &[
            (
                "manifests/gary-sessions.yaml",
                &one(
                    "gary-sessions",
                    GARY,
                    "revoke-sessions-before: 2026-11-29T00:00:00Z",
                ),
            ),
            (
                "manifests/carol-password.yaml",
                &one(
                    "carol-password",
                    CAROL,
                    &format!("reset-password-before: {T2}"),
                ),
            ),
        ],
        Some(FRANK),
        NOV_29 + 60,
    );
    let plan = t.plan_json(&[]);
    let why = assert_denied(
        change(&plan, GARY, "revoke-sessions"),
        &[FRANK, "helpdesk-administrator"],
    );
    assert!(
        why.contains(short(&by_frank)),
        "the reason names the commit: {why}"
    );
    // What a helpdesk administrator may do, frank's request does.
    assert_requested(
        change(&plan, CAROL, "reset-password"),
        FRANK,
        t.fingerprint(FRANK),
        &by_frank,
    );
    assert_requested(
        change(&plan, CAROL, "revoke-sessions"),
        GARY,
        t.fingerprint(GARY),
        &by_gary,
    );
    assert_eq!(plan["summary"]["denied"], 1, "{plan:#}");
    let text = t.plan_text();
    assert!(
        text.contains(&why),
        "the text plan shows the reason:\n{text}"
    );
    assert_eq!(t.signed(&["plan", "--detailed-exitcode"]).code, 3);

    let before = t.export();
    let credentials = t.outside("credentials.tsv");
    let o = apply(&t, &["--credentials-out", &credentials]);
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(
        o.all().contains(FRANK),
        "apply names the requester:\n{}",
        o.all()
    );
    assert_eq!(t.export(), before, "nothing applied");
    assert!(t.audit().is_empty());
    assert!(!std::path::Path::new(&credentials).exists());
}

/// A manifest whose latest commit is unsigned asks for nothing: its changes are denied with the
/// refusal's sentence, naming the file and the commit.
#[test]
fn an_unsigned_commit_asks_for_nothing() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY]);
    let unsigned = t.ask(
        "carol",
        CAROL,
        &format!("revoke-sessions-before: {T2}"),
        None,
        NOV_29,
    );
    let plan = t.plan_json(&[]);
    assert_denied(
        change(&plan, CAROL, "revoke-sessions"),
        &[
            "manifests/carol.yaml",
            &format!("commit {}", short(&unsigned)),
            "is not signed",
        ],
    );
    // Signed before, unsigned now: the latest change is what counts.
    let signed = t.ask(
        "dave",
        "henry@contoso.example",
        "app-passwords: none",
        Some(GARY),
        NOV_29 + 1,
    );
    let plan = t.plan_json(&[]);
    assert_requested(
        change(&plan, "henry@contoso.example", "delete-app-passwords"),
        GARY,
        t.fingerprint(GARY),
        &signed,
    );
    assert_denied(change(&plan, CAROL, "revoke-sessions"), &["is not signed"]);
    let unsigned_again = t.commit(
        &[(
            "manifests/dave.yaml",
            &one(
                "dave",
                "dave@contoso.example",
                "revoke-trusted-devices-before: 2026-11-20",
            ),
        )],
        None,
        NOV_29 + 2,
    );
    assert_ne!(signed, unsigned_again);
    let plan = t.plan_json(&[]);
    assert_denied(
        change(&plan, "dave@contoso.example", "revoke-trusted-devices"),
        &[
            "manifests/dave.yaml",
            short(&unsigned_again),
            "is not signed",
        ],
    );
    let o = apply(&t, &[]);
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(t.audit().is_empty());
}

/// A commit signed with a key the signers file does not list asks for nothing, even when its
/// comment or the commit's author claims to be an administrator.
#[test]
fn a_key_missing_from_the_signers_file_asks_for_nothing() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY]);
    let mallory = t.repo().key("gary-impostor", "ed25519", None);
    let file = (
        "manifests/carol.yaml",
        one("carol", CAROL, &format!("revoke-sessions-before: {T2}")),
    );
    let commit = t
        .repo()
        .commit(&[(file.0, &file.1)], Some(&mallory), NOV_29);
    let plan = t.plan_json(&[]);
    assert_denied(
        change(&plan, CAROL, "revoke-sessions"),
        &[
            "manifests/carol.yaml",
            short(&commit),
            &mallory.fingerprint,
            "does not list",
        ],
    );
    assert_eq!(apply(&t, &[]).code, 3);

    // Listed, the same commit names its signer.
    let lines = vec![t.key(GARY).line(GARY, ""), mallory.line(GARY, "")];
    t.s.repo.write_signers(&lines);
    assert_requested(
        change(&t.plan_json(&[]), CAROL, "revoke-sessions"),
        GARY,
        &mallory.fingerprint,
        &commit,
    );
}

/// A key listed with `valid-before` signs for commits made before that time only: the window is
/// checked at the commit time, not at "now".
#[test]
fn an_expired_key_asks_for_nothing_after_its_expiry() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY]);
    t.s.repo
        .write_signers(&[t.key(GARY).line(GARY, "valid-before=\"20261101Z\"")]);
    let before = t.ask(
        "henry",
        "henry@contoso.example",
        "app-passwords: none",
        Some(GARY),
        NOV_2026 - 3600,
    );
    let after = t.ask(
        "carol",
        CAROL,
        &format!("revoke-sessions-before: {T2}"),
        Some(GARY),
        NOV_29,
    );
    let plan = t.plan_json(&[]);
    assert_requested(
        change(&plan, "henry@contoso.example", "delete-app-passwords"),
        GARY,
        t.fingerprint(GARY),
        &before,
    );
    assert_denied(
        change(&plan, CAROL, "revoke-sessions"),
        &[
            "manifests/carol.yaml",
            short(&after),
            "expired at 2026-11-01 00:00:00 UTC",
        ],
    );
    assert_eq!(apply(&t, &[]).code, 3);
}

/// A valid signature copied onto a commit with another tree (the manifest edited after signing)
/// is a bad signature, and git agrees.
#[test]
fn a_signature_copied_onto_another_tree_asks_for_nothing() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY]);
    let genuine = t.ask(
        "sessions",
        CAROL,
        &format!("revoke-sessions-before: {T2}"),
        Some(GARY),
        NOV_29,
    );
    assert_requested(
        change(&t.plan_json(&[]), CAROL, "revoke-sessions"),
        GARY,
        t.fingerprint(GARY),
        &genuine,
    );
    // The same manifest, now aimed at priya; gary's signature pasted onto it.
    let priya = "priya@contoso.example";
    t.s.repo.write(
        "manifests/sessions.yaml",
        &one("sessions", priya, &format!("revoke-sessions-before: {T2}")),
    );
    t.s.repo.git(&["add", "manifests/sessions.yaml"]);
    let forged = t.repo().transplant_signature(&genuine);
    assert!(t.s.repo.git_verifies(&genuine) && !t.s.repo.git_verifies(&forged));
    assert_eq!(t.s.repo.last_change("manifests/sessions.yaml"), forged);

    let plan = t.plan_json(&[]);
    assert_eq!(plan["changes"].as_array().unwrap().len(), 1, "{plan:#}");
    assert_denied(
        change(&plan, priya, "revoke-sessions"),
        &[
            "manifests/sessions.yaml",
            short(&forged),
            "signature that is not valid",
        ],
    );
    let before = t.export();
    assert_eq!(apply(&t, &[]).code, 3);
    assert_eq!(t.export(), before);
}

/// Merged with a merge commit, a branch's signed commits stay the requesters of the files only
/// they changed (`git log -1 -- FILE` simplifies history through the TREESAME parent); a file the
/// merge itself changed (a conflict resolved in it) has the merge as its latest change, and an
/// unsigned merge asks for nothing.
#[test]
fn a_merge_commit_keeps_the_branch_authors_as_requesters_of_what_it_did_not_change() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY, ERIN]);
    let dave = "dave@contoso.example";
    let alice = "alice@contoso.example";
    let shared = |cutoff: &str| {
        one(
            "shared",
            dave,
            &format!("revoke-trusted-devices-before: {cutoff}"),
        )
    };
    t.commit(
        &[("manifests/shared.yaml", &shared("2026-11-01"))],
        Some(GARY),
        NOV_29,
    );

    t.s.repo.checkout("feature", true);
    let on_branch = t.commit(
        &[
            (
                "manifests/carol.yaml",
                &one("carol", CAROL, &format!("revoke-sessions-before: {T2}")),
            ),
            ("manifests/shared.yaml", &shared("2026-11-10")),
        ],
        Some(ERIN),
        NOV_29 + 10,
    );
    t.s.repo.checkout("main", false);
    let on_main = t.commit(
        &[
            (
                "manifests/alice.yaml",
                &one("alice", alice, "app-passwords: none"),
            ),
            ("manifests/shared.yaml", &shared("2026-11-05")),
        ],
        Some(GARY),
        NOV_29 + 20,
    );
    let merge = t.s.repo.output(
        &["merge", "--no-commit", "feature"],
        &Repo::dates(NOV_29 + 30),
        None,
    );
    assert!(!merge.status.success(), "shared.yaml should conflict");
    t.s.repo
        .write("manifests/shared.yaml", &shared("2026-11-20"));
    t.s.repo.git(&["add", "manifests/shared.yaml"]);
    let merged = t.repo().commit_staged(None, NOV_29 + 30, &["--no-edit"]);

    assert_eq!(t.s.repo.last_change("manifests/carol.yaml"), on_branch);
    assert_eq!(t.s.repo.last_change("manifests/alice.yaml"), on_main);
    assert_eq!(t.s.repo.last_change("manifests/shared.yaml"), merged);

    let plan = t.plan_json(&[]);
    assert_requested(
        change(&plan, CAROL, "revoke-sessions"),
        ERIN,
        t.fingerprint(ERIN),
        &on_branch,
    );
    assert_requested(
        change(&plan, alice, "delete-app-passwords"),
        GARY,
        t.fingerprint(GARY),
        &on_main,
    );
    assert_denied(
        change(&plan, dave, "revoke-trusted-devices"),
        &["manifests/shared.yaml", short(&merged), "is not signed"],
    );

    // The same history merged without a conflict: every file keeps its author.
    let mut t = Tenant::new(&[GARY, ERIN]);
    t.commit(
        &[("manifests/shared.yaml", &shared("2026-11-01"))],
        Some(GARY),
        NOV_29,
    );
    t.s.repo.checkout("feature", true);
    let on_branch = t.commit(
        &[("manifests/shared.yaml", &shared("2026-11-10"))],
        Some(ERIN),
        NOV_29 + 10,
    );
    t.s.repo.checkout("main", false);
    let on_main = t.commit(
        &[(
            "manifests/alice.yaml",
            &one("alice", alice, "app-passwords: none"),
        )],
        Some(GARY),
        NOV_29 + 20,
    );
    let merged = t.repo().merge("feature", None, NOV_29 + 30);
    assert_eq!(t.s.repo.last_change("manifests/shared.yaml"), on_branch);
    assert_ne!(merged, on_branch);
    let plan = t.plan_json(&[]);
    assert_requested(
        change(&plan, dave, "revoke-trusted-devices"),
        ERIN,
        t.fingerprint(ERIN),
        &on_branch,
    );
    assert_requested(
        change(&plan, alice, "delete-app-passwords"),
        GARY,
        t.fingerprint(GARY),
        &on_main,
    );
    assert_eq!(apply(&t, &[]).code, 0);
}

/// Two manifests ask for one identical change; one signer may make it, the other may not. The
/// change is allowed and names the signer who may, whichever manifest sorts first.
#[test]
fn one_change_asked_for_by_an_allowed_and_a_denied_signer_is_allowed_as_the_allowed_one() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY, FRANK]);
    let setting = format!("revoke-sessions-before: {T2}");
    let by_frank = t.ask("a-frank", CAROL, &setting, Some(FRANK), NOV_29);
    // Frank alone may not.
    assert_denied(
        change(&t.plan_json(&[]), CAROL, "revoke-sessions"),
        &[FRANK],
    );
    let by_gary = t.ask("b-gary", CAROL, &setting, Some(GARY), NOV_29 + 1);
    assert_ne!(by_frank, by_gary);
    let plan = t.plan_json(&[]);
    let c = change(&plan, CAROL, "revoke-sessions");
    assert_eq!(
        c["sources"],
        serde_json::json!(["a-frank", "b-gary"]),
        "{c:#}"
    );
    assert_requested(c, GARY, t.fingerprint(GARY), &by_gary);
    assert_text_names(&t.plan_text(), GARY, &by_gary, t.fingerprint(GARY));
    let o = apply(&t, &[]);
    assert_eq!(o.code, 0, "{}", o.all());
}

/// Only a source that asks for exactly the change planned lends its requester's rights: an
/// administrator asking for an earlier cutoff does not allow a helpdesk administrator's later one.
#[test]
fn an_allowed_signer_asking_for_an_earlier_cutoff_does_not_allow_a_later_one() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY, FRANK]);
    t.ask(
        "a-gary",
        CAROL,
        &format!("revoke-sessions-before: {T1}"),
        Some(GARY),
        NOV_29,
    );
    let by_frank = t.ask(
        "b-frank",
        CAROL,
        &format!("revoke-sessions-before: {T2}"),
        Some(FRANK),
        NOV_29 + 1,
    );
    let plan = t.plan_json(&[]);
    let c = change(&plan, CAROL, "revoke-sessions");
    assert_eq!(c["cutoff"], T2, "{c:#}");
    let why = assert_denied(c, &[FRANK]);
    assert!(why.contains(short(&by_frank)), "{why}");
    assert_eq!(apply(&t, &[]).code, 3);
}

/// A signer who is disabled in the directory, or who is not in it at all, has no rights, whatever
/// the roles they hold.
#[test]
fn a_disabled_or_unknown_signer_has_no_rights() {
    if !tools() {
        return;
    }
    let nobody = "nobody@contoso.example";
    let mut t = Tenant::new(&[OLGA, nobody, ERIN]);
    let setting = format!("revoke-sessions-before: {T2}");
    let by_olga = t.ask("olga-asks", CAROL, &setting, Some(OLGA), NOV_29);
    let by_nobody = t.ask(
        "nobody-asks",
        "bob@contoso.example",
        "app-passwords: none",
        Some(nobody),
        NOV_29 + 1,
    );
    let plan = t.plan_json(&[]);
    let why = assert_denied(change(&plan, CAROL, "revoke-sessions"), &[OLGA, "disabled"]);
    assert!(why.contains(short(&by_olga)), "{why}");
    let why = assert_denied(
        change(&plan, "bob@contoso.example", "delete-app-passwords"),
        &[nobody, "not a user"],
    );
    assert!(why.contains(short(&by_nobody)), "{why}");

    // Erin holds olga's role and is enabled: the same request, signed by her, is allowed.
    let by_erin = t.ask("erin-asks", CAROL, &setting, Some(ERIN), NOV_29 + 2);
    let plan = t.plan_json(&[]);
    let c = change(&plan, CAROL, "revoke-sessions");
    assert_eq!(
        c["sources"],
        serde_json::json!(["erin-asks", "olga-asks"]),
        "{c:#}"
    );
    assert_requested(c, ERIN, t.fingerprint(ERIN), &by_erin);
}

/// The role table is signed too: widened in a commit signed by the helpdesk administrator it
/// widens, it makes every change denied (a global administrator's included), with a reason naming
/// roles.yaml and that commit. Signed again by a global administrator, the widened table holds.
#[test]
fn a_role_table_widened_by_the_helpdesk_administrator_it_widens_denies_every_change() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY, FRANK]);
    let roles = std::fs::read_to_string(format!("{EXAMPLE_POLICIES}/roles.yaml")).unwrap();
    let guardrails =
        std::fs::read_to_string(format!("{EXAMPLE_POLICIES}/guardrails.yaml")).unwrap();
    let by_gary = t.commit(
        &[
            ("policies/roles.yaml", &roles),
            ("policies/guardrails.yaml", &guardrails),
            (
                "manifests/carol.yaml",
                &one("carol", CAROL, &format!("revoke-sessions-before: {T2}")),
            ),
        ],
        Some(GARY),
        NOV_29,
    );
    let plan = t.plan_json(&[]);
    assert_eq!(plan["policies"], "./policies", "{plan:#}");
    assert_requested(
        change(&plan, CAROL, "revoke-sessions"),
        GARY,
        t.fingerprint(GARY),
        &by_gary,
    );

    // Frank gives helpdesk administrators revoke-sessions on anyone, and asks for one.
    let widened = roles.replace(
        "  - name: helpdesk-administrator\n    actions: [reset-password]\n    targets:\n      holding-only:\n        - directory-readers\n        - guest-inviter\n        - password-administrator\n        - message-center-reader\n        - reports-reader\n        - usage-summary-reports-reader\n        - helpdesk-administrator\n",
        "  - name: helpdesk-administrator\n    actions: [reset-password, revoke-sessions]\n    targets: any\n",
    );
    assert_ne!(
        widened, roles,
        "the example role table changed; update this test"
    );
    let by_frank = t.commit(
        &[
            ("policies/roles.yaml", &widened),
            (
                "manifests/gary.yaml",
                &one("gary", GARY, "revoke-sessions-before: 2026-11-29T00:00:00Z"),
            ),
        ],
        Some(FRANK),
        NOV_29 + 10,
    );
    let plan = t.plan_json(&[]);
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{plan:#}");
    for c in changes {
        assert_denied(c, &["roles.yaml", short(&by_frank)]);
    }
    assert_eq!(plan["summary"]["denied"], 2, "{plan:#}");
    let before = t.export();
    assert_eq!(apply(&t, &[]).code, 3);
    assert_eq!(t.export(), before);

    // Gary signs the widened table (a comment added): now it is the table in force.
    let approved = t.commit(
        &[(
            "policies/roles.yaml",
            &format!("# approved by gary\n{widened}"),
        )],
        Some(GARY),
        NOV_29 + 20,
    );
    assert_ne!(approved, by_frank);
    let plan = t.plan_json(&[]);
    assert_requested(
        change(&plan, GARY, "revoke-sessions"),
        FRANK,
        t.fingerprint(FRANK),
        &by_frank,
    );
    assert_eq!(
        change(&plan, GARY, "revoke-sessions")["verdict"]["role"],
        "helpdesk-administrator"
    );
    assert_requested(
        change(&plan, CAROL, "revoke-sessions"),
        GARY,
        t.fingerprint(GARY),
        &by_gary,
    );
}

/// A manifest that is modified, staged or untracked is an error (exit 1) naming it, for plan and
/// apply alike; files that are not manifests (a store copied into the tree, notes) do not count.
#[test]
fn a_dirty_manifest_is_an_error_naming_it() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY]);
    t.ask(
        "carol",
        CAROL,
        &format!("revoke-sessions-before: {T2}"),
        Some(GARY),
        NOV_29,
    );
    t.ask(
        "dave",
        "dave@contoso.example",
        "app-passwords: none",
        Some(GARY),
        NOV_29 + 1,
    );
    // Untracked files that are no manifest, and a store inside the work tree, untracked.
    t.s.repo.write("notes.txt", "not a manifest\n");
    t.s.ok(&["--store", "mfactl.db", "init"]);
    let directory = format!("{}/directory.yaml", common::EXAMPLES);
    t.s.ok(&["--store", "mfactl.db", "store", "import", &directory]);
    assert_eq!(t.signed(&["plan", "--detailed-exitcode"]).code, 2);
    let o = t.signed(&["--store", "mfactl.db", "plan", "--detailed-exitcode"]);
    assert_eq!(o.code, 2, "an untracked store does not count:\n{}", o.all());

    let before = t.export();
    for (what, dirty) in [
        ("modified", "manifests/carol.yaml"),
        ("staged", "manifests/dave.yaml"),
        ("untracked", "manifests/new.yaml"),
    ] {
        let text = one(what, CAROL, "app-passwords: none");
        t.s.repo.write(dirty, &text);
        if what == "staged" {
            t.s.repo.git(&["add", dirty]);
        }
        for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
            let o = t.signed(args);
            assert_eq!(o.code, 1, "{what}: {args:?}\n{}", o.all());
            assert!(
                o.stderr.contains(dirty),
                "{what}: stderr names {dirty}:\n{}",
                o.stderr
            );
        }
        t.s.repo.git(&["reset", "-q", "--hard"]);
        if what == "untracked" {
            std::fs::remove_file(t.s.repo.path(dirty)).unwrap();
        }
        assert_eq!(
            t.signed(&["plan", "--detailed-exitcode"]).code,
            2,
            "{what}: clean again"
        );
    }
    assert_eq!(t.export(), before);
    assert!(t.audit().is_empty());
}

/// `apply --plan` checks the saved plan's requesters again, from git and against the signers file
/// it is given: with the requester's key removed, or with the manifest changed since by someone
/// else, the plan is stale (exit 4) and nothing is applied; as reviewed, it applies.
#[test]
fn apply_plan_verifies_the_requesters_again() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY, FRANK]);
    let setting = format!("revoke-sessions-before: {T2}");
    let by_gary = t.ask("carol", CAROL, &setting, Some(GARY), NOV_29);
    let saved = t.outside("plan.json");
    let o = t.signed(&["plan", "--out", &saved]);
    assert_eq!(o.code, 0, "{}", o.all());
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_requested(
        change(&plan, CAROL, "revoke-sessions"),
        GARY,
        t.fingerprint(GARY),
        &by_gary,
    );
    let before = t.export();

    // The operator's signers file no longer lists gary's key.
    let without = t.outside("signers-without-gary");
    std::fs::write(&without, t.key(FRANK).line(FRANK, "") + "\n").unwrap();
    let o = t.s.run(&["apply", "--plan", &saved, "--signers", &without]);
    assert_eq!(o.code, 4, "refused as stale:\n{}", o.all());
    for word in [
        GARY,
        short(&by_gary),
        t.fingerprint(GARY),
        "nothing was applied",
    ] {
        assert!(o.stderr.contains(word), "{word:?} in:\n{}", o.stderr);
    }
    assert_eq!(t.export(), before, "nothing applied");
    assert!(t.audit().is_empty());

    // Frank signs the same request again (a comment added): the plan's requester is gone.
    let head = t.s.repo.git(&["rev-parse", "HEAD"]);
    let by_frank = t.commit(
        &[(
            "manifests/carol.yaml",
            &format!("# frank agrees\n{}", one("carol", CAROL, &setting)),
        )],
        Some(FRANK),
        NOV_29 + 5,
    );
    let o = t.signed(&["apply", "--plan", &saved]);
    assert_eq!(o.code, 4, "refused as stale:\n{}", o.all());
    assert!(o.stderr.contains(short(&by_frank)), "{}", o.stderr);
    assert_eq!(t.export(), before, "nothing applied");
    t.s.repo.git(&["reset", "-q", "--hard", &head]);

    // With the key listed, the same plan applies, and the record names gary.
    let o = t.signed(&["apply", "--plan", &saved]);
    assert_eq!(o.code, 0, "{}", o.all());
    let audit = t.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        audit[0]["requested_by"],
        requester(GARY, t.fingerprint(GARY), &by_gary)
    );
}

/// Each audit record names the requester, the key's fingerprint and the commit
/// (`"requested_by": {"user", "key", "commit"}`); `--actor` is recorded as who ran the apply, and
/// its own roles do not matter. Without `--signers`, `requested_by` is null.
#[test]
fn the_audit_record_carries_the_requester_key_and_commit() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY, ERIN]);
    let henry = "henry@contoso.example"; // reports-reader: may change nothing
    let by_gary = t.ask(
        "gary-asks",
        "alice@contoso.example",
        "app-passwords: none",
        Some(GARY),
        NOV_29,
    );
    let by_erin = t.ask(
        "erin-asks",
        CAROL,
        &format!("revoke-sessions-before: {T2}"),
        Some(ERIN),
        NOV_29 + 1,
    );
    let o = apply(&t, &["--actor", henry]);
    assert_eq!(o.code, 0, "{}", o.all());
    let audit = t.audit();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    let record = |user: &str| {
        audit
            .iter()
            .find(|r| r["user"] == user)
            .unwrap_or_else(|| panic!("no record for {user}: {audit:#?}"))
            .clone()
    };
    let alice = record("alice@contoso.example");
    assert_eq!(alice["actor"], henry, "{alice:#}");
    assert_eq!(
        alice["requested_by"],
        requester(GARY, t.fingerprint(GARY), &by_gary),
        "{alice:#}"
    );
    assert_eq!(alice["role"], "global-administrator", "{alice:#}");
    let carol = record(CAROL);
    assert_eq!(
        carol["requested_by"],
        requester(ERIN, t.fingerprint(ERIN), &by_erin),
        "{carol:#}"
    );
    assert_eq!(carol["role"], "authentication-administrator", "{carol:#}");
    assert_eq!(t.s.ok(&["audit", "verify"]).code, 0);

    // Without --actor, and then without --signers: the fields are null.
    t.ask(
        "more",
        "bob@contoso.example",
        "app-passwords: none",
        Some(GARY),
        NOV_29 + 2,
    );
    assert_eq!(apply(&t, &[]).code, 0);
    t.s.repo.write(
        "unsigned/x.yaml",
        &one("unsigned", "henry@contoso.example", "app-passwords: none"),
    );
    let o = t.s.run(&[
        "apply",
        "--auto-approve",
        "--actor",
        GARY,
        "unsigned/x.yaml",
    ]);
    assert_eq!(o.code, 0, "{}", o.all());
    let audit = t.audit();
    let bob = audit
        .iter()
        .find(|r| r["user"] == "bob@contoso.example")
        .unwrap();
    assert_eq!(bob["requested_by"]["user"], GARY, "{bob:#}");
    let unsigned = audit
        .iter()
        .find(|r| r["user"] == "henry@contoso.example")
        .unwrap();
    assert!(unsigned["requested_by"].is_null(), "{unsigned:#}");
    assert_eq!(unsigned["actor"], GARY);
}

// ---------------------------------------------------------------------------------------------
// When every requester is a global administrator, --signers decides exactly as --actor of a
// global administrator does.

/// A small deterministic generator (xorshift), so that each manifest set is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// Manifest files (path, text) for one set: a few manifests with random selectors and settings.
fn manifest_set(seed: u64, protected_breakglass: bool) -> Vec<(String, String)> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut users = vec![
        "alice", "bob", "carol", "dave", "lead", "erin", "frank", "priya", "gary", "henry", "ivan",
        "olga",
    ];
    if !protected_breakglass {
        users.push("breakglass");
    }
    let cutoffs = [
        "2026-01-01T00:00:00Z",
        "2026-11-20",
        T2,
        "2026-11-28T15:30:00+01:00",
        "2026-11-30T11:00:00Z",
    ];
    let settings = [
        "require-reregistration",
        "revoke-sessions-before",
        "revoke-trusted-devices-before",
        "reset-password-before",
        "app-passwords",
    ];
    let mut files = Vec::new();
    for m in 0..1 + rng.below(4) {
        let mut spec = String::new();
        for _ in 0..1 + rng.below(3) {
            match rng.below(4) {
                0 => spec.push_str("  - all-users: true\n"),
                1 => {
                    let group = rng.pick(&["contractors", "engineering", "helpdesk-admins"]);
                    spec.push_str(&format!("  - group: {group}\n"));
                }
                _ => {
                    let mut chosen: Vec<String> = (0..1 + rng.below(3))
                        .map(|_| format!("{}@contoso.example", rng.pick(&users)))
                        .collect();
                    chosen.sort();
                    chosen.dedup();
                    spec.push_str(&format!("  - users: [{}]\n", chosen.join(", ")));
                }
            }
            if rng.below(4) == 0 {
                spec.push_str(&format!(
                    "    except: [{}@contoso.example]\n",
                    rng.pick(&users)
                ));
            }
            let first = rng.below(settings.len());
            for s in 0..1 + rng.below(2) {
                let setting = settings[(first + s * 2) % settings.len()];
                if setting == "app-passwords" {
                    spec.push_str("    app-passwords: none\n");
                } else {
                    spec.push_str(&format!("    {setting}: {}\n", rng.pick(&cutoffs)));
                }
            }
        }
        let name = format!("set{seed}-m{m}");
        files.push((format!("manifests/{name}.yaml"), manifest(&name, &spec)));
    }
    files
}

/// The plan without what only --signers adds or changes: each change's requester, the plan's
/// `requesters` (each manifest's signer, and why the policies were refused, if they were), and
/// the plan id (which covers the requesters, and the plan's actor, absent with --signers alone)
/// and actor.
fn without_requesters(mut plan: Value) -> Value {
    let o = plan.as_object_mut().unwrap();
    o.remove("plan_id");
    o.remove("actor");
    o.remove("requesters");
    for c in o["changes"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("requested_by");
    }
    plan
}

#[test]
fn signed_plans_of_global_administrators_decide_as_a_global_administrator_actor_does() {
    if !tools() {
        return;
    }
    let mut sets: Vec<(Vec<(String, String)>, bool)> = Vec::new();
    // The repository's example manifests, with its example policies.
    let examples: Vec<(String, String)> =
        std::fs::read_dir(format!("{}/manifests", common::EXAMPLES))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                (
                    format!("manifests/{name}"),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
    sets.push((examples, true));
    for seed in 1..=5u64 {
        let with_policies = seed % 2 == 0;
        sets.push((manifest_set(seed, with_policies), with_policies));
    }

    let mut compared = 0;
    for (i, (files, with_policies)) in sets.iter().enumerate() {
        let mut t = Tenant::new(&[GARY, BREAKGLASS]);
        let mut requesters = BTreeMap::new();
        if *with_policies {
            let roles = std::fs::read_to_string(format!("{EXAMPLE_POLICIES}/roles.yaml")).unwrap();
            let guard =
                std::fs::read_to_string(format!("{EXAMPLE_POLICIES}/guardrails.yaml")).unwrap();
            t.commit(
                &[
                    ("policies/roles.yaml", &roles),
                    ("policies/guardrails.yaml", &guard),
                ],
                Some(BREAKGLASS),
                NOV_29,
            );
        }
        // Each manifest in its own commit, by one global administrator or the other.
        for (j, (path, text)) in files.iter().enumerate() {
            let who = if (i + j) % 2 == 0 { GARY } else { BREAKGLASS };
            let commit = t.commit(&[(path, text)], Some(who), NOV_29 + 1 + j as i64);
            requesters.insert(commit, who);
        }
        let o = t.s.run(&["plan", "--format", "json", "--actor", GARY]);
        assert_eq!(o.code, 0, "set {i}: {}", o.all());
        let by_actor: Value = serde_json::from_str(&o.stdout).unwrap();
        eprintln!(
            "set {i}: {} changes",
            by_actor["changes"].as_array().unwrap().len()
        );
        let signed = t.plan_json(&[]);

        let named = signed["requesters"]["manifests"].as_object().unwrap();
        assert_eq!(named.len(), files.len(), "set {i}: {signed:#}");
        for (name, r) in named {
            let commit = r["commit"].as_str().unwrap();
            assert_eq!(r["user"], requesters[commit], "set {i}: {name}");
            assert_eq!(
                r["key"],
                t.fingerprint(requesters[commit]),
                "set {i}: {name}"
            );
        }
        assert!(
            signed["requesters"]["policy_refused"].is_null(),
            "set {i}: {signed:#}"
        );
        for c in signed["changes"].as_array().unwrap() {
            let r = &c["requested_by"];
            let commit = r["commit"]
                .as_str()
                .unwrap_or_else(|| panic!("set {i}: {c:#}"));
            assert_eq!(r["user"], requesters[commit], "set {i}: {c:#}");
            assert_eq!(
                r["key"],
                t.fingerprint(requesters[commit]),
                "set {i}: {c:#}"
            );
        }
        assert_eq!(
            without_requesters(signed.clone()),
            without_requesters(by_actor.clone()),
            "set {i}: {files:#?}\nsigned: {signed:#}\nby actor: {by_actor:#}"
        );
        compared += signed["changes"].as_array().unwrap().len();
    }
    assert!(compared >= 20, "the sets planned only {compared} changes");
}

/// In a shallow clone (actions/checkout's default depth is 1), `git log -1 -- FILE` names the
/// boundary commit for every file it holds, whoever changed the file. Frank's request must not
/// become the request of whoever signed the tip: mfactl refuses the clone, or denies the change.
/// (Not in the first contract; this is what keeps a depth-1 checkout from lending rights.)
#[test]
fn a_shallow_clone_does_not_lend_the_tip_signers_rights() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY, FRANK]);
    let asks = "revoke-sessions-before: 2026-11-29T00:00:00Z";
    t.ask("gary-sessions", GARY, asks, Some(FRANK), NOV_29);
    let tip = t.commit(&[("README.md", "# requests\n")], Some(GARY), NOV_29 + 10);
    assert_denied(change(&t.plan_json(&[]), GARY, "revoke-sessions"), &[FRANK]);

    let clone = tempfile::tempdir().unwrap();
    let origin = format!("file://{}", t.s.repo.dir.display());
    let into = clone.path().display().to_string();
    t.s.repo
        .git(&["clone", "-q", "--depth", "1", "--no-local", &origin, &into]);
    let shallow = common::Env {
        dir: clone,
        store: t.s.env.store.clone(),
    };
    let git_env = t.s.repo.git_env();
    let git_env: Vec<(&str, &str)> = git_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let signers = t.s.signers();
    let o = shallow.run_env(
        &["plan", "--format", "json", "--signers", &signers],
        &git_env,
    );
    if o.code == 0 {
        let plan: Value = serde_json::from_str(&o.stdout).unwrap();
        let c = change(&plan, GARY, "revoke-sessions");
        assert!(
            !allowed(c) && c["requested_by"].is_null(),
            "the shallow clone names the tip {} as frank's request's commit: {c:#}",
            short(&tip)
        );
    } else {
        assert_eq!(o.code, 1, "{}", o.all());
        assert!(o.stderr.contains("shallow"), "{}", o.stderr);
    }
}

/// The daemon decides by signers too: `watch --once --signers FILE`, with no actor, applies
/// nothing while one change is denied for its signer (exit 3, as apply), and applies, naming the
/// requester, once a global administrator's signed commit has removed that request.
#[test]
fn watch_once_decides_by_whoever_signed() {
    if !tools() {
        return;
    }
    let mut t = Tenant::new(&[GARY, FRANK]);
    let by_gary = t.ask(
        "carol",
        CAROL,
        &format!("revoke-sessions-before: {T2}"),
        Some(GARY),
        NOV_29,
    );
    t.ask(
        "gary",
        GARY,
        "revoke-sessions-before: 2026-11-29T00:00:00Z",
        Some(FRANK),
        NOV_29 + 1,
    );
    let before = t.export();
    let o = t.signed(&["watch", "--once"]);
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(
        o.all().contains(FRANK),
        "the log names the requester:\n{}",
        o.all()
    );
    assert_eq!(t.export(), before);

    let gary = t.key(GARY).clone();
    t.repo()
        .remove(&["manifests/gary.yaml"], Some(&gary), NOV_29 + 2);
    let o = t.signed(&["watch", "--once"]);
    assert_eq!(o.code, 0, "{}", o.all());
    let audit = t.audit();
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["user"], CAROL);
    assert_eq!(
        audit[0]["requested_by"],
        requester(GARY, t.fingerprint(GARY), &by_gary)
    );
}
