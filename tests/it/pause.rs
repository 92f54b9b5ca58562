//! `pausebake build` with the real compilers, and the behaviour suite of upstream pause
//! (docs/pause-and-anchors.md §1) run on every architecture's binary: natively for the host,
//! under qemu-user for the rest. The architectures are checked in parallel threads.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;

const ARCHES: [&str; 6] = ["amd64", "arm64", "arm", "ppc64le", "s390x", "riscv64"];
const ALL: &str = "amd64,arm64,arm,ppc64le,s390x,riscv64";
/// Compiled into the binaries under test, so `-v` must print exactly this.
const VERSION: &str = "v3.10-it";

const WARNING: &str = "Warning: pause should be the first process\n";
const TERMINATED: &str = "Shutting down, got signal: Terminated\n";
const INTERRUPT: &str = "Shutting down, got signal: Interrupt\n";

/// How long any one pause run may take before the test calls it hung.
const TIMEOUT: Duration = Duration::from_secs(20);

pub fn qemu(arch: &str) -> String {
    let name = match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "ppc64le" => "ppc64le",
        other => other,
    };
    format!("qemu-{name}-static")
}

/// The compilers `build --arch ALL` uses here: clang with ld.lld, and GNU ld for s390x.
fn have_compilers() -> bool {
    have("clang") && have("ld.lld") && have("s390x-linux-gnu-ld")
}

/// The programs that run the foreign binaries.
fn have_emulators() -> bool {
    ARCHES
        .iter()
        .filter(|a| **a != host_arch())
        .all(|a| have(&qemu(a)))
}

/// The six binaries, built once for every test here into cargo's scratch directory.
/// `None` (after a loud skip) when a compiler or an emulator is missing.
fn binaries() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR
        .get_or_init(|| {
            if !have_compilers() || !have_emulators() {
                return None;
            }
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pause-it");
            let _ = fs::remove_dir_all(&dir);
            run_ok(
                pausebake()
                    .args(["build", "--arch", ALL, "--pause-version", VERSION, "--out"])
                    .arg(&dir),
            );
            Some(dir)
        })
        .as_deref();
    // Memoised: every test that needs them reports the skip, not only the first.
    if dir.is_none() {
        skip("the pause binaries could not be built (compilers or emulators missing)");
    }
    dir
}

/// A command that runs `arch`'s pause with `args`: directly on the host, else under qemu.
fn pause_cmd(dir: &Path, arch: &str, args: &[&str]) -> Command {
    let bin = dir.join(format!("pause-linux-{arch}"));
    let mut cmd = if arch == host_arch() {
        Command::new(bin)
    } else {
        let mut c = Command::new(qemu(arch));
        c.arg(bin);
        c
    };
    cmd.args(args);
    cmd
}

/// Runs `check(arch)` for every architecture in its own thread and reports every failure,
/// not just the first.
fn each_arch(check: impl Fn(&str) + Sync) {
    in_parallel(&ARCHES, check);
}

/// Runs `check(arch)` for each of `arches` in its own thread and reports every failure.
fn in_parallel(arches: &[&str], check: impl Fn(&str) + Sync) {
    let failures: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = arches
            .iter()
            .map(|arch| (arch, s.spawn(|| check(arch))))
            .collect();
        handles
            .into_iter()
            .filter_map(|(arch, h)| {
                h.join().err().map(|e| {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("[{arch}] {msg}")
                })
            })
            .collect()
    });
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// A started process, killed and waited for if the test fails before `finish`, so a failed
/// check leaves no pause running.
struct Started {
    child: Option<Child>,
    /// pause's pid when `child` is the unshare around it: killing PID 1 ends the namespace.
    inner: Option<u32>,
}

fn spawn(cmd: &mut Command) -> Started {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    Started {
        child: Some(child),
        inner: None,
    }
}

impl Started {
    fn id(&self) -> u32 {
        self.child.as_ref().expect("not finished yet").id()
    }

