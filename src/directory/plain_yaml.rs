//! A fast reader for the plain subset of YAML that `store export` and the usual generators write:
//! block mappings and sequences, flow mappings and sequences (over several lines too), comment
//! lines, and plain scalars that can only mean one thing — `true`, `false`, `null`, timestamps
//! `YYYY-MM-DDTHH:MM:SSZ`, and words of letters, digits, `@ . _ -` and inner spaces that start with
//! a letter. Anything else (quotes, escapes, numbers, anchors, tags, block scalars, multi-line
//! plain scalars, duplicate keys, deep nesting, …) gives `None`, and the caller parses with
//! serde_yaml, so every result and every message stays serde_yaml's.
//!
//! serde_yaml reads a directory at about 16 MB/s here; this reads the nodes without copying a
//! string and builds the users from them directly, several times faster.

use crate::model::{AppPassword, Device, Method, Session, Timestamp, User};

/// A node of the subset; strings borrow from the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Str(&'a str),
    Seq(Vec<Node<'a>>),
    /// Keys in order, unique.
    Map(Vec<(&'a str, Node<'a>)>),
}

/// Deeper than this is left to serde_yaml (and to the nesting guard in front of it).
const MAX_DEPTH: usize = 32;

/// The document, when it lies inside the subset.
pub fn parse(text: &str) -> Option<Node<'_>> {
    // ASCII only, and no control character but the line break (YAML refuses some even in
    // comments, which this reader skips unread).
    let refused = |b: &u8| {
        !b.is_ascii()
            || (b.is_ascii_control() && *b != b'\n')
            || matches!(
                b,
                b'"' | b'\'' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'`' | b'\\'
            )
    };
    if text.as_bytes().iter().any(refused) {
        return None;
    }
    let mut lines = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_start_matches(' ').trim_end_matches(['\n', ' ']);
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content.starts_with("---") || content.starts_with("...") {
            return None;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        lines.push(Line {
            indent,
            at: start + indent,
            text: content,
        });
    }
    if lines.is_empty() {
        return None;
    }
    let mut p = Parser {
        text,
        lines,
        next: 0,
    };
    let node = p.node(0, 0)?;
    (p.next == p.lines.len()).then_some(node)
}

/// The users of a document that is a list of users, built as serde would build them from it.
pub fn users(text: &str) -> Option<Vec<User>> {
    match parse(text)? {
        Node::Seq(items) => items.iter().map(user).collect(),
        _ => None,
    }
}

#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    /// Where `text` starts in the document.
    at: usize,
    /// Without the indent and trailing spaces; never empty.
    text: &'a str,
}

