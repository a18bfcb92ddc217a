//! Reaching the server: the store URL read the way libpq reads it
//! (`postgres[ql]://USER[:PASSWORD]@HOST[:PORT]/DB?sslmode=…&sslrootcert=…`), the password
//! found where libpq finds it (the URL, `$PGPASSWORD`, then `~/.pgpass` or `$PGPASSFILE`), the
//! TLS mode turned into an OpenSSL connector, and a failed connection described for people. The
//! URL is parsed here rather than by rust-postgres, which knows neither `verify-full` nor
//! `sslrootcert`; the password lives only in a [`Zeroizing`] string and in no message: the
//! store is named by [`redact`]ed URL.

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres::config::SslMode as PgSslMode;
use postgres_openssl::MakeTlsConnector;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// How the connection is protected, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it (certificate unchecked), else plain.
    Prefer,
    /// TLS, certificate unchecked, unless an `sslrootcert` is given: then as `VerifyCa` (libpq).
    Require,
    /// TLS, the certificate chain checked, not the host name.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

/// Where and as whom to connect: everything the URL, the environment and `.pgpass` say.
pub(super) struct Target {
    /// A host name or address, or a socket directory (starting with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub password: Option<Zeroizing<String>>,
    pub sslmode: SslMode,
    /// A CA file, or `None` for the system's roots (`sslrootcert=system` says so explicitly).
    pub sslrootcert: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub application_name: String,
}

/// How long to wait for the server when the URL does not say (libpq waits forever; a command
/// that hangs on an unreachable host helps nobody).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The parameters a store URL may carry after `?`.
const KNOWN_PARAMETERS: &str = "sslmode, sslrootcert, connect_timeout, application_name, host, \
                                port, user, password, dbname";

/// The URL as messages show it: the password (in the user part or a `password=` parameter)
/// removed, everything else as written. Works on any text, parsed or not, so that even a URL
/// that fails to parse is named safely.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_at = scheme_end + 3;
    // A fragment means nothing to a store URL (parse ignores it) and is never shown: a
    // `#…?password=…` in it would otherwise be split as a query on the next reading.
    let rest = url[rest_at..].split('#').next().unwrap_or("");
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_len);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}{host}")
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| {
                    let key = p.split('=').next().unwrap_or("");
                    percent_decode(key).is_none_or(|k| k != "password")
                })
                .collect();
            let mut t = path.to_string();
            if !kept.is_empty() {
                t.push('?');
                t.push_str(&kept.join("&"));
            }
            t
        }
        None => tail.to_string(),
    };
    format!("{}{authority}{tail}", &url[..rest_at])
}