    /// Waits for the process to exit (giving up after TIMEOUT) and collects its output.
    fn finish(mut self, what: &str) -> Output {
        let start = Instant::now();
        let child = self.child.as_mut().expect("finished once");
        while child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < TIMEOUT,
                "{what}: still running after {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
        // It has exited: this only collects the status and both pipes.
        let child = self.child.take().expect("finished once");
        child.wait_with_output().unwrap()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = self.inner {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", &pid.to_string()])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One line of /proc/<pid>/stat: (comm, state, ppid), or None once the process is gone.
fn proc_stat(pid: u32) -> Option<(String, char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may itself contain ") ", so split at the last one.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 2..].split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

/// Every process whose parent is `parent`: pid -> (comm, state).
fn children(parent: u32) -> BTreeMap<u32, (String, char)> {
    let mut found = BTreeMap::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some((comm, state, ppid)) = proc_stat(pid) {
            if ppid == parent {
                found.insert(pid, (comm, state));
            }
        }
    }
    found
}

/// Polls `cond` until it holds, panicking with `what` after TIMEOUT.
fn wait_for<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `pid`, running `comm_prefix`, sleeps: after its three sigactions the only
/// blocking call pause makes is the sleep, so a sleeping pause has its handlers installed.
/// Checked twice, a little apart, because a process can block briefly while starting.
fn wait_until_sleeping(pid: u32, comm_prefix: &str) {
    for _ in 0..2 {
        wait_for(&format!("{comm_prefix} (pid {pid}) to sleep"), || {
            proc_stat(pid).and_then(|(comm, state, _)| {
                (comm.starts_with(comm_prefix) && state == 'S').then_some(())
            })
        });
        thread::sleep(Duration::from_millis(50));
    }
}

/// The name the kernel gives the process running `arch`'s pause (comm is cut at 15 bytes).
fn comm(arch: &str) -> String {
    let full = if arch == host_arch() {
        format!("pause-linux-{arch}")
    } else {
        qemu(arch)
    };
    full.chars().take(15).collect()
}

fn kill(pid: u32, signal: &str) {
    run_ok(Command::new("kill").args(["-s", signal, &pid.to_string()]));
}

#[test]
fn builds_are_small_and_byte_identical_from_different_directories() {
    let Some(shared) = binaries() else { return };
    let (a, b) = (tempdir(), tempdir());
    for dir in [&a, &b] {
        // Different working and temporary directories: neither may leak into the output.
        fs::create_dir(dir.path().join("tmp")).unwrap();
        run_ok(
            pausebake()
                .current_dir(dir.path())
                .env("TMPDIR", dir.path().join("tmp"))
                .args(["build", "--arch", ALL, "--pause-version", VERSION, "--out"])
                .arg(dir.path().join("out")),
        );
    }
    for arch in ARCHES {
        let name = format!("pause-linux-{arch}");
        let first = fs::read(a.path().join("out").join(&name)).unwrap();
        let second = fs::read(b.path().join("out").join(&name)).unwrap();
        assert!(first == second, "{name} differs between two builds");
        assert_eq!(first, fs::read(shared.join(&name)).unwrap(), "{name}");
        let limit = if matches!(arch, "amd64" | "arm64") {
            1536
        } else {
            4095
        };
        assert!(
            first.len() <= limit,
            "{name} is {} bytes, over {limit}",
            first.len()
        );
        let mode = fs::metadata(a.path().join("out").join(&name))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
            0o755
        );
    }
}

#[test]
fn build_reports_size_and_sha256_as_json() {
    if !have_compilers() {
        return;
    }
    let out_dir = tempdir();
    let out = run_ok(
        pausebake()
            .args(["build", "--arch", "arm64,s390x", "--json", "--out"])
            .arg(out_dir.path()),
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = doc["binaries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for (entry, arch) in entries.iter().zip(["arm64", "s390x"]) {
        let path = out_dir.path().join(format!("pause-linux-{arch}"));
        let bytes = fs::read(&path).unwrap();
        assert_eq!(entry["arch"], arch);
        assert_eq!(entry["path"], path.display().to_string());
        assert_eq!(entry["size"], bytes.len());
        let sha = run_ok(Command::new("sha256sum").arg(&path));
        // prefixed as every other digest pausebake prints
        assert_eq!(
            entry["sha256"].as_str().unwrap(),
            format!("sha256:{}", stdout(&sha).split(' ').next().unwrap())
        );
    }
}

/// `-v`/`-V` anywhere in argv: the version line on stdout, nothing on stderr, exit 0.
fn check_version_flag(dir: &Path, arch: &str, version: &str) {
    let cases: [&[&str]; 5] = [
        &["-v"],
        &["-V"],
        &["x", "-v"],
        &["--", "a", "-V", "b"],
        &["-vx", "-v"],
    ];
    for args in cases {
        let what = format!("pause {args:?}");
        let out = spawn(&mut pause_cmd(dir, arch, args)).finish(&what);
        assert_eq!(out.status.code(), Some(0), "{what}: {out:?}");
        assert_eq!(stdout(&out), format!("pause.c {version}\n"), "{what}");
        // -v is checked before the PID-1 warning.
        assert_eq!(stderr(&out), "", "{what}");
    }
}

/// SIGTERM and SIGINT: the warning (not PID 1 here), the exact shutdown line, exit 0.
fn check_shutdown_signals(dir: &Path, arch: &str) {
    for (signal, line) in [("TERM", TERMINATED), ("INT", INTERRUPT)] {
        // None of these is -v: `pause` must ignore them and keep running.
        let args = ["-vv", "v", "--version", "-"];
        let child = spawn(&mut pause_cmd(dir, arch, &args));
        let pid = child.id();
        wait_until_sleeping(pid, &comm(arch));
        kill(pid, signal);
        let out = child.finish(&format!("pause after SIG{signal}"));
        assert_eq!(out.status.code(), Some(0), "SIG{signal}: {out:?}");
        assert_eq!(stdout(&out), "", "SIG{signal}");
        assert_eq!(stderr(&out), format!("{WARNING}{line}"), "SIG{signal}");
    }
}

#[test]
fn version_flag_in_any_position_prints_version_and_exits_0() {
    let Some(dir) = binaries() else { return };
    each_arch(|arch| check_version_flag(dir, arch, VERSION));
}

#[test]
fn sigterm_and_sigint_print_the_signal_and_exit_0() {
    let Some(dir) = binaries() else { return };
    each_arch(|arch| check_shutdown_signals(dir, arch));
}

/// Without clang on PATH, `<triple>-gcc` builds each foreign architecture and `cc` the
/// host's; every binary passes the same checks (arm is the one whose gcc emits Thumb code
/// without re-announcing it), and an awkward version string prints back exactly.
#[test]
fn gcc_fallback_builds_working_binaries() {
    let cross = [
        ("s390x", "s390x-linux-gnu-gcc"),
        ("arm", "arm-linux-gnueabihf-gcc"),
        ("arm64", "aarch64-linux-gnu-gcc"),
    ];
    let cross: Vec<_> = cross
        .into_iter()
        .filter(|(a, _)| *a != host_arch())
        .collect();
    let tools_present = cross
        .iter()
        .all(|(arch, gcc)| have(gcc) && have(&qemu(arch)))
        && have("gcc")
        && have("as")
        && have("ld");
    if !tools_present {
        return;
    }
    let bin = tempdir();
    // The host gcc runs `as` and `ld` from PATH; the cross gccs find their own.
    let links = cross.iter().map(|(_, gcc)| (*gcc, *gcc)).chain([
        ("cc", "gcc"),
        ("as", "as"),
        ("ld", "ld"),
    ]);
    for (name, program) in links {
        std::os::unix::fs::symlink(which(program).unwrap(), bin.path().join(name)).unwrap();
    }
    let out_dir = tempdir();
    let version = r#"v1 "quoted" back\slash ??/ trigraph"#;
    let arches: Vec<&str> = std::iter::once(host_arch())
        .chain(cross.iter().map(|(a, _)| *a))
        .collect();
    let out = run_ok(
        pausebake()
            .env("PATH", bin.path())
            .args([
                "build",
                "--arch",
                &arches.join(","),
                "--pause-version",
                version,
            ])
            .arg("--out")
            .arg(out_dir.path()),
    );
    let run_pid_1 = can_run_as_pid_1();
    in_parallel(&arches, |arch| {
        let reported = stdout(&out).lines().any(|l| {
            l.starts_with(&format!("{arch} ")) && l.ends_with(&format!("pause-linux-{arch}"))
        });
        assert!(reported, "{arch} not reported: {}", stdout(&out));
        check_version_flag(out_dir.path(), arch, version);
        check_shutdown_signals(out_dir.path(), arch);
        if run_pid_1 {
            check_pid_1(out_dir.path(), arch);
        }
    });
}

/// Whether the PID-1 checks can run here (unshare --pid needs root).
fn can_run_as_pid_1() -> bool {
    if !have("unshare") || !have("nsenter") {
        return false;
    }
    if !is_root() {
        skip("not root: unshare --pid needs it");
        return false;
    }
    true
}

/// As PID 1 of a new PID namespace: no warning; 20 orphans exiting together are all
/// adopted and reaped, none left in state Z; SIGTERM still ends it with exit 0.
fn check_pid_1(dir: &Path, arch: &str) {
    const ORPHANS: usize = 20;
    let pause = pause_cmd(dir, arch, &[]);
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(pause.get_program())
        .args(pause.get_args());
    let mut child = spawn(&mut cmd);
    let unshare = child.id();
    let comm = comm(arch);
    // unshare forks, then execs pause as PID 1 of the new namespace.
    let pid = wait_for("pause to start under unshare", || {
        children(unshare)
            .into_iter()
            .find(|(_, (c, _))| *c == comm)
            .map(|(pid, _)| pid)
    });
    child.inner = Some(pid);
    wait_until_sleeping(pid, &comm);

    // A shell inside the namespace starts the orphans and exits at once, so the kernel
    // hands them to the namespace's init: pause. They all exit together a second later.
    run_ok(
        Command::new("nsenter")
            .args(["--target", &pid.to_string(), "--pid", "--", "sh", "-c"])
            // Without the redirections the orphans would hold nsenter's output pipes open.
            .arg(format!(
                "for i in $(seq {ORPHANS}); do sleep 1 </dev/null >/dev/null 2>&1 & done"
            )),
    );
    // Each orphan shows up as a child of pause once it has exec'd sleep.
    wait_for(
        &format!("pause (pid {pid}) to adopt {ORPHANS} orphans"),
        || {
            let sleepers = children(pid).values().filter(|(c, _)| c == "sleep").count();
            (sleepers == ORPHANS).then_some(())
        },
    );
    let start = Instant::now();
    loop {
        let left = children(pid);
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "orphans not reaped by pause (pid {pid}): {left:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }

    kill(pid, "TERM");
    let out = child.finish("unshare running pause");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // PID 1: no warning, just the shutdown line.
    assert_eq!(stderr(&out), TERMINATED);
}

#[test]
fn as_pid_1_no_warning_and_every_orphan_is_reaped() {
    let Some(dir) = binaries() else { return };
    if !can_run_as_pid_1() {
        return;
    }
    each_arch(|arch| check_pid_1(dir, arch));
}

/// A seccomp launcher for the cases a healthy kernel never produces: `refuse SYSCALL ARG0
/// -- PROGRAM ARGS...` runs PROGRAM with SYSCALL (`rt_sigaction`, or `sleep` for the host's
/// pause or ppoll) failing with ENOSYS when its first argument is ARG0, or always for -1.
const REFUSE_C: &str = r#"/* refuse SYSCALL ARG0 -- PROGRAM ARGS...: runs PROGRAM with a seccomp filter under which the
 * system call SYSCALL ("rt_sigaction" or "sleep", the host's pause or ppoll) fails with
 * ENOSYS when its first argument is ARG0 (-1: whatever it is). */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 5 || strcmp(argv[3], "--") != 0) {
		fprintf(stderr, "usage: refuse rt_sigaction|sleep ARG0 -- PROGRAM...\n");
		return 100;
	}
	long nr;
	if (strcmp(argv[1], "rt_sigaction") == 0)
		nr = SYS_rt_sigaction;
	else
#ifdef SYS_pause
		nr = SYS_pause;
#else
		nr = SYS_ppoll;
#endif
	long arg = atol(argv[2]);
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 4),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)arg, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, arg == -1 ? SECCOMP_RET_ERRNO | ENOSYS : SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(filter) / sizeof(filter[0]), filter};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		perror("refuse: installing the seccomp filter");
		return 101;
	}
	execv(argv[4], argv + 4);
	perror("refuse: exec");
	return 102;
}
"#;

