//! What an adversarial pass found at the edges of the command line: argument errors that exited
//! 2 (read as "changes pending" by `plan --detailed-exitcode`), an empty actor taken for none,
//! `--diff` headers that let an id forge lines, store paths that SQLite took for special names,
//! and a leap second called a fraction.

mod common;
use common::*;

const GARY: &str = "gary@contoso.example";

fn no_panic(o: &Out) {
    assert!(
        !o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"),
        "{}",
        o.stderr
    );
}

#[test]
fn argument_errors_exit_1_not_2_which_means_changes_pending() {
    let env = Env::example();
    let m = format!("{EXAMPLES}/manifests");
    // The plan itself would exit 2 (changes pending): a typo must not look like that.
    assert_eq!(
        env.run(&["plan", &m, "--detailed-exitcode", "--actor", GARY])
            .code,
        2
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["plan", &m, "--detailed-exitcode", "--frmat", "json"],
            "unexpected argument '--frmat'",
        ),
        (
            &["plan", &m, "--detailed-exitcode", "--format", "xml"],
            "invalid value 'xml'",
        ),
        (
            &["plan", &m, "--detailed-exitcode", "--out"],
            "a value is required",
        ),
        (&["pln", &m], "unrecognized subcommand 'pln'"),
        (&["show"], "required arguments were not provided"),
        (&["apply", &m, "--plan", "p.json"], "cannot be used with"),
        (
            &["--store", "", "plan", &m],
            "a value is required for '--store",
        ),
        (&[], "Usage:"),
        (&["store"], "Usage:"),
    ];
    for (args, needle) in cases {
        let o = env.run(args);
        assert_eq!(o.code, 1, "mfactl {args:?}: {}", o.all());
        assert!(
            o.stderr.starts_with("error:") || o.stderr.contains("Usage:"),
            "{args:?}: {}",
            o.stderr
        );
        assert!(o.stderr.contains(needle), "{args:?}: {}", o.stderr);
        assert!(o.stdout.is_empty(), "{args:?}: {}", o.stdout);
        no_panic(&o);
    }
    let o = env.run_env(
        &["plan", &m, "--detailed-exitcode"],
        &[("MFACTL_STORE", "")],
    );
    assert_eq!(o.code, 1, "MFACTL_STORE set but empty: {}", o.all());
}

#[test]
fn help_and_version_still_exit_0_on_stdout() {
    let env = Env::bare();
    for args in [
        &["--help"][..],
        &["-h"],
        &["plan", "--help"],
        &["help", "apply"],
        &["--version"],
        &["-V"],
    ] {
        let o = env.run(args);
        assert_eq!(o.code, 0, "{args:?}: {}", o.all());
        assert!(!o.stdout.is_empty(), "{args:?} prints to stdout");
        assert!(o.stderr.is_empty(), "{args:?}: {}", o.stderr);
    }
    assert!(env.run(&["--version"]).stdout.starts_with("mfactl "));
}

#[test]
fn an_empty_actor_is_an_error_not_no_actor() {
    let env = Env::example();
    let m = format!("{EXAMPLES}/manifests");
    let before = env.export();
    for (args, env_actor) in [
        (vec!["plan", &m, "--detailed-exitcode", "--actor", ""], None),
        (vec!["plan", &m, "--detailed-exitcode", "--actor="], None),
        (
            vec!["plan", &m, "--detailed-exitcode", "--actor", "  "],
            None,
        ),
        (vec!["plan", &m, "--detailed-exitcode"], Some("")),
        (vec!["apply", &m, "--auto-approve"], Some("")),
    ] {
        let o = match env_actor {
            Some(v) => env.run_env(&args, &[("MFACTL_ACTOR", v)]),
            None => env.run(&args),
        };
        assert_eq!(o.code, 1, "{args:?} {env_actor:?}: {}", o.all());
        assert!(
            o.stderr.starts_with("error: the actor is empty"),
            "{}",
            o.stderr
        );
        assert!(
            o.stderr.contains("MFACTL_ACTOR") && o.stderr.contains("user id"),
            "says what to do: {}",
            o.stderr
        );
        assert!(o.stdout.is_empty(), "nothing planned: {}", o.stdout);
    }
    assert_eq!(env.export(), before);
    // A real actor on the command line overrides an empty variable, as any option does.
    let o = env.run_env(
        &["plan", &m, "--detailed-exitcode", "--actor", GARY],
        &[("MFACTL_ACTOR", "")],
    );
    assert_eq!(o.code, 2, "{}", o.all());
}

/// A user whose id carries a newline and a forged diff header line.
const FORGER: &str = "eve\n+++ forged (after apply)\n@contoso.example";

fn forger_env() -> Env {
    let env = Env::empty();
    env.import(
        "users:\n  - id: \"eve\\n+++ forged (after apply)\\n@contoso.example\"\n    display-name: Eve\n    app-passwords: [{id: a-1, name: n, created-at: 2025-01-01T00:00:00Z}]\n",
    );
    env.write(
        "m/all.yaml",
        &manifest("all", "  - all-users: true\n    app-passwords: none\n"),
    );
    env
}