/// `%XX` escapes decoded; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Reads `url` (already known to start with `postgres://` or `postgresql://`), filling what it
/// leaves out from the environment as libpq does (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`,
/// `PGPASSWORD`, then the password file). The error is a sentence naming what is wrong.
pub(super) fn parse(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or("a PostgreSQL store URL starts with postgres:// or postgresql://")?;
    let rest = rest.split('#').next().unwrap_or("");
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let decode = |what: &str, s: &str| {
        percent_decode(s).ok_or_else(|| format!("the {what} in the URL has a malformed %-escape"))
    };
    let mut user = None;
    let mut password = None;
    if let Some(info) = userinfo {
        let (u, p) = match info.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (info, None),
        };
        if !u.is_empty() {
            user = Some(decode("user", u)?);
        }
        if let Some(p) = p {
            password = Some(Zeroizing::new(decode("password", p)?));
        }
    }
    if hostport.contains(',') {
        return Err("several hosts in one URL are not supported: give one host".into());
    }
    let (mut host, mut port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or("the IPv6 address in the URL lacks its closing `]`")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.to_string()),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected `{after}` after the IPv6 address")),
        };
        (Some(addr.to_string()), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (Some(decode("host", h)?), Some(p.to_string())),
            None => (Some(decode("host", hostport)?), None),
        }
    };
    if host.as_deref() == Some("") {
        host = None;
    }
    let mut dbname = if path.is_empty() {
        None
    } else {
        Some(decode("database name", path)?)
    };
    let mut sslmode = SslMode::Prefer;
    let mut sslrootcert = None;
    let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
    let mut application_name = "mfactl".to_string();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode("parameter name", k)?;
        let v = decode(&format!("value of `{k}`"), v)?;
        match k.as_str() {
            "sslmode" => {
                sslmode = match v.as_str() {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode `{}` is not one mfactl knows: use disable, prefer, require, \
                             verify-ca or verify-full",
                            crate::util::escape_text(other)
                        ))
                    }
                }
            }
            "sslrootcert" => {
                sslrootcert = (v != "system").then(|| PathBuf::from(v));
            }
            "connect_timeout" => {
                let secs: u64 = v.parse().map_err(|_| {
                    format!(
                        "connect_timeout `{}` is not a whole number of seconds",
                        crate::util::escape_text(&v)
                    )
                })?;
                // libpq: 0 means wait forever; we keep a bound, but a generous one.
                connect_timeout = if secs == 0 {
                    Duration::from_secs(3600)
                } else {
                    Duration::from_secs(secs)
                };
            }
            "application_name" => application_name = v,
            "host" => host = Some(v),
            "port" => port = Some(v),
            "user" => user = Some(v),
            "password" => password = Some(Zeroizing::new(v)),
            "dbname" => dbname = Some(v),
            other => {
                return Err(format!(
                    "the URL parameter `{}` is not one mfactl knows ({KNOWN_PARAMETERS})",
                    crate::util::escape_text(other)
                ))
            }
        }
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let host = host
        .or_else(|| env("PGHOST"))
        .unwrap_or_else(|| "localhost".into());
    let port = match port.or_else(|| env("PGPORT")) {
        None => 5432,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            format!(
                "port `{}` is not a port number",
                crate::util::escape_text(&p)
            )
        })?,
    };
    let user = user
        .or_else(|| env("PGUSER"))
        .or_else(|| env("USER"))
        .ok_or(
            "the URL names no user (postgres://USER@HOST/DB), and neither PGUSER nor USER is set",
        )?;
    let dbname = dbname
        .or_else(|| env("PGDATABASE"))
        .unwrap_or_else(|| user.clone());
    if password.is_none() {
        password = env("PGPASSWORD").map(Zeroizing::new);
    }
    let mut target = Target {
        host,
        port,
        user,
        dbname,
        password,
        sslmode,
        sslrootcert,
        connect_timeout,
        application_name,
    };
    if target.password.is_none() {
        target.password = pgpass(&target);
    }
    Ok(target)
}

/// The password for `t` from the password file (`$PGPASSFILE`, else `~/.pgpass`), as libpq
/// finds it: the first line whose `host:port:database:user` fields match (`*` matches
/// anything, `\:` and `\\` are escapes). A file that others may read is ignored, as libpq
/// ignores it; so is one that cannot be read.
fn pgpass(t: &Target) -> Option<Zeroizing<String>> {
    let path = match std::env::var_os("PGPASSFILE").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let text = Zeroizing::new(read_private(&path)?);
    let port = t.port.to_string();
    // libpq matches a socket connection against `localhost` as well as the socket's path.
    let host_matches = |field: &str| {
        field == "*" || field == t.host || (t.host.starts_with('/') && field == "localhost")
    };
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = pgpass_fields(line);
        let [host, port_f, db, user, password] = fields.as_slice() else {
            continue;
        };
        let any = |f: &str, v: &str| f == "*" || f == v;
        if host_matches(host) && any(port_f, &port) && any(db, &t.dbname) && any(user, &t.user) {
            return Some(Zeroizing::new(password.to_string()));
        }
    }
    None
}

/// The contents of `path` if it is a regular file that only its owner may read or write.
fn read_private(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// What [`parse`] reads of `url` — host, port, user, database and password — for the fuzz
/// target, which checks that [`redact`] leaves no password a parse could find.
#[doc(hidden)]
#[allow(clippy::type_complexity)]
pub fn parsed_parts(url: &str) -> Result<(String, u16, String, String, Option<String>), String> {
    parse(url).map(|t| {
        let password = t.password.as_ref().map(|p| p.to_string());
        (t.host, t.port, t.user, t.dbname, password)
    })
}

/// A password-file line's fields, for the fuzz target.
#[doc(hidden)]
pub fn pgpass_line(line: &str) -> Vec<String> {
    pgpass_fields(line).iter().map(|f| f.to_string()).collect()
}

/// A `.pgpass` line split into its five fields, escapes undone; the fifth (the password) runs
/// to the end of the line.
fn pgpass_fields(line: &str) -> Vec<Zeroizing<String>> {
    let mut fields = vec![Zeroizing::new(String::new())];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let last = fields.len() - 1;
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields[last].push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(Zeroizing::new(String::new())),
            c => fields[last].push(c),
        }
    }
    fields
}

