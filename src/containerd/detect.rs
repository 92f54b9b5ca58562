//! Reading versions out of a root's files: the containerd and Kubernetes versions from
//! their binaries' bytes (never run: they may be built for another architecture) or the
//! dpkg database. Used only by [`super::inspect`], which probes a root once.

use std::fs;

use anyhow::{bail, Context, Result};

use super::versions::Version;
use crate::rootfs::Root;

/// Where distributions and image builders install containerd, searched in this order.
pub const CONTAINERD_PATHS: &[&str] = &[
    "usr/bin/containerd",
    "usr/local/bin/containerd",
    "usr/sbin/containerd",
    "usr/local/sbin/containerd",
    "bin/containerd",
    "opt/bin/containerd",
];

/// Where the kubelet and kubeadm are installed, searched in this order.
pub const KUBERNETES_PATHS: &[&str] = &[
    "usr/bin/kubelet",
    "usr/local/bin/kubelet",
    "opt/bin/kubelet",
    "bin/kubelet",
    "usr/bin/kubeadm",
    "usr/local/bin/kubeadm",
    "opt/bin/kubeadm",
    "bin/kubeadm",
];

/// A version and where it was found, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub version: Version,
    /// A flag (`--containerd-version`) or a path as seen inside the root, with what was read
    /// there: `/usr/bin/containerd`, `/var/lib/dpkg/status (containerd 1.7.24~ds1-6)`.
    pub source: String,
}

/// The first of `candidates` that is a file in the root: its path inside the root (with a
/// leading `/`) and its bytes. Paths go through [`Root`], so a symlink inside the root
/// resolves inside it, never on the host.
fn find_in_root(root: &Root, candidates: &[&str]) -> Result<Option<(String, Vec<u8>)>> {
    for rel in candidates {
        let host = root.resolve(rel)?;
        if host.is_file() {
            let bytes = fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
            return Ok(Some((format!("/{rel}"), bytes)));
        }
    }
    Ok(None)
}

/// The dpkg database, relative to the root.
pub const DPKG_STATUS: &str = "var/lib/dpkg/status";

/// containerd's version in `root` and where it was read: from the bytes of its binary (it
/// may be built for another architecture, so it is never run), else from the dpkg database
/// (packages `containerd`, `containerd.io`). `None` when the root has neither; an error when
/// it has a binary whose version cannot be read and no package, since guessing would pick a
/// config layout this containerd may refuse.
pub fn detect_containerd(root: &Root) -> Result<Option<Found>> {
    let binary = find_in_root(root, CONTAINERD_PATHS)?;
    if let Some((path, bytes)) = &binary {
        if let Some(version) = containerd_version_in(bytes) {
            return Ok(Some(Found {
                version,
                source: path.clone(),
            }));
        }
    }
    if let Some(found) = dpkg_version(root, &["containerd", "containerd.io"])? {
        return Ok(Some(found));
    }
    match binary {
        Some((path, _)) => bail!(
            "cannot tell the containerd version of {path} in the root (and no containerd package \
             in /{DPKG_STATUS}); pass --containerd-version"
        ),
        None => Ok(None),
    }
}

/// The Kubernetes version in `root` and where it was read: the dpkg database (packages
/// `kubelet`, `kubeadm`; exact), else the bytes of the kubelet or kubeadm binary. `None`
/// when the root has neither.
pub fn detect_kubernetes(root: &Root) -> Result<Option<Found>> {
    if let Some(found) = dpkg_version(root, &["kubelet", "kubeadm"])? {
        return Ok(Some(found));
    }
    let Some((path, bytes)) = find_in_root(root, KUBERNETES_PATHS)? else {
        return Ok(None);
    };
    match kubernetes_version_in(&bytes) {
        Some(version) => Ok(Some(Found {
            version,
            source: path,
        })),
        None => bail!(
            "cannot tell the Kubernetes version of {path} in the root; pass --kubernetes-version"
        ),
    }
}

/// The version of the first of `packages` installed according to the root's dpkg database.
fn dpkg_version(root: &Root, packages: &[&str]) -> Result<Option<Found>> {
    let Some(status) = root.read_to_string(DPKG_STATUS)? else {
        return Ok(None);
    };
    Ok(
        dpkg_version_in(&status, packages).map(|(package, raw, version)| Found {
            version,
            source: format!("/{DPKG_STATUS} ({package} {raw})"),
        }),
    )
}

