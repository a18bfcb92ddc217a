//! The `store import` directory format: parse and check, never a panic; and the fast reader of
//! plain YAML either declines a document or reads exactly the users serde_yaml reads.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = mfactl::directory::parse("fuzz.yaml", text);
    if let Some(fast) = mfactl::directory::plain_yaml::users(text) {
        let slow: Result<Vec<mfactl::model::User>, _> = serde_yaml::from_str(text);
        assert_eq!(Some(fast), slow.ok(), "the plain reader disagrees with serde_yaml");
    }
});
