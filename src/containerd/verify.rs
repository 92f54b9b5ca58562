//! Replays containerd's lookup of the sandbox image against a root, offline: would a pod
//! sandbox start on this root with no network?
//!
//! The questions, in the order containerd asks them (`containerd-store.md` §7, §8): which
//! sandbox image name does this containerd version read from this config (or default to);
//! is there an image record with exactly that normalized name in the namespace, well formed;
//! does its target lead to a manifest for the root's platform, with every blob present, of
//! the right size and sha256, and every edge carried by a `containerd.io/gc.ref.content*`
//! label so startup GC keeps it; are the CRI pin labels consistent and honoured by that
//! version; and does the pause tag match the Kubernetes version found in the root.
//!
//! Failures are what would make CRI pull; warnings are worth fixing but do not reach out.
//! The checks themselves ([`check`]) are pure: the caller hands in the database tree, the
//! config text and a blob reader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use oci_spec::image::Descriptor;

use crate::bolt::Bucket;
use crate::cli::VerifyArgs;
use crate::containerd::config::{containerd_version_or_newest, kubernetes_version, Found};
use crate::containerd::effective::{self, EffectiveConfig};
use crate::containerd::store::{self, read_varint, ImagePlatform, Time};
use crate::containerd::versions::{self, ConfigVersion, SandboxKey, Version};
use crate::image::Image;
use crate::platform::{Endian, Platform};
use crate::rootfs::Root;

// --- versions ----------------------------------------------------------------------------

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

// --- config ------------------------------------------------------------------------------

/// The sandbox image setting as a given containerd version reads a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSetting {
    /// The config's `version` (1 when absent), 0 when there is no config file.
    pub config_version: i64,
    /// The key this containerd reads the sandbox image from.
    pub key: SandboxKey,
    /// The raw value at that key, if set.
    pub value: Option<String>,
    /// The name containerd uses: the value, else its built-in default.
    pub effective: String,
    /// Why the file is not read the way one might think, if it is not.
    pub problems: Vec<Finding>,
}

const KEY_V1: SandboxKey = versions::sandbox_key(ConfigVersion::V1);
const KEY_V2: SandboxKey = versions::sandbox_key(ConfigVersion::V2);
const KEY_V3: SandboxKey = versions::sandbox_key(ConfigVersion::V3);

/// The string at `key` in `doc`, if it is set to one.
fn get_str(doc: &toml_edit::DocumentMut, key: SandboxKey) -> Option<&str> {
    let mut item = doc.as_item();
    for table in key.tables {
        item = item.get(table)?;
    }
    item.get(key.key)?.as_str()
}

/// Reads the sandbox image the way containerd `v` would from `config` (`None`: no file).
pub fn sandbox_setting(config: Option<&str>, v: Version) -> Result<SandboxSetting> {
    let default = versions::default_sandbox_image(v)?.to_string();
    let v1x = v.major < 2;
    let Some(text) = config else {
        return Ok(SandboxSetting {
            config_version: 0,
            key: if v1x { KEY_V2 } else { KEY_V3 },
            value: None,
            effective: default,
            problems: Vec::new(),
        });
    };
    let doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {} as TOML", store::CONFIG_PATH))?;
    let version = doc.get("version").and_then(|i| i.as_integer()).unwrap_or(1);
    let v1 = get_str(&doc, KEY_V1);
    let v2 = get_str(&doc, KEY_V2);
    let v3 = get_str(&doc, KEY_V3);
    let mut problems = Vec::new();
    let (key, value) = match (v1x, version) {
        (true, 1) => (KEY_V1, v1),
        (true, 2) => (KEY_V2, v2),
        (true, 3) => {
            let rejected =
                (v.minor == 6 && v.patch >= 32) || (v.minor == 7 && v.patch >= 17) || v.minor > 7;
            problems.push(Finding::fail(
                "config",
                if rejected {
                    format!("containerd {v} refuses a version = 3 config and will not start")
                } else {
                    format!("containerd {v} reads a version = 3 config as unknown sections: the sandbox image is its default {default}")
                },
                "write a version = 2 config with plugins.\"io.containerd.grpc.v1.cri\".sandbox_image (pausebake configure does)",
            ));
            (KEY_V2, None)
        }
        (false, 1 | 2) => (
            if version == 1 { KEY_V1 } else { KEY_V2 },
            if version == 1 { v1 } else { v2 },
        ),
        (false, 3) => {
            if v3.is_none() && v2.is_some() {
                problems.push(Finding::fail(
                    "config",
                    format!("containerd {v} ignores sandbox_image in a version = 3 config (unknown key under io.containerd.grpc.v1.cri)"),
                    "set plugins.\"io.containerd.cri.v1.images\".pinned_images.sandbox (pausebake configure does)",
                ));
            }
            (KEY_V3, v3)
        }
        (_, n) => {
            problems.push(Finding::fail(
                "config",
                format!("containerd {v} refuses config version = {n} and will not start"),
                "use version = 2 for containerd 1.x, version = 3 for 2.0-2.2",
            ));
            (if v1x { KEY_V2 } else { KEY_V3 }, None)
        }
    };
    let value = value.map(str::to_string);
    Ok(SandboxSetting {
        config_version: version,
        key,
        effective: value.clone().unwrap_or(default),
        value,
        problems,
    })
}

