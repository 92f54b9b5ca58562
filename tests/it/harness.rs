//! Shared test machinery: the binary under test, probes for external programs, and running
//! commands with failures that show what went wrong.

#![allow(dead_code)] // each test module uses a different part

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Condvar, Mutex};
use std::thread::ThreadId;

/// The pausebake binary cargo built for these tests.
pub const PAUSEBAKE: &str = env!("CARGO_BIN_EXE_pausebake");

/// The bound for a refusal that must not wait (a locked meta.db): waiting for the lock would
/// take forever, so a generous bound proves it, and a loaded machine running the suite in
/// parallel cannot fail it. Speed itself is measured in `make bench`, not here.
pub const NO_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

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

// `in_ci` and `skip`: one definition for the unit and the integration tests.
#[path = "../../src/strict.rs"]
mod strict;
#[allow(unused_imports)] // in_ci: for tests that decide more than a skip
pub use strict::{in_ci, skip};

/// Whether `program` is on PATH (memoised). When it is not, says so loudly; under
/// CI that is a test failure, so CI cannot pass by skipping.
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

/// Held while a test runs containerd: one such test at a time across every module. Each
/// starts daemons with shims and pause processes, and on the small machines that run the
/// suite, concurrent starts from other modules made start-up and CRI deadlines flaky.
/// [`crate::containerd::Containerd::start`] takes it for as long as the daemon runs; a test
/// that starts several daemons one after another holds it for its whole length
/// (`let _lock = containerd_lock();`). Re-entrant within one thread, so both may hold it.
pub struct ContainerdLock(());

/// The thread holding [`ContainerdLock`]s and how many.
struct Holder {
    thread: Option<ThreadId>,
    depth: usize,
}

static HOLDER: Mutex<Holder> = Mutex::new(Holder {
    thread: None,
    depth: 0,
});
static RELEASED: Condvar = Condvar::new();

/// Waits until no other test thread runs containerd; see [`ContainerdLock`].
pub fn containerd_lock() -> ContainerdLock {
    let me = std::thread::current().id();
    // A test that panicked while holding it poisons nothing we rely on.
    let mut h = HOLDER.lock().unwrap_or_else(|e| e.into_inner());
    while h.thread.is_some_and(|t| t != me) {
        h = RELEASED.wait(h).unwrap_or_else(|e| e.into_inner());
    }
    h.thread = Some(me);
    h.depth += 1;
    ContainerdLock(())
}

impl Drop for ContainerdLock {
    fn drop(&mut self) {
        let mut h = HOLDER.lock().unwrap_or_else(|e| e.into_inner());
        h.depth -= 1;
        if h.depth == 0 {
            h.thread = None;
            RELEASED.notify_all();
        }
    }
}

/// Whether the tests run as root (containerd, unshare and chroot need it).
pub fn is_root() -> bool {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("running id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
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

/// The harness's skip path inside a real test: `image::skopeo_accepts_the_archives`, run
/// alone in a child of this test binary with a PATH that lacks skopeo, fails when `CI` is
/// strict and skips loudly (passing) when it is not.
#[test]
fn a_missing_program_fails_the_run_under_ci() {
    let empty = tempdir();
    for (ci, strict) in [
        (Some("true"), true),
        (Some("1"), true),
        (Some("false"), false),
        (Some("0"), false),
        (None, false),
    ] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "image::skopeo_accepts_the_archives",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("PATH", empty.path())
        .env_remove("CI");
        if let Some(v) = ci {
            cmd.env("CI", v);
        }
        let out = run_any(&mut cmd);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        let what = format!("CI={ci:?}\n{}", describe(&cmd, &out));
        assert!(all.contains("running 1 test"), "{what}");
        if strict {
            assert!(!out.status.success(), "{what}");
            assert!(
                all.contains("cannot skip under CI: skopeo not found"),
                "{what}"
            );
            assert!(all.contains("1 failed"), "{what}");
        } else {
            assert!(out.status.success(), "{what}");
            assert!(all.contains("skipping: skopeo not found"), "{what}");
            assert!(all.contains("1 passed"), "{what}");
        }
    }
}

/// `tests/setup.sh` and `tests/fetch-containerd.sh` on a machine without apt (a PATH holding
/// only the shell tools they use): under CI each fails naming the packages it cannot
/// install; otherwise each says so and goes on.
#[test]
fn setup_under_ci_fails_naming_what_it_cannot_install() {
    let bin = tempdir();
    for tool in ["bash", "id", "tr", "grep", "dirname", "cat", "printf"] {
        let real = which(tool).unwrap_or_else(|| panic!("{tool} not on PATH"));
        std::os::unix::fs::symlink(real, bin.path().join(tool)).unwrap();
    }
    let run = |script: &str, ci: &str| {
        let mut cmd = Command::new(bin.path().join("bash"));
        cmd.arg(repo().join("tests").join(script))
            .env("PATH", bin.path())
            .env("CI", ci)
            // Nothing may be fetched into the shared cache.
            .env("PAUSEBAKE_CACHE", bin.path().join("cache"));
        let out = run_any(&mut cmd);
        let text = describe(&cmd, &out);
        (out.status.success(), stderr(&out), text)
    };
    let (ok, err, text) = run("fetch-containerd.sh", "1");
    assert!(!ok, "{text}");
    assert!(err.contains("apt-get not found (package apt)"), "{text}");
    let (ok, err, text) = run("fetch-containerd.sh", "false");
    assert!(ok, "{text}");
    assert!(err.contains("apt-get not found (package apt)"), "{text}");
    let (ok, err, text) = run("setup.sh", "true");
    assert!(!ok, "{text}");
    assert!(
        err.contains("under CI every test must run")
            && err.contains("skopeo umoci packer debootstrap"),
        "{text}"
    );
}
