//! The version facts pausebake acts on, as tables: which sandbox image each containerd release
//! defaults to, which pause tag each Kubernetes minor expects, which config `version` a
//! containerd writes and reads, and under which key that config names the sandbox image.
//!
//! Sources: `containerd-store.md` §8.1 (keys, defaults, config versions),
//! `pause-and-anchors.md` §3 (pause per Kubernetes minor), and for 2.3 containerd v2.3.4
//! itself (`version/version.go` `ConfigVersion = 4`, `internal/cri/config/config.go`
//! `DefaultSandboxImage`, and what its `containerd config default` prints). Pure data and
//! lookups; reading versions out of binaries is `config::detect_*`.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

/// A release version, `major.minor.patch`. Parsed leniently from what binaries and users
/// write: an optional `v`, an optional patch, and any suffix after `~`, `+` or `-`
/// (`1.6.20~ds1`, `v1.31.2-eks-1`, `2.1.9+unknown`) is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl FromStr for Version {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Version> {
        let core = s.strip_prefix('v').unwrap_or(s);
        let core = core.split(['~', '+', '-']).next().unwrap_or_default();
        let parts: Vec<&str> = core.split('.').collect();
        let number = |p: &str| -> Result<u32> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                bail!("not a number");
            }
            Ok(p.parse()?)
        };
        let parsed = (|| match parts.as_slice() {
            [major, minor] => Ok(Version::new(number(major)?, number(minor)?, 0)),
            [major, minor, patch] => {
                Ok(Version::new(number(major)?, number(minor)?, number(patch)?))
            }
            _ => bail!("expected MAJOR.MINOR[.PATCH]"),
        })();
        parsed.with_context(|| format!("parsing version {s:?} (expected e.g. 1.7.24 or v1.31.2)"))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The registry every Kubernetes pause image since 1.25 is published under.
pub const PAUSE_REPOSITORY: &str = "registry.k8s.io/pause";

/// One containerd release line pausebake knows: its built-in sandbox image and the config
/// `version` its `containerd config default` writes (which also picks its sandbox key,
/// [`sandbox_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    /// The sandbox image when the config names none (`containerd-store.md` §8.1,
    /// `pause-and-anchors.md` §3.2).
    pub sandbox_image: &'static str,
    pub config: ConfigVersion,
}

/// The one table of containerd releases pausebake knows, oldest first. Config, verify and
/// `--help` all read it; a version newer than the last row is read with the last row's layout.
pub const RELEASES: [Release; 6] = [
    Release {
        major: 1,
        minor: 6,
        sandbox_image: "registry.k8s.io/pause:3.6",
        config: ConfigVersion::V2,
    },
    Release {
        major: 1,
        minor: 7,
        sandbox_image: "registry.k8s.io/pause:3.8",
        config: ConfigVersion::V2,
    },
    Release {
        major: 2,
        minor: 0,
        sandbox_image: "registry.k8s.io/pause:3.10",
        config: ConfigVersion::V3,
    },
    Release {
        major: 2,
        minor: 1,
        sandbox_image: "registry.k8s.io/pause:3.10",
        config: ConfigVersion::V3,
    },
    Release {
        major: 2,
        minor: 2,
        sandbox_image: "registry.k8s.io/pause:3.10.1",
        config: ConfigVersion::V3,
    },
    // the first long-term support release; config version 4 moves the server settings
    // (`[grpc]`, `[ttrpc]`, `[debug]` and `[metrics]` addresses) into plugin tables
    Release {
        major: 2,
        minor: 3,
        sandbox_image: "registry.k8s.io/pause:3.10.2",
        config: ConfigVersion::V4,
    },
];

/// The newest release line in [`RELEASES`], as a version (`2.3.0`): what a root without
/// containerd is configured for, since a fresh root most likely gets a current containerd.
pub const NEWEST_KNOWN: Version = {
    let last = RELEASES[RELEASES.len() - 1];
    Version::new(last.major, last.minor, 0)
};

