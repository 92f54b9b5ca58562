//! `pausebake image`: pinned digests from committed fake binaries, byte-identical output
//! across runs, refusal of non-static binaries, and the real clients that must accept the
//! output (skopeo, umoci, and ctr on every containerd the harness provides).
//!
//! The fixtures in tests/fixtures are tiny hand-made ELF headers written once by
//! `make-fake-elf.py`: static-looking to pausebake's check, not runnable. The image that
//! `ctr run` starts is built from a pause that pausebake compiles for the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use crate::harness::*;

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// `pausebake image` with the fake amd64 (and arm64, if `multi`) binaries, epoch 0 whatever
/// the caller's environment says.
fn image_cmd(multi: bool) -> Command {
    let mut cmd = pausebake();
    cmd.env_remove("SOURCE_DATE_EPOCH")
        .arg("image")
        .arg(format!(
            "--binary=amd64={}",
            fixture("pause-static-amd64").display()
        ));
    if multi {
        cmd.arg(format!(
            "--binary=arm64={}",
            fixture("pause-static-arm64").display()
        ));
    }
    cmd
}

const AMD64_GZIP: &str = "sha256:bc2c46799f21174d4bb5ea44f0aa886f6d711aa7335445e25bd63511262d6822";

/// The exact digests printed for images of the committed fixtures. A change here changes
/// every user's image digest: update only on purpose.
#[test]
fn digests_are_pinned() {
    let dir = tempdir();
    let out = run_ok(
        image_cmd(true)
            .arg("--output")
            .arg(dir.path().join("multi.tar")),
    );
    assert_eq!(
        stdout(&out),
        "sha256:ed00a011f4abb272c8eb3dfeba77f3cb3ad8fbd23e8170d0f68db21d26b6bb8c\n\
         \x20 linux/amd64 sha256:bc2c46799f21174d4bb5ea44f0aa886f6d711aa7335445e25bd63511262d6822 (915 bytes)\n\
         \x20 linux/arm64 sha256:2292580758bc3fd195bb0bd7542c02ff14aa25b3933a2e1f76be49fb69246a87 (916 bytes)\n"
    );
    let out = run_ok(
        image_cmd(false)
            .args(["--compression", "none", "--json", "--output"])
            .arg(dir.path().join("plain.tar")),
    );
    let path = dir.path().join("plain.tar").display().to_string();
    // the document, whatever its layout (cli.rs checks every command pretty-prints)
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(
        json(&stdout(&out)),
        json(&format!(
            concat!(
                r#"{{"digest":"sha256:8dcf2d60ee707e94830b1c7919d23b50d392e6b21fc3adfdcec17adbdd96d49e","format":"oci-archive","#,
                r#""mediaType":"application/vnd.oci.image.manifest.v1+json","names":["registry.k8s.io/pause:3.10"],"#,
                r#""path":"{}","platforms":[{{"config":"sha256:0560542d2833a959e473a56b81a97145c730c4954e14c277497785c02b04361b","#,
                r#""layers":["sha256:e8b960cd2145b796821e2a48bd07cfa459b560ad7f32214317f06e7834e5db72"],"#,
                r#""manifest":"sha256:8dcf2d60ee707e94830b1c7919d23b50d392e6b21fc3adfdcec17adbdd96d49e","#,
                r#""platform":"linux/amd64","size":2788}}]}}"#,
                "\n"
            ),
            path
        ))
    );
    // The epoch changes the digest; the format does not.
    let out = run_ok(
        image_cmd(false)
            .args([
                "--source-date-epoch",
                "1700000000",
                "--format",
                "oci-dir",
                "--output",
            ])
            .arg(dir.path().join("later")),
    );
    assert_ne!(stdout(&out).lines().next(), Some(AMD64_GZIP));
    for format in ["oci-archive", "oci-dir", "docker-archive"] {
        let out = run_ok(
            image_cmd(false)
                .args(["--format", format, "--output"])
                .arg(dir.path().join(format)),
        );
        assert_eq!(stdout(&out).lines().next(), Some(AMD64_GZIP), "{format}");
    }
}

