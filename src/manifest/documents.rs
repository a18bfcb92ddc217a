//! Splits a YAML stream into its documents, so that each one is parsed on serde_yaml's
//! single-document path (`serde_yaml::from_str`), which returns every error it finds.
//!
//! serde_yaml's multi-document iterator cannot be used on untrusted text: after a document that
//! aliases an unknown anchor (`b: *x`), it resumes in the middle of that document, and
//! deserializing the next "document" panics ("unexpected end of mapping"). Its forks do the same
//! or repeat the error forever.
//!
//! The split follows libyaml, the parser under serde_yaml. libyaml reads `---` or `...` at column
//! 0, followed by a blank, a line break or the end of the text, as a document marker wherever it
//! stands: a block scalar's content is indented by at least one column, and inside a quoted
//! scalar a marker is an error. So each `---` line starts a document, together with the
//! `%YAML`/`%TAG` directives just before it (comments and blank lines may sit between them). A
//! `...` line ends a document without starting one (only directives or `---` may follow), so it
//! stays in the document it ends, where libyaml refuses whatever else follows it, as it would in
//! the whole stream. Line breaks are libyaml's: `\r\n`, `\r`, `\n`, U+0085, U+2028 and U+2029.

/// One document of a stream: its text and where it starts in the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document<'a> {
    pub text: &'a str,
    /// Line breaks before the document: add it to a line number within the document.
    pub line: usize,
    /// Bytes before the document.
    pub offset: usize,
    /// Where the `%YAML`/`%TAG` lines at its end begin (bytes, then line breaks, before them),
    /// if it ends with some: the next document's directives, or the end of a scalar (see
    /// [`split`]).
    pub tail: Option<(usize, usize)>,
}

/// The documents of `text` in order; their texts add up to `text`. Text before the first `---`
/// (comments, or a document without a marker) is the first document, which may be empty.
///
/// `%YAML`/`%TAG` lines just before a `---` are usually its directives, but a multi-line plain
/// scalar at the top of a document, or a quoted one, may hold such a line as content, and only
/// the parser can tell. They stay with the document before and are marked as its `tail`: the
/// reader moves them to the next document when the parser refuses them where they are.
pub fn split(text: &str) -> Vec<Document<'_>> {
    let b = text.as_bytes();
    let mut docs = Vec::new();
    let (mut start, mut start_line) = (0usize, 0usize);
    // Where the directive-like lines before the next `---` begin, if every line since is one.
    let mut directives: Option<(usize, usize)> = None;
    let (mut at, mut line) = (0usize, 0usize);
    while at < b.len() {
        let (end, next) = line_end(b, at);
        let content = &b[at..end];
        if is_marker(content, b"---") {
            if at > start {
                docs.push(Document {
                    text: &text[start..at],
                    line: start_line,
                    offset: start,
                    tail: directives,
                });
                (start, start_line) = (at, line);
            }
            directives = None;
        } else if is_directive(content) {
            directives.get_or_insert((at, line));
        } else if !is_blank_or_comment(content) {
            directives = None;
        }
        if next > end {
            line += 1;
        }
        at = next;
    }
    docs.push(Document {
        text: &text[start..],
        line: start_line,
        offset: start,
        tail: None,
    });
    docs
}

/// The 1-based line and column (in characters) of byte `pos` of `text`, as libyaml counts them.
pub fn position(text: &str, pos: usize) -> (usize, usize) {
    let b = text.as_bytes();
    let pos = pos.min(b.len());
    let (mut at, mut line) = (0usize, 1usize);
    loop {
        let (end, next) = line_end(b, at);
        if pos < next || next == end {
            let mut upto = pos.min(end);
            while !text.is_char_boundary(upto) {
                upto -= 1;
            }
            return (line, text[at..upto].chars().count() + 1);
        }
        line += 1;
        at = next;
    }
}

/// Where the line starting at `at` ends, and where the next one starts (after its line break).
fn line_end(b: &[u8], at: usize) -> (usize, usize) {
    let mut i = at;
    while i < b.len() {
        match b[i] {
            b'\n' => return (i, i + 1),
            b'\r' if b.get(i + 1) == Some(&b'\n') => return (i, i + 2),
            b'\r' => return (i, i + 1),
            0xC2 if b.get(i + 1) == Some(&0x85) => return (i, i + 2),
            0xE2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xA8 | 0xA9)) => {
                return (i, i + 3)
            }
            _ => i += 1,
        }
    }
    (b.len(), b.len())
}

/// `---` or `...` alone or followed by a blank (a line never holds its line break).
fn is_marker(line: &[u8], marker: &[u8; 3]) -> bool {
    line.starts_with(marker) && matches!(line.get(3), None | Some(b' ' | b'\t' | b'\0'))
}

/// A `%YAML` or `%TAG` directive; libyaml refuses any other name wherever it stands.
fn is_directive(line: &[u8]) -> bool {
    [&b"%YAML"[..], b"%TAG"]
        .iter()
        .any(|name| line.starts_with(name) && matches!(line.get(name.len()), Some(b' ' | b'\t')))
}

fn is_blank_or_comment(line: &[u8]) -> bool {
    match line.iter().position(|c| !matches!(c, b' ' | b'\t')) {
        None => true,
        Some(i) => line[i] == b'#',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<(&str, usize)> {
        split(text).into_iter().map(|d| (d.text, d.line)).collect()
    }

    #[test]
    fn splits_at_document_start_markers_only() {
        assert_eq!(texts("a: 1\n"), [("a: 1\n", 0)]);
        assert_eq!(texts(""), [("", 0)]);
        assert_eq!(
            texts("# c\n---\na: 1\n--- # x\nb: 2\n---\n"),
            [
                ("# c\n", 0),
                ("---\na: 1\n", 1),
                ("--- # x\nb: 2\n", 3),
                ("---\n", 5)
            ]
        );
        // Not markers: indented, longer, or followed by something other than a blank.
        assert_eq!(texts("a: |\n  ---\nb: ----\n---x\n").len(), 1);
        // `...` ends a document but starts none: libyaml refuses a bare document after it.
        assert_eq!(texts("a: 1\n...\nb: 2\n").len(), 1);
    }

    #[test]
    fn directive_lines_before_a_marker_are_marked_as_a_tail() {
        let d = split("a: 1\n...\n# c\n%YAML 1.1\n\n%TAG ! tag:x,2000:\n---\nb: 2\n");
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0].text,
            "a: 1\n...\n# c\n%YAML 1.1\n\n%TAG ! tag:x,2000:\n"
        );
        assert_eq!(d[0].tail, Some((13, 3)));
        assert_eq!(d[1].tail, None);
        // Not when something else stands between them and the marker.
        assert_eq!(split("%YAML 1.1\nx\n---\n")[0].tail, None);
    }

    #[test]
    fn counts_every_line_break_libyaml_counts() {
        let t = "a: 1\r\n---\rb: 2\u{85}---\u{2028}c\u{2029}---\n";
        let d = split(t);
        assert_eq!(d.iter().map(|d| d.line).collect::<Vec<_>>(), [0, 1, 3, 5]);
        assert_eq!(d.iter().map(|d| d.text).collect::<String>(), t);
        assert_eq!(position(t, t.find('b').unwrap()), (3, 1));
        assert_eq!(position("a: é\u{1}", 5), (1, 5));
        assert_eq!(position("a\n", 99), (2, 1));
    }
}
