//! Reading a bbolt file into a [`Bucket`] tree (`bbolt-format.md` §4–§7).
//!
//! Every page is checked as Go's `tx.Check()` and its cursors would need it: header id equals
//! the position, one page type, within the high-water mark and the file, element ranges inside
//! the page, keys non-empty and strictly increasing across the whole bucket and within their
//! branch key ranges, no page reached twice, nothing reachable listed free. All reads are
//! bounds-checked, so damaged input is an error naming the page, never a panic.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{anyhow, bail, Context, Result};

use super::page::{
    current_meta, Endian, Meta, BRANCH, BUCKET_HEADER, BUCKET_LEAF, COUNT_ESCAPE, ELEMENT,
    FREELIST, LEAF, NO_FREELIST, PAGE_HEADER,
};
use super::{Bucket, Node};

/// Bucket nesting deeper than this is refused rather than risking the stack; containerd
/// nests 8 deep.
pub const MAX_BUCKET_DEPTH: usize = 128;
/// A B+tree of pages this deep would need more pages than any file holds.
pub const MAX_PAGE_DEPTH: usize = 64;
/// Pages being read at once, across nested buckets: bounds the reader's recursion (and so its
/// stack) for crafted files that nest deep buckets under deep branch pages. Real files stay
/// far below (containerd: 8 buckets deep, a few branch levels each).
const MAX_OPEN_PAGES: usize = 512;

/// Which pages each page-backed bucket owns, mirroring the tree, so a commit can keep the
/// pages of buckets it did not change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// The bucket's root page, 0 for an inline bucket.
    pub root: u64,
    /// The bucket's own branch and leaf pages, overflow pages included (not its children's).
    pub pages: Vec<u64>,
    pub children: BTreeMap<Vec<u8>, Shape>,
}

/// A parsed file: the current meta, the tree, its page ownership and the free pages. Outside
/// the tests only the tree is used; the tests read the rest to check what a commit wrote.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct Loaded {
    pub meta: Meta,
    pub tree: Bucket,
    pub shape: Shape,
    /// Free page ids, ascending: the freelist page's ids, or for a "no freelist" file every id
    /// in `[2, pgid)` that is not reachable. Only the tests read it, to check what a commit
    /// frees; the parse validates the freelist either way.
    #[cfg(test)]
    pub free: Vec<u64>,
    /// Pages below the high-water mark that are neither meta, reachable nor free: Go's
    /// `tx.Check()` reports them as "unreachable unfreed" (a leak, not corruption).
    pub leaked: Vec<u64>,
}

/// A whole file image, as pages of `size` bytes.
pub struct Pages<'a> {
    pub base: &'a [u8],
    pub size: usize,
}

impl<'a> Pages<'a> {
    /// Number of pages that exist.
    fn count(&self) -> u64 {
        (self.base.len() / self.size) as u64
    }

    /// `n` contiguous pages starting at `id`, if they all exist.
    fn get(&self, id: u64, n: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(id).ok()?.checked_mul(self.size)?;
        let len = usize::try_from(n).ok()?.checked_mul(self.size)?;
        self.base.get(start..start.checked_add(len)?)
    }
}

/// Parses a whole bbolt file from bytes, with the pages each bucket owns.
#[cfg_attr(not(test), allow(dead_code))]
pub fn load(bytes: &[u8]) -> Result<Loaded> {
    load_with(bytes, true)
}

/// Parses the tree of a whole bbolt file from bytes, with every check of [`load`] but
/// without recording the pages each bucket owns (which only the tests read).
pub fn tree(bytes: &[u8]) -> Result<Bucket> {
    Ok(load_with(bytes, false)?.tree)
}