/// Every file under `dir` (or `dir` itself if a file), by relative path, with its bytes.
fn contents(path: &Path) -> Vec<(String, Vec<u8>)> {
    if path.is_file() {
        return vec![(String::new(), fs::read(path).unwrap())];
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(path).unwrap().display().to_string();
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

const FORMATS: [&str; 3] = ["oci-archive", "oci-dir", "docker-archive"];

/// Writes every format into `dir` with a relative `--output`, as a user in that directory
/// would. The docker archive holds one platform, so it gets amd64 only.
fn write_all_formats(dir: &Path) {
    for format in FORMATS {
        run_ok(
            image_cmd(format != "docker-archive")
                .current_dir(dir)
                .args(["--format", format, "--output", format]),
        );
    }
}

/// Same inputs, different directories, more than a second apart (bootc's 1100 ms, to flush
/// out mtimes): byte-identical output in every format.
#[test]
fn output_is_byte_identical_across_runs() {
    let (a, b) = (tempdir(), tempdir());
    write_all_formats(a.path());
    sleep(Duration::from_millis(1100));
    write_all_formats(b.path());
    for format in FORMATS {
        let (x, y) = (
            contents(&a.path().join(format)),
            contents(&b.path().join(format)),
        );
        assert!(!x.is_empty(), "{format}");
        assert!(x == y, "{format}: outputs differ between runs");
    }
    // Nothing but the outputs: no temporary files left behind.
    let mut names: Vec<_> = fs::read_dir(b.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["docker-archive", "oci-archive", "oci-dir"]);
}

/// An architecture given by --binary is not compiled, even when --arch names it too.
#[test]
fn binary_replaces_compiling_that_arch() {
    let dir = tempdir();
    let out = run_ok(
        image_cmd(false)
            .args(["--arch", "amd64", "--output"])
            .arg(dir.path().join("x.tar")),
    );
    assert_eq!(first_line(&out), AMD64_GZIP);
    // A name CRI could not match is refused before anything is written.
    let out = run_any(
        image_cmd(false)
            .args(["--name", "pause:3.10", "--output"])
            .arg(dir.path().join("y.tar")),
    );
    assert_eq!(
        stderr(&out),
        "pausebake: error: image name \"pause:3.10\" is not a fully qualified reference; give \
         one with a registry, like registry.k8s.io/pause:3.10\n"
    );
    assert!(!dir.path().join("y.tar").exists());
}

#[test]
fn dynamic_binary_is_refused() {
    let dir = tempdir();
    let out = run_any(
        pausebake()
            .arg("image")
            .arg(format!(
                "--binary=amd64={}",
                fixture("pause-dynamic-amd64").display()
            ))
            .arg("--output")
            .arg(dir.path().join("x.tar")),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "pausebake: error: checking {}: dynamically linked (has a program interpreter); \
             pause must be static\n",
            fixture("pause-dynamic-amd64").display()
        )
    );
    assert!(!dir.path().join("x.tar").exists());
    // The wrong architecture is refused too.
    let out = run_any(
        pausebake()
            .arg("image")
            .arg(format!(
                "--binary=arm64={}",
                fixture("pause-static-amd64").display()
            ))
            .arg("--output")
            .arg(dir.path().join("x.tar")),
    );
    assert!(
        stderr(&out).ends_with("built for amd64, not arm64\n"),
        "{}",
        stderr(&out)
    );
}

fn first_line(out: &std::process::Output) -> String {
    stdout(out).lines().next().unwrap_or_default().to_string()
}

/// skopeo reads the OCI archive, reports our digest and config, and copies it (checking
/// every blob's digest as it goes) into an OCI layout holding exactly our blobs; it reads
/// the docker archive too.
#[test]
fn skopeo_accepts_the_archives() {
    if !have("skopeo") {
        return;
    }
    let dir = tempdir();
    let d = |name: &str| dir.path().join(name).display().to_string();
    let out = run_ok(image_cmd(false).args(["--output", &d("one.tar")]));
    let digest = first_line(&out);
    let inspect: serde_json::Value = serde_json::from_slice(
        &skopeo(&["inspect", &format!("oci-archive:{}", d("one.tar"))]).stdout,
    )
    .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Created"], "1970-01-01T00:00:00Z");
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(
        &skopeo(&[
            "inspect",
            "--config",
            &format!("oci-archive:{}", d("one.tar")),
        ])
        .stdout,
    )
    .unwrap();
    let runtime = config.config().clone().unwrap();
    assert_eq!(runtime.entrypoint().clone().unwrap(), ["/pause"]);
    assert_eq!(runtime.user().as_deref(), Some("65535:65535"));
    assert_eq!(runtime.working_dir().as_deref(), Some("/"));

    // copy: skopeo verifies each blob against its descriptor while copying.
    run_ok(image_cmd(false).args(["--format", "oci-dir", "--output", &d("ours")]));
    skopeo(&[
        "copy",
        "--insecure-policy",
        &format!("oci-archive:{}", d("one.tar")),
        &format!("oci:{}:3.10", d("copy")),
    ]);
    assert!(contents(&dir.path().join("ours/blobs")) == contents(&dir.path().join("copy/blobs")));

    // Multi-platform: the index survives a copy of all platforms byte for byte.
    let out = run_ok(image_cmd(true).args(["--output", &d("multi.tar")]));
    let index = first_line(&out);
    skopeo(&[
        "copy",
        "--insecure-policy",
        "--all",
        &format!("oci-archive:{}", d("multi.tar")),
        &format!("oci:{}:3.10", d("copym")),
    ]);
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:3.10", d("copym"))]).stdout;
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw)),
        index,
        "skopeo's copy of the index differs"
    );

    // The docker archive: skopeo reads manifest.json and finds the same config.
    run_ok(image_cmd(false).args(["--format", "docker-archive", "--output", &d("docker.tar")]));
    let docker = format!("docker-archive:{}", d("docker.tar"));
    let inspect: serde_json::Value =
        serde_json::from_slice(&skopeo(&["inspect", &docker]).stdout).unwrap();
    assert_eq!(inspect["Architecture"], "amd64");
    let docker_config = skopeo(&["inspect", "--config", "--raw", &docker]).stdout;
    let oci_config = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        &format!("oci-archive:{}", d("one.tar")),
    ])
    .stdout;
    assert_eq!(docker_config, oci_config);
    skopeo(&[
        "copy",
        "--insecure-policy",
        &docker,
        &format!("oci:{}:3.10", d("from-docker")),
    ]);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// umoci unpacks the OCI layout of every platform the README's table claims for it (amd64,
