//! containerd's *effective* configuration in an offline root: the main file, every file its
//! `imports` pull in, merged the way the root's containerd version merges them, and the
//! sandbox image that results, with the file that decides it.
//!
//! The rules (`containerd-store.md` §8.2, §8.2.1, §8.3; checked against `LoadConfig`,
//! `resolveImports` and `mergeConfig` of containerd v1.6.20, v1.6.29, v1.7.15, v1.7.16,
//! v1.7.24 and v2.1.9, and the CRI images plugin's `configMigration` of v2.1.9):
//! - Load order is breadth-first: the main file, then its imports in listed order (a glob's
//!   matches sorted), then their imports; a path already loaded (by its cleaned text, as
//!   containerd keys it) is skipped, which ends cycles.
//! - An import containing `*` is a glob (then `?` and `[...]` are patterns too); anything else
//!   is one file. Relative imports are joined to the importing file's directory, except that
//!   1.6 before 1.6.29 and 1.7 before 1.7.16 hand a relative *glob* to `filepath.Glob`
//!   unchanged, i.e. relative to the daemon's working directory, `/` under systemd.
//! - A glob matching nothing adds nothing; a listed file that does not exist (or cannot be
//!   read or parsed) stops containerd from starting.
//! - `version`: the last non-zero value wins; the accumulated version starts at 1 on 1.x and
//!   at 3 on 2.x (the built-in default config's).
//! - 1.x: each `plugins.<id>` table of a later file replaces the earlier one whole. A merged
//!   version 1 reads plugin `cri`, else `io.containerd.grpc.v1.cri`. 1.6.32+/1.7.17+ refuse a
//!   merged version above 2; a merged version 2+ refuses plugin keys that are not URIs.
//! - 2.x: a file of version 0/1 gets its short plugin names renamed (`cri` ->
//!   `io.containerd.grpc.v1.cri`) and takes the accumulated version; plugin tables are
//!   deep-merged, a later value (even `""`) replaces an earlier one. When the merged version
//!   is below 3, CRI's migration copies `io.containerd.grpc.v1.cri`'s `sandbox_image` over
//!   `io.containerd.cri.v1.images`' `pinned_images.sandbox`. A merged version above 3 is
//!   refused (2.0 to 2.2).
//! - 2.0 to 2.2 (`LoadConfig` in `cmd/containerd/server/config/config.go`, the same at
//!   v2.0.0, v2.0.11, v2.1.9 and v2.2.7): a file of version 4 or more is merged like any
//!   other (its `version` becomes the accumulated one), so it is only refused if it is still
//!   the last non-zero `version` at the end; but a version 0/1 file loaded while the
//!   accumulated version is 4 or more makes `MigrateConfigTo` step past its three-entry
//!   migration table, and containerd panics (`index out of range [3] with length 3`).
//!   A main file of version 4 whose later drop-in says version 2 loads; a version 4 drop-in
//!   followed by a version 1 (or unversioned) one, with no version 2/3 file loaded between
//!   them, does not.
//! - 2.3 (checked against `LoadConfigWithPlugins` of containerd v2.3.4 and its `config dump`):
//!   the accumulated version starts at 4 and every file below it is migrated *on its own,
//!   before the merge*, one version step at a time, with the plugins' migrations: short
//!   plugin names renamed (version 0/1), CRI's `sandbox_image` copied over that file's own
//!   `pinned_images.sandbox` (a step below 4 runs it, so a version 3 file's leftover
//!   `sandbox_image` wins too), and a `[grpc] address` moved into the file's
//!   `io.containerd.server.v1.grpc` table unless it has one (a version 4 file's `[grpc]` is
//!   not read). The "root config version" is the first non-zero `version` loaded; a later
//!   file with a higher one is refused.
//! - A file whose `version` is above 4 is one pausebake cannot read: refused as pausebake's
//!   own limit ([`unknown_config_version`]), with no claim about what containerd does.
//!
//! Every path is a path *inside the root* ([`Files`] for [`Root`] resolves it there): an
//! import of `/etc/shadow` or `../../x` reads the root's file, never the host's. The merge
//! itself ([`resolve_with`]) is pure over a [`Files`] source, so `configure` can check an edit
//! in memory before writing it. What this does not model: keys other than those that decide
//! the sandbox image and the gRPC socket.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use toml_edit::{DocumentMut, Item, TableLike};

use super::versions::{
    default_sandbox_image, key_part, unknown_config_version, ConfigVersion, Version, NEWEST_CONFIG,
};
use crate::rootfs::Root;

/// containerd's default `--config`.
pub const DEFAULT_MAIN: &str = "/etc/containerd/config.toml";

/// More loaded files than this is treated as a runaway import graph.
pub const MAX_FILES: usize = 100_000;

const CRI_V1_ID: &str = "cri";
const CRI_URI: &str = "io.containerd.grpc.v1.cri";
const IMAGES_URI: &str = "io.containerd.cri.v1.images";
const GRPC_SERVER_URI: &str = "io.containerd.server.v1.grpc";

/// Where the files come from: paths are containerd's strings (absolute, or relative to the
/// daemon's working directory `/`).
pub trait Files {
    /// The file's text; `None` when it does not exist.
    fn read(&self, path: &str) -> Result<Option<String>>;
    /// Whether anything exists at `path` (without following a last symlink, as `Lstat`).
    fn exists(&self, path: &str) -> bool;
    /// The sorted entry names of a directory; empty when it is not one or cannot be listed
    /// (`filepath.Glob` ignores those errors).
    fn list(&self, dir: &str) -> Vec<String>;
}

/// The node's view: every path resolved inside `root`.
impl Files for Root {
    fn read(&self, path: &str) -> Result<Option<String>> {
        let host = self.resolve(in_root(path))?;
        if host.is_dir() {
            bail!("reading {path} ({}): is a directory", host.display());
        }
        match fs::read(&host) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .with_context(|| format!("reading {path} ({}): not UTF-8 text", host.display())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {path} ({})", host.display())),
        }
    }
    fn exists(&self, path: &str) -> bool {
        let p = in_root(path);
        let (dir, name) = split(&p);
        match self.resolve(dir) {
            Ok(host) => fs::symlink_metadata(host.join(name)).is_ok(),
            Err(_) => false,
        }
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let Ok(host) = self.resolve(in_root(dir)) else {
            return Vec::new();
        };
        let Ok(entries) = fs::read_dir(&host) else {
            return Vec::new();
        };
        // Names that are not UTF-8 cannot be written in a TOML import anyway.
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

/// What a merge read of a root (texts, existence checks and directory listings), kept by
/// [`resolve`] so that the plan can merge again over an edit ([`Overlay`]) without reading
/// the root: a [`Files`] of its own, which answers exactly what the root answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Each path read: its text (`None`: absent), or the error reading it gave.
    reads: BTreeMap<String, std::result::Result<Option<String>, String>>,
    exists: BTreeMap<String, bool>,
    lists: BTreeMap<String, Vec<String>>,
}

impl Snapshot {
    /// The text of `path` as read (`None`: it did not exist); an error when it was not read
    /// or could not be.
    pub fn text(&self, path: &str) -> Result<Option<&str>> {
        match self.reads.get(path) {
            Some(Ok(text)) => Ok(text.as_deref()),
            Some(Err(e)) => bail!("{e}"),
            None => bail!("reading {path}: not read when the root was inspected"),
        }
    }
}

impl Files for Snapshot {
    fn read(&self, path: &str) -> Result<Option<String>> {
        Ok(self.text(path)?.map(str::to_string))
    }
    fn exists(&self, path: &str) -> bool {
        self.exists.get(path).copied().unwrap_or(false)
    }
    fn list(&self, dir: &str) -> Vec<String> {
        self.lists.get(dir).cloned().unwrap_or_default()
    }
}

/// [`Files`] of a root that notes every answer in a [`Snapshot`].
struct Recorder<'a> {
    root: &'a dyn Files,
    seen: std::cell::RefCell<Snapshot>,
}

impl Files for Recorder<'_> {
    fn read(&self, path: &str) -> Result<Option<String>> {
        let got = Files::read(self.root, path);
        let kept = match &got {
            Ok(text) => Ok(text.clone()),
            Err(e) => Err(format!("{e:#}")),
        };
        self.seen.borrow_mut().reads.insert(path.to_string(), kept);
        got
    }
    fn exists(&self, path: &str) -> bool {
        let got = Files::exists(self.root, path);
        self.seen.borrow_mut().exists.insert(path.to_string(), got);
        got
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let got = Files::list(self.root, dir);
        self.seen
            .borrow_mut()
            .lists
            .insert(dir.to_string(), got.clone());
        got
    }
}

/// `base` with one file's text replaced: to check an edit before writing it.
pub struct Overlay<'a> {
    pub base: &'a dyn Files,
    pub path: &'a str,
    pub text: &'a str,
}

impl Files for Overlay<'_> {
    fn read(&self, path: &str) -> Result<Option<String>> {
        if clean(&in_root(path)) == clean(&in_root(self.path)) {
            return Ok(Some(self.text.to_string()));
        }
        self.base.read(path)
    }
    fn exists(&self, path: &str) -> bool {
        clean(&in_root(path)) == clean(&in_root(self.path)) || self.base.exists(path)
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let mut names = self.base.list(dir);
        let (d, name) = split(self.path);
        if clean(&in_root(d)) == clean(&in_root(dir)) && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
            names.sort();
        }
        names
    }
}