/// The sandbox setting of a merged config: refusals and settings lost to the default fail,
/// a setting overridden by a later file's is a warning.
fn effective_setting(eff: &EffectiveConfig, v: Version) -> SandboxSetting {
    let mut problems = Vec::new();
    if let Some(why) = &eff.refused {
        problems.push(Finding::fail(
            "config",
            why.clone(),
            "fix that file (pausebake configure refuses to edit such a config)",
        ));
    }
    for s in &eff.shadowed {
        let message = format!(
            "{} sets {} = {:?}, which containerd {v} does not use: {}",
            eff.path(s.file),
            s.key,
            s.value,
            eff.describe()
        );
        let fix = "pausebake configure writes the name into the file that decides it";
        problems.push(if eff.sandbox.is_none() {
            Finding::fail("config", message, fix)
        } else {
            Finding::warn("config", message, fix)
        });
    }
    let key = if v.major < 2 { KEY_V2 } else { KEY_V3 };
    SandboxSetting {
        config_version: if eff.files.is_empty() {
            0
        } else {
            eff.merged_version
        },
        key,
        value: eff.sandbox.as_ref().map(|s| s.value.clone()),
        effective: eff.image().to_string(),
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
    fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }
    fn warn(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Everything [`check`] looks at, gathered from a root by [`verify`] (or built by a test).
pub struct Inputs<'a> {
    pub containerd: Version,
    pub kubernetes: Option<Version>,
    pub config: Option<&'a str>,
    /// The merged config (main file and imports); when set, it decides instead of `config`.
    pub effective: Option<&'a EffectiveConfig>,
    /// `v1` root of `meta.db`, `None` when the file does not exist.
    pub db: Option<&'a Bucket>,
    /// `meta.db`'s byte order, `None` when the file does not exist.
    pub db_order: Option<Endian>,
    pub namespace: &'a str,
    pub platform: Platform,
    /// Reads a blob file by digest: `None` when absent.
    pub blob: &'a dyn Fn(&str) -> Result<Option<Vec<u8>>>,
}

/// The whole audit. Never stops at the first failure: every finding is listed.
pub fn check(inp: &Inputs) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let v = inp.containerd;
    let setting = match inp.effective {
        Some(eff) => effective_setting(eff, v),
        None => sandbox_setting(inp.config, v)?,
    };
    // a warning (a setting overridden by a later file) does not stop the config from being read
    let config_failed = setting.problems.iter().any(|f| f.status == Status::Fail);
    out.extend(setting.problems.iter().cloned());
    if let (false, Some(eff)) = (config_failed, inp.effective) {
        out.push(Finding::ok("config", eff.describe()));
    } else if !config_failed {
        out.push(Finding::ok(
            "config",
            match (&setting.value, setting.config_version) {
                (Some(val), n) => format!(
                    "containerd {v} reads {} = {val:?} (config version {n})",
                    setting.key.dotted()
                ),
                (None, 0) => format!(
                    "no {}: containerd {v} uses its default {}",
                    store::CONFIG_PATH,
                    setting.effective
                ),
                (None, _) => format!(
                    "{} not set: containerd {v} uses its default {}",
                    setting.key.dotted(),
                    setting.effective
                ),
            },
        ));
    }
    let name = match store::normalize_ref(&setting.effective) {
        Ok(n) => n,
        Err(e) => {
            out.push(Finding::fail(
                "name",
                format!("{e:#}"),
                "set a valid, fully qualified reference (pausebake configure --sandbox-image)",
            ));
            return Ok(out);
        }
    };
    if name != setting.effective && pinning(v) == Pinning::Raw {
        out.push(Finding::warn(
            "name",
            format!(
                "the config says {:?}; CRI finds {name} but containerd {v} never pins it",
                setting.effective
            ),
            format!("write the full name {name:?} in the config"),
        ));
    }

    let Some(db) = inp.db else {
        out.push(Finding::fail(
            "image",
            "no meta.db: containerd's store under this root is empty",
            "run pausebake bake (or import) on this root",
        ));
        return Ok(out);
    };
    let want_order = inp.platform.arch.endian();
    if let Some(order) = inp.db_order.filter(|&o| o != want_order) {
        // containerd's bbolt reads only its own machine's byte order.
        out.push(Finding::fail(
            "byte order",
            format!(
                "{} is {} but the root's platform {} is {}: containerd there fails with \"invalid database\" and no pod starts",
                store::META_DB,
                order_name(order),
                inp.platform,
                order_name(want_order)
            ),
            "the file was written for another architecture: move it aside and run pausebake bake (with the right --platform) to create one in the root's order",
        ));
    }
    let ns_path: [&[u8]; 2] = [b"v1", inp.namespace.as_bytes()];
    let images = db.bucket_at(&[ns_path[0], ns_path[1], b"images"]);
    // One malformed record anywhere makes containerd's image List fail (§3).
    for (key, node) in images.map(|b| &b.entries).into_iter().flatten() {
        let other = String::from_utf8_lossy(key);
        let ok = match node {
            crate::bolt::Node::Bucket(rec) => record_ok(rec),
            crate::bolt::Node::Value(_) => false,
        };
        if !ok {
            out.push(Finding::fail(
                "image",
                format!("image record {other:?} in {} is malformed: containerd cannot list any image in the namespace", inp.namespace),
                "remove or rewrite that record (re-run pausebake bake)",
            ));
        }
    }
    let Some(rec) = images.and_then(|b| b.bucket(name.as_bytes())) else {
        let have: Vec<String> = images
            .map(|b| {
                b.entries
                    .keys()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.push(Finding::fail(
            "image",
            format!(
                "no image named {name} in namespace {} (it has: {}): CRI would pull it",
                inp.namespace,
                if have.is_empty() {
                    "none".into()
                } else {
                    have.join(", ")
                }
            ),
            format!("pausebake bake --name {name}, or configure the name that is there"),
        ));
        return Ok(out);
    };
    let Some(target) = rec.bucket(b"target").and_then(target_descriptor) else {
        return Ok(out); // reported as malformed above
    };
    out.push(Finding::ok(
        "image",
        format!("{name} -> {} {}", target.media_type(), target.digest()),
    ));

    let blobs = db.bucket_at(&[ns_path[0], ns_path[1], b"content", b"blob"]);
    let mut walk = Walk {
        inp,
        blobs,
        image: Image {
            blobs: Default::default(),
            target: target.clone(),
            names: vec![name.clone()],
        },
        out: &mut out,
        manifests: Vec::new(),
        platforms: BTreeSet::new(),
        seen: BTreeSet::new(),
    };
    let intact = walk.visit(&target, None, 0)?;
    let manifests = std::mem::take(&mut walk.manifests);
    let platforms: Vec<String> = std::mem::take(&mut walk.platforms).into_iter().collect();
    if intact {
        match manifests.first() {
            Some((p, d)) => out.push(Finding::ok(
                "content",
                format!("manifest {d} for {p}: every blob present, sized, hashed and GC-labelled"),
            )),
            None => out.push(Finding::fail(
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
            )),
        }
    }

    let labels = rec.bucket(b"labels");
    let label = |k: &str| labels.and_then(|l| l.value(k.as_bytes()));
    let managed = label(store::LABEL_IMAGE) == Some(store::LABEL_IMAGE_MANAGED.as_bytes());
    let pinned = label(store::LABEL_PINNED) == Some(store::LABEL_PINNED_PINNED.as_bytes());
    out.push(match (managed, pinned, pinning(v)) {
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
        (_, true, Pinning::Raw) if setting.value.as_deref() != Some(name.as_str()) => Finding::warn(
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
    });

    if let Some(k8s) = inp.kubernetes {
        let want = versions::kubernetes_pause_image(k8s)?;
        out.push(if name == want {
            Finding::ok("kubernetes", format!("{name} is the pause of Kubernetes {}.{}", k8s.major, k8s.minor))
        } else {
            Finding::warn(
                "kubernetes",
                format!("Kubernetes {}.{} uses {want}, the config names {name}: kubeadm pre-pulls {want}", k8s.major, k8s.minor),
                format!("pausebake bake --kubernetes-version {k8s} (or --name {want})"),
            )
        });
    }
    Ok(out)
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

struct Walk<'a, 'b> {
    inp: &'a Inputs<'a>,
    blobs: Option<&'a Bucket>,
    /// Blobs read so far, so `store::children` can parse them.
    image: Image,
    out: &'b mut Vec<Finding>,
    manifests: Vec<(ImagePlatform, String)>,
    /// Every platform the image offers, for messages.
    platforms: BTreeSet<String>,
    seen: BTreeSet<String>,
}

impl Walk<'_, '_> {
    /// Checks `d` and what containerd needs below it; `false` if anything failed.
    fn visit(&mut self, d: &Descriptor, parent: Option<&str>, depth: usize) -> Result<bool> {
        let digest = d.digest().to_string();
        if depth > 8 || !self.seen.insert(digest.clone()) {
            return Ok(true);
        }
        let mut ok = true;
        let record = self.blobs.and_then(|b| b.bucket(digest.as_bytes()));
        if let Some(parent) = parent {
            let labelled = self
                .blobs
                .and_then(|b| b.bucket(parent.as_bytes()))
                .and_then(|r| r.bucket(b"labels"))
                .is_some_and(|l| {
                    l.entries.iter().any(|(k, v)| {
                        let k = String::from_utf8_lossy(k);
                        let edge = k == store::GC_REF_CONTENT
                            || k.starts_with("containerd.io/gc.ref.content.")
                            || k.starts_with("containerd.io/gc.ref.content/");
                        edge && matches!(v, crate::bolt::Node::Value(v) if v == digest.as_bytes())
                    })
                });
            if !labelled {
                ok = false;
                self.out.push(Finding::fail(
                    "gc",
                    format!("missing GC label: content {parent} has no containerd.io/gc.ref.content.* label naming {digest}: startup GC deletes it"),
                    "re-run pausebake bake (labels the whole tree)",
                ));
            }
        }
        match record {
            None => {
                self.out.push(Finding::fail(
                    "content",
                    format!(
                        "no content record for {digest} in meta.db: containerd cannot see the blob"
                    ),
                    "re-run pausebake bake",
                ));
                return Ok(false);
            }
            Some(r) => {
                let size = r.value(b"size").and_then(read_varint);
                if size != i64::try_from(d.size()).ok() {
                    ok = false;
                    self.out.push(Finding::fail(
                        "content",
                        format!(
                            "content record {digest} says size {size:?}, its descriptor {}",
                            d.size()
                        ),
                        "re-run pausebake bake",
                    ));
                }
            }
        }
        let hex = digest.strip_prefix("sha256:").unwrap_or(&digest);
        let file = format!("{}/blobs/sha256/{hex}", store::CONTENT_DIR);
        let bytes = match (self.inp.blob)(&digest)? {
            None => {
                self.out.push(Finding::fail(
                    "content",
                    format!("missing blob {digest} ({file})"),
                    "re-run pausebake bake (rewrites missing blobs)",
                ));
                return Ok(false);
            }
            Some(b) => b,
        };
        if bytes.len() as u64 != d.size() || store::sha256_digest(&bytes) != digest {
            self.out.push(Finding::fail(
                "content",
                format!(
                    "corrupted blob {digest} ({file}): {} bytes hashing to {}",
                    bytes.len(),
                    store::sha256_digest(&bytes)
                ),
                "re-run pausebake bake (rewrites damaged blobs)",
            ));
            return Ok(false);
        }
        self.image.blobs.insert(digest.clone(), bytes);
        let kids = match store::children(&self.image, d) {
            Ok(k) => k,
            Err(e) => {
                self.out.push(Finding::fail(
                    "content",
                    format!("{e:#}"),
                    "re-run pausebake bake",
                ));
                return Ok(false);
            }
        };
        let mt = d.media_type().to_string();
        let want = self.inp.platform;
        if store::is_manifest(&mt) {
            // The config first: it says whether this manifest is for our platform at all.
            let Some((config, layers)) = kids.split_first() else {
                return Ok(ok);
            };
            if !self.visit(config, Some(&digest), depth + 1)? {
                return Ok(false);
            }
            let p = store::manifest_platform(&self.image, d)?;
            self.platforms.insert(p.to_string());
            if !p.matches(want) {
                if depth > 0 {
                    // Another platform's entry in an index: its layers are not needed here.
                    return Ok(ok);
                }
                self.out.push(Finding::fail(
                    "platform",
                    format!("the image is for {p}, not {want}: CRI would pull it"),
                    format!("bake an image built for {want}"),
                ));
                return Ok(false);
            }
            for layer in layers {
                ok &= self.visit(layer, Some(&digest), depth + 1)?;
            }
            if ok {
                self.manifests.push((p, digest));
            }
            return Ok(ok);
        }
        if store::is_index(&mt) {
            for kid in &kids {
                // As containerd's platform filter: an entry naming another platform is not
                // ours to check (its blobs may be absent by design); one without a platform
                // is read in full and judged by its config.
                if store::is_manifest(kid.media_type().as_ref()) && kid.platform().is_some() {
                    let p = store::manifest_platform(&self.image, kid)?;
                    self.platforms.insert(p.to_string());
                    if !p.matches(want) {
                        continue;
                    }
                    let kid_digest = kid.digest().to_string();
                    let recorded = self.blobs.and_then(|b| b.bucket(kid_digest.as_bytes()));
                    if recorded.is_none() && (self.inp.blob)(&kid_digest)?.is_none() {
                        // Listed but never imported: the import chose other platforms.
                        ok = false;
                        self.out.push(Finding::fail(
                            "platform",
                            format!("the {p} manifest {kid_digest} is listed in {digest} but was not imported (the import took other platforms): CRI would pull it"),
                            format!("pausebake bake --platform {want} (or import --all-platforms)"),
                        ));
                        continue;
                    }
                }
                ok &= self.visit(kid, Some(&digest), depth + 1)?;
            }
        }
        Ok(ok)
    }
}

// --- the command -------------------------------------------------------------------------

/// What `verify` prints.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub ok: bool,
    pub root: String,
    pub containerd_version: String,
    pub containerd_version_source: String,
    pub kubernetes_version: Option<String>,
    pub platform: String,
    pub platform_source: String,
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

/// Gathers the inputs from `root` and runs [`check`].
pub fn audit(
    root: &Root,
    namespace: &str,
    platform: Option<Platform>,
    containerd: Option<&str>,
    kubernetes: Option<&str>,
    main_config: Option<&Path>,
) -> Result<Report> {
    let Found {
        version: ctd,
        source: ctd_source,
    } = containerd_version_or_newest(root, containerd)?;
    let k8s = kubernetes_version(root, kubernetes)?;
    let (platform, platform_source) = resolve_platform(root, platform)?;
    let main = effective::find_main(root, main_config)?;
    let eff = effective::resolve(root, &main, ctd)?;
    let ctd_root = store::containerd_root(root)?;
    let meta = root.resolve(ctd_root.join(store::META_DIR).join(store::META_DB))?;
    let (tree, db_order) = match std::fs::read(&meta) {
        Ok(bytes) => {
            let read = |bytes: &[u8]| -> Result<(Bucket, Endian)> {
                Ok((
                    crate::bolt::read_tree(bytes)?,
                    crate::bolt::byte_order(bytes)?,
                ))
            };
            let (tree, order) =
                read(&bytes).with_context(|| format!("reading {}", meta.display()))?;
            (Some(tree), Some(order))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", meta.display())),
    };
    let blob_dir: PathBuf = root.resolve(ctd_root.join(store::CONTENT_DIR).join("blobs/sha256"))?;
    let blob = |digest: &str| -> Result<Option<Vec<u8>>> {
        // meta.db is untrusted: a malformed digest is a missing blob, never a path.
        let Some(hex) = crate::image::sha256_hex(digest) else {
            return Ok(None);
        };
        let path = blob_dir.join(hex);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    };
    let findings = check(&Inputs {
        containerd: ctd,
        kubernetes: k8s.as_ref().map(|f| f.version),
        config: None,
        effective: Some(&eff),
        db: tree.as_ref(),
        db_order,
        namespace,
        platform,
        blob: &blob,
    })?;
    Ok(Report {
        ok: findings.iter().all(|f| f.status != Status::Fail),
        root: root.dir().display().to_string(),
        containerd_version: ctd.to_string(),
        containerd_version_source: ctd_source,
        kubernetes_version: k8s.map(|f| format!("{} ({})", f.version, f.source)),
        platform: platform.to_string(),
        platform_source,
        namespace: namespace.to_string(),
        main_config: eff.main.clone(),
        main_config_why: eff.main_why.clone(),
        config_files: eff.files.iter().map(|f| f.path.clone()).collect(),
        sandbox_image: eff.image().to_string(),
        sandbox_image_from: eff.sandbox.as_ref().map(|s| eff.path(s.file).to_string()),
        config_refused: eff.refused.clone(),
        findings,
    })
}

/// `--platform`, else the root's binaries, else the host's.
pub fn resolve_platform(root: &Root, given: Option<Platform>) -> Result<(Platform, String)> {
    if let Some(p) = given {
        return Ok((p, "--platform".into()));
    }
    if let Some((p, path)) = store::root_platform(root)? {
        return Ok((p, path));
    }
    let arch = crate::platform::Arch::host()
        .ok_or_else(|| anyhow!("detecting the root's platform: no binaries in the root and an unknown host; pass --platform"))?;
    Ok((
        Platform { arch },
        "no binaries in the root; the host's".into(),
    ))
}

pub fn print(report: &Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "root {}: containerd {} ({}), platform {} ({})",
        report.root,
        report.containerd_version,
        report.containerd_version_source,
        report.platform,
        report.platform_source
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
        let tag = match f.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        println!("{tag} {}: {}", f.check, f.message);
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

/// `pausebake verify`.
pub fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    let root = Root::new(&args.target.root)?;
    let report = audit(
        &root,
        &args.target.namespace,
        args.target.platform,
        args.target.containerd_version.as_deref(),
        args.kubernetes_version.as_deref(),
        args.config.config.as_deref(),
    )?;
    print(&report, args.output.json)?;
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::store::tests::test_image;
    use crate::containerd::store::{merge, records, Spec};
    use crate::platform::Arch;

    const AMD64: Platform = Platform { arch: Arch::Amd64 };

    fn baked(pin: bool) -> (Bucket, Image) {
        let image = test_image(&[Arch::Amd64, Arch::Arm64], true);
        let spec = Spec {
            names: vec!["registry.k8s.io/pause:3.10".into()],
            namespace: "k8s.io".into(),
            platform: Some(AMD64),
            pin,
            time: Time {
                unix_secs: 0,
                nanos: 0,
            },
            root_arch: Arch::Amd64,
        };
        let mut db = Bucket::default();
        merge(&mut db, &records(&image, &spec).unwrap().tree, "k8s.io").unwrap();
        (db, image)
    }

    const V3_CONFIG: &str = "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'registry.k8s.io/pause:3.10'\n";
    const V2_CONFIG: &str = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10\"\n";

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
            config: Some(config),
            effective: None,
            db: Some(db),
            db_order: Some(platform.arch.endian()),
            namespace: "k8s.io",
            platform,
            blob: &blob,
        })
        .unwrap()
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
        let spec = Spec {
            names: vec!["registry.k8s.io/pause:3.10".into()],
            namespace: "k8s.io".into(),
            platform: Some(AMD64),
            pin: true,
            time: Time {
                unix_secs: 0,
                nanos: 0,
            },
            root_arch: Arch::Amd64,
        };
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
        let s = sandbox_setting(None, Version::new(1, 7, 24)).unwrap();
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
            config: Some(V3_CONFIG),
            effective: None,
            db: Some(&db),
            db_order: Some(order),
            namespace: "k8s.io",
            platform: s390x,
            blob: &blob,
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
        let f = check(&Inputs {
            containerd: Version::new(2, 1, 9),
            kubernetes: Some(Version::new(1, 34, 1)),
            config: Some(V3_CONFIG),
            effective: None,
            db: Some(&db),
            db_order: Some(Endian::Little),
            namespace: "k8s.io",
            platform: AMD64,
            blob: &blob,
        })
        .unwrap();
        let k = f.iter().find(|f| f.check == "kubernetes").unwrap();
        assert_eq!(k.status, Status::Warn);
        assert_eq!(k.message, "Kubernetes 1.34 uses registry.k8s.io/pause:3.10.1, the config names registry.k8s.io/pause:3.10: kubeadm pre-pulls registry.k8s.io/pause:3.10.1");
        assert!(f.iter().all(|f| f.status != Status::Fail));
    }

    #[test]
    fn pinning_per_version() {
        assert_eq!(pinning(Version::new(1, 6, 20)), Pinning::Unsupported);
        assert_eq!(pinning(Version::new(1, 6, 22)), Pinning::Normalized);
        assert_eq!(pinning(Version::new(1, 7, 2)), Pinning::Unsupported);
        assert_eq!(pinning(Version::new(1, 7, 3)), Pinning::Normalized);
        assert_eq!(pinning(Version::new(2, 0, 0)), Pinning::Raw);
    }
}
