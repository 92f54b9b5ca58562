//! Probe a root once into [`RootFacts`]: every fact pausebake acts on, each with where it
//! came from. Flags override facts here and nowhere else ([`Overrides`]); plan, apply and
//! verify read the facts, never the root, to learn about it.
//!
//! What is read: the platform (the ELF header of one of the root's binaries), the
//! containerd and Kubernetes versions ([`super::detect`]), containerd's config as that
//! containerd reads it ([`ConfigFacts`]: the main file, found as the node will start
//! containerd, and every file its `imports` pull in, merged per version by
//! [`super::effective`]), containerd's `root`, a read-only snapshot of `meta.db` and, on request, the state of the
//! content blobs an image needs ([`RootFacts::probe_blobs`]). Nothing here writes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use toml_edit::DocumentMut;

use super::detect::{containerd_version_in, detect_containerd, detect_kubernetes, Found};
use super::disabled::{self, Disabled};
use super::effective::{self, EffectiveConfig, Files, Main, Overlay, Snapshot};
use super::owners::{self, Binary, Generated, OwnerFacts, Row, WriteTo};
use super::store::{CONTENT_DIR, META_DB, META_DIR};
use super::versions::{self, Version};
use crate::bolt::Bucket;
use crate::platform::{Arch, Endian, Platform};
use crate::rootfs::Root;

/// containerd's root when the config does not set one (`defaults/defaults_unix.go`).
pub const DEFAULT_CONTAINERD_ROOT: &str = "/var/lib/containerd";

/// A fact and where it came from: a flag (`--platform`), an in-root path with what was read
/// there (`/var/lib/dpkg/status (kubelet 1.30.2-1.1)`), or why a default was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: String,
}

/// What the command line says instead of the root: the one place flags beat facts.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub platform: Option<Platform>,
    pub containerd: Option<Version>,
    pub kubernetes: Option<Version>,
    /// The main containerd config (`--config`), a path inside the root.
    pub config: Option<PathBuf>,
    /// The version a running containerd reports (the live path): it beats what the root's
    /// files tell, a flag beats it.
    pub running: Option<Sourced<Version>>,
}

/// containerd's configuration as the root's containerd reads it: the main file and why that
/// one, the merge of it and its imports ([`super::effective`]), and what was read of the root
/// to learn it (the plan edits and re-merges from that, never from the root).
#[derive(Debug, Clone)]
pub struct ConfigFacts {
    pub main: Main,
    pub effective: EffectiveConfig,
    pub files: Snapshot,
    /// The `disabled_plugins` entries of the loaded files that leave containerd without CRI.
    pub cri_disabled: Vec<Disabled>,
    /// The main config is read as the owner writes it at start, not as the root holds it.
    pub generated: bool,
}

/// A read-only snapshot of `meta.db`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetaDb {
    /// The file inside the root.
    pub path: PathBuf,
    /// Whether the file exists (a zero-length file, from an interrupted create, exists with
    /// an empty tree, as bbolt opens it).
    pub exists: bool,
    /// The whole tree (empty when the file is absent or empty, or locked and not read:
    /// [`inspect_store`]).
    pub tree: Bucket,
    /// The file's byte order; `None` when absent or empty.
    pub order: Option<Endian>,
    /// The transaction the file held when read; `None` when absent or empty.
    pub txid: Option<u64>,
    /// Whether a running containerd holds the file's lock (it writes the file meanwhile: the
    /// tree is a snapshot, and empty when the snapshot was caught mid-write). Which process
    /// holds it: [`RootFacts::meta_holder`].
    pub locked: bool,
}

/// What a content blob of the store holds, compared with the bytes an image has for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    Absent,
    /// Present with exactly the image's bytes.
    Same,
    /// Present with other bytes (damaged): to be replaced.
    Differs,
}

