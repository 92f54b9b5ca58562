//! Every architecture pausebake bakes for, proven by that architecture's own containerd, and
//! docker as a consumer of the docker-archive.
//!
//! For arm64, arm v7, ppc64le, s390x and riscv64 a fresh root is made from the Debian
//! packages of that architecture (containerd, libc6, libseccomp2, unpacked by
//! `tests/fetch-foreign.sh`), baked with nothing but `--root` (platform and containerd
//! version are read from the root's own binaries), and that root's containerd is started on it
//! under qemu-user 10 with no network (`unshare --net`); a CRI RunPodSandbox must be READY
//! without a pull, pinned where that containerd pins, with the foreign pause running under
//! qemu. runc is the host's (amd64): a foreign runc cannot re-exec itself under qemu-user
//! (docs/measured-facts.md). A root without bake is the negative control: its sandbox needs a
//! pull, which fails.
//!
//! Foreign binaries run through binfmt_misc handlers this module registers under its own
//! names (`pausebake-qemu-*`, flags `PF`, pointing at qemu 10) while a test runs, with any
//! other handler of the same magic (Debian's `qemu-*`) disabled meanwhile; [`Binfmt`] puts
//! everything back when dropped, also on panic, and a file lock serialises the tests across
//! processes, since the handlers are machine-wide.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::bake::{no_pull, pins, sandbox_needs_a_pull, sandbox_ready};
use crate::containerd::{Containerd, Running, StartOpts};
use crate::harness::*;

/// One foreign architecture in each vocabulary the test needs, and the containerd series
/// the issue asks for on it (each a prefix of `containerd --version`).
#[derive(Clone, Copy, Debug)]
struct Foreign {
    /// Debian's name, as in the sysroot directories.
    deb: &'static str,
    /// The platform bake must detect in the root.
    platform: &'static str,
    /// qemu-user's name (`qemu-<name>`, `/usr/lib/binfmt.d/qemu-<name>.conf`).
    qemu: &'static str,
    series: &'static [&'static str],
}

const ARM64: Foreign = Foreign {
    deb: "arm64",
    platform: "linux/arm64",
    qemu: "aarch64",
    series: &["1.6", "1.7", "2."],
};
const ARMHF: Foreign = Foreign {
    deb: "armhf",
    platform: "linux/arm/v7",
    qemu: "arm",
    series: &["1.6", "2."],
};
const PPC64EL: Foreign = Foreign {
    deb: "ppc64el",
    platform: "linux/ppc64le",
    qemu: "ppc64le",
    series: &["1.6", "2."],
};
const S390X: Foreign = Foreign {
    deb: "s390x",
    platform: "linux/s390x",
    qemu: "s390x",
    series: &["1.6", "2."],
};
/// riscv64 starts at trixie: no 1.6.
const RISCV64: Foreign = Foreign {
    deb: "riscv64",
    platform: "linux/riscv64",
    qemu: "riscv64",
    series: &["1.7", "2."],
};

/// bbolt's magic at offset 16 of meta.db, as each byte order writes it.
const BIG_ENDIAN_MAGIC: [u8; 4] = [0xed, 0x0c, 0xda, 0xed];
const LITTLE_ENDIAN_MAGIC: [u8; 4] = [0xed, 0xda, 0x0c, 0xed];

const META_DB: &str = "var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db";

/// Where `tests/fetch-foreign.sh` unpacks qemu and the sysroots, and records them (`qemu.dir`,
/// `<suite>-<arch>.dir`).
fn foreign_dir() -> PathBuf {
    cache_dir().join("foreign")
}

/// What one architecture's tests run with: qemu 10's emulator and every containerd build
/// unpacked for it (oldest first).
struct Setup {
    arch: Foreign,
    qemu: PathBuf,
    builds: Vec<Sysroot>,
}

/// A sysroot from `tests/fetch-foreign.sh` and the version its containerd prints.
struct Sysroot {
    dir: PathBuf,
    containerd: Containerd,
}