struct Parser<'a> {
    text: &'a str,
    lines: Vec<Line<'a>>,
    next: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.next).copied()
    }

    /// The block node starting at the current line, whose indent must be at least `min`.
    fn node(&mut self, min: usize, depth: usize) -> Option<Node<'a>> {
        let line = self.peek()?;
        if line.indent < min || depth > MAX_DEPTH {
            return None;
        }
        if is_item(line.text) {
            self.sequence(line.indent, depth)
        } else if line.text.starts_with(['{', '[']) {
            self.flow(line, line.indent, depth)
        } else if key_of(line.text).is_some() {
            self.mapping(line.indent, depth)
        } else {
            // A scalar alone on its line: fine only if nothing continues it.
            self.next += 1;
            if self.peek().is_some_and(|l| l.indent > line.indent) {
                return None;
            }
            scalar(line.text)
        }
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent || !is_item(line.text) {
                break;
            }
            let rest = line.text[1..].trim_start_matches(' ');
            if rest.is_empty() {
                // `-` alone: the item is the deeper block below.
                self.next += 1;
                items.push(self.node(indent + 1, depth + 1)?);
                continue;
            }
            // The item starts where its text does, as if it were a line of its own.
            let skip = line.text.len() - rest.len();
            self.lines[self.next] = Line {
                indent: indent + skip,
                at: line.at + skip,
                text: rest,
            };
            items.push(self.node(indent + 1, depth + 1)?);
        }
        Some(Node::Seq(items))
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        let mut entries: Vec<(&'a str, Node<'a>)> = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent {
                if line.indent > indent {
                    return None;
                }
                break;
            }
            let (key, rest) = key_of(line.text)?;
            let value = if rest.is_empty() {
                self.next += 1;
                match self.peek() {
                    Some(next) if next.indent > indent => self.node(indent + 1, depth + 1)?,
                    // `key:` then `- item` at the key's own indent is a sequence too.
                    Some(next) if next.indent == indent && is_item(next.text) => {
                        self.sequence(indent, depth + 1)?
                    }
                    _ => Node::Null,
                }
            } else if rest.starts_with(['{', '[']) {
                let skip = line.text.len() - rest.len();
                let at = Line {
                    indent,
                    at: line.at + skip,
                    text: rest,
                };
                self.flow(at, indent, depth + 1)?
            } else {
                self.next += 1;
                if self.peek().is_some_and(|l| l.indent > indent) {
                    return None; // a multi-line plain scalar, or a nested block after a value
                }
                scalar(rest)?
            };
            if entries.iter().any(|(k, _)| *k == key) {
                return None; // a duplicate key: serde_yaml's message, not a silent overwrite
            }
            entries.push((key, value));
        }
        Some(Node::Map(entries))
    }

    /// The flow node at `line` (the current line), which may continue on the following lines if
    /// they lie deeper than `indent`; the lines it spans are consumed.
    fn flow(&mut self, line: Line<'a>, indent: usize, depth: usize) -> Option<Node<'a>> {
        let mut f = Flow {
            s: self.text.as_bytes(),
            i: line.at,
            indent,
        };
        let node = f.value(depth)?;
        // Nothing but spaces may follow on its last line.
        while f.s.get(f.i) == Some(&b' ') {
            f.i += 1;
        }
        if !matches!(f.s.get(f.i), None | Some(b'\n')) {
            return None;
        }
        while self.peek().is_some_and(|l| l.at < f.i) {
            self.next += 1;
        }
        Some(node)
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// `key: rest` or `key:`, with a [`plain_key`].
fn key_of(text: &str) -> Option<(&str, &str)> {
    let colon = text.find(':')?;
    let (key, rest) = (&text[..colon], &text[colon + 1..]);
    if !plain_key(key) || !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some((key, rest.trim_start_matches(' ')))
}

/// A key that can only be a string: a lower-case letter, then lower-case letters, digits and `-`,
/// and not a word some YAML reads as null or a boolean.
fn plain_key(key: &str) -> bool {
    key.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !matches!(
            key,
            "null" | "true" | "false" | "y" | "n" | "yes" | "no" | "on" | "off"
        )
}

/// A plain scalar inside the subset, resolved as serde_yaml resolves it.
fn scalar(s: &str) -> Option<Node<'_>> {
    match s {
        "true" => return Some(Node::Bool(true)),
        "false" => return Some(Node::Bool(false)),
        "null" => return Some(Node::Null),
        _ => {}
    }
    let b = s.as_bytes();
    let word = b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.last() != Some(&b' ')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b'-' | b'_' | b' '))
        // Other spellings of null and the booleans: not ours to resolve.
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "null" | "true" | "false" | "y" | "n" | "yes" | "no" | "on" | "off"
        );
    (word || timestamp(b)).then_some(Node::Str(s))
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn timestamp(b: &[u8]) -> bool {
    const SHAPE: &[u8; 20] = b"0000-00-00T00:00:00Z";
    b.len() == SHAPE.len()
        && b.iter().zip(SHAPE).all(|(c, s)| match s {
            b'0' => c.is_ascii_digit(),
            _ => c == s,
        })
}

/// A flow node read straight from the document; a line break in it folds to a space, and every
/// line it continues on must lie deeper than `indent`.
struct Flow<'s> {
    s: &'s [u8],
    i: usize,
    indent: usize,
}

