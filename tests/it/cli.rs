//! The command-line contract: help, version, usage errors and their exit codes.

use crate::harness::*;

const SUBCOMMANDS: [&str; 7] = [
    "build",
    "image",
    "import",
    "configure",
    "verify",
    "bake",
    "version",
];

#[test]
fn every_subcommand_has_help() {
    for sub in SUBCOMMANDS {
        let out = run_ok(pausebake().args([sub, "--help"]));
        assert!(stdout(&out).contains("Usage: pausebake"), "{sub}");
    }
}

#[test]
fn help_fits_in_80_columns() {
    for sub in std::iter::once("").chain(SUBCOMMANDS) {
        for flag in ["-h", "--help"] {
            let mut cmd = pausebake();
            if !sub.is_empty() {
                cmd.arg(sub);
            }
            // A wide terminal must not widen the help: Packer logs and man pages are not.
            let out = run_ok(cmd.arg(flag).env("COLUMNS", "200"));
            for line in stdout(&out).lines() {
                assert!(line.chars().count() <= 80, "{sub} {flag}: {line:?}");
            }
        }
    }
}

#[test]
fn unknown_arch_is_a_usage_error() {
    let out = run_any(pausebake().args(["build", "--arch", "mips"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "unknown architecture \"mips\"; expected one of: amd64, arm64, arm, ppc64le, s390x, riscv64"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_source_date_epoch_is_a_usage_error() {
    let out = run_any(
        pausebake()
            .args(["image", "--output", "/nonexistent/x.tar"])
            .env("SOURCE_DATE_EPOCH", "yesterday"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SOURCE_DATE_EPOCH"),
        "{}",
        stderr(&out)
    );
}
