//! The fixed parts of the bbolt page format (`bbolt-format.md` §1–§3, §6): constants, byte
//! order, the meta page and its FNV-1a checksum. Every read is bounds-checked and returns
//! `None` rather than panicking, so callers can turn it into an error naming the page.

use anyhow::{bail, Context, Result};

pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
pub const PAGE_HEADER: usize = 16;
/// Leaf and branch elements are both 16 bytes.
pub const ELEMENT: usize = 16;
/// A nested bucket's value starts with `{root u64, sequence u64}`.
pub const BUCKET_HEADER: usize = 16;
pub const BRANCH: u16 = 0x01;
pub const LEAF: u16 = 0x02;
pub const META: u16 = 0x04;
pub const FREELIST: u16 = 0x10;
/// Leaf element flag: the value is a nested bucket.
pub const BUCKET_LEAF: u32 = 0x01;
/// Meta `freelist` value meaning "no freelist page; rebuild by walking" (containerd >= 1.7).
pub const NO_FREELIST: u64 = u64::MAX;
/// A freelist `count` of 0xFFFF means the real count is the first u64 after the header.
pub const COUNT_ESCAPE: u16 = 0xFFFF;
/// Go panics when a page holds 0xFFFF elements or more; we split before that.
pub const MAX_ELEMENTS: usize = 0xFFFE;
/// bbolt's limits (`bucket.go`): Put refuses longer keys and values.
pub const MAX_KEY: usize = 32_768;
pub const MAX_VALUE: usize = (1 << 31) - 2;
/// Page sizes we accept from a file: Go takes the kernel's page size (4 KiB to 64 KiB in
/// practice); anything outside this range is damage, not a configuration.
pub const MIN_PAGE_SIZE: u32 = 512;
pub const MAX_PAGE_SIZE: u32 = 1 << 24;
/// The largest page size kernels use (64 KiB): reading twice this finds both meta pages of
/// any real file.
pub const MAX_COMMON_PAGE_SIZE: u32 = 1 << 16;
/// How far Go probes for meta page 1 when meta page 0 is damaged (`1024 << 14`), plus room
/// for the meta page found there.
pub const PROBE_LIMIT: u64 = (1024 << 14) + (1 << 16);
/// Bytes of the meta page covered by the layout (header + fields + checksum).
pub const META_LEN: usize = 80;

/// The file's byte order: bbolt casts structs onto the mmap, so a file is in the byte order
/// of the machine that created it (an s390x file is big-endian) and is detected from the
/// magic. The type is the platform's, so "the root's architecture" maps onto it directly.
pub use crate::platform::Endian;

impl Endian {
    /// This machine's order: what Go's bbolt running here reads and writes.
    pub fn native() -> Endian {
        if cfg!(target_endian = "big") {
            Endian::Big
        } else {
            Endian::Little
        }
    }

    pub fn u16(self, buf: &[u8], off: usize) -> Option<u16> {
        let b: [u8; 2] = buf.get(off..off.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        })
    }

    pub fn u32(self, buf: &[u8], off: usize) -> Option<u32> {
        let b: [u8; 4] = buf.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        })
    }

    pub fn u64(self, buf: &[u8], off: usize) -> Option<u64> {
        let b: [u8; 8] = buf.get(off..off.checked_add(8)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        })
    }

    /// Writers only touch buffers they sized themselves, so a short buffer is a bug here.
    pub fn put_u16(self, buf: &mut [u8], off: usize, v: u16) {
        let b = match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        buf[off..off + 2].copy_from_slice(&b);
    }

    pub fn put_u32(self, buf: &mut [u8], off: usize, v: u32) {
        let b = match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        buf[off..off + 4].copy_from_slice(&b);
    }

    pub fn put_u64(self, buf: &mut [u8], off: usize, v: u64) {
        let b = match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        buf[off..off + 8].copy_from_slice(&b);
    }

    /// Writes a page header: `{id u64, flags u16, count u16, overflow u32}`.
    pub fn put_header(self, buf: &mut [u8], id: u64, flags: u16, count: u16, overflow: u32) {
        self.put_u64(buf, 0, id);
        self.put_u16(buf, 8, flags);
        self.put_u16(buf, 10, count);
        self.put_u32(buf, 12, overflow);
    }
}

/// FNV-1a, 64 bit, as Go's `hash/fnv` computes it for the meta checksum.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fields of a meta page (`bbolt-format.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub endian: Endian,
    pub page_size: u32,
    pub flags: u32,
    pub root: u64,
    pub sequence: u64,
    pub freelist: u64,
    pub pgid: u64,
    pub txid: u64,
}

impl Meta {
    /// The meta `txid` (0 or 1) of a new, empty file as Go's `db.init()` writes it: page 2 is
    /// the freelist, page 3 the empty root leaf, so the high-water mark is 4.
    pub fn initial(page_size: u32, endian: Endian, txid: u64) -> Meta {
        Meta {
            endian,
            page_size,
            flags: 0,
            root: 3,
            sequence: 0,
            freelist: 2,
            pgid: 4,
            txid,
        }
    }

