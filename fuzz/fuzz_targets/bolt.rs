//! Fuzzes `bolt::read_tree`, the reader every existing `meta.db` goes through before
//! pausebake writes to it: any bytes must give `Ok` or `Err`, never a panic, an endless
//! loop or unbounded memory. Each input is read twice: as given, and with both meta pages'
//! checksums recomputed, so the fuzzer explores the pages behind them.

#![no_main]
// The modules are the main crate's; most of their items are unused here.
#![allow(dead_code, unused_imports)]

#[path = "../../src/bolt/mod.rs"]
mod bolt;
#[path = "../../src/cli.rs"]
mod cli;
#[path = "../../src/exec.rs"]
mod exec;
#[path = "../../src/platform.rs"]
mod platform;

use libfuzzer_sys::fuzz_target;

/// bbolt's FNV-1a 64 over a meta's first 56 bytes.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Recomputes the checksum of the meta page at `page` (little-endian files), so mutations
/// reach the tree behind it instead of stopping at the checksum every time.
fn fix_meta(buf: &mut [u8], page: usize) {
    let at = page + 16;
    if let Some(meta) = buf.get_mut(at..at + 64) {
        let sum = fnv1a64(&meta[..56]);
        meta[56..].copy_from_slice(&sum.to_le_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = bolt::read_tree(data);
    let mut fixed = data.to_vec();
    let size = data
        .get(24..28)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .filter(|s| s.is_power_of_two() && (512..=1 << 24).contains(s))
        .unwrap_or(4096);
    fix_meta(&mut fixed, 0);
    fix_meta(&mut fixed, size);
    let _ = bolt::read_tree(&fixed);
});
