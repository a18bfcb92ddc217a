//! Shared helpers for the end-to-end tests: a temp directory with a real store, and the real
//! `mfactl` binary run in it with a fixed clock.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Real git repositories, SSH keys and signed commits (for `--signers` and `mfactl::git`).
pub mod git;
pub mod pg;
/// `mfactl watch` replicas on a PostgreSQL store.
pub mod replica;

/// The clock every test runs at (MFACTL_NOW); the example tenant's dates lie before it.
pub const NOW: &str = "2026-11-30T12:00:00Z";
pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
/// Guardrails that protect nobody, for tests that change any user.
pub const OPEN_GUARDRAILS: &str =
    "protected-users: []\nmax-users-per-apply: 500\nmax-future-skew: 5m\n";
/// The repository's example policies: the built-in role table, and guardrails that protect the
/// example tenant's break-glass account (the built-in guardrails protect nobody).
pub const EXAMPLE_POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Env {
    /// A temp dir with an initialised store holding `examples/directory.yaml`.
    pub fn example() -> Env {
        let env = Env::bare();
        env.ok(&["init"]);
        env.ok(&["store", "import", &format!("{EXAMPLES}/directory.yaml")]);
        env
    }

    /// A temp dir with an empty store.
    pub fn empty() -> Env {
        let env = Env::bare();
        env.ok(&["init"]);
        env
    }

    /// A temp dir and no store at all.
    pub fn bare() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("mfactl.db");
        Env { dir, store }
    }

    /// Copies the repository's example policies into `./policies`, where every command finds them.
    pub fn use_example_policies(&self) {
        for f in ["roles.yaml", "guardrails.yaml"] {
            let text = std::fs::read_to_string(Path::new(EXAMPLE_POLICIES).join(f)).unwrap();
            self.write(&format!("policies/{f}"), &text);
        }
    }

    /// The repository's roles and guardrails that protect nobody (at most 500 users an apply),
    /// in `./policies`.
    pub fn use_open_policies(&self) {
        let roles =
            std::fs::read_to_string(Path::new(EXAMPLE_POLICIES).join("roles.yaml")).unwrap();
        self.write("policies/roles.yaml", &roles);
        self.write("policies/guardrails.yaml", OPEN_GUARDRAILS);
    }

    /// `m/off.yaml`: bob and dave offboarded (sessions revoked, app passwords gone) and bob's
    /// password reset.
    pub fn offboard(&self) {
        self.write(
            "m/off.yaml",
            &manifest(
                "off",
                "  - users: [bob@contoso.example, dave@contoso.example]\n    \
                 revoke-sessions-before: 2026-11-27T09:00:00Z\n    app-passwords: none\n  \
                 - users: [bob@contoso.example]\n    reset-password-before: 2026-11-27T09:00:00Z\n",
            ),
        );
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mfactl"));
        c.current_dir(self.dir.path())
            .env("MFACTL_STORE", &self.store)
            .env("MFACTL_NOW", NOW)
            .env("NO_COLOR", "1")
            .env_remove("MFACTL_ACTOR")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let o: Output = c.output().expect("run mfactl");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs and asserts exit 0.
    pub fn ok(&self, args: &[&str]) -> Out {
        let o = self.run(args);
        assert_eq!(o.code, 0, "mfactl {args:?} failed:\n{}", o.all());
        o
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `mfactl store export`.
    pub fn export(&self) -> String {
        self.ok(&["store", "export"]).stdout
    }

    /// Imports a directory document given as YAML text.
    pub fn import(&self, yaml: &str) {
        let p = self.write("import.yaml", yaml);
        self.ok(&["store", "import", p.to_str().unwrap()]);
    }

    /// `mfactl show USER` parsed as YAML.
    pub fn show(&self, user: &str) -> serde_yaml::Value {
        serde_yaml::from_str(&self.ok(&["show", user]).stdout).unwrap()
    }

    pub fn exists(&self, rel: &str) -> bool {
        Path::new(&self.path(rel)).exists()
    }
}

/// A manifest document named `name` with the given `spec` entries (YAML, indented by two).
pub fn manifest(name: &str, spec: &str) -> String {
    format!("apiVersion: mfactl/v1\nkind: UserSettings\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// A one-user directory document, for `store import`; `extra` is appended to the user's record.
pub fn user_yaml(id: &str, roles: &[&str], groups: &[&str], extra: &str) -> String {
    format!(
        "users:\n  - id: {id}\n    display-name: T\n    enabled: true\n    roles: [{}]\n    groups: [{}]\n{extra}",
        roles.join(", "),
        groups.join(", ")
    )
}

/// The password hash the store holds for `key` (the record is opaque to SQL, so this reads it
/// the way mfactl does).
#[allow(dead_code)]
pub fn stored_password_hash(store: &Path, key: &str) -> Option<String> {
    let st = mfactl::store::Store::open(store, std::time::Duration::from_secs(5)).unwrap();
    mfactl::store::password_hash(st.conn(), key).unwrap()
}
