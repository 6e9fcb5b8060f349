//! The configuration of a PostgreSQL output: which table, how records become its rows.

use std::collections::BTreeMap;

use serde::Deserialize;

/// How output records become rows of a PostgreSQL table.
///
/// The top-level fields of a record's JSON value fill the columns of the same name (`rename`
/// maps the others); the record's metadata can fill more columns. Column types are read from the
/// table at start-up.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresOutput {
    /// Connection URL, e.g. `postgres://user:${PGPASSWORD}@host:5432/db`.
    pub url: String,
    /// Table, optionally schema-qualified (`schema.table`).
    pub table: String,
    /// `insert` appends rows; `upsert` inserts or updates rows by `key`.
    #[serde(default)]
    pub mode: WriteMode,
    /// Conflict key columns (required for `upsert`): a unique index must cover exactly these.
    #[serde(default)]
    pub key: Vec<String>,
    /// JSON field → column, for fields whose name is not their column's.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Columns filled from the record's metadata rather than its value.
    #[serde(default)]
    pub metadata: MetadataColumns,
    /// Column → SQL type: the columns `create_table` creates (and the `CREATE TABLE` printed when
    /// the table is missing).
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Create the table at start-up if it does not exist.
    #[serde(default)]
    pub create_table: bool,
}

/// How rows are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Plain inserts.
    #[default]
    Insert,
    /// `INSERT … ON CONFLICT (key) DO UPDATE`: the last record of a key wins.
    Upsert,
}

/// Columns filled from a record's metadata (each optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataColumns {
    /// The Kafka key (text, bytea, or any type the key's text converts to).
    pub key: Option<String>,
    /// The headers, as a JSON object name → value (json, jsonb).
    pub headers: Option<String>,
    /// The source topic of the input record (text).
    pub topic: Option<String>,
    /// The source partition (an integer type).
    pub partition: Option<String>,
    /// The source offset (bigint).
    pub offset: Option<String>,
    /// The record's timestamp (timestamptz, timestamp, or bigint milliseconds).
    pub timestamp: Option<String>,
    /// The whole value (jsonb, json, text or bytea).
    pub value: Option<String>,
}

impl MetadataColumns {
    /// `(what, column)` for every configured metadata column.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("key", &self.key),
            ("headers", &self.headers),
            ("topic", &self.topic),
            ("partition", &self.partition),
            ("offset", &self.offset),
            ("timestamp", &self.timestamp),
            ("value", &self.value),
        ]
        .into_iter()
        .filter_map(|(what, column)| Some((what, column.as_deref()?)))
    }
}

impl PostgresOutput {
    /// Checks the fields; `Err((key, what is expected))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.url.trim().is_empty() {
            return Err((
                "url".into(),
                "expected a connection URL, e.g. postgres://user:${PGPASSWORD}@localhost:5432/db"
                    .into(),
            ));
        }
        if self.table.trim().is_empty() {
            return Err(("table".into(), "must not be empty".into()));
        }
        match self.mode {
            WriteMode::Upsert if self.key.is_empty() => {
                return Err((
                    "key".into(),
                    "mode = \"upsert\" needs the conflict key columns, e.g. key = [\"id\"]".into(),
                ));
            }
            WriteMode::Insert if !self.key.is_empty() => {
                return Err((
                    "key".into(),
                    "only used with mode = \"upsert\"; remove it or set the mode".into(),
                ));
            }
            _ => {}
        }
        let mut seen = std::collections::BTreeMap::new();
        let targets = self
            .rename
            .iter()
            .map(|(field, column)| (format!("rename.{field}"), column.as_str()))
            .chain(
                self.metadata
                    .iter()
                    .map(|(what, column)| (format!("metadata.{what}"), column)),
            );
        for (key, column) in targets {
            if column.trim().is_empty() {
                return Err((key, "expected a column name".into()));
            }
            if let Some(other) = seen.insert(column.to_string(), key.clone()) {
                return Err((
                    key,
                    format!("column `{column}` is already filled by {other}"),
                ));
            }
        }
        if self.create_table && self.columns.is_empty() && self.metadata.iter().next().is_none() {
            return Err((
                "columns".into(),
                "create_table needs the columns to create, e.g. columns = { id = \"text\", \
                 email = \"text\" }"
                    .into(),
            ));
        }
        Ok(())
    }
}