/// The daemon runs in `/` (systemd's default), so a relative path is relative to the root.
fn in_root(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// One file containerd loads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadedFile {
    /// The path as containerd names it.
    pub path: String,
    /// Its `version` (0 when absent).
    pub version: i64,
    /// The file that imported it (`None` for the main file).
    pub imported_by: Option<String>,
    /// It names the CRI plugin by its short name, `[plugins.cri]`.
    pub cri_short_name: bool,
}

/// Where a sandbox image value comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    pub value: String,
    /// Index into [`EffectiveConfig::files`].
    pub file: usize,
    /// The key as that file writes it.
    pub key: String,
}

/// The result of loading a root's config the way its containerd does.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EffectiveConfig {
    pub containerd: String,
    /// The main config path (inside the root) and why that one.
    pub main: String,
    pub main_why: String,
    /// Every file containerd loads, in load order (empty when the main file does not exist
    /// and containerd is not told to read it).
    pub files: Vec<LoadedFile>,
    /// The `version` of the merged config (last non-zero; 1 on 1.x and 3 on 2.x when no
    /// file sets one).
    pub merged_version: i64,
    /// The file whose `version` is in force, if any set one.
    pub version_file: Option<usize>,
    /// The sandbox image the config sets, and where; `None`: containerd's default.
    pub sandbox: Option<Setting>,
    /// On 1.x: the file whose CRI plugin table is in force (it replaced all earlier ones).
    pub cri_table_file: Option<usize>,
    /// containerd's built-in default for this version.
    pub default: String,
    /// Why containerd would refuse to start with this config, naming the file.
    pub refused: Option<String>,
    /// Sandbox image settings, in any loaded file, that containerd does not read: every one
    /// when the default is in force, else those whose value differs from the one in force.
    pub shadowed: Vec<Setting>,
    /// The gRPC socket the config sets, and where (`[grpc] address`; from 2.3 the
    /// `io.containerd.server.v1.grpc` plugin's `address`); `None`: containerd's default.
    pub address: Option<Setting>,
}

impl EffectiveConfig {
    /// The image name CRI uses: the setting, else the default.
    pub fn image(&self) -> &str {
        self.sandbox
            .as_ref()
            .map_or(self.default.as_str(), |s| s.value.as_str())
    }

    /// The path of file `i`.
    pub fn path(&self, i: usize) -> &str {
        &self.files[i].path
    }

    /// One sentence: the effective image and where it comes from.
    pub fn describe(&self) -> String {
        match &self.sandbox {
            Some(s) => format!(
                "containerd {} reads {} = {:?} from {}",
                self.containerd,
                s.key,
                s.value,
                self.path(s.file)
            ),
            None => {
                let why = match (self.files.is_empty(), self.cri_table_file) {
                    (true, _) => format!("{} does not exist", self.main),
                    (false, Some(f)) if f != 0 => format!(
                        "{} replaces the whole CRI plugin table and sets no sandbox image",
                        self.path(f)
                    ),
                    (false, _) => match self.version_file {
                        Some(f) if f != 0 => format!(
                            "no loaded file sets the sandbox image under the key of config version {} (set by {})",
                            self.merged_version,
                            self.path(f)
                        ),
                        _ => "no loaded file sets the sandbox image".to_string(),
                    },
                };
                format!(
                    "{why}: the default of containerd {}, {}",
                    self.containerd, self.default
                )
            }
        }
    }
}

/// A node of a parsed config: tables, and leaves that remember the file that set them.
#[derive(Debug, Clone)]
enum Node {
    Table(BTreeMap<String, Node>),
    Leaf {
        /// The string, if the value is one.
        text: Option<String>,
        file: usize,
        /// The dotted key the file wrote it under.
        key: String,
    },
}

fn node(item: &Item, file: usize, key: &str) -> Node {
    let table = match item {
        Item::Table(t) => Some(t as &dyn TableLike),
        Item::Value(toml_edit::Value::InlineTable(t)) => Some(t as &dyn TableLike),
        _ => None,
    };
    match table {
        Some(t) => Node::Table(
            t.iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        node(v, file, &format!("{key}.{}", key_part(k))),
                    )
                })
                .collect(),
        ),
        None => Node::Leaf {
            text: item.as_str().map(str::to_string),
            file,
            key: key.to_string(),
        },
    }
}

/// What one file contributes.
struct Parsed {
    version: i64,
    imports: Vec<String>,
    plugins: BTreeMap<String, Node>,
    /// The top-level `[grpc] address`, when a non-empty string.
    grpc_address: Option<Node>,
}

fn parse(text: &str, path: &str, file: usize) -> Result<Parsed> {
    let doc: DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {path} as TOML"))?;
    let version = match doc.get("version") {
        None => 0,
        Some(v) => v
            .as_integer()
            .ok_or_else(|| anyhow!("reading {path}: version is not an integer"))?,
    };
    let imports = match doc.get("imports") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_string)).collect())
            .ok_or_else(|| anyhow!("reading {path}: imports is not an array of strings"))?,
    };
    let plugins = match doc.get("plugins") {
        None => BTreeMap::new(),
        Some(item) => match node(item, file, "plugins") {
            Node::Table(t) => t,
            Node::Leaf { .. } => bail!("reading {path}: plugins is not a table"),
        },
    };
    let grpc_address = doc
        .get("grpc")
        .and_then(|g| g.get("address"))
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .map(|a| Node::Leaf {
            text: Some(a.to_string()),
            file,
            key: "grpc.address".into(),
        });
    Ok(Parsed {
        version,
        imports,
        plugins,
        grpc_address,
    })
}

/// containerd 2.x's `v1MigratePluginName`: short plugin names of a version 1 file.
fn v1_plugin_name(name: &str) -> String {
    const CORE: &[(&str, &str)] = &[
        ("cri", CRI_URI),
        ("cgroups", "io.containerd.monitor.v1.cgroups"),
        ("linux", "io.containerd.runtime.v1.linux"),
        ("scheduler", "io.containerd.gc.v1.scheduler"),
        ("bolt", "io.containerd.metadata.v1.bolt"),
        ("task", "io.containerd.runtime.v2.task"),
        ("opt", "io.containerd.internal.v1.opt"),
        ("restart", "io.containerd.internal.v1.restart"),
        ("tracing", "io.containerd.internal.v1.tracing"),
        ("otlp", "io.containerd.tracing.processor.v1.otlp"),
        ("aufs", "io.containerd.snapshotter.v1.aufs"),
        ("btrfs", "io.containerd.snapshotter.v1.btrfs"),
        ("devmapper", "io.containerd.snapshotter.v1.devmapper"),
        ("native", "io.containerd.snapshotter.v1.native"),
        ("overlayfs", "io.containerd.snapshotter.v1.overlayfs"),
        ("zfs", "io.containerd.snapshotter.v1.zfs"),
    ];
    if name.contains('.') {
        return name.to_string();
    }
    if let Some((_, full)) = CORE.iter().find(|(short, _)| *short == name) {
        return full.to_string();
    }
    if name.ends_with("-service") {
        format!("io.containerd.service.v1.{name}")
    } else if name == "windows" || name == "windows-lcow" {
        format!("io.containerd.snapshotter.v1.{name}")
    } else {
        format!("io.containerd.grpc.v1.{name}")
    }
}

/// 2.x: a later table merges into an earlier one; anything else replaces.
fn deep_merge(dst: &mut BTreeMap<String, Node>, src: BTreeMap<String, Node>) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(Node::Table(d)), Node::Table(s)) => deep_merge(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

/// Puts `value` at `path` in a plugin tree, creating the tables on the way (a non-table in
/// the way is left alone: containerd's own migration would fail on it).
fn set_path(plugins: &mut BTreeMap<String, Node>, path: &[&str], value: Node) {
    let (last, tables) = path.split_last().expect("a non-empty key path");
    let mut t = plugins;
    for name in tables {
        let entry = t
            .entry(name.to_string())
            .or_insert_with(|| Node::Table(BTreeMap::new()));
        match entry {
            Node::Table(next) => t = next,
            Node::Leaf { .. } => return,
        }
    }
    t.insert(last.to_string(), value);
}

/// Every string leaf at `tables..key` of each file, for the shadowed-setting check.
fn leaf<'a>(plugins: &'a BTreeMap<String, Node>, path: &[&str]) -> Option<&'a Node> {
    let (first, rest) = path.split_first()?;
    let mut n = plugins.get(*first)?;
    for p in rest {
        match n {
            Node::Table(t) => n = t.get(*p)?,
            Node::Leaf { .. } => return None,
        }
    }
    Some(n)
}

/// How a containerd version treats relative globs.
fn globs_from_cwd(v: Version) -> bool {
    matches!((v.major, v.minor), (1, 6) if v.patch < 29)
        || matches!((v.major, v.minor), (1, 7) if v.patch < 16)
        || (v.major == 1 && v.minor < 6)
}

/// Whether a 1.x release refuses a merged `version` above 2.
fn refuses_v3(v: Version) -> bool {
    v.major == 1
        && ((v.minor == 6 && v.patch >= 32) || (v.minor == 7 && v.patch >= 17) || v.minor > 7)
}

/// The main config file and why it is that one.
#[derive(Debug, Clone)]
pub struct Main {
    pub path: String,
    pub why: String,
    /// containerd is told this path (`--config`): a missing file stops it from starting.
    pub explicit: bool,
}

/// Which release's way of loading files a [`Loader`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// 1.6, 1.7: each plugin table replaced whole.
    V1x,
    /// 2.0 to 2.2: deep merge, then the merged config migrated once.
    V2x,
    /// 2.3 and newer: each file migrated on its own, then deep-merged.
    V23,
}

impl Rules {
    fn of(v: Version) -> Rules {
        match (v.major, v.minor) {
            (0..=1, _) => Rules::V1x,
            (2, 0..=2) => Rules::V2x,
            _ => Rules::V23,
        }
    }

