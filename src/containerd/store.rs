//! The image as containerd stores it under a root: content blobs and the `meta.db` records
//! (content, images, GC labels) that make CRI find it locally. Pure: [`records`] builds them
//! and [`merge`] folds them into a database tree; [`super::apply`] writes them.
//!
//! What is written, relative to containerd's `root` (`/var/lib/containerd` unless
//! the root's `/etc/containerd/config.toml` sets `root`), in the style of containerd's
//! `core/metadata/buckets.go` (facts and sources: `containerd-store.md` §0–§6):
//!
//! ```text
//! io.containerd.content.v1.content/            0755
//! └──blobs/sha256/<hex>                        0444, one per selected blob
//! io.containerd.metadata.v1.bolt/              0711
//! └──meta.db                                   0644, bbolt, updated in place
//!    └──v1                                     schema version bucket
//!       ├──version : <varint>                  3, only when v1 is new; never lowered
//!       ╘══<namespace>                         k8s.io unless --namespace
//!          ├──content
//!          │  └──blob
//!          │     ╘══<digest>                   index (if the target is one), manifests,
//!          │        │                          configs, layers of the selected platforms
//!          │        ├──createdat : <time>      Go time.MarshalBinary, 15 bytes, UTC
//!          │        ├──updatedat : <time>
//!          │        ├──size : <varint>
//!          │        └──labels                  only when the blob has children:
//!          │           ├──containerd.io/gc.ref.content.m.<i> : <manifest digest>   (index)
//!          │           ├──containerd.io/gc.ref.content.config : <config digest> (manifest)
//!          │           ├──containerd.io/gc.ref.content.l.<i> : <layer digest>   (manifest)
//!          │           └──containerd.io/gc.ref.content.<i> : <digest>          (other)
//!          └──images
//!             ╘══<normalized name>             one per name
//!                ├──createdat : <time>
//!                ├──updatedat : <time>
//!                ├──target
//!                │  ├──digest : <digest>
//!                │  ├──mediatype : <media type>
//!                │  └──size : <varint>
//!                ├──labels                     both or neither (--no-pin):
//!                │  ├──io.cri-containerd.image : managed
//!                │  └──io.cri-containerd.pinned : pinned
//!                └──annotations                the target descriptor's, when it has any
//! ```
//!
//! Everything else in an existing `meta.db` (other images, containers, leases, snapshots,
//! labels containerd added to our blobs at unpack) is kept. A record that already says what
//! we would write keeps its timestamps, so a second identical run changes nothing.
//!
//! Not written: ingests, leases, snapshots (CRI unpacks the one pause layer on first use,
//! §7.3), CRI's `sha256:<config>` twin record (CRI adds it at startup, §11.9).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use oci_spec::image::{Descriptor, MediaType};

use crate::bolt::{Bucket, Db, Node};
use crate::image::Image;
use crate::platform::{Arch, Platform};

pub const CONTENT_DIR: &str = "io.containerd.content.v1.content";
pub const META_DIR: &str = "io.containerd.metadata.v1.bolt";
pub const META_DB: &str = "meta.db";
/// The schema version a new `meta.db` gets: 1.6/1.7's `dbVersion`; 2.x migrates it to 4
/// harmlessly and 1.x accepts it (`containerd-store.md` §4).
pub const NEW_SCHEMA_VERSION: i64 = 3;

pub const LABEL_IMAGE: &str = "io.cri-containerd.image";
pub const LABEL_IMAGE_MANAGED: &str = "managed";
pub const LABEL_PINNED: &str = "io.cri-containerd.pinned";
pub const LABEL_PINNED_PINNED: &str = "pinned";
pub const GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";

const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

// --- encodings (containerd-store.md §3) -------------------------------------------------

/// A point in time for `createdat`/`updatedat`, always UTC as containerd writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub unix_secs: i64,
    pub nanos: u32,
}

/// Seconds from 0001-01-01 (Go's zero time) to 1970-01-01.
const GO_UNIX_OFFSET: i64 = 62_135_596_800;

