//! Replays containerd's lookup of the sandbox image against a root, offline: would a pod
//! sandbox start on this root with no network?
//!
//! The questions, in the order containerd asks them (`containerd-store.md` §7, §8): which
//! sandbox image name does this containerd version read from its effective config (the main
//! file merged with its imports, [`super::effective`]), and from which file (or its default);
//! is there an image record with exactly that normalized name in the namespace, well formed;
//! does its target lead to a manifest for the root's platform, with every blob present, of
//! the right size and sha256, and every edge carried by a `containerd.io/gc.ref.content*`
//! label so startup GC keeps it; are the CRI pin labels consistent and honoured by that
//! version; and does the pause tag match the Kubernetes version found in the root.
//!
//! Failures are what would make CRI pull; warnings are worth fixing but do not reach out.
//! The checks themselves ([`check`]) are pure: the caller hands in the database tree, the
//! effective config and a blob reader.

use std::collections::BTreeSet;

use anyhow::Result;
use oci_spec::image::Descriptor;

use super::disabled::Disabled;
use super::effective::EffectiveConfig;
use super::inspect::RootFacts;
use super::plan::Facts;
use super::store::{self, read_varint, ImagePlatform, Time};
use super::versions::{self, pinning, ConfigVersion, Pinning, SandboxKey, Version};
use crate::bolt::Bucket;
use crate::digest::sha256_digest;
use crate::image::Image;
use crate::platform::{Endian, Platform};

// --- config ------------------------------------------------------------------------------

/// The sandbox image setting as a given containerd version reads its effective config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSetting {
    /// The merged config's `version`, 0 when there is no config file.
    pub config_version: i64,
    /// The key this containerd reads the sandbox image from.
    pub key: SandboxKey,
    /// The raw value at that key, if set.
    pub value: Option<String>,
    /// The name containerd uses: the value, else its built-in default.
    pub effective: String,
    /// The file the value comes from, `None` when containerd's default is in force.
    pub from: Option<String>,
    /// Whether that file is the main config.
    pub from_main: bool,
    /// The main config, inside the root.
    pub main: String,
    /// Why the config is not read the way one might think, if it is not.
    pub problems: Vec<Finding>,
}

const KEY_V1: SandboxKey = versions::sandbox_key(ConfigVersion::V1);
const KEY_V2: SandboxKey = versions::sandbox_key(ConfigVersion::V2);
const KEY_V3: SandboxKey = versions::sandbox_key(ConfigVersion::V3);

/// The key containerd `v` reads the sandbox image from, for a merged config `version`
/// (0: no config file).
fn key_read(version: i64, v: Version) -> SandboxKey {
    match version {
        1 => KEY_V1,
        2 => KEY_V2,
        _ if v.major < 2 => KEY_V2,
        _ => KEY_V3,
    }
}

/// A content walk's outcome as rule "content" sees it: indexes nested too deep are a finding
/// (with `fix`), not an error; any other error stays one.
pub fn too_deep(walked: Result<()>, fix: &str) -> Result<Option<Finding>> {
    let Err(e) = walked else { return Ok(None) };
    let deep = e.downcast::<crate::image::TooDeep>()?;
    Ok(Some(Finding::fail(
        "content",
        format!("{deep}, so what lies below it goes unchecked"),
        fix,
    )))
}

/// Reads the sandbox image the way containerd `v` does from its effective config: a config
/// it refuses, and settings it does not read while its default is in force, fail; a setting
/// overridden by another file's is a warning.
pub fn sandbox_setting(eff: &EffectiveConfig, v: Version) -> SandboxSetting {
    let mut problems = Vec::new();
    if let Some(why) = &eff.refused {
        problems.push(Finding::fail(
            "config",
            why.clone(),
            "fix that file (pausebake configure refuses to edit a config containerd refuses)",
        ));
    }
    for s in &eff.shadowed {
        let ignored = v.major >= 2 && eff.merged_version == 3 && s.key.ends_with(".sandbox_image");
        let message = if ignored {
            format!(
                "containerd {v} ignores sandbox_image in a version = 3 config (unknown key under io.containerd.grpc.v1.cri): {} sets {} = {:?}; {}",
                eff.path(s.file), s.key, s.value, eff.describe()
            )
        } else {
            format!(
                "{} sets {} = {:?}, which containerd {v} does not use: {}",
                eff.path(s.file),
                s.key,
                s.value,
                eff.describe()
            )
        };
        let fix = "pausebake configure writes the name into the file that decides it";
        problems.push(if eff.sandbox.is_none() {
            Finding::fail("config", message, fix)
        } else {
            Finding::warn("config", message, fix)
        });
    }
    let config_version = if eff.files.is_empty() {
        0
    } else {
        eff.merged_version
    };
    SandboxSetting {
        config_version,
        key: key_read(config_version, v),
        value: eff.sandbox.as_ref().map(|s| s.value.clone()),
        effective: eff.image().to_string(),
        from: eff.sandbox.as_ref().map(|s| eff.path(s.file).to_string()),
        from_main: eff.sandbox.as_ref().is_some_and(|s| s.file == 0),
        main: eff.main.clone(),
        problems,
    }
}

// --- findings ----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    /// How every text report spells the status (`verify`, `bake`), four columns wide.
    pub fn tag(self) -> &'static str {
        match self {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One answer: what was checked, what was found and, unless it is fine, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }
    pub fn warn(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            status: Status::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn fail(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Everything [`check`] looks at, taken from a root's facts by [`audit`] (or built by a test).
pub struct Inputs<'a> {
    pub containerd: Version,
    pub kubernetes: Option<Version>,
    /// containerd's effective config: the main file merged with its imports.
    pub config: &'a EffectiveConfig,
    /// `v1` root of `meta.db`, `None` when the file does not exist.
    pub db: Option<&'a Bucket>,
    /// `meta.db`'s byte order, `None` when the file does not exist.
    pub db_order: Option<Endian>,
    pub namespace: &'a str,
    pub platform: Platform,
    /// Reads a blob file by digest: `None` when absent.
    pub blob: &'a dyn Fn(&str) -> Result<Option<Vec<u8>>>,
    /// `disabled_plugins` entries that leave containerd without CRI.
    pub cri_disabled: &'a [Disabled],
    /// What is assumed about the owner of containerd and cannot be checked.
    pub owner_warnings: &'a [String],
}

/// The whole audit, rule by rule in the order containerd asks. Never stops at the first
/// failure: every finding is listed (a rule that cannot run without an earlier answer is
/// skipped once that answer is a failure).
pub fn check(inp: &Inputs) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let setting = sandbox_setting(inp.config, inp.containerd);
    out.extend(rule_config(&setting, inp.containerd));
    out.extend(rule_cri(inp.cri_disabled, inp.containerd));
    out.extend(inp.owner_warnings.iter().map(|w| {
        Finding::warn(
            "owner",
            w.clone(),
            "check that the template keeps the built-in sandbox setting",
        )
    }));
    let name = match rule_name(&setting, inp.containerd) {
        Ok((name, warning)) => {
            out.extend(warning);
            name
        }
        Err(fail) => {
            out.push(fail);
            return Ok(out);
        }
    };
    let Some(db) = inp.db else {
        out.push(Finding::fail(
            "image",
            format!(
                "no meta.db: containerd's store under this root is empty, so CRI would pull {name}"
            ),
            "run pausebake bake (or import) on this root",
        ));
        return Ok(out);
    };
    out.extend(rule_byte_order(inp.db_order, inp.platform));
    let images = db.bucket_at(&[b"v1", inp.namespace.as_bytes(), b"images"]);
    out.extend(rule_records(images, inp.namespace));
    let (rec, target) = match rule_image(images, &name, inp.namespace) {
        Ok(Some((rec, target, found))) => {
            out.push(found);
            (rec, target)
        }
        Ok(None) => return Ok(out), // reported as malformed by rule_records
        Err(fail) => {
            out.push(fail);
            return Ok(out);
        }
    };
    out.extend(rule_digest(&name, &target));
    out.extend(rule_verbatim(images, &setting, &name, inp.containerd));
    out.extend(rule_content(inp, db, &target, &name)?);
    out.push(rule_pin(rec, &name, &setting, inp.containerd));
    if let Some(k8s) = inp.kubernetes {
        out.push(rule_kubernetes(k8s, &name)?);
    }
    Ok(out)
}