/// Everything pausebake knows about a root, probed once.
#[derive(Debug, Clone)]
pub struct RootFacts {
    pub root: Root,
    pub platform: Sourced<Platform>,
    /// The containerd to act for; the newest known layout when the root has none.
    pub containerd: Sourced<Version>,
    /// `containerd` is an assumption: neither the root nor a flag named one.
    pub containerd_assumed: bool,
    pub kubernetes: Option<Sourced<Version>>,
    pub config: ConfigFacts,
    /// Who owns containerd at boot ([`owners`]): its config, store, socket and the
    /// reference it asks for.
    pub owner: OwnerFacts,
    /// containerd's socket at boot, inside the root: the owner's `--address`, else the
    /// merged config's (`[grpc] address`, or on 2.3 the `io.containerd.server.v1.grpc`
    /// plugin's), else containerd's default.
    pub address: String,
    /// containerd's `root`, inside the root.
    pub containerd_root: PathBuf,
    pub meta: MetaDb,
    /// The content blob directory, inside the root.
    pub blob_dir: PathBuf,
    /// Blobs looked at by [`RootFacts::probe_blobs`], by digest.
    pub blobs: BTreeMap<String, BlobState>,
}

/// Probes `root` once. A flag in `overrides` replaces the fact it names and is its source.
pub fn inspect(root: &Root, overrides: &Overrides) -> Result<RootFacts> {
    probe(root, overrides, false)
}

/// [`inspect`] for a command that only writes the store (`import`): the containerd and
/// Kubernetes versions are not read, so a root whose binaries tell none can still be
/// imported into. Nor is a locked `meta.db`: the import then goes through the containerd
/// that holds it, whose API is the truth, and on a node with thousands of images reading
/// the file would take longer than the import.
pub fn inspect_store(root: &Root, overrides: &Overrides) -> Result<RootFacts> {
    probe(root, overrides, true)
}

/// `store_only`: [`inspect_store`], else [`inspect`].
fn probe(root: &Root, overrides: &Overrides, store_only: bool) -> Result<RootFacts> {
    let read_versions = !store_only;
    let platform = match overrides.platform {
        Some(p) => Sourced {
            value: p,
            source: "--platform".into(),
        },
        None => root_platform(root)?,
    };
    let mut owner = owners::read(root)?;
    let running = overrides.running.as_ref();
    let (containerd, containerd_assumed) = match (overrides.containerd, running, read_versions) {
        (Some(v), _, _) => (sourced(v, "--containerd-version"), false),
        (None, Some(r), _) => (r.clone(), false),
        (None, None, false) => (
            sourced(
                versions::NEWEST_KNOWN,
                "not read: the command uses no containerd version",
            ),
            true,
        ),
        (None, None, true) => match containerd_of(root, owner.owner.row)? {
            Some(f) => (found(f), false),
            None => (newest_known(), true),
        },
    };
    let kubernetes = match (overrides.kubernetes, read_versions) {
        (Some(v), _) => Some(sourced(v, "--kubernetes-version")),
        (None, false) => None,
        (None, true) => detect_kubernetes(root)?.map(found),
    };
    let config = read_config(root, overrides.config.as_deref(), &owner, containerd.value)?;
    if !config.generated && owner.owner.row.generated != Generated::No {
        // the owner leaves a config it does not write (k0s's without its marker) to the
        // node: the file decides the name, as for plain containerd
        owner.asks = None;
    }
    let containerd_root = match owner.owner.row.root_flag {
        // the owner's --root beats the config's
        Some(flag) => PathBuf::from(flag),
        None => containerd_root(&config)?,
    };
    let meta = read_meta(
        root,
        containerd_root.join(META_DIR).join(META_DB),
        !store_only,
    )?;
    let address = match owner.owner.row.address_flag {
        Some(flag) => flag.to_string(),
        None => config
            .effective
            .address
            .as_ref()
            .map_or(owners::DEFAULT_ADDRESS, |a| a.value.as_str())
            .to_string(),
    };
    Ok(RootFacts {
        root: root.clone(),
        platform,
        containerd,
        containerd_assumed,
        kubernetes,
        config,
        address,
        owner,
        blob_dir: containerd_root.join(CONTENT_DIR).join("blobs/sha256"),
        containerd_root,
        meta,
        blobs: BTreeMap::new(),
    })
}

fn sourced<T>(value: T, source: &str) -> Sourced<T> {
    Sourced {
        value,
        source: source.into(),
    }
}

