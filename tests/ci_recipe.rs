//! The CI recipe (examples/ci/github-workflow.yaml) runs as written: its own `run:` steps, in
//! order, with bash, against a local store, with stand-ins for what only GitHub has (the `gh`
//! CLI answers from files, `actions/checkout` and `actions/upload-artifact` copy directories,
//! and the runner's variables point into a temp dir). It was not safe: the apply job had no
//! checkout (so it took whatever policies/ the reused workspace held), pull-request jobs planned
//! on the production store, the reviewed plan was downloaded into the dirty workspace and looked
//! up without regard to the run's result.

mod common;
use common::*;

use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const RECIPE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/ci/github-workflow.yaml"
);
const REPO: &str = "contoso/mfa";
const PR: &str = "7";
const PR_HEAD: &str = "1111111111111111111111111111111111111111";
const MERGE_SHA: &str = "2222222222222222222222222222222222222222";

/// `gh`, as far as the recipe uses it, answering from files in `$GHSIM` instead of GitHub.
/// An API call or flag it does not know fails, so the recipe cannot drift from what is tested.
const GH: &str = r#"#!/usr/bin/env bash
set -euo pipefail
sim="$GHSIM"
repo="repos/$GITHUB_REPOSITORY"
echo "gh $*" >> "$sim/calls.log"
fail() { echo "gh stand-in: $*" >&2; exit 64; }
case "$1" in
  api)
    shift; method=GET; q=; path=; body=
    while [ $# -gt 0 ]; do
      case "$1" in
        --method) method=$2; shift 2;;
        --paginate) shift;;
        -q|--jq) q=$2; shift 2;;
        -F|-f) case "$2" in body=@*) body=${2#body=@};; *) fail "field $2";; esac; shift 2;;
        -*) fail "flag $1";;
        *) path=$1; shift;;
      esac
    done
    case "$method $path" in
      "GET $repo/issues/$SIM_PR/comments") data="$sim/comments.json";;
      "GET $repo/commits/$SIM_MERGE_SHA/pulls") data="$sim/pulls.json";;
      "PATCH $repo/issues/comments/"*)
        jq --argjson id "${path##*/}" --rawfile b "$body" \
          'map(if .id == $id then .body = $b else . end)' "$sim/comments.json" > "$sim/c.tmp"
        mv "$sim/c.tmp" "$sim/comments.json"
        exit 0;;
      *) fail "API call $method $path";;
    esac
    if [ -n "$q" ]; then jq -r "$q" "$data"; else cat "$data"; fi;;
  pr)
    [ "$2" = comment ] && [ "$3" = "$SIM_PR" ] && [ "$4" = --body-file ] || fail "gh $*"
    jq --rawfile b "$5" '. + [{id: ((map(.id) | max // 0) + 1), body: $b}]' \
      "$sim/comments.json" > "$sim/c.tmp"
    mv "$sim/c.tmp" "$sim/comments.json";;
  run)
    sub=$2; shift 2
    case "$sub" in
      list)
        commit=; status=; event=; q=; workflow=
        while [ $# -gt 0 ]; do
          case "$1" in
            -R) [ "$2" = "$GITHUB_REPOSITORY" ] || fail "repo $2"; shift 2;;
            --workflow) workflow=$2; shift 2;;
            --commit) commit=$2; shift 2;;
            --status) status=$2; shift 2;;
            --event) event=$2; shift 2;;
            --json) [ "$2" = databaseId ] || fail "--json $2"; shift 2;;
            -q|--jq) q=$2; shift 2;;
            *) fail "run list $1";;
          esac
        done
        # Newest first, as gh lists them.
        jq --arg c "$commit" --arg s "$status" --arg e "$event" --arg w "$workflow" \
          '[.[] | select(.workflow == $w and ($c == "" or .headSha == $c)
                         and ($s == "" or .conclusion == $s) and ($e == "" or .event == $e))]
           | sort_by(-.databaseId) | map({databaseId})' "$sim/runs.json" > "$sim/list.json"
        if [ -n "$q" ]; then jq -r "$q" "$sim/list.json"; else cat "$sim/list.json"; fi;;
      download)
        run=$1; shift; name=; dir=.
        while [ $# -gt 0 ]; do
          case "$1" in
            -R) shift 2;;
            -n) name=$2; shift 2;;
            -D) dir=$2; shift 2;;
            *) fail "run download $1";;
          esac
        done
        src="$sim/artifacts/$run/$name"
        [ -d "$src" ] || { echo "no artifact $name in run $run" >&2; exit 1; }
        # gh refuses to overwrite files; this stand-in insists on an empty directory.
        if [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
          echo "gh stand-in: downloading into $dir, which is not empty" >&2; exit 1
        fi
        mkdir -p "$dir"
        cp -R "$src/." "$dir/";;
      *) fail "gh run $sub";;
    esac;;
  *) fail "gh $1";;