impl Time {
    /// The time every record of one run gets: `SOURCE_DATE_EPOCH` when set, else now. The
    /// only place the store reads the clock (an import is an event on that root).
    pub fn for_records(epoch: Option<u64>) -> Time {
        match epoch {
            Some(secs) => Time {
                unix_secs: i64::try_from(secs).unwrap_or(i64::MAX),
                nanos: 0,
            },
            None => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Time {
                    unix_secs: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                    nanos: now.subsec_nanos(),
                }
            }
        }
    }

    /// Go's `time.Time.MarshalBinary` (version 1): `01`, seconds since year 1 (i64 BE),
    /// nanoseconds (i32 BE), zone offset in minutes (i16 BE, -1 meaning UTC).
    pub fn go_binary(self) -> [u8; 15] {
        let mut out = [0u8; 15];
        out[0] = 1;
        out[1..9].copy_from_slice(&(self.unix_secs + GO_UNIX_OFFSET).to_be_bytes());
        out[9..13].copy_from_slice(&(self.nanos as i32).to_be_bytes());
        out[13..15].copy_from_slice(&(-1i16).to_be_bytes());
        out
    }

    /// Decodes [`Time::go_binary`]'s format (also non-UTC zones); `None` for anything Go's
    /// `UnmarshalBinary` would reject.
    pub fn from_go_binary(b: &[u8]) -> Option<Time> {
        if b.len() != 15 || b[0] != 1 {
            return None;
        }
        let secs = i64::from_be_bytes(b[1..9].try_into().ok()?);
        let nanos = i32::from_be_bytes(b[9..13].try_into().ok()?);
        Some(Time {
            unix_secs: secs - GO_UNIX_OFFSET,
            nanos: u32::try_from(nanos).ok()?,
        })
    }
}

/// Go's `binary.PutVarint`: zig-zag, then LEB128.
pub fn varint(v: i64) -> Vec<u8> {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
    out
}

/// Go's `binary.Varint` over the whole value; `None` if malformed or with trailing bytes.
pub fn read_varint(b: &[u8]) -> Option<i64> {
    let mut u: u64 = 0;
    for (i, byte) in b.iter().enumerate() {
        if i >= 10 {
            return None;
        }
        u |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i + 1 != b.len() {
                return None;
            }
            return Some(((u >> 1) as i64) ^ -((u & 1) as i64));
        }
    }
    None
}

// --- the image tree -------------------------------------------------------------------------

fn media_type(d: &Descriptor) -> String {
    d.media_type().to_string()
}

/// [`crate::image::is_index`] of a media type as written in a record.
pub fn is_index(media_type: &str) -> bool {
    crate::image::is_index(&MediaType::from(media_type))
}

/// [`crate::image::is_manifest`] of a media type as written in a record.
pub fn is_manifest(media_type: &str) -> bool {
    crate::image::is_manifest(&MediaType::from(media_type))
}

/// The bytes of `d`, checked against its digest and size.
pub fn blob<'a>(image: &'a Image, d: &Descriptor) -> Result<&'a [u8]> {
    let digest = d.digest().to_string();
    let bytes = image
        .blobs
        .get(&digest)
        .ok_or_else(|| anyhow!("reading blob {digest}: not in the image"))?;
    ensure!(
        bytes.len() as u64 == d.size(),
        "reading blob {digest}: {} bytes, but its descriptor says {}",
        bytes.len(),
        d.size()
    );
    let actual = crate::digest::sha256_digest(bytes);
    ensure!(
        actual == digest,
        "reading blob {digest}: its content hashes to {actual}"
    );
    Ok(bytes)
}

/// The descriptors `d` points at ([`crate::image::children_of`], which checks, as
/// containerd's `validateMediaType` does, that an index is not dressed as a manifest or the
/// reverse), read from a blob whose digest and size are checked first.
pub fn children(image: &Image, d: &Descriptor) -> Result<Vec<Descriptor>> {
    let bytes = blob(image, d)?;
    crate::image::children_of(d.media_type(), bytes)
        .with_context(|| format!("parsing {} {}", d.media_type(), d.digest()))
}

/// An OS/architecture/variant triple as written in images.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImagePlatform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for ImagePlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl ImagePlatform {
    /// Whether containerd's default matcher on a `want` host would take this image.
    pub fn matches(&self, want: Platform) -> bool {
        let variant = self.variant.as_deref().unwrap_or("");
        let variant_ok = match want.arch {
            Arch::Arm => matches!(variant, "" | "v7"),
            Arch::Arm64 => matches!(variant, "" | "v8"),
            _ => variant.is_empty(),
        };
        self.os == "linux" && self.architecture == want.arch.name() && variant_ok
    }
}

/// The platform a manifest is for: its index entry's `platform`, else its config's
/// `os`/`architecture`/`variant` (what containerd reads when the entry has none).
pub fn manifest_platform(image: &Image, manifest: &Descriptor) -> Result<ImagePlatform> {
    if let Some(p) = manifest.platform() {
        let variant = p.variant().clone().filter(|v| !v.is_empty());
        return Ok(ImagePlatform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant,
        });
    }
    let digest = manifest.digest().to_string();
    let config = children(image, manifest)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("reading manifest {digest}: no config"))?;
    let bytes = blob(image, &config)?;
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .with_context(|| format!("parsing config {} of manifest {digest}", config.digest()))?;
    let s = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Ok(ImagePlatform {
        os: s("os").unwrap_or_default(),
        architecture: s("architecture").unwrap_or_default(),
        variant: s("variant").filter(|v| !v.is_empty()),
    })
}

