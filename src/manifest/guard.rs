//! A cheap scan before any YAML parser sees a document: deeply nested input makes YAML parsers
//! slow (100,000 nested `[` take libyaml half a minute) or recursive, so it is refused up front.

/// Deeper than any manifest, directory or policy file needs.
pub const MAX_DEPTH: usize = 128;

/// `Err((line, col, message))` when flow collections nest deeper than [`MAX_DEPTH`] or lines are
/// indented deeper than block nesting at that depth would need. Quoted strings and comments are
/// skipped; a bracket inside a block scalar may count, which only matters past the limit.
pub fn check_nesting(text: &str) -> Result<(), (usize, usize, String)> {
    let mut depth = 0usize;
    let (mut line, mut col) = (1usize, 0usize);
    let mut at_line_start = true;
    let mut indent = 0usize;
    let mut chars = text.chars().peekable();
    let mut prev = '\n';
    while let Some(c) = chars.next() {
        col += 1;
        if c == '\n' {
            line += 1;
            col = 0;
            at_line_start = true;
            indent = 0;
            prev = c;
            continue;
        }
        if at_line_start {
            if c == ' ' {
                indent += 1;
                if indent > MAX_DEPTH * 8 {
                    return Err((
                        line,
                        col,
                        format!(
                            "indented deeper than {} columns; refusing to parse",
                            MAX_DEPTH * 8
                        ),
                    ));
                }
                prev = c;
                continue;
            }
            at_line_start = false;
        }
        match c {
            '#' if prev.is_whitespace() => {
                // A comment: skip to the end of the line.
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            '"' | '\'' if prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':' | '-') => {
                let quote = c;
                while let Some(n) = chars.next() {
                    col += 1;
                    if n == '\n' {
                        line += 1;
                        col = 0;
                    } else if quote == '"' && n == '\\' {
                        chars.next();
                        col += 1;
                    } else if n == quote {
                        if quote == '\'' && chars.peek() == Some(&'\'') {
                            chars.next();
                            col += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err((
                        line,
                        col,
                        format!("nested deeper than {MAX_DEPTH} levels; refusing to parse"),
                    ));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_documents_pass_and_deep_ones_are_located() {
        assert!(check_nesting("a: [1, [2, {b: \"[[[[\"}]]  # [[[[\n").is_ok());
        let deep = format!("spec: {}", "[".repeat(MAX_DEPTH + 1));
        assert_eq!(check_nesting(&deep).unwrap_err().0, 1);
        assert!(check_nesting(&format!(
            "x: {}{}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        ))
        .is_ok());
    }
}
