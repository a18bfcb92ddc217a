//! The CI recipe (examples/ci/github-workflow.yaml) runs as written: its own `run:` steps, in
//! order, with bash, against a local store, with stand-ins for what only GitHub has (the `gh`
//! CLI answers from files, `actions/checkout` and `actions/upload-artifact` copy directories,
//! and the runner's variables point into a temp dir). It was not safe: the apply job had no
//! checkout (so it took whatever policies/ the reused workspace held), pull-request jobs planned
//! on the production store, the reviewed plan was downloaded into the dirty workspace and looked
//! up without regard to the run's result.
//!
//! Its PostgreSQL variant (examples/ci/github-workflow-postgres.yaml, for GitHub-hosted runners)
//! runs the same way against a throwaway PostgreSQL server (tests/common/pg.rs): each job
//! installs mfactl with its own first step (a `curl` stand-in serves the release), the secrets
//! are the documented roles' URLs over `verify-full` TLS with the CA the checkout holds, and the
//! writer's secret reaches only the jobs of the `mfactl-production` environment, as on GitHub.

mod common;
use common::*;

use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The SQLite recipe, for self-hosted runners.
const SQLITE_RECIPE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/ci/github-workflow.yaml"
);
/// The PostgreSQL recipe, for GitHub-hosted runners.
const POSTGRES_RECIPE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/ci/github-workflow-postgres.yaml"
);
/// Where the PostgreSQL recipe's URLs find the database's CA certificate, in the checkout.
const CA_IN_TREE: &str = ".github/mfactl-db-ca.crt";
/// The environment whose secret is the writer's URL (and the only jobs that may name it).
const PRODUCTION: &str = "mfactl-production";
/// `vars.MFACTL_VERSION`, and the release URL the install step downloads.
const VERSION: &str = "v0.1.0-test";
const RELEASE_URL: &str =
    "https://github.com/contoso/mfactl/releases/download/v0.1.0-test/mfactl-x86_64-unknown-linux-gnu";
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

/// `curl`, as far as the install step uses it: the release of `$SIM_RELEASE_URL` is the mfactl
/// under test; any other URL is a 404 and any other flag an error.
const CURL: &str = r#"#!/usr/bin/env bash
set -euo pipefail
out=; url=
while [ $# -gt 0 ]; do
  case "$1" in
    -fsSL) shift;;
    -o) out=$2; shift 2;;
    -*) echo "curl stand-in: flag $1" >&2; exit 2;;
    *) url=$1; shift;;
  esac
done
[ -n "$out" ] || { echo "curl stand-in: no -o" >&2; exit 2; }
if [ "$url" != "$SIM_RELEASE_URL" ]; then
  echo "curl: (22) The requested URL returned error: 404 ($url)" >&2; exit 22
fi
cp "$SIM_RELEASE" "$out"
"#;

/// A job's outcome: whether it failed, and everything its steps printed.
struct JobRun {
    failed: bool,
    log: String,
    /// How many `run:` steps that invoke mfactl (a line starting with `mfactl `) ran.
    mfactl_steps: usize,
    /// The `MFACTL_STORE` each of those steps ran with.
    stores: Vec<String>,
}

