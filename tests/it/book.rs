//! The README and the book under `docs/` (mdBook): every internal link
//! resolves (files and headings), every page is in the table of contents,
//! and the examples are true — each redis-cli session replays against a
//! proxy with `redis-cli`, each Python example runs with redis-py, each
//! configuration and each command line of the binary passes `check-config`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::clients::{client_env, root};
use crate::common::*;

/// The README and every page of the book, with their text.
fn documents() -> Vec<(PathBuf, String)> {
    let mut files = vec![root().join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs/src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// A heading's anchor, as mdBook and GitHub make it.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect::<String>()
        .replace('_', "")
}

/// Text outside fenced code blocks.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| slug(h.trim_start_matches('#')))
        .collect()
}

/// Every `[label](target)` (and image) of a document's prose.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(i) = rest.find("](") {
        let tail = &rest[i + 2..];
        let Some(end) = tail.find(')') else { break };
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_internal_link_resolves() {
    let mut broken = Vec::new();
    for (path, text) in documents() {
        let dir = path.parent().unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", path.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    broken.push(format!("{}: {link} (no such heading)", path.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn every_page_is_in_the_table_of_contents() {
    let summary = std::fs::read_to_string(root().join("docs/src/SUMMARY.md")).unwrap();
    let listed: BTreeSet<String> = links(&summary).into_iter().collect();
    for (path, _) in documents().into_iter().skip(1) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name != "SUMMARY.md" {
            assert!(listed.contains(&name), "{name} is not in SUMMARY.md");
        }
    }
    // The README stays short: what the project is, how to start, where to read on.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.len() <= 12 * 1024,
        "README.md is {} bytes",
        readme.len()
    );
}

/// The fenced blocks of one language in a document.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        let t = line.trim_start();
        match &mut current {
            None if t == format!("```{lang}") => current = Some(Vec::new()),
            Some(_) if t.starts_with("```") => out.extend(current.take()),
            Some(lines) => lines.push(line),
            None => {}
        }
    }
    out
}

/// Splits a command line as redis-cli does: spaces separate, quotes group.
fn split_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => {
                if any {
                    args.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        args.push(cur);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redis_cli_session_replays() {
    let mut sessions = 0;
    for (path, text) in documents() {
        for block in blocks(&text, "console") {
            let mut steps: Vec<(String, Vec<String>)> = Vec::new();
            for line in block {
                match line.split_once("> ") {
                    Some((prompt, cmd)) if prompt.starts_with("127.0.0.1:") => {
                        steps.push((cmd.to_string(), Vec::new()))
                    }
                    _ => {
                        if let Some(step) = steps.last_mut() {
                            step.1.push(line.to_string());
                        }
                    }
                }
            }
            if steps.is_empty() {
                continue;
            }
            sessions += 1;
            let h = Harness::start(3).await;
            for (cmd, want) in steps {
                let args = split_args(&cmd);
                let out = Command::new("redis-cli")
                    .args(["--no-raw", "-p", &h.addr.port().to_string()])
                    .args(&args)
                    .stdin(Stdio::null())
                    .output()
                    .expect("redis-cli");
                let got = String::from_utf8_lossy(&out.stdout);
                let got: Vec<&str> = got.lines().collect();
                let want: Vec<&str> = want.iter().map(String::as_str).collect();
                // A TTL read back is whatever time is left.
                let ttl = matches!(args[0].to_uppercase().as_str(), "PTTL" | "TTL");
                let same = if ttl {
                    got.len() == 1 && got[0].starts_with("(integer) ")
                } else {
                    got == want
                };
                assert!(
                    same,
                    "{}: `{cmd}` answered {got:?}, the page says {want:?}",
                    path.display()
                );
            }
        }
    }
    assert!(sessions >= 2, "{sessions} sessions found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_python_example_runs() {
    let python = client_env("py-redis8").join("bin/python");
    let mut ran = 0;
    for (path, text) in documents() {
        for block in blocks(&text, "python") {
            let h = Harness::start(3).await;
            let code = block
                .join("\n")
                .replace("port=7379", &format!("port={}", h.addr.port()));
            let out = tokio::process::Command::new(&python)
                .args(["-c", &code])
                .stdin(Stdio::null())
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 1);
}

const BIN: &str = env!("CARGO_BIN_EXE_redlock-proxy");

/// `redlock-proxy <args> check-config`: the configuration the flags (and
/// `env`) make is valid.
fn check_config(args: &[String], env: &[(&str, &str)], what: &Path) {
    let out = Command::new(BIN)
        .args(args)
        .arg("check-config")
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {args:?}: {}",
        what.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_configuration_and_command_line_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (mut configs, mut commands) = (0, 0);
    for (path, text) in documents() {
        for block in blocks(&text, "toml") {
            let file = dir.path().join(format!("example{configs}.toml"));
            std::fs::write(&file, block.join("\n")).unwrap();
            let args = ["--config".to_string(), file.display().to_string()];
            let masters = [("REDLOCK_PROXY_MASTERS", "redis://127.0.0.1:1")];
            check_config(&args, &masters, &path);
            configs += 1;
        }
        for block in blocks(&text, "sh") {
            // Continuation lines joined; a command of the binary that names
            // no files it would need (certificates) is checked.
            let joined = block.join("\n").replace("\\\n", " ");
            for line in joined.lines() {
                let line = line.split(" #").next().unwrap_or("").trim();
                let Some(rest) = line
                    .strip_prefix("target/release/redlock-proxy ")
                    .or_else(|| line.strip_prefix("redlock-proxy "))
                else {
                    continue;
                };
                if rest.contains(".pem") || rest.contains("...") {
                    continue;
                }
                check_config(&split_args(rest), &[], &path);
                commands += 1;
            }
        }
    }
    assert!(
        configs >= 1 && commands >= 1,
        "{configs} configs, {commands} commands"
    );
}
