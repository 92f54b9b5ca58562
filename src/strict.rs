//! When a test may skip. A check whose program (or root) is missing skips loudly on a
//! developer's machine and fails under CI, so a CI run cannot pass by skipping. One
//! definition, read by the unit tests (`#[cfg(test)] mod strict` in `main.rs`) and by the
//! integration harness (`tests/it/harness.rs` includes this file by path).

use std::ffi::OsStr;

/// True under CI: `CI` set to anything but empty, `false` or `0`. CI services set
/// `CI=true`, some `CI=1`; `.ci/run` sets it explicitly.
pub fn in_ci() -> bool {
    strict(std::env::var_os("CI").as_deref())
}

/// Whether a value of `CI` (None: unset) makes skips failures.
fn strict(value: Option<&OsStr>) -> bool {
    let Some(value) = value else { return false };
    let value = value.to_string_lossy();
    !matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "" | "false" | "0"
    )
}

/// Reports a skipped check; under CI a skip is a failure naming `why`.
pub fn skip(why: &str) {
    if in_ci() {
        panic!("cannot skip under CI: {why}");
    }
    eprintln!("\n!!!! skipping: {why} !!!!\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_ci_value_but_empty_false_or_0_is_strict() {
        for v in ["true", "1", "yes", "TRUE", "on", "gitlab"] {
            assert!(strict(Some(OsStr::new(v))), "CI={v}");
        }
        for v in ["", "false", "False", "0", " 0 "] {
            assert!(!strict(Some(OsStr::new(v))), "CI={v:?}");
        }
        assert!(!strict(None));
    }
}