/// arm64) into a bundle with that platform's /pause at 0755 and the config's entrypoint,
/// user and working directory. One layout per platform: umoci 0.4 refuses a tag that names
/// an index ("tag is ambiguous").
#[test]
fn umoci_unpacks_the_layout() {
    if !have("umoci") {
        return;
    }
    for arch in UMOCI_ARCHES {
        let dir = tempdir();
        let layout = dir.path().join("layout");
        let bundle = dir.path().join("bundle");
        let binary = fixture(&format!("pause-static-{arch}"));
        run_ok(
            pausebake()
                .env_remove("SOURCE_DATE_EPOCH")
                .arg("image")
                .arg(format!("--binary={arch}={}", binary.display()))
                .args(["--format", "oci-dir", "--output"])
                .arg(&layout),
        );
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:3.10", layout.display()))
                .arg(&bundle),
        );
        let pause = bundle.join("rootfs/pause");
        let meta = fs::symlink_metadata(&pause).unwrap();
        assert!(meta.is_file(), "{arch}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "{arch}");
        assert_eq!(
            fs::read(&pause).unwrap(),
            fs::read(&binary).unwrap(),
            "{arch}"
        );
        let rootfs: Vec<_> = fs::read_dir(bundle.join("rootfs")).unwrap().collect();
        assert_eq!(rootfs.len(), 1, "{arch}: only /pause in the rootfs");
        let config: serde_json::Value =
            serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let process = &config["process"];
        assert_eq!(process["args"], serde_json::json!(["/pause"]), "{arch}");
        assert_eq!(process["user"]["uid"], 65535, "{arch}");
        assert_eq!(process["user"]["gid"], 65535, "{arch}");
        assert_eq!(process["cwd"], "/", "{arch}");
    }
}

/// The architectures the README's compatibility table marks umoci "yes" for; the table is
/// checked against this list (`compat::readme_table_states_the_programs_tested`).
pub const UMOCI_ARCHES: [&str; 2] = ["amd64", "arm64"];

