//! The release (issue 12): the built-in pause programs are the pinned toolchain's build of
//! `templates/pause.c`; `--version` and the README agree with them; `make dist` gives the
//! same bytes from two directories, static binaries and a provenance naming every file; and
//! the static binary bakes where nothing else is installed: alone in an empty chroot, under
//! qemu-user for arm64, and in a Debian bullseye root (glibc 2.31) where the glibc build does
//! not start, whose store a real containerd then runs a sandbox from, offline.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::bake::{offline, sandbox_ready};
use crate::containerd::{versions, Containerd};
use crate::distro;
use crate::harness::*;
use crate::pause::qemu;

const ARCHES: [&str; 6] = ["amd64", "arm64", "arm", "ppc64le", "s390x", "riscv64"];
const ALL: &str = "amd64,arm64,arm,ppc64le,s390x,riscv64";
const PLATFORMS: [&str; 6] = [
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
];

fn sha256_file(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    format!("sha256:{}", stdout(&out).split(' ').next().unwrap())
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("parsing {e}: {}", stdout(out)))
}

/// `pausebake version --json` of the binary under test.
fn version_json() -> serde_json::Value {
    json(&run_ok(pausebake().args(["version", "--json"])))
}

/// The image digest `bake --json` (of `cmd`, given everything but the arguments) wrote for
/// `platform` into a fresh root `root`.
fn bake_digest(mut cmd: Command, root: &str, platform: &str) -> String {
    let out = run_ok(cmd.args(["bake", "--json", "--platform", platform, "--root", root]));
    let doc = json(&out);
    assert_eq!(doc["verify"]["ok"], true, "{}", stdout(&out));
    doc["import"]["target"].as_str().unwrap().to_string()
}

#[test]
fn built_in_pause_is_the_pinned_toolchains_build_of_pause_c() {
    let emulators = || ARCHES.iter().all(|a| *a == host_arch() || have(&qemu(a)));
    if !(have("clang-19") && have("ld.lld-19") && emulators()) {
        return;
    }
    let (compiled, built_in) = (tempdir(), tempdir());
    run_ok(
        pausebake()
            .args([
                "build",
                "--cc",
                "clang-19",
                "--ld",
                "ld.lld-19",
                "--arch",
                ALL,
            ])
            .arg("--out")
            .arg(compiled.path()),
    );
    // No compiler on PATH: `build` writes the programs pausebake carries.
    run_ok(
        pausebake()
            .env("PATH", "")
            .args(["build", "--arch", ALL, "--out"])
            .arg(built_in.path()),
    );
    for arch in ARCHES {
        let name = format!("pause-linux-{arch}");
        let path = repo().join("templates").join(&name);
        // What ships runs: natively or under qemu-user, it prints the version it carries.
        let mut run = if arch == host_arch() {
            Command::new(&path)
        } else {
            let mut cmd = Command::new(qemu(arch));
            cmd.arg(&path);
            cmd
        };
        let out = run_ok(run.arg("-v"));
        assert_eq!(
            stdout(&out),
            format!("pause.c pausebake-{}\n", env!("CARGO_PKG_VERSION")),
            "{arch}"
        );
        let committed = fs::read(&path).unwrap();
        assert!(
            fs::read(compiled.path().join(&name)).unwrap() == committed,
            "templates/{name} is not clang-19's build of templates/pause.c: run make pause-binaries"
        );
        assert!(fs::read(built_in.path().join(&name)).unwrap() == committed);
    }
    run_ok(
        Command::new("sha256sum")
            .args(["--strict", "-c", "pause-linux.sha256"])
            .current_dir(repo().join("templates")),
    );
}

