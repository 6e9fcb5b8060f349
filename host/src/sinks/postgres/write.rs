//! Writing one batch: rows by binary `COPY` in one transaction per database, bisected around
//! the rows the database refuses, with the offsets when exactly-once.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::chain::Failure;
use crate::sinks::{BeforeCommit, Stamp, Written};

use super::*;

impl PostgresSink {
    /// Writes `rows` in one transaction per database. With `stamp` (exactly-once), the offsets go
    /// into the same transaction and `before_commit` runs with the refused inputs just before it
    /// commits (to deliver their dead letters first). Retries while the database is unreachable,
    /// until `stopping()`.
    pub async fn write(
        &self,
        session: &mut Session,
        rows: &Rows,
        stamp: Option<&Stamp>,
        before_commit: &mut BeforeCommit<'_>,
        stopping: &(dyn Fn() -> bool + Sync),
    ) -> Result<Written> {
        let mut written = Written::default();
        // The first rows may already be on their way (see `stream`).
        if let Some(stream) = session.stream.take()
            && let Some(done) = self
                .finish_stream(session, stream, rows, stamp, before_commit)
                .await?
        {
            return Ok(done);
        }
        for (db, database) in self.databases.iter().enumerate() {
            let tables: Vec<usize> = (0..self.tables.len())
                .filter(|t| self.table_db[*t] == db && !rows.tables[*t].rows.is_empty())
                .collect();
            if tables.is_empty() && stamp.is_none() {
                continue;
            }
            let mut outage = Outage::new();
            loop {
                let attempt = async {
                    let conn = match session.connections.entry(db) {
                        std::collections::hash_map::Entry::Occupied(c) => c.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => v.insert(Connection {
                            client: connect(&database.url, &database.display).await?,
                            statements: HashMap::new(),
                        }),
                    };
                    self.attempt(conn, &tables, rows, stamp, before_commit)
                        .await
                };
                match attempt.await {
                    Ok(w) => {
                        outage.recovered(&self.pipeline, &database.display);
                        written.failures.extend(w.failures);
                        written.skipped |= w.skipped;
                        break;
                    }
                    Err(AttemptError::Fatal(e)) => {
                        return Err(e.context(format!(
                            "writing to Postgres {} (pipeline `{}`)",
                            database.display, self.pipeline
                        )));
                    }
                    Err(AttemptError::Transient(e)) => {
                        session.connections.remove(&db);
                        self.retries.increment(1);
                        if stopping() {
                            return Err(e.context(format!(
                                "stopping while Postgres {} is unreachable: the batch is not \
                                 committed and is processed again after a restart",
                                database.display
                            )));
                        }
                        let delay = outage.failed(&self.pipeline, &database.display, &e);
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
        Ok(written)
    }

    /// Stores the partition's next offset, unless the stored one is already past the batch's
    /// first record (then `false`: the batch was written before, or by the partition's new
    /// owner).
    pub(super) async fn store_offsets(
        &self,
        client: &tokio_postgres::Client,
        stamp: &Stamp,
    ) -> Result<bool, tokio_postgres::Error> {
        Ok(client
            .execute(
                "UPDATE sluice_offsets SET next_offset = $4, updated_at = now() \
                 WHERE pipeline = $1 AND topic = $2 AND partition = $3 AND next_offset <= $5",
                &[
                    &self.pipeline,
                    &&*stamp.tp.0,
                    &stamp.tp.1,
                    &stamp.next_offset,
                    &stamp.first_offset,
                ],
            )
            .await?
            == 1
            || client
                .execute(
                    "INSERT INTO sluice_offsets (pipeline, topic, partition, next_offset) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[
                        &self.pipeline,
                        &&*stamp.tp.0,
                        &stamp.tp.1,
                        &stamp.next_offset,
                    ],
                )
                .await?
                == 1)
    }

    /// One transaction: every table's rows, bisected around refused ones, then the offsets.
    pub(super) async fn attempt(
        &self,
        conn: &mut Connection,
        tables: &[usize],
        rows: &Rows,
        stamp: Option<&Stamp>,
        before_commit: &mut BeforeCommit<'_>,
    ) -> Result<Written, AttemptError> {
        let started = Instant::now();
        for &t in tables {
            let masks: std::collections::BTreeSet<u64> =
                rows.tables[t].rows.iter().map(|r| r.omitted).collect();
            for mask in masks {
                prepare(conn, &self.tables[t], t, mask).await?;
            }
        }
        let mut tx = conn.client.transaction().await?;
        let mut written = Written::default();
        let mut counts = vec![0u64; tables.len()];
        for (i, &t) in tables.iter().enumerate() {
            let table_rows = &rows.tables[t];
            let mut ranges = vec![(0, table_rows.rows.len())];
            while let Some((lo, hi)) = ranges.pop() {
                let savepoint = tx.savepoint("sluice_rows").await?;
                let result = write_rows(
                    savepoint.client(),
                    &conn.statements,
                    t,
                    table_rows,
                    &table_rows.rows[lo..hi],
                )
                .await;
                match result {
                    Ok(()) => {
                        savepoint.commit().await?;
                        counts[i] += (hi - lo) as u64;
                    }
                    Err(e) if is_row_error(&e) => {
                        savepoint.rollback().await?;
                        if hi - lo == 1 {
                            let table = &self.tables[t];
                            written.failures.push(Failure {
                                input: table_rows.rows[lo].input,
                                reason: ROW_REJECTED,
                                message: format!(
                                    "output `{}` (table {}): {}",
                                    table.output,
                                    table.name,
                                    describe(&e)
                                ),
                                plugin: None,
                            });
                        } else {
                            let mid = lo + (hi - lo) / 2;
                            ranges.push((mid, hi));
                            ranges.push((lo, mid));
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if let Some(stamp) = stamp {
            let stored = self.store_offsets(tx.client(), stamp).await?;
            if !stored {
                tx.rollback().await?;
                return Ok(Written {
                    failures: Vec::new(),
                    skipped: true,
                });
            }
            before_commit(&written.failures).map_err(AttemptError::Fatal)?;
        }
        tx.commit().await?;
        for (i, &t) in tables.iter().enumerate() {
            self.rows_written[t].increment(counts[i]);
        }
        self.write_time.record(started.elapsed().as_secs_f64());
        Ok(written)
    }
}

/// Prepares (once per connection) the statements that write `table`'s rows (table `t` of the
/// sink) leaving out the columns of `omitted`.
pub(super) async fn prepare(
    conn: &mut Connection,
    table: &Table,
    t: usize,
    omitted: u64,
) -> Result<(), AttemptError> {
    if conn.statements.contains_key(&(t, omitted)) {
        return Ok(());
    }
    let columns: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| !is_omitted(c, omitted))
        .map(|c| c.quoted.as_str())
        .collect();
    let list = columns.join(", ");
    let statements = if table.key.is_empty() {
        Statements {
            copy: conn
                .client
                .prepare(&format!(
                    "COPY {} ({list}) FROM STDIN (FORMAT binary)",
                    table.name
                ))
                .await?,
            upsert: None,
        }
    } else {
        let stage = format!("sluice_stage_{t}");
        // A session-local copy of the table without its constraints, made outside any
        // transaction so that a rollback does not drop it.
        conn.client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT * FROM {} WITH NO DATA; \
                     ALTER TABLE {stage} ADD COLUMN IF NOT EXISTS sluice_seq bigint",
                table.name
            ))
            .await?;
        let key: Vec<&str> = table
            .key
            .iter()
            .map(|k| table.columns[*k].quoted.as_str())
            .collect();
        let key = key.join(", ");
        let updates: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .filter(|(i, c)| !table.key.contains(i) && !is_omitted(c, omitted))
            .map(|(_, c)| format!("{0} = EXCLUDED.{0}", c.quoted))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        let insert = format!(
            "INSERT INTO {} ({list}) SELECT DISTINCT ON ({key}) {list} FROM {stage} \
             ORDER BY {key}, sluice_seq DESC ON CONFLICT ({key}) {on_conflict}",
            table.name
        );
        // The conflict target is matched to a unique index only when the statement is
        // planned, so plan it now rather than fail on the first batch.
        conn.client
            .batch_execute(&format!("EXPLAIN {insert}"))
            .await?;
        Statements {
            copy: conn
                .client
                .prepare(&format!(
                    "COPY {stage} ({list}, sluice_seq) FROM STDIN (FORMAT binary)"
                ))
                .await?,
            upsert: Some((
                conn.client.prepare(&insert).await?,
                conn.client.prepare(&format!("TRUNCATE {stage}")).await?,
            )),
        }
    };
    conn.statements.insert((t, omitted), statements);
    Ok(())
}

/// [`prepare`] for every column at start-up, where a failure means a wrong upsert key.
pub(super) async fn prepare_checked(
    conn: &mut Connection,
    table: &Table,
    t: usize,
    config: &PostgresOutput,
) -> Result<()> {
    prepare(conn, table, t, 0)
        .await
        .map_err(|e| match e {
            AttemptError::Transient(e) | AttemptError::Fatal(e) => e,
        })
        .with_context(|| match config.mode {
            WriteMode::Upsert => format!(
                "output `{}`: upserts into {} need a unique index on exactly the key columns, \
                 e.g. CREATE UNIQUE INDEX ON {} ({})",
                table.output,
                table.name,
                table.name,
                config.key.join(", ")
            ),
            WriteMode::Insert => format!(
                "output `{}`: preparing COPY into {}",
                table.output, table.name
            ),
        })
}

pub(super) fn is_omitted(column: &schema::Column, omitted: u64) -> bool {
    column.default_bit.is_some_and(|b| omitted & (1 << b) != 0)
}

/// Writes `rows` (a range of one table's rows) as consecutive runs of rows leaving out the same
/// columns, each one `COPY` (and for upserts, one insert from the staging table).
pub(super) async fn write_rows(
    client: &tokio_postgres::Client,
    statements: &HashMap<(usize, u64), Statements>,
    t: usize,
    all: &TableRows,
    rows: &[Row],
) -> Result<(), tokio_postgres::Error> {
    use futures::SinkExt;
    let mut start = 0;
    while start < rows.len() {
        let omitted = rows[start].omitted;
        let end = start
            + rows[start..]
                .iter()
                .take_while(|r| r.omitted == omitted)
                .count();
        let run = &rows[start..end];
        let statements = &statements[&(t, omitted)];
        let sink = client.copy_in(&statements.copy).await?;
        futures::pin_mut!(sink);
        // The rows are already tuples in the batch's buffer: send runs of adjacent ones as
        // slices of it, with no copy on this side.
        sink.feed(bytes::Bytes::from_static(COPY_HEADER)).await?;
        let mut span = run[0].start..run[0].end;
        for row in &run[1..] {
            if row.start == span.end {
                span.end = row.end;
            } else {
                sink.feed(all.frozen.slice(span)).await?;
                span = row.start..row.end;
            }
        }
        sink.feed(all.frozen.slice(span)).await?;
        sink.feed(bytes::Bytes::from_static(COPY_TRAILER)).await?;
        sink.finish().await?;
        if let Some((insert, truncate)) = &statements.upsert {
            client.execute(insert, &[]).await?;
            client.execute(truncate, &[]).await?;
        }
        start = end;
    }
    Ok(())
}
