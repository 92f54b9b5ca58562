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
mod distro;
mod docker;
mod effective;
mod harden;
mod harness;
mod image;
mod packer;
mod pause;
mod plan;
mod release;