fn found(f: Found) -> Sourced<Version> {
    Sourced {
        value: f.version,
        source: f.source,
    }
}

/// The containerd assumed for a root without one: the newest of the version table, since a
/// fresh root most likely gets a current containerd.
fn newest_known() -> Sourced<Version> {
    let v = versions::NEWEST_KNOWN;
    Sourced {
        value: v,
        source: format!(
            "no containerd in the root: using containerd {v}, the newest pausebake knows"
        ),
    }
}

impl RootFacts {
    /// The process holding the lock of the root's `meta.db`, from `/proc/locks` (`None`: not
    /// locked, or not told). Asked only when needed: reading `/proc/locks` can wait many
    /// milliseconds on a machine where other processes take and drop file locks.
    pub fn meta_holder(&self) -> Result<Option<u32>> {
        if !self.meta.locked {
            return Ok(None);
        }
        lock_holder(&self.root.resolve(&self.meta.path)?)
    }

    /// Reads the blob files of `digests` and compares each with the bytes `bytes_of` gives,
    /// recording the result in [`RootFacts::blobs`] for the plan.
    pub fn probe_blobs<'a>(
        &mut self,
        digests: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<()> {
        for (digest, want) in digests {
            let state = match self.read_blob(digest)? {
                None => BlobState::Absent,
                Some(have) if have == want => BlobState::Same,
                Some(_) => BlobState::Differs,
            };
            self.blobs.insert(digest.to_string(), state);
        }
        Ok(())
    }

    /// The bytes of the blob file for `digest`, `None` when absent. A digest that is not a
    /// well-formed sha256 (meta.db is untrusted) is a missing blob, never a path.
    pub fn read_blob(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let Some(hex) = crate::digest::sha256_hex(digest) else {
            return Ok(None);
        };
        self.root.read(self.blob_dir.join(hex))
    }
}

// --- the platform ------------------------------------------------------------------------

/// Binaries whose ELF header tells the root's architecture, most telling first; the rest of
/// `/usr/bin` is tried after them.
const PLATFORM_PROBES: [&str; 8] = [
    "/usr/bin/containerd",
    "/usr/local/bin/containerd",
    "/usr/bin/kubelet",
    "/usr/local/bin/kubelet",
    "/usr/bin/runc",
    "/usr/sbin/runc",
    "/bin/sh",
    "/usr/bin/env",
];

/// The root's platform from the ELF header of one of its binaries, with the in-root path that
/// told it; the host's when the root has no binaries (an empty directory).
fn root_platform(root: &Root) -> Result<Sourced<Platform>> {
    if let Some((platform, path)) = binary_platform(root)? {
        return Ok(Sourced {
            value: platform,
            source: path,
        });
    }
    let arch = Arch::host().ok_or_else(|| {
        anyhow!("detecting the root's platform: no binaries in the root and an unknown host; pass --platform")
    })?;
    Ok(sourced(
        Platform { arch },
        "no binaries in the root; the host's",
    ))
}

/// The platform of the first of the root's binaries that is an ELF file we know.
fn binary_platform(root: &Root) -> Result<Option<(Platform, String)>> {
    let mut candidates: Vec<String> = PLATFORM_PROBES.iter().map(|s| s.to_string()).collect();
    for name in root.read_dir("/usr/bin")? {
        candidates.push(format!("/usr/bin/{}", name.to_string_lossy()));
    }
    for path in candidates {
        let host = root.resolve(&path)?;
        let mut header = [0u8; 20];
        let read = fs::File::open(&host).and_then(|mut f| f.read_exact(&mut header));
        match read {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::UnexpectedEof | ErrorKind::IsADirectory
                ) || e.raw_os_error() == Some(21) =>
            {
                continue
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", host.display())),
        }
        if let Some(arch) = Arch::from_elf_header(&header) {
            return Ok(Some((Platform { arch }, path)));
        }
    }
    Ok(None)
}

// --- the config --------------------------------------------------------------------------

