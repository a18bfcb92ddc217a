//! One line of the JSON Lines directory format: parsed or refused with a message, never a panic;
//! and a user or group that parses is written back as a line that parses to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mfactl::directory::jsonl::{parse_line, write_group, write_user, Line};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut line = text.to_string();
    let Ok(parsed) = parse_line(&mut line) else { return };
    let mut out = String::new();
    match &parsed {
        Line::User(u) => write_user(&mut out, u),
        Line::Group(g) => write_group(&mut out, g),
    }
    let mut again = out.trim_end_matches('\n').to_string();
    match (parsed, parse_line(&mut again)) {
        (Line::User(a), Ok(Line::User(b))) => assert_eq!(a, b),
        (Line::Group(a), Ok(Line::Group(b))) => assert_eq!(a, b),
        (_, other) => panic!("a written line does not read back: {out:?} → {other:?}"),
    }
});
