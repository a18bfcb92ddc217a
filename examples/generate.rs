//! A synthetic tenant for the scale benchmark (`cargo bench --bench scale`) and its test.
//!
//! ```sh
//! cargo run --release --example generate -- --users 1000000 --declared 100000 --out /tmp/t
//! ```
//!
//! writes `DIR/store.db` (N users, each with 2 methods, 2 sessions, 1 trusted device and 1 app
//! password; about 5% hold a directory role or sit in the role-assignable group `privileged-ops`;
//! groups of different sizes) through the store module's own import, in chunks of
//! [`CHUNK`] users per transaction, and `DIR/manifests/`:
//!
//! - `declared/`: M users named explicitly, spread over the whole directory, across several files
//!   (lists of up to 1,000 users per entry, one file of one-user entries, 5% of the users named
//!   twice with different timestamps, a few password resets), using every setting;
//! - `groups/`: `group:` selectors on two groups whose size does not grow with N (`contractors`,
//!   about 1,000 members, with `except:`; `finance`, about 200);
//! - `all-users/`: one `all-users: true` manifest.
//!
//! Everything is a pure function of `--seed` (default 1), N and M, so two runs write the same
//! bytes. `--manifests-only` skips the store (the store depends on N and the seed, not on M);
//! `--directory-yaml` also writes the N users as `DIR/directory.yaml` in the `store import` format.
//! Plans are meant to be made at [`NOW`] (`MFACTL_NOW`) by [`ADMIN`], a global administrator.
#![allow(dead_code)]

use mfactl::model::{AppPassword, Device, Directory, Group, Method, Session, Timestamp, User};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The clock the manifests are written for: every timestamp in them lies before it.
pub const NOW: &str = "2026-11-30T12:00:00Z";
/// User 0: holds `global-administrator`, so it may apply every change.
pub const ADMIN: &str = "admin@contoso.example";
/// User 1: the protected user (break-glass account) of the repository's example policies.
pub const BREAKGLASS: &str = "breakglass@contoso.example";
/// Users per import transaction when writing the store.
pub const CHUNK: usize = 20_000;

/// The cutoff of the incident the manifests react to.
pub const INCIDENT: &str = "2026-11-27T09:00:00Z";

#[derive(Debug, Clone)]
pub struct Options {
    pub users: usize,
    pub declared: usize,
    pub out: PathBuf,
    pub seed: u64,
    pub manifests_only: bool,
    pub directory_yaml: bool,
}

/// What was written, for the caller to check plans against.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// Ids of the users the `declared/` manifests name, sorted by key.
    pub declared: Vec<String>,
    /// Ids of the members of `contractors` and `finance` that the `groups/` manifests select.
    pub group_selected: Vec<String>,
    /// Declared users whose password the manifests reset.
    pub resets: Vec<String>,
    pub manifest_files: Vec<PathBuf>,
}

/// The id of user `i`.
pub fn user_id(i: usize) -> String {
    match i {
        0 => ADMIN.to_string(),
        1 => BREAKGLASS.to_string(),
        _ => format!("u{i:07}@contoso.example"),
    }
}

/// SplitMix64: a tiny, well-mixed PRNG; `mix(seed, i, salt)` gives every user its own stream.
fn mix(seed: u64, i: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).expect("a valid built-in timestamp")
}

/// A time in `[from, to)` drawn from `r`.
fn between(r: u64, from: &str, to: &str) -> Timestamp {
    let (a, b) = (ts(from).unix(), ts(to).unix());
    Timestamp::from_unix(a + (r % (b - a) as u64) as i64)
}

const ROLES: &[&str] = &[
    "reports-reader",
    "directory-readers",
    "helpdesk-administrator",
    "authentication-administrator",
    "password-administrator",
    "message-center-reader",
    "global-administrator",
];

/// Every `contractors_stride`-th user is a contractor, so the group has about 1,000 members
/// whatever N is; `finance` likewise about 200.
fn strides(n: usize) -> (usize, usize) {
    ((n / 1000).max(1), (n / 200).max(1))
}

