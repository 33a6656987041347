use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A position in the global log: the committing transaction's id and the event's position
/// inside it. Ordered; the tail returns events strictly after a cursor. Opaque to clients,
/// which see it as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    xid: u64,
    position: i64,
}

/// A cursor string that is not one this server produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: expected 32 hexadecimal digits as returned by Cairn")]
pub struct CursorError;

impl Cursor {
    /// Before the first event.
    pub const START: Cursor = Cursor {
        xid: 0,
        position: 0,
    };

    /// A cursor from its parts (transaction id, global position).
    pub const fn new(xid: u64, position: i64) -> Self {
        Self { xid, position }
    }

    /// The committing transaction's id (`xid8`).
    pub const fn xid(&self) -> u64 {
        self.xid
    }

    /// The event's global position.
    pub const fn position(&self) -> i64 {
        self.position
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.xid, self.position as u64)
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CursorError);
        }
        let xid = u64::from_str_radix(&s[..16], 16).map_err(|_| CursorError)?;
        let position = u64::from_str_radix(&s[16..], 16).map_err(|_| CursorError)?;
        let position = i64::try_from(position).map_err(|_| CursorError)?;
        Ok(Self { xid, position })
    }
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders() {
        let c = Cursor::new(7_000_123, 42);
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        assert!(Cursor::new(1, 99) < Cursor::new(2, 1));
        assert!(Cursor::new(2, 1) < Cursor::new(2, 2));
        assert_eq!(Cursor::START.to_string(), "0".repeat(32));
        for bad in ["", "xyz", &"g".repeat(32), &"f".repeat(32), &"0".repeat(31)] {
            assert_eq!(bad.parse::<Cursor>(), Err(CursorError), "{bad}");
        }
    }
}
