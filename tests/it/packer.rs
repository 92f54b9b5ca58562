//! The Packer templates under packer/: formatted, valid for Debian's Packer, and the
//! local-root one really bakes a root.

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
    assert_eq!(all.len(), 3, "{all:?}");
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
        if t.ends_with("local-root.pkr.hcl") {
            cmd.arg("-var")
                .arg(format!("root={}", root.path().display()));
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
