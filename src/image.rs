//! The pause image in memory: deterministic layer tar, gzip, canonical JSON config,
//! manifests and index, all assembled from ELF bytes without touching the filesystem.
//!
//! Everything here is a pure function of its inputs (the binaries, the names, the epoch and
//! the compression), so the same inputs give the same digests on any host with the same
//! `Cargo.lock` (the gzip bytes depend on the deflate backend's version). Writing the image
//! anywhere is `archive.rs`'s and `containerd/store.rs`'s business. The shapes follow the
//! OCI image spec (image-layout, image-index, image-manifest, config) and
//! `pause-and-anchors.md` §2.3.
//!
//! It also owns the one walk of an image graph, [`walk`], with its depth limit: listing an
//! image's manifests here, reading an archive, selecting what goes into the store and
//! verifying a store all go through it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::rc::Rc;

use anyhow::{ensure, Context, Result};
use oci_spec::image::{
    ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder,
    ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType, Os,
    PlatformBuilder, RootFsBuilder, ANNOTATION_REF_NAME,
};
use serde::Serialize;

use crate::cli::Compression;
use crate::platform::{Arch, Platform};

/// containerd's image-name annotation (`images.AnnotationImageName`): the full reference
/// `ctr import` names the image by (`containerd-store.md` §10).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Docker media types, for images read from docker archives or re-copied by other tools.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The `oci-layout` file of an OCI image layout.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Where the binary goes inside the layer, and what the config runs.
const PAUSE_PATH: &str = "pause";
const ENTRYPOINT: &str = "/pause";
/// Upstream's `USER 65535:65535` (since 3.5, kubernetes/kubernetes#97963).
const USER: &str = "65535:65535";
/// The history entry's `created_by`. Deliberately without pausebake's version, so a new
/// release that assembles the same bytes gives the same digests.
const CREATED_BY: &str = "pausebake image: /pause";
/// Pinned gzip level: the compressed bytes, and so every digest above the layer, depend on it.
const GZIP_LEVEL: u32 = 9;
/// How many indexes may nest above a manifest before [`walk`] refuses the image. The pause
/// image has at most index -> manifest; 4 leaves room for what registries produce.
pub const MAX_DEPTH: usize = 4;

/// A complete image in memory: every blob keyed by digest, the descriptor that `index.json`
/// and containerd's image record point at, and the references it is named by. Built once
/// and written to every sink, so the archive and the store cannot disagree about a digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `"sha256:<hex>"` -> bytes.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// An image index (several platforms) or a single manifest.
    pub target: Descriptor,
    /// Full references, e.g. `registry.k8s.io/pause:3.10`.
    pub names: Vec<String>,
}

/// What goes into the image besides the binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Full references to name the image by (index.json annotations, docker RepoTags).
    pub names: Vec<String>,
    /// Seconds since 1970 for every timestamp in the image (`SOURCE_DATE_EPOCH`).
    pub epoch: u64,
    /// Layer compression.
    pub compression: Compression,
}

/// Assembles the pause image from one static pause binary per architecture: one layer,
/// config and manifest per architecture, and an index over them when there are several.
/// The binaries' order does not matter: manifests follow [`Arch::ALL`].
pub fn assemble(binaries: &[(Arch, Vec<u8>)], spec: &ImageSpec) -> Result<Image> {
    ensure!(
        !binaries.is_empty(),
        "assembling the image: no pause binary given"
    );
    let mut by_arch = BTreeMap::new();
    for (arch, elf) in binaries {
        ensure!(
            by_arch.insert(*arch, elf).is_none(),
            "assembling the image: two pause binaries for {arch}; give one per architecture"
        );
    }
    for name in &spec.names {
        crate::reference::check_qualified(name)?;
    }
    let created = rfc3339(spec.epoch)?;
    let mut blobs = BTreeMap::new();
    let mut manifests = Vec::new();
    // BTreeMap order is Arch's declaration order, the same as Arch::ALL: fixed, whatever
    // order the caller listed the architectures in.
    for (arch, elf) in by_arch {
        manifests.push(platform_manifest(arch, elf, spec, &created, &mut blobs)?);
    }
    let target = if manifests.len() == 1 {
        manifests.remove(0)
    } else {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .context("building the image index")?;
        add_blob(&mut blobs, MediaType::ImageIndex, canonical_json(&index)?)
    };
    Ok(Image {
        blobs,
        target,
        names: dedup(&spec.names),
    })
}

