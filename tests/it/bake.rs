//! `bake` against real containerd 1.6, 1.7 and 2.x, each started on the baked root with no
//! network (`unshare --net`): the sandbox must start from local content, stay pinned where
//! the version pins, survive a restart and a forced GC; a root without `bake` must fail
//! with a pull error; a root containerd already used keeps everything else; and `verify`
//! names each fault it is shown.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::containerd::{versions, Containerd, Running, StartOpts};
use crate::cri::PodSandboxState;
use crate::harness::*;

const NAME: &str = "registry.k8s.io/pause:3.10";

/// `pausebake bake --root R --containerd-version V ARGS`, which must succeed.
fn bake(root: &Path, c: &Containerd, args: &[&str]) -> Output {
    let out = run_ok(
        pausebake()
            .args(["bake", "--root"])
            .arg(root)
            .args(["--containerd-version", &c.version, "--name", NAME])
            .args(args),
    );
    assert!(
        stdout(&out).contains("verify     ok"),
        "bake did not verify:\n{}",
        stdout(&out)
    );
    out
}

fn verify(root: &Path, c: &Containerd, args: &[&str]) -> Output {
    run_any(
        pausebake()
            .args(["verify", "--root"])
            .arg(root)
            .args(["--containerd-version", &c.version])
            .args(args),
    )
}

/// `pausebake import ARCHIVE --root ROOT ARGS`.
fn import_cmd(archive: &Path, root: &Path, args: &[&str]) -> Command {
    let mut cmd = pausebake();
    cmd.arg("import")
        .arg(archive)
        .arg("--root")
        .arg(root)
        .args(args);
    cmd
}

/// `pausebake verify` of `root` for containerd 2.1.9 and `platform`, no daemon involved.
fn verify_for(root: &Path, platform: &str, extra: &[&str]) -> Output {
    run_any(
        pausebake()
            .args(["verify"])
            .args(extra)
            .args([
                "--containerd-version",
                "2.1.9",
                "--platform",
                platform,
                "--root",
            ])
            .arg(root),
    )
}

pub fn offline(c: &Containerd, root: &Path) -> Running {
    c.start(
        root,
        StartOpts {
            no_network: true,
            ..Default::default()
        },
    )
}

/// Runs a host-network sandbox and asserts it is READY and still READY a moment later (pause
/// itself started and stayed up, not just its container). It is left running, for the
/// caller to look at; stopping containerd's harness kills it.
pub fn sandbox_ready(ctd: &Running, name: &str) {
    let logs = tempdir();
    let (id, state) = ctd
        .cri()
        .run_pod_sandbox(name, true, logs.path())
        .unwrap_or_else(|e| {
            panic!(
                "RunPodSandbox on containerd {}: {e}\n{}",
                ctd.containerd.version,
                ctd.log()
            )
        });
    assert_eq!(state, PodSandboxState::SandboxReady, "{id}\n{}", ctd.log());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut cri = ctd.cri();
    assert_eq!(
        cri.pod_sandbox_state(&id).unwrap(),
        PodSandboxState::SandboxReady,
        "sandbox {id} of containerd {} did not stay up\n{}",
        ctd.containerd.version,
        ctd.log()
    );
}

/// Whether this containerd pins the sandbox image (1.6.22+, 1.7.3+, 2.x).
pub(crate) fn pins(c: &Containerd) -> bool {
    match c.semver() {
        (1, 6, p) => p >= 22,
        (1, 7, p) => p >= 3,
        (1, _, _) => false,
        _ => true,
    }
}

/// CRI of `ctd` (containerd `c`) knows `name`, pinned exactly where that version pins.
pub(crate) fn pinned_as_it_pins(ctd: &Running, c: &Containerd, name: &str) {
    let status = ctd
        .cri()
        .image_status(name)
        .expect("ImageStatus")
        .unwrap_or_else(|| panic!("CRI of containerd {} knows no {name}", c.version));
    assert_eq!(status.pinned, pins(c), "pinned on containerd {}", c.version);
}

pub(crate) fn no_pull(ctd: &Running) {
    let pulls = ctd.pull_attempts();
    assert!(
        pulls.is_empty(),
        "containerd {} tried to pull:\n{}",
        ctd.containerd.version,
        pulls.join("\n")
    );
}

