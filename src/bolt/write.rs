//! Encoding pages for one bbolt transaction (`bbolt-format.md` §4–§6, §8).
//!
//! [`Alloc`] hands out page ids the way Go's array freelist does: the first run of contiguous
//! free pages that fits, else pages at the high-water mark. Pages this transaction frees are
//! pending, never reused by the same transaction: the current meta page still points at them
//! until the new one is durable. [`Encoder`] turns elements into leaf and branch pages
//! (children before parents, in key order, so the output depends only on the inputs) and
//! encodes new buckets whole: inline when Go would inline them, else on their own pages.
//! The page images wait in memory until the commit writes them; nothing here touches the file.

use std::borrow::Cow;
use std::ops::Range;

use anyhow::{bail, Context, Result};

use super::page::{
    Endian, Meta, BRANCH, BUCKET_HEADER, BUCKET_LEAF, COUNT_ESCAPE, ELEMENT, FREELIST, LEAF,
    MAX_ELEMENTS, MAX_KEY, MAX_VALUE, PAGE_HEADER,
};
use super::read::{show, MAX_BUCKET_DEPTH};
use super::{Bucket, Node};

/// Page allocation for one transaction, and the dirty pages it produced.
#[derive(Debug)]
pub struct Alloc {
    /// Pages free before this transaction, ascending: reusable now.
    free: Vec<u64>,
    /// Pages this transaction freed (bbolt's pending list): free from the next one on.
    pending: Vec<u64>,
    /// The high-water mark: the next page id past every page in use.
    pub next: u64,
    /// New page images by first page id, overflow pages included.
    pub dirty: Vec<(u64, Vec<u8>)>,
}

impl Alloc {
    pub fn new(free: Vec<u64>, pgid: u64) -> Alloc {
        Alloc {
            free,
            pending: Vec::new(),
            next: pgid,
            dirty: Vec::new(),
        }
    }

    /// `n` contiguous pages: the first free run that fits (Go's `arrayAllocate`), else at
    /// the high-water mark.
    pub fn allocate(&mut self, n: u64) -> u64 {
        let mut run = 0;
        for i in 0..self.free.len() {
            if i > 0 && self.free[i] == self.free[i - 1] + 1 {
                run += 1;
            } else {
                run = 1;
            }
            if run == n {
                let first = i + 1 - n as usize;
                let id = self.free[first];
                self.free.drain(first..=i);
                return id;
            }
        }
        let id = self.next;
        self.next += n;
        id
    }

    /// Frees `n` pages from `id` at the end of this transaction.
    pub fn release(&mut self, id: u64, n: u64) {
        self.pending.extend(id..id + n);
    }

    /// Every free page after this transaction, ascending: what its freelist lists.
    pub fn all_free(&self) -> Vec<u64> {
        let mut all = Vec::with_capacity(self.free.len() + self.pending.len());
        all.extend_from_slice(&self.free);
        all.extend_from_slice(&self.pending);
        all.sort_unstable();
        all
    }

    /// Refuses a transaction built on a damaged file: a page freed twice, a page both free
    /// and in use (a freelist listing a reachable page), or a page written over while the
    /// current tree still uses it. Go trusts the file here; a check costs one sort.
    pub fn check(&self) -> Result<()> {
        let mut pending = self.pending.clone();
        pending.sort_unstable();
        if let Some(w) = pending.windows(2).find(|w| w[0] == w[1]) {
            bail!(
                "page {} is used twice in the tree: the file is damaged",
                w[0]
            );
        }
        let used = |id: u64| pending.binary_search(&id).is_ok();
        if let Some(id) = self.free.iter().find(|&&id| used(id)) {
            bail!("page {id} is listed free but is in use: the freelist is damaged");
        }
        if let Some((id, _)) = self.dirty.iter().find(|(id, _)| used(*id)) {
            bail!("page {id} is listed free but is in use: the freelist is damaged");
        }
        Ok(())
    }

    pub fn free_count(&self) -> usize {
        self.free.len() + self.pending.len()
    }
}

