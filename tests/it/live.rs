//! The live path against real containerd 1.6, 1.7 and 2.x, each started by the test with no
//! network: `import --address` into a containerd that already holds other images in two
//! namespaces, then CRI RunPodSandbox READY with no pull; re-import is a no-op, re-pointing a
//! name works, shared content is handled; `verify --address` exits 0 or 3 for each fault; bad
//! sockets fail clearly and fast.

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::bake::{gc, pins, sandbox_ready};
use crate::containerd::{
    sandbox_image_toml, test_vm_toml, versions, Containerd, Running, StartOpts,
};
use crate::cri::PodSandboxState;
use crate::distro::{bullseye_root, Chrooted};
use crate::harness::*;

const NAME: &str = "registry.k8s.io/pause:3.10";

/// `pausebake image` of a pause compiled for the host (one that runs: sandboxes start from
/// it), named `name`, at `epoch` (another epoch: other config and manifest digests).
fn archive(dir: &Path, name: &str, epoch: u64) -> PathBuf {
    let out = dir.join(format!("{}-{epoch}.tar", name.replace(['/', ':'], "_")));
    run_ok(
        pausebake()
            .arg("image")
            .args(["--source-date-epoch", &epoch.to_string()])
            .args(["--name", name, "--output"])
            .arg(&out),
    );
    out
}

/// A containerd with no network on `root`, whose config file (as on a node) names `NAME` as
/// the sandbox image.
fn start(c: &Containerd, root: &Path) -> Running {
    let v = c.native_config_version();
    let config = format!("version = {v}\n\n{}", sandbox_image_toml(v, NAME));
    start_with(c, root, &config, StartOpts::default())
}

/// A containerd with no network on `root`, after writing `config` as the root's own
/// `etc/containerd/config.toml` (as on a node); `opts` for the rest.
fn start_with(c: &Containerd, root: &Path, config: &str, opts: StartOpts) -> Running {
    let etc = root.join("etc/containerd");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("config.toml"), config).unwrap();
    c.start(
        root,
        StartOpts {
            no_network: true,
            ..opts
        },
    )
}

/// `pausebake import ARCHIVE --address SOCKET --root ROOT ARGS`.
fn import(ctd: &Running, archive: &Path, root: &Path, args: &[&str]) -> Output {
    run_any(
        pausebake()
            .arg("import")
            .arg(archive)
            .arg("--address")
            .arg(ctd.address())
            .arg("--root")
            .arg(root)
            .args(args),
    )
}

fn import_ok(ctd: &Running, archive: &Path, root: &Path, args: &[&str]) -> String {
    let out = import(ctd, archive, root, args);
    assert!(
        out.status.success(),
        "containerd {}: {}\n--- log:\n{}",
        ctd.containerd.version,
        describe(&Command::new("pausebake import"), &out),
        ctd.log()
    );
    stdout(&out)
}

/// `pausebake verify --address SOCKET --root ROOT`, its exit code and output.
fn verify(ctd: &Running, root: &Path) -> (Option<i32>, String) {
    verify_with(ctd, root, &[])
}

/// [`verify`] with `--sandbox`.
fn verify_sandbox(ctd: &Running, root: &Path) -> (Option<i32>, String) {
    verify_with(ctd, root, &["--sandbox"])
}

/// `pausebake verify ARGS --address SOCKET --root ROOT`, its exit code and stdout + stderr.
fn verify_with(ctd: &Running, root: &Path, args: &[&str]) -> (Option<i32>, String) {
    against(ctd, "verify", root, args)
}

/// `pausebake COMMAND ARGS --address SOCKET --root ROOT`, its exit code and stdout + stderr.
fn against(ctd: &Running, command: &str, root: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = run_any(
        pausebake()
            .arg(command)
            .args(args)
            .arg("--address")
            .arg(ctd.address())
            .arg("--root")
            .arg(root),
    );
    (
        out.status.code(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// `ctr -n NS images ls` lines, sorted (name, type, digest, size, platforms, labels).
fn images(ctd: &Running, ns: &str) -> Vec<String> {
    let out = ctd.ctr_ok(&["-n", ns, "images", "ls"]);
    let mut lines: Vec<String> = stdout(&out)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

fn line_of<'a>(lines: &'a [String], name: &str) -> Option<&'a String> {
    lines.iter().find(|l| l.starts_with(&format!("{name} ")))
}

#[test]
fn live_import_runs_a_sandbox_offline_and_leaves_the_rest_alone() {
    let _lock = containerd_lock();
    let work = tempdir();
    let ours = archive(work.path(), NAME, 0);
    // the same content under another name, and other images
    let shared = archive(work.path(), "example.invalid/shared:1", 0);
    let other = archive(work.path(), "example.invalid/other:1", 86400);
    let newer = archive(work.path(), NAME, 172800);
    for c in versions() {
        let root = tempdir();
        let ctd = start(&c, root.path());
        ctd.ctr_import("k8s.io", &other);
        ctd.ctr_import("elsewhere", &other);
        ctd.ctr_import("elsewhere", &shared);
        let k8s_before = images(&ctd, "k8s.io");
        let elsewhere_before = images(&ctd, "elsewhere");

        let start = Instant::now();
        let text = import_ok(&ctd, &ours, root.path(), &[]);
        let took = start.elapsed();
        eprintln!("containerd {} live import in {took:?}:\n{text}", c.version);
        assert!(
            text.contains(&format!("into containerd {} at", c.version)),
            "{text}"
        );
        assert!(
            text.contains(&format!("image {NAME} in k8s.io, pinned")),
            "{text}"
        );
        // the lease that held the blobs is gone
        let leases = stdout(&ctd.ctr_ok(&["-n", "k8s.io", "leases", "ls"]));
        assert!(!leases.contains("pausebake-"), "{leases}");
        // a bad archive fails as it would offline, and the lease asked for while dialling
        // (before the archive is read) goes with the command
        let bad = work.path().join("bad.tar");
        std::fs::write(&bad, b"not an archive").unwrap();
        let out = import(&ctd, &bad, root.path(), &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("bad.tar"), "{}", stderr(&out));
        let leases = stdout(&ctd.ctr_ok(&["-n", "k8s.io", "leases", "ls"]));
        assert!(!leases.contains("pausebake-"), "{leases}");

        let image = ctd
            .cri()
            .wait_image(NAME, Duration::from_secs(5))
            .unwrap()
            .unwrap_or_else(|| panic!("CRI of {} does not know {NAME}", c.version));
        assert_eq!(image.pinned, pins(&c), "pinned on {}", c.version);
        sandbox_ready(&ctd, "live");
        assert_eq!(ctd.pull_attempts(), Vec::<String>::new());

        // the other images, in both namespaces, are as they were
        let k8s_after = images(&ctd, "k8s.io");
        for line in &k8s_before {
            assert!(k8s_after.contains(line), "{line} changed:\n{k8s_after:?}");
        }
        assert_eq!(images(&ctd, "elsewhere"), elsewhere_before);
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(0), "{report}");

        // again: nothing to do
        let text = import_ok(&ctd, &ours, root.path(), &[]);
        assert!(text.contains("unchanged"), "{text}");
        assert_eq!(images(&ctd, "k8s.io"), k8s_after);

        // re-point the name at a newer image
        let text = import_ok(&ctd, &newer, root.path(), &["--json"]);
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        let json = &report["import"];
        let target = json["target"].as_str().unwrap().to_string();
        assert!(
            json["records_changed"]
                .as_array()
                .unwrap()
                .contains(&format!("image {NAME} (updated)").into()),
            "{text}"
        );
        assert_eq!(json["address"], ctd.address().display().to_string());
        let line = line_of(&images(&ctd, "k8s.io"), NAME).cloned().unwrap();
        assert!(line.contains(&target), "{line}");
        ctd.cri()
            .wait_image(NAME, Duration::from_secs(5))
            .unwrap()
            .expect("CRI still knows the name");
        sandbox_ready(&ctd, "repointed");
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(0), "{report}");
        assert_eq!(ctd.pull_attempts(), Vec::<String>::new());
    }
}

