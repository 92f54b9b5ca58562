//! `pausebake version` and `pausebake --version`: what a given pausebake writes, so two
//! hosts (or a README) can be compared without baking anything. The built-in pause
//! programs' sha256 per architecture, and the digest of the image `bake` writes for each
//! platform with its defaults (gzip, epoch 0; names live in `index.json` and the records,
//! not in the manifest), plus the six-platform index that `image --arch` of all six writes.

use std::process::ExitCode;

use anyhow::Result;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Compression, OutputArgs, VersionArgs};
use crate::image::{self, ImageSpec};
use crate::platform::Arch;

/// One architecture's built-in pause and the manifest `bake` writes for it.
#[derive(Debug, serde::Serialize)]
struct Program {
    arch: &'static str,
    platform: String,
    size: usize,
    pause_sha256: String,
    image_digest: String,
}

/// The whole report.
#[derive(Debug, serde::Serialize)]
struct Report {
    version: &'static str,
    pause_version: &'static str,
    programs: Vec<Program>,
    /// The six-platform image index (`pausebake image --arch` of all six).
    all_platforms_digest: String,
}

fn report() -> Result<Report> {
    let binaries: Vec<(Arch, Vec<u8>)> = Arch::ALL
        .iter()
        .map(|&a| (a, crate::pause::built_in(a).to_vec()))
        .collect();
    // One assembly gives both: each platform's manifest in the index is byte for byte the
    // manifest a single-platform image (what `bake` writes) has as its target.
    let image = image::assemble(
        &binaries,
        &ImageSpec {
            names: Vec::new(),
            epoch: 0,
            compression: Compression::Gzip,
        },
    )?;
    let summaries = image.platform_summaries()?;
    let programs = binaries
        .iter()
        .zip(&summaries)
        .map(|((arch, elf), s)| Program {
            arch: arch.name(),
            platform: s.platform.map_or_else(String::new, |p| p.to_string()),
            size: elf.len(),
            pause_sha256: crate::digest::sha256_digest(elf),
            image_digest: s.manifest.digest().to_string(),
        })
        .collect();
    Ok(Report {
        version: env!("CARGO_PKG_VERSION"),
        pause_version: crate::pause::DEFAULT_VERSION,
        programs,
        all_platforms_digest: image.target.digest().to_string(),
    })
}

/// The text `--version` and `version` print.
pub fn text() -> Result<String> {
    let r = report()?;
    let mut out = format!(
        "{}\nbuilt-in pause ({}), and the image bake writes with it (gzip, epoch 0):\n",
        r.version, r.pause_version
    );
    for p in &r.programs {
        out.push_str(&format!(
            "  {:<14} pause {} ({} bytes)\n  {:<14} image {}\n",
            p.platform, p.pause_sha256, p.size, "", p.image_digest
        ));
    }
    out.push_str(&format!(
        "  {:<14} image {}",
        "all six", r.all_platforms_digest
    ));
    Ok(out)
}

/// Parses the command line (here, not in `cli`, which stays free of logic). `-V` and
/// `--version`, alone or with `--json`, are the `version` command: one text (the built-in
/// pause programs and the digests of the images they make) and one JSON document, whichever
/// spelling is used.
pub fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let is_version = |a: &std::ffi::OsString| a == "-V" || a == "--version";
    if args.iter().any(is_version) && args.iter().all(|a| is_version(a) || a == "--json") {
        return Cli::Version(VersionArgs {
            output: OutputArgs {
                json: args.iter().any(|a| a == "--json"),
            },
        });
    }
    let matches = Cli::command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `pausebake version`.
pub fn version(args: &VersionArgs) -> Result<ExitCode> {
    if args.output.json {
        crate::output::print_json(&report()?)?;
    } else {
        println!("pausebake {}", text()?);
    }
    Ok(ExitCode::SUCCESS)
}
