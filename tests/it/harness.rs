//! Shared test machinery: the binary under test, probes for external programs, and running
//! commands with failures that show what went wrong.

#![allow(dead_code)] // each test module uses a different part

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The pausebake binary cargo built for these tests.
pub const PAUSEBAKE: &str = env!("CARGO_BIN_EXE_pausebake");

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The machine-wide cache the setup scripts fill (containerd packages, a Debian root):
/// `$PAUSEBAKE_CACHE`, else `$XDG_CACHE_HOME/pausebake`, else `~/.cache/pausebake`. Kept
/// outside the checkout so a fresh clone (as CI makes) reuses it.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PAUSEBAKE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    base.join("pausebake")
}

/// True under CI, where a missing program is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether `program` is on PATH (memoised). When it is not, says so loudly; under
/// `CI=true` that is a test failure, so CI cannot pass by skipping.
pub fn have(program: &str) -> bool {
    static SEEN: Mutex<Option<HashMap<String, bool>>> = Mutex::new(None);
    let found = *SEEN
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(program.to_string())
        .or_insert_with(|| which(program).is_some());
    if !found {
        skip(&format!("{program} not found"));
    }
    found
}

/// Whether the tests run as root (containerd, unshare and chroot need it).
pub fn is_root() -> bool {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("running id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Reports a skipped check; under CI a skip is a failure.
pub fn skip(why: &str) {
    if in_ci() {
        panic!("cannot skip under CI=true: {why}");
    }
    eprintln!("\n!!!! skipping: {why} !!!!\n");
}

/// The full path of `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A `Command` for the binary under test.
pub fn pausebake() -> Command {
    Command::new(PAUSEBAKE)
}

/// `strace` running pausebake so that it is SIGKILLed just before its `n`th call of
/// `syscall` (strace's fault injection: the code under test carries no hook). Add
/// pausebake's arguments.
pub fn pausebake_killed_before(syscall: &str, n: u32) -> Command {
    let mut cmd = Command::new("strace");
    // strace injects only into the calls it traces.
    cmd.args(["-f", "-o", "/dev/null", "-e"])
        .arg(format!("trace={syscall}"))
        .arg("-e")
        .arg(format!("inject={syscall}:signal=KILL:when={n}"))
        .arg(PAUSEBAKE);
    cmd
}

/// Runs `cmd`, panicking with its command line, status, stdout and stderr unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run_any(cmd);
    if !out.status.success() {
        panic!("{}", describe(cmd, &out));
    }
    out
}

/// Runs `cmd` and returns its output whatever the exit status.
pub fn run_any(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {:?}: {e}", cmd))
}

/// Command line, status and both streams, for assertion messages.
pub fn describe(cmd: &Command, out: &Output) -> String {
    format!(
        "{:?}\n--- status: {}\n--- stdout:\n{}\n--- stderr:\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// stdout as a string.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as a string.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pausebake-test-")
        .tempdir()
        .expect("creating a temporary directory")
}

/// Runs `skopeo ARGS`; panics with its output unless it succeeds.
pub fn skopeo(args: &[&str]) -> Output {
    run_ok(Command::new("skopeo").args(args))
}

/// The host's architecture in pausebake's (GOARCH) spelling.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => panic!("tests run on an architecture pausebake does not know: {other}"),
    }
}
