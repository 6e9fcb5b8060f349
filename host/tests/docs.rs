//! The docs are checked against the code, the way `deploy.rs` keeps the dashboard honest.
//!
//! - `config_reference_matches_the_config_structs`: the reference table of
//!   `docs/configuration.md` against the config structs. Every `.rs` file under `host/src` is
//!   parsed (with `syn`, so structs may move between files and modules); from `struct Config`, the
//!   fields of every `#[derive(Deserialize)]` struct and enum are followed to build the key paths a
//!   config file can hold, with serde's renames, defaults, `flatten`, and enums whose variants hold
//!   a struct or a single value (externally tagged, `untagged` or `tag = "…"`). Each key needs a
//!   row, each row a key, and each row's meaning must contain the first sentence of the field's
//!   `///` comment; the type, "required" and literal defaults are checked too.
//! - `markdown_links_resolve`: every relative link and `#anchor` in the README, `docs/` and the
//!   SDK READMEs points at a file and heading that exist.
//! - `readme_is_short_and_reaches_every_page`: the README stays a front page and links every page
//!   of `docs/`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Fields, GenericArgument, Item, Lit, PathArguments, Type};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Reading the Rust sources.

/// A `#[derive(Deserialize)]` struct or enum.
struct Decl {
    name: String,
    file: String,
    doc: String,
    serde: Serde,
    shape: Shape,
}

enum Shape {
    Struct(Vec<Member>),
    Enum(Vec<Variant>),
}

/// A struct field (or the single field of a newtype variant).
struct Member {
    ident: String,
    doc: String,
    serde: Serde,
    ty: Type,
}

struct Variant {
    ident: String,
    doc: String,
    serde: Serde,
    is_default: bool,
    fields: Fields,
}

/// The `#[serde(...)]` attributes this test understands; others are ignored.
#[derive(Default)]
struct Serde {
    rename: Option<String>,
    rename_all: Option<String>,
    /// `Some(None)` for `#[serde(default)]`, `Some(Some(path))` for `default = "path"`.
    default: Option<Option<String>>,
    skip: bool,
    flatten: bool,
    custom: bool,
    untagged: bool,
    tag: Option<String>,
    /// `try_from = "Raw"` / `from = "Raw"`: the type is read as `Raw`, whose keys count.
    from: Option<String>,
}

fn serde_attrs(attrs: &[Attribute]) -> Serde {
    let mut s = Serde::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            let name = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            let string = |meta: &syn::meta::ParseNestedMeta| -> syn::Result<Option<String>> {
                if meta.input.peek(syn::Token![=]) {
                    let lit: syn::LitStr = meta.value()?.parse()?;
                    Ok(Some(lit.value()))
                } else if meta.input.peek(syn::token::Paren) {
                    // `rename(deserialize = "…")`: the deserialize name is the one a file uses.
                    let mut de = None;
                    meta.parse_nested_meta(|inner| {
                        let lit: syn::LitStr = inner.value()?.parse()?;
                        if inner.path.is_ident("deserialize") {
                            de = Some(lit.value());
                        }
                        Ok(())
                    })?;
                    Ok(de)
                } else {
                    Ok(None)
                }
            };
            match name.as_str() {
                "rename" => s.rename = string(&meta)?,
                "rename_all" => s.rename_all = string(&meta)?,
                "default" => s.default = Some(string(&meta)?),
                "tag" => s.tag = string(&meta)?,
                "try_from" | "from" => s.from = string(&meta)?,
                "skip" | "skip_deserializing" => s.skip = true,
                "flatten" => s.flatten = true,
                "untagged" => s.untagged = true,
                "deserialize_with" | "with" => {
                    s.custom = true;
                    string(&meta)?;
                }
                _ => {
                    string(&meta)?;
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("cannot read a #[serde] attribute: {e}"));
    }
    s
}

fn doc(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        if let syn::Meta::NameValue(nv) = &attr.meta
            && let Expr::Lit(lit) = &nv.value
            && let Lit::Str(s) = &lit.lit
        {
            let v = s.value();
            lines.push(v.strip_prefix(' ').unwrap_or(&v).to_string());
        }
    }
    lines.join("\n")
}

fn derives_deserialize(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .any(|a| {
            let paths = a
                .parse_args_with(Punctuated::<syn::Path, syn::Token![,]>::parse_terminated)
                .unwrap_or_default();
            paths
                .iter()
                .any(|p| p.segments.last().is_some_and(|s| s.ident == "Deserialize"))
        })
}

/// Every deserializable type, default function and constant under `host/src`.
#[derive(Default)]
struct Sources {
    decls: Vec<Decl>,
    fns: BTreeMap<String, Vec<syn::Block>>,
    consts: BTreeMap<String, Vec<Expr>>,
}

