//! A baked node image boots. A Debian bookworm root with a kernel, systemd and containerd from
//! the distribution (`tests/debian-root.sh`, cached) is baked by the static release binary
//! (`make dist`), made into a disk image and booted under qemu with no network device.
//! systemd starts containerd from its own unit; a oneshot unit runs the tests' CRI client
//! (tests/vm/cri-check.rs, static, copied in) and writes one verdict line per check to the
//! serial console, then powers the VM off; the test reads the console.
//!
//! Covered: containerd 1.6.20 (bookworm's) and 2.1.9 (sid's package placed in the bookworm
//! root), each with the same image unbaked (a pull error) beside it; a second boot of the
//! baked image with a sandbox running, where `pausebake import --address` and `configure
//! --address --restart` (systemd's restart) run inside the guest; `bake --disk` on a GPT
//! image (EFI + ext4 root) and on a qcow2 image; the packer disk-image template.
//!
//! TCG, as KVM hung at "Probing EDD" on the machine this was written on (`QEMU_ACCEL=kvm`
//! where it works). At most two VMs run at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::containerd::versions;
use crate::distro::debian_root;
use crate::harness::*;

/// The packages beyond containerd and runc a bootable root needs.
const BOOTABLE: &str = "systemd-sysv,linux-image-amd64,udev,kmod";
/// containerd's socket inside the guest.
const SOCKET: &str = "/run/containerd/containerd.sock";
/// A first boot took 28 s here; a loaded machine running the suite gets much longer.
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);
/// The name the live path switches to, imported inside the guest.
const LIVE_NAME: &str = "registry.invalid/node/pause:live";

/// What every VM test needs, made once per run: the static CRI check for the guest and the
/// static release binary.
struct Kit {
    cri_check: PathBuf,
    pausebake: PathBuf,
}

/// The kit, or `None` after a loud skip (a failure under CI).
fn kit() -> Option<&'static Kit> {
    static KIT: OnceLock<Option<Kit>> = OnceLock::new();
    KIT.get_or_init(|| {
        if !is_root() {
            skip("the VM tests need root (debootstrap, a root's files for mkfs.ext4 -d)");
            return None;
        }
        for program in ["qemu-system-x86_64", "qemu-img", "mkfs.ext4", "debootstrap"] {
            if !have(program) {
                return None;
            }
        }
        if std::env::consts::ARCH != "x86_64" {
            skip("the VM tests boot an amd64 guest image and build its check for x86_64 musl");
            return None;
        }
        let dist = crate::release::dist()?;
        Some(Kit {
            cri_check: build_cri_check(),
            pausebake: crate::release::static_for_host(dist),
        })
    })
    .as_ref()
}