/// Parses the tree and freelist the current meta points at; `shapes`: records which pages
/// each bucket owns (else every [`Shape`] stays empty).
fn load_with(bytes: &[u8], shapes: bool) -> Result<Loaded> {
    let meta = current_meta(bytes)?;
    let pages = &Pages {
        base: bytes,
        size: meta.page_size as usize,
    };
    let exist = pages.count();
    if meta.pgid > exist {
        bail!(
            "meta page (txid {}): high-water mark {} is past the end of the file ({exist} pages)",
            meta.txid,
            meta.pgid
        );
    }
    let mut r = Reader {
        pages,
        e: meta.endian,
        pgid: meta.pgid,
        // Sized by the high-water mark, which is at most the file's page count.
        used: vec![false; meta.pgid as usize],
        open_pages: 0,
        shapes,
    };
    let (entries, shape) = r.bucket_pages(meta.root, 0)?;
    if let Some(key) = entries
        .iter()
        .find_map(|(k, n)| matches!(n, Node::Value(_)).then_some(k))
    {
        bail!(
            "page {}: the root bucket holds a plain value at key {}",
            meta.root,
            show(key)
        );
    }
    let tree = Bucket {
        sequence: meta.sequence,
        entries,
        page: 0,
    };
    let mut is_free = vec![false; r.used.len()];
    if meta.freelist != NO_FREELIST {
        let id = meta.freelist;
        let (flags, count, buf) = r
            .page(id)
            .with_context(|| format!("reading the freelist (page {id})"))?;
        if flags != FREELIST {
            bail!("page {id}: the meta names it as the freelist, but its flags are {flags:#x}");
        }
        let (n, start) = if count == COUNT_ESCAPE {
            let n =
                r.e.u64(buf, PAGE_HEADER)
                    .ok_or_else(|| anyhow!("page {id}: freelist count missing"))?;
            (n, PAGE_HEADER + 8)
        } else {
            (u64::from(count), PAGE_HEADER)
        };
        if n > ((buf.len() - start) / 8) as u64 {
            bail!("page {id}: freelist count {n} does not fit in the page");
        }
        for i in 0..n as usize {
            let free = r.e.u64(buf, start + i * 8).unwrap_or_default();
            if free < 2 || free >= meta.pgid {
                bail!(
                    "page {id}: freelist entry {free} is outside [2, {})",
                    meta.pgid
                );
            }
            if is_free[free as usize] {
                bail!("page {id}: page {free} is listed free twice");
            }
            if r.used[free as usize] {
                bail!("page {free}: listed free in freelist page {id} but in use");
            }
            is_free[free as usize] = true;
        }
    }
    let mut free = Vec::new();
    let mut leaked = Vec::new();
    for id in 2..meta.pgid {
        let i = id as usize;
        if r.used[i] {
            continue;
        }
        if meta.freelist == NO_FREELIST || is_free[i] {
            free.push(id);
        } else {
            leaked.push(id);
        }
    }
    Ok(Loaded {
        meta,
        tree,
        shape,
        #[cfg(test)]
        free,
        leaked,
    })
}

/// A key for an error message: text if it is printable, hex otherwise.
pub fn show(key: &[u8]) -> String {
    Shown(key).to_string()
}

/// A key as [`show`] writes it, formatted only when an error message is: the readers name
/// every page and inline bucket they are in, and almost never need to say it.
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => write!(f, "{s:?}"),
            _ => write!(f, "0x{}", super::hex(self.0)),
        }
    }
}

struct Reader<'a, 'p> {
    pages: &'p Pages<'a>,
    e: Endian,
    pgid: u64,
    /// Pages reached so far (tree and freelist), indexed by id.
    used: Vec<bool>,
    /// Pages being read right now (the recursion depth of `walk`).
    open_pages: usize,
    /// Whether to record each bucket's pages in its [`Shape`].
    shapes: bool,
}

type Entries = BTreeMap<Vec<u8>, Node>;

