//! Hardening (issue 8): the real binary against hostile archives, roots whose symlinks point
//! at the host, a corrupt or locked `meta.db`, SIGKILL in the middle of a write, and a full
//! disk. Every refusal must leave the root exactly as it was: the tests compare a full
//! listing of the root (type, mode, size, mtime, content, link target) before and after.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::harness::{
    describe, is_root, pausebake, repo, run_any, run_ok, skip, stderr, stdout, tempdir,
};

/// Where containerd keeps `meta.db`, inside a root with the default containerd root.
const META: &str = "var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db";
const PLATFORM: &str = "linux/amd64";

// --- building archives --------------------------------------------------------------------

/// A valid OCI archive of the committed static amd64 pause, named `name`, uncompressed layer.
pub fn good_archive(dir: &Path, name: &str) -> PathBuf {
    pause_archive(dir, name, &["--compression", "none"])
}

/// `pausebake image` of the committed static amd64 pause, named `name`, with `args`.
fn pause_archive(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(format!("{}.tar", name.replace(['/', ':'], "_")));
    run_ok(
        pausebake()
            .arg("image")
            .arg(format!(
                "--binary=amd64={}",
                repo().join("tests/fixtures/pause-static-amd64").display()
            ))
            .args(args)
            .args(["--name", name, "--output"])
            .arg(&out),
    );
    out
}

/// One tar entry, written with exactly these bytes: the tar crate's path setters refuse
/// `..` and absolute names, which are the point of several cases.
#[derive(Clone)]
struct Entry {
    name: String,
    kind: tar::EntryType,
    data: Vec<u8>,
    /// A size to declare other than `data.len()`.
    declared: Option<u64>,
    link: Option<String>,
}

fn file(name: &str, data: &[u8]) -> Entry {
    Entry {
        name: name.into(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        declared: None,
        link: None,
    }
}

fn entries_of(tar_bytes: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push(Entry {
            name: String::from_utf8(e.path_bytes().to_vec()).unwrap(),
            kind: e.header().entry_type(),
            data,
            declared: None,
            link: None,
        });
    }
    out
}

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        if let Some(link) = &e.link {
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_mode(0o644);
        h.set_size(e.declared.unwrap_or(e.data.len() as u64));
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn blob_name(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// The digests a single-platform archive's index points at: (manifest, config, layer).
fn digests(entries: &[Entry]) -> (String, String, String) {
    let get = |name: &str| &entries.iter().find(|e| e.name == name).unwrap().data;
    let index: serde_json::Value = serde_json::from_slice(get("index.json")).unwrap();
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m: serde_json::Value = serde_json::from_slice(get(&blob_name(&manifest))).unwrap();
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    (manifest, config, layer)
}

fn with_data(entries: &[Entry], name: &str, f: impl Fn(&mut Vec<u8>)) -> Vec<Entry> {
    let mut out = entries.to_vec();
    f(&mut out.iter_mut().find(|e| e.name == name).unwrap().data);
    out
}

/// The good archive with `extra` appended.
fn plus(entries: &[Entry], extra: Entry) -> Vec<u8> {
    let mut out = entries.to_vec();
    out.push(extra);
    tar_of(&out)
}

/// An archive whose index.json points at a chain of `depth` indexes above the real manifest.
fn nested(entries: &[Entry], depth: usize) -> Vec<u8> {
    let (manifest, _, _) = digests(entries);
    let size = entries
        .iter()
        .find(|e| e.name == blob_name(&manifest))
        .unwrap()
        .data
        .len();
    let mut out: Vec<Entry> = entries
        .iter()
        .filter(|e| e.name != "index.json")
        .cloned()
        .collect();
    let mut child = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest,
        "size": size,
        "platform": {"os": "linux", "architecture": "amd64"},
    });
    for _ in 0..depth {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [child],
        }))
        .unwrap();
        let digest = sha256(&index);
        out.push(file(&blob_name(&digest), &index));
        child = serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": index.len(),
        });
    }
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [child]});
    out.push(file("index.json", &serde_json::to_vec(&top).unwrap()));
    tar_of(&out)
}

// --- watching a root ----------------------------------------------------------------------

/// Everything about every path under `dir` that a write could change, symlinks not followed.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(e) => panic!("reading {}: {e}", p.display()),
    };
    let rel = p.strip_prefix(base).unwrap().to_path_buf();
    let common = format!(
        "mode {:o} size {} mtime {}.{} ino {}",
        m.mode(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    );
    let what = if m.file_type().is_symlink() {
        format!("link -> {}", fs::read_link(p).unwrap().display())
    } else if m.is_dir() {
        let mut names: Vec<_> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        // read_dir has no order.
        names.sort();
        for n in names {
            walk(base, &n, out);
        }
        "dir".into()
    } else if m.is_file() {
        match fs::read(p) {
            Ok(bytes) => format!("file {}", sha256(&bytes)),
            // A host file a non-root test cannot read (/etc/shadow): its metadata still counts.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => "file unreadable".into(),
            Err(e) => panic!("reading {}: {e}", p.display()),
        }
    } else {
        // A socket, FIFO or device: reading it could block; its type and metadata count.
        format!("special {:?}", m.file_type())
    };
    out.insert(rel, format!("{what} {common}"));
}

