//! Page-granular access to an open bbolt file: positioned reads of single pages, loading the
//! keys a caller asks for, finding free space, and editing a bucket's B+tree so that only the
//! pages on the paths to changed keys are rewritten (copy-on-write up to the bucket's root,
//! as bbolt's `node.spill` does). Memory and reads grow with the pages a transaction touches,
//! not with the file; only a file without a freelist page (containerd >= 1.7) is read whole,
//! once, in file order, to find its free pages (Go's `freepages` walks the tree on open).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{anyhow, bail, Context, Result};

use super::page::{
    Endian, Meta, BRANCH, BUCKET_HEADER, BUCKET_LEAF, COUNT_ESCAPE, FREELIST, LEAF, PAGE_HEADER,
};
use super::read::{
    branch_element, check_key, leaf_element, show, MAX_BUCKET_DEPTH, MAX_PAGE_DEPTH,
};
use super::write::{check_elem, Alloc, Child, Elem, Encoder};
use super::{Bucket, Node};

/// The pages of one open file as its current meta describes them.
pub struct Disk<'f> {
    pub file: &'f File,
    pub e: Endian,
    pub size: usize,
    /// High-water mark: every page in use is below it.
    pub pgid: u64,
}

/// One page with its overflow pages.
pub struct Page {
    pub flags: u16,
    pub count: u16,
    /// 1 + overflow.
    pub pages: u64,
    pub buf: Vec<u8>,
}

/// A leaf element as stored: flags, key, value.
type Raw<'a> = (u32, &'a [u8], &'a [u8]);

/// A change to one key of a bucket.
#[derive(Debug)]
pub enum Op {
    /// Set the key's element; `replaces` says whether the key exists on disk now.
    Put {
        flags: u32,
        value: Vec<u8>,
        replaces: bool,
    },
    Delete,
}

