//! The scale benchmark (`benches/scale.rs`) at a few thousand users, as an ordinary test, so that
//! its code cannot rot: the generator, every scenario and every limit reference run once, and
//! what they print is checked — the plan's every change against an independent model of the
//! rules in docs/store.md, idempotence after the apply, and the export against serde_yaml's
//! rendering and an import round trip. It measures time but asserts none.

#[path = "../benches/scale.rs"]
mod scale;

use mfactl::model::{Timestamp, User};
use scale::generate;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn config(dir: &Path) -> scale::Config {
    scale::Config {
        dir: dir.to_path_buf(),
        big: 4_000,
        small: 2_000,
        declared: 1_000,
        few: 50,
        runs: 1,
        seed: 7,
        verbose: false,
        generate_in_child: false,
    }
}

/// One change as (user, action, cutoff, sources).
type Change = (String, String, Option<String>, Vec<String>);

/// Per user key and action: every (cutoff, manifest) that asks for it.
type Wants<'a> = BTreeMap<String, BTreeMap<&'a str, Vec<(Option<Timestamp>, String)>>>;

fn ts(v: &Value) -> Timestamp {
    Timestamp::parse(v.as_str().expect("a timestamp string")).expect("a valid timestamp")
}

/// The plan the tables of docs/store.md give for the tenant's declared and group manifests,
/// computed from the generator's users and the manifests read as plain YAML: nothing of mfactl's
/// parser or planner is involved.
fn expected_plan(t: &scale::Tenant, dirs: &[String], seed: u64) -> BTreeSet<Change> {
    let users: Vec<User> = (0..t.users)
        .map(|i| generate::user(seed, t.users, i))
        .collect();
    let by_key: BTreeMap<String, &User> = users
        .iter()
        .map(|u| (u.id.to_ascii_lowercase(), u))
        .collect();
    // Per user key and action: every (cutoff, manifest) that asks for it.
    let mut wants: Wants = BTreeMap::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).expect("manifest dir") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("manifest");
            let doc: Value = serde_yaml::from_str(&text).expect("YAML");
            let name = doc["metadata"]["name"].as_str().expect("name").to_string();
            for e in doc["spec"].as_sequence().expect("spec") {
                let except: BTreeSet<String> = e["except"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .map(|u| u.as_str().expect("id").to_ascii_lowercase())
                    .collect();
                let selected: Vec<String> = if let Some(list) = e["users"].as_sequence() {
                    list.iter()
                        .map(|u| u.as_str().expect("id").to_ascii_lowercase())
                        .collect()
                } else if let Some(g) = e["group"].as_str() {
                    users
                        .iter()
                        .filter(|u| u.groups.iter().any(|ug| ug == g))
                        .map(|u| u.id.to_ascii_lowercase())
                        .collect()
                } else {
                    assert_eq!(e["all-users"].as_bool(), Some(true), "a selector: {e:?}");
                    users.iter().map(|u| u.id.to_ascii_lowercase()).collect()
                };
                // The default policy's protected user is skipped by every selector.
                let skip = |k: &String| except.contains(k) || k == generate::BREAKGLASS;
                for key in selected.into_iter().filter(|k| !skip(k)) {
                    let w = wants.entry(key).or_default();
                    for (field, action) in [
                        ("require-reregistration", "require-reregistration"),
                        ("revoke-sessions-before", "revoke-sessions"),
                        ("revoke-trusted-devices-before", "revoke-trusted-devices"),
                        ("reset-password-before", "reset-password"),
                    ] {
                        if !e[field].is_null() {
                            w.entry(action)
                                .or_default()
                                .push((Some(ts(&e[field])), name.clone()));
                        }
                    }
                    if e["app-passwords"].as_str() == Some("none") {
                        w.entry("delete-app-passwords")
                            .or_default()
                            .push((None, name.clone()));
                    }
                }
            }
        }
    }
    // docs/store.md, "When a setting is satisfied".
    let needed = |u: &User, action: &str, t: Option<Timestamp>| -> bool {
        let below = |wm: Option<Timestamp>, t: Timestamp| wm.is_none_or(|w| w < t);
        match (action, t) {
            ("delete-app-passwords", _) => !u.app_passwords.is_empty(),
            ("require-reregistration", Some(t)) => {
                below(u.registration_valid_from, t) || u.methods.iter().any(|m| m.registered_at < t)
            }
            ("revoke-sessions", Some(t)) => {
                below(u.sessions_valid_from, t) || u.sessions.iter().any(|s| s.issued_at < t)
            }
            ("revoke-trusted-devices", Some(t)) => {
                below(u.devices_valid_from, t)
                    || u.trusted_devices.iter().any(|d| d.remembered_at < t)
            }
            ("reset-password", Some(t)) => below(u.password_set_at, t),
            _ => unreachable!(),
        }
    };
    let mut out = BTreeSet::new();
    for (key, per_action) in wants {
        let u = by_key[&key];
        for (action, asks) in per_action {
            let cutoff = asks.iter().filter_map(|(t, _)| *t).max();
            if !needed(u, action, cutoff) {
                continue;
            }
            let sources: BTreeSet<String> = asks
                .iter()
                .filter(|(t, _)| needed(u, action, *t))
                .map(|(_, n)| n.clone())
                .collect();
            out.insert((
                u.id.clone(),
                action.to_string(),
                cutoff.map(|t| t.to_string()),
                sources.into_iter().collect(),
            ));
        }
    }
    out
}

