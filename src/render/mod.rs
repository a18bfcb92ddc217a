//! Renderers: a [`Plan`](crate::plan::Plan) or audit records in, text out. Pure; the shell decides
//! colour once and owns stdout.

pub mod diff;
pub mod json;
pub mod markdown;
pub mod text;

use std::borrow::Cow;

/// Escapes control characters and bidi overrides so that hostile ids cannot recolour, rewrite or
/// reorder a terminal: each becomes a visible `\u{…}`.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        c.is_control()
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
    };
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// ANSI styling, on or off as the shell decided.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_bidi_are_escaped() {
        assert_eq!(
            escape_text("a\x1b[31mb\n\u{202E}"),
            "a\\u{1b}[31mb\\u{a}\\u{202e}"
        );
        assert!(matches!(
            escape_text("alice@contoso.example"),
            Cow::Borrowed(_)
        ));
    }
}