/// The four pages of a new, empty file, exactly as Go's `db.init()` writes them: metas for
/// txids 0 and 1, an empty freelist at page 2 and the root bucket's empty leaf at page 3.
pub fn empty_file(page_size: u32, endian: Endian) -> Vec<u8> {
    let size = page_size as usize;
    let mut file = vec![0; 4 * size];
    for txid in 0..2 {
        let at = txid as usize * size;
        file[at..at + size].copy_from_slice(&Meta::initial(page_size, endian, txid).encode());
    }
    endian.put_header(&mut file[2 * size..], 2, FREELIST, 0, 0);
    endian.put_header(&mut file[3 * size..], 3, LEAF, 0, 0);
    file
}

/// A leaf element about to be written.
#[derive(Debug, Clone)]
pub struct Elem<'t> {
    pub key: Cow<'t, [u8]>,
    pub flags: u32,
    pub value: Cow<'t, [u8]>,
}

impl Elem<'_> {
    fn size(&self) -> usize {
        ELEMENT + self.key.len() + self.value.len()
    }
}

/// Refuses what Go's `Put` refuses: empty or oversized keys, oversized values.
pub fn check_elem(key: &[u8], value_len: usize) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY {
        bail!(
            "writing key {}: bbolt keys are 1 to {MAX_KEY} bytes, this one is {}",
            show(key),
            key.len()
        );
    }
    if value_len > MAX_VALUE {
        bail!(
            "writing key {}: value of {value_len} bytes is too large",
            show(key)
        );
    }
    Ok(())
}

/// A node's first key and page id: one element of the level above.
pub type Child = (Vec<u8>, u64);

pub struct Encoder<'a> {
    pub e: Endian,
    pub size: usize,
    pub alloc: &'a mut Alloc,
}