/// Upstream's exits for a handler that cannot be installed (1, 2, 3 for SIGINT, SIGTERM,
/// SIGCHLD) and for the end of the sleep loop (42), made real with seccomp, on the host's
/// binary (under qemu the filter would see qemu's system calls, not pause's).
#[test]
fn refused_system_calls_give_upstreams_exit_codes() {
    let Some(dir) = binaries() else { return };
    if !have("cc") {
        return;
    }
    let work = tempdir();
    let refuse = work.path().join("refuse");
    fs::write(work.path().join("refuse.c"), REFUSE_C).unwrap();
    run_ok(
        Command::new("cc")
            .args(["-Wall", "-Werror", "-O2", "-o"])
            .arg(&refuse)
            .arg(work.path().join("refuse.c")),
    );
    let pause = dir.join(format!("pause-linux-{}", host_arch()));
    for (syscall, arg, code, expected) in [
        ("rt_sigaction", "2", 1, WARNING.to_string()),
        ("rt_sigaction", "15", 2, WARNING.to_string()),
        ("rt_sigaction", "17", 3, WARNING.to_string()),
        (
            "sleep",
            "-1",
            42,
            format!("{WARNING}Error: infinite loop terminated\n"),
        ),
    ] {
        let what = format!("pause with {syscall}({arg}) refused");
        let out = spawn(Command::new(&refuse).args([syscall, arg, "--"]).arg(&pause)).finish(&what);
        assert_eq!(out.status.code(), Some(code), "{what}: {out:?}");
        assert_eq!(stderr(&out), expected, "{what}");
        assert_eq!(stdout(&out), "", "{what}");
    }
}