/// The part of an image that goes into the store: which blobs, with which GC labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Every selected blob, by digest, with the `containerd.io/gc.ref.content.*` labels its
    /// content record gets.
    pub blobs: BTreeMap<String, BTreeMap<String, String>>,
    /// The selected manifests and their platforms, in index order.
    pub manifests: Vec<(ImagePlatform, String)>,
}

/// Walks the image from its target, keeping every manifest for `platform` (all when
/// `None`), with each blob validated against its descriptor. Fails when no manifest fits.
pub fn select(image: &Image, platform: Option<Platform>) -> Result<Selection> {
    let mut sel = Selection::default();
    let mut seen_platforms = BTreeSet::new();
    crate::image::walk(&image.target, |node| {
        select_node(image, node, platform, &mut sel, &mut seen_platforms)
    })?;
    if sel.manifests.is_empty() {
        let want = platform.map_or_else(|| "any platform".to_string(), |p| p.to_string());
        let have: Vec<String> = seen_platforms.iter().map(|p| p.to_string()).collect();
        return Err(NoManifest {
            want,
            have: if have.is_empty() {
                "no manifests".to_string()
            } else {
                have.join(", ")
            },
        }
        .into());
    }
    Ok(sel)
}

/// [`select`] found no manifest for the platform asked for. The fact only: the command adds
/// the fix its own flags allow.
#[derive(Debug)]
pub struct NoManifest {
    pub want: String,
    /// The image's platforms, comma-separated.
    pub have: String,
}

impl std::fmt::Display for NoManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "selecting a manifest for {}: the image has none (it has: {})",
            self.want, self.have
        )
    }
}

impl std::error::Error for NoManifest {}

/// One blob of [`select`]'s walk: records it with its children's GC labels and returns the
/// children the store needs (an index's entries for other platforms are left out).
fn select_node(
    image: &Image,
    node: crate::image::Node<'_>,
    platform: Option<Platform>,
    sel: &mut Selection,
    seen: &mut BTreeSet<ImagePlatform>,
) -> Result<Vec<Descriptor>> {
    let d = node.desc;
    let digest = d.digest().to_string();
    blob(image, d)?;
    let mt = media_type(d);
    let mut kids = children(image, d)?;
    if is_manifest(&mt) && node.parent.is_none() {
        // A bare manifest as target: it must itself fit the platform.
        let p = manifest_platform(image, d)?;
        seen.insert(p.clone());
        if platform.is_some_and(|want| !p.matches(want)) {
            return Ok(Vec::new());
        }
        sel.manifests.push((p, digest.clone()));
    }
    if is_index(&mt) {
        let mut kept = Vec::new();
        for kid in kids {
            if is_manifest(&media_type(&kid)) {
                let p = manifest_platform(image, &kid)?;
                seen.insert(p.clone());
                let fits = platform.is_none_or(|want| p.matches(want));
                // containerd's platform filter (`images.FilterPlatforms`) keeps every entry
                // without a `platform` and judges it by its config later, so its blobs must
                // be present whatever platform it turns out to be.
                if !fits && kid.platform().is_some() {
                    continue;
                }
                if fits {
                    sel.manifests.push((p, kid.digest().to_string()));
                }
            }
            kept.push(kid);
        }
        kids = kept;
    }
    sel.blobs.insert(digest, child_labels(&kids));
    Ok(kids)
}

/// Whether a content label `key` is one containerd's GC follows to another blob:
/// `containerd.io/gc.ref.content`, or it followed by `.` or `/` and a name.
pub fn is_gc_content_edge(key: &str) -> bool {
    key.strip_prefix(GC_REF_CONTENT)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '/']))
}

/// containerd's `ChildGCLabels` + `SetChildrenMappedLabels`: the label prefix depends on the
/// child's media type; a prefix ending in `.` is numbered from 0, any other is bare first,
/// then numbered from 1 (`containerd-store.md` §5.1).
pub fn child_labels(kids: &[Descriptor]) -> BTreeMap<String, String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut labels = BTreeMap::new();
    for kid in kids {
        let mt = media_type(kid);
        let prefix = if CONFIG_TYPES.contains(&mt.as_str()) {
            "containerd.io/gc.ref.content.config"
        } else if is_manifest(&mt) {
            "containerd.io/gc.ref.content.m."
        } else if mt.starts_with("application/vnd.oci.image.layer.")
            || mt.starts_with("application/vnd.docker.image.rootfs.")
        {
            "containerd.io/gc.ref.content.l."
        } else {
            "containerd.io/gc.ref.content."
        };
        let n = counts.entry(prefix).or_insert(0);
        let key = match (prefix.ends_with('.'), *n) {
            (true, i) => format!("{prefix}{i}"),
            (false, 0) => prefix.to_string(),
            (false, i) => format!("{prefix}{i}"),
        };
        *n += 1;
        labels.insert(key, kid.digest().to_string());
    }
    labels
}