    /// Parses and validates the meta page whose bytes start at `buf[0]`, in Go's order:
    /// magic (which also gives the byte order), version, checksum.
    pub fn parse(buf: &[u8]) -> Result<Meta> {
        if buf.len() < META_LEN {
            bail!("file too short for a meta page");
        }
        let endian = [Endian::Little, Endian::Big]
            .into_iter()
            .find(|e| e.u32(buf, 16) == Some(MAGIC))
            .context("bad magic: not a bbolt file")?;
        let get = |off| endian.u64(buf, off).unwrap_or_default();
        let version = endian.u32(buf, 20).unwrap_or_default();
        if version != VERSION {
            bail!("unsupported version {version} (bbolt writes {VERSION})");
        }
        let checksum = get(72);
        if fnv1a64(&buf[16..72]) != checksum {
            bail!("checksum mismatch (torn or damaged meta page)");
        }
        Ok(Meta {
            endian,
            page_size: endian.u32(buf, 24).unwrap_or_default(),
            flags: endian.u32(buf, 28).unwrap_or_default(),
            root: get(32),
            sequence: get(40),
            freelist: get(48),
            pgid: get(56),
            txid: get(64),
        })
    }

    /// The whole meta page for transaction `txid`, written to page `txid % 2`.
    pub fn encode(&self) -> Vec<u8> {
        let e = self.endian;
        let mut page = vec![0; self.page_size as usize];
        let id = self.txid % 2;
        e.put_header(&mut page, id, META, 0, 0);
        e.put_u32(&mut page, 16, MAGIC);
        e.put_u32(&mut page, 20, VERSION);
        e.put_u32(&mut page, 24, self.page_size);
        e.put_u32(&mut page, 28, self.flags);
        e.put_u64(&mut page, 32, self.root);
        e.put_u64(&mut page, 40, self.sequence);
        e.put_u64(&mut page, 48, self.freelist);
        e.put_u64(&mut page, 56, self.pgid);
        e.put_u64(&mut page, 64, self.txid);
        let sum = fnv1a64(&page[16..72]);
        e.put_u64(&mut page, 72, sum);
        page
    }
}

/// Finds the current meta page of a whole file: learns the page size from meta 0 (or, if that
/// is damaged, by probing for meta 1 the way Go does), then takes the valid meta with the
/// highest txid.
pub fn current_meta(bytes: &[u8]) -> Result<Meta> {
    let meta0 = Meta::parse(bytes);
    let page_size = match &meta0 {
        Ok(m) => m.page_size as usize,
        Err(_) => (0..15)
            .map(|i| 1024usize << i)
            .find(|&off| {
                bytes
                    .get(off..)
                    .and_then(|b| Meta::parse(b).ok())
                    .is_some_and(|m| m.page_size as usize == off)
            })
            .unwrap_or(0),
    };
    let meta1 = match bytes.get(page_size..) {
        Some(b) if page_size > 0 => Meta::parse(b),
        _ => Err(anyhow::anyhow!("no page size known to find it")),
    };
    let chosen = match (meta0, meta1) {
        (Ok(a), Ok(b)) => {
            if a.page_size != b.page_size || a.endian != b.endian {
                bail!(
                    "meta pages disagree: page 0 says page size {}, page 1 says {}",
                    a.page_size,
                    b.page_size
                );
            }
            if b.txid > a.txid {
                b
            } else {
                a
            }
        }
        (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
        (Err(a), Err(b)) => bail!("no valid meta page: page 0: {a:#}; page 1: {b:#}"),
    };
    if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&chosen.page_size) {
        bail!(
            "meta page for txid {}: implausible page size {}",
            chosen.txid,
            chosen.page_size
        );
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's `db.init()` metas for an empty 4096-byte-page file (`bbolt-format.md` §3).
    #[test]
    fn meta_checksums_match_go_test_vector() {
        for (txid, sum) in [(0, 0x0751_6e11_4689_fdee), (1, 0x264c_351a_5179_480f)] {
            let meta = Meta::initial(4096, Endian::Little, txid);
            let page = meta.encode();
            assert_eq!(u64::from_le_bytes(page[72..80].try_into().unwrap()), sum);
            assert_eq!(&page[16..20], &MAGIC.to_le_bytes());
            assert_eq!(u64::from_le_bytes(page[0..8].try_into().unwrap()), txid);
            assert_eq!(Meta::parse(&page).unwrap(), meta);
        }
    }

    #[test]
    fn meta_validation_errors() {
        let meta = Meta {
            endian: Endian::Big,
            page_size: 4096,
            flags: 0,
            root: 3,
            sequence: 7,
            freelist: NO_FREELIST,
            pgid: 4,
            txid: 9,
        };
        let page = meta.encode();
        assert_eq!(Meta::parse(&page).unwrap(), meta);
        let mut bad = page.clone();
        bad[40] ^= 1;
        assert!(format!("{:#}", Meta::parse(&bad).unwrap_err()).contains("checksum"));
        let mut bad = page.clone();
        bad[23] = 3;
        assert!(format!("{:#}", Meta::parse(&bad).unwrap_err()).contains("version 3"));
        assert!(format!("{:#}", Meta::parse(&page[..79]).unwrap_err()).contains("short"));
        assert!(format!("{:#}", Meta::parse(&[0; 80]).unwrap_err()).contains("magic"));
    }

    #[test]
    fn fnv_matches_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
