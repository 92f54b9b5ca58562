//! bbolt, the single-file B+tree containerd keeps `meta.db` in: a reader and an in-place
//! writer following bbolt's commit protocol (`bbolt-format.md`). Knows nothing of containerd.
//!
//! [`Db::open`] locks the file (`flock`, non-blocking, as Go's bbolt does) and reads only its
//! meta pages. The caller then loads the keys it needs ([`Db::load`], [`Db::load_all`]): the
//! buckets on the way hold just those keys, the entry at the end all of its contents. Callers
//! change that tree in memory and [`Db::commit`] writes the changes as one bbolt transaction,
//! copy-on-write as bbolt does: the leaf pages holding changed keys and the branch pages above
//! them, up to each changed bucket's root and the root bucket; pages taken from the file's free
//! pages first (never from pages this transaction frees), then after the high-water mark; the
//! freelist in the file's own form (a freelist page, or none for files containerd >= 1.7
//! wrote); `fdatasync`; the meta page `txid % 2`; `fdatasync`. Until the second sync the
//! previous meta still describes the previous tree, so a crash at any point leaves the old or
//! the new state.
//!
//! Not done on purpose: merging underfilled pages after deletions (Go rebalances them on its
//! own next write; fill level is not part of the format).

pub mod page;
pub mod random;
mod read;
mod tx;
mod write;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use page::{current_meta, Endian, Meta, NO_FREELIST};
use read::show;
use tx::Disk;
use write::{Alloc, Encoder};

/// Page size of new files, as Go picks on 4 KiB-page kernels (`bbolt-format.md` §8).
const NEW_PAGE_SIZE: u32 = 4096;

/// A bucket's contents in memory: keys in bbolt's bytewise order, each either a plain value
/// or a nested bucket, plus the bucket's sequence counter. A bucket read from an open [`Db`]
/// holds the keys loaded so far; one built by a caller holds all of its keys.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    pub sequence: u64,
    pub entries: BTreeMap<Vec<u8>, Node>,
    /// The root page of a page-backed bucket loaded from a [`Db`] (0: built in memory, or
    /// inline and so loaded whole). Keys of such a bucket that were never loaded stay as
    /// they are on disk; a commit rewrites only the pages of changed keys.
    page: u64,
}

/// Buckets are equal when their contents are, wherever they are stored.
impl PartialEq for Bucket {
    fn eq(&self, other: &Bucket) -> bool {
        self.sequence == other.sequence && self.entries == other.entries
    }
}

impl Eq for Bucket {}

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

    /// The same contents as buckets built in memory: a commit writes them anew.
    fn detached(&self) -> Bucket {
        Bucket {
            sequence: self.sequence,
            entries: self
                .entries
                .iter()
                .map(|(k, n)| {
                    let n = match n {
                        Node::Bucket(b) => Node::Bucket(b.detached()),
                        Node::Value(v) => Node::Value(v.clone()),
                    };
                    (k.clone(), n)
                })
                .collect(),
            page: 0,
        }
    }
}

/// Parses a whole bbolt file from bytes (pure; used by verify, dump and fuzzing). Errors
/// name the page and the problem.
pub fn read_tree(bytes: &[u8]) -> Result<Bucket> {
    read::tree(bytes)
}

/// The byte order of a bbolt file (of its current meta page), which only a machine of the
/// same order can open.
pub fn byte_order(bytes: &[u8]) -> Result<Endian> {
    Ok(page::current_meta(bytes)?.endian)
}

/// The id of the transaction a bbolt file holds (its current meta page's): a commit by any
/// writer changes it.
pub fn txid(bytes: &[u8]) -> Result<u64> {
    Ok(page::current_meta(bytes)?.txid)
}

/// An open, locked bbolt file and the part of its tree loaded so far.
pub struct Db {
    path: PathBuf,
    /// Holds the exclusive `flock` for as long as the `Db` lives.
    file: File,
    /// The file's length as last read or written.
    len: u64,
    meta: Meta,
    /// What was loaded, as it is on disk.
    committed: Bucket,
    /// The caller's view: `committed` plus the caller's changes.
    root: Bucket,
}

