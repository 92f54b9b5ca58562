//! containerd's configuration: set the sandbox image with the key the root's containerd
//! reads, in the file that decides it once containerd has merged the main config and its
//! `imports`, keeping every other line and comment, and say what stale keys or shadowed
//! settings remain.
//!
//! Pure: the edit is a text transform ([`edit`]: `&str` in, no new text when nothing
//! changes) and [`plan`] turns a root's [`ConfigFacts`] into a [`ConfigPlan`]: it asks
//! [`super::effective::target`] which file decides the value (on 1.x the file whose CRI
//! table is in force, on 2.x the last file setting the key, else the main file), edits that
//! file's inspected text, and merges again in memory to check that containerd will then read
//! the name. Reading the files is [`super::inspect`]'s, writing them [`super::apply`]'s.
//! Version facts live in [`super::versions`]. No new drop-in is ever created: on 1.x it would
//! replace the whole CRI section of the file before it (`containerd-store.md` §8.2).

use anyhow::{bail, Context, Result};
use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use super::effective::{self, EffectiveConfig, Overlay};
use super::inspect::{ConfigFacts, Sourced};
use super::versions::{
    self, check_reads, default_sandbox_image, kubernetes_pause_image, sandbox_key, ConfigVersion,
    SandboxKey, Version,
};

/// What setting the sandbox image does to a config text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The config version the key was chosen for (the file's, or the native one of a new file).
    pub config_version: ConfigVersion,
    pub key: SandboxKey,
    /// The value before, if the key was set.
    pub old: Option<String>,
    /// The new text; `None` when the config already names `image_ref` there.
    pub text: Option<String>,
}

/// Sets the sandbox image in a containerd config text for `containerd`, keeping every other
/// line, and says which key changed and from what; `text` is `None` when the config already
/// says so. An empty text (or comments only) gets a minimal config at the release's native
/// version.
pub fn edit(text: &str, containerd: &Version, image_ref: &str) -> Result<Edit> {
    let doc: DocumentMut = text
        .parse()
        .context("parsing the containerd config as TOML")?;
    if doc.as_table().is_empty() {
        return edit_empty(text, ConfigVersion::native(*containerd)?, image_ref);
    }
    let number = match doc.get("version") {
        None => None,
        Some(item) => Some(
            item.as_integer()
                .context("the containerd config's version is not an integer")?,
        ),
    };
    let config_version = ConfigVersion::from_number(number)?;
    check_reads(*containerd, config_version)?;
    edit_doc(doc, config_version, image_ref)
}

/// Sets the sandbox image under the key of `config_version` in a config text, whatever
/// version the file itself declares: for a file whose key is decided by the merged config
/// ([`super::effective::target`]). Keeps every other line, as [`edit`].
pub fn edit_as(text: &str, config_version: ConfigVersion, image_ref: &str) -> Result<Edit> {
    let doc: DocumentMut = text
        .parse()
        .context("parsing the containerd config as TOML")?;
    edit_doc(doc, config_version, image_ref)
}

fn edit_doc(mut doc: DocumentMut, config_version: ConfigVersion, image_ref: &str) -> Result<Edit> {
    let key = sandbox_key(config_version);

    // comments after the last setting; a new table goes after them unless they are moved
    let trailing = doc.trailing().as_str().unwrap_or_default().to_string();
    let (item, created_leaf) = descend(&mut doc, key)?;
    let old = set_value(item, key, image_ref)?;
    if old.as_deref() == Some(image_ref) {
        return Ok(Edit {
            config_version,
            key,
            old,
            text: None,
        });
    }
    if created_leaf && !trailing.trim().is_empty() {
        // keep the file's closing comments where they were: before the appended table
        // (when the path runs through inline tables there is no header to carry them)
        let leaf = key.tables.iter().try_fold(doc.as_table_mut(), |t, name| {
            t.get_mut(name).and_then(|i| i.as_table_mut())
        });
        if let Some(table) = leaf {
            table.decor_mut().set_prefix(format!("{trailing}\n"));
            doc.set_trailing("");
        }
    }
    Ok(Edit {
        config_version,
        key,
        old,
        text: Some(doc.to_string()),
    })
}

