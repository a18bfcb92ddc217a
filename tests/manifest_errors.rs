//! Every rejection of docs/manifests.md through the real binary: exit 1, a `FILE:LINE:COL: message`
//! naming what is wrong, and nothing planned or applied. Expected positions are counted by hand
//! from the YAML below (1-based lines and columns, columns in characters).
mod common;
use common::*;

use serde_json::Value;

const GARY: &str = "gary@contoso.example"; // global-administrator: would be allowed everything

/// A valid manifest that would change carol (sessions from 2026-11-27 and 2026-11-28): it lies
/// next to every broken file, so "nothing was applied" means the valid part was not applied either.
fn good() -> String {
    manifest(
        "good",
        "  - users: [carol@contoso.example]\n    revoke-sessions-before: 2026-11-29T00:00:00Z\n",
    )
}

/// The lines of stderr that are located problems (`FILE:LINE:COL: message`).
fn problem_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            let mut parts = l.splitn(4, ':');
            let (_, line, col) = (parts.next(), parts.next(), parts.next());
            line.is_some_and(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
                && col.is_some_and(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}

fn audit_is_empty(env: &Env) -> bool {
    let o = env.ok(&["audit", "--format", "json"]);
    serde_json::from_str::<Value>(&o.stdout).expect("audit JSON") == serde_json::json!([])
}

/// Writes `good()` as `m/00-good.yaml` and `text` as `m/bad.yaml`, then runs validate, plan (text
/// and JSON) and apply on `m`: each must exit 1 with exactly one located problem, at
/// `m/bad.yaml:LINE:COL: `, whose message contains every needle; the store must be unchanged.
fn rejected(text: &str, line: usize, col: usize, needles: &[&str]) {
    let env = Env::example();
    rejected_in(&env, text, line, col, needles);
}

fn rejected_in(env: &Env, text: &str, line: usize, col: usize, needles: &[&str]) {
    env.write("m/00-good.yaml", &good());
    env.write("m/bad.yaml", text);
    let before = env.export();
    let prefix = format!("m/bad.yaml:{line}:{col}: ");
    for args in [
        vec!["validate", "m"],
        vec!["plan", "m", "--actor", GARY],
        vec!["plan", "m", "--format", "json", "--detailed-exitcode"],
        vec![
            "apply",
            "m",
            "--auto-approve",
            "--actor",
            GARY,
            "--credentials-out",
            "creds.tsv",
        ],
    ] {
        let o = env.run(&args);
        assert_eq!(o.code, 1, "{args:?} should fail:\n{}", o.all());
        let problems = problem_lines(&o.stderr);
        assert_eq!(
            problems.len(),
            1,
            "{args:?}: exactly one located problem expected:\n{}",
            o.all()
        );
        let p = problems[0];
        assert!(
            p.starts_with(&prefix),
            "{args:?}: expected {prefix:?}, got:\n{p}"
        );
        for n in needles {
            assert!(
                p.contains(n),
                "{args:?}: message should mention {n:?}:\n{p}"
            );
        }
        assert!(!o.stderr.contains("panicked"), "{}", o.all());
        assert!(
            !o.stdout.contains("Plan:") && !o.stdout.contains("\"changes\""),
            "{args:?}: no plan for invalid manifests:\n{}",
            o.stdout
        );
    }
    assert_eq!(env.export(), before, "invalid manifests changed the store");
    assert!(audit_is_empty(env), "invalid manifests wrote audit records");
    assert!(!env.exists("creds.tsv"));
}

/// `manifest("bad", spec)`: the header takes lines 1–5, so the first entry is on line 6.
fn bad(spec: &str) -> String {
    manifest("bad", spec)
}

// ---------------------------------------------------------------------------------------------
// YAML syntax
// ---------------------------------------------------------------------------------------------

#[test]
fn yaml_syntax_error_a_second_colon() {
    // line 7: `    revoke-sessions-before: 2026-11-01: x` — the second `:` is at column 39.
    rejected(
        &bad("  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-01: x\n"),
        7,
        39,
        &["mapping values are not allowed"],
    );
}

#[test]
fn yaml_syntax_error_a_tab_indent() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n\trevoke-sessions-before: 2026-11-01\n"),
        7,
        1,
        &["cannot start any token"],
    );
}

#[test]
fn yaml_syntax_error_an_unclosed_flow_sequence() {
    // The `[` opens at 6:12; the parser notices at the `:` of line 7 (column 27) and says where
    // the sequence began.
    rejected(
        &bad("  - users: [alice@contoso.example\n    revoke-sessions-before: 2026-11-01\n"),
        7,
        27,
        &["line 6 column 12"],
    );
}

