//! The pause program: the six binaries built into pausebake, or, with `--compile`, find a
//! compiler for each architecture, compile the freestanding `templates/pause.c` with it, and
//! check that what came out is a static ELF executable for that architecture. Also checks
//! prebuilt binaries handed in with `--binary`.
//!
//! The built-in programs are `templates/pause-linux-<arch>`, compiled from `pause.c` by
//! `make pause-binaries` with Debian bookworm's clang-19 and lld-19 (the one toolchain that
//! links all six, s390x included) and committed with their sha256
//! (`templates/pause-linux.sha256`). A test rebuilds them with that toolchain and requires
//! identical bytes. Because they are part of the source, the image digest is a property of
//! the pausebake version, not of whichever compiler a host happens to have.
//!
//! No sysroot and no C library are needed: the template makes its own system calls, so any
//! compiler that can emit code for the target and a linker that can link it will do. The
//! search order per architecture is clang with lld (GNU ld for s390x, which lld cannot
//! link), then `<triple>-gcc`, then the host's `cc` for the host architecture.
//!
//! Not done here: deciding which binary goes into which image (`image`), or running it
//! (the integration tests do, natively and under qemu-user).

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::cli::{BuildArgs, CompileArgs};
use crate::exec;
use crate::platform::{Arch, Endian};

/// The C source, compiled as it is; the version comes in as `-DVERSION`.
const TEMPLATE: &str = include_str!("../templates/pause.c");

/// The version string the built-in programs carry, and `--compile`'s default.
pub const DEFAULT_VERSION: &str = concat!("pausebake-", env!("CARGO_PKG_VERSION"));

/// The built-in pause programs (see the module doc), in [`Arch::ALL`] order.
const BUILT_IN: [(Arch, &[u8]); 6] = [
    (
        Arch::Amd64,
        include_bytes!("../templates/pause-linux-amd64"),
    ),
    (
        Arch::Arm64,
        include_bytes!("../templates/pause-linux-arm64"),
    ),
    (Arch::Arm, include_bytes!("../templates/pause-linux-arm")),
    (
        Arch::Ppc64le,
        include_bytes!("../templates/pause-linux-ppc64le"),
    ),
    (
        Arch::S390x,
        include_bytes!("../templates/pause-linux-s390x"),
    ),
    (
        Arch::Riscv64,
        include_bytes!("../templates/pause-linux-riscv64"),
    ),
];

/// The built-in pause program for `arch`.
pub fn built_in(arch: Arch) -> &'static [u8] {
    BUILT_IN
        .iter()
        .find(|(a, _)| *a == arch)
        .map(|(_, elf)| *elf)
        .expect("BUILT_IN holds every Arch")
}