/// [`edit`] of a text with no settings (empty, or comments only): a minimal config at the
/// release's native version, below the comments.
fn edit_empty(text: &str, config_version: ConfigVersion, image_ref: &str) -> Result<Edit> {
    let mut out = String::new();
    if !text.trim().is_empty() {
        out.push_str(text.trim_end());
        out.push_str("\n\n");
    }
    out.push_str(&minimal(config_version, image_ref));
    Ok(Edit {
        config_version,
        key: sandbox_key(config_version),
        old: None,
        text: Some(out),
    })
}

/// The table that holds `key` in `doc`, created on the way down when missing (only that
/// table gets a `[header]` of its own), and whether that table itself was created.
fn descend(doc: &mut DocumentMut, key: SandboxKey) -> Result<(&mut Item, bool)> {
    let mut created_leaf = false;
    let mut item: &mut Item = doc.as_item_mut();
    for (depth, name) in key.tables.iter().enumerate() {
        let parent = item.as_table_like_mut().expect("checked on the way down");
        if parent.get(name).is_none() {
            created_leaf = depth + 1 == key.tables.len();
            let mut new = Table::new();
            new.set_implicit(depth + 1 < key.tables.len());
            parent.insert(name, Item::Table(new));
        }
        item = parent.get_mut(name).expect("inserted above");
        if !item.is_table_like() {
            bail!(
                "{} in the containerd config is not a table",
                key.tables[..=depth].join(".")
            );
        }
    }
    if let Some(t) = item.as_table_mut() {
        // an implicit table (only sub-tables so far) that gains a key must print its header
        t.set_implicit(false);
    }
    Ok((item, created_leaf))
}

/// Sets `key` to `image_ref` in its table `item`, keeping the old value's quoting and
/// decoration (or, for a new key, its siblings' indentation); returns the old value. Leaves
/// the table alone when it already holds `image_ref`.
fn set_value(item: &mut Item, key: SandboxKey, image_ref: &str) -> Result<Option<String>> {
    let header_indent = item
        .as_table()
        .and_then(|t| t.decor().prefix())
        .and_then(|p| p.as_str())
        .map(|p| p.rsplit('\n').next().unwrap_or_default().to_string())
        .unwrap_or_default();
    let table = item.as_table_like_mut().expect("checked by descend");
    let old = match table.get(key.key) {
        None => None,
        Some(item) => Some(
            item.as_str()
                .with_context(|| {
                    format!("{} in the containerd config is not a string", key.dotted())
                })?
                .to_string(),
        ),
    };
    if old.as_deref() == Some(image_ref) {
        return Ok(old);
    }
    match table.get_mut(key.key) {
        Some(item) => {
            let current = item.as_value().expect("a string is a value");
            let literal = current.to_string().trim_start().starts_with('\'');
            let mut value = string_value(image_ref, literal);
            *value.decor_mut() = current.decor().clone();
            *item = Item::Value(value);
        }
        None => {
            let indent = key_indent(table, &header_indent);
            table.insert(key.key, Item::Value(string_value(image_ref, false)));
            if let Some(mut k) = table.key_mut(key.key) {
                k.leaf_decor_mut().set_prefix(indent);
            }
        }
    }
    Ok(old)
}

/// A TOML string for `s`: a literal ('…') one when the replaced value was literal and `s`
/// allows it, so the file keeps its quoting style.
fn string_value(s: &str, literal: bool) -> Value {
    if literal && !s.contains('\'') && !s.contains('\n') {
        if let Ok(v) = format!("'{s}'").parse::<Value>() {
            return v;
        }
    }
    Value::from(s)
}