/// `snap` with modification times left out.
fn without_mtimes(mut snap: BTreeMap<PathBuf, String>) -> BTreeMap<PathBuf, String> {
    for v in snap.values_mut() {
        let start = v.find(" mtime ").unwrap();
        let end = v.find(" ino ").unwrap();
        v.replace_range(start..end, "");
    }
    snap
}

/// Panics listing every difference between two snapshots.
pub fn assert_same(
    what: &str,
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
) {
    if before == after {
        return;
    }
    let mut diff = String::new();
    for (p, v) in before {
        match after.get(p) {
            None => diff += &format!("  removed {}: {v}\n", p.display()),
            Some(w) if w != v => {
                diff += &format!("  changed {}: {v}\n       -> {w}\n", p.display())
            }
            _ => {}
        }
    }
    for (p, v) in after {
        if !before.contains_key(p) {
            diff += &format!("  added {}: {v}\n", p.display());
        }
    }
    panic!("{what}: the tree changed:\n{diff}");
}

fn import(archive: &Path, root: &Path) -> Command {
    let mut cmd = pausebake();
    cmd.arg("import")
        .arg(archive)
        .arg("--root")
        .arg(root)
        .args(["--platform", PLATFORM]);
    cmd
}

/// Runs `cmd`, which must fail with a one-line error containing every one of `needles`.
fn refused(cmd: &mut Command, needles: &[&str]) -> Output {
    let out = run_any(cmd);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.starts_with("pausebake: error: "),
        "expected a refusal\n{}",
        describe(cmd, &out)
    );
    for n in needles {
        assert!(
            err.contains(n),
            "stderr lacks {n:?}\n{}",
            describe(cmd, &out)
        );
    }
    out
}

/// A root that already holds one imported image (so `meta.db` and blobs exist).
/// A temporary directory holding `work/` (archives) and `root/` with one image imported.
fn workspace_with_image() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempdir();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let root = root_with_image(t.path(), &work);
    (t, work, root)
}

fn root_with_image(dir: &Path, work: &Path) -> PathBuf {
    let root = dir.join("root");
    fs::create_dir_all(&root).unwrap();
    let before = good_archive(work, "registry.example/before:1");
    run_ok(&mut import(&before, &root));
    assert!(root.join(META).is_file());
    root
}

// --- hostile archives -------------------------------------------------------------------

