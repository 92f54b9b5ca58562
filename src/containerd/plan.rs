//! What a command will change in a root, as a value: a pure function of the root's
//! [`RootFacts`], the request and the image. `--dry-run` prints it; [`super::apply`] carries
//! it out and nothing else; the summary after a real run is the same value, so the plan
//! printed beforehand and the changes made cannot disagree.
//!
//! `Display` is the human summary, `Serialize` the `--json` document.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use anyhow::Result;

use super::config::{self, ConfigPlan};
use super::inspect::{BlobState, RootFacts};
use super::store::{merge, records, Spec};
use crate::bolt::Bucket;
use crate::image::Image;
use crate::platform::Endian;

/// The facts a plan was made from, each once with its source (for `--json` and the summary).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Facts {
    pub root: String,
    pub platform: String,
    pub platform_source: String,
    pub containerd_version: String,
    pub containerd_version_source: String,
    /// `VERSION (source)`, when known.
    pub kubernetes_version: Option<String>,
}

impl Facts {
    pub fn of(facts: &RootFacts) -> Facts {
        Facts {
            root: facts.root.dir().display().to_string(),
            platform: facts.platform.value.to_string(),
            platform_source: facts.platform.source.clone(),
            containerd_version: facts.containerd.value.to_string(),
            containerd_version_source: facts.containerd.source.clone(),
            kubernetes_version: facts
                .kubernetes
                .as_ref()
                .map(|k| format!("{} ({})", k.value, k.source)),
        }
    }
}

/// What importing an image into the store will do. The field names are those of the import
/// report: under `--dry-run` "written" means "to be written".
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StorePlan {
    /// containerd's root, inside the root.
    pub containerd_root: String,
    pub meta_db: String,
    /// The socket of the running containerd the import goes through (the live apply,
    /// `crate::live`), if any; `containerd_root` and `meta_db` then name that containerd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub names: Vec<String>,
    pub namespace: String,
    pub target: String,
    pub target_media_type: String,
    /// `os/arch[/variant] digest` of every manifest selected.
    pub manifests: Vec<String>,
    /// Blobs absent or damaged in the root, written (or replaced) by apply.
    pub blobs_written: Vec<String>,
    pub blobs_present: usize,
    /// One line per `meta.db` record new or updated.
    pub records_changed: Vec<String>,
    pub pinned: bool,
    pub unchanged: bool,
    /// The `meta.db` tree after the change.
    #[serde(skip)]
    pub tree: Bucket,
    /// The records merged into the tree: apply merges them again into just the keys it
    /// loads from the file, so a commit reads and writes only the pages on their way.
    #[serde(skip)]
    pub records: Bucket,
    /// The transaction `meta.db` held when inspected: apply refuses if the file has another.
    #[serde(skip)]
    pub before_txid: Option<u64>,
    /// Whether `meta.db` existed when inspected.
    #[serde(skip)]
    pub meta_existed: bool,
    /// The byte order a new `meta.db` gets: the root's platform's.
    #[serde(skip)]
    pub new_order: Endian,
    /// The blob directory, inside the root.
    #[serde(skip)]
    pub blob_dir: PathBuf,
    /// Every blob the import selects with the GC labels its content record carries (what a
    /// live apply writes or labels through containerd's API).
    #[serde(skip)]
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// The store part of a plan: the records [`records`] makes, merged into the inspected
/// `meta.db` tree, and which blobs are missing. `facts.blobs` must hold the image's blobs
/// ([`RootFacts::probe_blobs`]).
pub fn store(facts: &RootFacts, req: &Spec, image: &Image) -> Result<StorePlan> {
    let recs = records(image, req)?;
    let mut tree = facts.meta.tree.clone();
    let changes = merge(&mut tree, &recs.tree, &req.namespace)?;
    let mut written = Vec::new();
    let mut present = 0;
    for digest in recs.selection.blobs.keys() {
        match facts.blobs.get(digest) {
            Some(BlobState::Same) => present += 1,
            _ => written.push(digest.clone()),
        }
    }
    Ok(StorePlan {
        containerd_root: facts.containerd_root.display().to_string(),
        meta_db: facts.meta.path.display().to_string(),
        address: None,
        names: req.names.clone(),
        namespace: req.namespace.clone(),
        target: image.target.digest().to_string(),
        target_media_type: image.target.media_type().to_string(),
        manifests: recs
            .selection
            .manifests
            .iter()
            .map(|(p, d)| format!("{p} {d}"))
            .collect(),
        unchanged: written.is_empty() && changes.is_empty(),
        blobs_written: written,
        blobs_present: present,
        records_changed: changes,
        pinned: req.pin,
        tree,
        records: recs.tree,
        before_txid: facts.meta.txid,
        meta_existed: facts.meta.exists,
        new_order: facts.platform.value.arch.endian(),
        blob_dir: facts.blob_dir.clone(),
        labels: recs.selection.blobs,
    })
}

/// The config part of a plan: set `name` for the root's containerd.
pub fn configure(facts: &RootFacts, name: &str) -> Result<ConfigPlan> {
    config::plan(&facts.config, facts.containerd.value, name)
}

/// The name a plan sets, and why that one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Named {
    pub name: String,
    pub name_source: String,
}

/// Everything one command will do to a root.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    #[serde(flatten)]
    pub facts: Facts,
    #[serde(flatten)]
    pub named: Option<Named>,
    /// Where the image comes from, when there is one.
    pub image_source: Option<String>,
    /// Blobs and records for the store; `None` when the command does not import.
    pub import: Option<StorePlan>,
    /// The config edit; `None` when the command does not configure.
    pub configure: Option<ConfigPlan>,
}

