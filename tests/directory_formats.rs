//! The directory's two formats: YAML for people, JSON Lines for bulk. Each round-trips, either
//! converts into the other through a store, and a bad line is named and imports nothing.

mod common;
use common::*;

fn import_ok(env: &Env, args: &[&str]) -> Out {
    let mut all = vec!["store", "import"];
    all.extend_from_slice(args);
    env.ok(&all)
}

#[test]
fn json_lines_round_trip_the_example_directory() {
    let env = Env::example();
    let yaml = env.export();
    let jsonl = env.ok(&["store", "export", "--format", "jsonl"]).stdout;
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("one object a line"))
        .collect();
    let groups = lines.iter().take_while(|l| l["kind"] == "group").count();
    assert!(groups > 0);
    assert!(lines[groups..].iter().all(|l| l["kind"] == "user"));
    assert!(lines
        .iter()
        .all(|l| l.as_object().unwrap().keys().next().unwrap() == "kind"));
    assert_eq!(
        lines[groups]["id"], "alice@contoso.example",
        "{}",
        lines[groups]
    );

    // Into a fresh store by extension, by --format, and from stdin: the same directory.
    for (file, extra) in [
        ("d.jsonl", &[][..]),
        ("d.ndjson", &[][..]),
        ("d.txt", &["--format", "jsonl"][..]),
    ] {
        let fresh = Env::empty();
        fresh.write(file, &jsonl);
        let mut args = vec![file];
        args.extend_from_slice(extra);
        let o = import_ok(&fresh, &args);
        assert!(
            o.stderr.contains("Imported 13 users and 3 groups"),
            "{}",
            o.stderr
        );
        assert_eq!(fresh.export(), yaml, "{file}");
    }
    let fresh = Env::empty();
    let mut child = fresh
        .cmd()
        .args(["store", "import", "-", "--format", "jsonl"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(jsonl.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(fresh.export(), yaml, "stdin");
    // And YAML from stdin too.
    let fresh = Env::empty();
    let mut child = fresh
        .cmd()
        .args(["store", "import", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(fresh.export(), yaml, "YAML on stdin");
}

#[test]
fn json_lines_round_trip_thousands_of_users_across_batches() {
    let env = Env::empty();
    let mut yaml = String::from("groups:\n- name: big\n  role-assignable: true\nusers:\n");
    for i in 0..5_000 {
        yaml.push_str(&format!(
            "- id: u{i:05}@x.example\n  display-name: \"U \\\"{i}\\\"\"\n  groups: [big]\n  \
             sessions: [{{id: s-{i}, issued-at: 2026-11-01T00:00:00Z}}]\n  \
             app-passwords: [{{id: a-{i}, name: \"mail\\tapp\", created-at: 2025-01-01T00:00:00Z}}]\n"
        ));
    }
    env.write("d.yaml", &yaml);
    import_ok(&env, &["d.yaml"]);
    let exported = env.export();
    let jsonl = env.ok(&["store", "export", "--format", "jsonl"]).stdout;
    assert_eq!(jsonl.lines().count(), 5_001);
    let fresh = Env::empty();
    fresh.write("d.jsonl", &jsonl);
    let o = import_ok(&fresh, &["d.jsonl"]);
    assert!(
        o.stderr.contains("Imported 5000 users and 1 group"),
        "{}",
        o.stderr
    );
    assert_eq!(fresh.export(), exported);
    assert_eq!(
        fresh.ok(&["store", "export", "--format", "jsonl"]).stdout,
        jsonl
    );
}

/// Importing `text` as JSON Lines fails with exit 1, naming `needle`, and changes nothing.
fn refused(text: &str, needle: &str) {
    let env = Env::example();
    let before = env.export();
    env.write("bad.jsonl", text);
    let o = env.run(&["store", "import", "bad.jsonl"]);
    assert_eq!(o.code, 1, "{needle}: {}", o.all());
    assert!(
        o.stderr.contains(needle),
        "expected {needle:?} in:\n{}",
        o.stderr
    );
    assert!(o.stderr.contains("nothing was imported"), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    assert_eq!(env.export(), before, "{needle}: nothing imported");
}

#[test]
fn a_bad_json_line_is_named_and_nothing_is_imported() {
    let group = r#"{"kind":"group","name":"g","role-assignable":false}"#;
    let user = |id: &str| format!(r#"{{"kind":"user","id":"{id}","groups":["g"]}}"#);
    let ok = format!("{group}\n{}\n{}\n", user("new1@x"), user("new2@x"));
    // The good file imports; each spoiled copy is refused at its line.
    let env = Env::example();
    env.write("good.jsonl", &ok);
    import_ok(&env, &["good.jsonl"]);

    refused(
        &format!("{ok}{{\"kind\":\"user\",\"id\":\n"),
        "bad.jsonl:4:",
    );
    refused(
        &format!("{ok}{{\"kind\":\"user\",\"id\":\"z@x\",\"colour\":1}}\n"),
        "bad.jsonl:4:",
    );
    refused(&format!("{ok}{{\"kind\":\"robot\"}}\n"), "bad.jsonl:4");
    refused(
        &format!("{ok}{group}\n"),
        "bad.jsonl:4: group `g` comes after the first user",
    );
    refused(
        &format!("{ok}{}\n", user("NEW1@x")),
        "bad.jsonl:4: user `NEW1@x` is listed twice",
    );
    refused(
        &format!(
            "{ok}{}\n",
            r#"{"kind":"user","id":"z@x","groups":["nope"]}"#
        ),
        "bad.jsonl:4: user `z@x` is in group `nope`",
    );
    refused(
        &format!("{ok}{}\n", r#"{"kind":"user","id":" "}"#),
        "bad.jsonl:4: a user has an empty id",
    );
    refused(
        &format!("{group}\n{group}\n{}\n", user("a@x")),
        "bad.jsonl:2: group `g` is listed twice",
    );
    refused(
        "{\"kind\":\"user\",\"id\":\"\u{1b}[31m\",\"bad\":1}\n",
        "bad.jsonl:1:",
    );
    // Problems come in line order, whichever reader found them.
    let env = Env::example();
    env.write(
        "bad.jsonl",
        &format!(
            "{}\n{{bad\n",
            r#"{"kind":"user","id":"x@y","groups":["nope"]}"#
        ),
    );
    let o = env.run(&["store", "import", "bad.jsonl"]);
    assert_eq!(o.code, 1, "{}", o.all());
    let first = o.stderr.find("bad.jsonl:1:").expect("line 1 named");
    let second = o.stderr.find("bad.jsonl:2:").expect("line 2 named");
    assert!(first < second, "{}", o.stderr);
    // Not UTF-8.
    let env = Env::example();
    let before = env.export();
    std::fs::write(
        env.path("bin.jsonl"),
        b"{\"kind\":\"user\",\"id\":\"\xff\"}\n",
    )
    .unwrap();
    let o = env.run(&["store", "import", "bin.jsonl"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("bin.jsonl:1: not UTF-8"), "{}", o.stderr);
    assert_eq!(env.export(), before);
}

/// A directory in export's layout, `n` users of about 700 bytes each.
fn big_yaml(n: usize) -> String {
    let mut yaml = String::with_capacity(n * 720 + 64);
    yaml.push_str("groups:\n- name: staff\nusers:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "- id: user-{i:07}@contoso.example\n  display-name: User {i}\n  enabled: true\n  \
             roles: []\n  groups:\n  - staff\n  password-set-at: 2026-01-01T00:00:00Z\n  \
             must-change-password: false\n  registration-valid-from: null\n  \
             sessions-valid-from: null\n  devices-valid-from: null\n  methods:\n  \
             - id: m-{i}-1\n    kind: authenticator-app\n    registered-at: 2025-06-01T00:00:00Z\n  \
             - id: m-{i}-2\n    kind: sms\n    registered-at: 2025-07-01T00:00:00Z\n  sessions:\n  \
             - id: s-{i}-1\n    issued-at: 2026-11-20T10:00:00Z\n  - id: s-{i}-2\n    \
             issued-at: 2026-11-21T10:00:00Z\n  trusted-devices:\n  - id: d-{i}-1\n    \
             name: laptop\n    remembered-at: 2026-10-01T00:00:00Z\n  app-passwords:\n  \
             - id: a-{i}-1\n    name: outlook\n    created-at: 2024-02-01T00:00:00Z\n"
        ));
    }
    yaml
}

#[test]
fn store_import_refused_its_own_export_past_64_mib() {
    let n = 100_000;
    let yaml = big_yaml(n);
    assert!(yaml.len() > 64 * 1024 * 1024, "{} bytes", yaml.len());
    let env = Env::empty();
    env.write("big.yaml", &yaml);
    let o = import_ok(&env, &["big.yaml"]);
    assert!(
        o.stderr.contains(&format!("Imported {n} users")),
        "{}",
        o.stderr
    );
    let exported = env.export();
    assert_eq!(exported, yaml, "export writes the same layout back");
    // And its own export of that size imports again, into a fresh store, from stdin too.
    let fresh = Env::empty();
    let mut child = fresh
        .cmd()
        .args(["store", "import", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(exported.as_bytes())
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fresh.export(), yaml);

    // A bad entry far into such a file is named by its line, and nothing is imported.
    let bad_at = yaml.len() - 300;
    let cut = yaml[..bad_at].rfind("\n  display-name:").unwrap();
    let mut broken = yaml.clone();
    broken.replace_range(cut + 1..cut + 15, "  display-name: [unclosed");
    let line = broken[..cut + 1].lines().count() + 1;
    let env = Env::empty();
    env.write("broken.yaml", &broken);
    let o = env.run(&["store", "import", "broken.yaml"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains(&format!("broken.yaml:{line}:")),
        "line {line}: {}",
        o.stderr
    );
    assert!(o.stderr.contains("nothing was imported"), "{}", o.stderr);
    assert_eq!(env.export(), "groups: []\nusers: []\n");
}
