//! Manifests (docs/manifests.md): parsing YAML documents into typed [`Manifest`]s and locating
//! every problem as `FILE:LINE:COL`. Pure: the shell reads the files and hands in their text.
//!
//! serde_yaml does the parsing, with `deny_unknown_fields` types, so syntax errors, unknown keys and
//! wrong types come located from the parser. Entry-level rules (one selector, at least one setting)
//! are checked inside the entry's deserializer so serde_yaml attaches the entry's position too.
//! Checks that need the store or the clock run later in [`crate::plan`] and are located by path.

pub mod documents;
pub mod guard;
pub mod locate;

use crate::model::Timestamp;
use locate::Seg;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

pub const API_VERSION: &str = "mfactl/v1";
pub const KIND: &str = "UserSettings";

/// The text of one manifest file, as read by the shell.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user should see it in messages.
    pub path: String,
    pub text: String,
}

/// Where a problem is: a position the parser gave, or a path in a document to locate later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    At { line: usize, col: usize },
    Path { doc: usize, path: Vec<Seg> },
}

/// A problem with the manifests, not yet rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub at: Where,
    pub message: String,
}

/// A problem with its position resolved: what `validate` and every command print.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Located {
    pub file: String,
    pub line: usize,
    #[serde(rename = "column")]
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Resolves path-located problems against the files' text; sorted by file, line and column.
pub fn locate_all(problems: Vec<Problem>, files: &[SourceFile]) -> Vec<Located> {
    let mut out: Vec<Located> = problems
        .into_iter()
        .map(|p| {
            let (line, col) = match &p.at {
                Where::At { line, col } => (*line, *col),
                Where::Path { doc, path } => files
                    .iter()
                    .find(|f| f.path == p.file)
                    .and_then(|f| documents::split(without_bom(&f.text)).get(*doc).copied())
                    .map_or((1, 1), |d| {
                        let (line, col) = locate::locate(d.text, 0, path).unwrap_or((1, 1));
                        (line + d.line, col)
                    }),
            };
            Located {
                file: p.file,
                line,
                col,
                message: p.message,
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Who an entry applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Users(Vec<String>),
    Group(String),
    AllUsers,
}

/// The settings of one entry: each is a state ("nothing of kind K older than T exists").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub require_reregistration: Option<Timestamp>,
    pub revoke_sessions_before: Option<Timestamp>,
    pub revoke_trusted_devices_before: Option<Timestamp>,
    pub reset_password_before: Option<Timestamp>,
    pub app_passwords_none: bool,
}

impl Settings {
    /// The timestamped settings with their manifest field names, for checks that treat them alike.
    pub fn timestamps(&self) -> [(&'static str, Option<Timestamp>); 4] {
        [
            ("require-reregistration", self.require_reregistration),
            ("revoke-sessions-before", self.revoke_sessions_before),
            (
                "revoke-trusted-devices-before",
                self.revoke_trusted_devices_before,
            ),
            ("reset-password-before", self.reset_password_before),
        ]
    }
    fn is_empty(&self) -> bool {
        self.timestamps().iter().all(|(_, t)| t.is_none()) && !self.app_passwords_none
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub selector: Selector,
    pub except: Vec<String>,
    pub settings: Settings,
}

/// One parsed manifest document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub description: Option<String>,
    pub file: String,
    /// Index of the document within its file (0-based), for locating problems.
    pub doc: usize,
    pub entries: Vec<Entry>,
}

/// A string that must be written as one: YAML would read `name: 2026` or `group: 42` as numbers,
/// and the schema says string, so the parser refuses them too rather than guess.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string (quote it if YAML would read it as a number or a boolean)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        String::schema_name()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(g)
    }
    fn inline_schema() -> bool {
        true
    }
}

fn texts(v: Option<Vec<Text>>) -> Option<Vec<String>> {
    v.map(|v| v.into_iter().map(|t| t.0).collect())
}

/// A manifest document (docs/manifests.md). `mfactl schema` is generated from these same types.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a manifest: a mapping with apiVersion, kind, metadata and spec"
)]
#[schemars(
    title = "mfactl UserSettings manifest",
    description = "Desired MFA state of users, applied by mfactl (apiVersion mfactl/v1)."
)]
struct RawManifest {
    #[serde(rename = "apiVersion")]
    #[schemars(extend("const" = "mfactl/v1"))]
    api_version: String,
    #[schemars(extend("const" = "UserSettings"))]
    kind: String,
    metadata: Metadata,
    spec: Vec<Entry>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `name` (and optionally `description`)"
)]
struct Metadata {
    /// Unique across all manifests loaded together; named in plans as a change's source.
    #[schemars(length(min = 1))]
    name: Text,
    #[serde(default)]
    description: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum AppPasswords {
    None,
}

/// One entry: exactly one selector (`users`, `group`, `all-users`), optional `except`, and at
/// least one setting.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "an entry: a mapping with one selector and at least one setting"
)]
#[schemars(extend(
    "oneOf" = [{"required": ["users"]}, {"required": ["group"]}, {"required": ["all-users"]}],
    "anyOf" = [
        {"required": ["require-reregistration"]},
        {"required": ["revoke-sessions-before"]},
        {"required": ["revoke-trusted-devices-before"]},
        {"required": ["reset-password-before"]},
        {"required": ["app-passwords"]}
    ]
))]
struct RawEntry {
    /// These users (case-insensitive ids).
    #[schemars(length(min = 1))]
    users: Option<Vec<Text>>,
    /// Every member of this group.
    group: Option<Text>,
    /// Every user in the store.
    #[schemars(extend("const" = true))]
    all_users: Option<bool>,
    /// Users left out of the selection.
    except: Option<Vec<Text>>,
    require_reregistration: Option<Timestamp>,
    revoke_sessions_before: Option<Timestamp>,
    revoke_trusted_devices_before: Option<Timestamp>,
    reset_password_before: Option<Timestamp>,
    app_passwords: Option<AppPasswords>,
}