impl Sources {
    fn read() -> Sources {
        let mut sources = Sources::default();
        let src = repo().join("host/src");
        let mut files = Vec::new();
        rs_files(&src, &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let parsed = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{}: cannot parse: {e}", file.display()));
            let rel = file.strip_prefix(repo()).unwrap().display().to_string();
            sources.add(&rel, parsed.items);
        }
        sources
    }

    fn add(&mut self, file: &str, items: Vec<Item>) {
        for item in items {
            match item {
                Item::Struct(s) if derives_deserialize(&s.attrs) => {
                    let members = s.fields.iter().filter_map(member).collect();
                    self.decls.push(Decl {
                        name: s.ident.to_string(),
                        file: file.to_string(),
                        doc: doc(&s.attrs),
                        serde: serde_attrs(&s.attrs),
                        shape: Shape::Struct(members),
                    });
                }
                Item::Enum(e) if derives_deserialize(&e.attrs) => {
                    let variants = e
                        .variants
                        .iter()
                        .map(|v| Variant {
                            ident: v.ident.to_string(),
                            doc: doc(&v.attrs),
                            serde: serde_attrs(&v.attrs),
                            is_default: v.attrs.iter().any(|a| a.path().is_ident("default")),
                            fields: v.fields.clone(),
                        })
                        .collect();
                    self.decls.push(Decl {
                        name: e.ident.to_string(),
                        file: file.to_string(),
                        doc: doc(&e.attrs),
                        serde: serde_attrs(&e.attrs),
                        shape: Shape::Enum(variants),
                    });
                }
                Item::Fn(f) => {
                    self.fns
                        .entry(f.sig.ident.to_string())
                        .or_default()
                        .push(*f.block);
                }
                Item::Const(c) => {
                    self.consts
                        .entry(c.ident.to_string())
                        .or_default()
                        .push(*c.expr);
                }
                Item::Mod(m) => {
                    if let Some((_, items)) = m.content {
                        self.add(file, items);
                    }
                }
                Item::Impl(i) => {
                    for item in i.items {
                        if let syn::ImplItem::Const(c) = item {
                            self.consts
                                .entry(c.ident.to_string())
                                .or_default()
                                .push(c.expr);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The declaration a type name refers to. Names are matched on their last segment; when two
    /// files declare the same name, the one in the referring file wins, else the test says so.
    fn decl(&self, name: &str, from_file: &str) -> Option<&Decl> {
        let all: Vec<&Decl> = self.decls.iter().filter(|d| d.name == name).collect();
        // A type read through another (`#[serde(try_from = "Raw")]`) has that one's keys.
        if let [one] = all.as_slice()
            && let Some(raw) = &one.serde.from
        {
            let file = one.file.clone();
            return self.decl(raw, &file);
        }
        match all.as_slice() {
            [] => None,
            [one] => Some(one),
            many => Some(
                many.iter()
                    .find(|d| d.file == from_file)
                    .copied()
                    .unwrap_or_else(|| {
                        panic!(
                            "`{name}` (used in {from_file}) is declared in {}: this test matches \
                             types by name; give them distinct names",
                            many.iter()
                                .map(|d| d.file.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }),
            ),
        }
    }

    /// A literal default, when the default function (or constant) is simple enough to evaluate.
    fn eval(&self, expr: &Expr, depth: usize) -> Option<Value> {
        if depth > 8 {
            return None;
        }
        match expr {
            Expr::Lit(l) => match &l.lit {
                Lit::Int(i) => i.base10_parse::<i128>().ok().map(Value::Int),
                Lit::Float(f) => f.base10_parse::<f64>().ok().map(Value::Float),
                Lit::Bool(b) => Some(Value::Bool(b.value)),
                _ => None,
            },
            Expr::Paren(p) => self.eval(&p.expr, depth + 1),
            Expr::Group(g) => self.eval(&g.expr, depth + 1),
            Expr::Cast(c) => self.eval(&c.expr, depth + 1),
            Expr::Binary(b) => {
                let (Value::Int(l), Value::Int(r)) = (
                    self.eval(&b.left, depth + 1)?,
                    self.eval(&b.right, depth + 1)?,
                ) else {
                    return None;
                };
                match b.op {
                    syn::BinOp::Mul(_) => Some(Value::Int(l * r)),
                    syn::BinOp::Add(_) => Some(Value::Int(l + r)),
                    syn::BinOp::Sub(_) => Some(Value::Int(l - r)),
                    syn::BinOp::Shl(_) => Some(Value::Int(l << r)),
                    _ => None,
                }
            }
            Expr::Path(p) => {
                let name = p.path.segments.last()?.ident.to_string();
                match self.consts.get(&name)?.as_slice() {
                    [one] => self.eval(one, depth + 1),
                    _ => None,
                }
            }
            Expr::Call(c) if c.args.is_empty() => {
                let Expr::Path(p) = &*c.func else { return None };
                self.eval_fn(&p.path.segments.last()?.ident.to_string(), depth + 1)
            }
            Expr::Block(b) => self.eval_block(&b.block, depth + 1),
            _ => None,
        }
    }

    fn eval_fn(&self, name: &str, depth: usize) -> Option<Value> {
        match self.fns.get(name)?.as_slice() {
            [one] => self.eval_block(one, depth),
            _ => None,
        }
    }

    fn eval_block(&self, block: &syn::Block, depth: usize) -> Option<Value> {
        match block.stmts.as_slice() {
            [syn::Stmt::Expr(e, None)] => self.eval(e, depth + 1),
            _ => None,
        }
    }
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn member(field: &syn::Field) -> Option<Member> {
    let serde = serde_attrs(&field.attrs);
    if serde.skip {
        return None;
    }
    Some(Member {
        ident: field
            .ident
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        doc: doc(&field.attrs),
        serde,
        ty: field.ty.clone(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Int(i128),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// serde's `rename_all` applied to a field (snake_case) or variant (PascalCase) name.
fn rename(ident: &str, rule: Option<&str>, is_variant: bool) -> String {
    let words: Vec<String> = if is_variant {
        let mut words = Vec::new();
        for c in ident.chars() {
            if c.is_uppercase() || words.is_empty() {
                words.push(String::new());
            }
            words.last_mut().unwrap().push(c);
        }
        words
    } else {
        ident.split('_').map(str::to_string).collect()
    };
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    match rule {
        None if is_variant => ident.to_string(),
        None => ident.to_string(),
        Some("lowercase") => lower.concat(),
        Some("UPPERCASE") => lower.concat().to_uppercase(),
        Some("snake_case") => lower.join("_"),
        Some("kebab-case") => lower.join("-"),
        Some("SCREAMING_SNAKE_CASE") => lower.join("_").to_uppercase(),
        Some("SCREAMING-KEBAB-CASE") => lower.join("-").to_uppercase(),
        Some("camelCase") | Some("PascalCase") => {
            let pascal: String = lower
                .iter()
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect::<String>())
                        .unwrap_or_default()
                })
                .collect();
            if rule == Some("camelCase") {
                let mut c = pascal.chars();
                c.next()
                    .map(|f| f.to_lowercase().chain(c).collect::<String>())
                    .unwrap_or_default()
            } else {
                pascal
            }
        }
        Some(other) => panic!("rename_all = {other:?} is not known to this test"),
    }
}

// ---------------------------------------------------------------------------------------------
// Key paths.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// A value: needs a row.
    Leaf,
    /// An array of tables (`[[pipeline]]`, `plugins = [{…}]`): needs a row.
    Array,
    /// A table of keys that have rows of their own: a row is allowed, not needed.
    Table,
}

/// One key a config file can hold.
struct Key {
    path: String,
    kind: Kind,
    doc: String,
    /// Where the doc comment is, for the failure message.
    origin: String,
    /// The word the type column must contain (`integer`, `boolean`…), if any.
    type_word: Option<&'static str>,
    required: bool,
    default: Option<String>,
    /// Unit variants of an enum value: each must be named in the row.
    variants: Vec<String>,
}

struct Walker<'a> {
    src: &'a Sources,
    keys: Vec<Key>,
}

/// What a field's type holds, once `Option` and `Box` are peeled off.
enum Holds<'a> {
    Value(&'static str),
    Decl(&'a Decl),
    ArrayOf(&'a Decl),
    MapOf(&'a Decl),
}

fn generic_args(ty: &Type) -> Option<(String, Vec<&Type>)> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    let args = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((seg.ident.to_string(), args))
}

impl<'a> Walker<'a> {
    /// `(what it holds, is it an Option)`.
    fn holds(&self, ty: &Type, file: &str) -> (Holds<'a>, bool) {
        let Some((name, args)) = generic_args(ty) else {
            return (Holds::Value(""), false);
        };
        match (name.as_str(), args.as_slice()) {
            ("Option", [inner]) => (self.holds(inner, file).0, true),
            ("Box", [inner]) => self.holds(inner, file),
            ("Vec", [inner]) => match self.struct_like(inner, file) {
                Some(d) => (Holds::ArrayOf(d), false),
                None => (Holds::Value("array"), false),
            },
            ("BTreeMap" | "HashMap" | "IndexMap", [_, v]) => match self.struct_like(v, file) {
                Some(d) => (Holds::MapOf(d), false),
                None => (Holds::Value("table"), false),
            },
            _ => match self.src.decl(&name, file) {
                Some(d) if !unit_only(d) => (Holds::Decl(d), false),
                _ => (Holds::Value(type_word(&name)), false),
            },
        }
    }

    fn struct_like(&self, ty: &Type, file: &str) -> Option<&'a Decl> {
        let (name, _) = generic_args(ty)?;
        self.src.decl(&name, file).filter(|d| !unit_only(d))
    }

    fn push(&mut self, key: Key) {
        self.keys.push(key);
    }

    /// The fields of a struct declaration, or the content of an enum, under `prefix`.
    fn decl(&mut self, d: &'a Decl, prefix: &str, depth: usize) {
        match &d.shape {
            Shape::Struct(members) => {
                for m in members {
                    self.member(d, m, prefix, depth);
                }
            }
            Shape::Enum(variants) => self.enum_content(d, variants, prefix, depth),
        }
    }

    fn member(&mut self, d: &Decl, m: &Member, prefix: &str, depth: usize) {
        let origin = format!("{}, {}::{}", d.file, d.name, m.ident);
        if m.serde.flatten {
            match self.holds(&m.ty, &d.file).0 {
                Holds::Decl(inner) => self.decl(inner, prefix, depth),
                _ => panic!("{origin}: #[serde(flatten)] on a type this test cannot follow"),
            }
            return;
        }
        let name = m
            .serde
            .rename
            .clone()
            .unwrap_or_else(|| rename(&m.ident, d.serde.rename_all.as_deref(), false));
        let path = format!("{prefix}{name}");
        let defaulted = m.serde.default.is_some() || d.serde.default.is_some();
        let (holds, optional) = if m.serde.custom {
            (Holds::Value(""), false)
        } else {
            self.holds(&m.ty, &d.file)
        };
        let required = !optional && !defaulted;
        let default = self.default_of(m, &d.file);
        self.value(
            &path, holds, &m.doc, origin, required, default, &m.ty, &d.file, depth,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn value(
        &mut self,
        path: &str,
        holds: Holds<'a>,
        doc: &str,
        origin: String,
        required: bool,
        default: Option<String>,
        ty: &Type,
        file: &str,
        depth: usize,
    ) {
        match holds {
            Holds::Value(word) => {
                let variants = self.unit_variants(ty, file);
                self.push(Key {
                    path: path.to_string(),
                    kind: Kind::Leaf,
                    doc: doc.to_string(),
                    origin,
                    type_word: (!word.is_empty()).then_some(word),
                    required,
                    default,
                    variants,
                });
            }
            Holds::Decl(inner) => {
                self.push(Key {
                    path: path.to_string(),
                    kind: Kind::Table,
                    doc: doc.to_string(),
                    origin,
                    type_word: None,
                    required,
                    default: None,
                    variants: Vec::new(),
                });
                self.decl(inner, &format!("{path}."), depth + 1);
            }
            Holds::ArrayOf(inner) => {
                self.push(Key {
                    path: path.to_string(),
                    kind: Kind::Array,
                    doc: doc.to_string(),
                    origin,
                    type_word: Some("array"),
                    required,
                    default: None,
                    variants: Vec::new(),
                });
                // `[[pipeline]]` at the top is spelled `pipeline.name`; an array inside a table
                // is spelled `pipeline.plugins[].path`.
                let sep = if depth == 0 { "." } else { "[]." };
                self.decl(inner, &format!("{path}{sep}"), depth + 1);
            }
            Holds::MapOf(inner) => {
                for p in [path.to_string(), format!("{path}.NAME")] {
                    self.push(Key {
                        path: p,
                        kind: Kind::Table,
                        doc: doc.to_string(),
                        origin: origin.clone(),
                        type_word: None,
                        required: false,
                        default: None,
                        variants: Vec::new(),
                    });
                }
                self.decl(inner, &format!("{path}.NAME."), depth + 1);
            }
        }
    }

    /// An enum whose variants hold values: externally tagged (`postgres = { … }`), internally
    /// tagged (`tag = "kind"`) or untagged (the variants' keys side by side).
    fn enum_content(&mut self, d: &'a Decl, variants: &[Variant], prefix: &str, depth: usize) {
        let merged = d.serde.untagged || d.serde.tag.is_some();
        if let Some(tag) = &d.serde.tag {
            let names = variants
                .iter()
                .map(|v| variant_name(d, v))
                .collect::<Vec<_>>();
            self.push(Key {
                path: format!("{prefix}{tag}"),
                kind: Kind::Leaf,
                doc: d.doc.clone(),
                origin: format!("{}, {}", d.file, d.name),
                type_word: None,
                required: true,
                default: None,
                variants: names,
            });
        }
        for v in variants {
            let origin = format!("{}, {}::{}", d.file, d.name, v.ident);
            let name = variant_name(d, v);
            let at = if merged {
                prefix.trim_end_matches('.').to_string()
            } else {
                format!("{prefix}{name}")
            };
            match &v.fields {
                Fields::Unit if merged => {}
                Fields::Unit => self.push(Key {
                    path: at,
                    kind: Kind::Leaf,
                    doc: v.doc.clone(),
                    origin,
                    type_word: None,
                    required: false,
                    default: None,
                    variants: Vec::new(),
                }),
                Fields::Unnamed(f) if f.unnamed.len() == 1 => {
                    let ty = &f.unnamed[0].ty;
                    let (holds, _) = if v.serde.custom {
                        (Holds::Value(""), false)
                    } else {
                        self.holds(ty, &d.file)
                    };
                    match holds {
                        // An untagged variant holding a struct: its keys sit at this level.
                        Holds::Decl(inner) if merged => self.decl(inner, prefix, depth),
                        holds => {
                            self.value(&at, holds, &v.doc, origin, false, None, ty, &d.file, depth)
                        }
                    }
                }
                Fields::Named(f) => {
                    if !merged {
                        self.push(Key {
                            path: at.clone(),
                            kind: Kind::Table,
                            doc: v.doc.clone(),
                            origin: origin.clone(),
                            type_word: None,
                            required: false,
                            default: None,
                            variants: Vec::new(),
                        });
                    }
                    let inner_prefix = if merged {
                        prefix.to_string()
                    } else {
                        format!("{at}.")
                    };
                    let pseudo = Decl {
                        name: format!("{}::{}", d.name, v.ident),
                        file: d.file.clone(),
                        doc: v.doc.clone(),
                        serde: Serde {
                            rename_all: v.serde.rename_all.clone(),
                            ..Serde::default()
                        },
                        shape: Shape::Struct(Vec::new()),
                    };
                    for field in &f.named {
                        if let Some(m) = member(field) {
                            self.member(&pseudo, &m, &inner_prefix, depth + 1);
                        }
                    }
                }
                Fields::Unnamed(_) => panic!(
                    "{origin}: a tuple variant with several fields cannot be written in TOML"
                ),
            }
        }
    }

    fn unit_variants(&self, ty: &Type, file: &str) -> Vec<String> {
        let mut ty = ty;
        while let Some((name, args)) = generic_args(ty) {
            match (name.as_str(), args.as_slice()) {
                ("Option" | "Box", [inner]) => ty = inner,
                _ => {
                    return match self.src.decl(&name, file) {
                        Some(d) if unit_only(d) => match &d.shape {
                            Shape::Enum(vs) => vs.iter().map(|v| variant_name(d, v)).collect(),
                            Shape::Struct(_) => Vec::new(),
                        },
                        _ => Vec::new(),
                    };
                }
            }
        }
        Vec::new()
    }

    /// The default a field gets when the key is absent, when it is a literal this test can read.
    fn default_of(&self, m: &Member, file: &str) -> Option<String> {
        match m.serde.default.as_ref()? {
            Some(path) => {
                let name = path.rsplit("::").next().unwrap();
                self.src.eval_fn(name, 0).map(|v| v.to_string())
            }
            None => {
                let (name, _) = generic_args(&m.ty)?;
                match name.as_str() {
                    "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => Some("0".into()),
                    "bool" => Some("false".into()),
                    _ => {
                        let d = self.src.decl(&name, file)?;
                        let Shape::Enum(vs) = &d.shape else {
                            return None;
                        };
                        vs.iter().find(|v| v.is_default).map(|v| variant_name(d, v))
                    }
                }
            }
        }
    }
}

fn variant_name(d: &Decl, v: &Variant) -> String {
    v.serde
        .rename
        .clone()
        .unwrap_or_else(|| rename(&v.ident, d.serde.rename_all.as_deref(), true))
}

fn unit_only(d: &Decl) -> bool {
    matches!(&d.shape, Shape::Enum(vs) if vs.iter().all(|v| matches!(v.fields, Fields::Unit)))
}

fn type_word(rust: &str) -> &'static str {
    match rust {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128"
        | "isize" | "NonZeroU64" | "NonZeroUsize" | "NonZeroU32" => "integer",
        "f32" | "f64" => "float",
        "bool" => "boolean",
        "PathBuf" => "path",
        _ => "",
    }
}

fn config_keys(src: &Sources) -> Vec<Key> {
    let root = src
        .decls
        .iter()
        .filter(|d| d.name == "Config")
        .find(|d| d.file.ends_with("/config.rs") || d.file.ends_with("/config/mod.rs"))
        .expect("struct Config in host/src/config.rs (or config/mod.rs) derives Deserialize");
    let mut walker = Walker {
        src,
        keys: Vec::new(),
    };
    walker.decl(root, "", 0);
    walker.keys
}

// ---------------------------------------------------------------------------------------------
// The reference table.

struct Row {
    line: usize,
    key: String,
    ty: String,
    default: String,
    meaning: String,
}

const REFERENCE: &str = "docs/configuration.md";

fn reference_rows() -> Vec<Row> {
    let text = std::fs::read_to_string(repo().join(REFERENCE)).unwrap();
    let mut rows = Vec::new();
    let mut in_section = false;
    let mut in_table = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            in_section = line.trim_start_matches('#').trim() == "Reference";
            continue;
        }
        if !in_section {
            continue;
        }
        if line.starts_with("| key | type | default | meaning |") {
            in_table = true;
            continue;
        }
        if in_table && !line.starts_with('|') {
            break;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cells = split_row(line);
        assert_eq!(
            cells.len(),
            4,
            "{REFERENCE}:{}: a reference row has 4 cells (key, type, default, meaning): {line}",
            i + 1
        );
        rows.push(Row {
            line: i + 1,
            key: cells[0].trim_matches('`').to_string(),
            ty: cells[1].clone(),
            default: cells[2].clone(),
            meaning: cells[3].clone(),
        });
    }
    assert!(
        !rows.is_empty(),
        "{REFERENCE} has no `## Reference` section with a `| key | type | default | meaning |` table"
    );
    rows
}

/// A table row's cells; `\|` is a literal bar, as are bars inside backticks.
fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut code = false;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push(chars.next().unwrap());
            }
            '`' => {
                code = !code;
                cells.last_mut().unwrap().push(c);
            }
            '|' if !code => cells.push(String::new()),
            _ => cells.last_mut().unwrap().push(c),
        }
    }
    cells.iter().map(|c| c.trim().to_string()).collect()
}

/// Markup and spacing removed, lower case: how a doc sentence and a row are compared.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    // [text](target) → text
    while let Some(open) = rest.find('[') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        match after
            .find("](")
            .and_then(|mid| after[mid..].find(')').map(|close| (mid, mid + close)))
        {
            Some((mid, close)) => {
                out.push_str(&after[1..mid]);
                rest = &after[close + 1..];
            }
            None => {
                out.push('[');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    let out = out.replace(['`', '*'], "").to_lowercase();
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches('.')
        .to_string()
}

/// The doc comment's first sentence, normalised, without "(default …)" asides: defaults have
/// their own column.
fn summary(doc: &str) -> String {
    normalise(&first_sentence(doc))
}

/// The doc comment's first sentence as written, without "(default …)" asides.
fn first_sentence(doc: &str) -> String {
    let paragraph = doc.split("\n\n").next().unwrap_or("");
    let text = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut end = text.len();
    let mut search = 0;
    while let Some(at) = text[search..].find(". ") {
        let at = search + at;
        let before = &text[..at];
        let abbreviation = ["e.g", "i.e", "etc", "vs", "cf"]
            .iter()
            .any(|a| before.ends_with(a));
        if !abbreviation {
            end = at + 1;
            break;
        }
        search = at + 2;
    }
    let mut sentence = text[..end].to_string();
    while let Some(open) = sentence.find("(default") {
        let Some(close) = sentence[open..].find(')') else {
            break;
        };
        let close = open + close;
        let trimmed_start = sentence[..open].trim_end().len();
        sentence.replace_range(trimmed_start..close + 1, "");
    }
    sentence.trim_end_matches('.').to_string()
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

fn contains_value(cell: &str, value: &str) -> bool {
    let cell = cell.replace([',', '_'], "");
    let bytes = cell.as_bytes();
    cell.match_indices(value).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + value.len()).copied();
        let edge = |b: Option<u8>| b.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'.'));
        edge(before) && (edge(after) || after == Some(b'.') && value.contains('.'))
    })
}

#[test]
fn config_reference_matches_the_config_structs() {
    let src = Sources::read();
    let keys = config_keys(&src);
    let rows = reference_rows();
    let mut problems = Vec::new();

    let mut by_key: BTreeMap<&str, &Row> = BTreeMap::new();
    for row in &rows {
        if let Some(first) = by_key.insert(&row.key, row) {
            problems.push(format!(
                "{REFERENCE}:{}: `{}` has a second row (the first is line {}); keep one",
                row.line, row.key, first.line
            ));
        }
    }
    let known: BTreeMap<&str, &Key> = keys.iter().map(|k| (k.path.as_str(), k)).collect();

    for key in &keys {
        let Some(row) = by_key.get(key.path.as_str()) else {
            if key.kind != Kind::Table {
                problems.push(format!(
                    "{REFERENCE}: no row for `{}` (declared at {}). Add one, e.g.\n    | `{}` | {} | {} | {} |",
                    key.path,
                    key.origin,
                    key.path,
                    key.type_word.unwrap_or("TYPE"),
                    if key.required {
                        "required".to_string()
                    } else {
                        key.default.clone().map_or("none".into(), |d| format!("`{d}`"))
                    },
                    lower_first(&first_sentence(&key.doc)),
                ));
            }
            continue;
        };
        let here = format!("{REFERENCE}:{}: `{}`", row.line, key.path);
        let sentence = summary(&key.doc);
        if sentence.is_empty() {
            problems.push(format!(
                "{} has no `///` doc comment; write one (its first sentence goes into the meaning \
                 column of {here})",
                key.origin
            ));
        } else if !normalise(&row.meaning).contains(&sentence) {
            problems.push(format!(
                "{here}: the meaning column does not contain the first sentence of the doc comment \
                 of {}:\n    doc comment: {}\n    row:         {}\n  Make them agree: edit \
                 the row, or the `///` comment (compared without backticks, `*`, links and case; \
                 \"(default …)\" asides are left out)",
                key.origin,
                first_sentence(&key.doc),
                row.meaning
            ));
        }
        if let Some(word) = key.type_word
            && !row.ty.contains(word)
        {
            problems.push(format!(
                "{here}: the type column says \"{}\", but {} is {} {word}; write `{word}` there",
                row.ty,
                key.origin,
                if word.starts_with(['a', 'i']) {
                    "an"
                } else {
                    "a"
                }
            ));
        }
        if key.required && !row.default.contains("required") {
            problems.push(format!(
                "{here}: {} has no default (a file without the key is refused), but the default \
                 column says \"{}\"; write `required`",
                key.origin, row.default
            ));
        }
        if let Some(default) = &key.default
            && !contains_value(&row.default, default)
        {
            problems.push(format!(
                "{here}: the default in the code ({}) is `{default}`, the default column says \"{}\"",
                key.origin, row.default
            ));
        }
        for variant in &key.variants {
            if !row.ty.contains(variant.as_str())
                && !row.meaning.contains(variant.as_str())
                && !row.default.contains(variant.as_str())
            {
                problems.push(format!(
                    "{here}: the value `{variant}` ({}) is not named in the row; add it to the \
                     type column",
                    key.origin
                ));
            }
        }
    }
    for row in &rows {
        if !known.contains_key(row.key.as_str()) {
            let parent = row.key.rsplit_once('.').map_or("", |(p, _)| p);
            let siblings: Vec<&str> = keys
                .iter()
                .map(|k| k.path.as_str())
                .filter(|p| p.rsplit_once('.').map_or("", |(q, _)| q) == parent)
                .collect();
            problems.push(format!(
                "{REFERENCE}:{}: `{}` is not a config key (no such field in the config structs); \
                 remove the row or fix its name. Keys beside it: {}",
                row.line,
                row.key,
                siblings.join(", ")
            ));
        }
    }
    let mut message = String::new();
    for p in &problems {
        writeln!(message, "- {p}").unwrap();
    }
    assert!(
        problems.is_empty(),
        "the configuration reference and the config structs disagree ({} problem(s)):\n{message}",
        problems.len()
    );
    // The walk itself reached the corners the reference relies on.
    for path in [
        "kafka.bootstrap_servers",
        "tenant.topic_prefixes",
        "pipeline.plugins[].path",
        "pipeline.limits.memory_mb",
        "pipeline.outputs.NAME.kafka_topic",
        "pipeline.outputs.NAME.postgres.metadata.key",
    ] {
        assert!(known.contains_key(path), "the walk did not reach {path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Links.

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Lines outside fenced code blocks, with their numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fence = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        } else if !fence {
            out.push((i + 1, line));
        }
    }
    out
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let s = slug(&line[hashes..]);
            let n = seen.entry(s.clone()).or_default();
            out.insert(if *n == 0 {
                s.clone()
            } else {
                format!("{s}-{n}")
            });
            *n += 1;
        }
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    for dir in ["docs", "plugins"] {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            } else if path.join("README.md").exists() {
                files.push(path.join("README.md"));
            }
        }
    }
    files
}