/// User `i` of a tenant of `n` users.
pub fn user(seed: u64, n: usize, i: usize) -> User {
    let r = |salt| mix(seed, i as u64, salt);
    let (cs, fs) = strides(n);
    let mut groups = Vec::new();
    if r(1) % 100 < 90 {
        groups.push("staff".to_string());
    }
    if r(2) % 100 < 20 {
        groups.push("engineering".to_string());
    }
    if i >= 2 && i % cs == cs / 2 {
        groups.push("contractors".to_string());
    }
    if i >= 2 && i % fs == 1 {
        groups.push("finance".to_string());
    }
    if r(3) % 1000 < 20 {
        groups.push("privileged-ops".to_string());
    }
    let mut roles = Vec::new();
    if i <= 1 {
        roles.push("global-administrator".to_string());
    } else if r(4) % 1000 < 30 {
        roles.push(ROLES[(r(5) % ROLES.len() as u64) as usize].to_string());
    }
    let hex = |salt| format!("{:08x}", r(salt) as u32);
    let id = user_id(i);
    User {
        display_name: format!("User {i:07}"),
        enabled: r(6) % 100 < 98,
        roles,
        groups,
        password_set_at: Some(between(r(7), "2025-01-01", "2026-11-01")),
        must_change_password: false,
        registration_valid_from: None,
        sessions_valid_from: (r(8) % 10 == 0).then(|| ts("2026-09-01")),
        devices_valid_from: None,
        methods: vec![
            Method {
                id: format!("m-{}", hex(10)),
                kind: "authenticator-app".into(),
                registered_at: between(r(11), "2024-06-01", "2026-11-25"),
            },
            Method {
                id: format!("m-{}", hex(12)),
                kind: if r(13) % 2 == 0 { "sms" } else { "fido2" }.into(),
                registered_at: between(r(14), "2024-06-01", "2026-11-25"),
            },
        ],
        sessions: vec![
            Session {
                id: format!("s-{}", hex(20)),
                issued_at: between(r(21), "2026-10-01", "2026-11-29"),
            },
            Session {
                id: format!("s-{}", hex(22)),
                issued_at: between(r(23), "2026-10-01", "2026-11-29"),
            },
        ],
        trusted_devices: vec![Device {
            id: format!("d-{}", hex(30)),
            name: format!("laptop-{i}"),
            remembered_at: between(r(31), "2026-06-01", "2026-11-29"),
        }],
        app_passwords: vec![AppPassword {
            id: format!("a-{}", hex(40)),
            name: "imap".into(),
            created_at: between(r(41), "2024-01-01", "2026-10-01"),
        }],
        id,
    }
}

pub fn groups() -> Vec<Group> {
    let g = |name: &str, ra| Group {
        name: name.into(),
        role_assignable: ra,
    };
    vec![
        g("contractors", false),
        g("engineering", false),
        g("finance", false),
        g("privileged-ops", true),
        g("staff", false),
    ]
}

/// The indices of the M declared users: one per stride, at a random offset within it, so they
/// are spread over the whole key space. Never the admin or the protected user, so M is capped at
/// N - 2 (`--declared 100000 --users 100000` names 99,998).
fn declared(seed: u64, n: usize, m: usize) -> Vec<usize> {
    let avail = n.saturating_sub(2);
    let stride = (avail / m.max(1)).max(1);
    (0..m.min(avail))
        .map(|k| 2 + k * stride + (mix(seed, k as u64, 99) % stride as u64) as usize)
        .collect()
}

fn header(name: &str, description: &str) -> String {
    format!(
        "# Generated by `cargo run --example generate`.\napiVersion: mfactl/v1\nkind: UserSettings\n\
         metadata:\n  name: {name}\n  description: {description}\nspec:\n"
    )
}

fn users_entry(out: &mut String, ids: &[String], settings: &[(&str, &str)]) {
    out.push_str("  - users:\n");
    for id in ids {
        let _ = writeln!(out, "      - {id}");
    }
    for (k, v) in settings {
        let _ = writeln!(out, "    {k}: {v}");
    }
}