impl<'a> Reader<'a, '_> {
    /// The page at `id` with its overflow pages: `(flags, count, bytes)`. Marks it used.
    fn page(&mut self, id: u64) -> Result<(u16, u16, &'a [u8])> {
        if id < 2 {
            bail!("page {id}: a meta page is referenced as a tree page");
        }
        if id >= self.pgid {
            bail!("page {id}: beyond the high-water mark {}", self.pgid);
        }
        let first = self
            .pages
            .get(id, 1)
            .ok_or_else(|| anyhow!("page {id}: past the end of the file"))?;
        let e = self.e;
        let header = e.u64(first, 0).unwrap_or_default();
        if header != id {
            bail!("page {id}: its header says page {header}");
        }
        let flags = e.u16(first, 8).unwrap_or_default();
        let count = e.u16(first, 10).unwrap_or_default();
        let overflow = u64::from(e.u32(first, 12).unwrap_or_default());
        if id + overflow >= self.pgid {
            bail!(
                "page {id}: its {overflow} overflow pages go past the high-water mark {}",
                self.pgid
            );
        }
        let buf = self.pages.get(id, overflow + 1).ok_or_else(|| {
            anyhow!("page {id}: its {overflow} overflow pages are not in the file")
        })?;
        for p in id..=id + overflow {
            if std::mem::replace(&mut self.used[p as usize], true) {
                bail!("page {p}: referenced twice");
            }
        }
        Ok((flags, count, buf))
    }

    /// The entries of the bucket whose root page is `root`.
    fn bucket_pages(&mut self, root: u64, depth: usize) -> Result<(Entries, Shape)> {
        let mut items = Vec::new();
        let mut shape = Shape {
            root,
            ..Shape::default()
        };
        self.walk(root, (None, None), 0, depth, &mut items, &mut shape)?;
        // Strictly increasing (checked while walking), so this builds the map in bulk.
        Ok((items.into_iter().collect(), shape))
    }

    /// Reads the subtree at page `id`, whose keys must lie in `[lo, hi)`.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &mut self,
        id: u64,
        range: (Option<&[u8]>, Option<&[u8]>),
        level: usize,
        depth: usize,
        items: &mut Vec<(Vec<u8>, Node)>,
        shape: &mut Shape,
    ) -> Result<()> {
        if self.open_pages >= MAX_OPEN_PAGES {
            bail!("page {id}: pages nested more than {MAX_OPEN_PAGES} deep across buckets");
        }
        self.open_pages += 1;
        let read = self.walk_page(id, range, level, depth, items, shape);
        self.open_pages -= 1;
        read
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_page(
        &mut self,
        id: u64,
        (lo, hi): (Option<&[u8]>, Option<&[u8]>),
        level: usize,
        depth: usize,
        items: &mut Vec<(Vec<u8>, Node)>,
        shape: &mut Shape,
    ) -> Result<()> {
        if level > MAX_PAGE_DEPTH {
            bail!("page {id}: branch pages nested more than {MAX_PAGE_DEPTH} deep");
        }
        let (flags, count, buf) = self.page(id)?;
        if self.shapes {
            let overflow = (buf.len() / self.pages.size) as u64 - 1;
            shape.pages.extend(id..=id + overflow);
        }
        match flags {
            LEAF => self.leaf(
                buf,
                count,
                &format_args!("page {id}"),
                (lo, hi),
                depth,
                items,
                shape,
            ),
            BRANCH => {
                if count == 0 {
                    bail!("page {id}: empty branch page");
                }
                let mut children = Vec::with_capacity(count as usize);
                for i in 0..count as usize {
                    let (key, child) = branch_element(self.e, buf, i, &format_args!("page {id}"))?;
                    check_key(key, children.last().map(|(k, _)| *k), lo, hi)
                        .with_context(|| format!("page {id}: element {i}"))?;
                    children.push((key, child));
                }
                for (i, &(key, child)) in children.iter().enumerate() {
                    let next = children.get(i + 1).map(|(k, _)| *k).or(hi);
                    self.walk(child, (Some(key), next), level + 1, depth, items, shape)
                        .with_context(|| format!("in branch page {id}"))?;
                }
                Ok(())
            }
            _ => bail!("page {id}: expected a branch or leaf page, found flags {flags:#x}"),
        }
    }

    /// Reads the `count` leaf elements of the page image `buf` (a page or an inline bucket).
    #[allow(clippy::too_many_arguments)]
    fn leaf(
        &mut self,
        buf: &'a [u8],
        count: u16,
        ctx: &dyn fmt::Display,
        (lo, hi): (Option<&[u8]>, Option<&[u8]>),
        depth: usize,
        items: &mut Vec<(Vec<u8>, Node)>,
        shape: &mut Shape,
    ) -> Result<()> {
        for i in 0..count as usize {
            let (flags, key, value) = leaf_element(self.e, buf, i, ctx)?;
            let prev = items.last().map(|(k, _)| k.as_slice());
            check_key(key, prev, lo, hi).with_context(|| format!("{ctx}: element {i}"))?;
            let node = if flags & BUCKET_LEAF != 0 {
                let (child, child_shape) = self
                    .nested(key, value, ctx, depth + 1)
                    .with_context(|| format!("{ctx}: bucket {}", show(key)))?;
                if self.shapes {
                    shape.children.insert(key.to_vec(), child_shape);
                }
                Node::Bucket(child)
            } else {
                Node::Value(value.to_vec())
            };
            items.push((key.to_vec(), node));
        }
        Ok(())
    }

    /// A nested bucket from its leaf value: a header, then a root page id or an inline page.
    fn nested(
        &mut self,
        key: &[u8],
        value: &'a [u8],
        ctx: &dyn fmt::Display,
        depth: usize,
    ) -> Result<(Bucket, Shape)> {
        if depth > MAX_BUCKET_DEPTH {
            bail!("buckets nested more than {MAX_BUCKET_DEPTH} deep");
        }
        let e = self.e;
        let (root, sequence) = match (e.u64(value, 0), e.u64(value, 8)) {
            (Some(r), Some(s)) => (r, s),
            _ => bail!(
                "bucket header is {} bytes, needs {BUCKET_HEADER}",
                value.len()
            ),
        };
        if root != 0 {
            if value.len() != BUCKET_HEADER {
                bail!(
                    "bucket value is {} bytes; a page-backed bucket has exactly {BUCKET_HEADER}",
                    value.len()
                );
            }
            let (entries, shape) = self.bucket_pages(root, depth)?;
            return Ok((
                Bucket {
                    sequence,
                    entries,
                    page: 0,
                },
                shape,
            ));
        }
        let page = &value[BUCKET_HEADER..];
        let (flags, count) = match (e.u16(page, 8), e.u16(page, 10)) {
            (Some(f), Some(c)) => (f, c),
            _ => bail!("inline bucket too short for a page header"),
        };
        if flags != LEAF {
            bail!("inline bucket page has flags {flags:#x}, expected a leaf ({LEAF:#x})");
        }
        let mut items = Vec::new();
        let mut shape = Shape::default();
        self.leaf(
            page,
            count,
            &format_args!("inline bucket {} in {ctx}", Shown(key)),
            (None, None),
            depth,
            &mut items,
            &mut shape,
        )?;
        Ok((
            Bucket {
                sequence,
                entries: items.into_iter().collect(),
                page: 0,
            },
            shape,
        ))
    }
}