fn mfactl(cwd: &Path, args: &[&str]) -> std::process::Output {
    mfactl_env(cwd, args, &[])
}

fn mfactl_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let o = std::process::Command::new(scale::BIN)
        .current_dir(cwd)
        .envs(env.iter().copied())
        // The example policies protect the generated tenant's break-glass account.
        .args(["--policies", scale::POLICIES])
        .args(args)
        .env("MFACTL_NOW", generate::NOW)
        .env("NO_COLOR", "1")
        .env_remove("MFACTL_ACTOR")
        .env_remove("MFACTL_STORE")
        .output()
        .expect("run mfactl");
    assert!(
        o.status.success(),
        "mfactl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A JSON plan's changes, each checked to be allowed for the global administrator.
fn changes_of(plan: &serde_json::Value) -> BTreeSet<Change> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            assert_eq!(c["verdict"]["role"], "global-administrator", "{c}");
            (
                c["user"].as_str().unwrap_or_default().to_string(),
                c["action"].as_str().unwrap_or_default().to_string(),
                c["cutoff"].as_str().map(str::to_string),
                c["sources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
            )
        })
        .collect()
}

/// A plan's output with its random plan id replaced.
fn without_id(out: &[u8], plan: &serde_json::Value) -> String {
    let id = plan["plan_id"].as_str().expect("plan id");
    String::from_utf8_lossy(out).replace(id, "ID")
}

