//! pausebake's bbolt module against Go's own bbolt (`tests/bolt-check`, built from Debian's
//! golang-go and golang-github-coreos-bbolt-dev): every file we write passes Go's
//! `tx.Check()` and dumps identically on both sides; files Go writes (with and without a
//! synced freelist) read identically and survive our changes and Go's changes after ours; a
//! commit killed at any write leaves the old or the new state.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use crate::containerd::{stand_in_pause_archive, versions, Running, StartOpts};
use crate::harness::{describe, have, pausebake, repo, run_any, run_ok, skip, stdout, tempdir};

/// Builds tests/bolt-check once per test run into cargo's target tmp dir; `None` (after a loud
/// skip) without Go or Debian's bbolt sources.
pub fn bolt_check() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let built = BUILT
        .get_or_init(|| {
            if !have("go") {
                return None;
            }
            let gopath = Path::new("/usr/share/gocode");
            if !gopath.join("src/go.etcd.io/bbolt").is_dir() {
                skip("go.etcd.io/bbolt not in /usr/share/gocode (golang-github-coreos-bbolt-dev)");
                return None;
            }
            let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
            let out = target.join("bolt-check");
            // GOPATH mode resolves go.etcd.io/bbolt from the Debian package, offline.
            run_ok(
                Command::new("go")
                    .args(["build", "-o"])
                    .arg(&out)
                    .arg("./tests/bolt-check")
                    .current_dir(repo())
                    .env("GO111MODULE", "off")
                    .env("GOPATH", gopath)
                    .env("GOCACHE", target.join("go-cache"))
                    .env("GOFLAGS", ""),
            );
            Some(out)
        })
        .clone();
    // Memoised: every test that needs it reports the skip, not only the first.
    if built.is_none() {
        skip("Go's bbolt checker could not be built (Go or its bbolt missing)");
    }
    built
}

/// Go's dump of `file`, asserting `tx.Check()` and the lookups found nothing wrong.
pub fn go_dump(go: &Path, file: &Path) -> String {
    stdout(&run_ok(Command::new(go).arg("dump").arg(file)))
}

/// Our dump of `file`.
pub fn our_dump(file: &Path) -> String {
    stdout(&run_ok(pausebake().args(["bolt", "dump"]).arg(file)))
}