impl Db {
    /// Opens an existing bbolt file: flock(LOCK_EX|LOCK_NB) first, then reads its meta pages
    /// (nothing of the tree is loaded yet: see [`Db::load`]). If locked: fails at once, saying
    /// containerd appears to be running on that root. A zero-length file (an interrupted
    /// create) is initialised as a new file in byte order `order_if_new`, as Go does in its
    /// own order; a file with content keeps its order.
    pub fn open(path: &Path, order_if_new: Endian) -> Result<Db> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        lock(&file, path)?;
        let mut len = file
            .metadata()
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len();
        if len == 0 {
            len = init(&file, path, order_if_new, NEW_PAGE_SIZE)?;
        }
        let meta = read_meta(&file, len).with_context(|| format!("reading {}", path.display()))?;
        Ok(Db::with_meta(path, file, len, meta))
    }

    /// Creates a new bbolt file at `path` (must not exist; page size 4096), locked, with an
    /// empty root bucket, laid out exactly as Go's bbolt creates one on a machine of byte
    /// order `order` (the machine that will open it: Go reads its own order only).
    pub fn create(path: &Path, order: Endian) -> Result<Db> {
        Db::create_with(path, order, NEW_PAGE_SIZE)
    }

    fn create_with(path: &Path, order: Endian, page_size: u32) -> Result<Db> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        lock(&file, path)?;
        let len = init(&file, path, order, page_size)?;
        // The new directory entry must be durable too.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing directory {}", dir.display()))?;
        }
        let meta = read_meta(&file, len).context("reading back a new file")?;
        Ok(Db::with_meta(path, file, len, meta))
    }

    fn with_meta(path: &Path, file: File, len: u64, meta: Meta) -> Db {
        let root = Bucket {
            sequence: meta.sequence,
            entries: BTreeMap::new(),
            page: meta.root,
        };
        Db {
            path: path.to_path_buf(),
            file,
            len,
            meta,
            committed: root.clone(),
            root,
        }
    }

    /// The loaded part of the tree: keys never loaded are absent here but stay in the file.
    pub fn root(&self) -> &Bucket {
        &self.root
    }

    /// The loaded part of the tree, to change. Load a key before changing or creating it:
    /// a commit refuses to overwrite a key it did not load.
    pub fn root_mut(&mut self) -> &mut Bucket {
        &mut self.root
    }

    /// Loads the entry at the key path `path` (bucket names, then the key): each bucket on the
    /// way gets that one key, reading only the pages from its root to the key's leaf; the
    /// entry itself, if a bucket, gets all of its contents. A missing key loads nothing.
    pub fn load(&mut self, path: &[&[u8]]) -> Result<()> {
        let disk = Disk::new(&self.file, &self.meta);
        tx::load(&disk, &mut self.committed, Some(&mut self.root), path, 0).with_context(|| {
            let shown: Vec<String> = path.iter().map(|k| show(k)).collect();
            format!("loading {} from {}", shown.join("/"), self.path.display())
        })
    }

    /// Loads the whole tree.
    pub fn load_all(&mut self) -> Result<()> {
        self.load(&[])
    }

    /// True when root differs from what was last loaded/committed (a root replaced by one
    /// built in memory always does: it stands for the whole tree, unloaded keys included).
    pub fn is_dirty(&self) -> bool {
        self.root.page != self.committed.page || self.root != self.committed
    }

    /// Writes the changes as one bbolt transaction in place (see the module doc). No-op when
    /// clean. Afterwards nothing is loaded: load again to read or change more.
    pub fn commit(&mut self) -> Result<()> {
        if !self.is_dirty() {
            return Ok(());
        }
        self.commit_with(false)
    }

    /// Loads the whole tree and writes all of it to new pages in one transaction.
    pub fn rewrite(&mut self) -> Result<()> {
        self.load_all()?;
        self.commit_with(true)
    }

    /// The id of the transaction the file holds now: any commit, ours or containerd's, changes
    /// it.
    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    /// Commits; with `rewrite`, the whole loaded tree is written to new pages.
    fn commit_with(&mut self, rewrite: bool) -> Result<()> {
        let path = self.path.display().to_string();
        if let Some(key) = self
            .root
            .entries
            .iter()
            .find_map(|(k, n)| matches!(n, Node::Value(_)).then_some(k))
        {
            bail!(
                "writing key {}: bbolt's root bucket can only hold buckets",
                show(key)
            );
        }
        let disk = Disk::new(&self.file, &self.meta);
        let prev = self.meta;
        let (free, freelist_pages) = if prev.freelist == NO_FREELIST {
            (disk.unreachable(prev.root), 0)
        } else {
            disk.freelist(prev.freelist)
                .map(|(free, pages)| (Ok(free), pages))?
        };
        let free = free.with_context(|| format!("finding the free pages of {path}"))?;
        let mut alloc = Alloc::new(free, prev.pgid);
        let mut enc = Encoder {
            e: prev.endian,
            size: prev.page_size as usize,
            alloc: &mut alloc,
        };
        let root_page = (|| -> Result<u64> {
            let root = if rewrite || self.root.page == 0 {
                tx::release_tree(&disk, enc.alloc, prev.root)?;
                let whole = if rewrite {
                    self.root.detached()
                } else {
                    self.root.clone()
                };
                enc.paged(&whole)?
            } else {
                tx::save(&disk, &mut enc, &self.root, &self.committed, 0)?
            };
            Ok(root)
        })()
        .with_context(|| format!("encoding the changes to {path}"))?;
        // The freelist in the file's own form: a page listing every free page, or none for a
        // file whose writer rebuilds free space by walking (NoFreelistSync).
        if prev.freelist != NO_FREELIST {
            enc.alloc.release(prev.freelist, freelist_pages);
        }
        enc.alloc
            .check()
            .with_context(|| format!("writing to {path}; nothing written"))?;
        let freelist = if prev.freelist == NO_FREELIST {
            NO_FREELIST
        } else {
            enc.freelist()?
        };
        let meta = Meta {
            root: root_page,
            sequence: self.root.sequence,
            freelist,
            pgid: alloc.next,
            txid: prev.txid + 1,
            ..prev
        };
        let mut dirty = std::mem::take(&mut alloc.dirty);
        self.write(&mut dirty, &meta, &path)?;
        self.meta = meta;
        self.root = Bucket {
            sequence: meta.sequence,
            entries: BTreeMap::new(),
            page: meta.root,
        };
        self.committed = self.root.clone();
        Ok(())
    }

    /// Writes a transaction's pages, syncs, writes its meta page, syncs. Pages past the end
    /// of the file go first, so a full disk fails before any page inside the file changed;
    /// the file is then cut back to its old length, byte-identical.
    fn write(&mut self, dirty: &mut [(u64, Vec<u8>)], meta: &Meta, path: &str) -> Result<()> {
        let size = u64::from(meta.page_size);
        let old_len = self.len;
        dirty.sort_by_key(|&(id, _)| (id * size < old_len, id));
        let pages_written = (|| -> Result<()> {
            for (id, page) in dirty.iter() {
                self.file
                    .write_all_at(page, id * size)
                    .with_context(|| format!("writing page {id} of {path}"))?;
            }
            self.file
                .sync_data()
                .with_context(|| format!("syncing {path}"))
        })();
        if let Err(e) = pages_written {
            // No meta page names the new pages yet: cut them off again, so a failed commit
            // (a full disk) leaves the file as it was. Best effort; the error is the news.
            let _ = self.file.set_len(old_len);
            return Err(e);
        }
        let slot = meta.txid % 2;
        self.file
            .write_all_at(&meta.encode(), slot * size)
            .with_context(|| format!("writing meta page {slot} of {path}"))?;
        self.file
            .sync_data()
            .with_context(|| format!("syncing {path}"))?;
        self.len = old_len.max(meta.pgid * size);
        Ok(())
    }
}

