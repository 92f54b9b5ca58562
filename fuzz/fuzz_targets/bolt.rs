//! Fuzzes `bolt::read_tree`, the reader every existing `meta.db` goes through before
//! pausebake writes to it: any bytes must give `Ok` or `Err`, never a panic, an endless
//! loop or unbounded memory. Each input is read twice (`fuzz_input::bolt`): as given, and
//! with both meta pages' checksums recomputed, so the fuzzer explores the pages behind them.

#![no_main]
// The modules are the main crate's; most of their items are unused here.
#![allow(dead_code, unused_imports)]

#[path = "../../src/bolt/mod.rs"]
mod bolt;
#[path = "../../src/cli.rs"]
mod cli;
// cli parses containerd versions and lists the known releases in its help; the table is
// pure, so only it is taken from the containerd module.
#[path = "../../src/containerd"]
mod containerd {
    pub mod versions;
}
#[path = "../../src/digest.rs"]
mod digest;
#[path = "../../src/exec.rs"]
mod exec;
#[path = "../../src/fuzz_input.rs"]
mod fuzz_input;
#[path = "../../src/platform.rs"]
mod platform;
// cli checks reference flags with reference's parser
#[path = "../../src/reference.rs"]
mod reference;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The variants the regression replay (src/fuzzed.rs) reads a committed case in.
    for (_, bytes) in fuzz_input::bolt(data) {
        let _ = bolt::read_tree(&bytes);
    }
});