/// The emulator and sysroots for `arch`, or `None` (a loud skip, a failure under CI) when
/// something is missing. A missing containerd series is a skip too, and the others still run.
fn setup(arch: Foreign) -> Option<Setup> {
    if !is_root() {
        skip("foreign containerd tests need root (binfmt_misc, unshare)");
        return None;
    }
    if !(have("unshare") && have("nsenter") && have("runc") && have("ip")) {
        return None;
    }
    if !binfmt_conf(arch).is_file() {
        skip(&format!(
            "{} not found (install qemu-user-static)",
            binfmt_conf(arch).display()
        ));
        return None;
    }
    let qemu = fs::read_to_string(foreign_dir().join("qemu.dir"))
        .ok()
        .map(|d| {
            foreign_dir()
                .join(d.trim())
                .join(format!("usr/bin/qemu-{}", arch.qemu))
        })
        .filter(|q| q.is_file());
    let Some(qemu) = qemu else {
        skip("no qemu-user 10 under the cache (run tests/fetch-foreign.sh)");
        return None;
    };
    let version = run_ok(Command::new(&qemu).arg("--version"));
    let major: u32 = stdout(&version)
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.split('.').next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 10,
        "{} is not qemu 10 or newer (the shim needs PR_SET_CHILD_SUBREAPER):\n{}",
        qemu.display(),
        stdout(&version)
    );

    // "<suite>-<arch>.dir" names the sysroot fetch-foreign.sh completed for that suite.
    let suffix = format!("-{}.dir", arch.deb);
    let mut dirs: Vec<PathBuf> = fs::read_dir(foreign_dir())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
                .filter_map(|e| fs::read_to_string(e.path()).ok())
                .map(|name| foreign_dir().join(name.trim()))
                .filter(|p| p.join("usr/bin/containerd").is_file())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    let mut builds: Vec<Sysroot> = dirs
        .into_iter()
        .map(|dir| {
            // Run by the emulator directly: no binfmt handler is needed to ask.
            let out = run_ok(
                Command::new(&qemu)
                    .env("QEMU_LD_PREFIX", &dir)
                    .arg(dir.join("usr/bin/containerd"))
                    .arg("--version"),
            );
            // "containerd github.com/containerd/containerd 1.6.20~ds1 <revision>"
            let version = stdout(&out)
                .split_whitespace()
                .nth(2)
                .unwrap_or_else(|| panic!("no version in {}", stdout(&out)))
                .to_string();
            let containerd = Containerd {
                version,
                bin_dir: dir.join("usr/bin"),
            };
            Sysroot { dir, containerd }
        })
        .collect();
    builds.sort_by_key(|b| b.containerd.semver());
    for series in arch.series {
        if !builds
            .iter()
            .any(|b| b.containerd.version.starts_with(series))
        {
            skip(&format!(
                "no {} containerd {series}x under {} (run tests/fetch-foreign.sh)",
                arch.deb,
                foreign_dir().display()
            ));
        }
    }
    if builds.is_empty() {
        return None;
    }
    Some(Setup { arch, qemu, builds })
}

// ---------------------------------------------------------------------------------------
// binfmt_misc

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// The handler Debian's qemu-user-static registers for `arch`, in systemd's binfmt.d form
/// (`:name:M::magic:mask:interpreter:flags`): where the magic and mask come from.
fn binfmt_conf(arch: Foreign) -> PathBuf {
    PathBuf::from(format!("/usr/lib/binfmt.d/qemu-{}.conf", arch.qemu))
}

/// The magic and mask of `arch`'s ELF files, `\x`-escaped, from [`binfmt_conf`].
fn magic_and_mask(arch: Foreign) -> (String, String) {
    let conf = fs::read_to_string(binfmt_conf(arch))
        .unwrap_or_else(|e| panic!("reading {}: {e}", binfmt_conf(arch).display()));
    match conf.trim().split(':').collect::<Vec<_>>().as_slice() {
        ["", _name, "M", _offset, magic, mask, ..] => (magic.to_string(), mask.to_string()),
        _ => panic!("unexpected {}: {conf}", binfmt_conf(arch).display()),
    }
}

/// Handlers registered for the time a test runs; dropping it restores binfmt_misc as it was
/// found: our handlers removed, the handlers we disabled enabled again, the filesystem
/// unmounted if we mounted it.
struct Binfmt {
    mine: Vec<String>,
    disabled: Vec<String>,
    mounted: bool,
    _lock: BinfmtLock,
}

/// The right to change binfmt_misc: one test at a time in this process (a mutex) and across
/// processes (an flock on a file in the cache), since handlers are machine-wide.
struct BinfmtLock {
    _file: fs::File,
    _guard: MutexGuard<'static, ()>,
}

impl BinfmtLock {
    /// Blocks until no other test holds the handlers.
    fn take() -> BinfmtLock {
        static LOCK: Mutex<()> = Mutex::new(());
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let file = fs::File::create(foreign_dir().join("binfmt.lock"))
            .expect("creating the binfmt lock file");
        file.lock().expect("locking the binfmt lock file");
        BinfmtLock {
            _file: file,
            _guard: guard,
        }
    }
}

