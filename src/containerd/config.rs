//! containerd's configuration inside an offline root: find which containerd (and Kubernetes)
//! the root carries, and set the sandbox image with the key that containerd reads, keeping
//! every other line and comment of the file.
//!
//! The edit is a pure text transform ([`edit`]: `&str` in, no new text when nothing
//! changes); [`apply`] is the thin I/O around it: it asks [`super::effective`] which file
//! decides the sandbox image once containerd has merged the main config and its `imports`
//! (on 1.x the file whose CRI table is in force, on 2.x the last file setting the key, else
//! the main file), edits that one file, checks the merged result in memory and only then
//! replaces it atomically. No new drop-in is ever created: on 1.x it would replace the whole
//! CRI section of the file before it (`containerd-store.md` §8.2). Version facts live in
//! [`super::versions`].

use std::fs;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;
use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use super::effective::{self, EffectiveConfig};
use super::versions::{
    check_reads, default_sandbox_image, kubernetes_pause_image, sandbox_key, ConfigVersion,
    SandboxKey, Version,
};
use crate::cli::ConfigureArgs;
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

impl Found {
    /// The same, with a path inside the root shown as the host path of the root's directory
    /// plus that path (`configure` names host paths; `bake` and `verify` root paths).
    pub fn on_host(self, root: &Root) -> Found {
        let source = if self.source.starts_with('/') {
            format!("{}{}", root.dir().display(), self.source)
        } else {
            self.source
        };
        Found { source, ..self }
    }
}

/// The first of `candidates` that is a file in the root: its path inside the root (with a
/// leading `/`), its host path and its bytes. Paths go through [`Root`], so a symlink inside
/// the root resolves inside it, never on the host.
fn find_in_root(root: &Root, candidates: &[&str]) -> Result<Option<(String, PathBuf, Vec<u8>)>> {
    for rel in candidates {
        let host = root.resolve(rel)?;
        if host.is_file() {
            let bytes = fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
            return Ok(Some((format!("/{rel}"), host, bytes)));
        }
    }
    Ok(None)
}

/// The dpkg database, relative to the root.
const DPKG_STATUS: &str = "var/lib/dpkg/status";

