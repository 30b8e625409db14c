//! An event's argument as the client wrote it, checked as far as a `Value` would have been.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::FramingError;

/// An event's argument as the client wrote it (valid JSON): the client logic reads as much of it
/// as it needs (a request is forwarded without being built as a `Value`).
#[derive(Debug)]
pub struct Data(Box<RawValue>);

impl Data {
    /// The argument `raw` (`what`, for the error): refused if it holds a number no `Value` can
    /// hold (beyond f64, `1e999`: valid JSON no client library writes), as when arguments were
    /// read into `Value`s.
    pub fn read(raw: &RawValue, what: &dyn std::fmt::Display) -> Result<Data, FramingError> {
        if may_overflow(raw.get()) {
            let mut reader = serde_json::Deserializer::from_str(raw.get());
            Checked::deserialize(&mut reader).map_err(|e| FramingError(format!("{what}: {e}")))?;
        }
        Ok(Data(raw.to_owned()))
    }

    /// The first argument of event `name`, if it has one ([`Data::read`]).
    pub fn first(args: &[&RawValue], name: &str) -> Result<Option<Data>, FramingError> {
        args.first()
            .map(|raw| Data::read(raw, &format_args!("event {name:?}")))
            .transpose()
    }

    /// A value the framing made itself (a socket.io 0.9 text message is a string).
    pub fn of(value: &Value) -> Data {
        // A `Value` always serializes.
        let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        Data(RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    /// The whole value (an error for what JSON allows and `Value` cannot hold: a number out of
    /// range).
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

/// Whether JSON text may hold a number beyond f64: an exponent (a digit, then `e` or `E`) or
/// more than 300 digits in a row. Most requests have neither, and are not read a second time.
fn may_overflow(text: &str) -> bool {
    let mut digits = 0;
    for &b in text.as_bytes() {
        if b.is_ascii_digit() {
            digits += 1;
            if digits > 300 {
                return true;
            }
        } else {
            if digits > 0 && (b | 0x20) == b'e' {
                return true;
            }
            digits = 0;
        }
    }
    false
}

/// Reads a whole JSON value, building nothing: serde_json checks every number's range as it
/// reads it (skipping a value checks nothing).
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// The same JSON value (tests compare what a framing read).
impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        match (self.value(), other.value()) {
            (Ok(a), Ok(b)) => a == b,
            _ => self.0.get() == other.0.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Data, FramingError> {
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        Data::read(&raw, &"event \"x\"")
    }

    #[test]
    fn a_number_beyond_f64_is_refused_wherever_it_is() {
        for text in [
            "1e999",
            r#"{"a":[1,{"b":-2.5E+400}]}"#,
            &format!("[{}]", "9".repeat(400)),
            &format!(r#"{{"{}":1e309}}"#, "k"),
        ] {
            let e = read(text).err().unwrap_or_else(|| panic!("{text} taken"));
            assert!(e.to_string().contains("number out of range"), "{e}");
            assert!(e.to_string().starts_with("event \"x\": "), "{e}");
        }
    }

    #[test]
    fn everything_else_is_taken_as_written() {
        for text in [
            r#"{"cn":"TestCall","messageId":"c1-5e"}"#,
            r#"{"n":1e300,"m":-2.5E-400,"s":"1e999","k":123456}"#,
            &format!("[{}]", "9".repeat(300)),
            &format!("[0.{}]", "9".repeat(400)),
            "null",
        ] {
            let data = read(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(data.as_raw().get(), text);
        }
    }
}
