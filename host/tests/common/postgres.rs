//! A throwaway PostgreSQL server for tests: `initdb` + `pg_ctl` from the machine's PostgreSQL
//! binaries, in a temporary directory, on a free port. With `SLUICE_TEST_DATABASE_URL` set, a
//! fresh database on that server instead (tests that stop the server always start their own).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL database for one test.
pub struct Postgres {
    /// Connection URL of the test's database.
    pub url: String,
    server: Option<Server>,
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

struct Server {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The directory of `initdb` and `pg_ctl`, installing Debian's `postgresql` if they are missing.
fn bin_dir() -> PathBuf {
    let find = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            .collect();
        dirs.sort();
        dirs.pop()
    };
    if let Some(dir) = find() {
        return dir;
    }
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup.sh");
    let status = Command::new("bash")
        .arg(&setup)
        .status()
        .expect("running scripts/setup.sh");
    assert!(
        status.success(),
        "scripts/setup.sh could not install PostgreSQL"
    );
    find().expect(
        "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin after setup; install Debian's \
         `postgresql` package or set SLUICE_TEST_DATABASE_URL",
    )
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (the server refuses root).
fn run(bin: &Path, args: &[&str]) {
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .args(args)
        .output()
        .expect("running a PostgreSQL binary");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    fn start_new() -> Server {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the test server's directory");
        }
        run(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let server = Server {
            bin,
            data,
            port: super::free_port(),
            _dir: dir,
        };
        server.start();
        server
    }

    fn start(&self) {
        let log = self.data.join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.data.display()
        );
        run(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    fn stop(&self, mode: &str) {
        run(
            &self.bin.join("pg_ctl"),
            &["-D", self.data.to_str().unwrap(), "-m", mode, "-w", "stop"],
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.stop("immediate"));
    }
}

impl Postgres {
    /// A database for one test: on `SLUICE_TEST_DATABASE_URL`'s server if set, else on a
    /// throwaway server.
    pub fn new() -> Postgres {
        match std::env::var("SLUICE_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Self::on(&url, None),
            _ => Self::own_server(),
        }
    }

    /// A database on a throwaway server of its own (which [`Postgres::stop_server`] can stop).
    pub fn own_server() -> Postgres {
        let server = Server::start_new();
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
        Self::on(&url, Some(server))
    }

    fn on(url: &str, server: Option<Server>) -> Postgres {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let connect = |url: &str| {
            runtime.block_on(async {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap_or_else(|e| panic!("connecting to test database {url}: {e}"));
                tokio::spawn(conn);
                client
            })
        };
        let url = if server.is_some() {
            url.to_string()
        } else {
            // A database of its own on the shared server.
            let admin = connect(url);
            let name = format!("sluice_test_{}", rand_suffix());
            runtime
                .block_on(admin.batch_execute(&format!("CREATE DATABASE {name}")))
                .expect("creating the test database");
            // postgres://user@host:port/db?params → …/name (the URL form is required).
            let base = url.split('?').next().unwrap();
            let base = &base[..base
                .rfind('/')
                .filter(|i| *i > "postgres://".len())
                .unwrap_or(base.len())];
            format!("{base}/{name}")
        };
        let client = connect(&url);
        Postgres {
            url,
            server,
            runtime,
            client,
        }
    }

    /// Runs SQL statements.
    pub fn execute(&self, sql: &str) {
        self.runtime
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// Runs a query.
    pub fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.runtime
            .block_on(self.client.query(sql, &[]))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// The single number a query returns (e.g. a count).
    pub fn number(&self, sql: &str) -> i64 {
        self.query(sql)[0].get(0)
    }

    /// Runs a query on a fresh connection (the test's own may have been cut by a restart).
    pub fn query_fresh(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.runtime.block_on(async {
            let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .expect("connecting to the test database");
            tokio::spawn(conn);
            client.query(sql, &[]).await.expect(sql)
        })
    }

    /// Stops the server (fast shutdown: sessions are cut).
    pub fn stop_server(&self) {
        self.server
            .as_ref()
            .expect("a test that stops the server starts its own")
            .stop("fast");
    }

    /// Starts the server again after [`Postgres::stop_server`].
    pub fn start_server(&self) {
        self.server.as_ref().expect("own server").start();
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}_{nanos}", std::process::id())
}
