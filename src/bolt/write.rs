//! Encoding a [`Bucket`] tree as the pages of one bbolt transaction (`bbolt-format.md` §8).
//!
//! Pure: takes the tree, what was last committed and the current meta, and returns the new
//! pages (all at or after the high-water mark, so nothing the current meta points at is
//! touched), the freelist and the next meta. Buckets equal to what was committed and stored on
//! pages keep those pages, as Go keeps the pages of buckets a transaction did not touch; every
//! other bucket is written afresh: inline when Go would inline it, else leaves packed in key
//! order (an element larger than a page gets overflow pages) under as many levels of branch
//! pages as needed. Pages are allocated children first, in key order, then the freelist, so the
//! output depends only on the inputs.

use std::borrow::Cow;
use std::ops::Range;

use anyhow::{bail, Context, Result};

use super::page::{
    Endian, Meta, BRANCH, BUCKET_HEADER, BUCKET_LEAF, COUNT_ESCAPE, ELEMENT, FREELIST, LEAF,
    MAX_ELEMENTS, MAX_KEY, MAX_VALUE, PAGE_HEADER,
};
use super::read::{show, Shape, MAX_BUCKET_DEPTH};
use super::{Bucket, Node};

/// One transaction's output.
#[derive(Debug)]
pub struct Encoded {
    pub meta: Meta,
    /// The new pages, page `meta_before.pgid` first, slack zeroed.
    pub pages: Vec<u8>,
    /// `(first page id, page count)` of every page with its overflow pages, in order: the unit
    /// of writing.
    pub runs: Vec<(u64, u64)>,
    pub shape: Shape,
}

/// Encodes `root` as transaction `prev.txid + 1` on top of the file `prev` describes.
/// `old` is the tree as last committed with the pages it occupies.
pub fn encode(root: &Bucket, old: Option<(&Bucket, &Shape)>, prev: &Meta) -> Result<Encoded> {
    if let Some(key) = root
        .entries
        .iter()
        .find_map(|(k, n)| matches!(n, Node::Value(_)).then_some(k))
    {
        bail!(
            "writing key {}: bbolt's root bucket can only hold buckets",
            show(key)
        );
    }
    let mut enc = Encoder {
        e: prev.endian,
        size: prev.page_size as usize,
        next: prev.pgid,
        out: Vec::new(),
        runs: Vec::new(),
        kept: Vec::new(),
    };
    let (root_page, shape) = enc.paged(root, old, 0)?;

    // Everything below the old high-water mark is free except what kept pages: the old tree,
    // the old freelist and pages that were already free. Go lists them the same way.
    let mut kept = vec![false; prev.pgid as usize];
    for &id in &enc.kept {
        if let Some(k) = kept.get_mut(id as usize) {
            *k = true;
        }
    }
    let free: Vec<u64> = (2..prev.pgid).filter(|&id| !kept[id as usize]).collect();
    let freelist = enc.freelist(&free)?;

    let meta = Meta {
        root: root_page,
        sequence: root.sequence,
        freelist,
        pgid: enc.next,
        txid: prev.txid + 1,
        ..*prev
    };
    Ok(Encoded {
        meta,
        pages: enc.out,
        runs: enc.runs,
        shape,
    })
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
struct Elem<'t> {
    key: &'t [u8],
    flags: u32,
    value: Cow<'t, [u8]>,
}

impl Elem<'_> {
    fn size(&self) -> usize {
        ELEMENT + self.key.len() + self.value.len()
    }
}

struct Encoder {
    e: Endian,
    size: usize,
    /// Next page id to allocate.
    next: u64,
    out: Vec<u8>,
    runs: Vec<(u64, u64)>,
    /// Pages of unchanged buckets, kept in place.
    kept: Vec<u64>,
}

impl Encoder {
    /// `n` fresh zeroed pages; returns the first id and the byte offset in `out`.
    fn alloc(&mut self, n: u64) -> (u64, usize) {
        let id = self.next;
        let at = self.out.len();
        self.next += n;
        self.out.resize(at + n as usize * self.size, 0);
        self.runs.push((id, n));
        (id, at)
    }

