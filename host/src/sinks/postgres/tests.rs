//! Unit tests of the Postgres sink: the borrowed field reader against the `Value` reference.
use super::encode::PgType;
use super::fields::FieldIndex;
use super::schema::Column;
use super::*;
use sluice_abi::InputBatch;

/// The columns left out and the row's bytes, or the conversion error.
type RowResult = Result<(u64, Vec<u8>), String>;

fn column(name: &str, ty: PgType, source: Source) -> Column {
    Column {
        name: name.into(),
        quoted: schema::quote(name),
        ty,
        required: false,
        default_bit: None,
        source,
    }
}

/// A table of every type, a renamed field feeding a second column, a NOT NULL column, a
/// column with a default and the metadata columns.
fn table() -> Table {
    let f = |n: &str| Source::Field(n.into());
    let mut columns = vec![
        column("t", PgType::Text, f("t")),
        column("b", PgType::Bool, f("b")),
        column("i2", PgType::Int2, f("i2")),
        column("i4", PgType::Int4, f("i4")),
        column("i8", PgType::Int8, f("i8")),
        column("f4", PgType::Float4, f("f4")),
        column("f8", PgType::Float8, f("f8")),
        column("n", PgType::Numeric, f("n")),
        column("d", PgType::Date, f("d")),
        column("ts", PgType::Timestamptz, f("ts")),
        column("u", PgType::Uuid, f("u")),
        column("j", PgType::Json, f("j")),
        column("jb", PgType::Jsonb, f("jb")),
        column("by", PgType::Bytea, f("by")),
        // Field `t` fills a second column, as `rename = { t = "t_again" }` does.
        column("t_again", PgType::Jsonb, f("t")),
        column("must", PgType::Text, f("must")),
        column("dflt", PgType::Int8, f("dflt")),
        column("k", PgType::Text, Source::Key),
        column("h", PgType::Jsonb, Source::Headers),
        column("top", PgType::Text, Source::Topic),
        column("p", PgType::Int4, Source::Partition),
        column("o", PgType::Int8, Source::Offset),
        column("at", PgType::Timestamptz, Source::Timestamp),
        column("v", PgType::Jsonb, Source::Value),
    ];
    let must = columns.iter().position(|c| c.name == "must").unwrap();
    columns[must].required = true;
    let dflt = columns.iter().position(|c| c.name == "dflt").unwrap();
    columns[dflt].default_bit = Some(0);
    let fields = FieldIndex::new(columns.iter().map(|c| match &c.source {
        Source::Field(n) => Some(n.as_str()),
        _ => None,
    }));
    Table {
        output: "out".into(),
        name: "\"t\"".into(),
        columns,
        key: Vec::new(),
        needs_object: true,
        fields,
    }
}

/// The row (or the error) for `value`, by the borrowed reader and by the previous
/// implementation, which built a `serde_json::Value` per record.
fn both(table: &Table, value: &[u8]) -> (RowResult, RowResult) {
    let mut batch = InputBatch::default();
    let topic = batch.topic_index("in");
    batch.push(
        Some(b"key"),
        Some(value),
        [sluice_abi::Header {
            name: "h1",
            value: Some(b"v1"),
        }],
        Some(1_700_000_000_000),
        topic,
        3,
        42,
    );
    let input = batch.record(0);
    let record = OutputRecord {
        input: 0,
        key: input.key,
        value: input.value,
        headers: input.headers,
        timestamp: None,
        output: None,
    };
    let mut scratch = fields::Scratch::default();
    let mut new = Vec::new();
    let new = encode_row(table, &record, &input, &mut new, &mut scratch).map(|o| (o, new));
    let mut old = Vec::new();
    let old = reference_row(table, &record, &input, &mut old).map(|o| (o, old));
    (new, old)
}

fn same(table: &Table, value: &[u8]) -> RowResult {
    let (new, old) = both(table, value);
    assert_eq!(
        new,
        old,
        "borrowed reader and Value differ on {:?}",
        String::from_utf8_lossy(value)
    );
    new
}

const FULL: &str = r#"{"t":"plain","b":true,"i2":-32768,"i4":2147483647,"i8":-9223372036854775808,
    "f4":3.4e38,"f8":1.7976931348623157e308,"n":"12345678901234567890.000001","d":"2024-02-29",
    "ts":"2024-05-01T12:00:00+02:00","u":"67e55044-10b1-426f-9247-bb680e5fe0c8",
    "j":{"z":1,"a":[1,2.5,{"c":null}],"z":3},"jb":[true,false,null,"x\u00e9"],"by":"bytes",
    "must":"here","dflt":7,"unknown":{"deep":[1,2,{"x":"y"}]}}"#;

