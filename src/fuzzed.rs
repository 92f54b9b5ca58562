//! Regression inputs for the two readers that take hostile bytes: every file under
//! `fuzz/regressions/<target>/` (the fuzzers' seeds and every case they found) goes through
//! the reader again on each `cargo test`, in every variant the fuzz target reads it
//! ([`crate::fuzz_input`]: plain and gzip-wrapped archives; bolt files raw and with their
//! meta checksums recomputed). `fuzz/regressions/<target>.expect` says, for each input and
//! variant, what must come out: `ok`, or `err TEXT` where TEXT is part of the error chain. A
//! file's `ok-`/`err-` prefix repeats the outcome of its first (unaltered) variant. Nothing may
//! panic. The expectations live beside the directory, not in it, since `make fuzz` feeds the
//! directory to the fuzzer as a corpus.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::fuzz_input::{self, Variant};

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions")
}

/// The committed inputs of one fuzz target, sorted (`read_dir` order is unspecified).
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = regressions().join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("listing the regression directory").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
}

/// `fuzz/regressions/<target>.expect`: (file, variant) -> None for `ok`, Some(text) for
/// `err text`. Blank lines and `#` comments are skipped.
fn expectations(target: &str) -> BTreeMap<(String, String), Option<String>> {
    let path = regressions().join(format!("{target}.expect"));
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.splitn(4, ' ');
        let (Some(file), Some(variant), Some(outcome)) = (words.next(), words.next(), words.next())
        else {
            panic!("{}: not `FILE VARIANT ok|err TEXT`: {line}", path.display());
        };
        let want = match (outcome, words.next()) {
            ("ok", None) => None,
            ("err", Some(text)) => Some(text.to_string()),
            _ => panic!("{}: not `FILE VARIANT ok|err TEXT`: {line}", path.display()),
        };
        let key = (file.to_string(), variant.to_string());
        assert!(
            out.insert(key, want).is_none(),
            "{}: {file} {variant} twice",
            path.display()
        );
    }
    out
}

/// Reads every input of `target` in every variant and checks each outcome against the
/// expectations; on any difference, panics listing them all and every observed outcome in
/// the `.expect` format.
fn replay(
    target: &str,
    variants: fn(&[u8]) -> [Variant; 2],
    read: impl Fn(&[u8]) -> anyhow::Result<()>,
) {
    let mut expected = expectations(target);
    let mut problems = Vec::new();
    let mut observed = String::new();
    for path in inputs(target) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = fs::read(&path).unwrap();
        for (i, (variant, input)) in variants(&bytes).into_iter().enumerate() {
            let result = read(&input);
            match &result {
                Ok(()) => observed += &format!("{name} {variant} ok\n"),
                Err(e) => observed += &format!("{name} {variant} err {}\n", e.root_cause()),
            }
            if i == 0 {
                match (name.split('-').next(), &result) {
                    (Some("ok"), Ok(())) | (Some("err"), Err(_)) => {}
                    (Some("ok" | "err"), _) => {
                        problems.push(format!("{name}: its prefix is not what {variant} gives"))
                    }
                    _ => {
                        problems.push(format!("{name}: the name starts with neither ok- nor err-"))
                    }
                }
            }
            let key = (name.clone(), variant.to_string());
            match (expected.remove(&key), &result) {
                (None, _) => problems.push(format!("{name} {variant}: no expectation")),
                (Some(None), Ok(())) => {}
                (Some(Some(text)), Err(e)) if format!("{e:#}").contains(&text) => {}
                (Some(None), Err(e)) => {
                    problems.push(format!("{name} {variant}: expected ok, got: {e:#}"))
                }
                (Some(Some(text)), Err(e)) => problems.push(format!(
                    "{name} {variant}: expected an error containing {text:?}, got: {e:#}"
                )),
                (Some(Some(text)), Ok(())) => problems.push(format!(
                    "{name} {variant}: expected an error containing {text:?}, but it was read"
                )),
            }
        }
    }
    for (file, variant) in expected.keys() {
        problems.push(format!(
            "{file} {variant}: expected, but no such input or variant"
        ));
    }
    assert!(
        problems.is_empty(),
        "{target} regressions:\n{}\n\nobserved:\n{observed}",
        problems.join("\n")
    );
}

#[test]
fn archive_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input");
    replay("archive", fuzz_input::archive, |bytes| {
        fs::write(&file, bytes)?;
        crate::archive::read(&file).map(drop)
    });
}

#[test]
fn bolt_regressions() {
    replay("bolt", fuzz_input::bolt, |bytes| {
        crate::bolt::read_tree(bytes).map(drop)
    });
}