#[test]
fn live_verify_exits_3_for_each_fault() {
    let _lock = containerd_lock();
    let work = tempdir();
    let ours = archive(work.path(), NAME, 0);
    for c in versions() {
        // nothing imported: the image is missing
        let root = tempdir();
        let ctd = start(&c, root.path());
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(3), "{report}");
        assert!(
            report.contains(&format!("no image named {NAME}")),
            "{report}"
        );

        // unpinned: where the version pins, CRI pins its own sandbox image when it sees it
        // (1.7.3+, 2.x: the state does not last), so the fault is shown in a namespace CRI
        // does not watch
        import_ok(&ctd, &ours, root.path(), &["--no-pin"]);
        import_ok(
            &ctd,
            &ours,
            root.path(),
            &["--no-pin", "--namespace", "elsewhere"],
        );
        let (code, report) = verify_with(&ctd, root.path(), &["--namespace", "elsewhere"]);
        let want = if pins(&c) { 3 } else { 0 };
        assert_eq!(code, Some(want), "{report}");
        assert!(
            report.contains("CRI reads images only from namespace k8s.io"),
            "{report}"
        );
        assert_eq!(
            report.contains(&format!("FAIL pin: {NAME} is not pinned")),
            pins(&c),
            "{report}"
        );
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(0), "{report}");
        import_ok(&ctd, &ours, root.path(), &[]);
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(0), "{report}");
        if c.semver().0 >= 2 {
            // 2.x pins only the config's exact string: a short name stays unpinned
            let root = tempdir();
            let config = format!("version = 3\n\n{}", sandbox_image_toml(3, "pause:3.10"));
            let ctd = start_with(&c, root.path(), &config, StartOpts::default());
            let long = "docker.io/library/pause:3.10";
            import_ok(&ctd, &ours, root.path(), &["--no-pin", "--name", long]);
            let (code, report) = verify(&ctd, root.path());
            assert_eq!(code, Some(3), "{report}");
            assert!(
                report.contains(&format!("FAIL pin: {long} is not pinned")),
                "{report}"
            );
            assert_eq!(report.matches("FAIL").count(), 1, "{report}");
        }

        // a missing blob: the manifest's content record removed behind our back
        let out = import_ok(&ctd, &ours, root.path(), &["--json"]);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let manifest = report["import"]["manifests"][0]
            .as_str()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        ctd.ctr_ok(&["-n", "k8s.io", "content", "rm", &manifest]);
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(3), "{report}");
        assert!(
            report.contains(&format!("missing blob {manifest}")),
            "{report}"
        );
        // and a re-import repairs it
        let text = import_ok(&ctd, &ours, root.path(), &[]);
        assert!(
            text.contains(&format!("content {manifest} (new)")),
            "{text}"
        );
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(0), "{report}");
        let (code, report) = verify_sandbox(&ctd, root.path());
        assert_eq!(code, Some(0), "{report}");
        assert!(
            report.contains("ok   sandbox: a throwaway pod sandbox ran"),
            "{report}"
        );
        assert!(ctd.cri().list_images().is_ok());

        // an image whose pause does not run: whole and pinned, so only --sandbox finds it
        let fake = work.path().join("fake.tar");
        run_ok(
            pausebake()
                .arg("image")
                .arg(format!(
                    "--binary=amd64={}",
                    repo().join("tests/fixtures/pause-static-amd64").display()
                ))
                .args(["--name", NAME, "--output"])
                .arg(&fake),
        );
        import_ok(&ctd, &fake, root.path(), &[]);
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(0), "{report}");
        let (code, report) = verify_sandbox(&ctd, root.path());
        assert_eq!(code, Some(3), "{report}");
        assert!(
            report.contains("FAIL sandbox: a throwaway pod sandbox did not run"),
            "{report}"
        );
        drop(ctd);

        if c.semver().0 >= 2 {
            continue;
        }
        // 1.x: a drop-in makes the running CRI use another name than the file says
        let root = tempdir();
        let conf_d = root.path().join("etc/containerd/conf.d");
        fs::create_dir_all(&conf_d).unwrap();
        fs::write(
            conf_d.join("override.toml"),
            format!(
                "version = 2\n\n{}",
                sandbox_image_toml(2, "example.invalid/other:1")
            ),
        )
        .unwrap();
        let config = format!(
            "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n\n{}",
            sandbox_image_toml(2, NAME)
        );
        let ctd = start_with(&c, root.path(), &config, StartOpts::default());
        import_ok(&ctd, &ours, root.path(), &[]);
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(3), "{report}");
        assert!(
            report.contains("the running CRI uses sandbox image example.invalid/other:1"),
            "{report}"
        );
    }
}