/// Inputs that are hard to read right: escapes, duplicate keys, nesting, numbers at the
/// bounds of their columns, wrong types, values that are not objects or not JSON.
fn tricky() -> Vec<String> {
    let mut cases: Vec<String> = vec![
        FULL.into(),
        r#"{"must":"x"}"#.into(),
        r#"{"must":"x","dflt":null}"#.into(),
        r#"{"dflt":1}"#.into(),
        r#"{"must":null}"#.into(),
        // Escapes, in wanted fields, in keys, in fields nobody wants.
        r#"{"must":"x","t":"q\"b\\s\/\b\f\n\r\t\u00e9\ud83d\ude00 end"}"#.into(),
        r#"{"must":"x","\u0074":"escaped key"}"#.into(),
        r#"{"must":"x","t":"\u0000nul"}"#.into(),
        r#"{"must":"x","other":"\ud800 lone"}"#.into(),
        r#"{"must":"x","t":"\udc00"}"#.into(),
        r#"{"must":"x","other":"\x"}"#.into(),
        "{\"must\":\"x\",\"other\":\"tab\there\"}".into(),
        r#"{"must":"x","u":"67E55044-10B1-426F-9247-BB680E5FE0C8","by":"\u00ff"}"#.into(),
        // Duplicate keys: the last one wins, whatever the first was.
        r#"{"must":"x","i4":"not a number","i4":5}"#.into(),
        r#"{"must":"x","i4":5,"i4":"not a number"}"#.into(),
        r#"{"must":"x","i4":5,"i4":null}"#.into(),
        r#"{"must":"first","must":null}"#.into(),
        r#"{"must":null,"must":"second"}"#.into(),
        r#"{"must":"x","t":"a","t":{"n":[1]}}"#.into(),
        // Nested values into json, jsonb and text columns.
        r#"{"must":"x","j":{"b":1,"a":2,"b":3},"jb":{"k":{"k":{"k":[[],{}]}}},"t":[1,"2",3.0]}"#
            .into(),
        format!(
            r#"{{"must":"x","jb":{}1{}}}"#,
            "[".repeat(126),
            "]".repeat(126)
        ),
        format!(
            r#"{{"must":"x","jb":{}1{}}}"#,
            "[".repeat(127),
            "]".repeat(127)
        ),
        format!(
            r#"{{"must":"x","other":{}1{}}}"#,
            "[".repeat(127),
            "]".repeat(127)
        ),
        // Numbers at and past the bounds of each column.
        r#"{"must":"x","i2":32767,"i4":-2147483648,"i8":9223372036854775807}"#.into(),
        r#"{"must":"x","i2":32768}"#.into(),
        r#"{"must":"x","i2":-32769}"#.into(),
        r#"{"must":"x","i4":2147483648}"#.into(),
        r#"{"must":"x","i8":9223372036854775808}"#.into(),
        r#"{"must":"x","i8":18446744073709551615}"#.into(),
        r#"{"must":"x","i8":18446744073709551616}"#.into(),
        r#"{"must":"x","i8":-9223372036854775809}"#.into(),
        r#"{"must":"x","i8":1e2,"i4":-0,"i2":2.0}"#.into(),
        r#"{"must":"x","i4":1.5}"#.into(),
        r#"{"must":"x","i4":" 12 ","i2":"12.0"}"#.into(),
        r#"{"must":"x","f4":3.5e38,"f8":-0.0}"#.into(),
        r#"{"must":"x","f8":1e400}"#.into(),
        r#"{"must":"x","f8":"NaN","n":"nan","f4":"inf"}"#.into(),
        r#"{"must":"x","n":123.456,"t":1e-7,"j":0.1}"#.into(),
        r#"{"must":"x","n":1e300}"#.into(),
        r#"{"must":"x","ts":1714557600000,"d":"2024-05-01T23:59:59Z"}"#.into(),
        r#"{"must":"x","ts":1714557600000.5}"#.into(),
        r#"{"must":"x","ts":"yesterday"}"#.into(),
        // Wrong types.
        r#"{"must":"x","b":1}"#.into(),
        r#"{"must":"x","b":"T"}"#.into(),
        r#"{"must":"x","b":"yes"}"#.into(),
        r#"{"must":"x","i4":true}"#.into(),
        r#"{"must":"x","i4":[1]}"#.into(),
        r#"{"must":"x","f8":{"a":1}}"#.into(),
        r#"{"must":"x","u":5}"#.into(),
        r#"{"must":"x","d":false}"#.into(),
        r#"{"must":7,"t":true,"by":12.5}"#.into(),
        // Not objects, not JSON.
        "[1,2]".into(),
        r#""a string""#.into(),
        "null".into(),
        "17".into(),
        "".into(),
        "   ".into(),
        r#"{"must":"x"} trailing"#.into(),
        r#"{"must":"x"}{}"#.into(),
        r#"{"must":"x",}"#.into(),
        r#"{"must":"x""#.into(),
        r#"{must:"x"}"#.into(),
        "{\"must\":\"x\"}\n\t ".into(),
        r#"[1,{"a":}]"#.into(),
    ];
    // Every prefix of the full record: each must fail (or pass) the same way.
    for end in 0..FULL.len() {
        if FULL.is_char_boundary(end) {
            cases.push(FULL[..end].to_string());
        }
    }
    cases
}

