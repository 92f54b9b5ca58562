//! The command-line contract (`design.md`, "Commands"): clap types only, no logic.
//!
//! This is the only module that reads the environment (`SOURCE_DATE_EPOCH`); everything
//! below takes the values it parsed as parameters.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::containerd::versions::{self, Version};
use crate::platform::{Arch, Platform};

/// Build the Kubernetes pause image and bake it into an offline root's containerd store.
#[derive(Debug, Parser)]
#[command(
    name = "pausebake",
    version,
    help_expected = true,
    max_term_width = 80,
    defer = true
)]
pub enum Cli {
    /// Write the built-in pause (or compile it) for one or more architectures
    Build(BuildArgs),
    /// Write the pause image as an OCI archive, OCI directory or docker archive
    Image(ImageArgs),
    /// Write an image archive into the containerd store under --root, offline
    Import(ImportArgs),
    /// Set the sandbox image in the containerd config under --root
    Configure(ConfigureArgs),
    /// Check that a pod sandbox would start on --root with no network (exit 3 if not)
    Verify(VerifyArgs),
    /// Assemble, import, configure and verify in one step
    Bake(BakeArgs),
    /// Print the version, the built-in pause programs' sha256 and the image digests
    Version(VersionArgs),
    /// Developer tool: read or change a bbolt file (used by the tests)
    #[command(hide = true)]
    Bolt(BoltArgs),
}

// How the pause binary is produced: the program built into pausebake, unless compiling
// is asked for.
#[derive(Debug, Clone, Args)]
pub struct CompileArgs {
    /// Architectures, comma-separated (amd64, arm64, arm, ppc64le, s390x, riscv64)
    /// [default: the host's; for bake, the root's]
    #[arg(long, value_delimiter = ',', value_parser = parse_arch)]
    pub arch: Vec<Arch>,
    /// Compile templates/pause.c with a C compiler on this host instead of using the pause
    /// programs built into pausebake (implied by --cc, --ld and --pause-version)
    #[arg(long)]
    pub compile: bool,
    /// C compiler to use instead of searching for clang, TRIPLE-gcc and cc (implies
    /// --compile)
    #[arg(long, value_name = "PATH")]
    pub cc: Option<PathBuf>,
    /// Linker for clang instead of ld.lld (s390x: s390x-linux-gnu-ld) (implies --compile)
    #[arg(long, value_name = "PATH")]
    pub ld: Option<PathBuf>,
    /// Version string compiled into pause and printed by `pause -v` (implies --compile)
    /// [default: the built-in programs' pausebake-VERSION]
    #[arg(long, value_name = "STRING")]
    pub pause_version: Option<String>,
}

impl CompileArgs {
    /// Whether pause is compiled on this host rather than taken from pausebake itself.
    pub fn compiles(&self) -> bool {
        self.compile || self.cc.is_some() || self.ld.is_some() || self.pause_version.is_some()
    }
}

// Machine-readable output.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print a JSON document on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

// Seconds since the Unix epoch used for every timestamp pausebake writes.
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

// What goes into the image and how it is named.
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
        value_parser = parse_reference,
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

// The root a command reads or writes: a directory, or the root filesystem of a disk image.
#[derive(Debug, Args)]
pub struct RootArgs {
    /// Root filesystem to work on (a mounted image, a chroot, or / with containerd stopped)
    #[arg(long, value_name = "DIR", required_unless_present = "disk")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub disk: DiskArgs,
}

// A disk image whose root filesystem a command works on, instead of `--root`.
#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Work on the root filesystem of this disk image instead of --root: a raw image (a
    /// whole filesystem, or GPT or MBR partitioned), loop-mounted while pausebake runs
    /// (read-only for verify and --dry-run) and unmounted on every path. Needs root
    /// privileges and loop devices
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["root", "address"])]
    pub disk: Option<PathBuf>,
    /// With --disk: the partition holding the root, numbered from 1 as Linux does
    /// [default: the GPT root partition of the architecture, else the Linux filesystem
    /// holding /etc/os-release]
    #[arg(
        long,
        value_name = "N",
        requires = "disk",
        conflicts_with = "root",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub partition: Option<u32>,
    /// With --disk: the image's format when it is not raw (qcow2, vmdk, vhdx, vpc, ... any
    /// format qemu-img reads). It is converted to raw in a temporary file beside the image,
    /// and after a change converted back to FORMAT and renamed over the image. Needs
    /// qemu-img
    #[arg(
        long,
        value_name = "FORMAT",
        requires = "disk",
        conflicts_with = "root"
    )]
    pub disk_format: Option<String>,
}