/// The main config (`--config`, else the owner's, else the root's containerd unit's, else
/// the default) and everything it imports, merged as containerd `v` does; a main config the
/// owner writes at start is read as it will be written ([`owners::generated`]).
fn read_config(
    root: &Root,
    given: Option<&Path>,
    owner: &OwnerFacts,
    v: Version,
) -> Result<ConfigFacts> {
    let row = owner.owner.row;
    let main = match (given, row.config) {
        (None, Some(path)) => Main {
            path: path.to_string(),
            why: format!(
                "the config {} starts containerd with",
                owner.owner.describe()
            ),
            explicit: true,
        },
        _ => effective::find_main(root, given)?,
    };
    let current = root.read_to_string(&main.path)?;
    let generated = match (&owner.asks, given) {
        (Some(asks), None) => owners::generated(row, v, &asks.value, current.as_deref()),
        _ => None,
    };
    let overlay;
    let files: &dyn Files = match &generated {
        Some(text) => {
            overlay = Overlay {
                base: root,
                path: &main.path,
                text,
            };
            &overlay
        }
        None => root,
    };
    let also: Vec<&str> = match row.write {
        WriteTo::DropIn(path) => vec![path],
        _ => Vec::new(),
    };
    let (effective, files) = effective::resolve(files, &main, v, &also)?;
    let texts = effective
        .files
        .iter()
        .filter_map(|f| Some((f.path.as_str(), files.text(&f.path).ok()??, f.version)));
    let cri_disabled = disabled::find(texts, v, effective.merged_version);
    Ok(ConfigFacts {
        main,
        effective,
        files,
        cri_disabled,
        generated: generated.is_some(),
    })
}

/// The version of the containerd the owner runs, from where the row says it lives: `None`
/// when a plain root has none (the caller assumes one); an error, naming the flag to give,
/// when the owner's containerd is there but its version cannot be read, or the owner unpacks
/// it only at first start: guessing would pick a layout that containerd may refuse.
fn containerd_of(root: &Root, row: &Row) -> Result<Option<Found>> {
    let (paths, inside, why) = match row.binary {
        Binary::Usual => return detect_containerd(root),
        Binary::At(paths, why) => (paths, false, why),
        Binary::Inside(paths) => (paths, true, ""),
    };
    for path in paths {
        let Some(bytes) = root.read(path)? else {
            continue;
        };
        let (version, how) = if inside {
            let v = super::buildinfo::containerd_module_version(&bytes);
            (v, " (Go build info: its containerd module)")
        } else {
            (containerd_version_in(&bytes), "")
        };
        return match version {
            Some(version) => Ok(Some(Found {
                version,
                source: format!("{path}{how}"),
            })),
            None if inside => bail!(
                "cannot tell the version of the containerd built into {path} ({}): its Go build info names no containerd module; pass --containerd-version",
                row.name
            ),
            None => bail!(
                "cannot tell the version of {}'s containerd {path}; pass --containerd-version",
                row.name
            ),
        };
    }
    let why = if inside {
        format!("none of {} is in the root", paths.join(", "))
    } else {
        format!("{why} and {} is not in the root yet", paths.join(", "))
    };
    bail!(
        "cannot tell which containerd {} will run: {why}; pass --containerd-version",
        row.name
    )
}

/// containerd's `root`: the last loaded config file that sets one (a later file's value
/// replaces an earlier one's), else [`DEFAULT_CONTAINERD_ROOT`]. An in-root absolute path.
fn containerd_root(config: &ConfigFacts) -> Result<PathBuf> {
    let Some((dir, path)) = config.last_string(&["root"])? else {
        return Ok(PathBuf::from(DEFAULT_CONTAINERD_ROOT));
    };
    ensure!(
        dir.starts_with('/'),
        "reading `root` in {path}: {dir:?} is not an absolute path"
    );
    Ok(PathBuf::from(dir))
}