/// The release lines of [`RELEASES`] as `1.6, 1.7, …`, for messages and `--help`.
pub fn known_releases() -> String {
    RELEASES
        .iter()
        .map(|r| format!("{}.{}", r.major, r.minor))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The row of [`RELEASES`] for `containerd`: its own line, else the newest one for a newer
/// version; an error for one older than the table.
pub fn release(containerd: Version) -> Result<&'static Release> {
    let key = (containerd.major, containerd.minor);
    if let Some(r) = RELEASES.iter().find(|r| (r.major, r.minor) == key) {
        return Ok(r);
    }
    let newest = &RELEASES[RELEASES.len() - 1];
    if key > (newest.major, newest.minor) {
        return Ok(newest);
    }
    let oldest = &RELEASES[0];
    if key < (oldest.major, oldest.minor) {
        bail!(
            "containerd {containerd} is too old: pausebake needs containerd {}.{} or newer (it knows {}); upgrade containerd",
            oldest.major,
            oldest.minor,
            known_releases()
        )
    }
    bail!(
        "containerd {containerd} is not supported (pausebake knows {})",
        known_releases()
    )
}

/// Whether `containerd` is newer than every row of [`RELEASES`] (read with the newest row).
pub fn is_newer_than_known(containerd: Version) -> bool {
    (containerd.major, containerd.minor) > (NEWEST_KNOWN.major, NEWEST_KNOWN.minor)
}

/// The sandbox image a containerd release uses when its config names none.
pub fn default_sandbox_image(containerd: Version) -> Result<&'static str> {
    let r = release(containerd)?;
    // the default moved off the frozen k8s.gcr.io in 1.6.9
    if (r.major, r.minor) == (1, 6) && containerd.patch <= 8 {
        return Ok("k8s.gcr.io/pause:3.6");
    }
    Ok(r.sandbox_image)
}

/// How a containerd version treats `io.cri-containerd.pinned` (`containerd-store.md` §7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    /// 1.6.0–1.6.21, 1.7.0–1.7.2: no pinning.
    Unsupported,
    /// 1.6.22+, 1.7.3+: pinned when the normalized config name equals the image name.
    Normalized,
    /// 2.x: pinned when the raw config string equals the image name.
    Raw,
}

pub fn pinning(v: Version) -> Pinning {
    match (v.major, v.minor, v.patch) {
        (1, 6, p) if p < 22 => Pinning::Unsupported,
        (1, 7, p) if p < 3 => Pinning::Unsupported,
        (1, m, _) if m < 6 => Pinning::Unsupported,
        (1, _, _) => Pinning::Normalized,
        _ => Pinning::Raw,
    }
}

/// How a containerd release finds the sandbox image its config names
/// (`containerd-store.md` §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxLookup {
    /// By the normalized reference (CRI's `LocalResolve`, docker's `ParseDockerRef`).
    Normalized,
    /// 2.3.0 to 2.3.3: CRI's `LocalResolve` by the normalized reference (pulling on a miss),
    /// then the sandbox controller's `GetImage` by the configured string *verbatim*
    /// (`internal/cri/server/podsandbox/sandbox_run.go` `Start`, v2.3.0 to v2.3.3): a
    /// configured `rancher/mirrored-pause:3.6` is "not found" when the store holds only
    /// `docker.io/rancher/mirrored-pause:3.6` (containerd#13513, awslabs/amazon-eks-ami#2729).
    /// v2.3.4 normalizes there too (commit 0b2f1d078, "cri: auto-add prefix for pause image").
    NormalizedAndVerbatim,
}

pub fn sandbox_lookup(v: Version) -> SandboxLookup {
    match (v.major, v.minor, v.patch) {
        (2, 3, 0..=3) => SandboxLookup::NormalizedAndVerbatim,
        _ => SandboxLookup::Normalized,
    }
}

/// The newest Kubernetes minor the pause table below names by itself; newer minors get its
/// tag, as the newest known mapping.
pub const NEWEST_KUBERNETES_MINOR: u32 = 36;

/// The pause tag kubeadm uses for a Kubernetes minor (`pause-and-anchors.md` §3.1; 1.21's
/// 3.4.1 and 1.24's 3.7 are kubeadm's `PauseVersion` of those releases).
pub fn kubernetes_pause_tag(kubernetes: Version) -> Result<&'static str> {
    if kubernetes.major != 1 {
        bail!("Kubernetes {kubernetes} is not a 1.x release");
    }
    Ok(match kubernetes.minor {
        0..=17 => "3.1",
        18..=20 => "3.2",
        21 => "3.4.1",
        22 => "3.5",
        23 => "3.6",
        24 => "3.7",
        25 => "3.8",
        26..=30 => "3.9",
        31..=33 => "3.10",
        34..=35 => "3.10.1",
        _ => "3.10.2",
    })
}