/// The plan for `facts`: the store part when an image (with where it came from and the
/// request) is given, the config part when a name is.
pub fn plan(
    facts: &RootFacts,
    named: Option<Named>,
    image: Option<(&Image, String, &Spec)>,
) -> Result<Plan> {
    let (import, image_source) = match image {
        Some((image, source, req)) => (Some(store(facts, req, image)?), Some(source)),
        None => (None, None),
    };
    // Every command that chooses a name sets it in the config (import chooses none: its
    // records are named by the archive and `--name`).
    let configure = match &named {
        Some(n) => Some(configure(facts, &n.name)?),
        None => None,
    };
    Ok(Plan {
        facts: Facts::of(facts),
        named,
        image_source,
        import,
        configure,
    })
}

impl StorePlan {
    /// Every image record's name, the namespace and the pin state, in one line:
    /// `A, B in namespace k8s.io, pinned (CRI managed + pinned labels)`.
    pub fn records_line(&self) -> String {
        let pin = if self.pinned {
            "pinned (CRI managed + pinned labels)"
        } else {
            "not pinned (--no-pin: no CRI labels)"
        };
        format!(
            "{} in namespace {}, {pin}",
            self.names.join(", "),
            self.namespace
        )
    }

    /// The one-line count of what the import changes: as done (`done`, the summary after a
    /// run) or as planned (`--dry-run`); `unchanged (…)` when nothing; naming the store
    /// (a root's `meta.db`, or the running containerd that answered).
    pub fn counts(&self, done: bool) -> String {
        if self.unchanged {
            return format!(
                "unchanged ({} blobs already present in {})",
                self.blobs_present, self.meta_db
            );
        }
        let count = |what: &str| {
            self.records_changed
                .iter()
                .filter(|c| c.starts_with(what))
                .count()
        };
        let (written, records) = if done {
            ("written", "new or updated")
        } else {
            ("to write", "to add or update")
        };
        format!(
            "{} blobs {written}, {} present; {} content and {} image records {records} in {}",
            self.blobs_written.len(),
            self.blobs_present,
            count("content "),
            count("image "),
            self.meta_db
        )
    }
}

impl ConfigPlan {
    /// `created KEY = "VALUE" in PATH`, `set …`, or `unchanged: …`; as planned (`done`
    /// false): `to create …`, `to set …`.
    pub fn line(&self, done: bool) -> String {
        let how = match (self.changed, self.created, done) {
            (false, _, _) => "unchanged:",
            (true, true, true) => "created",
            (true, false, true) => "set",
            (true, true, false) => "to create",
            (true, false, false) => "to set",
        };
        format!("{how} {} = {:?} in {}", self.key, self.new, self.path)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let facts = &self.facts;
        writeln!(f, "root {}", facts.root)?;
        writeln!(
            f,
            "  platform   {} ({})",
            facts.platform, facts.platform_source
        )?;
        // The versions choose the name and the config key: an import uses neither.
        if self.configure.is_some() {
            writeln!(
                f,
                "  containerd {} ({})",
                facts.containerd_version, facts.containerd_version_source
            )?;
            if let Some(k) = &facts.kubernetes_version {
                writeln!(f, "  kubernetes {k}")?;
            }
        }
        if let Some(n) = &self.named {
            writeln!(f, "  name       {} ({})", n.name, n.name_source)?;
        }
        if let Some(i) = &self.import {
            writeln!(
                f,
                "  image      {} {} ({})",
                i.target_media_type,
                i.target,
                self.image_source.as_deref().unwrap_or("given")
            )?;
            write_import(f, i)?;
        }
        if let Some(c) = &self.configure {
            write_configure(f, c)?;
        }
        Ok(())
    }
}

/// The config part of the text summary: the edit (`key: old -> new` in the file that decides
/// it), which files containerd loads when that is not just the default file, the result.
fn write_configure(f: &mut fmt::Formatter<'_>, c: &ConfigPlan) -> fmt::Result {
    writeln!(f, "  configure  {}", c.line(false))?;
    if let (true, Some(old)) = (c.changed, &c.old) {
        writeln!(f, "    {}: {old:?} -> {:?} in {}", c.key, c.new, c.path)?;
    }
    if c.main_config != super::effective::DEFAULT_MAIN || c.files.len() > 1 {
        writeln!(
            f,
            "    main config {} ({}); containerd loads {}",
            c.main_config,
            c.main_config_why,
            c.files.join(", ")
        )?;
    }
    writeln!(f, "    then {}", c.effective)?;
    for w in &c.warnings {
        writeln!(f, "    warning: {w}")?;
    }
    Ok(())
}

/// The import part of the text summary: the counts, then each blob and record it writes.
fn write_import(f: &mut fmt::Formatter<'_>, i: &StorePlan) -> fmt::Result {
    writeln!(f, "  import     {}", i.counts(false))?;
    writeln!(f, "  records    {}", i.records_line())?;
    if let Some(address) = &i.address {
        writeln!(
            f,
            "    through the running containerd at {address} (its API answers for what it has)"
        )?;
    }
    for b in &i.blobs_written {
        writeln!(f, "    blob {b}")?;
    }
    for r in &i.records_changed {
        writeln!(f, "    record {r}")?;
    }
    Ok(())
}

/// The name [`crate::reference::normalize`] gives each of `given`, first ones first, without repeats.
pub fn normalized_names<'a>(given: impl IntoIterator<Item = &'a String>) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for n in given {
        push_unique(&mut names, crate::reference::normalize(n)?);
    }
    Ok(names)
}

/// Appends `name` unless it is already there.
pub fn push_unique(names: &mut Vec<String>, name: String) {
    if !names.contains(&name) {
        names.push(name);
    }
}
