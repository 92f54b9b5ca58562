//! Paths inside an offline root: resolved without ever leaving it, whatever its symlinks say.
//!
//! An offline root (a mounted node image, a chroot) is full of absolute symlinks meant for the
//! machine that will boot it: `R/etc/containerd -> /etc`, `R/var/lib/containerd ->
//! /data/containerd`. `Path::join` followed by an open would follow them on the *host* and write
//! into the build machine's own `/etc`. [`Root`] resolves every component itself, the way the
//! kernel would after a `chroot(R)`: an absolute symlink restarts at R, `..` stops at R, and
//! loops end after [`MAX_SYMLINKS`] links, as `ELOOP` does. Only the resolved host path is
//! ever opened.
//!
//! Not a security boundary against a root that changes while pausebake runs (a concurrent
//! writer could swap a directory for a symlink between resolution and use); the root is
//! offline by contract. `cap-std` would close that race with `openat2`; the simpler
//! resolver is a deliberate choice (`style.md` §4.6).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// As Linux's `MAXSYMLINKS`: more links than this in one lookup is treated as a loop.
pub const MAX_SYMLINKS: usize = 40;

/// An offline root directory on the host, and the only way pausebake reaches files inside it.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    /// How reports name the root when its directory is not what the user gave
    /// ([`Root::shown_as`]).
    shown: Option<String>,
}

impl Root {
    /// Opens the root at `dir`, which must be an existing directory.
    pub fn new(dir: &Path) -> Result<Root> {
        let dir = fs::canonicalize(dir)
            .with_context(|| format!("opening root {} (does it exist?)", dir.display()))?;
        if !dir.is_dir() {
            bail!("opening root {}: not a directory", dir.display());
        }
        Ok(Root { dir, shown: None })
    }

    /// The same root, named `shown` in what pausebake prints: a disk image's partition
    /// rather than the temporary directory it is mounted on.
    pub fn shown_as(self, shown: String) -> Root {
        Root {
            shown: Some(shown),
            ..self
        }
    }

    /// How reports name the root: its directory, or what [`Root::shown_as`] gave.
    pub fn shown(&self) -> String {
        self.shown
            .clone()
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    /// The root's own directory on the host (the tests' way to lay files out beside it).
    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host path of `path` as seen from inside the root (absolute or not, it is taken
    /// from the root), with every symlink followed inside the root, the last one included.
    /// Components that do not exist yet are kept as written.
    pub fn resolve(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let path = path.as_ref();
        let mut todo: VecDeque<OsString> = VecDeque::new();
        push_front(&mut todo, path);
        let mut done: Vec<OsString> = Vec::new();
        // How many components of `done` exist, once one did not: nothing below a missing
        // directory can be a symlink, so it is not looked up (inspect asks for many paths
        // under directories a root does not have).
        let mut missing_below: Option<usize> = None;
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == "/" {
                done.clear();
                missing_below = None;
                continue;
            }
            if name == ".." {
                // `..` of the root is the root, as after chroot.
                done.pop();
                if missing_below.is_some_and(|existing| done.len() <= existing) {
                    missing_below = None;
                }
                continue;
            }
            if missing_below.is_some() {
                done.push(name);
                continue;
            }
            let host = self.host(&done).join(&name);
            let meta = match fs::symlink_metadata(&host) {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    missing_below = Some(done.len());
                    done.push(name);
                    continue;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "resolving {} in root {}",
                            path.display(),
                            self.dir.display()
                        )
                    })
                }
            };
            if !meta.file_type().is_symlink() {
                done.push(name);
                continue;
            }
            links += 1;
            if links > MAX_SYMLINKS {
                bail!(
                    "resolving {} in root {}: more than {MAX_SYMLINKS} symbolic links (a loop at {}?)",
                    path.display(),
                    self.dir.display(),
                    host.display()
                );
            }
            let target = fs::read_link(&host)
                .with_context(|| format!("reading symbolic link {}", host.display()))?;
            // The link is replaced by its target; an absolute target starts again at the
            // root (its leading "/" clears `done`), a relative one from the link's directory.
            push_front(&mut todo, &target);
        }
        Ok(self.host(&done))
    }

    fn host(&self, components: &[OsString]) -> PathBuf {
        let mut p = self.dir.clone();
        p.extend(components);
        p
    }

    /// The file's bytes, or `None` when it does not exist.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Option<Vec<u8>>> {
        let host = self.resolve(path)?;
        match fs::read(&host) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", host.display())),
        }
    }

    /// The file as UTF-8 text, or `None` when it does not exist.
    pub fn read_to_string(&self, path: impl AsRef<Path>) -> Result<Option<String>> {
        let host = self.resolve(&path)?;
        match self.read(&path)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .with_context(|| format!("reading {}: not UTF-8 text", host.display())),
        }
    }

    /// Names in a directory, sorted (`read_dir` order is not stable); empty when the
    /// directory does not exist.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> Result<Vec<OsString>> {
        let host = self.resolve(path)?;
        let entries = match fs::read_dir(&host) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", host.display())),
        };
        let mut names = entries
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("listing {}", host.display()))?;
        names.sort();
        Ok(names)
    }

    /// Creates `path` and any missing parents inside the root, each new directory with
    /// exactly `mode` (not subject to the umask); existing ones are left as they are.
    /// Returns the resolved host path.
    pub fn create_dir_all(&self, path: impl AsRef<Path>, mode: u32) -> Result<PathBuf> {
        let host = self.resolve(path)?;
        let rel = host
            .strip_prefix(&self.dir)
            .expect("resolve() only returns paths under the root");
        let mut dir = self.dir.clone();
        for c in rel.components() {
            dir.push(c);
            match fs::DirBuilder::new().mode(mode).create(&dir) {
                Ok(()) => fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                    .with_context(|| format!("setting mode of {}", dir.display()))?,
                Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
            }
        }
        Ok(host)
    }

    /// Replaces (or creates) the file at `path` so that a crash leaves either the old or the
    /// new content: a temporary file in the same directory, fsync, rename, fsync of the
    /// directory. An existing file's mode and owner are kept; a new file gets `mode`. The
    /// parent directory must exist.
    pub fn write_atomic(&self, path: impl AsRef<Path>, bytes: &[u8], mode: u32) -> Result<()> {
        let host = self.resolve(path)?;
        write_atomic_host(&host, bytes, mode)
    }
}