// --- records (pure) ---------------------------------------------------------------------

/// What to write and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Normalized references, one image record each.
    pub names: Vec<String>,
    pub namespace: String,
    /// Only the manifests for this platform; every manifest when `None`.
    pub platform: Option<Platform>,
    /// Write the CRI `managed` and `pinned` labels (both, or neither when false).
    pub pin: bool,
    pub time: Time,
}

/// The records an image becomes: a bucket tree rooted like the `meta.db` root bucket, and
/// the blobs the content store needs.
#[derive(Debug, Clone)]
pub struct Records {
    pub tree: Bucket,
    pub selection: Selection,
}

/// The `meta.db` records for `image` under `spec`, as a tree to [`merge`] into a database.
pub fn records(image: &Image, spec: &Spec) -> Result<Records> {
    ensure!(
        !spec.names.is_empty(),
        "writing image records: the image has no name; pass --name REF"
    );
    ensure!(
        !spec.namespace.is_empty(),
        "the namespace must not be empty"
    );
    let selection = select(image, spec.platform)?;
    let time = spec.time.go_binary();
    let ns = spec.namespace.as_bytes();
    let mut tree = Bucket::default();
    tree.bucket_at_mut(&[b"v1"])?
        .put(b"version", &varint(NEW_SCHEMA_VERSION))?;
    for (digest, labels) in &selection.blobs {
        let size = image.blobs[digest].len() as i64;
        let b = tree.bucket_at_mut(&[b"v1", ns, b"content", b"blob", digest.as_bytes()])?;
        b.put(b"createdat", &time)?;
        b.put(b"updatedat", &time)?;
        b.put(b"size", &varint(size))?;
        if !labels.is_empty() {
            put_map(b, b"labels", labels)?;
        }
    }
    let target = &image.target;
    let mut labels = BTreeMap::new();
    if spec.pin {
        labels.insert(LABEL_IMAGE.to_string(), LABEL_IMAGE_MANAGED.to_string());
        labels.insert(LABEL_PINNED.to_string(), LABEL_PINNED_PINNED.to_string());
    }
    // Sorted: oci-spec keeps annotations in a HashMap.
    let annotations: BTreeMap<String, String> = target
        .annotations()
        .iter()
        .flatten()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for name in &spec.names {
        ensure!(!name.is_empty(), "writing image records: an empty name");
        let b = tree.bucket_at_mut(&[b"v1", ns, b"images", name.as_bytes()])?;
        b.put(b"createdat", &time)?;
        b.put(b"updatedat", &time)?;
        let t = b.bucket_at_mut(&[b"target"])?;
        t.put(b"digest", target.digest().to_string().as_bytes())?;
        t.put(b"mediatype", media_type(target).as_bytes())?;
        t.put(b"size", &varint(target.size() as i64))?;
        if !labels.is_empty() {
            put_map(b, b"labels", &labels)?;
        }
        if !annotations.is_empty() {
            put_map(b, b"annotations", &annotations)?;
        }
    }
    Ok(Records { tree, selection })
}

fn put_map(b: &mut Bucket, key: &[u8], map: &BTreeMap<String, String>) -> Result<()> {
    let m = b.bucket_at_mut(&[key])?;
    for (k, v) in map {
        m.put(k.as_bytes(), v.as_bytes())?;
    }
    Ok(())
}

/// Merges [`records`]' tree into a database root, keeping everything else. A record that
/// already holds our target, size and labels is left alone (timestamps included), so an
/// identical second run is a no-op; otherwise ours wins for what we own and other labels
/// (e.g. containerd's unpack labels) stay. The schema version is set only when `v1` is new.
/// Returns one line per record changed, empty when nothing changed.
pub fn merge(db: &mut Bucket, records: &Bucket, namespace: &str) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    if db.bucket(b"v1").is_none() {
        let version = records
            .bucket(b"v1")
            .and_then(|v| v.value(b"version"))
            .unwrap_or(&[]);
        db.bucket_at_mut(&[b"v1"])?.put(b"version", version)?;
        changes.push(format!(
            "schema version {}",
            read_varint(version).unwrap_or_default()
        ));
    }
    for (path, what) in record_buckets(namespace) {
        let Some(ours) = records.bucket_at(&path) else {
            continue;
        };
        for (key, node) in &ours.entries {
            let Node::Bucket(new) = node else { continue };
            let parent = db.bucket_at_mut(&path)?;
            let name = String::from_utf8_lossy(key);
            let change = match parent.entries.get_mut(key) {
                None => {
                    parent.entries.insert(key.clone(), Node::Bucket(new.clone()));
                    Some("new")
                }
                Some(Node::Value(_)) => bail!(
                    "merging {what} {name}: meta.db has a value where containerd keeps a bucket; the database is damaged"
                ),
                Some(Node::Bucket(old)) => {
                    if merge_record(old, new)? {
                        Some("updated")
                    } else {
                        None
                    }
                }
            };
            if let Some(how) = change {
                changes.push(format!("{what} {name} ({how})"));
            }
        }
    }
    Ok(changes)
}

