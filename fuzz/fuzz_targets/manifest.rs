//! Manifest parse + validate: any bytes in, located problems or manifests out, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mfactl::manifest::{locate_all, parse_file, SourceFile};
use mfactl::model::Timestamp;
use mfactl::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = SourceFile { path: "fuzz.yaml".into(), text: text.to_string() };
    let (manifests, mut problems) = parse_file(&file);
    let policy = Policy::defaults();
    problems.extend(mfactl::plan::check_offline(&manifests, &policy, Timestamp::from_unix(1_796_000_000)));
    let actual = mfactl::plan::Actual::default();
    problems.extend(mfactl::plan::check_known(&manifests, &actual));
    let _ = locate_all(problems, &[file]);
    let _ = mfactl::plan::plan(&manifests, &actual, &policy, &mfactl::policy::Actor::None, Timestamp::from_unix(1_796_000_000));
});
