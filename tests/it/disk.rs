//! `--disk IMAGE` on disk images the tests make with the real tools (sfdisk, mkfs.ext4 -d,
//! mkfs.vfat, mkfs.xfs, qemu-img) and real loop mounts: the root partition is found and
//! baked, the baked root passes `verify` and a real containerd runs a sandbox from it with no
//! pull; errors change nothing (same sha256); a signal while the image is mounted still
//! unmounts it and detaches the loop device.
//!
//! [`gpt_image`] is the shared way to make a bootable-layout image from a root directory
//! (the VM tests may use it).

#![allow(dead_code)] // gpt_image's helpers are also for other modules

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::bake::{no_pull, offline, pinned_as_it_pins, sandbox_ready};
use crate::containerd::versions;
use crate::harness::*;

const NAME: &str = "registry.k8s.io/pause:3.10";
const MIB: u64 = 1 << 20;

/// The GPT root partition type of the host's architecture (Discoverable Partitions
/// Specification), written out here independently of `src/disk.rs`.
pub fn root_type() -> &'static str {
    match host_arch() {
        "amd64" => "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "arm64" => "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
        "arm" => "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3",
        "ppc64le" => "C31C45E6-3F39-412E-80FB-4809C4980599",
        "s390x" => "5EEAD9A9-FE09-4A1E-A1D7-520D00531306",
        "riscv64" => "72EC70A6-CF74-40E6-BD49-4BDA08E8F224",
        other => panic!("no root partition type for {other}"),
    }
}

/// A partition of a test image, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub number: u32,
    pub offset: u64,
    pub size: u64,
}

/// Creates `image` (sparse, `size_mib` MiB), partitions it with the sfdisk `script` and
/// returns its partitions as sfdisk reports them.
pub fn partition(image: &Path, size_mib: u64, script: &str) -> Vec<Part> {
    let file = fs::File::create(image).unwrap();
    file.set_len(size_mib * MIB).unwrap();
    drop(file);
    let mut cmd = Command::new("sfdisk");
    cmd.args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("running sfdisk");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    let out = run_ok(Command::new("sfdisk").arg("--json").arg(image));
    let table: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = &table["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    table["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let number = node
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            Part {
                number,
                offset: p["start"].as_u64().unwrap() * sector,
                size: p["size"].as_u64().unwrap() * sector,
            }
        })
        .collect()
}

/// An ext4 filesystem made from `root` inside `part` of `image`, with no mount and no
/// privileges: `mkfs.ext4 -d ROOT -E offset=B IMAGE SIZE`.
pub fn ext4_from(image: &Path, part: Part, root: &Path) {
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(root)
            .arg("-E")
            .arg(format!("offset={}", part.offset))
            .arg(image)
            .arg(format!("{}k", part.size / 1024)),
    );
}

/// An empty vfat (FAT16) filesystem in `part` (an EFI system partition's).
pub fn vfat(image: &Path, part: Part) {
    run_ok(
        // FAT16: with FAT32's cluster minimum, mkfs.vfat refuses 32 MiB in a large image
        Command::new("mkfs.vfat")
            .args(["-F", "16", "--offset"])
            .arg((part.offset / 512).to_string())
            .arg(image)
            .arg((part.size / 1024).to_string()),
    );
}

/// An xfs filesystem in `part`, filled with a copy of `root` through a loop mount (mkfs.xfs
/// cannot populate one by itself). Needs root.
pub fn xfs_from(image: &Path, part: Part, root: &Path) {
    let out = run_ok(
        Command::new("losetup")
            .args(["--find", "--show", "--offset"])
            .arg(part.offset.to_string())
            .arg("--sizelimit")
            .arg(part.size.to_string())
            .arg(image),
    );
    let dev = stdout(&out).trim().to_string();
    let made = run_any(Command::new("mkfs.xfs").args(["-q", "-f", &dev]));
    let mnt = tempdir();
    let copied = made.status.success()
        && run_any(Command::new("mount").arg(&dev).arg(mnt.path()))
            .status
            .success();
    if copied {
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(root.join("."))
                .arg(mnt.path()),
        );
        run_ok(Command::new("umount").arg(mnt.path()));
    }
    run_ok(Command::new("losetup").args(["-d", &dev]));
    assert!(made.status.success(), "mkfs.xfs: {}", stderr(&made));
    assert!(copied, "mounting the new xfs");
}

