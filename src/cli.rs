//! The command line (see docs/commands.md), parsed by clap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "mfactl", version, about = "Manage per-user MFA settings the GitOps way", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The store: a SQLite file, or a postgres:// URL [default: $MFACTL_STORE, else ./mfactl.db]
    #[arg(
        long,
        global = true,
        env = "MFACTL_STORE",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    pub store: Option<PathBuf>,
    /// Directory with roles.yaml and guardrails.yaml [default: ./policies if present, else built-in]
    #[arg(long, global = true, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// The acting administrator; their roles are read from the store
    #[arg(long, global = true, env = "MFACTL_ACTOR", value_name = "ID")]
    pub actor: Option<String>,
    /// Never colour output (also: NO_COLOR)
    #[arg(long, global = true)]
    pub no_color: bool,
    /// How long to wait for another mfactl's write lock on the store
    #[arg(long, global = true, default_value = "10s", value_name = "DURATION")]
    pub lock_timeout: String,
    /// Print only data and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more about what is read and why
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the store, or migrate an older one (a no-op on a current store)
    Init {
        /// Also import the built-in demo directory (examples/directory.yaml)
        #[arg(long)]
        demo: bool,
    },
    /// The walkthrough: a fresh ./demo.db, a plan, a refused and a successful apply, the empty plan
    Demo,
    /// Check manifests without planning
    Validate {
        /// Manifest files or directories [default: ./manifests]
        paths: Vec<PathBuf>,
        /// Skip the checks that need the store (unknown users and groups)
        #[arg(long)]
        offline: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: ValidateFormat,
    },
    /// Show the changes that apply would make
    Plan {
        /// Manifest files or directories [default: ./manifests]
        paths: Vec<PathBuf>,
        /// Exit 2 when changes are pending, 3 when any is denied, 0 when none
        #[arg(long)]
        detailed_exitcode: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
        /// Also save the plan (JSON with per-user fingerprints) for `apply --plan`
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Add a per-user unified diff of the actual state against the state after apply
        #[arg(long)]
        diff: bool,
        /// Bind each change to the signer of the commit that last changed its manifest: an
        /// OpenSSH allowed-signers file (git's gpg.ssh.allowedSignersFile) kept outside the branch
        /// under review; the signers' roles decide, and --actor is only recorded
        #[arg(long, value_name = "FILE")]
        signers: Option<PathBuf>,
    },
    /// Apply the manifests to the store, in one transaction
    ///
    /// SIGINT or SIGTERM before the commit rolls the apply back; mfactl then dies of that signal
    /// (a shell reports 130 or 143), as it does when the signal comes earlier. After the commit,
    /// the apply finishes.
    Apply {
        /// Manifest files or directories [default: ./manifests]
        #[arg(conflicts_with = "plan")]
        paths: Vec<PathBuf>,
        /// Apply exactly this saved plan (from `plan --out`), if every user it touches is unchanged
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// Refuse the saved plan unless its plan id is this one (the id shown in review)
        #[arg(long, value_name = "ID", requires = "plan")]
        expect_plan_id: Option<String>,
        /// Do not ask for confirmation (required when stdin is not a terminal)
        #[arg(long)]
        auto_approve: bool,
        /// Allow changing more users than guardrails.yaml's max-users-per-apply
        #[arg(long)]
        allow_large: bool,
        /// New file (mode 0600) for the temporary passwords of reset-password; it appears only
        /// once the apply has committed (until then they wait in FILE.uncommitted-PLAN_ID, which
        /// the next apply to FILE hands over or deletes)
        #[arg(long, value_name = "FILE")]
        credentials_out: Option<PathBuf>,
        /// Apply even though the audit chain is broken; the acceptance is recorded in the chain
        #[arg(long)]
        accept_broken_audit: bool,
        /// Bind each change to the signer of the commit that last changed its manifest: an
        /// OpenSSH allowed-signers file (git's gpg.ssh.allowedSignersFile) kept outside the branch
        /// under review; the signers' roles decide, and --actor is only recorded
        #[arg(long, value_name = "FILE")]
        signers: Option<PathBuf>,
    },
    /// The roles and guardrails in force, and where they came from (built-in, ./policies, --policies)
    Policies {
        #[arg(long, value_enum, default_value = "text")]
        format: PoliciesFormat,
    },
    /// Print the manifest JSON Schema (draft 2020-12)
    Schema,
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// One user's actual state, as YAML
    Show { user: String },
    /// The audit log (`mfactl audit verify` checks its hash chain)
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        verify: Option<AuditCommand>,
        /// Only records for this user
        #[arg(long)]
        user: Option<String>,
        /// Only records at or after this time (RFC 3339 or YYYY-MM-DD)
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: AuditFormat,
    },
    /// Import or export the directory
    #[command(subcommand)]
    Store(StoreCommand),
    /// The daemon: reconcile on every manifest change and every --interval, until SIGTERM
    Watch {
        /// Manifest files or directories [default: ./manifests]
        paths: Vec<PathBuf>,
        /// How often to reconcile without a file change, to correct drift made outside git
        #[arg(long, default_value = "5m", value_name = "DURATION")]
        interval: String,
        /// Reconcile once and exit with apply's code (0, 1, 3 or 4)
        #[arg(long, conflicts_with = "metrics_addr")]
        once: bool,
        /// Plan and report drift (one `drift` line per user); never apply
        #[arg(long)]
        detect_only: bool,
        /// Directory for the temporary passwords of reset-password: a new 0600 file per reconcile
        #[arg(long, value_name = "DIR", conflicts_with = "detect_only")]
        credentials_dir: Option<PathBuf>,
        /// Serve GET /healthz and GET /metrics (Prometheus) on this address, e.g. 127.0.0.1:9464
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Bind each change to the signer of the commit that last changed its manifest: an
        /// OpenSSH allowed-signers file (git's gpg.ssh.allowedSignersFile) kept outside the branch
        /// under review; the signers' roles decide, and --actor is only recorded
        #[arg(long, value_name = "FILE")]
        signers: Option<PathBuf>,
        /// With replicas on a PostgreSQL store: how long a leader that stops renewing keeps the
        /// lead before a standby takes over (between 1s and 1h)
        #[arg(long, default_value = "15s", value_name = "DURATION")]
        lease: String,
        /// This replica's name in the lease, the logs and the fences [default: HOST:PID]
        #[arg(long, value_name = "ID")]
        replica_id: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk the hash chain; exit 1 naming the first record edited, deleted, inserted or reordered
    Verify,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Upsert users and groups from a directory file (each listed user replaced as a whole)
    Import {
        /// The directory file; `-` reads standard input
        file: PathBuf,
        /// The file's format [default: jsonl for .jsonl and .ndjson files, else yaml]
        #[arg(long, value_enum)]
        format: Option<DirectoryFormat>,
    },
    /// Print the whole directory (no secrets)
    Export {
        #[arg(long, value_enum, default_value = "yaml")]
        format: DirectoryFormat,
    },
    /// Copy the whole store (directory, password hashes, audit chain, revision, applied plan
    /// ids) into DEST, a new or empty store of either kind: a file path or a postgres:// URL
    Copy {
        /// The destination store: a SQLite file path or a postgres:// URL
        dest: PathBuf,
    },
}

/// The directory format: YAML for people, JSON Lines for bulk.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryFormat {
    Yaml,
    Jsonl,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidateFormat {
    Text,
    Json,
    Github,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoliciesFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFormat {
    Text,
    Json,
}
