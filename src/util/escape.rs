//! Escaping of untrusted text (user ids, file names, messages) before it reaches a terminal or a
//! log line.

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