/// Leaf element `i` of the page image `buf`: `(flags, key, value)`, bounds-checked; `ctx`
/// names the page in errors.
pub fn leaf_element<'a>(
    e: Endian,
    buf: &'a [u8],
    i: usize,
    ctx: &dyn fmt::Display,
) -> Result<(u32, &'a [u8], &'a [u8])> {
    let at = PAGE_HEADER + i * ELEMENT;
    let (flags, pos, ksize, vsize) = match (
        e.u32(buf, at),
        e.u32(buf, at + 4),
        e.u32(buf, at + 8),
        e.u32(buf, at + 12),
    ) {
        (Some(f), Some(p), Some(k), Some(v)) => (f, p, k, v),
        _ => bail!("{ctx}: element {i} lies outside the page"),
    };
    let key = slice(buf, at, pos, ksize, 0)
        .ok_or_else(|| anyhow!("{ctx}: key of element {i} lies outside the page"))?;
    let value = slice(buf, at, pos, vsize, ksize)
        .ok_or_else(|| anyhow!("{ctx}: value of element {i} lies outside the page"))?;
    Ok((flags, key, value))
}

/// Branch element `i` of the page image `buf`: `(key, child page id)`, bounds-checked.
pub fn branch_element<'a>(
    e: Endian,
    buf: &'a [u8],
    i: usize,
    ctx: &dyn fmt::Display,
) -> Result<(&'a [u8], u64)> {
    let at = PAGE_HEADER + i * ELEMENT;
    let (pos, ksize, child) = match (e.u32(buf, at), e.u32(buf, at + 4), e.u64(buf, at + 8)) {
        (Some(p), Some(k), Some(c)) => (p, k, c),
        _ => bail!("{ctx}: element {i} lies outside the page"),
    };
    let key = slice(buf, at, pos, ksize, 0)
        .ok_or_else(|| anyhow!("{ctx}: key of element {i} lies outside the page"))?;
    Ok((key, child))
}

/// The `len` bytes at `at + pos + skip` within `buf`, if they are all inside it.
pub fn slice(buf: &[u8], at: usize, pos: u32, len: u32, skip: u32) -> Option<&[u8]> {
    let start = at.checked_add(pos as usize)?.checked_add(skip as usize)?;
    buf.get(start..start.checked_add(len as usize)?)
}

/// Keys are non-empty, strictly after the previous key and within `[lo, hi)`, the range of
/// the branch element they hang under.
pub fn check_key(
    key: &[u8],
    prev: Option<&[u8]>,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
) -> Result<()> {
    if key.is_empty() {
        bail!("empty key");
    }
    if let Some(prev) = prev.filter(|p| key <= *p) {
        bail!("key {} is not after {}", show(key), show(prev));
    }
    if let Some(lo) = lo.filter(|lo| key < *lo) {
        bail!("key {} is below its branch key {}", show(key), show(lo));
    }
    if let Some(hi) = hi.filter(|hi| key >= *hi) {
        bail!(
            "key {} is not below the next branch key {}",
            show(key),
            show(hi)
        );
    }
    Ok(())
}
