//! What a command will change in a root, as a value: a pure function of the root's
//! [`RootFacts`], the request and the image. `--dry-run` prints it; [`super::apply`] carries
//! it out and nothing else; the summary after a real run is the same value, so the plan
//! printed beforehand and the changes made cannot disagree.
//!
//! `Display` is the human summary, `Serialize` the `--json` document.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use anyhow::{ensure, Context, Result};

use super::config::{self, ConfigPlan};
use super::disabled;
use super::effective::Overlay;
use super::inspect::{BlobState, RootFacts};
use super::owners::{self, WriteTo};
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
    /// Who owns containerd at boot, and the path that told (`k3s (/usr/local/bin/k3s)`).
    pub owner: String,
    pub owner_id: String,
    /// containerd's store and socket at boot, inside the root.
    pub containerd_root: String,
    pub containerd_address: String,
    /// The reference the owner's own setting asks for, `REF (source)`; `None` when
    /// containerd's config decides.
    pub owner_asks: Option<String>,
}

impl Facts {
    pub fn of(facts: &RootFacts) -> Facts {
        Facts {
            root: facts.root.shown(),
            platform: facts.platform.value.to_string(),
            platform_source: facts.platform.source.clone(),
            containerd_version: facts.containerd.value.to_string(),
            containerd_version_source: facts.containerd.source.clone(),
            kubernetes_version: facts
                .kubernetes
                .as_ref()
                .map(|k| format!("{} ({})", k.value, k.source)),
            owner: facts.owner.owner.describe(),
            owner_id: facts.owner.owner.row.id.to_string(),
            containerd_root: facts.containerd_root.display().to_string(),
            containerd_address: facts.address.clone(),
            owner_asks: facts
                .owner
                .asks
                .as_ref()
                .map(|a| format!("{} ({})", a.value, a.source)),
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

/// The config part of a plan: set `name` where the owner of the root's containerd reads it
/// ([`WriteTo`]: the containerd config file that decides, a drop-in of pausebake's own, a
/// settings file of pausebake's own, or nowhere when the owner fixes the name).
pub fn configure(facts: &RootFacts, name: &str) -> Result<ConfigPlan> {
    let v = facts.containerd.value;
    let mut plan = match facts.owner.owner.row.write {
        WriteTo::Config => config::plan(&facts.config, v, name),
        WriteTo::DropIn(path) => config::plan_in(&facts.config, v, name, Some(path)),
        WriteTo::Yaml { path, key } => setting(facts, path, key, name),
        WriteTo::Nowhere(why) => fixed(facts, name, why),
    }?;
    plan.warnings.extend(facts.owner.warnings.iter().cloned());
    Ok(plan)
}

/// `name` as the owner's own setting, in a settings file of pausebake's own; nothing to
/// write when the owner already asks for it. Read back in memory before anything is
/// written: a later file or a flag of the owner's unit would still win.
fn setting(facts: &RootFacts, path: &str, key: &str, name: &str) -> Result<ConfigPlan> {
    let owner = &facts.owner;
    let row = owner.owner.row;
    let asked = owner
        .asks
        .as_ref()
        .with_context(|| format!("{} names no setting for {key}", row.name))?;
    let text = format!(
        "# Written by pausebake: the sandbox (pause) image {} asks containerd for.\n{key}: \"{name}\"\n",
        row.name
    );
    let already = crate::reference::normalize(&asked.value).ok().as_deref() == Some(name);
    let new = match &owner.written {
        Some(t) if *t == text => None,
        None if already => None,
        _ => Some(text),
    };
    if let Some(t) = &new {
        let overlay = Overlay {
            base: &owner.seen,
            path,
            text: t,
        };
        let after = owners::asks(row, &overlay)?.context("the setting disappeared")?;
        ensure!(
            crate::reference::normalize(&after.value).ok().as_deref() == Some(name),
            "setting {key} in {path}: {} would still ask for {:?} ({}); nothing was written",
            row.name,
            after.value,
            after.source
        );
    }
    let eff = &facts.config.effective;
    // unchanged: the file that sets it now, or the generated config when a default does
    let path = match (&new, &owner.written) {
        (None, None) => asked.file.clone().unwrap_or_else(|| eff.main.clone()),
        _ => path.to_string(),
    };
    Ok(ConfigPlan {
        path,
        main_config: eff.main.clone(),
        main_config_why: eff.main_why.clone(),
        files: eff.files.iter().map(|f| f.path.clone()).collect(),
        effective: format!(
            "{} writes {} at every start with the sandbox image of its {key} setting",
            row.name, eff.main
        ),
        config_version: eff.merged_version,
        key: key.to_string(),
        old: Some(asked.value.clone()),
        new: name.to_string(),
        created: owner.written.is_none(),
        changed: new.is_some(),
        warnings: Vec::new(),
        note: None,
        text: new,
        before: owner.written.clone(),
    })
}

/// No edit: the owner fixes the name containerd asks for (`why`), which must be `name`.
fn fixed(facts: &RootFacts, name: &str, why: &str) -> Result<ConfigPlan> {
    let eff = &facts.config.effective;
    let asked = eff.image();
    ensure!(
        crate::reference::normalize(asked).ok().as_deref() == Some(name),
        "{} makes containerd ask for {asked:?} ({}); pausebake cannot make it ask for {name:?}: {why}",
        facts.owner.owner.describe(),
        eff.describe()
    );
    let from = eff.sandbox.as_ref();
    Ok(ConfigPlan {
        path: from.map_or(eff.main.clone(), |s| eff.path(s.file).to_string()),
        main_config: eff.main.clone(),
        main_config_why: eff.main_why.clone(),
        files: eff.files.iter().map(|f| f.path.clone()).collect(),
        effective: eff.describe(),
        config_version: eff.merged_version,
        key: from.map_or(String::new(), |s| s.key.clone()),
        old: Some(asked.to_string()),
        new: name.to_string(),
        created: false,
        changed: false,
        warnings: Vec::new(),
        note: Some(format!("no config edit: {why}")),
        text: None,
        before: None,
    })
}

/// Switching CRI back on: the `disabled_plugins` entries one file removes (a baked sandbox
/// image is useless without CRI). The file's other lines stay.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CriEdit {
    pub path: String,
    pub removed: Vec<String>,
    /// What those entries do to containerd.
    pub why: String,
    /// The file's new text; `None` when the config edit of the same file carries it.
    #[serde(skip)]
    pub text: Option<String>,
    /// The text the plan was made from; apply refuses if it changed.
    #[serde(skip)]
    pub before: Option<String>,
}

/// The edits that remove every entry of `disabled_plugins` that switches CRI off, file by
/// file; one in the file `config` edits goes into that edit's text.
fn enable_cri(facts: &RootFacts, config: &mut ConfigPlan) -> Result<Vec<CriEdit>> {
    let v = facts.containerd.value;
    let mut files: Vec<(&str, Vec<String>, String)> = Vec::new();
    for d in &facts.config.cri_disabled {
        match files.iter_mut().find(|(f, _, _)| *f == d.file) {
            Some((_, entries, _)) => entries.push(d.entry.clone()),
            None => files.push((&d.file, vec![d.entry.clone()], d.consequence(v))),
        }
    }
    let mut out = Vec::new();
    for (path, removed, why) in files {
        let before = facts.config.files.text(path)?.map(str::to_string);
        let same = path == config.path;
        let base = match (same, &config.text) {
            (true, Some(text)) => Some(text.clone()),
            _ => before.clone(),
        };
        let text = disabled::remove(base.as_deref().unwrap_or_default(), &removed)
            .with_context(|| format!("removing {removed:?} from disabled_plugins in {path}"))?
            .with_context(|| format!("{path} no longer lists {removed:?} in disabled_plugins"))?;
        let text = if same {
            config.text = Some(text);
            None
        } else {
            Some(text)
        };
        out.push(CriEdit {
            path: path.to_string(),
            removed,
            why,
            text,
            before,
        });
    }
    Ok(out)
}

impl CriEdit {
    /// `removed "cri" from disabled_plugins in PATH` (as done), or `to remove …`.
    pub fn line(&self, done: bool) -> String {
        let how = if done { "removed" } else { "to remove" };
        let entries: Vec<String> = self.removed.iter().map(|e| format!("{e:?}")).collect();
        format!(
            "{how} {} from disabled_plugins in {} (else {}: no pod could run)",
            entries.join(", "),
            self.path,
            self.why
        )
    }
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
    /// `disabled_plugins` entries removed to switch CRI back on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enable_cri: Vec<CriEdit>,
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
    let (configure, enable_cri) = match &named {
        Some(n) => {
            let mut c = configure(facts, &n.name)?;
            let cri = enable_cri(facts, &mut c)?;
            (Some(c), cri)
        }
        None => (None, Vec::new()),
    };
    Ok(Plan {
        facts: Facts::of(facts),
        named,
        image_source,
        import,
        configure,
        enable_cri,
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
            writeln!(
                f,
                "  owner      {}: store {}, socket {}",
                facts.owner, facts.containerd_root, facts.containerd_address
            )?;
            if let Some(a) = &facts.owner_asks {
                writeln!(f, "    asks for {a}")?;
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
        for e in &self.enable_cri {
            writeln!(f, "  enable CRI {}", e.line(false))?;
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
    if let Some(note) = &c.note {
        writeln!(f, "    {note}")?;
    }
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
