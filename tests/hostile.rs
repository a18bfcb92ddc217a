//! Hostile input: YAML bombs, deep nesting, huge files, symlink loops, FIFOs, unreadable files,
//! broken stores and ids full of control characters. Each ends with a clear message and the right
//! exit code, never a panic or a hang, and the store untouched.

mod common;
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs with a deadline: a hang is a failure, not a stuck test run. Its output is read while it
/// runs, so a chatty child never blocks on a full pipe.
fn run_bounded(env: &Env, args: &[&str]) -> Out {
    use std::io::Read;
    let mut child = env
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mfactl {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn rejected(env: &Env, args: &[&str], needle: &str) -> Out {
    let before = env.export();
    let o = run_bounded(env, args);
    assert_eq!(o.code, 1, "{args:?}: {}", o.all());
    assert!(
        o.stderr.contains(needle),
        "{args:?}: expected {needle:?} in:\n{}",
        o.stderr
    );
    assert!(
        !o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"),
        "{}",
        o.stderr
    );
    assert_eq!(env.export(), before, "{args:?} changed the store");
    o
}

fn billion_laughs(inside: &str) -> String {
    let mut s = String::from("a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
    for i in 1..10 {
        let p = i - 1;
        s.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    s.push_str(inside);
    s
}

#[test]
fn a_yaml_bomb_is_refused_quickly() {
    let env = Env::example();
    // The aliases sit where the parser must expand them: an entry's users and the directory's users.
    let laughs = format!(
        "{}apiVersion: mfactl/v1\nkind: UserSettings\nmetadata: {{name: bomb}}\nspec:\n  - users: *a9\n    app-passwords: none\n",
        billion_laughs("").lines().map(|l| format!("x-{l}\n")).collect::<String>()
    );
    env.write("m/bomb.yaml", &laughs);
    rejected(&env, &["validate", "m"], "m/bomb.yaml:");
    rejected(&env, &["plan", "m"], "m/bomb.yaml:");
    env.write(
        "dir.yaml",
        &format!(
            "{}users: *a9\n",
            billion_laughs("")
                .lines()
                .map(|l| format!("x{l}\n"))
                .collect::<String>()
        ),
    );
    rejected(&env, &["store", "import", "dir.yaml"], "dir.yaml:");
}

/// Found by fuzzing the directory format (`fuzz/`): the fast reader of plain YAML skipped comment
/// lines unread, so it accepted a NUL that YAML refuses anywhere; an import must refuse it as
/// serde_yaml does, wherever the comment is. Deep nesting inside an otherwise plain users list
/// is refused as well, not read by the fast reader.
#[test]
fn what_yaml_refuses_in_comments_or_depth_is_refused_by_import_too() {
    let env = Env::example();
    for (name, text) in [
        (
            "nul-head.yaml",
            "#\0 a comment\ngroups: []\nusers:\n- id: m1@contoso.example\n",
        ),
        (
            "nul-gap.yaml",
            "groups: []\nusers:\n#\0id: a@x# The duhods:\n  - id: m1@contoso.example\n",
        ),
        (
            "nul-after.yaml",
            "users:\n- id: m1@contoso.example\n# \u{1}\n",
        ),
        ("c1.yaml", "users:\n- id: m1@contoso.example\n# \u{9f}\n"),
    ] {
        env.write(name, text);
        let o = rejected(&env, &["store", "import", name], name);
        assert!(!o.stderr.contains("Imported"), "{}", o.all());
    }
    let deep = format!(
        "users:\n- id: m1@contoso.example\n  roles: {}{}\n",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    env.write("deep-roles.yaml", &deep);
    rejected(
        &env,
        &["store", "import", "deep-roles.yaml"],
        "deep-roles.yaml",
    );
}

#[test]
fn deep_nesting_is_refused() {
    let env = Env::example();
    let deep = format!(
        "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata: {{name: deep}}\nspec: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    env.write("m/deep.yaml", &deep);
    rejected(&env, &["validate", "m"], "m/deep.yaml:");
    env.write(
        "deep-dir.yaml",
        &format!("users: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
    );
    rejected(&env, &["store", "import", "deep-dir.yaml"], "deep-dir.yaml");
    let flow = format!("users: {}\n", "{a: ".repeat(50_000));
    env.write("deep2.yaml", &flow);
    rejected(&env, &["store", "import", "deep2.yaml"], "deep2.yaml");
}

#[test]
fn a_manifest_over_the_size_cap_is_refused_without_reading_it() {
    let env = Env::example();
    let path = env.write("m/huge.yaml", "");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(65 * 1024 * 1024)
        .unwrap();
    rejected(&env, &["validate", "m"], "byte limit");
}

#[test]
fn symlinks_inside_a_manifest_tree_are_not_followed() {
    let env = Env::example();
    env.write("outside/evil.yaml", "this is: [not a manifest\n");
    env.write(
        "m/ok.yaml",
        &manifest(
            "ok",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    std::os::unix::fs::symlink(env.path("outside"), env.path("m/escape")).unwrap();
    std::os::unix::fs::symlink(env.path("outside/evil.yaml"), env.path("m/evil.yaml")).unwrap();
    std::os::unix::fs::symlink(env.path("m/loop-b"), env.path("m/loop-a")).unwrap();
    std::os::unix::fs::symlink(env.path("m/loop-a"), env.path("m/loop-b")).unwrap();
    std::os::unix::fs::symlink(env.path("m"), env.path("m/self")).unwrap();
    let o = run_bounded(&env, &["validate", "m"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.stderr.contains("1 manifest in 1 file valid"),
        "{}",
        o.stderr
    );
    // A looping link named on the command line is an error that names it.
    rejected(&env, &["validate", "m/loop-a"], "m/loop-a");
}

#[test]
fn a_symlink_in_a_manifest_directory_was_skipped_without_a_word() {
    let env = Env::example();
    env.write(
        "outside/linked.yaml",
        &manifest(
            "linked",
            "  - users: [alice@contoso.example]\n    app-passwords: none\n",
        ),
    );
    env.write(
        "m/ok.yaml",
        &manifest(
            "ok",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    std::os::unix::fs::symlink(env.path("outside/linked.yaml"), env.path("m/linked.yaml")).unwrap();
    let warning = "m/linked.yaml: a symlink, not followed";
    for args in [
        &["validate", "m"][..],
        &["validate", "m", "--offline"],
        &["plan", "m"],
    ] {
        let o = run_bounded(&env, args);
        assert_eq!(o.code, 0, "{args:?}: {}", o.all());
        assert!(
            o.stderr.contains(&format!("warning: {warning}")),
            "{args:?}: {}",
            o.stderr
        );
        // Still not followed: alice's app passwords are not planned.
        assert!(!o.stdout.contains("alice@contoso.example"), "{}", o.stdout);
    }
    let o = run_bounded(&env, &["validate", "m", "--format", "github"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.stdout
            .contains("::warning file=m/linked.yaml::m/linked.yaml: a symlink, not followed"),
        "{}",
        o.stdout
    );
    // The same files named directly are read, and nothing is skipped.
    let o = run_bounded(&env, &["validate", "m/ok.yaml", "m/linked.yaml"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(!o.stderr.contains("warning"), "{}", o.stderr);
}

#[test]
fn a_fifo_in_the_manifest_directory_is_skipped_and_refused_when_named() {
    let env = Env::example();
    env.write(
        "m/ok.yaml",
        &manifest(
            "ok",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    let fifo = env.path("m/pipe.yaml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let o = run_bounded(&env, &["validate", "m"]);
    assert_eq!(o.code, 0, "{}", o.all());
    rejected(&env, &["validate", "m/pipe.yaml"], "not a regular file");
}

#[test]
fn a_directory_named_like_a_manifest_is_walked_not_read() {
    let env = Env::example();
    env.write(
        "m/x.yaml/inner.yaml",
        &manifest(
            "inner",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    let o = run_bounded(&env, &["plan", "m", "--format", "json"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stdout.contains("\"inner\""), "{}", o.stdout);
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

#[test]
fn an_unreadable_manifest_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::example();
    let secret = env.write(
        "m/secret.yaml",
        &manifest(
            "s",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let o = if is_root() {
        // Root reads anything: drop to nobody for this run (validate --offline needs no store).
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(env.path("m"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_mfactl"),
                "validate",
                "--offline",
                "m",
            ])
            .current_dir(env.dir.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("setpriv (util-linux) runs the check as nobody");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    } else {
        run_bounded(&env, &["validate", "--offline", "m"])
    };
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains("m/secret.yaml: permission denied"),
        "{}",
        o.stderr
    );
}

#[test]
fn a_truncated_store_is_refused_without_a_panic() {
    let env = Env::example();
    let bytes = std::fs::read(&env.store).unwrap();
    std::fs::write(&env.store, &bytes[..bytes.len() / 3]).unwrap();
    let o = run_bounded(&env, &["store", "export"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("mfactl.db"), "{}", o.stderr);
    assert!(
        o.stderr.contains("corrupt") || o.stderr.contains("not an SQLite database"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("panicked"));
}

#[test]
fn a_store_that_cannot_grow_fails_cleanly_and_keeps_its_content() {
    // RLIMIT_FSIZE stands in for a full disk: writes past the limit fail (SIGXFSZ ignored).
    let env = Env::example();
    let before = env.export();
    let size = std::fs::metadata(&env.store).unwrap().len();
    let mut big = String::from("users:\n");
    for i in 0..20_000 {
        big.push_str(&format!(
            "  - {{id: filler{i}@contoso.example, display-name: \"{}\"}}\n",
            "x".repeat(40)
        ));
    }
    env.write("big.yaml", &big);
    let limit_blocks = size / 1024 + 64;
    let script =
        format!("trap '' XFSZ; ulimit -f {limit_blocks}; exec \"$0\" store import big.yaml");
    let o = env.cmd().arg("-c").arg(&script).output();
    // `cmd()` runs mfactl directly; run it under sh instead.
    drop(o);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_mfactl"))
        .current_dir(env.dir.path())
        .env("MFACTL_STORE", &env.store)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("mfactl.db"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(env.export(), before, "nothing imported");
}

#[test]
fn hostile_ids_are_stored_faithfully_and_printed_harmlessly() {
    let env = Env::example();
    let ids = [
        r#"quote\"o'brien@contoso.example"#,
        "semi;colon'); DROP TABLE users;--@contoso.example",
        r"new\nline@contoso.example",
        r"nul\0byte@contoso.example",
        r"bidi\u202Eelpmaxe.osotnoc@evil",
        r"ansi\e[31mred\e[0m@contoso.example",
    ];
    let mut yaml = String::from("users:\n");
    for id in ids {
        yaml.push_str(&format!("  - id: \"{id}\"\n    app-passwords: [{{id: a, name: n, created-at: 2025-01-01T00:00:00Z}}]\n"));
    }
    env.import(&yaml);
    env.write(
        "m/all.yaml",
        &manifest("all", "  - all-users: true\n    app-passwords: none\n"),
    );
    let o = env.ok(&["plan", "m", "--actor", "gary@contoso.example"]);
    assert!(
        o.stdout.contains("Plan: 9 changes for 9 users, 0 denied."),
        "{}",
        o.stdout
    );
    for bad in ['\x1b', '\0', '\u{202E}'] {
        assert!(!o.stdout.contains(bad), "raw {bad:?} in the text plan");
    }
    assert!(
        o.stdout.contains("ansi\\u{1b}[31mred"),
        "escaped visibly: {}",
        o.stdout
    );
    assert!(
        !o.stdout.contains("new\nline"),
        "a newline in an id cannot forge a line"
    );
    let o = env.ok(&[
        "apply",
        "m",
        "--auto-approve",
        "--actor",
        "gary@contoso.example",
    ]);
    assert!(!o.all().contains('\x1b'));
    let audit = env.ok(&["audit"]).stdout;
    assert!(
        !audit.contains('\x1b') && !audit.contains('\u{202E}'),
        "{audit}"
    );
    // Stored faithfully: each id shows back exactly (YAML-escaped) and the SQL did nothing else.
    let export = env.export();
    assert!(
        export.contains("DROP TABLE users"),
        "the id is data, not SQL"
    );
    assert_eq!(
        env.show("semi;colon'); DROP TABLE users;--@contoso.example")["app-passwords"]
            .as_sequence()
            .unwrap()
            .len(),
        0
    );
    let o = env.run(&["show", "ansi\x1b[31mred\x1b[0m@nowhere"]);
    assert_eq!(o.code, 1);
    assert!(!o.stderr.contains('\x1b'), "{}", o.stderr);
    // GitHub annotations escape what the workflow-command syntax requires.
    env.write(
        "m/bad.yaml",
        &manifest(
            "b",
            "  - users: [\"a%b,c:d\\r\\ne@x\"]\n    app-passwords: none\n",
        ),
    );
    let o = env.run(&["validate", "m", "--format", "github"]);
    let line = o.stdout.lines().find(|l| l.contains("bad.yaml")).unwrap();
    assert!(
        line.contains("a%25b,c:d") || line.contains("a%25b"),
        "{line}"
    );
    assert!(!line.contains('\r'), "{line:?}");
}