/// The fully qualified pause reference for a Kubernetes release, e.g.
/// `registry.k8s.io/pause:3.10` for 1.31.
pub fn kubernetes_pause_image(kubernetes: Version) -> Result<String> {
    Ok(format!(
        "{PAUSE_REPOSITORY}:{}",
        kubernetes_pause_tag(kubernetes)?
    ))
}

/// The `version` of a containerd config file. A file without `version` is version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigVersion {
    V1,
    V2,
    V3,
    /// containerd 2.3: the CRI keys where version 3 has them; the server settings in
    /// `io.containerd.server.v1.*` plugin tables.
    V4,
}

/// The newest config `version` pausebake knows how containerd reads.
pub const NEWEST_CONFIG: ConfigVersion = ConfigVersion::V4;

/// Why pausebake reads no config of `version` (above [`NEWEST_CONFIG`]), naming `file`: it
/// does not know where such a file keeps the sandbox image. A statement about pausebake, not
/// about what any containerd accepts, which pausebake has not checked for that version.
pub fn unknown_config_version(version: i64, file: &str) -> String {
    format!(
        "{file} says version = {version}, a config version newer than pausebake knows \
         (it knows versions 1 to {}, written by containerd {} to {}), so it cannot tell where \
         that config keeps the sandbox image; use a pausebake release that knows version \
         {version}, or a config of version {} or lower",
        NEWEST_CONFIG.number(),
        known_releases().split(", ").next().unwrap_or_default(),
        known_releases().rsplit(", ").next().unwrap_or_default(),
        NEWEST_CONFIG.number()
    )
}

impl ConfigVersion {
    /// From the file's `version` value (absent = 1, as containerd reads it); an error for one
    /// newer than [`NEWEST_CONFIG`] ([`unknown_config_version`]).
    pub fn from_number(n: Option<i64>) -> Result<ConfigVersion> {
        Ok(match n {
            None | Some(0) | Some(1) => ConfigVersion::V1,
            Some(2) => ConfigVersion::V2,
            Some(3) => ConfigVersion::V3,
            Some(4) => ConfigVersion::V4,
            Some(n) => bail!("{}", unknown_config_version(n, "the containerd config")),
        })
    }

    pub fn number(self) -> i64 {
        match self {
            ConfigVersion::V1 => 1,
            ConfigVersion::V2 => 2,
            ConfigVersion::V3 => 3,
            ConfigVersion::V4 => 4,
        }
    }

    /// The version `containerd config default` of that release writes ([`RELEASES`]).
    pub fn native(containerd: Version) -> Result<ConfigVersion> {
        Ok(release(containerd)?.config)
    }
}

/// Whether `containerd` honours the sandbox key of a config at `config` version: 1.x does not
/// read version 3 (≥1.6.32 and ≥1.7.17 refuse to start; older ones ignore its 2.x-named
/// sections); 2.x migrates versions 1 and 2 at startup; 2.0 to 2.2 refuse version 4
/// (`cmd/containerd/server/config/config.go` `ValidateVersion`, v2.2.7).
pub fn check_reads(containerd: Version, config: ConfigVersion) -> Result<()> {
    if containerd.major < 2 && config >= ConfigVersion::V3 {
        bail!(
            "containerd {containerd} does not read a version {} config (2.x format); \
             use a version 2 config for containerd 1.x",
            config.number()
        );
    }
    if containerd.major == 2 && containerd.minor < 3 && config == ConfigVersion::V4 {
        bail!(
            "containerd {containerd} does not read a version 4 config (2.3 format); \
             use a version 3 config for containerd 2.0 to 2.2"
        );
    }
    Ok(())
}

/// Where a config names the sandbox image: the tables leading to the key, and the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxKey {
    pub tables: &'static [&'static str],
    pub key: &'static str,
}

