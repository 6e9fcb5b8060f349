//! Values converted to a column's type, in PostgreSQL's binary `COPY` format.
//!
//! The binary format skips the server's text parsing, and converting here lets a value that does
//! not fit its column fail only its own record, before anything is sent.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::Value;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's.
const PG_EPOCH_DAYS: i64 = 10_957;

/// The column types rows can be written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgType {
    /// `boolean`
    Bool,
    /// `bytea`
    Bytea,
    /// `smallint`
    Int2,
    /// `integer`
    Int4,
    /// `bigint`
    Int8,
    /// `text`, `varchar`, `char`
    Text,
    /// `json`
    Json,
    /// `jsonb`
    Jsonb,
    /// `real`
    Float4,
    /// `double precision`
    Float8,
    /// `numeric`
    Numeric,
    /// `date`
    Date,
    /// `timestamp` (without time zone; written in UTC)
    Timestamp,
    /// `timestamptz`
    Timestamptz,
    /// `uuid`
    Uuid,
}

impl PgType {
    /// The type of a column from its type OID (of the domain's base type for a domain).
    pub fn from_oid(oid: u32) -> Option<PgType> {
        Some(match oid {
            16 => PgType::Bool,
            17 => PgType::Bytea,
            20 => PgType::Int8,
            21 => PgType::Int2,
            23 => PgType::Int4,
            25 | 1042 | 1043 => PgType::Text,
            114 => PgType::Json,
            700 => PgType::Float4,
            701 => PgType::Float8,
            1082 => PgType::Date,
            1114 => PgType::Timestamp,
            1184 => PgType::Timestamptz,
            1700 => PgType::Numeric,
            2950 => PgType::Uuid,
            3802 => PgType::Jsonb,
            _ => return None,
        })
    }

    /// Every supported type, as SQL names (for messages).
    pub const SUPPORTED: &'static str = "text, varchar, char, smallint, integer, bigint, numeric, \
        real, double precision, boolean, timestamptz, timestamp, date, uuid, json, jsonb, bytea";
}

