//! The integration tests: the real `pausebake` binary against the real programs it must
//! satisfy (compilers, qemu-user, skopeo, umoci, Go's bbolt, containerd, runc, packer).
//! One test binary, so the harness links once.

mod arch;
mod bake;
mod bolt;
mod cli;
mod compat;
mod configure;
mod containerd;
mod cri;
mod disk;
mod distro;
mod docker;
mod effective;
mod harden;
mod harness;
mod image;
#[cfg(feature = "live")]
mod live;
mod owners;
mod packer;
mod pause;
mod plan;
mod readme;
mod release;
mod vm;

/// The live tests need the `live` feature (`make test` enables it); without it they would
/// not even compile, so say so loudly (a failure under CI=true).
#[cfg(not(feature = "live"))]
#[test]
fn live_tests_need_the_live_feature() {
    harness::skip("the live tests (tests/it/live.rs): build with --features live");
}