/// Handlers a test disabled, written before disabling them, so a run that was killed
/// before it could restore them is repaired by the next one.
fn disabled_record() -> PathBuf {
    foreign_dir().join("binfmt-disabled")
}

fn binfmt_mounted() -> bool {
    Path::new(BINFMT).join("register").exists()
}

/// Writes `text` to a binfmt_misc control file in one write, as the kernel requires.
fn binfmt_write(file: &str, text: &str) -> std::io::Result<()> {
    fs::write(Path::new(BINFMT).join(file), text)
}

/// The `magic` (hex) of handler `name`, if it exists and is enabled.
fn enabled_magic(name: &str) -> Option<String> {
    let text = fs::read_to_string(Path::new(BINFMT).join(name)).ok()?;
    if text.lines().next() != Some("enabled") {
        return None;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("magic "))
        .map(str::to_string)
}

/// `\x7f\x45...` as lower-case hex, the way binfmt_misc shows a magic.
fn unescape_hex(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut hex = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if escaped[i..].starts_with("\\x") {
            hex.push_str(&escaped[i + 2..i + 4].to_lowercase());
            i += 4;
        } else {
            hex.push_str(&format!("{:02x}", bytes[i]));
            i += 1;
        }
    }
    hex
}

impl Binfmt {
    /// Registers `pausebake-qemu-<name>` for each of `archs` (flags `PF`: the emulator is
    /// opened now, so it also runs inside containers' mount namespaces, and argv[0] is kept),
    /// disabling every other enabled handler of the same magic, for as long as `lock` is
    /// held (it is released on drop, after restoring).
    fn register(lock: BinfmtLock, archs: &[(Foreign, &Path)]) -> Binfmt {
        let mut me = Binfmt {
            mine: Vec::new(),
            disabled: Vec::new(),
            mounted: !binfmt_mounted(),
            _lock: lock,
        };
        if me.mounted {
            run_ok(Command::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", BINFMT]));
        }
        assert_eq!(
            fs::read_to_string(Path::new(BINFMT).join("status"))
                .unwrap_or_default()
                .trim(),
            "enabled",
            "binfmt_misc is disabled on this machine"
        );
        // Repair what a killed run left.
        if let Ok(left) = fs::read_to_string(disabled_record()) {
            for name in left.lines().filter(|n| !n.is_empty()) {
                let _ = binfmt_write(name, "1");
            }
            let _ = fs::remove_file(disabled_record());
        }
        for (arch, qemu) in archs {
            let (magic, mask) = magic_and_mask(*arch);
            let hex = unescape_hex(&magic);
            let name = format!("pausebake-qemu-{}", arch.qemu);
            // one of ours left by a killed run
            let _ = binfmt_write(&name, "-1");
            let others: Vec<String> = fs::read_dir(BINFMT)
                .expect("listing binfmt_misc")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !matches!(n.as_str(), "register" | "status"))
                .filter(|n| enabled_magic(n).as_deref() == Some(hex.as_str()))
                .collect();
            for other in others {
                let mut record = me.disabled.clone();
                record.push(other.clone());
                fs::write(disabled_record(), record.join("\n"))
                    .expect("recording the disabled binfmt handlers");
                binfmt_write(&other, "0")
                    .unwrap_or_else(|e| panic!("disabling binfmt handler {other}: {e}"));
                me.disabled.push(other);
            }
            let line = format!(":{name}:M::{magic}:{mask}:{}:PF", qemu.display());
            binfmt_write("register", &line)
                .unwrap_or_else(|e| panic!("registering binfmt handler {line}: {e}"));
            me.mine.push(name);
        }
        me
    }
}