impl ConfigFacts {
    /// The string at `keys` (a top-level setting such as `root` or `grpc.address`) as
    /// containerd reads it: from the last loaded file that sets it (a later file's value
    /// replaces an earlier one's; empty is not set), with that file's path.
    pub fn last_string(&self, keys: &[&str]) -> Result<Option<(String, String)>> {
        let mut found = None;
        for file in &self.effective.files {
            let Some(text) = self.files.text(&file.path)? else {
                continue;
            };
            // every loaded file parsed when it was merged
            let doc: DocumentMut = text
                .parse()
                .with_context(|| format!("parsing {} as TOML", file.path))?;
            let Some(item) = keys.iter().try_fold(doc.as_item(), |i, k| i.get(k)) else {
                continue;
            };
            let value = item.as_str().ok_or_else(|| {
                anyhow!(
                    "reading `{}` in {}: expected a string",
                    keys.join("."),
                    file.path
                )
            })?;
            if !value.is_empty() {
                found = Some((value.to_string(), file.path.clone()));
            }
        }
        Ok(found)
    }
}

// --- meta.db -----------------------------------------------------------------------------

/// A snapshot of the `meta.db` at `path` (inside the root), read without taking its lock;
/// of a locked one (a running containerd's), only with `locked_too`.
fn read_meta(root: &Root, path: PathBuf, locked_too: bool) -> Result<MetaDb> {
    let host = root.resolve(&path)?;
    let locked = host.is_file() && is_locked(&host)?;
    if locked && !locked_too {
        return Ok(MetaDb {
            path,
            exists: true,
            locked: true,
            ..MetaDb::default()
        });
    }
    let Some(bytes) = root.read(&path)? else {
        return Ok(MetaDb {
            path,
            ..MetaDb::default()
        });
    };
    if bytes.is_empty() {
        return Ok(MetaDb {
            path,
            exists: true,
            ..MetaDb::default()
        });
    }
    let read = || -> Result<(Bucket, Endian, u64)> {
        Ok((
            crate::bolt::read_tree(&bytes)?,
            crate::bolt::byte_order(&bytes)?,
            crate::bolt::txid(&bytes)?,
        ))
    };
    let (tree, order, txid) = match read() {
        Ok((tree, order, txid)) => (tree, Some(order), Some(txid)),
        // A running containerd may be mid-write: its API, not the file, is then the truth.
        Err(_) if locked => (Bucket::default(), None, None),
        Err(e) => {
            return Err(e.context(format!(
                "reading {} (damaged: restore it, or move it aside and run the command again to \
                 start an empty store)",
                host.display()
            )))
        }
    };
    Ok(MetaDb {
        path,
        exists: true,
        tree,
        order,
        txid,
        locked,
    })
}

/// The pid that holds a `flock` on the file at `host`, as `/proc/locks` lists it (`PID
/// MAJOR:MINOR:INODE`, the device numbers in hex); `None` when none is listed or the kernel
/// has no such file.
fn lock_holder(host: &Path) -> Result<Option<u32>> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
    let dev = meta.dev();
    // glibc's major()/minor() of a dev_t
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = match fs::read_to_string("/proc/locks") {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("reading /proc/locks"),
    };
    Ok(locks
        .lines()
        .filter(|l| !l.contains("->")) // a waiter, not a holder
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
        .and_then(|f| f.get(4)?.parse().ok()))
}