// The containerd namespace of the image records.
#[derive(Debug, Args)]
pub struct NamespaceArgs {
    /// containerd namespace (CRI's is k8s.io)
    #[arg(long, default_value = "k8s.io", value_parser = parse_namespace)]
    pub namespace: String,
}

// The root's platform, instead of reading it from the root's binaries.
#[derive(Debug, Args)]
pub struct PlatformArgs {
    /// Platform of the root [default: detected from the root's binaries]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub platform: Option<Platform>,
}

// The root's containerd version, instead of reading it from the root.
#[derive(Debug, Args)]
pub struct ContainerdArgs {
    #[arg(
        long,
        value_name = "VERSION",
        value_parser = parse_containerd_version,
        help = containerd_version_help()
    )]
    pub containerd_version: Option<Version>,
}

// The root's Kubernetes version, instead of reading it from the root.
#[derive(Debug, Args)]
pub struct KubernetesArgs {
    /// Kubernetes version to pick (or check) the pause tag for [default: detected in the
    /// root]
    #[arg(long, value_name = "VERSION", value_parser = parse_version)]
    pub kubernetes_version: Option<Version>,
}

// Show the plan instead of carrying it out.
#[derive(Debug, Args)]
pub struct DryRunArgs {
    /// Print what would change (text, or JSON with --json) and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

// Which containerd `import` and `bake` write through: a running one, or its files.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Write through the running containerd listening on SOCKET (its API) instead of its
    /// files [default: the root's own socket when a running containerd holds meta.db]
    #[arg(long, value_name = "SOCKET")]
    pub address: Option<PathBuf>,
    /// Never use a running containerd: refuse when it holds meta.db
    #[arg(long, conflicts_with = "address")]
    pub offline: bool,
    /// Print the time each step takes on stderr (for `make bench`)
    #[arg(long, hide = true)]
    pub trace: bool,
}

// Which containerd config file is the main one.
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
    pub root: RootArgs,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Image reference to record, in addition to the names the archive carries (repeatable)
    #[arg(long = "name", value_name = "REF", value_parser = parse_reference)]
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
    pub live: LiveArgs,
    #[command(flatten)]
    pub dry_run: DryRunArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How `configure --restart` restarts containerd when given no command: its systemd unit.
pub const RESTART_COMMAND: &str = "systemctl restart containerd";

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    #[command(flatten)]
    pub root: RootArgs,
    #[command(flatten)]
    pub containerd: ContainerdArgs,
    #[command(flatten)]
    pub config: ConfigFileArgs,
    /// Sandbox image reference to set [default: the pause matching the root's Kubernetes
    /// version, else the root's containerd default]
    #[arg(long, value_name = "REF", value_parser = parse_reference)]
    pub sandbox_image: Option<String>,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    /// Also ask the running containerd on SOCKET whether it must be restarted to use the
    /// new setting (1.x tells through CRI; for 2.x, whether a config file changed after it
    /// started). pausebake restarts it only with --restart
    #[arg(long, value_name = "SOCKET")]
    pub address: Option<PathBuf>,
    /// With --address: if containerd must be restarted to use the new setting (or cannot
    /// tell), run CMD with `sh -c`, wait until containerd answers again from a new process
    /// and check that it uses the new name. Running containers are not stopped by a
    /// containerd restart
    #[arg(
        long,
        value_name = "CMD",
        requires = "address",
        num_args = 0..=1,
        default_missing_value = RESTART_COMMAND
    )]
    pub restart: Option<String>,
    #[command(flatten)]
    pub dry_run: DryRunArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

// The root, namespace, platform and containerd that `verify` and `bake` act on.
#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub root: RootArgs,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    #[command(flatten)]
    pub platform: PlatformArgs,
    #[command(flatten)]
    pub containerd: ContainerdArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub config: ConfigFileArgs,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    /// Verify the running containerd on SOCKET through its API and CRI (its config files
    /// are still read from --root)
    #[arg(long, value_name = "SOCKET")]
    pub address: Option<PathBuf>,
    /// With --address: also start a throwaway pod sandbox (host network) through CRI, check
    /// it runs, then remove it
    #[arg(long, requires = "address")]
    pub sandbox: bool,
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
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["binary", "arch", "compile", "cc", "ld", "pause_version"]
    )]
    pub archive: Option<PathBuf>,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    /// Image reference; the first is set in the config, the rest add image records
    /// (repeatable) [default: the pause matching the Kubernetes version]
    #[arg(long = "name", value_name = "REF", value_parser = parse_reference)]
    pub names: Vec<String>,
    /// Write no CRI managed/pinned labels
    #[arg(long)]
    pub no_pin: bool,
    #[command(flatten)]
    pub live: LiveArgs,
    #[command(flatten)]
    pub dry_run: DryRunArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The help of `--containerd-version`, naming the releases of the one version table.