/// Rule "config": whether this containerd starts with its effective config, which key it
/// reads the sandbox image from and in which file, and the settings it does not read.
fn rule_config(setting: &SandboxSetting, v: Version) -> Vec<Finding> {
    if setting.problems.iter().any(|f| f.status == Status::Fail) {
        return setting.problems.clone();
    }
    let mut message = match (&setting.value, setting.config_version) {
        (Some(val), n) => format!(
            "containerd {v} reads {} = {val:?} (config version {n})",
            setting.key.dotted()
        ),
        (None, 0) => format!(
            "no {}: containerd {v} uses its default {}",
            setting.main, setting.effective
        ),
        (None, _) => format!(
            "{} not set: containerd {v} uses its default {}",
            setting.key.dotted(),
            setting.effective
        ),
    };
    if let (Some(from), false) = (&setting.from, setting.from_main) {
        message.push_str(&format!(" from {from}"));
    }
    let mut out = vec![Finding::ok("config", message)];
    out.extend(setting.problems.iter().cloned());
    out
}

/// Rule "cri": containerd started with its CRI plugin disabled serves no CRI call, so the
/// kubelet can start no pod ([`super::disabled`]).
fn rule_cri(disabled: &[Disabled], v: Version) -> Vec<Finding> {
    disabled
        .iter()
        .map(|d| {
            Finding::fail(
                "cri",
                format!(
                    "{} lists {:?} in disabled_plugins: {}, so no pod can start",
                    d.file,
                    d.entry,
                    d.consequence(v)
                ),
                "pausebake bake (or configure) removes that entry and keeps the rest of the file",
            )
        })
        .collect()
}

/// Rule "name": the name CRI looks up (normalized), and a warning when 2.x will not pin it
/// because the config does not spell it that way.
fn rule_name(
    setting: &SandboxSetting,
    v: Version,
) -> std::result::Result<(String, Option<Finding>), Finding> {
    let name = crate::reference::normalize(&setting.effective).map_err(|e| {
        Finding::fail(
            "name",
            format!("{e:#}"),
            "set a valid, fully qualified reference (pausebake configure --sandbox-image)",
        )
    })?;
    let warning = (name != setting.effective && pinning(v) == Pinning::Raw).then(|| {
        Finding::warn(
            "name",
            format!(
                "the config says {:?}; CRI finds {name} but containerd {v} never pins it",
                setting.effective
            ),
            format!("write the full name {name:?} in the config"),
        )
    });
    Ok((name, warning))
}

/// Rule "byte order": containerd's bbolt reads only its own machine's byte order.
fn rule_byte_order(order: Option<Endian>, platform: Platform) -> Option<Finding> {
    let want = platform.arch.endian();
    let order = order.filter(|&o| o != want)?;
    Some(Finding::fail(
        "byte order",
        format!(
            "{} is {} but the root's platform {platform} is {}: containerd there fails with \"invalid database\" and no pod starts",
            store::META_DB,
            order_name(order),
            order_name(want)
        ),
        "the file was written for another architecture: move it aside and run pausebake bake (with the right --platform) to create one in the root's order",
    ))
}

/// Rule "image" (records): one malformed record anywhere makes containerd's image List fail
/// (`containerd-store.md` §3).
fn rule_records(images: Option<&Bucket>, namespace: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for (key, node) in images.map(|b| &b.entries).into_iter().flatten() {
        let ok = match node {
            crate::bolt::Node::Bucket(rec) => record_ok(rec),
            crate::bolt::Node::Value(_) => false,
        };
        if !ok {
            out.push(Finding::fail(
                "image",
                format!("image record {:?} in {namespace} is malformed: containerd cannot list any image in the namespace", String::from_utf8_lossy(key)),
                "remove or rewrite that record (re-run pausebake bake)",
            ));
        }
    }
    out
}

/// An image record and its target, with the finding that names them.
type Found<'a> = (&'a Bucket, Descriptor, Finding);

/// Rule "image": a record with exactly the name CRI looks up. `Ok(None)` when the record is
/// there but malformed (reported by [`rule_records`]).
fn rule_image<'a>(
    images: Option<&'a Bucket>,
    name: &str,
    namespace: &str,
) -> std::result::Result<Option<Found<'a>>, Finding> {
    let Some(rec) = images.and_then(|b| b.bucket(name.as_bytes())) else {
        let have: Vec<String> = images
            .map(|b| {
                b.entries
                    .keys()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let have = if have.is_empty() {
            "none".to_string()
        } else {
            have.join(", ")
        };
        return Err(Finding::fail(
            "image",
            format!("no image named {name} in namespace {namespace} (it has: {have}): CRI would pull it"),
            format!("pausebake bake --name {name}, or configure the name that is there"),
        ));
    };
    let Some(target) = rec.bucket(b"target").and_then(target_descriptor) else {
        return Ok(None);
    };
    let found = Finding::ok(
        "image",
        format!("{name} -> {} {}", target.media_type(), target.digest()),
    );
    Ok(Some((rec, target, found)))
}

/// Rule "digest": a name that pins a digest names the image with that digest (the live
/// rules ask it too).
pub fn rule_digest(name: &str, target: &Descriptor) -> Option<Finding> {
    let d = crate::reference::digest(name).filter(|d| *d != target.digest().as_ref())?;
    Some(Finding::fail(
        "digest",
        format!(
            "{name} pins digest {d}, but its record points at {}: a name that lies about its content",
            target.digest()
        ),
        "re-run pausebake bake with the image's own digest in --name, or a tag",
    ))
}

/// Rule "verbatim": containerd 2.3.0 to 2.3.3 also look the configured reference up exactly
/// as written ([`versions::SandboxLookup`]); when the config does not name it normalized,
/// a record of that very name must exist too.
fn rule_verbatim(
    images: Option<&Bucket>,
    setting: &SandboxSetting,
    name: &str,
    v: Version,
) -> Option<Finding> {
    let written = verbatim_wanted(setting, name, v)?;
    let present = images.and_then(|b| b.bucket(written.as_bytes())).is_some();
    Some(verbatim_finding(written, name, v, present))
}

/// The configured reference, when containerd `v` also looks it up as written and it is not
/// `name`, the normalized one (the live rules ask it too).
pub fn verbatim_wanted<'a>(setting: &'a SandboxSetting, name: &str, v: Version) -> Option<&'a str> {
    let written = setting.effective.as_str();
    (versions::sandbox_lookup(v) == versions::SandboxLookup::NormalizedAndVerbatim
        && written != name)
        .then_some(written)
}

