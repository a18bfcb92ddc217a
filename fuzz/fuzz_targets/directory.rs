//! The `store import` directory format: parse and check, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = mfactl::store::directory_parse("fuzz.yaml", text);
});