/// `pausebake build`: write the built-in (or, with `--compile`, freshly compiled)
/// `pause-linux-<arch>` (mode 0755) into `--out`, and report each file's size and sha256.
pub fn build(args: &BuildArgs) -> Result<ExitCode> {
    let binaries = programs(&args.compile)?;
    fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output directory {}", args.out.display()))?;
    let mut report = Vec::new();
    for (arch, elf) in &binaries {
        let path = args.out.join(format!("pause-linux-{arch}"));
        write_executable(&path, elf)?;
        let sha256 = crate::digest::sha256_digest(elf);
        if args.output.json {
            report.push(serde_json::json!({
                "arch": arch.name(),
                "path": path.display().to_string(),
                "sha256": sha256,
                "size": elf.len(),
            }));
        } else {
            println!(
                "{:<8} {:>5} bytes  {sha256}  {}",
                arch.name(),
                elf.len(),
                path.display()
            );
        }
    }
    if args.output.json {
        let doc = serde_json::json!({ "binaries": report });
        crate::output::print_json(&doc)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The pause program for every architecture `args` asks for (the host's by default), in
/// the order asked: the built-in ones, or compiled when `args` asks for compiling.
pub fn programs(args: &CompileArgs) -> Result<Vec<(Arch, Vec<u8>)>> {
    let mut arches: Vec<Arch> = Vec::new();
    for arch in &args.arch {
        if !arches.contains(arch) {
            arches.push(*arch);
        }
    }
    if arches.is_empty() {
        arches.push(Arch::host().ok_or_else(|| {
            anyhow!(
                "the host architecture {} is not one pause can be built for; pass --arch",
                std::env::consts::ARCH
            )
        })?);
    }
    if !args.compiles() {
        return Ok(arches
            .into_iter()
            .map(|a| (a, built_in(a).to_vec()))
            .collect());
    }
    compile_all(args, arches)
}

/// Compiles pause for `arches` and returns each checked static ELF, in that order.
fn compile_all(args: &CompileArgs, arches: Vec<Arch>) -> Result<Vec<(Arch, Vec<u8>)>> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Find every compiler before compiling anything, so a missing one fails fast.
    let toolchains = arches
        .iter()
        .map(|&arch| {
            find_toolchain(
                arch,
                args.cc.as_deref(),
                args.ld.as_deref(),
                &path,
                Arch::host(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let version = c_string_literal(args.pause_version.as_deref().unwrap_or(DEFAULT_VERSION))?;
    // One thread per architecture: the compilers are separate processes anyway.
    let results: Vec<Result<Vec<u8>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = toolchains
            .iter()
            .map(|tc| scope.spawn(|| compile(tc, &version)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("compiling pause: a compiler thread panicked")))
            })
            .collect()
    });
    arches
        .into_iter()
        .zip(results)
        .map(|(arch, elf)| Ok((arch, elf?)))
        .collect()
}

/// The kind of compiler driver, which decides how the target and linker are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// One clang for every target: `--target=<triple>` and an explicit linker.
    Clang,
    /// A gcc (or compatible) built for exactly one target.
    Gcc,
}

/// A compiler that can build pause for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Toolchain {
    arch: Arch,
    driver: Driver,
    cc: PathBuf,
    /// The linker clang is told to use; gcc brings its own.
    ld: Option<PathBuf>,
}

/// Picks the compiler for `arch`: `--cc` if given, else clang with ld.lld (GNU ld for
/// s390x), else `<triple>-gcc`, else `cc` when `arch` is the host's. `ld` (`--ld`) replaces
/// clang's linker search. `path` is the PATH to search.
fn find_toolchain(
    arch: Arch,
    cc: Option<&Path>,
    ld: Option<&Path>,
    path: &OsStr,
    host: Option<Arch>,
) -> Result<Toolchain> {
    let clang_linker = || {
        if let Some(ld) = ld {
            find_program(ld, path)
        } else if arch == Arch::S390x {
            // lld has no s390x back end; the cross binutils' ld links clang's objects.
            which(&format!("{}-ld", arch.gnu_triple()), path)
        } else {
            which("ld.lld", path)
        }
    };
    if let Some(ld) = ld {
        ensure!(
            find_program(ld, path).is_some(),
            "finding the linker {} given with --ld: not found; give an existing linker, or \
             omit --ld to search for one",
            ld.display()
        );
    }
    if let Some(cc) = cc {
        let cc = find_program(cc, path).ok_or_else(|| {
            anyhow!(
                "finding the C compiler {} given with --cc: not found; give an existing \
                 compiler, or omit --cc to search for one (Debian packages: {})",
                cc.display(),
                arch.debian_compiler_packages()
            )
        })?;
        if !is_clang(&cc)? {
            return Ok(Toolchain {
                arch,
                driver: Driver::Gcc,
                cc,
                ld: None,
            });
        }
        let ld = clang_linker().ok_or_else(|| {
            anyhow!(
                "finding a linker for clang ({}) for {arch}: {} not found on PATH \
                 (Debian packages: {})",
                cc.display(),
                if arch == Arch::S390x {
                    "s390x-linux-gnu-ld"
                } else {
                    "ld.lld"
                },
                arch.debian_compiler_packages()
            )
        })?;
        return Ok(Toolchain {
            arch,
            driver: Driver::Clang,
            cc,
            ld: Some(ld),
        });
    }
    if let (Some(cc), Some(ld)) = (which("clang", path), clang_linker()) {
        return Ok(Toolchain {
            arch,
            driver: Driver::Clang,
            cc,
            ld: Some(ld),
        });
    }
    let gcc = format!("{}-gcc", arch.gnu_triple());
    if let Some(cc) = which(&gcc, path) {
        return Ok(Toolchain {
            arch,
            driver: Driver::Gcc,
            cc,
            ld: None,
        });
    }
    if host == Some(arch) {
        if let Some(cc) = which("cc", path) {
            return Ok(Toolchain {
                arch,
                driver: Driver::Gcc,
                cc,
                ld: None,
            });
        }
    }
    bail!(
        "finding a C compiler for {arch}: none of clang with {}, {gcc}{} found on PATH; \
         install the Debian packages {} (or give one with --cc)",
        if arch == Arch::S390x {
            "s390x-linux-gnu-ld"
        } else {
            "ld.lld"
        },
        if host == Some(arch) { ", cc" } else { "" },
        arch.debian_compiler_packages()
    )
}

