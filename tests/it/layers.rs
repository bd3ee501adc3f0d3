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
    ("warnings", 1),
    // Client-visible error texts, and the configuration.
    ("errors", 2),
    ("config", 2),
    // Outbound connections.
    ("backend", 3),
    // The lock engine.
    ("redlock", 4),
    // Request classification and parsing.
    ("command", 5),
    // Users and their permissions.
    ("acl", 6),
    // The listener and the connections.
    ("server", 7),
    // Entry points.
    ("dev", 8),
    ("fuzzing", 8),
    ("lib", 8),
    ("main", 8),
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

/// A module's path from `src/` (`["server", "multiplex", "shared"]`; a
/// folder's `mod.rs` is the folder itself, `lib.rs` and `main.rs` the root).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its trailing unit tests
/// (`#[cfg(test)] mod tests`, last in every file by convention).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every path a file's code names from `crate`, `super` or `self`, as
/// segments; a group (`use super::{a, b::c}`) names each of its members.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            // Not the end of a longer name (`my_crate::`).
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut segs = vec![start.trim_end_matches("::").to_string()];
            let mut rest = &code[at + start.len()..];
            loop {
                if let Some(group) = rest.strip_prefix('{') {
                    let inner = group.split('}').next().unwrap_or("");
                    for member in inner.split(',') {
                        let mut path = segs.clone();
                        path.extend(
                            member
                                .trim()
                                .split("::")
                                .map(ident)
                                .take_while(|s| !s.is_empty())
                                .map(String::from),
                        );
                        out.push(path);
                    }
                    break;
                }
                let name = ident(rest);
                if name.is_empty() {
                    out.push(segs);
                    break;
                }
                segs.push(name.to_string());
                match rest[name.len()..].strip_prefix("::") {
                    Some(next) => rest = next,
                    None => {
                        out.push(segs);
                        break;
                    }
                }
            }
        }
    }
    out
}

/// The module a path names, from the module `at`: the longest prefix that is
/// a module of `modules`.
fn resolve(at: &[String], path: &[String], modules: &[Vec<String>]) -> Option<Vec<String>> {
    let (mut base, mut rest) = (at.to_vec(), path);
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().map(String::as_str) == Some("super") {
        base.pop();
        rest = &rest[1..];
    }
    (0..=rest.len()).rev().find_map(|n| {
        let mut candidate = base.clone();
        candidate.extend(rest[..n].iter().cloned());
        modules.contains(&candidate).then_some(candidate)
    })
}

/// Import circles, folder by folder: an import from module A to module B is
/// an edge between the two children of their closest common folder that hold
/// them (a module using its own folder's or an ancestor's items is no edge).
/// Returns each circle's members.
fn circles(files: &[(Vec<String>, String)]) -> Vec<Vec<String>> {
    let modules: Vec<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, std::collections::BTreeSet<Vec<String>>> = BTreeMap::new();
    for (a, text) in files {
        for path in paths_in(&code_of(text)) {
            let Some(b) = resolve(a, &path, &modules) else {
                continue;
            };
            let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            if common == a.len() || common == b.len() {
                continue;
            }
            edges
                .entry(a[..=common].to_vec())
                .or_default()
                .insert(b[..=common].to_vec());
        }
    }
    // Strongly connected components (Tarjan), each of more than one node.
    struct Walk<'a> {
        edges: &'a BTreeMap<Vec<String>, std::collections::BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, (usize, usize)>,
        stack: Vec<Vec<String>>,
        found: Vec<Vec<String>>,
    }
    fn visit(w: &mut Walk<'_>, v: &Vec<String>) {
        let n = w.index.len();
        w.index.insert(v.clone(), (n, n));
        w.stack.push(v.clone());
        for next in w.edges.get(v).into_iter().flatten() {
            let low = match w.index.get(next) {
                None => {
                    visit(w, next);
                    w.index[next].1
                }
                Some(&(i, _)) if w.stack.contains(next) => i,
                Some(_) => continue,
            };
            let entry = w.index.get_mut(v).unwrap();
            entry.1 = entry.1.min(low);
        }
        let (i, low) = w.index[v];
        if i == low {
            let at = w.stack.iter().position(|x| x == v).unwrap();
            let component: Vec<Vec<String>> = w.stack.drain(at..).collect();
            if component.len() > 1 {
                w.found
                    .extend([component.iter().map(|m| m.join("/")).collect()]);
            }
        }
    }
    let mut walk = Walk {
        edges: &edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            visit(&mut walk, v);
        }
    }
    walk.found
}

#[test]
fn no_folder_has_an_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<(Vec<String>, String)> = paths
        .iter()
        .map(|p| (module_path(&src, p), std::fs::read_to_string(p).unwrap()))
        .collect();
    let found = circles(&files);
    assert!(
        found.is_empty(),
        "modules that import each other, directly or around a circle (each folder should read top-down): {found:?}"
    );
}

#[test]
fn the_checker_sees_circles() {
    let file = |m: &str, text: &str| {
        let module = m.split('/').map(String::from).collect::<Vec<_>>();
        (module, text.to_string())
    };
    let modules = [
        file("a", "mod x; mod y;"),
        file("a/x", "use super::y::Y;"),
        file("a/y", "use crate::a::{x::X};"),
        file("b", "use crate::a::x::X; // crate::c"),
    ];
    assert_eq!(
        circles(&modules),
        [vec!["a/x".to_string(), "a/y".to_string()]]
    );
    // Children using their parent's items, and comments, are no edges.
    let fine = [
        file("a", "use self::x::X;"),
        file("a/x", "use super::Shared;"),
        file("c", "// use crate::a::x; \n fn f() {}"),
    ];
    assert!(circles(&fine).is_empty());
    // Folders in a circle through files deeper down.
    let deep = [
        file("s", ""),
        file("s/p", ""),
        file("s/p/q", "use crate::s::r::R;"),
        file("s/r", ""),
        file("s/r/t", "use crate::s::p::q::Q;"),
    ];
    assert_eq!(circles(&deep), [vec!["s/p".to_string(), "s/r".to_string()]]);
}