/// tests/vm/cri-check.rs built static (musl, linked by the toolchain's rust-lld, as `make
/// dist` links), in a target directory of its own under the machine cache.
fn build_cri_check() -> PathBuf {
    let target_dir = cache_dir().join("vm-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_ok(
        Command::new(cargo)
            .args(["build", "--locked", "--quiet", "--example", "cri-check"])
            .args(["--target", "x86_64-unknown-linux-musl"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld")
            .current_dir(repo()),
    );
    let bin = target_dir.join("x86_64-unknown-linux-musl/debug/examples/cri-check");
    let file = stdout(&run_ok(Command::new("file").arg(&bin)));
    assert!(
        file.contains("statically linked") || file.contains("static-pie"),
        "the guest's check must need no libc: {file}"
    );
    bin
}

/// One check of the guest's script: a step of tests/vm/cri-check.rs or a command.
enum Step<'a> {
    /// CRI answers.
    Wait,
    /// A sandbox NAME is READY; CRI knows IMAGE.
    Ready(&'a str, &'a str),
    /// RunPodSandbox NAME fails.
    Fails(&'a str),
    /// The sandbox `Ready(NAME, _)` started in this boot is still READY.
    Still(&'a str),
    /// A command line (words without spaces or quotes), its output and exit status.
    Run(&'a str),
}

/// The guest's check script: `first` on the first boot, `second` on every later one (a
/// marker under /var/lib tells them apart). Each check prints one line (`pausebake-vm: ok
/// STEP ...` or `FAIL`); a failed CRI step adds containerd's journal.
fn script(first: &[Step], second: &[Step]) -> String {
    let lines = |steps: &[Step]| -> String {
        steps
            .iter()
            .map(|s| match s {
                Step::Wait => "  c wait\n".to_string(),
                Step::Ready(name, image) => format!("  c ready {name} {image}\n"),
                Step::Fails(name) => format!("  c fails {name}\n"),
                Step::Still(name) => format!("  c still {name}\n"),
                Step::Run(cmd) => format!("  p {cmd}\n"),
            })
            .collect()
    };
    format!(
        r#"#!/bin/sh
# Written by tests/it/vm.rs: the checks of this test VM, one verdict line each.
c() {{
  /usr/local/bin/cri-check {SOCKET} "$@" && return
  journalctl -b -u containerd --no-pager | tail -n 40 | sed 's/^/pausebake-vm: journal /'
}}
p() {{
  out=$("$@" 2>&1); rc=$?
  printf '%s\n' "$out" | sed 's/^/pausebake-vm: out /'
  if [ "$rc" = 0 ]; then echo "pausebake-vm: ok run $*"; else echo "pausebake-vm: FAIL run $* (exit $rc)"; fi
}}
marker=/var/lib/pausebake-vm/booted
if [ ! -e "$marker" ]; then
  echo "pausebake-vm: boot first"
  mkdir -p "${{marker%/*}}" && touch "$marker" && sync
{}else
  echo "pausebake-vm: boot again"
{}fi
echo "pausebake-vm: end"
"#,
        lines(first),
        lines(second)
    )
}

/// A guest root under `dir/root`: the cached bootable bookworm root, with sid's containerd
/// 2.1 package over bookworm's 1.6 when `sid`, made a test VM by tests/vm/guest.sh with the
/// script of `first` and `second`, and the static pausebake at /usr/local/bin. The kernel
/// and initrd are copied to `dir/kernel`. `None` after a loud skip.
fn guest(dir: &Path, kit: &Kit, sid: bool, first: &[Step], second: &[Step]) -> Option<PathBuf> {
    let root = debian_root(dir, &["bookworm", BOOTABLE]);
    if sid {
        let Some(c) = versions()
            .into_iter()
            .find(|c| c.semver().0 == 2 && c.semver().1 == 1)
        else {
            skip("no containerd 2.1 in the cache (tests/fetch-containerd.sh)");
            return None;
        };
        // <package>/usr/bin: the package's usr/ (binaries and its containerd.service) and
        // its /etc/containerd/config.toml, as dpkg would install them
        let package = c.bin_dir.parent().unwrap().parent().unwrap();
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(package.join("usr/."))
                .arg(root.join("usr")),
        );
        fs::copy(
            package.join("etc/containerd/config.toml"),
            root.join("etc/containerd/config.toml"),
        )
        .unwrap();
    }
    let script_path = dir.join("check.sh");
    fs::write(&script_path, script(first, second)).unwrap();
    run_ok(
        Command::new(repo().join("tests/vm/guest.sh"))
            .arg(&root)
            .arg(&kit.cri_check)
            .arg(&script_path)
            .arg(dir.join("kernel")),
    );
    run_ok(
        Command::new("install")
            .args(["-m", "0755"])
            .arg(&kit.pausebake)
            .arg(root.join("usr/local/bin/pausebake")),
    );
    Some(root)
}

/// Replaces the check script of a root [`guest`] made.
fn set_script(root: &Path, first: &[Step], second: &[Step]) {
    fs::write(
        root.join("usr/local/lib/pausebake-vm/check.sh"),
        script(first, second),
    )
    .unwrap();
}

/// A whole-disk ext4 image of `root` (no partition table), made without mounting.
fn ext4_image(root: &Path, disk: &Path) {
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(root)
            .arg(disk)
            .arg("2G"),
    );
}

/// `bake --root ROOT` with the static release binary; returns the name it baked.
fn bake(kit: &Kit, root: &Path) -> String {
    let out = run_ok(
        Command::new(&kit.pausebake)
            .arg("bake")
            .arg("--root")
            .arg(root),
    );
    baked_name(&stdout(&out))
}

/// The name of bake's summary line `  name       NAME (source)`.
fn baked_name(summary: &str) -> String {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("  name "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no name in bake's summary:\n{summary}"))
        .to_string()
}

/// One boot: the serial console and how long it took.
struct Boot {
    console: String,
    took: Duration,
}

impl Boot {
    /// The verdict lines (`ok STEP ...`, `FAIL STEP ...`, `boot ...`, `end`), in order.
    fn verdicts(&self) -> Vec<&str> {
        self.console
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').split_once("pausebake-vm: "))
            .map(|(_, v)| v)
            .filter(|v| !v.starts_with("out ") && !v.starts_with("journal "))
            .collect()
    }

    /// The rest of the `n`th `ok STEP` line; panics with the console otherwise, and when
    /// any check failed or the script did not end.
    fn ok(&self, step: &str, n: usize) -> &str {
        let verdicts = self.verdicts();
        assert!(
            verdicts.contains(&"end") && !verdicts.iter().any(|v| v.starts_with("FAIL ")),
            "{}",
            self.report()
        );
        let prefix = format!("ok {step}");
        verdicts
            .iter()
            .filter(|v| **v == prefix || v.starts_with(&format!("{prefix} ")))
            .nth(n)
            .map(|v| v[prefix.len()..].trim())
            .unwrap_or_else(|| panic!("no {prefix} #{n}\n{}", self.report()))
    }

    /// The command output lines (`out ...`) the guest printed.
    fn out(&self) -> String {
        self.console
            .lines()
            .filter_map(|l| l.split_once("pausebake-vm: out "))
            .map(|(_, v)| format!("{}\n", v.trim_end_matches('\r')))
            .collect()
    }

    fn report(&self) -> String {
        format!(
            "verdicts: {:#?}\n--- console ({:.1?}):\n{}",
            self.verdicts(),
            self.took,
            self.console
        )
    }
}

/// The `key=value` field of a verdict line.
fn field<'a>(verdict: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    verdict
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in {verdict}"))
}

/// At most two VMs at once, across every test: TCG keeps a core busy per VM.
fn vm_slot() -> impl Drop {
    static RUNNING: Mutex<usize> = Mutex::new(0);
    static FREED: Condvar = Condvar::new();
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            FREED.notify_one();
        }
    }
    let mut n = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    while *n >= 2 {
        n = FREED.wait(n).unwrap_or_else(|e| e.into_inner());
    }
    *n += 1;
    Slot
}

