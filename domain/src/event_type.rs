//! An event's stored `event_type`, read from its serde `type` tag, so that each name is written
//! once: in the variant's `#[serde(rename = "noun.verb")]`.
//!
//! Every event enum here is internally tagged (`#[serde(tag = "type")]`) with struct (or unit)
//! variants. serde writes such a variant as a struct whose first field is the tag, so
//! [`tag_of`] serializes into a [`TagReader`] that keeps that first field and stops: nothing
//! else is serialized, and nothing is allocated but the name.

use std::fmt;

use serde::ser::{self, Impossible, Serialize, SerializeStruct, Serializer};

/// The serde tag field of every event enum.
const TAG: &str = "type";

/// The `type` tag `event` serializes with.
///
/// # Panics
///
/// If `E` is not an internally tagged enum with the tag `type`: a programming error that the
/// pinned-JSON test of each aggregate (every variant, serialized) would show at once.
pub(crate) fn tag_of<E: Serialize>(event: &E) -> String {
    match event.serialize(TagReader) {
        Err(Stop::Tag(tag)) => tag,
        Err(Stop::NotTagged(what)) => panic!(
            "{} is not an internally tagged event enum (`#[serde(tag = \"type\")]`): {what}",
            std::any::type_name::<E>()
        ),
        Ok(never) => match never {},
    }
}

/// Why [`TagReader`] stopped: it always stops, with the tag when it found one.
#[derive(Debug)]
enum Stop {
    Tag(String),
    NotTagged(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(tag) => write!(f, "tag {tag}"),
            Self::NotTagged(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::NotTagged(msg.to_string())
    }
}

/// The uninhabited success of a [`TagReader`].
enum Never {}

/// Serializes nothing: reads the tag field and stops.
struct TagReader;

/// Reads the tag's value, which serde passes as a string.
struct TagValue;

fn not_tagged<T>(what: &str) -> Result<T, Stop> {
    Err(Stop::NotTagged(format!("serialized as {what}")))
}

impl SerializeStruct for TagReader {
    type Ok = Never;
    type Error = Stop;

    /// The first field of an internally tagged variant is its tag: anything else means `E`
    /// is not one.
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        if key != TAG {
            return not_tagged(&format!("a struct whose first field is `{key}`"));
        }
        match value.serialize(TagValue) {
            Err(stop) => Err(stop),
            Ok(never) => match never {},
        }
    }

    fn end(self) -> Result<Never, Stop> {
        not_tagged("a struct without fields")
    }
}

/// Everything but `serialize_struct` means "not an internally tagged enum of struct or unit
/// variants"; `$name` is what it was serialized as instead.
macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ok:ty: $name:literal;)*) => {
        $(
            fn $method(self, $(_: $arg),*) -> Result<$ok, Stop> {
                not_tagged($name)
            }
        )*
    };
}

