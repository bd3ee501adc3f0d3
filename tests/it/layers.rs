//! The layers of `src/`, bottom up, and a check that no module imports one
//! from a layer above its own (the map in `src/lib.rs` describes them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module and its layer: a module may use modules of lower
/// layers only.
const LAYERS: &[(&str, u8)] = &[
    // The wire, and small pieces that know nothing of the proxy.
    ("protocol", 1),
    ("inbox", 1),
    ("auth", 1),
    ("metrics", 1),
    ("stream", 1),
    ("tls", 1),
    // Client-visible error texts, and the configuration.
    ("errors", 2),
    ("config", 2),
    // Outbound connections.
    ("backend", 3),
    // The lock engine.
    ("redlock", 4),
    // Request classification and parsing.
    ("command", 5),
    // The listener and the connections.
    ("server", 6),
    // Entry points.
    ("dev", 7),
    ("fuzzing", 7),
    ("lib", 7),
    ("main", 7),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::name` a line of code (not a comment) mentions.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let tail = &rest[i + "crate::".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
        rest = tail;
    }
    // `use crate::{a, b}` names several modules at once.
    if let Some(i) = code.find("crate::{") {
        let inner = code[i + "crate::{".len()..].split('}').next().unwrap_or("");
        for part in inner.split(',') {
            let name: String = part
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(own) = layer(&module) else {
            unknown.push(module);
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for target in crate_paths(line) {
                if target == module || target == "Config" || target == "Proxy" {
                    continue;
                }
                match layer(&target) {
                    Some(l) if l < own => {}
                    _ => upward
                        .entry(format!("{module} -> {target}"))
                        .or_default()
                        .push(format!(
                            "{}:{}",
                            file.strip_prefix(&src).unwrap().display(),
                            n + 1
                        )),
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules without a layer in LAYERS: {unknown:?}"
    );
    assert!(
        upward.is_empty(),
        "imports that do not run down the layers: {upward:#?}"
    );
}

#[test]
fn the_checker_sees_upward_imports() {
    assert_eq!(crate_paths("use crate::server::Shared;"), ["server"]);
    assert_eq!(
        crate_paths("use crate::{errors, protocol::Reply};"),
        ["errors", "protocol"]
    );
    assert!(crate_paths("// see crate::server").is_empty());
    assert!(layer("redlock").unwrap() < layer("command").unwrap());
}
