//! The one timestamp formatter: seconds since the epoch as RFC 3339 in UTC,
//! `YYYY-MM-DDTHH:MM:SSZ`, through the `time` crate. Plans, exports and the audit log print
//! millions of these, so the common case is 20 bytes written at once.

use std::fmt;

/// Seconds since the epoch, displayed as `YYYY-MM-DDTHH:MM:SSZ` (a year outside 0..=9999 keeps
/// its sign and digits; an instant `time` cannot represent prints as `@SECONDS`).
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub i64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = bytes(self.0) {
            return f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?);
        }
        match time::OffsetDateTime::from_unix_timestamp(self.0) {
            Ok(t) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

/// The 20 bytes of `YYYY-MM-DDTHH:MM:SSZ`, or `None` for a year outside 0..=9999 (which does
/// not fit them) and for instants `time` cannot represent.
pub fn bytes(secs: i64) -> Option<[u8; 20]> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let mut b = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, u32::from(u8::from(t.month())));
    put(8, 2, u32::from(t.day()));
    put(11, 2, u32::from(t.hour()));
    put(14, 2, u32::from(t.minute()));
    put(17, 2, u32::from(t.second()));
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_seconds_across_the_years_time_can_hold() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Rfc3339(1_700_000_000).to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(Rfc3339(-1).to_string(), "1969-12-31T23:59:59Z");
        // 0999-12-31T23:59:59Z and 9999-12-31T23:59:59Z: four digits, zero-padded.
        assert_eq!(Rfc3339(-30_610_224_001).to_string(), "0999-12-31T23:59:59Z");
        assert_eq!(Rfc3339(253_402_300_799).to_string(), "9999-12-31T23:59:59Z");
        assert!(bytes(253_402_300_800).is_none());
        assert_eq!(Rfc3339(i64::MAX).to_string(), format!("@{}", i64::MAX));
    }

    #[test]
    fn agrees_with_the_time_crates_own_rfc3339_across_the_years() {
        use time::format_description::well_known::Rfc3339 as Wk;
        for secs in (-60_000_000_000i64..250_000_000_000).step_by(86_399 * 997) {
            let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
            assert_eq!(Rfc3339(secs).to_string(), t.format(&Wk).unwrap(), "{secs}");
        }
    }
}
