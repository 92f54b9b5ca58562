//! pausebake: carry (or compile) the Kubernetes pause program, assemble a byte-reproducible
//! OCI image of it, and bake it into an offline root's containerd store and config.

mod archive;
mod bake;
mod bolt;
mod cli;
mod containerd;
mod devtool;
mod digest;
mod disk;
mod exec;
#[cfg(test)]
mod fuzz_input;
#[cfg(test)]
mod fuzzed;
mod image;
mod live;
mod output;
mod pause;
mod platform;
mod reference;
mod rootfs;
#[cfg(test)]
mod strict;
#[cfg(test)]
mod structure;
mod trace;
mod version;

use std::process::ExitCode;

use anyhow::Result;
use cli::Cli;

fn main() -> ExitCode {
    end_quietly_on_broken_pipe();
    match run(version::parse()) {
        Ok(code) => code,
        Err(err) => {
            // One line: Packer and CI logs are line-oriented.
            eprintln!(
                "pausebake: error: {}",
                output::one_line(&format!("{err:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli {
        Cli::Build(args) => pause::build(&args),
        Cli::Image(args) => archive::image(&args),
        Cli::Import(args) => bake::import(&args),
        Cli::Configure(args) => bake::configure(&args),
        Cli::Verify(args) => bake::verify(&args),
        Cli::Bake(args) => bake::bake(&args),
        Cli::Version(args) => version::version(&args),
        Cli::Bolt(args) => devtool::command(&args),
    }
}

/// A closed stdout (`pausebake image | head -1`) ends the program quietly with status 0, as
/// ripgrep does, instead of `println!`'s panic. Rust ignores SIGPIPE, so the write fails
/// with EPIPE and `println!` panics with this fixed message; every other panic is reported
/// as usual.
fn end_quietly_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}