/// What rule "verbatim" says when a record named `written` is `present` or not.
pub fn verbatim_finding(written: &str, name: &str, v: Version, present: bool) -> Finding {
    if present {
        return Finding::ok(
            "verbatim",
            format!("containerd {v} also looks {written:?} up as written: that record is there"),
        );
    }
    Finding::fail(
        "verbatim",
        format!(
            "the config says {written:?}: CRI finds {name}, but containerd {v}'s sandbox \
             controller looks {written:?} up as written and finds no such record, so the sandbox \
             fails (containerd#13513)"
        ),
        format!(
            "pausebake import (or bake) records the image under both names; or write the full \
             name {name:?} in the config"
        ),
    )
}

/// Rules "content", "gc" and "platform": the target leads to a manifest for the root's
/// platform with every blob present, sized, hashed and GC-labelled.
fn rule_content(
    inp: &Inputs,
    db: &Bucket,
    target: &Descriptor,
    name: &str,
) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let mut walk = Walk {
        inp,
        blobs: db.bucket_at(&[b"v1", inp.namespace.as_bytes(), b"content", b"blob"]),
        image: Image {
            blobs: Default::default(),
            target: target.clone(),
            names: vec![name.to_string()],
        },
        out: &mut out,
        manifests: Vec::new(),
        platforms: BTreeSet::new(),
    };
    let walked = crate::image::walk(target, |node| walk.visit(node));
    walk.out.extend(too_deep(walked, "re-run pausebake bake")?);
    let manifests = std::mem::take(&mut walk.manifests);
    let platforms: Vec<String> = std::mem::take(&mut walk.platforms).into_iter().collect();
    if out.iter().any(|f| f.status == Status::Fail) {
        return Ok(out);
    }
    out.push(match manifests.first() {
        Some((p, d)) => Finding::ok(
            "content",
            format!("manifest {d} for {p}: every blob present, sized, hashed and GC-labelled"),
        ),
        None => Finding::fail(
            "platform",
            format!(
                "{name} has no manifest for {} (it has: {}): CRI would pull it",
                inp.platform,
                platforms.join(", ")
            ),
            format!(
                "bake an image that includes {} (pausebake bake --platform {})",
                inp.platform, inp.platform
            ),
        ),
    });
    Ok(out)
}

/// Rule "pin": the CRI labels are consistent and honoured by this containerd version.
fn rule_pin(rec: &Bucket, name: &str, setting: &SandboxSetting, v: Version) -> Finding {
    let labels = rec.bucket(b"labels");
    let label = |k: &str| labels.and_then(|l| l.value(k.as_bytes()));
    let managed = label(store::LABEL_IMAGE) == Some(store::LABEL_IMAGE_MANAGED.as_bytes());
    let pinned = label(store::LABEL_PINNED) == Some(store::LABEL_PINNED_PINNED.as_bytes());
    match (managed, pinned, pinning(v)) {
        (true, false, Pinning::Normalized) => Finding::warn(
            "pin",
            format!("{name} is labelled managed but not pinned: containerd {v} will never pin it"),
            "re-run pausebake bake (writes both labels)",
        ),
        (false, true, _) => Finding::warn(
            "pin",
            format!("{name} is pinned but not labelled managed"),
            "re-run pausebake bake (writes both labels)",
        ),
        (_, true, Pinning::Unsupported) => Finding::ok(
            "pin",
            format!("{name} is pinned; containerd {v} predates pinning and ignores the label"),
        ),
        (_, true, Pinning::Raw) if setting.value.as_deref() != Some(name) => Finding::warn(
            "pin",
            format!("{name} is pinned, but containerd {v} re-labels it unpinned at startup: the config does not name it byte for byte"),
            format!("set {} = {name:?}", setting.key.dotted()),
        ),
        (_, true, _) => Finding::ok("pin", format!("{name} is pinned (managed + pinned)")),
        (_, false, Pinning::Unsupported) => Finding::ok("pin", format!("containerd {v} has no pinning")),
        (_, false, _) => Finding::ok(
            "pin",
            format!("{name} carries no CRI labels; containerd {v} adds them at startup"),
        ),
    }
}

/// Rule "kubernetes": the pause tag is the one the root's Kubernetes uses (the live rules
/// ask it too).
pub fn rule_kubernetes(k8s: Version, name: &str) -> Result<Finding> {
    let want = versions::kubernetes_pause_image(k8s)?;
    let minor = format!("{}.{}", k8s.major, k8s.minor);
    Ok(if name == want {
        Finding::ok(
            "kubernetes",
            format!("{name} is the pause of Kubernetes {minor}"),
        )
    } else {
        Finding::warn(
            "kubernetes",
            format!(
                "Kubernetes {minor} uses {want}, the config names {name}: kubeadm pre-pulls {want}"
            ),
            format!("pausebake bake --kubernetes-version {k8s} (or --name {want})"),
        )
    })
}

fn record_ok(rec: &Bucket) -> bool {
    let time_ok = |k: &[u8]| {
        rec.value(k)
            .is_none_or(|t| Time::from_go_binary(t).is_some())
    };
    time_ok(b"createdat")
        && time_ok(b"updatedat")
        && rec.bucket(b"target").and_then(target_descriptor).is_some()
}

fn target_descriptor(t: &Bucket) -> Option<Descriptor> {
    let digest: oci_spec::image::Digest = std::str::from_utf8(t.value(b"digest")?)
        .ok()?
        .parse()
        .ok()?;
    let mt = std::str::from_utf8(t.value(b"mediatype")?).ok()?;
    let size = u64::try_from(read_varint(t.value(b"size")?)?).ok()?;
    (!mt.is_empty() && size > 0).then(|| Descriptor::new(mt.into(), size, digest))
}

/// The sha256 of `bytes` when they are not the blob `d` describes (wrong size or hash).
fn damaged(d: &Descriptor, bytes: &[u8]) -> Option<String> {
    let actual = sha256_digest(bytes);
    (bytes.len() as u64 != d.size() || actual != d.digest().as_ref()).then_some(actual)
}

/// Rule "content"'s visitor of [`crate::image::walk`], and what it learns on the way.
struct Walk<'a, 'b> {
    inp: &'a Inputs<'a>,
    blobs: Option<&'a Bucket>,
    /// Blobs read so far, so `store::children` can parse them.
    image: Image,
    /// Findings; the tree is intact when the walk adds no failure.
    out: &'b mut Vec<Finding>,
    /// Manifests for the root's platform, in walk order.
    manifests: Vec<(ImagePlatform, String)>,
    /// Every platform the image offers, for messages.
    platforms: BTreeSet<String>,
}