/// Boots `disk` (qemu `format`) with the kernel of `dir/kernel` and `root_device` as root,
/// via tests/vm/qemu.sh; the console goes to `dir/console-TAG.log`. Waits for the guest to
/// power off; kills qemu (by pid) after [`BOOT_TIMEOUT`].
fn boot(dir: &Path, tag: &str, disk: &Path, format: &str, root_device: &str) -> Boot {
    let _slot = vm_slot();
    let console = dir.join(format!("console-{tag}.log"));
    let qemu_err = dir.join(format!("qemu-{tag}.err"));
    let start = Instant::now();
    let mut child = Command::new(repo().join("tests/vm/qemu.sh"))
        .arg(disk)
        .arg(format)
        .arg(root_device)
        .arg(dir.join("kernel"))
        .arg(&console)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&qemu_err).unwrap())
        .spawn()
        .expect("starting tests/vm/qemu.sh");
    let mut ready_after = None;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if ready_after.is_none()
            && fs::read_to_string(&console).is_ok_and(|c| c.contains("pausebake-vm: ok ready"))
        {
            ready_after = Some(start.elapsed());
        }
        if start.elapsed() > BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the VM ({tag}) did not power off in {BOOT_TIMEOUT:?}\n--- console:\n{}",
                fs::read_to_string(&console).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = start.elapsed();
    let console = String::from_utf8_lossy(&fs::read(&console).unwrap_or_default()).into_owned();
    assert!(
        status.success(),
        "qemu ({tag}) failed: {status}\n{}\n--- console:\n{console}",
        fs::read_to_string(&qemu_err).unwrap_or_default()
    );
    if ready_after.is_none() && console.contains("pausebake-vm: ok ready") {
        ready_after = Some(took);
    }
    eprintln!(
        "vm {tag}: powered off after {took:.1?}, first sandbox READY after {ready_after:.1?}"
    );
    for line in console
        .lines()
        .filter_map(|l| l.split_once("pausebake-vm: "))
    {
        eprintln!("vm {tag}: {}", line.1.trim_end());
    }
    Boot { console, took }
}