impl<'s> Flow<'s> {
    /// Skips spaces and line breaks; `None` when a line it continues on is not deep enough, or is
    /// a comment (left to serde_yaml).
    fn space(&mut self) -> Option<()> {
        while let Some(&b) = self.s.get(self.i) {
            match b {
                b' ' => self.i += 1,
                b'\n' => {
                    self.i += 1;
                    let start = self.i;
                    while self.s.get(self.i) == Some(&b' ') {
                        self.i += 1;
                    }
                    let blank = matches!(self.s.get(self.i), None | Some(b'\n'));
                    if !blank && (self.i - start <= self.indent || self.s[self.i] == b'#') {
                        return None;
                    }
                }
                _ => break,
            }
        }
        Some(())
    }

    fn eat(&mut self, b: u8) -> Option<bool> {
        self.space()?;
        let hit = self.s.get(self.i) == Some(&b);
        if hit {
            self.i += 1;
        }
        Some(hit)
    }

    fn value(&mut self, depth: usize) -> Option<Node<'s>> {
        self.space()?;
        if depth > MAX_DEPTH {
            return None;
        }
        match self.s.get(self.i)? {
            b'{' => {
                self.i += 1;
                let mut entries: Vec<(&'s str, Node<'s>)> = Vec::new();
                if self.eat(b'}')? {
                    return Some(Node::Map(entries));
                }
                loop {
                    self.space()?;
                    let key = self.token()?;
                    if !plain_key(key) || !self.eat(b':')? {
                        return None;
                    }
                    let value = self.value(depth + 1)?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        return None;
                    }
                    entries.push((key, value));
                    if self.eat(b'}')? {
                        return Some(Node::Map(entries));
                    }
                    if !self.eat(b',')? {
                        return None;
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                if self.eat(b']')? {
                    return Some(Node::Seq(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if self.eat(b']')? {
                        return Some(Node::Seq(items));
                    }
                    if !self.eat(b',')? {
                        return None;
                    }
                }
            }
            _ => scalar(self.token()?),
        }
    }

    /// A plain scalar up to a flow indicator, a `:` that ends it, or the end of its line.
    /// A scalar that would continue on the next line is refused: that is a multi-line scalar.
    /// As in libyaml, a `:` followed by anything but a blank or a flow indicator belongs to the
    /// scalar, keys included: `{kind:fido2}` has the key `kind:fido2` (which no record has).
    fn token(&mut self) -> Option<&'s str> {
        let s: &'s [u8] = self.s;
        let start = self.i;
        while let Some(&b) = s.get(self.i) {
            let colon_ends = b == b':'
                && matches!(
                    s.get(self.i + 1),
                    None | Some(b' ' | b'\n' | b',' | b']' | b'}')
                );
            if matches!(b, b',' | b']' | b'}' | b'{' | b'[' | b'\n' | b'#') || colon_ends {
                break;
            }
            self.i += 1;
        }
        let token = std::str::from_utf8(&s[start..self.i]).ok()?.trim_end();
        if token.is_empty() || matches!(s.get(self.i), Some(b'{' | b'[' | b'#')) {
            return None;
        }
        if s.get(self.i) == Some(&b'\n') {
            // Only an indicator may follow a line break after a scalar.
            let mut j = self.i;
            while s.get(j).is_some_and(|b| matches!(b, b' ' | b'\n')) {
                j += 1;
            }
            if !matches!(s.get(j), None | Some(b',' | b']' | b'}' | b':')) {
                return None;
            }
        }
        Some(token)
    }
}

/// The fields of a mapping, each at most once and all known (`deny_unknown_fields`).
fn fields<'n, 'a>(node: &'n Node<'a>, known: &[&str]) -> Option<&'n [(&'a str, Node<'a>)]> {
    match node {
        Node::Map(entries) if entries.iter().all(|(k, _)| known.contains(k)) => Some(entries),
        _ => None,
    }
}

