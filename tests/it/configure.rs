//! `pausebake configure` against the real containerd of each version: the root's config is
//! edited, then that containerd, started on the root with that config and no network, uses
//! exactly the configured sandbox image.

use std::fs;
use std::path::Path;

use crate::containerd::{versions, Containerd, Running, StartOpts};
use crate::harness::{pausebake, run_ok, stdout, tempdir};

/// A root holding `c`'s containerd binary where a distribution installs it (hard-linked when
/// possible: it is tens of MB) and, optionally, a config.
fn root_with(c: &Containerd, config: Option<&str>) -> tempfile::TempDir {
    let root = tempdir();
    let bin = root.path().join("usr/bin");
    fs::create_dir_all(&bin).unwrap();
    let dest = bin.join("containerd");
    if fs::hard_link(c.bin("containerd"), &dest).is_err() {
        fs::copy(c.bin("containerd"), &dest).unwrap();
    }
    if let Some(text) = config {
        let dir = root.path().join("etc/containerd");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("config.toml"), text).unwrap();
    }
    root
}

fn configure(root: &Path, extra: &[&str]) -> String {
    stdout(&run_ok(
        pausebake()
            .args(["configure", "--root"])
            .arg(root)
            .args(extra),
    ))
}

/// The sandbox image a running containerd reports: CRI's verbose `Status` config in 1.x
/// (`sandboxImage`). 2.x no longer reports it there (containerd-store.md §7.6; checked on
/// 2.1.9), so for 2.x it is read from `containerd config dump` of the very config file the
/// running containerd uses (after 2.x's own migration of older config versions).
fn reported_sandbox_image(running: &Running) -> Option<String> {
    let c = &running.containerd;
    if c.semver().0 < 2 {
        let info = running.cri().status_info().expect("CRI Status");
        return info
            .get("config")?
            .get("sandboxImage")?
            .as_str()
            .map(str::to_string);
    }
    let dump: toml_edit::DocumentMut = c
        .config_dump(running.config_path())
        .parse()
        .expect("parsing containerd config dump");
    dump.get("plugins")?
        .get("io.containerd.cri.v1.images")?
        .get("pinned_images")?
        .get("sandbox")?
        .as_str()
        .map(str::to_string)
}

/// RunPodSandbox with no network and no image: it must fail trying to get exactly `image`.
fn assert_sandbox_wants(running: &Running, image: &str) {
    let logs = running.run_dir().join("pods");
    let err = running
        .cri()
        .run_pod_sandbox("wants", true, &logs)
        .expect_err("no sandbox image is present and there is no network");
    assert!(
        err.message().contains(image),
        "containerd {} should fail pulling {image}, got: {}",
        running.containerd.version,
        err.message()
    );
    let pulls = running.pull_attempts();
    assert!(
        pulls.iter().any(|l| l.contains(image)),
        "containerd {} logs the pull of {image}: {pulls:?}",
        running.containerd.version
    );
}

/// Starts `c` on `root` without network and checks that it reports `image` as its sandbox
/// image and that CRI wants exactly that name; stops it.
fn assert_containerd_uses(c: &Containerd, root: &Path, image: &str) {
    let mut running = c.start(
        root,
        StartOpts {
            no_network: true,
            ..Default::default()
        },
    );
    assert_eq!(reported_sandbox_image(&running).as_deref(), Some(image));
    assert_sandbox_wants(&running, image);
    running.stop();
}

#[test]
fn configure_sets_the_image_each_containerd_uses() {
    for c in &versions() {
        let wanted = "example.invalid/pausebake/pause:1";

        // 1. no config: configure writes a minimal one with containerd's default image
        let root = root_with(c, None);
        let out = configure(root.path(), &[]);
        let default = match c.series().as_str() {
            "1.6" => "registry.k8s.io/pause:3.6",
            "1.7" => "registry.k8s.io/pause:3.8",
            "2.2" => "registry.k8s.io/pause:3.10.1",
            "2.3" => "registry.k8s.io/pause:3.10.2",
            _ => "registry.k8s.io/pause:3.10",
        };
        assert!(out.starts_with("created "), "{out}");
        assert!(
            out.contains(&format!("containerd {}", c.semver_string())),
            "{out}"
        );
        assert!(out.contains(default), "{out}");

        // 2. now an explicit image, then again: unchanged
        let out = configure(root.path(), &["--sandbox-image", wanted]);
        assert!(out.starts_with("changed "), "{out}");
        assert!(out.contains(&format!("was {default:?}")), "{out}");
        let out = configure(root.path(), &["--sandbox-image", wanted]);
        assert!(out.starts_with("unchanged: "), "{out}");

        assert_containerd_uses(c, root.path(), wanted);
    }
}

