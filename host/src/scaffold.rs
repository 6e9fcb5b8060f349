//! `sluice new NAME --lang rust|python|js|go|c|cpp`: a plugin project that builds to a component
//! with one command (`./build.sh`) and passes `sluice test NAME.wasm --input sample.jsonl`.
//!
//! Every language gets the same starting transform: forward each record with a `tag` header
//! (config `tag`, default the project's name) and reject a record without a value. The project
//! points at the SDKs of a Sluice checkout (`--sluice-root`, default the checkout this binary was
//! built from).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The languages `sluice new` can scaffold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with plugins/sdk-rust (cargo, wasm32-wasip2).
    Rust,
    /// Python, with plugins/sdk-python (componentize-py).
    Python,
    /// JavaScript (or TypeScript), with plugins/sdk-js (esbuild + componentize-js).
    Js,
    /// Go, with plugins/sdk-go (Go for wasip1 + wasm-tools).
    Go,
    /// C, with plugins/sdk-c (clang for wasm32-wasi + wasm-tools).
    C,
    /// C++, with plugins/sdk-cpp (clang++ + libc++ for wasm32-wasi + wasm-tools).
    Cpp,
}

/// The sample input every scaffolded project gets; the third record has no value and is rejected.
pub const SAMPLE: &str = r#"{"key": "k1", "value": "{\"id\":1}", "headers": {"source": "sample"}}
{"key": "k2", "value": "hello, world"}
{"key": "k3", "value": null}
"#;

/// The checkout this binary was built from, if it is still there.
pub fn default_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    root.join("wit/sluice.wit").exists().then_some(root)
}

/// Writes the project `name` for `lang` into `dir` (which must not exist or be empty) and
/// returns the files written, relative to `dir`.
pub fn create(name: &str, lang: Lang, dir: &Path, root: &Path) -> Result<Vec<PathBuf>> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        bail!(
            "plugin name `{name}`: use letters, digits, `-` and `_`, starting with a letter (it names the .wasm file and the package)"
        );
    }
    let root = root
        .canonicalize()
        .with_context(|| format!("the Sluice checkout {} does not exist", root.display()))?;
    if !root.join("wit/sluice.wit").exists() {
        bail!(
            "{} is not a Sluice checkout (no wit/sluice.wit); pass --sluice-root",
            root.display()
        );
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} already exists and is not empty", dir.display());
    }
    let r = root.display().to_string();
    let ident = name.replace('-', "_");
    let files = files(name, &ident, lang, &r);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        if rel == "build.sh" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        written.push(PathBuf::from(rel));
    }
    Ok(written)
}

fn build_sh(body: &str) -> String {
    format!(
        "#!/usr/bin/env bash\n# Builds this plugin into a Sluice component in this directory (installs the toolchain if it is missing).\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\n{body}\n"
    )
}

fn readme(name: &str, lang: Lang, root: &str) -> String {
    let source = match lang {
        Lang::Rust => "src/lib.rs",
        Lang::Python => "app.py",
        Lang::Js => "app.js",
        Lang::Go => "main.go",
        Lang::C => &format!("{}.c", name.replace('-', "_")),
        Lang::Cpp => &format!("{}.cpp", name.replace('-', "_")),
    };
    format!(
        "# {name}\n\nA Sluice transform plugin ({lang:?}). It forwards every record with a `tag` header (config `tag`,\ndefault `{name}`) and sends records without a value to the dead-letter topic. Edit `{source}`.\n\n```sh\n./build.sh\n{root}/target/release/sluice test {name}.wasm --input sample.jsonl --config tag=demo\n```\n\nSee \"Writing a plugin\" in {root}/README.md.\n"
    )
}