/// The current meta of an open file of `len` bytes, reading only the start of the file (more
/// only if meta page 0 is damaged and the page size must be probed for, as Go does).
fn read_meta(file: &File, len: u64) -> Result<Meta> {
    let read = |n: u64| -> Result<Vec<u8>> {
        let mut buf = vec![0; len.min(n) as usize];
        file.read_exact_at(&mut buf, 0)
            .context("reading the meta pages")?;
        Ok(buf)
    };
    let meta = match current_meta(&read(2 * u64::from(page::MAX_COMMON_PAGE_SIZE))?) {
        Ok(m) => m,
        Err(_) => current_meta(&read(page::PROBE_LIMIT)?)?,
    };
    let end = meta.pgid.saturating_mul(u64::from(meta.page_size));
    if end > len {
        bail!(
            "meta page (txid {}): high-water mark {} is past the end of the file ({} pages)",
            meta.txid,
            meta.pgid,
            len / u64::from(meta.page_size)
        );
    }
    Ok(meta)
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

/// Writes Go's empty database, in byte order `order`, into the empty, locked `file` and
/// syncs it; returns its length.
fn init(file: &File, path: &Path, order: Endian, page_size: u32) -> Result<u64> {
    let bytes = write::empty_file(page_size, order);
    file.write_all_at(&bytes, 0)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing a new bbolt file at {}", path.display()))?;
    Ok(bytes.len() as u64)
}

/// Lower-case hex, as the dump format and error messages use.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = Vec::new();
    push_hex(&mut s, bytes);
    // ASCII digits only.
    String::from_utf8_lossy(&s).into_owned()
}

