//! The allowed-signers file (git's `gpg.ssh.allowedSignersFile`, ssh-keygen(1) "ALLOWED SIGNERS")
//! and the judgement of one SSH commit signature against it: which key may sign for which
//! principals, in which namespaces and between which times. Pure: no git, no clock, no printing.
//!
//! What is read as ssh-keygen reads it: `PRINCIPALS [OPTIONS] KEYTYPE BASE64KEY [comment]`, `#`
//! comments and blank lines, principals comma-separated and optionally quoted, the options
//! `namespaces="pattern-list"`, `valid-after="…"`, `valid-before="…"` and `cert-authority`.
//! Three things ssh-keygen accepts are kept out of every verdict, each with a [`Skipped`] note
//! (and named again in the refusal of a signature by that key), never silently:
//! - principal patterns (`*`, `?`, `!`): a change is bound to one person, not to a pattern;
//! - `cert-authority` lines: certificates are not verified here, only keys listed themselves;
//! - times without a trailing `Z` (or `UTC`): ssh-keygen reads them in the local time zone of the
//!   machine that checks, so the verdict would change with where mfactl runs.

use super::commit::CommitObject;
use super::Error;
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey, SshSig};
use std::path::{Path, PathBuf};
use time::{Date, Month, PrimitiveDateTime, Time};

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
pub const GIT_NAMESPACE: &str = "git";

/// A parsed allowed-signers file.
#[derive(Debug, Clone)]
pub struct Signers {
    path: PathBuf,
    entries: Vec<Entry>,
    skipped: Vec<Skipped>,
}

/// One usable line: a key and the principals it may sign for, with its options.
#[derive(Debug, Clone)]
pub struct Entry {
    /// 1-based line number in the file.
    pub line: usize,
    /// The exact principals of the line, in file order.
    pub principals: Vec<String>,
    pub key: PublicKey,
    /// `SHA256:<base64-no-pad>`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The `namespaces` pattern-list, as written; `None` allows every namespace.
    pub namespaces: Option<String>,
    /// `valid-after`, in seconds since the epoch.
    pub valid_after: Option<i64>,
    /// `valid-before`, in seconds since the epoch.
    pub valid_before: Option<i64>,
}

/// A well-formed line that no signature can satisfy here, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line number in the file.
    pub line: usize,
    /// The fingerprint of the line's key.
    pub fingerprint: String,
    /// A clause that completes "line N is skipped: …".
    pub why: String,
}

/// Who signed a commit, when the signature holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Every principal of every line that allows the key at the commit time, in file order,
    /// without repeats; the caller picks the one it knows.
    pub principals: Vec<String>,
    /// `SHA256:<base64-no-pad>` of the signing key.
    pub fingerprint: String,
}

/// Why a commit's signature does not name a signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No signature header for this repository's object format.
    Unsigned,
    /// An OpenPGP signature (`-----BEGIN PGP SIGNATURE-----`), which is not verified here.
    Gpg,
    /// The signature is unreadable, does not match the commit, or is not a git signature.
    BadSignature { detail: String },
    /// A valid signature by a key no usable line lists; `skipped` names a line that lists it
    /// but that mfactl skips.
    UnknownKey {
        fingerprint: String,
        skipped: Option<Skipped>,
    },
    /// The key's line ended (`valid-before`) before the commit time.
    Expired {
        fingerprint: String,
        principals: Vec<String>,
        line: usize,
        valid_before: i64,
        committed: i64,
    },
    /// The key's line starts (`valid-after`) after the commit time.
    NotYetValid {
        fingerprint: String,
        principals: Vec<String>,
        line: usize,
        valid_after: i64,
        committed: i64,
    },
    /// The key's line has a `namespaces` option that does not allow `git`.
    NamespaceNotAllowed {
        fingerprint: String,
        principals: Vec<String>,
        line: usize,
        namespaces: String,
    },
}

