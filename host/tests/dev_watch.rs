//! `sluice dev --watch`: editing a plugin's source rebuilds it and hot-swaps it into the running
//! demo; a build error is shown and the old version keeps running.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PLUGIN_SRC: &str = r#"
use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};
struct Tag;
impl Transform for Tag {
    fn init(_: &Config) -> Result<Self, String> { Ok(Tag) }
    fn transform(&mut self, r: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        out.record().key(r.key).value(Some(b"TAG-v1")).emit();
        Ok(())
    }
}
export_transform!(Tag);
"#;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn editing_a_plugin_source_rebuilds_and_hot_swaps_it() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let ws = ws.path();
    write(
        &ws.join("Cargo.toml"),
        r#"[workspace]
resolver = "2"
members = ["plugins/tag"]
[profile.plugin]
inherits = "release"
debug = false
strip = true
lto = true
codegen-units = 1
panic = "abort"
"#,
    );
    write(
        &ws.join("plugins/tag/Cargo.toml"),
        &format!(
            "[package]\nname = \"tag\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[lib]\ncrate-type = [\"cdylib\"]\n[dependencies]\nsluice-plugin = {{ path = \"{}\" }}\n",
            repo.join("plugins/sdk-rust").display()
        ),
    );
    let src = ws.join("plugins/tag/src/lib.rs");
    write(&src, PLUGIN_SRC);
    write(
        &ws.join("examples/dev.toml"),
        r#"[kafka]
bootstrap_servers = "replaced"
[runtime]
reload_debounce_ms = 100
[[pipeline]]
name = "tagged"
inputs = ["users.signups"]
plugins = [{ path = "../build/plugins/tag.wasm" }]
[pipeline.outputs.main]
kafka_topic = "users.tagged"
"#,
    );
    // The first build, as `make plugins` would do it.
    let status = Command::new(env!("CARGO"))
        .current_dir(ws)
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "initial plugin build");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    std::fs::create_dir_all(ws.join("build/plugins")).unwrap();
    std::fs::copy(
        target.join("wasm32-wasip2/plugin/tag.wasm"),
        ws.join("build/plugins/tag.wasm"),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(ws)
        .args([
            "dev",
            "--watch",
            "--duration",
            "240",
            "--rate",
            "50",
            "--samples",
            "20",
        ])
        .env("CARGO", env!("CARGO"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
                let hit = line.contains(what);
                seen.push(line);
                if hit {
                    return;
                }
            }
        }
        panic!("`{what}` never appeared; output:\n{}", seen.join("\n"));
    };

    wait_for("users.tagged │ TAG-v1");
    write(&src, &PLUGIN_SRC.replace("TAG-v1", "TAG-v2"));
    wait_for("rebuilt tag");
    wait_for("users.tagged │ TAG-v2");
    write(&src, &PLUGIN_SRC.replace("Ok(Tag)", "Ok(Tag"));
    wait_for("build of tag failed");
    wait_for("users.tagged │ TAG-v2");

    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "sluice dev exits 0 on SIGTERM: {status:?}"
    );
}
