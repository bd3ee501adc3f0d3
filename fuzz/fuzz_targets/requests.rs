//! Request framing and classification on arbitrary bytes (RESP2, RESP3, inline).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where the stream is split in two.
    let (split, data) = match data.split_first() {
        Some((s, rest)) => (*s as usize * rest.len() / 256, rest),
        None => (0, data),
    };
    redlock_proxy::fuzzing::requests(data, split);
});