/// containerd's version in `root` and where it was read: from the bytes of its binary (it
/// may be built for another architecture, so it is never run), else from the dpkg database
/// (packages `containerd`, `containerd.io`). `None` when the root has neither; an error when
/// it has a binary whose version cannot be read and no package, since guessing would pick a
/// config layout this containerd may refuse.
pub fn detect_containerd(root: &Root) -> Result<Option<Found>> {
    let binary = find_in_root(root, CONTAINERD_PATHS)?;
    if let Some((path, _, bytes)) = &binary {
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
        Some((_, path, _)) => bail!(
            "cannot tell the containerd version of {} (and no containerd package in {DPKG_STATUS}); \
             pass --containerd-version",
            path.display()
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
    let Some((path, host, bytes)) = find_in_root(root, KUBERNETES_PATHS)? else {
        return Ok(None);
    };
    match kubernetes_version_in(&bytes) {
        Some(version) => Ok(Some(Found {
            version,
            source: path,
        })),
        None => bail!(
            "cannot tell the Kubernetes version of {}; pass --kubernetes-version",
            host.display()
        ),
    }
}

/// The containerd version to act for: `--containerd-version` (`given`), else read from the
/// root ([`detect_containerd`]).
pub fn containerd_version(root: &Root, given: Option<&str>) -> Result<Option<Found>> {
    match given {
        Some(v) => Ok(Some(Found {
            version: v.parse()?,
            source: "--containerd-version".into(),
        })),
        None => detect_containerd(root),
    }
}

/// The containerd version assumed when a root has none: the newest whose layout pausebake
/// knows (config version 3, `pinned_images.sandbox`); a fresh root most likely gets a
/// current containerd.
pub const NEWEST_KNOWN: Version = Version::new(2, 1, 0);

/// [`containerd_version`], else [`NEWEST_KNOWN`] for a root without containerd (`bake` and
/// `verify`; `configure` refuses to guess).
pub fn containerd_version_or_newest(root: &Root, given: Option<&str>) -> Result<Found> {
    Ok(containerd_version(root, given)?.unwrap_or_else(|| Found {
        version: NEWEST_KNOWN,
        source: format!(
            "no containerd in the root: using the newest config layout (containerd \
             {NEWEST_KNOWN}, config version 3)"
        ),
    }))
}

/// The Kubernetes version to act for: `--kubernetes-version` (`given`), else read from the
/// root ([`detect_kubernetes`]).
pub fn kubernetes_version(root: &Root, given: Option<&str>) -> Result<Option<Found>> {
    match given {
        Some(v) => Ok(Some(Found {
            version: v.parse()?,
            source: "--kubernetes-version".into(),
        })),
        None => detect_kubernetes(root),
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
        let config_version = ConfigVersion::native(*containerd);
        let key = sandbox_key(config_version);
        let mut out = String::new();
        if !text.trim().is_empty() {
            // keep the comments of an otherwise empty file above the new settings
            out.push_str(text.trim_end());
            out.push_str("\n\n");
        }
        out.push_str(&minimal(config_version, image_ref));
        return Ok(Edit {
            config_version,
            key,
            old: None,
            text: Some(out),
        });
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
/// (`super::effective::target`). Keeps every other line, as [`edit`].
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
    let mut created_leaf = false;
    let mut item: &mut Item = doc.as_item_mut();
    for (depth, name) in key.tables.iter().enumerate() {
        let parent = item.as_table_like_mut().expect("checked on the way down");
        if parent.get(name).is_none() {
            created_leaf = depth + 1 == key.tables.len();
            let mut new = Table::new();
            // only the table holding the key gets a [header] of its own
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
    let header_indent = item
        .as_table()
        .and_then(|t| t.decor().prefix())
        .and_then(|p| p.as_str())
        .map(|p| p.rsplit('\n').next().unwrap_or_default().to_string())
        .unwrap_or_default();
    let table = item.as_table_like_mut().expect("checked above");

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
        return Ok(Edit {
            config_version,
            key,
            old,
            text: None,
        });
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
pub fn default_image(kubernetes: Option<&Found>, containerd: Version) -> Result<(String, String)> {
    match kubernetes {
        Some(k) => Ok((
            kubernetes_pause_image(k.version)?,
            format!("the pause of Kubernetes {} ({})", k.version, k.source),
        )),
        None => Ok((
            default_sandbox_image(containerd)?.to_string(),
            format!("the default of containerd {containerd}"),
        )),
    }
}

/// What [`apply`] did to a root's config.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The host path of the file written (or that already said so).
    pub path: PathBuf,
    /// That file as the node names it.
    pub node_path: String,
    pub edit: Edit,
    /// The file did not exist before.
    pub created: bool,
    /// Stale keys or shadowed settings worth a look, one sentence each.
    pub warnings: Vec<String>,
    /// The effective config after the edit: every file consulted, in load order.
    pub effective: EffectiveConfig,
}

/// Sets the sandbox image so that containerd `containerd` reads it from `root`'s *effective*
/// config: resolves the main file (`main`: `--config`) and its imports as that version does
/// (`super::effective`), edits the file that decides the value (the main file when none
/// does, created if missing), checks in memory that the merged result now names
/// `image_ref`, and only then replaces that one file atomically (temp file + rename, keeping
/// mode and owner). A config containerd would refuse is an error naming the file, and
/// nothing is written.
pub fn apply(
    root: &Root,
    containerd: &Version,
    image_ref: &str,
    main: Option<&Path>,
) -> Result<Applied> {
    let main = effective::find_main(root, main)?;
    let before = effective::resolve(root, &main, *containerd)?;
    let (file, version) = effective::target(&before, *containerd)
        .with_context(|| format!("setting the sandbox image in {}", main.path))?;
    let path = root.resolve(&file)?;
    let old = effective::Files::read(root, &file)?;
    let text = old.as_deref().unwrap_or_default();
    let edit = match version {
        Some(version) if !text.trim().is_empty() => edit_as(text, version, image_ref),
        _ => edit(text, containerd, image_ref),
    }
    .with_context(|| format!("setting the sandbox image in {file} ({})", path.display()))?;
    let after = match &edit.text {
        None => before,
        Some(new) => {
            let overlay = effective::Overlay {
                base: root,
                path: &file,
                text: new,
            };
            effective::resolve_with(&overlay, &main, *containerd)?
        }
    };
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
    if let Some(new) = &edit.text {
        let dir = Path::new(&file)
            .parent()
            .expect("a config path has a parent directory");
        root.create_dir_all(dir, 0o755)?;
        // a new config is world-readable like the packaged one; a replaced one keeps its mode
        root.write_atomic(&file, new.as_bytes(), 0o644)?;
    }
    let in_force = edit.text.as_deref().unwrap_or(text);
    let mut warnings = ignored_key_warnings(in_force, edit.config_version);
    warnings.extend(after.shadowed.iter().map(|s| {
        format!(
            "{} sets {} = {:?}, which containerd {containerd} does not use ({})",
            after.path(s.file),
            s.key,
            s.value,
            after.describe()
        )
    }));
    Ok(Applied {
        path,
        node_path: file,
        edit,
        created: old.is_none(),
        warnings,
        effective: after,
    })
}

/// A version 3 config that still carries the version 2 `sandbox_image`: containerd 2.x logs
/// "Ignoring unknown key" and does not use it (`containerd-store.md` §8.1), which readers of
/// the file may not expect.
fn ignored_key_warnings(config_text: &str, version: ConfigVersion) -> Vec<String> {
    if version != ConfigVersion::V3 {
        return Vec::new();
    }
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
            "the config also sets {} = {value:?}, which containerd 2.x ignores in a version 3 \
             config; remove it to avoid confusion",
            key.dotted()
        )],
        None => Vec::new(),
    }
}

/// `pausebake configure`.
pub fn configure(args: &ConfigureArgs) -> Result<ExitCode> {
    let root = Root::new(&args.target.root)?;
    let root = &root;
    let Some(Found {
        version: containerd,
        source: containerd_from,
    }) = containerd_version(root, args.target.containerd_version.as_deref())?
        .map(|f| f.on_host(root))
    else {
        bail!(
            "no containerd in {} (looked for {} and a package in {DPKG_STATUS}); \
             pass --containerd-version",
            root.dir().display(),
            CONTAINERD_PATHS.join(", ")
        );
    };
    let (requested, why) = match &args.sandbox_image {
        Some(image) => (image.clone(), "--sandbox-image".to_string()),
        None => default_image(
            kubernetes_version(root, args.kubernetes_version.as_deref())?
                .map(|f| f.on_host(root))
                .as_ref(),
            containerd,
        )?,
    };
    let image = super::store::normalize_ref(&requested)?;
    let applied = apply(root, &containerd, &image, args.config.config.as_deref())?;
    let edit = &applied.edit;
    let eff = &applied.effective;
    if args.output.json {
        let doc = json!({
            "path": applied.path,
            "containerd_version": containerd.to_string(),
            "containerd_version_from": containerd_from,
            "config_version": edit.config_version.number(),
            "key": edit.key.dotted(),
            "old": edit.old,
            "new": image,
            "requested": requested,
            "why": why,
            "changed": edit.text.is_some(),
            "created": applied.created,
            "warnings": applied.warnings,
            "main_config": eff.main,
            "main_config_why": eff.main_why,
            "files": eff.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
            "effective": eff.describe(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    if image != requested {
        println!("normalized {requested:?} to {image:?} (the name CRI looks up)");
    }
    let what = format!("{} = {image:?}", edit.key.dotted());
    let context = format!(
        "containerd {containerd} from {containerd_from}, config version {}; image: {why}",
        edit.config_version.number()
    );
    let path = applied.path.display();
    match (&edit.text, applied.created, &edit.old) {
        (None, _, _) => println!("unchanged: {path} already sets {what} ({context})"),
        (Some(_), true, _) => println!("created {path} with {what} ({context})"),
        (Some(_), false, Some(old)) => {
            println!("changed {path}: {what}, was {old:?} ({context})")
        }
        (Some(_), false, None) => println!("changed {path}: added {what} ({context})"),
    }
    // the plain case (the default file, no imports) needs no extra line
    if eff.main != effective::DEFAULT_MAIN || eff.files.len() > 1 {
        let files: Vec<&str> = eff.files.iter().map(|f| f.path.as_str()).collect();
        println!(
            "main config {} ({}); containerd loads {}",
            eff.main,
            eff.main_why,
            files.join(", ")
        );
    }
    for warning in &applied.warnings {
        eprintln!("pausebake: warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
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
            "config version 4 is not supported (pausebake knows 1 to 3)"
        );
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
        assert_eq!(containerd_version(&root, None).unwrap(), None);
        assert_eq!(
            containerd_version_or_newest(&root, None).unwrap().version,
            NEWEST_KNOWN
        );
        root.create_dir_all("/usr/bin", 0o755).unwrap();
        root.write_atomic("/usr/bin/containerd", b"#!/bin/sh\n", 0o755)
            .unwrap();
        let err = containerd_version(&root, None).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot tell the containerd version of {}/usr/bin/containerd (and no containerd \
                 package in var/lib/dpkg/status); pass --containerd-version",
                root.dir().display()
            )
        );
        let f = containerd_version(&root, Some("1.7.24~ds1"))
            .unwrap()
            .unwrap();
        assert_eq!(f.version, v("1.7.24"));
    }
}
