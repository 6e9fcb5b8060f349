//! Plugins in every language the SDKs support: the same `mask-pii` written in Rust, Python,
//! JavaScript, Go, C and C++ must give byte-identical outputs and the same rejections on one input
//! file (host/tests/data/mask-pii-conformance.jsonl), refuse the same configs with the same
//! messages, and survive a sustained load in one instance without a trap.
//!
//! Each language's plugin is built by its SDK's `build.sh`, which installs the toolchain it needs
//! (scripts/toolchains.sh); builds are cached by a hash of their sources under
//! `~/.cache/sluice/lang-plugins`, so a re-run costs seconds. A build that fails fails the test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice::testing::config::Limits;
use sluice::testing::runtime::{ComponentCache, LoadError, Plugin, PluginSpec, Runtime};
use sluice_abi::{Header, InputBatch, OutputBatch};

/// A guest language and how its SDK builds a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
    Js,
    Go,
    C,
    Cpp,
}

pub const LANGS: [Lang; 6] = [
    Lang::Rust,
    Lang::Python,
    Lang::Js,
    Lang::Go,
    Lang::C,
    Lang::Cpp,
];

impl Lang {
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::Go => "go",
            Lang::C => "c",
            Lang::Cpp => "cpp",
        }
    }

    /// The SDK directory, relative to the repository.
    fn sdk(self) -> &'static str {
        match self {
            Lang::Rust => "plugins/sdk-rust",
            Lang::Python => "plugins/sdk-python",
            Lang::Js => "plugins/sdk-js",
            Lang::Go => "plugins/sdk-go",
            Lang::C => "plugins/sdk-c",
            Lang::Cpp => "plugins/sdk-cpp",
        }
    }
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn hash_tree(hasher: &mut Sha256, root: &Path, rel: &Path) {
    let path = root.join(rel);
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        entries.sort();
        for name in entries {
            let n = name.to_string_lossy();
            if n.starts_with('.') || n == "node_modules" || n == "target" || n == "__pycache__" {
                continue;
            }
            hash_tree(hasher, root, &rel.join(&name));
        }
    } else if path.is_file() {
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        let bytes = std::fs::read(&path).unwrap();
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
}

/// Builds the plugin in `dir` (relative to the repository, or absolute) with `lang`'s SDK, or
/// takes it from the cache when its sources, the SDK, the WIT and the toolchain script are
/// unchanged.
pub fn build(lang: Lang, dir: &Path) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = repo();
    let dir = root.join(dir);
    if lang == Lang::Rust {
        return build_rust(&dir);
    }
    let mut hasher = Sha256::new();
    for rel in [lang.sdk(), "wit", "scripts/toolchains.sh"] {
        hash_tree(&mut hasher, &root, Path::new(rel));
    }
    if lang == Lang::Cpp {
        hash_tree(&mut hasher, &root, Path::new(Lang::C.sdk()));
    }
    hash_tree(&mut hasher, &dir, Path::new(""));
    let hash = hex::encode(hasher.finalize());
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).unwrap();
    let out = cache.join(format!("{}-{name}-{}.wasm", lang.name(), &hash[..16]));
    if out.exists() {
        return out;
    }
    let script = root.join(lang.sdk()).join("build.sh");
    let started = std::time::Instant::now();
    let output = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg(&out)
        .output()
        .expect("running a plugin build script");
    assert!(
        output.status.success() && out.exists(),
        "building {} with {} failed:\n{}{}",
        dir.display(),
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "built {} ({}) in {:.1} s",
        out.display(),
        lang.name(),
        started.elapsed().as_secs_f64()
    );
    out
}

/// A crate of this workspace comes from the test setup (built once for every test file); any
/// other Rust plugin directory is built by the SDK's `build.sh`, like the other languages.
fn build_rust(dir: &Path) -> PathBuf {
    if dir.starts_with(repo()) {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let manifest: toml::Table = manifest.parse().unwrap();
        let name = manifest["package"]["name"].as_str().unwrap();
        return common::plugin(&name.replace('-', "_"));
    }
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let out = cache_dir().join(format!("rust-{name}.wasm"));
    let script = repo().join(Lang::Rust.sdk()).join("build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .arg(&out)
        .output()
        .expect("running a plugin build script");
    assert!(
        output.status.success() && out.exists(),
        "building {} with {} failed:\n{}",
        dir.display(),
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

pub fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache/sluice/lang-plugins")
}

/// The `mask-pii` example of `lang`.
pub fn mask_pii(lang: Lang) -> PathBuf {
    let dir = format!("examples/plugins/{}-mask-pii", lang.name());
    build(lang, Path::new(&dir))
}

/// The identity (every record forwarded through the SDK) of `lang`.
pub fn identity(lang: Lang) -> PathBuf {
    let dir = match lang {
        Lang::Rust => "examples/plugins/rust-passthrough".to_string(),
        _ => format!("plugins/testing/{}-identity", lang.name()),
    };
    build(lang, Path::new(&dir))
}

pub fn runtime() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(ComponentCache::default_dir()).unwrap())
        .clone()
}