impl Signers {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Signers, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::SignersRead {
            path: path.to_path_buf(),
            source,
        })?;
        Signers::parse(path, &bytes)
    }

    /// Parses the file's content; `path` only names it in errors and verdicts.
    pub fn parse(path: &Path, content: &[u8]) -> Result<Signers, Error> {
        let mut signers = Signers {
            path: path.to_path_buf(),
            entries: Vec::new(),
            skipped: Vec::new(),
        };
        for (index, raw) in content.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let bad = |problem: String| Error::SignersLine {
                path: path.to_path_buf(),
                line,
                problem,
            };
            let text = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8 text".into()))?;
            match parse_line(text).map_err(bad)? {
                None => {}
                Some(Line::Usable(parsed)) => signers.entries.push(parsed.into_entry(line)),
                Some(Line::Skipped { key, why }) => signers.skipped.push(Skipped {
                    line,
                    fingerprint: fingerprint(key.key_data()),
                    why,
                }),
            }
        }
        Ok(signers)
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The usable lines, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The well-formed lines that are kept out of every verdict (see the module doc), so that the
    /// caller can warn about them.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Judges a commit's signature: valid SSHSIG over the payload in namespace `git`, by a listed
    /// key whose line allows `git` and whose validity window holds the committer time.
    pub fn judge(&self, commit: &CommitObject) -> Result<Signer, Problem> {
        let Some(armored) = commit.signature.as_deref() else {
            return Err(Problem::Unsigned);
        };
        if armored.starts_with(b"-----BEGIN PGP SIGNATURE-----")
            || armored.starts_with(b"-----BEGIN PGP MESSAGE-----")
        {
            return Err(Problem::Gpg);
        }
        if armored.starts_with(b"-----BEGIN SIGNED MESSAGE-----") {
            return Err(bad(
                "it is an X.509 (gpgsm) signature; only SSH signatures are accepted",
            ));
        }
        if !armored.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
            return Err(bad("it is not an SSH signature"));
        }
        let sig = SshSig::from_pem(armored)
            .map_err(|e| bad(&format!("the SSH signature cannot be read ({e})")))?;
        // The cryptographic check first, with the signature's own key and namespace: only a
        // signature that really was made over this commit says anything about a key.
        PublicKey::from(sig.public_key().clone())
            .verify(sig.namespace(), &commit.payload, &sig)
            .map_err(|_| {
                bad("it does not match the commit's content (the commit was changed after it was signed, or the signature was made for something else)")
            })?;
        if sig.namespace() != GIT_NAMESPACE {
            return Err(bad(&format!(
                "it was made for the namespace \"{}\", not \"{GIT_NAMESPACE}\" (a signature for another purpose)",
                sig.namespace()
            )));
        }
        let fingerprint = fingerprint(sig.public_key());
        let matching: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.key.key_data() == sig.public_key())
            .collect();
        if matching.is_empty() {
            let skipped = self
                .skipped
                .iter()
                .find(|s| s.fingerprint == fingerprint)
                .cloned();
            return Err(Problem::UnknownKey {
                fingerprint,
                skipped,
            });
        }
        // git passes the committer time to ssh-keygen as -Overify-time; without one there is no
        // time to hold a validity window against.
        let committed = commit.committer_time.ok_or_else(|| {
            bad("the commit has no readable committer time to check the key's validity against")
        })?;
        let mut principals: Vec<String> = Vec::new();
        let mut first_problem = None;
        for entry in matching {
            match entry.allows(committed, &fingerprint) {
                Ok(()) => {
                    for p in &entry.principals {
                        if !principals.contains(p) {
                            principals.push(p.clone());
                        }
                    }
                }
                Err(problem) => {
                    first_problem.get_or_insert(problem);
                }
            }
        }
        if principals.is_empty() {
            // Not empty: `matching` was, and every entry has principals.
            return Err(first_problem.unwrap_or(Problem::UnknownKey {
                fingerprint,
                skipped: None,
            }));
        }
        Ok(Signer {
            principals,
            fingerprint,
        })
    }
}

impl Entry {
    /// ssh-keygen's order: namespaces, then not-yet-valid, then expired (both ends inclusive).
    fn allows(&self, committed: i64, fingerprint: &str) -> Result<(), Problem> {
        if let Some(namespaces) = &self.namespaces {
            if !match_pattern_list(GIT_NAMESPACE, namespaces) {
                return Err(Problem::NamespaceNotAllowed {
                    fingerprint: fingerprint.to_string(),
                    principals: self.principals.clone(),
                    line: self.line,
                    namespaces: namespaces.clone(),
                });
            }
        }
        if let Some(valid_after) = self.valid_after {
            if committed < valid_after {
                return Err(Problem::NotYetValid {
                    fingerprint: fingerprint.to_string(),
                    principals: self.principals.clone(),
                    line: self.line,
                    valid_after,
                    committed,
                });
            }
        }
        if let Some(valid_before) = self.valid_before {
            if committed > valid_before {
                return Err(Problem::Expired {
                    fingerprint: fingerprint.to_string(),
                    principals: self.principals.clone(),
                    line: self.line,
                    valid_before,
                    committed,
                });
            }
        }
        Ok(())
    }
}

