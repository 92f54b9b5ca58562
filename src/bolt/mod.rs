//! bbolt, the single-file B+tree containerd keeps `meta.db` in: a reader and an in-place
//! writer following bbolt's commit protocol (`bbolt-format.md`). Knows nothing of containerd.
//!
//! [`Db::open`] locks the file (`flock`, non-blocking, as Go's bbolt does) and reads the whole
//! tree into a [`Bucket`]; callers change that tree in memory and [`Db::commit`] writes the
//! changes as one bbolt transaction: new pages after the high-water mark (pages of buckets
//! that did not change are kept), a freelist page, `fdatasync`, the meta page `txid % 2`,
//! `fdatasync`. Until the second sync the previous meta still describes the previous tree, so
//! a crash at any point leaves the old or the new state. Before writing, the commit re-reads
//! its own pages and refuses to write if they do not give back exactly the tree in memory.
//!
//! Not supported on purpose: page reuse within a transaction (the file grows by the rewritten
//! part; Go reuses the freed pages on its next write), and writing anything but the
//! synced-freelist form.

mod page;
mod read;
mod write;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::{BoltArgs, BoltCommand};
use page::{Endian, Meta};
use read::{Loaded, Pages, Shape};

/// Page size of new files, as Go picks on 4 KiB-page kernels (`bbolt-format.md` §8).
const NEW_PAGE_SIZE: u32 = 4096;

/// A bucket's whole contents in memory: keys in bbolt's bytewise order, each either a plain
/// value or a nested bucket, plus the bucket's sequence counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    pub sequence: u64,
    pub entries: BTreeMap<Vec<u8>, Node>,
}

/// One key's content inside a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Value(Vec<u8>),
    Bucket(Bucket),
}

impl Bucket {
    /// The plain value at `key`, if there is one (not a bucket).
    pub fn value(&self, key: &[u8]) -> Option<&[u8]> {
        match self.entries.get(key)? {
            Node::Value(v) => Some(v),
            Node::Bucket(_) => None,
        }
    }

    /// The nested bucket at `key`, if there is one.
    pub fn bucket(&self, key: &[u8]) -> Option<&Bucket> {
        match self.entries.get(key)? {
            Node::Bucket(b) => Some(b),
            Node::Value(_) => None,
        }
    }

    /// The nested bucket at the end of `path`, if every step exists.
    pub fn bucket_at(&self, path: &[&[u8]]) -> Option<&Bucket> {
        path.iter().try_fold(self, |b, key| b.bucket(key))
    }

    /// The nested bucket at the end of `path`, creating missing buckets on the way. A plain
    /// value in the way is an error: bbolt refuses to turn a value into a bucket.
    pub fn bucket_at_mut(&mut self, path: &[&[u8]]) -> Result<&mut Bucket> {
        let mut bucket = self;
        for key in path {
            let node = bucket
                .entries
                .entry(key.to_vec())
                .or_insert_with(|| Node::Bucket(Bucket::default()));
            bucket = match node {
                Node::Bucket(b) => b,
                Node::Value(_) => bail!(
                    "creating bucket {:?}: a value already exists at that key",
                    String::from_utf8_lossy(key)
                ),
            };
        }
        Ok(bucket)
    }

    /// Sets `key` to a plain value; replacing a bucket with a value is an error.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if let Some(Node::Bucket(_)) = self.entries.get(key) {
            bail!(
                "putting {:?}: a bucket already exists at that key",
                String::from_utf8_lossy(key)
            );
        }
        self.entries
            .insert(key.to_vec(), Node::Value(value.to_vec()));
        Ok(())
    }

    /// Removes `key` (value or whole bucket); returns what was there.
    pub fn delete(&mut self, key: &[u8]) -> Option<Node> {
        self.entries.remove(key)
    }
}

/// Parses a whole bbolt file from bytes (pure; used by open and by fuzzing). Errors name the
/// page and the problem.
pub fn read_tree(bytes: &[u8]) -> Result<Bucket> {
    Ok(read::load(bytes)?.tree)
}

