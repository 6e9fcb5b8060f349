//! The `sluice` command line.

mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, Limits};
use crate::dev::DevOptions;
use crate::pipeline::Host;
use crate::runtime::{ComponentCache, PluginSpec, Runtime};

/// Kafka stream processing with WebAssembly component transforms.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Log output formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipelines of a config file until SIGINT/SIGTERM.
    Run {
        /// The config file (TOML).
        config: PathBuf,
    },
    /// Validate a config file and load every plugin it names (no Kafka needed).
    Check {
        /// The config file (TOML).
        config: PathBuf,
    },
    /// Run one plugin on records from a JSON-lines file and print its outputs as JSON lines.
    Test {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// Input records, one JSON object per line.
        #[arg(long)]
        input: PathBuf,
        /// Plugin config entries, as key=value (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// A stateful plugin's allowed lateness: how far the watermark stays behind the largest
        /// timestamp seen (as `state.allowed_lateness_ms`).
        #[arg(long, value_name = "MS", default_value_t = 0)]
        allowed_lateness_ms: i64,
        /// After the outputs, print a stateful plugin's final state, one line per key.
        #[arg(long)]
        print_state: bool,
    },
    /// Create a plugin project that builds to a component with `./build.sh`.
    New {
        /// The plugin's name (names the directory, the package and the .wasm file).
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The Sluice checkout whose SDKs the project uses (default: the one this binary was
        /// built from).
        #[arg(long)]
        sluice_root: Option<PathBuf>,
    },
    /// Write the demo's sample streams (users.signups, shop.events) to a real Kafka cluster.
    Generate {
        /// Bootstrap servers, host:port[,host:port…].
        #[arg(long)]
        brokers: String,
        /// Events per second, per sample stream.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Stop by itself after this many seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
    },
    /// The local demo: embedded mock Kafka, sample event generators, the example pipelines and
    /// their live output.
    Dev {
        /// Pipeline config to run against the mock cluster (its bootstrap_servers is replaced).
        #[arg(long, default_value = "examples/dev.toml")]
        config: PathBuf,
        /// Stop by itself after this many seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
        /// Events per second, per sample stream.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Sample output records printed per second.
        #[arg(long, default_value_t = 4)]
        samples: u32,
        /// Rebuild the example plugins when their sources change and hot-swap them.
        #[arg(long)]
        watch: bool,
    },
    /// Internal: compile a component under resource limits (run by the host itself).
    #[command(name = "__compile", hide = true)]
    Compile {
        input: PathBuf,
        output: PathBuf,
        #[arg(long)]
        memory_mb: u64,
        #[arg(long)]
        cpu_seconds: u64,
        #[arg(long)]
        fuel: bool,
        #[arg(long)]
        no_deadlines: bool,
    },
}

