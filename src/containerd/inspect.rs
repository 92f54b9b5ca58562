//! Probe a root once into [`RootFacts`]: every fact pausebake acts on, each with where it
//! came from. Flags override facts here and nowhere else ([`Overrides`]); plan, apply and
//! verify read the facts, never the root, to learn about it.
//!
//! What is read: the platform (the ELF header of one of the root's binaries), the
//! containerd and Kubernetes versions ([`super::detect`]), containerd's config as containerd
//! reads it ([`ConfigFacts`]: today the main `config.toml` and the files its `imports` name),
//! containerd's `root`, a read-only snapshot of `meta.db` and, on request, the state of the
//! content blobs an image needs ([`RootFacts::probe_blobs`]). Nothing here writes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context, Result};
use toml_edit::DocumentMut;

use super::detect::{detect_containerd, detect_kubernetes, Found};
use super::store::{CONTENT_DIR, META_DB, META_DIR};
use super::versions::{self, Version};
use crate::bolt::Bucket;
use crate::platform::{Arch, Endian, Platform};
use crate::rootfs::Root;

/// containerd's root when the config does not set one (`defaults/defaults_unix.go`).
pub const DEFAULT_CONTAINERD_ROOT: &str = "/var/lib/containerd";
/// containerd's main config file inside a root.
pub const CONFIG_PATH: &str = "/etc/containerd/config.toml";

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
}

/// containerd's configuration as containerd reads it. Today: the main file and the files its
/// `imports` name, one level deep; the effective-config work replaces this value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFacts {
    /// The main file, inside the root.
    pub path: String,
    /// Its text; `None` when there is no file.
    pub text: Option<String>,
    /// Each imported file that exists: its path inside the root and its text, sorted.
    pub imports: Imports,
    /// Import patterns pausebake did not follow, one sentence each.
    pub import_notes: Vec<String>,
}

/// Imported config files: (path inside the root, text).
pub type Imports = Vec<(String, String)>;

/// A read-only snapshot of `meta.db`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetaDb {
    /// The file inside the root.
    pub path: PathBuf,
    /// Whether the file exists (a zero-length file, from an interrupted create, exists with
    /// an empty tree, as bbolt opens it).
    pub exists: bool,
    /// The whole tree (empty when the file is absent or empty).
    pub tree: Bucket,
    /// The file's byte order; `None` when absent or empty.
    pub order: Option<Endian>,
    /// The transaction the file held when read; `None` when absent or empty.
    pub txid: Option<u64>,
    /// Whether a running containerd holds the file's lock (it writes the file meanwhile: the
    /// tree is a snapshot, and empty when the snapshot was caught mid-write).
    pub locked: bool,
    /// The process holding that lock, from `/proc/locks` (`None`: not locked, or not told).
    pub holder: Option<u32>,
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
    probe(root, overrides, true)
}

/// [`inspect`] for a command that only writes the store (`import`): the containerd and
/// Kubernetes versions are not read, so a root whose binaries tell none can still be
/// imported into.
pub fn inspect_store(root: &Root, overrides: &Overrides) -> Result<RootFacts> {
    probe(root, overrides, false)
}

fn probe(root: &Root, overrides: &Overrides, read_versions: bool) -> Result<RootFacts> {
    let platform = match overrides.platform {
        Some(p) => Sourced {
            value: p,
            source: "--platform".into(),
        },
        None => root_platform(root)?,
    };
    let (containerd, containerd_assumed) = match (overrides.containerd, read_versions) {
        (Some(v), _) => (sourced(v, "--containerd-version"), false),
        (None, false) => (
            sourced(
                versions::NEWEST_KNOWN,
                "not read: the command uses no containerd version",
            ),
            true,
        ),
        (None, true) => match detect_containerd(root)? {
            Some(f) => (found(f), false),
            None => (newest_known(), true),
        },
    };
    let kubernetes = match (overrides.kubernetes, read_versions) {
        (Some(v), _) => Some(sourced(v, "--kubernetes-version")),
        (None, false) => None,
        (None, true) => detect_kubernetes(root)?.map(found),
    };
    let config = read_config(root)?;
    let containerd_root = containerd_root(root, &config)?;
    let meta = read_meta(root, containerd_root.join(META_DIR).join(META_DB))?;
    Ok(RootFacts {
        root: root.clone(),
        platform,
        containerd,
        containerd_assumed,
        kubernetes,
        config,
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

/// The main config and the files its `imports` name.
fn read_config(root: &Root) -> Result<ConfigFacts> {
    let text = root.read_to_string(CONFIG_PATH)?;
    let (imports, import_notes) = match &text {
        Some(t) => imported_files(root, t)?,
        None => (Vec::new(), Vec::new()),
    };
    Ok(ConfigFacts {
        path: CONFIG_PATH.into(),
        text,
        imports,
        import_notes,
    })
}

/// The files a config's `imports` name, inside the root, sorted, with their text: absolute
/// node paths map into the root, relative ones are relative to `/etc/containerd`; `*` and `?`
/// are expanded in the file name (a pattern in a directory name is reported as unsupported).
/// One level: imports of imported files are not followed. An unparsable main file has none
/// here (the plan reports the parse error).
fn imported_files(root: &Root, config_text: &str) -> Result<(Imports, Vec<String>)> {
    let mut files = Vec::new();
    let mut notes = Vec::new();
    let Ok(doc) = config_text.parse::<DocumentMut>() else {
        return Ok((files, notes));
    };
    let Some(imports) = doc.get("imports").and_then(|i| i.as_array()) else {
        return Ok((files, notes));
    };
    for pattern in imports.iter().filter_map(|v| v.as_str()) {
        let abs = match pattern.strip_prefix('/') {
            Some(abs) => format!("/{abs}"),
            None => format!("/etc/containerd/{pattern}"),
        };
        let (dir, name) = abs.rsplit_once('/').unwrap_or(("", abs.as_str()));
        if dir.contains(['*', '?', '[']) {
            notes.push(format!(
                "import {pattern:?} has a pattern in a directory name; pausebake did not check it"
            ));
            continue;
        }
        let names: Vec<String> = if name.contains(['*', '?']) {
            root.read_dir(dir)?
                .into_iter()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| glob_match(name.as_bytes(), n.as_bytes()))
                .collect()
        } else {
            vec![name.into()]
        };
        for name in names {
            let path = format!("{dir}/{name}");
            if root.resolve(&path)?.is_file() {
                if let Some(text) = root.read_to_string(&path)? {
                    files.push((path, text));
                }
            }
        }
    }
    // containerd sorts glob matches too
    files.sort();
    files.dedup();
    Ok((files, notes))
}

/// `*` and `?` matching of one path component.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| glob_match(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && glob_match(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && glob_match(rest, &name[1..]),
    }
}