fn get<'n, 'a>(entries: &'n [(&'a str, Node<'a>)], key: &str) -> Option<&'n Node<'a>> {
    entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn string(node: &Node) -> Option<String> {
    match node {
        Node::Str(s) => Some((*s).to_string()),
        _ => None,
    }
}

/// A timestamp exactly as its `Deserialize` reads the string.
fn time(node: &Node) -> Option<Timestamp> {
    use serde::de::IntoDeserializer;
    match node {
        Node::Str(s) => {
            let d: serde::de::value::StrDeserializer<serde::de::value::Error> =
                (*s).into_deserializer();
            serde::Deserialize::deserialize(d).ok()
        }
        _ => None,
    }
}

fn list<T>(node: Option<&Node>, each: impl Fn(&Node) -> Option<T>) -> Option<Vec<T>> {
    match node {
        None => Some(Vec::new()),
        Some(Node::Seq(items)) => items.iter().map(each).collect(),
        Some(_) => None,
    }
}

fn optional_time(node: Option<&Node>) -> Option<Option<Timestamp>> {
    match node {
        None | Some(Node::Null) => Some(None),
        Some(n) => time(n).map(Some),
    }
}

fn flag(node: Option<&Node>, default: bool) -> Option<bool> {
    match node {
        None => Some(default),
        Some(Node::Bool(b)) => Some(*b),
        Some(_) => None,
    }
}

/// A user as `User`'s `Deserialize` builds it (defaults for absent fields), or `None` for
/// anything it would refuse, or might read differently.
fn user(node: &Node) -> Option<User> {
    use super::fields::{app_password, device, method, session, user};
    let f = fields(node, &user::ALL)?;
    Some(User {
        id: string(get(f, user::ID)?)?,
        display_name: match get(f, user::DISPLAY_NAME) {
            None => String::new(),
            Some(n) => string(n)?,
        },
        enabled: flag(get(f, user::ENABLED), true)?,
        roles: list(get(f, user::ROLES), string)?,
        groups: list(get(f, user::GROUPS), string)?,
        password_set_at: optional_time(get(f, user::PASSWORD_SET_AT))?,
        must_change_password: flag(get(f, user::MUST_CHANGE_PASSWORD), false)?,
        registration_valid_from: optional_time(get(f, user::REGISTRATION_VALID_FROM))?,
        sessions_valid_from: optional_time(get(f, user::SESSIONS_VALID_FROM))?,
        devices_valid_from: optional_time(get(f, user::DEVICES_VALID_FROM))?,
        methods: list(get(f, user::METHODS), |n| {
            let f = fields(n, &method::ALL)?;
            Some(Method {
                id: string(get(f, method::ID)?)?,
                kind: string(get(f, method::KIND)?)?,
                registered_at: time(get(f, method::REGISTERED_AT)?)?,
            })
        })?,
        sessions: list(get(f, user::SESSIONS), |n| {
            let f = fields(n, &session::ALL)?;
            Some(Session {
                id: string(get(f, session::ID)?)?,
                issued_at: time(get(f, session::ISSUED_AT)?)?,
            })
        })?,
        trusted_devices: list(get(f, user::TRUSTED_DEVICES), |n| {
            let f = fields(n, &device::ALL)?;
            Some(Device {
                id: string(get(f, device::ID)?)?,
                name: string(get(f, device::NAME)?)?,
                remembered_at: time(get(f, device::REMEMBERED_AT)?)?,
            })
        })?,
        app_passwords: list(get(f, user::APP_PASSWORDS), |n| {
            let f = fields(n, &app_password::ALL)?;
            Some(AppPassword {
                id: string(get(f, app_password::ID)?)?,
                name: string(get(f, app_password::NAME)?)?,
                created_at: time(get(f, app_password::CREATED_AT)?)?,
            })
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml::Value;

    /// A node as the serde_yaml value it stands for.
    fn value(n: &Node) -> Value {
        match n {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Str(s) => Value::String((*s).to_string()),
            Node::Seq(items) => Value::Sequence(items.iter().map(value).collect()),
            Node::Map(entries) => Value::Mapping(
                entries
                    .iter()
                    .map(|(k, v)| (Value::String((*k).to_string()), value(v)))
                    .collect(),
            ),
        }
    }

    fn same(text: &str) {
        let fast = parse(text).unwrap_or_else(|| panic!("outside the subset:\n{text}"));
        let slow: Value = serde_yaml::from_str(text).unwrap();
        assert_eq!(value(&fast), slow, "{text}");
    }

    #[test]
    fn block_and_flow_layouts_read_as_serde_yaml_reads_them() {
        same("groups:\n- name: staff\n  role-assignable: true\nusers: []\n");
        same("a:\n  b: [x, y z]\n  c: {d: 2026-11-30T12:00:00Z, e: null}\n");
        same("- {id: a@b.c, groups: [], sessions: [{id: s-1, issued-at: 2026-01-01T00:00:00Z},\n    {id: s-2, issued-at: 2026-01-02T00:00:00Z}]}\n- {id: b}\n");
        same("# comment\nusers:\n  # another\n  - id: a\n    enabled: false\n    roles:\n    - global-administrator\n");
        same("k:\n- - a\n  - b\n-\n  - c\n");
        same("  - {a: b,\n\n      c: [d,\n     e]}\n");
    }

    #[test]
    fn anything_outside_the_subset_is_left_to_serde_yaml() {
        for text in [
            "a: 12\n",
            "a: 'quoted'\n",
            "a: yes\n",
            "a: ~\n",
            "a: b\n  c\n",
            "a: [b\n  c]\n",
            "a: {b: c d\n  e}\n",
            "a: b # comment\n",
            "a: 1.5\n",
            "a: b\na: c\n",
            "a: {b: 1, b: 2}\n",
            "A: b\n",
            "a: &x b\n",
            "--- \na: b\n",
            "a: b:c\n",
            "a: [b, c\n",
            "a: NULL\n",
            "a: True\n",
            "a: 2026-11-30\n",
            "a: .inf\n",
            "1: b\n",
            "null: b\n",
            "a: {1: b}\n",
            "a: [b,\nc]\n",
            "a: [b, # c\n  d]\n",
            "a: [b] c\n",
            // Continued less deep than the item's own text: valid YAML, but not ours.
            "  - {a: b,\n   c: d}\n",
            "- [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[a]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
            // Found by the fuzzer: YAML refuses a NUL even in a comment.
            "#\0id: a@x# The duhods:\n  - id: m1\n",
            "# caf\u{e9}\n- id: a\n",
            // Found by the fuzzer: in a flow mapping `kind:fido2` is one plain scalar (a key),
            // and `a:,` or `a:]` is an error.
            "a: {kind:fido2}\n",
            "a: {id: m-1, kind:fido2}\n",
            "a: {b:[c]}\n",
            "a: {b:, c: d}\n",
            "a: [b:]\n",
        ] {
            assert!(parse(text).is_none(), "{text:?} is not ours to read");
        }
    }

    #[test]
    fn users_are_built_as_serde_builds_them_or_left_to_it() {
        let read = "- {id: a@x, enabled: false, groups: [staff], password-set-at: null,\n    sessions: [{id: s1, issued-at: 2026-01-01T00:00:00Z}]}\n- id: b@x\n";
        let slow: Vec<User> = serde_yaml::from_str(read).unwrap();
        assert_eq!(users(read), Some(slow));
        for refused in [
            "- {id: a, colour: red}\n",
            "- {display-name: no id}\n",
            "- {id: a, enabled: yes-please}\n",
            "- {id: a, sessions: [{id: s1}]}\n",
            "- {id: a, roles: null}\n",
            "- {id: a, password-set-at: soon}\n",
            "- {id: true}\n",
        ] {
            assert_eq!(users(refused), None, "{refused}");
        }
    }
}