const SETTINGS: &str = "require-reregistration, revoke-sessions-before, \
    revoke-trusted-devices-before, reset-password-before, app-passwords";

impl TryFrom<RawEntry> for Entry {
    type Error = String;
    fn try_from(r: RawEntry) -> Result<Entry, String> {
        let mut selectors = Vec::new();
        if let Some(users) = texts(r.users) {
            if users.is_empty() {
                return Err("`users` is empty: list at least one user, or remove the entry".into());
            }
            selectors.push(Selector::Users(users));
        }
        if let Some(Text(group)) = r.group {
            selectors.push(Selector::Group(group));
        }
        match r.all_users {
            Some(true) => selectors.push(Selector::AllUsers),
            Some(false) => {
                return Err("`all-users` can only be `true`; to select fewer users use \
                            `users` or `group`"
                    .into())
            }
            None => {}
        }
        let selector = match selectors.len() {
            1 => selectors.remove(0),
            0 => {
                return Err(
                    "entry has no selector: give exactly one of `users`, `group`, \
                            `all-users`"
                        .into(),
                )
            }
            _ => {
                return Err(
                    "entry has more than one selector: give exactly one of `users`, \
                            `group`, `all-users` (split it into several entries)"
                        .into(),
                )
            }
        };
        let settings = Settings {
            require_reregistration: r.require_reregistration,
            revoke_sessions_before: r.revoke_sessions_before,
            revoke_trusted_devices_before: r.revoke_trusted_devices_before,
            reset_password_before: r.reset_password_before,
            app_passwords_none: r.app_passwords == Some(AppPasswords::None),
        };
        if settings.is_empty() {
            return Err(format!(
                "entry sets nothing: add at least one of {SETTINGS}"
            ));
        }
        Ok(Entry {
            selector,
            except: texts(r.except).unwrap_or_default(),
            settings,
        })
    }
}

/// The schema of an entry is that of the raw entry it is parsed from.
impl JsonSchema for Entry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Entry".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        RawEntry::json_schema(g)
    }
}

/// The manifest JSON Schema (draft 2020-12), generated from the parser's own types.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(RawManifest);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an entry: a mapping with one selector and at least one setting")
            }
            // Validating inside visit_map makes serde_yaml attach this entry's position.
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
                let raw = RawEntry::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Entry::try_from(raw).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses every document of one file. Documents that fail are reported and left out.