/// `(package, Version field, parsed version)` of the first of `packages` (in that order)
/// that a dpkg status text lists as installed. The epoch (`1:`) and Debian revision are
/// dropped: `1:1.7.24~ds1-6` is containerd 1.7.24.
fn dpkg_version_in(status: &str, packages: &[&str]) -> Option<(String, String, Version)> {
    let mut installed = Vec::new();
    for stanza in status.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let (Some(package), Some(raw), Some(state)) =
            (field("Package"), field("Version"), field("Status"))
        else {
            continue;
        };
        if !state.ends_with(" installed") {
            continue;
        }
        let upstream = raw.split_once(':').map_or(raw, |(_, v)| v);
        if let Ok(version) = upstream.parse::<Version>() {
            installed.push((package.to_string(), raw.to_string(), version));
        }
    }
    packages
        .iter()
        .find_map(|want| installed.iter().find(|(p, _, _)| p == want).cloned())
}

/// A `MAJOR.MINOR.PATCH` found in a binary.
struct Candidate<'a> {
    version: Version,
    /// Written with a leading `v`.
    v: bool,
    /// The byte before the token (before the `v`, if any).
    lead: Option<u8>,
    /// Up to 16 bytes after the token.
    after: &'a [u8],
}

/// Every `MAJOR.MINOR.PATCH` (optionally after a `v`) that is not part of a longer word or
/// number: no letter, digit or dot before it, no digit or dot after it.
fn version_candidates(bytes: &[u8]) -> impl Iterator<Item = Candidate<'_>> {
    let number = |at: usize| -> Option<(u32, usize)> {
        let len = bytes[at..]
            .iter()
            .take(6)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if len == 0 || len == 6 {
            return None;
        }
        let text = std::str::from_utf8(&bytes[at..at + len]).ok()?;
        Some((text.parse().ok()?, at + len))
    };
    (0..bytes.len()).filter_map(move |start| {
        if !bytes[start].is_ascii_digit() {
            return None;
        }
        let v = start > 0 && bytes[start - 1] == b'v';
        let token = if v { start - 1 } else { start };
        let lead = token.checked_sub(1).map(|i| bytes[i]);
        if lead.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.') {
            return None;
        }
        let (major, at) = number(start)?;
        if bytes.get(at) != Some(&b'.') {
            return None;
        }
        let (minor, at) = number(at + 1)?;
        if bytes.get(at) != Some(&b'.') {
            return None;
        }
        let (patch, at) = number(at + 1)?;
        if bytes
            .get(at)
            .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
        {
            return None;
        }
        Some(Candidate {
            version: Version::new(major, minor, patch),
            v,
            lead,
            after: &bytes[at..bytes.len().min(at + 16)],
        })
    })
}

/// The containerd version in a containerd binary's bytes. Go stores the `-X` link-time
/// version without delimiters, so only anchored forms count: the source's own default
/// `X.Y.Z+unknown` (every release sets it in `version/version.go`) and a distribution's
/// `X.Y.Z~ds…` or `X.Y.Z+ds…` (Debian). The distribution's string wins when both appear.
pub fn containerd_version_in(bytes: &[u8]) -> Option<Version> {
    let mut distro = Vec::new();
    let mut source = Vec::new();
    for c in version_candidates(bytes) {
        if !(1..=2).contains(&c.version.major) {
            continue;
        }
        if c.after.starts_with(b"~ds") || c.after.starts_with(b"+ds") {
            distro.push(c.version);
        } else if c.after.starts_with(b"+unknown") {
            source.push(c.version);
        }
    }
    most_frequent(if distro.is_empty() { source } else { distro })
}

/// The Kubernetes version in a kubelet or kubeadm binary's bytes: the `v1.MINOR.PATCH`
/// (minor 10 or later) that occurs most often, since the build sets it into several
/// packages' `gitVersion`. Tab-led ones are skipped: Go's embedded module list reads
/// `\tv1.65.0\t` for every dependency.
pub fn kubernetes_version_in(bytes: &[u8]) -> Option<Version> {
    let found = version_candidates(bytes)
        .filter(|c| c.v && c.lead != Some(b'\t') && c.version.major == 1 && c.version.minor >= 10)
        .map(|c| c.version)
        .collect();
    most_frequent(found)
}

