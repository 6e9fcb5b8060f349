//! Rows sent while the batch is still being converted: the first rows' `COPY` runs on the
//! database while the worker converts the rest, instead of after it.
//!
//! When the sink writes one table and the worker already has a connection, converting a batch
//! opens a transaction and a `COPY` on a task that owns the connection, and hands it the rows in
//! chunks as they are converted — for as long as they form an unbroken run of rows leaving out
//! no column (one `COPY` statement). The write then finishes the `COPY`, writes any rows after
//! that run, the offsets (exactly-once) and commits: the same transaction as the ordinary write,
//! minus the savepoint.
//!
//! Nothing is committed before the write decides to. Whenever the streamed rows are no longer
//! exactly the rows to write (an input failed in another output or sink after its row was sent),
//! or the database refuses a row, or the connection breaks, the transaction is rolled back and
//! the batch is written the ordinary way (with its savepoints, bisection and retries), so the
//! guarantees and the dead-letter outcomes are those of the ordinary write.

use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use futures::SinkExt;
use tokio::sync::mpsc;
use tokio_postgres::Statement;

use super::*;

/// Bytes of converted rows handed to the `COPY` task at a time (above tokio-postgres' 4 KiB, so
/// a chunk goes to the socket as it is).
const CHUNK: usize = 16 * 1024;

/// Why a streamed write did not commit.
enum StreamError {
    /// The database refused something or the connection broke: write the batch the ordinary
    /// way, which finds the refused rows or waits for the database.
    Database,
    /// The dead letters could not be delivered: the pipeline stops.
    DeadLetters(anyhow::Error),
}

enum Message {
    Chunk(Bytes),
    /// The last chunk was sent: end the `COPY` (dropping the sender instead aborts it).
    Finish,
}

/// A `COPY` in progress on a task that owns the worker's connection.
pub(super) struct Stream {
    /// Table index.
    t: usize,
    sender: Option<mpsc::UnboundedSender<Message>>,
    task: tokio::task::JoinHandle<(Connection, Result<(), tokio_postgres::Error>)>,
    /// Rows of the table sent (the first ones of the batch).
    rows: usize,
    /// Bytes of the table's data handed over so far, and the end of the last streamed row.
    sent: usize,
    end: usize,
    /// Still taking rows: false after the first row that cannot join the run.
    open: bool,
}

impl PostgresSink {
    /// Opens a stream for the batch about to be converted, if it can be used: one table, and a
    /// connection to its database with the `COPY` of full rows prepared (after the first batch).
    pub(super) fn start_stream(&self, session: &mut Session) -> Option<Stream> {
        if let Some(old) = session.stream.take() {
            self.abandon(session, old);
        }
        if self.tables.len() != 1 {
            return None;
        }
        let statement: Statement = session
            .connections
            .get(&self.table_db[0])?
            .statements
            .get(&(0, 0))?
            .copy
            .clone();
        let conn = session.connections.remove(&self.table_db[0])?;
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let task = self.handle.spawn(async move {
            let result = async {
                conn.client.batch_execute("BEGIN").await?;
                let sink = conn.client.copy_in(&statement).await?;
                futures::pin_mut!(sink);
                sink.feed(Bytes::from_static(COPY_HEADER)).await?;
                while let Some(message) = receiver.recv().await {
                    match message {
                        Message::Chunk(chunk) => sink.feed(chunk).await?,
                        Message::Finish => {
                            sink.feed(Bytes::from_static(COPY_TRAILER)).await?;
                            sink.finish().await?;
                            return Ok(());
                        }
                    }
                }
                // The converter gave up on the stream: dropping the sink aborts the COPY.
                Ok(())
            }
            .await;
            (conn, result)
        });
        Some(Stream {
            t: 0,
            sender: Some(sender),
            task,
            rows: 0,
            sent: 0,
            end: 0,
            open: true,
        })
    }

    /// Rolls back an unused stream's transaction and gives its connection back to the session
    /// (dropped if it broke).
    pub(super) fn abandon(&self, session: &mut Session, mut stream: Stream) {
        stream.sender = None;
        let db = self.table_db[stream.t];
        if let Some(conn) = self.handle.block_on(rollback(stream)) {
            session.connections.insert(db, conn);
        }
    }