pub fn parse_file(file: &SourceFile) -> (Vec<Manifest>, Vec<Problem>) {
    let mut manifests = Vec::new();
    let mut problems = Vec::new();
    let problem = |at: Where, message: String| Problem {
        file: file.path.clone(),
        at,
        message,
    };
    let text = without_bom(&file.text);
    if let Err((line, col, message)) = guard::check_nesting(text) {
        problems.push(Problem {
            file: file.path.clone(),
            at: Where::At { line, col },
            message,
        });
        return (manifests, problems);
    }
    // One document at a time on serde_yaml's single-document path: its multi-document iterator
    // panics after an alias to an unknown anchor (see `documents`).
    for (doc, read) in read_documents::<RawManifest>(text).into_iter().enumerate() {
        let raw = match read {
            Ok(Some(m)) => m,
            Ok(None) => continue, // an empty document, e.g. after a trailing `---`
            Err((e, at)) => {
                problems.push(from_yaml_error(&file.path, &e, &at));
                continue;
            }
        };
        if raw.api_version != API_VERSION {
            problems.push(problem(
                Where::Path {
                    doc,
                    path: vec![Seg::key("apiVersion")],
                },
                format!(
                    "apiVersion is `{}`; this mfactl reads `{API_VERSION}`",
                    crate::util::escape_text(&raw.api_version)
                ),
            ));
            continue;
        }
        if raw.kind != KIND {
            problems.push(problem(
                Where::Path {
                    doc,
                    path: vec![Seg::key("kind")],
                },
                format!(
                    "kind is `{}`; expected `{KIND}`",
                    crate::util::escape_text(&raw.kind)
                ),
            ));
            continue;
        }
        let (name, description) = (raw.metadata.name.0, raw.metadata.description.map(|t| t.0));
        if name.trim().is_empty() {
            problems.push(problem(
                Where::Path {
                    doc,
                    path: vec![Seg::key("metadata"), Seg::key("name")],
                },
                "metadata.name is empty: every manifest needs a unique name".into(),
            ));
            continue;
        }
        manifests.push(Manifest {
            name,
            description,
            file: file.path.clone(),
            doc,
            entries: raw.spec,
        });
    }
    (manifests, problems)
}

/// A document that could not be read: serde_yaml's error, and the document its position is
/// relative to.
pub type Unread<'a> = (serde_yaml::Error, documents::Document<'a>);

/// Every document of `text` as a `T` (`None` for an empty one), each on serde_yaml's
/// single-document path, in order. After an error that the stream cannot be read past (an
/// unclosed quoted scalar or flow collection running into the next `---`), nothing more is read.
pub fn read_documents<T: DeserializeOwned>(text: &str) -> Vec<Result<Option<T>, Unread<'_>>> {
    let mut docs = documents::split(text);
    let mut out = Vec::with_capacity(docs.len());
    for doc in 0..docs.len() {
        match read(text, &mut docs, doc) {
            Ok(t) => out.push(Ok(t)),
            Err((e, at, stop)) => {
                out.push(Err((e, at)));
                if stop {
                    break;
                }
            }
        }
    }
    out
}

/// An error with the document its position is relative to, and whether reading stops there.
type Failed<'a> = (serde_yaml::Error, documents::Document<'a>, bool);

/// Reads document `doc` of `docs` (the split of `text`), moving the directives at its end to the
/// next document when they are directives.
fn read<'a, T: DeserializeOwned>(
    text: &'a str,
    docs: &mut [documents::Document<'a>],
    doc: usize,
) -> Result<Option<T>, Failed<'a>> {
    // Straight from the text (no intermediate Value), so every error keeps its position and
    // a plain scalar such as `name: 2026` reads as the string it is meant to be.
    let part = docs[doc];
    let e = match serde_yaml::from_str::<Option<T>>(part.text) {
        Ok(m) => return Ok(m),
        Err(e) => explained(part.text, e),
    };
    let Some(&next) = docs.get(doc + 1) else {
        return Err((e, part, false));
    };
    // Only an error past the document's last line says that the cut left something open.
    let lines = next.line - part.line;
    if e.location().is_none_or(|l| l.line() <= lines) {
        return Err((e, part, false));
    }
    if let Some((cut, cut_line)) = part.tail {
        // Directives without their `---`: they belong to the next document.
        let shorter = documents::Document {
            text: &text[part.offset..cut],
            tail: None,
            ..part
        };
        docs[doc] = shorter;
        docs[doc + 1] = documents::Document {
            text: &text[cut..next.offset + next.text.len()],
            line: cut_line,
            offset: cut,
            tail: next.tail,
        };
        return serde_yaml::from_str::<Option<T>>(shorter.text)
            .map_err(|e| (explained(shorter.text, e), shorter, false));
    }
    // A quoted scalar or a flow collection left open across the next `---`: the stream cannot
    // be read past it. Report libyaml's error in the whole stream there, and stop, as it does.
    let rest = documents::Document {
        text: &text[part.offset..],
        ..part
    };
    let whole = serde_yaml::from_str::<Option<T>>(rest.text).err();
    Err((whole.map_or(e, |w| explained(rest.text, w)), rest, true))
}