/// Go checks `file` and both sides dump it identically; returns the dump.
pub fn assert_same(go: &Path, file: &Path) -> String {
    let theirs = go_dump(go, file);
    let ours = our_dump(file);
    if theirs != ours {
        let line = theirs
            .lines()
            .zip(ours.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(theirs.lines().count().min(ours.lines().count()));
        panic!(
            "{}: dumps differ at line {line}:\n  go:   {:.200}\n  ours: {:.200}",
            file.display(),
            theirs.lines().nth(line).unwrap_or("<end>"),
            ours.lines().nth(line).unwrap_or("<end>")
        );
    }
    theirs
}

/// `pausebake bolt set --bucket BUCKET --key KEY --value VALUE FILE`.
fn bolt_set(file: &Path, bucket: &str, key: &str, value: &str) -> Command {
    let mut cmd = pausebake();
    cmd.args([
        "bolt", "set", "--bucket", bucket, "--key", key, "--value", value,
    ])
    .arg(file);
    cmd
}

fn go(go: &Path, args: &[&str], file: &Path) {
    run_ok(Command::new(go).arg(args[0]).arg(file).args(&args[1..]));
}

#[test]
fn go_accepts_every_file_we_write() {
    let Some(bc) = bolt_check() else { return };
    let dir = tempdir();
    for seed in 0..5u64 {
        let file = dir.path().join(format!("ours-{seed}.db"));
        run_ok(
            pausebake()
                .args([
                    "bolt",
                    "random",
                    "--commits",
                    "3",
                    "--seed",
                    &seed.to_string(),
                ])
                .arg(&file),
        );
        let before = assert_same(&bc, &file);
        assert!(before.lines().count() > 10, "seed {seed}: trivial tree");
        // Every page written afresh: the same tree, still valid.
        run_ok(pausebake().args(["bolt", "rewrite"]).arg(&file));
        assert_eq!(
            assert_same(&bc, &file),
            before,
            "seed {seed}: rewrite changed the tree"
        );
        // Go writes on top of our file, reusing the pages our freelist lists as free.
        go(&bc, &["mutate", &seed.to_string()], &file);
        assert_same(&bc, &file);
    }
}

#[test]
fn we_read_and_change_what_go_writes() {
    let Some(bc) = bolt_check() else { return };
    let dir = tempdir();
    for seed in 0..3u64 {
        // Synced freelist (containerd 1.6) and "no freelist" (containerd >= 1.7).
        for nosync in ["", "nosync"] {
            let file = dir.path().join(format!("go-{seed}-{nosync}.db"));
            go(&bc, &["generate", &seed.to_string(), nosync], &file);
            assert_same(&bc, &file);
            run_ok(
                pausebake()
                    .args(["bolt", "random", "--seed", &(100 + seed).to_string()])
                    .arg(&file),
            );
            assert_same(&bc, &file);
            go(&bc, &["mutate", &seed.to_string(), nosync], &file);
            assert_same(&bc, &file);
            run_ok(
                pausebake()
                    .args([
                        "bolt",
                        "set",
                        "--bucket",
                        "new/nested",
                        "--key",
                        "k",
                        "--value",
                        "v",
                    ])
                    .arg(&file),
            );
            let dump = assert_same(&bc, &file);
            assert!(dump.contains("value /6e6577/6e6573746564/6b 76\n"));
        }
    }
}

#[test]
fn files_with_other_page_sizes_keep_them() {
    let Some(bc) = bolt_check() else { return };
    let dir = tempdir();
    // 64 KiB is what Go picks on 64 KiB-page kernels (ppc64le, some arm64).
    for (seed, size) in [(11u64, 1024u32), (12, 16384), (13, 65536)] {
        let file = dir.path().join(format!("go-{size}.db"));
        go(
            &bc,
            &["generate", &seed.to_string(), "", &size.to_string()],
            &file,
        );
        assert_eq!(page_size(&file), size);
        assert_same(&bc, &file);
        run_ok(
            pausebake()
                .args(["bolt", "random", "--seed", &seed.to_string()])
                .arg(&file),
        );
        assert_same(&bc, &file);
        run_ok(pausebake().args(["bolt", "rewrite"]).arg(&file));
        assert_same(&bc, &file);
        assert_eq!(page_size(&file), size);
        go(&bc, &["mutate", &seed.to_string()], &file);
        assert_same(&bc, &file);
    }
}

/// The page size recorded in meta page 0 (little-endian host files).
fn page_size(file: &Path) -> u32 {
    let bytes = std::fs::read(file).unwrap();
    u32::from_le_bytes(bytes[24..28].try_into().unwrap())
}

#[test]
fn containerd_shaped_file_round_trips() {
    let Some(bc) = bolt_check() else { return };
    let dir = tempdir();
    let file = dir.path().join("meta.db");
    go(&bc, &["images", "300"], &file);
    let before = assert_same(&bc, &file);
    let len = std::fs::metadata(&file).unwrap().len();
    run_ok(&mut bolt_set(
        &file,
        "v1/k8s.io/images/pause",
        "createdat",
        "now",
    ));
    let after = assert_same(&bc, &file);
    assert_eq!(after.lines().count(), before.lines().count() + 2);
    // Only the changed path is rewritten: the file grows by far less than its size.
    let grown = std::fs::metadata(&file).unwrap().len() - len;
    assert!(grown < len / 10, "grew by {grown} of {len} bytes");
}

/// A commit reads the meta pages, the freelist and the pages on the way to the key it
/// writes, not the file: a one-key commit on a 1,000-image file (17 MB, freelist page) reads
/// a small fraction of it, counted with strace.
#[test]
fn a_commit_reads_only_the_pages_it_needs() {
    let Some(bc) = bolt_check() else { return };
    if !have("strace") {
        return;
    }
    let dir = tempdir();
    let file = dir.path().join("meta.db");
    go(&bc, &["images", "1000"], &file);
    // Go without NoFreelistSync writes a freelist page, so no walk is needed to find free
    // pages (a file without one is walked whole, as Go does).
    go(&bc, &["mutate", "1"], &file);
    assert_ne!(current_freelist(&file), u64::MAX);
    let len = std::fs::metadata(&file).unwrap().len();
    let log = dir.path().join("strace.log");
    let set = bolt_set(&file, "v1/k8s.io/images/new", "k", "v");
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-e", "trace=pread64,read,mmap", "-o"])
        .arg(&log)
        .arg(set.get_program())
        .args(set.get_args());
    run_ok(&mut strace);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log.lines()
            .any(|l| l.contains("mmap(") && l.contains("MAP_SHARED")),
        "the file was mapped"
    );
    let read: u64 = log
        .lines()
        .filter(|l| l.contains("read"))
        .filter_map(|l| l.rsplit_once("= ")?.1.trim().parse::<u64>().ok())
        .sum();
    assert!(read < len / 10, "read {read} bytes of a {len}-byte file");
    let dump = assert_same(&bc, &file);
    assert!(dump.contains(&format!(
        "value /7631/6b38732e696f/696d61676573/{}/6b 76",
        hex(b"new")
    )));
}

