//! The generated command table agrees with the redis-server the suite runs.

use crate::common::RedisServer;
use redlock_proxy::command::{CommandSpec, KEYS_PARSED, KeyArg, for_each_key, lookup};

fn int(v: &redis::Value) -> i64 {
    match v {
        redis::Value::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

fn name(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        other => panic!("not a name: {other:?}"),
    }
}

#[test]
fn table_matches_the_live_server() {
    let server = RedisServer::start();
    let redis::Value::Array(commands) = server.query(&["COMMAND"]) else {
        panic!("COMMAND is not an array")
    };
    let mut checked = 0;
    for c in &commands {
        let redis::Value::Array(fields) = c else {
            panic!("{c:?}")
        };
        let name = name(&fields[0]);
        let spec: &CommandSpec =
            lookup(&[name.as_str()][..]).unwrap_or_else(|| panic!("{name} missing from the table"));
        assert_eq!(spec.name, name);
        assert_eq!(spec.arity as i64, int(&fields[1]), "{name} arity");
        if let Some(redis::Value::Array(key_specs)) = fields.get(8) {
            assert_eq!(spec.key_specs.len(), key_specs.len(), "{name} key specs");
        }
        checked += 1;
    }
    assert!(checked > 200, "only {checked} commands");
}

/// Every command and subcommand the server knows, with its key specs' flags.
fn server_commands(server: &RedisServer) -> Vec<(String, bool)> {
    fn walk(out: &mut Vec<(String, bool)>, commands: &[redis::Value]) {
        for c in commands {
            let redis::Value::Array(fields) = c else {
                panic!("{c:?}")
            };
            let incomplete = match fields.get(8) {
                Some(redis::Value::Array(specs)) => specs.iter().any(|s| {
                    let text = format!("{s:?}").to_lowercase();
                    text.contains("incomplete") || text.contains("unknown")
                }),
                _ => false,
            };
            out.push((name(&fields[0]), incomplete));
            if let Some(redis::Value::Array(subs)) = fields.get(9) {
                walk(out, subs);
            }
        }
    }
    let redis::Value::Array(commands) = server.query(&["COMMAND"]) else {
        panic!("COMMAND is not an array")
    };
    let mut out = Vec::new();
    walk(&mut out, &commands);
    out
}

/// The table marks exactly the key specs the server calls incomplete, and
/// every command with one has a parser of its own (`command/getkeys.rs`).
#[test]
fn every_command_with_incomplete_key_specs_is_parsed() {
    let server = RedisServer::start();
    let mut incomplete = Vec::new();
    for (name, server_incomplete) in server_commands(&server) {
        let args: Vec<&str> = name.split('|').collect();
        let spec = lookup(&args[..]).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(spec.name, name);
        assert_eq!(!spec.keys_complete(), server_incomplete, "{name}");
        if server_incomplete {
            incomplete.push(name);
        }
    }
    incomplete.sort();
    assert_eq!(incomplete, KEYS_PARSED);
}

fn proxy_keys(args: &[&str]) -> Vec<String> {
    let spec = lookup(args).expect("known command");
    let mut keys = Vec::new();
    for_each_key(spec, args, |k| {
        if let KeyArg::Key(i) = k {
            keys.push(args[i].to_string());
        }
    });
    keys
}

/// The proxy finds the keys Redis's `COMMAND GETKEYS` finds, for the parsed
/// commands and every command whose keys move with its arguments.
#[test]
fn keys_agree_with_command_getkeys() {
    let server = RedisServer::start();
    let corpus: &[&[&str]] = &[
        &["SORT", "l"],
        &["SORT", "l", "STORE", "d"],
        &["sort", "l", "STORE", "a", "store", "b"],
        &[
            "SORT", "l", "BY", "w_*", "LIMIT", "0", "10", "GET", "#", "GET", "h_*->f", "DESC",
            "ALPHA", "STORE", "d",
        ],
        &["SORT", "l", "BY", "STORE", "GET", "STORE"],
        &["SORT_RO", "l", "BY", "w_*", "GET", "#"],
        &["MIGRATE", "h", "1", "k", "0", "5"],
        &[
            "MIGRATE", "h", "1", "k", "0", "5", "COPY", "REPLACE", "AUTH", "KEYS",
        ],
        &[
            "MIGRATE", "h", "1", "", "0", "5", "AUTH2", "u", "KEYS", "KEYS", "a", "KEYS",
        ],
        &["EVAL", "return 1", "2", "a", "b", "arg"],
        &["EVALSHA_RO", "abc", "1", "a"],
        &["FCALL", "f", "1", "a", "b"],
        &["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"],
        &["ZINTER", "2", "a", "b", "WITHSCORES"],
        &["ZDIFFSTORE", "d", "1", "a"],
        &["SINTERCARD", "2", "a", "b", "LIMIT", "1"],
        &["LMPOP", "2", "a", "b", "LEFT"],
        &["BLMPOP", "0", "1", "a", "RIGHT", "COUNT", "2"],
        &["BZMPOP", "0", "2", "a", "b", "MIN"],
        &[
            "XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "a", "b", "0", "0",
        ],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "STREAMS",
            "STREAMS",
            "s",
            "0",
            ">",
        ],
        &[
            "GEORADIUS",
            "g",
            "0",
            "0",
            "1",
            "km",
            "COUNT",
            "5",
            "STORE",
            "d",
        ],
        &["GEORADIUSBYMEMBER", "g", "m", "1", "km", "STOREDIST", "d"],
    ];
    for args in corpus {
        let mut q = vec!["COMMAND", "GETKEYS"];
        q.extend_from_slice(args);
        let redis::Value::Array(keys) = server.query(&q) else {
            panic!("{args:?}: no keys")
        };
        let mut redis: Vec<String> = keys.iter().map(name).collect();
        let mut ours = proxy_keys(args);
        // With KEYS, MIGRATE's empty key slot is a key spec of its own for
        // the proxy (it stays a key whatever follows), but not for the proc.
        if args[0] == "MIGRATE" && args[3].is_empty() {
            assert_eq!(ours.remove(0), "");
        }
        redis.sort();
        ours.sort();
        assert_eq!(ours, redis, "{args:?}");
    }
}

