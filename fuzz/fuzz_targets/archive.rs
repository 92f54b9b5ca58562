//! Fuzzes `archive::read`, the reader `import` runs on archives from anywhere: any bytes,
//! read as a file (plain tar, or gzip when they start with its magic) and again wrapped in
//! valid gzip (`fuzz_input::archive`), must give `Ok` or `Err`, never a panic, an abort or
//! unbounded memory.

#![no_main]
// The modules are the main crate's; most of their items are unused here.
#![allow(dead_code, unused_imports)]

#[path = "../../src/archive.rs"]
mod archive;
// fuzz_input's bolt variants need it.
#[path = "../../src/bolt/mod.rs"]
mod bolt;
#[path = "../../src/cli.rs"]
mod cli;
// cli parses containerd versions and lists the known releases in its help; the table is
// pure, so only it is taken from the containerd module.
#[path = "../../src/containerd"]
mod containerd {
    pub mod versions;
}
#[path = "../../src/digest.rs"]
mod digest;
#[path = "../../src/exec.rs"]
mod exec;
#[path = "../../src/fuzz_input.rs"]
mod fuzz_input;
#[path = "../../src/image.rs"]
mod image;
// pause prints its --json through output
#[path = "../../src/output.rs"]
mod output;
#[path = "../../src/pause.rs"]
mod pause;
#[path = "../../src/platform.rs"]
mod platform;
#[path = "../../src/reference.rs"]
mod reference;

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One scratch directory per fuzzing process: the reader takes a path.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("pausebake-fuzz-")
            .tempdir()
            .expect("creating the fuzz scratch directory");
        // Kept for the life of the process; libFuzzer exits without running destructors.
        dir.keep()
    })
}

fuzz_target!(|data: &[u8]| {
    // The variants the regression replay (src/fuzzed.rs) reads a committed case in.
    for (_, bytes) in fuzz_input::archive(data) {
        let path = scratch().join("input");
        std::fs::write(&path, bytes).expect("writing the fuzz input");
        let _ = archive::read(&path);
    }
});