/// `pausebake import --address SOCKET` of a small archive: must fail within `limit` with
/// a message containing `want`.
fn refused(address: &Path, want: &str, limit: Duration) {
    let work = tempdir();
    let ours = archive(work.path(), NAME, 0);
    refused_by(
        pausebake().arg("import").arg(&ours),
        address,
        work.path(),
        want,
        limit,
    );
}

/// `CMD --address SOCKET --root ROOT`: must fail within `limit` with a message containing
/// `want`; its stderr.
fn refused_by(
    cmd: &mut Command,
    address: &Path,
    root: &Path,
    want: &str,
    limit: Duration,
) -> String {
    let start = Instant::now();
    let out = run_any(cmd.arg("--address").arg(address).arg("--root").arg(root));
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(want),
        "want {want:?}:\n{}",
        stderr(&out)
    );
    assert!(took < limit, "took {took:?}: {}", stderr(&out));
    stderr(&out)
}

#[test]
fn live_bad_sockets_fail_clearly_and_fast() {
    let dir = tempdir();
    let fast = Duration::from_secs(3);
    refused(
        &dir.path().join("none.sock"),
        "no such socket; is containerd running?",
        fast,
    );
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    refused(&file, "not a socket", fast);

    // a stale socket: nothing listens
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    refused(&stale, "connection refused", fast);

    // something that is not containerd: answers HTTP/1.1, or says nothing at all
    let http = dir.path().join("http.sock");
    let listener = UnixListener::bind(&http).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Write;
            let mut s = stream;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    refused(&http, "is this containerd's socket?", fast);
    let silent = dir.path().join("silent.sock");
    let _listener = UnixListener::bind(&silent).unwrap();
    refused(
        &silent,
        "is this containerd's socket?",
        Duration::from_secs(12),
    );

    // not root: permission denied
    if !is_root() {
        skip("the permission case needs root (it drops to nobody)");
        return;
    }
    if !have("setpriv") {
        return;
    }
    let sock = dir.path().join("root-only.sock");
    let _root_only = UnixListener::bind(&sock).unwrap();
    let bin = dir.path().join("pausebake");
    fs::copy(env!("CARGO_BIN_EXE_pausebake"), &bin).unwrap();
    let ours = archive(dir.path(), NAME, 0);
    let open = |p: &Path, mode: u32| {
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap()
    };
    open(dir.path(), 0o755);
    open(&ours, 0o644);
    open(&sock, 0o600);
    let start = Instant::now();
    let out = run_any(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .arg("import")
            .arg(&ours)
            .arg("--address")
            .arg(&sock)
            .arg("--root")
            .arg(dir.path()),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("permission denied; run as root"),
        "{}",
        stderr(&out)
    );
    assert!(start.elapsed() < fast);
}

#[test]
fn live_bake_and_import_use_a_running_containerd_that_holds_meta_db() {
    let _lock = containerd_lock();
    let work = tempdir();
    let ours = archive(work.path(), NAME, 0);
    for c in versions() {
        let root = tempdir();
        let ctd = start(&c, root.path());
        // the node's own config names the socket containerd listens on: under `[grpc]`,
        // or in 2.3's version 4 in the gRPC server plugin's table (`[grpc]` is not read there)
        let config = root.path().join("etc/containerd/config.toml");
        let text = fs::read_to_string(&config).unwrap();
        let table = if c.native_config_version() >= 4 {
            "[plugins.\"io.containerd.server.v1.grpc\"]"
        } else {
            "[grpc]"
        };
        fs::write(
            &config,
            format!(
                "{text}\n{table}\n  address = \"{}\"\n",
                ctd.address().display()
            ),
        )
        .unwrap();
        // --offline refuses, as before
        let out = run_any(
            pausebake()
                .arg("import")
                .arg(&ours)
                .args(["--offline", "--root"])
                .arg(root.path()),
        );
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(stderr(&out).contains("is locked"), "{}", stderr(&out));

        let out = run_ok(
            pausebake()
                .args(["bake", "--archive"])
                .arg(&ours)
                .args(["--containerd-version", &c.version, "--name", NAME, "--root"])
                .arg(root.path()),
        );
        assert!(
            stderr(&out)
                .contains("meta.db is locked by a running containerd: writing through its API"),
            "{}",
            stderr(&out)
        );
        let text = stdout(&out);
        assert!(text.contains("verify     ok"), "{text}");
        assert!(text.contains("content and 1 image records new"), "{text}");
        let cri = ctd.cri().wait_image(NAME, Duration::from_secs(5)).unwrap();
        assert!(cri.is_some(), "CRI does not know {NAME}");
        sandbox_ready(&ctd, "auto");

        // configure on the live node says whether containerd must be restarted
        let out = run_ok(
            pausebake()
                .args([
                    "configure",
                    "--sandbox-image",
                    "example.invalid/p:2",
                    "--containerd-version",
                    &c.version,
                    "--address",
                ])
                .arg(ctd.address())
                .arg("--root")
                .arg(root.path()),
        );
        let text = stdout(&out);
        if c.semver().0 >= 2 {
            assert!(
                text.contains("does not report its running sandbox image"),
                "{text}"
            );
        } else {
            assert!(
                text.contains(&format!(
                    "uses {NAME}: restart containerd to use example.invalid/p:2"
                )),
                "{text}"
            );
        }
    }
}

