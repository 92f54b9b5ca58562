//! CRI switched off by `disabled_plugins`: containerd then starts without its CRI plugin and
//! answers every CRI call with `unknown service runtime.v1.RuntimeService`, so no pod can ever
//! start, however well the sandbox image is baked.
//!
//! Docker's containerd.io package ships `/etc/containerd/config.toml` with
//! `disabled_plugins = ["cri"]` (kubeadm's container-runtime docs tell users to remove it);
//! newer moby packaging disables `io.containerd.grpc.v1.cri` and, for containerd 2.x, also
//! `io.containerd.cri.v1.images` and `io.containerd.cri.v1.runtime` (moby PR #53564,
//! containerd issue #14121). containerd 2.x renames the version 1 name `cri` to
//! `io.containerd.grpc.v1.cri` (containerd PR #10907). Every loaded file's list counts:
//! containerd appends the `disabled_plugins` of each import to the main file's
//! (`mergeConfig`, mergo's `WithAppendSlice`).
//!
//! Pure: [`find`] reads the entries out of config texts, [`remove`] edits one text with
//! `toml_edit`, removing exactly those entries and keeping every other line and comment.

use anyhow::{Context, Result};
use toml_edit::DocumentMut;

use super::versions::Version;

/// The plugin names whose absence leaves containerd `v` without CRI.
pub fn cri_plugins(v: Version) -> &'static [&'static str] {
    if v.major >= 2 {
        &[
            "cri",
            "io.containerd.grpc.v1.cri",
            "io.containerd.cri.v1.images",
            "io.containerd.cri.v1.runtime",
        ]
    } else {
        &["cri", "io.containerd.grpc.v1.cri"]
    }
}

/// One `disabled_plugins` entry that switches CRI off, and the file that lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Disabled {
    pub file: String,
    pub entry: String,
    /// The short name `cri` where containerd wants plugin URIs: it refuses to start
    /// ("invalid disabled plugin URI"), measured with 1.7.24 (a merged config of version 2)
    /// and 2.1.9 (a file of version 2 or 3; a version 1 file's `cri` is renamed).
    pub refused: bool,
}

impl Disabled {
    /// What the entry does to containerd `v`, as a clause.
    pub fn consequence(&self, v: Version) -> String {
        if self.refused {
            format!("containerd {v} refuses to start (\"invalid disabled plugin URI\")")
        } else {
            format!("containerd {v} starts without CRI and answers every CRI call with \"unknown service\"")
        }
    }
}

/// Every entry of `disabled_plugins` in `files` (path, text and the file's own `version`,
/// in load order) that leaves containerd `v` without CRI, for a merged config of `merged`
/// version. A text that does not parse names none (the config rule reports it).
pub fn find<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
    v: Version,
    merged: i64,
) -> Vec<Disabled> {
    let names = cri_plugins(v);
    let mut out = Vec::new();
    for (path, text, version) in files {
        let uris_only = if v.major >= 2 {
            version >= 2
        } else {
            merged >= 2
        };
        let Ok(doc) = text.parse::<DocumentMut>() else {
            continue;
        };
        let Some(list) = doc.get("disabled_plugins").and_then(|i| i.as_array()) else {
            continue;
        };
        for entry in list.iter().filter_map(|e| e.as_str()) {
            if names.contains(&entry) {
                out.push(Disabled {
                    file: path.to_string(),
                    entry: entry.to_string(),
                    refused: uris_only && !entry.contains('.'),
                });
            }
        }
    }
    out
}

/// `text` with `entries` removed from its `disabled_plugins`, every other line, entry and
/// comment kept; `None` when it lists none of them.
pub fn remove(text: &str, entries: &[String]) -> Result<Option<String>> {
    let mut doc: DocumentMut = text
        .parse()
        .context("parsing the containerd config as TOML")?;
    let Some(list) = doc
        .get_mut("disabled_plugins")
        .and_then(|i| i.as_array_mut())
    else {
        return Ok(None);
    };
    let before = list.len();
    list.retain(|e| !e.as_str().is_some_and(|s| entries.iter().any(|x| x == s)));
    if list.len() == before {
        return Ok(None);
    }
    if list.is_empty() {
        // `[ "cri" ]` keeps no space inside the brackets once empty
        list.set_trailing("");
        list.set_trailing_comma(false);
    } else if let Some(first) = list.get_mut(0) {
        // the removed first entry's leading space was not this one's
        let suffix = first.decor().suffix().cloned();
        first.decor_mut().clear();
        if let Some(s) = suffix {
            first.decor_mut().set_suffix(s);
        }
    }
    Ok(Some(doc.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Docker's containerd.io package installs, in meaning: a licence header, the one
    /// setting, and the defaults commented out.
    const DOCKER: &str = "#   Docker's packaged config (header)\n\ndisabled_plugins = [\"cri\"]\n\n#root = \"/var/lib/containerd\"\n#[grpc]\n#  address = \"/run/containerd/containerd.sock\"\n";

    #[test]
    fn dockers_config_disables_cri_on_every_version() {
        for v in [Version::new(1, 7, 24), Version::new(2, 1, 9)] {
            let merged = if v.major >= 2 { 3 } else { 1 };
            assert_eq!(
                find([("/etc/containerd/config.toml", DOCKER, 0)], v, merged),
                [Disabled {
                    file: "/etc/containerd/config.toml".into(),
                    entry: "cri".into(),
                    refused: false,
                }]
            );
        }
        // `cri` where URIs are wanted: containerd refuses to start
        let v2 = "version = 2\ndisabled_plugins = [\"cri\"]\n";
        let refused = |v, version, merged| find([("/c.toml", v2, version)], v, merged)[0].refused;
        assert!(refused(Version::new(1, 7, 24), 2, 2));
        assert!(refused(Version::new(2, 1, 9), 2, 3));
        assert!(!refused(Version::new(2, 1, 9), 1, 3));
    }

    #[test]
    fn the_2x_names_count_only_on_2x() {
        let text = "version = 3\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.cri.v1.images\", \"io.containerd.cri.v1.runtime\"]\n";
        let entries = |v| -> Vec<String> {
            find([("/a.toml", text, 3)], v, 3)
                .into_iter()
                .map(|d| d.entry)
                .collect()
        };
        assert_eq!(
            entries(Version::new(2, 1, 9)),
            [
                "io.containerd.grpc.v1.cri",
                "io.containerd.cri.v1.images",
                "io.containerd.cri.v1.runtime"
            ]
        );
        assert_eq!(
            entries(Version::new(1, 7, 24)),
            ["io.containerd.grpc.v1.cri"]
        );
    }

    #[test]
    fn remove_keeps_every_other_line_and_entry() {
        let cri = vec!["cri".to_string()];
        assert_eq!(
            remove(DOCKER, &cri).unwrap().unwrap(),
            DOCKER.replace("[\"cri\"]", "[]")
        );
        let text = "# keep\ndisabled_plugins = [\"cri\", \"io.containerd.snapshotter.v1.zfs\"] # why\nroot = \"/x\"\n";
        assert_eq!(
            remove(text, &cri).unwrap().unwrap(),
            "# keep\ndisabled_plugins = [\"io.containerd.snapshotter.v1.zfs\"] # why\nroot = \"/x\"\n"
        );
        let after = remove(text, &cri).unwrap().unwrap();
        assert_eq!(remove(&after, &cri).unwrap(), None);
        assert_eq!(remove("version = 2\n", &cri).unwrap(), None);
    }
}