/// [`Root::write_atomic`] on an already resolved host path.
pub fn write_atomic_host(host: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    replace_file(host, bytes, mode)?;
    let dir = host.parent().expect("replace_file() checked there is one");
    sync_dir(dir)
}

/// Temp file in the same directory, fsync, rename over `host`, keeping an existing file's
/// mode and owner; the directory is *not* synced, so that a caller writing many files into
/// one directory syncs it once ([`sync_dir`]) before relying on the names.
pub fn replace_file(host: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let (dir, name) = match (host.parent(), host.file_name()) {
        (Some(dir), Some(name)) => (dir, name),
        _ => bail!("writing {}: not a file path", host.display()),
    };
    let existing = match fs::metadata(host) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", host.display())),
    };
    let mode = existing.as_ref().map_or(mode, |m| m.mode() & 0o7777);
    // One fixed temporary name per target: a leftover from a crashed run is simply replaced.
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".pausebake-tmp");
    let tmp = dir.join(tmp_name);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", tmp.display())),
    }
    let result = (|| -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        if let Some(meta) = &existing {
            // Keep the owner of the file being replaced (root-owned configs stay root's).
            std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
        }
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&tmp, host)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", host.display()));
    }
    Ok(())
}

/// fsyncs a directory so that a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Queues the components of `path` in front of `todo`, in order; a leading `/` becomes the
/// marker "/" so that absolute symlink targets restart at the root.
fn push_front(todo: &mut VecDeque<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::RootDir | Component::Prefix(_) => Some(OsString::from("/")),
            Component::CurDir => None,
            Component::ParentDir => Some(OsString::from("..")),
            Component::Normal(n) => Some(n.to_os_string()),
        })
        .collect();
    for part in parts.into_iter().rev() {
        todo.push_front(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn dot_dot_stops_at_the_root() {
        let (_d, r) = root();
        assert_eq!(
            r.resolve("/../../etc/./passwd").unwrap(),
            r.dir().join("etc/passwd")
        );
        assert_eq!(r.resolve("a/../../b").unwrap(), r.dir().join("b"));
        assert_eq!(r.resolve("/").unwrap(), r.dir());
    }

    #[test]
    fn below_a_missing_directory_paths_stay_as_written_until_dot_dot_climbs_out() {
        let (_d, r) = root();
        fs::create_dir_all(r.dir().join("data")).unwrap();
        symlink("/data", r.dir().join("link")).unwrap();
        assert_eq!(r.resolve("/no/link/x").unwrap(), r.dir().join("no/link/x"));
        assert_eq!(
            r.resolve("/no/more/../../link/x").unwrap(),
            r.dir().join("data/x")
        );
        assert_eq!(r.resolve("/no/../link/x").unwrap(), r.dir().join("data/x"));
        assert_eq!(
            r.resolve("/no/more/../link/x").unwrap(),
            r.dir().join("no/link/x")
        );
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let (_d, r) = root();
        fs::create_dir_all(r.dir().join("etc")).unwrap();
        symlink("/etc", r.dir().join("etc/containerd")).unwrap();
        assert_eq!(
            r.resolve("/etc/containerd/config.toml").unwrap(),
            r.dir().join("etc/config.toml")
        );
        fs::create_dir_all(r.dir().join("var/lib")).unwrap();
        symlink("/data/containerd", r.dir().join("var/lib/containerd")).unwrap();
        assert_eq!(
            r.resolve("/var/lib/containerd/io.containerd.metadata.v1.bolt")
                .unwrap(),
            r.dir()
                .join("data/containerd/io.containerd.metadata.v1.bolt")
        );
    }

    #[test]
    fn relative_symlinks_cannot_climb_out() {
        let (_d, r) = root();
        fs::create_dir_all(r.dir().join("a/b")).unwrap();
        symlink("../../../../../../etc", r.dir().join("a/b/up")).unwrap();
        symlink("b", r.dir().join("a/sib")).unwrap();
        assert_eq!(
            r.resolve("/a/b/up/shadow").unwrap(),
            r.dir().join("etc/shadow")
        );
        assert_eq!(r.resolve("/a/sib/x").unwrap(), r.dir().join("a/b/x"));
    }

    #[test]
    fn symlink_loops_are_bounded() {
        let (_d, r) = root();
        fs::create_dir_all(r.dir().join("var/lib")).unwrap();
        // Points at itself once resolved inside the root, as it would at boot.
        symlink("/var/lib/containerd", r.dir().join("var/lib/containerd")).unwrap();
        symlink("b", r.dir().join("a")).unwrap();
        symlink("a", r.dir().join("b")).unwrap();
        for p in ["/var/lib/containerd/x", "/a"] {
            let err = r.resolve(p).unwrap_err().to_string();
            assert!(err.contains("more than 40 symbolic links"), "{err}");
        }
        assert!(r.create_dir_all("/var/lib/containerd/x", 0o755).is_err());
    }

    #[test]
    fn host_paths_are_untouched() {
        let (_d, r) = root();
        // A directory on the host that an absolute symlink in the root names.
        let host = tempfile::tempdir().unwrap();
        let host_dir = fs::canonicalize(host.path()).unwrap();
        symlink(&host_dir, r.dir().join("escape")).unwrap();
        symlink(host_dir.join("file"), r.dir().join("f")).unwrap();

        r.create_dir_all("/escape/sub", 0o755).unwrap();
        r.write_atomic("/escape/sub/config.toml", b"x", 0o644)
            .unwrap();
        r.write_atomic("/f", b"y", 0o644).unwrap();

        assert_eq!(fs::read_dir(&host_dir).unwrap().count(), 0);
        let inside = r
            .dir()
            .join(host_dir.strip_prefix("/").unwrap())
            .join("sub/config.toml");
        assert_eq!(fs::read(inside).unwrap(), b"x");
        assert_eq!(r.read("/f").unwrap().unwrap(), b"y");
        // The links themselves are still links.
        assert!(fs::symlink_metadata(r.dir().join("f"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn create_dir_all_sets_exact_modes() {
        let (_d, r) = root();
        let p = r.create_dir_all("/var/lib/containerd/meta", 0o711).unwrap();
        assert_eq!(p, r.dir().join("var/lib/containerd/meta"));
        for d in ["var", "var/lib", "var/lib/containerd/meta"] {
            let mode = fs::metadata(r.dir().join(d)).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o711, "{d}");
        }
        // Existing directories keep their mode.
        fs::set_permissions(r.dir().join("var"), fs::Permissions::from_mode(0o750)).unwrap();
        r.create_dir_all("/var/x", 0o700).unwrap();
        assert_eq!(
            fs::metadata(r.dir().join("var")).unwrap().mode() & 0o7777,
            0o750
        );
    }

    #[test]
    fn write_atomic_keeps_the_mode_of_what_it_replaces() {
        let (_d, r) = root();
        r.write_atomic("/c.toml", b"one", 0o640).unwrap();
        let mode = |r: &Root| fs::metadata(r.dir().join("c.toml")).unwrap().mode() & 0o7777;
        assert_eq!(mode(&r), 0o640);
        fs::set_permissions(r.dir().join("c.toml"), fs::Permissions::from_mode(0o600)).unwrap();
        r.write_atomic("/c.toml", b"two", 0o644).unwrap();
        assert_eq!(mode(&r), 0o600);
        assert_eq!(r.read_to_string("/c.toml").unwrap().unwrap(), "two");
        // Nothing left behind.
        assert_eq!(r.read_dir("/").unwrap(), vec![OsString::from("c.toml")]);
        assert_eq!(r.read("/absent").unwrap(), None);
    }

    #[test]
    fn a_missing_root_is_named() {
        let err = Root::new(Path::new("/nonexistent/root"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "opening root /nonexistent/root (does it exist?)");
    }
}
