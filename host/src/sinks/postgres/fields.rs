//! A record's JSON object read into one slot per field the table wants, borrowing from the
//! record: no `serde_json::Value` per row, no string copied unless it holds escapes.
//!
//! The values are the ones `serde_json::from_slice::<Value>` would give, field by field, so the
//! conversion to columns is the same as when a whole `Value` was built (see the reference test
//! below): the same parser runs over the same bytes, so the same documents are refused with the
//! same message; fields without a column are still parsed in full (so a bad escape or a lone
//! surrogate anywhere refuses the record, as before) but nothing of them is kept; a field named
//! twice keeps its **last** value, as `serde_json::Map::insert` does; arrays and objects (rare in
//! a row, and written as JSON) are built as `Value`s so that they print exactly as before.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// Above this many fields a table looks a field name up in a hash map rather than a list.
const LINEAR_LOOKUP: usize = 12;

/// The distinct JSON fields a table's columns are filled from.
#[derive(Clone, Debug, Default)]
pub struct FieldIndex {
    /// Field names, each once.
    names: Vec<String>,
    /// For each column of the table, the index of its field (`None` for metadata columns).
    of_column: Vec<Option<usize>>,
    /// Name → index, for tables with many fields.
    by_name: HashMap<String, usize>,
}

impl FieldIndex {
    /// The index of the fields named by `columns` (a column's field, or `None`).
    pub fn new<'a>(columns: impl IntoIterator<Item = Option<&'a str>>) -> FieldIndex {
        let mut index = FieldIndex::default();
        for name in columns {
            let slot = name.map(|name| match index.names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    index.names.push(name.to_string());
                    index
                        .by_name
                        .insert(name.to_string(), index.names.len() - 1);
                    index.names.len() - 1
                }
            });
            index.of_column.push(slot);
        }
        index
    }

    /// Number of distinct fields.
    pub fn count(&self) -> usize {
        self.names.len()
    }

    /// The field slot of column `column`.
    pub fn of_column(&self, column: usize) -> Option<usize> {
        self.of_column.get(column).copied().flatten()
    }

    fn find(&self, name: &str) -> Option<usize> {
        if self.names.len() <= LINEAR_LOOKUP {
            self.names.iter().position(|n| n == name)
        } else {
            self.by_name.get(name).copied()
        }
    }
}

/// One field's value.
#[derive(Debug, PartialEq)]
pub enum Slot<'a> {
    /// The object has no such field.
    Missing,
    /// `null`.
    Null,
    /// A string without escapes, borrowed from the record.
    Str(&'a str),
    /// A string with escapes, decoded into the row's scratch text.
    Escaped(Range<usize>),
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it (u64, i64 or f64).
    Number(Number),
    /// An array or an object.
    Nested(Value),
}

/// Buffers reused from row to row.
#[derive(Default)]
pub struct Scratch {
    /// Decoded strings that held escapes.
    pub text: String,
    /// The slots' storage, kept empty between rows.
    spare: Vec<Slot<'static>>,
}

/// Why a record's value gives no fields.
#[derive(Debug, PartialEq)]
pub enum NotAnObject {
    /// Not JSON: the parser's message.
    NotJson(String),
    /// JSON, but an array, string, number, boolean or null.
    OtherJson,
}

/// Reads `value`'s fields into one slot per field of `fields`, then runs `f` on the slots (and
/// the scratch text that [`Slot::Escaped`] points into).
pub fn with_fields<R>(
    value: &[u8],
    fields: &FieldIndex,
    scratch: &mut Scratch,
    f: impl FnOnce(&[Slot<'_>], &str) -> R,
) -> Result<R, NotAnObject> {
    let Ok(text) = std::str::from_utf8(value) else {
        // Invalid UTF-8 cannot be JSON: let the parser say where, as it always has.
        return Err(NotAnObject::NotJson(
            match serde_json::from_slice::<Value>(value) {
                Err(e) => e.to_string(),
                Ok(_) => "invalid UTF-8".into(),
            },
        ));
    };
    scratch.text.clear();
    let mut slots: Vec<Slot<'_>> = reuse(std::mem::take(&mut scratch.spare));
    slots.resize_with(fields.count(), || Slot::Missing);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de
        .deserialize_any(Root {
            fields,
            slots: &mut slots,
            text: &mut scratch.text,
        })
        .and_then(|is_object| de.end().map(|()| is_object));
    let result = match parsed {
        Ok(true) => Ok(f(&slots, &scratch.text)),
        Ok(false) => Err(NotAnObject::OtherJson),
        Err(e) => Err(NotAnObject::NotJson(e.to_string())),
    };
    slots.clear();
    scratch.spare = reuse(slots);
    result
}

/// An empty vector's allocation, for slots of another lifetime (the in-place `collect` keeps
/// the allocation: same size and alignment, and there is nothing to map).
fn reuse<'a, 'b>(mut v: Vec<Slot<'a>>) -> Vec<Slot<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!("empty")).collect()
}

/// The document: an object fills the slots; anything else is parsed (to find syntax errors
/// after it) and reported as not an object.
struct Root<'s, 'de> {
    fields: &'s FieldIndex,
    slots: &'s mut Vec<Slot<'de>>,
    text: &'s mut String,
}

impl<'de> Visitor<'de> for Root<'_, 'de> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(key) = map.next_key_seed(Key(self.fields))? {
            match key {
                Some(slot) => {
                    self.slots[slot] = map.next_value_seed(Field(&mut *self.text))?;
                }
                None => map.next_value_seed(Validate)?,
            }
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element_seed(Validate)?.is_some() {}
        Ok(false)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// A key: the slot of the field it names, if the table wants it.
struct Key<'s>(&'s FieldIndex);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.0.find(name))
    }
}

/// A wanted field's value.
struct Field<'s>(&'s mut String);

impl<'de> DeserializeSeed<'de> for Field<'_> {
    type Value = Slot<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Slot<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Field<'_> {
    type Value = Slot<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Slot<'de>, E> {
        Ok(Slot::Str(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Slot<'de>, E> {
        let start = self.0.len();
        self.0.push_str(s);
        Ok(Slot::Escaped(start..self.0.len()))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Slot<'de>, E> {
        Ok(Slot::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Slot<'de>, E> {
        Ok(Slot::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Slot<'de>, E> {
        Ok(Slot::Number(u.into()))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Slot<'de>, E> {
        // As `Value` reads it: a float that is not finite is null (the parser never makes one).
        Ok(Number::from_f64(f).map_or(Slot::Null, Slot::Number))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Slot<'de>, E> {
        Ok(Slot::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Slot<'de>, A::Error> {
        use serde::Deserialize;
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Slot::Nested)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Slot<'de>, A::Error> {
        use serde::Deserialize;
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Slot::Nested)
    }
}

/// A value nobody wants, parsed as strictly as `Value` would parse it (strings decoded, so a bad
/// escape or a lone surrogate is an error) but not kept.
struct Validate;

impl<'de> DeserializeSeed<'de> for Validate {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Validate {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(ValidateKey)?.is_some() {
            map.next_value_seed(Validate)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Validate)?.is_some() {}
        Ok(())
    }
}

/// A key of an object nobody wants: decoded (as `Value` decodes keys), not kept.
struct ValidateKey;

impl<'de> DeserializeSeed<'de> for ValidateKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(Validate)
    }
}