impl Encoder<'_> {
    /// Zeroed pages for `bytes` of content: `(first id, page count, buffer)`.
    fn new_pages(&mut self, bytes: usize) -> (u64, u64, Vec<u8>) {
        let n = bytes.div_ceil(self.size).max(1) as u64;
        let id = self.alloc.allocate(n);
        (id, n, vec![0; n as usize * self.size])
    }

    /// The leaf element a new node becomes: a value, or a new bucket encoded whole.
    pub fn node(&mut self, node: &Node, depth: usize) -> Result<(u32, Vec<u8>)> {
        match node {
            Node::Value(v) => Ok((0, v.clone())),
            Node::Bucket(b) => Ok((BUCKET_LEAF, self.nested(b, depth)?)),
        }
    }

    /// The value a new nested bucket is stored as in its parent: `{root, sequence}`,
    /// followed by the page image when it is inline.
    fn nested(&mut self, bucket: &Bucket, depth: usize) -> Result<Vec<u8>> {
        if depth > MAX_BUCKET_DEPTH {
            bail!("buckets nested more than {MAX_BUCKET_DEPTH} deep");
        }
        let elems = self.elements(bucket, depth)?;
        // Go inlines a bucket that has no nested buckets and fits in a quarter page
        // (`bucket.go` inlineable / maxInlineBucketSize).
        let inline_size = PAGE_HEADER + elems.iter().map(Elem::size).sum::<usize>();
        if elems.iter().all(|e| e.flags & BUCKET_LEAF == 0) && inline_size <= self.size / 4 {
            let mut value = self.header(0, bucket.sequence);
            let at = value.len();
            value.resize(at + inline_size, 0);
            self.write_leaf(&mut value[at..], 0, 0, &elems)?;
            return Ok(value);
        }
        let level = self.leaves(&elems)?;
        let root = self.root_of(level)?;
        Ok(self.header(root, bucket.sequence))
    }

    pub fn header(&self, root: u64, sequence: u64) -> Vec<u8> {
        let mut h = vec![0; BUCKET_HEADER];
        self.e.put_u64(&mut h, 0, root);
        self.e.put_u64(&mut h, 8, sequence);
        h
    }

    /// The leaf elements of a new bucket, encoding its nested buckets first.
    fn elements<'t>(&mut self, bucket: &'t Bucket, depth: usize) -> Result<Vec<Elem<'t>>> {
        if bucket.page != 0 {
            bail!("writing a bucket loaded from the file as a new one (a bucket moved to another key?)");
        }
        let mut elems = Vec::with_capacity(bucket.entries.len());
        for (key, node) in &bucket.entries {
            let elem = match node {
                Node::Value(v) => {
                    check_elem(key, v.len())?;
                    Elem {
                        key: Cow::Borrowed(key),
                        flags: 0,
                        value: Cow::Borrowed(v),
                    }
                }
                Node::Bucket(child) => {
                    check_elem(key, 0)?;
                    let value = self
                        .nested(child, depth + 1)
                        .with_context(|| format!("writing bucket {}", show(key)))?;
                    Elem {
                        key: Cow::Borrowed(key),
                        flags: BUCKET_LEAF,
                        value: Cow::Owned(value),
                    }
                }
            };
            elems.push(elem);
        }
        Ok(elems)
    }

    /// Writes a new bucket on its own pages (the root bucket); returns its root page.
    pub fn paged(&mut self, bucket: &Bucket) -> Result<u64> {
        let elems = self.elements(bucket, 0)?;
        let level = self.leaves(&elems)?;
        self.root_of(level)
    }

    /// Branch levels over `level` until one page is left; returns it.
    pub fn root_of(&mut self, mut level: Vec<Child>) -> Result<u64> {
        while level.len() > 1 {
            level = self.branches(&level)?;
        }
        match level.first() {
            Some((_, id)) => Ok(*id),
            None => {
                let level = self.leaves(&[])?;
                Ok(level[0].1)
            }
        }
    }

    /// Leaf pages holding `elems` in order (one empty leaf for none); returns each page's
    /// first key and id. An element larger than a page gets overflow pages.
    pub fn leaves(&mut self, elems: &[Elem]) -> Result<Vec<Child>> {
        let mut level = Vec::new();
        for group in pack(elems.iter().map(Elem::size), self.size) {
            let elems = &elems[group];
            let bytes = PAGE_HEADER + elems.iter().map(Elem::size).sum::<usize>();
            let (id, n, mut page) = self.new_pages(bytes);
            self.write_leaf(&mut page, id, n - 1, elems)?;
            self.alloc.dirty.push((id, page));
            level.push((elems.first().map_or(Vec::new(), |e| e.key.to_vec()), id));
        }
        Ok(level)
    }

    /// Branch pages over `children` in order; returns each page's first key and id.
    pub fn branches(&mut self, children: &[Child]) -> Result<Vec<Child>> {
        let mut upper = Vec::new();
        for group in pack(children.iter().map(|(k, _)| ELEMENT + k.len()), self.size) {
            let children = &children[group];
            let bytes = PAGE_HEADER
                + children
                    .iter()
                    .map(|(k, _)| ELEMENT + k.len())
                    .sum::<usize>();
            let (id, n, mut page) = self.new_pages(bytes);
            let e = self.e;
            e.put_header(&mut page, id, BRANCH, children.len() as u16, overflow(n)?);
            let mut data = PAGE_HEADER + children.len() * ELEMENT;
            for (i, (key, child)) in children.iter().enumerate() {
                let at = PAGE_HEADER + i * ELEMENT;
                e.put_u32(&mut page, at, to_u32(data - at)?);
                e.put_u32(&mut page, at + 4, to_u32(key.len())?);
                e.put_u64(&mut page, at + 8, *child);
                page[data..data + key.len()].copy_from_slice(key);
                data += key.len();
            }
            self.alloc.dirty.push((id, page));
            upper.push((children[0].0.clone(), id));
        }
        Ok(upper)
    }

    /// Writes a leaf page image (header, elements, keys and values) into `page`.
    fn write_leaf(&self, page: &mut [u8], id: u64, over: u64, elems: &[Elem]) -> Result<()> {
        let e = self.e;
        e.put_header(page, id, LEAF, elems.len() as u16, to_u32(over as usize)?);
        let mut data = PAGE_HEADER + elems.len() * ELEMENT;
        for (i, el) in elems.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            e.put_u32(page, at, el.flags);
            e.put_u32(page, at + 4, to_u32(data - at)?);
            e.put_u32(page, at + 8, to_u32(el.key.len())?);
            e.put_u32(page, at + 12, to_u32(el.value.len())?);
            page[data..data + el.key.len()].copy_from_slice(&el.key);
            data += el.key.len();
            page[data..data + el.value.len()].copy_from_slice(&el.value);
            data += el.value.len();
        }
        Ok(())
    }

    /// Writes the freelist page (bbolt's synced form): every page free after this
    /// transaction, ascending, the freelist's own pages excluded. Sized as Go sizes it,
    /// `size / pageSize + 1` pages, before taking its own pages from the free ones.
    pub fn freelist(&mut self) -> Result<u64> {
        let count = self.alloc.free_count();
        let escaped = count >= usize::from(COUNT_ESCAPE);
        let bytes = PAGE_HEADER + 8 * (count + usize::from(escaped));
        let n = (bytes / self.size + 1) as u64;
        let id = self.alloc.allocate(n);
        let free = self.alloc.all_free();
        let escaped = free.len() >= usize::from(COUNT_ESCAPE);
        let mut page = vec![0; n as usize * self.size];
        let e = self.e;
        let count = if escaped {
            COUNT_ESCAPE
        } else {
            free.len() as u16
        };
        e.put_header(&mut page, id, FREELIST, count, overflow(n)?);
        let mut off = PAGE_HEADER;
        if escaped {
            e.put_u64(&mut page, off, free.len() as u64);
            off += 8;
        }
        for &f in &free {
            e.put_u64(&mut page, off, f);
            off += 8;
        }
        self.alloc.dirty.push((id, page));
        Ok(id)
    }
}

