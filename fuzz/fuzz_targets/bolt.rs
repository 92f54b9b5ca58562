//! Fuzzes `bolt::read_tree`, the reader every existing `meta.db` goes through before
//! pausebake writes to it: any bytes must give `Ok` or `Err`, never a panic, an endless
//! loop or unbounded memory.

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

fuzz_target!(|data: &[u8]| {
    let _ = bolt::read_tree(data);
});