/// The first boot of a baked image, the same image unbaked beside it, then a second boot of
/// the baked one: a sandbox from the baked name is running, the guest's own pausebake imports
/// [`LIVE_NAME`] into the running containerd and configures it with `--restart` (systemd
/// restarts containerd), a sandbox from the new name is READY, the first still READY.
fn first_boot_then_live(sid: bool) {
    let Some(kit) = kit() else { return };
    let work = tempdir();
    let dir = work.path();
    // 1.6.20 does not pin the sandbox image (1.6.22+ does); 2.x does.
    let (pins, version) = if sid {
        (true, "version=2.1.")
    } else {
        (false, "version=1.6.20")
    };

    // The same root, first unbaked: its image asks CRI for a sandbox, which needs a pull.
    let Some(root) = guest(dir, kit, sid, &[Step::Wait, Step::Fails("unbaked")], &[]) else {
        return;
    };
    let unbaked_disk = dir.join("unbaked.raw");
    ext4_image(&root, &unbaked_disk);

    // Then baked by the static release binary, with the checks of the name bake chose.
    let name = bake(kit, &root);
    // another epoch: other blobs than the baked image's, written into the running store
    let image = format!(
        "pausebake image --source-date-epoch 1 --name {LIVE_NAME} --output /var/tmp/live.tar"
    );
    let import = format!("pausebake import /var/tmp/live.tar --address {SOCKET} --root /");
    let configure = format!(
        "pausebake configure --address {SOCKET} --root / --sandbox-image {LIVE_NAME} --restart"
    );
    let verify = format!("pausebake verify --address {SOCKET} --root / --sandbox");
    let first = [Step::Wait, Step::Ready("first", &name)];
    let second = [
        Step::Wait,
        Step::Ready("running", &name),
        Step::Run(&image),
        Step::Run(&import),
        Step::Run(&configure),
        Step::Wait,
        Step::Run(&verify),
        Step::Ready("after-restart", LIVE_NAME),
        Step::Still("running"),
    ];
    set_script(&root, &first, &second);
    let disk = dir.join("baked.raw");
    ext4_image(&root, &disk);
    fs::remove_dir_all(&root).unwrap();

    let (baked, unbaked) = std::thread::scope(|s| {
        let unbaked = s.spawn(|| boot(dir, "unbaked", &unbaked_disk, "raw", "/dev/vda"));
        let baked = boot(dir, "first", &disk, "raw", "/dev/vda");
        (baked, unbaked.join().unwrap())
    });

    // The negative control: the same image unbaked asks for a pull, which cannot work.
    assert!(
        unbaked.ok("wait", 0).contains(version),
        "{}",
        unbaked.report()
    );
    let error = unbaked.ok("fails", 0);
    assert!(
        error.contains("pull") && error.contains(&name),
        "{error}\n{}",
        unbaked.report()
    );

    assert!(baked.ok("wait", 0).contains(version), "{}", baked.report());
    assert!(
        baked.verdicts().contains(&"boot first"),
        "{}",
        baked.report()
    );
    let ready = baked.ok("ready", 0);
    assert_eq!(field(ready, "image"), name, "{ready}");
    assert_eq!(field(ready, "pinned"), pins.to_string(), "{ready}");

    // The second boot: the store and the config persisted; the live path inside the guest.
    let again = boot(dir, "again", &disk, "raw", "/dev/vda");
    assert!(
        again.verdicts().contains(&"boot again"),
        "{}",
        again.report()
    );
    let running = again.ok("ready", 0);
    assert_eq!(field(running, "image"), name, "{running}");
    let out = again.out();
    assert!(
        out.contains("restarted containerd with `systemctl restart containerd`"),
        "{out}\n{}",
        again.report()
    );
    let after = again.ok("ready", 1);
    assert_eq!(field(after, "image"), LIVE_NAME, "{after}");
    assert_eq!(field(after, "pinned"), pins.to_string(), "{after}");
    assert_eq!(
        field(again.ok("still", 0), "id"),
        field(running, "id"),
        "{}",
        again.report()
    );
}