    /// The accumulated `version` before any file: that of the release's built-in config.
    fn start_version(self) -> i64 {
        match self {
            Rules::V1x => 1,
            Rules::V2x => 3,
            Rules::V23 => NEWEST_CONFIG.number(),
        }
    }
}

/// Loads `main` and its imports as containerd `v` does, from `files`.
pub fn resolve_with(files: &dyn Files, main: &Main, v: Version) -> Result<EffectiveConfig> {
    let rules = Rules::of(v);
    let mut l = Loader {
        files,
        v,
        rules,
        out: EffectiveConfig {
            containerd: v.to_string(),
            main: main.path.clone(),
            main_why: main.why.clone(),
            files: Vec::new(),
            merged_version: rules.start_version(),
            version_file: None,
            sandbox: None,
            cri_table_file: None,
            default: default_sandbox_image(v)?.to_string(),
            refused: None,
            shadowed: Vec::new(),
            address: None,
        },
        root_version: None,
        plugins: BTreeMap::new(),
        plugin_owner: BTreeMap::new(),
        set_anywhere: Vec::new(),
        queued: HashSet::from([main.path.clone()]),
        expanded: HashSet::new(),
        pending: VecDeque::from([(main.path.clone(), None)]),
    };
    let mut loaded: BTreeSet<String> = BTreeSet::new();
    while let Some((path, parent)) = l.pending.pop_front() {
        if loaded.contains(&path) {
            continue;
        }
        if l.out.files.len() >= MAX_FILES {
            bail!(
                "loading {}: more than {MAX_FILES} config files through imports",
                main.path
            );
        }
        // `None`: containerd stops here (no main file, or a refusal)
        let Some(imports) = l.load(&path, parent, main)? else {
            return Ok(l.out);
        };
        l.queue_imports(&path, &imports)?;
        loaded.insert(path);
    }
    l.finish()
}

/// The merge in progress: what [`resolve_with`] has loaded so far.
struct Loader<'a> {
    files: &'a dyn Files,
    v: Version,
    rules: Rules,
    out: EffectiveConfig,
    /// 2.3's "root config version": the first non-zero `version` loaded, and its file.
    root_version: Option<(i64, String)>,
    plugins: BTreeMap<String, Node>,
    /// The file that last set each plugin table.
    plugin_owner: BTreeMap<String, usize>,
    /// Every sandbox value any file sets, to tell which ones the merge loses.
    set_anywhere: Vec<Setting>,
    queued: HashSet<String>,
    expanded: HashSet<String>,
    /// Files to load, each with the file that imports it.
    pending: VecDeque<(String, Option<String>)>,
}

impl Loader<'_> {
    /// The text of `path`; `None` when containerd would stop there: a main file that does not
    /// exist (then `out` has no files) or a refusal (then `out.refused` says why).
    fn read(&mut self, path: &str, parent: &Option<String>, main: &Main) -> Option<String> {
        let v = self.v;
        let refused = match self.files.read(path) {
            Ok(Some(text)) => return Some(text),
            Ok(None) if parent.is_none() && !main.explicit => return None,
            Ok(None) => match parent {
                Some(p) => format!(
                    "{p} imports {path}, which does not exist: containerd {v} refuses to start"
                ),
                None => format!("{path} does not exist but containerd is started with --config {path}: containerd {v} refuses to start"),
            },
            Err(e) => format!("{e:#}: containerd {v} refuses to start"),
        };
        self.out.refused = Some(refused);
        None
    }

    /// Loads one file into the merge and returns its `imports`; `None` when containerd
    /// stops there ([`Loader::read`]).
    fn load(
        &mut self,
        path: &str,
        parent: Option<String>,
        main: &Main,
    ) -> Result<Option<Vec<String>>> {
        let Some(text) = self.read(path, &parent, main) else {
            return Ok(None);
        };
        let index = self.out.files.len();
        let mut parsed = match parse(&text, path, index) {
            Ok(p) => p,
            Err(e) => {
                self.out.refused = Some(format!("{e:#}: containerd {} refuses to start", self.v));
                return Ok(None);
            }
        };
        self.out.files.push(LoadedFile {
            path: path.to_string(),
            version: parsed.version,
            imported_by: parent,
            cri_short_name: parsed.plugins.contains_key(CRI_V1_ID),
        });
        if parsed.version > NEWEST_CONFIG.number() {
            self.out.refused = Some(unknown_config_version(parsed.version, path));
            return Ok(None);
        }
        if self.rules == Rules::V23 && !self.check_root_version(path, parsed.version) {
            return Ok(None);
        }
        if self.rules == Rules::V2x && !self.check_migration_target(path, parsed.version) {
            return Ok(None);
        }
        if parsed.version != 0 {
            self.out.version_file = Some(index);
        }
        self.record_settings(&parsed.plugins, index);
        let migrated = match self.rules {
            Rules::V1x => true,
            Rules::V2x => parsed.version > 1 || self.migrate_names(path, &mut parsed),
            Rules::V23 => self.migrate_file(path, &mut parsed),
        };
        if !migrated {
            return Ok(None);
        }
        if parsed.version != 0 && self.rules != Rules::V23 {
            self.out.merged_version = parsed.version;
        }
        if let Some(Node::Leaf {
            text: Some(value),
            file,
            key,
        }) = parsed.grpc_address.take()
        {
            // 1.x to 2.2 read `[grpc]` itself: a later non-empty address wins
            self.out.address = Some(Setting { value, file, key });
        }
        for k in parsed.plugins.keys() {
            self.plugin_owner.insert(k.clone(), index);
        }
        if self.rules == Rules::V1x {
            self.plugins.extend(parsed.plugins);
        } else {
            deep_merge(&mut self.plugins, parsed.plugins);
        }
        Ok(Some(parsed.imports))
    }

    /// 2.3: the first non-zero `version` loaded is the root config's; a later file may not
    /// have a higher one (`LoadConfigWithPlugins`). `false` (refused) when it has.
    fn check_root_version(&mut self, path: &str, version: i64) -> bool {
        match &self.root_version {
            None if version != 0 => self.root_version = Some((version, path.to_string())),
            Some((root, root_path)) if version > *root => {
                self.out.refused = Some(format!(
                    "{path} says version = {version}, higher than version = {root} of \
                     {root_path}, the first file loaded that sets one: containerd {} refuses \
                     a drop-in of a higher version (\"drop-in config version {version} higher \
                     than root config version {root}\")",
                    self.v
                ));
                return false;
            }
            _ => {}
        }
        true
    }

    /// 2.0 to 2.2: a version 0/1 file is migrated to the accumulated version one step at a
    /// time through a table of three steps (`MigrateConfigTo` from `LoadConfig`), so when a
    /// file loaded before it (in load order) made the accumulated version 4 or more, the
    /// fourth step indexes past the table and containerd panics (`index out of range [3]
    /// with length 3`). `false` (refused) then.
    fn check_migration_target(&mut self, path: &str, version: i64) -> bool {
        let target = self.out.merged_version;
        if !(0..=1).contains(&version) || target <= 3 {
            return true;
        }
        let raised_by = match self.out.version_file {
            Some(f) => self.out.files[f].path.clone(),
            None => self.out.main.clone(),
        };
        self.out.refused = Some(format!(
            "{path} (a version {version} file) loads after {raised_by} made the config version \
             {target}: containerd {} panics migrating it to version {target} (\"index out of \
             range [3] with length 3\") and does not start; give {path} version = 2 or 3, or \
             {raised_by} a version of at most 3",
            self.v
        ));
        false
    }

    /// 2.3: a file below version 4 migrated on its own, before the merge, as
    /// `LoadConfigWithPlugins` does it: short plugin names renamed (version 0/1); CRI's
    /// `sandbox_image` copied over the file's own `pinned_images.sandbox` (the images
    /// plugin's migration runs at every step below 4); a `[grpc] address` moved into the
    /// file's `io.containerd.server.v1.grpc` table unless it has one (`serviceMigrate`).
    /// A version 4 file's `[grpc]` is not read. `false` (refused) when a plugin is then
    /// named twice.
    fn migrate_file(&mut self, path: &str, parsed: &mut Parsed) -> bool {
        let address = parsed.grpc_address.take();
        if parsed.version >= NEWEST_CONFIG.number() {
            return true;
        }
        if parsed.version <= 1 && !self.migrate_names(path, parsed) {
            return false;
        }
        if let Some(sandbox) = leaf(&parsed.plugins, &[CRI_URI, "sandbox_image"]).cloned() {
            set_path(
                &mut parsed.plugins,
                &[IMAGES_URI, "pinned_images", "sandbox"],
                sandbox,
            );
        }
        if let Some(address) = address {
            if !parsed.plugins.contains_key(GRPC_SERVER_URI) {
                set_path(&mut parsed.plugins, &[GRPC_SERVER_URI, "address"], address);
            }
        }
        true
    }

    /// 2.x's `MigrateConfigTo(accumulated version)` of a version 0/1 file: short plugin names
    /// renamed, and the file takes the accumulated version. `false` (refused) when one plugin
    /// is then named twice.
    fn migrate_names(&mut self, path: &str, parsed: &mut Parsed) -> bool {
        let old = std::mem::take(&mut parsed.plugins);
        for (k, n) in old {
            let full = v1_plugin_name(&k);
            if parsed.plugins.insert(full.clone(), n).is_some() {
                // Go fills a map in random order: either table may win
                self.out.refused = Some(format!(
                    "{path} (a version {} file) names plugin {full:?} twice, once by its \
                     short name: containerd {} keeps one of the two at random",
                    parsed.version, self.v
                ));
                return false;
            }
        }
        parsed.version = self.out.merged_version;
        true
    }

    /// Notes every sandbox image value file `index` sets, under any version's key.
    fn record_settings(&mut self, plugins: &BTreeMap<String, Node>, index: usize) {
        for key in [
            &[CRI_V1_ID, "sandbox_image"][..],
            &[CRI_URI, "sandbox_image"],
            &[IMAGES_URI, "pinned_images", "sandbox"],
        ] {
            if let Some(Node::Leaf {
                text: Some(value),
                key,
                ..
            }) = leaf(plugins, key)
            {
                self.set_anywhere.push(Setting {
                    value: value.clone(),
                    file: index,
                    key: key.clone(),
                });
            }
        }
    }

    /// Queues the files `imports` of `path` name, breadth-first.
    fn queue_imports(&mut self, path: &str, imports: &[String]) -> Result<()> {
        for import in imports {
            let (pattern, is_glob) = import_pattern(path, import, self.v);
            // A pattern seen before queued all its matches already, and a path queued
            // before loads at its first place in the queue: containerd queues them again
            // and skips them when loaded, which ends the same way. Skipping them here keeps
            // a glob of 10,000 files that each import the same glob linear.
            if !self.expanded.insert(pattern.clone()) {
                continue;
            }
            let paths = if is_glob {
                glob(self.files, &pattern)
                    .with_context(|| format!("resolving import {import:?} of {path}"))?
            } else {
                vec![pattern]
            };
            for p in paths {
                if self.queued.insert(p.clone()) {
                    self.pending.push_back((p, Some(path.to_string())));
                }
            }
        }
        Ok(())
    }

    /// ` (version = N in FILE)` when a file other than the main one set the merged version.
    fn version_from(&self) -> String {
        match self.out.version_file {
            Some(f) if f != 0 => format!(
                " (version = {} in {})",
                self.out.merged_version, self.out.files[f].path
            ),
            _ => String::new(),
        }
    }

    /// The merged config's refusals, its sandbox image and the settings it loses.
    fn finish(mut self) -> Result<EffectiveConfig> {
        let sandbox_path = match self.rules {
            Rules::V1x => self.finish_1x(),
            Rules::V2x => self.finish_2x(),
            Rules::V23 => self.finish_23(),
        };
        let v = self.v;
        let out = &mut self.out;
        match leaf(&self.plugins, sandbox_path) {
            Some(Node::Leaf {
                text: Some(value),
                file,
                key,
            }) => {
                out.sandbox = Some(Setting {
                    value: value.clone(),
                    file: *file,
                    key: key.clone(),
                })
            }
            Some(Node::Leaf { file, key, .. }) => {
                out.refused = Some(format!(
                    "{key} in {} is not a string: containerd {v} refuses to start",
                    out.files[*file].path
                ));
            }
            _ => {}
        }
        let image = out.image().to_string();
        let from_default = out.sandbox.is_none();
        out.shadowed = std::mem::take(&mut self.set_anywhere)
            .into_iter()
            .filter(|s| from_default || s.value != image)
            .collect();
        Ok(self.out)
    }

    /// 2.x: a merged version above 3 is refused; below 3, CRI's v2 -> v3 migration copies
    /// `sandbox_image` over `pinned_images.sandbox`. The path of the key CRI reads.
    fn finish_2x(&mut self) -> &'static [&'static str] {
        let version = self.out.merged_version;
        if version > 3 {
            self.out.refused = Some(format!(
                "the merged config version is {version}{}: containerd {} accepts at most 3 and refuses to start",
                self.version_from(),
                self.v
            ));
        } else if version < 3 {
            if let Some(sandbox) = leaf(&self.plugins, &[CRI_URI, "sandbox_image"]).cloned() {
                set_path(
                    &mut self.plugins,
                    &[IMAGES_URI, "pinned_images", "sandbox"],
                    sandbox,
                );
            }
        }
        &[IMAGES_URI, "pinned_images", "sandbox"]
    }

    /// 2.3: every file was migrated before its merge, so the merged tree is what CRI and the
    /// gRPC server read. The path of the key CRI reads; notes the socket.
    fn finish_23(&mut self) -> &'static [&'static str] {
        if let Some(Node::Leaf {
            text: Some(value),
            file,
            key,
        }) = leaf(&self.plugins, &[GRPC_SERVER_URI, "address"])
        {
            self.out.address = (!value.is_empty()).then(|| Setting {
                value: value.clone(),
                file: *file,
                key: key.clone(),
            });
        }
        &[IMAGES_URI, "pinned_images", "sandbox"]
    }

    /// 1.x: 1.6.32+/1.7.17+ refuse a merged version above 2; a version 2+ config refuses
    /// plugin keys that are not URIs. The path of the key CRI reads.
    fn finish_1x(&mut self) -> &'static [&'static str] {
        let (v, version) = (self.v, self.out.merged_version);
        if version > 2 && refuses_v3(v) {
            self.out.refused = Some(format!(
                "containerd {v} refuses a version = {version} config and will not start{}",
                self.version_from()
            ));
        } else if version >= 2 {
            let bad = self.plugins.keys().find(|k| {
                k.split('.').count() < 4 || (v.minor >= 7 && !k.starts_with("io.containerd."))
            });
            if let Some(k) = bad {
                self.out.refused = Some(format!(
                    "{} has plugin key {k:?}, not a URI: containerd {v} refuses a version {version} config with it (\"invalid plugin key URI\")",
                    self.out.files[self.plugin_owner[k]].path
                ));
            }
        }
        let cri = if version <= 1 { CRI_V1_ID } else { CRI_URI };
        self.out.cri_table_file = self.plugin_owner.get(cri).copied();
        if version <= 1 {
            &[CRI_V1_ID, "sandbox_image"]
        } else {
            &[CRI_URI, "sandbox_image"]
        }
    }
}