/// Whether `cc` is clang, which needs `--target` and a linker (`cc` itself may be either).
fn is_clang(cc: &Path) -> Result<bool> {
    let out = exec::run(Command::new(cc).arg("--version"))
        .with_context(|| format!("asking {} for its version (--cc)", cc.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("clang"))
}

/// `program` as given on the command line: a path if it has a directory part, else looked
/// up on `path`.
fn find_program(program: &Path, path: &OsStr) -> Option<PathBuf> {
    if program.components().count() > 1 {
        program.is_file().then(|| program.to_path_buf())
    } else {
        which(&program.to_string_lossy(), path)
    }
}

/// `program` on `path`, if it is there.
fn which(program: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The compiler's arguments for building `pause.c` into `pause` inside `dir`.
fn compile_args(tc: &Toolchain, dir: &Path, version: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut arg = |a: &str| args.push(a.into());
    if tc.driver == Driver::Clang {
        arg(&format!("--target={}", tc.arch.clang_triple())); // one clang, every target
        if let Some(ld) = &tc.ld {
            arg(&format!("--ld-path={}", ld.display())); // the linker we found, not a guess
        }
    }
    arg("-std=c11"); // the dialect the template is written in
    arg("-Os"); // size is the point: about a kilobyte per architecture
    arg("-ffreestanding"); // no libc: the compiler must not assume one exists
    arg("-nostdlib"); // no crt files, no libc, no libgcc: _start is in the template
    arg("-static"); // no program interpreter, no dynamic section
    arg("-fno-pie"); // a plain ET_EXEC; Debian's gcc defaults to PIE
    arg("-fno-stack-protector"); // its canary check would call libc's __stack_chk_fail
    arg("-fno-asynchronous-unwind-tables"); // no .eh_frame: nothing ever unwinds
    arg("-fno-unwind-tables"); // (arm's .ARM.exidx as well)
    arg("-fomit-frame-pointer"); // frees r7 for the syscall number in Thumb code
    arg("-fno-ident"); // no compiler version string in .comment
    arg(&format!("-ffile-prefix-map={}=.", dir.display())); // the temp dir's name stays out
    arg("-Wall"); // as upstream
    arg("-Wextra");
    arg("-Werror"); // a warning in a 300-line syscall program is a bug
    arg("-Wl,--build-id=none"); // no build-id note: its bytes would only restate the content
    arg("-Wl,-s"); // strip every symbol: nothing debugs a 1 KiB binary on a node
    arg("-Wl,-z,noexecstack"); // a GNU_STACK header that keeps the stack non-executable
    arg("-Wl,-z,norelro"); // no RELRO segment: there is nothing to write-protect
    arg("-Wl,-z,noseparate-code"); // GNU ld would page-align text: 8 KiB instead of 1
    let is_lld = |ld: &Path| {
        ld.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("ld.lld"))
    };
    if tc.ld.as_deref().is_some_and(is_lld) {
        // lld's default puts read-only data in a page of its own; sharing the code's page
        // (as GNU ld does with noseparate-code) keeps a running pause one page smaller.
        arg("-Wl,--no-rosegment");
    }
    match tc.arch {
        Arch::Arm => arg("-mthumb"), // Thumb-2 code is about a third smaller
        Arch::Riscv64 => arg("-mno-relax"), // no gp-relative code (lld 14 cannot relax)
        _ => {}
    }
    arg(&format!("-DVERSION={version}")); // what `pause -v` prints
    arg("pause.c");
    arg("-o");
    arg("pause");
    args
}

/// Compiles the template with `tc` in a fresh temporary directory and checks the result.
fn compile(tc: &Toolchain, version: &str) -> Result<Vec<u8>> {
    let dir = TempDir::new(&format!("pausebake-cc-{}", tc.arch))?;
    let source = dir.path().join("pause.c");
    fs::write(&source, TEMPLATE).with_context(|| format!("writing {}", source.display()))?;
    let mut cmd = Command::new(&tc.cc);
    cmd.current_dir(dir.path())
        .args(compile_args(tc, dir.path(), version))
        // Compiler messages in one language, whatever the host's locale.
        .env("LC_ALL", "C");
    exec::run(&mut cmd).with_context(|| {
        format!(
            "compiling templates/pause.c for {} with {}",
            tc.arch,
            tc.cc.display()
        )
    })?;
    let out = dir.path().join("pause");
    let elf = fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
    check_elf(
        &elf,
        tc.arch,
        &format!("pause for {} built by {}", tc.arch, tc.cc.display()),
    )?;
    Ok(elf)
}

/// `s` as a C string literal for `-DVERSION=`: quotes and backslashes escaped, `?` too
/// (under -std=c11 `??/` would be a trigraph), control characters as octal escapes, so any
/// version string prints back exactly.
fn c_string_literal(s: &str) -> Result<String> {
    ensure!(
        !s.contains('\0'),
        "--pause-version must not contain a NUL character"
    );
    let mut lit = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' | '?' => {
                lit.push('\\');
                lit.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                write!(lit, "\\{:03o}", c as u32).expect("writing to a String cannot fail");
            }
            c => lit.push(c),
        }
    }
    lit.push('"');
    Ok(lit)
}

