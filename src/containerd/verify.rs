//! Replays containerd's lookup of the sandbox image against a root, offline.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::VerifyArgs;

/// `pausebake verify`.
pub fn verify(_args: &VerifyArgs) -> Result<ExitCode> {
    bail!("not implemented yet")
}
