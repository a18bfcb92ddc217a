//! Manifest parse + validate: any bytes in, located problems or manifests out, never a panic.
//! And the document split reads every stream as serde_yaml's own multi-document reader does,
//! wherever that reader finishes without an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mfactl::manifest::{guard, locate_all, parse_file, read_documents, SourceFile};
use mfactl::model::Timestamp;
use mfactl::policy::Policy;
use serde::Deserialize;

/// The non-empty documents as serde_yaml's iterator reads them, or `None` at its first error
/// (it may panic on the document after one with an unknown anchor, so it stops there).
fn whole_stream(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        match Option::<serde_yaml::Value>::deserialize(de) {
            Ok(Some(v)) => out.push(format!("{v:?}")),
            Ok(None) => {}
            Err(_) => return None,
        }
    }
    Some(out)
}

/// The same, as mfactl reads them: one split document at a time on the single-document path.
fn split(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for d in read_documents::<serde_yaml::Value>(text) {
        if let Some(v) = d.ok()? {
            out.push(format!("{v:?}"));
        }
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = SourceFile { path: "fuzz.yaml".into(), text: text.to_string() };
    let (manifests, mut problems) = parse_file(&file);
    let policy = Policy::defaults();
    problems.extend(mfactl::plan::check_offline(&manifests, &policy, Timestamp::from_unix(1_796_000_000)));
    let actual = mfactl::plan::Actual::default();
    problems.extend(mfactl::plan::check_known(&manifests, &actual));
    let _ = locate_all(problems, &[file]);
    let _ = mfactl::plan::checked_plan(&manifests, &actual, &policy, &mfactl::policy::Actor::None, Timestamp::from_unix(1_796_000_000));

    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if guard::check_nesting(text).is_ok() {
        let (whole, parts) = (whole_stream(text), split(text));
        assert_eq!(whole.is_some(), parts.is_some(), "one reading fails, the other does not: {whole:?} / {parts:?}");
        if let (Some(w), Some(p)) = (whole, parts) {
            assert_eq!(w, p, "the split documents read differently");
        }
    }
});