fn files(name: &str, ident: &str, lang: Lang, root: &str) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = vec![
        ("sample.jsonl".into(), SAMPLE.into()),
        ("README.md".into(), readme(name, lang, root)),
    ];
    match lang {
        Lang::Rust => {
            f.push((
                "Cargo.toml".into(),
                format!(
                    r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
sluice-plugin = {{ path = "{root}/plugins/sdk-rust" }}

[profile.release]
lto = true
codegen-units = 1
strip = true
panic = "abort"

[workspace]
"#
                ),
            ));
            f.push((
                "src/lib.rs".into(),
                format!(
                    r#"use sluice_plugin::{{Config, Emitter, Record, Transform, export_transform, log}};

struct Plugin {{
    tag: String,
}}

impl Transform for Plugin {{
    fn init(config: &Config) -> Result<Self, String> {{
        let tag = config.get("tag").unwrap_or("{name}").to_string();
        log::info(&format!("tagging records with `{{tag}}`"));
        Ok(Plugin {{ tag }})
    }}

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {{
        let value = record.value.ok_or("record has no value")?; // Err: to the dead-letter topic
        out.record()
            .key(record.key)
            .value(Some(value))
            .headers(&record.headers)
            .header("tag", Some(self.tag.as_bytes()))
            .emit();
        Ok(())
    }}
}}

export_transform!(Plugin);
"#
                ),
            ));
            f.push((
                "build.sh".into(),
                build_sh(&format!(
                    "rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2\ncargo build --quiet --target wasm32-wasip2 --release\ncp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{ident}.wasm\" {name}.wasm"
                )),
            ));
            f.push((".gitignore".into(), "/target\n*.wasm\n".into()));
        }
        Lang::Python => {
            f.push((
                "app.py".into(),
                format!(
                    r#"import sluice


class Plugin(sluice.Transform):
    def __init__(self, config):
        self.tag = config.get("tag", "{name}")
        sluice.log.info(f"tagging records with `{{self.tag}}`")

    def transform(self, record, out):
        if record.value is None:
            raise sluice.Reject("record has no value")  # to the dead-letter topic
        out.emit(key=record.key, value=record.value, headers=record.headers + [("tag", self.tag)])


WitWorld = sluice.export(Plugin)
"#
                ),
            ));
            f.push((
                "build.sh".into(),
                build_sh(&format!(
                    "\"{root}/plugins/sdk-python/build.sh\" . {name}.wasm"
                )),
            ));
            f.push((".gitignore".into(), "*.wasm\n__pycache__/\n".into()));
        }
        Lang::Js => {
            f.push((
                "app.js".into(),
                format!(
                    r#"import {{ defineTransform, log, Reject }} from "sluice";

class Plugin {{
  constructor(config) {{
    this.tag = config.get("tag", "{name}");
    log.info(`tagging records with \`${{this.tag}}\``);
  }}

  transform(record, out) {{
    if (record.value === null) throw new Reject("record has no value"); // to the dead-letter topic
    out.emit({{ key: record.key, value: record.value, headers: [...record.headers, ["tag", this.tag]] }});
  }}
}}

const plugin = defineTransform(Plugin);
export const init = plugin.init;
export const process = plugin.process;
"#
                ),
            ));
            f.push((
                "jsconfig.json".into(),
                format!(
                    "{{\n  \"compilerOptions\": {{\n    \"checkJs\": true,\n    \"module\": \"es2022\",\n    \"moduleResolution\": \"bundler\",\n    \"paths\": {{ \"sluice\": [\"{root}/plugins/sdk-js/index.js\"], \"sluice/*\": [\"{root}/plugins/sdk-js/*\"] }}\n  }}\n}}\n"
                ),
            ));
            f.push((
                "build.sh".into(),
                build_sh(&format!(
                    "\"{root}/plugins/sdk-js/build.sh\" app.js {name}.wasm"
                )),
            ));
            f.push((".gitignore".into(), "*.wasm\n".into()));
        }
        Lang::Go => {
            f.push((
                "go.mod".into(),
                format!(
                    "module {ident}\n\ngo 1.24\n\nrequire sluice.dev/sdk v0.0.0\n\nreplace sluice.dev/sdk => {root}/plugins/sdk-go\n"
                ),
            ));
            f.push((
                "main.go".into(),
                format!(
                    r#"package main

import (
	"errors"

	"sluice.dev/sdk/sluice"
)

type plugin struct {{
	tag string
}}

func newPlugin(config sluice.Config) (sluice.Transform, error) {{
	tag, ok := config.Get("tag")
	if !ok {{
		tag = "{name}"
	}}
	sluice.Info("tagging records with `" + tag + "`")
	return &plugin{{tag: tag}}, nil
}}

func (p *plugin) Transform(r *sluice.Record, out *sluice.Emitter) error {{
	if r.Value == nil {{
		return errors.New("record has no value") // to the dead-letter topic
	}}
	headers := append(append([]sluice.Header{{}}, r.Headers...), sluice.Header{{Name: "tag", Value: []byte(p.tag)}})
	out.Emit(sluice.Output{{Key: r.Key, Value: r.Value, Headers: headers}})
	return nil
}}

func init() {{ sluice.Register(newPlugin) }}

func main() {{}}
"#
                ),
            ));
            f.push((
                "build.sh".into(),
                build_sh(&format!("\"{root}/plugins/sdk-go/build.sh\" . {name}.wasm")),
            ));
            f.push((".gitignore".into(), "*.wasm\n".into()));
        }
        Lang::C => {
            f.push((
                format!("{ident}.c"),
                format!(
                    r#"#include <stdlib.h>
#include <string.h>

#include "sluice.h"

static const char *tag;

const char *sluice_init(const sluice_config *config) {{
    tag = sluice_config_get(config, "tag");
    if (!tag) tag = "{name}";
    tag = strdup(tag);
    sluice_log(SLUICE_INFO, "tagging records with `%s`", tag);
    return NULL; /* or a message to refuse the config */
}}

int sluice_transform(const sluice_record *record, sluice_emitter *out) {{
    if (!record->value.present) return sluice_reject(out, "record has no value"); /* to the dead-letter topic */
    sluice_header *headers = malloc((record->header_count + 1) * sizeof *headers);
    memcpy(headers, record->headers, record->header_count * sizeof *headers);
    headers[record->header_count].name = sluice_some("tag", 3);
    headers[record->header_count].value = sluice_some(tag, strlen(tag));
    sluice_output o = {{0}};
    o.key = record->key;
    o.value = record->value;
    o.headers = headers;
    o.header_count = record->header_count + 1;
    sluice_emit(out, &o);
    free(headers);
    return 0;
}}
"#
                ),
            ));
            f.push((
                "build.sh".into(),
                build_sh(&format!("\"{root}/plugins/sdk-c/build.sh\" . {name}.wasm")),
            ));
            f.push((".gitignore".into(), "*.wasm\n".into()));
        }
        Lang::Cpp => {
            f.push((
                format!("{ident}.cpp"),
                format!(
                    r#"#include <string>

#include "sluice.hpp"

struct Plugin {{
    std::string tag;

    static sluice::Result<Plugin> init(const sluice::Config &config) {{
        Plugin p{{std::string(config.get("tag").value_or("{name}"))}};
        sluice::log::info("tagging records with `" + p.tag + "`");
        return p; // or sluice::reject("...") to refuse the config
    }}

    sluice::Status transform(const sluice::Record &record, sluice::Emitter &out) {{
        if (!record.value()) return sluice::reject("record has no value"); // to the dead-letter topic
        auto headers = record.headers();
        headers.push_back({{"tag", sluice::bytes(tag)}});
        out.emit({{.key = record.key(), .value = record.value(), .headers = headers}});
        return {{}};
    }}
}};

SLUICE_EXPORT(Plugin)
"#
                ),
            ));
            f.push((
                "build.sh".into(),
                build_sh(&format!(
                    "\"{root}/plugins/sdk-cpp/build.sh\" . {name}.wasm"
                )),
            ));
            f.push((".gitignore".into(), "*.wasm\n".into()));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_and_non_empty_dirs() {
        let Some(root) = default_root() else { return };
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "1abc", "a b", "../x", "a/b"] {
            assert!(
                create(bad, Lang::Rust, &tmp.path().join("p"), &root).is_err(),
                "{bad}"
            );
        }
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        let err = create("ok", Lang::C, tmp.path(), &root).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }

    #[test]
    fn every_language_gets_a_build_script_a_sample_and_a_source() {
        let Some(root) = default_root() else { return };
        for lang in [
            Lang::Rust,
            Lang::Python,
            Lang::Js,
            Lang::Go,
            Lang::C,
            Lang::Cpp,
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("my-plugin");
            let files = create("my-plugin", lang, &dir, &root).unwrap();
            assert!(files.contains(&PathBuf::from("build.sh")), "{lang:?}");
            assert!(files.contains(&PathBuf::from("sample.jsonl")), "{lang:?}");
            assert!(files.len() >= 4, "{lang:?}: {files:?}");
        }
    }
}