/// What one `imports` entry means to containerd `v` importing from `parent`: the path or
/// glob pattern it resolves to, and whether it is a glob.
fn import_pattern(parent: &str, import: &str, v: Version) -> (String, bool) {
    if globs_from_cwd(v) && import.contains('*') {
        // 1.6 < 1.6.29, 1.7 < 1.7.16: the raw string goes to filepath.Glob
        return (import.to_string(), true);
    }
    let mut path = clean(import);
    if !path.starts_with('/') {
        path = join(&dir(parent), &path);
    }
    let is_glob = path.contains('*');
    (path, is_glob)
}

/// The main config: `--config` if given, else the `--config`/`-c` of the root's containerd
/// systemd unit (its `ExecStart=` after drop-ins), else containerd's default path.
pub fn find_main(root: &Root, given: Option<&Path>) -> Result<Main> {
    if let Some(p) = given {
        let s = p
            .to_str()
            .with_context(|| format!("reading --config {}: not UTF-8", p.display()))?;
        return Ok(Main {
            path: clean(&in_root(s)),
            why: "--config".into(),
            explicit: true,
        });
    }
    if let Some((path, from)) = unit_config(root)? {
        return Ok(Main {
            path: clean(&in_root(&path)),
            why: format!("--config in the ExecStart= of {from}"),
            explicit: true,
        });
    }
    Ok(Main {
        path: DEFAULT_MAIN.into(),
        why: "containerd's default (no --config given, none in a containerd.service of the root)"
            .into(),
        explicit: false,
    })
}

/// Unit directories in systemd's order of precedence.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The `--config` of the containerd.service that systemd would run, and the file saying so.
fn unit_config(root: &Root) -> Result<Option<(String, String)>> {
    let mut parts: Vec<(String, String)> = Vec::new();
    if let Some(unit) = UNIT_DIRS
        .iter()
        .map(|d| format!("{d}/containerd.service"))
        .find(|p| root.resolve(p).map(|h| h.is_file()).unwrap_or(false))
    {
        parts.push((unit.clone(), read_text(root, &unit)?));
    }
    if parts.is_empty() {
        return Ok(None);
    }
    // drop-ins: sorted by name over all directories, an earlier directory masking a later one
    let mut dropins: BTreeMap<String, String> = BTreeMap::new();
    for d in UNIT_DIRS.iter().rev() {
        let dir = format!("{d}/containerd.service.d");
        for name in root.read_dir(&dir)? {
            let name = name.to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                dropins.insert(name.clone(), format!("{dir}/{name}"));
            }
        }
    }
    for path in dropins.into_values() {
        parts.push((path.clone(), read_text(root, &path)?));
    }
    let mut exec: Option<(String, String)> = None;
    for (path, text) in &parts {
        for line in unit_lines(text) {
            if let Some(cmd) = line.strip_prefix("ExecStart=") {
                let cmd = cmd.trim();
                exec = (!cmd.is_empty()).then(|| (cmd.to_string(), path.clone()));
            }
        }
    }
    let Some((cmd, from)) = exec else {
        return Ok(None);
    };
    Ok(config_arg(&cmd).map(|c| (c, from)))
}

fn read_text(root: &Root, path: &str) -> Result<String> {
    root.read_to_string(path)?
        .with_context(|| format!("reading {path}: it disappeared"))
}

/// Unit file lines with `\` continuations joined and comments dropped.
fn unit_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.starts_with('#') || t.starts_with(';')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The value of `--config`/`-c` in a containerd command line written as one line (a unit
/// file's `ExecStart`).
fn config_arg(cmd: &str) -> Option<String> {
    config_flag(
        cmd.split_whitespace()
            .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string()),
    )
}