pub fn load(path: &Path, config: &[(&str, &str)]) -> Result<Arc<Plugin>, LoadError> {
    load_with(path, config, Limits::default())
}

pub fn load_with(
    path: &Path,
    config: &[(&str, &str)],
    limits: Limits,
) -> Result<Arc<Plugin>, LoadError> {
    let spec = PluginSpec {
        name: path.file_stem().unwrap().to_string_lossy().into(),
        path: path.to_path_buf(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        limits,
        scope: String::new(),
        tenant: String::new(),
    };
    runtime().load(&spec)
}

/// Reads a file in `sluice test`'s input format into one batch.
pub fn read_input(path: &Path) -> InputBatch {
    let text = std::fs::read_to_string(path).unwrap();
    let mut batch = InputBatch::default();
    let topic = batch.topic_index("signups");
    for (n, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let bytes = |field: &str| -> Option<Vec<u8>> {
            if let Some(b) = v.get(format!("{field}_base64")) {
                return Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b.as_str().unwrap())
                        .unwrap(),
                );
            }
            v.get(field)
                .and_then(|s| s.as_str())
                .map(|s| s.as_bytes().to_vec())
        };
        let key = bytes("key");
        let value = bytes("value");
        let headers: Vec<(String, Option<Vec<u8>>)> = v
            .get("headers")
            .and_then(|h| h.as_object())
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map(|s| s.as_bytes().to_vec())))
                    .collect()
            })
            .unwrap_or_default();
        batch.push(
            key.as_deref(),
            value.as_deref(),
            headers.iter().map(|(name, value)| Header {
                name,
                value: value.as_deref(),
            }),
            v.get("timestamp").and_then(|t| t.as_i64()),
            topic,
            0,
            n as i64,
        );
    }
    batch
}

/// Everything a plugin returned for a batch, in a form two languages can be compared on.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Output {
        input: u32,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Option<Vec<u8>>)>,
        timestamp: Option<i64>,
        output: Option<String>,
    },
    Rejected {
        input: u32,
        message: String,
    },
}

pub fn outcomes(out: &OutputBatch) -> Vec<Outcome> {
    let mut all: Vec<(u32, usize, Outcome)> = Vec::new();
    for (i, r) in out.iter().enumerate() {
        all.push((
            r.input,
            i,
            Outcome::Output {
                input: r.input,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect(),
                timestamp: r.timestamp,
                output: r.output.map(|o| out.outputs[o as usize].clone()),
            },
        ));
    }
    for (i, e) in out.errors.iter().enumerate() {
        all.push((
            e.input,
            usize::MAX - out.errors.len() + i,
            Outcome::Rejected {
                input: e.input,
                message: e.message.clone(),
            },
        ));
    }
    all.sort_by_key(|(input, i, _)| (*input, *i));
    all.into_iter().map(|(_, _, o)| o).collect()
}

fn show(o: &Outcome) -> String {
    match o {
        Outcome::Output { value, .. } => format!(
            "{o:?}\n  value as text: {}",
            value
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
        ),
        Outcome::Rejected { .. } => format!("{o:?}"),
    }
}

