//! `bake`: compile, assemble, import, configure and verify in one step, one summary.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::BakeArgs;

/// `pausebake bake`.
pub fn bake(_args: &BakeArgs) -> Result<ExitCode> {
    bail!("not implemented yet")
}