#[test]
fn version_names_each_built_in_pause_and_the_digest_bake_writes() {
    let doc = version_json();
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    let programs = doc["programs"].as_array().unwrap();
    assert_eq!(programs.len(), 6);
    let dir = tempdir();
    for ((p, arch), platform) in programs.iter().zip(ARCHES).zip(PLATFORMS) {
        assert_eq!(p["arch"], arch);
        assert_eq!(p["platform"], platform);
        let file = repo().join(format!("templates/pause-linux-{arch}"));
        assert_eq!(p["pause_sha256"], sha256_file(&file), "{arch}");
        assert_eq!(p["size"], fs::metadata(&file).unwrap().len(), "{arch}");
        // What `image` prints first, and what `bake` writes with no compiler on PATH.
        let out = run_ok(
            pausebake()
                .args(["image", "--arch", arch, "--output"])
                .arg(dir.path().join(format!("{arch}.tar"))),
        );
        assert_eq!(p["image_digest"], stdout(&out).lines().next().unwrap());
        let root = dir.path().join(arch);
        fs::create_dir(&root).unwrap();
        let mut cmd = pausebake();
        cmd.env("PATH", "");
        assert_eq!(
            p["image_digest"],
            bake_digest(cmd, root.to_str().unwrap(), platform),
            "{platform}"
        );
    }
    let out = run_ok(
        pausebake()
            .args(["image", "--arch", ALL, "--output"])
            .arg(dir.path().join("all.tar")),
    );
    assert_eq!(
        doc["all_platforms_digest"],
        stdout(&out).lines().next().unwrap()
    );
    // --version, `version` and the text the README shows are one text.
    let long = stdout(&run_ok(pausebake().arg("--version")));
    assert_eq!(long, stdout(&run_ok(pausebake().arg("version"))));
    assert!(long.contains(doc["all_platforms_digest"].as_str().unwrap()));
}

#[test]
fn readme_shows_what_version_prints() {
    let long = stdout(&run_ok(pausebake().arg("--version")));
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```\n{long}```\n")),
        "README.md must show `pausebake --version` as printed:\n{long}"
    );
}

#[test]
fn bake_needs_no_compiler_unless_asked_to_compile() {
    let root = tempdir();
    let out = run_ok(
        pausebake()
            .env("PATH", "")
            .arg("bake")
            .arg("--root")
            .arg(root.path()),
    );
    assert!(
        stdout(&out).contains(&format!("(built in for {})", host_arch())),
        "{}",
        stdout(&out)
    );
    let out = run_any(
        pausebake()
            .env("PATH", "")
            .args(["bake", "--compile", "--root"])
            .arg(root.path()),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("pausebake: error: finding a C compiler for "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn closed_stdout_ends_quietly() {
    let dir = tempdir();
    let mut child = pausebake()
        .args(["image", "--arch", ALL, "--output"])
        .arg(dir.path().join("p.tar"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before pausebake writes a line, as `| head -1` may.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!((status.code(), err.as_str()), (Some(0), ""));
}

/// Whether `make dist` can run here: make and the two musl targets of rustup.
fn can_make_dist() -> bool {
    if !have("make") || !have("rustc") {
        return false;
    }
    let sysroot = stdout(&run_ok(Command::new("rustc").args(["--print", "sysroot"])));
    for target in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        if !Path::new(sysroot.trim())
            .join("lib/rustlib")
            .join(target)
            .is_dir()
        {
            skip(&format!(
                "rust target {target} not installed (tests/setup.sh adds it)"
            ));
            return false;
        }
    }
    true
}

/// The commit both `make dist` runs build, and the git environment that sees it: HEAD when
/// the work tree holds exactly HEAD's files (as in CI), else a commit of the work tree's
/// files (tracked and untracked, not ignored) on top of HEAD. That commit, its tree and its
/// index live in a private object directory borrowing the repository's, so the repository
/// is left as it was.
struct Source {
    commit: String,
    env: Vec<(&'static str, PathBuf)>,
    _scratch: tempfile::TempDir,
}

impl Source {
    fn git(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(repo()).envs(self.env.iter().cloned());
        cmd
    }
}

fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let scratch = tempdir();
        let objects = scratch.path().join("objects");
        fs::create_dir(&objects).unwrap();
        let git = || {
            let mut cmd = Command::new("git");
            cmd.current_dir(repo());
            cmd
        };
        let line = |cmd: &mut Command| stdout(&run_ok(cmd)).trim().to_string();
        let shared = line(
            git()
                .args(["rev-parse", "--path-format=absolute", "--git-path"])
                .arg("objects"),
        );
        let source = Source {
            commit: String::new(),
            env: vec![
                ("GIT_INDEX_FILE", scratch.path().join("index")),
                ("GIT_OBJECT_DIRECTORY", objects),
                ("GIT_ALTERNATE_OBJECT_DIRECTORIES", PathBuf::from(shared)),
            ],
            _scratch: scratch,
        };
        run_ok(source.git().args(["add", "--all"]));
        let tree = line(source.git().arg("write-tree"));
        let commit = if tree == line(git().args(["rev-parse", "HEAD^{tree}"])) {
            line(git().args(["rev-parse", "HEAD"]))
        } else {
            let mut cmd = source.git();
            for (who, what) in [
                ("NAME", "pausebake release test"),
                ("EMAIL", "test@invalid"),
                ("DATE", "@0 +0000"),
            ] {
                cmd.env(format!("GIT_AUTHOR_{who}"), what)
                    .env(format!("GIT_COMMITTER_{who}"), what);
            }
            line(cmd.args(["commit-tree", &tree, "-p", "HEAD", "-m", "the work tree"]))
        };
        Source { commit, ..source }
    })
}

/// Writes the files of the commit [`source`] names into `dest` as a second pipeline gets
/// them (`git archive COMMIT | tar -x -C DEST`), each with its mtime in the checkout: a
/// second test run then finds the crate fresh in the target directory instead of rebuilding
/// it (cargo decides by mtime).
fn copy_source(dest: &Path) {
    let source = source();
    fs::create_dir_all(dest).unwrap();
    let tar = dest.join("../source.tar");
    run_ok(
        source
            .git()
            .args(["archive", "--format=tar", "--output"])
            .arg(&tar)
            .arg(&source.commit),
    );
    run_ok(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(dest));
    fs::remove_file(&tar).unwrap();
    fn walk(dir: &Path, checkout: &Path) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let (path, from) = (entry.path(), checkout.join(entry.file_name()));
            if entry.file_type().unwrap().is_dir() {
                walk(&path, &from);
            } else if let Ok(meta) = fs::metadata(&from) {
                let file = fs::File::options().write(true).open(&path).unwrap();
                file.set_modified(meta.modified().unwrap()).unwrap();
            }
        }
    }
    walk(dest, repo());
}

