//! The per-user record of store layout v2 (`mfactl::store::record`): any bytes under any key
//! decode or are refused with a `Damage` inside the record, never a panic; and a record that
//! decodes is encoded to bytes that decode to the same user, which encode to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mfactl::store::record::{decode, to_bytes, Stored};

/// The store shows a group by the name `groups` gives its key; here every key has a name that
/// differs from it (upper case), and whose key (lower case) has that name again.
fn name(key: &str) -> String {
    key.to_ascii_uppercase()
}

/// What the store does not promise to keep: the order of the secrets (they follow the app
/// passwords, which decode sorted).
fn normalised(mut s: Stored) -> Stored {
    s.secrets.sort();
    s
}

fuzz_target!(|data: &[u8]| {
    // The first byte is the key's length, then the key (as text), then the record.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n).min(rest.len());
    let (key, bytes) = rest.split_at(n);
    let key = String::from_utf8_lossy(key);
    let first = match decode(&key, bytes, name) {
        Ok(s) => s,
        Err(d) => {
            assert_eq!(d.len, bytes.len(), "{d}");
            assert!(d.at <= bytes.len(), "{d}");
            let _ = d.to_string();
            return;
        }
    };
    let encoded = to_bytes(&key, &first);
    let second = decode(&key, &encoded, name)
        .unwrap_or_else(|d| panic!("an encoded record does not decode: {d}\n{encoded:?}"));
    assert_eq!(
        normalised(first.clone()),
        normalised(second.clone()),
        "a record decodes to another user once encoded again"
    );
    assert_eq!(
        to_bytes(&key, &second),
        encoded,
        "encoding is not stable over a round trip"
    );
});