/// The settings of declared file `f`: between them they use every setting.
fn file_settings(f: usize) -> Vec<(&'static str, &'static str)> {
    match f % 4 {
        0 => vec![
            ("revoke-sessions-before", INCIDENT),
            ("revoke-trusted-devices-before", INCIDENT),
        ],
        1 => vec![
            ("require-reregistration", "2026-11-01T00:00:00Z"),
            ("revoke-sessions-before", INCIDENT),
        ],
        2 => vec![
            ("app-passwords", "none"),
            ("revoke-sessions-before", "2026-11-20"),
        ],
        _ => vec![
            ("revoke-trusted-devices-before", "2026-11-25"),
            ("require-reregistration", "2026-06-01"),
        ],
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the manifests of `o` under `o.out/manifests/`.
pub fn write_manifests(o: &Options) -> Result<Generated, String> {
    let (seed, n, m) = (o.seed, o.users, o.declared);
    let dir = o.out.join("manifests");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let idx = declared(seed, n, m);
    let ids: Vec<String> = idx.iter().map(|&i| user_id(i)).collect();
    let mut gen = Generated::default();
    // Declared users go to `files` files in contiguous runs; the last file, when there are
    // several, names each user in an entry of its own.
    let files = (m / 12_500).clamp(1, 8);
    let per_file = ids.len().div_ceil(files);
    for (f, chunk) in ids.chunks(per_file.max(1)).enumerate() {
        let name = format!("team-{f:02}");
        let mut text = header(&name, "Incident response for one team (generated)");
        let settings = file_settings(f);
        if files > 1 && f == files - 1 {
            for id in chunk {
                users_entry(&mut text, std::slice::from_ref(id), &settings);
            }
        } else {
            for entry in chunk.chunks(1000) {
                users_entry(&mut text, entry, &settings);
            }
        }
        let path = dir.join("declared").join(format!("{name}.yaml"));
        write(&path, &text)?;
        gen.manifest_files.push(path);
    }
    // 5% of the declared users again, with a later session cutoff: the merge keeps the later one.
    let twice: Vec<String> = ids.iter().step_by(20).cloned().collect();
    let mut text = header(
        "overlap",
        "Users named twice, with a later cutoff (generated)",
    );
    for entry in twice.chunks(1000) {
        users_entry(
            &mut text,
            entry,
            &[("revoke-sessions-before", "2026-11-28T00:00:00Z")],
        );
    }
    let path = dir.join("declared").join("overlap.yaml");
    write(&path, &text)?;
    gen.manifest_files.push(path);
    // A few password resets: one per 5,000 declared users, at most 20 (each costs an argon2
    // hash of about 30 ms at apply time, by design).
    let n_resets = (m / 5000).clamp(1, 20);
    let resets: Vec<String> = ids
        .iter()
        .step_by((ids.len() / n_resets).max(1))
        .take(n_resets)
        .cloned()
        .collect();
    let mut text = header("resets", "Temporary passwords for a few users (generated)");
    users_entry(
        &mut text,
        &resets,
        &[("reset-password-before", "2026-11-30T00:00:00Z")],
    );
    let path = dir.join("declared").join("resets.yaml");
    write(&path, &text)?;
    gen.manifest_files.push(path);
    gen.resets = resets;

    // Group selectors on the two groups whose size does not grow with N.
    let (cs, fs) = strides(n);
    let contractors: Vec<usize> = (2..n).filter(|i| i % cs == cs / 2).collect();
    let finance: Vec<usize> = (2..n).filter(|i| i % fs == 1).collect();
    let except: Vec<String> = contractors.iter().take(2).map(|&i| user_id(i)).collect();
    let mut text = header(
        "contractors",
        "Contractors lose remembered devices and app passwords",
    );
    let _ = write!(
        text,
        "  - group: contractors\n    except: [{}]\n    revoke-trusted-devices-before: {INCIDENT}\n    app-passwords: none\n",
        except.join(", ")
    );
    let path = dir.join("groups").join("contractors.yaml");
    write(&path, &text)?;
    gen.manifest_files.push(path);
    let mut text = header("finance", "Finance re-registers MFA");
    text.push_str("  - group: finance\n    require-reregistration: 2026-11-15\n");
    let path = dir.join("groups").join("finance.yaml");
    write(&path, &text)?;
    gen.manifest_files.push(path);
    let mut selected: Vec<String> = contractors
        .iter()
        .skip(2)
        .chain(&finance)
        .map(|&i| user_id(i))
        .collect();
    selected.sort();
    selected.dedup();
    gen.group_selected = selected;

    let mut text = header("incident-all-users", "Tenant-wide session revocation");
    let _ = writeln!(
        text,
        "  - all-users: true\n    revoke-sessions-before: {INCIDENT}"
    );
    write(&dir.join("all-users").join("incident.yaml"), &text)?;

    let mut declared = ids;
    declared.sort();
    gen.declared = declared;
    Ok(gen)
}

/// Writes `o.out/store.db` through `mfactl::store::import`, [`CHUNK`] users per transaction.
pub fn write_store(o: &Options) -> Result<(), String> {
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let path = o.out.join("store.db");
    for p in [
        path.clone(),
        o.out.join("store.db-wal"),
        o.out.join("store.db-shm"),
    ] {
        let _ = std::fs::remove_file(p);
    }
    let timeout = std::time::Duration::from_secs(5);
    let (mut store, _) = mfactl::store::Store::init(&path, timeout).map_err(|e| e.to_string())?;
    let mut start = 0;
    while start < o.users || start == 0 {
        let end = (start + CHUNK).min(o.users);
        let dir = Directory {
            groups: if start == 0 { groups() } else { Vec::new() },
            users: (start..end).map(|i| user(o.seed, o.users, i)).collect(),
        };
        mfactl::store::import(&mut store, "generate", &dir).map_err(|e| e.to_string())?;
        if end == o.users {
            break;
        }
        start = end;
    }
    Ok(())
}

/// Writes the N users as a `store import` file: one flow mapping per user, without the fields
/// that are at their defaults (null watermarks, `must-change-password: false`), which keeps
/// 100,000 users well under the 64 MiB file cap.
pub fn write_directory_yaml(o: &Options) -> Result<PathBuf, String> {
    let path = o.out.join("directory.yaml");
    let mut text = String::from("groups:\n");
    for g in groups() {
        let ra = if g.role_assignable {
            ", role-assignable: true"
        } else {
            ""
        };
        let _ = writeln!(text, "  - {{name: {}{ra}}}", g.name);
    }
    text.push_str("users:\n");
    for i in 0..o.users {
        let u = user(o.seed, o.users, i);
        let _ = write!(
            text,
            "  - {{id: {}, display-name: {}, enabled: {}, roles: [{}], groups: [{}]",
            u.id,
            u.display_name,
            u.enabled,
            u.roles.join(", "),
            u.groups.join(", "),
        );
        for (k, t) in [
            ("password-set-at", u.password_set_at),
            ("registration-valid-from", u.registration_valid_from),
            ("sessions-valid-from", u.sessions_valid_from),
            ("devices-valid-from", u.devices_valid_from),
        ] {
            if let Some(t) = t {
                let _ = write!(text, ", {k}: {t}");
            }
        }
        let list = |items: Vec<String>| items.join(", ");
        let _ = writeln!(
            text,
            ",\n      methods: [{}],\n      sessions: [{}],\n      trusted-devices: [{}],\n      app-passwords: [{}]}}",
            list(u.methods.iter().map(|m| format!("{{id: {}, kind: {}, registered-at: {}}}", m.id, m.kind, m.registered_at)).collect()),
            list(u.sessions.iter().map(|s| format!("{{id: {}, issued-at: {}}}", s.id, s.issued_at)).collect()),
            list(u.trusted_devices.iter().map(|d| format!("{{id: {}, name: {}, remembered-at: {}}}", d.id, d.name, d.remembered_at)).collect()),
            list(u.app_passwords.iter().map(|a| format!("{{id: {}, name: {}, created-at: {}}}", a.id, a.name, a.created_at)).collect()),
        );
    }
    write(&path, &text)?;
    Ok(path)
}

/// Everything `o` asks for.
pub fn generate(o: &Options) -> Result<Generated, String> {
    if o.users < 3 {
        return Err(
            "--users must be at least 3 (the admin, the protected user and one more)".into(),
        );
    }
    if !o.manifests_only {
        write_store(o)?;
    }
    if o.directory_yaml {
        write_directory_yaml(o)?;
    }
    write_manifests(o)
}

pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        users: 0,
        declared: 0,
        out: PathBuf::new(),
        seed: 1,
        manifests_only: false,
        directory_yaml: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        let num = |s: String| {
            s.replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("{s}: {e}"))
        };
        match a.as_str() {
            "--users" => o.users = num(value(a)?)? as usize,
            "--declared" => o.declared = num(value(a)?)? as usize,
            "--seed" => o.seed = num(value(a)?)?,
            "--out" => o.out = PathBuf::from(value(a)?),
            "--manifests-only" => o.manifests_only = true,
            "--directory-yaml" => o.directory_yaml = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if o.users == 0 || o.out.as_os_str().is_empty() {
        return Err("usage: generate --users N --declared M --out DIR [--seed S] [--manifests-only] [--directory-yaml]".into());
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("generate: {e}");
            std::process::exit(2);
        }
    };
    let started = std::time::Instant::now();
    match generate(&o) {
        Ok(g) => eprintln!(
            "generate: {} users{}, {} declared in {} manifest files under {} ({:.1} s)",
            o.users,
            if o.manifests_only {
                " (manifests only)"
            } else {
                ""
            },
            g.declared.len(),
            g.manifest_files.len() + 1,
            o.out.display(),
            started.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("generate: {e}");
            std::process::exit(1);
        }
    }
}