/// Whether another process (a running containerd) holds the `flock` of the file at `host`.
/// The probe's own shared lock is released when the file is closed, at once.
fn is_locked(host: &Path) -> Result<bool> {
    let file = fs::File::open(host).with_context(|| format!("opening {}", host.display()))?;
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(fs::TryLockError::WouldBlock) => Ok(true),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("probing the lock of {}", host.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_headers_name_the_arch() {
        let sh = fs::read("/bin/sh").unwrap();
        assert_eq!(Arch::from_elf_header(&sh[..20]), Arch::host());
        assert_eq!(Arch::from_elf_header(b"#!/bin/sh\n echo not elf"), None);
    }

    #[test]
    fn platform_and_containerd_root_come_from_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let facts = inspect(&root, &Overrides::default()).unwrap();
        assert_eq!(facts.platform.source, "no binaries in the root; the host's");
        assert_eq!(facts.containerd_root, PathBuf::from("/var/lib/containerd"));
        assert!(facts.containerd_assumed);
        assert_eq!(facts.containerd.value, versions::NEWEST_KNOWN);
        assert!(!facts.meta.exists);
        // An s390x ELF header (big-endian, 64-bit, machine 22).
        let mut hdr = b"\x7fELF\x02\x02\x01\x00".to_vec();
        hdr.resize(18, 0);
        hdr.extend_from_slice(&22u16.to_be_bytes());
        root.create_dir_all("/usr/bin", 0o755).unwrap();
        root.write_atomic("/usr/bin/zz", &hdr, 0o755).unwrap();
        root.create_dir_all("/etc/containerd", 0o755).unwrap();
        root.write_atomic(
            effective::DEFAULT_MAIN,
            b"# mine\nversion = 2\nroot = \"/data/ctd\"\n",
            0o644,
        )
        .unwrap();
        let facts = inspect(&root, &Overrides::default()).unwrap();
        assert_eq!(
            (facts.platform.value.arch, facts.platform.source.as_str()),
            (Arch::S390x, "/usr/bin/zz")
        );
        assert_eq!(facts.containerd_root, PathBuf::from("/data/ctd"));
        assert_eq!(
            facts.blob_dir,
            PathBuf::from("/data/ctd/io.containerd.content.v1.content/blobs/sha256")
        );
    }

    #[test]
    fn import_leaves_a_locked_meta_db_unread_and_verify_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let meta_dir = dir.path().join("var/lib/containerd").join(META_DIR);
        fs::create_dir_all(&meta_dir).unwrap();
        let path = meta_dir.join(META_DB);
        let mut db = crate::bolt::Db::create(&path, crate::platform::Endian::Little).unwrap();
        db.root_mut()
            .bucket_at_mut(&[b"v1"])
            .unwrap()
            .put(b"k", b"v")
            .unwrap();
        db.commit().unwrap();
        drop(db);
        let store = |root: &Root| inspect_store(root, &Overrides::default()).unwrap().meta;
        let all = |root: &Root| inspect(root, &Overrides::default()).unwrap().meta;
        assert!(store(&root).tree.bucket(b"v1").is_some());
        let held = fs::File::open(&path).unwrap();
        held.lock().unwrap();
        let (unread, read) = (store(&root), all(&root));
        assert!(unread.locked && unread.exists, "{unread:?}");
        assert_eq!((unread.tree, unread.order, unread.txid), Default::default());
        assert!(read.locked && read.tree.bucket(b"v1").is_some(), "{read:?}");
    }

    #[test]
    fn flags_override_facts_and_are_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let overrides = Overrides {
            platform: Some(Platform { arch: Arch::Arm64 }),
            containerd: Some(Version::new(1, 7, 24)),
            kubernetes: Some(Version::new(1, 31, 2)),
            config: Some(PathBuf::from("/etc/k0s/containerd.toml")),
            running: None,
        };
        let facts = inspect(&root, &overrides).unwrap();
        assert_eq!(facts.platform.source, "--platform");
        assert_eq!(facts.containerd.source, "--containerd-version");
        assert!(!facts.containerd_assumed);
        assert_eq!(
            facts.kubernetes.unwrap().source,
            "--kubernetes-version".to_string()
        );
        let main = &facts.config.main;
        assert_eq!(
            (main.path.as_str(), main.why.as_str()),
            ("/etc/k0s/containerd.toml", "--config")
        );
    }

    #[test]
    fn imports_are_read_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        root.create_dir_all("/etc/containerd/conf.d", 0o755)
            .unwrap();
        root.write_atomic("/etc/containerd/conf.d/10-a.toml", b"a = 1\n", 0o644)
            .unwrap();
        root.write_atomic("/etc/containerd/conf.d/notes.txt", b"x", 0o644)
            .unwrap();
        let write_main = |text: &str| {
            root.write_atomic(effective::DEFAULT_MAIN, text.as_bytes(), 0o644)
                .unwrap()
        };
        write_main("version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\", \"/x*/y.toml\"]\n");
        let facts = inspect(&root, &Overrides::default()).unwrap();
        let files: Vec<&str> = facts
            .config
            .effective
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(
            files,
            [effective::DEFAULT_MAIN, "/etc/containerd/conf.d/10-a.toml"]
        );
        assert_eq!(
            facts
                .config
                .files
                .text("/etc/containerd/conf.d/10-a.toml")
                .unwrap(),
            Some("a = 1\n")
        );
        // containerd's `root`: a later file's replaces the main file's
        root.write_atomic(
            "/etc/containerd/conf.d/20-root.toml",
            b"root = \"/data/ctd\"\n",
            0o644,
        )
        .unwrap();
        write_main(
            "version = 2\nroot = \"/main/ctd\"\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
        );
        let facts = inspect(&root, &Overrides::default()).unwrap();
        assert_eq!(facts.containerd_root, PathBuf::from("/data/ctd"));
        // an explicit import that does not exist: containerd would not start
        write_main("version = 2\nimports = [\"missing.toml\"]\n");
        let facts = inspect(&root, &Overrides::default()).unwrap();
        let refused = facts.config.effective.refused.unwrap();
        assert!(
            refused.contains("/etc/containerd/missing.toml"),
            "{refused}"
        );
    }

    #[test]
    fn the_owner_decides_the_store_the_config_and_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        root.create_dir_all("/etc/rancher/k3s", 0o755).unwrap();
        root.write_atomic(
            "/etc/rancher/k3s/config.yaml",
            b"pause-image: registry.k8s.io/pause:3.10\n",
            0o644,
        )
        .unwrap();
        let over = Overrides {
            containerd: Some(Version::new(2, 1, 9)),
            ..Overrides::default()
        };
        let facts = inspect(&root, &over).unwrap();
        assert_eq!(facts.owner.owner.row.id, "k3s");
        assert_eq!(
            facts.containerd_root,
            PathBuf::from("/var/lib/rancher/k3s/agent/containerd")
        );
        assert_eq!(facts.address, "/run/k3s/containerd/containerd.sock");
        // the config k3s generates at start, read as it will be written
        let eff = &facts.config.effective;
        assert_eq!(
            eff.main,
            "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
        );
        assert_eq!(eff.image(), "registry.k8s.io/pause:3.10");
        assert!(!root
            .resolve("/var/lib/rancher/k3s/agent/etc")
            .unwrap()
            .exists());
        // a k0s config without k0s's marker is the node's: it decides the name
        let dir0 = tempfile::tempdir().unwrap();
        let k0s = Root::new(dir0.path()).unwrap();
        k0s.create_dir_all("/etc/k0s", 0o755).unwrap();
        let own = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"example.invalid/p:1\"\n";
        k0s.write_atomic("/etc/k0s/containerd.toml", own.as_bytes(), 0o644)
            .unwrap();
        let f = inspect(&k0s, &over).unwrap();
        assert_eq!(f.owner.owner.row.id, "k0s");
        assert!(!f.config.generated && f.owner.asks.is_none());
        assert_eq!(f.config.effective.image(), "example.invalid/p:1");
        let marked = format!("# k0s_managed=true\n{own}");
        k0s.write_atomic("/etc/k0s/containerd.toml", marked.as_bytes(), 0o644)
            .unwrap();
        let f = inspect(&k0s, &over).unwrap();
        assert!(f.config.generated);
        assert_eq!(
            f.config.effective.image(),
            "quay.io/k0sproject/pause:3.10.2-0"
        );
        // without a version, the containerd inside k3s is not guessed
        root.create_dir_all("/usr/local/bin", 0o755).unwrap();
        root.write_atomic("/usr/local/bin/k3s", b"#!/bin/sh\n", 0o755)
            .unwrap();
        let err = inspect(&root, &Overrides::default()).unwrap_err();
        assert!(
            format!("{err:#}").ends_with("pass --containerd-version"),
            "{err:#}"
        );
    }

    #[test]
    fn an_import_needs_no_versions() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        root.create_dir_all("/usr/bin", 0o755).unwrap();
        root.write_atomic("/usr/bin/containerd", b"#!/bin/sh\n", 0o755)
            .unwrap();
        let err = inspect(&root, &Overrides::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot tell the containerd version"),
            "{err}"
        );
        let facts = inspect_store(&root, &Overrides::default()).unwrap();
        assert!(facts.containerd_assumed);
        assert_eq!(facts.kubernetes, None);
    }
}
