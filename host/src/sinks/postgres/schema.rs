//! The table an output writes to: its columns, read from the database at start-up, and where
//! each column's value comes from.

use anyhow::{Context, Result, bail};
use tokio_postgres::Client;

use super::config::{PostgresOutput, WriteMode};
use super::encode::PgType;
use super::fields::FieldIndex;

/// Where a column's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A top-level field of the record's JSON value.
    Field(String),
    /// The Kafka key.
    Key,
    /// The headers, as a JSON object.
    Headers,
    /// The input record's topic.
    Topic,
    /// The input record's partition.
    Partition,
    /// The input record's offset.
    Offset,
    /// The record's timestamp.
    Timestamp,
    /// The whole value.
    Value,
}

/// A column rows are written to.
#[derive(Clone, Debug)]
pub struct Column {
    /// Name, as in the table.
    pub name: String,
    /// Name, quoted for SQL.
    pub quoted: String,
    /// Type the value is converted to.
    pub ty: PgType,
    /// `NOT NULL` without a default: a record without the field is refused.
    pub required: bool,
    /// Has a default (or is an identity column): a record without the field leaves it to the
    /// database. Its bit in a row's mask of columns left out.
    pub default_bit: Option<u32>,
    /// Where the value comes from.
    pub source: Source,
}

/// An output's table, resolved against the database.
#[derive(Clone, Debug)]
pub struct Table {
    /// The output's name in the pipeline.
    pub output: String,
    /// The table's name, quoted and qualified as the database prints it.
    pub name: String,
    /// The columns written, in table order.
    pub columns: Vec<Column>,
    /// Indexes (into `columns`) of the upsert conflict key; empty for inserts.
    pub key: Vec<usize>,
    /// Some column is filled from a field, so the value must be a JSON object.
    pub needs_object: bool,
    /// The fields the columns are filled from, each once (a field can fill several columns).
    pub fields: FieldIndex,
}

/// Quotes an identifier for SQL.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The natural type of a metadata column (for a suggested `CREATE TABLE`).
fn metadata_type(what: &str) -> &'static str {
    match what {
        "headers" | "value" => "jsonb",
        "partition" => "integer",
        "offset" => "bigint",
        "timestamp" => "timestamptz",
        _ => "text",
    }
}

/// The `CREATE TABLE` that fits the output's mapping.
pub fn create_table_sql(config: &PostgresOutput) -> String {
    let mut columns: Vec<(String, String)> = config
        .columns
        .iter()
        .map(|(c, t)| (c.clone(), t.clone()))
        .collect();
    let mut add = |column: &str, ty: &str| {
        if !columns.iter().any(|(c, _)| c == column) {
            columns.push((column.to_string(), ty.to_string()));
        }
    };
    for k in &config.key {
        add(k, "text");
    }
    for column in config.rename.values() {
        add(column, "text");
    }
    for (what, column) in config.metadata.iter() {
        add(column, metadata_type(what));
    }
    let mut lines: Vec<String> = columns
        .iter()
        .map(|(c, t)| format!("    {} {t}", quote(c)))
        .collect();
    if config.mode == WriteMode::Upsert {
        let key: Vec<String> = config.key.iter().map(|k| quote(k)).collect();
        lines.push(format!("    PRIMARY KEY ({})", key.join(", ")));
    }
    let mut sql = format!("CREATE TABLE {} (\n{}\n);", config.table, lines.join(",\n"));
    if config.columns.is_empty() {
        sql.push_str(
            "\n-- add one column per JSON field to keep (a field fills the column of its name), \
             or list them in `columns`",
        );
    }
    sql
}

