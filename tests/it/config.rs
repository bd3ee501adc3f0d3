//! The documented configuration file, and precedence across layers.

use redlock_proxy::Config;
use redlock_proxy::config::{ENV_PREFIX, Flags, env_names};

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/redlock-proxy.toml")
}

#[test]
fn the_documented_file_holds_the_defaults() {
    let from_file = Config::load(Some(&example()), std::iter::empty(), &Flags::default()).unwrap();
    assert_eq!(from_file.summary(), Config::default().summary());
}

#[test]
fn the_documented_file_names_every_option_and_its_variable() {
    let text = std::fs::read_to_string(example()).unwrap();
    for name in env_names() {
        assert!(
            text.contains(&format!("{ENV_PREFIX}{name}")),
            "{ENV_PREFIX}{name} is not documented"
        );
    }
}

#[test]
fn flags_beat_env_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:1001\"\nmax_clients = 5\n[redlock]\nnode_timeout = \"30ms\"\nmasters = [\"redis://127.0.0.1:1\"]\n",
    )
    .unwrap();
    let env = [
        (
            "REDLOCK_PROXY_LISTEN".to_string(),
            "127.0.0.1:1002".to_string(),
        ),
        ("REDLOCK_PROXY_NODE_TIMEOUT".to_string(), "20".to_string()),
    ];
    let flags = Flags {
        listen: Some("127.0.0.1:1003".into()),
        ..Flags::default()
    };
    let c = Config::load(Some(&file), env.clone(), &flags).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:1003");
    assert_eq!(c.server.max_clients, 5);
    assert_eq!(c.redlock.node_timeout, std::time::Duration::from_millis(20));
    assert_eq!(c.redlock.masters.len(), 1);
    let c = Config::load(Some(&file), env, &Flags::default()).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:1002");
    let c = Config::load(Some(&file), std::iter::empty(), &Flags::default()).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:1001");
    // --lock-pattern flags replace the list.
    let flags = Flags {
        lock_patterns: vec!["mutex:*".into(), "*:lock".into()],
        ..Flags::default()
    };
    let c = Config::load(Some(&file), std::iter::empty(), &flags).unwrap();
    assert_eq!(c.redlock.lock_patterns, ["mutex:*", "*:lock"]);
}