/// Splits elements of the given sizes into pages: as many as fit in one page each, but at
/// least two per page as Go's `node.split` keeps (`minKeysPerPage`; a page too small for them
/// gets overflow pages), which also makes every branch level smaller than the one below it.
/// Never `0xFFFF` elements or more on a page; one empty group when there are no elements (an
/// empty bucket's empty leaf).
fn pack(sizes: impl Iterator<Item = usize>, page: usize) -> Vec<Range<usize>> {
    const MIN_KEYS: usize = 2;
    let mut groups = Vec::new();
    let (mut start, mut fill, mut i) = (0, PAGE_HEADER, 0);
    for size in sizes {
        if i - start >= MIN_KEYS && (fill + size > page || i - start >= MAX_ELEMENTS) {
            groups.push(start..i);
            start = i;
            fill = PAGE_HEADER;
        }
        fill += size;
        i += 1;
    }
    groups.push(start..i);
    let n = groups.len();
    if n >= 2 && groups[n - 1].len() < MIN_KEYS {
        if groups[n - 2].len() > MIN_KEYS {
            groups[n - 2].end -= 1;
            groups[n - 1].start -= 1;
        } else if let Some(last) = groups.pop() {
            groups[n - 2].end = last.end;
        }
    }
    groups
}

fn overflow(pages: u64) -> Result<u32> {
    u32::try_from(pages - 1).context("page run too long for bbolt's 32-bit overflow count")
}

fn to_u32(n: usize) -> Result<u32> {
    u32::try_from(n).context("element too large for bbolt's 32-bit offsets")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_fills_pages_and_balances_the_last() {
        assert_eq!(pack([].into_iter(), 4096), vec![0..0]);
        assert_eq!(pack([100; 3].into_iter(), 4096), vec![0..3]);
        // 16 + 40 * 100 fits, the 41st does not; the lone last one borrows a neighbour.
        assert_eq!(pack([100; 41].into_iter(), 4096), vec![0..39, 39..41]);
        assert_eq!(pack([100; 80].into_iter(), 4096), vec![0..40, 40..80]);
        // Oversized elements still pair up (the page gets overflow pages).
        assert_eq!(pack([10, 9000, 10].into_iter(), 4096), vec![0..3]);
        assert_eq!(pack([9000; 5].into_iter(), 4096), vec![0..2, 2..5]);
        assert_eq!(pack([9000; 1].into_iter(), 4096), vec![0..1]);
    }

    #[test]
    fn empty_file_is_gos_db_init() {
        let file = empty_file(4096, Endian::Little);
        assert_eq!(file.len(), 4 * 4096);
        let sums: Vec<u64> = (0..2)
            .map(|i| u64::from_le_bytes(file[i * 4096 + 72..i * 4096 + 80].try_into().unwrap()))
            .collect();
        assert_eq!(sums, [0x0751_6e11_4689_fdee, 0x264c_351a_5179_480f]);
        assert_eq!(
            &file[2 * 4096..2 * 4096 + 16],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            &file[3 * 4096..3 * 4096 + 16],
            &[3, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