fn containerd_version_help() -> String {
    format!(
        "containerd version to act for (pausebake knows {}) [default: read from the \
         root's containerd binary or package, else {}, the newest known]",
        versions::known_releases(),
        versions::NEWEST_KNOWN
    )
}

#[derive(Debug, Args)]
pub struct VersionArgs {
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
        /// Write the tree the last commit must leave, in dump format, to this file
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
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

fn parse_version(s: &str) -> Result<Version, String> {
    s.parse().map_err(|e: anyhow::Error| format!("{e:#}"))
}

/// An image reference as given (commands normalize it as CRI looks it up), refused here when
/// it cannot be one, so a malformed `--name` or `--sandbox-image` is a usage error (exit 2).
fn parse_reference(s: &str) -> Result<String, String> {
    crate::reference::normalize(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e:#}"))
}

/// A containerd namespace: what containerd's own identifier rule accepts (letters and digits
/// in runs joined by single `.`, `_` or `-`, at most 76 characters), else a usage error.
fn parse_namespace(s: &str) -> Result<String, String> {
    const MAX: usize = 76;
    let runs_ok = s
        .split(['.', '_', '-'])
        .all(|run| !run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric()));
    if s.is_empty() {
        return Err("a containerd namespace cannot be empty (CRI's is k8s.io)".into());
    }
    if s.len() > MAX || !runs_ok {
        return Err(format!(
            "{s:?} is not a containerd namespace: letters and digits, joined by single '.', \
             '_' or '-', at most {MAX} characters (CRI's is k8s.io)"
        ));
    }
    Ok(s.to_string())
}

/// A containerd version pausebake can act for: one older than its version table is a usage
/// error (exit 2), as a malformed one is.
fn parse_containerd_version(s: &str) -> Result<Version, String> {
    let v = parse_version(s)?;
    versions::release(v).map_err(|e| format!("{e:#}"))?;
    Ok(v)
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

    /// `defer` builds a command's arguments only when it is used, after its variant's
    /// description: a doc comment on an `Args` struct would then replace that description
    /// in the command's own `--help`.
    #[test]
    fn each_command_keeps_its_description_once_built() {
        let abouts = |cli: &clap::Command| -> Vec<(String, Option<String>)> {
            cli.get_subcommands()
                .filter(|c| c.get_name() != "help")
                .map(|c| (c.get_name().into(), c.get_about().map(|a| a.to_string())))
                .collect()
        };
        let mut cli = Cli::command();
        let listed = abouts(&cli);
        assert!(listed.iter().all(|(_, a)| a.is_some()), "{listed:?}");
        cli.build();
        assert_eq!(abouts(&cli), listed);
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
    fn disk_replaces_root_on_every_command_that_takes_one() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|_| ());
        let kind = |args: &[&str]| parse(args).unwrap_err().kind();
        use clap::error::ErrorKind::{ArgumentConflict, MissingRequiredArgument};
        for cmd in [
            &["pausebake", "bake"][..],
            &["pausebake", "import", "a.tar"],
            &["pausebake", "configure"],
            &["pausebake", "verify"],
        ] {
            let with = |extra: &[&'static str]| [cmd, extra].concat();
            assert!(parse(&with(&["--disk", "d.raw"])).is_ok(), "{cmd:?}");
            let all = ["--disk=d.qcow2", "--partition=2", "--disk-format=qcow2"];
            assert!(parse(&with(&all)).is_ok(), "{cmd:?}");
            assert_eq!(kind(&with(&[])), MissingRequiredArgument, "{cmd:?}");
            let both = with(&["--disk=d.raw", "--root=/r"]);
            assert_eq!(kind(&both), ArgumentConflict, "{cmd:?}");
            let live = with(&["--disk=d.raw", "--address=/s"]);
            assert_eq!(kind(&live), ArgumentConflict, "{cmd:?}");
            // (clap waives `requires` for an argument that conflicts with one given)
            for alone in ["--partition=2", "--disk-format=qcow2"] {
                let err = kind(&with(&["--root=/r", alone]));
                assert_eq!(err, ArgumentConflict, "{cmd:?} {alone}");
                assert_eq!(kind(&with(&[alone])), MissingRequiredArgument, "{alone}");
            }
        }
        let zero = ["pausebake", "bake", "--disk=d.raw", "--partition=0"];
        assert_eq!(kind(&zero), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn namespaces_follow_containerds_identifier_rule() {
        for ok in ["k8s.io", "default", "a", "moby", "a-b_c.d", &"x".repeat(76)] {
            assert_eq!(parse_namespace(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a/b",
            "k8s io",
            "ä",
            &"x".repeat(77),
        ] {
            assert!(parse_namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_values_are_usage_errors() {
        let kind = clap::error::ErrorKind::ValueValidation;
        for args in [
            &["pausebake", "bake", "--root", "/r", "--name", "foo:bar:baz"][..],
            &[
                "pausebake",
                "import",
                "a",
                "--root",
                "/r",
                "--name",
                "Bad:1",
            ],
            &[
                "pausebake",
                "configure",
                "--root",
                "/r",
                "--sandbox-image",
                "foo:bar:baz",
            ],
            &["pausebake", "image", "--name", "foo:bar:baz"],
            &["pausebake", "bake", "--root", "/r", "--namespace", ""],
            &["pausebake", "verify", "--root", "/r", "--namespace", "a/b"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.kind(), kind, "{args:?}");
        }
    }

    #[test]
    fn binary_needs_arch_and_path() {
        assert!(parse_binary("arm64=/tmp/p").is_ok());
        assert!(parse_binary("/tmp/p").is_err());
    }

    #[test]
    fn each_subcommand_takes_only_its_own_flags() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|_| ());
        let unknown = clap::error::ErrorKind::UnknownArgument;
        let configure = ["pausebake", "configure", "--root", "/r"];
        assert!(parse(&configure).is_ok());
        for flag in ["--platform=arm64", "--namespace=x", "--no-pin"] {
            let err = parse(&[&configure[..], &[flag]].concat()).unwrap_err();
            assert_eq!(err.kind(), unknown, "configure {flag}");
        }
        let import = ["pausebake", "import", "a.tar", "--root", "/r"];
        for flag in [
            "--containerd-version=2.1.9",
            "--kubernetes-version=1.31.0",
            "--config=/etc/k0s/containerd.toml",
        ] {
            let err = parse(&[&import[..], &[flag]].concat()).unwrap_err();
            assert_eq!(err.kind(), unknown, "import {flag}");
        }
        // the main containerd config: where the sandbox image is read or written
        for sub in ["configure", "verify", "bake"] {
            let with = [
                "pausebake",
                sub,
                "--root",
                "/r",
                "--config",
                "/etc/cri/containerd.toml",
            ];
            assert!(parse(&with).is_ok(), "{sub} --config");
        }
        let verify = ["pausebake", "verify", "--root", "/r", "--dry-run"];
        assert_eq!(parse(&verify).unwrap_err().kind(), unknown);
        // The live flags where they act: --offline only where something is written to the
        // store, --sandbox only on verify.
        for flag in ["--offline", "--sandbox"] {
            let err = parse(&[&configure[..], &[flag]].concat()).unwrap_err();
            assert_eq!(err.kind(), unknown, "configure {flag}");
        }
        let err = parse(&["pausebake", "verify", "--root", "/r", "--offline"]).unwrap_err();
        assert_eq!(err.kind(), unknown, "verify --offline");
        let err = parse(&[&import[..], &["--sandbox"]].concat()).unwrap_err();
        assert_eq!(err.kind(), unknown, "import --sandbox");
        for args in [
            &[
                "pausebake",
                "verify",
                "--root",
                "/r",
                "--address=/s",
                "--sandbox",
            ][..],
            &["pausebake", "configure", "--root", "/r", "--address=/s"],
            &["pausebake", "import", "a.tar", "--root", "/r", "--offline"],
            &["pausebake", "bake", "--root", "/r", "--address=/s"],
        ] {
            assert!(parse(args).is_ok(), "{args:?}");
        }
        let bake = [
            "pausebake",
            "bake",
            "--root",
            "/r",
            "--dry-run",
            "--platform=arm64",
        ];
        assert!(parse(&bake).is_ok());
    }
}