impl Walk<'_, '_> {
    /// One blob of the walk: checks it and returns the children containerd needs below it
    /// (none when the blob cannot be read).
    fn visit(&mut self, node: crate::image::Node<'_>) -> Result<Vec<Descriptor>> {
        let d = node.desc;
        let digest = d.digest().to_string();
        if let Some(parent) = node.parent {
            self.gc_labelled(parent.digest().as_ref(), &digest);
        }
        if !self.record_and_blob(d, &digest)? {
            return Ok(Vec::new());
        }
        let kids = match store::children(&self.image, d) {
            Ok(k) => k,
            Err(e) => {
                self.out.push(Finding::fail(
                    "content",
                    format!("{e:#}"),
                    "re-run pausebake bake",
                ));
                return Ok(Vec::new());
            }
        };
        let mt = d.media_type().to_string();
        if store::is_manifest(&mt) {
            return self.visit_manifest(node, kids);
        }
        if store::is_index(&mt) {
            return self.visit_index(&digest, kids);
        }
        Ok(kids)
    }

    /// Reports when the content record of `parent` carries no `containerd.io/gc.ref.content*`
    /// label naming `digest` (startup GC would delete it).
    fn gc_labelled(&mut self, parent: &str, digest: &str) {
        let labelled = self
            .blobs
            .and_then(|b| b.bucket(parent.as_bytes()))
            .and_then(|r| r.bucket(b"labels"))
            .is_some_and(|l| {
                l.entries.iter().any(|(k, v)| {
                    let k = String::from_utf8_lossy(k);
                    let edge = store::is_gc_content_edge(&k);
                    edge && matches!(v, crate::bolt::Node::Value(v) if v == digest.as_bytes())
                })
            });
        if !labelled {
            self.out.push(Finding::fail(
                "gc",
                format!("missing GC label: content {parent} has no containerd.io/gc.ref.content.* label naming {digest}: startup GC deletes it"),
                "re-run pausebake bake (labels the whole tree)",
            ));
        }
    }

    /// Checks the content record and the blob file of `d`, keeping the bytes for parsing:
    /// `false` when either is missing or the blob is damaged (the walk cannot go on below
    /// it). A wrong size in the record is reported, and the walk goes on.
    fn record_and_blob(&mut self, d: &Descriptor, digest: &str) -> Result<bool> {
        let Some(record) = self.blobs.and_then(|b| b.bucket(digest.as_bytes())) else {
            self.out.push(Finding::fail(
                "content",
                format!(
                    "no content record for {digest} in meta.db: containerd cannot see the blob"
                ),
                "re-run pausebake bake",
            ));
            return Ok(false);
        };
        let size = record.value(b"size").and_then(read_varint);
        if size != i64::try_from(d.size()).ok() {
            self.out.push(Finding::fail(
                "content",
                format!(
                    "content record {digest} says size {size:?}, its descriptor {}",
                    d.size()
                ),
                "re-run pausebake bake",
            ));
        }
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let file = format!("{}/blobs/sha256/{hex}", store::CONTENT_DIR);
        let Some(bytes) = (self.inp.blob)(digest)? else {
            self.out.push(Finding::fail(
                "content",
                format!("missing blob {digest} ({file})"),
                "re-run pausebake bake (rewrites missing blobs)",
            ));
            return Ok(false);
        };
        if let Some(actual) = damaged(d, &bytes) {
            self.out.push(Finding::fail(
                "content",
                format!(
                    "corrupted blob {digest} ({file}): {} bytes hashing to {actual}",
                    bytes.len()
                ),
                "re-run pausebake bake (rewrites damaged blobs)",
            ));
            return Ok(false);
        }
        self.image.blobs.insert(digest.to_string(), bytes);
        Ok(true)
    }

    /// A manifest: its config says whether it is for our platform at all; if it is, its
    /// layers are needed too. The config itself is always checked.
    fn visit_manifest(
        &mut self,
        node: crate::image::Node<'_>,
        kids: Vec<Descriptor>,
    ) -> Result<Vec<Descriptor>> {
        let d = node.desc;
        let want = self.inp.platform;
        let Some(config) = kids.first().cloned() else {
            return Ok(kids);
        };
        if !self.peek(&config)? {
            // Unreadable: the config's own visit says why, and the platform stays unknown.
            return Ok(vec![config]);
        }
        let p = store::manifest_platform(&self.image, d)?;
        self.platforms.insert(p.to_string());
        if !p.matches(want) {
            if node.parent.is_none() {
                self.out.push(Finding::fail(
                    "platform",
                    format!("the image is for {p}, not {want}: CRI would pull it"),
                    format!("bake an image built for {want}"),
                ));
            }
            // Another platform's entry in an index: its layers are not needed here.
            return Ok(vec![config]);
        }
        self.manifests.push((p, d.digest().to_string()));
        Ok(kids)
    }

    /// Reads the blob `d` ahead of its visit, keeping it when intact (the visit reports what
    /// is wrong with it otherwise); whether it was.
    fn peek(&mut self, d: &Descriptor) -> Result<bool> {
        let digest = d.digest().to_string();
        let Some(bytes) = (self.inp.blob)(&digest)? else {
            return Ok(false);
        };
        let intact = damaged(d, &bytes).is_none();
        if intact {
            self.image.blobs.insert(digest, bytes);
        }
        Ok(intact)
    }

    /// An index: as containerd's platform filter, an entry naming another platform is not
    /// ours to check (its blobs may be absent by design); one without a platform is read in
    /// full and judged by its config.
    fn visit_index(&mut self, digest: &str, kids: Vec<Descriptor>) -> Result<Vec<Descriptor>> {
        let want = self.inp.platform;
        let mut kept = Vec::new();
        for kid in kids {
            if store::is_manifest(kid.media_type().as_ref()) && kid.platform().is_some() {
                let p = store::manifest_platform(&self.image, &kid)?;
                self.platforms.insert(p.to_string());
                if !p.matches(want) {
                    continue;
                }
                let kid_digest = kid.digest().to_string();
                let recorded = self.blobs.and_then(|b| b.bucket(kid_digest.as_bytes()));
                if recorded.is_none() && (self.inp.blob)(&kid_digest)?.is_none() {
                    // Listed but never imported: the import chose other platforms.
                    self.out.push(Finding::fail(
                        "platform",
                        format!("the {p} manifest {kid_digest} is listed in {digest} but was not imported (the import took other platforms): CRI would pull it"),
                        format!("pausebake bake --platform {want} (or import --all-platforms)"),
                    ));
                    continue;
                }
            }
            kept.push(kid);
        }
        Ok(kept)
    }
}

// --- the command -------------------------------------------------------------------------