/// Whether namespace `ns` holds `NAME` only whole: no record, or a record whose every blob
/// is present (what `verify --address` reads through the API). Returns whether it is there.
fn whole_or_absent(ctd: &Running, root: &Path, ns: &str) -> bool {
    let (code, report) = verify_with(ctd, root, &["--namespace", ns]);
    if report.contains(&format!("no image named {NAME} in namespace {ns}")) {
        return false;
    }
    assert_eq!(code, Some(0), "a partial image in {ns}:\n{report}");
    assert!(report.contains("ok   content: manifest"), "{report}");
    true
}

/// Every lease in `ns` carries containerd.io/gc.expire (a killed import's lease expires).
fn leases_expire(ctd: &Running, ns: &str) {
    let out = ctd.ctr_ok(&["-n", ns, "leases", "ls"]);
    for line in stdout(&out).lines().skip(1) {
        assert!(
            line.contains("containerd.io/gc.expire="),
            "a lease that never expires: {line}"
        );
    }
}

#[test]
fn live_killed_imports_leave_whole_images_or_none() {
    let _lock = containerd_lock();
    let work = tempdir();
    let ours = archive(work.path(), NAME, 0);
    for c in versions() {
        let root = tempdir();
        let mut ctd = start(&c, root.path());
        let cmd = |ns: &str, address: &Path| {
            let mut cmd = pausebake();
            cmd.arg("import")
                .arg(&ours)
                .args(["--namespace", ns, "--address"])
                .arg(address)
                .arg("--root")
                .arg(root.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            cmd
        };
        // how long a whole import takes here, then kills spread over that time
        let start_time = Instant::now();
        run_ok(&mut cmd("whole", ctd.address()));
        let whole = start_time.elapsed();
        let steps = 12u32;
        let mut there = 0;
        for i in 0..steps {
            let ns = format!("kill-{i}");
            let mut child = cmd(&ns, ctd.address()).spawn().unwrap();
            std::thread::sleep(whole * i / steps);
            let _ = child.kill();
            let _ = child.wait();
            there += usize::from(whole_or_absent(&ctd, root.path(), &ns));
            leases_expire(&ctd, &ns);
            run_ok(&mut cmd(&ns, ctd.address()));
            assert!(whole_or_absent(&ctd, root.path(), &ns));
        }
        eprintln!(
            "containerd {}: {steps} imports killed over {whole:?}; {there} had finished",
            c.version
        );
        // and deterministically: SIGKILL just before the 1st, 2nd, ... write to the socket
        // (strace's fault injection), until an import runs through
        if have("strace") {
            let mut kills = 0;
            for syscall in ["write", "writev", "sendmsg"] {
                for n in 1.. {
                    let ns = format!("strace-{syscall}-{n}");
                    let import = cmd(&ns, ctd.address());
                    let out = run_any(
                        Command::new("strace")
                            .args(["-f", "-o", "/dev/null", "-e"])
                            .arg(format!("trace={syscall}"))
                            .arg("-e")
                            .arg(format!("inject={syscall}:signal=KILL:when={n}"))
                            .arg(PAUSEBAKE)
                            .args(import.get_args()),
                    );
                    if out.status.success() {
                        break;
                    }
                    kills += 1;
                    whole_or_absent(&ctd, root.path(), &ns);
                    leases_expire(&ctd, &ns);
                    run_ok(&mut cmd(&ns, ctd.address()));
                    assert!(whole_or_absent(&ctd, root.path(), &ns));
                }
            }
            eprintln!(
                "containerd {}: killed before {kills} socket writes",
                c.version
            );
            assert!(kills > 5, "only {kills} kill points: is strace injecting?");
        }

        // containerd killed mid-import: the import fails, a restarted containerd holds the
        // image whole or not at all, and a rerun succeeds
        let mut child = cmd("k8s.io", ctd.address()).spawn().unwrap();
        std::thread::sleep(whole / 3);
        run_any(Command::new("kill").args(["-KILL", &ctd.pid().to_string()]));
        let status = child.wait().unwrap();
        ctd.stop();
        let ctd = start(&c, root.path());
        // an error exit (1), never a panic or a hang
        assert!(status.success() || status.code() == Some(1), "{status}");
        let finished = whole_or_absent(&ctd, root.path(), "k8s.io");
        eprintln!(
            "containerd {} killed mid-import: image there: {finished}",
            c.version
        );
        run_ok(&mut cmd("k8s.io", ctd.address()));
        drop(ctd);

        // a restart and a synchronous GC keep the pinned image
        let ctd = start(&c, root.path());
        gc(&ctd);
        assert!(whole_or_absent(&ctd, root.path(), "k8s.io"));
        sandbox_ready(&ctd, "after-gc");
        assert_eq!(ctd.pull_attempts(), Vec::<String>::new());
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(0), "{report}");
    }
}