#[test]
fn missing_compiler_names_the_debian_packages() {
    let out_dir = tempdir();
    let out = run_any(
        pausebake()
            .args(["build", "--arch", "arm64", "--cc", "/nonexistent", "--out"])
            .arg(out_dir.path()),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stderr(&out),
        "pausebake: error: finding the C compiler /nonexistent given with --cc: not found; \
         give an existing compiler, or omit --cc to search for one \
         (Debian packages: clang and lld, or gcc-aarch64-linux-gnu)\n"
    );

    for (arch, tools, packages) in [
        (
            "riscv64",
            "clang with ld.lld, riscv64-linux-gnu-gcc",
            "clang and lld, or gcc-riscv64-linux-gnu",
        ),
        (
            "s390x",
            "clang with s390x-linux-gnu-ld, s390x-linux-gnu-gcc",
            "clang and binutils-s390x-linux-gnu, or gcc-s390x-linux-gnu",
        ),
    ] {
        let out = run_any(
            pausebake()
                .env("PATH", "")
                .args(["build", "--compile", "--arch", arch, "--out"])
                .arg(out_dir.path()),
        );
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "pausebake: error: finding a C compiler for {arch}: none of {tools} found on \
                 PATH; install the Debian packages {packages} (or give one with --cc)\n"
            )
        );
    }
    assert_eq!(fs::read_dir(out_dir.path()).unwrap().count(), 0);
}