    fn pages_for(&self, bytes: usize) -> u64 {
        bytes.div_ceil(self.size).max(1) as u64
    }

    /// The value a nested bucket is stored as in its parent: `{root, sequence}`, followed by
    /// the page image when it is inline. Also says whether the bucket is unchanged from `old`
    /// and wrote nothing, which lets its parent keep its pages too: the comparison is done
    /// once, bottom-up, instead of comparing whole subtrees at every level.
    fn nested(
        &mut self,
        bucket: &Bucket,
        old: Option<(&Bucket, &Shape)>,
        depth: usize,
    ) -> Result<(Vec<u8>, Shape, bool)> {
        if depth > MAX_BUCKET_DEPTH {
            bail!("buckets nested more than {MAX_BUCKET_DEPTH} deep");
        }
        let mut shape = Shape::default();
        let (elems, same) = self.elements(bucket, old, depth, &mut shape)?;
        if let Some((_, old_shape)) = old.filter(|(_, s)| same && s.root != 0) {
            // Untouched, as Go leaves a bucket a transaction did not open: same pages, even
            // if Go would inline it were it written now.
            self.kept.extend_from_slice(&old_shape.pages);
            shape.root = old_shape.root;
            shape.pages = old_shape.pages.clone();
            return Ok((self.header(old_shape.root, bucket.sequence), shape, true));
        }
        // Go inlines a bucket that has no nested buckets and fits in a quarter page
        // (`bucket.go` inlineable / maxInlineBucketSize).
        let inline_size = PAGE_HEADER + elems.iter().map(Elem::size).sum::<usize>();
        if elems.iter().all(|e| e.flags & BUCKET_LEAF == 0) && inline_size <= self.size / 4 {
            let mut value = self.header(0, bucket.sequence);
            let at = value.len();
            value.resize(at + inline_size, 0);
            self.write_leaf(&mut value[at..], 0, 0, &elems)?;
            return Ok((value, Shape::default(), same));
        }
        let root = self.pages(elems, &mut shape)?;
        Ok((self.header(root, bucket.sequence), shape, false))
    }

    fn header(&self, root: u64, sequence: u64) -> Vec<u8> {
        let mut h = vec![0; BUCKET_HEADER];
        self.e.put_u64(&mut h, 0, root);
        self.e.put_u64(&mut h, 8, sequence);
        h
    }