/// The indentation of keys in `table`: that of an existing key, else two spaces more than
/// its indented `[header]` (the style of `containerd config default`), else none.
fn key_indent(table: &dyn TableLike, header_indent: &str) -> String {
    let sibling = table
        .iter()
        .filter(|(_, item)| item.is_value())
        .find_map(|(k, _)| table.key(k))
        .and_then(|k| k.leaf_decor().prefix())
        .and_then(|p| p.as_str())
        .map(|p| p.rsplit('\n').next().unwrap_or_default().to_string());
    match sibling {
        Some(indent) => indent,
        None if header_indent.is_empty() => String::new(),
        None => format!("{header_indent}  "),
    }
}

/// The smallest config that sets the sandbox image, at `version`.
fn minimal(version: ConfigVersion, image_ref: &str) -> String {
    let key = sandbox_key(version);
    let table = key
        .dotted()
        .rsplit_once('.')
        .map(|(t, _)| t.to_string())
        .unwrap_or_default();
    format!(
        "version = {}\n\n[{table}]\n  {} = {}\n",
        version.number(),
        key.key,
        Value::from(image_ref)
    )
}

/// Which image to name and why, when no name is given: the pause of the root's Kubernetes
/// (`--kubernetes-version` or found in the root), else the default of its containerd. Used
/// by `configure` and `bake`.
pub fn default_image(
    kubernetes: Option<&Sourced<Version>>,
    containerd: Version,
) -> Result<(String, String)> {
    let Some(k) = kubernetes else {
        return Ok((
            default_sandbox_image(containerd)?.to_string(),
            format!("the default of containerd {containerd}"),
        ));
    };
    let image = kubernetes_pause_image(k.value)?;
    let why = if k.value.minor > versions::NEWEST_KUBERNETES_MINOR {
        format!(
            "the newest known mapping (Kubernetes 1.{}+), for Kubernetes {} ({}), newer than \
             any pausebake knows",
            versions::NEWEST_KUBERNETES_MINOR,
            k.value,
            k.source
        )
    } else {
        format!("the pause of Kubernetes {} ({})", k.value, k.source)
    };
    Ok((image, why))
}

/// What setting the sandbox image will do to a root's config, for the plan and `--json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigPlan {
    /// The file edited: the one that decides the sandbox image, inside the root.
    pub path: String,
    /// The main config, inside the root, and why that one.
    pub main_config: String,
    pub main_config_why: String,
    /// Every config file containerd loads, in load order (after the edit).
    pub files: Vec<String>,
    /// What containerd reads after the edit, and from where: one sentence.
    pub effective: String,
    pub config_version: i64,
    pub key: String,
    /// The value before, if the key was set.
    pub old: Option<String>,
    pub new: String,
    /// The file does not exist yet.
    pub created: bool,
    pub changed: bool,
    /// Stale keys or shadowed settings worth a look, one sentence each.
    pub warnings: Vec<String>,
    /// Why no edit is made, when the owner of containerd fixes the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The file's new text, when it changes.
    #[serde(skip)]
    pub text: Option<String>,
    /// The text the plan was made from (`None`: no file); apply refuses if it changed.
    #[serde(skip)]
    pub before: Option<String>,
}

/// The config edit that sets `image_ref` for `containerd`, over the config as inspected: in
/// the file [`effective::target`] names, checked by merging again with the edit. A config
/// containerd would refuse, or one where the edit would not take effect, is an error naming
/// the file.
pub fn plan(config: &ConfigFacts, containerd: Version, image_ref: &str) -> Result<ConfigPlan> {
    plan_in(config, containerd, image_ref, None)
}