/// The namespace CRI keeps its images in, whatever the config says.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// What `verify` prints.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub ok: bool,
    /// The root's facts, each with its source: the same value `bake` reports at its top.
    #[serde(flatten)]
    pub facts: Facts,
    pub namespace: String,
    /// The main containerd config and why that one.
    pub main_config: String,
    pub main_config_why: String,
    /// Every config file containerd loads, in load order.
    pub config_files: Vec<String>,
    /// The sandbox image containerd uses, the file that sets it (`None`: its default), and
    /// why containerd would refuse the config, if it would.
    pub sandbox_image: String,
    pub sandbox_image_from: Option<String>,
    pub config_refused: Option<String>,
    pub findings: Vec<Finding>,
}

fn order_name(order: Endian) -> &'static str {
    match order {
        Endian::Little => "little-endian",
        Endian::Big => "big-endian",
    }
}

/// Runs [`check`] over a root's facts (re-read after any change, so every version and the
/// platform keep their true source).
pub fn audit(facts: &RootFacts, namespace: &str) -> Result<Report> {
    let blob = |digest: &str| facts.read_blob(digest);
    let meta = &facts.meta;
    let findings = check(&Inputs {
        containerd: facts.containerd.value,
        kubernetes: facts.kubernetes.as_ref().map(|k| k.value),
        config: &facts.config.effective,
        db: (meta.exists && meta.order.is_some()).then_some(&meta.tree),
        db_order: meta.order,
        namespace,
        platform: facts.platform.value,
        blob: &blob,
        cri_disabled: &facts.config.cri_disabled,
        owner_warnings: &facts.owner.warnings,
    })?;
    Ok(Report::new(
        facts,
        namespace,
        with_cri_namespace(findings, facts, namespace),
    ))
}

/// The offline rules answer for `namespace`; CRI reads one namespace only, so an audit of
/// another one says that it does not count for a pod sandbox (as the live rules do).
fn with_cri_namespace(
    mut findings: Vec<Finding>,
    facts: &RootFacts,
    namespace: &str,
) -> Vec<Finding> {
    if namespace != CRI_NAMESPACE {
        let raw = facts.config.effective.image();
        let name = crate::reference::normalize(raw).unwrap_or_else(|_| raw.to_string());
        findings.push(Finding::warn(
            "cri",
            format!(
                "CRI reads images only from namespace {CRI_NAMESPACE}: it never sees {name} in \
                 {namespace}"
            ),
            format!("import into {CRI_NAMESPACE} (the default --namespace)"),
        ));
    }
    findings
}

impl Report {
    /// The report of `findings` about `facts` (the offline rules' or the live ones').
    pub fn new(facts: &RootFacts, namespace: &str, findings: Vec<Finding>) -> Report {
        let eff = &facts.config.effective;
        Report {
            ok: findings.iter().all(|f| f.status != Status::Fail),
            facts: Facts::of(facts),
            namespace: namespace.to_string(),
            main_config: eff.main.clone(),
            main_config_why: eff.main_why.clone(),
            config_files: eff.files.iter().map(|f| f.path.clone()).collect(),
            sandbox_image: eff.image().to_string(),
            sandbox_image_from: eff.sandbox.as_ref().map(|s| eff.path(s.file).to_string()),
            config_refused: eff.refused.clone(),
            findings,
        }
    }
}