/// The disk layout a VM boots: a GPT with 1, an EFI system partition (vfat, 32 MiB) and 2,
/// the host architecture's root partition type, holding an ext4 made from `root` with
/// `mkfs.ext4 -d` (no mount, no root privileges). `image` is created sparse, `size_mib`
/// MiB. Returns the two partitions.
pub fn gpt_image(root: &Path, image: &Path, size_mib: u64) -> [Part; 2] {
    let script = format!("label: gpt\nsize=32MiB, type=U\ntype={}\n", root_type());
    let parts = partition(image, size_mib, &script);
    let [efi, rootfs] = [parts[0], parts[1]];
    vfat(image, efi);
    ext4_from(image, rootfs, root);
    [efi, rootfs]
}

/// A root directory holding only `/etc/os-release` (what marks a Linux root).
fn os_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n").unwrap();
    root
}

/// A directory with nothing but a data file: a Linux filesystem that is no root.
fn data_dir(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("notes"), "not a root\n").unwrap();
    data
}

/// The sha256 of a file, by `sha256sum` (the debug-built sha2 takes seconds per image).
fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

/// The sha256 of `len` bytes at `offset` of `path` (`offset` and `len` in MiB units).
fn sha256_range(path: &Path, offset: u64, len: u64) -> String {
    assert!(
        offset.is_multiple_of(MIB) && len.is_multiple_of(MIB),
        "whole MiB"
    );
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"dd if="$0" bs=1M skip="$1" count="$2" status=none | sha256sum"#,
    ])
    .arg(path)
    .arg((offset / MIB).to_string())
    .arg((len / MIB).to_string());
    stdout(&run_ok(&mut cmd))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The loop devices backed by `image` (`losetup -j`).
fn loops_of(image: &Path) -> String {
    stdout(&run_ok(Command::new("losetup").arg("-j").arg(image)))
}

/// Whether anything is mounted from a pausebake mount directory of process `pid`.
fn mounted_by(pid: u32) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.contains(&format!("/pausebake-disk-{pid}-"))
}

/// `pausebake CMD --disk IMAGE ARGS`.
fn on_disk(cmd: &str, image: &Path, args: &[&str]) -> Command {
    let mut c = pausebake();
    c.arg(cmd).arg("--disk").arg(image).args(args);
    c
}

