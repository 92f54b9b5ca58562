//! A real distribution root end to end: a debootstrapped Debian bookworm with containerd and
//! runc from the distribution (`tests/debian-root.sh`, cached), baked from outside, then that
//! root's own containerd started inside a chroot with an empty network namespace, asked by a
//! CRI client to run a pod sandbox.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::containerd::process_tree;
use crate::cri::{Cri, PodSandboxState};
use crate::harness::*;

/// The root's own containerd, chrooted, in its own mount and (empty) network namespace.
/// Also `live.rs`'s too-old containerd (bullseye's 1.4.13), which the harness's
/// [`crate::containerd::Containerd::start`] cannot wait for: it answers no CRI v1.
pub struct Chrooted {
    child: Child,
    log: std::path::PathBuf,
    /// Last: released once containerd and what it left are gone.
    _lock: ContainerdLock,
}

impl Chrooted {
    /// Starts `root`'s /usr/bin/containerd with `root`'s own config. The node's /run is a
    /// directory of the test (`run`), so the socket is reachable from outside.
    pub fn start(root: &Path, run: &Path, log: &Path) -> Chrooted {
        let lock = containerd_lock();
        let script = r#"
            set -e
            R=$1 RUN=$2
            mount --make-rprivate /
            # runc remounts / of the node: in a chroot it must be a mount point.
            mount --bind "$R" "$R"
            mount -t proc proc "$R/proc"
            mount --rbind /sys "$R/sys"
            mount --rbind /dev "$R/dev"
            mount --bind "$RUN" "$R/run"
            ip link set lo up
            exec chroot "$R" /usr/bin/containerd
        "#;
        let child = Command::new("unshare")
            .args(["--mount", "--net", "--", "sh", "-c", script, "sh"])
            .arg(root)
            .arg(run)
            .stdin(Stdio::null())
            .stdout(fs::File::create(log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .expect("starting the chrooted containerd");
        Chrooted {
            child,
            log: log.to_path_buf(),
            _lock: lock,
        }
    }

    pub fn log(&self) -> String {
        format!(
            "{}{}",
            fs::read_to_string(&self.log).unwrap_or_default(),
            fs::read_to_string(self.log.with_extension("err")).unwrap_or_default()
        )
    }

    /// Kills containerd by pid, then everything it left: its mount namespace (shims) and
    /// their descendants (pause, in a mount namespace of its own).
    fn stop(&mut self) {
        let pid = self.child.id();
        let ns_path = format!("/proc/{pid}/ns/mnt");
        // Namespace inode numbers are reused once a namespace dies, and other tests start
        // containerds in fresh ones: an open handle keeps this one alive while we compare.
        let pin = fs::File::open(&ns_path).ok();
        let ns = pin
            .as_ref()
            .and(fs::read_link(&ns_path).ok())
            .map(|l| l.display().to_string());
        // Gather before killing: once the shims die, pause is re-parented out of the tree.
        let mut tree = process_tree(Some(pid), ns.as_deref(), None);
        let _ = self.child.kill();
        let _ = self.child.wait();
        for _ in 0..50 {
            tree.retain(|p| Path::new(&format!("/proc/{p}")).exists());
            if tree.is_empty() {
                return;
            }
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(tree.iter().map(|p| p.to_string()))
                .stderr(Stdio::null())
                .status();
            sleep(Duration::from_millis(100));
            tree.extend(process_tree(None, ns.as_deref(), None));
        }
        eprintln!("processes left by the chrooted containerd: {tree:?}");
    }
}

impl Drop for Chrooted {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh copy of the cached debootstrap root `tests/debian-root.sh ARGS` prints (bookworm
/// by default; a suite and extra packages otherwise), unpacked at `dir/root`, with the files
/// a booted node has.
pub fn debian_root(dir: &Path, args: &[&str]) -> PathBuf {
    let tarball = stdout(&run_ok(
        Command::new(repo().join("tests/debian-root.sh")).args(args),
    ));
    let root = dir.join("root");
    fs::create_dir(&root).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-xf", tarball.trim(), "-C"])
            .arg(&root),
    );
    // A booted node has these (the installer or cloud-init writes them); debootstrap's
    // minbase does not, and CRI copies them into every sandbox.
    for (file, text) in [
        ("etc/hosts", "127.0.0.1 localhost\n"),
        ("etc/hostname", "node\n"),
    ] {
        if !root.join(file).exists() {
            fs::write(root.join(file), text).unwrap();
        }
    }
    root
}

/// A fresh copy of the cached bullseye root (with sudo and systemd, for `release.rs`'s
/// amazon-ebs step) under `dir/root`, as debootstrap made it: with bullseye's own containerd
/// 1.4.13, older than pausebake supports. `None` after a loud skip.
pub fn bullseye_root(dir: &Path) -> Option<PathBuf> {
    if !is_root() {
        skip("the bullseye root needs root (debootstrap, chroot)");
        return None;
    }
    if !(have("debootstrap") && have("chroot")) {
        return None;
    }
    Some(debian_root(dir, &["bullseye", "sudo,systemd"]))
}

#[test]
fn debian_root_baked_from_outside_runs_a_sandbox_offline() {
    if !is_root() {
        skip("the distribution test needs root (debootstrap, chroot, mounts)");
        return;
    }
    if !(have("debootstrap") && have("unshare") && have("chroot") && have("ip")) {
        return;
    }
    let dir = tempdir();
    let root = debian_root(dir.path(), &[]);
    let config_path = root.join("etc/containerd/config.toml");
    let config_before = fs::read_to_string(&config_path).unwrap();

    let out = run_ok(pausebake().arg("bake").arg("--root").arg(&root));
    let summary = stdout(&out);

    // Only the sandbox image key changed in Debian's config.
    let config_after = fs::read_to_string(&config_path).unwrap();
    let before: Vec<&str> = config_before.lines().collect();
    let added: Vec<&str> = config_after
        .lines()
        .filter(|l| !before.contains(l))
        .collect();
    assert_eq!(
        added,
        ["    sandbox_image = \"registry.k8s.io/pause:3.6\""],
        "containerd 1.6 default name, in the CRI table of Debian's file:\n{config_after}\n{summary}"
    );
    assert!(
        config_after.lines().count() == before.len() + 1,
        "{config_after}"
    );
    run_ok(pausebake().arg("verify").arg("--root").arg(&root));

    // This sandbox cannot lower OOM scores; a VM image would not need this line.
    fs::write(
        &config_path,
        config_after.replace(
            "[plugins.\"io.containerd.grpc.v1.cri\"]\n",
            "[plugins.\"io.containerd.grpc.v1.cri\"]\n    restrict_oom_score_adj = true\n",
        ),
    )
    .unwrap();

    let run = dir.path().join("run");
    fs::create_dir(&run).unwrap();
    let mut containerd = Chrooted::start(&root, &run, &dir.path().join("containerd.log"));
    let socket = run.join("containerd/containerd.sock");
    let start = Instant::now();
    let mut cri = loop {
        if UnixStream::connect(&socket).is_ok() {
            if let Ok(mut cri) = Cri::connect(&socket) {
                if cri.version().is_ok() {
                    break cri;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the root's containerd did not come up:\n{}",
            containerd.log()
        );
        sleep(Duration::from_millis(100));
    };
    let logs = dir.path().join("pods");
    fs::create_dir(&logs).unwrap();
    let result = cri.run_pod_sandbox("distro", true, &logs);
    let log = containerd.log();
    containerd.stop();
    let (_, state) = result.unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{log}"));
    assert_eq!(state, PodSandboxState::SandboxReady, "{log}");
    assert!(
        !log.contains("PullImage"),
        "containerd tried to pull:\n{log}"
    );
}