/// containerd's `root`: the config's top-level `root` when it sets one, else
/// [`DEFAULT_CONTAINERD_ROOT`]. An in-root absolute path.
fn containerd_root(root: &Root, config: &ConfigFacts) -> Result<PathBuf> {
    let Some(text) = &config.text else {
        return Ok(PathBuf::from(DEFAULT_CONTAINERD_ROOT));
    };
    let host = root.resolve(&config.path)?;
    let doc: DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {} as TOML", host.display()))?;
    let Some(item) = doc.get("root") else {
        return Ok(PathBuf::from(DEFAULT_CONTAINERD_ROOT));
    };
    let dir = item
        .as_str()
        .ok_or_else(|| anyhow!("reading `root` in {}: expected a string", host.display()))?;
    ensure!(
        dir.starts_with('/'),
        "reading `root` in {}: {dir:?} is not an absolute path",
        host.display()
    );
    Ok(PathBuf::from(dir))
}

// --- meta.db -----------------------------------------------------------------------------

/// A snapshot of the `meta.db` at `path` (inside the root), read without taking its lock.
fn read_meta(root: &Root, path: PathBuf) -> Result<MetaDb> {
    let host = root.resolve(&path)?;
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
    let locked = is_locked(&host)?;
    let holder = if locked { lock_holder(&host)? } else { None };
    let (tree, order, txid) = match read() {
        Ok((tree, order, txid)) => (tree, Some(order), Some(txid)),
        // A running containerd may be mid-write: its API, not the file, is then the truth.
        Err(_) if locked => (Bucket::default(), None, None),
        Err(e) => return Err(e.context(format!("reading {}", host.display()))),
    };
    Ok(MetaDb {
        path,
        exists: true,
        tree,
        order,
        txid,
        locked,
        holder,
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
            CONFIG_PATH,
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
    fn flags_override_facts_and_are_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let overrides = Overrides {
            platform: Some(Platform { arch: Arch::Arm64 }),
            containerd: Some(Version::new(1, 7, 24)),
            kubernetes: Some(Version::new(1, 31, 2)),
        };
        let facts = inspect(&root, &overrides).unwrap();
        assert_eq!(facts.platform.source, "--platform");
        assert_eq!(facts.containerd.source, "--containerd-version");
        assert!(!facts.containerd_assumed);
        assert_eq!(
            facts.kubernetes.unwrap().source,
            "--kubernetes-version".to_string()
        );
    }

    #[test]
    fn globs_match_one_component() {
        assert!(glob_match(b"*.toml", b"10-cri.toml"));
        assert!(glob_match(b"??-*.toml", b"10-cri.toml"));
        assert!(!glob_match(b"*.toml", b"10-cri.toml.bak"));
        assert!(glob_match(b"exact.toml", b"exact.toml"));
        assert!(!glob_match(b"?", b""));
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
        let main = "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\", \"missing.toml\", \"/x*/y.toml\"]\n";
        let (files, notes) = imported_files(&root, main).unwrap();
        assert_eq!(
            files,
            [(
                "/etc/containerd/conf.d/10-a.toml".to_string(),
                "a = 1\n".to_string()
            )]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
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
