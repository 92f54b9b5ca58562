//! The command-line contract (`design.md`, "Commands"): clap types only, no logic.
//!
//! This is the only module that reads the environment (`SOURCE_DATE_EPOCH`); everything
//! below takes the values it parsed as parameters.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::platform::{Arch, Platform};

/// Build the Kubernetes pause image and bake it into an offline root's containerd store.
#[derive(Debug, Parser)]
#[command(name = "pausebake", version, help_expected = true, max_term_width = 80)]
pub enum Cli {
    /// Compile pause for one or more architectures
    Build(BuildArgs),
    /// Write the pause image as an OCI archive, OCI directory or docker archive
    Image(ImageArgs),
    /// Write an image archive into the containerd store under --root, offline
    Import(ImportArgs),
    /// Set the sandbox image in the containerd config under --root
    Configure(ConfigureArgs),
    /// Check that a pod sandbox would start on --root with no network (exit 3 if not)
    Verify(VerifyArgs),
    /// Compile, assemble, import, configure and verify in one step
    Bake(BakeArgs),
    /// Developer tool: read or change a bbolt file (used by the tests)
    #[command(hide = true)]
    Bolt(BoltArgs),
}

/// How the pause binary is produced.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Architectures, comma-separated (amd64, arm64, arm, ppc64le, s390x, riscv64)
    /// [default: the host's; for bake, the root's]
    #[arg(long, value_delimiter = ',', value_parser = parse_arch)]
    pub arch: Vec<Arch>,
    /// C compiler to use instead of searching for clang, TRIPLE-gcc and cc
    #[arg(long, value_name = "PATH")]
    pub cc: Option<PathBuf>,
    /// Version string compiled into pause and printed by `pause -v`
    #[arg(long, value_name = "STRING", default_value = concat!("pausebake-", env!("CARGO_PKG_VERSION")))]
    pub pause_version: String,
}

/// Machine-readable output.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print a JSON document on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

/// Seconds since the Unix epoch used for every timestamp pausebake writes.
#[derive(Debug, Args)]
pub struct EpochArgs {
    /// Timestamp for image content and metadata records, in seconds since 1970 (image
    /// content defaults to 0; containerd records default to the current time)
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS", value_parser = parse_epoch)]
    pub source_date_epoch: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub compile: CompileArgs,
    /// Directory to write pause-linux-ARCH into
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// gzip with a fixed header (application/vnd.oci.image.layer.v1.tar+gzip)
    Gzip,
    /// plain tar (application/vnd.oci.image.layer.v1.tar); digest equals diff_id
    None,
}

/// On-disk form of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// OCI image layout in a tar file
    OciArchive,
    /// OCI image layout in a directory
    OciDir,
    /// `docker save` format (manifest.json with RepoTags)
    DockerArchive,
}

/// What goes into the image and how it is named.
#[derive(Debug, Args)]
pub struct ImageSpecArgs {
    /// Use a prebuilt pause for ARCH instead of compiling (repeatable)
    #[arg(long, value_name = "ARCH=PATH", value_parser = parse_binary)]
    pub binary: Vec<(Arch, PathBuf)>,
    /// Layer compression
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    pub compression: Compression,
    #[command(flatten)]
    pub epoch: EpochArgs,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(flatten)]
    pub compile: CompileArgs,
    #[command(flatten)]
    pub spec: ImageSpecArgs,
    /// Image reference to record in the image (repeatable)
    #[arg(
        long = "name",
        value_name = "REF",
        default_value = "registry.k8s.io/pause:3.10"
    )]
    pub names: Vec<String>,
    /// File (or directory, for oci-dir) to write
    #[arg(long, value_name = "PATH", default_value = "pause.oci.tar")]
    pub output: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::OciArchive)]
    pub format: Format,
    #[command(flatten)]
    pub output_args: OutputArgs,
}

/// Where in the root, and for which platform and namespace, records go.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Root filesystem to write into (a mounted image, a chroot, or / with containerd stopped)
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// containerd namespace
    #[arg(long, default_value = "k8s.io")]
    pub namespace: String,
    /// Platform to import and verify [default: detected from the root's binaries]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// containerd version to assume [default: read from the root's containerd binary]
    #[arg(long, value_name = "VERSION")]
    pub containerd_version: Option<String>,
}