#[test]
fn configure_edits_only_the_sandbox_key_of_an_upstream_config() {
    for c in &versions() {
        let wanted = "example.invalid/pausebake/pause:2";
        let before = format!("# written by the image pipeline\n{}", c.config_default());
        let root = root_with(c, Some(&before));
        let out = stdout(&run_ok(
            pausebake()
                .args(["configure", "--json", "--root"])
                .arg(root.path())
                .args(["--sandbox-image", wanted]),
        ));
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (key, line_before) = if c.semver().0 >= 2 {
            let old = match c.series().as_str() {
                "2.2" => "3.10.1",
                "2.3" => "3.10.2",
                _ => "3.10",
            };
            (
                r#"plugins."io.containerd.cri.v1.images".pinned_images.sandbox"#,
                format!("      sandbox = 'registry.k8s.io/pause:{old}'\n"),
            )
        } else {
            let old = if c.series() == "1.6" { "3.6" } else { "3.8" };
            (
                r#"plugins."io.containerd.grpc.v1.cri".sandbox_image"#,
                format!("    sandbox_image = \"registry.k8s.io/pause:{old}\"\n"),
            )
        };
        assert_eq!(report["key"], key, "{out}");
        assert_eq!(report["new"], wanted, "{out}");
        assert_eq!(report["changed"], true, "{out}");
        assert_eq!(report["created"], false, "{out}");
        assert_eq!(report["containerd_version"], c.semver_string(), "{out}");

        // exactly one line differs
        let after = fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap();
        let line_after = line_before
            .replace("registry.k8s.io/pause:3.10.2", wanted)
            .replace("registry.k8s.io/pause:3.10.1", wanted)
            .replace("registry.k8s.io/pause:3.10", wanted)
            .replace("registry.k8s.io/pause:3.8", wanted)
            .replace("registry.k8s.io/pause:3.6", wanted);
        assert_eq!(after, before.replacen(&line_before, &line_after, 1));

        assert_containerd_uses(c, root.path(), wanted);
    }
}

/// Debian ships a `version = 2` config with its containerd 2.x package too: the key of the
/// file's version is set, and containerd 2.x migrates it to `pinned_images.sandbox`.
#[test]
fn configure_debian_shipped_config_works_on_every_version() {
    let shipped = include_str!("../fixtures/containerd/debian-1.7.24.toml");
    for c in &versions() {
        let wanted = "example.invalid/pausebake/pause:3";
        let root = root_with(c, Some(shipped));
        let out = configure(root.path(), &["--sandbox-image", wanted]);
        assert!(
            out.contains(r#"plugins."io.containerd.grpc.v1.cri".sandbox_image"#),
            "{out}"
        );
        assert!(out.contains("config version 2"), "{out}");
        assert_containerd_uses(c, root.path(), wanted);
    }
}

/// A containerd binary whose version cannot be read falls back to the dpkg database; with
/// neither, configure fails naming what it looked at and the fix.
#[test]
fn configure_reads_the_version_from_dpkg_or_says_how_to_pass_it() {
    let root = tempdir();
    let bin = root.path().join("usr/bin");
    fs::create_dir_all(&bin).unwrap();
    // a binary without any version string pausebake trusts
    fs::write(
        bin.join("containerd"),
        b"\x7fELF not really containerd v1.7.0\n",
    )
    .unwrap();

    let out = crate::harness::run_any(pausebake().args(["configure", "--root"]).arg(root.path()));
    assert_eq!(out.status.code(), Some(1));
    // the path inside the root, as every other message names it
    assert_eq!(
        crate::harness::stderr(&out),
        "pausebake: error: cannot tell the containerd version of /usr/bin/containerd in the \
         root (and no containerd package in /var/lib/dpkg/status); pass --containerd-version\n"
    );

    let dpkg = root.path().join("var/lib/dpkg");
    fs::create_dir_all(&dpkg).unwrap();
    fs::write(
        dpkg.join("status"),
        "Package: containerd\nStatus: install ok installed\nVersion: 1.7.24~ds1-6+deb13u1\n",
    )
    .unwrap();
    // paths inside the root, as bake and verify print them
    let out = configure(root.path(), &[]);
    assert_eq!(
        out,
        "created /etc/containerd/config.toml with \
         plugins.\"io.containerd.grpc.v1.cri\".sandbox_image = \"registry.k8s.io/pause:3.8\" \
         (containerd 1.7.24 from /var/lib/dpkg/status (containerd 1.7.24~ds1-6+deb13u1), \
         config version 2; image: the default of containerd 1.7.24)\n"
    );

    // --containerd-version needs neither
    let other = tempdir();
    let out = configure(
        other.path(),
        &[
            "--containerd-version",
            "2.2.0",
            "--kubernetes-version",
            "1.34.1",
        ],
    );
    assert!(
        out.contains(
            "pinned_images.sandbox = \"registry.k8s.io/pause:3.10.1\" (containerd 2.2.0 from \
             --containerd-version, config version 3; image: the pause of Kubernetes 1.34.1 \
             (--kubernetes-version))"
        ),
        "{out}"
    );
}

/// The config is replaced by rename, keeping the replaced file's mode and owner, and leaves
/// no temporary file behind.
#[test]
fn configure_keeps_mode_and_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = tempdir();
    let dir = root.path().join("etc/containerd");
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    fs::write(&config, "version = 2\n# keep\n").unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
    let as_root = crate::harness::is_root();
    if as_root {
        std::os::unix::fs::chown(&config, Some(1234), Some(5678)).unwrap();
    }
    let inode = fs::metadata(&config).unwrap().ino();

    configure(root.path(), &["--containerd-version", "1.7.24"]);

    let meta = fs::metadata(&config).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    if as_root {
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    }
    assert_ne!(
        meta.ino(),
        inode,
        "replaced by rename, not rewritten in place"
    );
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        "version = 2\n# keep\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n\
         sandbox_image = \"registry.k8s.io/pause:3.8\"\n"
    );
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["config.toml"]);
}