/// serde_yaml's "more than one document" for a document that reads well but is followed by what
/// starts no document (after `...` a document must start with `---`, and so must directives):
/// libyaml's error there instead. The multi-document iterator is safe here: it panics only after
/// a document that failed to load, and the first one loaded.
fn explained(text: &str, e: serde_yaml::Error) -> serde_yaml::Error {
    if e.location().is_some() || !e.to_string().contains("more than one document") {
        return e;
    }
    let second = || {
        let mut docs = serde_yaml::Deserializer::from_str(text);
        Option::<de::IgnoredAny>::deserialize(docs.next()?).ok()?;
        Option::<de::IgnoredAny>::deserialize(docs.next()?).err()
    };
    second().unwrap_or(e)
}

/// The text without the byte-order mark an editor may have put first (libyaml skips it too).
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Turns a serde_yaml error in document `doc` into a problem at the parser's position in the
/// whole file, without its " at line …" tail.
fn from_yaml_error(file: &str, e: &serde_yaml::Error, doc: &documents::Document) -> Problem {
    let text = e.to_string();
    let (at, message) = match e.location() {
        // libyaml's reader places its errors (a control character) by byte, not by mark.
        Some(loc) if loc.line() == 1 && loc.column() == 1 && at_position(&text).is_some() => {
            let (i, pos) = at_position(&text).unwrap_or((text.len(), 0));
            let (line, col) = documents::position(doc.text, pos);
            (
                Where::At {
                    line: line + doc.line,
                    col,
                },
                text[..i].to_string(),
            )
        }
        Some(loc) => {
            let tail = format!(" at line {} column {}", loc.line(), loc.column());
            let msg = match text.rfind(&tail) {
                Some(i) => format!("{}{}", &text[..i], &text[i + tail.len()..]),
                None => text.clone(),
            };
            (
                Where::At {
                    line: loc.line() + doc.line,
                    col: loc.column(),
                },
                shift_lines(&msg, doc.line),
            )
        }
        None => (
            Where::At {
                line: doc.line + 1,
                col: 1,
            },
            text,
        ),
    };
    let message = crate::util::escape_text(&message).into_owned();
    let message = message
        .strip_prefix(".: ")
        .map(str::to_string)
        .unwrap_or(message);
    Problem {
        file: file.to_string(),
        at,
        message,
    }
}

/// Where a trailing " at position N" starts in `message`, and N.
fn at_position(message: &str) -> Option<(usize, usize)> {
    let i = message.rfind(" at position ")?;
    let n = message[i + " at position ".len()..].parse().ok()?;
    Some((i, n))
}

