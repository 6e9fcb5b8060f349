//! `sluice new NAME --lang rust|python|js|go|c|cpp`: a plugin project that builds to a component
//! with one command (`./build.sh`) and passes `sluice test NAME.wasm --input sample.jsonl`.
//!
//! Every language gets the same starting transform: forward each record with a `tag` header
//! (config `tag`, default the project's name) and reject a record without a value. The project
//! points at the SDKs of a Sluice checkout (`--sluice-root`, default the checkout this binary was
//! built from).
//!
//! The files are templates under `scaffold/templates/` (`<lang>/` per language, the README and the
//! sample shared), compiled in with `include_str!`; `{{name}}`, `{{ident}}` and `{{root}}` in them
//! (and in their output paths) are filled in when the project is written.

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
pub const SAMPLE: &str = include_str!("templates/sample.jsonl");

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
    let files = files(name, lang, &root.display().to_string());
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

/// A template file: the path it is written to in the project and its text, both with
/// placeholders (see [`fill`]).
type Template = (&'static str, &'static str);

/// The files every project gets, whatever its language.
const COMMON: &[Template] = &[
    ("sample.jsonl", SAMPLE),
    ("README.md", include_str!("templates/README.md")),
];

/// The files of a `lang` project, from `templates/<lang>/`. A template's file name differs from
/// the file it writes where the name would mean something in this repository (`Cargo.toml`,
/// `.gitignore`) or depends on the project (`{{ident}}.c`).
fn templates(lang: Lang) -> &'static [Template] {
    match lang {
        Lang::Rust => &[
            ("Cargo.toml", include_str!("templates/rust/Cargo.toml.in")),
            ("src/lib.rs", include_str!("templates/rust/src/lib.rs")),
            ("build.sh", include_str!("templates/rust/build.sh")),
            (".gitignore", include_str!("templates/rust/gitignore")),
        ],
        Lang::Python => &[
            ("app.py", include_str!("templates/python/app.py")),
            ("build.sh", include_str!("templates/python/build.sh")),
            (".gitignore", include_str!("templates/python/gitignore")),
        ],
        Lang::Js => &[
            ("app.js", include_str!("templates/js/app.js")),
            ("jsconfig.json", include_str!("templates/js/jsconfig.json")),
            ("build.sh", include_str!("templates/js/build.sh")),
            (".gitignore", include_str!("templates/js/gitignore")),
        ],
        Lang::Go => &[
            ("go.mod", include_str!("templates/go/go.mod")),
            ("main.go", include_str!("templates/go/main.go")),
            ("build.sh", include_str!("templates/go/build.sh")),
            (".gitignore", include_str!("templates/go/gitignore")),
        ],
        Lang::C => &[
            ("{{ident}}.c", include_str!("templates/c/plugin.c")),
            ("build.sh", include_str!("templates/c/build.sh")),
            (".gitignore", include_str!("templates/c/gitignore")),
        ],
        Lang::Cpp => &[
            ("{{ident}}.cpp", include_str!("templates/cpp/plugin.cpp")),
            ("build.sh", include_str!("templates/cpp/build.sh")),
            (".gitignore", include_str!("templates/cpp/gitignore")),
        ],
    }
}

/// The source file a newcomer edits, named in the project's README.
fn source(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "src/lib.rs",
        Lang::Python => "app.py",
        Lang::Js => "app.js",
        Lang::Go => "main.go",
        Lang::C => "{{ident}}.c",
        Lang::Cpp => "{{ident}}.cpp",
    }
}

/// Replaces each `{{key}}` of `template` by its value in `vars`, in one pass (a value is never
/// scanned again). Text between braces that is not a known key stays as it is.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let value = after.find("}}").and_then(|end| {
            let key = &after[..end];
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v, end + 2))
        });
        match value {
            Some((value, len)) => {
                out.push_str(value);
                rest = &after[len..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The project's files, `(path relative to the project, text)`, with the placeholders filled:
/// `{{name}}` the plugin's name, `{{ident}}` the name with `_` for `-` (Rust crate and C file
/// names, Go module), `{{root}}` the Sluice checkout, `{{lang}}` and `{{source}}` for the README.
fn files(name: &str, lang: Lang, root: &str) -> Vec<(String, String)> {
    let ident = name.replace('-', "_");
    let lang_name = format!("{lang:?}");
    let mut vars = vec![
        ("name", name),
        ("ident", ident.as_str()),
        ("root", root),
        ("lang", lang_name.as_str()),
    ];
    let source = fill(source(lang), &vars);
    vars.push(("source", source.as_str()));
    COMMON
        .iter()
        .chain(templates(lang))
        .map(|(path, text)| (fill(path, &vars), fill(text, &vars)))
        .collect()
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

    #[test]
    fn templates_are_filled_completely_and_only_where_asked() {
        assert_eq!(
            fill("{{a}}-{{b}} {x} {{c}} {{a", &[("a", "{{b}}"), ("b", "2")]),
            "{{b}}-2 {x} {{c}} {{a"
        );
        for lang in [
            Lang::Rust,
            Lang::Python,
            Lang::Js,
            Lang::Go,
            Lang::C,
            Lang::Cpp,
        ] {
            for (path, text) in files("my-plugin", lang, "/opt/sluice") {
                assert!(!path.contains("{{"), "{lang:?}: {path}");
                assert!(!text.contains("{{"), "{lang:?} {path}: {text}");
            }
        }
        let c = files("my-plugin", Lang::C, "/opt/sluice");
        let (path, text) = &c[2];
        assert_eq!(path, "my_plugin.c");
        assert!(text.contains(r#"tag = "my-plugin";"#), "{text}");
        let readme = &c.iter().find(|(p, _)| p == "README.md").unwrap().1;
        assert!(
            readme.contains("(C)") && readme.contains("Edit `my_plugin.c`"),
            "{readme}"
        );
    }
}