impl SandboxKey {
    /// The key path as TOML writes it, e.g. `plugins."io.containerd.grpc.v1.cri".sandbox_image`.
    pub fn dotted(&self) -> String {
        self.tables
            .iter()
            .chain(std::iter::once(&self.key))
            .map(|part| key_part(part))
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// One part of a dotted TOML key: bare when TOML allows it, else quoted.
pub fn key_part(part: &str) -> String {
    if part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        part.to_string()
    } else {
        format!("{part:?}")
    }
}

/// The sandbox image key of a config version (`containerd-store.md` §8.1). Each containerd
/// reads the key of the file's own version: 2.x migrates a version 2 `sandbox_image` to
/// `pinned_images.sandbox` itself (§8.3). Version 4 keeps version 3's CRI keys.
pub const fn sandbox_key(config: ConfigVersion) -> SandboxKey {
    match config {
        ConfigVersion::V1 => SandboxKey {
            tables: &["plugins", "cri"],
            key: "sandbox_image",
        },
        ConfigVersion::V2 => SandboxKey {
            tables: &["plugins", "io.containerd.grpc.v1.cri"],
            key: "sandbox_image",
        },
        ConfigVersion::V3 | ConfigVersion::V4 => SandboxKey {
            tables: &["plugins", "io.containerd.cri.v1.images", "pinned_images"],
            key: "sandbox",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn versions_parse_as_binaries_print_them() {
        assert_eq!(v("1.6.20~ds1"), Version::new(1, 6, 20));
        assert_eq!(v("2.1.9+unknown"), Version::new(2, 1, 9));
        assert_eq!(v("v1.31.2-eks-1"), Version::new(1, 31, 2));
        assert_eq!(v("1.30"), Version::new(1, 30, 0));
        assert_eq!(v("1.7.24").to_string(), "1.7.24");
        let err = "1.x".parse::<Version>().unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            r#"parsing version "1.x" (expected e.g. 1.7.24 or v1.31.2): not a number"#
        );
        assert!("1".parse::<Version>().is_err());
        assert!("".parse::<Version>().is_err());
    }

    #[test]
    fn default_sandbox_image_per_release() {
        let d = |s: &str| default_sandbox_image(v(s)).unwrap();
        assert_eq!(d("1.6.8"), "k8s.gcr.io/pause:3.6");
        assert_eq!(d("1.6.9"), "registry.k8s.io/pause:3.6");
        assert_eq!(d("1.6.20"), "registry.k8s.io/pause:3.6");
        assert_eq!(d("1.7.24"), "registry.k8s.io/pause:3.8");
        assert_eq!(d("2.0.0"), "registry.k8s.io/pause:3.10");
        assert_eq!(d("2.1.9"), "registry.k8s.io/pause:3.10");
        assert_eq!(d("2.2.7"), "registry.k8s.io/pause:3.10.1");
        assert_eq!(d("2.3.0"), "registry.k8s.io/pause:3.10.2");
        assert_eq!(d("2.3.4"), "registry.k8s.io/pause:3.10.2");
        // newer than the table: the newest row
        assert_eq!(d("2.4.0"), "registry.k8s.io/pause:3.10.2");
        assert!(is_newer_than_known(v("2.4.0")) && !is_newer_than_known(v("2.3.9")));
        let err = default_sandbox_image(v("1.5.18")).unwrap_err().to_string();
        assert_eq!(
            err,
            "containerd 1.5.18 is too old: pausebake needs containerd 1.6 or newer (it knows 1.6, 1.7, 2.0, 2.1, 2.2, 2.3); upgrade containerd"
        );
        // a gap in the table is not "too old"
        let err = default_sandbox_image(v("1.8.0")).unwrap_err().to_string();
        assert_eq!(
            err,
            "containerd 1.8.0 is not supported (pausebake knows 1.6, 1.7, 2.0, 2.1, 2.2, 2.3)"
        );
        assert_eq!(NEWEST_KNOWN, v("2.3.0"));
    }

    #[test]
    fn pause_tag_per_kubernetes_minor() {
        let t = |s: &str| kubernetes_pause_tag(v(s)).unwrap();
        assert_eq!(t("1.17.0"), "3.1");
        assert_eq!(t("1.20.15"), "3.2");
        assert_eq!(t("1.25.0"), "3.8");
        assert_eq!(t("1.26.0"), "3.9");
        assert_eq!(t("1.30.14"), "3.9");
        assert_eq!(t("1.31.0"), "3.10");
        assert_eq!(t("1.33.5"), "3.10");
        assert_eq!(t("1.34.1"), "3.10.1");
        assert_eq!(t("1.35.0"), "3.10.1");
        assert_eq!(t("1.36.0"), "3.10.2");
        assert_eq!(
            kubernetes_pause_image(v("1.31.2")).unwrap(),
            "registry.k8s.io/pause:3.10"
        );
        assert!(kubernetes_pause_tag(v("2.0.0")).is_err());
    }

    #[test]
    fn pinning_per_version() {
        assert_eq!(pinning(Version::new(1, 6, 20)), Pinning::Unsupported);
        assert_eq!(pinning(Version::new(1, 6, 22)), Pinning::Normalized);
        assert_eq!(pinning(Version::new(1, 7, 2)), Pinning::Unsupported);
        assert_eq!(pinning(Version::new(1, 7, 3)), Pinning::Normalized);
        assert_eq!(pinning(Version::new(2, 0, 0)), Pinning::Raw);
    }

    #[test]
    fn only_2_3_0_to_2_3_3_look_the_sandbox_image_up_verbatim() {
        let l = |s: &str| sandbox_lookup(v(s));
        assert_eq!(l("2.2.7"), SandboxLookup::Normalized);
        assert_eq!(l("2.3.0"), SandboxLookup::NormalizedAndVerbatim);
        assert_eq!(l("2.3.1"), SandboxLookup::NormalizedAndVerbatim);
        assert_eq!(l("2.3.3"), SandboxLookup::NormalizedAndVerbatim);
        assert_eq!(l("2.3.4"), SandboxLookup::Normalized);
        assert_eq!(l("1.7.24"), SandboxLookup::Normalized);
    }

    #[test]
    fn sandbox_key_per_config_version() {
        assert_eq!(
            sandbox_key(ConfigVersion::V1).dotted(),
            "plugins.cri.sandbox_image"
        );
        assert_eq!(
            sandbox_key(ConfigVersion::V2).dotted(),
            r#"plugins."io.containerd.grpc.v1.cri".sandbox_image"#
        );
        assert_eq!(
            sandbox_key(ConfigVersion::V3).dotted(),
            r#"plugins."io.containerd.cri.v1.images".pinned_images.sandbox"#
        );
        assert_eq!(
            sandbox_key(ConfigVersion::V4),
            sandbox_key(ConfigVersion::V3)
        );
    }

    #[test]
    fn config_versions_each_containerd_reads() {
        assert_eq!(
            ConfigVersion::native(v("1.7.24")).unwrap(),
            ConfigVersion::V2
        );
        assert_eq!(
            ConfigVersion::native(v("2.1.9")).unwrap(),
            ConfigVersion::V3
        );
        assert_eq!(ConfigVersion::from_number(None).unwrap(), ConfigVersion::V1);
        assert_eq!(
            ConfigVersion::native(v("2.3.4")).unwrap(),
            ConfigVersion::V4
        );
        assert_eq!(
            ConfigVersion::from_number(Some(4)).unwrap(),
            ConfigVersion::V4
        );
        // newer than pausebake knows: its own refusal, no claim about containerd
        let err = ConfigVersion::from_number(Some(5)).unwrap_err().to_string();
        assert_eq!(
            err,
            "the containerd config says version = 5, a config version newer than pausebake \
             knows (it knows versions 1 to 4, written by containerd 1.6 to 2.3), so it cannot \
             tell where that config keeps the sandbox image; use a pausebake release that \
             knows version 5, or a config of version 4 or lower"
        );
        assert!(!err.contains("accepts") && !err.contains("refuses"));
        assert!(check_reads(v("2.3.4"), ConfigVersion::V4).is_ok());
        assert!(check_reads(v("2.3.4"), ConfigVersion::V2).is_ok());
        assert_eq!(
            check_reads(v("2.2.7"), ConfigVersion::V4)
                .unwrap_err()
                .to_string(),
            "containerd 2.2.7 does not read a version 4 config (2.3 format); \
             use a version 3 config for containerd 2.0 to 2.2"
        );
        assert!(check_reads(v("1.7.24"), ConfigVersion::V4).is_err());
        assert!(check_reads(v("2.1.9"), ConfigVersion::V2).is_ok());
        assert!(check_reads(v("2.0.0"), ConfigVersion::V1).is_ok());
        assert!(check_reads(v("1.6.20"), ConfigVersion::V2).is_ok());
        let err = check_reads(v("1.7.24"), ConfigVersion::V3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "containerd 1.7.24 does not read a version 3 config (2.x format); \
             use a version 2 config for containerd 1.x"
        );
    }
}
