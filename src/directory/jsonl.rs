//! JSON Lines, the bulk form of the directory format: one object a line, the groups first
//! (`{"kind":"group","name":…,"role-assignable":…}`), then the users (`{"kind":"user","id":…}`
//! with the YAML format's user fields). This is the line format; `ops::import` reads a file of
//! them as a stream and `ops::export` writes one.

use crate::model::{Group, User};
use serde::Deserialize;

/// One group as a line (with its newline).
pub fn write_group(out: &mut String, g: &Group) {
    out.push_str("{\"kind\":\"group\",\"name\":");
    out.push_str(&serde_json::Value::from(g.name.as_str()).to_string());
    out.push_str(if g.role_assignable {
        ",\"role-assignable\":true}\n"
    } else {
        ",\"role-assignable\":false}\n"
    });
}

/// One user as a line (with its newline): `kind` first, then the fields in the YAML order.
pub fn write_user(out: &mut String, u: &User) {
    match serde_json::to_string(u) {
        Ok(json) => {
            out.push_str("{\"kind\":\"user\",");
            out.push_str(&json[1..]);
            out.push('\n');
        }
        // A user is plain data: serde_json cannot fail on it.
        Err(_) => out.push_str("{\"kind\":\"user\"}\n"),
    }
}

/// A line of the format, whatever the order of its keys.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Line {
    Group(Group),
    User(Box<User>),
}

/// Parses one line (without its newline); `Err` is the column (0 when serde_json does not know
/// it) and the message. The line may be changed in place.
pub fn parse_line(line: &mut String) -> std::result::Result<Line, (usize, String)> {
    const USER: &str = "{\"kind\":\"user\",";
    const GROUP: &str = "{\"kind\":\"group\",";
    // Lines as export writes them skip serde's buffering of a tagged object: the tag is
    // blanked out (whitespace is valid JSON) and the rest read straight into its type.
    let fast = |line: &mut String, prefix: &str| {
        line.replace_range(
            ..prefix.len(),
            &format!("{}{{", " ".repeat(prefix.len() - 1)),
        );
    };
    let located = |e: serde_json::Error| {
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        (e.column(), crate::util::escape_text(&msg).into_owned())
    };
    if line.starts_with(USER) {
        fast(line, USER);
        return serde_json::from_str::<Box<User>>(line)
            .map(Line::User)
            .map_err(located);
    }
    if line.starts_with(GROUP) {
        fast(line, GROUP);
        return serde_json::from_str::<Group>(line)
            .map(Line::Group)
            .map_err(located);
    }
    serde_json::from_str::<Line>(line).map_err(located)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_as_written_reads_back_whatever_its_key_order() {
        let u: User = serde_yaml::from_str(
            "id: a@x\nroles: [r]\nsessions: [{id: s\"1, issued-at: 2026-01-01T00:00:00Z}]\n",
        )
        .unwrap();
        let mut out = String::new();
        write_user(&mut out, &u);
        assert!(
            out.starts_with("{\"kind\":\"user\",\"id\":\"a@x\""),
            "{out}"
        );
        let mut line = out.trim_end().to_string();
        assert!(matches!(parse_line(&mut line), Ok(Line::User(v)) if *v == u));
        let mut reordered = r#"{"id": "a@x", "kind": "user", "roles": ["r"]}"#.to_string();
        assert!(matches!(parse_line(&mut reordered), Ok(Line::User(v)) if v.roles == ["r"]));
        let g = Group {
            name: "ops".into(),
            role_assignable: true,
        };
        let mut out = String::new();
        write_group(&mut out, &g);
        let mut line = out.trim_end().to_string();
        assert!(matches!(parse_line(&mut line), Ok(Line::Group(v)) if v == g));
        let mut unknown = "{\"kind\":\"user\",\"id\":\"a\",\"colour\":1}".to_string();
        let e = parse_line(&mut unknown).err().unwrap();
        assert!(e.1.contains("unknown field `colour`"), "{e:?}");
        let mut kind = "{\"kind\":\"robot\"}".to_string();
        assert!(parse_line(&mut kind).is_err());
    }
}