/// Layer, config and manifest for one architecture; returns the manifest descriptor with
/// its platform set.
fn platform_manifest(
    arch: Arch,
    elf: &[u8],
    spec: &ImageSpec,
    created: &str,
    blobs: &mut BTreeMap<String, Vec<u8>>,
) -> Result<Descriptor> {
    let tar = layer_tar(elf, spec.epoch)?;
    let diff_id = crate::digest::sha256_digest(&tar);
    let layer = match spec.compression {
        Compression::Gzip => add_blob(blobs, MediaType::ImageLayerGzip, gzip(&tar)?),
        Compression::None => add_blob(blobs, MediaType::ImageLayer, tar),
    };
    let config = config(arch, &diff_id, created)?;
    let config = add_blob(blobs, MediaType::ImageConfig, canonical_json(&config)?);
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(vec![layer])
        .build()
        .context("building the image manifest")?;
    let mut desc = add_blob(blobs, MediaType::ImageManifest, canonical_json(&manifest)?);
    desc.set_platform(Some(oci_platform(arch)?));
    Ok(desc)
}

/// The one layer: a tar holding only `pause`, with every header field set by hand.
pub fn layer_tar(elf: &[u8], epoch: u64) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    // Headers are built field by field, never copied from the host (style §4.5 rule 2);
    // HeaderMode::Deterministic would set mtime to its own constant, not the epoch.
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o755);
    // Numeric owner 0:0 and no user/group names, as upstream's layer.
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(epoch);
    header.set_size(elf.len() as u64);
    builder
        .append_data(&mut header, PAUSE_PATH, elf)
        .context("writing the layer tar")?;
    builder.into_inner().context("finishing the layer tar")
}

/// gzip with flate2's fixed header (mtime 0, no file name, OS 255) at a pinned level.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
    enc.write_all(data).context("compressing the layer")?;
    enc.finish().context("compressing the layer")
}

/// The image config: what upstream's Dockerfile sets (`pause-and-anchors.md` §2.2), with
/// `created` from the epoch and no BuildKit `Env`: pause executes nothing.
fn config(arch: Arch, diff_id: &str, created: &str) -> Result<ImageConfiguration> {
    let runtime = ConfigBuilder::default()
        .entrypoint(vec![ENTRYPOINT.to_string()])
        .user(USER)
        .working_dir("/")
        .build()
        .context("building the runtime config")?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![diff_id.to_string()])
        .build()
        .context("building rootfs")?;
    let history = HistoryBuilder::default()
        .created(created)
        .created_by(CREATED_BY)
        .build()
        .context("building the history entry")?;
    let mut builder = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(arch.name())
        .os(Os::Linux)
        .config(runtime)
        .rootfs(rootfs)
        .history(vec![history]);
    if let Some(variant) = arch.variant() {
        builder = builder.variant(variant);
    }
    builder.build().context("building the image config")
}

fn oci_platform(arch: Arch) -> Result<oci_spec::image::Platform> {
    let mut builder = PlatformBuilder::default()
        .architecture(arch.name())
        .os(Os::Linux);
    if let Some(variant) = arch.variant() {
        builder = builder.variant(variant);
    }
    builder.build().context("building the platform")
}

/// Stores `bytes` under its digest and returns its descriptor.
fn add_blob(
    blobs: &mut BTreeMap<String, Vec<u8>>,
    media_type: MediaType,
    bytes: Vec<u8>,
) -> Descriptor {
    let desc = descriptor(media_type, &bytes);
    blobs.insert(desc.digest().to_string(), bytes);
    desc
}