#[test]
fn yaml_duplicate_key_in_an_entry() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    users: [bob@contoso.example]\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        5,
        &["duplicate", "users"],
    );
}

// ---------------------------------------------------------------------------------------------
// Unknown keys
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_key_at_top_level_names_it_and_the_accepted_ones() {
    rejected(
        "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata:\n  name: bad\nlabels: {team: x}\nspec: []\n",
        5,
        1,
        &["labels", "apiVersion", "kind", "metadata", "spec"],
    );
}

#[test]
fn unknown_key_in_metadata_names_it_and_the_accepted_ones() {
    rejected(
        "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata:\n  name: bad\n  owner: me\nspec: []\n",
        5,
        3,
        &["owner", "name", "description"],
    );
}

#[test]
fn unknown_key_in_an_entry_names_it_and_the_accepted_ones() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    revoke-session-before: 2026-11-01\n"),
        7,
        5,
        &[
            "`revoke-session-before`",
            "users",
            "group",
            "all-users",
            "except",
            "require-reregistration",
            "revoke-sessions-before",
            "revoke-trusted-devices-before",
            "reset-password-before",
            "app-passwords",
        ],
    );
}

#[test]
fn unknown_key_in_the_second_entry_points_at_that_entry() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    app-passwords: none\n  - group: contractors\n    disable: true\n"),
        9,
        5,
        &["disable"],
    );
}

// ---------------------------------------------------------------------------------------------
// Wrong types
// ---------------------------------------------------------------------------------------------

#[test]
fn users_as_a_string_is_a_wrong_type() {
    rejected(
        &bad("  - users: alice@contoso.example\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        12,
        &["users", "string"],
    );
}

#[test]
fn except_as_a_string_is_a_wrong_type() {
    rejected(
        &bad("  - group: contractors\n    except: lead@contoso.example\n    revoke-sessions-before: 2026-11-01\n"),
        7,
        13,
        &["except", "string"],
    );
}

#[test]
fn group_as_a_list_is_a_wrong_type() {
    rejected(
        &bad("  - group: [contractors]\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        12,
        &["group", "sequence"],
    );
}

#[test]
fn all_users_yes_please_is_a_wrong_type() {
    rejected(
        &bad("  - all-users: yes-please\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        16,
        &["all-users", "yes-please"],
    );
}

#[test]
fn all_users_false_is_rejected() {
    rejected(
        &bad("  - all-users: false\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        5,
        &["all-users", "true"],
    );
}

#[test]
fn app_passwords_other_than_none_is_rejected() {
    // `    app-passwords: ` is 19 characters.
    rejected(
        &bad("  - users: [alice@contoso.example]\n    app-passwords: all\n"),
        7,
        20,
        &["app-passwords", "`all`", "none"],
    );
}

#[test]
fn spec_as_a_string_is_a_wrong_type() {
    rejected(
        "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata:\n  name: bad\nspec: all\n",
        5,
        7,
        &["spec", "string"],
    );
}

#[test]
fn missing_metadata_name_is_rejected() {
    rejected(
        "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata:\n  description: x\nspec: []\n",
        4,
        3,
        &["name"],
    );
}

// ---------------------------------------------------------------------------------------------
// apiVersion, kind, metadata.name
// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_api_version_points_at_the_value() {
    rejected(
        "apiVersion: mfactl/v2\nkind: UserSettings\nmetadata:\n  name: bad\nspec: []\n",
        1,
        13,
        &["mfactl/v2", "mfactl/v1"],
    );
}

#[test]
fn wrong_kind_points_at_the_value() {
    rejected(
        "apiVersion: mfactl/v1\nkind: UserSetting\nmetadata:\n  name: bad\nspec: []\n",
        2,
        7,
        &["`UserSetting`", "UserSettings"],
    );
}

#[test]
fn duplicate_metadata_name_across_two_files() {
    // m/00-good.yaml comes first in sorted order; the second use of `good` is the error.
    rejected(
        &manifest(
            "good",
            "  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-01\n",
        ),
        4,
        9,
        &["good", "m/00-good.yaml", "unique"],
    );
}

#[test]
fn duplicate_metadata_name_across_two_documents_of_one_file() {
    let text = format!(
        "{}---\n{}",
        bad("  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-01\n"),
        bad("  - users: [bob@contoso.example]\n    revoke-sessions-before: 2026-11-01\n")
    );
    // The second document starts on line 9; its name on line 12.
    rejected(&text, 12, 9, &["bad", "unique"]);
}

// ---------------------------------------------------------------------------------------------
// Entries: selectors and settings
// ---------------------------------------------------------------------------------------------

#[test]
fn entry_with_zero_selectors() {
    rejected(
        &bad("  - except: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        5,
        &["selector", "users", "group", "all-users"],
    );
}

#[test]
fn entry_with_two_selectors() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    group: contractors\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        5,
        &["selector", "users", "group"],
    );
}

#[test]
fn entry_with_three_selectors_in_flow_style() {
    rejected(
        &bad("  - {all-users: true, group: contractors, users: [bob@contoso.example], app-passwords: none}\n"),
        6,
        5,
        &["selector"],
    );
}

#[test]
fn entry_with_no_setting_lists_the_settings() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    except: [bob@contoso.example]\n"),
        6,
        5,
        &[
            "require-reregistration",
            "revoke-sessions-before",
            "revoke-trusted-devices-before",
            "reset-password-before",
            "app-passwords",
        ],
    );
}