#[test]
fn live_concurrent_imports_and_sandboxes_lose_nothing() {
    let _lock = containerd_lock();
    let work = tempdir();
    let ours = archive(work.path(), NAME, 0);
    let other = archive(work.path(), "example.invalid/other:1", 86400);
    for c in versions() {
        let root = tempdir();
        let ctd = start(&c, root.path());
        let spawn = |archive: &Path, extra: &[&str]| {
            pausebake()
                .arg("import")
                .arg(archive)
                .arg("--address")
                .arg(ctd.address())
                .arg("--root")
                .arg(root.path())
                .args(extra)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        // the same image twice and another image, all at once
        let children = [
            spawn(&ours, &[]),
            spawn(&ours, &[]),
            spawn(&other, &["--name", "example.invalid/again:1"]),
        ];
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
        }
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(0), "{report}");
        let lines = images(&ctd, "k8s.io");
        for name in ["example.invalid/other:1", "example.invalid/again:1"] {
            assert!(line_of(&lines, name).is_some(), "{name} missing: {lines:?}");
        }

        // imports while a CRI client creates sandboxes
        let address = ctd.address().to_path_buf();
        let logs = tempdir();
        let log_dir = logs.path().to_path_buf();
        let sandboxes = std::thread::spawn(move || {
            let mut cri = crate::cri::Cri::connect(&address).unwrap();
            (0..3)
                .map(|i| {
                    let (id, state) = cri
                        .run_pod_sandbox(&format!("busy-{i}"), true, &log_dir)
                        .unwrap();
                    cri.stop_pod_sandbox(&id).unwrap();
                    cri.remove_pod_sandbox(&id).unwrap();
                    state
                })
                .collect::<Vec<_>>()
        });
        for i in 0..3 {
            let name = format!("example.invalid/during:{i}");
            let out = spawn(&other, &["--name", &name])
                .wait_with_output()
                .unwrap();
            assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
        }
        let states = sandboxes.join().expect("the sandbox thread");
        assert_eq!(
            states,
            vec![PodSandboxState::SandboxReady; 3],
            "{}",
            ctd.log()
        );
        let lines = images(&ctd, "k8s.io");
        for i in 0..3 {
            let name = format!("example.invalid/during:{i}");
            assert!(
                line_of(&lines, &name).is_some(),
                "{name} missing: {lines:?}"
            );
        }
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(0), "{report}");
        assert_eq!(ctd.pull_attempts(), Vec::<String>::new());
    }
}