/// Writes `bytes` to `path` with mode 0755 via a temporary name and a rename, so a reader
/// never sees half a binary.
fn write_executable(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("writing {}: not a file name", path.display()))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have taken bits away from the mode given at creation.
        f.set_permissions(fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// A directory removed (with its contents) when dropped. Unique by process id and a
/// counter, so parallel compiles and parallel pausebake runs never share one.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<TempDir> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        // A directory left by a killed process that had the same pid is stale.
        if path.exists() {
            fs::remove_dir_all(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir is not worth failing a build for.
        let _ = fs::remove_dir_all(&self.0);
    }
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Reads prebuilt pause binaries (`--binary ARCH=PATH`, for `image` and `bake`), each
/// checked with [`check_elf`]; one per architecture.
pub fn read_binaries(given: &[(Arch, PathBuf)]) -> Result<Vec<(Arch, Vec<u8>)>> {
    let mut out: Vec<(Arch, Vec<u8>)> = Vec::new();
    for (arch, path) in given {
        anyhow::ensure!(
            !out.iter().any(|(a, _)| a == arch),
            "--binary given twice for {arch}; give one pause binary per architecture"
        );
        let elf =
            fs::read(path).with_context(|| format!("reading pause binary {}", path.display()))?;
        check_elf(&elf, *arch, &path.display().to_string())?;
        out.push((*arch, elf));
    }
    Ok(out)
}

/// Checks that `elf` is a statically linked executable for `arch`: the right class, byte
/// order and machine, no program interpreter and no dynamic section. `what` names the file
/// in errors.
pub fn check_elf(elf: &[u8], arch: Arch, what: &str) -> Result<()> {
    let header = |off: usize, len: usize| -> Result<&[u8]> {
        elf.get(off..off + len).ok_or_else(|| {
            anyhow::anyhow!("checking {what}: truncated ELF file ({} bytes)", elf.len())
        })
    };
    let (is_64, endian, machine) =
        Arch::elf_ident(elf).map_err(|e| anyhow!("checking {what}: {e:#}"))?;
    let u16_at = |off: usize| -> Result<u16> {
        let b: [u8; 2] = header(off, 2)?.try_into().expect("slice of length 2");
        Ok(match endian {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        })
    };
    let u32_at = |off: usize| -> Result<u32> {
        let b: [u8; 4] = header(off, 4)?.try_into().expect("slice of length 4");
        Ok(match endian {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        })
    };
    let u64_at = |off: usize| -> Result<u64> {
        let b: [u8; 8] = header(off, 8)?.try_into().expect("slice of length 8");
        Ok(match endian {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        })
    };
    let e_type = u16_at(16)?;
    let found = Arch::from_elf(machine, is_64, endian);
    ensure!(
        found == Some(arch),
        "checking {what}: built for {}, not {arch}",
        found.map_or_else(
            || format!(
                "ELF machine {machine} ({}-bit)",
                if is_64 { 64 } else { 32 }
            ),
            |a| a.to_string()
        )
    );
    ensure!(
        e_type == ET_EXEC || e_type == ET_DYN,
        "checking {what}: ELF type {e_type} is not an executable"
    );
    let (phoff, phentsize, phnum) = if is_64 {
        (u64_at(32)?, u16_at(54)?, u16_at(56)?)
    } else {
        (u64::from(u32_at(28)?), u16_at(42)?, u16_at(44)?)
    };
    ensure!(
        phnum > 0,
        "checking {what}: no program headers, not an executable"
    );
    for i in 0..u64::from(phnum) {
        let off = phoff
            .checked_add(i * u64::from(phentsize))
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| anyhow::anyhow!("checking {what}: program header offset overflows"))?;
        match u32_at(off)? {
            PT_INTERP => bail!(
                "checking {what}: dynamically linked (has a program interpreter); pause must be static"
            ),
            PT_DYNAMIC => bail!(
                "checking {what}: has a dynamic section; pause must be statically linked"
            ),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PATH of one directory holding symlinks `(name, program)` to real programs found on
    /// the test's PATH. None (skipped loudly, failing under CI) when one is not installed.
    fn fake_path(links: &[(&str, &str)]) -> Option<(tempfile::TempDir, OsString)> {
        let real_path = std::env::var_os("PATH").unwrap_or_default();
        let dir = tempfile::tempdir().unwrap();
        for (name, target) in links {
            let Some(real) = which(target, &real_path) else {
                crate::strict::skip(&format!("{target} not found"));
                return None;
            };
            std::os::unix::fs::symlink(real, dir.path().join(name)).unwrap();
        }
        let path = dir.path().as_os_str().to_owned();
        Some((dir, path))
    }

    #[test]
    fn clang_with_lld_comes_first_but_s390x_needs_gnu_ld() {
        let Some((dir, path)) = fake_path(&[
            ("clang", "clang"),
            ("ld.lld", "ld.lld"),
            ("s390x-linux-gnu-gcc", "s390x-linux-gnu-gcc"),
        ]) else {
            return;
        };
        let tc = find_toolchain(Arch::Arm64, None, None, &path, Some(Arch::Amd64)).unwrap();
        assert_eq!(tc.driver, Driver::Clang);
        assert_eq!(tc.cc, dir.path().join("clang"));
        assert_eq!(tc.ld, Some(dir.path().join("ld.lld")));
        // lld cannot link s390x; without GNU ld for it the cross gcc is next.
        let tc = find_toolchain(Arch::S390x, None, None, &path, Some(Arch::Amd64)).unwrap();
        assert_eq!(tc.driver, Driver::Gcc);
        assert_eq!(tc.cc, dir.path().join("s390x-linux-gnu-gcc"));
        assert_eq!(tc.ld, None);
    }

    #[test]
    fn host_cc_only_serves_the_host() {
        let Some((dir, path)) = fake_path(&[("cc", "cc")]) else {
            return;
        };
        let tc = find_toolchain(Arch::Riscv64, None, None, &path, Some(Arch::Riscv64)).unwrap();
        assert_eq!((tc.driver, tc.cc), (Driver::Gcc, dir.path().join("cc")));
        let err = find_toolchain(Arch::Arm, None, None, &path, Some(Arch::Amd64))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "finding a C compiler for arm: none of clang with ld.lld, arm-linux-gnueabihf-gcc \
             found on PATH; install the Debian packages clang and lld, or \
             gcc-arm-linux-gnueabihf (or give one with --cc)"
        );
    }

    #[test]
    fn cc_option_is_looked_up_and_probed() {
        let Some((dir, path)) = fake_path(&[("clang", "clang"), ("gcc", "gcc")]) else {
            return;
        };
        let tc = find_toolchain(Arch::Arm64, Some(Path::new("gcc")), None, &path, None).unwrap();
        assert_eq!((tc.driver, tc.cc), (Driver::Gcc, dir.path().join("gcc")));
        // clang given with --cc still needs its linker.
        let err = find_toolchain(Arch::Arm64, Some(Path::new("clang")), None, &path, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "finding a linker for clang ({}) for arm64: ld.lld not found on PATH \
                 (Debian packages: clang and lld, or gcc-aarch64-linux-gnu)",
                dir.path().join("clang").display()
            )
        );
    }

    #[test]
    fn version_becomes_a_c_string_literal() {
        assert_eq!(c_string_literal("v3.10").unwrap(), r#""v3.10""#);
        assert_eq!(
            c_string_literal("a\"b\\c\nd\u{7f}é??/").unwrap(),
            r#""a\"b\\c\012d\177é\?\?/""#
        );
        assert!(c_string_literal("a\0b").is_err());
    }

    #[test]
    fn flags_are_the_same_for_every_directory_but_the_prefix_map() {
        let tc = Toolchain {
            arch: Arch::Arm,
            driver: Driver::Clang,
            cc: PathBuf::from("/usr/bin/clang"),
            ld: Some(PathBuf::from("/usr/bin/ld.lld")),
        };
        let a = compile_args(&tc, Path::new("/tmp/a"), "\"v\"");
        let b = compile_args(&tc, Path::new("/tmp/b"), "\"v\"");
        let differ: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).collect();
        assert_eq!(
            differ,
            [(
                &OsString::from("-ffile-prefix-map=/tmp/a=."),
                &OsString::from("-ffile-prefix-map=/tmp/b=.")
            )]
        );
        for flag in [
            "--target=armv7a-linux-gnueabihf",
            "-mthumb",
            "-DVERSION=\"v\"",
        ] {
            assert!(a.contains(&OsString::from(flag)), "{flag}");
        }
    }

    #[test]
    fn host_dynamic_binary_is_refused() {
        let sh = std::fs::read("/bin/sh").unwrap();
        let host = Arch::host().unwrap();
        let err = check_elf(&sh, host, "/bin/sh").unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
    }

    #[test]
    fn garbage_is_not_elf() {
        let err = check_elf(b"not an elf at all", Arch::Amd64, "x")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "checking x: not an ELF file");
        let err = check_elf(b"\x7fELF", Arch::Amd64, "x")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "checking x: truncated ELF file (4 bytes)");
    }
}
