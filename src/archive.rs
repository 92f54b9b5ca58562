//! Writing and reading images on disk: OCI archive (tar of an OCI layout), OCI layout
//! directory, and docker archive. Reading validates every digest and size.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::ImageArgs;

/// `pausebake image`.
pub fn image(_args: &ImageArgs) -> Result<ExitCode> {
    bail!("not implemented yet")
}
