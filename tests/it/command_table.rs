//! The generated command table agrees with the redis-server the suite runs.

use crate::common::RedisServer;
use redlock_proxy::command::{CommandSpec, lookup};

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
