//! A JSON object's top-level members as the client wrote them: read without building their
//! values, written back with one member set.
//!
//! A request goes to the backend as the client sent it with its `clientId` set. Reading it into
//! a `serde_json::Value` and writing that out again (a map, a string per key and value, each
//! number re-rendered) cost 2.4k of a worker's 43k instructions per round trip
//! (bench/callgrind.sh); [`RawObject`] keeps each member's value as its JSON text. What it
//! writes is what the `Value` round trip wrote, member for member: the same keys in the same order (a repeated key where it first
//! appeared, with its last value), the member set in place or added last; only the values'
//! insides keep the client's spelling (`1E2` stays `1E2`, an escape stays an escape), which is
//! the same JSON.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// An object's members in order, each key once.
#[derive(Debug)]
pub struct RawObject<'a> {
    members: Vec<(Key<'a>, &'a RawValue)>,
}

/// A key's text, borrowed from the input when it had no escape (serde's own `Cow` always
/// copies).
#[derive(Debug, PartialEq)]
struct Key<'a>(Cow<'a, str>);

impl<'a> RawObject<'a> {
    /// `None` if `json` is not an object.
    pub fn read(json: &'a RawValue) -> Option<RawObject<'a>> {
        let text = json.get();
        if !text.starts_with('{') {
            return None;
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let object = RawObject::deserialize(&mut deserializer).ok()?;
        deserializer.end().ok()?;
        Some(object)
    }

    /// The value of member `key`, read.
    pub fn value(&self, key: &str) -> Option<Value> {
        let (_, raw) = self.members.iter().find(|(k, _)| k.0 == key)?;
        serde_json::from_str(raw.get()).ok()
    }

    /// The object with member `key` set to the string `value` (in place if it has the member,
    /// else last), as compact JSON.
    pub fn to_vec_with(&self, key: &str, value: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.members
                .iter()
                .map(|(k, v)| k.0.len() + v.get().len() + 4)
                .sum::<usize>()
                + key.len()
                + value.len()
                + 8,
        );
        out.push(b'{');
        let mut set = false;
        for (i, (k, raw)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_key(&k.0, &mut out);
            if k.0 == key {
                write_string(value, &mut out);
                set = true;
            } else {
                out.extend_from_slice(raw.get().as_bytes());
            }
        }
        if !set {
            if !self.members.is_empty() {
                out.push(b',');
            }
            write_key(key, &mut out);
            write_string(value, &mut out);
        }
        out.push(b'}');
        out
    }
}

fn write_key(key: &str, out: &mut Vec<u8>) {
    write_string(key, out);
    out.push(b':');
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Up to this many members, a repeated key is found by looking at the ones before; beyond, by
/// a map (a client's object with many keys must not cost it quadratic time).
const LINEAR_UP_TO: usize = 16;

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = RawObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject<'de>, A::Error> {
        let mut members: Vec<(Key<'de>, &'de RawValue)> = Vec::new();
        let mut index: Option<HashMap<Cow<'de, str>, usize>> = None;
        while let Some((key, value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
            let seen = match &mut index {
                Some(index) => index.get(&key.0).copied(),
                None => members.iter().position(|(k, _)| *k == key),
            };
            match seen {
                // As a map does: the first place, the last value.
                Some(i) => {
                    if let Some(member) = members.get_mut(i) {
                        member.1 = value;
                    }
                }
                None => {
                    if let Some(index) = &mut index {
                        index.insert(key.0.clone(), members.len());
                    }
                    members.push((key, value));
                    if index.is_none() && members.len() > LINEAR_UP_TO {
                        index = Some(
                            members
                                .iter()
                                .enumerate()
                                .map(|(i, (k, _))| (k.0.clone(), i))
                                .collect(),
                        );
                    }
                }
            }
        }
        Ok(RawObject { members })
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    /// What the gateway wrote before: the request read as a `Value`, the member inserted.
    fn through_value(text: &str, key: &str, value: &str) -> Vec<u8> {
        let mut map: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
        map.insert(key.into(), Value::String(value.into()));
        serde_json::to_vec(&map).unwrap()
    }

    fn with(text: &str, key: &str, value: &str) -> String {
        let json = raw(text);
        let object = RawObject::read(&json).unwrap();
        String::from_utf8(object.to_vec_with(key, value)).unwrap()
    }

    #[test]
    fn a_member_is_added_last_or_set_in_place() {
        for text in [
            r#"{"cn":"TestCall","messageId":"m-1"}"#,
            r#"{"cn":"X","clientId":"old","messageId":2}"#,
            r#"{}"#,
            r#"{"clientId":null}"#,
            r#"{"a":{"clientId":"nested"},"b":[1,2,{"c":true}],"d":null,"e":-0.5}"#,
            r#"{"é":"ü","line\nbreak":"tab\t","quote\"":"\\"}"#,
            r#"{"a":1,"a":2,"b":3,"a":4}"#,
            r#"{"clientId":"x","clientId":"y"}"#,
        ] {
            for value in ["c-1", "needs \"escaping\"\n"] {
                assert_eq!(
                    with(text, "clientId", value).as_bytes(),
                    through_value(text, "clientId", value),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn values_keep_their_spelling() {
        assert_eq!(
            with(
                r#"{"n":1E2,"s":"\u00e9","m":{ "x" : [ 1 ] }}"#,
                "clientId",
                "c"
            ),
            r#"{"n":1E2,"s":"\u00e9","m":{ "x" : [ 1 ] },"clientId":"c"}"#
        );
        // Whitespace between the members goes; within values it stays.
        assert_eq!(
            with("{ \"a\" : 1 ,\n \"b\":\"x\" }", "clientId", "c"),
            r#"{"a":1,"b":"x","clientId":"c"}"#
        );
        // A key written with an escape is written as a Value would write it.
        assert_eq!(
            with(r#"{"\u0061":1}"#, "clientId", "c"),
            r#"{"a":1,"clientId":"c"}"#
        );
    }

    #[test]
    fn many_members_with_repeats_are_read_as_a_map_reads_them() {
        let mut text = String::from("{");
        for i in 0..200 {
            text.push_str(&format!("\"k{}\":{i},", i % 50));
        }
        text.push_str("\"last\":true}");
        assert_eq!(
            with(&text, "clientId", "c").as_bytes(),
            through_value(&text, "clientId", "c")
        );
    }

    #[test]
    fn values_are_read_by_key() {
        let json = raw(r#"{"messageId":"m-1","sendAck":true,"n":{"a":[1]}}"#);
        let object = RawObject::read(&json).unwrap();
        assert_eq!(object.value("messageId"), Some(json!("m-1")));
        assert_eq!(object.value("sendAck"), Some(json!(true)));
        assert_eq!(object.value("n"), Some(json!({"a": [1]})));
        assert_eq!(object.value("absent"), None);
    }

    #[test]
    fn only_an_object_is_read() {
        for text in [r#"[1,2]"#, r#""s""#, "1", "null", "true"] {
            assert!(RawObject::read(&raw(text)).is_none(), "{text}");
        }
    }
}