#[test]
fn live_a_containerd_without_cri_is_refused_clearly() {
    let Some(c) = versions().into_iter().next() else {
        return;
    };
    let _lock = containerd_lock();
    let root = tempdir();
    let run = tempdir();
    let config = crate::containerd::effective_config(
        &c,
        root.path(),
        run.path(),
        "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
    );
    let config_path = run.path().join("config.toml");
    fs::write(&config_path, config).unwrap();
    let socket = run.path().join("containerd.sock");
    let log = fs::File::create(run.path().join("containerd.log")).unwrap();
    // as the harness starts it (private /run, no network), but the harness waits for CRI
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--net",
            "--",
            "sh",
            "-c",
        ])
        .arg(r#"mount -t tmpfs -o mode=0755 tmpfs /run && exec "$0" --config "$1""#)
        .arg(c.bin("containerd"))
        .arg(&config_path)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !run_any(
        Command::new(c.bin("ctr"))
            .arg("--address")
            .arg(&socket)
            .arg("version"),
    )
    .status
    .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "containerd did not start:\n{}",
            fs::read_to_string(run.path().join("containerd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let work = tempdir();
    let ours = archive(work.path(), NAME, 0);
    let start = Instant::now();
    let out = run_any(
        pausebake()
            .arg("import")
            .arg(&ours)
            .arg("--address")
            .arg(&socket)
            .arg("--root")
            .arg(root.path()),
    );
    let took = start.elapsed();
    // nothing is left: the check comes before any blob, and the lease asked for while
    // connecting goes with the refusal
    let ctr = |args: &[&str]| {
        run_any(
            Command::new(c.bin("ctr"))
                .arg("--address")
                .arg(&socket)
                .args(["-n", "k8s.io"])
                .args(args),
        )
    };
    let content = ctr(&["content", "ls", "-q"]);
    let leases = ctr(&["leases", "ls", "-q"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("has its CRI plugin disabled"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(content.status.success(), "{}", stderr(&content));
    assert_eq!(stdout(&content), "");
    assert!(leases.status.success(), "{}", stderr(&leases));
    assert_eq!(stdout(&leases), "");
}

/// Debian bullseye's own containerd 1.4.13, chrooted in its root as the node runs it (the
/// root's config and store, the node's /run a directory of the test): its version service
/// answers `1.4.13~ds1`, CRI v1 answers Unimplemented (1.4 serves only v1alpha2).
/// `import`, `verify` and `bake --address` refuse it within the connect timeouts, naming the
/// version and what to do, and never take the missing CRI v1 for a disabled plugin.
#[test]
fn live_a_containerd_too_old_is_refused_clearly() {
    if !(have("unshare") && have("ip")) {
        return;
    }
    let dir = tempdir();
    let Some(root) = bullseye_root(dir.path()) else {
        return;
    };
    let run = dir.path().join("run");
    fs::create_dir(&run).unwrap();
    let ctd = Chrooted::start(&root, &run, &dir.path().join("containerd.log"));
    // The root's config names no [grpc] address: the default, in the node's /run.
    let socket = run.join("containerd/containerd.sock");
    // The root's own ctr, from outside.
    let ctr = |args: &[&str]| {
        run_any(
            Command::new(root.join("usr/bin/ctr"))
                .arg("--address")
                .arg(&socket)
                .args(args),
        )
    };
    let started = Instant::now();
    let version = loop {
        let out = ctr(&["version"]);
        if out.status.success() {
            break stdout(&out);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "containerd did not start:\n{}\n{}",
            stderr(&out),
            ctd.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let server = version.split_once("Server:").map_or("", |s| s.1);
    assert!(server.contains("Version:  1.4.13~ds1"), "{version}");
    let status = crate::cri::Cri::connect(&socket)
        .unwrap()
        .version()
        .expect_err("containerd 1.4 answered CRI v1");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status}");

    let live = format!(
        "containerd at {} is 1.4.13~ds1, too old: pausebake needs containerd 1.6.0 or newer, live or --offline",
        socket.display()
    );
    // bake reads the root's files before it connects, and finds the same containerd there
    let files = "containerd 1.4.13 is too old: pausebake needs containerd 1.6 or newer".to_string();
    let mut import = pausebake();
    import.arg("import").arg(archive(dir.path(), NAME, 0));
    for (cmd, want) in [
        (&mut import, &live),
        (pausebake().arg("verify"), &live),
        (pausebake().args(["bake", "--name", NAME]), &files),
    ] {
        // the version is the first call: one connect timeout (5 s) is all it may wait
        let err = refused_by(cmd, &socket, &root, want, Duration::from_secs(10));
        assert!(err.contains("; upgrade containerd"), "{err}");
        assert!(!err.contains("CRI"), "{err}");
    }
    // nothing is left: the refusal comes before any blob, and the lease asked for while
    // connecting goes with it
    for what in ["content", "leases"] {
        let left = ctr(&["-n", "k8s.io", what, "ls", "-q"]);
        assert!(left.status.success(), "{}", stderr(&left));
        assert_eq!(stdout(&left), "", "{what}");
    }
}

/// A root whose `meta.db` is held by another process (here: this test) while the socket its
/// config names answers with some containerd (another root's, as the host's would for a
/// mounted image): that containerd is not the root's, so nothing goes through it, and the
/// locked `meta.db` is refused as offline.
#[test]
fn live_a_socket_that_is_not_the_roots_containerd_is_not_written_through() {
    let Some(c) = versions().into_iter().next() else {
        return;
    };
    let _lock = containerd_lock();
    let work = tempdir();
    let ours = archive(work.path(), NAME, 0);
    let elsewhere = tempdir();
    let ctd = start(&c, elsewhere.path());
    let before = images(&ctd, "k8s.io");

    let root = tempdir();
    run_ok(
        pausebake()
            .arg("import")
            .arg(&ours)
            .arg("--root")
            .arg(root.path()),
    );
    let etc = root.path().join("etc/containerd");
    fs::create_dir_all(&etc).unwrap();
    fs::write(
        etc.join("config.toml"),
        format!("[grpc]\n  address = \"{}\"\n", ctd.address().display()),
    )
    .unwrap();
    let db = root
        .path()
        .join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db");
    let held = fs::File::open(&db).unwrap();
    held.lock().unwrap();
    let out = run_any(
        pausebake()
            .arg("import")
            .arg(&ours)
            .args(["--name", "example.invalid/not-here:1", "--root"])
            .arg(root.path()),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "meta.db is locked by process {}, but the containerd at {} is process {}: not this root's containerd",
            std::process::id(),
            ctd.address().display(),
            ctd.pid()
        )),
        "{err}"
    );
    assert!(
        err.contains("is locked: containerd appears to be running"),
        "{err}"
    );
    assert_eq!(images(&ctd, "k8s.io"), before);
}

/// What containerd holds in namespace k8s.io as `ctr` lists it: image records, content
/// (digest, size and labels; not the age, which moves on by itself) and leases, each label
/// list sorted (`ctr` prints Go's map order).
fn holdings(ctd: &Running) -> Vec<Vec<String>> {
    let list = |what: &str, keep: fn(&[&str]) -> Vec<String>| {
        let out = ctd.ctr_ok(&["-n", "k8s.io", what, "ls"]);
        let mut lines: Vec<String> = stdout(&out)
            .lines()
            .skip(1)
            .map(|l| {
                let mut fields = keep(&l.split_whitespace().collect::<Vec<_>>());
                if let Some(labels) = fields.last_mut() {
                    let mut each: Vec<&str> = labels.split(',').collect();
                    each.sort();
                    *labels = each.join(",");
                }
                fields.join(" ")
            })
            .collect();
        lines.sort();
        lines
    };
    let all = |f: &[&str]| f.iter().map(|s| s.to_string()).collect();
    vec![
        list("images", all),
        list("content", |f| {
            [f[0], f[1], f[f.len() - 1]].map(String::from).to_vec()
        }),
        list("leases", all),
    ]
}

/// `import ARCHIVE --dry-run --json --address SOCKET --root ROOT`'s import section; checks
/// that containerd holds exactly what it held before.
fn dry_import(ctd: &Running, archive: &Path, root: &Path) -> serde_json::Value {
    let before = holdings(ctd);
    let text = import_ok(ctd, archive, root, &["--dry-run", "--json"]);
    assert_eq!(
        holdings(ctd),
        before,
        "containerd {}: the dry run changed it",
        ctd.containerd.version
    );
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    plan["import"].clone()
}

/// `import ARCHIVE --json --address SOCKET --root ROOT`: the import report.
fn real_import(ctd: &Running, archive: &Path, root: &Path) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_str(&import_ok(ctd, archive, root, &["--json"])).unwrap();
    report["import"].clone()
}

/// `value` as a list of strings (a JSON array of them).
fn strings(value: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(value.clone()).unwrap()
}

/// `--dry-run` with `--address`: the import part of the plan is what the running containerd
/// answers to read-only calls (content `Info`, images `Get`), the same report the real import
/// then gives, for a fresh containerd, an unchanged one and a re-pointed name; nothing is
/// created in containerd (records, content, labels, leases) and no file is touched.
#[test]
fn live_dry_run_prints_the_plan_and_writes_nothing() {
    let _lock = containerd_lock();
    let work = tempdir();
    let ours = archive(work.path(), NAME, 0);
    let newer = archive(work.path(), NAME, 172800);
    for c in versions() {
        let root = tempdir();
        let ctd = start(&c, root.path());
        let before = holdings(&ctd);
        let config_path = root.path().join("etc/containerd/config.toml");
        let config = fs::read(&config_path).unwrap();
        let dry = |args: &[&str]| {
            run_ok(
                pausebake()
                    .args(args)
                    .arg(&ours)
                    .args(["--dry-run", "--address"])
                    .arg(ctd.address())
                    .arg("--root")
                    .arg(root.path()),
            )
        };
        let text = stdout(&dry(&["import"]));
        assert!(
            text.starts_with("import --dry-run (nothing written)"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "through the running containerd at {}",
                ctd.address().display()
            )),
            "{text}"
        );
        let out = dry(&["bake", "--json", "--name", NAME, "--archive"]);
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["dry_run"], true);
        assert_eq!(json["verify"], serde_json::Value::Null);
        let source = json["containerd_version_source"].as_str().unwrap();
        assert!(
            source.starts_with("the running containerd ")
                && source.ends_with(&ctd.address().display().to_string()),
            "{source}"
        );
        assert_eq!(holdings(&ctd), before);
        assert_eq!(fs::read(&config_path).unwrap(), config);

        // fresh: every blob and the record to write, exactly as the import then reports
        let planned = dry_import(&ctd, &ours, root.path());
        assert_eq!(json["import"], planned, "bake and import plan alike");
        assert_eq!(
            planned["meta_db"],
            format!("containerd {} at {}", c.version, ctd.address().display())
        );
        assert_eq!(planned["address"], ctd.address().display().to_string());
        assert_eq!(planned["unchanged"], false);
        assert_eq!(planned["blobs_present"], 0);
        let written = strings(&planned["blobs_written"]);
        assert!(!written.is_empty(), "{planned:#}");
        let mut changes: Vec<String> = written
            .iter()
            .map(|d| format!("content {d} (new)"))
            .collect();
        changes.push(format!("image {NAME} (new)"));
        let mut got = strings(&planned["records_changed"]);
        got.sort();
        changes.sort();
        assert_eq!(got, changes);
        let done = real_import(&ctd, &ours, root.path());
        assert_eq!(planned, done, "containerd {}", c.version);

        // imported: nothing to do, and the real run agrees
        let planned = dry_import(&ctd, &ours, root.path());
        assert_eq!(planned["unchanged"], true, "{planned:#}");
        assert_eq!(planned["blobs_present"], written.len());
        assert_eq!(strings(&planned["records_changed"]), Vec::<String>::new());
        assert_eq!(planned, real_import(&ctd, &ours, root.path()));

        // a present blob that lost its GC labels: they are added back, and only they (the
        // others are GC roots meanwhile, or containerd's GC would take what the lost labels
        // reached)
        let target = done["target"].as_str().unwrap().to_string();
        let labelled = holdings(&ctd);
        let rooted = |value: &str| {
            for d in written.iter().filter(|d| **d != target) {
                let label = format!("containerd.io/gc.root={value}");
                ctd.ctr_ok(&["-n", "k8s.io", "content", "label", d, &label]);
            }
        };
        rooted("test");
        let line = labelled[1].iter().find(|l| l.starts_with(&target)).unwrap();
        let cleared: Vec<String> = line
            .rsplit(' ')
            .next()
            .unwrap()
            .split(',')
            .filter(|label| label.starts_with("containerd.io/gc.ref."))
            .map(|label| format!("{}=", label.split('=').next().unwrap()))
            .collect();
        assert!(!cleared.is_empty(), "{line}");
        let mut args = vec!["-n", "k8s.io", "content", "label", &target];
        args.extend(cleared.iter().map(String::as_str));
        ctd.ctr_ok(&args);
        assert_ne!(holdings(&ctd), labelled);
        let planned = dry_import(&ctd, &ours, root.path());
        assert_eq!(planned["unchanged"], false, "{planned:#}");
        assert_eq!(planned["blobs_present"], written.len());
        assert_eq!(
            strings(&planned["records_changed"]),
            [format!("content {target} (updated)")]
        );
        assert_eq!(planned, real_import(&ctd, &ours, root.path()));
        rooted("");
        assert_eq!(holdings(&ctd), labelled);

        // another epoch under the same name: its blobs new, the record re-pointed
        let planned = dry_import(&ctd, &newer, root.path());
        assert_eq!(planned["unchanged"], false);
        let written = strings(&planned["blobs_written"]);
        assert!(!written.is_empty(), "{planned:#}");
        let changes = strings(&planned["records_changed"]);
        assert_eq!(changes.last(), Some(&format!("image {NAME} (updated)")));
        for d in &written {
            assert!(changes.contains(&format!("content {d} (new)")), "{d}");
        }
        let done = real_import(&ctd, &newer, root.path());
        assert_eq!(planned, done, "containerd {}", c.version);
        let line = line_of(&images(&ctd, "k8s.io"), NAME).cloned().unwrap();
        assert!(line.contains(done["target"].as_str().unwrap()), "{line}");
        assert_eq!(fs::read(&config_path).unwrap(), config);
    }
}

/// The running containerd, not a root's `meta.db`, decides a live dry run: `--root` names a
/// root whose files say one thing while the containerd at `--address` holds another.
#[test]
fn live_dry_run_believes_containerd_over_the_roots_meta_db() {
    let _lock = containerd_lock();
    let work = tempdir();
    let ours = archive(work.path(), NAME, 0);
    let newer = archive(work.path(), NAME, 172800);
    for c in versions() {
        let root = tempdir();
        let ctd = start(&c, root.path());
        real_import(&ctd, &newer, root.path());

        // an empty root: its files say everything is to write; containerd has it all
        let empty = tempdir();
        let offline = |root: &Path, archive: &Path| -> serde_json::Value {
            let out = run_ok(
                pausebake()
                    .arg("import")
                    .arg(archive)
                    .args(["--dry-run", "--json", "--root"])
                    .arg(root),
            );
            serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()["import"].clone()
        };
        assert_eq!(offline(empty.path(), &newer)["unchanged"], false);
        let planned = dry_import(&ctd, &newer, empty.path());
        assert_eq!(planned["unchanged"], true, "{planned:#}");
        assert_eq!(planned, real_import(&ctd, &newer, empty.path()));

        // a root whose meta.db points the name at the epoch-0 image, while the running
        // containerd points it at the newer one (and, after a GC, lacks the older blobs)
        let other = tempdir();
        run_ok(
            pausebake()
                .arg("import")
                .arg(&ours)
                .arg("--root")
                .arg(other.path()),
        );
        assert_eq!(offline(other.path(), &ours)["unchanged"], true);
        gc(&ctd);
        let planned = dry_import(&ctd, &ours, other.path());
        assert_eq!(planned["unchanged"], false, "{planned:#}");
        assert!(
            !strings(&planned["blobs_written"]).is_empty(),
            "{planned:#}"
        );
        let changes = strings(&planned["records_changed"]);
        assert_eq!(changes.last(), Some(&format!("image {NAME} (updated)")));
        assert_eq!(planned, real_import(&ctd, &ours, other.path()));
        let line = line_of(&images(&ctd, "k8s.io"), NAME).cloned().unwrap();
        assert!(line.contains(planned["target"].as_str().unwrap()), "{line}");
    }
}

/// `pausebake configure ARGS --address SOCKET --root ROOT`, its exit code and stdout + stderr.
fn configure(ctd: &Running, root: &Path, args: &[&str]) -> (Option<i32>, String) {
    against(ctd, "configure", root, args)
}

/// `configure --address` tells whether the running containerd must be restarted (1.x: CRI
/// `Status`; 2.x: a config file changed after it started) and restarts it only with
/// `--restart`; afterwards the running containerd uses the new name, a sandbox from it is
/// READY with no network, and a second `--restart` does nothing.
#[test]
fn live_configure_restart_makes_the_running_containerd_use_the_new_name() {
    let _lock = containerd_lock();
    let work = tempdir();
    const MIRROR: &str = "my.mirror.example/pause:3.10";
    let ours = archive(work.path(), MIRROR, 0);
    for c in versions() {
        let root = tempdir();
        let v = c.native_config_version();
        let config = format!("version = {v}\n\n{}", test_vm_toml(v, work.path(), NAME));
        let supervised = StartOpts {
            supervised: true,
            ..Default::default()
        };
        let ctd = start_with(&c, root.path(), &config, supervised);
        import_ok(&ctd, &ours, root.path(), &[]);
        // a file changed within a second of the start may have been read by containerd
        std::thread::sleep(Duration::from_millis(1200));
        let (code, text) = configure(&ctd, root.path(), &["--sandbox-image", MIRROR]);
        assert_eq!(code, Some(0), "{text}");
        if c.semver().0 >= 2 {
            assert!(text.contains("changed after containerd (pid"), "{text}");
        } else {
            assert!(
                text.contains(&format!("uses {NAME}: restart containerd to use {MIRROR}")),
                "{text}"
            );
        }
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(3), "containerd {}: {report}", c.version);

        // --dry-run --restart says what it would do and restarts nothing
        let before = stdout(&ctd.ctr_ok(&["version"]));
        let (code, text) = configure(
            &ctd,
            root.path(),
            &["--dry-run", "--restart", &ctd.restart_command()],
        );
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.contains("would restart containerd with `pkill"),
            "{text}"
        );
        let (code, _) = verify(&ctd, root.path());
        assert_eq!(
            code,
            Some(3),
            "the dry run restarted containerd {}",
            c.version
        );
        // a restart command that fails is an error naming it and what it said
        let (code, text) = configure(
            &ctd,
            root.path(),
            &["--restart", "echo no unit >&2; exit 7"],
        );
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains("restarting containerd: running sh -c echo no unit >&2; exit 7: exit status: 7: no unit"),
            "{text}"
        );

        let (code, text) = configure(
            &ctd,
            root.path(),
            &[
                "--json",
                "--sandbox-image",
                MIRROR,
                "--restart",
                &ctd.restart_command(),
            ],
        );
        assert_eq!(code, Some(0), "{text}\n{}", ctd.log());
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["running"]["restart_needed"], false, "{text}");
        assert_eq!(
            json["running"]["restarted_with"].as_str(),
            Some(ctd.restart_command().as_str())
        );
        assert!(
            json["running"]["message"]
                .as_str()
                .unwrap()
                .starts_with("restarted containerd with `pkill"),
            "{text}"
        );
        assert_ne!(stdout(&ctd.ctr_ok(&["version"])), "", "{before}");
        let (code, report) = verify_sandbox(&ctd, root.path());
        assert_eq!(code, Some(0), "containerd {}: {report}", c.version);
        // CRI itself now takes MIRROR as the sandbox image: found locally, no pull
        sandbox_ready(&ctd, "restarted");
        assert!(ctd.pull_attempts().is_empty(), "{:?}", ctd.pull_attempts());

        // nothing left to do: no restart
        let (code, text) = configure(
            &ctd,
            root.path(),
            &[
                "--sandbox-image",
                MIRROR,
                "--restart",
                &ctd.restart_command(),
            ],
        );
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.contains("no restart needed (so not restarted)"),
            "{text}"
        );
    }
}

/// 2.x: a containerd started with another config than the root's (here the same file with
/// another sandbox image merged in) is caught by its own `config dump`.
#[test]
fn live_verify_compares_the_files_with_containerds_own_config_dump() {
    let _lock = containerd_lock();
    for c in versions().into_iter().filter(|c| c.semver().0 >= 2) {
        let root = tempdir();
        let config = format!("version = 3\n\n{}", sandbox_image_toml(3, NAME));
        let other = StartOpts {
            config_extra: sandbox_image_toml(3, "example.invalid/other:1"),
            ..Default::default()
        };
        let ctd = start_with(&c, root.path(), &config, other);
        let (code, report) = verify(&ctd, root.path());
        assert_eq!(code, Some(3), "{report}");
        assert!(
            report.contains(&format!(
                "was started with --config {}, whose own `config dump` gives sandbox image example.invalid/other:1, but the root's config files say {NAME}",
                ctd.config_path().display()
            )),
            "{report}"
        );
    }
}