#[test]
fn vm_baked_bookworm_image_boots_to_ready_offline_with_containerd_1_6() {
    first_boot_then_live(false);
}

#[test]
fn vm_baked_bookworm_image_boots_to_ready_offline_with_containerd_2_1() {
    first_boot_then_live(true);
}

/// The static release binary the VM tests bake with (after [`ready_guest`] made the kit).
pub(crate) fn static_pausebake() -> &'static Path {
    &kit().expect("the VM kit").pausebake
}

/// Whether `bin` has `bake --disk` (src/disk.rs); a loud skip otherwise, a failure under CI.
fn has_disk_flag(bin: &Path) -> bool {
    let help = stdout(&run_ok(Command::new(bin).args(["bake", "--help"])));
    if help.contains("--disk") {
        return true;
    }
    skip(&format!("{} has no `bake --disk`", bin.display()));
    false
}

/// The name `bake` would give `root` (its dry run's summary), for a guest script written
/// before the root is baked inside a disk image.
fn name_bake_would_choose(kit: &Kit, root: &Path) -> String {
    let out = run_ok(
        Command::new(&kit.pausebake)
            .args(["bake", "--dry-run", "--root"])
            .arg(root),
    );
    baked_name(&stdout(&out))
}

/// A bookworm guest root (containerd 1.6.20) under `dir/root` whose first boot checks that a
/// sandbox from the name bake will choose is READY; and that name.
pub(crate) fn ready_guest(dir: &Path) -> Option<(PathBuf, String)> {
    let kit = kit()?;
    let root = guest(dir, kit, false, &[], &[])?;
    let name = name_bake_would_choose(kit, &root);
    set_script(&root, &[Step::Wait, Step::Ready("first", &name)], &[]);
    Some((root, name))
}

/// Boots `disk` and asserts its first boot ran a sandbox from `name`, READY with no network.
pub(crate) fn boots_to_ready(
    dir: &Path,
    tag: &str,
    disk: &Path,
    format: &str,
    root_device: &str,
    name: &str,
) {
    let b = boot(dir, tag, disk, format, root_device);
    assert!(b.ok("wait", 0).contains("version=1.6.20"), "{}", b.report());
    let ready = b.ok("ready", 0);
    assert_eq!(field(ready, "image"), name, "{ready}");
}

/// The GPT layout of [`gpt_image`], in 512-byte sectors, 1 MiB aligned: a 64 MiB EFI system
/// partition, then the root partition up to the last aligned sector before GPT's backup
/// header (33 sectors at the end of the 2 GiB image).
const GPT_EFI: (u64, u64) = (2048, 131_072);
const GPT_ROOT: (u64, u64) = (133_120, 4_059_136);

