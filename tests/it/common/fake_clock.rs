//! A wall clock the test sets, for a redis-server: the `LD_PRELOAD` shim in
//! `fake_clock.c` (built here with the system C compiler, which Rust's linker
//! needs anyway) reads the offset and rate from a mapped control file.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The shim, built once per test run.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/common/fake_clock.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libfake_clock.so");
        let status = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("run cc");
        assert!(status.success(), "building the fake clock shim failed");
        out
    })
}

fn real_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// One server's fake wall clock: real time until the test moves it.
pub struct FakeClock {
    _dir: tempfile::TempDir,
    file: PathBuf,
    offset_ns: std::sync::Mutex<i64>,
}

impl FakeClock {
    pub fn new() -> FakeClock {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clock");
        let mut init = Vec::new();
        for v in [0i64, 1_000_000, 0] {
            init.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(&file, init).unwrap();
        shim();
        FakeClock {
            _dir: dir,
            file,
            offset_ns: std::sync::Mutex::new(0),
        }
    }

    /// The environment a process needs to run on this clock.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), shim().display().to_string()),
            ("FAKE_CLOCK_FILE".into(), self.file.display().to_string()),
        ]
    }

    /// Writes field `i` in place (the file is mapped: never truncated).
    fn set(&self, i: u64, v: i64) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.file)
            .unwrap();
        f.write_all_at(&v.to_le_bytes(), i * 8).unwrap();
    }

    /// Steps the clock forward by `by` (an NTP step, a VM resumed).
    pub fn step_forward(&self, by: Duration) {
        let mut off = self.offset_ns.lock().unwrap();
        *off += by.as_nanos() as i64;
        self.set(0, *off);
    }

    /// Steps the clock back by `by`.
    pub fn step_back(&self, by: Duration) {
        let mut off = self.offset_ns.lock().unwrap();
        *off -= by.as_nanos() as i64;
        self.set(0, *off);
    }

    /// From now on the clock runs `factor` times as fast as real time.
    pub fn run_at(&self, factor: f64) {
        self.set(2, real_ns());
        self.set(1, (factor * 1e6) as i64);
    }
}