impl Serializer for TagReader {
    type Ok = Never;
    type Error = Stop;
    type SerializeSeq = Impossible<Never, Stop>;
    type SerializeTuple = Impossible<Never, Stop>;
    type SerializeTupleStruct = Impossible<Never, Stop>;
    type SerializeTupleVariant = Impossible<Never, Stop>;
    type SerializeMap = Impossible<Never, Stop>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<Never, Stop>;

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<Never, Stop> {
        not_tagged("an option")
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _value: &T,
    ) -> Result<Never, Stop> {
        not_tagged("a newtype struct")
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<Never, Stop> {
        not_tagged("an externally tagged variant")
    }

    refuse! {
        serialize_bool(bool) -> Never: "a bool";
        serialize_i8(i8) -> Never: "a number";
        serialize_i16(i16) -> Never: "a number";
        serialize_i32(i32) -> Never: "a number";
        serialize_i64(i64) -> Never: "a number";
        serialize_u8(u8) -> Never: "a number";
        serialize_u16(u16) -> Never: "a number";
        serialize_u32(u32) -> Never: "a number";
        serialize_u64(u64) -> Never: "a number";
        serialize_f32(f32) -> Never: "a number";
        serialize_f64(f64) -> Never: "a number";
        serialize_char(char) -> Never: "a char";
        serialize_str(&str) -> Never: "a string";
        serialize_bytes(&[u8]) -> Never: "bytes";
        serialize_none() -> Never: "an option";
        serialize_unit() -> Never: "a unit";
        serialize_unit_struct(&'static str) -> Never: "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) -> Never: "an externally tagged unit variant";
        serialize_seq(Option<usize>) -> Self::SerializeSeq: "a sequence";
        serialize_map(Option<usize>) -> Self::SerializeMap: "a map";
        serialize_tuple(usize) -> Self::SerializeTuple: "a tuple";
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct: "a tuple struct";
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant: "an externally tagged variant";
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant: "an externally tagged variant";
    }
}

impl Serializer for TagValue {
    type Ok = Never;
    type Error = Stop;
    type SerializeSeq = Impossible<Never, Stop>;
    type SerializeTuple = Impossible<Never, Stop>;
    type SerializeTupleStruct = Impossible<Never, Stop>;
    type SerializeTupleVariant = Impossible<Never, Stop>;
    type SerializeMap = Impossible<Never, Stop>;
    type SerializeStruct = Impossible<Never, Stop>;
    type SerializeStructVariant = Impossible<Never, Stop>;

    fn serialize_str(self, v: &str) -> Result<Never, Stop> {
        Err(Stop::Tag(v.to_owned()))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<Never, Stop> {
        not_tagged("a tag that is an option")
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _value: &T,
    ) -> Result<Never, Stop> {
        not_tagged("a tag that is a newtype")
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<Never, Stop> {
        not_tagged("a tag that is a variant")
    }

    refuse! {
        serialize_bool(bool) -> Never: "a tag that is not a string";
        serialize_i8(i8) -> Never: "a tag that is not a string";
        serialize_i16(i16) -> Never: "a tag that is not a string";
        serialize_i32(i32) -> Never: "a tag that is not a string";
        serialize_i64(i64) -> Never: "a tag that is not a string";
        serialize_u8(u8) -> Never: "a tag that is not a string";
        serialize_u16(u16) -> Never: "a tag that is not a string";
        serialize_u32(u32) -> Never: "a tag that is not a string";
        serialize_u64(u64) -> Never: "a tag that is not a string";
        serialize_f32(f32) -> Never: "a tag that is not a string";
        serialize_f64(f64) -> Never: "a tag that is not a string";
        serialize_char(char) -> Never: "a tag that is not a string";
        serialize_bytes(&[u8]) -> Never: "a tag that is not a string";
        serialize_none() -> Never: "a tag that is not a string";
        serialize_unit() -> Never: "a tag that is not a string";
        serialize_unit_struct(&'static str) -> Never: "a tag that is not a string";
        serialize_unit_variant(&'static str, u32, &'static str) -> Never: "a tag that is not a string";
        serialize_seq(Option<usize>) -> Self::SerializeSeq: "a tag that is not a string";
        serialize_tuple(usize) -> Self::SerializeTuple: "a tag that is not a string";
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct: "a tag that is not a string";
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant: "a tag that is not a string";
        serialize_map(Option<usize>) -> Self::SerializeMap: "a tag that is not a string";
        serialize_struct(&'static str, usize) -> Self::SerializeStruct: "a tag that is not a string";
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant: "a tag that is not a string";
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::tag_of;

    #[derive(Serialize)]
    #[serde(tag = "type")]
    enum Tagged {
        #[serde(rename = "thing.made")]
        Made { size: u32 },
        #[serde(rename = "thing.gone")]
        Gone {},
        #[serde(rename = "thing.unit")]
        Unit,
    }

    #[test]
    fn reads_the_tag_of_every_kind_of_variant() {
        assert_eq!(tag_of(&Tagged::Made { size: 3 }), "thing.made");
        assert_eq!(tag_of(&Tagged::Gone {}), "thing.gone");
        assert_eq!(tag_of(&Tagged::Unit), "thing.unit");
    }

    #[derive(Serialize)]
    enum External {
        Made { size: u32 },
    }

    #[test]
    #[should_panic(expected = "not an internally tagged event enum")]
    fn an_enum_without_the_tag_is_a_programming_error() {
        tag_of(&External::Made { size: 3 });
    }
}
