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

pub mod page;
pub mod random;
mod read;
mod write;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

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

/// The byte order of a bbolt file (of its current meta page), which only a machine of the
/// same order can open.
pub fn byte_order(bytes: &[u8]) -> Result<Endian> {
    Ok(page::current_meta(bytes)?.endian)
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
}

impl Db {
    /// Opens an existing bbolt file: flock(LOCK_EX|LOCK_NB) first, then reads the whole tree.
    /// If locked: fails at once, saying containerd appears to be running on that root. A
    /// zero-length file (an interrupted create) is initialised as a new file in byte order
    /// `order_if_new`, as Go does in its own order; a file with content keeps its order.
    pub fn open(path: &Path, order_if_new: Endian) -> Result<Db> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        lock(&file, path)?;
        let len = file.metadata().map_or(0, |m| m.len());
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or_default());
        file.read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        if bytes.is_empty() {
            bytes = init(&file, path, order_if_new)?;
        }
        let loaded = read::load(&bytes).with_context(|| format!("reading {}", path.display()))?;
        Ok(Db::from_loaded(path, file, bytes, loaded))
    }

    /// Creates a new bbolt file at `path` (must not exist; page size 4096), locked, with an
    /// empty root bucket, laid out exactly as Go's bbolt creates one on a machine of byte
    /// order `order` (the machine that will open it: Go reads its own order only).
    pub fn create(path: &Path, order: Endian) -> Result<Db> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        lock(&file, path)?;
        let bytes = init(&file, path, order)?;
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
        self.commit_with(true)
    }

    /// Rewrites every page of the tree in one transaction (no page is kept).
    pub fn rewrite(&mut self) -> Result<()> {
        self.commit_with(false)
    }

    /// Commits, keeping the pages of unchanged buckets only if `keep`.
    fn commit_with(&mut self, keep: bool) -> Result<()> {
        let path = self.path.display().to_string();
        let old = keep.then_some((&self.committed, &self.shape));
        let enc = write::encode(&self.root, old, &self.meta)
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
        let check = read::load_with(enc.meta, &pages, Some(&enc.shape))
            .with_context(|| format!("verifying the transaction for {path} before writing it"))?;
        if !read::same_tree(&check.tree, &check.shape, &self.root, base) || !check.leaked.is_empty()
        {
            bail!(
                "verifying the transaction for {path}: re-reading the new pages gives a \
                 different tree or leaks pages {:?}; nothing written",
                check.leaked
            );
        }

        let old_len = self
            .file
            .metadata()
            .with_context(|| format!("reading the size of {path}"))?
            .len();
        let pages_written = (|| -> Result<()> {
            for &(id, n) in &enc.runs {
                let at = (id - base) as usize * size;
                self.file
                    .write_all_at(&enc.pages[at..at + n as usize * size], id * size as u64)
                    .with_context(|| format!("writing page {id} of {path}"))?;
            }
            self.file
                .sync_data()
                .with_context(|| format!("syncing {path}"))?;
            Ok(())
        })();
        if let Err(e) = pages_written {
            // No meta page names the new pages yet: cut them off again, so a failed commit
            // (a full disk) leaves the file byte-identical. Best effort; the error is the news.
            let _ = self.file.set_len(old_len);
            return Err(e);
        }
        let meta_page = enc.meta.encode();
        let slot = enc.meta.txid % 2;
        self.file
            .write_all_at(&meta_page, slot * size as u64)
            .with_context(|| format!("writing meta page {slot} of {path}"))?;
        self.file
            .sync_data()
            .with_context(|| format!("syncing {path}"))?;

        apply(&mut self.bytes, &self.meta, &enc);
        self.meta = enc.meta;
        self.shape = enc.shape;
        self.committed = self.root.clone();
        Ok(())
    }
}