/// Reads the table's columns and maps them. A missing table is created if `create_table` is set
/// and `create` is true; with `create` false (`sluice check`) it is `None`.
pub async fn resolve(
    client: &Client,
    output: &str,
    config: &PostgresOutput,
    create: bool,
) -> Result<Option<Table>> {
    let mut name: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&config.table])
        .await
        .with_context(|| format!("looking up table `{}`", config.table))?
        .get(0);
    if name.is_none() {
        let sql = create_table_sql(config);
        if config.create_table && !create {
            return Ok(None);
        }
        if !config.create_table {
            bail!(
                "table `{}` does not exist. Create it, for example:\n\n{sql}\n\nor set \
                 create_table = true (with the `columns` to create)",
                config.table
            );
        }
        client.batch_execute(&sql).await.with_context(|| {
            format!(
                "creating table `{}` (create_table = true):\n{sql}",
                config.table
            )
        })?;
        tracing::info!(table = %config.table, "created table:\n{sql}");
        name = client
            .query_one("SELECT to_regclass($1)::text", &[&config.table])
            .await?
            .get(0);
    }
    let name = name.context("the table vanished right after it was created")?;
    let rows = client
        .query(
            "SELECT a.attname::text, \
                    (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END)::oid, \
                    format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    a.atthasdef OR a.attidentity <> '', \
                    a.attgenerated <> '' OR a.attidentity = 'a' \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&config.table],
        )
        .await
        .with_context(|| format!("reading the columns of table {name}"))?;

    let table_columns: Vec<&str> = rows.iter().map(|r| r.get::<_, &str>(0)).collect();
    let add_column =
        |column: &str, ty: &str| format!("ALTER TABLE {name} ADD COLUMN {} {ty};", quote(column));
    let named = config
        .key
        .iter()
        .map(|k| ("key".to_string(), k.as_str(), "text"))
        .chain(
            config
                .rename
                .iter()
                .map(|(f, c)| (format!("rename.{f}"), c.as_str(), "text")),
        )
        .chain(
            config
                .metadata
                .iter()
                .map(|(what, c)| (format!("metadata.{what}"), c, metadata_type(what))),
        )
        .chain(
            config
                .columns
                .iter()
                .map(|(c, t)| ("columns".to_string(), c.as_str(), t.as_str())),
        );
    for (key, column, ty) in named {
        if !table_columns.contains(&column) {
            bail!(
                "table {name} has no column `{column}` (named by {key}); add it, e.g. {}",
                add_column(column, ty)
            );
        }
    }

    let mut columns = Vec::new();
    let mut default_bits = 0u32;
    for row in &rows {
        let column: String = row.get(0);
        let oid: u32 = row.get(1);
        let type_name: String = row.get(2);
        let not_null: bool = row.get(3);
        let has_default: bool = row.get(4);
        let not_writable: bool = row.get(5);
        if not_writable {
            continue; // generated, or GENERATED ALWAYS AS IDENTITY
        }
        let source = if let Some((what, _)) = config.metadata.iter().find(|(_, c)| *c == column) {
            match what {
                "key" => Source::Key,
                "headers" => Source::Headers,
                "topic" => Source::Topic,
                "partition" => Source::Partition,
                "offset" => Source::Offset,
                "timestamp" => Source::Timestamp,
                _ => Source::Value,
            }
        } else {
            let field = config
                .rename
                .iter()
                .find(|(_, c)| **c == column)
                .map_or(column.clone(), |(f, _)| f.clone());
            Source::Field(field)
        };
        let Some(ty) = PgType::from_oid(oid) else {
            if not_null && !has_default {
                bail!(
                    "column `{column}` of table {name} has type {type_name}, which sluice cannot \
                     write (supported: {}), and it is NOT NULL without a default",
                    PgType::SUPPORTED
                );
            }
            if !matches!(source, Source::Field(_)) || config.rename.values().any(|c| *c == column) {
                bail!(
                    "column `{column}` of table {name} has type {type_name}, which sluice cannot \
                     write (supported: {})",
                    PgType::SUPPORTED
                );
            }
            tracing::warn!(table = %name, column = %column, "column type {type_name} is not supported; the column is left to the database");
            continue;
        };
        let default_bit = if has_default {
            default_bits += 1;
            if default_bits > 64 {
                bail!(
                    "table {name} has more than 64 columns with defaults; sluice writes at most 64"
                );
            }
            Some(default_bits - 1)
        } else {
            None
        };
        columns.push(Column {
            quoted: quote(&column),
            name: column,
            ty,
            required: not_null && !has_default,
            default_bit,
            source,
        });
    }
    let key = config
        .key
        .iter()
        .map(|k| {
            columns
                .iter()
                .position(|c| c.name == *k)
                .with_context(|| format!("key column `{k}` of table {name} cannot be written"))
        })
        .collect::<Result<Vec<_>>>()?;
    let needs_object = columns.iter().any(|c| matches!(c.source, Source::Field(_)));
    let fields = FieldIndex::new(columns.iter().map(|c| match &c.source {
        Source::Field(name) => Some(name.as_str()),
        _ => None,
    }));
    Ok(Some(Table {
        output: output.to_string(),
        name,
        columns,
        key,
        needs_object,
        fields,
    }))
}
