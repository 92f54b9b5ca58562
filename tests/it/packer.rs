//! The Packer templates under packer/: formatted, valid for Debian's Packer, the
//! local-root one really bakes a root, and the disk-image one writes an image that boots.

use std::path::PathBuf;

use crate::harness::*;

fn templates() -> Vec<PathBuf> {
    let dir = repo().join("packer/examples");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pkr.hcl"))
        .collect();
    // read_dir has no order; messages should not depend on the filesystem's.
    found.sort();
    found
}

#[test]
fn templates_are_formatted() {
    if !have("packer") {
        return;
    }
    let all = templates();
    assert_eq!(all.len(), 4, "{all:?}");
    for t in all {
        run_ok(
            std::process::Command::new("packer")
                .arg("fmt")
                .arg("-check")
                .arg(&t),
        );
    }
}

#[test]
fn templates_validate_offline() {
    if !have("packer") || !have("unshare") {
        return;
    }
    if !is_root() {
        skip("packer validate runs inside unshare -n, which needs root");
        return;
    }
    let root = tempdir();
    for t in templates() {
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["-n", "packer", "validate"])
            .arg("-var")
            .arg(format!("pausebake={PAUSEBAKE}"));
        if t.ends_with("local-root.pkr.hcl") || t.ends_with("disk-image.pkr.hcl") {
            cmd.arg("-var")
                .arg(format!("root={}", root.path().display()));
        }
        if t.ends_with("disk-image.pkr.hcl") {
            cmd.arg("-var")
                .arg(format!("disk={}", root.path().join("disk.raw").display()));
        }
        run_ok(cmd.arg(&t));
    }
}

#[test]
fn local_root_template_bakes_a_root_that_verifies() {
    if !have("packer") || !have("containerd") {
        return;
    }
    let dir = tempdir();
    let root = dir.path().join("root");
    // The root's own containerd tells pausebake which config key to write.
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/containerd", root.join("usr/bin/containerd")).unwrap();
    let out = run_ok(
        std::process::Command::new("packer")
            .arg("build")
            .arg("-var")
            .arg(format!("pausebake={PAUSEBAKE}"))
            .arg("-var")
            .arg(format!("root={}", root.display()))
            .arg("-var")
            .arg("kubernetes_version=1.31.2")
            .arg(repo().join("packer/examples/local-root.pkr.hcl"))
            .env("CHECKPOINT_DISABLE", "1"),
    );
    let log = stdout(&out);
    assert!(log.contains("registry.k8s.io/pause:3.10"), "{log}");
    let out = run_ok(pausebake().arg("verify").arg("--root").arg(&root));
    assert!(
        stdout(&out).contains("registry.k8s.io/pause:3.10"),
        "{}",
        stdout(&out)
    );
    let config = std::fs::read_to_string(root.join("etc/containerd/config.toml")).unwrap();
    assert!(
        config.contains("sandbox_image = \"registry.k8s.io/pause:3.10\""),
        "{config}"
    );
}

/// The disk-image template, run by the real packer on a bootable bookworm root with the
/// static release binary, writes a disk image that boots under qemu with no network device
/// to a READY pod sandbox (tests/it/vm.rs's first-boot check).
#[test]
fn disk_image_template_writes_an_image_that_boots_to_ready() {
    if !have("packer") {
        return;
    }
    let work = crate::harness::tempdir();
    let dir = work.path();
    let Some((root, name)) = crate::vm::ready_guest(dir) else {
        return;
    };
    let disk = dir.join("node.raw");
    let out = run_ok(
        std::process::Command::new("packer")
            .arg("build")
            .arg("-var")
            .arg(format!(
                "pausebake={}",
                crate::vm::static_pausebake().display()
            ))
            .arg("-var")
            .arg(format!("root={}", root.display()))
            .arg("-var")
            .arg(format!("disk={}", disk.display()))
            .arg(repo().join("packer/examples/disk-image.pkr.hcl"))
            .env("CHECKPOINT_DISABLE", "1"),
    );
    let log = stdout(&out);
    assert!(
        log.contains(&name) && log.contains("verify     ok"),
        "{log}"
    );
    std::fs::remove_dir_all(&root).unwrap();
    crate::vm::boots_to_ready(dir, "packer", &disk, "raw", "/dev/vda", &name);
}