    /// The write of a batch whose first rows were streamed: `Ok(Some)` when it is committed (or
    /// skipped), `Ok(None)` when it was rolled back and must be written the ordinary way, `Err`
    /// when the pipeline must stop (the dead letters could not be delivered).
    pub(super) async fn finish_stream(
        &self,
        session: &mut Session,
        mut stream: Stream,
        rows: &Rows,
        stamp: Option<&Stamp>,
        before_commit: &mut BeforeCommit<'_>,
    ) -> Result<Option<Written>> {
        let started = Instant::now();
        let t = stream.t;
        let db = self.table_db[t];
        let table_rows = &rows.tables[t];
        // The streamed rows must still be the first rows, all of them: a row dropped since
        // (its input failed elsewhere) leaves a gap, as every row has bytes.
        let intact = stream.rows > 0
            && table_rows.rows.len() >= stream.rows
            && table_rows.rows[0].start == 0
            && table_rows.rows[..stream.rows]
                .windows(2)
                .all(|w| w[0].end == w[1].start)
            && table_rows.rows[stream.rows - 1].end == stream.end;
        let others = (0..self.tables.len()).any(|o| o != t && !rows.tables[o].rows.is_empty());
        if !intact || others {
            stream.sender = None;
            if let Some(conn) = rollback(stream).await {
                session.connections.insert(db, conn);
            }
            return Ok(None);
        }
        if let Some(sender) = stream.sender.take() {
            let _ = sender.send(Message::Finish);
        }
        let Ok((mut conn, copied)) = stream.task.await else {
            return Ok(None); // the task panicked: the connection is gone
        };
        let result = match copied {
            Ok(()) => {
                self.commit_streamed(&mut conn, t, table_rows, stream.rows, stamp, before_commit)
                    .await
            }
            Err(_) => Err(StreamError::Database),
        };
        match result {
            Ok(written) => {
                session.connections.insert(db, conn);
                if !written.skipped {
                    self.rows_written[t].increment(table_rows.rows.len() as u64);
                }
                self.write_time.record(started.elapsed().as_secs_f64());
                Ok(Some(written))
            }
            Err(StreamError::DeadLetters(e)) => {
                let _ = conn.client.batch_execute("ROLLBACK").await;
                Err(e.context(format!(
                    "writing to Postgres {} (pipeline `{}`)",
                    self.databases[db].display, self.pipeline
                )))
            }
            Err(StreamError::Database) => {
                // A refused row or a broken connection: the ordinary write sorts it out.
                if conn.client.batch_execute("ROLLBACK").await.is_ok() {
                    session.connections.insert(db, conn);
                }
                Ok(None)
            }
        }
    }

    /// After the streamed `COPY`: the rest of the table's rows, the offsets, the commit.
    async fn commit_streamed(
        &self,
        conn: &mut Connection,
        t: usize,
        table_rows: &TableRows,
        streamed: usize,
        stamp: Option<&Stamp>,
        before_commit: &mut BeforeCommit<'_>,
    ) -> Result<Written, StreamError> {
        let raw = |_: tokio_postgres::Error| StreamError::Database;
        if let Some((insert, truncate)) = &conn.statements[&(t, 0)].upsert {
            conn.client.execute(insert, &[]).await.map_err(raw)?;
            conn.client.execute(truncate, &[]).await.map_err(raw)?;
        }
        let rest = &table_rows.rows[streamed..];
        if !rest.is_empty() {
            let masks: std::collections::BTreeSet<u64> = rest.iter().map(|r| r.omitted).collect();
            for mask in masks {
                prepare(conn, &self.tables[t], t, mask)
                    .await
                    .map_err(|_| StreamError::Database)?;
            }
            write_rows(&conn.client, &conn.statements, t, table_rows, rest)
                .await
                .map_err(raw)?;
        }
        if let Some(stamp) = stamp {
            if !self.store_offsets(&conn.client, stamp).await.map_err(raw)? {
                conn.client.batch_execute("ROLLBACK").await.map_err(raw)?;
                return Ok(Written {
                    failures: Vec::new(),
                    skipped: true,
                });
            }
            before_commit(&[]).map_err(StreamError::DeadLetters)?;
        }
        conn.client.batch_execute("COMMIT").await.map_err(raw)?;
        Ok(Written::default())
    }
}

impl Stream {
    /// Hands over the rows converted since the last chunk, once there is a chunk's worth (or
    /// all of them with `last`). `data` is the table's buffer; `rows` its rows.
    pub(super) fn offer(&mut self, data: &[u8], rows: &[Row], last: bool) {
        if !self.open {
            return;
        }
        // Extend the run over the rows converted since, while they fit it.
        while self.rows < rows.len() {
            let row = &rows[self.rows];
            if row.omitted != 0 || row.start != self.end {
                self.open = false;
                break;
            }
            self.end = row.end;
            self.rows += 1;
        }
        if self.end - self.sent >= CHUNK || (last || !self.open) && self.end > self.sent {
            let chunk = Bytes::copy_from_slice(&data[self.sent..self.end]);
            self.sent = self.end;
            let delivered = self
                .sender
                .as_ref()
                .is_some_and(|s| s.send(Message::Chunk(chunk)).is_ok());
            if !delivered {
                // The task has stopped (the connection broke): the write will find out why.
                self.open = false;
            }
        }
    }

    /// The table it streams.
    pub(super) fn table(&self) -> usize {
        self.t
    }
}

/// Aborts a stream's `COPY` and rolls back its transaction; the connection if it still works.
async fn rollback(mut stream: Stream) -> Option<Connection> {
    stream.sender = None;
    let (conn, _) = stream.task.await.ok()?;
    conn.client.batch_execute("ROLLBACK").await.ok()?;
    Some(conn)
}
