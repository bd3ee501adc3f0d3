//! A fast, deterministic replay of the fuzz corpus (`fuzz/corpus/requests`)
//! through the same entry point the fuzzer drives, split at several points.

#[test]
fn the_fuzz_corpus_replays_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/requests");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        for split in [0, 1, data.len() / 3, data.len() / 2, data.len()] {
            redlock_proxy::fuzzing::requests(&data, split);
        }
        n += 1;
    }
    assert!(n >= 100, "corpus has {n} inputs");
}