pub fn print(report: &Report, json: bool) -> Result<()> {
    if json {
        crate::output::print_json(report)?;
        return Ok(());
    }
    println!(
        "root {}: containerd {} ({}), platform {} ({})",
        report.facts.root,
        report.facts.containerd_version,
        report.facts.containerd_version_source,
        report.facts.platform,
        report.facts.platform_source
    );
    println!(
        "owner {}: store {}, socket {}{}",
        report.facts.owner,
        report.facts.containerd_root,
        report.facts.containerd_address,
        report
            .facts
            .owner_asks
            .as_ref()
            .map_or(String::new(), |a| format!("; asks for {a}"))
    );
    println!(
        "config {} ({}); loads {}",
        report.main_config,
        report.main_config_why,
        if report.config_files.is_empty() {
            "no file".to_string()
        } else {
            report.config_files.join(", ")
        }
    );
    for f in &report.findings {
        let message = crate::output::one_line(&f.message);
        println!("{} {}: {message}", f.status.tag(), f.check);
        if let Some(fix) = &f.fix {
            println!("     fix: {fix}");
        }
    }
    println!(
        "{}",
        if report.ok {
            "verify: a pod sandbox would start here with no network"
        } else {
            "verify: problems found: CRI would try to pull the sandbox image"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::store::tests::{spec, test_image};
    use crate::containerd::store::{merge, records};
    use crate::platform::Arch;

    const AMD64: Platform = Platform { arch: Arch::Amd64 };

    fn baked(pin: bool) -> (Bucket, Image) {
        let image = test_image(&[Arch::Amd64, Arch::Arm64], true);
        let spec = spec(Some(AMD64), pin);
        let mut db = Bucket::default();
        merge(&mut db, &records(&image, &spec).unwrap().tree, "k8s.io").unwrap();
        (db, image)
    }

    const V3_CONFIG: &str = "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'registry.k8s.io/pause:3.10'\n";
    const V2_CONFIG: &str = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10\"\n";

    /// The effective config of a root whose only config file is `text`, for [`Inputs`].
    fn eff(text: &str, v: Version) -> &'static EffectiveConfig {
        Box::leak(Box::new(crate::containerd::effective::of_main_text(
            Some(text),
            v,
        )))
    }

    fn run(
        db: &Bucket,
        image: &Image,
        config: &str,
        v: Version,
        platform: Platform,
    ) -> Vec<Finding> {
        let blob = |d: &str| Ok(image.blobs.get(d).cloned());
        check(&Inputs {
            containerd: v,
            kubernetes: Some(Version::new(1, 31, 0)),
            config: eff(config, v),
            db: Some(db),
            db_order: Some(platform.arch.endian()),
            namespace: "k8s.io",
            platform,
            blob: &blob,
            cri_disabled: &[],
            owner_warnings: &[],
        })
        .unwrap()
    }

    /// Inputs for containerd 2.1.9 on amd64, reading [`V3_CONFIG`].
    fn amd64_inputs<'a>(
        db: &'a Bucket,
        blob: &'a dyn Fn(&str) -> Result<Option<Vec<u8>>>,
        kubernetes: Option<Version>,
    ) -> Inputs<'a> {
        Inputs {
            containerd: Version::new(2, 1, 9),
            kubernetes,
            config: eff(V3_CONFIG, Version::new(2, 1, 9)),
            db: Some(db),
            db_order: Some(Endian::Little),
            namespace: "k8s.io",
            platform: AMD64,
            blob,
            cri_disabled: &[],
            owner_warnings: &[],
        }
    }

    fn fails(f: &[Finding]) -> Vec<String> {
        f.iter()
            .filter(|f| f.status == Status::Fail)
            .map(|f| format!("{}: {}", f.check, f.message))
            .collect()
    }

    #[test]
    fn a_baked_root_passes_on_every_layout() {
        let (db, image) = baked(true);
        for (config, v) in [
            (V3_CONFIG, Version::new(2, 1, 9)),
            (V2_CONFIG, Version::new(1, 7, 24)),
            (V2_CONFIG, Version::new(1, 6, 20)),
            (V2_CONFIG, Version::new(2, 0, 0)),
        ] {
            let f = run(&db, &image, config, v, AMD64);
            assert_eq!(fails(&f), Vec::<String>::new(), "{v}");
            assert!(f.iter().all(|f| f.status == Status::Ok), "{v}: {f:#?}");
        }
    }

    /// A root baked under `names`, its config naming the first one as written.
    fn baked_as(names: &[&str]) -> (Bucket, Image, String) {
        let image = test_image(&[Arch::Amd64], true);
        let mut spec = spec(Some(AMD64), true);
        spec.names = names.iter().map(|n| n.to_string()).collect();
        let mut db = Bucket::default();
        merge(&mut db, &records(&image, &spec).unwrap().tree, "k8s.io").unwrap();
        let config = format!(
            "version = 4\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = '{}'\n",
            names[0]
        );
        (db, image, config)
    }

    #[test]
    fn a_record_whose_name_lies_about_its_digest_fails() {
        let wrong = format!("registry.k8s.io/pause@sha256:{}", "0".repeat(64));
        let (db, image, config) = baked_as(&[&wrong]);
        let f = fails(&run(&db, &image, &config, Version::new(2, 3, 4), AMD64));
        assert_eq!(
            f,
            [format!(
                "digest: {wrong} pins digest sha256:{}, but its record points at {}: a name that lies about its content",
                "0".repeat(64),
                image.target.digest()
            )]
        );
        let right = format!("registry.k8s.io/pause@{}", image.target.digest());
        let (db, image, config) = baked_as(&[&right]);
        assert_eq!(
            fails(&run(&db, &image, &config, Version::new(2, 3, 4), AMD64)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn containerd_2_3_1_needs_the_configured_name_verbatim_too() {
        let normalized = "docker.io/rancher/mirrored-pause:3.6";
        let (db, image, _) = baked_as(&[normalized]);
        let config = "version = 4\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'rancher/mirrored-pause:3.6'\n";
        let f = fails(&run(&db, &image, config, Version::new(2, 3, 1), AMD64));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("verbatim: the config says \"rancher/mirrored-pause:3.6\": CRI finds docker.io/rancher/mirrored-pause:3.6, but containerd 2.3.1's sandbox controller"),
            "{f:?}"
        );
        // 2.3.4 normalizes there too
        assert!(fails(&run(&db, &image, config, Version::new(2, 3, 4), AMD64)).is_empty());
        // recorded under both names (what import does): 2.3.1 finds both
        let (db, image, _) = baked_as(&[normalized, "rancher/mirrored-pause:3.6"]);
        let f = run(&db, &image, config, Version::new(2, 3, 1), AMD64);
        assert!(fails(&f).is_empty(), "{f:?}");
        assert!(f
            .iter()
            .any(|f| f.check == "verbatim" && f.status == Status::Ok));
    }

    #[test]
    fn each_fault_is_named() {
        let (db, image) = baked(true);
        let v = Version::new(2, 1, 9);
        let layer = image
            .blobs
            .keys()
            .find(|d| image.blobs[*d] == b"layer for amd64")
            .unwrap()
            .clone();

        let mut missing = image.clone();
        missing.blobs.remove(&layer);
        assert_eq!(
            fails(&run(&db, &missing, V3_CONFIG, v, AMD64)),
            [format!(
                "content: missing blob {layer} (io.containerd.content.v1.content/blobs/sha256/{})",
                &layer[7..]
            )]
        );

        let mut corrupt = image.clone();
        corrupt
            .blobs
            .insert(layer.clone(), b"LAYER FOR AMD64".to_vec());
        let f = fails(&run(&db, &corrupt, V3_CONFIG, v, AMD64));
        assert_eq!(f.len(), 1);
        assert!(
            f[0].starts_with(&format!("content: corrupted blob {layer}")),
            "{f:?}"
        );

        let wrong = V3_CONFIG.replace("3.10", "3.9");
        assert_eq!(fails(&run(&db, &image, &wrong, v, AMD64)), ["image: no image named registry.k8s.io/pause:3.9 in namespace k8s.io (it has: registry.k8s.io/pause:3.10): CRI would pull it"]);

        let f = fails(&run(
            &db,
            &image,
            V3_CONFIG,
            v,
            Platform { arch: Arch::S390x },
        ));
        assert_eq!(
            f,
            ["platform: registry.k8s.io/pause:3.10 has no manifest for linux/s390x (it has: linux/amd64, linux/arm64): CRI would pull it"]
        );

        let mut unlabelled = db.clone();
        let m_rec = unlabelled
            .bucket_at_mut(&[b"v1", b"k8s.io", b"content", b"blob"])
            .unwrap()
            .entries
            .iter_mut()
            .find_map(|(_, n)| match n {
                crate::bolt::Node::Bucket(b)
                    if b.bucket(b"labels").is_some_and(|l| {
                        l.value(b"containerd.io/gc.ref.content.l.0").is_some()
                    }) =>
                {
                    Some(b)
                }
                _ => None,
            })
            .unwrap();
        m_rec
            .bucket_at_mut(&[b"labels"])
            .unwrap()
            .delete(b"containerd.io/gc.ref.content.l.0");
        let f = fails(&run(&unlabelled, &image, V3_CONFIG, v, AMD64));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("gc: missing GC label: content sha256:")
                && f[0].ends_with(&format!("naming {layer}: startup GC deletes it")),
            "{f:?}"
        );
    }

    #[test]
    fn entries_without_platform_are_judged_by_their_config() {
        // As a docker archive's synthesized index: no platform on the entries. Like
        // containerd, import keeps every such manifest, and verify reads each.
        let image = test_image(&[Arch::Amd64, Arch::Arm64], false);
        let spec = spec(Some(AMD64), true);
        let recs = records(&image, &spec).unwrap();
        assert_eq!(recs.selection.blobs.len(), 7);
        assert_eq!(recs.selection.manifests.len(), 1);
        let mut db = Bucket::default();
        merge(&mut db, &recs.tree, "k8s.io").unwrap();
        let v = Version::new(2, 1, 9);
        assert_eq!(
            fails(&run(&db, &image, V3_CONFIG, v, AMD64)),
            Vec::<String>::new()
        );
        let s390x = Platform { arch: Arch::S390x };
        assert_eq!(
            fails(&run(&db, &image, V3_CONFIG, v, s390x)),
            ["platform: registry.k8s.io/pause:3.10 has no manifest for linux/s390x (it has: linux/amd64, linux/arm64): CRI would pull it"]
        );
        // containerd reads the arm64 entry's config to learn its platform: without it, no
        // image; arm64's layer it never needs on amd64.
        let find = |want: &str| {
            image
                .blobs
                .iter()
                .find(|(_, b)| String::from_utf8_lossy(b).contains(want))
                .map(|(d, _)| d.clone())
                .unwrap()
        };
        let mut on_disk = image.clone();
        on_disk.blobs.remove(&find("layer for arm64"));
        assert_eq!(
            fails(&run(&db, &on_disk, V3_CONFIG, v, AMD64)),
            Vec::<String>::new()
        );
        let arm_config = find("\"architecture\":\"arm64\"");
        on_disk.blobs.remove(&arm_config);
        let f = fails(&run(&db, &on_disk, V3_CONFIG, v, AMD64));
        assert_eq!(
            f,
            [format!(
                "content: missing blob {arm_config} (io.containerd.content.v1.content/blobs/sha256/{})",
                &arm_config[7..]
            )]
        );
    }

    #[test]
    fn too_deep_an_image_is_a_finding() {
        let v = Version::new(2, 1, 9);
        let mut image = test_image(&[Arch::Amd64, Arch::Arm64], true);
        for _ in 1..crate::image::MAX_DEPTH {
            image.wrap_in_index();
        }
        let mut db = Bucket::default();
        let recs = records(&image, &spec(Some(AMD64), true)).unwrap();
        merge(&mut db, &recs.tree, "k8s.io").unwrap();
        assert_eq!(
            fails(&run(&db, &image, V3_CONFIG, v, AMD64)),
            Vec::<String>::new()
        );
        // One index more, recorded by hand: `records` refuses to write it.
        let deepest = test_image(&[Arch::Amd64, Arch::Arm64], true).target;
        image.wrap_in_index();
        let target = image.target.clone();
        let blobs = db
            .bucket_at_mut(&[b"v1", b"k8s.io", b"content", b"blob"])
            .unwrap();
        let rec = blobs
            .bucket_at_mut(&[target.digest().to_string().as_bytes()])
            .unwrap();
        rec.put(b"size", &store::varint(target.size() as i64))
            .unwrap();
        let labels = rec.bucket_at_mut(&[b"labels"]).unwrap();
        let inner = image.children(&target).unwrap();
        for (k, v) in store::child_labels(&inner) {
            labels.put(k.as_bytes(), v.as_bytes()).unwrap();
        }
        let t = db
            .bucket_at_mut(&[
                b"v1",
                b"k8s.io",
                b"images",
                b"registry.k8s.io/pause:3.10",
                b"target",
            ])
            .unwrap();
        t.put(b"digest", target.digest().to_string().as_bytes())
            .unwrap();
        t.put(b"size", &store::varint(target.size() as i64))
            .unwrap();
        assert_eq!(
            fails(&run(&db, &image, V3_CONFIG, v, AMD64)),
            [format!(
                "content: refusing index {}: indexes nest deeper than 4, so what lies below it goes unchecked",
                deepest.digest()
            )]
        );
    }

    #[test]
    fn config_keys_per_version() {
        let (db, image) = baked(true);
        // A 2.x key in a 1.7.24 world: refused config.
        let f = fails(&run(&db, &image, V3_CONFIG, Version::new(1, 7, 24), AMD64));
        assert_eq!(
            f[0],
            "config: containerd 1.7.24 refuses a version = 3 config and will not start"
        );
        // sandbox_image in a version 3 file is ignored by 2.x.
        let cfg = "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10\"\n";
        let f = fails(&run(&db, &image, cfg, Version::new(2, 1, 9), AMD64));
        assert!(
            f[0].starts_with("config: containerd 2.1.9 ignores sandbox_image"),
            "{f:?}"
        );
        // No config at all: the version's default, which is not what was baked on 1.7.
        let v = Version::new(1, 7, 24);
        let s = sandbox_setting(&crate::containerd::effective::of_main_text(None, v), v);
        assert_eq!(s.effective, "registry.k8s.io/pause:3.8");
    }

    #[test]
    fn pin_labels_are_judged_per_version() {
        let (db, image) = baked(false);
        let f = run(&db, &image, V3_CONFIG, Version::new(2, 1, 9), AMD64);
        let pin = f.iter().find(|f| f.check == "pin").unwrap();
        assert_eq!(pin.status, Status::Ok);
        let (mut db, image) = baked(true);
        db.bucket_at_mut(&[
            b"v1",
            b"k8s.io",
            b"images",
            b"registry.k8s.io/pause:3.10",
            b"labels",
        ])
        .unwrap()
        .delete(store::LABEL_PINNED.as_bytes());
        let f = run(&db, &image, V2_CONFIG, Version::new(1, 7, 24), AMD64);
        let pin = f.iter().find(|f| f.check == "pin").unwrap();
        assert_eq!(pin.status, Status::Warn);
        assert!(pin.message.contains("will never pin it"));
    }

    #[test]
    fn a_meta_db_in_the_wrong_byte_order_fails() {
        let (db, image) = baked(true);
        let blob = |d: &str| Ok(image.blobs.get(d).cloned());
        let s390x = Platform { arch: Arch::S390x };
        let inputs = |order| Inputs {
            containerd: Version::new(2, 1, 9),
            kubernetes: None,
            config: eff(V3_CONFIG, Version::new(2, 1, 9)),
            db: Some(&db),
            db_order: Some(order),
            namespace: "k8s.io",
            platform: s390x,
            blob: &blob,
            cri_disabled: &[],
            owner_warnings: &[],
        };
        let f = check(&inputs(Endian::Little)).unwrap();
        let bad = f.iter().find(|f| f.check == "byte order").unwrap();
        assert_eq!(bad.status, Status::Fail);
        assert_eq!(
            bad.message,
            "meta.db is little-endian but the root's platform linux/s390x is big-endian: containerd there fails with \"invalid database\" and no pod starts"
        );
        let f = check(&inputs(Endian::Big)).unwrap();
        assert!(f.iter().all(|f| f.check != "byte order"), "{f:?}");
    }

    #[test]
    fn the_pause_tag_is_checked_against_kubernetes() {
        let (db, image) = baked(true);
        let blob = |d: &str| Ok(image.blobs.get(d).cloned());
        let f = check(&amd64_inputs(&db, &blob, Some(Version::new(1, 34, 1)))).unwrap();
        let k = f.iter().find(|f| f.check == "kubernetes").unwrap();
        assert_eq!(k.status, Status::Warn);
        assert_eq!(k.message, "Kubernetes 1.34 uses registry.k8s.io/pause:3.10.1, the config names registry.k8s.io/pause:3.10: kubeadm pre-pulls registry.k8s.io/pause:3.10.1");
        assert!(f.iter().all(|f| f.status != Status::Fail));
    }

    // --- one test per rule ---------------------------------------------------------------

    fn setting(config: Option<&str>, v: Version) -> SandboxSetting {
        sandbox_setting(&crate::containerd::effective::of_main_text(config, v), v)
    }

    #[test]
    fn rule_config_names_the_key_read() {
        let v = Version::new(2, 1, 9);
        let f = rule_config(&setting(Some(V3_CONFIG), v), v);
        assert_eq!(f[0].message, "containerd 2.1.9 reads plugins.\"io.containerd.cri.v1.images\".pinned_images.sandbox = \"registry.k8s.io/pause:3.10\" (config version 3)");
        let f = rule_config(&setting(None, v), v);
        assert_eq!(f[0].message, "no /etc/containerd/config.toml: containerd 2.1.9 uses its default registry.k8s.io/pause:3.10");
        let old = Version::new(1, 7, 24);
        assert_eq!(
            rule_config(&setting(Some(V3_CONFIG), old), old)[0].status,
            Status::Fail
        );
        // drop-ins: the merged config decides, and the finding names the file
        let main = "version = 2\nimports = [\"conf.d/99-nvidia.toml\"]\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10\"\n";
        let nvidia = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n  runtime_type = \"io.containerd.runc.v2\"\n";
        let files = [
            ("/etc/containerd/config.toml", Some(main)),
            ("/etc/containerd/conf.d/99-nvidia.toml", Some(nvidia)),
        ];
        let eff = crate::containerd::effective::of_texts(&files, old);
        let f = rule_config(&sandbox_setting(&eff, old), old);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].status, Status::Fail);
        assert!(
            f[0].message.starts_with("/etc/containerd/config.toml sets plugins.\"io.containerd.grpc.v1.cri\".sandbox_image = \"registry.k8s.io/pause:3.10\", which containerd 1.7.24 does not use: /etc/containerd/conf.d/99-nvidia.toml replaces the whole CRI plugin table"),
            "{}",
            f[0].message
        );
        // 2.x deep-merges: a drop-in setting the key wins, named; the main file's is a warning
        let pinned = "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'registry.k8s.io/pause:3.10.1'\n";
        let files = [
            ("/etc/containerd/config.toml", Some(main)),
            ("/etc/containerd/conf.d/99-nvidia.toml", Some(pinned)),
        ];
        let eff = crate::containerd::effective::of_texts(&files, v);
        let f = rule_config(&sandbox_setting(&eff, v), v);
        assert_eq!(f[0].status, Status::Ok);
        assert_eq!(f[0].message, "containerd 2.1.9 reads plugins.\"io.containerd.cri.v1.images\".pinned_images.sandbox = \"registry.k8s.io/pause:3.10.1\" (config version 3) from /etc/containerd/conf.d/99-nvidia.toml");
        assert_eq!(f[1].status, Status::Warn);
        // merged version 3 (the drop-in's): the main file's version 2 key is not read
        assert!(
            f[1].message
                .starts_with("containerd 2.1.9 ignores sandbox_image in a version = 3 config")
                && f[1].message.contains("/etc/containerd/config.toml sets"),
            "{}",
            f[1].message
        );
    }

    #[test]
    fn rule_name_normalizes_and_warns_when_2x_cannot_pin() {
        let v = Version::new(2, 1, 9);
        let short = "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'pause:3.10'\n";
        let (name, warning) = rule_name(&setting(Some(short), v), v).unwrap();
        assert_eq!(name, "docker.io/library/pause:3.10");
        assert!(warning.unwrap().message.contains("never pins it"));
        let (_, warning) = rule_name(&setting(Some(V3_CONFIG), v), v).unwrap();
        assert_eq!(warning, None);
        let bad = V3_CONFIG.replace("registry.k8s.io/pause:3.10", "Bad:Name");
        assert_eq!(
            rule_name(&setting(Some(&bad), v), v).unwrap_err().check,
            "name"
        );
    }

    #[test]
    fn rule_cri_names_the_file_and_the_entry() {
        let v = Version::new(1, 7, 24);
        assert!(rule_cri(&[], v).is_empty());
        let off = |refused| Disabled {
            file: "/etc/containerd/config.toml".into(),
            entry: "cri".into(),
            refused,
        };
        let f = rule_cri(&[off(false)], v);
        assert_eq!(f[0].status, Status::Fail);
        assert_eq!(
            f[0].message,
            "/etc/containerd/config.toml lists \"cri\" in disabled_plugins: containerd 1.7.24 starts without CRI and answers every CRI call with \"unknown service\", so no pod can start"
        );
        let f = rule_cri(&[off(true)], v);
        assert!(
            f[0].message.contains("containerd 1.7.24 refuses to start"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn rule_byte_order_wants_the_platforms() {
        let s390x = Platform { arch: Arch::S390x };
        assert_eq!(rule_byte_order(Some(Endian::Big), s390x), None);
        assert_eq!(rule_byte_order(None, s390x), None);
        assert_eq!(
            rule_byte_order(Some(Endian::Little), s390x).unwrap().check,
            "byte order"
        );
    }

    #[test]
    fn rule_records_and_image_find_the_name() {
        let (db, _) = baked(true);
        let images = db.bucket_at(&[b"v1", b"k8s.io", b"images"]);
        assert!(rule_records(images, "k8s.io").is_empty());
        let (_, target, found) = rule_image(images, "registry.k8s.io/pause:3.10", "k8s.io")
            .unwrap()
            .unwrap();
        assert_eq!(found.status, Status::Ok);
        assert_eq!(target.size(), 491);
        let missing = rule_image(images, "registry.k8s.io/pause:3.9", "k8s.io").unwrap_err();
        assert!(missing
            .message
            .contains("(it has: registry.k8s.io/pause:3.10)"));
        let mut broken = db.clone();
        broken
            .bucket_at_mut(&[b"v1", b"k8s.io", b"images", b"registry.k8s.io/pause:3.10"])
            .unwrap()
            .delete(b"target");
        let images = broken.bucket_at(&[b"v1", b"k8s.io", b"images"]);
        assert_eq!(rule_records(images, "k8s.io").len(), 1);
        assert!(rule_image(images, "registry.k8s.io/pause:3.10", "k8s.io")
            .unwrap()
            .is_none());
    }

    #[test]
    fn rule_content_passes_an_intact_tree() {
        let (db, image) = baked(true);
        let blob = |d: &str| Ok(image.blobs.get(d).cloned());
        let f = rule_content(
            &amd64_inputs(&db, &blob, None),
            &db,
            &image.target,
            "registry.k8s.io/pause:3.10",
        )
        .unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0]
            .message
            .ends_with("every blob present, sized, hashed and GC-labelled"));
    }

    #[test]
    fn rule_pin_reads_both_labels() {
        let (db, _) = baked(true);
        let rec = db
            .bucket_at(&[b"v1", b"k8s.io", b"images", b"registry.k8s.io/pause:3.10"])
            .unwrap();
        let v = Version::new(2, 1, 9);
        let f = rule_pin(
            rec,
            "registry.k8s.io/pause:3.10",
            &setting(Some(V3_CONFIG), v),
            v,
        );
        assert_eq!(
            f.message,
            "registry.k8s.io/pause:3.10 is pinned (managed + pinned)"
        );
        let f = rule_pin(rec, "registry.k8s.io/pause:3.10", &setting(None, v), v);
        assert_eq!(f.status, Status::Warn);
    }

    #[test]
    fn rule_kubernetes_compares_the_tag() {
        let f = rule_kubernetes(Version::new(1, 31, 0), "registry.k8s.io/pause:3.10").unwrap();
        assert_eq!(f.status, Status::Ok);
        let f = rule_kubernetes(Version::new(1, 30, 0), "registry.k8s.io/pause:3.10").unwrap();
        assert_eq!(f.status, Status::Warn);
    }
}
