//! Multi-document YAML through the real binary: an alias to an unknown anchor used to panic
//! serde_yaml's multi-document reader (exit 101) in `validate`, `plan` and `watch --once`. Each
//! document is now read on its own, so every command exits 1 with located problems, and problems
//! in later documents keep their file's line numbers (after `---`, `...`, directives, a
//! byte-order mark, CRLF line ends, empty documents and block scalars that hold marker-like
//! lines). The directory and policy readers refuse the same input without a panic too.
mod common;
use common::*;

const GARY: &str = "gary@contoso.example"; // global-administrator: would be allowed everything

/// The smallest input that crashed every command (found by `cargo fuzz run -O manifest`).
const CRASH: &str = "a:\n  b: *x\n";

/// A valid manifest that would change carol, so "nothing applied" means the valid part too.
fn good() -> String {
    manifest(
        "good",
        "  - users: [carol@contoso.example]\n    revoke-sessions-before: 2026-11-29T00:00:00Z\n",
    )
}

/// A manifest that would delete bob's app passwords.
fn bob(name: &str) -> String {
    manifest(
        name,
        "  - users: [bob@contoso.example]\n    app-passwords: none\n",
    )
}

/// Writes `good()` beside `text` as `m/bad.yaml`, then runs validate, plan, `watch --once` and
/// apply: each must exit 1 without a panic, print exactly the `expected` problems as
/// `m/bad.yaml:LINE:COL: …needle…` lines, and leave the store and the audit log untouched.
fn refused(text: &str, expected: &[(usize, usize, &str)]) {
    let env = Env::example();
    env.write("m/00-good.yaml", &good());
    env.write("m/bad.yaml", text);
    let before = env.export();
    for args in [
        vec!["validate", "m"],
        vec!["validate", "m", "--offline"],
        vec!["plan", "m", "--actor", GARY],
        vec!["watch", "m", "--once", "--actor", GARY],
        vec!["apply", "m", "--auto-approve", "--actor", GARY],
    ] {
        let o = env.run(&args);
        assert_eq!(o.code, 1, "{args:?} should exit 1:\n{}", o.all());
        assert!(
            !o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"),
            "{args:?} panicked:\n{}",
            o.all()
        );
        let located: Vec<&str> = o
            .stderr
            .lines()
            .filter_map(|l| l.split_once("m/bad.yaml:").map(|(_, rest)| rest))
            .collect();
        assert_eq!(
            located.len(),
            expected.len(),
            "{args:?}: expected {expected:?}, got:\n{}",
            o.stderr
        );
        for ((line, col, needle), got) in expected.iter().zip(&located) {
            assert!(
                got.starts_with(&format!("{line}:{col}: ")) && got.contains(needle),
                "{args:?}: expected m/bad.yaml:{line}:{col}: …{needle}…, got:\n{}",
                o.stderr
            );
        }
    }
    assert_eq!(env.export(), before, "refused manifests changed the store");
    let audit = env.ok(&["audit", "--format", "json"]).stdout;
    assert_eq!(audit.trim(), "[]", "refused manifests wrote audit records");
}

#[test]
fn an_alias_to_an_unknown_anchor_no_longer_crashes_validate_plan_or_watch() {
    refused(CRASH, &[(1, 1, "unknown field `a`")]);
}

#[test]
fn an_alias_to_an_unknown_anchor_is_located() {
    let text = manifest("bad", "  - users: *admins\n    app-passwords: none\n");
    refused(&text, &[(6, 12, "unknown anchor")]);
}

#[test]
fn an_unknown_anchor_in_the_second_document_is_located_and_the_third_is_still_checked() {
    // Lines 1-7 the first document, 8 `---`, 9-15 the second (alias on 14), 16 `---`,
    // 17-18 the crash input, 19 `---`, 20-26 the fourth (typo on 26).
    let text = format!(
        "{}---\n{}---\n{CRASH}---\n{}",
        bob("one"),
        manifest("two", "  - users: *x\n    app-passwords: none\n"),
        manifest(
            "four",
            "  - users: [bob@contoso.example]\n    app-passwordz: none\n"
        ),
    );
    refused(
        &text,
        &[
            (14, 12, "unknown anchor"),
            (17, 1, "unknown field `a`"),
            (26, 5, "unknown field `app-passwordz`"),
        ],
    );
}

#[test]
fn marker_lines_inside_block_scalars_do_not_split_the_document() {
    // The description's `---` and `...` are indented: content, not markers. Line 12 is `---`.
    let first = "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata:\n  name: one\n  description: |\n    ---\n    ...\n    --- not a marker\nspec:\n  - users: [bob@contoso.example]\n    app-passwords: none\n";
    let text = format!(
        "{first}---\n{}",
        manifest("two", "  - users: *x\n    app-passwords: none\n")
    );
    refused(&text, &[(18, 12, "unknown anchor")]);
}

#[test]
fn a_marker_inside_a_quoted_string_is_refused_where_it_stands() {
    // A quoted scalar cannot hold `---` at column 0: libyaml stops at it, and so does mfactl.
    let text = format!(
        "{}  - users: [bob@contoso.example]\n    app-passwords: none\n    revoke-sessions-before: \"2026-01-01\n---\nx\"\n---\n{}",
        "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata:\n  name: one\nspec:\n",
        manifest("two", "  - users: *x\n    app-passwords: none\n")
    );
    refused(
        &text,
        &[(
            9,
            1,
            "found unexpected document indicator, while scanning a quoted scalar at line 8 column 29",
        )],
    );
}