#[test]
fn hostile_archives_are_refused_and_nothing_is_written() {
    if !crate::harness::have("prlimit") {
        return;
    }
    let (_dir, work, root) = workspace_with_image();
    let good_path = good_archive(&work, "registry.example/hostile:1");
    let good = fs::read(&good_path).unwrap();
    let entries = entries_of(&good);
    let (manifest, config, layer) = digests(&entries);
    let layer_name = blob_name(&layer);
    let layer_pos = good
        .windows(8)
        .position(|w| w == b"\x7fELF\x02\x01\x01\x00")
        .expect("the uncompressed layer holds the ELF");

    let mut bad_gzip = gzip(&good);
    let mid = bad_gzip.len() / 2;
    bad_gzip[mid] ^= 0xff;
    let mut bad_crc = gzip(&good);
    let crc = bad_crc.len() - 8;
    bad_crc[crc] ^= 0xff;
    let mut index_nowhere = entries.clone();
    {
        let idx = index_nowhere
            .iter_mut()
            .find(|e| e.name == "index.json")
            .unwrap();
        let zero = format!("sha256:{}", "0".repeat(64));
        idx.data = String::from_utf8(idx.data.clone())
            .unwrap()
            .replace(&manifest, &zero)
            .into_bytes();
    }
    let huge = |size| Entry {
        declared: Some(size),
        ..file("blobs/sha256/huge", b"0123456789")
    };
    let special = |name: &str, kind, link: Option<&str>| Entry {
        kind,
        link: link.map(Into::into),
        ..file(name, b"")
    };

    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "truncated inside the layer",
            good[..layer_pos + 100].to_vec(),
            vec!["truncated"],
        ),
        (
            "truncated at a header",
            good[..512 * 3 + 100].to_vec(),
            vec!["truncated"],
        ),
        ("bad gzip", bad_gzip, vec!["gzip-compressed tar"]),
        ("gzip CRC", bad_crc, vec!["gzip-compressed tar", "corrupt"]),
        (
            "digest mismatch",
            tar_of(&with_data(&entries, &layer_name, |d| d[600] ^= 1)),
            vec![&layer, "is corrupt"],
        ),
        (
            "size mismatch",
            tar_of(&with_data(&entries, &layer_name, |d| d.push(0))),
            vec![&layer, "but its descriptor"],
        ),
        (
            "missing blob",
            tar_of(
                &entries
                    .iter()
                    .filter(|e| e.name != blob_name(&config))
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            vec![&config, "is missing"],
        ),
        (
            "index pointing nowhere",
            tar_of(&index_nowhere),
            vec!["is missing (referenced by index.json)"],
        ),
        (
            "'..' entry",
            plus(&entries, file("blobs/../../evil", b"x")),
            vec!["'..'"],
        ),
        (
            "absolute path",
            plus(&entries, file("/etc/evil", b"x")),
            vec!["absolute"],
        ),
        (
            "symlink",
            plus(
                &entries,
                special(
                    "blobs/sha256/evil",
                    tar::EntryType::Symlink,
                    Some("/etc/passwd"),
                ),
            ),
            vec!["symbolic link"],
        ),
        (
            "hard link",
            plus(
                &entries,
                special(
                    "blobs/sha256/evil",
                    tar::EntryType::Link,
                    Some("index.json"),
                ),
            ),
            vec!["hard link"],
        ),
        (
            "device",
            plus(&entries, special("null", tar::EntryType::Char, None)),
            vec!["character device"],
        ),
        (
            "duplicate entry",
            plus(&entries, file("index.json", b"{}")),
            vec!["duplicate entry"],
        ),
        (
            "declared size beyond the archive",
            plus(&entries, huge(1 << 33)),
            vec!["declares 8589934592 bytes, but the whole archive"],
        ),
        (
            "declared size beyond the limit, gzip",
            gzip(&plus(&entries, huge(1 << 40))),
            vec!["byte limit"],
        ),
        (
            "deeply nested indexes",
            nested(&entries, 64),
            vec!["nest deeper"],
        ),
    ];

    let before = snapshot(&root);
    for (i, (what, bytes, needles)) in cases.iter().enumerate() {
        let path = work.join(format!("hostile-{i}.tar"));
        fs::write(&path, bytes).unwrap();
        // 256 MiB of address space: a reader that sized a buffer from a declared length
        // (8 GiB, 1 TiB) would die here instead of refusing.
        let plain = import(&path, &root);
        let mut cmd = Command::new("prlimit");
        cmd.arg("--as=268435456")
            .arg(crate::harness::PAUSEBAKE)
            .args(plain.get_args());
        let start = Instant::now();
        let out = refused(&mut cmd, needles);
        eprintln!(
            "{what}: refused in {:?}: {}",
            start.elapsed(),
            stderr(&out).trim()
        );
        assert_same(what, &before, &snapshot(&root));
    }
    // The same archive, unharmed, goes in: the refusals were about the damage.
    fs::write(work.join("good.tar"), tar_of(&entries)).unwrap();
    run_ok(&mut import(&work.join("good.tar"), &root));
    // A moderately nested index is fine.
    fs::write(work.join("nested.tar"), nested(&entries, 3)).unwrap();
    run_ok(import(&work.join("nested.tar"), &root).args(["--name", "registry.example/nested:1"]));
}

// --- symlinks that point at the host -------------------------------------------------------