/// The diff's header lines: exactly one `--- ` and one `+++ `, each naming the escaped id, and
/// no line that the id forged.
fn assert_headers_escaped(diff: &str, what: &str) {
    let escaped = "eve\\u{a}+++ forged (after apply)\\u{a}@contoso.example";
    let minus: Vec<&str> = diff.lines().filter(|l| l.starts_with("--- ")).collect();
    let plus: Vec<&str> = diff.lines().filter(|l| l.starts_with("+++ ")).collect();
    assert_eq!(
        minus,
        [format!("--- {escaped} (actual)")],
        "{what}:\n{diff}"
    );
    assert_eq!(
        plus,
        [format!("+++ {escaped} (after apply)")],
        "{what}:\n{diff}"
    );
    assert!(
        !diff
            .lines()
            .any(|l| l.starts_with("+++ forged") || l.starts_with("@contoso")),
        "{what}: a forged line:\n{diff}"
    );
}

#[test]
fn diff_headers_escape_a_newline_in_the_id() {
    let env = forger_env();
    let o = env.ok(&["plan", "m", "--diff"]);
    assert_headers_escaped(&o.stdout, "text");
    assert!(!o.stdout.contains(FORGER), "{}", o.stdout);

    let o = env.ok(&["plan", "m", "--diff", "--format", "markdown"]);
    assert_headers_escaped(&o.stdout, "markdown");

    let o = env.ok(&["plan", "m", "--diff", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let diff = v["diffs"][FORGER]
        .as_str()
        .expect("the diff, keyed by the id");
    assert_headers_escaped(diff, "json");
}

#[test]
fn a_store_path_is_a_plain_file_not_an_sqlite_special_name() {
    let env = Env::bare();
    // `:memory:` would be a database that vanishes: refused, and no file left behind.
    for args in [
        vec!["--store", ":memory:", "init"],
        vec!["--store", ":memory:", "store", "export"],
    ] {
        let o = env.run(&args);
        assert_eq!(o.code, 1, "{args:?}: {}", o.all());
        assert!(
            o.stderr
                .starts_with("error: store `:memory:` is SQLite's in-memory database"),
            "{}",
            o.stderr
        );
        assert!(o.stderr.contains("file path"), "{}", o.stderr);
    }
    let o = env.run_env(&["init"], &[("MFACTL_STORE", ":memory:")]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(!env.exists(":memory:"));

    // A URI-looking name is just an odd file name in the current directory, and works as a store.
    let odd = "file:x.db?mode=memory";
    env.ok(&["--store", odd, "init"]);
    let size = std::fs::metadata(env.path(odd)).expect("the file").len();
    assert!(size > 0, "init wrote the schema into the file itself");
    env.ok(&[
        "--store",
        odd,
        "store",
        "import",
        &format!("{EXAMPLES}/directory.yaml"),
    ]);
    let export = env.ok(&["--store", odd, "store", "export"]).stdout;
    assert!(export.contains("alice@contoso.example"), "{export}");
    let m = format!("{EXAMPLES}/manifests");
    env.ok(&[
        "--store",
        odd,
        "apply",
        &m,
        "--auto-approve",
        "--actor",
        GARY,
        "--credentials-out",
        "c.txt",
    ]);
    let o = env.run(&[
        "--store",
        odd,
        "plan",
        &m,
        "--detailed-exitcode",
        "--actor",
        GARY,
    ]);
    assert_eq!(o.code, 0, "applied to that file: {}", o.all());
    assert!(!env.exists("x.db"), "no other file was created");
}

#[test]
fn a_leap_second_is_named_in_manifests_and_mfactl_now() {
    let env = Env::example();
    env.write(
        "m/leap.yaml",
        &manifest(
            "leap",
            "  - users: [alice@contoso.example]\n    revoke-sessions-before: 2016-12-31T23:59:60Z\n",
        ),
    );
    let before = env.export();
    for args in [vec!["validate", "m"], vec!["plan", "m"]] {
        let o = env.run(&args);
        assert_eq!(o.code, 1, "{args:?}: {}", o.all());
        let line = o
            .stderr
            .lines()
            .find(|l| l.starts_with("m/leap.yaml:"))
            .unwrap_or_else(|| panic!("a located problem: {}", o.stderr));
        assert!(line.starts_with("m/leap.yaml:7:"), "{line}");
        assert!(
            line.contains("is a leap second; leap seconds are not supported: use 2016-12-31T23:59:59Z or the next second, 2017-01-01T00:00:00Z"),
            "{line}"
        );
        assert!(!line.contains("fractional"), "{line}");
    }
    let o = env.run_env(
        &["store", "export"],
        &[("MFACTL_NOW", "2016-12-31T23:59:60Z")],
    );
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr
            .starts_with("error: MFACTL_NOW: `2016-12-31T23:59:60Z` is a leap second"),
        "{}",
        o.stderr
    );
    assert_eq!(env.export(), before);
}
