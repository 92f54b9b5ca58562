//! The version of a containerd built into another program (k3s carries its containerd fork
//! inside its own binary), read from that program's Go build info: the module list Go embeds
//! in every module-aware binary (`runtime/debug.BuildInfo`, printed by `go version -m`), one
//! line per module: `dep\tPATH\tVERSION\tSUM`, followed by `=>\tPATH\tVERSION\tSUM` when
//! `go.mod` replaces it (k3s: `github.com/containerd/containerd/v2` by
//! `github.com/k3s-io/containerd/v2 v2.1.5-k3s1`). The replacement is what was compiled in,
//! so its version wins. Never guessed: no such line, no version.

use super::versions::Version;

/// containerd's module paths, 2.x first.
const MODULES: [&str; 2] = [
    "github.com/containerd/containerd/v2",
    "github.com/containerd/containerd",
];

/// The containerd version compiled into a Go program, from the bytes of its binary.
pub fn containerd_module_version(bytes: &[u8]) -> Option<Version> {
    for module in MODULES {
        let needle = format!("dep\t{module}\t");
        let Some(at) = find(bytes, needle.as_bytes()) else {
            continue;
        };
        let rest = &bytes[at + needle.len()..];
        let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let version = field(&rest[..line_end]);
        let next = &rest[(line_end + 1).min(rest.len())..];
        let replaced = next
            .strip_prefix(b"=>\t")
            .and_then(|r| r.split(|&b| b == b'\t').nth(1))
            .and_then(|v| parse(field(v)));
        if let Some(v) = replaced.or_else(|| parse(version)) {
            return Some(v);
        }
    }
    None
}

/// The bytes up to the next tab or newline.
fn field(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .position(|&b| b == b'\t' || b == b'\n')
        .unwrap_or(bytes.len());
    &bytes[..end]
}

/// A module version (`v2.1.5-k3s1`) as a containerd version; `None` for `(devel)` or a
/// pseudo-version's base `v0.0.0`.
fn parse(v: &[u8]) -> Option<Version> {
    let text = std::str::from_utf8(v).ok()?;
    let version: Version = text.strip_prefix('v')?.parse().ok()?;
    (version.major >= 1).then_some(version)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build info as Go writes it, between binary noise.
    fn binary(modules: &str) -> Vec<u8> {
        let mut b = b"\x7fELF\x00\x01junk 1.7.24+unknown \x00".to_vec();
        b.extend_from_slice(
            b"path\tgithub.com/k3s-io/k3s\nmod\tgithub.com/k3s-io/k3s\t(devel)\t\n",
        );
        b.extend_from_slice(modules.as_bytes());
        b.extend_from_slice(b"build\t-compiler=gc\n\x00more");
        b
    }

    #[test]
    fn the_replacement_is_what_was_compiled_in() {
        let k3s = binary(
            "dep\tgithub.com/containerd/cgroups/v3\tv3.0.5\th1:x=\n\
             dep\tgithub.com/containerd/containerd/v2\tv2.1.5\th1:y=\n\
             =>\tgithub.com/k3s-io/containerd/v2\tv2.1.5-k3s1\th1:z=\n",
        );
        assert_eq!(containerd_module_version(&k3s), Some(Version::new(2, 1, 5)));
        let replaced_newer = binary(
            "dep\tgithub.com/containerd/containerd/v2\tv2.0.0\th1:y=\n\
             =>\tgithub.com/k3s-io/containerd/v2\tv2.1.9-k3s1\th1:z=\n",
        );
        assert_eq!(
            containerd_module_version(&replaced_newer),
            Some(Version::new(2, 1, 9))
        );
        let v1 = binary("dep\tgithub.com/containerd/containerd\tv1.7.24\th1:y=\n");
        assert_eq!(containerd_module_version(&v1), Some(Version::new(1, 7, 24)));
    }

    #[test]
    fn no_module_line_no_version() {
        assert_eq!(containerd_module_version(&binary("")), None);
        // a directory replacement has no version: the required one stands
        let local = binary(
            "dep\tgithub.com/containerd/containerd/v2\tv2.1.9\t\n=>\t../containerd\t(devel)\t\n",
        );
        assert_eq!(
            containerd_module_version(&local),
            Some(Version::new(2, 1, 9))
        );
        let devel = binary("dep\tgithub.com/containerd/containerd/v2\t(devel)\t\n");
        assert_eq!(containerd_module_version(&devel), None);
    }
}
