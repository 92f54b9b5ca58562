//! The image as containerd stores it under a root: content blobs and the `meta.db`
//! records (content, images, GC labels) that make CRI find it locally.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::ImportArgs;

/// `pausebake import`.
pub fn import(_args: &ImportArgs) -> Result<ExitCode> {
    bail!("not implemented yet")
}