    /// The leaf elements of `bucket`, encoding its nested buckets first, and whether the
    /// bucket equals `old` with every nested bucket unchanged and nothing written for it.
    fn elements<'t>(
        &mut self,
        bucket: &'t Bucket,
        old: Option<(&Bucket, &Shape)>,
        depth: usize,
        shape: &mut Shape,
    ) -> Result<(Vec<Elem<'t>>, bool)> {
        let old_bucket = old.map(|(b, _)| b);
        let mut same = old_bucket.is_some_and(|b| {
            b.sequence == bucket.sequence && b.entries.len() == bucket.entries.len()
        });
        let mut elems = Vec::with_capacity(bucket.entries.len());
        for (key, node) in &bucket.entries {
            if key.is_empty() || key.len() > MAX_KEY {
                bail!(
                    "writing key {}: bbolt keys are 1 to {MAX_KEY} bytes, this one is {}",
                    show(key),
                    key.len()
                );
            }
            let elem = match node {
                Node::Value(v) => {
                    same = same
                        && matches!(old_bucket.and_then(|b| b.entries.get(key)),
                            Some(Node::Value(o)) if o == v);
                    if v.len() > MAX_VALUE {
                        bail!(
                            "writing key {}: value of {} bytes is too large",
                            show(key),
                            v.len()
                        );
                    }
                    Elem {
                        key,
                        flags: 0,
                        value: Cow::Borrowed(v),
                    }
                }
                Node::Bucket(child) => {
                    let old_child =
                        old.and_then(|(b, s)| Some((b.bucket(key)?, s.children.get(key)?)));
                    let (value, child_shape, child_same) = self
                        .nested(child, old_child, depth + 1)
                        .with_context(|| format!("writing bucket {}", show(key)))?;
                    same = same && child_same;
                    shape.children.insert(key.clone(), child_shape);
                    Elem {
                        key,
                        flags: BUCKET_LEAF,
                        value: Cow::Owned(value),
                    }
                }
            };
            elems.push(elem);
        }
        Ok((elems, same))
    }

    /// Writes `bucket` on its own pages; returns its root page.
    fn paged(
        &mut self,
        bucket: &Bucket,
        old: Option<(&Bucket, &Shape)>,
        depth: usize,
    ) -> Result<(u64, Shape)> {
        let mut shape = Shape::default();
        let (elems, _) = self.elements(bucket, old, depth, &mut shape)?;
        let root = self.pages(elems, &mut shape)?;
        Ok((root, shape))
    }

    /// Writes a bucket's elements as leaves under branch pages; returns the root page and
    /// records the pages in `shape`.
    fn pages(&mut self, elems: Vec<Elem>, shape: &mut Shape) -> Result<u64> {
        let first_page = self.next;

        // Leaves, then branch levels until one page is left: (first key, page id) per node.
        let mut level: Vec<(&[u8], u64)> = Vec::new();
        let groups = pack(elems.iter().map(Elem::size), self.size);
        for group in groups {
            let elems = &elems[group];
            let bytes = PAGE_HEADER + elems.iter().map(Elem::size).sum::<usize>();
            let n = self.pages_for(bytes);
            let (id, at) = self.alloc(n);
            let mut page = std::mem::take(&mut self.out);
            let written =
                self.write_leaf(&mut page[at..at + n as usize * self.size], id, n - 1, elems);
            self.out = page;
            written?;
            level.push((elems.first().map_or(&[][..], |e| e.key), id));
        }
        while level.len() > 1 {
            let mut upper = Vec::new();
            for group in pack(level.iter().map(|(k, _)| ELEMENT + k.len()), self.size) {
                let children = &level[group];
                let bytes = PAGE_HEADER
                    + children
                        .iter()
                        .map(|(k, _)| ELEMENT + k.len())
                        .sum::<usize>();
                let n = self.pages_for(bytes);
                let (id, at) = self.alloc(n);
                let e = self.e;
                let page = &mut self.out[at..at + n as usize * self.size];
                e.put_header(page, id, BRANCH, children.len() as u16, overflow(n)?);
                let mut data = PAGE_HEADER + children.len() * ELEMENT;
                for (i, (key, child)) in children.iter().enumerate() {
                    let at = PAGE_HEADER + i * ELEMENT;
                    e.put_u32(page, at, to_u32(data - at)?);
                    e.put_u32(page, at + 4, to_u32(key.len())?);
                    e.put_u64(page, at + 8, *child);
                    page[data..data + key.len()].copy_from_slice(key);
                    data += key.len();
                }
                upper.push((children[0].0, id));
            }
            level = upper;
        }
        shape.root = level.first().map_or(first_page, |(_, id)| *id);
        shape.pages = (first_page..self.next).collect();
        // Pages of nested buckets were allocated before ours, so the range is only ours.
        Ok(shape.root)
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
            page[data..data + el.key.len()].copy_from_slice(el.key);
            data += el.key.len();
            page[data..data + el.value.len()].copy_from_slice(&el.value);
            data += el.value.len();
        }
        Ok(())
    }

    /// Writes the freelist page listing `free` (ascending); returns its id.
    fn freelist(&mut self, free: &[u64]) -> Result<u64> {
        let escaped = free.len() >= usize::from(COUNT_ESCAPE);
        let bytes = PAGE_HEADER + 8 * (free.len() + usize::from(escaped));
        let n = self.pages_for(bytes);
        let (id, at) = self.alloc(n);
        let e = self.e;
        let page = &mut self.out[at..at + n as usize * self.size];
        let count = if escaped {
            COUNT_ESCAPE
        } else {
            free.len() as u16
        };
        e.put_header(page, id, FREELIST, count, overflow(n)?);
        let mut off = PAGE_HEADER;
        if escaped {
            e.put_u64(page, off, free.len() as u64);
            off += 8;
        }
        for &f in free {
            e.put_u64(page, off, f);
            off += 8;
        }
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