/// `R/var/lib/containerd` and `R/etc/containerd` are symlinks to (what would be) host paths:
/// an absolute one to a sentinel directory of this test, and relative ones climbing far past
/// R. The import lands inside R at the resolved path, the sentinel stays empty.
#[test]
fn root_symlinks_resolve_inside_the_root() {
    let t = tempdir();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let archive = good_archive(&work, "registry.example/links:1");
    // What the host has at the paths the links name; nothing may appear here.
    let host = t.path().join("host");
    fs::create_dir_all(host.join("var/lib/containerd")).unwrap();
    fs::create_dir_all(host.join("etc")).unwrap();
    let host_before = snapshot(&host);
    let host_rel = host.strip_prefix("/").unwrap();

    let climb = "../".repeat(20);
    for (i, (what, ctd_link)) in [
        ("absolute", format!("{}/var/lib/containerd", host.display())),
        (
            "relative, climbing past the root",
            format!("{climb}{}/var/lib/containerd", host_rel.display()),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let root = t.path().join(format!("root-{i}"));
        fs::create_dir_all(root.join("var/lib")).unwrap();
        std::os::unix::fs::symlink(&ctd_link, root.join("var/lib/containerd")).unwrap();
        run_ok(&mut import(&archive, &root));
        let inside = root.join(host_rel).join("var/lib/containerd");
        assert!(
            inside
                .join("io.containerd.metadata.v1.bolt/meta.db")
                .is_file(),
            "{what}: meta.db is not at the link's target inside the root ({})",
            inside.display()
        );
        assert_same(
            &format!("{what}: host sentinel"),
            &host_before,
            &snapshot(&host),
        );
    }

    // The literal layout of a real image: R/var/lib/containerd -> /var/lib/containerd is a
    // loop inside R and must be refused, never followed to the build host's own store.
    let host_ctd = Path::new("/var/lib/containerd");
    let real_before = host_state(host_ctd);
    let root = t.path().join("root-literal");
    fs::create_dir_all(root.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("/var/lib/containerd", root.join("var/lib/containerd")).unwrap();
    let before = snapshot(&root);
    refused(&mut import(&archive, &root), &["symbolic links"]);
    assert_same(
        "literal /var/lib/containerd link",
        &before,
        &snapshot(&root),
    );
    assert_same(
        "the host's /var/lib/containerd",
        &real_before,
        &host_state(host_ctd),
    );
}

/// `R/etc/containerd` as a symlink to the host's `/etc` (literally, and to a sentinel of this
/// test, absolute and climbing): `bake` writes the config inside R where the link resolves
/// there, and so does `configure` on its own; the host paths are never touched.
#[test]
fn configure_never_writes_through_a_link_to_the_host() {
    let t = tempdir();
    let host = t.path().join("host");
    fs::create_dir_all(host.join("etc")).unwrap();
    let host_rel = host.strip_prefix("/").unwrap();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let archive = good_archive(&work, "registry.example/pause:1");
    let sentinel_before = snapshot(&host);
    let real_etc = host_state(Path::new("/etc"));
    let climb = "../".repeat(20);
    let cases = [
        ("literal /etc", "/etc".to_string(), PathBuf::from("etc")),
        (
            "absolute",
            format!("{}/etc", host.display()),
            host_rel.join("etc"),
        ),
        (
            "relative, climbing past the root",
            format!("{climb}{}/etc", host_rel.display()),
            host_rel.join("etc"),
        ),
    ];
    for (i, (what, link, resolved)) in cases.into_iter().enumerate() {
        let root = t.path().join(format!("root-{i}"));
        fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(&link, root.join("etc/containerd")).unwrap();
        let mut cmd = pausebake();
        cmd.arg("configure")
            .arg("--root")
            .arg(&root)
            .args(["--sandbox-image", "registry.example/pause:1"])
            .args(["--containerd-version", "1.7.0"]);
        let out = run_ok(&mut cmd);
        let config = root.join(&resolved).join("config.toml");
        let text = fs::read_to_string(&config).unwrap_or_else(|e| {
            panic!(
                "{what}: no config at {}: {e}\n{}",
                config.display(),
                describe(&cmd, &out)
            )
        });
        assert!(text.contains("registry.example/pause:1"), "{what}: {text}");
        // bake goes through the same link and must write inside the root.
        let root = t.path().join(format!("bake-root-{i}"));
        fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(&link, root.join("etc/containerd")).unwrap();
        run_ok(
            pausebake()
                .arg("bake")
                .arg("--root")
                .arg(&root)
                .args(["--platform", PLATFORM, "--containerd-version", "1.7.0"])
                .arg("--archive")
                .arg(&archive)
                .args(["--name", "registry.example/pause:1"]),
        );
        let text = fs::read_to_string(root.join(&resolved).join("config.toml"))
            .unwrap_or_else(|e| panic!("{what}: bake wrote no config inside the root: {e}"));
        assert!(text.contains("registry.example/pause:1"), "{what}: {text}");
        assert_same(
            &format!("{what}: host sentinel"),
            &sentinel_before,
            &snapshot(&host),
        );
    }
    assert_same("the host's /etc", &real_etc, &host_state(Path::new("/etc")));
}

/// A host directory we must only look at, recursively: names, types, modes, inodes and the
/// sha256 of every file's content. Modification times are left out: they do not show a
/// write by us that a content hash would miss, and the host's own services move them.
fn host_state(dir: &Path) -> BTreeMap<PathBuf, String> {
    without_mtimes(snapshot(dir))
}

// --- meta.db ------------------------------------------------------------------------------

#[test]
fn corrupt_meta_db_is_reported_and_left_alone() {
    let (_dir, work, root) = workspace_with_image();
    let archive = good_archive(&work, "registry.example/after:1");
    let meta = root.join(META);
    let mut bytes = fs::read(&meta).unwrap();
    // Both meta pages (page size 4096): no valid meta remains.
    for b in &mut bytes[16..4096 + 64] {
        *b ^= 0x5a;
    }
    fs::write(&meta, &bytes).unwrap();
    let before = snapshot(&root);
    refused(&mut import(&archive, &root), &["meta.db"]);
    assert_same("corrupt meta.db", &before, &snapshot(&root));
    assert_eq!(fs::read(&meta).unwrap(), bytes);
}

#[test]
fn locked_meta_db_is_refused_without_waiting() {
    let (_dir, work, root) = workspace_with_image();
    let archive = good_archive(&work, "registry.example/after:1");
    // The lock containerd's bbolt takes: flock(LOCK_EX) on meta.db, held by this process.
    let held = fs::File::open(root.join(META)).unwrap();
    held.try_lock().unwrap();
    let before = snapshot(&root);
    let start = Instant::now();
    refused(
        &mut import(&archive, &root),
        &["containerd appears to be running"],
    );
    let took = start.elapsed();
    assert!(took < crate::harness::NO_WAIT, "refusing took {took:?}");
    assert_same("locked meta.db", &before, &snapshot(&root));
    drop(held);
    wait_unlocked(&root.join(META));
    run_ok(&mut import(&archive, &root));
}

/// Waits (at most [`crate::harness::NO_WAIT`]) until nothing holds the lock of `path`. A
/// child another test spawned while this process held the lock keeps a copy of that file
/// (and so the lock) until it execs, which on a loaded machine can come after the drop.
fn wait_unlocked(path: &Path) {
    let start = Instant::now();
    loop {
        let file = fs::File::open(path).unwrap();
        match file.try_lock() {
            Ok(()) => return,
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < crate::harness::NO_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("{} stays locked: {e}", path.display()),
        }
    }
}

/// The same refusal with a real containerd holding the file.
#[test]
fn meta_db_of_a_running_containerd_is_refused() {
    let Some(c) = crate::containerd::versions().into_iter().next() else {
        return;
    };
    let (_dir, work, root) = workspace_with_image();
    let archive = good_archive(&work, "registry.example/after:1");
    let mut running = c.start(&root, Default::default());
    let blobs_before = snapshot(&root.join(BLOBS));
    let start = Instant::now();
    refused(
        &mut import(&archive, &root),
        &["containerd appears to be running"],
    );
    let took = start.elapsed();
    // meta.db is containerd's while it runs (it may commit at any time, even during this
    // test), so it is not compared byte for byte: no blob and no record of ours appeared.
    assert_same("blobs", &blobs_before, &snapshot(&root.join(BLOBS)));
    let images = running.ctr_ok(&["-n", "k8s.io", "images", "ls", "-q"]);
    running.stop();
    assert!(took < crate::harness::NO_WAIT, "refusing took {took:?}");
    assert!(
        !crate::harness::stdout(&images).contains("registry.example/after:1"),
        "{}",
        crate::harness::stdout(&images)
    );
    let dump = stdout(&run_ok(
        pausebake().args(["bolt", "dump"]).arg(root.join(META)),
    ));
    let ours: String = "registry.example/after:1"
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        !dump.contains(&ours),
        "meta.db has a record of ours:\n{dump}"
    );
}

/// The content store's blob directory under a root.
const BLOBS: &str = "var/lib/containerd/io.containerd.content.v1.content/blobs/sha256";

// --- crashes ------------------------------------------------------------------------------

/// `cp -a`, keeping modes and mtimes.
fn copy_tree(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// System calls by which a process can change a file or directory: killing `bake` just
/// before any invocation of any of them covers every point at which a crash can leave
/// something. A superset of what `bake` calls today, so a switch to another of them (say
/// `pwritev`, `copy_file_range` or `fchmodat2`) keeps its kill points.
const WRITING: &str = "\
    open openat openat2 creat write writev pwrite64 pwritev pwritev2 sendfile \
    copy_file_range splice vmsplice tee fsync fdatasync sync_file_range syncfs sync rename \
    renameat renameat2 link linkat symlink symlinkat mkdir mkdirat mknod mknodat unlink \
    unlinkat rmdir truncate ftruncate fallocate chmod fchmod fchmodat fchmodat2 chown fchown \
    fchownat lchown utime utimes utimensat futimesat setxattr lsetxattr fsetxattr \
    removexattr lremovexattr fremovexattr msync io_uring_enter io_submit mount umount2 \
    move_mount";

/// System calls that change no file (memory, signals, reading, locking, process set-up).
/// `bake` calling one in neither list fails the test until it is classified here.
const NOT_WRITING: &str = "\
    read readv pread64 preadv preadv2 close close_range fstat stat lstat newfstatat statx \
    statfs fstatfs access faccessat faccessat2 lseek getdents64 readlink readlinkat getcwd \
    fcntl flock ioctl dup dup2 dup3 pipe2 poll ppoll mmap munmap mremap mprotect madvise brk \
    rt_sigaction rt_sigprocmask rt_sigreturn sigaltstack getrandom futex clone clone3 execve \
    exit exit_group wait4 arch_prctl set_tid_address set_robust_list rseq prlimit64 \
    sched_getaffinity sched_yield getpid gettid getppid getuid geteuid getgid getegid uname \
    clock_gettime clock_nanosleep nanosleep";

/// Whether `name` is one of the space-separated `list`.
fn listed_in(list: &str, name: &str) -> bool {
    list.split_whitespace().any(|n| n == name)
}

/// The system calls (by name) and how often each, in a `strace -f -o` trace.
fn syscall_counts(trace: &str) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for line in trace.lines() {
        // "<pid> <name>(...", or "<pid> <... name resumed>", "<pid> +++ ...", "--- SIG..."
        let call = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        if let Some((name, _)) = call.split_once('(') {
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                *counts.entry(name.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// The number of kill points the README's reliability table states ("strace fault
/// injection: N points"): each root tested must offer at least that many.
fn readme_kill_points() -> u32 {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let (_, after) = readme
        .split_once("strace fault injection: ")
        .expect("the README states the kill points as \"strace fault injection: N points\"");
    after
        .split_once(" points")
        .and_then(|(n, _)| n.parse().ok())
        .expect("a number of kill points in the README")
}

/// SIGKILL `bake` just before the 1st, 2nd, ... invocation of every system call that
/// writes (strace's fault injection), on a root whose meta.db a real containerd wrote with
/// other images, for the oldest (1.6) and newest (2.x) containerd: containerd then starts and
/// lists every one of them, and `bake` run again completes and `verify` passes. The calls
/// and their counts come from an unfaulted `bake` traced on the same root; each must die of
/// SIGKILL at exactly as many points as it was called.
#[test]
fn sigkill_during_bake_keeps_the_store_usable() {
    let versions = crate::containerd::versions();
    let (Some(oldest), Some(newest)) = (versions.first(), versions.last()) else {
        return;
    };
    if !crate::harness::have("strace") {
        return;
    }
    let mut tested = vec![oldest.clone()];
    if newest.version != oldest.version {
        tested.push(newest.clone());
    }
    for c in tested {
        sigkill_during_bake(&c);
    }
}

fn sigkill_during_bake(c: &crate::containerd::Containerd) {
    let ctd_version = c.semver_string();
    let t = tempdir();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let pristine = t.path().join("pristine");
    fs::create_dir(&pristine).unwrap();
    {
        let running = c.start(&pristine, Default::default());
        for (ns, name) in [
            ("k8s.io", "registry.example/theirs:1"),
            ("k8s.io", "registry.example/theirs:2"),
            ("default", "registry.example/other-ns:1"),
        ] {
            let a = good_archive(&work, name);
            // ctr runs in containerd's mount namespace, which sees the same /tmp.
            running.ctr_ok(&["-n", ns, "images", "import", &a.display().to_string()]);
        }
    }
    let listed = |root: &Path| -> Vec<String> {
        let mut r = c.start(root, Default::default());
        let mut out = Vec::new();
        for ns in ["k8s.io", "default"] {
            let o = r.ctr_ok(&["-n", ns, "images", "ls", "-q"]);
            out.extend(
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(|l| format!("{ns} {l}")),
            );
        }
        r.stop();
        out
    };
    let before = listed(&pristine);
    for name in [
        "k8s.io registry.example/theirs:1",
        "k8s.io registry.example/theirs:2",
        "default registry.example/other-ns:1",
    ] {
        assert!(
            before.iter().any(|b| b == name),
            "containerd {}: {name} missing: {before:?}",
            c.version
        );
    }
    let archive = good_archive(&work, "registry.example/ours:1");
    let bake = |root: &Path| {
        let mut cmd = pausebake();
        cmd.arg("bake")
            .arg("--root")
            .arg(root)
            .args(["--platform", PLATFORM, "--containerd-version", &ctd_version])
            .arg("--archive")
            .arg(&archive)
            .args(["--name", "registry.example/ours:1"]);
        cmd
    };
    let traced = |root: &Path, trace: &Path, extra: &[String]| {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-o"])
            .arg(trace)
            .args(extra)
            .arg(crate::harness::PAUSEBAKE)
            .args(bake(root).get_args());
        cmd
    };

    // What an unfaulted bake calls on this root.
    let root = t.path().join("unfaulted");
    copy_tree(&pristine, &root);
    let trace = t.path().join("unfaulted.trace");
    run_ok(&mut traced(&root, &trace, &[]));
    fs::remove_dir_all(&root).unwrap();
    let counts = syscall_counts(&fs::read_to_string(&trace).unwrap());
    let unknown: Vec<&String> = counts
        .keys()
        .filter(|n| !listed_in(WRITING, n) && !listed_in(NOT_WRITING, n))
        .collect();
    assert!(
        unknown.is_empty(),
        "bake calls {unknown:?}, in neither WRITING nor NOT_WRITING: classify them"
    );
    let writing: BTreeMap<&str, u32> = counts
        .iter()
        .filter(|(n, _)| listed_in(WRITING, n))
        .map(|(n, &k)| (n.as_str(), k))
        .collect();
    // The kinds bake cannot do without: creating, writing and syncing blobs and meta.db
    // pages, renaming blobs into place.
    for kind in ["openat", "pwrite64", "fsync", "rename"] {
        assert!(
            writing.contains_key(kind),
            "containerd {}: an unfaulted bake never calls {kind}: {writing:?}",
            c.version
        );
    }
    let total: u32 = writing.values().sum();
    let stated = readme_kill_points();
    assert!(
        total >= stated,
        "containerd {}: {total} kill points, fewer than the README's {stated}: {writing:?}",
        c.version
    );

    let mut kills: BTreeMap<&str, u32> = BTreeMap::new();
    for (&syscall, &calls) in &writing {
        // One more than it was called: that run must complete untouched.
        for n in 1..=calls + 1 {
            let root = t.path().join(format!("killed-{syscall}-{n}"));
            copy_tree(&pristine, &root);
            let trace = t.path().join("killed.trace");
            // strace injects only into the calls it traces.
            let mut cmd = traced(
                &root,
                &trace,
                &[
                    "-e".into(),
                    format!("trace={syscall}"),
                    "-e".into(),
                    format!("inject={syscall}:signal=KILL:when={n}"),
                ],
            );
            let out = run_any(&mut cmd);
            let trace_text = fs::read_to_string(&trace).unwrap();
            if n > calls {
                assert!(
                    out.status.success(),
                    "containerd {}: {syscall} #{n} of {calls}: {}",
                    c.version,
                    describe(&cmd, &out)
                );
                fs::remove_dir_all(&root).unwrap();
                break;
            }
            // strace re-raises the signal its tracee died of.
            use std::os::unix::process::ExitStatusExt;
            assert!(
                out.status.signal() == Some(9) && trace_text.contains("+++ killed by SIGKILL +++"),
                "containerd {}: bake was not killed before {syscall} #{n} of {calls}:\n{}\n{trace_text}",
                c.version,
                describe(&cmd, &out)
            );
            *kills.entry(syscall).or_insert(0) += 1;
            let after = listed(&root);
            for b in &before {
                assert!(
                    after.contains(b),
                    "containerd {}: killed before {syscall} #{n}: {b} is gone: {after:?}\n{}",
                    c.version,
                    describe(&cmd, &out)
                );
            }
            run_ok(&mut bake(&root));
            run_ok(pausebake().arg("verify").arg("--root").arg(&root).args([
                "--platform",
                PLATFORM,
                "--containerd-version",
                &ctd_version,
            ]));
            fs::remove_dir_all(&root).unwrap();
        }
    }
    assert_eq!(
        kills, writing,
        "containerd {}: kill points per system call",
        c.version
    );
    eprintln!(
        "containerd {}: bake killed at {total} points ({kills:?}); each root recovered",
        c.version
    );
}

// --- full disk ----------------------------------------------------------------------------

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Free bytes on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let out = run_ok(Command::new("stat").args(["-f", "-c", "%a %S"]).arg(dir));
    let s = String::from_utf8_lossy(&out.stdout);
    let mut it = s.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    it.next().unwrap() * it.next().unwrap()
}

/// On a small tmpfs filled to leave 0, 1, 2, ... pages free, import fails with a clear error
/// naming the blob or meta.db page, and the root as it was (meta.db byte-identical, no temp
/// files), until it fits. After each refusal the space is freed and the import run again on
/// the same root: it finds the blobs completed before the disk filled present, and the root
/// then passes `verify` and Go's bbolt check (`tx.Check()`, identical dumps).
#[test]
fn full_disk_leaves_the_previous_state() {
    if !is_root() {
        skip("mounting a tmpfs needs root");
        return;
    }
    let (t, work, seeded) = workspace_with_image();
    // Another epoch: new layer, config and manifest blobs, so a full disk can stop the blob
    // writes as well as the meta.db commit.
    let archive = pause_archive(
        &work,
        "registry.example/fits:1",
        &["--source-date-epoch", "86400"],
    );
    let mnt = t.path().join("disk");
    fs::create_dir(&mnt).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs"])
            .arg(&mnt),
    );
    let _mounted = Tmpfs(mnt.clone());
    let go = crate::bolt::bolt_check();
    let mut refusals = 0;
    // Blobs a refused import completed and the next import found present.
    let mut reused = 0;
    let mut fitted = false;
    for pages in 0..64u64 {
        let root = mnt.join("root");
        let _ = fs::remove_dir_all(&root);
        let _ = fs::remove_file(mnt.join("filler"));
        copy_tree(&seeded, &root);
        let free = free_bytes(&mnt);
        let leave = pages * 4096;
        let mut filler = fs::File::create(mnt.join("filler")).unwrap();
        filler
            .write_all(&vec![0u8; free.saturating_sub(leave) as usize])
            .unwrap();
        filler.sync_all().unwrap();
        // Closed, so that removing it frees its space.
        drop(filler);
        let before = snapshot(&root);
        let meta_before = fs::read(root.join(META)).unwrap();
        let mut cmd = import(&archive, &root);
        let out = run_any(&mut cmd);
        if out.status.success() {
            // It fitted: the store must read back (configure needs a little space too).
            fs::remove_file(mnt.join("filler")).unwrap();
            usable(&root, "registry.example/fits:1", go.as_deref());
            eprintln!("{pages} pages free: imported");
            fitted = true;
            break;
        } else {
            refusals += 1;
            let err = stderr(&out);
            assert!(
                err.contains("No space left on device")
                    && (err.contains("writing blob sha256:")
                        || (err.contains(" page ") && err.contains("meta.db"))),
                "{pages} pages free: the error names neither the blob nor the meta.db page\n{}",
                describe(&cmd, &out)
            );
            // Modification times may move: Linux updates a file's mtime before it finds a
            // write has no space (file_update_time in the generic write path), and a temp
            // file created and removed again touches its directory. Names, contents, modes
            // and inodes may not, with one exception: blobs completed before the disk filled
            // stay, whole and verified, under their digest (no meta.db record points at
            // them; the next import finds them present). No temp file, no partial blob.
            let blob_dir = Path::new(META)
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("io.containerd.content.v1.content/blobs/sha256");
            let mut before = without_mtimes(before);
            let mut after = without_mtimes(snapshot(&root));
            let added: Vec<PathBuf> = after
                .keys()
                .filter(|p| !before.contains_key(*p))
                .cloned()
                .collect();
            let left = added.len();
            for p in added {
                let v = &after[&p];
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    p.parent() == Some(blob_dir.as_path())
                        && v.starts_with(&format!("file sha256:{name} mode 100444 ")),
                    "{pages} pages free: {} was left: {v}",
                    p.display()
                );
                after.remove(&p);
            }
            // Its listing (the size of a tmpfs directory) is covered entry by entry.
            before.remove(&blob_dir);
            after.remove(&blob_dir);
            assert_same(&format!("{pages} pages free"), &before, &after);
            assert_eq!(fs::read(root.join(META)).unwrap(), meta_before);
            eprintln!("{pages} pages free: {}", err.trim());

            // Space again: the same root takes the import, finding what was left.
            fs::remove_file(mnt.join("filler")).unwrap();
            let again = run_ok(&mut import(&archive, &root));
            reused += left;
            let present = format!("{left} already present");
            assert!(
                stdout(&again).contains(&present),
                "{pages} pages free, then space: expected {present:?}\n{}",
                stdout(&again)
            );
            usable(&root, "registry.example/fits:1", go.as_deref());
        }
    }
    assert!(refusals > 0, "the disk was never full enough to refuse");
    assert!(
        reused > 0,
        "no refusal left a completed blob for the next import to find"
    );
    assert!(
        fitted,
        "the import never fitted: the disk is too small for this test"
    );
}

/// A root after an import of `name` is one containerd can use: `verify` passes once the
/// sandbox image is configured, and Go's bbolt (`go`, when built) checks meta.db and dumps it
/// as we do.
fn usable(root: &Path, name: &str, go: Option<&Path>) {
    let target = ["--platform", PLATFORM, "--containerd-version", "1.7.0"];
    // configure takes no platform: it writes the config only.
    run_ok(
        pausebake()
            .arg("configure")
            .arg("--root")
            .arg(root)
            .args(&target[2..])
            .args(["--sandbox-image", name]),
    );
    run_ok(
        pausebake()
            .arg("verify")
            .arg("--root")
            .arg(root)
            .args(target),
    );
    if let Some(go) = go {
        crate::bolt::assert_same(go, &root.join(META));
    }
}

/// A zero-length meta.db, what a create interrupted before its first write leaves: bbolt
/// treats it as a new file, and so does import; containerd then finds the image.
#[test]
fn empty_meta_db_from_an_interrupted_create_is_initialised() {
    let t = tempdir();
    let archive = good_archive(t.path(), "registry.example/empty:1");
    let root = t.path().join("root");
    fs::create_dir_all(root.join(META).parent().unwrap()).unwrap();
    fs::write(root.join(META), b"").unwrap();
    run_ok(&mut import(&archive, &root));
    assert!(fs::metadata(root.join(META)).unwrap().len() > 0);
    let Some(c) = crate::containerd::versions().into_iter().next() else {
        return;
    };
    let running = c.start(&root, Default::default());
    let out = running.ctr_ok(&["-n", "k8s.io", "images", "ls", "-q"]);
    assert_eq!(
        crate::harness::stdout(&out).trim(),
        "registry.example/empty:1",
        "{}",
        running.log()
    );
}