/// The value of the last `--config`/`-c` among a containerd command line's arguments (Go's
/// flag syntax: one or two dashes, the value next or after `=`).
pub fn config_flag(args: impl IntoIterator<Item = String>) -> Option<String> {
    let words: Vec<String> = args.into_iter().collect();
    let mut found = None;
    for (i, w) in words.iter().enumerate() {
        for flag in ["--config", "-config", "-c", "--c"] {
            if w == flag {
                found = words.get(i + 1).cloned();
            } else if let Some(v) = w.strip_prefix(&format!("{flag}=")) {
                found = Some(v.to_string());
            }
        }
    }
    found
}

/// The effective config in the output of `containerd config dump` (printed from file `path`
/// by containerd `v`): one merged file; its `imports` only list what was loaded.
pub fn of_dump(text: &str, path: &str, v: Version) -> Result<EffectiveConfig> {
    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("parsing the config dump of {path}"))?;
    doc.remove("imports");
    let mut files = Snapshot::default();
    files
        .reads
        .insert(path.to_string(), Ok(Some(doc.to_string())));
    let main = Main {
        path: path.to_string(),
        why: "containerd config dump".into(),
        explicit: true,
    };
    resolve_with(&files, &main, v)
}

/// Loads the root's effective config for containerd `v`, with everything it read of the root
/// (the one read of the config files, `inspect`'s, from which the plan works).
/// The root may be any [`Files`]: a [`Root`], or a root with a file its owner generates at
/// boot laid over it ([`Overlay`]), so the snapshot holds what containerd will load; `also`
/// are read into the snapshot too (a drop-in the plan may create).
pub fn resolve(
    root: &dyn Files,
    main: &Main,
    v: Version,
    also: &[&str],
) -> Result<(EffectiveConfig, Snapshot)> {
    let rec = Recorder {
        root,
        seen: Default::default(),
    };
    let eff = resolve_with(&rec, main, v)?;
    for path in also {
        // an unreadable file is kept as its error, as any other read
        let _ = rec.read(path);
    }
    Ok((eff, rec.seen.into_inner()))
}

/// Where `configure` writes the sandbox image so that it takes effect, and under which key:
/// on 1.x the file whose CRI table is in force (a new drop-in would replace that table
/// whole); on 2.x the file whose value is in force (deep merge: no later file sets it), else
/// the main file. Never a new drop-in: editing the deciding file keeps the node's layering
/// as it is and works on every version the same way.
pub fn target(eff: &EffectiveConfig, v: Version) -> Result<(String, Option<ConfigVersion>)> {
    if let Some(why) = &eff.refused {
        bail!("{why}; fix that file first (nothing was written)");
    }
    if eff.files.is_empty() {
        // no config file: a new main file at the release's native version
        return Ok((eff.main.clone(), None));
    }
    let key = |n: i64| match n {
        ..=1 => ConfigVersion::V1,
        2 => ConfigVersion::V2,
        3 => ConfigVersion::V3,
        _ => ConfigVersion::V4,
    };
    if v.major < 2 {
        let file = eff.cri_table_file.unwrap_or(0);
        let k = key(eff.merged_version.min(2));
        return Ok((eff.path(file).to_string(), Some(k)));
    }
    let (file, k) = match &eff.sandbox {
        // the key that file already uses: sandbox_image (migrated) or pinned_images.sandbox
        Some(s) if s.key.ends_with(".sandbox_image") => (s.file, key(2)),
        // the key of version 3 and 4 alike; named by the file's own version
        Some(s) => (s.file, key(eff.files[s.file].version.max(3))),
        // 2.3 migrates each file on its own: the key of the main file's own version
        None if Rules::of(v) == Rules::V23 => match eff.files[0].version {
            2 => (0, key(2)),
            n => (0, key(n.max(3))),
        },
        None => (0, key(eff.merged_version)),
    };
    // 2.x renames the short plugin names of a version 0/1 file: write the spelling the file
    // already uses, or one plugin would be named twice
    let short = match &eff.sandbox {
        Some(s) => s.key.starts_with("plugins.cri."),
        None => eff.files[file].cri_short_name,
    };
    let k = if k == ConfigVersion::V2 && eff.files[file].version <= 1 && short {
        ConfigVersion::V1
    } else {
        k
    };
    Ok((eff.path(file).to_string(), Some(k)))
}

// --- Go's path/filepath, on strings ----------------------------------------------------------

/// `filepath.Clean`.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let s = out.join("/");
    match (rooted, s.is_empty()) {
        (true, _) => format!("/{s}"),
        (false, true) => ".".into(),
        (false, false) => s,
    }
}

/// `filepath.Join` of two elements.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => String::new(),
        (true, false) => clean(b),
        (false, true) => clean(a),
        (false, false) => clean(&format!("{a}/{b}")),
    }
}

/// `filepath.Split`: directory with its trailing slash, and the file name.
fn split(p: &str) -> (&str, &str) {
    match p.rfind('/') {
        Some(i) => (&p[..=i], &p[i + 1..]),
        None => ("", p),
    }
}

/// `filepath.Dir`.
fn dir(p: &str) -> String {
    clean(split(p).0)
}

fn has_meta(p: &str) -> bool {
    p.contains(['*', '?', '[', '\\'])
}

/// `filepath.Glob`: matches in sorted order per directory; I/O errors match nothing.
pub fn glob(files: &dyn Files, pattern: &str) -> Result<Vec<String>> {
    glob_depth(files, pattern, 0)
}

fn glob_depth(files: &dyn Files, pattern: &str, depth: usize) -> Result<Vec<String>> {
    if depth > 10_000 {
        bail!("pattern {pattern:?} is too deep");
    }
    check_pattern(pattern)?;
    if !has_meta(pattern) {
        return Ok(if files.exists(pattern) {
            vec![pattern.to_string()]
        } else {
            Vec::new()
        });
    }
    let (d, file) = split(pattern);
    let d = match d {
        "" => ".".to_string(),
        "/" => "/".to_string(),
        d => d[..d.len() - 1].to_string(),
    };
    let mut out = Vec::new();
    if !has_meta(&d) {
        glob_dir(files, &d, file, &mut out)?;
        return Ok(out);
    }
    if d == pattern {
        bail!("syntax error in pattern {pattern:?}");
    }
    for m in glob_depth(files, &d, depth + 1)? {
        glob_dir(files, &m, file, &mut out)?;
    }
    Ok(out)
}

fn glob_dir(files: &dyn Files, d: &str, pattern: &str, out: &mut Vec<String>) -> Result<()> {
    for name in files.list(d) {
        if matches(pattern, &name)? {
            out.push(join(d, &name));
        }
    }
    Ok(())
}

