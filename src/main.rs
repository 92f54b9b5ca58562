//! pausebake: compile the Kubernetes pause program, assemble a byte-reproducible OCI image
//! of it, and bake it into an offline root's containerd store and config.

mod archive;
mod bake;
mod bolt;
mod cli;
mod containerd;
mod exec;
#[cfg(test)]
mod fuzzed;
mod image;
mod live;
mod pause;
mod platform;
mod rootfs;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::Cli;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            // One line: Packer and CI logs are line-oriented.
            eprintln!("pausebake: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli {
        Cli::Build(args) => pause::build(&args),
        Cli::Image(args) => archive::image(&args),
        Cli::Import(args) => containerd::store::import(&args),
        Cli::Configure(args) => containerd::config::configure(&args),
        Cli::Verify(args) => containerd::verify::verify(&args),
        Cli::Bake(args) => bake::bake(&args),
        Cli::Bolt(args) => bolt::command(&args),
    }
}