/// Runs every language's `mask-pii` on the conformance file with `config` and checks each gives
/// exactly what the Rust plugin gives.
fn conformance(config: &[(&str, &str)]) -> BTreeMap<&'static str, usize> {
    let input = repo().join("host/tests/data/mask-pii-conformance.jsonl");
    let mut batch = read_input(&input);
    let mut reference: Option<Vec<Outcome>> = None;
    let mut failures = Vec::new();
    let mut counts = BTreeMap::new();
    for lang in LANGS {
        let path = mask_pii(lang);
        let plugin = load(&path, config).unwrap_or_else(|e| panic!("{}: {e}", lang.name()));
        let mut instance = plugin.instantiate().unwrap();
        let out = instance
            .process(&mut batch)
            .unwrap_or_else(|e| panic!("{} failed on the conformance batch: {e:?}", lang.name()));
        let got = outcomes(&out);
        counts.insert(lang.name(), got.len());
        match &reference {
            None => reference = Some(got),
            Some(want) => {
                if &got != want {
                    let first = want
                        .iter()
                        .zip(&got)
                        .position(|(a, b)| a != b)
                        .unwrap_or(want.len().min(got.len()));
                    failures.push(format!(
                        "{} differs from rust at outcome {first} (of {} vs {}):\n rust: {}\n {}: {}",
                        lang.name(),
                        want.len(),
                        got.len(),
                        want.get(first).map(show).unwrap_or_default(),
                        lang.name(),
                        got.get(first).map(show).unwrap_or_default()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    counts
}

#[test]
fn mask_pii_is_byte_identical_in_every_language() {
    let reference = conformance(&[]);
    // The file holds valid sign-ups and many kinds of invalid ones: both must be there.
    let input = repo().join("host/tests/data/mask-pii-conformance.jsonl");
    let mut batch = read_input(&input);
    let plugin = load(&mask_pii(Lang::Rust), &[]).unwrap();
    let out = plugin.instantiate().unwrap().process(&mut batch).unwrap();
    assert!(out.len() >= 25, "{} outputs", out.len());
    assert!(out.errors.len() >= 50, "{} rejections", out.errors.len());
    assert_eq!(out.len() + out.errors.len(), batch.len());
    assert_eq!(reference.len(), LANGS.len());
}

#[test]
fn identity_forwards_the_same_records_in_every_language() {
    let input = repo().join("host/tests/data/mask-pii-conformance.jsonl");
    let mut batch = read_input(&input);
    let mut want = None;
    for lang in LANGS {
        let plugin = load(&identity(lang), &[]).unwrap();
        let got = outcomes(&plugin.instantiate().unwrap().process(&mut batch).unwrap());
        assert_eq!(got.len(), batch.len(), "{}", lang.name());
        match &want {
            None => want = Some(got),
            Some(w) => assert!(&got == w, "{} forwards differently", lang.name()),
        }
    }
    // The Python SDK's batch hook, `out.forward_all()`, forwards the same.
    let dir = Path::new("plugins/testing/python-identity-batch");
    let plugin = load(&build(Lang::Python, dir), &[]).unwrap();
    let got = outcomes(&plugin.instantiate().unwrap().process(&mut batch).unwrap());
    assert!(
        Some(&got) == want.as_ref(),
        "python-identity-batch forwards differently"
    );
}

#[test]
fn mask_pii_with_other_fields_is_byte_identical_in_every_language() {
    conformance(&[("fields", " phone ,\u{3000}id, ,email")]);
    conformance(&[("fields", "name")]);
    conformance(&[("fields", "extra,email")]);
}

#[test]
fn mask_pii_refuses_the_same_configs_in_every_language() {
    let configs: [&[(&str, &str)]; 5] = [
        &[("fields", "")],
        &[("fields", " , \t,")],
        &[("mode", "strict")],
        &[("fields", "email"), ("Fields", "phone")],
        &[("fields", "\u{2003}")],
    ];
    for config in configs {
        let mut messages = Vec::new();
        for lang in LANGS {
            match load(&mask_pii(lang), config) {
                Err(LoadError::InitRefused { message, .. }) => {
                    messages.push((lang.name(), message))
                }
                Err(e) => panic!("{} with {config:?}: {e}", lang.name()),
                Ok(_) => panic!("{} accepted {config:?}", lang.name()),
            }
        }
        let want = &messages[0].1;
        for (lang, m) in &messages {
            assert_eq!(m, want, "{lang} refuses {config:?} differently");
        }
    }
}

/// A batch of `n` valid sign-ups, 1000 at a time as the host sends them.
pub fn signups(n: usize) -> InputBatch {
    let mut b = InputBatch::default();
    let t = b.topic_index("signups");
    for i in 0..n {
        let value = format!(
            r#"{{"id":"u-{i:07}","name":{{"first":"Zoë","last":"García"}},"email":"user{i}@example.com","phone":"+34 600 {:03} {:03}","registered":{{"date":"2024-05-01T10:00:00Z","age":{}}}}}"#,
            i % 1000,
            (i * 7) % 1000,
            i % 20
        );
        let key = format!("u-{i:07}");
        b.push(
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            [Header {
                name: "source",
                value: Some(b"signup-form"),
            }],
            Some(1_700_000_000_000 + i as i64),
            t,
            0,
            i as i64,
        );
    }
    b
}

/// One million records through one instance of `lang`'s mask-pii: no trap, every record out.
fn sustained(lang: Lang) {
    sustained_with(lang, &mask_pii(lang), 1_000_000, true);
}

fn sustained_with(lang: Lang, path: &Path, total: usize, masked: bool) {
    const BATCH: usize = 1000;
    let mut limits = Limits::default();
    if lang == Lang::Python {
        // componentize-py 0.25.1 leaks about one input batch's bytes per call (the raw-layout
        // plugins/testing/python-raw-identity does too, see `python_leaks_per_call` below): with
        // the default 128 MB cap an instance hits it after ~630 batches of 200-byte records and
        // is rebuilt. Until that is fixed upstream, give this run room for 1M records.
        limits.memory_mb = 1024;
    }
    let plugin = load_with(path, &[], limits).unwrap();
    let mut instance = plugin.instantiate().unwrap();
    let mut batch = signups(BATCH);
    let started = std::time::Instant::now();
    for round in 0..total / BATCH {
        let out = instance.process(&mut batch).unwrap_or_else(|e| {
            panic!(
                "{} trapped after {} records: {e:?}",
                lang.name(),
                round * BATCH
            )
        });
        assert_eq!(out.len(), BATCH, "{} round {round}", lang.name());
        assert!(out.errors.is_empty(), "{}: {:?}", lang.name(), out.errors);
        if round == 0 && masked {
            let v = String::from_utf8(out.record(0).value.unwrap().to_vec()).unwrap();
            assert!(v.contains(r#""email":"u****@example.com""#), "{v}");
        }
    }
    eprintln!(
        "{} ({}): {total} records in {:.1} s ({:.0} ns/record)",
        lang.name(),
        path.display(),
        started.elapsed().as_secs_f64(),
        started.elapsed().as_nanos() as f64 / total as f64
    );
}

#[test]
fn sustained_load_rust() {
    sustained(Lang::Rust);
}

#[test]
fn sustained_load_python() {
    sustained(Lang::Python);
}

/// JavaScript runs in StarlingMonkey's interpreter, where mask-pii costs ~0.25 ms a record: one
/// million records go through the SDK's identity, and 100,000 through mask-pii, each in one
/// instance.
#[test]
fn sustained_load_js() {
    sustained_with(Lang::Js, &identity(Lang::Js), 1_000_000, false);
    sustained_with(Lang::Js, &mask_pii(Lang::Js), 100_000, true);
}

#[test]
fn sustained_load_go() {
    sustained(Lang::Go);
}

#[test]
fn sustained_load_c() {
    sustained(Lang::C);
}

#[test]
fn sustained_load_cpp() {
    sustained(Lang::Cpp);
}

#[test]
fn unicode_tables_match_rust() {
    let root = repo();
    let mut stale = Vec::new();
    for (rel, text) in unicode_tables() {
        let path = root.join(rel);
        if std::env::var_os("SLUICE_REGENERATE").is_some() {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(rel);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} do not match this Rust's char::is_alphanumeric; regenerate them with `SLUICE_REGENERATE=1 cargo test --release -p sluice --test languages unicode_tables`"
    );
}

/// The Unicode tables the SDKs of other languages embed so that their plugins treat text exactly
/// like Rust's `char::is_alphanumeric`: sorted half-open boundaries `start, end, start, end, …`.
/// Returns `(path in the repository, file text)` per language.
fn unicode_tables() -> Vec<(&'static str, String)> {
    let mut bounds: Vec<u32> = Vec::new();
    let mut inside = false;
    for cp in 0..=0x11_0000u32 {
        let alnum = char::from_u32(cp).is_some_and(char::is_alphanumeric);
        if alnum != inside {
            bounds.push(cp);
            inside = alnum;
        }
    }
    let lines = |indent: &str| -> String {
        bounds
            .chunks(10)
            .map(|c| {
                let words: Vec<String> = c.iter().map(|b| b.to_string()).collect();
                format!("{indent}{},\n", words.join(", "))
            })
            .collect()
    };
    let about = "Generated by host/tests/languages.rs (unicode_tables_match_rust) from Rust's \
                 char::is_alphanumeric; do not edit.";
    let how = "Sorted half-open boundaries: code point c is alphanumeric when the number of \
               boundaries <= c is odd.";
    vec![
        (
            "plugins/sdk-python/sluice/_unicode.py",
            format!("# {about}\n# {how}\nALNUM = (\n{})\n", lines("    ")),
        ),
        (
            "plugins/sdk-js/unicode.js",
            format!(
                "// {about}\n// {how}\nexport const ALNUM = new Uint32Array([\n{}]);\n",
                lines("  ")
            ),
        ),
        (
            "plugins/sdk-go/sluice/unicode_table.go",
            format!(
                "// {about}\n// {how}\n\npackage sluice\n\nvar alnum = [...]uint32{{\n{}}}\n",
                lines("\t")
            ),
        ),
        (
            "plugins/sdk-c/sluice_unicode.h",
            format!(
                "/* {about}\n * {how} */\n#include <stdint.h>\nstatic const uint32_t sluice_alnum[] = {{\n{}}};\n",
                lines("    ")
            ),
        ),
    ]
}

#[test]
fn small_batches_without_headers_agree_in_every_language() {
    let mut batch = InputBatch::default();
    let t = batch.topic_index("");
    batch.push(
        None,
        Some(br#"{"id":"u-1","email":"solo@example.com"}"#),
        [],
        None,
        t,
        0,
        0,
    );
    let mut want = None;
    for lang in LANGS {
        let plugin = load(&mask_pii(lang), &[("fields", "email")]).unwrap();
        let mut instance = plugin.instantiate().unwrap();
        for _ in 0..3 {
            let got = outcomes(&instance.process(&mut batch).unwrap());
            match &want {
                None => want = Some(got),
                Some(w) => assert_eq!(&got, w, "{}", lang.name()),
            }
        }
    }
}

/// `sluice new NAME --lang L`, then the project's own `./build.sh`, then `sluice test` on its
/// sample: the same three lines in every language. Builds are cached by a hash of the generated
/// project and the SDK.
fn scaffolded(lang: Lang) -> String {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hello-plugin");
    let status = Command::new(sluice)
        .args(["new", "hello-plugin", "--lang", lang.name(), "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "sluice new --lang {}", lang.name());
    let mut hasher = Sha256::new();
    hash_tree(&mut hasher, &dir, Path::new(""));
    for rel in [lang.sdk(), Lang::C.sdk(), "wit", "scripts/toolchains.sh"] {
        hash_tree(&mut hasher, &repo(), Path::new(rel));
    }
    let hash = hex::encode(hasher.finalize());
    let cached = cache_dir().join(format!("scaffold-{}-{}.wasm", lang.name(), &hash[..16]));
    if !cached.exists() {
        let output = Command::new(dir.join("build.sh"))
            .env(
                "CARGO_TARGET_DIR",
                cache_dir().parent().unwrap().join("scaffold-target"),
            )
            .output()
            .unwrap();
        let wasm = dir.join("hello-plugin.wasm");
        assert!(
            output.status.success() && wasm.exists(),
            "{}: ./build.sh failed:\n{}{}",
            lang.name(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::create_dir_all(cache_dir()).unwrap();
        std::fs::copy(&wasm, &cached).unwrap();
    }
    let output = Command::new(sluice)
        .arg("test")
        .arg(&cached)
        .arg("--input")
        .arg(dir.join("sample.jsonl"))
        .args(["--config", "tag=demo"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}: sluice test failed: {}",
        lang.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 3, "{}: {stdout}", lang.name());
    assert!(
        stdout.contains(r#""headers":{"source":"sample","tag":"demo"}"#),
        "{}: {stdout}",
        lang.name()
    );
    assert!(
        stdout.contains(r#"{"input":2,"error":"record has no value","reason":"plugin-error"}"#),
        "{}: {stdout}",
        lang.name()
    );
    stdout
}

#[test]
fn sluice_new_scaffolds_a_project_that_builds_and_passes_sluice_test_in_every_language() {
    let want = scaffolded(Lang::Rust);
    for lang in &LANGS[1..] {
        assert_eq!(scaffolded(*lang), want, "{}", lang.name());
    }
}

/// `plugins/sdk-rust/build.sh DIR OUT.wasm` builds a crate of this workspace into the same
/// component the test setup builds, and a standalone crate made by `sluice new --lang rust` (no
/// `plugin` profile of its own) into one that passes `sluice test` on its sample.
#[test]
fn rust_sdk_build_script_builds_workspace_and_standalone_crates() {
    let script = repo().join(Lang::Rust.sdk()).join("build.sh");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out/passthrough.wasm");
    let output = Command::new("bash")
        .arg(&script)
        .arg(repo().join("examples/plugins/rust-passthrough"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(common::plugin("passthrough")).unwrap(),
        "build.sh and the test setup built different passthrough components"
    );

    let dir = tmp.path().join("standalone-tag");
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let status = Command::new(sluice)
        .args(["new", "standalone-tag", "--lang", "rust", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "sluice new --lang rust");
    let wasm = build(Lang::Rust, &dir);
    let output = Command::new(sluice)
        .arg("test")
        .arg(&wasm)
        .arg("--input")
        .arg(dir.join("sample.jsonl"))
        .args(["--config", "tag=demo"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(r#""headers":{"source":"sample","tag":"demo"}"#),
        "{stdout}"
    );
}

#[test]
fn python_leaks_per_call() {
    let plugin = load(
        &build(
            Lang::Python,
            Path::new("plugins/testing/python-raw-identity"),
        ),
        &[],
    )
    .unwrap();
    let mut instance = plugin.instantiate().unwrap();
    let mut batch = signups(1000);
    let mut trapped = None;
    for round in 0..1000 {
        if let Err(e) = instance.process(&mut batch) {
            trapped = Some((round, e.message));
            break;
        }
    }
    let (round, message) =
        trapped.expect("no leak any more: remove the Python exception in sustained()");
    assert!(message.contains("memory limit"), "{message}");
    assert!((400..900).contains(&round), "trapped at batch {round}");
}

/// The host JSON access of the Python, JavaScript and Go SDKs (`plugins/testing/*-json-edits`):
/// declared and undeclared paths, set, set-raw, remove, an edit that cannot be applied, a
/// rejection after edits, and values that are absent or not JSON. Every language gives the same
/// outcomes, and these are what serde_json gives.
#[test]
fn json_edits_agree_in_python_js_and_go() {
    let values: [Option<&[u8]>; 10] = [
        Some(br#"{"name":"ann","tags":[1,2],"drop":true,"keep":1}"#),
        Some(br#"{"name":"bob","n":"x"}"#),
        Some(br#"{"name":"#),
        None,
        Some(br#"{"name":"cy","fail":true}"#),
        Some(br#"{"name":"di","reject":true,"tags":[7]}"#),
        Some(b"[1,2]"),
        Some(br#" {"tags":[1.5e3],"drop":{"a":1}, "n":null} "#),
        Some("{\"name\":\"\u{e9}\\\"q\",\"name\":\"la\\u0001st\"}".as_bytes()),
        Some(br#"{"name":"ed","tags":[3]}"#),
    ];
    let mut batch = InputBatch::default();
    let t = batch.topic_index("t");
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        batch.push(
            Some(key.as_bytes()),
            *v,
            [Header {
                name: "h",
                value: Some(b"v"),
            }],
            Some(1_000 + i as i64),
            t,
            0,
            i as i64,
        );
    }
    let mut want = None;
    // The `-batch` fixtures: the same on the Python and JS SDKs' batch hooks (`transform_batch`,
    // `transformBatch`).
    for (lang, dir) in [
        (Lang::Python, "plugins/testing/python-json-edits"),
        (Lang::Python, "plugins/testing/python-json-edits-batch"),
        (Lang::Js, "plugins/testing/js-json-edits"),
        (Lang::Js, "plugins/testing/js-json-edits-batch"),
        (Lang::Go, "plugins/testing/go-json-edits"),
    ] {
        let plugin = load(&build(lang, Path::new(dir)), &[]).unwrap();
        let mut instance = plugin.instantiate().unwrap();
        // Twice on one instance: nothing of one batch's JSON work leaks into the next.
        for _ in 0..2 {
            let got = outcomes(&instance.process(&mut batch).unwrap());
            match &want {
                None => want = Some(got),
                Some(w) => assert_eq!(&got, w, "{dir} differs from python-json-edits"),
            }
        }
    }
    let got = want.unwrap();
    let summary: Vec<(u32, String)> = got
        .iter()
        .map(|o| match o {
            Outcome::Output {
                input,
                value,
                headers,
                ..
            } => {
                assert_eq!(headers, &[("h".to_string(), Some(b"v".to_vec()))]);
                (*input, String::from_utf8(value.clone().unwrap()).unwrap())
            }
            Outcome::Rejected { input, message } => (*input, format!("rejected: {message}")),
        })
        .collect();
    let edit_failed = "rejected: the edited JSON value could not be written: an edit's parent is missing or not an object or array, an array index is out of range, or raw JSON does not parse";
    let expected: Vec<(u32, String)> = vec![
        (0, r#"{"name":"seen:ann","tags":[10,2],"keep":1}"#.into()),
        (1, r#"{"name":"seen:bob","n":"x","n_kind":5}"#.into()),
        (2, "rejected: value is not valid JSON".into()),
        (3, "rejected: record has no value".into()),
        (4, edit_failed.into()),
        (5, "rejected: asked to reject".into()),
        (6, "[1,2]".into()),
        (7, r#"{"tags":[1500.0],"n":null,"n_kind":1}"#.into()),
        (8, r#"{"name":"seen:la\u0001st"}"#.into()),
        (9, r#"{"name":"seen:ed","tags":[30]}"#.into()),
    ];
    assert_eq!(summary, expected);
}

/// An exception escaping Python's `transform_batch` or JS's `transformBatch` traps the call; the
/// host re-runs the batch in halves until the record that raises is alone: only it is
/// dead-lettered (`plugin-error`, with the exception's message), every other record is forwarded
/// in order, and the bisection's rejection explains the trap (no "state went bad" warning).
/// Python: `python-identity-batch` with `raise_on`; JS: `js-json-edits-batch`, which throws on a
/// value with `"throw": true`.
/// Language, plugin directory, extra `sluice test` arguments, value of record `i`, message.
type HookCase = (
    Lang,
    &'static str,
    &'static [&'static str],
    fn(usize) -> String,
    &'static str,
);

#[test]
fn a_record_that_raises_in_a_batch_hook_is_dead_lettered_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [HookCase; 2] = [
        (
            Lang::Python,
            "plugins/testing/python-identity-batch",
            &["--config", "raise_on=poison"],
            |i| {
                if i == 27 {
                    "poison".into()
                } else {
                    format!("v{i}")
                }
            },
            "saw poison",
        ),
        (
            Lang::Js,
            "plugins/testing/js-json-edits-batch",
            &[],
            |i| {
                let throw = if i == 27 { r#","throw":true"# } else { "" };
                format!(r#"{{"name":"v{i}"{throw}}}"#)
            },
            "asked to throw",
        ),
    ];
    for (lang, plugin_dir, args, value, message) in cases {
        let input = dir.path().join(format!("{}.jsonl", lang.name()));
        let text: String = (0..40)
            .map(|i| {
                let line = serde_json::json!({"key": format!("k{i}"), "value": value(i)});
                format!("{line}\n")
            })
            .collect();
        std::fs::write(&input, text).unwrap();
        let plugin = build(lang, Path::new(plugin_dir));
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("test")
            .arg(&plugin)
            .arg("--input")
            .arg(&input)
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{plugin_dir}: {stdout}{stderr}");
        assert!(
            !stderr.contains("the plugin's own state went bad"),
            "{plugin_dir}: a rejection found by the bisection explains the trap: {stderr}"
        );
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let forwarded: Vec<u64> = lines
            .iter()
            .filter(|l| l.get("value").is_some())
            .map(|l| l["input"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (0..40).filter(|i| *i != 27).collect();
        assert_eq!(forwarded, expected, "{plugin_dir}: {stdout}");
        if lang == Lang::Python {
            // The identity forwards each value as it came.
            let values: Vec<&str> = lines.iter().filter_map(|l| l["value"].as_str()).collect();
            let want: Vec<String> = expected.iter().map(|i| value(*i as usize)).collect();
            assert_eq!(values, want, "{stdout}");
        }
        let rejected: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
        assert_eq!(rejected.len(), 1, "{plugin_dir}: {stdout}");
        assert_eq!(rejected[0]["input"], 27, "{plugin_dir}: {stdout}");
        assert_eq!(
            rejected[0]["reason"], "plugin-error",
            "{plugin_dir}: {stdout}"
        );
        assert!(
            rejected[0]["error"].as_str().unwrap().contains(message),
            "{plugin_dir}: {stdout}"
        );
    }
}

/// Writes `(partition, key, event time)` records (value "x") as `sluice test` JSONL.
fn write_keyed_jsonl(path: &Path, lines: &[(i32, &str, i64)]) {
    let text: String = lines
        .iter()
        .map(|(p, k, ts)| {
            format!("{{\"key\":\"{k}\",\"value\":\"x\",\"timestamp\":{ts},\"partition\":{p}}}\n")
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

/// `sluice test PLUGIN --input INPUT --print-state`'s output; it must succeed.
fn sluice_test_with_state(plugin: &Path, input: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("test")
        .arg(plugin)
        .arg("--input")
        .arg(input)
        .arg("--print-state")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}: {stdout}{}",
        plugin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The per-key counter (`plugins/testing/<lang>-counter`) under `sluice test`: the same running
/// counts, the same `late` rejection, the same timer outputs and the same final state in Rust,
/// Python, JavaScript, Go, C and C++, over two partitions.
#[test]
fn stateful_counter_agrees_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("counter.jsonl");
    let lines = [
        (0, "a", 1000),
        (0, "a", 1500),
        (0, "b", 1200),
        (0, "a", 2500),
        (1, "b", 5000),
        (1, "b", 7000),
        (0, "a", 9000),
        (0, "b", 9100),
    ];
    write_keyed_jsonl(&input, &lines);
    let run = |plugin: &Path| sluice_test_with_state(plugin, &input);
    let want = run(&common::plugin("rust_counter"));
    let values: Vec<String> = want
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            match (&v["value"], &v["reason"], &v["state"]) {
                (Value::String(s), _, _) => format!("{}={s}", v["key"].as_str().unwrap()),
                (_, Value::String(r), _) => format!("{r}@{}", v["input"]),
                (_, _, s) => format!(
                    "state {}={}",
                    s["key"].as_str().unwrap(),
                    s["value"].as_str().unwrap()
                ),
            }
        })
        .collect();
    assert_eq!(
        values,
        [
            // Partition 0's first batch; its timer at 2000 fires, the one at 3000 waits.
            "a=1",
            "a=2",
            "late@2",
            "a=3",
            "a=3 at 2000",
            // Partition 1: its own store and watermark (7000: its timer at 8000 waits).
            "b=1",
            "b=2",
            "b=2 at 6000",
            // Back on partition 0: watermark 9100 fires a's timer at 3000, not those at 10000.
            "a=4",
            "b=1",
            "a=4 at 3000",
            "state a=4",
            "state b=1",
            "state b=2",
        ],
        "{want}"
    );
    for lang in [Lang::Python, Lang::Js, Lang::Go, Lang::C, Lang::Cpp] {
        let dir = format!("plugins/testing/{}-counter", lang.name());
        let got = run(&build(lang, Path::new(&dir)));
        assert_eq!(got, want, "{} differs from rust", lang.name());
    }
}

/// Every state call of each SDK (`plugins/testing/<lang>-state-ops`: put-many with a delete,
/// get-many, delete, a scan paged through, a scan after a key, the watermark; in C and C++ also
/// a timer registered and cancelled, whose firing would add an output) under `sluice test`: the
/// same summaries and final state in Go, JavaScript, C and C++, over two partitions (the
/// watermark is none in a partition's first batch, then its largest timestamp).
#[test]
fn state_ops_agree_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("state-ops.jsonl");
    let lines = [
        (0, "k1", 1000),
        (0, "k2", 2000),
        (1, "k1", 3000),
        (0, "k2", 4000),
    ];
    write_keyed_jsonl(&input, &lines);
    let summary = |input: usize, key: &str, wm: &str| {
        format!(
            r#"{{"input":{input},"output":null,"key":"{key}","value":"get_many=1,2,- scan={key}/b=2 after={key}/b wm={wm}","headers":{{}}}}"#
        )
    };
    let state = |partition: u32, key: &str| {
        format!(
            r#"{{"state":{{"topic":"test","partition":{partition},"key":"{key}/b","value":"2"}}}}"#
        )
    };
    let want = [
        summary(0, "k1", "none"),
        summary(1, "k2", "none"),
        summary(2, "k1", "none"),
        summary(3, "k2", "2000"),
        state(0, "k1"),
        state(0, "k2"),
        state(1, "k1"),
    ];
    for lang in [Lang::Go, Lang::Js, Lang::C, Lang::Cpp] {
        let dir = format!("plugins/testing/{}-state-ops", lang.name());
        let plugin = build(lang, Path::new(&dir));
        let stdout = sluice_test_with_state(&plugin, &input);
        assert_eq!(stdout.lines().collect::<Vec<_>>(), want, "{}", lang.name());
    }
}