#[test]
fn unknown_architecture_in_a_list_is_refused() {
    let out =
        run_any(pausebake().args(["build", "--arch", "amd64,sparc", "--out", "/nonexistent"]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains(
            "unknown architecture \"sparc\"; expected one of: amd64, arm64, arm, ppc64le, s390x, riscv64"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cc_that_links_dynamically_is_refused() {
    if !have("gcc") {
        return;
    }
    let dir = tempdir();
    let wrapper = dir.path().join("cc-dynamic");
    // gcc, but drops -static and -fno-pie and asks for a PIE: a dynamically linked result.
    fs::write(
        &wrapper,
        r#"#!/bin/sh
n=$#
while [ "$n" -gt 0 ]; do
  a=$1; shift; n=$((n - 1))
  case $a in -static|-fno-pie) ;; *) set -- "$@" "$a" ;; esac
done
exec gcc -fPIE -pie "$@"
"#,
    )
    .unwrap();
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = run_any(
        pausebake()
            .args(["build", "--arch", host_arch(), "--cc"])
            .arg(&wrapper)
            .arg("--out")
            .arg(dir.path().join("out")),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "pausebake: error: checking pause for {} built by {}: dynamically linked \
             (has a program interpreter); pause must be static\n",
            host_arch(),
            wrapper.display()
        )
    );
    assert!(!dir.path().join("out").exists());
}