/// An open, locked bbolt file and its tree in memory.
pub struct Db {
    path: PathBuf,
    /// Holds the exclusive `flock` for as long as the `Db` lives.
    file: File,
    /// The file's bytes as last read or written (pages of unchanged buckets are read from here
    /// when a commit verifies itself).
    bytes: Vec<u8>,
    meta: Meta,
    shape: Shape,
    committed: Bucket,
    root: Bucket,
    /// Test hook: stop the process after this many writes and syncs (see `command`).
    stop_after_writes: Option<u64>,
    writes: u64,
}

impl Db {
    /// Opens an existing bbolt file: flock(LOCK_EX|LOCK_NB) first, then reads the whole tree.
    /// If locked: fails at once, saying containerd appears to be running on that root. A
    /// zero-length file (an interrupted create) is initialised as a new file, as Go does.
    pub fn open(path: &Path) -> Result<Db> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        lock(&file, path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        if bytes.is_empty() {
            bytes = init(&file, path)?;
        }
        let loaded = read::load(&bytes).with_context(|| format!("reading {}", path.display()))?;
        Ok(Db::from_loaded(path, file, bytes, loaded))
    }

    /// Creates a new bbolt file at `path` (must not exist; page size 4096), locked, with an
    /// empty root bucket, laid out exactly as Go's bbolt creates one.
    pub fn create(path: &Path) -> Result<Db> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        lock(&file, path)?;
        let bytes = init(&file, path)?;
        // The new directory entry must be durable too.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing directory {}", dir.display()))?;
        }
        let loaded = read::load(&bytes).context("reading back a new file")?;
        Ok(Db::from_loaded(path, file, bytes, loaded))
    }

    fn from_loaded(path: &Path, file: File, bytes: Vec<u8>, loaded: Loaded) -> Db {
        Db {
            path: path.to_path_buf(),
            file,
            bytes,
            meta: loaded.meta,
            shape: loaded.shape,
            committed: loaded.tree.clone(),
            root: loaded.tree,
            stop_after_writes: None,
            writes: 0,
        }
    }

    pub fn root(&self) -> &Bucket {
        &self.root
    }

    pub fn root_mut(&mut self) -> &mut Bucket {
        &mut self.root
    }

    /// True when root differs from what was last read/committed.
    pub fn is_dirty(&self) -> bool {
        self.root != self.committed
    }

    /// Writes the changes as one bbolt transaction in place (new pages after the high-water
    /// mark, inline buckets where Go would inline them, freelist page, fsync, meta page
    /// txid%2, fsync). No-op when clean.
    pub fn commit(&mut self) -> Result<()> {
        if !self.is_dirty() {
            return Ok(());
        }
        let path = self.path.display().to_string();
        let enc = write::encode(&self.root, Some((&self.committed, &self.shape)), &self.meta)
            .with_context(|| format!("encoding the changes to {path}"))?;
        let size = self.meta.page_size as usize;
        let base = self.meta.pgid;

        // Read the new tree back through the real reader before anything touches the disk:
        // a writer bug must fail here, not in containerd's next start.
        let pages = Pages {
            base: &self.bytes,
            split: base,
            extra: &enc.pages,
            size,
        };
        let check = read::load_with(enc.meta, &pages)
            .with_context(|| format!("verifying the transaction for {path} before writing it"))?;
        if check.tree != self.root || !check.leaked.is_empty() {
            bail!("verifying the transaction for {path}: re-reading the new pages gives a different tree or leaks pages {:?}; nothing written", check.leaked);
        }

        for &(id, n) in &enc.runs {
            let at = (id - base) as usize * size;
            self.file
                .write_all_at(&enc.pages[at..at + n as usize * size], id * size as u64)
                .with_context(|| format!("writing page {id} of {path}"))?;
            self.step()?;
        }
        self.file
            .sync_data()
            .with_context(|| format!("syncing {path}"))?;
        self.step()?;
        let meta_page = enc.meta.encode();
        let slot = enc.meta.txid % 2;
        self.file
            .write_all_at(&meta_page, slot * size as u64)
            .with_context(|| format!("writing meta page {slot} of {path}"))?;
        self.step()?;
        self.file
            .sync_data()
            .with_context(|| format!("syncing {path}"))?;
        self.step()?;

        let end = enc.meta.pgid as usize * size;
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[base as usize * size..end].copy_from_slice(&enc.pages);
        self.bytes[slot as usize * size..][..size].copy_from_slice(&meta_page);
        self.meta = enc.meta;
        self.shape = enc.shape;
        self.committed = self.root.clone();
        Ok(())
    }

    /// Counts one write or sync; the test hook stops the process at the chosen one, so a test
    /// can SIGKILL it exactly there.
    fn step(&mut self) -> Result<()> {
        self.writes += 1;
        if self.stop_after_writes == Some(self.writes) {
            let pid = std::process::id().to_string();
            crate::exec::run(std::process::Command::new("kill").args(["-STOP", &pid]))?;
        }
        Ok(())
    }
}