#[test]
fn every_scale_scenario_at_a_few_thousand_users() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cfg = config(tmp.path());
    let (report, tenants) = scale::run(&cfg).unwrap_or_else(|e| panic!("{e}"));

    // Every scenario and every reference ran, and the table renders with a verdict for each.
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    for n in [
        scale::PLAN_BIG,
        scale::PLAN_SMALL,
        scale::PLAN_FEW,
        scale::PLAN_ALL,
        scale::VALIDATE,
        scale::EXPORT,
        scale::EXPORT_JSONL,
        scale::IMPORT_JSONL,
        scale::IMPORT_YAML_BIG,
        scale::IMPORT,
        scale::APPLY,
        scale::APPLY_SAVED,
        scale::EMPTY,
    ] {
        assert!(names.contains(&n), "{n} did not run: {names:?}");
    }
    let refs: Vec<&str> = report.references.iter().map(|r| r.name.as_str()).collect();
    for n in [
        scale::REF_PARSE,
        scale::REF_READ,
        scale::REF_WRITE,
        scale::REF_ALL,
    ] {
        assert!(refs.contains(&n), "{n} did not run: {refs:?}");
    }
    // The sqlite3 shell's reference runs where sqlite3 is on PATH, and says it was skipped
    // where it is not.
    let has_sqlite3 = std::process::Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok();
    assert_eq!(refs.contains(&scale::REF_SQLITE3), has_sqlite3, "{refs:?}");
    assert_eq!(report.skipped.len(), usize::from(!has_sqlite3));
    assert_eq!(report.references.len(), 4 + usize::from(has_sqlite3));
    assert!(report
        .references
        .iter()
        .all(|r| r.walls.len() == cfg.runs && !r.work.is_empty()));
    let table = scale::table(&report);
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("| plan")
                || l.starts_with("| store")
                || l.starts_with("| apply")
                || l.starts_with("| validate"))
            .count(),
        13,
        "{table}"
    );
    assert!(report
        .rows
        .iter()
        .all(|r| r.rss_kib() > 0 && !r.runs.is_empty()));
    // Exactly five targets, each with its mark; every other row has none.
    let marked = table
        .lines()
        .filter(|l| l.ends_with("| met |") || l.ends_with("| MISSED |"))
        .count();
    assert_eq!(marked, 5, "{table}");
    for n in [
        scale::PLAN_BIG,
        scale::PLAN_FEW,
        scale::PLAN_ALL,
        scale::APPLY,
        scale::EMPTY,
    ] {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {n} |")))
            .unwrap_or_else(|| panic!("{n} not in {table}"));
        assert!(line.contains("≤ ") && line.contains("–"), "{line}");
    }

    // The big plan, change by change, against the model.
    let big = &tenants.big;
    assert_eq!(big.gen.declared.len(), cfg.declared);
    let [d, g] = big.plan_paths();
    let store = big.store.display().to_string();
    let o = mfactl(
        tmp.path(),
        &[
            "--store",
            &store,
            "plan",
            &d,
            &g,
            "--actor",
            generate::ADMIN,
            "--format",
            "json",
        ],
    );
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).expect("plan JSON");
    let got = changes_of(&plan);
    let want = expected_plan(big, &[d.clone(), g.clone()], cfg.seed);
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}"
    );
    assert_eq!(
        got.len(),
        plan["changes"].as_array().map_or(0, |c| c.len()),
        "no change twice"
    );
    let actions: BTreeSet<&str> = got.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(actions.len(), 5, "every setting is used: {actions:?}");
    assert!(
        got.iter().any(|c| c.3.len() > 1),
        "some change has two sources (users named twice)"
    );

    // Plans are computed a batch of users at a time (the named users and group members, or the
    // whole directory with `all-users`): with every manifest set the plan is the model's, and
    // whatever the batch size, every format and the saved plan are the same bytes (but for the
    // plan id).
    let all = big.manifests("all-users");
    for set in [
        vec![d.clone(), g.clone()],
        vec![d.clone(), g.clone(), all.clone()],
    ] {
        let want = expected_plan(big, &set, cfg.seed);
        let mut seen: Vec<Vec<String>> = Vec::new();
        for batch in ["1000000", "333", "1"] {
            let mut outputs = Vec::new();
            let saved = tmp.path().join(format!("saved-{batch}.json"));
            let _ = std::fs::remove_file(&saved);
            let saved_s = saved.display().to_string();
            let env = [("MFACTL_PLAN_BATCH", batch)];
            let mut args = vec!["--store", store.as_str(), "plan"];
            args.extend(set.iter().map(String::as_str));
            args.extend(["--actor", generate::ADMIN]);
            let json = mfactl_env(
                tmp.path(),
                &[&args[..], &["--format", "json", "--out", &saved_s]].concat(),
                &env,
            );
            let plan: serde_json::Value = serde_json::from_slice(&json.stdout).expect("plan JSON");
            let got = changes_of(&plan);
            assert_eq!(got, want, "batch {batch}");
            assert_eq!(plan["summary"]["changes"], got.len(), "batch {batch}");
            if set.contains(&all) {
                let skipped = plan["skipped"].as_array().expect("skipped");
                assert_eq!(skipped.len(), 1, "the protected user, once: {skipped:?}");
                assert_eq!(skipped[0]["user"], generate::BREAKGLASS);
            }
            outputs.push(without_id(&json.stdout, &plan));
            let file: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&saved).expect("saved plan")).expect("JSON");
            assert_eq!(file["changes"], plan["changes"], "batch {batch}");
            let fingerprints = file["fingerprints"].as_object().expect("fingerprints");
            let users: BTreeSet<&str> = got.iter().map(|c| c.0.as_str()).collect();
            assert_eq!(fingerprints.len(), users.len(), "batch {batch}");
            for format in ["text", "markdown"] {
                let o = mfactl_env(
                    tmp.path(),
                    &[&args[..], &["--format", format]].concat(),
                    &env,
                );
                outputs.push(String::from_utf8_lossy(&o.stdout).into_owned());
            }
            // Text carries no plan id; Markdown does.
            let md = outputs.pop().expect("markdown");
            let md_id = md
                .split("plan ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_default()
                .to_string();
            outputs.push(md.replace(&md_id, "ID"));
            seen.push(outputs);
        }
        assert!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "the plan depends on the batch size"
        );
    }

    // The streamed export is exactly serde_yaml's rendering of the whole directory, and imports
    // back to the same export.
    let exported = mfactl(tmp.path(), &["--store", &store, "store", "export"]).stdout;
    let st =
        mfactl::store::Store::open(&big.store, std::time::Duration::from_secs(5)).expect("open");
    let whole = serde_yaml::to_string(&mfactl::store::export(&st).expect("export")).expect("yaml");
    assert!(
        exported == whole.as_bytes(),
        "the streamed export differs from serde_yaml's"
    );
    let copy = tmp.path().join("roundtrip.db");
    let copy_s = copy.display().to_string();
    let file = tmp.path().join("export.yaml");
    std::fs::write(&file, &exported).expect("write export");
    mfactl(tmp.path(), &["--store", &copy_s, "init"]);
    mfactl(
        tmp.path(),
        &[
            "--store",
            &copy_s,
            "store",
            "import",
            &file.display().to_string(),
        ],
    );
    let again = mfactl(tmp.path(), &["--store", &copy_s, "store", "export"]).stdout;
    assert!(
        again == exported,
        "export → import → export changed the directory"
    );
}