/// Adds `lines` to the "line N" of a trailing " at line N column M": libyaml names the construct
/// it was reading after its problem (", while parsing a block mapping at line 3 column 1").
fn shift_lines(message: &str, lines: usize) -> String {
    let shifted = || {
        let i = message.rfind(" at line ")?;
        let (n, col) = message[i + " at line ".len()..].split_once(" column ")?;
        if !col.bytes().all(|b| b.is_ascii_digit()) || col.is_empty() {
            return None;
        }
        let n: usize = n.parse().ok()?;
        Some(format!(
            "{} at line {} column {col}",
            &message[..i],
            n + lines
        ))
    };
    match lines {
        0 => message.to_string(),
        _ => shifted().unwrap_or_else(|| message.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Manifest>, Vec<Located>) {
        let f = SourceFile {
            path: "m.yaml".into(),
            text: text.into(),
        };
        let (m, p) = parse_file(&f);
        (m, locate_all(p, &[f]))
    }

    const HEAD: &str = "apiVersion: mfactl/v1\nkind: UserSettings\nmetadata: {name: a}\nspec:\n";

    #[test]
    fn parses_every_selector_and_setting() {
        let (m, p) = parse(&format!(
            "{HEAD}  - users: [a@x]\n    app-passwords: none\n    require-reregistration: 2026-01-01\n\
             \x20 - group: g\n    except: [b@x]\n    revoke-sessions-before: 2026-01-01T00:00:00Z\n\
             \x20 - all-users: true\n    revoke-trusted-devices-before: 2026-01-01\n    reset-password-before: 2026-01-02\n"
        ));
        assert!(p.is_empty(), "{p:?}");
        let e = &m[0].entries;
        assert_eq!(e[0].selector, Selector::Users(vec!["a@x".into()]));
        assert!(e[0].settings.app_passwords_none);
        assert_eq!(e[1].selector, Selector::Group("g".into()));
        assert_eq!(e[1].except, vec!["b@x".to_string()]);
        assert_eq!(e[2].selector, Selector::AllUsers);
        assert!(e[2].settings.reset_password_before.is_some());
    }

    #[test]
    fn entry_errors_point_at_the_entry() {
        let (_, p) = parse(&format!(
            "{HEAD}  - users: [a@x]\n    group: g\n    app-passwords: none\n"
        ));
        assert_eq!((p[0].line, p[0].col), (5, 5), "{p:?}");
        assert!(p[0].message.contains("more than one selector"), "{p:?}");
    }

    #[test]
    fn unknown_keys_are_named_with_the_accepted_ones() {
        let (_, p) = parse(&format!(
            "{HEAD}  - users: [a@x]\n    revoke-session-before: 2026-01-01\n"
        ));
        assert_eq!(p[0].line, 6, "{p:?}");
        assert!(p[0].message.contains("revoke-session-before"), "{p:?}");
        assert!(p[0].message.contains("revoke-sessions-before"), "{p:?}");
    }

    #[test]
    fn a_flag_is_not_a_timestamp() {
        let (_, p) = parse(&format!(
            "{HEAD}  - users: [a@x]\n    require-reregistration: true\n"
        ));
        assert_eq!(p[0].line, 6, "{p:?}");
        assert!(p[0].message.contains("timestamp"), "{p:?}");
    }

    #[test]
    fn wrong_api_version_is_located() {
        let (_, p) = parse("apiVersion: v2\nkind: UserSettings\nmetadata: {name: a}\nspec: []\n");
        assert_eq!((p[0].line, p[0].col), (1, 13), "{p:?}");
    }

    /// The one-line manifest that panicked serde_yaml's multi-document iterator.
    #[test]
    fn an_alias_to_an_unknown_anchor_is_an_error_in_any_document() {
        let (m, p) = parse("a:\n  b: *x\n");
        assert!(m.is_empty());
        assert_eq!((p[0].line, p[0].col), (1, 1), "{p:?}");
        let text = format!(
            "{HEAD}  - users: *x\n    app-passwords: none\n---\n{HEAD}  - users: *y\n    app-passwords: none\n\
             ---\na:\n  b: *x\n"
        );
        let (_, p) = parse(&text);
        let got: Vec<_> = p
            .iter()
            .map(|p| (p.line, p.col, p.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (5, 12, "unknown anchor"),
                (12, 12, "unknown anchor"),
                (
                    15,
                    1,
                    "unknown field `a`, expected one of `apiVersion`, `kind`, `metadata`, `spec`"
                )
            ]
        );
    }

    /// Shifts every "FILE:LINE" and "at line N column" of a problem by `lines`.
    fn shifted(p: &Located, lines: usize) -> (usize, usize, String) {
        (p.line + lines, p.col, shift_lines(&p.message, lines))
    }

    #[test]
    fn errors_in_a_later_document_are_located_as_in_a_file_of_their_own() {
        let first = format!("{HEAD}  - all-users: true\n    app-passwords: none\n");
        let bad = [
            format!("{HEAD}  - users: [a@x]\n    revoke-session-before: 2026-01-01\n"),
            format!(
                "{HEAD}  - users: [a@x]\n    app-passwords: none\n   revoke-sessions-before: 1\n"
            ),
            format!("{HEAD}  - users: *nobody\n    app-passwords: none\n"),
            format!("{HEAD}  - users: [a@x]\n    app-passwords: \"no\u{1}ne\"\n"),
            format!("{HEAD}  - users: [a@x]\n    require-reregistration: true\n"),
            "apiVersion: v2\nkind: UserSettings\nmetadata: {name: b}\nspec: []\n".to_string(),
            format!("{HEAD}  - users: [a@x]\n    app-passwords: none\n...\nc: 1\n"),
            format!("{HEAD}  - users: [a@x, \n"),
        ];
        for b in &bad {
            let (_, alone) = parse(b);
            assert_eq!(alone.len(), 1, "{b}: {alone:?}");
            // After a first document and its `---` (7 lines); then with a byte-order mark, a
            // comment and CRLF line ends too (8 lines).
            for (prefix, crlf) in [
                (format!("{first}---\n"), false),
                (format!("\u{feff}# c\n{first}---\n"), true),
            ] {
                let text = format!("{prefix}{b}");
                let text = match crlf {
                    true => text.replace('\n', "\r\n"),
                    false => text,
                };
                let (_, after) = parse(&text);
                assert_eq!(after.len(), 1, "{text:?}: {after:?}");
                let after = &after[0];
                assert_eq!(
                    shifted(&alone[0], prefix.matches('\n').count()),
                    (after.line, after.col, after.message.clone()),
                    "{text:?}"
                );
            }
        }
    }

    /// The non-empty documents as serde_yaml's own iterator reads the whole stream, up to its
    /// first error (it may panic after that: the bug `documents` avoids), or `None`.
    fn whole_stream(text: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for de in serde_yaml::Deserializer::from_str(text) {
            if let Some(v) = Option::<serde_yaml::Value>::deserialize(de).ok()? {
                out.push(format!("{v:?}"));
            }
        }
        Some(out)
    }

    /// The same, as mfactl reads them.
    fn by_document(text: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for d in read_documents::<serde_yaml::Value>(text) {
            if let Some(v) = d.ok()? {
                out.push(format!("{v:?}"));
            }
        }
        Some(out)
    }

    #[test]
    fn every_document_form_reads_as_in_the_whole_stream() {
        for text in [
            "a: 1\n---\nb: 2\n",
            "# c\n---\na: 1\n--- # x\nb: 2\n---\n---\n",
            "a: |+\n  x\n\n---\nb: |\n  ---\n  ...\n",
            "--- |\n foo\n---\nbar\n",
            "--- |\nfoo\n---\nbar\n",
            "a: 1\n...\n...\n---\nb: 2\n...\n",
            "a: 1\n...\nb: 2\n",
            "a: 1\n... # end\n# c\n",
            "...\n",
            "a: 1\n%YAML 1.1\n---\nb: 2\n",
            "%YAML 1.1\n%TAG !e! tag:e.example,2000:\n---\na: !e!x 1\n...\n%YAML 1.1\n# c\n\n---\nb: 2\n",
            "a: \"x\n%y\"\n---\nb: 1\n",
            "a: \"x\n%YAML 1.1\n# y\"\n---\nb: 1\n",
            "a: 'x\n%TAG ! y'\n---\nb: 1\n",
            "a: \"x\n---\ny\"\n---\nb: 1\n",
            "a: [1,\n---\n2]\n",
            "a: 1\r---\rb: 2\r\n---\r\nc: 3\u{85}---\u{85}d: 4\u{2028}---\u{2029}e: 5\n",
            "a: 1\n---\tb\n----\n",
            "a: &x 1\nb: *x\n---\nc: *x\n---\nd: 1\n",
            "a:\n  b: *x\n",
            "a: 1\n\u{feff}---\nb: 2\n",
            "a: x\n%y\n---\n",
            "x\n%YAML 1.1\n---\n",
            "--- x\n%TAG ! y\n---\n",
            "",
        ] {
            assert_eq!(by_document(text), whole_stream(text), "{text:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        /// Streams made of markers, directives, comments, block and quoted scalars, flow
        /// collections and anchors read as serde_yaml reads them whole.
        #[test]
        fn any_stream_reads_as_in_the_whole_stream(
            lines in proptest::collection::vec(proptest::sample::select(vec![
                "a: 1", "b: |+", "  x", "", "---", "--- |", "...", "%YAML 1.1", "%TAG ! tag:x,2000:",
                "# c", "c: \"q", "%YAML 1.2 q\"", "# q\"", "d: 'it", "s'", "- [1,", "2]", "e: &x 1",
                "f: *x", "--- &x [1]", "g: *x", "x", " y", "\t", "--- # c", "...x", "%FOO", "h: {",
            ]), 0..14),
            breaks in proptest::collection::vec(proptest::sample::select(vec!["\n", "\r\n", "\r", "\u{85}"]), 14),
        ) {
            let text: String = lines.iter().zip(&breaks).map(|(l, b)| format!("{l}{b}")).collect();
            proptest::prop_assert_eq!(by_document(&text), whole_stream(&text), "{:?}", text);
        }
    }
}
