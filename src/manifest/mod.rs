//! Manifests (SPEC §2): parsing YAML documents into typed [`Manifest`]s and locating every problem
//! as `FILE:LINE:COL`. Pure: the shell reads the files and hands in their text.
//!
//! serde_yaml does the parsing, with `deny_unknown_fields` types, so syntax errors, unknown keys and
//! wrong types come located from the parser. Entry-level rules (one selector, at least one setting)
//! are checked inside the entry's deserializer so serde_yaml attaches the entry's position too.
//! Checks that need the store or the clock run later in [`crate::plan`] and are located by path.

pub mod guard;
pub mod locate;

use crate::model::Timestamp;
use locate::Seg;
use schemars::JsonSchema;
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
                    .and_then(|f| locate::locate(&f.text, *doc, path))
                    .unwrap_or((1, 1)),
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

/// A manifest document (SPEC §2). `mfactl schema` is generated from these same types.
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
    let text = file.text.strip_prefix('\u{feff}').unwrap_or(&file.text);
    if let Err((line, col, message)) = guard::check_nesting(text) {
        problems.push(Problem {
            file: file.path.clone(),
            at: Where::At { line, col },
            message,
        });
        return (manifests, problems);
    }
    let mut last_error = String::new();
    for (doc, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        // Straight from the text (no intermediate Value), so every error keeps its position and
        // a plain scalar such as `name: 2026` reads as the string it is meant to be.
        let raw = match Option::<RawManifest>::deserialize(de) {
            Ok(Some(m)) => m,
            Ok(None) => continue, // an empty document, e.g. after a trailing `---`
            Err(e) => {
                let p = from_yaml_error(&file.path, &e);
                if p.message == last_error {
                    break; // a syntax error repeats for every later document
                }
                last_error = p.message.clone();
                problems.push(p);
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
                    crate::render::escape_text(&raw.api_version)
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
                    crate::render::escape_text(&raw.kind)
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

/// Turns a serde_yaml error into a problem at the parser's position, without its " at line …" tail.
fn from_yaml_error(file: &str, e: &serde_yaml::Error) -> Problem {
    let text = e.to_string();
    let (at, message) = match e.location() {
        Some(loc) => {
            let tail = format!(" at line {} column {}", loc.line(), loc.column());
            let msg = match text.find(&tail) {
                Some(i) => format!("{}{}", &text[..i], &text[i + tail.len()..]),
                None => text.clone(),
            };
            (
                Where::At {
                    line: loc.line(),
                    col: loc.column(),
                },
                msg,
            )
        }
        None => (Where::At { line: 1, col: 1 }, text),
    };
    let message = crate::render::escape_text(&message).into_owned();
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
}
