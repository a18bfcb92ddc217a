//! The PostgreSQL store URL and password-file reader (`mfactl::store::postgres`): any text is
//! parsed or refused with a sentence, never a panic; and the URL as messages show it
//! ([`redact`]) holds no password that a parse could find again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mfactl::store::postgres::{parsed_parts, pgpass_line, redact};

fuzz_target!(|data: &[u8]| {
    // No password from the environment or a password file: what parse finds is the URL's.
    std::env::remove_var("PGPASSWORD");
    std::env::set_var("PGPASSFILE", "/nonexistent/mfactl-fuzz-pgpass");
    let text = String::from_utf8_lossy(data);
    for url in [
        text.to_string(),
        format!("postgres://{text}"),
        format!("postgresql://u:{text}@h/db"),
    ] {
        let shown = redact(&url);
        assert_eq!(redact(&shown), shown, "redact is not idempotent on {url:?}");
        if let Ok((.., Some(password))) = parsed_parts(&url) {
            if let Ok((.., again)) = parsed_parts(&shown) {
                assert!(
                    again.is_none(),
                    "{url:?} shows as {shown:?}, which still carries password {password:?}"
                );
            }
        }
    }
    let fields = pgpass_line(&text);
    assert!(!fields.is_empty() && fields.len() <= 5);
});
