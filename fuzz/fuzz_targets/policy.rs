//! roles.yaml and guardrails.yaml: the input is split at the first NUL into the two files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (roles, guardrails) = text.split_once('\0').unwrap_or((text, ""));
    let _ = mfactl::policy::Policy::parse("roles.yaml", roles, "guardrails.yaml", guardrails);
});
