//! Fuzzes `archive::read`, the reader `import` runs on archives from anywhere: any bytes,
//! read as a file (plain tar, or gzip when they start with its magic) and again wrapped in
//! valid gzip, must give `Ok` or `Err`, never a panic, an abort or unbounded memory.

#![no_main]
// The modules are the main crate's; most of their items are unused here.
#![allow(dead_code, unused_imports)]

#[path = "../../src/archive.rs"]
mod archive;
#[path = "../../src/cli.rs"]
mod cli;
#[path = "../../src/exec.rs"]
mod exec;
#[path = "../../src/image.rs"]
mod image;
#[path = "../../src/pause.rs"]
mod pause;
#[path = "../../src/platform.rs"]
mod platform;

use std::io::Write;
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

fn read(name: &str, bytes: &[u8]) {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("writing the fuzz input");
    let _ = archive::read(&path);
}

fuzz_target!(|data: &[u8]| {
    read("input.tar", data);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip into memory");
    read("input.tar.gz", &gz.finish().expect("gzip into memory"));
});