#[test]
fn entry_with_no_setting_in_second_entry() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-01\n  - users: [bob@contoso.example]\n"),
        8,
        5,
        &["app-passwords"],
    );
}

#[test]
fn empty_users_list() {
    rejected(
        &bad("  - users: []\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        5,
        &["users", "empty"],
    );
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

#[test]
fn require_reregistration_true_explains_that_a_timestamp_is_required() {
    // `    require-reregistration: ` is 28 characters.
    rejected(
        &bad("  - users: [alice@contoso.example]\n    require-reregistration: true\n"),
        7,
        29,
        &[
            "require-reregistration",
            "timestamp",
            "required",
            "reconcile",
        ],
    );
}

#[test]
fn require_reregistration_yes_is_a_flag_too() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    require-reregistration: yes\n"),
        7,
        29,
        &["require-reregistration", "timestamp", "required"],
    );
}

#[test]
fn revoke_sessions_before_true_is_not_a_timestamp() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    revoke-sessions-before: true\n"),
        7,
        29,
        &["revoke-sessions-before", "timestamp"],
    );
}

#[test]
fn a_number_is_not_a_timestamp() {
    // `    reset-password-before: ` is 27 characters.
    rejected(
        &bad("  - users: [alice@contoso.example]\n    reset-password-before: 5\n"),
        7,
        28,
        &["reset-password-before", "timestamp"],
    );
}

#[test]
fn a_non_timestamp_string() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    revoke-sessions-before: last-tuesday\n"),
        7,
        29,
        &["last-tuesday", "timestamp", "RFC 3339"],
    );
}

#[test]
fn a_timestamp_without_zone() {
    // `    revoke-trusted-devices-before: ` is 35 characters.
    rejected(
        &bad("  - users: [alice@contoso.example]\n    revoke-trusted-devices-before: 2026-11-01T10:00:00\n"),
        7,
        36,
        &["2026-11-01T10:00:00", "zone"],
    );
}

#[test]
fn an_impossible_date() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-02-30\n"),
        7,
        29,
        &["2026-02-30"],
    );
}

#[test]
fn a_timestamp_more_than_five_minutes_in_the_future() {
    rejected(
        &bad("  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-30T12:05:01Z\n"),
        7,
        29,
        &["revoke-sessions-before", "2026-11-30T12:05:01Z", "future"],
    );
}

#[test]
fn a_future_timestamp_with_an_offset_is_reported_in_utc() {
    // 13:06+01:00 is 12:06Z, six minutes after MFACTL_NOW.
    rejected(
        &bad("  - users: [alice@contoso.example]\n    require-reregistration: 2026-11-30T13:06:00+01:00\n"),
        7,
        29,
        &["2026-11-30T12:06:00Z", "future"],
    );
}

#[test]
fn a_future_date_is_rejected() {
    rejected(
        &bad("  - all-users: true\n    reset-password-before: 2026-12-01\n"),
        7,
        28,
        &["2026-12-01T00:00:00Z", "future"],
    );
}

#[test]
fn a_timestamp_within_the_allowed_skew_is_accepted_and_applied() {
    let env = Env::example();
    // 4 minutes after MFACTL_NOW, and exactly max-future-skew after it: both accepted.
    for (name, t) in [
        ("four", "2026-11-30T12:04:00Z"),
        ("edge", "2026-11-30T13:05:00+01:00"),
    ] {
        env.write(
            &format!("m/{name}.yaml"),
            &manifest(
                name,
                &format!("  - users: [alice@contoso.example]\n    revoke-sessions-before: {t}\n"),
            ),
        );
    }
    env.ok(&["validate", "m"]);
    env.ok(&["validate", "m", "--offline"]);
    let o = env.ok(&["plan", "m", "--format", "json", "--actor", GARY]);
    let plan: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(plan["changes"].as_array().unwrap().len(), 1, "{plan:#}");
    let c = &plan["changes"][0];
    assert_eq!(c["after"]["sessions-valid-from"], "2026-11-30T12:05:00Z");
    env.ok(&["apply", "m", "--auto-approve", "--actor", GARY]);
    let alice = env.show("alice@contoso.example");
    assert_eq!(
        alice["sessions-valid-from"].as_str(),
        Some("2026-11-30T12:05:00Z")
    );
}