#[test]
fn the_borrowed_reader_converts_exactly_as_the_value_did() {
    let table = table();
    for case in tricky() {
        let _ = same(&table, case.as_bytes());
    }
    // Bytes that are not UTF-8, in a wanted field and in a field nobody wants.
    for bad in [
        &b"{\"must\":\"x\",\"t\":\"\xff\"}"[..],
        b"{\"must\":\"x\",\"other\":\"\xc3\x28\"}",
        b"\xef\xbb\xbf{\"must\":\"x\"}",
    ] {
        let row = same(&table, bad);
        assert!(row.unwrap_err().contains("not JSON"));
    }
    // Single-byte damage anywhere in the full record.
    for at in 0..FULL.len() {
        for byte in [
            b'"', b'\\', b'{', b'}', b',', b':', b'1', b'x', b' ', 0x01, 0xff,
        ] {
            let mut damaged = FULL.as_bytes().to_vec();
            damaged[at] = byte;
            let _ = same(&table, &damaged);
        }
    }
}

fn int_field(row: &[u8], table: &Table, column: &str) -> Option<Vec<u8>> {
    // Walk the fields: length word, then data (-1 = NULL).
    let target = table.columns.iter().position(|c| c.name == column).unwrap();
    let mut at = 0;
    for i in 0.. {
        let len = i32::from_be_bytes(row[at..at + 4].try_into().unwrap());
        at += 4;
        let data = (len >= 0).then(|| row[at..at + len as usize].to_vec());
        at += len.max(0) as usize;
        if i == target {
            return data;
        }
    }
    unreachable!()
}

