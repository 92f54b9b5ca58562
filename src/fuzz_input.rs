//! What each fuzz target makes of one input before its reader sees it: one function per
//! target, shared by the target (`fuzz/fuzz_targets/*.rs` include this file by path) and by
//! the regression replay (`src/fuzzed.rs`), so a committed case is read back exactly the ways
//! the fuzzer read it when it was found.

use std::io::Write;

use crate::bolt::page::{fnv1a64, Endian, MAGIC, MAX_PAGE_SIZE, META_LEN, MIN_PAGE_SIZE};

/// One way an input is read: its name (as in `fuzz/regressions/<target>.expect`) and the
/// bytes the reader gets.
pub type Variant = (&'static str, Vec<u8>);

/// `archive::read` takes a file: the input as given (a tar, or gzip by its magic) and the
/// input wrapped in valid gzip, so mutations reach the tar and JSON layers behind a gzip
/// stream whose checksum holds.
pub fn archive(data: &[u8]) -> [Variant; 2] {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip into memory");
    let gz = gz.finish().expect("gzip into memory");
    [("plain", data.to_vec()), ("gzip", gz)]
}

/// `bolt::read_tree` takes bytes: the input as given, and with both meta pages' checksums
/// recomputed (in the byte order their magic gives), so mutations reach the pages behind the
/// metas instead of stopping at a checksum mismatch every time.
pub fn bolt(data: &[u8]) -> [Variant; 2] {
    let mut sealed = data.to_vec();
    // Meta 1 sits one page in; the page size is meta 0's, else bbolt's usual 4096.
    let size = [Endian::Little, Endian::Big]
        .into_iter()
        .find(|e| e.u32(data, 16) == Some(MAGIC))
        .and_then(|e| e.u32(data, 24))
        .filter(|s| s.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(s))
        .unwrap_or(4096) as usize;
    reseal_meta(&mut sealed, 0);
    reseal_meta(&mut sealed, size);
    [("raw", data.to_vec()), ("checksums", sealed)]
}

/// Recomputes the checksum of the meta page starting at `at`, if there is one.
fn reseal_meta(buf: &mut [u8], at: usize) {
    let Some(page) = buf.get_mut(at..at + META_LEN) else {
        return;
    };
    let endian = if Endian::Big.u32(page, 16) == Some(MAGIC) {
        Endian::Big
    } else {
        Endian::Little
    };
    let sum = fnv1a64(&page[16..72]);
    endian.put_u64(page, 72, sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resealing_makes_a_damaged_meta_checksum_valid_again_in_both_byte_orders() {
        for endian in [Endian::Little, Endian::Big] {
            let mut page = vec![0u8; 4096 * 2];
            for at in [0, 4096] {
                endian.put_u32(&mut page, at + 16, MAGIC);
                endian.put_u32(&mut page, at + 24, 4096);
                endian.put_u64(&mut page, at + 72, 12345);
            }
            let [(raw, raw_bytes), (name, sealed)] = bolt(&page);
            assert_eq!((raw, name), ("raw", "checksums"));
            assert_eq!(raw_bytes, page);
            for at in [0, 4096] {
                let want = fnv1a64(&sealed[at + 16..at + 72]);
                assert_eq!(endian.u64(&sealed, at + 72), Some(want), "{endian:?} {at}");
            }
        }
    }

    #[test]
    fn the_gzip_variant_decompresses_to_the_input() {
        let [(_, plain), (name, gz)] = archive(b"any bytes");
        assert_eq!((plain.as_slice(), name), (&b"any bytes"[..], "gzip"));
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, b"any bytes");
    }
}
