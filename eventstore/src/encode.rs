//! The two text encodings Cairn writes in many places, defined once: hex for hashes and
//! digests, RFC 3339 for timestamps. Every crate above this one uses these.

use time::format_description::well_known::iso8601::{self, EncodedConfig};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, UtcOffset};

/// ISO 8601 with the expanded (signed, six-digit) year that RFC 3339 lacks.
const EXPANDED_YEAR: EncodedConfig = iso8601::Config::DEFAULT
    .set_year_is_six_digits(true)
    .encode();

/// `bytes` as lowercase hex digits, two per byte.
pub fn hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(bytes)
}

/// `t` as an RFC 3339 timestamp in UTC, such as `2026-12-03T10:00:00.5Z`: the one timestamp
/// form on Cairn's wire.
///
/// RFC 3339 only has the years 0000 to 9999, and PostgreSQL (like `time`) also stores years
/// before the common era. Such a time is written in ISO 8601's expanded form
/// (`-000001-01-01T00:00:00.000000000Z`) rather than failing or coming out empty.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    t.format(&Rfc3339)
        .or_else(|_| t.format(&Iso8601::<EXPANDED_YEAR>))
        // Display cannot fail; it is only reached if both formats above refuse.
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex([0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex([]), "");
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        assert_eq!(
            rfc3339(datetime!(2026-12-03 10:00:00.5 UTC)),
            "2026-12-03T10:00:00.5Z"
        );
        assert_eq!(
            rfc3339(datetime!(2026-12-03 12:00:00 +02:00)),
            "2026-12-03T10:00:00Z"
        );
    }

    #[test]
    fn a_year_rfc3339_cannot_hold_is_written_expanded_not_dropped() {
        let t = datetime!(-0001-01-01 00:00:00 UTC);
        let text = rfc3339(t);
        assert!(text.starts_with("-000001-01-01T00:00:00"), "{text}");
    }
}