/// `(line, target)` of every inline link outside code.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push((n, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn markdown_links_resolve() {
    let mut problems = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !resolved.exists() {
                problems.push(format!("{name}:{line}: `{target}`: no such file"));
                continue;
            }
            if !anchor.is_empty() {
                let target_text = std::fs::read_to_string(&resolved).unwrap_or_default();
                if !anchors(&target_text).contains(anchor) {
                    problems.push(format!(
                        "{name}:{line}: `{target}`: no heading with anchor `#{anchor}` there"
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn readme_is_short_and_reaches_every_page() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; it is the front page (what Sluice is, the two commands, a \
         quick start, links): move the detail into docs/"
    );
    let targets: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|(_, t)| t.split('#').next().unwrap().to_string())
        .collect();
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let page = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
            assert!(
                targets.contains(&page),
                "README.md does not link {page}; add it to the README's list of documentation"
            );
        }
    }
}

/// The walk on sources shaped like the refactor to come: outputs as an enum with one arm per
/// sink (a newtype value, a struct from another folder, a struct variant), an untagged and an
/// internally tagged enum, a flattened struct, limits in a module of their own with constants as
/// defaults.
#[test]
fn key_walk_follows_sink_enums_and_structs_in_other_files() {
    let files = [
        (
            "host/src/config.rs",
            r#"
            #[derive(Deserialize)]
            pub struct Config {
                /// The pipelines.
                #[serde(rename = "pipeline", default)]
                pub pipelines: Vec<PipelineConfig>,
            }
            #[derive(Deserialize)]
            pub struct PipelineConfig {
                /// Named outputs.
                pub outputs: BTreeMap<String, Output>,
                /// Limits.
                #[serde(default)]
                pub limits: crate::runtime::limits::Limits,
                /// Plugins.
                pub plugins: Vec<PluginConfig>,
                /// Where the source is.
                pub source: Source,
                /// Retries.
                #[serde(flatten)]
                pub retry: Retry,
            }
            #[derive(Deserialize)]
            pub struct PluginConfig {
                /// Path.
                pub path: PathBuf,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "snake_case")]
            pub enum Output {
                /// A Kafka topic.
                KafkaTopic(String),
                /// A table.
                Postgres(PostgresOutput),
                /// A file.
                File(FileOutput),
                /// Nowhere.
                Discard { #[serde(default)] count: bool },
            }
            #[derive(Deserialize)]
            #[serde(tag = "kind", rename_all = "kebab-case")]
            pub enum Source {
                /// Kafka.
                KafkaSource(KafkaSource),
            }
            #[derive(Deserialize)]
            pub struct KafkaSource {
                /// Topics.
                pub inputs: Vec<String>,
            }
            #[derive(Deserialize)]
            #[serde(untagged)]
            pub enum Retry {
                /// Fixed.
                Fixed { retry_ms: u64 },
            }
            "#,
        ),
        (
            "host/src/sinks/postgres/config.rs",
            r#"
            #[derive(Deserialize)]
            pub struct PostgresOutput {
                /// URL.
                pub url: String,
                /// Mode.
                #[serde(default)]
                pub mode: WriteMode,
            }
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "lowercase")]
            pub enum WriteMode { #[default] Insert, Upsert }
            "#,
        ),
        (
            "host/src/sinks/file/mod.rs",
            r#"
            #[derive(Deserialize)]
            pub struct FileOutput {
                /// Path of the JSON-lines file.
                pub path: PathBuf,
            }
            "#,
        ),
        (
            "host/src/runtime/limits.rs",
            r#"
            pub const DEFAULT_MEMORY_MB: u64 = 64 * 2;
            #[derive(Deserialize)]
            pub struct Limits {
                /// Memory.
                #[serde(default = "default_memory_mb")]
                pub memory_mb: u64,
            }
            fn default_memory_mb() -> u64 { DEFAULT_MEMORY_MB }
            "#,
        ),
    ];
    let mut src = Sources::default();
    for (file, text) in files {
        src.add(file, syn::parse_file(text).unwrap().items);
    }
    let keys = config_keys(&src);
    let got: BTreeMap<&str, (Kind, bool, Option<&str>)> = keys
        .iter()
        .map(|k| (k.path.as_str(), (k.kind, k.required, k.default.as_deref())))
        .collect();
    let expected: BTreeMap<&str, (Kind, bool, Option<&str>)> = [
        ("pipeline", (Kind::Array, false, None)),
        ("pipeline.outputs", (Kind::Table, false, None)),
        ("pipeline.outputs.NAME", (Kind::Table, false, None)),
        (
            "pipeline.outputs.NAME.kafka_topic",
            (Kind::Leaf, false, None),
        ),
        ("pipeline.outputs.NAME.postgres", (Kind::Table, false, None)),
        (
            "pipeline.outputs.NAME.postgres.url",
            (Kind::Leaf, true, None),
        ),
        (
            "pipeline.outputs.NAME.postgres.mode",
            (Kind::Leaf, false, Some("insert")),
        ),
        ("pipeline.outputs.NAME.file", (Kind::Table, false, None)),
        ("pipeline.outputs.NAME.file.path", (Kind::Leaf, true, None)),
        ("pipeline.outputs.NAME.discard", (Kind::Table, false, None)),
        (
            "pipeline.outputs.NAME.discard.count",
            (Kind::Leaf, false, Some("false")),
        ),
        ("pipeline.limits", (Kind::Table, false, None)),
        (
            "pipeline.limits.memory_mb",
            (Kind::Leaf, false, Some("128")),
        ),
        ("pipeline.plugins", (Kind::Array, true, None)),
        ("pipeline.plugins[].path", (Kind::Leaf, true, None)),
        ("pipeline.source", (Kind::Table, true, None)),
        ("pipeline.source.kind", (Kind::Leaf, true, None)),
        ("pipeline.source.inputs", (Kind::Leaf, true, None)),
        ("pipeline.retry_ms", (Kind::Leaf, true, None)),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
    let kind = keys
        .iter()
        .find(|k| k.path == "pipeline.source.kind")
        .unwrap();
    assert_eq!(kind.variants, ["kafka-source"]);
    let file = keys
        .iter()
        .find(|k| k.path == "pipeline.outputs.NAME.file.path")
        .unwrap();
    assert_eq!(file.origin, "host/src/sinks/file/mod.rs, FileOutput::path");
    assert_eq!(summary(&file.doc), "path of the json-lines file");
}