/// The `version` of a new drop-in: `containerd`'s own, but never above that of the first
/// loaded file that sets one (containerd 2.3 refuses a drop-in of a higher version; the CRI
/// key of version 3 is also version 4's).
fn drop_in_version(eff: &EffectiveConfig, containerd: Version) -> Result<ConfigVersion> {
    let native = ConfigVersion::native(containerd)?;
    match eff.files.iter().map(|f| f.version).find(|v| *v != 0) {
        Some(root) if root < native.number() => ConfigVersion::from_number(Some(root)),
        _ => Ok(native),
    }
}

/// [`plan`], writing into `file` (a drop-in the main config imports) instead of the file
/// [`effective::target`] names, when given.
pub fn plan_in(
    config: &ConfigFacts,
    containerd: Version,
    image_ref: &str,
    file: Option<&str>,
) -> Result<ConfigPlan> {
    let eff = &config.effective;
    let own_drop_in = file.is_some();
    let (file, version) = match (file, &eff.refused) {
        (Some(_), Some(why)) => bail!("{why}; fix that file first (nothing was written)"),
        (Some(f), None) => (f.to_string(), None),
        (None, _) => effective::target(eff, containerd)
            .with_context(|| format!("setting the sandbox image in {}", eff.main))?,
    };
    let before = config.files.text(&file)?.map(str::to_string);
    let text = before.as_deref().unwrap_or_default();
    let edit = match version {
        Some(version) if !text.trim().is_empty() => edit_as(text, version, image_ref),
        // a new drop-in may not outrank the first file that sets a version (2.3 refuses it)
        None if own_drop_in && text.trim().is_empty() => {
            edit_empty(text, drop_in_version(eff, containerd)?, image_ref)
        }
        _ => edit(text, &containerd, image_ref),
    }
    .with_context(|| format!("setting the sandbox image in {file}"))?;
    let after = match &edit.text {
        None => eff.clone(),
        Some(new) => {
            let overlay = Overlay {
                base: &config.files,
                path: &file,
                text: new,
            };
            effective::resolve_with(&overlay, &config.main, containerd)?
        }
    };
    check_merged(&after, &file, containerd, image_ref)?;
    let in_force = edit.text.as_deref().unwrap_or(text);
    let mut warnings = ignored_key_warnings(in_force, edit.config_version);
    if versions::is_newer_than_known(containerd) {
        warnings.push(format!(
            "containerd {containerd} is newer than any pausebake knows ({}): configured as {}",
            versions::known_releases(),
            versions::NEWEST_KNOWN
        ));
    }
    warnings.extend(shadowed_warnings(&after));
    Ok(ConfigPlan {
        path: file,
        main_config: after.main.clone(),
        main_config_why: after.main_why.clone(),
        files: after.files.iter().map(|f| f.path.clone()).collect(),
        effective: after.describe(),
        config_version: edit.config_version.number(),
        key: edit.key.dotted(),
        old: edit.old,
        new: image_ref.to_string(),
        created: before.is_none(),
        changed: edit.text.is_some(),
        warnings,
        note: None,
        text: edit.text,
        before,
    })
}

/// The merged config after an edit of `file` must be one containerd starts with and reads
/// `image_ref` from; else nothing may be written.
fn check_merged(
    after: &EffectiveConfig,
    file: &str,
    containerd: Version,
    image_ref: &str,
) -> Result<()> {
    if let Some(why) = &after.refused {
        bail!("setting the sandbox image in {file}: containerd would then refuse the config: {why} (nothing was written)");
    }
    if after.image() != image_ref {
        bail!(
            "setting the sandbox image in {file}: containerd {containerd} would still read {:?} ({}); nothing was written",
            after.image(),
            after.describe()
        );
    }
    Ok(())
}

/// Sandbox image settings in loaded files that the merge does not use, one sentence each.
fn shadowed_warnings(eff: &EffectiveConfig) -> Vec<String> {
    eff.shadowed
        .iter()
        .map(|s| {
            format!(
                "{} sets {} = {:?}, which containerd {} does not use ({})",
                eff.path(s.file),
                s.key,
                s.value,
                eff.containerd,
                eff.describe()
            )
        })
        .collect()
}