/// `make dist` in a copy of the checkout at `dir/src`, with its own cargo target directory
/// `target`; returns its `dist/`. The target directories live in the machine cache, so
/// dependencies compile once per machine and directory.
fn make_dist(dir: &Path, target: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(dir);
    let src = dir.join("src");
    copy_source(&src);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_ok(
        Command::new("make")
            .arg("-C")
            .arg(&src)
            .arg("dist")
            .arg(format!("CARGO={cargo}"))
            .env("CARGO_TARGET_DIR", target)
            .env_remove("SOURCE_REVISION")
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    src.join("dist")
}

/// Where the two `make dist` runs build: a checkout directory and a target directory each,
/// of different lengths, as two pipelines on two machines would have.
fn dist_dirs(which: usize) -> (PathBuf, PathBuf) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    [
        (tmp.join("dist-a"), cache_dir().join("dist-target-a")),
        (tmp.join("dist-b"), cache_dir().join("dist-target-second")),
    ][which]
        .clone()
}

/// `make dist` once per test run, shared by the tests below. `None` after a loud skip.
pub(crate) fn dist() -> Option<&'static Path> {
    static DIST: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIST.get_or_init(|| {
        can_make_dist().then(|| {
            let (dir, target) = dist_dirs(0);
            make_dist(&dir, &target)
        })
    })
    .as_deref()
}

/// Which of `paths` occur in `bytes`, each with the text around its first occurrence.
fn paths_in(bytes: &[u8], paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|path| {
            let needle = path.as_os_str().as_encoded_bytes();
            let at = bytes.windows(needle.len()).position(|w| w == needle)?;
            let around = &bytes[at.saturating_sub(40)..(at + needle.len() + 80).min(bytes.len())];
            Some(format!(
                "{}: {:?}",
                path.display(),
                String::from_utf8_lossy(around)
            ))
        })
        .collect()
}