/// The PostgreSQL recipe's store: the owner's URL (for the test's own setup and checks) and what
/// the secrets hold.
struct PgStore {
    owner: String,
    /// `${{ secrets.MFACTL_STORE_READER }}`, a repository secret.
    reader_secret: String,
    /// `${{ secrets.MFACTL_STORE_WRITER }}`, a secret of the environment `mfactl-production`
    /// only: empty in any other job, as GitHub gives a secret the job may not see.
    writer_secret: String,
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
    /// The PostgreSQL recipe's store; `None` for the SQLite recipe.
    pg: Option<PgStore>,
    /// `${{ vars.MFACTL_SHA256 }}`: the SHA-256 of the mfactl under test, unless a test says
    /// otherwise.
    sha256_var: String,
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
        let curl = bin.join("curl");
        std::fs::write(&curl, CURL).unwrap();
        std::fs::set_permissions(&curl, std::fs::Permissions::from_mode(0o755)).unwrap();
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
            pg: None,
            sha256_var: sha256_hex(Path::new(env!("CARGO_BIN_EXE_mfactl"))),
        }
    }

    /// A runner for the PostgreSQL recipe on `db`: the secrets are the documented roles' URLs,
    /// `verify-full` with the CA at `.github/mfactl-db-ca.crt` of the checkout (for the host
    /// `localhost`, which the harness's certificate names), and mfactl is not on `PATH` until a
    /// job installs it. On an external server (no CA of the harness's), the URLs as they are.
    fn postgres(root: &Path, db: &pg::Db) -> Runner {
        let tls = |url: String| match db.tls_root_cert() {
            Some(_) => format!(
                "{}?sslmode=verify-full&sslrootcert={CA_IN_TREE}",
                url.replace(&format!("@{}:", db.host()), "@localhost:")
            ),
            None => url,
        };
        let mut r = Runner::new(root);
        r.pg = Some(PgStore {
            owner: db.url(),
            reader_secret: tls(db.url_as(pg::READER)),
            writer_secret: tls(db.url_as(pg::WRITER)),
        });
        r
    }

    /// The production store as the test's own mfactl commands name it: the file, or the owner's
    /// URL.
    fn store(&self) -> std::ffi::OsString {
        match &self.pg {
            Some(pg) => pg.owner.clone().into(),
            None => self.prod.clone().into_os_string(),
        }
    }

    /// The environment the recipe's variables name, pointed into the temp dir (the SQLite
    /// recipe's paths; the PostgreSQL recipe's values are its expressions').
    fn local_value(&self, name: &str, value: &str) -> String {
        if self.pg.is_some() {
            return value.to_string();
        }
        match name {
            "MFACTL_STORE" => self.prod.display().to_string(),
            "MFACTL_SNAPSHOT" => self.snapshot.display().to_string(),
            _ => value.to_string(),
        }
    }

    /// The recipe's `${{ … }}` expressions this test knows, in a job of `environment`; any other
    /// is a test failure.
    fn expression(&self, text: &str, sha: &str, environment: Option<&str>) -> String {
        let mut out = text.to_string();
        for (expr, value) in [
            ("${{ github.token }}", "test-token"),
            ("${{ github.event.pull_request.number }}", PR),
            ("${{ github.sha }}", sha),
            (
                "${{ secrets.MFACTL_ALLOWED_SIGNERS }}",
                self.signers_secret.as_str(),
            ),
            ("${{ vars.MFACTL_VERSION }}", VERSION),
            ("${{ vars.MFACTL_SHA256 }}", self.sha256_var.as_str()),
        ] {
            out = out.replace(expr, value);
        }
        if let Some(pg) = &self.pg {
            let writer = if environment == Some(PRODUCTION) {
                pg.writer_secret.as_str()
            } else {
                ""
            };
            out = out
                .replace("${{ secrets.MFACTL_STORE_READER }}", &pg.reader_secret)
                .replace("${{ secrets.MFACTL_STORE_WRITER }}", writer);
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
        let environment = environment(job);
        let temp = self.root.join(format!("temp-{name}"));
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir_all(&temp).unwrap();
        std::fs::create_dir_all(workspace).unwrap();
        let github_env = temp.join("github_env");
        let github_path = temp.join("github_path");
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for scope in [&recipe["env"], &job["env"]] {
            if let Some(m) = scope.as_mapping() {
                for (k, v) in m {
                    let k = k.as_str().unwrap();
                    let v = self.expression(v.as_str().unwrap(), sha, environment);
                    env.insert(k.into(), self.local_value(k, &v));
                }
            }
        }
        // A self-hosted runner has mfactl on PATH; a GitHub-hosted one (the PostgreSQL recipe)
        // does not, until the job installs it.
        let system = std::env::var("PATH").unwrap_or_default();
        let path = if self.pg.is_some() {
            for dir in std::env::split_paths(&system) {
                assert!(
                    !dir.join("mfactl").exists(),
                    "an mfactl on this machine's PATH ({}): the install step would not run",
                    dir.display()
                );
            }
            format!("{}:{system}", self.root.join("bin").display())
        } else {
            let bin = Path::new(env!("CARGO_BIN_EXE_mfactl")).parent().unwrap();
            format!(
                "{}:{}:{system}",
                self.root.join("bin").display(),
                bin.display()
            )
        };
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
            ("SIM_RELEASE_URL", RELEASE_URL),
            ("SIM_RELEASE", env!("CARGO_BIN_EXE_mfactl")),
        ] {
            env.insert(k.into(), v.into());
        }
        let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut run = JobRun {
            failed: false,
            log: String::new(),
            mfactl_steps: 0,
            stores: Vec::new(),
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
                let invokes_mfactl = text.lines().any(|l| l.trim_start().starts_with("mfactl "));
                if invokes_mfactl {
                    run.mfactl_steps += 1;
                }
                let output_file = temp.join(format!("output-{i}"));
                std::fs::write(&output_file, "").unwrap();
                std::fs::write(&github_env, "").unwrap();
                std::fs::write(&github_path, "").unwrap();
                let script = temp.join(format!("step-{i}.sh"));
                std::fs::write(&script, &text).unwrap();
                let mut cmd = Command::new("bash");
                // GitHub's default for `run:` on Linux: `bash -e {0}`.
                cmd.arg("-e")
                    .arg(&script)
                    .current_dir(workspace)
                    .env_clear();
                cmd.envs(&env)
                    .env("GITHUB_OUTPUT", &output_file)
                    .env("GITHUB_PATH", &github_path);
                let mut store = env.get("MFACTL_STORE").cloned().unwrap_or_default();
                if let Some(m) = step["env"].as_mapping() {
                    for (k, v) in m {
                        let v = self.expression(v.as_str().unwrap(), sha, environment);
                        if k.as_str() == Some("MFACTL_STORE") {
                            store = v.clone();
                        }
                        cmd.env(k.as_str().unwrap(), v);
                    }
                }
                if invokes_mfactl {
                    run.stores.push(store);
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
                // Each line of $GITHUB_PATH goes in front of PATH for the steps after it.
                for dir in std::fs::read_to_string(&github_path).unwrap().lines() {
                    if !dir.is_empty() {
                        let path = format!("{dir}:{}", env["PATH"]);
                        env.insert("PATH".into(), path);
                    }
                }
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

/// A job's `environment:`, a name or `{name: …}`.
fn environment(job: &Value) -> Option<&str> {
    job["environment"]
        .as_str()
        .or_else(|| job["environment"]["name"].as_str())
}

fn sha256_hex(file: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(std::fs::read(file).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
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

fn mfactl(store: impl AsRef<std::ffi::OsStr>, args: &[&str], cwd: &Path) -> Out {
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

/// `mfactl init` on the production store, then the example directory and the pipeline's actor.
fn tenant(r: &Runner) {
    let root = r.root.as_path();
    let o = mfactl(r.store(), &["init"], root);
    assert_eq!(o.code, 0, "{}", o.all());
    let o = mfactl(
        r.store(),
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
        mfactl(r.store(), &["store", "import", "ci.yaml"], root).code,
        0
    );
}

/// The PostgreSQL recipe's production store: created by the owner (`init`, the tenant), then the
/// documented roles; and the database's CA in the checked-out tree, where the URLs look for it.
fn production_database(r: &Runner, db: &pg::Db, tree: &Path) {
    tenant(r);
    db.grant_roles();
    if let Some(ca) = db.tls_root_cert() {
        std::fs::create_dir_all(tree.join(".github")).unwrap();
        std::fs::copy(ca, tree.join(CA_IN_TREE)).unwrap();
    } else {
        eprintln!("note: an external PostgreSQL server, without the harness's CA: plain URLs");
    }
}

/// The recipe at `path`.
fn load(path: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The review's outputs, checked: one plan comment naming the plan id and carol, and a plan of
/// at least five changes. Returns the plan, its id and its (user, action) changes.
fn reviewed_plan(r: &Runner) -> (PathBuf, String, Vec<(String, String)>) {
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
    (reviewed, plan_id, changes)
}

/// A review run that succeeded with the reviewed plan, then a newer one of the same commit that
/// failed, with another plan in its artifact (only the successful run's plan may be applied);
/// and the apply runner's workspace, reused: an unmerged pull request's policies/ (one user per
/// apply at most) and a plan left over from another run. Returns that workspace.
fn runs_and_a_dirty_workspace(r: &Runner, reviewed: &Path, tree: &Path) -> PathBuf {
    let root = r.root.as_path();
    r.record_run(101, "success", reviewed);
    let other = root.join("other.json");
    let o = mfactl(
        r.store(),
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

    let ws = root.join("ws-apply");
    copy_tree(&tree.join("policies"), &ws.join("policies"));
    std::fs::write(
        ws.join("policies/guardrails.yaml"),
        "protected-users: []\nmax-users-per-apply: 1\nmax-future-skew: 5m\n",
    )
    .unwrap();
    std::fs::copy(&other, ws.join("plan.json")).unwrap();
    ws
}

/// Exactly the reviewed plan was applied: its id on every record, its changes and no other; and
/// nothing is left to do.
fn applied_exactly(r: &Runner, plan_id: &str, changes: &[(String, String)], tree: &Path) {
    let root = r.root.as_path();
    let audit: serde_json::Value =
        serde_json::from_str(&mfactl(r.store(), &["audit", "--format", "json"], root).stdout)
            .unwrap();
    let mut applied: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|rec| {
            assert_eq!(rec["plan_id"], plan_id, "{rec}");
            (
                rec["user"].as_str().unwrap().to_string(),
                rec["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    applied.sort();
    let mut wanted = changes.to_vec();
    wanted.sort();
    assert_eq!(applied, wanted);
    let o = mfactl(
        r.store(),
        &[
            "plan",
            tree.join("manifests").to_str().unwrap(),
            "--detailed-exitcode",
        ],
        root,
    );
    assert_eq!(o.code, 0, "nothing left to do: {}", o.all());
}

/// The production store (the example directory and the pipeline's actor), and the first snapshot,
/// published by the apply job's own step (as the recipe's header says to do once).
fn production_store(r: &Runner, recipe: &Value, tree: &Path) {
    let root = r.root.as_path();
    tenant(r);

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
    let recipe = load(SQLITE_RECIPE);
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
    let (reviewed, plan_id, changes) = reviewed_plan(&r);

    let ws = runs_and_a_dirty_workspace(&r, &reviewed, &tree);
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

    applied_exactly(&r, &plan_id, &changes, &tree);

    // The snapshot for the next review is the store as applied.
    assert_eq!(
        mfactl(&r.snapshot, &["store", "export"], root).stdout,
        mfactl(&r.prod, &["store", "export"], root).stdout
    );
}

/// The PostgreSQL recipe run as written, on GitHub-hosted runners without mfactl: each job
/// installs the pinned release (a wrong digest stops the job before any mfactl runs); the review
/// plans as the read-only role, over verify-full TLS with the CA of the checkout, and writes
/// nothing; an apply job whose writer secret holds the reader's URL fails and changes nothing;
/// the apply job applies, as the writer, exactly the reviewed plan (every audit record carries
/// its id), in a dirty workspace with a newer failed review run.
#[test]
fn the_postgres_recipe_reviews_as_the_reader_and_applies_the_reviewed_plan_as_the_writer() {
    if !have("jq") {
        eprintln!("skipped: the recipe needs jq on PATH, and so does this test");
        return;
    }
    let Some(db) = pg::database() else { return };
    let recipe = load(POSTGRES_RECIPE);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut r = Runner::postgres(root, &db);
    let tree = pr_tree(root);
    production_database(&r, &db, &tree);
    let (reader, writer) = {
        let pg = r.pg.as_ref().unwrap();
        (pg.reader_secret.clone(), pg.writer_secret.clone())
    };
    assert!(reader.contains(&format!("{}:", pg::READER)), "{reader}");
    assert!(writer.contains(&format!("{}:", pg::WRITER)), "{writer}");
    let owner = r.store();
    let export = || {
        let o = mfactl(&owner, &["store", "export"], root);
        assert_eq!(o.code, 0, "{}", o.all());
        o.stdout
    };
    let audit = || mfactl(&owner, &["audit", "--format", "json"], root).stdout;
    let installed = root.join(".local/bin/mfactl");
    let before = export();

    // A release that is not the pinned one never runs: the job stops at its first step.
    r.sha256_var = "0".repeat(64);
    let bad = r.job(&recipe, "review", &root.join("ws-review"), &tree, PR_HEAD);
    assert!(bad.failed, "a release of another digest ran:\n{}", bad.log);
    assert!(
        bad.log.contains("== Install mfactl: exit status: 1"),
        "{}",
        bad.log
    );
    assert_eq!(bad.mfactl_steps, 0, "{}", bad.log);
    assert!(!installed.exists());
    r.sha256_var = sha256_hex(Path::new(env!("CARGO_BIN_EXE_mfactl")));

    // The review: installs mfactl, plans as the reader, writes nothing.
    let review = r.job(&recipe, "review", &root.join("ws-review"), &tree, PR_HEAD);
    assert!(!review.failed, "the review job failed:\n{}", review.log);
    assert!(installed.exists(), "the install step installed nothing");
    assert!(review.mfactl_steps >= 2, "{}", review.log);
    assert_eq!(
        review.stores,
        vec![reader.clone(); review.mfactl_steps],
        "every mfactl step of the review runs as the reader"
    );
    assert_eq!(audit().trim(), "[]", "the review wrote the audit log");
    assert_eq!(export(), before, "the review changed the store");
    let (reviewed, plan_id, changes) = reviewed_plan(&r);
    let ws = runs_and_a_dirty_workspace(&r, &reviewed, &tree);
    let before = export();

    // The apply job with the reader's URL in the writer's secret: refused, nothing changed.
    r.pg.as_mut().unwrap().writer_secret = reader.clone();
    let refused = r.job(&recipe, "apply", &root.join("ws-refused"), &tree, MERGE_SHA);
    r.pg.as_mut().unwrap().writer_secret = writer.clone();
    assert!(refused.failed, "applied as the reader:\n{}", refused.log);
    assert!(
        refused
            .log
            .contains("== Apply exactly that plan: exit status: 1"),
        "{}",
        refused.log
    );
    assert!(refused.log.contains("read-only"), "{}", refused.log);
    assert_eq!(audit().trim(), "[]", "{}", refused.log);
    assert_eq!(export(), before, "the reader changed the store");
    assert!(!root.join("temp-apply/credentials.tsv").exists());

    // The apply job, as the writer, in the dirty workspace.
    let apply = r.job(&recipe, "apply", &ws, &tree, MERGE_SHA);
    assert!(!apply.failed, "the apply job failed:\n{}", apply.log);
    assert!(apply.mfactl_steps >= 1, "{}", apply.log);
    assert_eq!(
        apply.stores,
        vec![writer.clone(); apply.mfactl_steps],
        "every mfactl step of the apply runs as the writer"
    );
    assert!(
        apply.log.contains("1 temporary passwords issued"),
        "carol's reset went to the credentials file, then away:\n{}",
        apply.log
    );
    assert!(!root.join("temp-apply/credentials.tsv").exists());
    applied_exactly(&r, &plan_id, &changes, &tree);
    // The log the writer appended holds together, as the reader sees it.
    let o = mfactl(&reader, &["audit", "verify"], &ws);
    assert_eq!(o.code, 0, "{}", o.all());
}

/// Where `job`'s checkout is: first on the SQLite recipe's self-hosted runners; second on the
/// PostgreSQL recipe's GitHub-hosted ones, after the step that installs mfactl, a pinned release
/// checked against its digest and put on `PATH` for the steps after it.
fn checkout_index(path: &str, job: &Value) -> usize {
    if path == SQLITE_RECIPE {
        return 0;
    }
    let install = &job["steps"][0];
    assert_eq!(install["name"].as_str(), Some("Install mfactl"), "{job:?}");
    let text = install["run"].as_str().unwrap();
    for part in [
        "releases/download/$MFACTL_VERSION/",
        "echo \"$MFACTL_SHA256  $RUNNER_TEMP/mfactl\" | sha256sum -c",
        ">> \"$GITHUB_PATH\"",
    ] {
        assert!(text.contains(part), "{part} in:\n{text}");
    }
    1
}

/// The apply step of the recipe at `path` names its policies and pins the plan id, after a
/// checkout of main; the recipe explains its security.
fn apply_job_checks(path: &str) -> Value {
    let recipe = load(path);
    let steps = recipe["jobs"]["apply"]["steps"].as_sequence().unwrap();
    assert_eq!(
        steps[checkout_index(path, &recipe["jobs"]["apply"])]["uses"].as_str(),
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
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains("# Security\n"),
        "the recipe explains its security"
    );
    recipe
}

/// The apply step names its policies; a leftover ./policies must never decide.
#[test]
fn the_ci_recipe_applies_with_explicit_policies_and_a_pinned_plan_id() {
    let recipe = apply_job_checks(SQLITE_RECIPE);
    // The production store is named only where the apply job runs.
    assert!(recipe["env"]["MFACTL_STORE"].is_null());
    assert!(recipe["jobs"]["review"]["env"]["MFACTL_STORE"].is_null());
}

/// The PostgreSQL recipe: its apply step as the SQLite one's; every job installs mfactl first; the
/// jobs that apply, and only they, are in the environment `mfactl-production` and name the
/// writer's secret as their store (the secret's only scope); every other job names the reader's.
/// No step chooses another store.
#[test]
fn the_postgres_recipe_names_the_writer_only_in_the_production_environment() {
    let recipe = apply_job_checks(POSTGRES_RECIPE);
    let reader = "${{ secrets.MFACTL_STORE_READER }}";
    let writer = "${{ secrets.MFACTL_STORE_WRITER }}";
    assert!(recipe["env"]["MFACTL_STORE"].is_null());
    let workflow_env = serde_yaml::to_string(&recipe["env"]).unwrap();
    assert!(!workflow_env.contains("secrets."), "{workflow_env}");
    let mut applying = Vec::new();
    for (name, job) in recipe["jobs"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let steps = job["steps"].as_sequence().unwrap();
        checkout_index(POSTGRES_RECIPE, job);
        let applies = steps.iter().filter_map(|s| s["run"].as_str()).any(|t| {
            t.lines()
                .any(|l| l.trim_start().starts_with("mfactl apply "))
        });
        let text = serde_yaml::to_string(job).unwrap();
        if applies {
            applying.push(name);
            assert_eq!(environment(job), Some(PRODUCTION), "{name}");
            assert_eq!(job["env"]["MFACTL_STORE"].as_str(), Some(writer), "{name}");
            assert!(!text.contains("MFACTL_STORE_READER"), "{name}: {text}");
        } else {
            assert_eq!(
                environment(job),
                None,
                "{name}: only applying jobs are in {PRODUCTION}"
            );
            assert_eq!(job["env"]["MFACTL_STORE"].as_str(), Some(reader), "{name}");
        }
        if text.contains("MFACTL_STORE_WRITER") {
            assert_eq!(environment(job), Some(PRODUCTION), "{name}: {text}");
        }
        for step in steps {
            let step = serde_yaml::to_string(step).unwrap();
            assert!(
                !step.contains("MFACTL_STORE"),
                "{name}: a step chooses the store: {step}"
            );
        }
    }
    assert_eq!(applying, ["apply", "apply-signed"]);
}

/// The `--signers` variant (docs/signing.md): its two jobs run exactly when the plain ones do
/// not, check out full history, write the signers file from a secret into $RUNNER_TEMP (never
/// the workspace), and pass it to every plan and apply; otherwise they are their plain twins.
#[test]
fn the_signed_variant_reads_full_history_and_its_signers_from_a_secret() {
    signed_variant_checks(SQLITE_RECIPE);
    // The secret is read by those steps only.
    let raw = std::fs::read_to_string(SQLITE_RECIPE).unwrap();
    assert_eq!(raw.matches("secrets.").count(), 2, "{raw}");
}

/// The same of the PostgreSQL recipe, whose only other secrets are the store URLs of the four
/// jobs' `env:`.
#[test]
fn the_postgres_signed_variant_reads_full_history_and_its_signers_from_a_secret() {
    signed_variant_checks(POSTGRES_RECIPE);
    let raw = std::fs::read_to_string(POSTGRES_RECIPE).unwrap();
    assert_eq!(
        raw.matches("${{ secrets.MFACTL_ALLOWED_SIGNERS }}").count(),
        2,
        "{raw}"
    );
    assert_eq!(raw.matches("${{ secrets.").count(), 2 + 4, "{raw}");
}

fn signed_variant_checks(path: &str) {
    let recipe = load(path);
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
        for key in ["environment", "concurrency"] {
            assert_eq!(jobs[signed][key], jobs[plain][key], "{signed}: {key}");
        }
        let steps = jobs[signed]["steps"].as_sequence().unwrap();
        let checkout = &steps[checkout_index(path, &jobs[signed])];
        assert_eq!(checkout["uses"].as_str(), Some("actions/checkout@v4"));
        assert_eq!(
            checkout["with"]["fetch-depth"].as_u64(),
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
        review[checkout_index(path, &jobs["review-signed"])]["with"]["ref"].as_str(),
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
    if !(have("jq") && have("sqlite3") && common::git::tools()) {
        eprintln!("skipped: needs jq, sqlite3, git and ssh-keygen on PATH");
        return;
    }
    signed_recipe(None);
}

/// The same with the PostgreSQL recipe: the review as the reader, the applies as the writer.
#[test]
fn the_postgres_signed_recipe_decides_by_whoever_signed_each_manifest() {
    if !(have("jq") && common::git::tools()) {
        eprintln!("skipped: needs jq, git and ssh-keygen on PATH");
        return;
    }
    let Some(db) = pg::database() else { return };
    signed_recipe(Some(&db));
}

/// The signed jobs of the SQLite recipe, or with `db` of the PostgreSQL one.
fn signed_recipe(db: Option<&pg::Db>) {
    use common::git::{Repo, NOV_29};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (recipe, mut r) = match db {
        None => (load(SQLITE_RECIPE), Runner::new(root)),
        Some(db) => (load(POSTGRES_RECIPE), Runner::postgres(root, db)),
    };

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
    match db {
        None => production_store(&r, &recipe, &tree),
        Some(db) => production_database(&r, db, &tree),
    }

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
    let audit = mfactl(r.store(), &["audit", "--format", "json"], root);
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
        serde_json::from_str(&mfactl(r.store(), &["audit", "--format", "json"], root).stdout)
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