/// Appends `bytes` to `out` in lower-case hex.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let start = out.len();
    out.resize(start + bytes.len() * 2, 0);
    for (pair, &b) in out[start..].chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

/// The whole tree in `tests/bolt-check`'s dump format: one line per bucket
/// (`bucket <path> <sequence>`) and per value (`value <path> <hex>`), depth first in key
/// order, paths made of hex keys (`/` for the root).
pub fn dump(root: &Bucket) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail, and the dump is ASCII.
    let _ = dump_to(root, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`dump`], written to `out` line by line (a whole file's dump is tens of megabytes: it is
/// not built in memory first).
pub fn dump_to(root: &Bucket, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "bucket / {}", root.sequence)?;
    dump_into(out, &mut Vec::new(), &mut Vec::new(), root)
}

/// The lines under `bucket`, whose path is `path`; `line` is the buffer each is built in.
fn dump_into(
    out: &mut impl std::io::Write,
    path: &mut Vec<u8>,
    line: &mut Vec<u8>,
    bucket: &Bucket,
) -> std::io::Result<()> {
    use std::io::Write;
    for (key, node) in &bucket.entries {
        let parent = path.len();
        path.push(b'/');
        push_hex(path, key);
        line.clear();
        match node {
            Node::Bucket(b) => {
                line.extend_from_slice(b"bucket ");
                line.extend_from_slice(path);
                write!(line, " {}", b.sequence)?;
            }
            Node::Value(v) => {
                line.extend_from_slice(b"value ");
                line.extend_from_slice(path);
                line.push(b' ');
                push_hex(line, v);
            }
        }
        line.push(b'\n');
        out.write_all(line)?;
        if let Node::Bucket(b) = node {
            dump_into(out, path, line, b)?;
        }
        path.truncate(parent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use page::{Endian::Big, Endian::Little};
    use random::Rng;

    /// A file holding one commit at a time in a temp dir, read back after each commit.
    struct File1 {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl File1 {
        fn new(size: u32, endian: Endian) -> File1 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("meta.db");
            drop(Db::create_with(&path, endian, size).unwrap());
            File1 { _dir: dir, path }
        }

        /// The same in containerd >= 1.7's form: no freelist page (free pages are found by
        /// walking the tree).
        fn without_freelist(size: u32, endian: Endian) -> File1 {
            let file = File1::new(size, endian);
            let mut bytes = file.bytes();
            for txid in 0..2u64 {
                let at = txid as usize * size as usize;
                let meta = Meta {
                    freelist: page::NO_FREELIST,
                    ..Meta::parse(&bytes[at..]).unwrap()
                };
                bytes[at..at + size as usize].copy_from_slice(&meta.encode());
            }
            std::fs::write(&file.path, bytes).unwrap();
            file
        }

        fn bytes(&self) -> Vec<u8> {
            std::fs::read(&self.path).unwrap()
        }

        /// Makes the file hold `tree`: loads everything, changes only what differs (so the
        /// commit edits pages in place of rewriting), commits and reads the file back.
        fn commit(&self, tree: &Bucket) -> read::Loaded {
            let mut db = Db::open(&self.path, Little).unwrap();
            db.load_all().unwrap();
            let before = db.meta;
            if before.freelist == page::NO_FREELIST {
                // The file-order scan finds exactly the pages the tree walk does not reach.
                let walked = read::load(&self.bytes()).unwrap().free;
                let scanned = Disk::new(&db.file, &before)
                    .unreachable(before.root)
                    .unwrap();
                assert_eq!(scanned, walked);
            }
            assign(db.root_mut(), tree);
            let dirty = db.is_dirty();
            db.commit().unwrap();
            drop(db);
            let after = read::load(&self.bytes()).unwrap();
            // tx.Check(): every page below the high-water mark is meta, reachable or free.
            assert!(after.leaked.is_empty(), "leaked pages {:?}", after.leaked);
            assert_eq!(after.meta.txid, before.txid + u64::from(dirty));
            assert!(after.tree == *tree, "the file holds another tree");
            // The tree-only read (dump, verify) checks and finds the same.
            assert!(read::tree(&self.bytes()).unwrap() == *tree);
            after
        }
    }

    /// Makes `dst` equal `src`, keeping `dst`'s loaded buckets where `src` has buckets.
    fn assign(dst: &mut Bucket, src: &Bucket) {
        dst.sequence = src.sequence;
        dst.entries.retain(|k, _| src.entries.contains_key(k));
        for (k, n) in &src.entries {
            match (dst.entries.get_mut(k), n) {
                (Some(Node::Bucket(d)), Node::Bucket(s)) => assign(d, s),
                _ => {
                    dst.entries.insert(k.clone(), n.clone());
                }
            }
        }
    }

    type Pairs<'a> = &'a [(&'a [u8], Vec<u8>)];

    fn value_tree(buckets: &[(&[u8], Pairs)]) -> Bucket {
        let mut root = Bucket::default();
        for (name, kvs) in buckets {
            let b = root.bucket_at_mut(&[name]).unwrap();
            for (k, v) in *kvs {
                b.put(k, v).unwrap();
            }
        }
        root
    }

    #[test]
    fn random_trees_round_trip_in_every_page_size_and_byte_order() {
        for seed in 0..12u64 {
            let mut r = Rng::new(seed);
            let (size, endian) =
                [(4096, Little), (1024, Big), (65536, Little), (8192, Big)][seed as usize % 4];
            let file = if seed % 3 == 0 {
                File1::without_freelist(size, endian)
            } else {
                File1::new(size, endian)
            };
            let mut tree = random::tree(&mut r);
            for round in 0..4 {
                if round > 0 {
                    random::change(&mut r, &mut tree);
                }
                let loaded = file.commit(&tree);
                assert_eq!(loaded.meta.page_size, size);
                assert_eq!(loaded.meta.endian, endian);
            }
        }
    }

    #[test]
    fn random_trees_need_branch_overflow_and_inline_pages() {
        // The generator must actually produce what the round trips claim to cover.
        let (mut branch, mut overflow, mut inline, mut deep) = (false, false, false, false);
        for seed in 0..12u64 {
            let tree = random::tree(&mut Rng::new(seed));
            let file = File1::new(4096, Little);
            let loaded = file.commit(&tree);
            let bytes = file.bytes();
            fn walk(s: &read::Shape, depth: usize, f: &mut dyn FnMut(&read::Shape, usize)) {
                f(s, depth);
                s.children.values().for_each(|c| walk(c, depth + 1, f));
            }
            walk(&loaded.shape, 0, &mut |s, depth| {
                inline |= s.root == 0;
                deep |= depth > 20;
                if s.root != 0 {
                    let at = s.root as usize * 4096;
                    branch |= bytes[at + 8] == 0x01;
                }
                for &id in &s.pages {
                    let at = id as usize * 4096;
                    overflow |= u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap()) > 0
                        && u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) == id;
                }
            });
        }
        assert!(
            branch && overflow && inline && deep,
            "{branch} {overflow} {inline} {deep}"
        );
    }

    #[test]
    fn a_commit_rewrites_only_the_pages_on_the_changed_path_and_reuses_free_ones() {
        let many: Vec<(&[u8], Vec<u8>)> = Vec::new();
        let mut tree = value_tree(&[(b"a", &many), (b"b", &many)]);
        for name in [&b"a"[..], b"b"] {
            let b = tree.bucket_at_mut(&[name]).unwrap();
            for i in 0..2000u32 {
                b.put(format!("key-{i:05}").as_bytes(), &[7; 50]).unwrap();
            }
        }
        let file = File1::new(4096, Little);
        let first = file.commit(&tree);
        let pages = |l: &read::Loaded, name: &[u8]| l.shape.children[name].pages.clone();
        let a_before = pages(&first, b"a");
        tree.bucket_at_mut(&[b"a"])
            .unwrap()
            .put(b"key-01000", b"x")
            .unwrap();
        let second = file.commit(&tree);
        // Bucket b untouched; in bucket a only the leaf holding the key and the branch page
        // above it are new; the root leaf too; and the freelist page.
        assert_eq!(pages(&second, b"b"), pages(&first, b"b"));
        let a_after = pages(&second, b"a");
        let new: Vec<_> = a_after.iter().filter(|p| !a_before.contains(p)).collect();
        assert_eq!(new.len(), 2, "{new:?}");
        assert_eq!(a_after.len(), a_before.len());
        // Commits from now on take their pages from the ones earlier commits freed: the file
        // stops growing.
        for i in 0..20u32 {
            tree.bucket_at_mut(&[b"a"])
                .unwrap()
                .put(format!("key-{:05}", i * 97).as_bytes(), &i.to_le_bytes())
                .unwrap();
            file.commit(&tree);
        }
        let last = read::load(&file.bytes()).unwrap();
        assert!(
            last.meta.pgid <= second.meta.pgid + 8,
            "{} pages after 20 more commits, {} before",
            last.meta.pgid,
            second.meta.pgid
        );
    }

    #[test]
    fn buckets_are_inlined_exactly_when_go_would() {
        let mut tree = Bucket::default();
        let v1 = tree.bucket_at_mut(&[b"v1"]).unwrap();
        v1.bucket_at_mut(&[b"empty"]).unwrap().sequence = 5;
        // 16 + 16 + 4 + 988 = 1024 = pageSize / 4: inline; one byte more: a page.
        v1.bucket_at_mut(&[b"fits"])
            .unwrap()
            .put(b"kkkk", &[1; 988])
            .unwrap();
        v1.bucket_at_mut(&[b"big"])
            .unwrap()
            .put(b"kkkk", &[1; 989])
            .unwrap();
        v1.bucket_at_mut(&[b"parent", b"child"]).unwrap();
        let file = File1::new(4096, Little);
        let loaded = file.commit(&tree);
        let v1 = &loaded.shape.children[&b"v1"[..]];
        assert_ne!(v1.root, 0);
        assert_eq!(v1.children[&b"empty"[..]].root, 0);
        assert_eq!(v1.children[&b"fits"[..]].root, 0);
        assert_ne!(v1.children[&b"big"[..]].root, 0);
        assert_ne!(v1.children[&b"parent"[..]].root, 0);
        assert_eq!(v1.children[&b"parent"[..]].children[&b"child"[..]].root, 0);
        // An empty inline bucket is the 32-byte value containerd writes: {0, seq} + empty leaf.
        let hex_file = hex(&file.bytes());
        let empty = format!(
            "{}{}{}",
            hex(&0u64.to_le_bytes()),
            hex(&5u64.to_le_bytes()),
            hex(&[0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])
        );
        assert!(hex_file.contains(&format!("{}{empty}", hex(b"empty"))));
    }

    #[test]
    fn huge_freelists_use_the_count_escape() {
        // A 34 MB value on 512-byte pages: 66 000 pages, all freed by the next commit.
        let mut tree = value_tree(&[(b"big", &[(b"v", vec![3; 34_000_000])])]);
        let file = File1::new(512, Little);
        file.commit(&tree);
        tree.bucket_at_mut(&[b"big"])
            .unwrap()
            .put(b"v", b"small")
            .unwrap();
        let loaded = file.commit(&tree);
        assert!(loaded.free.len() > 0xFFFF);
        let bytes = file.bytes();
        let at = loaded.meta.freelist as usize * 512;
        assert_eq!(&bytes[at + 10..at + 12], &[0xff, 0xff]);
        assert_eq!(
            u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap()),
            loaded.free.len() as u64
        );
    }

    /// A small file with every page kind: branch, leaves, overflow, inline buckets, a
    /// non-empty freelist.
    fn sample_file(size: u32) -> Vec<u8> {
        let mut tree = Bucket::default();
        let v1 = tree.bucket_at_mut(&[b"v1"]).unwrap();
        v1.sequence = 9;
        for i in 0..150u32 {
            v1.put(format!("key-{i:04}").as_bytes(), &i.to_le_bytes())
                .unwrap();
        }
        v1.put(b"large", &[5; 3000]).unwrap();
        v1.bucket_at_mut(&[b"inline"])
            .unwrap()
            .put(b"a", b"b")
            .unwrap();
        let file = File1::new(size, Little);
        file.commit(&tree);
        tree.bucket_at_mut(&[b"v1"])
            .unwrap()
            .put(b"key-0001", b"changed")
            .unwrap();
        file.commit(&tree);
        file.bytes()
    }

    #[test]
    fn damaged_files_give_errors_naming_the_page_never_panics() {
        let good = sample_file(512);
        let tree = read_tree(&good).unwrap();
        for len in (0..good.len()).step_by(7) {
            if let Ok(t) = read_tree(&good[..len]) {
                assert_eq!(t, tree, "truncated to {len} bytes");
            }
        }
        let mut r = Rng::new(1);
        let mut errors = 0;
        for _ in 0..8_000 {
            let mut bad = good.clone();
            for _ in 0..1 + r.below(3) {
                let at = r.below(bad.len() as u64) as usize;
                bad[at] ^= 1 << r.below(8);
            }
            // A flip in a value or in slack changes nothing structural: Ok is fine too.
            if let Err(e) = read_tree(&bad) {
                errors += 1;
                let msg = format!("{e:#}");
                assert!(msg.contains("page") || msg.contains("meta"), "{msg}");
            }
        }
        assert!(
            errors > 500,
            "only {errors} of 8000 damaged files were refused"
        );
    }

    #[test]
    fn specific_damage_is_named() {
        let good = sample_file(4096);
        let loaded = read::load(&good).unwrap();
        let root = loaded.shape.children[&b"v1"[..]].root as usize;
        let err = |bytes: &[u8]| format!("{:#}", read_tree(bytes).unwrap_err());

        let mut bad = good.clone();
        bad[root * 4096] ^= 0x40;
        assert!(
            err(&bad).contains(&format!("page {root}: its header says page")),
            "{}",
            err(&bad)
        );

        // A branch element pointing back at its own page: a cycle.
        let mut bad = good.clone();
        assert_eq!(bad[root * 4096 + 8], 0x01, "v1 should need a branch page");
        bad[root * 4096 + 16 + 8..root * 4096 + 16 + 16]
            .copy_from_slice(&(root as u64).to_le_bytes());
        assert!(
            err(&bad).contains(&format!("page {root}: referenced twice")),
            "{}",
            err(&bad)
        );

        // An inline bucket claiming more elements than it holds: named inside its page.
        // (the key, then the value: a 16-byte bucket header, then the page header's flags
        // and count; every copy of it is damaged, the live one among them)
        let mut bad = good.clone();
        let counts: Vec<usize> = (0..good.len() - 40)
            .filter(|&at| &good[at..at + 6] == b"inline")
            .map(|at| at + 6 + 16 + 10)
            .filter(|&count| good[count - 2..count + 2] == [2, 0, 1, 0])
            .collect();
        assert!(!counts.is_empty());
        for count in counts {
            bad[count..count + 2].copy_from_slice(&[0xff, 0xff]);
        }
        let msg = err(&bad);
        assert!(
            msg.contains("inline bucket \"inline\" in page ") && msg.contains("lies outside"),
            "{msg}"
        );

        // Both metas damaged: refused, never repaired.
        let mut bad = good.clone();
        bad[40] ^= 1;
        bad[4096 + 40] ^= 1;
        assert!(err(&bad).contains("no valid meta page"), "{}", err(&bad));

        // One meta torn: the other one is used, so the previous transaction is read.
        let current = loaded.meta.txid % 2;
        let mut torn = good.clone();
        torn[current as usize * 4096 + 40] ^= 1;
        let previous = read::load(&torn).unwrap();
        assert_eq!(previous.meta.txid, loaded.meta.txid - 1);
        assert_eq!(
            previous
                .tree
                .bucket_at(&[b"v1"])
                .unwrap()
                .value(b"key-0001"),
            Some(&1u32.to_le_bytes()[..])
        );
    }

    #[test]
    fn db_commits_in_place_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let mut db = Db::create(&path, Little).unwrap();
        assert!(!db.is_dirty());
        db.commit().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * 4096);
        db.root_mut()
            .bucket_at_mut(&[b"v1", b"k8s.io"])
            .unwrap()
            .put(b"k", b"v")
            .unwrap();
        assert!(db.is_dirty());
        let err = format!("{:#}", Db::open(&path, Little).err().unwrap());
        assert!(err.contains("containerd appears to be running"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        db.commit().unwrap();
        assert!(!db.is_dirty());
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        drop(db);
        let mut db = Db::open(&path, Little).unwrap();
        db.load(&[b"v1", b"k8s.io"]).unwrap();
        assert_eq!(
            db.root()
                .bucket_at(&[b"v1", b"k8s.io"])
                .unwrap()
                .value(b"k"),
            Some(&b"v"[..])
        );
        assert_eq!(db.meta.txid, 2);
        // In place: same inode, never a rename.
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()),
            ino
        );
        drop(db);

        assert!(format!("{:#}", Db::create(&path, Little).err().unwrap()).contains("creating"));
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        let db = Db::open(&empty, Big).unwrap();
        assert_eq!(db.root(), &Bucket::default());
        assert_eq!(db.meta.endian, Big);
        drop(db);
        assert_eq!(byte_order(&std::fs::read(&empty).unwrap()).unwrap(), Big);
        // An existing file keeps its own order whatever a new one would get.
        let mut db = Db::open(&path, Big).unwrap();
        db.root_mut()
            .bucket_at_mut(&[b"v2"])
            .unwrap()
            .put(b"k", b"v")
            .unwrap();
        db.commit().unwrap();
        drop(db);
        assert_eq!(byte_order(&std::fs::read(&path).unwrap()).unwrap(), Little);
    }

    #[test]
    fn writer_refuses_what_go_would_refuse() {
        let file = File1::new(4096, Little);
        let refused = |root: Bucket| {
            let mut db = Db::open(&file.path, Little).unwrap();
            *db.root_mut() = root;
            let before = file.bytes();
            let err = format!("{:#}", db.commit().unwrap_err());
            assert_eq!(file.bytes(), before, "written although refused: {err}");
            err
        };
        let mut root = Bucket::default();
        root.put(b"plain", b"value").unwrap();
        assert!(refused(root).contains("root bucket"));
        let mut root = Bucket::default();
        root.bucket_at_mut(&[b"b"]).unwrap().put(b"", b"x").unwrap();
        assert!(refused(root).contains("1 to 32768 bytes"));
        // Deeper than the reader accepts: refused before anything is written.
        let mut root = Bucket::default();
        let path: Vec<&[u8]> = vec![&b"d"[..]; 200];
        root.bucket_at_mut(&path).unwrap();
        let err = refused(root);
        assert!(err.contains("nested more than 128 deep"), "{err}");
        // A key that is in the file but was never loaded is not silently overwritten.
        let mut tree = Bucket::default();
        // A nested bucket keeps v1 on its own page, so its keys can be loaded one by one.
        tree.bucket_at_mut(&[b"v1", b"nested"]).unwrap();
        tree.bucket_at_mut(&[b"v1"])
            .unwrap()
            .put(b"k", b"1")
            .unwrap();
        file.commit(&tree);
        let mut db = Db::open(&file.path, Little).unwrap();
        db.load(&[b"v1", b"other"]).unwrap();
        db.root_mut()
            .bucket_at_mut(&[b"v1"])
            .unwrap()
            .put(b"k", b"2")
            .unwrap();
        let err = format!("{:#}", db.commit().unwrap_err());
        assert!(err.contains("load keys before changing them"), "{err}");
    }

    #[test]
    fn a_freelist_listing_a_page_in_use_is_refused_before_writing() {
        let mut tree = value_tree(&[(b"a", &[(b"k", vec![1; 2000])])]);
        let file = File1::new(4096, Little);
        file.commit(&tree);
        tree.bucket_at_mut(&[b"a"])
            .unwrap()
            .put(b"k", b"2")
            .unwrap();
        let loaded = file.commit(&tree);
        // Damage: the freelist also lists the root page, which is in use.
        let mut bytes = file.bytes();
        let at = loaded.meta.freelist as usize * 4096;
        let count = u16::from_le_bytes(bytes[at + 10..at + 12].try_into().unwrap());
        assert!(count > 0);
        let slot = at + 16 + 8 * count as usize;
        bytes[slot..slot + 8].copy_from_slice(&loaded.meta.root.to_le_bytes());
        bytes[at + 10..at + 12].copy_from_slice(&(count + 1).to_le_bytes());
        std::fs::write(&file.path, &bytes).unwrap();
        let mut db = Db::open(&file.path, Little).unwrap();
        db.load(&[b"a", b"k"]).unwrap();
        db.root_mut()
            .bucket_at_mut(&[b"a"])
            .unwrap()
            .put(b"k", b"3")
            .unwrap();
        let err = format!("{:#}", db.commit().unwrap_err());
        assert!(err.contains("the freelist is damaged"), "{err}");
        assert_eq!(file.bytes(), bytes);
    }

    #[test]
    fn dump_format() {
        let mut root = Bucket {
            sequence: 3,
            ..Bucket::default()
        };
        let b = root.bucket_at_mut(&[b"v1"]).unwrap();
        b.sequence = 7;
        b.put(b"k", b"\x00\xff").unwrap();
        b.put(b"e", b"").unwrap();
        assert_eq!(
            dump(&root),
            "bucket / 3\nbucket /7631 7\nvalue /7631/65 \nvalue /7631/6b 00ff\n"
        );
        // a nested bucket's lines, then its parent's path again for the next key
        root.bucket_at_mut(&[b"v1", b"a"])
            .unwrap()
            .put(b"x", b"1")
            .unwrap();
        let mut streamed = Vec::new();
        dump_to(&root, &mut streamed).unwrap();
        assert_eq!(
            String::from_utf8(streamed).unwrap(),
            "bucket / 3\nbucket /7631 7\nbucket /7631/61 0\nvalue /7631/61/78 31\n\
             value /7631/65 \nvalue /7631/6b 00ff\n"
        );
    }

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