/// Parses the command line and runs it.
pub fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    if let Command::Compile {
        input,
        output,
        memory_mb,
        cpu_seconds,
        fuel,
        no_deadlines,
    } = &cli.command
    {
        crate::runtime::compile_child_main(
            input,
            output,
            *memory_mb,
            *cpu_seconds,
            *fuel,
            !*no_deadlines,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(cli.log_format);
    match cli.command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            let runtime = runtime_for(&config)?;
            let shutdown_timeout = Duration::from_millis(config.runtime.shutdown_timeout_ms);
            let host = Host::prepare(config, &runtime)?;
            tokio_runtime()?.block_on(async {
                let (stop, recheck) = stop_on_signals(shutdown_timeout)?;
                let admin = crate::admin::AdminServer::start(&host, stop.clone()).await?;
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    tokio::spawn(progress::progress_line(
                        host.stats(),
                        host.status(),
                        stop.clone(),
                    ));
                }
                let ran = host.run(stop, recheck).await;
                let served = admin.finish().await;
                ran.and(served)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => check(&config),
        Command::Test {
            plugin,
            input,
            config,
            allowed_lateness_ms,
            print_state,
        } => {
            let pairs = config
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--config `{kv}`: expected KEY=VALUE"))
                })
                .collect::<Result<Vec<_>>>()?;
            let runtime = Runtime::new(ComponentCache::default_dir())?;
            let spec = PluginSpec {
                name: plugin_name(&plugin),
                path: plugin.clone(),
                config: pairs,
                limits: Limits::default(),
                scope: String::new(),
                tenant: String::new(),
            };
            let plugin = runtime.load(&spec)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            if print_state && !plugin.is_stateful() {
                anyhow::bail!(
                    "--print-state: plugin {} keeps no state (it does not implement the stateful-transform world)",
                    spec.path.display()
                );
            }
            let options = crate::plugin_test::Options {
                allowed_lateness_ms,
                print_state,
            };
            let summary = crate::plugin_test::run(&plugin, &input, options, &mut out)?;
            std::io::Write::flush(&mut out)?;
            eprintln!(
                "{} inputs → {} outputs, {} rejected",
                summary.inputs, summary.outputs, summary.errors
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::New {
            name,
            lang,
            dir,
            sluice_root,
        } => {
            let root = sluice_root.or_else(crate::scaffold::default_root).context(
                "cannot find the Sluice checkout this binary was built from: pass --sluice-root",
            )?;
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let files = crate::scaffold::create(&name, lang, &dir, &root)?;
            for f in &files {
                println!("{}", dir.join(f).display());
            }
            eprintln!(
                "created {}: build it with `{}/build.sh`, then `sluice test {}/{name}.wasm --input {}/sample.jsonl`",
                dir.display(),
                dir.display(),
                dir.display(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            brokers,
            rate,
            duration,
        } => {
            let (stop_tx, stop) = watch::channel(false);
            if let Some(secs) = duration {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(secs));
                    let _ = stop_tx.send(true);
                });
            } else {
                // Runs until killed: keep the sender alive.
                std::mem::forget(stop_tx);
            }
            let sent = crate::dev::generate(&brokers, rate, stop)?;
            eprintln!("generated {sent} events");
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev {
            config,
            duration,
            rate,
            samples,
            watch,
        } => {
            let config = Config::load(&config).context(
                "loading the demo config (run `make dev` from the repository root, or pass --config)",
            )?;
            let runtime = runtime_for(&config)?;
            let options = DevOptions {
                duration: duration.map(Duration::from_secs),
                rate,
                samples_per_second: samples,
                watch_sources: watch,
            };
            let shutdown_timeout = Duration::from_millis(config.runtime.shutdown_timeout_ms);
            tokio_runtime()?.block_on(async {
                let (stop, recheck) = stop_on_signals(shutdown_timeout)?;
                crate::dev::run(config, runtime, options, stop, recheck).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compile { .. } => unreachable!("handled before logging starts"),
    }
}

fn check(path: &Path) -> Result<ExitCode> {
    let config = Config::load(path)?;
    let runtime = runtime_for(&config)?;
    let mut failures = 0;
    for pipeline in &config.pipelines {
        for spec in crate::pipeline::plugin_specs(&config, pipeline) {
            let started = Instant::now();
            match runtime.load(&spec) {
                Ok(p) => println!(
                    "ok     pipeline `{}`: plugin `{}` version {} ({}, {} ms)",
                    pipeline.name,
                    p.name,
                    p.version,
                    p.path.display(),
                    started.elapsed().as_millis()
                ),
                Err(e) => {
                    failures += 1;
                    println!("error  pipeline `{}`: {e}", pipeline.name);
                }
            }
        }
    }
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for pipeline in &config.pipelines {
        match tokio.block_on(crate::sinks::check(
            &pipeline.sink_spec(),
            Duration::from_secs(10),
        )) {
            Ok(lines) => {
                for line in lines {
                    println!("ok     pipeline `{}`: {line}", pipeline.name);
                }
            }
            Err(e) => {
                failures += 1;
                println!("error  pipeline `{}`: {e:#}", pipeline.name);
            }
        }
    }
    if failures > 0 {
        bail!(
            "{}: {failures} plugin(s) or output(s) failed the check",
            path.display()
        );
    }
    println!(
        "{}: {} pipeline(s) valid",
        path.display(),
        config.pipelines.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into())
}

fn runtime_for(config: &Config) -> Result<Arc<Runtime>> {
    let dir = config
        .runtime
        .cache_dir
        .clone()
        .map(|d| config.base_dir.join(d))
        .unwrap_or_else(ComponentCache::default_dir);
    Runtime::new(dir).context("starting the WebAssembly runtime")
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A stop flag raised by the first SIGINT or SIGTERM, and a re-check request on every SIGHUP.
///
/// The process ends within `shutdown_timeout` of the first signal whatever its plugins do: past
/// it (or at a second signal) it exits at once. Nothing unacknowledged was committed, so
/// at-least-once (and exactly-once, whose open transactions abort) still holds.
fn stop_on_signals(
    shutdown_timeout: Duration,
) -> Result<(watch::Receiver<bool>, mpsc::UnboundedReceiver<()>)> {
    use tokio::signal::unix::{SignalKind, signal};
    let (recheck_tx, recheck_rx) = mpsc::unbounded_channel();
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: re-checking every plugin file");
            if recheck_tx.send(()).is_err() {
                return;
            }
        }
    });
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping: finishing in-flight batches (signal again to exit at once)");
        let _ = tx.send(true);
        // A thread, not a task: the async runtime may be the thing that is stuck.
        let _ = std::thread::Builder::new()
            .name("sluice-shutdown-deadline".into())
            .spawn(move || {
                std::thread::sleep(shutdown_timeout);
                tracing::error!(
                    "shutdown did not finish within runtime.shutdown_timeout_ms ({} ms): exiting \
                     now; what was not committed is processed again after a restart",
                    shutdown_timeout.as_millis()
                );
                std::process::exit(1);
            });
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        std::process::exit(130);
    });
    Ok((rx, recheck_rx))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLUICE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log written to a file or a pipe carries no escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