/// Updates the in-memory file image `bytes` (described by `prev`) with a commit's pages and
/// meta page, as the disk now holds them.
fn apply(bytes: &mut Vec<u8>, prev: &Meta, enc: &write::Encoded) {
    let size = prev.page_size as usize;
    let start = prev.pgid as usize * size;
    let end = enc.meta.pgid as usize * size;
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(&enc.pages);
    let slot = (enc.meta.txid % 2) as usize * size;
    bytes[slot..slot + size].copy_from_slice(&enc.meta.encode());
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
/// syncs it.
fn init(file: &File, path: &Path, order: Endian) -> Result<Vec<u8>> {
    let bytes = write::empty_file(NEW_PAGE_SIZE, order);
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

#[cfg(test)]
mod tests {
    use super::*;
    use page::{Endian::Big, Endian::Little};
    use random::Rng;

    /// Commits `tree` onto the in-memory file `bytes` and reads the result back.
    fn commit_in_memory(bytes: &mut Vec<u8>, tree: &Bucket, keep: bool) -> Loaded {
        let before = read::load(bytes).unwrap();
        let old = keep.then_some((&before.tree, &before.shape));
        let enc = write::encode(tree, old, &before.meta).unwrap();
        assert!(enc.runs.first().is_some_and(|r| r.0 == before.meta.pgid));
        apply(bytes, &before.meta, &enc);
        let after = read::load(bytes).unwrap();
        // tx.Check(): every page below the high-water mark is meta, reachable or free.
        assert!(after.leaked.is_empty(), "leaked pages {:?}", after.leaked);
        assert_eq!(after.meta.txid, before.meta.txid + 1);
        after
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
            let mut bytes = write::empty_file(size, endian);
            let mut tree = random::tree(&mut r);
            for round in 0..4 {
                if round > 0 {
                    random::change(&mut r, &mut tree);
                }
                let loaded = commit_in_memory(&mut bytes, &tree, round != 2);
                assert!(
                    loaded.tree == tree,
                    "seed {seed} round {round}: tree differs"
                );
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
            let bytes = {
                let mut b = write::empty_file(4096, Little);
                commit_in_memory(&mut b, &tree, true);
                b
            };
            let loaded = read::load(&bytes).unwrap();
            fn walk(s: &Shape, depth: usize, f: &mut dyn FnMut(&Shape, usize)) {
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
    fn unchanged_buckets_keep_their_pages() {
        let many: Vec<(&[u8], Vec<u8>)> = Vec::new();
        let mut tree = value_tree(&[(b"a", &many), (b"b", &many)]);
        for name in [&b"a"[..], b"b"] {
            let b = tree.bucket_at_mut(&[name]).unwrap();
            for i in 0..2000u32 {
                b.put(format!("key-{i:05}").as_bytes(), &[7; 50]).unwrap();
            }
        }
        let mut bytes = write::empty_file(4096, Little);
        let first = commit_in_memory(&mut bytes, &tree, true);
        tree.bucket_at_mut(&[b"a"])
            .unwrap()
            .put(b"new", b"x")
            .unwrap();
        let second = commit_in_memory(&mut bytes, &tree, true);
        assert_eq!(
            second.shape.children[&b"b"[..]],
            first.shape.children[&b"b"[..]]
        );
        assert_ne!(
            second.shape.children[&b"a"[..]].root,
            first.shape.children[&b"a"[..]].root
        );
        let b_pages = first.shape.children[&b"b"[..]].pages.len() as u64;
        // The new pages: bucket a, the root leaf, the freelist; b's 30-odd pages stay.
        assert!(second.meta.pgid - first.meta.pgid < first.meta.pgid - 4 - b_pages / 2);
        // A full rewrite keeps nothing: every old page becomes free.
        let third = commit_in_memory(&mut bytes, &tree, false);
        assert!(third.free.len() as u64 >= second.meta.pgid - 2 - 1);
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
        let mut bytes = write::empty_file(4096, Little);
        let loaded = commit_in_memory(&mut bytes, &tree, true);
        let v1 = &loaded.shape.children[&b"v1"[..]];
        assert_ne!(v1.root, 0);
        assert_eq!(v1.children[&b"empty"[..]].root, 0);
        assert_eq!(v1.children[&b"fits"[..]].root, 0);
        assert_ne!(v1.children[&b"big"[..]].root, 0);
        assert_ne!(v1.children[&b"parent"[..]].root, 0);
        assert_eq!(v1.children[&b"parent"[..]].children[&b"child"[..]].root, 0);
        // An empty inline bucket is the 32-byte value containerd writes: {0, seq} + empty leaf.
        let hex_file = hex(&bytes);
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
        let mut bytes = write::empty_file(512, Little);
        commit_in_memory(&mut bytes, &tree, true);
        tree.bucket_at_mut(&[b"big"])
            .unwrap()
            .put(b"v", b"small")
            .unwrap();
        let loaded = commit_in_memory(&mut bytes, &tree, true);
        assert!(loaded.free.len() > 0xFFFF);
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
        let mut bytes = write::empty_file(size, Little);
        commit_in_memory(&mut bytes, &tree, true);
        tree.bucket_at_mut(&[b"v1"])
            .unwrap()
            .put(b"key-0001", b"changed")
            .unwrap();
        commit_in_memory(&mut bytes, &tree, true);
        bytes
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
        let db = Db::open(&path, Little).unwrap();
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
        let meta = read::load(&write::empty_file(4096, Little)).unwrap().meta;
        let mut root = Bucket::default();
        root.put(b"plain", b"value").unwrap();
        assert!(
            format!("{:#}", write::encode(&root, None, &meta).unwrap_err()).contains("root bucket")
        );
        let mut root = Bucket::default();
        root.bucket_at_mut(&[b"b"]).unwrap().put(b"", b"x").unwrap();
        assert!(
            format!("{:#}", write::encode(&root, None, &meta).unwrap_err())
                .contains("1 to 32768 bytes")
        );
        // Deeper than the reader accepts: refused before anything is written.
        let mut root = Bucket::default();
        let path: Vec<&[u8]> = vec![&b"d"[..]; 200];
        root.bucket_at_mut(&path).unwrap();
        let err = format!("{:#}", write::encode(&root, None, &meta).unwrap_err());
        assert!(err.contains("nested more than 128 deep"), "{err}");
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