/// Which containerd config file is the main one.
#[derive(Debug, Args)]
pub struct ConfigFileArgs {
    /// Main containerd config, a path inside the root [default: the --config of the root's
    /// containerd.service, else /etc/containerd/config.toml]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// OCI archive, OCI directory or docker archive (plain or gzip-compressed)
    #[arg(value_name = "ARCHIVE")]
    pub archive: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Image reference to record, in addition to the names the archive carries (repeatable)
    #[arg(long = "name", value_name = "REF")]
    pub names: Vec<String>,
    /// Import every platform in the archive, not just the root's
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,
    /// Write no CRI managed/pinned labels
    #[arg(long)]
    pub no_pin: bool,
    #[command(flatten)]
    pub epoch: EpochArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub config: ConfigFileArgs,
    /// Sandbox image reference to set [default: the pause matching the root's Kubernetes
    /// version, else the root's containerd default]
    #[arg(long, value_name = "REF")]
    pub sandbox_image: Option<String>,
    /// Kubernetes version to pick the pause tag for [default: detected in the root]
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub config: ConfigFileArgs,
    /// Kubernetes version to check the pause tag against [default: detected in the root]
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BakeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub config: ConfigFileArgs,
    #[command(flatten)]
    pub compile: CompileArgs,
    #[command(flatten)]
    pub spec: ImageSpecArgs,
    /// Import this archive instead of building the image
    #[arg(long, value_name = "PATH", conflicts_with_all = ["binary", "arch", "cc"])]
    pub archive: Option<PathBuf>,
    /// Kubernetes version to pick the pause tag for [default: detected in the root]
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
    /// Image reference; the first is set in the config, the rest add image records
    /// (repeatable) [default: the pause matching the Kubernetes version]
    #[arg(long = "name", value_name = "REF")]
    pub names: Vec<String>,
    /// Write no CRI managed/pinned labels
    #[arg(long)]
    pub no_pin: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BoltArgs {
    #[command(subcommand)]
    pub command: BoltCommand,
}

#[derive(Debug, Subcommand)]
pub enum BoltCommand {
    /// Print the whole tree in bolt-check's dump format
    Dump {
        /// bbolt file
        file: PathBuf,
    },
    /// Set one key in one transaction, creating the buckets on the way
    Set {
        /// bbolt file (created if missing)
        file: PathBuf,
        /// Bucket path, '/'-separated
        #[arg(long, value_name = "A/B/C")]
        bucket: String,
        /// Key to set
        #[arg(long)]
        key: String,
        /// Value to store
        #[arg(long)]
        value: String,
        /// Stop the process (SIGSTOP) after this many writes and syncs, so a test can kill it
        /// at exactly that point of the commit
        #[arg(long, value_name = "N")]
        stop_after_writes: Option<u64>,
    },
    /// Apply seeded random changes in COMMITS transactions (creates the file if missing)
    Random {
        /// bbolt file
        file: PathBuf,
        /// Seed of the changes
        #[arg(long)]
        seed: u64,
        /// Number of transactions
        #[arg(long, default_value_t = 1)]
        commits: u32,
    },
    /// Rewrite every page of the tree in one transaction (no page is kept)
    Rewrite {
        /// bbolt file
        file: PathBuf,
    },
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse().map_err(|e: anyhow::Error| e.to_string())
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    s.parse().map_err(|e: anyhow::Error| e.to_string())
}

fn parse_epoch(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| {
        format!("expected whole seconds since 1970 (from --source-date-epoch or SOURCE_DATE_EPOCH), got {s:?}")
    })
}

fn parse_binary(s: &str) -> Result<(Arch, PathBuf), String> {
    let (arch, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ARCH=PATH, got {s:?}"))?;
    Ok((parse_arch(arch)?, PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn arch_list_parses() {
        let cli = Cli::try_parse_from(["pausebake", "build", "--arch", "amd64,arm"]).unwrap();
        let Cli::Build(args) = cli else {
            panic!("expected build")
        };
        assert_eq!(args.compile.arch, vec![Arch::Amd64, Arch::Arm]);
    }

    #[test]
    fn unknown_arch_is_a_usage_error() {
        let err = Cli::try_parse_from(["pausebake", "build", "--arch", "mips"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn binary_needs_arch_and_path() {
        assert!(parse_binary("arm64=/tmp/p").is_ok());
        assert!(parse_binary("/tmp/p").is_err());
    }
}