/// Takes the exclusive, non-blocking `flock` Go's bbolt takes.
fn lock(file: &File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => bail!(
            "{} is locked: containerd appears to be running on this root; stop it and retry",
            path.display()
        ),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Writes Go's empty database into the empty, locked `file` and syncs it.
fn init(file: &File, path: &Path) -> Result<Vec<u8>> {
    let bytes = write::empty_file(NEW_PAGE_SIZE, Endian::native());
    file.write_all_at(&bytes, 0)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing a new bbolt file at {}", path.display()))?;
    Ok(bytes)
}

/// Lower-case hex, as the dump format and error messages use.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The whole tree in `tests/bolt-check`'s dump format: one line per bucket
/// (`bucket <path> <sequence>`) and per value (`value <path> <hex>`), depth first in key
/// order, paths made of hex keys (`/` for the root).
pub fn dump(root: &Bucket) -> String {
    let mut out = format!("bucket / {}\n", root.sequence);
    dump_into(&mut out, "", root);
    out
}

fn dump_into(out: &mut String, path: &str, bucket: &Bucket) {
    use std::fmt::Write;
    for (key, node) in &bucket.entries {
        let path = format!("{path}/{}", hex(key));
        // Writing to a String cannot fail.
        let _ = match node {
            Node::Bucket(b) => writeln!(out, "bucket {path} {}", b.sequence),
            Node::Value(v) => writeln!(out, "value {path} {}", hex(v)),
        };
        if let Node::Bucket(b) = node {
            dump_into(out, &path, b);
        }
    }
}

/// `pausebake bolt`: the hidden developer command the tests drive.
pub fn command(args: &BoltArgs) -> Result<ExitCode> {
    match &args.command {
        BoltCommand::Dump { file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let tree = read_tree(&bytes).with_context(|| format!("reading {}", file.display()))?;
            print!("{}", dump(&tree));
        }
        BoltCommand::Set {
            file,
            bucket,
            key,
            value,
            stop_after_writes,
        } => {
            let mut db = if file.exists() {
                Db::open(file)?
            } else {
                Db::create(file)?
            };
            db.stop_after_writes = *stop_after_writes;
            let path: Vec<&[u8]> = bucket
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::as_bytes)
                .collect();
            if path.is_empty() {
                bail!("setting {key:?}: --bucket must name at least one bucket (the root holds only buckets)");
            }
            db.root_mut()
                .bucket_at_mut(&path)?
                .put(key.as_bytes(), value.as_bytes())?;
            db.commit()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_paths_create_and_find() {
        let mut root = Bucket::default();
        root.bucket_at_mut(&[b"v1", b"k8s.io"])
            .unwrap()
            .put(b"k", b"v")
            .unwrap();
        assert_eq!(
            root.bucket_at(&[b"v1", b"k8s.io"]).unwrap().value(b"k"),
            Some(&b"v"[..])
        );
        assert!(root.bucket_at(&[b"v1", b"nope"]).is_none());
        root.bucket_at_mut(&[b"v1"])
            .unwrap()
            .put(b"version", b"\x06")
            .unwrap();
        assert!(root.bucket_at_mut(&[b"v1", b"version"]).is_err());
        assert!(root.put(b"v1", b"x").is_err());
    }
}