fn bad(detail: &str) -> Problem {
    Problem::BadSignature {
        detail: detail.to_string(),
    }
}

/// `SHA256:<base64-no-pad>`, the form `ssh-keygen -l` and git print.
pub fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// ssh-keygen's field separators (misc.h WHITESPACE).
const WHITESPACE: &[char] = &[' ', '\t', '\r', '\n'];

enum Line {
    Usable(Parsed),
    Skipped { key: PublicKey, why: String },
}

struct Parsed {
    principals: Vec<String>,
    key: PublicKey,
    namespaces: Option<String>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

impl Parsed {
    fn into_entry(self, line: usize) -> Entry {
        Entry {
            line,
            principals: self.principals,
            fingerprint: fingerprint(self.key.key_data()),
            key: self.key,
            namespaces: self.namespaces,
            valid_after: self.valid_after,
            valid_before: self.valid_before,
        }
    }
}

/// A time option's value: seconds since the epoch, or a zone-less time kept as written.
#[derive(Debug, PartialEq, Eq)]
enum When {
    Utc(i64),
    Local(String),
}

#[derive(Default)]
struct Options {
    cert_authority: bool,
    namespaces: Option<String>,
    valid_after: Option<When>,
    valid_before: Option<When>,
}

/// One line: `None` for blank and comment lines, `Err` with what is wrong.
fn parse_line(text: &str) -> Result<Option<Line>, String> {
    let text = text.trim_start_matches(WHITESPACE);
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let (field, rest) = principals_field(text)?;
    let (options, key_text) = if starts_with_option(rest) {
        let end = options_end(rest)?;
        (parse_options(&rest[..end])?, &rest[end..])
    } else {
        (Options::default(), rest)
    };
    let key = parse_key(key_text)?;
    let principals: Vec<String> = field
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if principals.is_empty() {
        return Err("no principal before the key".into());
    }

    let skip = |why: String| {
        Ok(Some(Line::Skipped {
            key: key.clone(),
            why,
        }))
    };
    if let Some(p) = principals
        .iter()
        .find(|p| p.starts_with('!') || p.contains(['*', '?']))
    {
        return skip(format!(
            "the principal \"{p}\" is a pattern, and a change is bound to one person: list exact principals"
        ));
    }
    if options.cert_authority {
        return skip(
            "it is a cert-authority line, and signatures by certificates are not accepted: list the signer's own key"
                .into(),
        );
    }
    let utc = |when: Option<When>, name: &str| {
        match when {
        None => Ok(None),
        Some(When::Utc(t)) => Ok(Some(t)),
        Some(When::Local(text)) => Err(format!(
            "{name}=\"{text}\" has no time zone, and ssh-keygen would read it in the local time zone of whichever machine checks: write it in UTC with a trailing Z (\"{text}Z\")"
        )),
    }
    };
    let (valid_after, valid_before) = match (
        utc(options.valid_after, "valid-after"),
        utc(options.valid_before, "valid-before"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => return skip(why),
    };
    if let (Some(a), Some(b)) = (valid_after, valid_before) {
        if b <= a {
            return Err("valid-before is not after valid-after".into());
        }
    }
    Ok(Some(Line::Usable(Parsed {
        principals,
        key,
        namespaces: options.namespaces,
        valid_after,
        valid_before,
    })))
}

/// The principals field, cut as ssh-keygen's `strdelimw` cuts it: up to whitespace, or, from a
/// double quote, up to the next double quote (the quotes removed). Returns it and the rest.
fn principals_field(text: &str) -> Result<(String, &str), String> {
    let Some(stop) = text.find(|c: char| c == '"' || WHITESPACE.contains(&c)) else {
        return Err("only principals: no key follows them".into());
    };
    let (field, rest) = if text[stop..].starts_with('"') {
        let after = &text[stop + 1..];
        let close = after
            .find('"')
            .ok_or("the principals' opening quote is never closed")?;
        (
            format!("{}{}", &text[..stop], &after[..close]),
            &after[close + 1..],
        )
    } else {
        (text[..stop].to_string(), &text[stop + 1..])
    };
    Ok((field, rest.trim_start_matches(WHITESPACE)))
}

/// Whether the text after the principals begins with options rather than a key type.
fn starts_with_option(rest: &str) -> bool {
    let word = rest.split(WHITESPACE).next().unwrap_or("");
    let lower = word.to_ascii_lowercase();
    word.contains('=') || lower == "cert-authority" || lower.starts_with("cert-authority,")
}

/// Where the options end: the first space or tab outside double quotes (`\"` escapes a quote).
fn options_end(rest: &str) -> Result<usize, String> {
    let bytes = rest.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b'"') => i += 1,
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    if quoted {
        Err("an option's quote is never closed".into())
    } else {
        Err("options but no key after them".into())
    }
}

/// The options list, as ssh-keygen's `sshsigopt_parse` reads it (names case-insensitive).
fn parse_options(text: &str) -> Result<Options, String> {
    let mut options = Options::default();
    let mut rest = text;
    loop {
        if let Some(after) = strip_prefix_ignore_case(rest, "cert-authority") {
            options.cert_authority = true;
            rest = after;
        } else if let Some(after) = strip_prefix_ignore_case(rest, "namespaces=") {
            if options.namespaces.is_some() {
                return Err("namespaces is given twice".into());
            }
            let (value, after) = dequote(after, "namespaces")?;
            options.namespaces = Some(value);
            rest = after;
        } else if let Some(after) = strip_prefix_ignore_case(rest, "valid-after=") {
            if options.valid_after.is_some() {
                return Err("valid-after is given twice".into());
            }
            let (value, after) = dequote(after, "valid-after")?;
            options.valid_after = Some(parse_time(&value, "valid-after")?);
            rest = after;
        } else if let Some(after) = strip_prefix_ignore_case(rest, "valid-before=") {
            if options.valid_before.is_some() {
                return Err("valid-before is given twice".into());
            }
            let (value, after) = dequote(after, "valid-before")?;
            options.valid_before = Some(parse_time(&value, "valid-before")?);
            rest = after;
        } else {
            let name = rest.split([',', '=']).next().unwrap_or(rest);
            return Err(format!(
                "unknown option \"{name}\" (known: namespaces, valid-after, valid-before, cert-authority)"
            ));
        }
        match rest.strip_prefix(',') {
            None if rest.is_empty() => return Ok(options),
            None => return Err(format!("unexpected \"{rest}\" after an option")),
            Some("") => return Err("the options end with a comma".into()),
            Some(after) => rest = after,
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// An option's double-quoted value (`\"` stands for a quote); returns it and what follows.
fn dequote<'a>(text: &'a str, name: &str) -> Result<(String, &'a str), String> {
    let Some(body) = text.strip_prefix('"') else {
        return Err(format!("the value of {name} must be in double quotes"));
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if body[i + 1..].starts_with('"') => {
                value.push('"');
                chars.next();
            }
            '"' => return Ok((value, &body[i + 1..])),
            c => value.push(c),
        }
    }
    Err(format!("the value of {name} has no closing quote"))
}

/// `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, then `Z` or `UTC` for UTC (ssh-keygen's
/// `parse_absolute_time`); without a zone the text is kept as written.
fn parse_time(value: &str, name: &str) -> Result<When, String> {
    let invalid =
        || format!("{name}=\"{value}\" is not a time: write YYYYMMDD[HHMM[SS]] and a trailing Z");
    let (digits, utc) = if value.len() > 1 && value.ends_with(['Z', 'z']) {
        (&value[..value.len() - 1], true)
    } else if value.len() > 3
        && value
            .get(value.len() - 3..)
            .is_some_and(|z| z.eq_ignore_ascii_case("UTC"))
    {
        (&value[..value.len() - 3], true)
    } else {
        (value, false)
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let num = |range: std::ops::Range<usize>| -> Result<u16, String> {
        digits
            .get(range)
            .unwrap_or("")
            .parse::<u16>()
            .map_err(|_| invalid())
    };
    let month =
        Month::try_from(u8::try_from(num(4..6)?).map_err(|_| invalid())?).map_err(|_| invalid())?;
    let date = Date::from_calendar_date(
        i32::from(num(0..4)?),
        month,
        u8::try_from(num(6..8)?).map_err(|_| invalid())?,
    )
    .map_err(|_| invalid())?;
    let (hour, minute, second) = match digits.len() {
        8 => (0, 0, 0),
        12 => (num(8..10)?, num(10..12)?, 0),
        _ => (num(8..10)?, num(10..12)?, num(12..14)?),
    };
    let small = |n: u16| u8::try_from(n).map_err(|_| invalid());
    let time =
        Time::from_hms(small(hour)?, small(minute)?, small(second)?).map_err(|_| invalid())?;
    if !utc {
        return Ok(When::Local(value.to_string()));
    }
    let t = PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp();
    if t <= 0 {
        // ssh-keygen takes 0 for "no time" and refuses times before 1970.
        return Err(format!("{name}=\"{value}\" is not after 1970"));
    }
    Ok(When::Utc(t))
}

/// `KEYTYPE BASE64KEY [comment]`.
fn parse_key(text: &str) -> Result<PublicKey, String> {
    let mut words = text.split(WHITESPACE).filter(|w| !w.is_empty());
    let (Some(kind), Some(base64)) = (words.next(), words.next()) else {
        return Err("no key: expected KEYTYPE BASE64KEY after the principals and options".into());
    };
    PublicKey::from_openssh(&format!("{kind} {base64}"))
        .map_err(|e| format!("the {kind} key cannot be read ({e})"))
}

/// ssh's `match_pattern_list`: comma-separated patterns, `!` negates and wins, else any match.
pub fn match_pattern_list(s: &str, list: &str) -> bool {
    let mut positive = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if match_pattern(s.as_bytes(), pattern.as_bytes()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// ssh's `match_pattern`: `*` any run, `?` any one byte; iterative, so no pattern is exponential.
fn match_pattern(s: &[u8], pattern: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match pattern.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((spi, ssi)) => {
                    pi = spi + 1;
                    si = ssi + 1;
                    star = Some((spi, ssi + 1));
                }
                None => return false,
            },
        }
    }
    pattern[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNxwAezPGYUvFvzBsfrdgAUpekS/8AYm/uh+ZVNyTmM";

    fn parse(text: &str) -> Result<Signers, Error> {
        Signers::parse(Path::new("signers"), text.as_bytes())
    }

    fn line_error(text: &str) -> (usize, String) {
        match parse(text) {
            Err(Error::SignersLine { line, problem, .. }) => (line, problem),
            other => panic!("expected a line error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn exact_principals_quotes_comments_and_options() {
        let text = format!(
            "# team\n\n  alice@example.com {ED} alice's laptop\n\"carol q@example.com,dave\" {ED}\n\
             bob@example.com namespaces=\"git,file\",valid-after=\"20240101Z\",VALID-BEFORE=\"202501021530UTC\" {ED}\r\n"
        );
        let s = parse(&text).expect("parses");
        assert!(s.skipped().is_empty());
        let e = s.entries();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].line, e[0].principals.clone()),
            (3, vec!["alice@example.com".to_string()])
        );
        assert_eq!(e[1].principals, vec!["carol q@example.com", "dave"]);
        assert_eq!(e[2].namespaces.as_deref(), Some("git,file"));
        assert_eq!(e[2].valid_after, Some(1_704_067_200));
        assert_eq!(e[2].valid_before, Some(1_735_831_800));
        assert_eq!(
            e[0].fingerprint,
            "SHA256:POxZ/H68/uI/Po/6xnKqY/sltdc0lHjsDkdKWnkR1ZE"
        );
    }

    #[test]
    fn bad_lines_name_the_line_and_the_fault() {
        let cases = [
            ("alice", "only principals"),
            ("\"alice bob ssh-ed25519 AAAA", "never closed"),
            ("alice ssh-ed25519", "no key"),
            (
                "\"carol q\",dave ssh-ed25519 AAAA",
                "the ,dave key cannot be read",
            ),
            ("alice ssh-ed25519 AAAAnotbase64!!", "cannot be read"),
            (
                "alice frobnicate=\"x\" ssh-ed25519 AAAA",
                "unknown option \"frobnicate\"",
            ),
            ("alice namespaces=git ssh-ed25519 AAAA", "double quotes"),
            (
                "alice namespaces=\"git\",namespaces=\"x\" ssh-ed25519 AAAA",
                "twice",
            ),
            (
                "alice valid-after=\"2024\" ssh-ed25519 AAAA",
                "is not a time",
            ),
            (
                "alice valid-after=\"20241301Z\" ssh-ed25519 AAAA",
                "is not a time",
            ),
            (
                "alice valid-after=\"19700101Z\" ssh-ed25519 AAAA",
                "not after 1970",
            ),
            (
                "alice namespaces=\"git\", ssh-ed25519 AAAA",
                "end with a comma",
            ),
            ("alice namespaces=\"git\" ", "no key"),
            ("alice namespaces=\"git ssh-ed25519 AAAA", "never closed"),
        ];
        for (line, want) in cases {
            let (n, problem) = line_error(&format!("# first\n{line}\n"));
            assert_eq!(n, 2, "{line}");
            assert!(problem.contains(want), "{line}: {problem}");
        }
        let (_, problem) = line_error(&format!(
            "a valid-after=\"20250101Z\",valid-before=\"20240101Z\" {ED}"
        ));
        assert!(problem.contains("not after valid-after"), "{problem}");
        let shown = parse("x\u{0}\n\u{ff}").map_err(|e| e.to_string());
        assert!(
            matches!(shown, Err(ref m) if m.starts_with("signers:1: ")),
            "{shown:?}"
        );
    }

    #[test]
    fn patterns_cert_authorities_and_zoneless_times_are_skipped_with_a_reason() {
        let text = format!(
            "*@example.com {ED}\nalice,!bob {ED}\nca cert-authority {ED}\nal valid-before=\"20300101\" {ED}\nok {ED}\n"
        );
        let s = parse(&text).expect("parses");
        let skipped: Vec<(usize, bool)> = s
            .skipped()
            .iter()
            .map(|k| (k.line, k.why.is_empty()))
            .collect();
        assert_eq!(
            skipped,
            vec![(1, false), (2, false), (3, false), (4, false)]
        );
        assert!(s.skipped()[0].why.contains("pattern"));
        assert!(s.skipped()[2].why.contains("cert-authority"));
        assert!(s.skipped()[3].why.contains("20300101Z"));
        assert_eq!(s.entries().len(), 1);
        assert_eq!(s.entries()[0].line, 5);
    }

    #[test]
    fn pattern_lists_match_as_ssh_does() {
        assert!(match_pattern_list("git", "git"));
        assert!(match_pattern_list("git", "file,git"));
        assert!(match_pattern_list("git", "g*"));
        assert!(match_pattern_list("git", "?i?"));
        assert!(match_pattern_list("git", "*"));
        assert!(!match_pattern_list("git", "file"));
        assert!(!match_pattern_list("git", "*,!git"));
        assert!(!match_pattern_list("git", "!git,*"));
        assert!(!match_pattern_list("git", "gi"));
        assert!(!match_pattern_list("git", ""));
        assert!(match_pattern(
            b"aaaaaaaaaaaaaaaaaaaaaaab",
            b"*a*a*a*a*a*a*b"
        ));
        assert!(!match_pattern(
            b"aaaaaaaaaaaaaaaaaaaaaaaa",
            b"*a*a*a*a*a*a*b"
        ));
    }

    #[test]
    fn times_follow_ssh_keygen() {
        assert_eq!(parse_time("20240229Z", "t"), Ok(When::Utc(1_709_164_800)));
        assert_eq!(
            parse_time("20240229235959z", "t"),
            Ok(When::Utc(1_709_251_199))
        );
        assert_eq!(
            parse_time("20240229", "t"),
            Ok(When::Local("20240229".into()))
        );
        assert!(parse_time("20230229Z", "t").is_err());
        assert!(parse_time("202402292460Z", "t").is_err());
        assert!(parse_time("2024022923Z", "t").is_err());
        assert!(parse_time("Z", "t").is_err());
    }

    #[test]
    fn judging_needs_a_signature() {
        let s = parse(&format!("a {ED}")).expect("parses");
        let unsigned = CommitObject {
            signature: None,
            payload: b"tree x\n".to_vec(),
            committer_time: Some(1),
        };
        assert_eq!(s.judge(&unsigned), Err(Problem::Unsigned));
        let gpg = CommitObject {
            signature: Some(
                b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n".to_vec(),
            ),
            ..unsigned.clone()
        };
        assert_eq!(s.judge(&gpg), Err(Problem::Gpg));
        let junk = CommitObject {
            signature: Some(
                b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n".to_vec(),
            ),
            ..unsigned
        };
        assert!(
            matches!(s.judge(&junk), Err(Problem::BadSignature { detail }) if detail.contains("cannot be read"))
        );
    }
}
