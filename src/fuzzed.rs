//! Regression inputs for the two readers that take hostile bytes: every file under
//! `fuzz/regressions/<target>/` (the fuzzers' seeds and every case they found) goes through
//! the reader again on each `cargo test`. The file name says the expected outcome: `ok-*`
//! must read, `err-*` must be refused with an error; neither may panic.

use std::fs;
use std::path::{Path, PathBuf};

/// The committed inputs of one fuzz target, sorted (`read_dir` order is unspecified).
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("listing the regression directory").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
}

/// Checks `result` against the `ok-`/`err-` prefix of `path`'s file name.
fn expect<T>(path: &Path, result: anyhow::Result<T>) {
    let name = path.file_name().unwrap().to_string_lossy();
    match (name.split('-').next(), result) {
        (Some("ok"), Ok(_)) | (Some("err"), Err(_)) => {}
        (Some("ok"), Err(e)) => panic!("{name}: expected Ok, got: {e:#}"),
        (Some("err"), Ok(_)) => panic!("{name}: expected an error, but it was read"),
        _ => panic!("{name}: a regression input's name starts with ok- or err-"),
    }
}

#[test]
fn archive_regressions() {
    for path in inputs("archive") {
        expect(&path, crate::archive::read(&path));
    }
}

#[test]
fn bolt_regressions() {
    for path in inputs("bolt") {
        let bytes = fs::read(&path).unwrap();
        expect(&path, crate::bolt::read_tree(&bytes));
    }
}