impl Drop for Binfmt {
    fn drop(&mut self) {
        for name in &self.mine {
            if let Err(e) = binfmt_write(name, "-1") {
                eprintln!("binfmt: removing {name}: {e}");
            }
        }
        for name in &self.disabled {
            if let Err(e) = binfmt_write(name, "1") {
                eprintln!("binfmt: enabling {name} again: {e}");
            }
        }
        let _ = fs::remove_file(disabled_record());
        if self.mounted {
            let _ = Command::new("umount").arg(BINFMT).status();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The architecture matrix

/// A fresh root holding `sysroot`'s files (a copy: bake and containerd write into it).
fn fresh_root(sysroot: &Sysroot) -> tempfile::TempDir {
    let root = tempdir();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(sysroot.dir.join("."))
            .arg(root.path()),
    );
    root
}

/// The root's own containerd, started on it under qemu with no network; its shims inherit
/// `QEMU_LD_PREFIX`, so they find the root's libraries.
fn start_node(sysroot: &Sysroot, root: &Path) -> Running {
    let c = Containerd {
        version: sysroot.containerd.version.clone(),
        bin_dir: root.join("usr/bin"),
    };
    c.start(
        root,
        StartOpts {
            no_network: true,
            env: vec![("QEMU_LD_PREFIX".into(), root.display().to_string())],
            // under emulation, on two cores shared with the rest of the suite
            start_timeout: Some(Duration::from_secs(180)),
            ..Default::default()
        },
    )
}

/// The bbolt magic at offset 16 of the root's meta.db.
fn meta_db_magic(root: &Path) -> [u8; 4] {
    let db = root.join(META_DB);
    let bytes = fs::read(&db).unwrap_or_else(|e| panic!("reading {}: {e}", db.display()));
    bytes[16..20].try_into().expect("a meta page")
}

/// `pausebake bake --json --root ROOT`; panics unless it succeeds and verifies.
fn bake_json(root: &Path) -> serde_json::Value {
    let out = run_ok(pausebake().args(["bake", "--json", "--root"]).arg(root));
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bake --json: {e}"));
    assert_eq!(summary["verify"]["ok"], true, "{summary:#}");
    summary
}

/// Asserts a process of `running` is the foreign pause under our qemu: with binfmt's `P`
/// flag its command line is the emulator, the program's path, then the program's argv.
fn pause_runs_under(running: &Running, qemu: &Path) {
    let found = running.processes().into_iter().any(|pid| {
        let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        exe.as_deref() == Some(qemu) && args.get(1) == Some(&&b"/pause"[..])
    });
    assert!(
        found,
        "no /pause under {} among {:?}",
        qemu.display(),
        running
            .processes()
            .iter()
            .map(|p| fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " "))
            .collect::<Vec<_>>()
    );
}

/// Bakes a fresh root of `sysroot`, starts its containerd offline and runs a sandbox.
fn baked_root_runs_a_sandbox_offline(setup: &Setup, sysroot: &Sysroot) {
    let c = &sysroot.containerd;
    let root = fresh_root(sysroot);
    let started = Instant::now();
    let summary = bake_json(root.path());
    assert_eq!(summary["platform"], setup.arch.platform, "{summary:#}");
    assert_eq!(
        summary["platform_source"], "/usr/bin/containerd",
        "the platform comes from the root's containerd: {summary:#}"
    );
    assert_eq!(
        summary["containerd_version"],
        c.semver_string(),
        "{summary:#}"
    );
    // s390x is big-endian; bbolt there reads nothing else
    let magic = if setup.arch.deb == "s390x" {
        BIG_ENDIAN_MAGIC
    } else {
        LITTLE_ENDIAN_MAGIC
    };
    assert_eq!(meta_db_magic(root.path()), magic, "{}", setup.arch.platform);
    let name = summary["name"].as_str().expect("bake names the image");

    let mut ctd = start_node(sysroot, root.path());
    sandbox_ready(&ctd, "arch");
    let status = ctd
        .cri()
        .image_status(name)
        .expect("ImageStatus")
        .unwrap_or_else(|| panic!("CRI of {} {} knows no {name}", setup.arch.deb, c.version));
    assert_eq!(
        status.pinned,
        pins(c),
        "pinned on {} containerd {}",
        setup.arch.deb,
        c.version
    );
    no_pull(&ctd);
    pause_runs_under(&ctd, &setup.qemu);
    ctd.stop();
    assert!(ctd.processes().is_empty(), "left: {:?}", ctd.processes());
    eprintln!(
        "{} containerd {}: baked root READY offline, pinned {} ({:.1?})",
        setup.arch.platform,
        c.version,
        status.pinned,
        started.elapsed()
    );
}

/// The negative control on a root without bake (newest containerd): its sandbox image is
/// not there and cannot be pulled. Then the same root, whose meta.db containerd itself has
/// created, is baked: bake keeps that file's byte order and the sandbox starts.
fn unbaked_root_needs_a_pull_then_bake_fixes_it(setup: &Setup) {
    let sysroot = setup.builds.last().expect("at least one build");
    let c = &sysroot.containerd;
    let root = fresh_root(sysroot);
    let ctd = start_node(sysroot, root.path());
    sandbox_needs_a_pull(&ctd);
    drop(ctd);

    let created = meta_db_magic(root.path());
    bake_json(root.path());
    assert_eq!(meta_db_magic(root.path()), created, "bake kept the order");
    // verify reads the order of the file this containerd wrote, and names both when a
    // platform of the other order is claimed
    let (ours, theirs, other) = if created == BIG_ENDIAN_MAGIC {
        ("big", "little", "linux/arm64")
    } else {
        ("little", "big", "linux/s390x")
    };
    let out = run_any(
        pausebake()
            .args(["verify", "--platform", other, "--root"])
            .arg(root.path()),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let expected = format!(
        "FAIL byte order: meta.db is {ours}-endian but the root's platform {other} is {theirs}-endian"
    );
    assert!(stdout(&out).contains(&expected), "{}", stdout(&out));
    let ctd = start_node(sysroot, root.path());
    sandbox_ready(&ctd, "after-bake");
    no_pull(&ctd);
    eprintln!(
        "{} containerd {}: unbaked root needs a pull; baked afterwards READY",
        setup.arch.platform, c.version
    );
}

/// One architecture: every containerd build on a fresh baked root, then the negative
/// control, with our binfmt handler registered throughout.
fn architecture(arch: Foreign) {
    let Some(setup) = setup(arch) else {
        return;
    };
    let _binfmt = Binfmt::register(BinfmtLock::take(), &[(arch, &setup.qemu)]);
    let started = Instant::now();
    for sysroot in &setup.builds {
        baked_root_runs_a_sandbox_offline(&setup, sysroot);
    }
    unbaked_root_needs_a_pull_then_bake_fixes_it(&setup);
    eprintln!("{}: {:.1?}", arch.platform, started.elapsed());
}

#[test]
fn arch_arm64_containerd_runs_a_baked_root_offline() {
    architecture(ARM64);
}

#[test]
fn arch_arm_v7_containerd_runs_a_baked_root_offline() {
    architecture(ARMHF);
}

#[test]
fn arch_ppc64le_containerd_runs_a_baked_root_offline() {
    architecture(PPC64EL);
}

#[test]
fn arch_s390x_containerd_runs_a_baked_root_offline() {
    architecture(S390X);
}

#[test]
fn arch_riscv64_containerd_runs_a_baked_root_offline() {
    architecture(RISCV64);
}

/// The handler bookkeeping itself: another enabled handler of the same magic (standing in for
/// Debian's `qemu-aarch64`) is disabled while ours runs the foreign binary, and everything is
/// as before once the guard is dropped, also when the test holding it panics.
#[test]
fn arch_binfmt_handlers_are_restored_even_on_panic() {
    let Some(setup) = setup(ARM64) else {
        return;
    };
    let lock = BinfmtLock::take();
    let mounted_here = !binfmt_mounted();
    if mounted_here {
        run_ok(Command::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", BINFMT]));
    }
    let decoy = "pausebake-decoy-aarch64";
    let _ = binfmt_write(decoy, "-1");
    // the same magic and mask, an interpreter that could not run anything
    let (magic, mask) = magic_and_mask(ARM64);
    let line = format!(":{decoy}:M::{magic}:{mask}:/bin/false:F");
    binfmt_write("register", &line).expect("registering the decoy");
    let containerd = setup.builds[0].containerd.bin("containerd");

    let sysroot = &setup.builds[0].dir;
    // The guard is dropped while unwinding, as in a failing test (the panic message below
    // is expected in the output).
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _binfmt = Binfmt::register(lock, &[(ARM64, &setup.qemu)]);
        assert_eq!(enabled_magic(decoy), None, "the decoy is disabled");
        // The kernel itself now runs the arm64 binary through our qemu.
        let out = run_ok(
            Command::new(&containerd)
                .env("QEMU_LD_PREFIX", sysroot)
                .arg("--version"),
        );
        assert!(stdout(&out).starts_with("containerd "), "{}", stdout(&out));
        panic!("expected: a test failing while it holds the handlers");
    }));

    let _lock = BinfmtLock::take();
    let decoy_state = fs::read_to_string(Path::new(BINFMT).join(decoy));
    let _ = binfmt_write(decoy, "-1");
    let ours_left = Path::new(BINFMT).join("pausebake-qemu-aarch64").exists();
    if mounted_here {
        run_ok(Command::new("umount").arg(BINFMT));
    }
    let payload = panicked.expect_err("the closure panicked");
    let message = payload
        .downcast_ref::<&str>()
        .map(|m| m.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(message.starts_with("expected: "), "{message}");
    assert!(
        decoy_state
            .as_deref()
            .is_ok_and(|s| s.starts_with("enabled\n")),
        "the decoy is enabled again: {decoy_state:?}"
    );
    assert!(!ours_left, "our handler is removed");
}
