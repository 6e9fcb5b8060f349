//! Connections to the databases: connecting, retrying while a database is down, and the
//! offsets table of exactly-once pipelines.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use tokio_postgres::{Client, NoTls, Statement};

use crate::offsets::{OffsetStore, TopicPartition};

use super::*;

/// One worker's connections (one per database), with their prepared statements.
#[derive(Default)]
pub struct Session {
    pub(super) connections: HashMap<usize, Connection>,
    /// The `COPY` of the batch being converted, when its first rows are already being sent.
    pub(super) stream: Option<super::stream::Stream>,
}

pub(super) struct Connection {
    pub(super) client: Client,
    pub(super) statements: HashMap<(usize, u64), Statements>,
}

pub(super) struct Statements {
    pub(super) copy: Statement,
    /// Upsert: the insert from the staging table, and its clearing.
    pub(super) upsert: Option<(Statement, Statement)>,
}

pub(super) enum AttemptError {
    /// The database is unreachable or restarting: retry.
    Transient(anyhow::Error),
    /// Anything else: the pipeline stops.
    Fatal(anyhow::Error),
}

impl From<tokio_postgres::Error> for AttemptError {
    fn from(e: tokio_postgres::Error) -> Self {
        if is_transient(&e) {
            AttemptError::Transient(e.into())
        } else {
            AttemptError::Fatal(anyhow!(describe(&e)))
        }
    }
}

/// Connection lost, server shutting down or starting, out of resources, serialization failure.
pub(super) fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => true,
        Some(code) => ["08", "53", "57", "40"]
            .iter()
            .any(|class| code.code().starts_with(class)),
    }
}

/// Data exceptions and integrity violations: the fault of a row, not of the database.
pub(super) fn is_row_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// The database's message with its detail.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}): {detail}", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => format!("{e:#}"),
    }
}

/// `user@host:port/db` of a URL, without its password.
pub(super) fn display_url(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect::<Vec<_>>()
                .join(",");
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!(
                "{}@{host}:{port}/{}",
                c.get_user().unwrap_or(""),
                c.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// Connects, with the connection driven on the current runtime.
pub(super) async fn connect(url: &str, display: &str) -> Result<Client, AttemptError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(|e| {
        if is_transient(&e) {
            AttemptError::Transient(anyhow!("connecting to {display}: {e:#}"))
        } else {
            AttemptError::Fatal(anyhow!(
                "connecting to Postgres {display}: {} (check the output's url: user, password, \
                 database)",
                describe(&e)
            ))
        }
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("Postgres connection closed: {e}");
        }
    });
    Ok(client)
}

/// Tells the log, once and then every 10 s, that a database is unreachable; and when it is back.
pub(super) struct Outage {
    pub(super) since: Option<Instant>,
    pub(super) said: Option<Instant>,
    pub(super) attempts: u32,
}

impl Outage {
    pub(super) fn new() -> Self {
        Outage {
            since: None,
            said: None,
            attempts: 0,
        }
    }

    /// Notes a failed attempt and returns how long to wait before the next.
    pub(super) fn failed(
        &mut self,
        pipeline: &str,
        database: &str,
        error: &anyhow::Error,
    ) -> Duration {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        self.attempts += 1;
        let delay =
            (Duration::from_millis(100) * 2u32.saturating_pow(self.attempts - 1)).min(MAX_BACKOFF);
        if self
            .said
            .is_none_or(|s| s.elapsed() >= Duration::from_secs(10))
        {
            self.said = Some(now);
            tracing::warn!(
                pipeline,
                "Postgres {database} is unreachable ({error:#}); retrying (attempt {}, down for {:.0?}); \
                 consuming is paused and nothing is committed until it is back",
                self.attempts,
                since.elapsed()
            );
        }
        delay
    }

    pub(super) fn recovered(&self, pipeline: &str, database: &str) {
        if let Some(since) = self.since {
            tracing::info!(
                pipeline,
                "Postgres {database} is reachable again after {:.1?}; resuming",
                since.elapsed()
            );
        }
    }
}

pub(super) async fn connect_at_start(pipeline: &str, url: &str, display: &str) -> Result<Client> {
    let mut outage = Outage::new();
    loop {
        match connect(url, display).await {
            Ok(client) => {
                outage.recovered(pipeline, display);
                return Ok(client);
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Transient(e)) => {
                let delay = outage.failed(pipeline, display, &e);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

pub(super) async fn create_offsets_table(client: &Client) -> Result<(), tokio_postgres::Error> {
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('sluice_offsets')::text", &[])
        .await?
        .get(0);
    if exists.is_some() {
        return Ok(());
    }
    match client.batch_execute(CREATE_OFFSETS_TABLE).await {
        // Two members creating it at once: one wins, and the table is there.
        Err(e) if e.code().is_some_and(|c| c.code() == "23505") => Ok(()),
        other => other,
    }
}

/// Reads an exactly-once pipeline's stored offsets.
pub(super) struct PgOffsetStore {
    pub(super) pipeline: String,
    pub(super) url: String,
    pub(super) display: String,
    pub(super) client: tokio::sync::Mutex<Option<Client>>,
}

#[async_trait::async_trait]
impl OffsetStore for PgOffsetStore {
    async fn load(&self, tp: &TopicPartition) -> Result<Option<i64>> {
        let mut client = self.client.lock().await;
        let mut outage = Outage::new();
        loop {
            let attempt = async {
                if client.is_none() {
                    *client = Some(connect(&self.url, &self.display).await?);
                }
                let c = client.as_ref().expect("connected");
                let row = c
                    .query_opt(
                        "SELECT next_offset FROM sluice_offsets \
                         WHERE pipeline = $1 AND topic = $2 AND partition = $3",
                        &[&self.pipeline, &&*tp.0, &tp.1],
                    )
                    .await?;
                Ok::<_, AttemptError>(row.map(|r| r.get::<_, i64>(0)))
            };
            match attempt.await {
                Ok(offset) => {
                    outage.recovered(&self.pipeline, &self.display);
                    return Ok(offset);
                }
                Err(AttemptError::Fatal(e)) => {
                    return Err(e.context(format!(
                        "reading the stored offset of {}[{}] from {OFFSETS_TABLE}",
                        tp.0, tp.1
                    )));
                }
                Err(AttemptError::Transient(e)) => {
                    *client = None;
                    let delay = outage.failed(&self.pipeline, &self.display, &e);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