/// The descriptor of `bytes`.
pub fn descriptor(media_type: MediaType, bytes: &[u8]) -> Descriptor {
    let digest: oci_spec::image::Digest = crate::digest::sha256_digest(bytes)
        .parse()
        .expect("a sha256 hex digest is a valid OCI digest");
    Descriptor::new(media_type, bytes.len() as u64, digest)
}

/// JSON with every object's keys sorted and no insignificant whitespace, so a digest never
/// depends on map order. Going through `serde_json::Value` sorts keys because its map is a
/// `BTreeMap` unless serde_json's `preserve_order` feature is on; a unit test guards that,
/// including for oci-spec's `HashMap` annotations.
pub fn canonical_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let value = serde_json::to_value(v).context("serializing JSON")?;
    serde_json::to_vec(&value).context("serializing JSON")
}

/// RFC 3339 UTC time of `epoch` seconds since 1970, e.g. `1970-01-01T00:00:00Z`.
pub fn rfc3339(epoch: u64) -> Result<String> {
    let days = i64::try_from(epoch / 86_400)
        .ok()
        .filter(|d| *d < 2_932_897) // 9999-12-31: RFC 3339 years have four digits
        .with_context(|| format!("formatting epoch {epoch}: past the year 9999"))?;
    let secs = epoch % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

/// `names` without repeats, first occurrence kept.
fn dedup(names: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    names
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .cloned()
        .collect()
}

/// Whether a media type is an image index (OCI or Docker manifest list).
pub fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(s) => s == DOCKER_MANIFEST_LIST,
        _ => false,
    }
}

/// Whether a media type is an image manifest (OCI or Docker schema 2).
pub fn is_manifest(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageManifest => true,
        MediaType::Other(s) => s == DOCKER_MANIFEST,
        _ => false,
    }
}

/// Direct children described by the blob `bytes` of media type `media_type`: an index's
/// manifests, a manifest's config and layers; nothing for any other blob. Refuses a blob
/// whose own `mediaType` field contradicts its descriptor, and one with the other kind's
/// fields (a manifest described as an index, or the reverse). The one parser of children.
pub fn children_of(media_type: &MediaType, bytes: &[u8]) -> Result<Vec<Descriptor>> {
    let check = |found: Option<&MediaType>| -> Result<()> {
        if let Some(found) = found {
            ensure!(
                found == media_type,
                "its mediaType is {found}, but its descriptor says {media_type}"
            );
        }
        Ok(())
    };
    // The fields of the other kind: a manifest described as an index (or the reverse) must
    // not pass for one with no children.
    let has = |fields: &[&str]| -> Result<bool> {
        let json: serde_json::Value = serde_json::from_slice(bytes).context("parsing JSON")?;
        Ok(fields.iter().any(|f| json.get(f).is_some()))
    };
    if is_index(media_type) {
        let index: ImageIndex = serde_json::from_slice(bytes).context("parsing image index")?;
        check(index.media_type().as_ref())?;
        ensure!(
            !has(&["layers", "config"])?,
            "described as an index, but it is a manifest"
        );
        Ok(index.manifests().clone())
    } else if is_manifest(media_type) {
        let manifest: ImageManifest =
            serde_json::from_slice(bytes).context("parsing image manifest")?;
        check(manifest.media_type().as_ref())?;
        ensure!(
            !has(&["manifests"])?,
            "described as a manifest, but it is an index"
        );
        let mut out = vec![manifest.config().clone()];
        out.extend(manifest.layers().iter().cloned());
        Ok(out)
    } else {
        Ok(Vec::new())
    }
}

/// The pausebake platform an OCI os/architecture/variant triple names, if it is one we know.
pub fn platform_of(os: &str, arch: &str, variant: Option<&str>) -> Option<Platform> {
    let s = match variant {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    };
    s.parse().ok()
}