/// The OpenSSL connector for `mode`: verification off for `prefer` and `require` (libpq's
/// meaning: encryption without authentication of the server), the chain checked against
/// `rootcert` (or the system's roots) for `verify-ca`, and the host name too for `verify-full`.
fn tls(mode: SslMode, rootcert: Option<&Path>) -> Result<MakeTlsConnector, String> {
    let tls_err = |e: openssl::error::ErrorStack| format!("cannot set up TLS: {e}");
    let mut b = SslConnector::builder(SslMethod::tls()).map_err(tls_err)?;
    // libpq: `require` with a root certificate given behaves as `verify-ca`.
    let mode = match (mode, rootcert) {
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (m, _) => m,
    };
    let verify = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
    if verify {
        if let Some(ca) = rootcert {
            if !ca.is_file() {
                return Err(format!(
                    "sslrootcert {} is not a readable file; give the CA certificate's path",
                    ca.display()
                ));
            }
            b.set_ca_file(ca).map_err(|e| {
                format!(
                    "sslrootcert {} is not a PEM certificate file ({e})",
                    ca.display()
                )
            })?;
        }
        b.set_verify(SslVerifyMode::PEER);
    } else {
        b.set_verify(SslVerifyMode::NONE);
    }
    let mut connector = MakeTlsConnector::new(b.build());
    let check_host = mode == SslMode::VerifyFull;
    connector.set_callback(move |config, _domain| {
        config.set_verify_hostname(check_host);
        Ok(())
    });
    Ok(connector)
}

/// Connects to `t`. The error is a sentence saying what failed and what to check.
pub(super) fn connect(t: &Target) -> Result<postgres::Client, String> {
    let mut c = postgres::Config::new();
    c.host(&t.host)
        .port(t.port)
        .user(&t.user)
        .dbname(&t.dbname)
        .application_name(&t.application_name)
        .connect_timeout(t.connect_timeout)
        .keepalives(true)
        // Notices (`… already exists, skipping`) are not for the user.
        .notice_callback(|_| {});
    if let Some(p) = &t.password {
        c.password(p.as_bytes());
    }
    let result = match t.sslmode {
        SslMode::Disable => c.ssl_mode(PgSslMode::Disable).connect(postgres::NoTls),
        mode => {
            let pg_mode = if mode == SslMode::Prefer {
                PgSslMode::Prefer
            } else {
                PgSslMode::Require
            };
            c.ssl_mode(pg_mode)
                .connect(tls(mode, t.sslrootcert.as_deref())?)
        }
    };
    result.map_err(|e| describe_connect_error(t, &e))
}