/// `ctr -n k8s.io images import` of the OCI archive, the docker archive and a two-platform
/// OCI archive into a test containerd of every available version (1.6, 1.7, 2.x) names the
/// image exactly as pausebake printed it (digest included); `ctr run` starts the compiled
/// pause from it, pause keeps running, and exits 0 on SIGTERM (`ctr run` in the foreground
/// exits with the task's status).
#[test]
fn ctr_imports_runs_and_stops_the_image() {
    let versions = crate::containerd::versions();
    if versions.is_empty() {
        return;
    }
    let work = tempdir();
    let name = "registry.k8s.io/pause:3.10";
    let mut archives = Vec::new();
    // The host's pause, compiled by pausebake, alone and in a two-platform index (where ctr
    // picks the host's manifest).
    let host = host_arch();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let both = format!("--arch={host},{other}");
    for (format, what, extra) in [
        ("oci-archive", "oci-archive", None),
        ("docker-archive", "docker-archive", None),
        (
            "oci-archive",
            "two-platform oci-archive",
            Some(both.as_str()),
        ),
    ] {
        let path = work.path().join(what.replace(' ', "-"));
        let out = run_ok(
            pausebake()
                .env_remove("SOURCE_DATE_EPOCH")
                .args(["image", "--name", name, "--format", format, "--output"])
                .arg(&path)
                .args(extra),
        );
        archives.push((what, path, first_line(&out)));
    }
    for c in &versions {
        for (format, archive, digest) in &archives {
            let root = tempdir();
            let mut running = c.start(
                root.path(),
                crate::containerd::StartOpts {
                    no_network: true,
                    ..Default::default()
                },
            );
            let what = format!("containerd {} {format}", c.version);
            running.ctr_import("k8s.io", archive);
            let ls = stdout(&running.ctr_ok(&["-n", "k8s.io", "images", "ls"]));
            let line = ls
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("{what}: {name} not imported:\n{ls}"));
            assert!(line.contains(digest.as_str()), "{what}: {line}");

            // In the foreground, `ctr run` exits with the task's exit status.
            let id = "pausebake-test";
            let mut ctr_run = running
                .ctr_command(&["-n", "k8s.io", "run", "--rm", name, id])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawning ctr run");
            let start = std::time::Instant::now();
            loop {
                let ls = stdout(&running.ctr(&["-n", "k8s.io", "task", "ls"]));
                let running_now = ls
                    .lines()
                    .any(|l| l.starts_with(id) && l.trim_end().ends_with("RUNNING"));
                if running_now {
                    break;
                }
                // Generous: the suite runs in parallel on small machines.
                if start.elapsed() > Duration::from_secs(60) {
                    let _ = ctr_run.kill();
                    panic!("{what}: pause did not start:\n{ls}\n{}", running.log());
                }
                sleep(Duration::from_millis(100));
            }
            // Still running a moment later: pause waits, it does not exit on its own.
            sleep(Duration::from_millis(300));
            if let Some(st) = ctr_run.try_wait().unwrap() {
                let out = ctr_run.wait_with_output().unwrap();
                panic!(
                    "{what}: pause exited by itself: {st}\n{}\n{}\n{}",
                    stdout(&out),
                    stderr(&out),
                    running.log()
                );
            }
            running.ctr_ok(&["-n", "k8s.io", "task", "kill", "--signal", "SIGTERM", id]);
            let start = std::time::Instant::now();
            let status = loop {
                if let Some(status) = ctr_run.try_wait().unwrap() {
                    break status;
                }
                if start.elapsed() > Duration::from_secs(60) {
                    let _ = ctr_run.kill();
                    panic!("{what}: pause ignored SIGTERM for 60 s");
                }
                sleep(Duration::from_millis(50));
            };
            let out = ctr_run.wait_with_output().unwrap();
            assert!(
                status.success(),
                "{what}: pause did not exit 0 on SIGTERM: {status}\n{}",
                stderr(&out)
            );
            running.stop();
            assert!(running.processes().is_empty(), "{what}");
            eprintln!("{what}: imported {digest}, ran, stopped on SIGTERM");
        }
    }
}