/// The flags a bake of a root without containerd needs to be checked against `version`.
fn bake_args(version: &str) -> Vec<String> {
    ["--containerd-version", version, "--name", NAME]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Runs `pausebake bake --disk IMAGE` for containerd `version`, which must succeed, and
/// returns its stderr's `disk:` line.
fn bake_disk(image: &Path, version: &str, extra: &[&str]) -> String {
    let mut cmd = on_disk("bake", image, extra);
    cmd.args(bake_args(version));
    let out = run_ok(&mut cmd);
    assert!(
        stdout(&out).contains("verify     ok"),
        "{}",
        describe(&cmd, &out)
    );
    assert_eq!(loops_of(image), "", "a loop device is left on {image:?}");
    // the summary names the image and its partition, not the directory it was mounted on
    let text = stdout(&out);
    assert!(
        text.contains(&format!("root {} partition ", image.display()))
            || text.contains(&format!("root {} whole filesystem", image.display())),
        "{}",
        describe(&cmd, &out)
    );
    assert!(!text.contains("pausebake-disk-"), "{text}");
    let err = stderr(&out);
    err.lines()
        .find(|l| l.starts_with("disk: "))
        .unwrap_or_else(|| panic!("no disk: line\n{}", describe(&cmd, &out)))
        .to_string()
}

/// A partition of an image, mounted read-write for the test's own checks; unmounted (and its
/// loop device detached) when dropped.
struct Mounted {
    dir: tempfile::TempDir,
}

impl Mounted {
    fn new(image: &Path, part: Part) -> Mounted {
        let dir = tempdir();
        run_ok(
            Command::new("mount")
                .arg("-o")
                .arg(format!(
                    "loop,offset={},sizelimit={}",
                    part.offset, part.size
                ))
                .arg(image)
                .arg(dir.path()),
        );
        Mounted { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// `pausebake verify --root` on `part` of `image`, mounted by the test: exit 0.
fn verified(image: &Path, part: Part, version: &str) {
    let m = Mounted::new(image, part);
    let mut cmd = pausebake();
    cmd.args(["verify", "--containerd-version", version, "--root"])
        .arg(m.path());
    let out = run_any(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&cmd, &out));
}

/// Asserts that the ext4 in `part` of `image` is clean (`e2fsck -f -n` on a read-only loop
/// device).
fn fsck_clean(image: &Path, part: Part) {
    let out = run_ok(
        Command::new("losetup")
            .args(["--find", "--show", "--read-only", "--offset"])
            .arg(part.offset.to_string())
            .arg("--sizelimit")
            .arg(part.size.to_string())
            .arg(image),
    );
    let dev = stdout(&out).trim().to_string();
    let fsck = run_any(Command::new("e2fsck").args(["-f", "-n", &dev]));
    run_ok(Command::new("losetup").args(["-d", &dev]));
    assert_eq!(fsck.status.code(), Some(0), "{image:?}: {}", stdout(&fsck));
}

/// Whether the disk tests can run: root, and the programs they use.
fn can_run(extra: &[&str]) -> bool {
    if !is_root() {
        skip("the --disk tests need root (loop mounts)");
        return false;
    }
    ["sfdisk", "mkfs.ext4", "mkfs.vfat", "losetup", "mount"]
        .iter()
        .chain(extra)
        .all(|p| have(p))
}

/// An error of `cmd`: exit 1, stderr containing `needle`, `image` unchanged.
fn refused(cmd: &mut Command, image: Option<&Path>, needle: &str) {
    let before = image.filter(|i| i.exists()).map(sha256);
    let out = run_any(cmd);
    let text = describe(cmd, &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(stderr(&out).contains(needle), "wanted {needle:?}\n{text}");
    assert!(stderr(&out).starts_with("pausebake: error: "), "{text}");
    if let Some(image) = image.filter(|i| i.exists()) {
        assert_eq!(Some(sha256(image)), before, "{image:?} changed\n{text}");
        assert_eq!(loops_of(image), "", "{text}");
    }
}

#[test]
fn disk_bake_of_a_gpt_image_bakes_its_root_partition_and_a_sandbox_runs_from_it() {
    if !can_run(&[]) {
        return;
    }
    let Some(c) = versions().into_iter().next() else {
        return;
    };
    let dir = tempdir();
    let image = dir.path().join("node.raw");
    let [efi, rootfs] = gpt_image(&os_root(dir.path()), &image, 128);
    let efi_before = sha256_range(&image, efi.offset, efi.size);

    let line = bake_disk(&image, &c.version, &[]);
    assert_eq!(
        line,
        format!(
            "disk: {} partition 2 (GPT root {}, ext4) at offset {}",
            image.display(),
            host_arch(),
            rootfs.offset
        )
    );
    assert_eq!(sha256_range(&image, efi.offset, efi.size), efi_before);

    // verify --disk mounts read-only: it passes and writes nothing.
    let before = sha256(&image);
    let mut cmd = on_disk("verify", &image, &["--containerd-version", &c.version]);
    let out = run_any(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&cmd, &out));
    assert_eq!(sha256(&image), before, "verify --disk wrote to the image");

    verified(&image, rootfs, &c.version);
    let m = Mounted::new(&image, rootfs);
    let mut ctd = offline(&c, m.path());
    sandbox_ready(&ctd, "from-disk");
    pinned_as_it_pins(&ctd, &c, NAME);
    no_pull(&ctd);
    ctd.stop();
}

#[test]
fn disk_bake_finds_the_root_of_an_mbr_image_by_its_os_release() {
    if !can_run(&[]) {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("mbr.raw");
    let parts = partition(&image, 96, "label: dos\nsize=32MiB, type=83\ntype=83\n");
    ext4_from(&image, parts[0], &data_dir(dir.path()));
    ext4_from(&image, parts[1], &os_root(dir.path()));
    let line = bake_disk(&image, "1.6.20", &[]);
    assert_eq!(
        line,
        format!(
            "disk: {} partition 2 (MBR type 0x83, ext4) at offset {}",
            image.display(),
            parts[1].offset
        )
    );
    verified(&image, parts[1], "1.6.20");
}

#[test]
fn disk_bake_of_a_whole_ext4_filesystem_and_a_dry_run_that_writes_nothing() {
    if !can_run(&[]) {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("root.ext4");
    let whole = Part {
        number: 0,
        offset: 0,
        size: 64 * MIB,
    };
    fs::File::create(&image)
        .unwrap()
        .set_len(whole.size)
        .unwrap();
    ext4_from(&image, whole, &os_root(dir.path()));

    let before = sha256(&image);
    let mut cmd = on_disk("bake", &image, &["--dry-run"]);
    cmd.args(bake_args("2.1.9"));
    let out = run_ok(&mut cmd);
    assert_eq!(sha256(&image), before, "bake --dry-run --disk wrote");
    assert!(
        stderr(&out).contains("whole filesystem (ext4) at offset 0"),
        "{}",
        describe(&cmd, &out)
    );

    let line = bake_disk(&image, "2.1.9", &[]);
    assert_eq!(
        line,
        format!(
            "disk: {} whole filesystem (ext4) at offset 0",
            image.display()
        )
    );
    verified(&image, whole, "2.1.9");
}

#[test]
fn disk_bake_of_an_xfs_root() {
    if !can_run(&["mkfs.xfs"]) {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("xfs.raw");
    // xfsprogs 5.19+ refuses filesystems under 300 MiB; the file stays sparse.
    let parts = partition(&image, 400, "label: gpt\nsize=32MiB, type=U\ntype=L\n");
    vfat(&image, parts[0]);
    xfs_from(&image, parts[1], &os_root(dir.path()));
    let line = bake_disk(&image, "2.1.9", &[]);
    assert_eq!(
        line,
        format!(
            "disk: {} partition 2 (GPT Linux filesystem, xfs) at offset {}",
            image.display(),
            parts[1].offset
        )
    );
    verified(&image, parts[1], "2.1.9");
}

#[test]
fn disk_partition_chooses_among_several_roots() {
    if !can_run(&[]) {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("two.raw");
    let script = "label: gpt\nsize=32MiB, type=U\nsize=48MiB, type=L\ntype=L\n";
    let parts = partition(&image, 160, script);
    vfat(&image, parts[0]);
    ext4_from(&image, parts[1], &os_root(dir.path()));
    ext4_from(&image, parts[2], &os_root(dir.path()));

    let mut cmd = on_disk("bake", &image, &[]);
    cmd.args(bake_args("2.1.9"));
    refused(
        &mut cmd,
        Some(&image),
        "several filesystems hold /etc/os-release (partition 2 (GPT Linux filesystem, ext4), partition 3 (GPT Linux filesystem, ext4)): choose one with --partition N",
    );
    let line = bake_disk(&image, "2.1.9", &["--partition", "3"]);
    assert!(
        line.contains(" partition 3 (GPT Linux filesystem, ext4) "),
        "{line}"
    );
    verified(&image, parts[2], "2.1.9");
    let other = Mounted::new(&image, parts[1]);
    assert!(
        !other.path().join("var/lib/containerd").exists(),
        "partition 2 was baked too"
    );
    drop(other);
    let mut cmd = on_disk("bake", &image, &["--partition", "1"]);
    refused(
        &mut cmd,
        Some(&image),
        "--partition 1: partition 1 (GPT EFI system, vfat) holds no Linux filesystem",
    );
}

#[test]
fn disk_format_qcow2_is_baked_and_stays_qcow2() {
    if !can_run(&["qemu-img"]) {
        return;
    }
    let dir = tempdir();
    let raw = dir.path().join("build.raw");
    let [_, rootfs] = gpt_image(&os_root(dir.path()), &raw, 96);
    let image = dir.path().join("node.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args([
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                "cluster_size=131072",
            ])
            .arg(&raw)
            .arg(&image),
    );
    fs::remove_file(&raw).unwrap();
    fs::set_permissions(&image, fs::Permissions::from_mode(0o640)).unwrap();

    let mut cmd = on_disk("bake", &image, &[]);
    cmd.args(bake_args("2.1.9"));
    refused(
        &mut cmd,
        Some(&image),
        "it is a qcow2 image, not raw: add --disk-format qcow2",
    );

    let line = bake_disk(&image, "2.1.9", &["--disk-format", "qcow2"]);
    assert!(line.contains(" partition 2 (GPT root "), "{line}");
    let info = run_ok(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&image),
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["cluster-size"], 131072, "{info}");
    let mode = fs::metadata(&image).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("pausebake"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");

    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(&image)
            .arg(&raw),
    );
    verified(&raw, rootfs, "2.1.9");
}

#[test]
fn disk_errors_are_clear_exit_1_and_leave_the_image_unchanged() {
    if !can_run(&["setpriv", "e2fsck"]) {
        return;
    }
    let dir = tempdir();
    let missing = dir.path().join("missing.raw");
    refused(
        &mut on_disk("bake", &missing, &[]),
        None,
        &format!(
            "reading disk image {}: No such file or directory",
            missing.display()
        ),
    );
    assert!(!missing.exists());

    // An EFI partition and a Linux filesystem that is no root.
    let image = dir.path().join("data.raw");
    let parts = partition(&image, 96, "label: gpt\nsize=32MiB, type=U\ntype=L\n");
    vfat(&image, parts[0]);
    ext4_from(&image, parts[1], &data_dir(dir.path()));
    let mut cmd = on_disk("bake", &image, &[]);
    cmd.args(bake_args("2.1.9"));
    refused(
        &mut cmd,
        Some(&image),
        "no Linux root in the image: no GPT root partition, and no Linux filesystem holds /etc/os-release (it has partition 1 (GPT EFI system, vfat), partition 2 (GPT Linux filesystem, ext4))",
    );
    let zeros = dir.path().join("zeros.raw");
    fs::File::create(&zeros).unwrap().set_len(8 * MIB).unwrap();
    refused(
        &mut on_disk("configure", &zeros, &[]),
        Some(&zeros),
        "no Linux root in the image: no GPT root partition and no Linux filesystem (ext2/3/4, xfs, btrfs) (it has no partition table and no known filesystem)",
    );

    // A root image, as an unprivileged user who can read it.
    let root_image = dir.path().join("node.raw");
    let [_, rootfs] = gpt_image(&os_root(dir.path()), &root_image, 96);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&root_image, fs::Permissions::from_mode(0o666)).unwrap();
    for command in ["bake", "configure", "verify"] {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            PAUSEBAKE,
            command,
            "--disk",
        ])
        .arg(&root_image);
        refused(
            &mut cmd,
            Some(&root_image),
            "mounting a disk image needs root privileges (CAP_SYS_ADMIN), which pausebake does not have: run it as root, or mount the root filesystem yourself and use --root DIR",
        );
    }

    // An archive that cannot be read: refused before the image is mounted, so not even the
    // superblock changes.
    let gone = dir.path().join("gone.tar");
    let mut import = on_disk("import", &root_image, &[]);
    import.arg(&gone);
    let mut bake = on_disk("bake", &root_image, &["--archive"]);
    bake.arg(&gone);
    for cmd in [&mut import, &mut bake] {
        refused(cmd, Some(&root_image), &gone.display().to_string());
    }

    // A command that fails once the root is mounted (its containerd config is no TOML):
    // unmounted, detached, the filesystem clean (a read-write mount itself updates the
    // superblock, so no sha256 here).
    let other = tempdir();
    let broken = os_root(other.path());
    fs::create_dir_all(broken.join("etc/containerd")).unwrap();
    fs::write(broken.join("etc/containerd/config.toml"), "[plugins\n").unwrap();
    let broken_image = other.path().join("broken.raw");
    let [_, broken_fs] = gpt_image(&broken, &broken_image, 96);
    let mut cmd = on_disk("configure", &broken_image, &[]);
    let out = run_any(&mut cmd);
    let text = describe(&cmd, &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        stderr(&out).contains("parsing /etc/containerd/config.toml as TOML"),
        "{text}"
    );
    assert_eq!(loops_of(&broken_image), "", "{text}");
    fsck_clean(&broken_image, broken_fs);

    // The root partition attached already (mounted elsewhere): refused, not mounted twice.
    let out = run_ok(
        Command::new("losetup")
            .args(["--find", "--show", "--read-only", "--offset"])
            .arg(rootfs.offset.to_string())
            .arg(&root_image),
    );
    let dev = stdout(&out).trim().to_string();
    let before = sha256(&root_image);
    let out = run_any(&mut on_disk("bake", &root_image, &[]));
    run_ok(Command::new("losetup").args(["-d", &dev]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("it is attached to a loop device already"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sha256(&root_image), before);

    // No loop devices: a private /dev without them.
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs tmpfs /dev && exec "$0" bake --disk "$1""#)
        .arg(PAUSEBAKE)
        .arg(&root_image);
    refused(
        &mut cmd,
        Some(&root_image),
        "mounting a disk image needs loop devices, and /dev/loop-control is missing: load the loop module (modprobe loop)",
    );

    // --disk-format without qemu-img: nothing else is looked at.
    let empty = tempdir();
    let mut cmd = on_disk("bake", &root_image, &["--disk-format", "qcow2"]);
    cmd.env("PATH", empty.path());
    refused(
        &mut cmd,
        Some(&root_image),
        "--disk-format qcow2 needs qemu-img to convert",
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        5,
        "a file was left"
    );
}

/// A root whose containerd config is a FIFO nobody writes: bake blocks reading it, with
/// the image mounted.
fn blocking_root(dir: &Path) -> PathBuf {
    let root = os_root(dir);
    fs::create_dir_all(root.join("etc/containerd")).unwrap();
    run_ok(Command::new("mkfifo").arg(root.join("etc/containerd/config.toml")));
    root
}

/// Starts `pausebake bake --disk IMAGE ARGS` on an image of a [`blocking_root`], sends it
/// `signal` once it has the image mounted, and waits until it is dead and, its guard
/// having acted, nothing of `image` is mounted or attached and its mount directory is gone.
fn kill_while_mounted(image: &Path, args: &[&str], signal: &str) {
    // `env --default-signal`: a test binary started in the background may inherit an
    // ignored SIGINT, which would outlive exec.
    let mut cmd = Command::new("env");
    cmd.args(["--default-signal=INT,TERM", PAUSEBAKE, "bake", "--disk"])
        .arg(image)
        .args(args)
        .args(bake_args("2.1.9"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let start = Instant::now();
    while !mounted_by(pid) {
        assert!(child.try_wait().unwrap().is_none(), "pausebake ended early");
        assert!(start.elapsed() < Duration::from_secs(60), "never mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "not blocked on the FIFO"
    );
    run_ok(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string()),
    );
    let out: Output = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    let want = match signal {
        "TERM" => 15,
        "INT" => 2,
        _ => 9,
    };
    assert_eq!(out.status.signal(), Some(want), "{}", stderr(&out));

    // The guard acts once pausebake's files are closed.
    let start = Instant::now();
    while mounted_by(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "SIG{signal}: still mounted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let leftovers: Vec<_> = fs::read_dir(std::env::temp_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("pausebake-disk-{pid}-")))
        .collect();
    assert!(leftovers.is_empty(), "SIG{signal}: {leftovers:?}");
}

/// Kills pausebake with SIGTERM and SIGINT while it has a raw image mounted: its guard
/// unmounts the filesystem, the loop device is detached, the mount directory removed, and
/// the filesystem is clean. With `--disk-format qcow2` even a SIGKILL leaves the qcow2 image
/// as it was and no temporary file beside it.
#[test]
fn disk_a_signal_while_mounted_still_unmounts_and_detaches() {
    if !can_run(&["e2fsck", "env", "mkfifo", "qemu-img"]) {
        return;
    }
    for signal in ["TERM", "INT"] {
        let dir = tempdir();
        let image = dir.path().join("node.raw");
        let [_, rootfs] = gpt_image(&blocking_root(dir.path()), &image, 96);
        kill_while_mounted(&image, &[], signal);
        let start = Instant::now();
        while !loops_of(&image).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "SIG{signal}: attached"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        fsck_clean(&image, rootfs);
    }

    let dir = tempdir();
    let raw = dir.path().join("build.raw");
    gpt_image(&blocking_root(dir.path()), &raw, 96);
    let image = dir.path().join("node.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&image),
    );
    fs::remove_file(&raw).unwrap();
    let before = sha256(&image);
    kill_while_mounted(&image, &["--disk-format", "qcow2"], "KILL");
    let start = Instant::now();
    let left = || {
        fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("pausebake"))
            .collect::<Vec<_>>()
    };
    while !left().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "{:?}", left());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sha256(&image), before, "the qcow2 image changed");
}

/// The README's node-image Makefile target, run as written on a qcow2 base image of a
/// Debian-like root (containerd known from its dpkg database): `make node-image` leaves a
/// baked `node.qcow2` that `verify --disk` passes, and the base image unchanged.
#[test]
fn readme_node_image_target_bakes_a_qcow2() {
    if !can_run(&["qemu-img", "make"]) {
        return;
    }
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let from = readme
        .find("```make\n# node.qcow2")
        .expect("the README's node-image block");
    let block = &readme[from + "```make\n".len()..];
    let block = &block[..block.find("```").unwrap()];

    let dir = tempdir();
    let root = os_root(dir.path());
    fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    fs::write(
        root.join("var/lib/dpkg/status"),
        "Package: containerd\nStatus: install ok installed\nVersion: 1.6.20~ds1-1+deb12u1\n",
    )
    .unwrap();
    let raw = dir.path().join("base.raw");
    gpt_image(&root, &raw, 96);
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(dir.path().join("base.qcow2")),
    );
    let base = sha256(&dir.path().join("base.qcow2"));
    fs::write(dir.path().join("Makefile"), block).unwrap();
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(dir.path())
        .arg("node-image")
        .arg(format!("PAUSEBAKE={PAUSEBAKE}"));
    let out = run_ok(&mut make);
    assert!(
        stdout(&out).contains("verify     ok"),
        "{}",
        describe(&make, &out)
    );
    assert_eq!(sha256(&dir.path().join("base.qcow2")), base);
    let node = dir.path().join("node.qcow2");
    assert!(!dir.path().join("node.qcow2.tmp").exists());
    let mut cmd = on_disk("verify", &node, &["--disk-format", "qcow2"]);
    let out = run_any(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&cmd, &out));
    assert!(stdout(&out).contains("1.6.20"), "{}", describe(&cmd, &out));
}