#[test]
fn a_locked_file_is_refused_at_once() {
    let dir = tempdir();
    let file = dir.path().join("meta.db");
    run_ok(&mut bolt_set(&file, "a", "k", "v"));
    // The test process takes the flock containerd would hold.
    let holder = std::fs::File::open(&file).unwrap();
    holder.try_lock().unwrap();
    let start = Instant::now();
    let out = run_any(&mut bolt_set(&file, "a", "k", "w"));
    assert!(!out.status.success());
    assert!(start.elapsed() < crate::harness::NO_WAIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "pausebake: error: {} is locked: containerd appears to be running on this root; stop it and retry",
            file.display()
        )
    );
    drop(holder);
    run_ok(&mut bolt_set(&file, "a", "k", "w"));
}

#[test]
fn damaged_files_are_refused_naming_the_page() {
    let dir = tempdir();
    let file = dir.path().join("meta.db");
    run_ok(&mut bolt_set(&file, "a", "k", "v"));
    let mut bytes = std::fs::read(&file).unwrap();
    // The commit wrote the root leaf at page 4 (after Go's four-page empty file);
    // damage its header id.
    bytes[4 * 4096] = 0x77;
    std::fs::write(&file, &bytes).unwrap();
    let out = run_any(pausebake().args(["bolt", "dump"]).arg(&file));
    assert!(!out.status.success(), "{}", describe(&pausebake(), &out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("page "), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
}

/// SIGKILLs `bolt set` just before its `n`th call of `syscall` (strace's fault injection,
/// so the commit path carries no test hook); `None` when it made fewer calls and finished.
fn killed_before(set: &[&str], file: &Path, syscall: &str, n: u32) -> Option<()> {
    let mut cmd = crate::harness::pausebake_killed_before(syscall, n);
    cmd.args(set).arg(file).stdout(Stdio::null());
    let out = run_any(&mut cmd);
    if out.status.success() {
        return None;
    }
    use std::os::unix::process::ExitStatusExt;
    // strace dies of its tracee's signal, or exits 128 + 9 when it cannot.
    assert!(
        out.status.signal() == Some(9) || out.status.code() == Some(137),
        "{}",
        describe(&cmd, &out)
    );
    Some(())
}

#[test]
fn a_commit_killed_at_any_write_leaves_the_old_or_the_new_state() {
    let Some(bc) = bolt_check() else { return };
    if !have("strace") {
        return;
    }
    let dir = tempdir();
    let base = dir.path().join("base.db");
    go(&bc, &["images", "150"], &base);
    let set = [
        "bolt",
        "set",
        "--bucket",
        "v1/k8s.io/content/blob",
        "--key",
        "k",
        "--value",
        "v",
    ];
    let old = assert_same(&bc, &base);
    let file = dir.path().join("meta.db");
    std::fs::copy(&base, &file).unwrap();
    run_ok(pausebake().args(set).arg(&file));
    let new = assert_same(&bc, &file);
    assert_ne!(old, new);

    // The commit writes its pages (pwrite64), syncs (fdatasync), writes the meta page and
    // syncs again. Killed before any write or sync, the file holds one of the two states.
    let mut states = std::collections::BTreeMap::new();
    for syscall in ["pwrite64", "fdatasync"] {
        let mut seen = Vec::new();
        for n in 1..1000u32 {
            std::fs::copy(&base, &file).unwrap();
            if killed_before(&set, &file, syscall, n).is_none() {
                break;
            }
            let dump = assert_same(&bc, &file);
            assert!(
                dump == old || dump == new,
                "killed before {syscall} #{n}: neither the old nor the new tree"
            );
            seen.push(dump == new);
        }
        states.insert(syscall, seen);
    }
    // Page writes and the first sync leave the old state; once the meta page is written
    // (before the second sync), the new one.
    let writes = states["pwrite64"].len();
    assert!(
        writes >= 5,
        "only {writes} writes: the test covers too little"
    );
    assert_eq!(states["pwrite64"], vec![false; writes]);
    assert_eq!(states["fdatasync"], [false, true]);
}

/// The image the containerd tests import.
const IMAGE: &str = "example.invalid/bolt/pause:1";

/// A temp dir holding a stand-in pause archive named [`IMAGE`], and the archive's path;
/// `None` when there is no containerd to test (`versions` empty) or no archive (after a
/// loud skip).
fn image_for(versions: &[crate::containerd::Containerd]) -> Option<(tempfile::TempDir, String)> {
    if versions.is_empty() {
        return None;
    }
    let work = tempdir();
    let archive = stand_in_pause_archive(work.path(), IMAGE)?;
    let archive = archive.display().to_string();
    Some((work, archive))
}

/// Lines of `ctr ARGS` output, for comparing listings before and after our commit.
fn ctr_text(running: &Running, args: &[&str]) -> String {
    stdout(&running.ctr_ok(args))
}

#[test]
fn containerd_files_read_identically_take_our_changes_and_keep_working() {
    let Some(bc) = bolt_check() else { return };
    let versions = versions();
    let Some((_work, archive)) = image_for(&versions) else {
        return;
    };
    let name = IMAGE;
    for c in &versions {
        let root = tempdir();
        let opts = StartOpts {
            no_network: true,
            ..Default::default()
        };
        let mut running = c.start(root.path(), opts.clone());
        let ctr = |running: &Running, args: &[&str]| -> String {
            let mut all = vec!["-n", "k8s.io"];
            all.extend_from_slice(args);
            ctr_text(running, &all)
        };
        ctr(&running, &["images", "import", &archive]);
        ctr(
            &running,
            &[
                "containers",
                "create",
                "--label",
                "made-by=test",
                name,
                "box",
            ],
        );
        ctr(
            &running,
            &[
                "leases",
                "create",
                "--id",
                "hold",
                "--expires",
                "0",
                "kept=yes",
            ],
        );
        let listings = |running: &Running| {
            [
                ctr(running, &["images", "ls", "-q"]),
                ctr(running, &["containers", "ls", "-q"]),
                ctr(running, &["leases", "ls", "-q"]),
            ]
        };
        let before = listings(&running);
        assert!(
            before[0].contains(name) && before[1].contains("box") && before[2].contains("hold"),
            "{before:?}"
        );
        running.stop();
        let meta = running
            .data_root()
            .join("io.containerd.metadata.v1.bolt/meta.db");

        // containerd's own file: Go and we read the same tree. 1.6 leaves a freelist page,
        // 1.7 and later the "no freelist" marker: both forms come from the real program.
        let theirs = assert_same(&bc, &meta);
        let no_freelist = current_freelist(&meta) == u64::MAX;
        assert_eq!(
            no_freelist,
            c.semver() >= (1, 7, 0),
            "containerd {}",
            c.version
        );
        assert!(theirs.contains(&format!(
            "bucket /7631/6b38732e696f/696d61676573/{}",
            hex(name.as_bytes())
        )));

        // Our commit: a label on the lease and one on the container.
        for (bucket, key) in [
            ("v1/k8s.io/leases/hold/labels", "pausebake.test/lease"),
            (
                "v1/k8s.io/containers/box/labels",
                "pausebake.test/container",
            ),
        ] {
            run_ok(&mut bolt_set(&meta, bucket, key, "touched"));
        }
        let ours = assert_same(&bc, &meta);
        assert_eq!(ours.lines().count(), theirs.lines().count() + 2);

        // containerd starts on it, lists everything, sees our labels and runs the container.
        let mut again = c.start(root.path(), opts);
        assert_eq!(listings(&again), before, "containerd {}", c.version);
        let leases = ctr(&again, &["leases", "ls"]);
        assert!(leases.contains("pausebake.test/lease=touched"), "{leases}");
        let info = ctr(&again, &["containers", "info", "box"]);
        assert!(
            info.contains("\"pausebake.test/container\": \"touched\""),
            "{info}"
        );
        ctr(&again, &["tasks", "start", "-d", "box"]);
        let tasks = ctr(&again, &["tasks", "ls"]);
        assert!(
            tasks.contains("box") && tasks.contains("RUNNING"),
            "{tasks}"
        );
        ctr(&again, &["tasks", "kill", "-s", "SIGKILL", "box"]);
        again.stop();
        // And what containerd wrote after us is still a valid file.
        assert_same(&bc, &meta);
        eprintln!(
            "containerd {}: meta.db read identically, changed by us, still works",
            c.version
        );
    }
}

/// A `meta.db` written by containerd `c`: an imported image, a container and a lease.
fn containerd_file(c: &crate::containerd::Containerd, work: &Path, archive: &str) -> PathBuf {
    let root = work.join(format!("root-{}", c.version));
    std::fs::create_dir_all(&root).unwrap();
    let opts = StartOpts {
        no_network: true,
        ..Default::default()
    };
    let mut running = c.start(&root, opts);
    let ctr = |args: &[&str]| {
        let mut all = vec!["-n", "k8s.io"];
        all.extend_from_slice(args);
        ctr_text(&running, &all)
    };
    ctr(&["images", "import", archive]);
    ctr(&[
        "containers",
        "create",
        "example.invalid/bolt/pause:1",
        "box",
    ]);
    ctr(&["leases", "create", "--id", "hold", "--expires", "0"]);
    running.stop();
    running
        .data_root()
        .join("io.containerd.metadata.v1.bolt/meta.db")
}

/// Randomized commits on files containerd 1.6 (freelist page) and 2.1 (no freelist) wrote:
/// after every commit Go's tx.Check passes and Go's dump equals the tree the commit had to
/// leave. Half the commits load everything and change all over the tree; half load only the
/// keys they change (as import does), the expected tree coming from the whole-file reader.
/// Inserts, updates, deletes, new buckets, values spanning overflow pages.
#[test]
fn randomized_commits_on_containerd_files_pass_go_check_after_every_commit() {
    let Some(bc) = bolt_check() else { return };
    let versions: Vec<_> = versions()
        .into_iter()
        .filter(|c| c.version.starts_with("1.6") || c.version.starts_with("2.1"))
        .collect();
    let Some((work, archive)) = image_for(&versions) else {
        return;
    };
    for c in &versions {
        let file = work.path().join(format!("random-{}.db", c.version));
        std::fs::copy(containerd_file(c, work.path(), &archive), &file).unwrap();
        let form = current_freelist(&file) == u64::MAX;
        assert_eq!(form, c.semver() >= (1, 7, 0), "containerd {}", c.version);
        let expect = work.path().join("expect.txt");
        let mut sizes = Vec::new();
        for seed in 0..30u64 {
            run_ok(
                pausebake()
                    .args(["bolt", "random", "--seed", &seed.to_string(), "--expect"])
                    .arg(&expect)
                    .arg(&file),
            );
            let dump = assert_same(&bc, &file);
            let want = std::fs::read_to_string(&expect).unwrap();
            assert!(
                dump == want,
                "containerd {}, commit {seed}: Go's dump is not the expected tree",
                c.version
            );
            // The file keeps the freelist form its writer chose.
            assert_eq!(current_freelist(&file) == u64::MAX, form);
            sizes.push(std::fs::metadata(&file).unwrap().len());
        }
        // Go writes on top, reusing the pages we freed.
        go(
            &bc,
            &["mutate", "7", if form { "nosync" } else { "" }],
            &file,
        );
        assert_same(&bc, &file);
        eprintln!(
            "containerd {}: 30 random commits checked by Go; file sizes {sizes:?}",
            c.version
        );
    }
}

/// The `freelist` field of the meta page with the higher txid (little-endian host files).
fn current_freelist(file: &Path) -> u64 {
    let bytes = std::fs::read(file).unwrap();
    let field = |page: usize, off: usize| {
        u64::from_le_bytes(
            bytes[page * 4096 + off..page * 4096 + off + 8]
                .try_into()
                .unwrap(),
        )
    };
    let page = if field(1, 64) > field(0, 64) { 1 } else { 0 };
    field(page, 48)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