// ---------------------------------------------------------------------------------------------
// Users and groups the store does not know; protected users
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_user_in_users() {
    // `  - users: [alice@contoso.example, ` is 35 characters.
    rejected(
        &bad("  - users: [alice@contoso.example, zed@contoso.example]\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        36,
        &["zed@contoso.example", "unknown"],
    );
}

#[test]
fn unknown_user_in_a_block_list() {
    rejected(
        &bad("  - users:\n      - alice@contoso.example\n      - zed@contoso.example\n    revoke-sessions-before: 2026-11-01\n"),
        8,
        9,
        &["zed@contoso.example"],
    );
}

#[test]
fn unknown_user_in_except() {
    // `    except: [` is 13 characters.
    rejected(
        &bad("  - group: contractors\n    except: [zed@contoso.example]\n    revoke-trusted-devices-before: 2026-11-20\n"),
        7,
        14,
        &["zed@contoso.example", "unknown"],
    );
}

#[test]
fn unknown_group() {
    rejected(
        &bad("  - group: sales\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        12,
        &["sales", "group"],
    );
}

/// With the example policies, which protect the example tenant's break-glass account.
fn rejected_protected(text: &str, line: usize, col: usize, needles: &[&str]) {
    let env = Env::example();
    env.use_example_policies();
    rejected_in(&env, text, line, col, needles);
}

#[test]
fn protected_user_named_explicitly() {
    rejected_protected(
        &bad("  - users:\n      - alice@contoso.example\n      - breakglass@contoso.example\n    revoke-sessions-before: 2026-11-01\n"),
        8,
        9,
        &["breakglass@contoso.example", "protected"],
    );
}

#[test]
fn protected_user_named_in_another_case() {
    rejected_protected(
        &bad("  - users: [BreakGlass@Contoso.Example]\n    revoke-sessions-before: 2026-11-01\n"),
        6,
        13,
        &["protected"],
    );
}

// ---------------------------------------------------------------------------------------------
// Several problems in one run
// ---------------------------------------------------------------------------------------------

#[test]
fn several_errors_in_several_files_are_reported_in_one_run() {
    let env = Env::example();
    env.write("m/00-good.yaml", &good());
    // a: a syntax error.
    env.write(
        "m/a.yaml",
        &manifest(
            "a",
            "  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-01: x\n",
        ),
    );
    // b: an unknown key in the first entry (the document is dropped).
    env.write(
        "m/b.yaml",
        &manifest(
            "b",
            "  - users: [alice@contoso.example]\n    revoke-sesions-before: 2026-11-01\n",
        ),
    );
    // c: an unknown user, an unknown group and a future timestamp in one document.
    env.write(
        "m/sub/c.yaml",
        &manifest(
            "c",
            "  - users: [zed@contoso.example]\n    revoke-sessions-before: 2026-11-01\n  \
             - group: sales\n    revoke-sessions-before: 2027-01-01\n",
        ),
    );
    // d: reuses the name of c.
    env.write(
        "m/sub/d.yml",
        &manifest(
            "c",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    let expected = [
        "m/a.yaml:7:39: ",
        "m/b.yaml:7:5: ",
        "m/sub/c.yaml:6:13: ",
        "m/sub/c.yaml:8:12: ",
        "m/sub/c.yaml:9:29: ",
        "m/sub/d.yml:4:9: ",
    ];
    let before = env.export();
    for args in [
        vec!["validate", "m"],
        vec!["plan", "m", "--actor", GARY],
        vec!["apply", "m", "--auto-approve", "--actor", GARY],
    ] {
        let o = env.run(&args);
        assert_eq!(o.code, 1, "{args:?}: {}", o.all());
        let problems = problem_lines(&o.stderr);
        assert_eq!(problems.len(), expected.len(), "{args:?}:\n{}", o.all());
        let find = |want: &str| -> &str {
            let hits: Vec<&&str> = problems.iter().filter(|p| p.starts_with(want)).collect();
            assert_eq!(
                hits.len(),
                1,
                "{args:?}: one problem at {want}:\n{}",
                o.all()
            );
            hits[0]
        };
        for want in expected {
            find(want);
        }
        assert!(find("m/sub/c.yaml:6:13: ").contains("zed@contoso.example"));
        assert!(find("m/sub/c.yaml:8:12: ").contains("sales"));
        assert!(find("m/sub/c.yaml:9:29: ").contains("2027-01-01"));
        assert!(find("m/sub/d.yml:4:9: ").contains("m/sub/c.yaml"));
    }
    assert_eq!(env.export(), before);
    assert!(audit_is_empty(&env));
}

// ---------------------------------------------------------------------------------------------
// Multi-document files
// ---------------------------------------------------------------------------------------------

/// Two documents: the first valid (lines 1–7), `---` on line 8, the second from line 9.
fn two_docs(second_spec: &str) -> String {
    format!(
        "{}---\n{}",
        manifest(
            "first",
            "  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-01\n"
        ),
        bad(second_spec)
    )
}

#[test]
fn multi_document_parse_error_in_the_second_document() {
    // The second document's spec starts on line 14; the typo is on line 15.
    rejected(
        &two_docs("  - users: [alice@contoso.example]\n    revoke-sesions-before: 2026-11-01\n"),
        15,
        5,
        &["revoke-sesions-before"],
    );
}

#[test]
fn multi_document_unknown_user_in_the_second_document() {
    rejected(
        &two_docs("  - users: [bob@contoso.example, zed@contoso.example]\n    revoke-sessions-before: 2026-11-01\n"),
        14,
        34,
        &["zed@contoso.example"],
    );
}

#[test]
fn multi_document_future_timestamp_in_the_second_document() {
    rejected(
        &two_docs("  - users: [bob@contoso.example]\n    revoke-sessions-before: 2026-12-24\n"),
        15,
        29,
        &["future"],
    );
}

#[test]
fn multi_document_syntax_error_in_the_second_document() {
    rejected(
        &two_docs("  - users: [bob@contoso.example]\n    revoke-sessions-before: 2026-11-01: x\n"),
        15,
        39,
        &["mapping values are not allowed"],
    );
}

#[test]
fn multi_document_with_a_leading_comment_marker_and_an_empty_document() {
    // line 1 comment, line 2 `---`, doc 1 on lines 3–9, `---` `---` on 10–11 (an empty document),
    // doc 2 from line 12: its entry is on line 17, and zed at column 34.
    let text = format!(
        "# offboarding\n---\n{}---\n---\n{}",
        manifest(
            "first",
            "  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-01\n"
        ),
        bad("  - users: [bob@contoso.example, zed@contoso.example]\n    revoke-sessions-before: 2026-11-01\n")
    );
    rejected(&text, 17, 34, &["zed@contoso.example"]);
}

#[test]
fn multi_document_files_apply_every_document() {
    let env = Env::example();
    let text = format!(
        "{}---\n{}",
        manifest(
            "one",
            "  - users: [alice@contoso.example]\n    app-passwords: none\n"
        ),
        manifest(
            "two",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n"
        )
    );
    env.write("m/both.yaml", &text);
    let o = env.ok(&["plan", "m", "--format", "json"]);
    let plan: Value = serde_json::from_str(&o.stdout).unwrap();
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

// ---------------------------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------------------------

#[test]
fn directories_are_read_recursively_skipping_hidden_entries_and_non_yaml_files() {
    let env = Env::example();
    let broken = "garbage: [\n";
    env.write(
        "m/a.yaml",
        &manifest(
            "a",
            "  - users: [alice@contoso.example]\n    app-passwords: none\n",
        ),
    );
    env.write(
        "m/deep/er/b.yml",
        &manifest(
            "b",
            "  - users: [bob@contoso.example]\n    app-passwords: none\n",
        ),
    );
    // Everything below is broken, and must not be read.
    env.write("m/.hidden.yaml", broken);
    env.write("m/.git/config.yaml", broken);
    env.write("m/deep/.secret/c.yaml", broken);
    env.write("m/notes.txt", broken);
    env.write("m/README.md", broken);
    env.write("m/deep/c.yaml.bak", broken);
    env.write("m/deep/yaml", broken);
    std::os::unix::fs::symlink(env.path("outside.yaml"), env.path("m/link.yaml")).unwrap();
    env.write("outside.yaml", broken);

    let o = env.ok(&["validate", "m"]);
    assert!(
        o.stderr.contains("2 manifests in 2 files valid"),
        "{}",
        o.all()
    );
    let o = env.ok(&["plan", "m", "--format", "json"]);
    let plan: Value = serde_json::from_str(&o.stdout).unwrap();
    let users: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice@contoso.example", "bob@contoso.example"]);

    // A path named on the command line is read whatever its name.
    let o = env.run(&["validate", "m/.hidden.yaml"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("m/.hidden.yaml:"), "{}", o.all());
}

#[test]
fn files_and_directories_can_be_mixed_on_the_command_line() {
    let env = Env::example();
    env.write("x/a.yaml", &good());
    env.write(
        "y.yaml",
        &manifest(
            "y",
            "  - users: [zed@contoso.example]\n    app-passwords: none\n",
        ),
    );
    let o = env.run(&["validate", "x", "y.yaml"]);
    assert_eq!(o.code, 1, "{}", o.all());
    let problems = problem_lines(&o.stderr);
    assert_eq!(problems.len(), 1, "{}", o.all());
    assert!(problems[0].starts_with("y.yaml:6:13: "), "{}", problems[0]);
    assert!(
        problems[0].contains("zed@contoso.example"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_missing_path_is_an_error_naming_it() {
    let env = Env::example();
    let o = env.run(&["validate", "no/such/dir"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("no/such/dir"), "{}", o.all());
    // And without paths, a missing ./manifests.
    let o = env.run(&["plan"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("manifests"), "{}", o.all());
}

#[test]
fn manifests_is_the_default_path() {
    let env = Env::example();
    env.write(
        "manifests/x/bad.yaml",
        &bad("  - users: [zed@contoso.example]\n    app-passwords: none\n"),
    );
    let o = env.run(&["validate"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert_eq!(problem_lines(&o.stderr).len(), 1, "{}", o.all());
    assert!(o.stderr.contains("bad.yaml:6:13: "), "{}", o.all());
}

#[test]
fn a_non_utf8_file_is_an_error_naming_it() {
    let env = Env::example();
    env.write("m/00-good.yaml", &good());
    std::fs::write(
        env.path("m/latin1.yaml"),
        b"apiVersion: mfactl/v1\nkind: UserSettings\nmetadata:\n  name: x\n  description: caf\xe9\nspec: []\n",
    )
    .unwrap();
    let before = env.export();
    let o = env.run(&["apply", "m", "--auto-approve", "--actor", GARY]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("m/latin1.yaml"), "{}", o.all());
    assert!(o.stderr.contains("UTF-8"), "{}", o.all());
    assert_eq!(env.export(), before);
}

// ---------------------------------------------------------------------------------------------
// validate --offline, --format github / json
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_offline_skips_unknown_users_and_groups_only() {
    let env = Env::example();
    env.use_example_policies();
    env.write(
        "m/unknown.yaml",
        &manifest(
            "unknown",
            "  - users: [zed@contoso.example]\n    app-passwords: none\n  \
             - group: sales\n    except: [yann@contoso.example]\n    app-passwords: none\n",
        ),
    );
    let o = env.run(&["validate", "m"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert_eq!(problem_lines(&o.stderr).len(), 3, "{}", o.all());
    let o = env.run(&["validate", "m", "--offline"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stderr.contains("offline"), "{}", o.all());

    // Every other check still runs offline.
    for (spec, line, col, needle) in [
        (
            "  - users: [zed@contoso.example]\n    revoke-sessions-before: 2026-12-01\n",
            7,
            29,
            "future",
        ),
        (
            "  - users: [zed@contoso.example, breakglass@contoso.example]\n    app-passwords: none\n",
            6,
            34,
            "protected",
        ),
        (
            "  - users: [zed@contoso.example]\n    require-reregistration: true\n",
            7,
            29,
            "timestamp",
        ),
        ("  - users: [zed@contoso.example]\n", 6, 5, "app-passwords"),
        (
            "  - users: [zed@contoso.example]\n    app-passwords: none: x\n",
            7,
            24,
            "mapping values",
        ),
    ] {
        env.write("m/bad.yaml", &bad(spec));
        let o = env.run(&["validate", "m", "--offline"]);
        assert_eq!(o.code, 1, "{spec}: {}", o.all());
        let problems = problem_lines(&o.stderr);
        assert_eq!(problems.len(), 1, "{spec}: {}", o.all());
        assert!(
            problems[0].starts_with(&format!("m/bad.yaml:{line}:{col}: ")),
            "{spec}: {}",
            problems[0]
        );
        assert!(problems[0].contains(needle), "{}", problems[0]);
    }

    // Duplicate names too.
    std::fs::remove_file(env.path("m/bad.yaml")).unwrap();
    env.write(
        "m/z.yaml",
        &manifest("unknown", "  - all-users: true\n    app-passwords: none\n"),
    );
    let o = env.run(&["validate", "m", "--offline"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("m/z.yaml:4:9: "), "{}", o.all());
}

#[test]
fn validate_format_github_prints_workflow_error_lines() {
    let env = Env::example();
    env.write("m/00-good.yaml", &good());
    env.write(
        "m/bad.yaml",
        &bad("  - users: [alice@contoso.example, zed@contoso.example]\n    require-reregistration: true\n"),
    );
    let o = env.run(&["validate", "m", "--format", "github"]);
    assert_eq!(o.code, 1, "{}", o.all());
    let line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("::error file=m/bad.yaml,line=7,col=29::"))
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(line.contains("timestamp"), "{line}");

    env.write(
        "m/bad.yaml",
        &bad("  - users: [alice@contoso.example, zed@contoso.example]\n    revoke-sessions-before: 2026-12-01\n"),
    );
    let o = env.run(&["validate", "m", "--format", "github"]);
    assert_eq!(o.code, 1, "{}", o.all());
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", o.stdout);
    assert!(
        lines[0].starts_with("::error file=m/bad.yaml,line=6,col=36::"),
        "{}",
        o.stdout
    );
    assert!(lines[0].contains("zed@contoso.example"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("::error file=m/bad.yaml,line=7,col=29::"),
        "{}",
        o.stdout
    );
    assert!(lines[1].contains("future"), "{}", lines[1]);
    assert!(
        o.stdout.lines().all(|l| l.starts_with("::error ")),
        "only workflow commands on stdout:\n{}",
        o.stdout
    );

    // Valid manifests: no error lines, exit 0.
    std::fs::remove_file(env.path("m/bad.yaml")).unwrap();
    let o = env.run(&["validate", "m", "--format", "github"]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(!o.stdout.contains("::error"), "{}", o.stdout);
}

#[test]
fn validate_format_json_lists_located_problems() {
    let env = Env::example();
    env.write(
        "m/bad.yaml",
        &bad("  - group: sales\n    app-passwords: none\n"),
    );
    let o = env.run(&["validate", "m", "--format", "json"]);
    assert_eq!(o.code, 1, "{}", o.all());
    let v: Value = serde_json::from_str(&o.stdout).expect("JSON");
    let items = v.as_array().expect("array");
    assert_eq!(items.len(), 1, "{v:#}");
    assert_eq!(items[0]["file"], "m/bad.yaml");
    assert_eq!(items[0]["line"], 6);
    assert!(items[0]["message"].as_str().unwrap().contains("sales"));
}

// ---------------------------------------------------------------------------------------------
// Case-insensitive ids
// ---------------------------------------------------------------------------------------------

fn plan_changes(env: &Env, path: &str) -> Vec<(String, String)> {
    let o = env.ok(&["plan", path, "--format", "json", "--actor", GARY]);
    let plan: Value = serde_json::from_str(&o.stdout).unwrap();
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["user"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn user_ids_and_groups_compare_case_insensitively_and_print_as_stored() {
    let env = Env::example();
    env.write(
        "m/ci.yaml",
        &manifest(
            "ci",
            "  - users: [Alice@Contoso.example, ALICE@CONTOSO.EXAMPLE]\n    app-passwords: none\n  \
             - group: CONTRACTORS\n    except: [Lead@Contoso.Example, BOB@contoso.example]\n    \
             revoke-trusted-devices-before: 2026-11-20\n",
        ),
    );
    env.ok(&["validate", "m"]);
    assert_eq!(
        plan_changes(&env, "m"),
        [
            (
                "alice@contoso.example".into(),
                "delete-app-passwords".into()
            ),
            (
                "alice@contoso.example".into(),
                "revoke-trusted-devices".into()
            ),
            (
                "dave@contoso.example".into(),
                "revoke-trusted-devices".into()
            ),
        ]
    );
    let o = env.ok(&["plan", "m", "--actor", GARY]);
    assert!(!o.stdout.contains("Alice@"), "{}", o.stdout);
    assert!(!o.stdout.contains("ALICE@"), "{}", o.stdout);
}

#[test]
fn a_mixed_case_store_id_is_spelled_as_stored() {
    let env = Env::example();
    env.import(&user_yaml(
        "Zoe.Smith@Contoso.example",
        &[],
        &["engineering"],
        "    app-passwords: [{id: a-zoe, name: mail, created-at: 2026-01-01T00:00:00Z}]\n",
    ));
    env.write(
        "m/zoe.yaml",
        &manifest(
            "zoe",
            "  - users: [zoe.smith@contoso.example]\n    app-passwords: none\n",
        ),
    );
    assert_eq!(
        plan_changes(&env, "m"),
        [(
            "Zoe.Smith@Contoso.example".to_string(),
            "delete-app-passwords".to_string()
        )]
    );
    env.ok(&["apply", "m", "--auto-approve", "--actor", GARY]);
    let o = env.ok(&["audit", "--format", "json"]);
    let audit: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(audit[0]["user"], "Zoe.Smith@Contoso.example");
    env.write(
        "m/zoe.yaml",
        &manifest(
            "zoe",
            "  - group: engineering\n    except: [ZOE.SMITH@CONTOSO.EXAMPLE]\n    app-passwords: none\n",
        ),
    );
    assert_eq!(
        plan_changes(&env, "m"),
        [(
            "henry@contoso.example".to_string(),
            "delete-app-passwords".to_string()
        )]
    );
}

#[test]
fn an_unknown_user_message_keeps_the_manifest_spelling() {
    rejected(
        &bad("  - users: [Zed@Contoso.Example]\n    app-passwords: none\n"),
        6,
        13,
        &["Zed@Contoso.Example"],
    );
}

#[test]
fn rejections_leave_a_store_changed_by_earlier_applies_as_it_is() {
    // After a real apply (revision 2, audit not empty) an invalid run changes nothing either.
    let env = Env::example();
    env.write("m/00-good.yaml", &good());
    env.ok(&["apply", "m", "--auto-approve", "--actor", GARY]);
    let before = env.export();
    let audit_before = env.ok(&["audit", "--format", "json"]).stdout;
    env.write(
        "m/bad.yaml",
        &bad(
            "  - all-users: true\n    revoke-sessions-before: 2026-11-30T12:00:00Z\n    bogus: 1\n",
        ),
    );
    let o = env.run(&["apply", "m", "--auto-approve", "--actor", GARY]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("m/bad.yaml:8:5: "), "{}", o.all());
    assert_eq!(env.export(), before);
    assert_eq!(env.ok(&["audit", "--format", "json"]).stdout, audit_before);
}

// ---------------------------------------------------------------------------------------------
// Product bugs found while writing these tests
// ---------------------------------------------------------------------------------------------

#[test]
fn a_number_where_a_string_is_expected_is_located() {
    // metadata.name on line 4: `  name: ` is 8 characters.
    rejected(
        &manifest(
            "2026",
            "  - users: [alice@contoso.example]\n    revoke-sessions-before: 2026-11-01\n",
        ),
        4,
        9,
        &["name", "string"],
    );
    rejected(
        &bad("  - group: 42\n    app-passwords: none\n"),
        6,
        12,
        &["group", "string"],
    );
    // In the second document: its entry is on line 14; `42` at column 34.
    rejected(
        &two_docs("  - users: [bob@contoso.example, 42]\n    app-passwords: none\n"),
        14,
        34,
        &["users", "string"],
    );
}

#[test]
fn a_document_of_the_wrong_shape_names_no_internal_type() {
    let env = Env::example();
    for (text, at) in [
        (
            "- alice@contoso.example\n- bob@contoso.example\n",
            "m/bad.yaml:1:1: ",
        ),
        (
            "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata: offboarding\nspec: []\n",
            "m/bad.yaml:3:11: ",
        ),
    ] {
        env.write("m/bad.yaml", text);
        let o = env.run(&["validate", "m"]);
        assert_eq!(o.code, 1, "{}", o.all());
        assert!(o.stderr.contains(at), "{}", o.all());
        assert!(!o.stderr.contains("struct "), "{}", o.all());
        assert!(!o.stderr.contains("RawManifest"), "{}", o.all());
    }
}

#[test]
fn a_utf8_byte_order_mark_is_accepted() {
    let env = Env::example();
    env.write("m/bom.yaml", &format!("\u{feff}{}", good()));
    env.ok(&["validate", "m"]);
    let o = env.ok(&["plan", "m", "--format", "json"]);
    let plan: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(plan["changes"][0]["user"], "carol@contoso.example");
    // And its problems are located as in any other file.
    env.write(
        "m/bom.yaml",
        &format!(
            "\u{feff}{}",
            bad("  - users: [zed@contoso.example]\n    app-passwords: none\n")
        ),
    );
    let o = env.run(&["validate", "m"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert_eq!(problem_lines(&o.stderr).len(), 1, "{}", o.all());
    assert!(o.stderr.contains("m/bom.yaml:6:13: "), "{}", o.all());
}