esac
"#;

/// A job's outcome: whether it failed, and everything its steps printed.
struct JobRun {
    failed: bool,
    log: String,
    /// How many `run:` steps that invoke mfactl ran.
    mfactl_steps: usize,
}

/// The local stand-in for a runner: where things live and what each job sees.
struct Runner {
    root: PathBuf,
    sim: PathBuf,
    prod: PathBuf,
    snapshot: PathBuf,
    expect_plan_id: bool,
    /// `${{ secrets.MFACTL_ALLOWED_SIGNERS }}`; empty when unset, as GitHub gives a missing secret.
    signers_secret: String,
}

impl Runner {
    fn new(root: &Path) -> Runner {
        let sim = root.join("gh");
        let bin = root.join("bin");
        std::fs::create_dir_all(&sim).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(root.join("srv/snapshot")).unwrap();
        let gh = bin.join("gh");
        std::fs::write(&gh, GH).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(sim.join("comments.json"), r#"[{"id": 1, "body": "LGTM"}]"#).unwrap();
        std::fs::write(
            sim.join("pulls.json"),
            format!(r#"[{{"number": {PR}, "head": {{"sha": "{PR_HEAD}"}}}}]"#),
        )
        .unwrap();
        std::fs::write(sim.join("runs.json"), "[]").unwrap();
        // `--expect-plan-id` arrives with the saved-plan work; until this binary has it, the
        // recipe's apply runs without that one flag (see `run_text`).
        let help = Command::new(env!("CARGO_BIN_EXE_mfactl"))
            .args(["apply", "--help"])
            .output()
            .unwrap();
        Runner {
            prod: root.join("srv/mfactl.db"),
            snapshot: root.join("srv/snapshot/mfactl.db"),
            root: root.to_path_buf(),
            sim,
            expect_plan_id: String::from_utf8_lossy(&help.stdout).contains("--expect-plan-id"),
            signers_secret: String::new(),
        }
    }

    /// The environment the recipe's variables name, pointed into the temp dir.
    fn local_value(&self, name: &str, value: &str) -> String {
        match name {
            "MFACTL_STORE" => self.prod.display().to_string(),
            "MFACTL_SNAPSHOT" => self.snapshot.display().to_string(),
            _ => value.to_string(),
        }
    }

    /// The recipe's `${{ … }}` expressions this test knows; any other is a test failure.
    fn expression(&self, text: &str, sha: &str) -> String {
        let mut out = text.to_string();
        for (expr, value) in [
            ("${{ github.token }}", "test-token"),
            ("${{ github.event.pull_request.number }}", PR),
            ("${{ github.sha }}", sha),
            (
                "${{ secrets.MFACTL_ALLOWED_SIGNERS }}",
                self.signers_secret.as_str(),
            ),
        ] {
            out = out.replace(expr, value);
        }
        assert!(
            !out.contains("${{"),
            "an expression this test does not know: {text}"
        );
        out
    }

    /// Runs job `name` of `recipe` in `workspace`, on `tree` (what checkout checks out), as the
    /// event with commit `sha`.
    fn job(&self, recipe: &Value, name: &str, workspace: &Path, tree: &Path, sha: &str) -> JobRun {
        let job = &recipe["jobs"][name];
        let temp = self.root.join(format!("temp-{name}"));
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir_all(&temp).unwrap();
        std::fs::create_dir_all(workspace).unwrap();
        let github_env = temp.join("github_env");
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for scope in [&recipe["env"], &job["env"]] {
            if let Some(m) = scope.as_mapping() {
                for (k, v) in m {
                    let k = k.as_str().unwrap();
                    env.insert(k.into(), self.local_value(k, v.as_str().unwrap()));
                }
            }
        }
        let bin = Path::new(env!("CARGO_BIN_EXE_mfactl")).parent().unwrap();
        let path = format!(
            "{}:{}:{}",
            self.root.join("bin").display(),
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        for (k, v) in [
            ("PATH", path.as_str()),
            ("HOME", &self.root.display().to_string()),
            ("MFACTL_NOW", NOW),
            ("GITHUB_REPOSITORY", REPO),
            ("GITHUB_SHA", sha),
            ("GITHUB_WORKSPACE", &workspace.display().to_string()),
            ("GITHUB_ENV", &github_env.display().to_string()),
            ("RUNNER_TEMP", &temp.display().to_string()),
            ("TMPDIR", &temp.display().to_string()),
            ("GHSIM", &self.sim.display().to_string()),
            ("SIM_PR", PR),
            ("SIM_MERGE_SHA", MERGE_SHA),
        ] {
            env.insert(k.into(), v.into());
        }
        let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut run = JobRun {
            failed: false,
            log: String::new(),
            mfactl_steps: 0,
        };
        for (i, step) in job["steps"].as_sequence().unwrap().iter().enumerate() {
            let title = step["name"]
                .as_str()
                .or(step["uses"].as_str())
                .unwrap_or("?")
                .to_string();
            let wanted = match step["if"].as_str() {
                None => !run.failed,
                Some("always()") => true,
                Some(cond) => !run.failed && self.condition(cond, &outputs),
            };
            if !wanted {
                run.log.push_str(&format!("== {title}: skipped\n"));
                continue;
            }
            let ok = if let Some(action) = step["uses"].as_str() {
                let ok = self.action(action, &step["with"], workspace, tree);
                run.log.push_str(&format!(
                    "== {title}: {}\n",
                    if ok { "done" } else { "failed" }
                ));
                ok
            } else {
                let text = self.run_text(step["run"].as_str().expect("a run step"));
                if text.contains("mfactl ") {
                    run.mfactl_steps += 1;
                }
                let output_file = temp.join(format!("output-{i}"));
                std::fs::write(&output_file, "").unwrap();
                std::fs::write(&github_env, "").unwrap();
                let script = temp.join(format!("step-{i}.sh"));
                std::fs::write(&script, &text).unwrap();
                let mut cmd = Command::new("bash");
                // GitHub's default for `run:` on Linux: `bash -e {0}`.
                cmd.arg("-e")
                    .arg(&script)
                    .current_dir(workspace)
                    .env_clear();
                cmd.envs(&env).env("GITHUB_OUTPUT", &output_file);
                if let Some(m) = step["env"].as_mapping() {
                    for (k, v) in m {
                        let v = self.expression(v.as_str().unwrap(), sha);
                        cmd.env(k.as_str().unwrap(), v);
                    }
                }
                let o = cmd.output().unwrap();
                run.log.push_str(&format!(
                    "== {title}: {}\n{}{}",
                    o.status,
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ));
                if let Some(id) = step["id"].as_str() {
                    outputs.insert(id.into(), key_values(&output_file));
                }
                env.extend(key_values(&github_env));
                o.status.success()
            };
            if !ok {
                run.failed = true;
            }
        }
        run
    }

    /// A `run:` text as it runs here: itself, but without `--expect-plan-id` while this binary
    /// lacks it (it comes with the saved-plan work; then the whole text runs).
    fn run_text(&self, text: &str) -> String {
        let flag = " --expect-plan-id \"$PLAN_ID\"";
        if self.expect_plan_id || !text.contains(flag) {
            return text.to_string();
        }
        eprintln!("note: this mfactl has no --expect-plan-id; the apply step runs without it");
        text.replace(flag, "")
    }

    /// The step conditions the recipe uses.
    fn condition(&self, cond: &str, outputs: &BTreeMap<String, BTreeMap<String, String>>) -> bool {
        let (lhs, rhs) = cond.split_once(" == ").expect("a comparison");
        let parts: Vec<&str> = lhs.trim().split('.').collect();
        assert!(
            parts.len() == 4 && parts[0] == "steps" && parts[2] == "outputs",
            "a condition this test does not know: {cond}"
        );
        let value = outputs
            .get(parts[1])
            .and_then(|o| o.get(parts[3]))
            .cloned()
            .unwrap_or_default();
        value == rhs.trim().trim_matches('\'')
    }

    /// The actions the recipe uses: checkout (the job's tree, in a clean workspace) and
    /// upload-artifact (into the stand-in's uploads).
    fn action(&self, action: &str, with: &Value, workspace: &Path, tree: &Path) -> bool {
        match action {
            "actions/checkout@v4" => {
                for entry in std::fs::read_dir(workspace).unwrap() {
                    let p = entry.unwrap().path();
                    if p.is_dir() {
                        std::fs::remove_dir_all(&p).unwrap();
                    } else {
                        std::fs::remove_file(&p).unwrap();
                    }
                }
                copy_tree(tree, workspace);
                true
            }
            "actions/upload-artifact@v4" => {
                let name = with["name"].as_str().unwrap();
                let from = workspace.join(with["path"].as_str().unwrap());
                let to = self.sim.join("uploads").join(name);
                std::fs::create_dir_all(&to).unwrap();
                std::fs::copy(&from, to.join(from.file_name().unwrap())).is_ok()
            }
            other => panic!("an action this test does not know: {other}"),
        }
    }

    /// Records a review run and its artifact, for `gh run list` and `gh run download`.
    fn record_run(&self, id: u64, conclusion: &str, plan: &Path) {
        let dir = self.sim.join(format!("artifacts/{id}/mfactl-plan"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(plan, dir.join("plan.json")).unwrap();
        let path = self.sim.join("runs.json");
        let mut runs: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        runs.as_array_mut().unwrap().push(serde_json::json!({
            "databaseId": id, "headSha": PR_HEAD, "conclusion": conclusion,
            "event": "pull_request", "workflow": "mfactl.yaml"
        }));
        std::fs::write(&path, runs.to_string()).unwrap();
    }

    fn comments(&self) -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.sim.join("comments.json")).unwrap())
                .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["body"].as_str().unwrap().to_string())
            .collect()
    }
}

/// `KEY=VALUE` lines, as `$GITHUB_ENV` and `$GITHUB_OUTPUT` hold them.
fn key_values(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn mfactl(store: &Path, args: &[&str], cwd: &Path) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_mfactl"))
        .args(args)
        .current_dir(cwd)
        .env("MFACTL_STORE", store)
        .env("MFACTL_NOW", NOW)
        .env("NO_COLOR", "1")
        .env_remove("MFACTL_ACTOR")
        .output()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The repository at the pull request's head (and, once merged, main): two example manifests
/// (one resets a password) and the example policies.
fn pr_tree(root: &Path) -> PathBuf {
    let tree = root.join("tree");
    for m in ["offboarding-2026-11", "stolen-laptop-carol"] {
        let to = tree.join(format!("manifests/{m}.yaml"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(format!("{EXAMPLES}/manifests/{m}.yaml"), to).unwrap();
    }
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        &tree.join("policies"),
    );
    tree
}

/// The production store (the example directory and the pipeline's actor), and the first snapshot,
/// published by the apply job's own step (as the recipe's header says to do once).
fn production_store(r: &Runner, recipe: &Value, tree: &Path) {
    let root = r.root.as_path();
    mfactl(&r.prod, &["init"], root);
    let o = mfactl(
        &r.prod,
        &["store", "import", &format!("{EXAMPLES}/directory.yaml")],
        root,
    );
    assert_eq!(o.code, 0, "{}", o.all());
    std::fs::write(
        root.join("ci.yaml"),
        user_yaml(
            "mfactl-ci@contoso.example",
            &["global-administrator"],
            &[],
            "",
        ),
    )
    .unwrap();
    assert_eq!(
        mfactl(&r.prod, &["store", "import", "ci.yaml"], root).code,
        0
    );

    let apply_steps = recipe["jobs"]["apply"]["steps"].as_sequence().unwrap();
    let publish = apply_steps
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.contains("snapshot")))
        .expect("the apply job publishes the snapshot");
    let publish_only: Value = serde_yaml::from_str(&format!(
        "env: {}\njobs:\n  publish:\n    env: {}\n    steps: [{}]\n",
        serde_json::to_string(&serde_json::to_value(&recipe["env"]).unwrap()).unwrap(),
        serde_json::to_string(&serde_json::to_value(&recipe["jobs"]["apply"]["env"]).unwrap())
            .unwrap(),
        serde_json::to_string(&serde_json::to_value(publish).unwrap()).unwrap()
    ))
    .unwrap();
    let first = r.job(
        &publish_only,
        "publish",
        &root.join("ws-publish"),
        tree,
        MERGE_SHA,
    );
    assert!(!first.failed, "{}", first.log);
}

#[test]
fn the_ci_recipe_reviews_on_a_copy_and_applies_exactly_the_reviewed_plan() {
    if !(have("jq") && have("sqlite3")) {
        eprintln!("skipped: the recipe needs jq and sqlite3 on PATH, and so does this test");
        return;
    }
    let recipe: Value = serde_yaml::from_str(&std::fs::read_to_string(RECIPE).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let r = Runner::new(root);
    let tree = pr_tree(root);

    production_store(&r, &recipe, &tree);
    let snapshot_bytes = std::fs::read(&r.snapshot).expect("a snapshot");

    // Review, with the production store out of reach: the job must not need it.
    let hidden = root.join("srv/hidden.db");
    std::fs::rename(&r.prod, &hidden).unwrap();
    let review = r.job(&recipe, "review", &root.join("ws-review"), &tree, PR_HEAD);
    std::fs::rename(&hidden, &r.prod).unwrap();
    assert!(!review.failed, "the review job failed:\n{}", review.log);
    assert!(review.mfactl_steps >= 2, "{}", review.log);
    assert_eq!(
        std::fs::read(&r.snapshot).unwrap(),
        snapshot_bytes,
        "the review wrote the snapshot"
    );
    let reviewed = r.sim.join("uploads/mfactl-plan/plan.json");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reviewed).expect("the artifact")).unwrap();
    let plan_id = plan["plan_id"].as_str().unwrap().to_string();
    let comments = r.comments();
    let ours: Vec<&String> = comments
        .iter()
        .filter(|c| c.starts_with("<!-- mfactl-plan -->"))
        .collect();
    assert_eq!(ours.len(), 1, "one plan comment: {comments:?}");
    assert!(
        ours[0].contains(&format!("<!-- mfactl-plan-id: {plan_id} -->")),
        "{}",
        ours[0]
    );
    assert!(ours[0].contains("carol@contoso.example"), "{}", ours[0]);
    let changes: Vec<(String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["user"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(changes.len() >= 5, "{changes:?}");

    // A review run that succeeded, then a newer one of the same commit that failed, with
    // another plan in its artifact: only the successful run's plan may be applied.
    r.record_run(101, "success", &reviewed);
    let other = root.join("other.json");
    let o = mfactl(
        &r.prod,
        &[
            "plan",
            &format!("{EXAMPLES}/manifests/tenant-wide-revocation.yaml"),
            "--actor",
            "mfactl-ci@contoso.example",
            "--out",
            other.to_str().unwrap(),
        ],
        root,
    );
    assert_eq!(o.code, 0, "{}", o.all());
    r.record_run(102, "failure", &other);
    std::fs::write(
        r.sim.join("pulls.json"),
        format!(r#"[{{"number": {PR}, "head": {{"sha": "{PR_HEAD}"}}}}]"#),
    )
    .unwrap();

    // The apply runner's workspace, reused: an unmerged pull request's policies/ (one user per
    // apply at most) and a plan left over from another run.
    let ws = root.join("ws-apply");
    copy_tree(&tree.join("policies"), &ws.join("policies"));
    std::fs::write(
        ws.join("policies/guardrails.yaml"),
        "protected-users: []\nmax-users-per-apply: 1\nmax-future-skew: 5m\n",
    )
    .unwrap();
    std::fs::copy(&other, ws.join("plan.json")).unwrap();
    let before = mfactl(&r.prod, &["audit", "--format", "json"], root);
    assert_eq!(before.stdout.trim(), "[]");

    let apply = r.job(&recipe, "apply", &ws, &tree, MERGE_SHA);
    assert!(!apply.failed, "the apply job failed:\n{}", apply.log);
    assert!(apply.mfactl_steps >= 1, "{}", apply.log);
    assert!(
        apply.log.contains("1 temporary passwords issued"),
        "carol's reset went to the credentials file, then away:\n{}",
        apply.log
    );
    assert!(!root.join("temp-apply/credentials.tsv").exists());

    // Exactly the reviewed plan was applied: its id on every record, its changes and no other.
    let audit: serde_json::Value =
        serde_json::from_str(&mfactl(&r.prod, &["audit", "--format", "json"], root).stdout)
            .unwrap();
    let mut applied: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|rec| {
            assert_eq!(rec["plan_id"], plan_id.as_str(), "{rec}");
            (
                rec["user"].as_str().unwrap().to_string(),
                rec["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    applied.sort();
    let mut wanted = changes.clone();
    wanted.sort();
    assert_eq!(applied, wanted);
    let o = mfactl(
        &r.prod,
        &[
            "plan",
            tree.join("manifests").to_str().unwrap(),
            "--detailed-exitcode",
        ],
        root,
    );
    assert_eq!(o.code, 0, "nothing left to do: {}", o.all());

    // The snapshot for the next review is the store as applied.
    assert_eq!(
        mfactl(&r.snapshot, &["store", "export"], root).stdout,
        mfactl(&r.prod, &["store", "export"], root).stdout
    );
}

/// The apply step names its policies; a leftover ./policies must never decide.
#[test]
fn the_ci_recipe_applies_with_explicit_policies_and_a_pinned_plan_id() {
    let recipe: Value = serde_yaml::from_str(&std::fs::read_to_string(RECIPE).unwrap()).unwrap();
    let steps = recipe["jobs"]["apply"]["steps"].as_sequence().unwrap();
    assert_eq!(
        steps[0]["uses"].as_str(),
        Some("actions/checkout@v4"),
        "the apply job checks out main first"
    );
    let apply = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|t| t.contains("mfactl apply"))
        .expect("an apply step");
    for flag in [
        "--plan \"$PLAN\"",
        "--policies ",
        "--expect-plan-id \"$PLAN_ID\"",
    ] {
        assert!(apply.contains(flag), "{flag} in:\n{apply}");
    }
    let text = std::fs::read_to_string(RECIPE).unwrap();
    assert!(
        text.contains("# Security\n"),
        "the recipe explains its security"
    );
    // The production store is named only where the apply job runs.
    assert!(recipe["env"]["MFACTL_STORE"].is_null());
    assert!(recipe["jobs"]["review"]["env"]["MFACTL_STORE"].is_null());
}

/// The `--signers` variant (docs/signing.md): its two jobs run exactly when the plain ones do
/// not, check out full history, write the signers file from a secret into $RUNNER_TEMP (never
/// the workspace), and pass it to every plan and apply; otherwise they are their plain twins.
#[test]
fn the_signed_variant_reads_full_history_and_its_signers_from_a_secret() {
    let recipe: Value = serde_yaml::from_str(&std::fs::read_to_string(RECIPE).unwrap()).unwrap();
    let jobs = &recipe["jobs"];
    let write_step = "Write the allowed-signers file";
    for (plain, signed, event) in [
        ("review", "review-signed", "pull_request"),
        ("apply", "apply-signed", "push"),
    ] {
        let when =
            |op: &str| format!("github.event_name == '{event}' && vars.MFACTL_SIGNED {op} 'true'");
        assert_eq!(jobs[plain]["if"].as_str(), Some(when("!=").as_str()));
        assert_eq!(jobs[signed]["if"].as_str(), Some(when("==").as_str()));
        assert_eq!(jobs[signed]["runs-on"], jobs[plain]["runs-on"], "{signed}");
        assert_eq!(jobs[signed]["env"], jobs[plain]["env"], "{signed}");
        let steps = jobs[signed]["steps"].as_sequence().unwrap();
        assert_eq!(steps[0]["uses"].as_str(), Some("actions/checkout@v4"));
        assert_eq!(
            steps[0]["with"]["fetch-depth"].as_u64(),
            Some(0),
            "{signed}"
        );
        let write = steps
            .iter()
            .find(|s| s["name"].as_str() == Some(write_step))
            .expect("a step writes the signers file");
        assert_eq!(
            write["env"]["ALLOWED_SIGNERS"].as_str(),
            Some("${{ secrets.MFACTL_ALLOWED_SIGNERS }}")
        );
        let text = write["run"].as_str().unwrap();
        assert!(
            text.contains("> \"$RUNNER_TEMP/allowed_signers\""),
            "{text}"
        );
        assert!(
            text.contains("MFACTL_SIGNERS=$RUNNER_TEMP/allowed_signers\" >> \"$GITHUB_ENV\""),
            "{text}"
        );
        let mfactl_runs: Vec<&str> = steps
            .iter()
            .filter_map(|s| s["run"].as_str())
            .filter(|t| t.contains("mfactl plan") || t.contains("mfactl apply"))
            .collect();
        assert_eq!(mfactl_runs.len(), 1, "{signed}");
        assert!(
            mfactl_runs[0].contains("--signers \"$MFACTL_SIGNERS\""),
            "{}",
            mfactl_runs[0]
        );
        // Step for step the plain job's, with the signers file written after the checkout.
        let names = |steps: &[Value]| -> Vec<String> {
            steps
                .iter()
                .map(|s| {
                    s["name"]
                        .as_str()
                        .or(s["uses"].as_str())
                        .unwrap()
                        .to_string()
                })
                .filter(|n| n != write_step)
                .collect()
        };
        assert_eq!(
            names(steps),
            names(jobs[plain]["steps"].as_sequence().unwrap()),
            "{signed}"
        );
    }
    let review = jobs["review-signed"]["steps"].as_sequence().unwrap();
    assert_eq!(
        review[0]["with"]["ref"].as_str(),
        Some("${{ github.event.pull_request.head.sha }}"),
        "the review plans the authors' commits, not GitHub's test merge"
    );
    let apply = jobs["apply-signed"]["steps"].as_sequence().unwrap();
    let text = apply
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|t| t.contains("mfactl apply"))
        .unwrap();
    for flag in [
        "--plan \"$PLAN\"",
        "--policies ",
        "--expect-plan-id \"$PLAN_ID\"",
    ] {
        assert!(text.contains(flag), "{flag} in:\n{text}");
    }
    // The secret is read by those steps only.
    let raw = std::fs::read_to_string(RECIPE).unwrap();
    assert_eq!(raw.matches("secrets.").count(), 2, "{raw}");
}

/// The `--signers` variant run as written, on a real repository: the pull request's manifests
/// signed by an authentication administrator (carol's stolen laptop) and a global administrator
/// (the offboarding, which deletes app passwords), the policies signed by the global
/// administrator. The review plans with the signers file from the secret; the apply refuses the
/// reviewed plan when the secret no longer lists a requester's key, and applies it when it does,
/// each record naming its requester and commit. A request the pipeline's own actor could make but
/// its signer may not fails the review.
#[test]
fn the_signed_recipe_decides_by_whoever_signed_each_manifest() {
    use common::git::{Repo, NOV_29};
    if !(have("jq") && have("sqlite3") && common::git::tools()) {
        eprintln!("skipped: needs jq, sqlite3, git and ssh-keygen on PATH");
        return;
    }
    let recipe: Value = serde_yaml::from_str(&std::fs::read_to_string(RECIPE).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut r = Runner::new(root);

    // The pull request's head: a repository whose commits are signed.
    let tree = root.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let mut repo = Repo::at(&tree);
    let gary = repo.key("gary", "ed25519", None);
    let erin = repo.key("erin", "ed25519", None);
    let gary_line = gary.line("gary@contoso.example", "namespaces=\"git\"");
    let erin_line = erin.line("erin@contoso.example", "namespaces=\"git\"");
    let policy = |f: &str| std::fs::read_to_string(format!("{EXAMPLE_POLICIES}/{f}")).unwrap();
    let example =
        |m: &str| std::fs::read_to_string(format!("{EXAMPLES}/manifests/{m}.yaml")).unwrap();
    repo.commit(
        &[
            ("policies/roles.yaml", &policy("roles.yaml")),
            ("policies/guardrails.yaml", &policy("guardrails.yaml")),
        ],
        Some(&gary),
        NOV_29,
    );
    let by_gary = repo.commit(
        &[(
            "manifests/offboarding-2026-11.yaml",
            &example("offboarding-2026-11"),
        )],
        Some(&gary),
        NOV_29 + 1,
    );
    let by_erin = repo.commit(
        &[(
            "manifests/stolen-laptop-carol.yaml",
            &example("stolen-laptop-carol"),
        )],
        Some(&erin),
        NOV_29 + 2,
    );
    production_store(&r, &recipe, &tree);

    r.signers_secret = format!("{gary_line}\n{erin_line}");
    let review = r.job(
        &recipe,
        "review-signed",
        &root.join("ws-review"),
        &tree,
        PR_HEAD,
    );
    assert!(!review.failed, "the review failed:\n{}", review.log);
    let reviewed = r.sim.join("uploads/mfactl-plan/plan.json");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reviewed).expect("the artifact")).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    assert!(changes.len() >= 5, "{plan:#}");
    for c in changes {
        let (who, commit) = if c["user"] == "carol@contoso.example" {
            ("erin@contoso.example", &by_erin)
        } else {
            ("gary@contoso.example", &by_gary)
        };
        assert_eq!(c["requested_by"]["user"], who, "{c:#}");
        assert_eq!(c["requested_by"]["commit"], commit.as_str(), "{c:#}");
    }
    assert_eq!(r.comments().len(), 2, "the plan comment was posted");
    r.record_run(101, "success", &reviewed);

    // The secret, rotated since the review: erin's key is gone. Nothing is applied.
    r.signers_secret = gary_line.clone();
    let refused = r.job(
        &recipe,
        "apply-signed",
        &root.join("ws-apply"),
        &tree,
        MERGE_SHA,
    );
    assert!(
        refused.failed,
        "applied without erin's key:\n{}",
        refused.log
    );
    assert!(
        refused
            .log
            .contains("== Apply exactly that plan: exit status: 4"),
        "{}",
        refused.log
    );
    let audit = mfactl(&r.prod, &["audit", "--format", "json"], root);
    assert_eq!(audit.stdout.trim(), "[]", "{}", refused.log);

    r.signers_secret = format!("{gary_line}\n{erin_line}");
    let apply = r.job(
        &recipe,
        "apply-signed",
        &root.join("ws-apply"),
        &tree,
        MERGE_SHA,
    );
    assert!(!apply.failed, "the apply failed:\n{}", apply.log);
    let audit: serde_json::Value =
        serde_json::from_str(&mfactl(&r.prod, &["audit", "--format", "json"], root).stdout)
            .unwrap();
    let records = audit.as_array().unwrap();
    assert_eq!(records.len(), changes.len());
    for rec in records {
        assert_eq!(rec["actor"], "mfactl-ci@contoso.example", "{rec:#}");
        assert_eq!(rec["plan_id"], plan["plan_id"], "{rec:#}");
        let who = if rec["user"] == "carol@contoso.example" {
            (&erin, &by_erin, "erin@contoso.example")
        } else {
            (&gary, &by_gary, "gary@contoso.example")
        };
        assert_eq!(
            rec["requested_by"],
            serde_json::json!({"user": who.2, "key": who.0.fingerprint, "commit": who.1}),
            "{rec:#}"
        );
    }

    // Erin asks to delete henry's app passwords: the pipeline's actor (a global administrator)
    // could; erin, an authentication administrator, may not, so the review fails and says why.
    repo.commit(
        &[(
            "manifests/henry.yaml",
            &manifest(
                "henry",
                "  - users: [henry@contoso.example]\n    app-passwords: none\n",
            ),
        )],
        Some(&erin),
        NOV_29 + 3,
    );
    let review = r.job(
        &recipe,
        "review-signed",
        &root.join("ws-review"),
        &tree,
        PR_HEAD,
    );
    assert!(review.failed, "the review passed:\n{}", review.log);
    let comments = r.comments();
    let ours = comments
        .iter()
        .find(|c| c.starts_with("<!-- mfactl-plan -->"))
        .unwrap();
    assert!(ours.contains("erin@contoso.example"), "{ours}");
    assert!(ours.contains("delete-app-passwords"), "{ours}");
}
