//! docker as a consumer of pausebake's docker-archive: Debian's docker.io (`/usr/bin/docker`,
//! `/usr/sbin/dockerd`, never another docker client on PATH), with a dockerd this test starts
//! with its own data root, exec root, pidfile, config file and socket under a temporary
//! directory, in mount and network namespaces of its own (a private tmpfs on `/run` and
//! `/etc/docker`, only a loopback, no bridge, no iptables rules). It is stopped by pid,
//! with everything it started.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::containerd::{process_tree, terminate};
use crate::harness::*;

const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
const NAME: &str = "example.invalid/pausebake/pause:docker";
const CONTAINER: &str = "pausebake-pause";

/// How long dockerd may take to answer, and how long it gets to exit after SIGTERM.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A dockerd started by [`Dockerd::start`]; stopped with everything it started on drop.
struct Dockerd {
    child: Child,
    pid: u32,
    dir: tempfile::TempDir,
    socket: PathBuf,
    log: PathBuf,
    stopped: bool,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = tempdir();
        let d = |name: &str| dir.path().join(name);
        fs::write(d("daemon.json"), "{}\n").expect("writing daemon.json");
        let log = d("dockerd.log");
        let out = fs::File::create(&log).expect("creating the dockerd log");
        let socket = d("docker.sock");
        // `exec` keeps the child's pid equal to dockerd's.
        let script = "mount -t tmpfs -o mode=0755 tmpfs /run \
            && { [ ! -d /etc/docker ] || mount -t tmpfs -o mode=0755 tmpfs /etc/docker; } \
            && ip link set lo up && exec \"$0\" \"$@\"";
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--net", "--"])
            .args(["sh", "-c", script, DOCKERD])
            .arg("--data-root")
            .arg(d("data"))
            .arg("--exec-root")
            .arg(d("exec"))
            .arg("--pidfile")
            .arg(d("docker.pid"))
            .arg("--config-file")
            .arg(d("daemon.json"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--userland-proxy=false",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("cloning the log handle"))
            .stderr(out);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let pid = child.id();
        let mut dockerd = Dockerd {
            child,
            pid,
            dir,
            socket,
            log,
            stopped: false,
        };
        dockerd.wait_ready();
        dockerd
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Debian's docker client on this dockerd's socket.
    fn docker(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args);
        cmd
    }

    /// Runs `docker ARGS`; panics with its output and dockerd's log unless it succeeds.
    fn docker_ok(&self, args: &[&str]) -> Output {
        let mut cmd = self.docker(args);
        let out = run_any(&mut cmd);
        if !out.status.success() {
            panic!("{}\n--- dockerd log:\n{}", describe(&cmd, &out), self.log());
        }
        out
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.stopped = true;
                panic!("dockerd exited during startup ({status}):\n{}", self.log());
            }
            let ready = fs::metadata(&self.socket).is_ok_and(|m| m.file_type().is_socket())
                && run_any(&mut self.docker(&["version"])).status.success();
            if ready {
                return;
            }
            if start.elapsed() > TIMEOUT {
                let log = self.log();
                self.stop();
                panic!("dockerd did not answer within {TIMEOUT:?}:\n{log}");
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// dockerd and every process it left: its containerd, shims and containers carry the
    /// temporary directory on their command lines, and their children are followed.
    fn processes(&self) -> Vec<u32> {
        let pid = (!self.stopped).then_some(self.pid);
        let marker = self.dir.path().display().to_string();
        process_tree(pid, None, Some(&marker))
    }

    /// Stops dockerd by pid and kills everything it left. Idempotent.
    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let marker = self.dir.path().display().to_string();
        let left = terminate(&mut self.child, TIMEOUT, || {
            process_tree(None, None, Some(&marker))
        });
        if !left.is_empty() {
            eprintln!("dockerd: processes left: {left:?}");
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.stopped {
            eprintln!("--- dockerd log:\n{}", self.log());
        }
        self.stop();
    }
}

/// `docker inspect --format FORMAT CONTAINER`, trimmed.
fn inspect(dockerd: &Dockerd, format: &str) -> String {
    stdout(&dockerd.docker_ok(&["inspect", "--format", format, CONTAINER]))
        .trim()
        .to_string()
}

#[test]
fn docker_loads_the_docker_archive_and_runs_pause() {
    if !is_root() {
        skip("dockerd needs root");
        return;
    }
    if !(have("unshare") && have("ip")) {
        return;
    }
    if !(fs::metadata(DOCKER).is_ok() && fs::metadata(DOCKERD).is_ok()) {
        skip("Debian's docker.io is not installed (tests/setup.sh installs it)");
        return;
    }
    let work = tempdir();
    let archive = work.path().join("pause.tar");
    run_ok(
        pausebake()
            .args(["image", "--format", "docker-archive", "--name", NAME])
            .arg("--output")
            .arg(&archive),
    );

    let mut dockerd = Dockerd::start();
    let version = dockerd.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    let loaded = dockerd.docker_ok(&["load", "--input", &archive.display().to_string()]);
    assert!(
        stdout(&loaded).contains(&format!("Loaded image: {NAME}")),
        "{}",
        stdout(&loaded)
    );
    let platform = dockerd.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Os}}/{{.Architecture}}",
        NAME,
    ]);
    assert_eq!(stdout(&platform).trim(), format!("linux/{}", host_arch()));

    dockerd.docker_ok(&[
        "run",
        "--detach",
        "--network",
        "none",
        "--name",
        CONTAINER,
        NAME,
    ]);
    assert_eq!(
        inspect(&dockerd, "{{.Path}} {{.HostConfig.NetworkMode}}"),
        "/pause none"
    );
    let start = Instant::now();
    let pid: u32 = loop {
        let state = inspect(&dockerd, "{{.State.Running}} {{.State.Pid}}");
        if let Some(pid) = state.strip_prefix("true ") {
            break pid.parse().expect("a pid");
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "{CONTAINER} not running: {state}"
        );
        sleep(Duration::from_millis(100));
    };
    // the process docker runs is pause itself (the path as its mount namespace sees it)
    let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("reading the container's exe");
    assert_eq!(exe, PathBuf::from("/pause"));

    let signalled = Instant::now();
    dockerd.docker_ok(&["kill", "--signal", "TERM", CONTAINER]);
    let code = dockerd.docker_ok(&["wait", CONTAINER]);
    assert_eq!(stdout(&code).trim(), "0", "pause exits 0 on SIGTERM");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "pause took {:?} to exit",
        signalled.elapsed()
    );
    let logs = dockerd.docker_ok(&["logs", CONTAINER]);
    assert!(
        stderr(&logs).contains("Shutting down, got signal: Terminated"),
        "{}",
        describe(&dockerd.docker(&["logs", CONTAINER]), &logs)
    );

    dockerd.stop();
    assert!(
        dockerd.processes().is_empty(),
        "left: {:?}",
        dockerd.processes()
    );
    eprintln!(
        "docker {}: loaded {NAME}, ran pause, exit 0 on SIGTERM",
        stdout(&version).trim()
    );
}