/// The buckets [`merge`] puts records into, and what their records are called.
fn record_buckets(namespace: &str) -> [(Vec<&[u8]>, &'static str); 2] {
    let ns = namespace.as_bytes();
    [
        (vec![b"v1", ns, b"content", b"blob"], "content"),
        (vec![b"v1", ns, b"images"], "image"),
    ]
}

/// Loads from `db` what [`merge`] of `records` reads: the schema version and each record
/// `records` holds, reading only the pages on the way to them.
pub fn load_for_merge(db: &mut Db, records: &Bucket, namespace: &str) -> Result<()> {
    db.load(&[&b"v1"[..], &b"version"[..]])?;
    for (path, _) in record_buckets(namespace) {
        for key in records
            .bucket_at(&path)
            .iter()
            .flat_map(|b| b.entries.keys())
        {
            let mut full = path.clone();
            full.push(key);
            db.load(&full)?;
        }
    }
    Ok(())
}

/// Updates an existing record in place; `false` when it already said what `new` says.
fn merge_record(old: &mut Bucket, new: &Bucket) -> Result<bool> {
    let labels_held = match (new.bucket(b"labels"), old.bucket(b"labels")) {
        (None, _) => true,
        (Some(want), Some(have)) => want
            .entries
            .iter()
            .all(|(k, v)| have.entries.get(k) == Some(v)),
        (Some(_), None) => false,
    };
    let same = labels_held
        && old.value(b"size") == new.value(b"size")
        && old.bucket(b"target") == new.bucket(b"target")
        && old.bucket(b"annotations") == new.bucket(b"annotations")
        && old
            .value(b"createdat")
            .is_some_and(|t| Time::from_go_binary(t).is_some())
        && old
            .value(b"updatedat")
            .is_some_and(|t| Time::from_go_binary(t).is_some());
    if same {
        return Ok(false);
    }
    let created_ok = old
        .value(b"createdat")
        .is_some_and(|t| Time::from_go_binary(t).is_some());
    for (key, node) in &new.entries {
        match (key.as_slice(), node) {
            (b"createdat", _) if created_ok => {}
            (b"labels", Node::Bucket(want)) => {
                let have = old.bucket_at_mut(&[b"labels"])?;
                for (k, v) in &want.entries {
                    have.entries.insert(k.clone(), v.clone());
                }
            }
            _ => {
                old.entries.insert(key.clone(), node.clone());
            }
        }
    }
    if new.bucket(b"annotations").is_none() {
        old.delete(b"annotations");
    }
    Ok(true)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use oci_spec::image::MediaType;
    use serde_json::json;

    fn add(blobs: &mut BTreeMap<String, Vec<u8>>, bytes: Vec<u8>) -> (String, u64) {
        let d = crate::digest::sha256_digest(&bytes);
        let n = bytes.len() as u64;
        blobs.insert(d.clone(), bytes);
        (d, n)
    }

    /// A small image by hand: one manifest per arch (layer, config), and an index whose
    /// entries carry a platform (or not, to make the walker read the config).
    pub fn test_image(archs: &[Arch], entry_platforms: bool) -> Image {
        let mut blobs = BTreeMap::new();
        let mut entries = Vec::new();
        for arch in archs {
            let (layer, layer_size) = add(&mut blobs, format!("layer for {arch}").into_bytes());
            let config = json!({"architecture": arch.name(), "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer]}});
            let (cfg, cfg_size) = add(&mut blobs, serde_json::to_vec(&config).unwrap());
            let manifest = json!({"schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": cfg, "size": cfg_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer, "size": layer_size}]});
            let (m, m_size) = add(&mut blobs, serde_json::to_vec(&manifest).unwrap());
            let mut entry = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": m, "size": m_size});
            if entry_platforms {
                entry["platform"] = json!({"architecture": arch.name(), "os": "linux"});
            }
            entries.push(entry);
        }
        let index = json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
        let (i, i_size) = add(&mut blobs, serde_json::to_vec(&index).unwrap());
        let digest: oci_spec::image::Digest = i.parse().unwrap();
        let mut target = Descriptor::new(MediaType::ImageIndex, i_size, digest);
        target.set_annotations(Some(
            [(
                "io.containerd.image.name".to_string(),
                "registry.k8s.io/pause:3.10".to_string(),
            )]
            .into(),
        ));
        Image {
            blobs,
            target,
            names: vec!["registry.k8s.io/pause:3.10".to_string()],
        }
    }

    /// `registry.k8s.io/pause:3.10` in `k8s.io` at time 0, for `platform` (all when `None`).
    pub fn spec(platform: Option<Platform>, pin: bool) -> Spec {
        Spec {
            names: vec!["registry.k8s.io/pause:3.10".into()],
            namespace: "k8s.io".into(),
            platform,
            pin,
            time: Time {
                unix_secs: 0,
                nanos: 0,
            },
        }
    }

    /// The tree as indented text with values decoded where the schema says how, so a test
    /// reads like the module-doc diagram.
    fn dump(b: &Bucket) -> String {
        fn go(b: &Bucket, depth: usize, out: &mut String) {
            for (k, node) in &b.entries {
                let key = String::from_utf8_lossy(k);
                let pad = "  ".repeat(depth);
                match node {
                    Node::Bucket(inner) => {
                        out.push_str(&format!("{pad}[{key}]\n"));
                        go(inner, depth + 1, out);
                    }
                    Node::Value(v) => {
                        let shown = match &*key {
                            "createdat" | "updatedat" => match Time::from_go_binary(v) {
                                Some(t) => format!("time {}", t.unix_secs),
                                None => "BAD TIME".into(),
                            },
                            "size" | "version" => format!("varint {}", read_varint(v).unwrap()),
                            _ => String::from_utf8_lossy(v).into_owned(),
                        };
                        out.push_str(&format!("{pad}{key} = {shown}\n"));
                    }
                }
            }
        }
        let mut out = String::new();
        go(b, 0, &mut out);
        out
    }

    #[test]
    fn gc_edges_are_the_bare_label_and_its_dot_and_slash_names() {
        for key in [
            "containerd.io/gc.ref.content",
            "containerd.io/gc.ref.content.l.0",
            "containerd.io/gc.ref.content/custom",
        ] {
            assert!(is_gc_content_edge(key), "{key}");
        }
        for key in [
            "containerd.io/gc.ref.contents",
            "containerd.io/gc.ref.snapshot.overlayfs",
            "containerd.io/gc.expire",
        ] {
            assert!(!is_gc_content_edge(key), "{key}");
        }
    }

    #[test]
    fn go_time_and_varint_encodings() {
        // Literal values from containerd-store.md §3.
        let t = Time {
            unix_secs: 0,
            nanos: 0,
        };
        assert_eq!(
            t.go_binary(),
            [1, 0, 0, 0, 0x0e, 0x77, 0x91, 0xf7, 0, 0, 0, 0, 0, 0xff, 0xff]
        );
        assert_eq!(Time::from_go_binary(&t.go_binary()), Some(t));
        let seen = [
            0x01, 0, 0, 0, 0x0e, 0xe2, 0x94, 0x50, 0x7b, 0x17, 0xa0, 0x69, 0x0b, 0xff, 0xff,
        ];
        let t = Time::from_go_binary(&seen).unwrap();
        assert_eq!(Time::from_go_binary(&t.go_binary()), Some(t));
        assert_eq!(t.go_binary(), seen);
        for (v, bytes) in [
            (3, &[0x06][..]),
            (4, &[0x08]),
            (307, &[0xe6, 0x04]),
            (402, &[0xa4, 0x06]),
            (420, &[0xc8, 0x06]),
            (13109, &[0xea, 0xcc, 0x01]),
        ] {
            assert_eq!(varint(v), bytes, "{v}");
            assert_eq!(read_varint(bytes), Some(v));
        }
        assert_eq!(read_varint(&varint(-5)), Some(-5));
        assert_eq!(read_varint(&[0x86]), None);
        assert_eq!(read_varint(&[0x06, 0x00]), None);
    }

    #[test]
    fn select_takes_as_deep_an_image_as_archives_do_and_no_deeper() {
        let amd64 = Platform { arch: Arch::Amd64 };
        let mut image = test_image(&[Arch::Amd64, Arch::Arm64], true);
        // The target is an index; with MAX_DEPTH - 1 more above it, amd64's manifest,
        // config and layer sit below MAX_DEPTH indexes: still selected.
        for _ in 1..crate::image::MAX_DEPTH {
            image.wrap_in_index();
        }
        let sel = select(&image, Some(amd64)).unwrap();
        assert_eq!(sel.manifests.len(), 1);
        assert_eq!(sel.blobs.len(), crate::image::MAX_DEPTH + 3);
        image.wrap_in_index();
        let err = select(&image, Some(amd64)).unwrap_err();
        assert!(
            err.downcast_ref::<crate::image::TooDeep>().is_some(),
            "{err:#}"
        );
    }

    #[test]
    fn records_read_as_the_documented_tree() {
        let image = test_image(&[Arch::Amd64, Arch::Arm64], true);
        let recs = records(&image, &spec(Some(Platform { arch: Arch::Arm64 }), true)).unwrap();
        let index = image.target.digest().to_string();
        let sel = &recs.selection;
        assert_eq!(sel.manifests.len(), 1);
        assert_eq!(sel.manifests[0].0.to_string(), "linux/arm64");
        let manifest = sel.manifests[0].1.clone();
        let m_labels = &sel.blobs[&manifest];
        let config = m_labels["containerd.io/gc.ref.content.config"].clone();
        let layer = m_labels["containerd.io/gc.ref.content.l.0"].clone();
        // Only arm64's blobs and the index: 4 of the image's 7.
        assert_eq!(image.blobs.len(), 7);
        assert_eq!(
            sel.blobs.keys().cloned().collect::<BTreeSet<_>>(),
            [&index, &manifest, &config, &layer]
                .into_iter()
                .cloned()
                .collect()
        );

        let named = dump(&recs.tree)
            .replace(&index, "<index>")
            .replace(&manifest, "<manifest>")
            .replace(&config, "<config>")
            .replace(&layer, "<layer>");
        // Blob buckets sort by digest; these digests are fixed by the test image's bytes.
        let want = "\
[v1]
  [k8s.io]
    [content]
      [blob]
        [<config>]
          createdat = time 0
          size = varint 151
          updatedat = time 0
        [<index>]
          createdat = time 0
          [labels]
            containerd.io/gc.ref.content.m.0 = <manifest>
          size = varint 491
          updatedat = time 0
        [<layer>]
          createdat = time 0
          size = varint 15
          updatedat = time 0
        [<manifest>]
          createdat = time 0
          [labels]
            containerd.io/gc.ref.content.config = <config>
            containerd.io/gc.ref.content.l.0 = <layer>
          size = varint 395
          updatedat = time 0
    [images]
      [registry.k8s.io/pause:3.10]
        [annotations]
          io.containerd.image.name = registry.k8s.io/pause:3.10
        createdat = time 0
        [labels]
          io.cri-containerd.image = managed
          io.cri-containerd.pinned = pinned
        [target]
          digest = <index>
          mediatype = application/vnd.oci.image.index.v1+json
          size = varint 491
        updatedat = time 0
  version = varint 3
";
        assert_eq!(named, want);
    }

    #[test]
    fn no_pin_writes_neither_label_and_all_platforms_keeps_all() {
        let image = test_image(&[Arch::Amd64, Arch::Arm64], false);
        let recs = records(&image, &spec(None, false)).unwrap();
        let rec = recs
            .tree
            .bucket_at(&[b"v1", b"k8s.io", b"images", b"registry.k8s.io/pause:3.10"])
            .unwrap();
        assert!(rec.bucket(b"labels").is_none());
        assert_eq!(recs.selection.blobs.len(), 7);
        let plats: Vec<String> = recs
            .selection
            .manifests
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        // Read from the configs: the index entries carry no platform.
        assert_eq!(plats, ["linux/amd64", "linux/arm64"]);
        let index = &recs.selection.blobs[&image.target.digest().to_string()];
        assert_eq!(
            index.keys().collect::<Vec<_>>(),
            [
                "containerd.io/gc.ref.content.m.0",
                "containerd.io/gc.ref.content.m.1"
            ]
        );
    }

    #[test]
    fn a_missing_platform_is_named() {
        let image = test_image(&[Arch::Amd64], true);
        let err = records(&image, &spec(Some(Platform { arch: Arch::S390x }), true))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "selecting a manifest for linux/s390x: the image has none (it has: linux/amd64)"
        );
    }

    #[test]
    fn corrupt_or_missing_blobs_are_refused() {
        let mut image = test_image(&[Arch::Amd64], true);
        let layer = image
            .blobs
            .iter()
            .find(|(_, b)| b.starts_with(b"layer"))
            .map(|(d, _)| d.clone())
            .unwrap();
        image.blobs.get_mut(&layer).unwrap()[0] = b'L';
        let err = records(&image, &spec(None, true)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("reading blob {layer}: its content hashes to")),
            "{err}"
        );
        image.blobs.remove(&layer);
        let err = records(&image, &spec(None, true)).unwrap_err().to_string();
        assert_eq!(err, format!("reading blob {layer}: not in the image"));
    }

    #[test]
    fn merging_is_idempotent_and_keeps_other_records() {
        let image = test_image(&[Arch::Amd64], true);
        let recs = records(&image, &spec(None, true)).unwrap();
        // A database containerd already wrote: schema 4, another image, an unpack label on
        // our layer, a lease.
        let mut db = Bucket::default();
        db.bucket_at_mut(&[b"v1"])
            .unwrap()
            .put(b"version", &varint(4))
            .unwrap();
        db.bucket_at_mut(&[b"v1", b"k8s.io", b"images", b"docker.io/library/busybox:1"])
            .unwrap()
            .put(b"createdat", &[1; 15])
            .unwrap();
        db.bucket_at_mut(&[b"v1", b"k8s.io", b"leases", b"l1"])
            .unwrap();
        let layer = recs.selection.manifests[0].1.clone();
        let manifest_labels = &recs.selection.blobs[&layer];
        let layer = manifest_labels["containerd.io/gc.ref.content.l.0"].clone();
        {
            let mut pre = Bucket::default();
            pre.put(
                b"createdat",
                &Time {
                    unix_secs: 5,
                    nanos: 0,
                }
                .go_binary(),
            )
            .unwrap();
            pre.put(
                b"updatedat",
                &Time {
                    unix_secs: 5,
                    nanos: 0,
                }
                .go_binary(),
            )
            .unwrap();
            pre.put(b"size", &varint(15)).unwrap();
            pre.bucket_at_mut(&[b"labels"])
                .unwrap()
                .put(b"containerd.io/uncompressed", layer.as_bytes())
                .unwrap();
            db.bucket_at_mut(&[b"v1", b"k8s.io", b"content", b"blob"])
                .unwrap()
                .entries
                .insert(layer.as_bytes().to_vec(), Node::Bucket(pre.clone()));
        }
        let before = db.clone();
        let changes = merge(&mut db, &recs.tree, "k8s.io").unwrap();
        // The layer record already said everything we would write: untouched.
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert!(!changes.iter().any(|c| c.contains(&layer)), "{changes:?}");
        let v1 = db.bucket(b"v1").unwrap();
        assert_eq!(v1.value(b"version"), Some(&varint(4)[..]), "never lowered");
        assert!(v1.bucket_at(&[b"k8s.io", b"leases", b"l1"]).is_some());
        assert_eq!(
            v1.bucket_at(&[b"k8s.io", b"images", b"docker.io/library/busybox:1"]),
            before.bucket_at(&[b"v1", b"k8s.io", b"images", b"docker.io/library/busybox:1"])
        );
        // Second run, later clock: nothing changes, timestamps included.
        let mut later = spec(None, true);
        later.time = Time {
            unix_secs: 99,
            nanos: 1,
        };
        let recs2 = records(&image, &later).unwrap();
        let snapshot = db.clone();
        assert_eq!(
            merge(&mut db, &recs2.tree, "k8s.io").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(db, snapshot);
    }

    #[test]
    fn merge_updates_a_moved_tag_and_keeps_createdat() {
        let old = test_image(&[Arch::Amd64], true);
        let new = test_image(&[Arch::Amd64, Arch::Arm64], true);
        let mut db = Bucket::default();
        merge(
            &mut db,
            &records(&old, &spec(None, false)).unwrap().tree,
            "k8s.io",
        )
        .unwrap();
        let mut s = spec(None, true);
        s.time = Time {
            unix_secs: 7,
            nanos: 0,
        };
        let changes = merge(&mut db, &records(&new, &s).unwrap().tree, "k8s.io").unwrap();
        assert!(
            changes.contains(&"image registry.k8s.io/pause:3.10 (updated)".to_string()),
            "{changes:?}"
        );
        let rec = db
            .bucket_at(&[b"v1", b"k8s.io", b"images", b"registry.k8s.io/pause:3.10"])
            .unwrap();
        assert_eq!(
            Time::from_go_binary(rec.value(b"createdat").unwrap())
                .unwrap()
                .unix_secs,
            0
        );
        assert_eq!(
            Time::from_go_binary(rec.value(b"updatedat").unwrap())
                .unwrap()
                .unix_secs,
            7
        );
        assert_eq!(
            rec.bucket(b"target").unwrap().value(b"digest").unwrap(),
            new.target.digest().to_string().as_bytes()
        );
        assert!(rec
            .bucket(b"labels")
            .unwrap()
            .value(LABEL_PINNED.as_bytes())
            .is_some());
    }
}