/// A failed connection as a sentence: what the server or the network said, and what to check.
fn describe_connect_error(t: &Target, e: &postgres::Error) -> String {
    use postgres::error::SqlState;
    let at = if t.host.starts_with('/') {
        format!("the socket in {} (port {})", t.host, t.port)
    } else {
        format!("{}:{}", t.host, t.port)
    };
    let user = crate::util::escape_text(&t.user);
    let db = crate::util::escape_text(&t.dbname);
    if let Some(d) = e.as_db_error() {
        let msg = crate::util::escape_text(d.message());
        let code = d.code();
        return if *code == SqlState::INVALID_PASSWORD {
            format!(
                "the server at {at} refused the password of user `{user}` ({msg}); check the \
                 password (in the URL, PGPASSWORD or ~/.pgpass)"
            )
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            format!(
                "the server at {at} refused user `{user}` for database `{db}` ({msg}); check \
                 the user and database, and sslmode (the server may accept only TLS, or only \
                 plain connections, from here)"
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            format!("database `{db}` does not exist on {at}; create it, or fix the URL")
        } else if *code == SqlState::TOO_MANY_CONNECTIONS || *code == SqlState::CANNOT_CONNECT_NOW {
            format!("the server at {at} is not accepting connections now ({msg}); try again")
        } else {
            format!("the server at {at} refused the connection ({msg})")
        };
    }
    let text = crate::util::escape_text(&error_chain(e)).into_owned();
    let lower = text.to_ascii_lowercase();
    if lower.contains("password missing") {
        format!(
            "the server at {at} asks user `{user}` for a password and none was given; put it \
             in the URL, PGPASSWORD, or ~/.pgpass (mode 0600)"
        )
    } else if lower.contains("tls") || lower.contains("ssl") || lower.contains("certificate") {
        format!(
            "the TLS connection to {at} failed ({text}); check sslmode, and for verify-ca or \
             verify-full the CA (sslrootcert) and the host name in the server's certificate"
        )
    } else if lower.contains("timeout") || lower.contains("timed out") {
        format!(
            "timed out connecting to {at} after {}s; check the host and port, and that the \
             server is reachable from here",
            t.connect_timeout.as_secs()
        )
    } else {
        format!(
            "cannot connect to {at} ({text}); check the host and port, and that the server \
             is running"
        )
    }
}

/// An error's message with its causes, each once (rust-postgres repeats a cause in its own
/// message for some kinds).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let m = s.to_string();
        if !text.contains(&m) {
            text.push_str(": ");
            text.push_str(&m);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_the_password_wherever_it_is() {
        assert_eq!(
            redact("postgres://app:s3cret@db.example:5432/mfa?sslmode=require"),
            "postgres://app@db.example:5432/mfa?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://app@db/mfa?password=s3cret&sslmode=disable"),
            "postgresql://app@db/mfa?sslmode=disable"
        );
        assert_eq!(redact("postgres://a:b:c@h/d"), "postgres://a@h/d");
        assert_eq!(redact("postgres://h/d"), "postgres://h/d");
        assert_eq!(redact("postgres://u:p@h"), "postgres://u@h");
        assert_eq!(
            redact("postgres://u:p%40ss@h/d?password=x"),
            "postgres://u@h/d"
        );
    }

    /// Found by the `store_url` fuzz target: a password-like query inside a fragment survived
    /// redaction and was removed only by a second pass (the fragment was split after the query).
    #[test]
    fn redact_drops_the_fragment_and_is_idempotent() {
        let url = "postgres://u:pw@h/db?password=a#x?password=b";
        let shown = redact(url);
        assert_eq!(shown, "postgres://u@h/db");
        assert_eq!(redact(&shown), shown);
        let crash = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fuzz/store_url-crash-509fa455"
        ))
        .unwrap();
        let text = String::from_utf8_lossy(&crash);
        for u in [text.to_string(), format!("postgres://{text}")] {
            let shown = redact(&u);
            assert_eq!(redact(&shown), shown, "{u:?}");
        }
    }

    #[test]
    fn parse_reads_every_part() {
        let t = parse(
            "postgresql://us%40er:pw@[::1]:6543/my%20db?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(t.user, "us@er");
        assert_eq!(t.password.as_deref().map(String::as_str), Some("pw"));
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 6543);
        assert_eq!(t.dbname, "my db");
        assert_eq!(t.sslmode, SslMode::VerifyFull);
        assert_eq!(t.sslrootcert.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(t.connect_timeout, Duration::from_secs(3));
        assert_eq!(t.application_name, "mfactl");
    }

    #[test]
    fn parse_refuses_what_it_does_not_know() {
        assert!(parse("postgres://u@h/d?sslmode=allow").is_err());
        assert!(parse("postgres://u@h/d?frobnicate=1").is_err());
        assert!(parse("postgres://u@h:99999/d").is_err());
        assert!(parse("postgres://u@h1,h2/d").is_err());
    }

    #[test]
    fn pgpass_fields_undo_escapes_and_keep_colons_in_the_password() {
        let f = pgpass_fields(r"db\:1:5432:*:app:pa:ss\\w");
        let f: Vec<&str> = f.iter().map(|s| s.as_str()).collect();
        assert_eq!(f, ["db:1", "5432", "*", "app", r"pa:ss\w"]);
    }
}