/// A value to write, before conversion.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A field of the record's JSON value (never `null`: the caller writes SQL NULL).
    Json(&'a Value),
    /// Text (the source topic).
    Text(&'a str),
    /// Raw bytes (the key, the whole value).
    Bytes(&'a [u8]),
    /// An integer (partition, offset).
    Int(i64),
    /// Milliseconds since the Unix epoch (the record timestamp).
    TimestampMs(i64),
}

/// Appends `input` converted to `ty` (the field's data, without its length word) to `out`, or
/// says why it cannot be.
pub fn encode(ty: PgType, input: Input<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    match ty {
        PgType::Text => out.extend_from_slice(text(input)?.as_bytes()),
        PgType::Bytea => match input {
            Input::Bytes(b) => out.extend_from_slice(b),
            other => out.extend_from_slice(text(other)?.as_bytes()),
        },
        PgType::Json | PgType::Jsonb => {
            if ty == PgType::Jsonb {
                out.push(1); // jsonb binary format version
            }
            match input {
                Input::Json(v) => serde_json::to_writer(&mut *out, v).expect("writing to a Vec"),
                Input::Bytes(b) => {
                    serde_json::from_slice::<serde::de::IgnoredAny>(b)
                        .map_err(|e| format!("not valid JSON ({e})"))?;
                    out.extend_from_slice(b);
                }
                Input::Text(t) => {
                    serde_json::to_writer(&mut *out, t).expect("writing to a Vec");
                }
                Input::Int(i) | Input::TimestampMs(i) => {
                    out.extend_from_slice(i.to_string().as_bytes())
                }
            }
        }
        PgType::Bool => {
            let b = match input {
                Input::Json(Value::Bool(b)) => *b,
                other => match text(other)?.to_ascii_lowercase().as_str() {
                    "true" | "t" => true,
                    "false" | "f" => false,
                    t => return Err(format!("expected true or false, got `{t}`")),
                },
            };
            out.push(b as u8);
        }
        PgType::Int2 => {
            let i = integer(input)?;
            let v = i16::try_from(i).map_err(|_| format!("{i} is out of range for smallint"))?;
            out.extend_from_slice(&v.to_be_bytes());
        }
        PgType::Int4 => {
            let i = integer(input)?;
            let v = i32::try_from(i).map_err(|_| format!("{i} is out of range for integer"))?;
            out.extend_from_slice(&v.to_be_bytes());
        }
        PgType::Int8 => out.extend_from_slice(&integer(input)?.to_be_bytes()),
        PgType::Float4 => out.extend_from_slice(&(float(input)? as f32).to_be_bytes()),
        PgType::Float8 => out.extend_from_slice(&float(input)?.to_be_bytes()),
        PgType::Numeric => numeric(&text(input)?, out)?,
        PgType::Uuid => {
            let t = text(input)?;
            let u = uuid::Uuid::parse_str(&t).map_err(|e| format!("`{t}` is not a UUID ({e})"))?;
            out.extend_from_slice(u.as_bytes());
        }
        PgType::Date => {
            let days = match input {
                Input::TimestampMs(ms) => ms.div_euclid(86_400_000),
                other => {
                    let t = text(other)?;
                    let date = NaiveDate::parse_from_str(&t, "%Y-%m-%d")
                        .or_else(|_| {
                            timestamp_micros(&t).map(|us| {
                                DateTime::from_timestamp_micros(us)
                                    .expect("in range")
                                    .date_naive()
                            })
                        })
                        .map_err(|_| format!("`{t}` is not a date (expected YYYY-MM-DD)"))?;
                    date.signed_duration_since(NaiveDate::default()).num_days()
                }
            };
            let pg = i32::try_from(days - PG_EPOCH_DAYS).map_err(|_| "date out of range")?;
            out.extend_from_slice(&pg.to_be_bytes());
        }
        PgType::Timestamp | PgType::Timestamptz => {
            let micros = match input {
                Input::TimestampMs(ms) | Input::Int(ms) => ms.saturating_mul(1000),
                Input::Json(Value::Number(n)) => n
                    .as_i64()
                    .ok_or_else(|| format!("{n} is not a whole number of milliseconds"))?
                    .saturating_mul(1000),
                other => timestamp_micros(&text(other)?)?,
            };
            out.extend_from_slice(&(micros - PG_EPOCH_MICROS).to_be_bytes());
        }
    }
    Ok(())
}

/// The input as text: strings as they are, other JSON values as JSON.
fn text(input: Input<'_>) -> Result<std::borrow::Cow<'_, str>, String> {
    Ok(match input {
        Input::Json(Value::String(s)) => s.as_str().into(),
        Input::Text(s) => s.into(),
        Input::Json(v) => v.to_string().into(),
        Input::Bytes(b) => std::str::from_utf8(b)
            .map_err(|e| format!("not valid UTF-8 ({e})"))?
            .into(),
        Input::Int(i) | Input::TimestampMs(i) => i.to_string().into(),
    })
}

fn integer(input: Input<'_>) -> Result<i64, String> {
    match input {
        Input::Int(i) | Input::TimestampMs(i) => Ok(i),
        Input::Json(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| format!("{n} is not an integer")),
        Input::Json(Value::Bool(_) | Value::Array(_) | Value::Object(_)) => {
            Err(format!("expected an integer, got {}", describe(input)))
        }
        other => {
            let t = text(other)?;
            t.trim()
                .parse()
                .map_err(|_| format!("`{t}` is not an integer"))
        }
    }
}

fn float(input: Input<'_>) -> Result<f64, String> {
    match input {
        Input::Json(Value::Number(n)) => Ok(n.as_f64().expect("JSON numbers are f64-convertible")),
        Input::Json(Value::Bool(_) | Value::Array(_) | Value::Object(_)) => {
            Err(format!("expected a number, got {}", describe(input)))
        }
        Input::Int(i) | Input::TimestampMs(i) => Ok(i as f64),
        other => {
            let t = text(other)?;
            t.trim()
                .parse()
                .map_err(|_| format!("`{t}` is not a number"))
        }
    }
}

fn describe(input: Input<'_>) -> &'static str {
    match input {
        Input::Json(Value::Bool(_)) => "a boolean",
        Input::Json(Value::Array(_)) => "an array",
        Input::Json(Value::Object(_)) => "an object",
        _ => "a value",
    }
}

/// Microseconds since the Unix epoch of an RFC 3339 timestamp, or of a timestamp without a
/// zone (taken as UTC).
fn timestamp_micros(t: &str) -> Result<i64, String> {
    let t = t.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(naive.and_utc().timestamp_micros());
        }
    }
    Err(format!(
        "`{t}` is not a timestamp (expected RFC 3339, e.g. 2024-05-01T12:00:00Z, or milliseconds since the epoch)"
    ))
}

/// A decimal number in `numeric`'s binary form: base-10000 digits around the decimal point.
fn numeric(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let bad = || format!("`{text}` is not a number");
    let t = text.trim();
    if t.eq_ignore_ascii_case("nan") {
        for word in [0u16, 0, 0xC000, 0] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        return Ok(());
    }
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i64>().map_err(|_| bad())?),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.len() + frac.len() == 0
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        || exponent.abs() > 100_000
    {
        return Err(bad());
    }
    let dscale = (frac.len() as i64 - exponent).max(0);
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    // The decimal point sits before digits[point].
    let mut point = int.len() as i64 + exponent;
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    point -= leading as i64;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let header = |ndigits: usize, weight: i64, out: &mut Vec<u8>| -> Result<(), String> {
        let ndigits =
            i16::try_from(ndigits).map_err(|_| format!("`{text}` has too many digits"))?;
        let weight = i16::try_from(weight).map_err(|_| format!("`{text}` is out of range"))?;
        let dscale = i16::try_from(dscale).map_err(|_| format!("`{text}` has too many digits"))?;
        out.extend_from_slice(&ndigits.to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        let sign: u16 = if negative && ndigits > 0 { 0x4000 } else { 0 };
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&dscale.to_be_bytes());
        Ok(())
    };
    if digits.is_empty() {
        return header(0, 0, out);
    }
    // Pad so that the point falls on a group boundary, then to whole groups.
    let lead = (4 - point.rem_euclid(4)) % 4;
    let mut padded = vec![0u8; lead as usize];
    padded.extend_from_slice(&digits);
    padded.resize(padded.len().div_ceil(4) * 4, 0);
    let weight = (point + lead) / 4 - 1;
    header(padded.len() / 4, weight, out)?;
    for group in padded.chunks(4) {
        let v = group.iter().fold(0u16, |acc, d| acc * 10 + *d as u16);
        out.extend_from_slice(&v.to_be_bytes());
    }
    Ok(())
}

/// The start of a binary `COPY … FROM STDIN` stream: signature, flags, header extension length.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The end of a binary `COPY` stream: a field count of -1.
pub const COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// Appends one field (length word + data) to `out`: SQL NULL for `None`.
pub fn field(out: &mut Vec<u8>, ty: PgType, input: Option<Input<'_>>) -> Result<(), String> {
    let Some(input) = input else {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    };
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = encode(ty, input, out) {
        out.truncate(at);
        return Err(e);
    }
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(t: &str) -> Vec<i16> {
        let mut out = Vec::new();
        numeric(t, &mut out).unwrap();
        out.chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numeric_groups_digits_around_the_point() {
        // ndigits, weight, sign, dscale, digits…
        assert_eq!(num("123.45"), vec![2, 0, 0, 2, 123, 4500]);
        assert_eq!(num("0.001"), vec![1, -1, 0, 3, 10]);
        assert_eq!(num("-10000"), vec![1, 1, 0x4000, 0, 1]);
        assert_eq!(num("0"), vec![0, 0, 0, 0]);
        assert_eq!(num("1.5e3"), vec![1, 0, 0, 0, 1500]);
        assert_eq!(num("12345678.9"), vec![3, 1, 0, 1, 1234, 5678, 9000]);
        assert!(numeric("12a", &mut Vec::new()).is_err());
        assert!(numeric("", &mut Vec::new()).is_err());
    }

    #[test]
    fn conversions_refuse_what_does_not_fit() {
        let mut out = Vec::new();
        let v = serde_json::json!(70000);
        assert!(
            encode(PgType::Int2, Input::Json(&v), &mut out)
                .unwrap_err()
                .contains("out of range")
        );
        let v = serde_json::json!("x");
        assert!(
            encode(PgType::Uuid, Input::Json(&v), &mut out)
                .unwrap_err()
                .contains("not a UUID")
        );
        let v = serde_json::json!("2024-05-01T12:00:00+02:00");
        out.clear();
        encode(PgType::Timestamptz, Input::Json(&v), &mut out).unwrap();
        let micros = i64::from_be_bytes(out[..8].try_into().unwrap());
        assert_eq!(micros + PG_EPOCH_MICROS, 1_714_557_600_000_000);
        let mut f = Vec::new();
        assert!(field(&mut f, PgType::Bool, Some(Input::Text("maybe"))).is_err());
        assert!(f.is_empty(), "a failed field leaves nothing behind");
    }
}
