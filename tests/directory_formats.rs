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