/// Checks the syntax of a pattern as `filepath.Match(pattern, "")` does.
fn check_pattern(pattern: &str) -> Result<()> {
    let p: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    bail!("syntax error in pattern {pattern:?}");
                }
                i += 2;
            }
            '[' => {
                i = class_end(&p, i)
                    .with_context(|| format!("syntax error in pattern {pattern:?}"))?
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index after the `]` of a class starting at `p[start] == '['`.
fn class_end(p: &[char], start: usize) -> Result<usize> {
    let mut i = start + 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut first = true;
    loop {
        let c = *p.get(i).context("unterminated class")?;
        if c == ']' && !first {
            return Ok(i + 1);
        }
        first = false;
        let (_, next) = class_char(p, i)?;
        i = next;
        if p.get(i) == Some(&'-') {
            let (_, next) = class_char(p, i + 1)?;
            i = next;
        }
    }
}

fn class_char(p: &[char], i: usize) -> Result<(char, usize)> {
    match p.get(i) {
        None | Some('-') | Some(']') => bail!("bad class"),
        Some('\\') => p.get(i + 1).map(|c| (*c, i + 2)).context("bad escape"),
        Some(c) => Ok((*c, i + 1)),
    }
}

/// `filepath.Match` of one path component (`*` does not cross `/`).
fn matches(pattern: &str, name: &str) -> Result<bool> {
    check_pattern(pattern)?;
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    Ok(match_from(&p, &n))
}

fn match_from(p: &[char], n: &[char]) -> bool {
    let Some(&c) = p.first() else {
        return n.is_empty();
    };
    match c {
        '*' => (0..=n.len())
            .take_while(|&i| i == 0 || n[i - 1] != '/')
            .any(|i| match_from(&p[1..], &n[i..])),
        '?' => n.first().is_some_and(|&x| x != '/') && match_from(&p[1..], &n[1..]),
        '\\' => n.first() == p.get(1) && match_from(&p[2..], &n[1..]),
        '[' => {
            let end = class_end(p, 0).expect("checked by check_pattern");
            let Some(&x) = n.first() else {
                return false;
            };
            let mut i = 1;
            let negate = p[1] == '^';
            if negate {
                i += 1;
            }
            let mut hit = false;
            while i < end - 1 {
                let (lo, next) = class_char(p, i).expect("checked");
                i = next;
                let mut hi = lo;
                if p[i] == '-' {
                    let (h, next) = class_char(p, i + 1).expect("checked");
                    hi = h;
                    i = next;
                }
                hit |= lo <= x && x <= hi;
            }
            x != '/' && hit != negate && match_from(&p[end..], &n[1..])
        }
        c => n.first() == Some(&c) && match_from(&p[1..], &n[1..]),
    }
}

/// The effective config of a root holding only `text` as its default main config (`None`:
/// no file), for the tests of the modules that read an [`EffectiveConfig`].
#[cfg(test)]
pub fn of_main_text(text: Option<&str>, v: Version) -> EffectiveConfig {
    of_texts(&[(DEFAULT_MAIN, text)], v)
}

/// The effective config of a root holding these files (`None`: absent), the default main
/// config among them; imports must name files, not globs.
#[cfg(test)]
pub fn of_texts(texts: &[(&str, Option<&str>)], v: Version) -> EffectiveConfig {
    let mut files = Snapshot::default();
    for (path, text) in texts {
        files
            .reads
            .insert(path.to_string(), Ok(text.map(str::to_string)));
    }
    let main = Main {
        path: DEFAULT_MAIN.into(),
        why: "test".into(),
        explicit: false,
    };
    resolve_with(&files, &main, v).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory tree of files: path -> text; directories are implied.
    struct Mem(BTreeMap<String, String>);

    impl Files for Mem {
        fn read(&self, path: &str) -> Result<Option<String>> {
            Ok(self.0.get(&clean(&in_root(path))).cloned())
        }
        fn exists(&self, path: &str) -> bool {
            let p = clean(&in_root(path));
            self.0
                .keys()
                .any(|k| k == &p || k.starts_with(&format!("{p}/")))
        }
        fn list(&self, d: &str) -> Vec<String> {
            let d = clean(&in_root(d));
            let prefix = if d == "/" { d.clone() } else { format!("{d}/") };
            let names: BTreeSet<String> = self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap_or_default().to_string())
                .collect();
            names.into_iter().collect()
        }
    }

    fn mem(files: &[(&str, &str)]) -> Mem {
        Mem(files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect())
    }

    fn main() -> Main {
        Main {
            path: DEFAULT_MAIN.into(),
            why: "test".into(),
            explicit: false,
        }
    }

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    const MAIN_V2: &str = "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n\
        [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"example.com/pause:1\"\n";
    const NVIDIA: &str = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n  runtime_type = \"io.containerd.runc.v2\"\n";

    #[test]
    fn globs_match_one_component() {
        assert!(matches("*.toml", "10-cri.toml").unwrap());
        assert!(matches("??-*.toml", "10-cri.toml").unwrap());
        assert!(!matches("*.toml", "10-cri.toml.bak").unwrap());
        assert!(matches("exact.toml", "exact.toml").unwrap());
        assert!(!matches("?", "").unwrap());
    }

    #[test]
    fn a_1x_drop_in_replaces_the_cri_table() {
        let files = mem(&[
            ("/etc/containerd/config.toml", MAIN_V2),
            ("/etc/containerd/conf.d/99-nvidia.toml", NVIDIA),
        ]);
        let eff = resolve_with(&files, &main(), v("1.7.24")).unwrap();
        assert_eq!(eff.image(), "registry.k8s.io/pause:3.8");
        assert_eq!(eff.cri_table_file, Some(1));
        assert_eq!(eff.shadowed.len(), 1);
        assert!(
            eff.describe().contains("99-nvidia.toml replaces"),
            "{}",
            eff.describe()
        );
        let (file, key) = target(&eff, v("1.7.24")).unwrap();
        assert_eq!(file, "/etc/containerd/conf.d/99-nvidia.toml");
        assert_eq!(key, Some(ConfigVersion::V2));
        // 2.x deep-merges: the main file's value stays (migrated from version 2)
        let eff = resolve_with(&files, &main(), v("2.1.9")).unwrap();
        assert_eq!(eff.image(), "example.com/pause:1");
        assert_eq!(eff.sandbox.unwrap().file, 0);
    }

    #[test]
    fn a_v3_drop_in_under_a_v2_main_drops_sandbox_image_on_2x() {
        let files = mem(&[
            ("/etc/containerd/config.toml", MAIN_V2),
            ("/etc/containerd/conf.d/a.toml", "version = 3\n"),
        ]);
        let eff = resolve_with(&files, &main(), v("2.1.9")).unwrap();
        assert_eq!(eff.merged_version, 3);
        assert_eq!(eff.image(), "registry.k8s.io/pause:3.10");
        // and 1.7.24 refuses it, naming the file
        let eff = resolve_with(&files, &main(), v("1.7.24")).unwrap();
        assert!(eff.refused.as_deref().unwrap().contains("conf.d/a.toml"));
        assert!(target(&eff, v("1.7.24")).is_err());
        // 1.6.20 reads it as version 3, by URI
        let eff = resolve_with(&files, &main(), v("1.6.20")).unwrap();
        assert_eq!(eff.refused, None);
        assert_eq!(eff.image(), "example.com/pause:1");
    }

    #[test]
    fn order_is_breadth_first_and_cycles_end() {
        let files = mem(&[
            (
                "/etc/containerd/config.toml",
                "version = 3\nimports = [\"a.toml\", \"b.toml\"]\n",
            ),
            (
                "/etc/containerd/a.toml",
                "imports = [\"a2.toml\", \"config.toml\"]\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"a\"\n",
            ),
            (
                "/etc/containerd/b.toml",
                "[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"b\"\n",
            ),
            (
                "/etc/containerd/a2.toml",
                "imports = [\"a.toml\"]\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"a2\"\n",
            ),
        ]);
        let eff = resolve_with(&files, &main(), v("2.1.9")).unwrap();
        let order: Vec<&str> = eff.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            order,
            [
                "/etc/containerd/config.toml",
                "/etc/containerd/a.toml",
                "/etc/containerd/b.toml",
                "/etc/containerd/a2.toml"
            ]
        );
        assert_eq!(eff.image(), "a2");
    }

    #[test]
    fn relative_globs_follow_the_working_directory_on_old_releases() {
        let files = mem(&[
            (
                "/etc/containerd/config.toml",
                "version = 2\nimports = [\"conf.d/*.toml\"]\n",
            ),
            (
                "/etc/containerd/conf.d/x.toml",
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"x\"\n",
            ),
        ]);
        assert_eq!(
            resolve_with(&files, &main(), v("1.6.20")).unwrap().image(),
            "registry.k8s.io/pause:3.6"
        );
        assert_eq!(
            resolve_with(&files, &main(), v("1.6.29")).unwrap().image(),
            "x"
        );
        assert_eq!(
            resolve_with(&files, &main(), v("1.7.15"))
                .unwrap()
                .files
                .len(),
            1
        );
        assert_eq!(
            resolve_with(&files, &main(), v("1.7.16")).unwrap().image(),
            "x"
        );
    }

    #[test]
    fn missing_files_glob_versus_explicit() {
        let files = mem(&[(
            "/etc/containerd/config.toml",
            "version = 2\nimports = [\"/nowhere/*.toml\"]\n",
        )]);
        assert_eq!(
            resolve_with(&files, &main(), v("1.7.24")).unwrap().refused,
            None
        );
        let files = mem(&[(
            "/etc/containerd/config.toml",
            "version = 2\nimports = [\"/nowhere/x.toml\"]\n",
        )]);
        let eff = resolve_with(&files, &main(), v("2.1.9")).unwrap();
        assert!(eff.refused.unwrap().contains("/nowhere/x.toml"));
        // no main file: defaults, unless containerd is told to read it
        let none = mem(&[]);
        assert!(resolve_with(&none, &main(), v("2.1.9"))
            .unwrap()
            .refused
            .is_none());
        let explicit = Main {
            explicit: true,
            ..main()
        };
        assert!(resolve_with(&none, &explicit, v("2.1.9"))
            .unwrap()
            .refused
            .is_some());
    }

    #[test]
    fn version_1_files_on_1x_and_2x() {
        let files = mem(&[
            ("/etc/containerd/config.toml", MAIN_V2),
            (
                "/etc/containerd/conf.d/v1.toml",
                "[plugins.cri]\nsandbox_image = \"v1\"\n",
            ),
        ]);
        // 1.x: a short plugin key in a version 2 config is refused
        let eff = resolve_with(&files, &main(), v("1.6.20")).unwrap();
        assert!(eff.refused.unwrap().contains("invalid plugin key URI"));
        // 2.x renames it and it wins (then migrated)
        assert_eq!(
            resolve_with(&files, &main(), v("2.1.9")).unwrap().image(),
            "v1"
        );
        // all version 1 on 1.x: plugins.cri
        let files = mem(&[(
            "/etc/containerd/config.toml",
            "[plugins.cri]\nsandbox_image = \"v1\"\n",
        )]);
        assert_eq!(
            resolve_with(&files, &main(), v("1.7.24")).unwrap().image(),
            "v1"
        );
        // 2.x: a version 1 main file becomes version 3, its CRI settings are not migrated
        assert_eq!(
            resolve_with(&files, &main(), v("2.1.9")).unwrap().image(),
            "registry.k8s.io/pause:3.10"
        );
    }

    const DEFAULT_2_3: &str = include_str!("../../tests/fixtures/containerd/default-2.3.4.toml");
    const PINNED: &str =
        "[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"pinned:1\"\n";
    const STALE: &str = "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"stale:1\"\n";

    #[test]
    fn containerd_2_3s_own_default_config_reads_as_it_says() {
        let files = mem(&[(DEFAULT_MAIN, DEFAULT_2_3)]);
        let eff = resolve_with(&files, &main(), v("2.3.4")).unwrap();
        assert_eq!(eff.refused, None);
        assert_eq!(eff.merged_version, 4);
        assert_eq!(eff.image(), "registry.k8s.io/pause:3.10.2");
        assert_eq!(
            eff.address.as_ref().map(|a| a.value.as_str()),
            Some("/run/containerd/containerd.sock")
        );
        let (file, key) = target(&eff, v("2.3.4")).unwrap();
        assert_eq!(
            (file.as_str(), key),
            (DEFAULT_MAIN, Some(ConfigVersion::V4))
        );
        // no config at all: 2.3's default, no socket set
        let eff = resolve_with(&mem(&[]), &main(), v("2.3.4")).unwrap();
        assert_eq!(eff.image(), "registry.k8s.io/pause:3.10.2");
        assert_eq!(eff.address, None);
    }

    #[test]
    fn containerd_2_3_migrates_each_file_before_merging() {
        // a version 3 file's leftover sandbox_image: 2.1 ignores it, 2.3 migrates it over
        // the file's own pinned_images.sandbox (measured with 2.3.4's config dump)
        let text = format!("version = 3\n{STALE}{PINNED}");
        let files = mem(&[(DEFAULT_MAIN, &text)]);
        assert_eq!(
            resolve_with(&files, &main(), v("2.1.9")).unwrap().image(),
            "pinned:1"
        );
        let eff = resolve_with(&files, &main(), v("2.3.4")).unwrap();
        assert_eq!(eff.image(), "stale:1");
        assert_eq!(eff.shadowed.len(), 1);
        let (_, key) = target(&eff, v("2.3.4")).unwrap();
        assert_eq!(key, Some(ConfigVersion::V2));
        // a version 0 file's short-named CRI table: lost on 2.1, migrated on 2.3
        let files = mem(&[(DEFAULT_MAIN, "[plugins.cri]\nsandbox_image = \"v0:1\"\n")]);
        assert_eq!(
            resolve_with(&files, &main(), v("2.1.9")).unwrap().image(),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(
            resolve_with(&files, &main(), v("2.3.4")).unwrap().image(),
            "v0:1"
        );
        // a version 4 file's leftover key is not read
        let text = format!("version = 4\n{STALE}");
        let files = mem(&[(DEFAULT_MAIN, &text)]);
        let eff = resolve_with(&files, &main(), v("2.3.4")).unwrap();
        assert_eq!(eff.image(), "registry.k8s.io/pause:3.10.2");
        // a version 3 main file and a version 2 drop-in: the drop-in, migrated, wins
        let text = format!("version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n{PINNED}");
        let drop_in = format!("version = 2\n{STALE}");
        let files = mem(&[
            (DEFAULT_MAIN, &text),
            ("/etc/containerd/conf.d/a.toml", &drop_in),
        ]);
        assert_eq!(
            resolve_with(&files, &main(), v("2.3.4")).unwrap().image(),
            "stale:1"
        );
    }

    #[test]
    fn containerd_2_3_refuses_a_drop_in_above_the_root_configs_version() {
        let files = mem(&[
            (
                DEFAULT_MAIN,
                "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
            ),
            ("/etc/containerd/conf.d/a.toml", "version = 3\n"),
        ]);
        let eff = resolve_with(&files, &main(), v("2.3.4")).unwrap();
        assert_eq!(
            eff.refused.as_deref(),
            Some(
                "/etc/containerd/conf.d/a.toml says version = 3, higher than version = 2 of \
                 /etc/containerd/config.toml, the first file loaded that sets one: containerd \
                 2.3.4 refuses a drop-in of a higher version (\"drop-in config version 3 higher \
                 than root config version 2\")"
            )
        );
        assert!(target(&eff, v("2.3.4")).is_err());
        // 2.1 takes it (the merged config is version 3)
        assert_eq!(
            resolve_with(&files, &main(), v("2.1.9")).unwrap().refused,
            None
        );
        // a main file without a version: the first file that has one sets the bar
        let files = mem(&[
            (
                DEFAULT_MAIN,
                "imports = [\"/etc/containerd/a.toml\", \"/etc/containerd/b.toml\"]\n",
            ),
            ("/etc/containerd/a.toml", "version = 2\n"),
            ("/etc/containerd/b.toml", "version = 3\n"),
        ]);
        let eff = resolve_with(&files, &main(), v("2.3.4")).unwrap();
        assert!(eff
            .refused
            .unwrap()
            .contains("higher than version = 2 of /etc/containerd/a.toml"));
    }

    /// 2.0 to 2.2 merge a version 4 file; they panic only when a version 0/1 file loads after
    /// it while it still sets the accumulated version (both layouts checked against the real
    /// 2.1.9's `config dump`).
    #[test]
    fn containerd_2_0_to_2_2_panic_migrating_an_old_file_after_a_version_4_one() {
        // the layout of PAUSEBAKE_SEED=1796548405453133703: 99-nvidia (version 4) loads
        // first through the explicit import, then 10-a (version 1) through the glob
        let failing = mem(&[
            (
                DEFAULT_MAIN,
                "version = 2
imports = [\"/etc/containerd/conf.d/99-nvidia.toml\", \
                 \"/etc/containerd/conf.d/*.toml\"]\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n\
                 runtime_type = \"io.containerd.runc.v2\"\n",
            ),
            (
                "/etc/containerd/conf.d/10-a.toml",
                "version = 1\nimports = []\n",
            ),
            (
                "/etc/containerd/conf.d/20-b.toml",
                "version = 3\nimports = [\"/etc/containerd/conf.d/20-b.toml\"]\n\
                 [plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"\"\n",
            ),
            (
                "/etc/containerd/conf.d/99-nvidia.toml",
                "version = 4\nimports = []\n\
                 [plugins.\"io.containerd.cri.v1.images\"]\nmax_concurrent_downloads = 4\n",
            ),
        ]);
        for c in ["2.0.0", "2.1.9", "2.2.7"] {
            let eff = resolve_with(&failing, &main(), v(c)).unwrap();
            assert_eq!(
                eff.refused.as_deref(),
                Some(
                    format!(
                        "/etc/containerd/conf.d/10-a.toml (a version 1 file) loads after \
                         /etc/containerd/conf.d/99-nvidia.toml made the config version 4: \
                         containerd {c} panics migrating it to version 4 (\"index out of range \
                         [3] with length 3\") and does not start; give \
                         /etc/containerd/conf.d/10-a.toml version = 2 or 3, or \
                         /etc/containerd/conf.d/99-nvidia.toml a version of at most 3"
                    )
                    .as_str()
                ),
                "{c}"
            );
            assert!(target(&eff, v(c)).is_err());
        }
        // a file without a version migrates from 0 the same way
        let unversioned = mem(&[
            (
                DEFAULT_MAIN,
                "version = 4\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
            ),
            (
                "/etc/containerd/conf.d/a.toml",
                "[plugins.cri]\nsandbox_image = \"a:1\"\n",
            ),
        ]);
        let eff = resolve_with(&unversioned, &main(), v("2.1.9")).unwrap();
        assert!(eff.refused.unwrap().contains("a.toml (a version 0 file) loads after /etc/containerd/config.toml made the config version 4"));
        // a version 4 main file whose later drop-in says version 2: the drop-in's version is
        // the accumulated one when the version 1 file loads, so nothing panics, the merged
        // config is version 2 and CRI's migration takes the drop-in's sandbox_image
        let lowered = mem(&[
            (
                DEFAULT_MAIN,
                "version = 4\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n\
                 [plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"main:1\"\n",
            ),
            (
                "/etc/containerd/conf.d/20-b.toml",
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n\
                 sandbox_image = \"dropin:2\"\n",
            ),
            (
                "/etc/containerd/conf.d/30-c.toml",
                "version = 1\n[plugins.cri]\nmax_concurrent_downloads = 7\n",
            ),
        ]);
        for c in ["2.0.0", "2.1.9", "2.2.7"] {
            let eff = resolve_with(&lowered, &main(), v(c)).unwrap();
            assert_eq!(eff.refused, None, "{c}");
            assert_eq!(eff.merged_version, 2, "{c}");
            assert_eq!(eff.image(), "dropin:2", "{c}");
            assert_eq!(eff.sandbox.unwrap().file, 1, "{c}");
        }
        // a version 1 file before the version 4 one: no panic, but the merged version 4 is
        // refused at the end
        let last = mem(&[
            (
                DEFAULT_MAIN,
                "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
            ),
            ("/etc/containerd/conf.d/10-a.toml", "version = 1\n"),
            ("/etc/containerd/conf.d/20-b.toml", "version = 4\n"),
        ]);
        let why = resolve_with(&last, &main(), v("2.1.9"))
            .unwrap()
            .refused
            .unwrap();
        assert!(why.contains("accepts at most 3"), "{why}");
        // 2.3 reads version 4 natively: an old file after a version 4 main one migrates
        let eff = resolve_with(&unversioned, &main(), v("2.3.4")).unwrap();
        assert_eq!(eff.refused, None);
        assert_eq!(eff.image(), "a:1");
    }

    #[test]
    fn a_config_version_newer_than_pausebake_knows_is_its_own_refusal() {
        for c in ["2.3.4", "2.1.9", "1.7.24", "2.4.0"] {
            let files = mem(&[(DEFAULT_MAIN, "version = 5\n")]);
            let eff = resolve_with(&files, &main(), v(c)).unwrap();
            let why = eff.refused.unwrap();
            assert!(
                why.starts_with("/etc/containerd/config.toml says version = 5, a config version newer than pausebake knows"),
                "{c}: {why}"
            );
            assert!(
                !why.contains("containerd 2") && !why.contains("refuses"),
                "{why}"
            );
        }
        // 2.1 and version 4: what 2.1 is known to do
        let files = mem(&[(DEFAULT_MAIN, "version = 4\n")]);
        let eff = resolve_with(&files, &main(), v("2.1.9")).unwrap();
        assert!(eff
            .refused
            .unwrap()
            .contains("containerd 2.1.9 accepts at most 3"));
    }

    #[test]
    fn the_grpc_socket_per_version() {
        let at = |text: &str, c: &str| {
            let files = mem(&[(DEFAULT_MAIN, text)]);
            resolve_with(&files, &main(), v(c))
                .unwrap()
                .address
                .map(|a| a.value)
        };
        let old = "version = 3\n[grpc]\naddress = \"/run/old.sock\"\n";
        assert_eq!(at(old, "2.1.9").as_deref(), Some("/run/old.sock"));
        // 2.3 moves a version 3 file's [grpc] address into the server plugin
        assert_eq!(at(old, "2.3.4").as_deref(), Some("/run/old.sock"));
        // and does not read [grpc] in a version 4 file
        let v4 = "version = 4\n[grpc]\naddress = \"/run/old.sock\"\n";
        assert_eq!(at(v4, "2.3.4"), None);
        let plugin =
            "version = 4\n[plugins.'io.containerd.server.v1.grpc']\naddress = '/run/k.sock'\n";
        assert_eq!(at(plugin, "2.3.4").as_deref(), Some("/run/k.sock"));
        // a version 3 file that already has the plugin table keeps it
        let both = "version = 3\n[grpc]\naddress = \"/run/old.sock\"\n[plugins.'io.containerd.server.v1.grpc']\naddress = '/run/k.sock'\n";
        assert_eq!(at(both, "2.3.4").as_deref(), Some("/run/k.sock"));
    }

    #[test]
    fn go_path_functions() {
        assert_eq!(clean("/a/../../b/./c/"), "/b/c");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean(""), ".");
        assert_eq!(join("/etc/containerd", "../../../x"), "/x");
        assert_eq!(dir("/a"), "/");
        assert_eq!(dir("a"), ".");
        assert!(matches("*.toml", ".hidden.toml").unwrap());
        assert!(matches("[a-c]?.t*", "b1.toml").unwrap());
        assert!(!matches("[^a-c]*", "b").unwrap());
        assert!(matches("[", "x").is_err());
        let files = mem(&[("/d/b.toml", ""), ("/d/a.toml", ""), ("/e/c.toml", "")]);
        assert_eq!(
            glob(&files, "/*/*.toml").unwrap(),
            ["/d/a.toml", "/d/b.toml", "/e/c.toml"]
        );
    }

    #[test]
    fn the_unit_names_the_main_config() {
        assert_eq!(
            config_arg("/usr/bin/containerd --config /etc/k0s/containerd.toml --log-level info"),
            Some("/etc/k0s/containerd.toml".into())
        );
        assert_eq!(
            config_arg("-/usr/bin/containerd -c=/x.toml"),
            Some("/x.toml".into())
        );
        assert_eq!(config_arg("/usr/bin/containerd"), None);
        assert_eq!(
            unit_lines("ExecStart=/usr/bin/containerd \\\n  --config /c.toml\n# x\n"),
            ["ExecStart=/usr/bin/containerd  --config /c.toml"]
        );
    }

    /// A real root on disk, for the hostile cases.
    fn disk(files: &[(&str, &str)]) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        for (p, t) in files {
            let host = dir.path().join(p.trim_start_matches('/'));
            fs::create_dir_all(host.parent().unwrap()).unwrap();
            fs::write(host, t).unwrap();
        }
        let root = Root::new(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn hostile_imports_stay_inside_the_root() {
        // the host's /etc/passwd exists; the root's does not: a missing import, never a read
        for import in ["/etc/passwd", "../../../../../etc/passwd", "/etc/pass*"] {
            let main_text = format!("version = 2\nimports = [{import:?}]\n");
            let (_d, root) = disk(&[(DEFAULT_MAIN, &main_text)]);
            let eff = resolve(&root, &main(), v("2.1.9"), &[]).unwrap().0;
            assert_eq!(eff.files.len(), 1, "{import}: {:?}", eff.files);
            if !import.contains('*') {
                assert!(eff.refused.unwrap().contains("/etc/passwd"), "{import}");
            }
        }
        // a symlink to an absolute path is followed inside the root
        let (d, root) = disk(&[
            (
                DEFAULT_MAIN,
                "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
            ),
            (
                "/srv/real.toml",
                "[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"inside\"\n",
            ),
        ]);
        fs::create_dir_all(d.path().join("etc/containerd/conf.d")).unwrap();
        std::os::unix::fs::symlink(
            "/srv/real.toml",
            d.path().join("etc/containerd/conf.d/a.toml"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("etc/containerd/conf.d/b.toml"))
            .unwrap();
        // b.toml dangles inside the root: containerd cannot open it and refuses
        let eff = resolve(&root, &main(), v("2.1.9"), &[]).unwrap().0;
        assert_eq!(eff.files.len(), 2);
        assert!(eff.refused.unwrap().contains("conf.d/b.toml"));
        fs::remove_file(d.path().join("etc/containerd/conf.d/b.toml")).unwrap();
        let eff = resolve(&root, &main(), v("2.1.9"), &[]).unwrap().0;
        assert_eq!(eff.image(), "inside");
        assert_eq!(eff.refused, None);
    }

    #[test]
    fn hostile_loops_big_globs_and_unreadable_files() {
        let (d, root) = disk(&[(
            DEFAULT_MAIN,
            "version = 3\nimports = [\"conf.d/*.toml\", \"config.toml\"]\n",
        )]);
        let conf_d = d.path().join("etc/containerd/conf.d");
        fs::create_dir_all(&conf_d).unwrap();
        for i in 0..10_000 {
            fs::write(
                conf_d.join(format!("{i:05}.toml")),
                format!("imports = [\"../config.toml\", \"*.toml\"]\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"n{i}\"\n"),
            )
            .unwrap();
        }
        let eff = resolve(&root, &main(), v("2.1.9"), &[]).unwrap().0;
        assert_eq!(eff.files.len(), 10_001);
        assert_eq!(eff.image(), "n9999");
        assert_eq!(eff.refused, None);
        // a directory where a file should be, and bytes that are not text: refused, named
        fs::create_dir(conf_d.join("zz.toml")).unwrap();
        let eff = resolve(&root, &main(), v("2.1.9"), &[]).unwrap().0;
        assert!(eff.refused.unwrap().contains("zz.toml"));
        fs::remove_dir(conf_d.join("zz.toml")).unwrap();
        fs::write(conf_d.join("zz.toml"), b"\xff\xfe").unwrap();
        let eff = resolve(&root, &main(), v("1.7.24"), &[]).unwrap().0;
        assert!(
            eff.refused.as_deref().unwrap().contains("zz.toml"),
            "{:?}",
            eff.refused
        );
        assert!(target(&eff, v("1.7.24")).is_err());
    }

    #[test]
    fn a_version_1_file_on_2x_is_edited_with_its_short_names() {
        let files = mem(&[
            (
                DEFAULT_MAIN,
                "version = 2\nimports = [\"/etc/containerd/conf.d/x.toml\"]\n",
            ),
            (
                "/etc/containerd/conf.d/x.toml",
                "version = 1\n[plugins.cri]\nsandbox_image = \"old\"\n",
            ),
        ]);
        let eff = resolve_with(&files, &main(), v("2.1.9")).unwrap();
        assert_eq!(eff.image(), "old");
        let (file, key) = target(&eff, v("2.1.9")).unwrap();
        assert_eq!(file, "/etc/containerd/conf.d/x.toml");
        assert_eq!(key, Some(ConfigVersion::V1));
        // both spellings in one version 1 file: containerd's pick is random, so refused
        let files = mem(&[(
            DEFAULT_MAIN,
            "[plugins.cri]\nsandbox_image = \"a\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"b\"\n",
        )]);
        let eff = resolve_with(&files, &main(), v("2.1.9")).unwrap();
        assert!(eff.refused.unwrap().contains("twice"));
    }

    #[test]
    fn the_main_config_comes_from_the_flag_the_unit_or_the_default() {
        let (_d, root) = disk(&[
            (
                "/usr/lib/systemd/system/containerd.service",
                "[Service]\nExecStart=/usr/bin/containerd\n",
            ),
            (
                "/etc/systemd/system/containerd.service.d/10-k0s.conf",
                "[Service]\nExecStart=\nExecStart=/usr/bin/containerd \\\n  --config=/etc/k0s/containerd.toml\n",
            ),
        ]);
        let m = find_main(&root, None).unwrap();
        assert_eq!(m.path, "/etc/k0s/containerd.toml");
        assert!(m.explicit);
        assert!(m.why.contains("10-k0s.conf"), "{}", m.why);
        let m = find_main(&root, Some(Path::new("etc/cri/containerd.toml"))).unwrap();
        assert_eq!(
            (m.path.as_str(), m.why.as_str()),
            ("/etc/cri/containerd.toml", "--config")
        );
        let (_d, bare) = disk(&[]);
        let m = find_main(&bare, None).unwrap();
        assert_eq!(m.path, DEFAULT_MAIN);
        assert!(!m.explicit);
    }

    #[test]
    fn a_config_dump_is_one_merged_file_whose_imports_are_not_followed() {
        let v2: Version = "2.1.9".parse().unwrap();
        let dump = "version = 3\nimports = [\"/etc/containerd/conf.d/a.toml\"]\n\n[plugins]\n  [plugins.\"io.containerd.cri.v1.images\"]\n    [plugins.\"io.containerd.cri.v1.images\".pinned_images]\n      sandbox = \"example.com/pause:9\"\n";
        let eff = of_dump(dump, "/run/c.toml", v2).unwrap();
        assert_eq!(eff.image(), "example.com/pause:9");
        assert_eq!(eff.files.len(), 1);
        let v1: Version = "1.7.24".parse().unwrap();
        let dump = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"example.com/pause:1\"\n";
        assert_eq!(
            of_dump(dump, "/c.toml", v1).unwrap().image(),
            "example.com/pause:1"
        );
        assert!(of_dump("version = [", "/c.toml", v1).is_err());
    }
}