#[test]
fn fresh_root_bake_runs_a_sandbox_offline_and_survives_gc() {
    let _lock = containerd_lock();
    for c in versions() {
        let root = tempdir();
        let out = bake(root.path(), &c, &[]);
        eprintln!("containerd {}:\n{}", c.version, stdout(&out));

        let mut ctd = offline(&c, root.path());
        sandbox_ready(&ctd, "first");
        pinned_as_it_pins(&ctd, &c, NAME);
        no_pull(&ctd);
        ctd.stop();

        // Restart, then a synchronous GC triggered by removing an unrelated image.
        let ctd = offline(&c, root.path());
        gc(&ctd);
        sandbox_ready(&ctd, "after-gc");
        no_pull(&ctd);
        // verify reads meta.db without bbolt's lock, so it also audits a running node.
        let out = verify(root.path(), &c, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        drop(ctd);

        let out = verify(root.path(), &c, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    }
}

/// Asserts RunPodSandbox fails with a pull error, and the log shows the attempt.
pub(crate) fn sandbox_needs_a_pull(ctd: &Running) {
    let logs = tempdir();
    let err = ctd
        .cri()
        .run_pod_sandbox("control", true, logs.path())
        .expect_err("a sandbox started without its image");
    let msg = err.message().to_lowercase();
    let version = &ctd.containerd.version;
    assert!(msg.contains("pull"), "containerd {version}: {msg}");
    // The log shows the attempt: what no_pull() looks for is there when one happens.
    assert!(!ctd.pull_attempts().is_empty(), "{}", ctd.log());
}

#[test]
fn without_bake_the_sandbox_needs_a_pull() {
    let _lock = containerd_lock();
    for c in versions() {
        let root = tempdir();
        let ctd = offline(&c, root.path());
        sandbox_needs_a_pull(&ctd);
        let out = verify(root.path(), &c, &[]);
        assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    }
}

/// A prebuilt archive under another name, for content containerd already holds.
fn other_archive() -> &'static Path {
    static ARCHIVE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &ARCHIVE
        .get_or_init(|| {
            let dir = tempdir();
            let path = dir.path().join("other.tar");
            // A different epoch: different config and manifest digests than the baked image.
            run_ok(
                pausebake()
                    .args([
                        "image",
                        "--name",
                        "example.invalid/other:1",
                        "--source-date-epoch",
                        "86400",
                        "--output",
                    ])
                    .arg(&path),
            );
            (dir, path)
        })
        .1
}

#[test]
fn a_used_root_keeps_everything_else() {
    let _lock = containerd_lock();
    for c in versions() {
        let root = tempdir();
        let etc = root.path().join("etc/containerd");
        fs::create_dir_all(&etc).unwrap();
        let v3 = c.native_config_version() >= 3;
        let config = if v3 {
            "# written by the image pipeline\nversion = 3\noom_score = 0 # keep\n\n[plugins.'io.containerd.cri.v1.images']\n  # our snapshotter\n  snapshotter = 'overlayfs'\n"
        } else {
            "# written by the image pipeline\nversion = 2\noom_score = 0 # keep\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  # our snapshotter\n  snapshotter = \"overlayfs\"\n"
        };
        fs::write(etc.join("config.toml"), config).unwrap();

        // containerd writes meta.db first: another image (unpacked), a container, a lease.
        let archive = other_archive();
        let ctd = offline(&c, root.path());
        let import_dir = ctd.run_dir().join("import");
        fs::create_dir_all(&import_dir).unwrap();
        fs::copy(archive, import_dir.join("other.tar")).unwrap();
        let tar = import_dir.join("other.tar");
        for ns in ["default", "k8s.io"] {
            ctd.ctr_import(ns, &tar);
        }
        ctd.ctr_ok(&[
            "-n",
            "default",
            "containers",
            "create",
            "example.invalid/other:1",
            "c1",
        ]);
        ctd.ctr_ok(&["-n", "default", "leases", "create", "--id", "l1"]);
        drop(ctd);

        let out = bake(root.path(), &c, &[]);
        eprintln!("containerd {}:\n{}", c.version, stdout(&out));
        let after = fs::read_to_string(etc.join("config.toml")).unwrap();
        let added: Vec<&str> = after
            .lines()
            .filter(|l| !config.lines().any(|b| b == *l))
            .collect();
        let removed: Vec<&str> = config
            .lines()
            .filter(|l| !after.lines().any(|a| a == *l))
            .collect();
        assert_eq!(removed, Vec::<&str>::new(), "{after}");
        // The key, and the header of its table when the file had none.
        let header = if v3 {
            "[plugins.\"io.containerd.cri.v1.images\".pinned_images]"
        } else {
            "[plugins.\"io.containerd.grpc.v1.cri\"]"
        };
        assert!(
            added.iter().all(|l| l.contains("sandbox")
                || l.replace('\'', "\"") == header
                || l.trim().is_empty()),
            "only the sandbox key may change: {added:?}\n{after}"
        );

        let ctd = offline(&c, root.path());
        for ns in ["default", "k8s.io"] {
            let images = stdout(&ctd.ctr_ok(&["-n", ns, "images", "ls", "-q"]));
            assert!(images.contains("example.invalid/other:1"), "{ns}: {images}");
        }
        let containers = stdout(&ctd.ctr_ok(&["-n", "default", "containers", "ls", "-q"]));
        assert_eq!(containers.trim(), "c1");
        let leases = stdout(&ctd.ctr_ok(&["-n", "default", "leases", "ls", "-q"]));
        assert!(leases.lines().any(|l| l == "l1"), "{leases}");
        // The other image still runs.
        let ran = stdout(&ctd.ctr_ok(&[
            "-n",
            "default",
            "run",
            "--rm",
            "example.invalid/other:1",
            "t1",
            "/pause",
            "-v",
        ]));
        assert!(ran.starts_with("pause.c "), "{ran}");
        sandbox_ready(&ctd, "used-root");
        no_pull(&ctd);
        drop(ctd);
        // After containerd itself rewrote meta.db (CRI's labels, unpack, sandbox records).
        let out = verify(root.path(), &c, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    }
}

/// The layer blob of the baked image and the meta.db path, from `bolt dump` of a baked root.
fn layer_of(root: &Path) -> (String, PathBuf) {
    let meta = root.join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db");
    let dump = stdout(&run_ok(pausebake().args(["bolt", "dump"]).arg(&meta)));
    let label = hexs("containerd.io/gc.ref.content.l.0");
    let line = dump
        .lines()
        .find(|l| {
            l.starts_with("value ") && l.split(' ').nth(1).is_some_and(|p| p.ends_with(&label))
        })
        .expect("a layer label");
    let value = line.split(' ').nth(2).unwrap();
    let bytes: Vec<u8> = (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&value[i..i + 2], 16).unwrap())
        .collect();
    (String::from_utf8(bytes).unwrap(), meta)
}

fn hexs(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Points the baked manifest's layer GC label (`containerd.io/gc.ref.content.l.0`) at a
/// digest that does not exist, so no label names the layer; returns the manifest's digest.
fn unlabel_layer(root: &Path) -> String {
    let (_, meta) = layer_of(root);
    let dump = stdout(&run_ok(pausebake().args(["bolt", "dump"]).arg(&meta)));
    let label = hexs("containerd.io/gc.ref.content.l.0");
    let line = dump
        .lines()
        .find(|l| l.contains(&label))
        .unwrap()
        .to_string();
    let path = line.split(' ').nth(1).unwrap().to_string();
    // .../blob/<manifest>/labels/<label>: the manifest's digest, decoded.
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let hex = parts[parts.len() - 3];
    let manifest = String::from_utf8(
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect(),
    )
    .unwrap();
    run_ok(
        pausebake()
            .args(["bolt", "set", "--bucket"])
            .arg(format!("v1/k8s.io/content/blob/{manifest}/labels"))
            .args([
                "--key",
                "containerd.io/gc.ref.content.l.0",
                "--value",
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ])
            .arg(&meta),
    );
    manifest
}

/// The content store's file for `digest` under a root.
fn blob_path(root: &Path, digest: &str) -> PathBuf {
    root.join("var/lib/containerd/io.containerd.content.v1.content/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// `verify` exits 3 and its report contains `cause`.
fn verify_fails(root: &Path, c: &Containerd, cause: &str) {
    let out = verify(root, c, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(cause),
        "containerd {}: expected {cause:?} in:\n{}",
        c.version,
        stdout(&out)
    );
}

/// verify's fault verdicts confirmed by each containerd itself, started on the faulted root
/// with no network: the layer that no GC label names is deleted by containerd's GC (the
/// manifest and config stay); with the layer blob missing, or corrupt, the sandbox fails.
/// The unharmed root verifies and starts a sandbox (`fresh_root_bake_…`).
#[test]
fn verify_verdicts_are_what_containerd_does() {
    let _lock = containerd_lock();
    for c in versions() {
        let root = tempdir();
        bake(root.path(), &c, &[]);
        let (layer, _) = layer_of(root.path());
        let manifest = unlabel_layer(root.path());
        verify_fails(
            root.path(),
            &c,
            &format!("FAIL gc: missing GC label: content {manifest} has no containerd.io/gc.ref.content.* label naming {layer}"),
        );
        assert!(blob_path(root.path(), &layer).is_file());
        // Some versions collect it already at start-up; the forced GC settles the rest.
        let ctd = offline(&c, root.path());
        gc(&ctd);
        assert!(
            !blob_path(root.path(), &layer).exists(),
            "containerd {}: GC kept the unlabelled layer {layer}\n{}",
            c.version,
            ctd.log()
        );
        assert!(
            blob_path(root.path(), &manifest).is_file(),
            "containerd {}: GC deleted the manifest too",
            c.version
        );
        drop(ctd);

        type Harm = fn(&Path);
        let harms: [(&str, Harm); 2] = [
            ("missing blob", |p| fs::remove_file(p).unwrap()),
            ("corrupted blob", |p| {
                let mut bytes = fs::read(p).unwrap();
                bytes[0] ^= 1;
                fs::write(p, bytes).unwrap();
            }),
        ];
        for (fault, harm) in harms {
            let root = tempdir();
            bake(root.path(), &c, &[]);
            let (layer, _) = layer_of(root.path());
            harm(&blob_path(root.path(), &layer));
            verify_fails(root.path(), &c, &format!("FAIL content: {fault} {layer}"));
            let ctd = offline(&c, root.path());
            let logs = tempdir();
            let err = ctd
                .cri()
                .run_pod_sandbox("harmed", true, logs.path())
                .map(|(id, state)| format!("{id} {state:?}"))
                .expect_err("a sandbox started from a harmed layer");
            eprintln!(
                "containerd {}, {fault}: RunPodSandbox: {}",
                c.version,
                err.message()
            );
            // It fails on that layer: its blob not found; its content no valid layer.
            let on_layer = match fault {
                "missing blob" => format!("blob {layer} expected at"),
                _ => "failed to extract layer".into(),
            };
            assert!(
                err.message().contains(&on_layer),
                "containerd {}, {fault}: {}",
                c.version,
                err.message()
            );
        }
    }
}

/// A synchronous GC: tag the baked image under a second name, then remove that name.
pub(crate) fn gc(ctd: &Running) {
    ctd.ctr_ok(&[
        "-n",
        "k8s.io",
        "images",
        "tag",
        NAME,
        "example.invalid/unrelated:1",
    ]);
    ctd.ctr_ok(&[
        "-n",
        "k8s.io",
        "images",
        "rm",
        "--sync",
        "example.invalid/unrelated:1",
    ]);
}

#[test]
fn verify_names_each_fault() {
    // Pure file checks: any containerd version number will do, no daemon.
    let c = Containerd {
        version: "2.1.9".into(),
        bin_dir: PathBuf::new(),
    };
    let fresh = || {
        let root = tempdir();
        bake(root.path(), &c, &["--platform", "linux/amd64"]);
        root
    };
    let expect = |root: &Path, args: &[&str], cause: &str| {
        let out = verify(
            root,
            &c,
            &[&["--platform", "linux/amd64"][..], args].concat(),
        );
        assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
        assert!(
            stdout(&out).contains(cause),
            "expected {cause:?} in:\n{}",
            stdout(&out)
        );
    };

    let root = fresh();
    let (layer, _) = layer_of(root.path());
    fs::remove_file(blob_path(root.path(), &layer)).unwrap();
    expect(
        root.path(),
        &[],
        &format!("FAIL content: missing blob {layer}"),
    );

    let root = fresh();
    let path = blob_path(root.path(), &layer);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, bytes).unwrap();
    expect(
        root.path(),
        &[],
        &format!("FAIL content: corrupted blob {layer}"),
    );

    let root = fresh();
    let config = root.path().join("etc/containerd/config.toml");
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("pause:3.10", "pause:3.9");
    fs::write(&config, text).unwrap();
    expect(
        root.path(),
        &[],
        "FAIL image: no image named registry.k8s.io/pause:3.9 in namespace k8s.io",
    );

    let root = fresh();
    let out = verify(root.path(), &c, &["--platform", "linux/s390x"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("FAIL platform: the image is for linux/amd64, not linux/s390x"),
        "{}",
        stdout(&out)
    );

    let root = fresh();
    let manifest_bucket = unlabel_layer(root.path());
    expect(root.path(), &[], &format!("FAIL gc: missing GC label: content {manifest_bucket} has no containerd.io/gc.ref.content.* label naming {layer}"));
}

#[test]
fn a_second_bake_changes_nothing() {
    let c = Containerd {
        version: "1.7.24".into(),
        bin_dir: PathBuf::new(),
    };
    let root = tempdir();
    bake(root.path(), &c, &[]);
    let meta = root
        .path()
        .join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db");
    let before = fs::read(&meta).unwrap();
    let out = bake(root.path(), &c, &[]);
    assert!(
        stdout(&out).contains("import     unchanged"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("configure  unchanged"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fs::read(&meta).unwrap(), before);
}

/// A two-architecture archive, built once.
fn multi_arch_archive() -> &'static Path {
    static ARCHIVE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &ARCHIVE
        .get_or_init(|| {
            let dir = tempdir();
            let path = dir.path().join("multi.tar");
            run_ok(
                pausebake()
                    .args(["image", "--arch", "amd64,arm64", "--name", NAME, "--output"])
                    .arg(&path),
            );
            (dir, path)
        })
        .1
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn import_writes_only_the_chosen_platform_and_is_idempotent() {
    let root = tempdir();
    let archive = multi_arch_archive();
    let import = |args: &[&str]| run_any(&mut import_cmd(archive, root.path(), args));
    // A platform the archive lacks: refused before anything is written.
    let out = import(&["--platform", "linux/s390x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("selecting a manifest for linux/s390x: the image has none (it has: linux/amd64, linux/arm64)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(files_under(root.path()), Vec::<PathBuf>::new());

    let out = run_ok(&mut import_cmd(
        archive,
        root.path(),
        &["--platform", "linux/arm64", "--json"],
    ));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &report["import"];
    // The index, arm64's manifest, config and layer: 4 of the archive's 7 blobs.
    assert_eq!(
        report["blobs_written"].as_array().unwrap().len(),
        4,
        "{report}"
    );
    assert_eq!(report["unchanged"], false);
    let blobs = root
        .path()
        .join("var/lib/containerd/io.containerd.content.v1.content/blobs/sha256");
    assert_eq!(files_under(&blobs).len(), 4);
    let ok = verify_for(root.path(), "linux/arm64", &["--namespace", "k8s.io"]);
    // No config yet: 2.1's default sandbox image is this very name.
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    let amd = verify_for(root.path(), "linux/amd64", &[]);
    assert_eq!(amd.status.code(), Some(3), "{}", stdout(&amd));
    assert!(
        stdout(&amd).contains("FAIL platform: the linux/amd64 manifest sha256:")
            && stdout(&amd).contains("was not imported (the import took other platforms)"),
        "{}",
        stdout(&amd)
    );

    let meta = root
        .path()
        .join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db");
    let before = fs::read(&meta).unwrap();
    let again = run_ok(&mut import_cmd(
        archive,
        root.path(),
        &["--platform", "linux/arm64"],
    ));
    assert!(stdout(&again).contains("unchanged"), "{}", stdout(&again));
    assert_eq!(fs::read(&meta).unwrap(), before);
}

#[test]
fn an_archive_rewritten_by_skopeo_imports_too() {
    if !have("skopeo") {
        return;
    }
    let dir = tempdir();
    // skopeo re-serialises the image (only the host's manifest of the index).
    let other = skopeo_copy_amd64(dir.path(), "oci-archive");
    import_amd64_and_verify(&other);
}

/// skopeo's copy of the amd64 image of [`multi_arch_archive`] as `transport`
/// (`oci-archive`, `docker-archive`), named [`NAME`], written into `dir`.
fn skopeo_copy_amd64(dir: &Path, transport: &str) -> PathBuf {
    let out = dir.join(format!("{transport}.tar"));
    skopeo(&[
        "copy",
        "--insecure-policy",
        "--override-arch",
        "amd64",
        &format!("oci-archive:{}", multi_arch_archive().display()),
        &format!("{transport}:{}:{NAME}", out.display()),
    ]);
    out
}

/// Imports `archive` into a fresh root for linux/amd64, checks the pinned image record,
/// and that verify passes; returns the root.
fn import_amd64_and_verify(archive: &Path) -> tempfile::TempDir {
    let root = tempdir();
    let out = run_ok(&mut import_cmd(
        archive,
        root.path(),
        &["--platform", "linux/amd64"],
    ));
    assert!(
        stdout(&out).contains(&format!("image {NAME} in k8s.io, pinned")),
        "{}",
        stdout(&out)
    );
    let v = verify_for(root.path(), "linux/amd64", &[]);
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    root
}

/// A docker archive written by skopeo shares its layer through a symbolic link
/// (`<id>/layer.tar -> ../<digest>.tar`, as `docker save` did before Docker 25): import
/// resolves it inside the archive, and the result verifies.
#[test]
fn a_docker_archive_written_by_skopeo_imports() {
    if !have("skopeo") {
        return;
    }
    let dir = tempdir();
    let docker = skopeo_copy_amd64(dir.path(), "docker-archive");
    // The case this test is about: the archive really holds a relative symlink.
    let listing = stdout(&run_ok(Command::new("tar").arg("tvf").arg(&docker)));
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.contains("/layer.tar -> ../")),
        "{listing}"
    );
    let root = import_amd64_and_verify(&docker);
    // Nothing from the archive became a link on disk.
    for f in files_under(root.path()) {
        assert!(
            !fs::symlink_metadata(&f).unwrap().is_symlink(),
            "{}",
            f.display()
        );
    }
}

#[test]
fn a_gzip_compressed_archive_imports() {
    let dir = tempdir();
    let gz = dir.path().join("multi.tar.gz");
    let tar = fs::read(multi_arch_archive()).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &tar).unwrap();
    fs::write(&gz, enc.finish().unwrap()).unwrap();
    let root = tempdir();
    let out = run_ok(&mut import_cmd(
        &gz,
        root.path(),
        &["--all-platforms", "--json"],
    ));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &report["import"];
    // Both platforms: the index, two manifests, two configs, two layers.
    assert_eq!(
        report["blobs_written"].as_array().unwrap().len(),
        7,
        "{report}"
    );
    for platform in ["linux/amd64", "linux/arm64"] {
        let v = verify_for(root.path(), platform, &[]);
        assert_eq!(v.status.code(), Some(0), "{platform}: {}", stdout(&v));
    }
}

#[test]
fn a_symlinked_containerd_root_is_followed_inside_the_root() {
    let root = tempdir();
    // On the host this names a real directory; in the root it means root/<that path>.
    let host = tempdir();
    let host_dir = fs::canonicalize(host.path()).unwrap();
    fs::create_dir_all(root.path().join("var/lib")).unwrap();
    std::os::unix::fs::symlink(&host_dir, root.path().join("var/lib/containerd")).unwrap();
    let c = Containerd {
        version: "2.1.9".into(),
        bin_dir: PathBuf::new(),
    };
    // And a config directory linked to /etc, as some images do: read as root/etc.
    fs::create_dir_all(root.path().join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc", root.path().join("etc/containerd")).unwrap();
    let host_etc_before = fs::metadata("/etc/config.toml").ok().map(|m| m.len());
    bake(root.path(), &c, &[]);
    assert_eq!(
        files_under(&host_dir),
        Vec::<PathBuf>::new(),
        "the host was written"
    );
    assert_eq!(
        fs::metadata("/etc/config.toml").ok().map(|m| m.len()),
        host_etc_before
    );
    let config = fs::read_to_string(root.path().join("etc/config.toml")).unwrap();
    assert!(config.contains(NAME), "{config}");
    let inside = root
        .path()
        .join(host_dir.strip_prefix("/").unwrap())
        .join("io.containerd.metadata.v1.bolt/meta.db");
    assert!(inside.is_file(), "{}", inside.display());
}

#[test]
fn a_running_containerd_is_refused_and_nothing_is_written() {
    let _lock = containerd_lock();
    let Some(c) = versions().into_iter().next() else {
        return;
    };
    let root = tempdir();
    let ctd = offline(&c, root.path());
    let blobs = root
        .path()
        .join("var/lib/containerd/io.containerd.content.v1.content/blobs/sha256");
    let before = files_under(&blobs);
    let start = std::time::Instant::now();
    let out = run_any(
        pausebake()
            .args(["bake", "--containerd-version", &c.version, "--root"])
            .arg(root.path()),
    );
    assert!(start.elapsed() < NO_WAIT);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(
            "is locked: containerd appears to be running on this root; stop it and retry"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        files_under(&blobs),
        before,
        "blobs written under a running containerd"
    );
    assert!(!root.path().join("etc/containerd/config.toml").exists());
    drop(ctd);
}

#[test]
fn same_inputs_same_bytes() {
    let c = Containerd {
        version: "2.1.9".into(),
        bin_dir: PathBuf::new(),
    };
    let roots = [tempdir(), tempdir()];
    for r in &roots {
        run_ok(
            pausebake()
                .args(["bake", "--containerd-version", &c.version, "--archive"])
                .arg(multi_arch_archive())
                .args(["--platform", "linux/arm64", "--root"])
                .arg(r.path())
                .env("SOURCE_DATE_EPOCH", "1700000000"),
        );
    }
    let files = |r: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        files_under(r)
            .into_iter()
            .map(|p| {
                (
                    p.strip_prefix(r).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (files(roots[0].path()), files(roots[1].path()));
    assert!(a.iter().any(|(p, _)| p.ends_with("meta.db")));
    assert_eq!(a.len(), b.len());
    for ((pa, ba), (pb, bb)) in a.iter().zip(&b) {
        assert_eq!(pa, pb);
        assert!(
            ba == bb,
            "{} differs between two identical bakes",
            pa.display()
        );
    }
    // And the JSON forms parse and agree with the exit code.
    let out = verify_for(roots[0].path(), "linux/amd64", &["--json"]);
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let failed: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "fail")
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["platform"], "{report}");
}

#[test]
fn versions_and_platform_come_from_the_roots_own_containerd() {
    let _lock = containerd_lock();
    for c in versions() {
        let root = tempdir();
        let bin = root.path().join("usr/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy(c.bin("containerd"), bin.join("containerd")).unwrap();
        let out = run_ok(pausebake().args(["bake", "--root"]).arg(root.path()));
        let text = stdout(&out);
        let (major, minor, patch) = c.semver();
        assert!(
            text.contains(&format!(
                "containerd {major}.{minor}.{patch} (/usr/bin/containerd)"
            )),
            "{text}"
        );
        assert!(text.contains("platform   linux/"), "{text}");
        assert!(text.contains("(/usr/bin/containerd)\n"), "{text}");
        assert!(
            text.contains(&format!(
                "name       {} (the default of containerd {major}.{minor}.{patch})",
                default_of(&c)
            )),
            "{text}"
        );
        assert!(text.contains("verify     ok"), "{text}");
        let ctd = offline(&c, root.path());
        sandbox_ready(&ctd, "detected");
        no_pull(&ctd);
    }
}

/// The sandbox image a containerd build uses when its config names none (what its own
/// `containerd config default` prints).
fn default_of(c: &Containerd) -> &'static str {
    match c.semver() {
        (1, 6, _) => "registry.k8s.io/pause:3.6",
        (1, 7, _) => "registry.k8s.io/pause:3.8",
        (2, 0..=1, _) => "registry.k8s.io/pause:3.10",
        (2, 2, _) => "registry.k8s.io/pause:3.10.1",
        _ => "registry.k8s.io/pause:3.10.2",
    }
}

/// `containerd config dump` of `c` over the root's own files (its main config with the
/// imports mapped into the root, as the harness starts it): the sandbox image it reads.
fn dumped_sandbox_image(c: &Containerd, root: &Path) -> String {
    let run = tempdir();
    let config = run.path().join("config.toml");
    let text = crate::containerd::effective_config(c, root, run.path(), "");
    fs::write(&config, text).unwrap();
    c.sandbox_in_dump(&c.config_dump(&config))
        .unwrap_or_else(|| panic!("no sandbox image in the dump of containerd {}", c.version))
}

/// The node as its image pipeline leaves it: the containerd binary and that containerd's own
/// `containerd config default` as `/etc/containerd/config.toml` (2.3: `version = 4`, with
/// `imports = ['/etc/containerd/conf.d/*.toml']`), then, where that config imports
/// `conf.d`, drop-ins there, one of which sets another sandbox image. `bake` with only
/// `--root` and `--name` reads the version from the binary and writes the name where it takes
/// effect; that containerd's own `config dump` over the root's files names it; a sandbox is
/// READY with no network and no pull, the image pinned where the version pins.
#[test]
fn a_root_with_its_containerds_own_default_config_and_drop_ins_bakes_offline() {
    let _lock = containerd_lock();
    for c in versions() {
        let root = tempdir();
        let r = root.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::create_dir_all(r.join("etc/containerd")).unwrap();
        fs::copy(c.bin("containerd"), r.join("usr/bin/containerd")).unwrap();
        let default = c.config_default();
        fs::write(r.join("etc/containerd/config.toml"), &default).unwrap();
        let bake_it = |expect: &str| {
            let out = run_ok(pausebake().args(["bake", "--name", NAME, "--root"]).arg(r));
            let text = stdout(&out);
            assert!(
                text.contains(&format!(
                    "containerd {} (/usr/bin/containerd)",
                    c.semver_string()
                )) && text.contains("verify     ok")
                    && text.contains(expect),
                "containerd {}: {text}",
                c.version
            );
        };
        bake_it("in /etc/containerd/config.toml");
        assert_eq!(
            dumped_sandbox_image(&c, r),
            NAME,
            "containerd {}",
            c.version
        );
        let run_offline = |what: &str| {
            let ctd = offline(&c, r);
            sandbox_ready(&ctd, what);
            pinned_as_it_pins(&ctd, &c, NAME);
            no_pull(&ctd);
        };
        run_offline("own-default");
        if !default.contains("/etc/containerd/conf.d/*.toml") {
            eprintln!(
                "containerd {}: its default config imports no conf.d; no drop-in case",
                c.version
            );
            continue;
        }
        let version = c.native_config_version();
        let conf_d = r.join("etc/containerd/conf.d");
        fs::create_dir_all(&conf_d).unwrap();
        fs::write(
            conf_d.join("10-registry.toml"),
            format!("version = {version}\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '/etc/containerd/certs.d'\n"),
        )
        .unwrap();
        fs::write(
            conf_d.join("50-pause.toml"),
            format!("version = {version}\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\nsandbox = 'other.invalid/pause:1'\n"),
        )
        .unwrap();
        let out = verify(r, &c, &[]);
        assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
        assert_eq!(dumped_sandbox_image(&c, r), "other.invalid/pause:1");
        bake_it("in /etc/containerd/conf.d/50-pause.toml");
        assert_eq!(
            dumped_sandbox_image(&c, r),
            NAME,
            "containerd {}",
            c.version
        );
        run_offline("drop-ins");
        eprintln!(
            "containerd {}: own default config and conf.d drop-ins baked, sandbox READY offline",
            c.version
        );
    }
}

/// `--no-pin` writes neither CRI label; a containerd that pins then labels the configured
/// sandbox image itself at startup, so the pod still starts offline and is still pinned.
#[test]
fn no_pin_writes_no_cri_labels_and_containerd_adds_its_own() {
    let _lock = containerd_lock();
    let dump_of = |root: &Path| {
        let meta = root.join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db");
        stdout(&run_ok(pausebake().args(["bolt", "dump"]).arg(&meta)))
    };
    // Without --no-pin the labels are there, in the form the dump shows them.
    let pinned = tempdir();
    run_ok(
        pausebake()
            .args(["bake", "--containerd-version", "2.1.9", "--root"])
            .arg(pinned.path()),
    );
    let dump = dump_of(pinned.path());
    assert!(dump.contains(&hexs("io.cri-containerd.pinned")), "{dump}");
    for c in versions() {
        let root = tempdir();
        let out = bake(root.path(), &c, &["--no-pin"]);
        let dump = dump_of(root.path());
        assert!(
            !dump.contains(&hexs("io.cri-containerd")),
            "--no-pin wrote a CRI label:\n{dump}\n{}",
            stdout(&out)
        );
        assert!(dump.contains(&hexs(NAME)), "no image record:\n{dump}");

        let ctd = offline(&c, root.path());
        sandbox_ready(&ctd, "no-pin");
        no_pull(&ctd);
        pinned_as_it_pins(&ctd, &c, NAME);
    }
}

/// bake, as configure does, writes the name into the drop-in that decides it (2.x: the last
/// file that sets the key) and leaves the main config as it was.
#[test]
fn bake_writes_into_the_drop_in_that_decides_the_sandbox_image() {
    let root = tempdir();
    let conf_d = root.path().join("etc/containerd/conf.d");
    std::fs::create_dir_all(&conf_d).unwrap();
    let main = "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n";
    std::fs::write(root.path().join("etc/containerd/config.toml"), main).unwrap();
    std::fs::write(
        conf_d.join("20-pause.toml"),
        "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\nsandbox = 'other.invalid/pause:1'\n",
    )
    .unwrap();
    let out = run_any(
        pausebake()
            .args(["bake", "--containerd-version", "2.1.9", "--root"])
            .arg(root.path()),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        describe(&Command::new("pausebake"), &out)
    );
    assert!(
        stdout(&out).contains("in /etc/containerd/conf.d/20-pause.toml"),
        "{}",
        stdout(&out)
    );
    let drop_in = std::fs::read_to_string(conf_d.join("20-pause.toml")).unwrap();
    assert!(
        drop_in.contains("sandbox = 'registry.k8s.io/pause:"),
        "{drop_in}"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap(),
        main
    );
}

/// The bbolt magic at offset 16 of the first meta page, in the file's byte order.
fn meta_db_magic(root: &Path) -> [u8; 4] {
    let db = root.join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db");
    let bytes = fs::read(&db).unwrap_or_else(|e| panic!("reading {}: {e}", db.display()));
    bytes[16..20].try_into().unwrap()
}

#[test]
fn a_fresh_meta_db_is_in_the_byte_order_of_the_roots_platform() {
    // containerd's bbolt reads only its own machine's byte order: a little-endian meta.db on
    // an s390x node is "invalid database" and the CRI plugin never loads.
    const BIG: [u8; 4] = [0xed, 0x0c, 0xda, 0xed];
    const LITTLE: [u8; 4] = [0xed, 0xda, 0x0c, 0xed];
    for (platform, magic) in [("linux/s390x", BIG), ("linux/arm64", LITTLE)] {
        let dir = tempdir();
        run_ok(
            pausebake()
                .args(["bake", "--root"])
                .arg(dir.path())
                .args(["--platform", platform]),
        );
        assert_eq!(meta_db_magic(dir.path()), magic, "{platform}");
        // An existing file keeps its order: a second bake for the same root commits in place.
        run_ok(pausebake().args(["bake", "--root"]).arg(dir.path()).args([
            "--platform",
            platform,
            "--name",
            "example.com/pause:extra",
        ]));
        assert_eq!(meta_db_magic(dir.path()), magic, "{platform}, rebaked");
    }
    // verify names both orders when they disagree.
    let dir = tempdir();
    run_ok(
        pausebake()
            .args(["bake", "--root"])
            .arg(dir.path())
            .args(["--platform", "linux/s390x"]),
    );
    let out = run_any(
        pausebake()
            .args(["verify", "--root"])
            .arg(dir.path())
            .args(["--platform", "linux/amd64"]),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("FAIL byte order: meta.db is big-endian but the root's platform linux/amd64 is little-endian"),
        "{}",
        stdout(&out)
    );
}

/// The digest of the image `bake` writes for this host's platform (its `--dry-run` plan).
fn baked_target() -> String {
    let scratch = tempdir();
    let out = run_ok(
        pausebake()
            .args(["bake", "--dry-run", "--json", "--root"])
            .arg(scratch.path()),
    );
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    plan["import"]["target"].as_str().unwrap().to_string()
}

/// A digest in a name is a promise about content: `bake --name`, `import --name` and
/// `configure --sandbox-image` refuse one that is not the image's own, naming both
/// digests, and leave the root exactly as it was.
#[test]
fn a_name_whose_digest_is_not_the_images_is_refused_and_nothing_is_written() {
    let target = baked_target();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let name = format!("registry.k8s.io/pause:3.10@{wrong}");
    let refused = |out: &Output| {
        assert_eq!(out.status.code(), Some(1), "{}", stdout(out));
        let err = stderr(out);
        assert!(
            err.contains(&format!("pins digest {wrong}"))
                && err.contains(&format!("has digest {target}"))
                && err.contains("(nothing was written)"),
            "{err}"
        );
        assert!(stdout(out).is_empty(), "{}", stdout(out));
    };
    // bake: nothing at all in a fresh root
    let root = tempdir();
    let out = run_any(
        pausebake()
            .args(["bake", "--name", &name, "--root"])
            .arg(root.path()),
    );
    refused(&out);
    assert_eq!(files_under(root.path()), Vec::<PathBuf>::new());

    // import --name and configure --sandbox-image on a baked root: unchanged
    let root = tempdir();
    run_ok(
        pausebake()
            .args([
                "bake",
                "--name",
                NAME,
                "--containerd-version",
                "2.3.4",
                "--root",
            ])
            .arg(root.path()),
    );
    let dir = tempdir();
    let archive = dir.path().join("pause.tar");
    run_ok(pausebake().args(["image", "--output"]).arg(&archive));
    let before = crate::harden::snapshot(root.path());
    let out = run_any(&mut import_cmd(&archive, root.path(), &["--name", &name]));
    refused(&out);
    assert_eq!(crate::harden::snapshot(root.path()), before);
    let out = run_any(
        pausebake()
            .args(["configure", "--sandbox-image", &name])
            .args(["--containerd-version", "2.3.4", "--root"])
            .arg(root.path()),
    );
    refused(&out);
    assert_eq!(crate::harden::snapshot(root.path()), before);
    // the image's own digest is fine, and written digest-only
    let own = format!("registry.k8s.io/pause:3.10@{target}");
    let out = run_ok(
        pausebake()
            .args(["configure", "--sandbox-image", &own])
            .args(["--containerd-version", "2.3.4", "--root"])
            .arg(root.path()),
    );
    assert!(
        stdout(&out).contains(&format!("registry.k8s.io/pause@{target}")),
        "{}",
        stdout(&out)
    );
}

/// A config whose `version` is newer than pausebake knows is refused with what pausebake
/// knows and what to do, never a claim about what containerd accepts; nothing is written.
#[test]
fn a_config_version_newer_than_pausebake_knows_is_refused_and_nothing_is_written() {
    let root = tempdir();
    let etc = root.path().join("etc/containerd");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("config.toml"), "version = 5\n").unwrap();
    let before = crate::harden::snapshot(root.path());
    for args in [
        &["bake"][..],
        &["bake", "--containerd-version", "2.3.4"],
        &["configure", "--containerd-version", "2.4.0"],
    ] {
        let out = run_any(pausebake().args(args).arg("--root").arg(root.path()));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(
                "/etc/containerd/config.toml says version = 5, a config version newer than \
                 pausebake knows (it knows versions 1 to 4, written by containerd 1.6 to 2.3)"
            ) && err.contains(
                "use a pausebake release that knows version 5, or a config of version 4 or lower"
            ) && err.contains("nothing was written"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("accepts") && !err.contains("refuses"),
            "{err}"
        );
        assert_eq!(crate::harden::snapshot(root.path()), before, "{args:?}");
    }
    let out = run_any(
        pausebake()
            .args(["verify", "--containerd-version", "2.3.4", "--root"])
            .arg(root.path()),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
}

/// A sandbox reference with a tag and a digest is written digest-only (the form containerd
/// records and looks up; 2.3.0 to 2.3.3 do not find one named verbatim), and the summary
/// says so; the baked root starts a sandbox offline from it, with no pull, on each build.
#[test]
fn a_tag_and_digest_name_bakes_digest_only_and_runs_offline() {
    let _lock = containerd_lock();
    let target = baked_target();
    let given = format!("registry.k8s.io/pause:3.10@{target}");
    let recorded = format!("registry.k8s.io/pause@{target}");
    for c in versions() {
        let root = tempdir();
        let out = run_ok(
            pausebake()
                .args(["bake", "--name", &given, "--containerd-version", &c.version])
                .arg("--root")
                .arg(root.path()),
        );
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "name       {recorded} (--name, written without its tag"
            )) && text.contains("verify     ok"),
            "{text}"
        );
        let ctd = offline(&c, root.path());
        sandbox_ready(&ctd, "tag-and-digest");
        pinned_as_it_pins(&ctd, &c, &recorded);
        no_pull(&ctd);
        eprintln!(
            "containerd {}: {given} baked as {recorded}, sandbox READY offline",
            c.version
        );
    }
}

/// A containerd newer than pausebake's table is baked for as the newest it knows (2.3: a
/// version 4 config and 2.3's default name), with a warning saying so.
#[test]
fn a_containerd_newer_than_the_table_is_baked_as_the_newest_known_with_a_warning() {
    let root = tempdir();
    let out = run_ok(
        pausebake()
            .args(["bake", "--containerd-version", "2.4.1", "--root"])
            .arg(root.path()),
    );
    let text = stdout(&out);
    assert!(
        text.contains("name       registry.k8s.io/pause:3.10.2 (the default of containerd 2.4.1)")
            && text.contains("verify     ok"),
        "{text}"
    );
    assert!(
        stderr(&out).contains(
            "pausebake: warning: containerd 2.4.1 is newer than any pausebake knows \
             (1.6, 1.7, 2.0, 2.1, 2.2, 2.3): configured as 2.3.0"
        ),
        "{}",
        stderr(&out)
    );
    let config = fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap();
    assert!(config.starts_with("version = 4\n"), "{config}");
}

/// A root whose config names the sandbox image in another form than the normalized one
/// (`localhost/kubernetes/pause`, as EKS AMIs did: awslabs/amazon-eks-ami#2729): `import`
/// records the image under both names, since containerd 2.3.0 to 2.3.3 look the configured
/// string up verbatim after CRI found the normalized one; `verify` for those versions needs
/// the verbatim record and fails without it, while for 2.3.4 the normalized one is enough;
/// the real 2.3.4 runs a sandbox from the root offline with no pull.
#[test]
fn a_config_naming_an_unnormalized_reference_gets_both_records() {
    let _lock = containerd_lock();
    let configured = "localhost/kubernetes/pause";
    let normalized = "localhost/kubernetes/pause:latest";
    let dir = tempdir();
    let archive = dir.path().join("pause.tar");
    run_ok(
        pausebake()
            .args(["image", "--name", normalized, "--output"])
            .arg(&archive),
    );
    let config = format!(
        "version = 4\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = '{configured}'\n"
    );
    let verify_as = |root: &Path, v: &str| {
        run_any(
            pausebake()
                .args(["verify", "--containerd-version", v, "--root"])
                .arg(root),
        )
    };
    // imported before the config named it: only the normalized record
    let early = tempdir();
    run_ok(&mut import_cmd(&archive, early.path(), &[]));
    fs::create_dir_all(early.path().join("etc/containerd")).unwrap();
    fs::write(early.path().join("etc/containerd/config.toml"), &config).unwrap();
    let out = verify_as(early.path(), "2.3.1");
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("FAIL verbatim: the config says \"localhost/kubernetes/pause\""),
        "{}",
        stdout(&out)
    );
    assert_eq!(verify_as(early.path(), "2.3.4").status.code(), Some(0));

    // imported with the config in place: both records, and 2.3.1 is satisfied
    let root = tempdir();
    fs::create_dir_all(root.path().join("etc/containerd")).unwrap();
    fs::write(root.path().join("etc/containerd/config.toml"), &config).unwrap();
    let out = run_ok(&mut import_cmd(&archive, root.path(), &[]));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("image {normalized} in k8s.io"))
            && text.contains(&format!("image {configured} in k8s.io")),
        "{text}"
    );
    let out = verify_as(root.path(), "2.3.1");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(
            "ok   verbatim: containerd 2.3.1 also looks \"localhost/kubernetes/pause\" up as written: that record is there"
        ),
        "{}",
        stdout(&out)
    );
    for c in versions().into_iter().filter(|c| c.series() == "2.3") {
        let ctd = offline(&c, root.path());
        let names = stdout(&ctd.ctr_ok(&["-n", "k8s.io", "images", "ls", "-q"]));
        assert!(
            names.lines().any(|l| l == configured) && names.lines().any(|l| l == normalized),
            "{names}"
        );
        sandbox_ready(&ctd, "verbatim");
        no_pull(&ctd);
        eprintln!(
            "containerd {}: both records, sandbox READY offline",
            c.version
        );
    }
}