/// One blob the [`walk`] reached: its descriptor, and the blob whose descriptor led there
/// (`None` for the descriptor the walk started from).
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    pub desc: &'a Descriptor,
    pub parent: Option<&'a Descriptor>,
}

/// An index with children below [`MAX_DEPTH`] indexes: the walk refuses to go on. A type of
/// its own so a caller that reports rather than fails (`verify`) can tell it from its own
/// errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    /// The index whose children would sit too deep.
    pub index: String,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refusing index {}: indexes nest deeper than {MAX_DEPTH}",
            self.index
        )
    }
}

impl std::error::Error for TooDeep {}

/// The one walk of an image graph: depth first from `root`, children in the order given,
/// each blob (by digest) visited once however many descriptors point at it. `visit` checks
/// or records one blob and returns the children to descend into (none to stop there).
///
/// The walk owns the depth limit: an index under [`MAX_DEPTH`] indexes may not lead
/// further, else the walk stops with a [`TooDeep`] error naming it. Manifests do not count,
/// so the deepest image allowed is `MAX_DEPTH` indexes, a manifest, its config and layers.
/// The walk keeps its own stack, so no chain of blobs can exhaust the thread's.
pub fn walk<F>(root: &Descriptor, mut visit: F) -> Result<()>
where
    F: FnMut(Node<'_>) -> Result<Vec<Descriptor>>,
{
    // (descriptor, the blob that listed it, how many indexes stand above it)
    let mut stack: Vec<(Descriptor, Option<Rc<Descriptor>>, usize)> = vec![(root.clone(), None, 0)];
    let mut seen = BTreeSet::new();
    while let Some((desc, parent, indexes_above)) = stack.pop() {
        if !seen.insert(desc.digest().to_string()) {
            continue;
        }
        let kids = visit(Node {
            desc: &desc,
            parent: parent.as_deref(),
        })?;
        if kids.is_empty() {
            continue;
        }
        let index = is_index(desc.media_type());
        if index && indexes_above >= MAX_DEPTH {
            return Err(TooDeep {
                index: desc.digest().to_string(),
            }
            .into());
        }
        let below = indexes_above + usize::from(index);
        let desc = Rc::new(desc);
        stack.extend(
            kids.into_iter()
                .rev()
                .map(|kid| (kid, Some(Rc::clone(&desc)), below)),
        );
    }
    Ok(())
}

impl Image {
    /// The bytes of the blob `desc` points at.
    pub fn blob(&self, desc: &Descriptor) -> Result<&[u8]> {
        let digest = desc.digest().to_string();
        self.blobs
            .get(&digest)
            .map(Vec::as_slice)
            .with_context(|| format!("looking up blob {digest}: not in the image"))
    }

    /// Direct children of a descriptor: index -> manifests, manifest -> config + layers.
    /// OCI and Docker media types.
    pub fn children(&self, desc: &Descriptor) -> Result<Vec<Descriptor>> {
        children_of(desc.media_type(), self.blob(desc)?)
            .with_context(|| format!("reading blob {}", desc.digest()))
    }

    /// The manifest descriptor for `platform` (target itself when it is a manifest whose
    /// config matches). The tests' view of [`Image::manifests`]; `import` selects with
    /// `containerd::store::select`, which also reads index entries' platforms.
    #[cfg(test)]
    pub fn manifest_for(&self, platform: Platform) -> Result<Descriptor> {
        let all = self.manifests()?;
        if let Some((desc, _)) = all.iter().find(|(_, p)| *p == Some(platform)) {
            return Ok(desc.clone());
        }
        let have: Vec<String> = all
            .iter()
            .filter_map(|(_, p)| p.map(|p| p.to_string()))
            .collect();
        anyhow::bail!(
            "finding {platform} in image {}: it provides only {}",
            self.target.digest(),
            if have.is_empty() {
                "no linux platform pausebake knows".to_string()
            } else {
                have.join(", ")
            }
        )
    }

    /// Puts the target into a new index of one entry, which becomes the target (tests build
    /// deeply nested images with it).
    #[cfg(test)]
    pub fn wrap_in_index(&mut self) {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![self.target.clone()])
            .build()
            .expect("an index of one entry");
        let bytes = canonical_json(&index).expect("an index serializes");
        self.target = add_blob(&mut self.blobs, MediaType::ImageIndex, bytes);
    }

    /// Platforms this image provides (read by the tests).
    #[cfg(test)]
    pub fn platforms(&self) -> Result<Vec<Platform>> {
        let mut out: Vec<Platform> = self.manifests()?.into_iter().filter_map(|m| m.1).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Every manifest reachable from the target, with the platform its config declares
    /// (`None` for platforms pausebake does not know, e.g. attestation manifests).
    fn manifests(&self) -> Result<Vec<(Descriptor, Option<Platform>)>> {
        let mut out = Vec::new();
        walk(&self.target, |node| {
            if is_manifest(node.desc.media_type()) {
                out.push((node.desc.clone(), self.config_platform(node.desc)?));
                Ok(Vec::new())
            } else if is_index(node.desc.media_type()) {
                self.children(node.desc)
            } else {
                Ok(Vec::new())
            }
        })?;
        Ok(out)
    }

    /// The platform the config of `manifest` declares, if pausebake knows it.
    fn config_platform(&self, manifest: &Descriptor) -> Result<Option<Platform>> {
        let children = self.children(manifest)?;
        let config = children
            .first()
            .expect("children_of always puts a manifest's config first");
        let cfg: ImageConfiguration = serde_json::from_slice(self.blob(config)?)
            .with_context(|| format!("parsing image config {}", config.digest()))?;
        Ok(platform_of(
            &cfg.os().to_string(),
            &cfg.architecture().to_string(),
            cfg.variant().as_deref(),
        ))
    }

    /// The `index.json` of an OCI layout holding this image: one descriptor per name, each
    /// the target annotated with `io.containerd.image.name` (the full reference) and, when
    /// the name has a tag, `org.opencontainers.image.ref.name` (the tag); one unannotated
    /// descriptor when the image has no name.
    pub fn index_json(&self) -> Result<Vec<u8>> {
        let manifests = if self.names.is_empty() {
            vec![self.target.clone()]
        } else {
            self.names
                .iter()
                .map(|name| {
                    let mut desc = self.target.clone();
                    let mut annotations = desc.annotations().clone().unwrap_or_default();
                    annotations.insert(ANNOTATION_IMAGE_NAME.to_string(), name.clone());
                    if let Some(tag) = crate::reference::tag(name) {
                        annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
                    }
                    desc.set_annotations(Some(annotations));
                    desc
                })
                .collect()
        };
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .context("building index.json")?;
        canonical_json(&index)
    }

    /// Per platform: the manifest descriptor, its config and layer descriptors, and the
    /// total size of those blobs (what a node stores for that platform).
    pub fn platform_summaries(&self) -> Result<Vec<PlatformSummary>> {
        let mut out = Vec::new();
        for (manifest, platform) in self.manifests()? {
            let children = self.children(&manifest)?;
            let size = manifest.size() + children.iter().map(Descriptor::size).sum::<u64>();
            out.push(PlatformSummary {
                platform,
                manifest,
                config: children[0].clone(),
                layers: children[1..].to_vec(),
                size,
            });
        }
        Ok(out)
    }
}

/// One platform's part of an image, for reports.
#[derive(Debug, Clone)]
pub struct PlatformSummary {
    pub platform: Option<Platform>,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Manifest + config + layers, in bytes.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(compression: Compression) -> ImageSpec {
        ImageSpec {
            names: vec!["registry.k8s.io/pause:3.10".to_string()],
            epoch: 0,
            compression,
        }
    }

    fn fake(arch: Arch) -> (Arch, Vec<u8>) {
        (arch, format!("not really an elf for {arch}").into_bytes())
    }

    #[test]
    fn canonical_json_sorts_keys_and_is_compact() {
        // A HashMap with many keys: its iteration order is seeded per process, so only
        // sorting makes this deterministic. Fails if serde_json's preserve_order is enabled.
        let mut map = std::collections::HashMap::new();
        for k in [
            "zeta",
            "alpha",
            "mu",
            "beta",
            "omega",
            "io.containerd.image.name",
        ] {
            map.insert(k, 1);
        }
        let nested = serde_json::json!({"b": {"z": 1, "a": [ {"y": 2, "x": 3} ]}, "a": map});
        assert_eq!(
            String::from_utf8(canonical_json(&nested).unwrap()).unwrap(),
            r#"{"a":{"alpha":1,"beta":1,"io.containerd.image.name":1,"mu":1,"omega":1,"zeta":1},"b":{"a":[{"x":3,"y":2}],"z":1}}"#
        );
        // Struct fields are sorted too, not left in declaration order.
        let desc = descriptor(MediaType::ImageConfig, b"{}");
        assert_eq!(
            String::from_utf8(canonical_json(&desc).unwrap()).unwrap(),
            r#"{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","mediaType":"application/vnd.oci.image.config.v1+json","size":2}"#
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(253_402_300_799).unwrap(), "9999-12-31T23:59:59Z");
        assert!(rfc3339(253_402_300_800).is_err());
    }

    #[test]
    fn names_must_be_full_references() {
        let bins = [fake(Arch::Amd64)];
        let bad = ImageSpec {
            names: vec!["me/pause:1".into()],
            ..spec(Compression::Gzip)
        };
        assert!(assemble(&bins, &bad).is_err());
    }

    #[test]
    fn layer_headers_are_set_by_hand() {
        let tar = layer_tar(b"not really an elf", 1_700_000_000).unwrap();
        // One 512-byte header, the data padded to 512, and two zero blocks.
        assert_eq!(tar.len(), 512 + 512 + 1024);
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<_> = archive.entries().unwrap().map(Result::unwrap).collect();
        assert_eq!(entries.len(), 1);
        let h = entries[0].header();
        assert_eq!(h.path().unwrap().to_str(), Some("pause"));
        assert_eq!(h.entry_type(), tar::EntryType::Regular);
        assert_eq!(h.mode().unwrap(), 0o755);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.mtime().unwrap(), 1_700_000_000);
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
    }

    #[test]
    fn gzip_header_is_fixed() {
        let gz = gzip(b"x").unwrap();
        // magic, deflate, no flags, mtime 0, XFL 2 (level 9), OS 255 (unknown).
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
    }

    #[test]
    fn same_inputs_same_image() {
        let bins = [fake(Arch::Amd64), fake(Arch::Arm)];
        let a = assemble(&bins, &spec(Compression::Gzip)).unwrap();
        let b = assemble(
            &[fake(Arch::Arm), fake(Arch::Amd64)],
            &spec(Compression::Gzip),
        )
        .unwrap();
        assert_eq!(a, b);
        let later = ImageSpec {
            epoch: 1,
            ..spec(Compression::Gzip)
        };
        assert_ne!(a.target, assemble(&bins, &later).unwrap().target);
    }

    #[test]
    fn config_matches_upstream_shape() {
        let image = assemble(&[fake(Arch::Arm)], &spec(Compression::None)).unwrap();
        let children = image.children(&image.target).unwrap();
        let config = String::from_utf8(image.blob(&children[0]).unwrap().to_vec()).unwrap();
        let diff_id = children[1].digest().to_string();
        assert_eq!(
            config,
            format!(
                concat!(
                    r#"{{"architecture":"arm","config":{{"Entrypoint":["/pause"],"User":"65535:65535","WorkingDir":"/"}},"#,
                    r#""created":"1970-01-01T00:00:00Z","history":[{{"created":"1970-01-01T00:00:00Z","created_by":"pausebake image: /pause"}}],"#,
                    r#""os":"linux","rootfs":{{"diff_ids":["{}"],"type":"layers"}},"variant":"v7"}}"#
                ),
                diff_id
            )
        );
        // Uncompressed: the layer digest is its diff_id.
        assert_eq!(children[1].media_type(), &MediaType::ImageLayer);
        assert_eq!(
            image.platforms().unwrap(),
            vec![Platform { arch: Arch::Arm }]
        );
        assert_eq!(
            image.manifest_for(Platform { arch: Arch::Arm }).unwrap(),
            image.target
        );
        let err = image
            .manifest_for(Platform { arch: Arch::Amd64 })
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("it provides only linux/arm/v7"), "{err}");
    }

    #[test]
    fn index_json_names_every_reference() {
        let mut image = assemble(&[fake(Arch::Amd64)], &spec(Compression::Gzip)).unwrap();
        image.names = vec![
            "registry.k8s.io/pause:3.10".to_string(),
            "example.com/pause:3.10-local".to_string(),
        ];
        let index: ImageIndex = serde_json::from_slice(&image.index_json().unwrap()).unwrap();
        assert_eq!(index.manifests().len(), 2);
        let a = index.manifests()[1].annotations().clone().unwrap();
        assert_eq!(a[ANNOTATION_IMAGE_NAME], "example.com/pause:3.10-local");
        assert_eq!(a[ANNOTATION_REF_NAME], "3.10-local");
        assert_eq!(index.manifests()[1].digest(), image.target.digest());
        assert!(index.manifests()[1].platform().is_some());
    }

    /// An index over amd64 and arm64.
    fn two_arch() -> Image {
        assemble(
            &[fake(Arch::Amd64), fake(Arch::Arm64)],
            &spec(Compression::Gzip),
        )
        .unwrap()
    }

    #[test]
    fn the_walk_visits_each_blob_once_depth_first() {
        let mut image = two_arch();
        // List the amd64 manifest twice: the walk still reads it once.
        let mut index: ImageIndex =
            serde_json::from_slice(image.blob(&image.target).unwrap()).unwrap();
        let mut entries = index.manifests().clone();
        entries.push(entries[0].clone());
        index.set_manifests(entries);
        image.target = add_blob(
            &mut image.blobs,
            MediaType::ImageIndex,
            canonical_json(&index).unwrap(),
        );
        let mut visits = Vec::new();
        walk(&image.target, |node| {
            visits.push((
                node.desc.digest().to_string(),
                node.parent.map(|p| p.digest().to_string()),
            ));
            image.children(node.desc)
        })
        .unwrap();
        let digest = |d: &Descriptor| d.digest().to_string();
        let target = digest(&image.target);
        let mut want = vec![(target.clone(), None)];
        for manifest in index.manifests().iter().take(2) {
            want.push((digest(manifest), Some(target.clone())));
            for kid in image.children(manifest).unwrap() {
                want.push((digest(&kid), Some(digest(manifest))));
            }
        }
        assert_eq!(visits, want);
        assert_eq!(
            visits.len(),
            image.blobs.len() - 1,
            "all but the first index"
        );
    }

    #[test]
    fn the_walk_allows_max_depth_indexes_and_refuses_one_more() {
        let mut image = two_arch();
        // The target is one index; MAX_DEPTH - 1 more above it is the most allowed.
        for _ in 1..MAX_DEPTH {
            image.wrap_in_index();
        }
        let mut read = 0;
        walk(&image.target, |node| {
            read += 1;
            image.children(node.desc)
        })
        .unwrap();
        assert_eq!(read, image.blobs.len());
        assert_eq!(image.platforms().unwrap().len(), 2);
        image.wrap_in_index();
        // The index refused is the deepest one, the original target: MAX_DEPTH indexes
        // stand above it.
        let original = two_arch().target;
        let err = walk(&image.target, |node| image.children(node.desc)).unwrap_err();
        assert_eq!(
            err.downcast_ref::<TooDeep>(),
            Some(&TooDeep {
                index: original.digest().to_string()
            })
        );
        assert_eq!(
            err.to_string(),
            format!(
                "refusing index {}: indexes nest deeper than 4",
                original.digest()
            )
        );
        assert!(image.platforms().is_err());
    }

    /// Pinned digests of images assembled from fixed fake bytes: any change to the tar,
    /// gzip, config, manifest or index bytes shows up here. Update deliberately, never
    /// casually: a change means every user's image digest changes.
    #[test]
    fn children_refuse_a_blob_of_the_other_kind_or_a_contradicting_media_type() {
        // the one parser of children: store, verify, archive and the walk all use it
        let image = two_arch();
        let index = image.blob(&image.target).unwrap().to_vec();
        let manifest_desc = image.children(&image.target).unwrap()[0].clone();
        let manifest = image.blob(&manifest_desc).unwrap().to_vec();
        assert_eq!(
            children_of(&MediaType::ImageManifest, &manifest)
                .unwrap()
                .len(),
            2
        );
        // an index (no mediaType field of its own) that also carries a manifest's config
        let mut hybrid: serde_json::Value = serde_json::from_slice(&index).unwrap();
        let obj = hybrid.as_object_mut().unwrap();
        obj.remove("mediaType");
        let manifest_json: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        obj.insert("config".into(), manifest_json["config"].clone());
        let hybrid = serde_json::to_vec(&hybrid).unwrap();
        let err = children_of(&MediaType::ImageIndex, &hybrid).unwrap_err();
        assert!(format!("{err:#}").contains("it is a manifest"), "{err:#}");
        // a manifest whose own mediaType field says index
        let mut liar: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        liar["mediaType"] = "application/vnd.oci.image.index.v1+json".into();
        let liar = serde_json::to_vec(&liar).unwrap();
        let err = children_of(&MediaType::ImageManifest, &liar).unwrap_err();
        assert!(format!("{err:#}").contains("its mediaType is"), "{err:#}");
        // an index described as a manifest is no manifest
        assert!(children_of(&MediaType::ImageManifest, &index).is_err());
    }

    #[test]
    fn pinned_digests() {
        let cases: [(&[Arch], Compression, &str, usize); 4] = [
            (
                &[Arch::Amd64],
                Compression::Gzip,
                "sha256:6e40d89e33b1d3e51b39dc2e44c60b662cf7f83023356dcbf8bb1df432522023",
                848,
            ),
            (
                &[Arch::Amd64],
                Compression::None,
                "sha256:d1a444094bb0eeef33376c3c928710e7c57528bf58b12dde804b751d654e7e35",
                2788,
            ),
            (
                &[Arch::Amd64, Arch::Arm64, Arch::Arm],
                Compression::Gzip,
                "sha256:0a9a80579aa0588cd2344776764ea35dbca13786fee6d58d648c886d273a807e",
                3262,
            ),
            (
                &[Arch::Amd64, Arch::Arm64, Arch::Arm],
                Compression::None,
                "sha256:6b2d9ae6655d9fcdeb8fbf1bb3c97c44d90ae9689427a0ee9aa5ec4af6ba7bed",
                9083,
            ),
        ];
        for (arches, compression, digest, size) in cases {
            let bins: Vec<_> = arches.iter().map(|a| fake(*a)).collect();
            let image = assemble(&bins, &spec(compression)).unwrap();
            let what = format!("{arches:?} {compression:?}");
            assert_eq!(image.target.digest().to_string(), digest, "{what}");
            let total: usize = image.blobs.values().map(Vec::len).sum();
            assert_eq!(total, size, "{what}");
            assert_eq!(
                image.target.media_type(),
                if arches.len() == 1 {
                    &MediaType::ImageManifest
                } else {
                    &MediaType::ImageIndex
                }
            );
        }
        // The layer tar alone: independent of the deflate backend, so stable across hosts.
        assert_eq!(
            crate::digest::sha256_digest(&layer_tar(b"not really an elf for amd64", 0).unwrap()),
            "sha256:1ee30b1b73661ab58afc61801d500e445c61608ea6f5225eb91ae89d96516033"
        );
    }
}