#[test]
fn a_field_named_twice_keeps_its_last_value() {
    let table = table();
    let (_, row) = same(&table, br#"{"must":"x","i4":"bad","i4":5}"#).unwrap();
    assert_eq!(
        int_field(&row, &table, "i4"),
        Some(5i32.to_be_bytes().to_vec())
    );
    let (_, row) = same(&table, br#"{"must":"x","i4":5,"i4":null}"#).unwrap();
    assert_eq!(int_field(&row, &table, "i4"), None);
    let err = same(&table, br#"{"must":"x","i4":5,"i4":"bad"}"#).unwrap_err();
    assert!(
        err.contains("column `i4`") && err.contains("`bad` is not an integer"),
        "{err}"
    );
    // In a nested object, as serde_json's map keeps it: the first key's place, the last
    // value.
    let (_, row) = same(&table, br#"{"must":"x","j":{"b":1,"a":2,"b":3}}"#).unwrap();
    assert_eq!(int_field(&row, &table, "j").unwrap(), br#"{"b":3,"a":2}"#);
}

#[test]
fn escapes_and_nested_values_are_written_decoded_and_reprinted() {
    let table = table();
    let (_, row) = same(
        &table,
        br#"{"must":"x","t":"a\"b\u00e9\n","jb":{"k":[1, 2.50, "s"]}}"#,
    )
    .unwrap();
    assert_eq!(
        int_field(&row, &table, "t").unwrap(),
        "a\"b\u{e9}\n".as_bytes()
    );
    // jsonb: version byte, then the value printed by serde_json.
    assert_eq!(
        int_field(&row, &table, "t_again").unwrap(),
        b"\x01\"a\\\"b\xc3\xa9\\n\""
    );
    assert_eq!(
        int_field(&row, &table, "jb").unwrap(),
        b"\x01{\"k\":[1,2.5,\"s\"]}"
    );
}

#[test]
fn conversion_errors_name_the_column_and_the_problem() {
    let table = table();
    for (value, expected) in [
        (
            &br#"{"must":"x","i2":32768}"#[..],
            "column `i2`: 32768 is out of range for smallint",
        ),
        (
            br#"{"must":"x","i8":9223372036854775808}"#,
            "column `i8`: 9223372036854775808 is not an integer",
        ),
        (
            br#"{"must":"x","i4":true}"#,
            "column `i4`: expected an integer, got a boolean",
        ),
        (
            br#"{"must":"x","f8":{"a":1}}"#,
            "column `f8`: expected a number, got an object",
        ),
        (
            br#"{"must":"x","b":"yes"}"#,
            "column `b`: expected true or false, got `yes`",
        ),
        (
            br#"{"t":"x"}"#,
            "field `must` is missing and column `must` needs a value",
        ),
        (
            br#"{"must":null}"#,
            "field `must` is null and column `must` is NOT NULL",
        ),
        (b"[1]", "the value is JSON but not an object"),
        (
            br#"{"must":"x","f8":1e400}"#,
            "the value is not JSON (number out of range at line 1 column",
        ),
        (
            br#"{"must":"x","o":"\ud800"}"#,
            "the value is not JSON (unexpected end of hex escape",
        ),
    ] {
        let err = same(&table, value).unwrap_err();
        assert!(
            err.starts_with(expected),
            "{err:?} should start with {expected:?}"
        );
    }
}

#[test]
fn a_missing_field_with_a_default_is_left_out() {
    let table = table();
    let (omitted, _) = same(&table, br#"{"must":"x"}"#).unwrap();
    assert_eq!(omitted, 1);
    let (omitted, row) = same(&table, br#"{"must":"x","dflt":null}"#).unwrap();
    assert_eq!(omitted, 0);
    assert_eq!(int_field(&row, &table, "dflt"), None);
}

#[test]
fn the_copy_header_is_the_binary_signature_and_two_zero_words() {
    assert_eq!(COPY_HEADER.len(), 19);
    assert!(COPY_HEADER.starts_with(b"PGCOPY\n\xff\r\n\0"));
    assert_eq!(COPY_TRAILER, (-1i16).to_be_bytes());
}

/// The conversion before the borrowed reader, which built a `Value` per record: the
/// reference the tests hold the borrowed reader to.
fn reference_row(
    table: &Table,
    record: &OutputRecord<'_>,
    input: &InputRecord<'_>,
    out: &mut Vec<u8>,
) -> Result<u64, String> {
    let object = if table.needs_object {
        let value = record
            .value
            .ok_or("the value is null (a tombstone), not a JSON object to make a row of")?;
        match serde_json::from_slice::<Value>(value) {
            Ok(Value::Object(map)) => Some(map),
            Ok(_) => return Err("the value is JSON but not an object".into()),
            Err(e) => return Err(format!("the value is not JSON ({e})")),
        }
    } else {
        None
    };
    let headers = table
        .columns
        .iter()
        .any(|c| c.source == Source::Headers)
        .then(|| {
            Value::Object(
                record
                    .headers
                    .iter()
                    .map(|h| {
                        let v = h.value.map_or(Value::Null, |v| {
                            Value::String(String::from_utf8_lossy(v).into_owned())
                        });
                        (h.name.to_string(), v)
                    })
                    .collect(),
            )
        });
    let mut omitted = 0u64;
    for (i, column) in table.columns.iter().enumerate() {
        let value: Option<Input<'_>> = match &column.source {
            Source::Field(name) => match object.as_ref().and_then(|o| o.get(name)) {
                None => {
                    if let (Some(bit), false) = (column.default_bit, table.key.contains(&i)) {
                        omitted |= 1 << bit;
                        continue;
                    }
                    if column.required || table.key.contains(&i) {
                        return Err(format!(
                            "field `{name}` is missing and column `{}` needs a value",
                            column.name
                        ));
                    }
                    None
                }
                Some(Value::Null) => {
                    if column.required || table.key.contains(&i) {
                        return Err(format!(
                            "field `{name}` is null and column `{}` is NOT NULL",
                            column.name
                        ));
                    }
                    None
                }
                Some(v) => Some(Input::Json(v)),
            },
            Source::Key => record.key.map(Input::Bytes),
            Source::Headers => headers.as_ref().map(Input::Json),
            Source::Topic => Some(Input::Text(input.topic)),
            Source::Partition => Some(Input::Int(input.partition as i64)),
            Source::Offset => Some(Input::Int(input.offset)),
            Source::Timestamp => record.timestamp.or(input.timestamp).map(Input::TimestampMs),
            Source::Value => record.value.map(Input::Bytes),
        };
        if value.is_none() && column.required {
            return Err(format!(
                "column `{}` is NOT NULL but the record has no {}",
                column.name,
                match column.source {
                    Source::Key => "key",
                    Source::Timestamp => "timestamp",
                    _ => "value",
                }
            ));
        }
        field(out, column.ty, value).map_err(|e| match &column.source {
            Source::Field(name) if *name != column.name => {
                format!("field `{name}` (column `{}`): {e}", column.name)
            }
            _ => format!("column `{}`: {e}", column.name),
        })?;
    }
    Ok(omitted)
}