/// The most frequent version; ties go to the highest.
fn most_frequent(mut versions: Vec<Version>) -> Option<Version> {
    versions.sort();
    let mut best: Option<(usize, Version)> = None;
    for chunk in versions.chunk_by(|a, b| a == b) {
        if !matches!(best, Some((n, _)) if chunk.len() < n) {
            best = Some((chunk.len(), chunk[0]));
        }
    }
    best.map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn containerd_version_from_anchored_strings() {
        // how the real binaries carry it (see the integration test for the binaries)
        let debian =
            b"\0go1.19.8\0\0\x001.6.20~ds1\0\0call frame\x001.6.20~ds1-1+deb12u3\0 v1.0.7\0";
        assert_eq!(containerd_version_in(debian), Some(v("1.6.20")));
        let packed = b"relative to /debug/pprof/2.1.9+unknownmissing tableunknown field v1.0.7\0";
        assert_eq!(containerd_version_in(packed), Some(v("2.1.9")));
        let both = b"\x001.7.24+unknownlen\0v1.7.8\0\x001.7.24~ds1\0";
        assert_eq!(containerd_version_in(both), Some(v("1.7.24")));
        // neither anchor: do not guess
        assert_eq!(containerd_version_in(b"\0v1.7.24\0v1.0.7\0"), None);
        // part of a longer number or word: not a version
        assert_eq!(containerd_version_in(b"x1.6.20~ds1 11.6.20+unknown"), None);
    }

    #[test]
    fn dpkg_status_gives_installed_packages_only() {
        let status = "Package: containerd\nStatus: deinstall ok config-files\nVersion: 1.6.20~ds1-1\n\n\
                      Package: containerd.io\nStatus: install ok installed\nVersion: 1:1.7.24-1\n\n\
                      Package: kubelet\nStatus: install ok installed\nArchitecture: arm64\nVersion: 1.31.2-1.1\n";
        assert_eq!(
            dpkg_version_in(status, &["containerd", "containerd.io"]),
            Some(("containerd.io".into(), "1:1.7.24-1".into(), v("1.7.24")))
        );
        assert_eq!(
            dpkg_version_in(status, &["kubelet", "kubeadm"]).map(|f| f.2),
            Some(v("1.31.2"))
        );
        assert_eq!(dpkg_version_in(status, &["kubeadm"]), None);
    }

    #[test]
    fn kubernetes_version_ignores_the_module_list() {
        let kubelet = b"dep\tgithub.com/spf13/cobra\tv1.8.1\th1:\ndep\tgoogle.golang.org/grpc\tv1.65.0\th1:\n\
                        \0v1.31.2\0\0\0v0.0.0-master+$Format:%H$\0v1.31.2\0";
        assert_eq!(kubernetes_version_in(kubelet), Some(v("1.31.2")));
        assert_eq!(kubernetes_version_in(b"dep\tx\tv1.65.0\th1:"), None);
        assert_eq!(kubernetes_version_in(b"nothing here"), None);
    }

    #[test]
    fn versions_are_found_in_real_binaries() {
        let b = std::fs::read("/usr/bin/containerd").unwrap();
        let found = containerd_version_in(&b).unwrap();
        let out = std::process::Command::new("/usr/bin/containerd")
            .arg("--version")
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains(&format!(" {found}")),
            "{printed} vs {found}"
        );
        assert_eq!(
            containerd_version_in(b"xx\x002.1.9+unknownmissing"),
            Some(v("2.1.9"))
        );
        assert_eq!(
            containerd_version_in(b"\x002.1.9+ds1\x00"),
            Some(v("2.1.9"))
        );
        assert_eq!(
            kubernetes_version_in(b"\x00v1.31.2\x00 v1.31.2 v1.2.3 v0.30.1"),
            Some(v("1.31.2"))
        );
    }

    #[test]
    fn versions_are_read_through_symlinks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        root.create_dir_all("/usr/lib/containerd", 0o755).unwrap();
        root.create_dir_all("/usr/bin", 0o755).unwrap();
        root.write_atomic(
            "/usr/lib/containerd/containerd",
            b"\x001.7.24~ds1\x00",
            0o755,
        )
        .unwrap();
        // absolute, as a package would make it: resolved inside the root, not on the host
        std::os::unix::fs::symlink(
            "/usr/lib/containerd/containerd",
            dir.path().join("usr/bin/containerd"),
        )
        .unwrap();
        let found = detect_containerd(&root).unwrap().unwrap();
        assert_eq!(found.version, v("1.7.24"));
        assert_eq!(found.source, "/usr/bin/containerd");
        assert_eq!(detect_kubernetes(&root).unwrap(), None);
    }

    #[test]
    fn an_unreadable_containerd_binary_is_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        assert_eq!(detect_containerd(&root).unwrap(), None);
        root.create_dir_all("/usr/bin", 0o755).unwrap();
        root.write_atomic("/usr/bin/containerd", b"#!/bin/sh\n", 0o755)
            .unwrap();
        let err = detect_containerd(&root).unwrap_err().to_string();
        assert_eq!(
            err,
            "cannot tell the containerd version of /usr/bin/containerd in the root (and no \
             containerd package in /var/lib/dpkg/status); pass --containerd-version"
        );
    }
}
