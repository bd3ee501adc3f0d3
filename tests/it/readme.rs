//! The README's promises that can be checked mechanically.

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = read("README.md");
    let quick = readme
        .split("## Quick start")
        .nth(1)
        .unwrap()
        .split("##")
        .next()
        .unwrap();
    let commands: Vec<&str> = quick
        .split("```sh")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        commands.len(),
        2,
        "the Quick start has exactly two commands"
    );
    let test_command = commands[1].split('#').next().unwrap().trim();
    assert_eq!(test_command, "./scripts/test.sh");
    assert!(read(".ci/run").contains(&format!("exec {test_command}")));
    assert!(commands[0].trim_start().starts_with("./scripts/dev.sh"));
}

#[test]
fn the_cli_contract_is_documented() {
    let readme = read("docs/src/running.md");
    for flag in [
        "--config FILE",
        "--listen ADDR",
        "--passthrough URL",
        "--master URL",
        "--master-cluster URL",
        "--lock-pattern GLOB",
        "--metrics-listen ADDR",
        "--log-format text|json",
        "dev [--masters N] [--cluster-masters] [--listen ADDR]",
    ] {
        assert!(readme.contains(flag), "{flag}");
    }
}