/// A version 3 or 4 config that still carries the version 2 `sandbox_image`: containerd 2.0
/// to 2.2 (version 3) and 2.3 (version 4) log "Ignoring unknown key" and do not use it
/// (`containerd-store.md` §8.1), which readers of the file may not expect. (2.3 migrates a
/// version 3 file's leftover key instead; [`effective`] then finds it in force and it is
/// the key edited, never this case.)
fn ignored_key_warnings(config_text: &str, version: ConfigVersion) -> Vec<String> {
    let who = match version {
        ConfigVersion::V3 => "2.x",
        ConfigVersion::V4 => "2.3",
        _ => return Vec::new(),
    };
    let Ok(doc) = config_text.parse::<DocumentMut>() else {
        return Vec::new();
    };
    let key = sandbox_key(ConfigVersion::V2);
    let stale = key
        .tables
        .iter()
        .try_fold(doc.as_item(), |item, name| item.as_table_like()?.get(name))
        .and_then(|t| t.as_table_like()?.get(key.key))
        .and_then(|v| v.as_str());
    match stale {
        Some(value) => vec![format!(
            "the config also sets {} = {value:?}, which containerd {who} ignores in a version \
             {} config; remove it to avoid confusion",
            key.dotted(),
            version.number()
        )],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`edit`]'s new text only (`None`: unchanged), the form the before/after pairs test.
    fn patch(text: &str, containerd: &Version, image_ref: &str) -> Result<Option<String>> {
        Ok(edit(text, containerd, image_ref)?.text)
    }

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    /// `containerd config default` of each release the tests run, and Debian's shipped file.
    const DEFAULT_1_6: &str = include_str!("../../tests/fixtures/containerd/default-1.6.20.toml");
    const DEFAULT_1_7: &str = include_str!("../../tests/fixtures/containerd/default-1.7.24.toml");
    const DEFAULT_2_1: &str = include_str!("../../tests/fixtures/containerd/default-2.1.9.toml");
    const DEBIAN: &str = include_str!("../../tests/fixtures/containerd/debian-1.7.24.toml");

    /// Patches, checks the result is exactly `before` with `from` replaced by `to`, and that
    /// patching again changes nothing.
    fn assert_replaces(before: &str, containerd: &str, image: &str, from: &str, to: &str) {
        assert_eq!(before.matches(from).count(), 1, "{from} occurs once");
        let after = patch(before, &v(containerd), image).unwrap().unwrap();
        assert_eq!(after, before.replacen(from, to, 1));
        assert_eq!(patch(&after, &v(containerd), image).unwrap(), None);
    }

    #[test]
    fn upstream_1_6_default_changes_one_line() {
        assert_replaces(
            DEFAULT_1_6,
            "1.6.20",
            "registry.k8s.io/pause:3.10",
            "    sandbox_image = \"registry.k8s.io/pause:3.6\"\n",
            "    sandbox_image = \"registry.k8s.io/pause:3.10\"\n",
        );
    }

    #[test]
    fn upstream_1_7_default_changes_one_line() {
        assert_replaces(
            DEFAULT_1_7,
            "1.7.24",
            "registry.k8s.io/pause:3.9",
            "    sandbox_image = \"registry.k8s.io/pause:3.8\"\n",
            "    sandbox_image = \"registry.k8s.io/pause:3.9\"\n",
        );
    }

    #[test]
    fn upstream_2_1_default_changes_one_line_keeping_literal_quotes() {
        assert_replaces(
            DEFAULT_2_1,
            "2.1.9",
            "registry.k8s.io/pause:3.10.1",
            "      sandbox = 'registry.k8s.io/pause:3.10'\n",
            "      sandbox = 'registry.k8s.io/pause:3.10.1'\n",
        );
    }

    #[test]
    fn upstream_2_3_default_changes_one_line_keeping_literal_quotes() {
        const DEFAULT_2_3: &str =
            include_str!("../../tests/fixtures/containerd/default-2.3.4.toml");
        assert_replaces(
            DEFAULT_2_3,
            "2.3.4",
            "registry.k8s.io/pause:3.10",
            "      sandbox = 'registry.k8s.io/pause:3.10.2'\n",
            "      sandbox = 'registry.k8s.io/pause:3.10'\n",
        );
        // no file: a minimal version 4 one
        assert_eq!(
            patch("", &v("2.3.4"), "registry.k8s.io/pause:3.10.2")
                .unwrap()
                .unwrap(),
            "version = 4\n\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"registry.k8s.io/pause:3.10.2\"\n"
        );
    }

    #[test]
    fn version_2_config_under_containerd_2_keeps_sandbox_image() {
        // 2.x migrates sandbox_image itself (containerd-store.md §8.3)
        assert_replaces(
            DEFAULT_1_7,
            "2.1.9",
            "registry.k8s.io/pause:3.10",
            "    sandbox_image = \"registry.k8s.io/pause:3.8\"\n",
            "    sandbox_image = \"registry.k8s.io/pause:3.10\"\n",
        );
    }

    #[test]
    fn debian_config_gains_the_key_in_its_cri_section() {
        assert_replaces(
            DEBIAN,
            "1.7.24",
            "registry.k8s.io/pause:3.10",
            "  [plugins.\"io.containerd.grpc.v1.cri\"]\n",
            "  [plugins.\"io.containerd.grpc.v1.cri\"]\n    sandbox_image = \"registry.k8s.io/pause:3.10\"\n",
        );
    }

    #[test]
    fn absent_config_gets_a_minimal_one_per_release() {
        let image = "registry.k8s.io/pause:3.10";
        assert_eq!(
            patch("", &v("1.6.20"), image).unwrap().unwrap(),
            "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10\"\n"
        );
        let v3 = patch("", &v("2.1.9"), image).unwrap().unwrap();
        assert_eq!(
            v3,
            "version = 3\n\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"registry.k8s.io/pause:3.10\"\n"
        );
        assert_eq!(patch(&v3, &v("2.1.9"), image).unwrap(), None);
        // a file with only comments keeps them
        assert_eq!(
            patch("# managed by packer\n", &v("1.7.24"), image)
                .unwrap()
                .unwrap(),
            "# managed by packer\n\nversion = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10\"\n"
        );
    }

    #[test]
    fn comments_and_other_settings_survive() {
        let before = r#"# node config, do not edit by hand
version = 2
root = "/data/containerd" # big disk

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true   # kubelet uses systemd
"#;
        let after = patch(before, &v("1.7.24"), "registry.k8s.io/pause:3.9")
            .unwrap()
            .unwrap();
        assert_eq!(
            after,
            r#"# node config, do not edit by hand
version = 2
root = "/data/containerd" # big disk

[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "registry.k8s.io/pause:3.9"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true   # kubelet uses systemd
"#
        );
        let doc: DocumentMut = after.parse().unwrap();
        assert_eq!(
            doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"]
                ["options"]["SystemdCgroup"]
                .as_bool(),
            Some(true)
        );
        assert_eq!(
            patch(&after, &v("1.7.24"), "registry.k8s.io/pause:3.9").unwrap(),
            None
        );
    }

    #[test]
    fn closing_comments_stay_before_a_new_table() {
        let before = "version = 2\n# keep\n";
        assert_eq!(
            patch(before, &v("1.6.20"), "x").unwrap().unwrap(),
            "version = 2\n# keep\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"x\"\n"
        );
        // through an inline table there is no header: the comment stays at the end
        let inline = "version = 2\nplugins = { }\n# end\n";
        let after = patch(inline, &v("1.6.20"), "x").unwrap().unwrap();
        assert!(after.ends_with("# end\n"), "{after}");
        let doc: DocumentMut = after.parse().unwrap();
        assert_eq!(
            doc["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"].as_str(),
            Some("x")
        );
    }

    #[test]
    fn version_1_config_uses_short_plugin_names() {
        let before = "[plugins.cri]\n  stream_server_port = \"10010\"\n";
        assert_eq!(
            patch(before, &v("1.6.20"), "registry.k8s.io/pause:3.6")
                .unwrap()
                .unwrap(),
            "[plugins.cri]\n  stream_server_port = \"10010\"\n  sandbox_image = \"registry.k8s.io/pause:3.6\"\n"
        );
    }

    #[test]
    fn inline_and_dotted_tables_are_edited_in_place() {
        let dotted = "version = 3\nplugins.\"io.containerd.cri.v1.images\".pinned_images.sandbox = \"old\"\n";
        assert_eq!(
            patch(dotted, &v("2.1.9"), "new").unwrap().unwrap(),
            "version = 3\nplugins.\"io.containerd.cri.v1.images\".pinned_images.sandbox = \"new\"\n"
        );
        let inline =
            "version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\npinned_images = { sandbox = \"old\" }\n";
        assert_eq!(
            patch(inline, &v("2.1.9"), "new").unwrap().unwrap(),
            "version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\npinned_images = { sandbox = \"new\" }\n"
        );
    }

    #[test]
    fn wrong_shapes_are_errors_naming_the_key() {
        let err = |text: &str, c: &str| format!("{:#}", patch(text, &v(c), "x").unwrap_err());
        assert_eq!(
            err("version = 3\n", "1.7.24"),
            "containerd 1.7.24 does not read a version 3 config (2.x format); \
             use a version 2 config for containerd 1.x"
        );
        assert_eq!(
            err("version = 4\n", "2.1.9"),
            "containerd 2.1.9 does not read a version 4 config (2.3 format); \
             use a version 3 config for containerd 2.0 to 2.2"
        );
        assert!(err("version = 5\n", "2.3.4").starts_with(
            "the containerd config says version = 5, a config version newer than pausebake knows"
        ));
        assert_eq!(
            err("version = \"2\"\n", "2.1.9"),
            "the containerd config's version is not an integer"
        );
        assert_eq!(
            err("version = 2\nplugins = 1\n", "1.6.20"),
            "plugins in the containerd config is not a table"
        );
        assert_eq!(
            err(
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = 3\n",
                "1.6.20"
            ),
            "plugins.\"io.containerd.grpc.v1.cri\".sandbox_image in the containerd config is not a string"
        );
        assert!(err("version = [\n", "1.6.20").starts_with("parsing the containerd config as TOML"));
    }

    #[test]
    fn a_version_2_key_in_a_version_3_config_is_reported() {
        let text =
            "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"old:1\"\n";
        assert_eq!(
            ignored_key_warnings(text, ConfigVersion::V3),
            ["the config also sets plugins.\"io.containerd.grpc.v1.cri\".sandbox_image = \"old:1\", \
              which containerd 2.x ignores in a version 3 config; remove it to avoid confusion"]
        );
        assert!(ignored_key_warnings(text, ConfigVersion::V2).is_empty());
    }

    #[test]
    fn kubernetes_newer_than_the_table_says_newest_known_mapping() {
        let k = |s: &str| Sourced {
            value: v(s),
            source: "--kubernetes-version".to_string(),
        };
        let (image, why) = default_image(Some(&k("1.40.0")), v("2.1.9")).unwrap();
        assert_eq!(image, "registry.k8s.io/pause:3.10.2");
        assert!(
            why.starts_with("the newest known mapping (Kubernetes 1.36+)"),
            "{why}"
        );
        let (_, why) = default_image(Some(&k("1.31.2")), v("2.1.9")).unwrap();
        assert_eq!(why, "the pause of Kubernetes 1.31.2 (--kubernetes-version)");
    }
}