/// Where `sortGetKeys` and `SORT` itself disagree, the proxy follows `SORT`:
/// what it stores into is the key that matters.
#[test]
fn sort_store_keys_follow_the_command_not_the_proc() {
    let server = RedisServer::start();
    server.query(&["RPUSH", "l", "3", "1", "2"]);
    let args = ["SORT", "l", "STORE", "by", "STORE", "k"];
    assert_eq!(int(&server.query(&args)), 3);
    assert_eq!(int(&server.query(&["EXISTS", "k"])), 1);
    assert_eq!(int(&server.query(&["EXISTS", "by"])), 0);
    let mut getkeys = vec!["COMMAND", "GETKEYS"];
    getkeys.extend_from_slice(&args);
    let redis::Value::Array(keys) = server.query(&getkeys) else {
        panic!()
    };
    let keys: Vec<String> = keys.iter().map(name).collect();
    assert!(
        !keys.contains(&"k".to_string()),
        "the proc changed: {keys:?}"
    );
    assert_eq!(proxy_keys(&args), ["l", "k"]);
}

/// Every command's and subcommand's ACL categories and each key spec's
/// permission bits are the live server's (what the ACL checks read).
#[test]
fn acl_categories_and_key_permissions_match_the_live_server() {
    use redlock_proxy::command::{access, category};
    fn walk(commands: &[redis::Value], checked: &mut usize) {
        for c in commands {
            let redis::Value::Array(fields) = c else {
                panic!("{c:?}")
            };
            let full = name(&fields[0]);
            let args: Vec<&str> = full.split('|').collect();
            let spec = lookup(&args[..]).unwrap_or_else(|| panic!("{full} missing"));
            assert_eq!(spec.name, full);
            let redis::Value::Array(cats) = &fields[6] else {
                panic!("{full}: categories {:?}", fields[6])
            };
            let want = cats.iter().fold(0u32, |bits, c| {
                let c = name(c);
                bits | category::bit(c.trim_start_matches('@').as_bytes())
                    .unwrap_or_else(|| panic!("{full}: unknown category {c}"))
            });
            assert_eq!(spec.acl, want, "{full} categories");
            if let redis::Value::Array(key_specs) = &fields[8] {
                for (ks, got) in key_specs.iter().zip(spec.key_specs) {
                    let flags = format!("{ks:?}").to_lowercase();
                    let has = |f: &str| flags.contains(&format!("\"{f}\""));
                    let mut want = 0;
                    if has("access") {
                        want |= access::READ;
                    }
                    if has("insert") || has("delete") || has("update") {
                        want |= access::WRITE;
                    }
                    if has("not_key") {
                        want |= access::NOT_KEY;
                    }
                    if has("variable_flags") {
                        want |= access::VARIABLE;
                    }
                    assert_eq!(got.access, want, "{full} key spec {flags}");
                }
            }
            *checked += 1;
            if let Some(redis::Value::Array(subs)) = fields.get(9) {
                walk(subs, checked);
            }
        }
    }
    let server = RedisServer::start();
    let redis::Value::Array(commands) = server.query(&["COMMAND"]) else {
        panic!("COMMAND is not an array")
    };
    let mut checked = 0;
    walk(&commands, &mut checked);
    assert!(checked > 300, "only {checked} commands and subcommands");
}