/// A 2 GiB GPT disk image as an installer lays it out: an EFI system partition (FAT32) and a
/// Linux root partition (the x86-64 root type GUID) holding `root` as ext4, each written at
/// its offset without mounting.
fn gpt_image(root: &Path, disk: &Path) {
    fs::File::create(disk).unwrap().set_len(2 << 30).unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(disk)
        .stdin(Stdio::piped())
        .spawn()
        .expect("starting sfdisk");
    let table = format!(
        "label: gpt\n\
         start={}, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=EFI\n\
         start={}, size={}, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root\n",
        GPT_EFI.0, GPT_EFI.1, GPT_ROOT.0, GPT_ROOT.1
    );
    std::io::Write::write_all(&mut sfdisk.stdin.take().unwrap(), table.as_bytes()).unwrap();
    assert!(
        sfdisk.wait().unwrap().success(),
        "sfdisk failed on {}",
        disk.display()
    );
    // sizes in 1 KiB blocks
    run_ok(
        Command::new("mkfs.vfat")
            .args(["-F", "32", "-s", "1", "--offset"])
            .arg(GPT_EFI.0.to_string())
            .arg(disk)
            .arg((GPT_EFI.1 / 2).to_string()),
    );
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E"])
            .arg(format!("offset={}", GPT_ROOT.0 * 512))
            .arg("-d")
            .arg(root)
            .arg(disk)
            .arg(format!("{}k", GPT_ROOT.1 / 2)),
    );
}

/// `bake --disk` on a GPT image (EFI + ext4 root) finds the root partition, bakes it, and the
/// image boots to READY with no network.
#[test]
fn vm_gpt_image_baked_with_disk_boots_to_ready() {
    let Some(kit) = kit() else { return };
    if !(have("sfdisk") && have("mkfs.vfat") && has_disk_flag(&kit.pausebake)) {
        return;
    }
    let work = tempdir();
    let dir = work.path();
    let Some((root, name)) = ready_guest(dir) else {
        return;
    };
    let disk = dir.join("gpt.raw");
    gpt_image(&root, &disk);
    fs::remove_dir_all(&root).unwrap();
    let table = || stdout(&run_ok(Command::new("sfdisk").arg("--dump").arg(&disk)));
    let before = table();
    let out = run_ok(
        Command::new(&kit.pausebake)
            .arg("bake")
            .arg("--disk")
            .arg(&disk),
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("disk: {} partition 2 (", disk.display()))
            && err.contains(&format!("at offset {}", GPT_ROOT.0 * 512)),
        "{}",
        describe(&Command::new("pausebake bake --disk"), &out)
    );
    assert_eq!(baked_name(&stdout(&out)), name);
    assert_eq!(table(), before, "bake --disk changed the partition table");
    boots_to_ready(dir, "gpt", &disk, "raw", "/dev/vda2", &name);
}

/// A qcow2 image baked with `--disk-format qcow2` stays qcow2 and boots to READY.
#[test]
fn vm_qcow2_image_baked_with_disk_format_stays_qcow2_and_boots_to_ready() {
    let Some(kit) = kit() else { return };
    if !has_disk_flag(&kit.pausebake) {
        return;
    }
    let work = tempdir();
    let dir = work.path();
    let Some((root, name)) = ready_guest(dir) else {
        return;
    };
    let raw = dir.join("disk.raw");
    ext4_image(&root, &raw);
    fs::remove_dir_all(&root).unwrap();
    let disk = dir.join("disk.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&disk),
    );
    fs::remove_file(&raw).unwrap();
    let out = run_ok(
        Command::new(&kit.pausebake)
            .arg("bake")
            .arg("--disk")
            .arg(&disk)
            .args(["--disk-format", "qcow2"]),
    );
    assert_eq!(baked_name(&stdout(&out)), name);
    let info = stdout(&run_ok(
        Command::new("qemu-img")
            .args(["info", "--output", "json"])
            .arg(&disk),
    ));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    boots_to_ready(dir, "qcow2", &disk, "qcow2", "/dev/vda", &name);
}