/// The static binary of `dist` for the host.
pub(crate) fn static_for_host(dist: &Path) -> PathBuf {
    dist.join(format!("pausebake-linux-{}", host_arch()))
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn dist_is_byte_identical_from_two_directories_static_and_described() {
    let Some(a) = dist() else { return };
    let (dir_b, target_b) = dist_dirs(1);
    let b = make_dist(&dir_b, &target_b);
    let names = sorted_names(a);
    assert_eq!(
        names,
        [
            "SHA256SUMS",
            "pause.oci.tar",
            "pausebake-linux-amd64",
            "pausebake-linux-arm64",
            "provenance.json"
        ]
    );
    assert_eq!(names, sorted_names(&b));
    for name in &names {
        assert!(
            fs::read(a.join(name)).unwrap() == fs::read(b.join(name)).unwrap(),
            "dist/{name} differs between two checkouts with two target directories"
        );
    }
    // No path of the machine that built them: the checkouts, the target directories, the
    // home directory (CARGO_HOME is under it here).
    let mut machine = vec![repo().to_path_buf()];
    for which in [0, 1] {
        let (dir, target) = dist_dirs(which);
        machine.extend([dir.join("src"), target]);
    }
    machine.extend(std::env::var_os("HOME").map(|h| Path::new(&h).join("")));
    machine.extend(std::env::var_os("CARGO_HOME").map(PathBuf::from));
    for dist in [a, &b] {
        for arch in ["amd64", "arm64"] {
            let bin = fs::read(dist.join(format!("pausebake-linux-{arch}"))).unwrap();
            let found = paths_in(&bin, &machine);
            assert!(
                found.is_empty(),
                "{arch} binary names build paths: {found:#?}"
            );
            // They do name source files, under the remapped prefixes only: the check above
            // reads bytes where such paths would be.
            assert!(
                !paths_in(&bin, &[PathBuf::from("/cargo/registry/src/")]).is_empty(),
                "{arch}: no remapped registry path (was the remap in tools/dist.sh renamed?)"
            );
        }
    }
    run_ok(
        Command::new("sha256sum")
            .args(["--strict", "-c", "SHA256SUMS"])
            .current_dir(a),
    );
    let provenance: serde_json::Value =
        serde_json::from_slice(&fs::read(a.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(provenance["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        provenance["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    let subjects: Vec<(String, String)> = provenance["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                format!("sha256:{}", s["digest"]["sha256"].as_str().unwrap()),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = names
        .iter()
        .filter(|n| *n != "provenance.json")
        .map(|n| (n.clone(), sha256_file(&a.join(n))))
        .collect();
    let mut got = subjects.clone();
    got.sort();
    assert_eq!(got, expected);
    let deps = &provenance["predicate"]["buildDefinition"]["resolvedDependencies"];
    for (name, file) in [
        ("Cargo.lock", "Cargo.lock"),
        ("templates/pause.c", "templates/pause.c"),
    ] {
        let dep = deps
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {deps}"));
        assert_eq!(
            format!("sha256:{}", dep["digest"]["sha256"].as_str().unwrap()),
            sha256_file(&repo().join(file))
        );
    }
    // The commit, as tools/dist.sh reads it from the archive's tools/source-revision.
    let commit = &source().commit;
    assert_eq!(
        provenance["predicate"]["buildDefinition"]["externalParameters"]["sourceRevision"],
        commit.as_str()
    );
    assert!(
        deps.as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "source" && d["digest"]["gitCommit"] == commit.as_str()),
        "{deps}"
    );
    let params = &provenance["predicate"]["buildDefinition"]["internalParameters"];
    assert!(params["rustc"].as_str().unwrap().starts_with("rustc "));
    assert!(params["pauseCompiler"].as_str().unwrap().contains("clang"));

    for arch in ["amd64", "arm64"] {
        let bin = a.join(format!("pausebake-linux-{arch}"));
        let headers = stdout(&run_ok(Command::new("readelf").arg("-lW").arg(&bin)));
        assert!(!headers.contains("INTERP"), "{arch}: {headers}");
        let kind = stdout(&run_ok(Command::new("file").arg(&bin)));
        assert!(
            kind.contains("statically linked") || kind.contains("static-pie linked"),
            "{kind}"
        );
    }
    // The archive is the six built-in programs' image.
    let out = run_ok(
        pausebake()
            .args(["import", "--all-platforms", "--json", "--root"])
            .arg(tempdir().path())
            .arg(a.join("pause.oci.tar")),
    );
    assert_eq!(
        json(&out)["import"]["target"],
        version_json()["all_platforms_digest"],
        "{}",
        stdout(&out)
    );
}

#[test]
fn static_binary_alone_in_an_empty_chroot_bakes_every_platform() {
    let Some(dist) = dist() else { return };
    if !is_root() {
        skip("chroot needs root");
        return;
    }
    if !have("chroot") {
        return;
    }
    let dir = tempdir();
    let jail = dir.path();
    fs::copy(static_for_host(dist), jail.join("pausebake")).unwrap();
    let versions = version_json();
    for (i, platform) in PLATFORMS.iter().enumerate() {
        let root = format!("r{i}");
        fs::create_dir(jail.join(&root)).unwrap();
        let mut cmd = Command::new(which("chroot").unwrap());
        // Nothing but the binary and the roots it writes: no libc, no shell, no compiler,
        // no environment.
        cmd.arg(jail).arg("/pausebake").env_clear();
        let digest = bake_digest(cmd, &format!("/{root}"), platform);
        assert_eq!(
            versions["programs"][i]["image_digest"], digest,
            "{platform}"
        );
        let host_root = tempdir();
        assert_eq!(
            bake_digest(pausebake(), host_root.path().to_str().unwrap(), platform),
            digest,
            "{platform}"
        );
    }
    let mut left = sorted_names(jail);
    left.retain(|n| !n.starts_with('r'));
    assert_eq!(left, ["pausebake"]);
}

#[test]
fn static_arm64_binary_bakes_every_platform_under_qemu_user() {
    let Some(dist) = dist() else { return };
    let bin = dist.join("pausebake-linux-arm64");
    let runner = |dir: &Path, platform: &str| {
        let mut cmd = if host_arch() == "arm64" {
            Command::new(&bin)
        } else {
            let mut cmd = Command::new("qemu-aarch64-static");
            cmd.arg(&bin);
            cmd
        };
        cmd.env_clear();
        bake_digest(cmd, dir.to_str().unwrap(), platform)
    };
    if host_arch() != "arm64" && !have("qemu-aarch64-static") {
        return;
    }
    let versions = version_json();
    let dir = tempdir();
    for (i, platform) in PLATFORMS.iter().enumerate() {
        let root = dir.path().join(format!("r{i}"));
        fs::create_dir(&root).unwrap();
        assert_eq!(
            versions["programs"][i]["image_digest"],
            runner(&root, platform),
            "{platform}"
        );
    }
}

/// A fresh copy of the cached bullseye root (with sudo and systemd, for the amazon-ebs
/// step), under `dir/root`, with the files a booted node has, and the containerd that
/// boots it in these tests. `None` after a loud skip.
///
/// Bullseye ships containerd 1.4.13, which pausebake refuses (it knows 1.6 to 2.2) and whose
/// CRI (v1alpha2 only) the tests' runtime.v1 client cannot talk to; a Kubernetes node on
/// bullseye runs a newer containerd from elsewhere. So the host's containerd 1.6 binary
/// replaces the root's: it is what `bake --root /` finds in the root, and the same binary
/// then boots the baked store.
fn bullseye_root(dir: &Path) -> Option<(PathBuf, Containerd)> {
    if !is_root() {
        skip("the bullseye test needs root (debootstrap, chroot)");
        return None;
    }
    let c = versions()
        .into_iter()
        .find(|c| c.version.starts_with("1.6"))?;
    let root = distro::bullseye_root(dir)?;
    install(&c.bin("containerd"), &root.join("usr/bin/containerd"));
    Some((root, c))
}

fn install(from: &Path, to: &Path) {
    fs::copy(from, to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn bullseye_root_static_binary_bakes_it_and_containerd_runs_a_sandbox_offline() {
    let Some(dist) = dist() else { return };
    let dir = tempdir();
    let Some((root, c)) = bullseye_root(dir.path()) else {
        return;
    };
    // The glibc build (the test binary, built on bookworm) does not start on glibc 2.31.
    install(Path::new(PAUSEBAKE), &root.join("pausebake-dynamic"));
    let out = run_any(
        Command::new("chroot")
            .arg(&root)
            .args(["/pausebake-dynamic", "--version"]),
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("version `GLIBC_2.3") && stderr(&out).contains("not found"),
        "{}",
        stderr(&out)
    );
    assert!(
        !root.join("usr/bin/cc").exists() && !root.join("usr/bin/clang").exists(),
        "the root has a C compiler"
    );

    install(&static_for_host(dist), &root.join("pausebake"));
    let out = run_ok(
        Command::new("chroot")
            .arg(&root)
            .args(["/pausebake", "bake", "--root", "/"]),
    );
    let summary = stdout(&out);
    assert!(
        summary.contains(&format!("  containerd {} (", c.semver_string())),
        "{summary}"
    );
    assert!(summary.contains("verify     ok"), "{summary}");
    run_ok(
        Command::new("chroot")
            .arg(&root)
            .args(["/pausebake", "verify", "--root", "/"]),
    );

    // The root's containerd boots its store and config, in an empty network namespace.
    let ctd = offline(&c, &root);
    sandbox_ready(&ctd, "bullseye");
    assert!(ctd.pull_attempts().is_empty(), "{}", ctd.log());
}

/// The inline lines of the amazon-ebs example's shell provisioner that runs pausebake, as
/// the shell on the instance receives them (HCL's `\"` and `$${` unescaped).
fn amazon_ebs_step() -> (String, String, String) {
    let hcl = fs::read_to_string(repo().join("packer/examples/amazon-ebs.pkr.hcl")).unwrap();
    let file = hcl
        .split("provisioner \"file\" {")
        .nth(1)
        .expect("a file provisioner uploads pausebake");
    let field = |block: &str, key: &str| -> String {
        let line = block
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("{key} in {block}"));
        line.split_once('=')
            .unwrap()
            .1
            .trim()
            .trim_matches('"')
            .to_string()
    };
    let (source, destination) = (field(file, "source"), field(file, "destination"));
    let default = hcl
        .split("variable \"pausebake\" {")
        .nth(1)
        .map(|v| field(v, "default"))
        .unwrap();
    assert_eq!(source, "var.pausebake");
    let step = hcl
        .split("provisioner \"shell\" {")
        .find(|b| b.contains("pausebake bake"))
        .expect("a shell provisioner runs pausebake bake");
    let inline = step.split_once("inline = [").unwrap().1;
    let inline = inline.split_once("\n    ]").unwrap().0;
    let script: Vec<String> = inline
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.trim_end_matches(',')
                .trim_matches('"')
                .replace("\\\"", "\"")
                .replace("$${", "${")
        })
        .collect();
    (default, destination, script.join("\n"))
}

#[test]
fn amazon_ebs_shell_step_runs_in_a_bullseye_root() {
    let Some(dist) = dist() else { return };
    let (source, destination, script) = amazon_ebs_step();
    assert_eq!(source, "dist/pausebake-linux-amd64");
    if host_arch() != "amd64" {
        skip("the amazon-ebs example uploads the amd64 binary");
        return;
    }
    let dir = tempdir();
    let Some((root, _)) = bullseye_root(dir.path()) else {
        return;
    };
    // The file provisioner's upload.
    install(
        &dist.join("pausebake-linux-amd64"),
        &root.join(destination.trim_start_matches('/')),
    );
    // No service manager runs in a chroot: SYSTEMD_OFFLINE=1 makes the real systemctl skip
    // `stop` as it does during image builds, and sudo must pass it on.
    fs::write(
        root.join("etc/sudoers.d/systemd-offline"),
        "Defaults env_keep += \"SYSTEMD_OFFLINE\"\n",
    )
    .unwrap();
    let out = run_ok(
        Command::new("chroot")
            .arg(&root)
            .args(["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            .args(["SYSTEMD_OFFLINE=1", "KUBERNETES_VERSION="])
            .args(["/bin/sh", "-c", &script]),
    );
    let log = stdout(&out);
    assert!(log.contains("verify     ok"), "{log}\n{}", stderr(&out));
    assert!(root.join("usr/local/sbin/pausebake").is_file());
}