#[test]
fn documents_ended_by_dots_keep_their_line_numbers() {
    // `...` ends the first document (line 8); the second starts with `---` on line 9 and has
    // its alias on line 15; after the third's `...` (line 27) a bare document is an error.
    let text = format!(
        "{}...\n---\n{}...\n# the end\n---\n{}...\nx: 1\n",
        bob("one"),
        manifest("two", "  - users: *x\n    app-passwords: none\n"),
        bob("three"),
    );
    refused(
        &text,
        &[
            (15, 12, "unknown anchor"),
            (28, 1, "did not find expected <document start>"),
        ],
    );
}

#[test]
fn a_byte_order_mark_crlf_line_ends_and_empty_documents_keep_their_line_numbers() {
    // BOM, comment (1), `---` (2), first document (3-9), two empty documents (10, 11), a
    // directive (12), `---` (13), the second document (14-20) with its alias on 19.
    let text = format!(
        "\u{feff}# mfactl\n---\n{}---\n---\n%YAML 1.1\n---\n{}",
        bob("one"),
        manifest("two", "  - users: *x\n    app-passwords: none\n"),
    )
    .replace('\n', "\r\n");
    refused(&text, &[(19, 12, "unknown anchor")]);
}

#[test]
fn a_syntax_error_in_a_later_document_names_its_context_at_file_lines() {
    // The second document starts on line 9; its entry (line 14) has a key indented by three.
    let text = format!(
        "{}---\n{}   revoke-sessions-before: 2026-11-01\n",
        bob("one"),
        manifest(
            "two",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n"
        )
    );
    refused(
        &text,
        &[(
            16,
            4,
            "did not find expected '-' indicator, while parsing a block collection at line 14 column 3",
        )],
    );
}

#[test]
fn every_document_form_is_read_and_applied() {
    let env = Env::example();
    let text = format!(
        "\u{feff}# both\n%YAML 1.1\n---\n{}...\n---\n---\n{}\n...\n",
        manifest(
            "one",
            "  - users: [alice@contoso.example]\n    app-passwords: none\n"
        )
        .replace(
            "  name: one\n",
            "  name: one\n  description: |\n    ---\n    ...\n"
        ),
        bob("two"),
    );
    env.write("m/both.yaml", &text);
    let o = env.ok(&["plan", "m", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let got: Vec<(&str, &str)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["user"].as_str().unwrap(),
                c["sources"][0].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("alice@contoso.example", "one"),
            ("bob@contoso.example", "two")
        ]
    );
}

#[test]
fn a_directory_file_aliasing_an_unknown_anchor_is_refused_without_a_panic() {
    let env = Env::example();
    let before = env.export();
    for (name, text, at) in [
        ("crash.yaml", CRASH, "crash.yaml:1:1:"),
        (
            "users.yaml",
            "groups: []\nusers: *x\n",
            "users.yaml:2:8: unknown anchor",
        ),
        (
            "second.yaml",
            "users: []\n---\nusers:\n  b: *x\n",
            "second.yaml:",
        ),
    ] {
        env.write(name, text);
        let o = env.run(&["store", "import", name]);
        assert_eq!(o.code, 1, "{name}:\n{}", o.all());
        assert!(
            o.stderr.contains(at),
            "{name}: expected {at}:\n{}",
            o.stderr
        );
        assert!(!o.stderr.contains("panicked"), "{}", o.all());
    }
    assert_eq!(env.export(), before);
}

#[test]
fn a_policy_file_aliasing_an_unknown_anchor_is_refused_without_a_panic() {
    let env = Env::example();
    env.write("m/good.yaml", &good());
    let roles =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/roles.yaml"))
            .unwrap();
    for (file, text) in [
        ("roles.yaml", CRASH.to_string()),
        ("roles.yaml", "roles: *x\n".to_string()),
        ("guardrails.yaml", "protected-users: *x\n".to_string()),
    ] {
        std::fs::create_dir_all(env.path("p")).unwrap();
        env.write("p/roles.yaml", &roles);
        env.write("p/guardrails.yaml", "protected-users: []\n");
        env.write(&format!("p/{file}"), &text);
        for args in [
            vec!["validate", "m", "--policies", "p"],
            vec!["plan", "m", "--policies", "p", "--actor", GARY],
        ] {
            let o = env.run(&args);
            assert_eq!(o.code, 1, "{file} {text:?} {args:?}:\n{}", o.all());
            assert!(o.stderr.contains(file), "{file}:\n{}", o.stderr);
            assert!(!o.stderr.contains("panicked"), "{}", o.all());
        }
    }
}

/// Found by `cargo fuzz run -O directory`: the fast reader of plain directory YAML split
/// `{id: m-1, kind:fido2}` at the colon, where YAML reads one key `kind:fido2`, so import took
/// a method that serde_yaml refuses.
#[test]
fn import_refuses_a_flow_key_glued_to_its_value_as_yaml_does() {
    let env = Env::example();
    let before = env.export();
    env.write(
        "dir.yaml",
        &user_yaml(
            "zoe@contoso.example",
            &[],
            &[],
            "    methods: [{id: m-1, kind:fido2, registered-at: 2024-01-01T00:00:00Z}]\n",
        ),
    );
    let o = env.run(&["store", "import", "dir.yaml"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(
        o.stderr.contains("dir.yaml:7:") && o.stderr.contains("unknown field `kind:fido2`"),
        "{}",
        o.stderr
    );
    assert_eq!(env.export(), before);
}