impl<'f> Disk<'f> {
    pub fn new(file: &'f File, meta: &Meta) -> Disk<'f> {
        Disk {
            file,
            e: meta.endian,
            size: meta.page_size as usize,
            pgid: meta.pgid,
        }
    }

    /// Reads page `id` and its overflow pages with positioned reads.
    pub fn page(&self, id: u64) -> Result<Page> {
        if id < 2 {
            bail!("page {id}: a meta page is referenced as a tree page");
        }
        if id >= self.pgid {
            bail!("page {id}: beyond the high-water mark {}", self.pgid);
        }
        let size = self.size as u64;
        let mut buf = vec![0; self.size];
        self.file
            .read_exact_at(&mut buf, id * size)
            .with_context(|| format!("reading page {id}"))?;
        let e = self.e;
        let header = e.u64(&buf, 0).unwrap_or_default();
        if header != id {
            bail!("page {id}: its header says page {header}");
        }
        let flags = e.u16(&buf, 8).unwrap_or_default();
        let count = e.u16(&buf, 10).unwrap_or_default();
        let overflow = u64::from(e.u32(&buf, 12).unwrap_or_default());
        if id + overflow >= self.pgid {
            bail!(
                "page {id}: its {overflow} overflow pages go past the high-water mark {}",
                self.pgid
            );
        }
        if overflow > 0 {
            buf.resize((overflow as usize + 1) * self.size, 0);
            self.file
                .read_exact_at(&mut buf[self.size..], (id + 1) * size)
                .with_context(|| format!("reading the {overflow} overflow pages of page {id}"))?;
        }
        Ok(Page {
            flags,
            count,
            pages: overflow + 1,
            buf,
        })
    }

    /// The free page ids of the freelist page `id`, ascending.
    pub fn freelist(&self, id: u64) -> Result<(Vec<u64>, u64)> {
        let p = self
            .page(id)
            .with_context(|| format!("reading the freelist (page {id})"))?;
        if p.flags != FREELIST {
            bail!(
                "page {id}: the meta names it as the freelist, but its flags are {:#x}",
                p.flags
            );
        }
        let (n, start) = if p.count == COUNT_ESCAPE {
            let n = self
                .e
                .u64(&p.buf, PAGE_HEADER)
                .ok_or_else(|| anyhow!("page {id}: freelist count missing"))?;
            (n, PAGE_HEADER + 8)
        } else {
            (u64::from(p.count), PAGE_HEADER)
        };
        if n > ((p.buf.len() - start) / 8) as u64 {
            bail!("page {id}: freelist count {n} does not fit in the page");
        }
        let mut free: Vec<u64> = (0..n as usize)
            .map(|i| self.e.u64(&p.buf, start + i * 8).unwrap_or_default())
            .collect();
        free.sort_unstable();
        for w in free.windows(2) {
            if w[0] == w[1] {
                bail!("page {id}: page {} is listed free twice", w[0]);
            }
        }
        if let Some(&bad) = free.iter().find(|&&f| f < 2 || f >= self.pgid) {
            bail!(
                "page {id}: freelist entry {bad} is outside [2, {})",
                self.pgid
            );
        }
        Ok((free, p.pages))
    }

    /// Free pages of a file without a freelist page: every id in `[2, pgid)` the tree does
    /// not reach. Go walks the tree through its memory map; here the file is read once in
    /// file order, in chunks, noting for every position what a page starting there points at
    /// (children, nested buckets' roots), and the tree is then followed through those notes.
    /// Memory: a few bytes per page and one chunk; a page reached twice is an error.
    pub fn unreachable(&self, root: u64) -> Result<Vec<u64>> {
        let used = self.reachable(root)?;
        Ok((2..self.pgid).filter(|&id| !used[id as usize]).collect())
    }

    /// Which pages the tree rooted at `root` uses, indexed by id (see [`Disk::unreachable`]).
    pub fn reachable(&self, root: u64) -> Result<Vec<bool>> {
        const CHUNK: u64 = 256;
        const BAD: u32 = u32::MAX;
        let n = self.pgid as usize;
        // Per position: overflow of the page starting there (BAD: no valid tree page), and
        // its edges, edges[first[p]..first[p + 1]].
        let mut over = vec![BAD; n];
        let mut first = vec![0u32; n + 1];
        let mut edges: Vec<u64> = Vec::new();
        let size = self.size;
        let mut chunk = Vec::new();
        let mut start = 2u64.min(self.pgid);
        while start < self.pgid {
            let count = CHUNK.min(self.pgid - start);
            chunk.resize(count as usize * size, 0);
            self.file
                .read_exact_at(&mut chunk, start * size as u64)
                .with_context(|| format!("reading pages {start} to {}", start + count - 1))?;
            for id in start..start + count {
                let at = (id - start) as usize * size;
                first[id as usize] = u32::try_from(edges.len()).context("too many pages")?;
                let mark = edges.len();
                if let Ok(o) = self.note(id, &chunk[at..], start + count, &mut edges) {
                    over[id as usize] = o;
                } else {
                    edges.truncate(mark);
                }
            }
            start += count;
        }
        first[n] = u32::try_from(edges.len()).context("too many pages")?;
        let mut used = vec![false; n];
        let mut todo = vec![root];
        while let Some(id) = todo.pop() {
            let o = over.get(id as usize).copied().unwrap_or(BAD);
            if o == BAD {
                return Err(self.explain(id));
            }
            for p in id..=id + u64::from(o) {
                if std::mem::replace(&mut used[p as usize], true) {
                    bail!("page {p}: referenced twice");
                }
            }
            todo.extend_from_slice(
                &edges[first[id as usize] as usize..first[id as usize + 1] as usize],
            );
        }
        Ok(used)
    }

    /// Notes what a branch or leaf page starting at `id` (its bytes from `buf`, which holds
    /// the file up to page `end`) points at; returns its overflow. Err: no such page there.
    fn note(&self, id: u64, buf: &[u8], end: u64, edges: &mut Vec<u64>) -> Result<u32> {
        let e = self.e;
        if e.u64(buf, 0) != Some(id) {
            bail!("not a page start");
        }
        let flags = e.u16(buf, 8).unwrap_or_default();
        let count = e.u16(buf, 10).unwrap_or_default();
        let overflow = e.u32(buf, 12).unwrap_or_default();
        if flags != LEAF && flags != BRANCH {
            bail!("not a tree page");
        }
        let pages = u64::from(overflow) + 1;
        if id + pages > self.pgid {
            bail!("past the high-water mark");
        }
        let whole;
        let buf = if id + pages <= end {
            &buf[..pages as usize * self.size]
        } else {
            whole = self.page(id)?.buf;
            &whole[..]
        };
        self.edges(id, flags, count, buf, edges)?;
        Ok(overflow)
    }

    /// The pages a tree page points at: a branch's children, a leaf's nested buckets' roots.
    fn edges(&self, id: u64, flags: u16, count: u16, buf: &[u8], out: &mut Vec<u64>) -> Result<()> {
        if flags == BRANCH {
            out.extend(self.branch(buf, count, id)?.into_iter().map(|(_, c)| c));
            return Ok(());
        }
        self.each_leaf_element(buf, count, id, |flags, key, value| {
            if flags & BUCKET_LEAF != 0 {
                self.nested_roots(value, 0, out)
                    .with_context(|| format!("page {id}: bucket {}", show(key)))?;
            }
            Ok(())
        })
    }

    /// The root pages of the page-backed buckets a bucket value stands for: its own, or
    /// those nested in it when it is inline.
    fn nested_roots(&self, value: &[u8], depth: usize, out: &mut Vec<u64>) -> Result<()> {
        if depth > MAX_BUCKET_DEPTH {
            bail!("buckets nested more than {MAX_BUCKET_DEPTH} deep");
        }
        let (root, _) = self.bucket_header(value)?;
        if root != 0 {
            out.push(root);
            return Ok(());
        }
        let (page, count) = self.inline(value)?;
        self.each_leaf_element(page, count, 0, |flags, _, value| {
            if flags & BUCKET_LEAF != 0 {
                self.nested_roots(value, depth + 1, out)?;
            }
            Ok(())
        })
    }

    /// Why the tree cannot use page `id`, read and parsed on its own for the message.
    fn explain(&self, id: u64) -> anyhow::Error {
        let read = self.page(id).and_then(|p| match p.flags {
            LEAF | BRANCH => self.edges(id, p.flags, p.count, &p.buf, &mut Vec::new()),
            flags => bail!("page {id}: expected a branch or leaf page, found flags {flags:#x}"),
        });
        match read {
            Err(e) => e,
            Ok(()) => anyhow!("page {id}: not readable as a tree page"),
        }
    }

    /// Calls `f(id, pages)` for every page of the bucket rooted at `root` and of the buckets
    /// nested in it.
    pub fn each_page(
        &self,
        root: u64,
        depth: usize,
        f: &mut dyn FnMut(u64, u64) -> Result<()>,
    ) -> Result<()> {
        if depth > MAX_BUCKET_DEPTH {
            bail!("page {root}: buckets nested more than {MAX_BUCKET_DEPTH} deep");
        }
        self.each_node(root, 0, &mut |id, page| {
            f(id, page.pages)?;
            if page.flags == LEAF {
                for (flags, key, value) in self.leaf(&page.buf, page.count, id)? {
                    if flags & BUCKET_LEAF != 0 {
                        self.each_nested_page(value, depth + 1, f)
                            .with_context(|| format!("page {id}: bucket {}", show(key)))?;
                    }
                }
            }
            Ok(())
        })
    }

    fn each_nested_page(
        &self,
        value: &[u8],
        depth: usize,
        f: &mut dyn FnMut(u64, u64) -> Result<()>,
    ) -> Result<()> {
        let (root, _) = self.bucket_header(value)?;
        if root != 0 {
            return self.each_page(root, depth, f);
        }
        let (page, count) = self.inline(value)?;
        for (flags, _, value) in self.leaf(page, count, 0)? {
            if flags & BUCKET_LEAF != 0 {
                self.each_nested_page(value, depth + 1, f)?;
            }
        }
        Ok(())
    }

    /// Visits the branch and leaf pages of one bucket's B+tree, parents first.
    fn each_node(
        &self,
        id: u64,
        level: usize,
        f: &mut dyn FnMut(u64, &Page) -> Result<()>,
    ) -> Result<()> {
        if level > MAX_PAGE_DEPTH {
            bail!("page {id}: branch pages nested more than {MAX_PAGE_DEPTH} deep");
        }
        let page = self.page(id)?;
        f(id, &page)?;
        match page.flags {
            LEAF => Ok(()),
            BRANCH => {
                for (_, child) in self.branch(&page.buf, page.count, id)? {
                    self.each_node(child, level + 1, f)
                        .with_context(|| format!("in branch page {id}"))?;
                }
                Ok(())
            }
            flags => bail!("page {id}: expected a branch or leaf page, found flags {flags:#x}"),
        }
    }

    /// The elements of a leaf page image (a page, or an inline bucket's; `id` names it).
    pub fn leaf<'a>(&self, buf: &'a [u8], count: u16, id: u64) -> Result<Vec<Raw<'a>>> {
        let mut out: Vec<Raw> = Vec::with_capacity(count as usize);
        self.each_leaf_element(buf, count, id, |flags, key, value| {
            out.push((flags, key, value));
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Disk::leaf`] without the vector: every element is read and checked first, then
    /// `f` gets each in order. The reachability walk reads every page of the file, and a
    /// vector per page and per inline bucket was most of what it allocated.
    fn each_leaf_element<'a>(
        &self,
        buf: &'a [u8],
        count: u16,
        id: u64,
        mut f: impl FnMut(u32, &'a [u8], &'a [u8]) -> Result<()>,
    ) -> Result<()> {
        let element = |i| leaf_element(self.e, buf, i, &format_args!("page {id}"));
        let mut prev = None;
        for i in 0..count as usize {
            let (_, key, _) = element(i)?;
            check_key(key, prev, None, None).with_context(|| format!("page {id}: element {i}"))?;
            prev = Some(key);
        }
        for i in 0..count as usize {
            let (flags, key, value) = element(i)?;
            f(flags, key, value)?;
        }
        Ok(())
    }

    /// The `(key, child page)` elements of a branch page.
    fn branch<'a>(&self, buf: &'a [u8], count: u16, id: u64) -> Result<Vec<(&'a [u8], u64)>> {
        if count == 0 {
            bail!("page {id}: empty branch page");
        }
        let mut out: Vec<(&[u8], u64)> = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let (key, child) = branch_element(self.e, buf, i, &format_args!("page {id}"))?;
            check_key(key, out.last().map(|c| c.0), None, None)
                .with_context(|| format!("page {id}: element {i}"))?;
            out.push((key, child));
        }
        Ok(out)
    }

    /// A nested bucket's `{root, sequence}` header.
    fn bucket_header(&self, value: &[u8]) -> Result<(u64, u64)> {
        match (self.e.u64(value, 0), self.e.u64(value, 8)) {
            (Some(root), Some(seq)) => {
                if root != 0 && value.len() != BUCKET_HEADER {
                    bail!(
                        "bucket value is {} bytes; a page-backed bucket has exactly {BUCKET_HEADER}",
                        value.len()
                    );
                }
                Ok((root, seq))
            }
            _ => bail!(
                "bucket header is {} bytes, needs {BUCKET_HEADER}",
                value.len()
            ),
        }
    }

    /// An inline bucket's page image and element count.
    fn inline<'a>(&self, value: &'a [u8]) -> Result<(&'a [u8], u16)> {
        let page = &value[BUCKET_HEADER..];
        match (self.e.u16(page, 8), self.e.u16(page, 10)) {
            (Some(LEAF), Some(count)) => Ok((page, count)),
            (Some(flags), Some(_)) => {
                bail!("inline bucket page has flags {flags:#x}, expected a leaf ({LEAF:#x})")
            }
            _ => bail!("inline bucket too short for a page header"),
        }
    }

    /// The leaf element at `key` in the bucket rooted at page `root`, reading only the pages
    /// on the way down.
    pub fn seek(&self, root: u64, key: &[u8]) -> Result<Option<(u32, Vec<u8>)>> {
        let mut id = root;
        for _ in 0..=MAX_PAGE_DEPTH {
            let page = self.page(id)?;
            match page.flags {
                BRANCH => {
                    let children = self.branch(&page.buf, page.count, id)?;
                    let i = children.partition_point(|(k, _)| *k <= key);
                    id = children[i.saturating_sub(1)].1;
                }
                LEAF => {
                    let elems = self.leaf(&page.buf, page.count, id)?;
                    return Ok(elems
                        .binary_search_by(|(_, k, _)| (*k).cmp(key))
                        .ok()
                        .map(|i| (elems[i].0, elems[i].2.to_vec())));
                }
                flags => {
                    bail!("page {id}: expected a branch or leaf page, found flags {flags:#x}")
                }
            }
        }
        bail!("page {root}: branch pages nested more than {MAX_PAGE_DEPTH} deep")
    }

    /// What a stored element becomes in memory: a value, an inline bucket (whole), or a
    /// page-backed bucket with no keys loaded yet.
    pub fn node(&self, flags: u32, value: &[u8], depth: usize) -> Result<Node> {
        if flags & BUCKET_LEAF == 0 {
            return Ok(Node::Value(value.to_vec()));
        }
        if depth > MAX_BUCKET_DEPTH {
            bail!("buckets nested more than {MAX_BUCKET_DEPTH} deep");
        }
        let (root, sequence) = self.bucket_header(value)?;
        let mut bucket = Bucket {
            sequence,
            entries: BTreeMap::new(),
            page: root,
        };
        if root == 0 {
            let (page, count) = self.inline(value)?;
            for (flags, key, value) in self.leaf(page, count, 0)? {
                let node = self
                    .node(flags, value, depth + 1)
                    .with_context(|| format!("inline bucket {}", show(key)))?;
                bucket.entries.insert(key.to_vec(), node);
            }
        }
        Ok(Node::Bucket(bucket))
    }

    /// Every element of the bucket rooted at `root`, nested page-backed buckets unloaded.
    pub fn entries(&self, root: u64, depth: usize) -> Result<Vec<(Vec<u8>, Node)>> {
        let mut out: Vec<(Vec<u8>, Node)> = Vec::new();
        self.each_node(root, 0, &mut |id, page| {
            if page.flags == LEAF {
                for (flags, key, value) in self.leaf(&page.buf, page.count, id)? {
                    if let Some((prev, _)) = out.last() {
                        check_key(key, Some(prev), None, None)
                            .with_context(|| format!("page {id}"))?;
                    }
                    let node = self
                        .node(flags, value, depth + 1)
                        .with_context(|| format!("page {id}: bucket {}", show(key)))?;
                    out.push((key.to_vec(), node));
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Loads the entry at `path` below `old` (the committed view) and, where it is still the same
/// bucket, `new` (the caller's view): the buckets on the way get just that key, the entry at
/// the end gets all of its contents.
pub fn load(
    disk: &Disk,
    old: &mut Bucket,
    new: Option<&mut Bucket>,
    path: &[&[u8]],
    depth: usize,
) -> Result<()> {
    let new = new.filter(|n| n.page == old.page);
    let Some((key, rest)) = path.split_first() else {
        return fill(disk, old, new, depth);
    };
    if old.page == 0 {
        return Ok(());
    }
    let mut new = new;
    if !old.entries.contains_key(*key) {
        let Some((flags, value)) = disk.seek(old.page, key)? else {
            return Ok(());
        };
        let node = disk
            .node(flags, &value, depth + 1)
            .with_context(|| format!("loading key {}", show(key)))?;
        if let Some(n) = new.as_deref_mut() {
            n.entries
                .entry(key.to_vec())
                .or_insert_with(|| node.clone());
        }
        old.entries.insert(key.to_vec(), node);
    }
    let Some(Node::Bucket(old_child)) = old.entries.get_mut(*key) else {
        return Ok(());
    };
    let new_child = new.and_then(|n| match n.entries.get_mut(*key) {
        Some(Node::Bucket(b)) => Some(b),
        _ => None,
    });
    load(disk, old_child, new_child, rest, depth + 1)
}

/// Loads every key of `old` (and of the same bucket in `new`) not loaded yet, recursively.
fn fill(disk: &Disk, old: &mut Bucket, mut new: Option<&mut Bucket>, depth: usize) -> Result<()> {
    if old.page == 0 {
        return Ok(());
    }
    for (key, node) in disk.entries(old.page, depth)? {
        if !old.entries.contains_key(&key) {
            if let Some(n) = new.as_deref_mut() {
                n.entries.entry(key.clone()).or_insert_with(|| node.clone());
            }
            old.entries.insert(key.clone(), node);
        }
        if let Some(Node::Bucket(old_child)) = old.entries.get_mut(&key) {
            let new_child = new
                .as_deref_mut()
                .and_then(|n| match n.entries.get_mut(&key) {
                    Some(Node::Bucket(b)) if b.page == old_child.page => Some(b),
                    _ => None,
                });
            fill(disk, old_child, new_child, depth + 1)?;
        }
    }
    Ok(())
}

/// Frees every page of what `node` held on disk (a page-backed bucket's whole subtree).
fn release(disk: &Disk, alloc: &mut Alloc, node: &Node, depth: usize) -> Result<()> {
    if let Node::Bucket(b) = node {
        if b.page != 0 {
            disk.each_page(b.page, depth, &mut |id, n| {
                alloc.release(id, n);
                Ok(())
            })?;
        } else {
            for child in b.entries.values() {
                release(disk, alloc, child, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Frees every page of the tree rooted at `root` (one pass over the file, in file order).
pub fn release_tree(disk: &Disk, alloc: &mut Alloc, root: u64) -> Result<()> {
    let used = disk.reachable(root)?;
    for id in (2..disk.pgid).filter(|&id| used[id as usize]) {
        alloc.release(id, 1);
    }
    Ok(())
}

/// Writes the changes from `old` to `new`, two views of the page-backed bucket rooted at
/// `new.page`: nested buckets first, then this bucket's pages on the paths to changed keys.
/// Returns the bucket's root page (unchanged when nothing changed).
pub fn save(
    disk: &Disk,
    enc: &mut Encoder,
    new: &Bucket,
    old: &Bucket,
    depth: usize,
) -> Result<u64> {
    let mut changes: Vec<(Vec<u8>, Op)> = Vec::new();
    let mut a = new.entries.iter().peekable();
    let mut b = old.entries.iter().peekable();
    loop {
        let (n, o) = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((k1, _)), Some((k2, _))) if k1 < k2 => (a.next(), None),
            (Some((k1, _)), Some((k2, _))) if k1 > k2 => (None, b.next()),
            (Some(_), Some(_)) => (a.next(), b.next()),
            (Some(_), None) => (a.next(), None),
            (None, Some(_)) => (None, b.next()),
        };
        let key: &[u8] = n
            .or(o)
            .map(|(k, _)| k.as_slice())
            .expect("one side has the key");
        let what = || format!("writing bucket {}", show(key));
        match (n.map(|(_, n)| n), o.map(|(_, o)| o)) {
            (Some(Node::Bucket(nb)), Some(Node::Bucket(ob))) if nb.page != 0 => {
                if nb.page != ob.page {
                    bail!("{}: a bucket loaded from another key", what());
                }
                let root = save(disk, enc, nb, ob, depth + 1).with_context(what)?;
                if root != ob.page || nb.sequence != ob.sequence {
                    let value = enc.header(root, nb.sequence);
                    changes.push((
                        key.to_vec(),
                        Op::Put {
                            flags: BUCKET_LEAF,
                            value,
                            replaces: true,
                        },
                    ));
                }
            }
            (Some(n), o) => {
                let same = match (n, o) {
                    (Node::Bucket(nb), Some(Node::Bucket(ob))) => nb.page == ob.page && nb == ob,
                    (n, Some(o)) => n == o,
                    (_, None) => false,
                };
                if same {
                    continue;
                }
                check_elem(key, 0)?;
                if let Some(o) = o {
                    release(disk, enc.alloc, o, depth + 1).with_context(what)?;
                }
                let (flags, value) = enc.node(n, depth + 1).with_context(what)?;
                check_elem(key, value.len())?;
                changes.push((
                    key.to_vec(),
                    Op::Put {
                        flags,
                        value,
                        replaces: o.is_some(),
                    },
                ));
            }
            (None, Some(o)) => {
                release(disk, enc.alloc, o, depth + 1).with_context(what)?;
                changes.push((key.to_vec(), Op::Delete));
            }
            (None, None) => unreachable!("one side has the key"),
        }
    }
    if changes.is_empty() {
        return Ok(new.page);
    }
    let level = edit(disk, enc, new.page, &changes, 0)?;
    enc.root_of(level)
}

/// Rewrites page `id` (a node of one bucket's B+tree) with `changes` (sorted, all within
/// its key range) applied, and below it only the children that have changes. Returns the
/// node's replacement: none when it became empty, several when it had to split.
fn edit(
    disk: &Disk,
    enc: &mut Encoder,
    id: u64,
    changes: &[(Vec<u8>, Op)],
    level: usize,
) -> Result<Vec<Child>> {
    if level > MAX_PAGE_DEPTH {
        bail!("page {id}: branch pages nested more than {MAX_PAGE_DEPTH} deep");
    }
    let page = disk.page(id)?;
    enc.alloc.release(id, page.pages);
    match page.flags {
        LEAF => {
            let old = disk.leaf(&page.buf, page.count, id)?;
            let mut elems: Vec<Elem> = Vec::with_capacity(old.len() + changes.len());
            let mut ch = changes.iter().peekable();
            for (flags, key, value) in old {
                while let Some(c) = ch.next_if(|(k, _)| k.as_slice() < key) {
                    put(&mut elems, c, false, id)?;
                }
                if let Some(c) = ch.next_if(|(k, _)| k.as_slice() == key) {
                    put(&mut elems, c, true, id)?;
                } else {
                    elems.push(Elem {
                        key: key.into(),
                        flags,
                        value: value.into(),
                    });
                }
            }
            for c in ch {
                put(&mut elems, c, false, id)?;
            }
            if elems.is_empty() {
                return Ok(Vec::new());
            }
            enc.leaves(&elems)
        }
        BRANCH => {
            let children = disk.branch(&page.buf, page.count, id)?;
            let mut level_out: Vec<Child> = Vec::new();
            let mut rest = changes;
            for (i, &(key, child)) in children.iter().enumerate() {
                let n = match children.get(i + 1) {
                    Some((next, _)) => rest.partition_point(|(k, _)| k.as_slice() < *next),
                    None => rest.len(),
                };
                let (mine, after) = rest.split_at(n);
                rest = after;
                if mine.is_empty() {
                    level_out.push((key.to_vec(), child));
                } else {
                    level_out.extend(
                        edit(disk, enc, child, mine, level + 1)
                            .with_context(|| format!("in branch page {id}"))?,
                    );
                }
            }
            if level_out.is_empty() {
                return Ok(level_out);
            }
            enc.branches(&level_out)
        }
        flags => bail!("page {id}: expected a branch or leaf page, found flags {flags:#x}"),
    }
}

/// Applies one change to the leaf elements being built; `exists` says whether the key is in
/// the page, which must match what the loaded view said.
fn put<'c>(
    elems: &mut Vec<Elem<'c>>,
    change: &'c (Vec<u8>, Op),
    exists: bool,
    id: u64,
) -> Result<()> {
    let (key, op) = change;
    match op {
        Op::Put {
            flags,
            value,
            replaces,
        } => {
            if *replaces != exists {
                bail!(
                    "writing key {} in page {id}: the file {} it, the loaded view did not; \
                     load keys before changing them",
                    show(key),
                    if exists { "has" } else { "lacks" }
                );
            }
            elems.push(Elem {
                key: key.as_slice().into(),
                flags: *flags,
                value: value.as_slice().into(),
            });
        }
        Op::Delete if !exists => bail!("deleting key {} in page {id}: not in the file", show(key)),
        Op::Delete => {}
    }
    Ok(())
}
