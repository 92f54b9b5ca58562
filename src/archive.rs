//! Writing and reading images on disk: OCI archive (tar of an OCI layout), OCI layout
//! directory, and docker archive. Reading validates every digest and size.
//!
//! Written archives are a pure function of the [`Image`]: entries in sorted path order,
//! headers set by hand with mtime 0 (the epoch lives in the layer and the config; the
//! wrapper carries no time of its own). The docker archive is an OCI layout plus the
//! `manifest.json` of `docker save`, the shape Docker 25+ writes: `ctr import` and the
//! k3s/RKE2 air-gap directory take the OCI layout (and keep our digests), `docker load`
//! and `skopeo` take `manifest.json`.
//!
//! Reading treats the archive as hostile (issue 8): only regular files and directories
//! with relative, `..`-free, unique paths are accepted, plus, in a docker archive only,
//! symbolic links from one of its regular files to another, resolved in memory (what
//! `docker save` and skopeo write to share a layer; nothing is ever created on disk); no allocation is sized from a
//! declared length before that length is checked against what is present; every blob
//! reachable from `index.json` must be present with the size and sha256 its descriptor
//! gives; indexes may not nest deeper than [`image::MAX_DEPTH`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, ensure, Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, MediaType, ANNOTATION_REF_NAME};
use serde::{Deserialize, Serialize};

use crate::cli::{CompileArgs, Format, ImageArgs};
use crate::image::{self, Image, ImageSpec, ANNOTATION_IMAGE_NAME};
use crate::platform::Arch;

/// The largest blob we read. The image lives in memory (`Image::blobs`); the pause image is
/// a few KiB, and this bounds what a hostile archive can make us hold.
const MAX_BLOB: u64 = 1 << 30;
/// The largest total of file contents we read from one archive.
const MAX_TOTAL: u64 = 2 << 30;
/// The largest JSON document (index.json, manifest.json, oci-layout) we parse.
const MAX_JSON: u64 = 4 << 20;

/// `pausebake image`.
pub fn image(args: &ImageArgs) -> Result<ExitCode> {
    let binaries = binaries(args)?;
    let spec = ImageSpec {
        names: args.names.clone(),
        epoch: args.spec.epoch.source_date_epoch.unwrap_or(0),
        compression: args.spec.compression,
    };
    let image = image::assemble(&binaries, &spec)?;
    write(&image, args.format, &args.output)?;
    let summaries = image.platform_summaries()?;
    if args.output_args.json {
        let platforms: Vec<_> = summaries
            .iter()
            .map(|s| {
                serde_json::json!({
                    "platform": s.platform.map(|p| p.to_string()),
                    "manifest": s.manifest.digest().to_string(),
                    "config": s.config.digest().to_string(),
                    "layers": s.layers.iter().map(|l| l.digest().to_string()).collect::<Vec<_>>(),
                    "size": s.size,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "digest": image.target.digest().to_string(),
            "mediaType": image.target.media_type().to_string(),
            "path": args.output.display().to_string(),
            "format": format_name(args.format),
            "names": image.names,
            "platforms": platforms,
        });
        crate::output::print_json(&doc)?;
    } else {
        // First line: the digest alone, for scripts (`| head -n1`).
        println!("{}", image.target.digest());
        for s in &summaries {
            let platform = s
                .platform
                .map_or_else(|| "unknown".into(), |p| p.to_string());
            println!("  {platform} {} ({} bytes)", s.manifest.digest(), s.size);
        }
        eprintln!(
            "wrote {} ({})",
            args.output.display(),
            format_name(args.format)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The pause binaries for `pausebake image`: each `--binary` read and checked like a
/// compiled one, then every other `--arch` (or the host, when neither is given) built in
/// or compiled.
fn binaries(args: &ImageArgs) -> Result<Vec<(Arch, Vec<u8>)>> {
    let mut out = crate::pause::read_binaries(&args.spec.binary)?;
    let rest: Vec<Arch> = args
        .compile
        .arch
        .iter()
        .copied()
        .filter(|a| !out.iter().any(|(b, _)| b == a))
        .collect();
    // No --arch: the host's pause unless prebuilt binaries were given.
    let more = if args.compile.arch.is_empty() {
        out.is_empty()
    } else {
        !rest.is_empty()
    };
    if more {
        out.extend(crate::pause::programs(&CompileArgs {
            arch: rest,
            ..args.compile.clone()
        })?);
    }
    Ok(out)
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::OciArchive => "oci-archive",
        Format::OciDir => "oci-dir",
        Format::DockerArchive => "docker-archive",
    }
}

/// One entry of a docker archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn blob_path(digest: &str) -> Result<String> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("blob {digest}: only sha256 digests are supported"))?;
    Ok(format!("blobs/sha256/{hex}"))
}

/// The files of an OCI layout holding `image` (plus a docker `manifest.json` when
/// `docker`), by path; sorted because it is a `BTreeMap`.
fn layout_files(image: &Image, docker: bool) -> Result<BTreeMap<String, Cow<'_, [u8]>>> {
    let mut files = BTreeMap::new();
    files.insert("oci-layout".to_string(), Cow::Borrowed(image::OCI_LAYOUT));
    files.insert("index.json".to_string(), Cow::Owned(image.index_json()?));
    for (digest, bytes) in &image.blobs {
        files.insert(blob_path(digest)?, Cow::Borrowed(bytes.as_slice()));
    }
    if docker {
        let summaries = image.platform_summaries()?;
        ensure!(
            summaries.len() == 1,
            "writing a docker archive: it holds one platform per image, and this image has {}; \
             build it for one --arch, or write an oci-archive",
            summaries.len()
        );
        let s = &summaries[0];
        let entry = DockerEntry {
            config: blob_path(s.config.digest().as_ref())?,
            repo_tags: Some(image.names.clone()),
            layers: s
                .layers
                .iter()
                .map(|l| blob_path(l.digest().as_ref()))
                .collect::<Result<_>>()?,
        };
        files.insert(
            "manifest.json".to_string(),
            Cow::Owned(image::canonical_json(&[entry])?),
        );
    }
    Ok(files)
}

/// The directories an OCI layout needs, in the order they must be created.
const LAYOUT_DIRS: [&str; 2] = ["blobs", "blobs/sha256"];

/// The tar bytes of `files` with their directories, every header set by hand.
fn tar_bytes(files: &BTreeMap<String, Cow<'_, [u8]>>) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    // Directory entries first: they sort before their contents, and "blobs/" sorts
    // before "index.json", so the whole archive is in path order.
    for dir in LAYOUT_DIRS {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        builder
            .append_data(&mut h, format!("{dir}/"), io::empty())
            .context("writing the archive tar")?;
    }
    for (path, bytes) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        builder
            .append_data(&mut h, path, &bytes[..])
            .context("writing the archive tar")?;
    }
    builder.into_inner().context("finishing the archive tar")
}

/// A tar header with every field we care about set explicitly: owner 0:0, no names,
/// mtime 0 (the archive wrapper carries no time; style §4.5).
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// Writes `image` to `path` as `format`, atomically: a temporary file (or directory) in the
/// same directory, renamed into place, so a reader never sees half an archive.
pub fn write(image: &Image, format: Format, path: &Path) -> Result<()> {
    match format {
        Format::OciArchive | Format::DockerArchive => {
            let files = layout_files(image, format == Format::DockerArchive)?;
            let bytes = tar_bytes(&files)?;
            write_file_atomic(path, &bytes)
        }
        Format::OciDir => write_dir_atomic(image, path),
    }
    .with_context(|| format!("writing {} {}", format_name(format), path.display()))
}

/// `path`'s parent directory and a temporary name beside `path`.
fn temp_beside(path: &Path, what: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(
        ".{}.{what}-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    ensure!(
        !path.is_dir(),
        "it is a directory; give the path of the file to write (or --format oci-dir to write \
         an OCI layout directory)"
    );
    let tmp = temp_beside(path, "tmp")?;
    let result = (|| -> Result<()> {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        // Keep the mode of a file we replace (style §4.6).
        if let Ok(old) = fs::metadata(path) {
            f.set_permissions(old.permissions())
                .with_context(|| format!("setting the mode of {}", tmp.display()))?;
        }
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_dir_atomic(image: &Image, path: &Path) -> Result<()> {
    // Replace only what is recognisably an OCI layout (or nothing): never delete a
    // directory of someone else's files because it was named as the output.
    if let Ok(meta) = fs::symlink_metadata(path) {
        let is_layout = meta.is_dir()
            && (path.join("oci-layout").is_file() || fs::read_dir(path)?.next().is_none());
        ensure!(
            is_layout,
            "refusing to replace {}: it exists and is not an OCI layout directory",
            path.display()
        );
    }
    let tmp = temp_beside(path, "tmp")?;
    let result = (|| -> Result<()> {
        if tmp.exists() {
            fs::remove_dir_all(&tmp)
                .with_context(|| format!("removing stale {}", tmp.display()))?;
        }
        for dir in std::iter::once("").chain(LAYOUT_DIRS) {
            let d = tmp.join(dir);
            fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        for (name, bytes) in layout_files(image, false)? {
            let p = tmp.join(&name);
            let mut f = File::create(&p).with_context(|| format!("creating {}", p.display()))?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", p.display()))?;
        }
        if path.exists() {
            let old = temp_beside(path, "old")?;
            fs::rename(path, &old)
                .with_context(|| format!("moving the old {} aside", path.display()))?;
            fs::rename(&tmp, path)
                .with_context(|| format!("renaming {} into place", tmp.display()))?;
            fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))
        } else {
            fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))
        }
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

/// Reads an OCI archive (tar, optionally gzip-compressed), an OCI layout directory, or a
/// docker archive into an [`Image`], validating everything: every blob's sha256 and size
/// against its descriptor, every referenced blob present. Names come from `index.json`
/// annotations (`io.containerd.image.name`, else a full reference in
/// `org.opencontainers.image.ref.name`; a bare tag names nothing) or docker `RepoTags`.
/// When both `oci-layout` and `manifest.json` are present the OCI layout wins, as in
/// containerd's importer.
pub fn read(path: &Path) -> Result<Image> {
    let meta = fs::metadata(path).with_context(|| {
        format!(
            "reading image archive {} (an OCI archive, OCI directory or docker archive)",
            path.display()
        )
    })?;
    let source = if meta.is_dir() {
        Source::Dir(path.to_path_buf())
    } else {
        Source::Tar(read_tar(path, meta.len())?)
    };
    from_source(&source).with_context(|| format!("reading image archive {}", path.display()))
}

/// Where an archive's files come from.
enum Source {
    /// Every regular file of a tar, by normalized path.
    Tar(BTreeMap<String, Vec<u8>>),
    /// An OCI layout directory.
    Dir(PathBuf),
}

impl Source {
    /// The file at the normalized relative path `name`, reading at most `limit + 1` bytes
    /// so the caller can tell "too big" from "exactly right" without trusting a size.
    fn get(&self, name: &str, limit: u64) -> Result<Option<Cow<'_, [u8]>>> {
        match self {
            Source::Tar(files) => Ok(files.get(name).map(|b| Cow::Borrowed(b.as_slice()))),
            Source::Dir(root) => {
                let mut p = root.clone();
                // Every component must be a real directory or file, never a symlink that
                // could point outside the layout.
                for part in name.split('/') {
                    p.push(part);
                    match fs::symlink_metadata(&p) {
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => {
                            return Err(e).with_context(|| format!("reading {}", p.display()))
                        }
                        Ok(m) if m.file_type().is_symlink() => {
                            bail!("refusing {}: it is a symbolic link", p.display())
                        }
                        Ok(_) => {}
                    }
                }
                let f = File::open(&p).with_context(|| format!("opening {}", p.display()))?;
                ensure!(
                    f.metadata()?.is_file(),
                    "refusing {}: not a regular file",
                    p.display()
                );
                let mut buf = Vec::new();
                f.take(limit.saturating_add(1))
                    .read_to_end(&mut buf)
                    .with_context(|| format!("reading {}", p.display()))?;
                Ok(Some(Cow::Owned(buf)))
            }
        }
    }

    /// Like [`Source::get`], but a missing file is an error naming `why` it was wanted.
    fn need(&self, name: &str, limit: u64, why: &str) -> Result<Cow<'_, [u8]>> {
        self.get(name, limit)?
            .ok_or_else(|| anyhow!("{name} is missing ({why})"))
    }

    fn has(&self, name: &str) -> Result<bool> {
        Ok(self.get(name, 0)?.is_some())
    }
}

/// Reads every regular file of the tar (plain or gzip) at `path` into memory, refusing
/// anything an image archive has no business containing.
fn read_tar(path: &Path, file_len: u64) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 2];
    let n = file
        .read(&mut magic)
        .with_context(|| format!("reading {}", path.display()))?;
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let gzip = n == 2 && magic == [0x1f, 0x8b];
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let what = if gzip { "gzip-compressed tar" } else { "tar" };
    read_tar_from(reader, (!gzip).then_some(file_len))
        .with_context(|| format!("reading {what} {}", path.display()))
}

/// The tar reader proper. `plain_len` is the archive's size when it is not compressed, so a
/// declared entry size can be checked against it before reading.
fn read_tar_from(reader: impl Read, plain_len: Option<u64>) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut archive = tar::Archive::new(reader);
    let mut files = BTreeMap::new();
    let mut dirs = BTreeSet::new();
    // symbolic links by normalized path: (path as written, target as written)
    let mut links: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut total = 0u64;
    for (i, entry) in archive.entries().context("reading the tar")?.enumerate() {
        let mut entry = match entry {
            Ok(entry) => entry,
            // The tar library's message quotes the bytes it could not parse: for a file that
            // is no archive at all (say /etc/passwd) that would echo its content.
            Err(_) if i == 0 => bail!(
                "not a tar or OCI archive (no tar header at its start); pass an OCI archive, \
                 OCI directory or docker archive"
            ),
            Err(e) => {
                return Err(e).context("reading a tar header (truncated or corrupt archive?)")
            }
        };
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = normalize(&raw).with_context(|| format!("refusing entry {raw:?}"))?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                ensure!(
                    !files.contains_key(&name) && (name.is_empty() || dirs.insert(name.clone())),
                    "refusing entry {raw:?}: duplicate entry"
                );
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            // pax global headers carry no file.
            tar::EntryType::XGlobalHeader => continue,
            // Kept aside, never created anywhere: only a docker archive may use them, and
            // only to share a regular file ([`resolve_links`]).
            tar::EntryType::Symlink => {
                ensure!(!name.is_empty(), "refusing entry {raw:?}: empty path");
                ensure!(
                    !files.contains_key(&name)
                        && !dirs.contains(&name)
                        && !links.contains_key(&name),
                    "refusing entry {raw:?}: duplicate entry"
                );
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                links.insert(name, (raw, target));
                continue;
            }
            other => bail!(
                "refusing entry {raw:?}: it is a {}; an image archive holds only regular \
                 files and directories",
                kind_name(other)
            ),
        }
        ensure!(!name.is_empty(), "refusing entry {raw:?}: empty path");
        ensure!(
            !files.contains_key(&name) && !dirs.contains(&name) && !links.contains_key(&name),
            "refusing entry {raw:?}: duplicate entry"
        );
        let declared = entry.size();
        if let Some(len) = plain_len {
            ensure!(
                declared <= len,
                "refusing entry {raw:?}: it declares {declared} bytes, but the whole archive \
                 is {len} bytes"
            );
        }
        ensure!(
            declared <= MAX_BLOB,
            "refusing entry {raw:?}: {declared} bytes is more than the {MAX_BLOB}-byte limit"
        );
        total += declared;
        ensure!(
            total <= MAX_TOTAL,
            "refusing the archive: its files total more than {MAX_TOTAL} bytes"
        );
        // No Vec::with_capacity(declared): memory grows only with bytes actually present.
        let mut buf = Vec::new();
        (&mut entry)
            .take(declared)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading entry {raw:?}"))?;
        ensure!(
            buf.len() as u64 == declared,
            "truncated archive: entry {raw:?} declares {declared} bytes, only {} present",
            buf.len()
        );
        files.insert(name, buf);
    }
    // Drain what follows the end-of-archive blocks so a gzip stream's CRC and length
    // are checked; the tar reader stops early and would never look at them.
    let mut rest = archive.into_inner();
    io::copy(&mut (&mut rest).take(MAX_BLOB), &mut io::sink())
        .context("reading past the end of the tar (corrupt compressed stream?)")?;
    resolve_links(&mut files, &links, total)?;
    Ok(files)
}

/// Gives each symbolic link of a docker archive the bytes of the file it points to, in
/// memory. `docker save` (before Docker 25) and `skopeo copy … docker-archive:` write each
/// layer once and link the legacy `<id>/layer.tar` to it (`../<digest>.tar`), so refusing
/// every link would refuse their archives. A link is accepted only when the archive is a
/// docker archive (`manifest.json`, no `oci-layout`: an OCI layout has no use for links),
/// its target is relative, stays inside the archive once resolved from the link's
/// directory, and is a regular file entry of the archive (not a directory, another link or
/// nothing). The copies count towards the archive's size limit.
fn resolve_links(
    files: &mut BTreeMap<String, Vec<u8>>,
    links: &BTreeMap<String, (String, String)>,
    mut total: u64,
) -> Result<()> {
    let docker = files.contains_key("manifest.json") && !files.contains_key("oci-layout");
    for (name, (raw, target)) in links {
        let refuse = |why: &str| anyhow!("refusing entry {raw:?}: it is a symbolic link{why}");
        if !docker {
            return Err(refuse(
                "; an image archive holds only regular files and directories (only a docker \
                 archive may link one of its files to another)",
            ));
        }
        if target.starts_with('/') {
            return Err(refuse(&format!(" to the absolute path {target:?}")));
        }
        // Resolve lexically from the link's own directory; `..` may not climb out.
        let mut path: Vec<&str> = name.split('/').collect();
        path.pop();
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if path.pop().is_none() {
                        return Err(refuse(&format!(
                            " to {target:?}, which is outside the archive"
                        )));
                    }
                }
                part => path.push(part),
            }
        }
        let resolved = path.join("/");
        let Some(bytes) = files.get(&resolved) else {
            let what = if links.contains_key(&resolved) {
                "another symbolic link"
            } else {
                "not a regular file of the archive"
            };
            return Err(refuse(&format!(" to {target:?}, which is {what}")));
        };
        total += bytes.len() as u64;
        ensure!(
            total <= MAX_TOTAL,
            "refusing the archive: its files total more than {MAX_TOTAL} bytes"
        );
        let bytes = bytes.clone();
        files.insert(name.clone(), bytes);
    }
    Ok(())
}

fn kind_name(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "symbolic link".into(),
        tar::EntryType::Link => "hard link".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "FIFO".into(),
        tar::EntryType::GNUSparse => "sparse file".into(),
        other => format!("tar entry of type {:?}", other.as_byte() as char),
    }
}

/// A relative archive path without `.` components or trailing slash; `..` and absolute
/// paths are refused.
fn normalize(raw: &str) -> Result<String> {
    let mut parts = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(p) => {
                parts.push(p.to_str().context("path is not UTF-8")?.to_string())
            }
            Component::CurDir => {}
            Component::ParentDir => bail!("its path contains '..'"),
            Component::RootDir | Component::Prefix(_) => bail!("its path is absolute"),
        }
    }
    Ok(parts.join("/"))
}

fn from_source(source: &Source) -> Result<Image> {
    if source.has("oci-layout")? {
        read_oci(source)
    } else if source.has("manifest.json")? {
        read_docker(source)
    } else {
        bail!("not an image archive: it has neither oci-layout nor manifest.json")
    }
}

fn json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    ensure!(
        bytes.len() as u64 <= MAX_JSON,
        "{what} is larger than {MAX_JSON} bytes"
    );
    serde_json::from_slice(bytes).with_context(|| format!("parsing {what}"))
}

fn read_oci(source: &Source) -> Result<Image> {
    #[derive(Deserialize)]
    struct Layout {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let layout: Layout = json(
        &source.need("oci-layout", MAX_JSON, "OCI layout")?,
        "oci-layout",
    )?;
    ensure!(
        layout.version == "1.0.0",
        "unsupported OCI layout version {:?} (expected 1.0.0)",
        layout.version
    );
    let index: ImageIndex = json(
        &source.need("index.json", MAX_JSON, "an OCI layout needs one")?,
        "index.json",
    )?;
    let entries = index.manifests();
    ensure!(!entries.is_empty(), "index.json lists no image");
    let first = entries[0].clone();
    for e in entries {
        ensure!(
            e.digest() == first.digest() && e.media_type() == first.media_type(),
            "index.json lists more than one image ({} and {}); pausebake reads one image per \
             archive",
            first.digest(),
            e.digest()
        );
    }
    let mut names = Vec::new();
    for e in entries {
        let a = e.annotations().clone().unwrap_or_default();
        let name = a.get(ANNOTATION_IMAGE_NAME).or_else(|| {
            a.get(ANNOTATION_REF_NAME)
                .filter(|n| n.contains(['/', ':', '@']))
        });
        if let Some(n) = name {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    // The target is the entry without the naming annotations: names travel separately.
    let mut target = first;
    if let Some(mut a) = target.annotations().clone() {
        a.remove(ANNOTATION_IMAGE_NAME);
        a.remove(ANNOTATION_REF_NAME);
        target.set_annotations((!a.is_empty()).then_some(a));
    }
    // index.json is not content-addressed: a media type there that is not an image would
    // make the walk stop at the target and pass off a bare blob as the whole image.
    ensure!(
        image::is_index(target.media_type()) || image::is_manifest(target.media_type()),
        "index.json entry {} has media type {}, not an image index or manifest",
        target.digest(),
        target.media_type()
    );
    let mut blobs = BTreeMap::new();
    // Every blob reachable from the target is loaded and checked against its descriptor.
    image::walk(&target, |node| {
        let digest = node.desc.digest().to_string();
        let parent = node
            .parent
            .map_or_else(|| "index.json".to_string(), |p| p.digest().to_string());
        let bytes = load_blob(source, node.desc, &parent)?;
        let kids = image::children_of(node.desc.media_type(), &bytes)
            .with_context(|| format!("reading blob {digest}"))?;
        blobs.insert(digest, bytes);
        Ok(kids)
    })?;
    Ok(Image {
        blobs,
        target,
        names,
    })
}

/// The bytes of `desc`'s blob, checked against its size and sha256.
fn load_blob(source: &Source, desc: &Descriptor, parent: &str) -> Result<Vec<u8>> {
    let digest = desc.digest().to_string();
    let name = blob_path(&digest)?;
    let size = desc.size();
    ensure!(
        size <= MAX_BLOB,
        "refusing blob {digest}: its descriptor in {parent} declares {size} bytes, more than \
         the {MAX_BLOB}-byte limit"
    );
    let bytes = source
        .get(&name, size)?
        .ok_or_else(|| anyhow!("blob {digest} is missing (referenced by {parent})"))?;
    ensure!(
        bytes.len() as u64 == size,
        "blob {digest} is {}{} bytes, but its descriptor in {parent} says {size}",
        if bytes.len() as u64 > size {
            "at least "
        } else {
            ""
        },
        bytes.len()
    );
    let actual = crate::digest::sha256_digest(&bytes);
    ensure!(
        actual == digest,
        "blob {digest} is corrupt: its content hashes to {actual}"
    );
    Ok(bytes.into_owned())
}

/// A docker archive (`docker save`): one `manifest.json` entry becomes a Docker schema 2
/// manifest, the way containerd's importer converts it; every layer is checked against
/// the config's `diff_ids`.
fn read_docker(source: &Source) -> Result<Image> {
    let entries: Vec<DockerEntry> = json(
        &source.need("manifest.json", MAX_JSON, "docker archive")?,
        "manifest.json",
    )?;
    ensure!(
        entries.len() == 1,
        "manifest.json lists {} images; pausebake reads one image per archive",
        entries.len()
    );
    let entry = &entries[0];
    let config_name = normalize(&entry.config)
        .with_context(|| format!("refusing config path {:?} in manifest.json", entry.config))?;
    let config_bytes = source.need(&config_name, MAX_JSON, "the config named in manifest.json")?;
    check_named_digest(&config_name, &config_bytes)?;
    let config: ImageConfiguration = json(&config_bytes, &config_name)?;
    let diff_ids = config.rootfs().diff_ids();
    ensure!(
        diff_ids.len() == entry.layers.len(),
        "manifest.json lists {} layers, but config {config_name} has {} diff_ids",
        entry.layers.len(),
        diff_ids.len()
    );
    let mut blobs = BTreeMap::new();
    let config_desc =
        image::descriptor(MediaType::Other(image::DOCKER_CONFIG.into()), &config_bytes);
    blobs.insert(config_desc.digest().to_string(), config_bytes.into_owned());
    let mut layers = Vec::new();
    for (layer, diff_id) in entry.layers.iter().zip(diff_ids) {
        let name = normalize(layer)
            .with_context(|| format!("refusing layer path {layer:?} in manifest.json"))?;
        let bytes = source.need(&name, MAX_BLOB, "a layer named in manifest.json")?;
        check_named_digest(&name, &bytes)?;
        // Sniff the compression, as containerd does; only gzip and plain tar are images.
        let gzip = bytes.starts_with(&[0x1f, 0x8b]);
        let uncompressed = if gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .take(MAX_BLOB)
                .read_to_end(&mut out)
                .with_context(|| format!("decompressing layer {name}"))?;
            crate::digest::sha256_digest(&out)
        } else {
            crate::digest::sha256_digest(&bytes)
        };
        ensure!(
            &uncompressed == diff_id,
            "layer {name} is corrupt: its uncompressed content hashes to {uncompressed}, but \
             config {config_name} says {diff_id}"
        );
        let media = if gzip {
            image::DOCKER_LAYER_GZIP
        } else {
            image::DOCKER_LAYER
        };
        let desc = image::descriptor(MediaType::Other(media.into()), &bytes);
        blobs.insert(desc.digest().to_string(), bytes.into_owned());
        layers.push(desc);
    }
    let manifest = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::Other(image::DOCKER_MANIFEST.into()))
        .config(config_desc)
        .layers(layers)
        .build()
        .context("building the docker manifest")?;
    let manifest = image::canonical_json(&manifest)?;
    let mut target = image::descriptor(MediaType::Other(image::DOCKER_MANIFEST.into()), &manifest);
    blobs.insert(target.digest().to_string(), manifest);
    let mut platform = oci_spec::image::PlatformBuilder::default()
        .architecture(config.architecture().clone())
        .os(config.os().clone());
    if let Some(v) = config.variant() {
        platform = platform.variant(v.clone());
    }
    target.set_platform(Some(platform.build().context("building the platform")?));
    let mut names = Vec::new();
    for tag in entry.repo_tags.iter().flatten() {
        let n = normalize_docker_ref(tag)?;
        if !names.contains(&n) {
            names.push(n);
        }
    }
    Ok(Image {
        blobs,
        target,
        names,
    })
}

/// A file named by its digest (`blobs/sha256/<hex>` or the classic `<hex>.json`) must hash
/// to that digest.
fn check_named_digest(name: &str, bytes: &[u8]) -> Result<()> {
    let last = name.rsplit('/').next().unwrap_or(name);
    let stem = last.strip_suffix(".json").unwrap_or(last);
    let named = stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit());
    if named {
        let actual = crate::digest::sha256_digest(bytes);
        ensure!(
            actual[7..] == *stem,
            "{name} is corrupt: its content hashes to {actual}"
        );
    }
    Ok(())
}

/// containerd's `normalizeReference` for docker RepoTags: `busybox` ->
/// `docker.io/library/busybox:latest`; fully qualified references are kept.
fn normalize_docker_ref(tag: &str) -> Result<String> {
    crate::reference::normalize(tag)
        .with_context(|| format!("refusing RepoTag {tag:?} in manifest.json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Compression;

    fn sample(arches: &[Arch], compression: Compression) -> Image {
        let bins: Vec<_> = arches
            .iter()
            .map(|a| (*a, format!("not really an elf for {a}").into_bytes()))
            .collect();
        image::assemble(
            &bins,
            &ImageSpec {
                names: vec!["registry.k8s.io/pause:3.10".into()],
                epoch: 0,
                compression,
            },
        )
        .unwrap()
    }

    fn oci_tar(image: &Image) -> Vec<u8> {
        tar_bytes(&layout_files(image, false).unwrap()).unwrap()
    }

    /// Builds a tar from raw (header, data) pairs, for archives our writer would never make.
    fn raw_tar(entries: &[(tar::Header, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (h, data) in entries {
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn raw_header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = header(kind, 0o644, size);
        // set_path would refuse `..`; write the name field directly.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
            h.set_link_name("blobs").unwrap();
        }
        h.set_cksum();
        h
    }

    /// Reads `bytes` as an archive file, the way `read` does.
    fn read_bytes(bytes: &[u8]) -> Result<Image> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        fs::write(&p, bytes).unwrap();
        read(&p)
    }

    fn err_of(bytes: &[u8]) -> String {
        format!("{:#}", read_bytes(bytes).unwrap_err())
    }

    /// An OCI tar of `image` whose files went through `edit` first.
    fn edited(image: &Image, edit: impl FnOnce(&mut BTreeMap<String, Cow<'_, [u8]>>)) -> Vec<u8> {
        let mut files = layout_files(image, false).unwrap();
        edit(&mut files);
        tar_bytes(&files).unwrap()
    }

    #[test]
    fn archive_entries_are_sorted_and_fixed() {
        let image = sample(&[Arch::Amd64, Arch::Arm64], Compression::Gzip);
        let tar = tar_bytes(&layout_files(&image, false).unwrap()).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut paths = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                (0, 0, 0)
            );
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            if h.entry_type().is_dir() {
                assert_eq!(h.mode().unwrap(), 0o755);
            } else {
                assert_eq!(h.mode().unwrap(), 0o644);
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                    assert_eq!(crate::digest::sha256_digest(&data), format!("sha256:{hex}"));
                }
                if path == "oci-layout" {
                    assert_eq!(data, br#"{"imageLayoutVersion":"1.0.0"}"#);
                }
            }
            paths.push(path);
        }
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(&paths[..2], ["blobs/", "blobs/sha256/"]);
        // Two directories, 2 platforms x (layer, config, manifest) + the index, index.json
        // and oci-layout.
        assert_eq!(paths.len(), 2 + 7 + 2);
    }

    #[test]
    fn docker_archive_is_single_platform() {
        let image = sample(&[Arch::Amd64, Arch::Arm64], Compression::Gzip);
        let err = layout_files(&image, true).unwrap_err().to_string();
        assert!(err.contains("one platform per image"), "{err}");
    }

    #[test]
    fn round_trip_every_format() {
        for (arches, compression) in [
            (&[Arch::Amd64][..], Compression::Gzip),
            (&[Arch::Arm][..], Compression::None),
            (&[Arch::Amd64, Arch::S390x][..], Compression::Gzip),
        ] {
            let image = sample(arches, compression);
            let dir = tempfile::tempdir().unwrap();
            for format in [Format::OciArchive, Format::OciDir, Format::DockerArchive] {
                if format == Format::DockerArchive && arches.len() > 1 {
                    continue;
                }
                let p = dir.path().join(format_name(format));
                write(&image, format, &p).unwrap();
                // Twice: replacing an existing output works too.
                write(&image, format, &p).unwrap();
                assert_eq!(read(&p).unwrap(), image, "{format:?}");
            }
            // gzip-compressed archive.
            let gz = image::gzip(&oci_tar(&image)).unwrap();
            assert_eq!(read_bytes(&gz).unwrap(), image);
            // No temporary files left behind.
            let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(left.len(), if arches.len() > 1 { 2 } else { 3 });
        }
    }

    #[test]
    fn docker_manifest_json_alone_converts_like_containerd() {
        let image = sample(&[Arch::Arm64], Compression::Gzip);
        let files = layout_files(&image, true).unwrap();
        let mut docker: BTreeMap<String, Cow<'_, [u8]>> = files
            .into_iter()
            .filter(|(k, _)| k != "oci-layout" && k != "index.json")
            .collect();
        let manifest_json = String::from_utf8(docker["manifest.json"].to_vec()).unwrap();
        assert!(
            manifest_json.starts_with(r#"[{"Config":"blobs/sha256/"#),
            "{manifest_json}"
        );
        assert!(manifest_json.ends_with(r#"],"RepoTags":["registry.k8s.io/pause:3.10"]}]"#));
        // Classic `docker save` tags are short names.
        docker.insert(
            "manifest.json".into(),
            Cow::Owned(
                manifest_json
                    .replace("registry.k8s.io/pause:3.10", "pause")
                    .into_bytes(),
            ),
        );
        let read = read_bytes(&tar_bytes(&docker).unwrap()).unwrap();
        assert_eq!(read.names, ["docker.io/library/pause:latest"]);
        assert_eq!(
            read.target.media_type(),
            &MediaType::Other(image::DOCKER_MANIFEST.into())
        );
        let kids = read.children(&read.target).unwrap();
        assert_eq!(kids[0].media_type().to_string(), image::DOCKER_CONFIG);
        assert_eq!(kids[1].media_type().to_string(), image::DOCKER_LAYER_GZIP);
        // Same config and layer bytes as the OCI image.
        let oci_kids = image.children(&image.target).unwrap();
        assert_eq!(kids[0].digest(), oci_kids[0].digest());
        assert_eq!(kids[1].digest(), oci_kids[1].digest());
        assert_eq!(
            read.platforms().unwrap(),
            vec![crate::platform::Platform { arch: Arch::Arm64 }]
        );
    }

    #[test]
    fn docker_refs_normalize() {
        for (tag, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("me/app:v1", "docker.io/me/app:v1"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost:5000/pause", "localhost:5000/pause:latest"),
            ("localhost/pause:1", "localhost/pause:1"),
        ] {
            assert_eq!(normalize_docker_ref(tag).unwrap(), want, "{tag}");
        }
    }

    #[test]
    fn names_come_from_annotations() {
        let image = sample(&[Arch::Amd64], Compression::Gzip);
        let index = String::from_utf8(image.index_json().unwrap()).unwrap();
        // Only a bare-tag ref.name: names nothing.
        let bare = index.replace(
            r#""io.containerd.image.name":"registry.k8s.io/pause:3.10","#,
            "",
        );
        let tar = edited(&image, |f| {
            f.insert("index.json".into(), Cow::Owned(bare.into_bytes()));
        });
        assert!(read_bytes(&tar).unwrap().names.is_empty());
        // A full reference in ref.name names the image.
        let full = index.replace(
            r#""io.containerd.image.name":"registry.k8s.io/pause:3.10","org.opencontainers.image.ref.name":"3.10""#,
            r#""org.opencontainers.image.ref.name":"example.com/p:1""#,
        );
        let tar = edited(&image, |f| {
            f.insert("index.json".into(), Cow::Owned(full.into_bytes()));
        });
        assert_eq!(read_bytes(&tar).unwrap().names, ["example.com/p:1"]);
    }

    // ---- hostile and broken archives (issue 8) ----

    #[test]
    fn truncated_tar_is_refused() {
        let image = sample(&[Arch::Amd64], Compression::None);
        let tar = oci_tar(&image);
        // Cut 100 bytes into the last blob's data: the archive is still longer than that
        // entry's declared size, so only reading finds the truncation.
        let mut archive = tar::Archive::new(tar.as_slice());
        let (name, pos) = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .filter(|e| e.header().entry_type().is_file())
            .map(|e| {
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.raw_file_position(),
                )
            })
            .filter(|(n, _)| n.starts_with("blobs/"))
            .last()
            .unwrap();
        let err = err_of(&tar[..pos as usize + 100]);
        assert!(
            err.contains(&format!("truncated archive: entry {name:?} declares")),
            "{err}"
        );
        assert!(err.contains("only 100 present"), "{err}");
        // Cut inside a header.
        let err = err_of(&tar[..512 * 2 + 200]);
        assert!(err.contains("reading a tar header"), "{err}");
    }

    #[test]
    fn bad_gzip_is_refused() {
        let image = sample(&[Arch::Amd64], Compression::None);
        let mut gz = image::gzip(&oci_tar(&image)).unwrap();
        // Flip a byte in the deflate stream.
        let mid = gz.len() / 2;
        gz[mid] ^= 0xff;
        let err = err_of(&gz);
        assert!(err.contains("reading gzip-compressed tar"), "{err}");
        // A valid stream with a wrong CRC: found only by reading to the end.
        let mut gz = image::gzip(&oci_tar(&image)).unwrap();
        let n = gz.len();
        gz[n - 8] ^= 0xff;
        let err = err_of(&gz);
        assert!(err.contains("reading gzip-compressed tar"), "{err}");
        // Truncated gzip.
        let gz = image::gzip(&oci_tar(&image)).unwrap();
        let err = err_of(&gz[..gz.len() - 20]);
        assert!(err.contains("reading gzip-compressed tar"), "{err}");
    }

    #[test]
    fn digest_and_size_mismatch_are_refused() {
        let image = sample(&[Arch::Amd64], Compression::Gzip);
        let layer = image.children(&image.target).unwrap()[1]
            .digest()
            .to_string();
        let path = blob_path(&layer).unwrap();
        // Same size, different content.
        let tar = edited(&image, |f| {
            let mut b = f[&path].to_vec();
            b[20] ^= 1;
            f.insert(path.clone(), Cow::Owned(b));
        });
        let err = err_of(&tar);
        assert!(
            err.contains(&format!(
                "blob {layer} is corrupt: its content hashes to sha256:"
            )),
            "{err}"
        );
        // Longer than declared.
        let tar = edited(&image, |f| {
            let mut b = f[&path].to_vec();
            b.push(0);
            f.insert(path.clone(), Cow::Owned(b));
        });
        let err = err_of(&tar);
        assert!(err.contains(&format!("blob {layer} is at least")), "{err}");
        // Shorter than declared.
        let tar = edited(&image, |f| {
            let b = f[&path][..10].to_vec();
            f.insert(path.clone(), Cow::Owned(b));
        });
        let err = err_of(&tar);
        assert!(
            err.contains(&format!("blob {layer} is 10 bytes, but its descriptor")),
            "{err}"
        );
    }

    #[test]
    fn missing_blob_and_dangling_index_are_refused() {
        let image = sample(&[Arch::Amd64], Compression::Gzip);
        let config = image.children(&image.target).unwrap()[0]
            .digest()
            .to_string();
        let tar = edited(&image, |f| {
            f.remove(&blob_path(&config).unwrap());
        });
        let err = err_of(&tar);
        assert!(
            err.contains(&format!(
                "blob {config} is missing (referenced by {})",
                image.target.digest()
            )),
            "{err}"
        );
        // index.json pointing at nothing in the archive.
        let target = image.target.digest().to_string();
        let tar = edited(&image, |f| {
            f.remove(&blob_path(&target).unwrap());
        });
        let err = err_of(&tar);
        assert!(
            err.contains(&format!(
                "blob {target} is missing (referenced by index.json)"
            )),
            "{err}"
        );
        // index.json missing, or listing nothing.
        let tar = edited(&image, |f| {
            f.remove("index.json");
        });
        assert!(err_of(&tar).contains("index.json is missing"));
        let tar = edited(&image, |f| {
            f.insert(
                "index.json".into(),
                Cow::Borrowed(br#"{"schemaVersion":2,"manifests":[]}"#),
            );
        });
        assert!(err_of(&tar).contains("index.json lists no image"));
        // Not an image at all.
        let tar = edited(&image, |f| {
            f.remove("oci-layout");
        });
        assert!(err_of(&tar).contains("neither oci-layout nor manifest.json"));
    }

    #[test]
    fn unsafe_entries_are_refused() {
        let data = b"x";
        for (path, kind, want) in [
            (
                "../evil",
                tar::EntryType::Regular,
                "refusing entry \"../evil\": its path contains '..'",
            ),
            (
                "blobs/../../evil",
                tar::EntryType::Regular,
                "its path contains '..'",
            ),
            (
                "/etc/passwd",
                tar::EntryType::Regular,
                "refusing entry \"/etc/passwd\": its path is absolute",
            ),
            (
                "blobs/link",
                tar::EntryType::Symlink,
                "refusing entry \"blobs/link\": it is a symbolic link",
            ),
            ("blobs/hard", tar::EntryType::Link, "it is a hard link"),
            ("dev/null", tar::EntryType::Char, "it is a character device"),
            ("dev/sda", tar::EntryType::Block, "it is a block device"),
            ("fifo", tar::EntryType::Fifo, "it is a FIFO"),
        ] {
            let size = if kind == tar::EntryType::Regular {
                1
            } else {
                0
            };
            let tar = raw_tar(&[(raw_header(path, kind, size), &data[..size as usize])]);
            let err = err_of(&tar);
            assert!(err.contains(want), "{path}: {err}");
        }
    }

    #[test]
    fn duplicate_entries_are_refused() {
        let image = sample(&[Arch::Amd64], Compression::Gzip);
        let mut tar = oci_tar(&image);
        // Append a second oci-layout before the end-of-archive blocks.
        tar.truncate(tar.len() - 1024);
        let extra = raw_tar(&[(
            raw_header("./oci-layout", tar::EntryType::Regular, 2),
            &b"{}"[..],
        )]);
        tar.extend_from_slice(&extra);
        let err = err_of(&tar);
        assert!(
            err.contains("refusing entry \"./oci-layout\": duplicate entry"),
            "{err}"
        );
    }

    #[test]
    fn declared_sizes_beyond_the_archive_are_refused() {
        // A header claiming 1 TiB in an archive of a few blocks: refused before reading.
        let tar = raw_tar(&[(
            raw_header("big", tar::EntryType::Regular, 1 << 40),
            &b""[..],
        )]);
        let err = err_of(&tar);
        assert!(
            err.contains("refusing entry \"big\": it declares 1099511627776 bytes, but the whole archive is 1536 bytes"),
            "{err}"
        );
        // Compressed, where the total is unknown: read what is there, then refuse.
        let err = err_of(&image::gzip(&tar).unwrap());
        assert!(
            err.contains("refusing entry \"big\": 1099511627776 bytes is more than"),
            "{err}"
        );
        let tar = raw_tar(&[(
            raw_header("big", tar::EntryType::Regular, 1 << 20),
            &b""[..],
        )]);
        let err = err_of(&image::gzip(&tar).unwrap());
        assert!(
            err.contains("truncated archive: entry \"big\" declares 1048576 bytes, only"),
            "{err}"
        );
        // A descriptor declaring a huge size is refused before any read.
        let image = sample(&[Arch::Amd64], Compression::Gzip);
        let index = String::from_utf8(image.index_json().unwrap()).unwrap();
        let huge = index.replace(
            &format!(r#""size":{}"#, image.target.size()),
            r#""size":1099511627776"#,
        );
        let tar = edited(&image, |f| {
            f.insert("index.json".into(), Cow::Owned(huge.into_bytes()));
        });
        let err = err_of(&tar);
        assert!(
            err.contains("declares 1099511627776 bytes, more than the"),
            "{err}"
        );
    }

    #[test]
    fn deeply_nested_indexes_are_refused() {
        let mut image = sample(&[Arch::Amd64], Compression::Gzip);
        // Wrap the manifest in index after index: MAX_DEPTH of them are read...
        for _ in 0..image::MAX_DEPTH {
            image.wrap_in_index();
        }
        assert_eq!(read_bytes(&oci_tar(&image)).unwrap().target, image.target);
        // ...one more is refused.
        image.wrap_in_index();
        let err = err_of(&oci_tar(&image));
        assert!(err.contains("indexes nest deeper than 4"), "{err}");
        assert!(image.platforms().is_err());
    }

    /// A docker archive of `image` laid out the way `docker save` (before 25) and `skopeo
    /// copy … docker-archive:` write it: `manifest.json` names the layer as
    /// `legacy/layer.tar`, an entry of type `kind` pointing at `target`, written before the
    /// files. With `oci`, the OCI layout files stay, so the archive reads as an OCI archive.
    fn linked_docker(image: &Image, kind: tar::EntryType, target: &str, oci: bool) -> Vec<u8> {
        let layer = image.children(&image.target).unwrap()[1].clone();
        let layer_path = blob_path(layer.digest().as_ref()).unwrap();
        let mut files = layout_files(image, true).unwrap();
        if !oci {
            files.remove("oci-layout");
            files.remove("index.json");
        }
        let manifest_json = String::from_utf8(files["manifest.json"].to_vec()).unwrap();
        assert!(manifest_json.contains(&layer_path), "{manifest_json}");
        let manifest_json = manifest_json.replace(&layer_path, "legacy/layer.tar");
        files.insert(
            "manifest.json".into(),
            Cow::Owned(manifest_json.into_bytes()),
        );
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(kind, 0o777, 0);
        b.append_link(&mut h, "legacy/layer.tar", target).unwrap();
        for (path, data) in &files {
            let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
            b.append_data(&mut h, path, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn docker_layer_links_inside_the_archive_resolve_in_memory() {
        let image = sample(&[Arch::Amd64], Compression::Gzip);
        let layer = image.children(&image.target).unwrap()[1].clone();
        let hex = layer.digest().to_string().replace("sha256:", "");
        let mut plain = layout_files(&image, true).unwrap();
        plain.remove("oci-layout");
        plain.remove("index.json");
        let want = read_bytes(&tar_bytes(&plain).unwrap()).unwrap();
        for target in [
            format!("../blobs/sha256/{hex}"),
            format!("./../blobs//sha256/{hex}"),
            format!("../blobs/sha256/../sha256/{hex}"),
        ] {
            let tar = linked_docker(&image, tar::EntryType::Symlink, &target, false);
            assert_eq!(read_bytes(&tar).unwrap(), want, "{target}");
        }
    }

    #[test]
    fn other_links_are_refused() {
        let image = sample(&[Arch::Amd64], Compression::Gzip);
        let layer = image.children(&image.target).unwrap()[1].clone();
        let hex = layer.digest().to_string().replace("sha256:", "");
        let link = tar::EntryType::Symlink;
        let entry = "refusing entry \"legacy/layer.tar\": it is a symbolic link";
        for (kind, target, oci, want) in [
            (
                link,
                format!("/blobs/sha256/{hex}"),
                false,
                format!("{entry} to the absolute path \"/blobs/sha256/{hex}\""),
            ),
            (
                link,
                format!("../../blobs/sha256/{hex}"),
                false,
                format!("{entry} to \"../../blobs/sha256/{hex}\", which is outside the archive"),
            ),
            (
                link,
                format!("../../x/../blobs/sha256/{hex}"),
                false,
                "which is outside the archive".to_string(),
            ),
            (
                link,
                "../blobs/sha256/0000".to_string(),
                false,
                format!("{entry} to \"../blobs/sha256/0000\", which is not a regular file of the archive"),
            ),
            (
                link,
                "../blobs/sha256".to_string(),
                false,
                "which is not a regular file of the archive".to_string(),
            ),
            (
                link,
                "layer.tar".to_string(),
                false,
                "which is another symbolic link".to_string(),
            ),
            // the same, valid-looking link in an OCI archive
            (
                link,
                format!("../blobs/sha256/{hex}"),
                true,
                format!("{entry}; an image archive holds only regular files and directories"),
            ),
            (
                tar::EntryType::Link,
                format!("blobs/sha256/{hex}"),
                false,
                "refusing entry \"legacy/layer.tar\": it is a hard link".to_string(),
            ),
        ] {
            let tar = linked_docker(&image, kind, &target, oci);
            let err = err_of(&tar);
            assert!(err.contains(&want), "{target}: {err}");
        }
    }

    #[test]
    fn symlinks_in_a_layout_directory_are_refused() {
        let image = sample(&[Arch::Amd64], Compression::Gzip);
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        write(&image, Format::OciDir, &layout).unwrap();
        // A blob replaced by a symlink to an identical copy outside the layout.
        let config = image.children(&image.target).unwrap()[0]
            .digest()
            .to_string();
        let blob = layout.join(blob_path(&config).unwrap());
        let outside = dir.path().join("outside");
        fs::copy(&blob, &outside).unwrap();
        fs::remove_file(&blob).unwrap();
        std::os::unix::fs::symlink(&outside, &blob).unwrap();
        let err = format!("{:#}", read(&layout).unwrap_err());
        assert!(
            err.contains(&format!(
                "refusing {}: it is a symbolic link",
                blob.display()
            )),
            "{err}"
        );
        // The blobs directory itself as a symlink.
        let blobs = layout.join("blobs");
        fs::rename(&blobs, dir.path().join("blobs-elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("blobs-elsewhere"), &blobs).unwrap();
        let err = format!("{:#}", read(&layout).unwrap_err());
        assert!(err.contains("it is a symbolic link"), "{err}");
        // And the writer refuses to replace a directory that is not a layout.
        let other = dir.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("precious"), b"x").unwrap();
        let err = format!("{:#}", write(&image, Format::OciDir, &other).unwrap_err());
        assert!(err.contains("refusing to replace"), "{err}");
        assert!(other.join("precious").exists());
    }

    #[test]
    fn docker_paths_outside_the_archive_are_refused() {
        let image = sample(&[Arch::Amd64], Compression::Gzip);
        let files = layout_files(&image, true).unwrap();
        let mut docker: BTreeMap<String, Cow<'_, [u8]>> = files
            .into_iter()
            .filter(|(k, _)| k != "oci-layout" && k != "index.json")
            .collect();
        let mj = String::from_utf8(docker["manifest.json"].to_vec()).unwrap();
        let evil = mj.replacen("blobs/sha256/", "../../etc/", 1);
        docker.insert("manifest.json".into(), Cow::Owned(evil.into_bytes()));
        let err = err_of(&tar_bytes(&docker).unwrap());
        assert!(err.contains("refusing config path \"../../etc/"), "{err}");
        assert!(err.contains("its path contains '..'"), "{err}");
    }

    /// Every single-byte corruption of a small archive, plain and gzip, docker and OCI, is
    /// either refused or harmless to the content: never a panic, and never different blobs.
    /// (index.json and manifest.json are not content-addressed, so a corrupted annotation
    /// or tag can change or drop a name; everything a digest covers is checked.)
    #[test]
    fn corrupted_bytes_never_panic_or_change_the_image() {
        let image = sample(&[Arch::Amd64], Compression::Gzip);
        let oci = oci_tar(&image);
        let docker = {
            let files = layout_files(&image, true).unwrap();
            let only: BTreeMap<String, Cow<'_, [u8]>> = files
                .into_iter()
                .filter(|(k, _)| k != "oci-layout" && k != "index.json")
                .collect();
            tar_bytes(&only).unwrap()
        };
        let docker_image = read_bytes(&docker).unwrap();
        for (what, bytes, want) in [
            ("oci", oci.clone(), &image),
            ("oci.gz", image::gzip(&oci).unwrap(), &image),
            ("docker", docker.clone(), &docker_image),
        ] {
            let mut refused = 0;
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x5a;
                let plain_len = (!what.ends_with(".gz")).then_some(b.len() as u64);
                let read = if what.ends_with(".gz") {
                    read_tar_from(flate2::read::GzDecoder::new(&b[..]), plain_len)
                } else {
                    read_tar_from(&b[..], plain_len)
                }
                .and_then(|files| from_source(&Source::Tar(files)));
                match read {
                    Ok(got) => {
                        assert!(
                            got.blobs == want.blobs,
                            "{what}: byte {i} changed a blob: {:?} vs {:?}",
                            got.blobs.keys().collect::<Vec<_>>(),
                            want.blobs.keys().collect::<Vec<_>>()
                        );
                        assert_eq!(
                            got.target.digest(),
                            want.target.digest(),
                            "{what}: byte {i}"
                        );
                    }
                    Err(_) => refused += 1,
                }
            }
            assert!(refused > 0, "{what}");
        }
    }

    #[test]
    fn docker_layer_must_match_diff_id() {
        let image = sample(&[Arch::Amd64], Compression::None);
        let layer = image.children(&image.target).unwrap()[1]
            .digest()
            .to_string();
        let files = layout_files(&image, true).unwrap();
        let mut docker: BTreeMap<String, Cow<'_, [u8]>> = files
            .into_iter()
            .filter(|(k, _)| k != "oci-layout" && k != "index.json")
            .collect();
        // Rename the layer so the name check does not fire first; corrupt its content.
        let mut bytes = docker.remove(&blob_path(&layer).unwrap()).unwrap().to_vec();
        bytes[600] ^= 1;
        docker.insert("layer.tar".into(), Cow::Owned(bytes));
        let mj = String::from_utf8(docker["manifest.json"].to_vec())
            .unwrap()
            .replace(&blob_path(&layer).unwrap(), "layer.tar");
        docker.insert("manifest.json".into(), Cow::Owned(mj.into_bytes()));
        let err = err_of(&tar_bytes(&docker).unwrap());
        assert!(err.contains("layer layer.tar is corrupt"), "{err}");
    }

    // ---- read-back of what real clients write ----

    /// Whether skopeo is installed; a skip is loud, and a failure under CI.
    fn have_skopeo() -> bool {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("skopeo").is_file()));
        if !found {
            crate::strict::skip("skopeo not found");
        }
        found
    }

    fn skopeo_copy(args: &[&str]) {
        let out = std::process::Command::new("skopeo")
            .arg("copy")
            .arg("--insecure-policy")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Each of our formats, and skopeo's re-copy of it as an OCI layout and an OCI archive,
    /// reads back as the same blobs (skopeo's copy of a docker archive gets its own
    /// manifest, but the same config and layer).
    #[test]
    fn skopeo_recopies_read_back_the_same() {
        if !have_skopeo() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).display().to_string();
        for (arches, name) in [
            (&[Arch::Amd64][..], "one"),
            (&[Arch::Amd64, Arch::Arm][..], "multi"),
        ] {
            let image = sample(arches, Compression::Gzip);
            write(&image, Format::OciArchive, Path::new(&p(name))).unwrap();
            assert_eq!(read(Path::new(&p(name))).unwrap(), image);
            let all = if arches.len() > 1 {
                vec!["--all"]
            } else {
                vec![]
            };
            for dest in ["oci", "oci-archive"] {
                let copy = p(&format!("{name}-{dest}"));
                let mut args = all.clone();
                let (src, dst) = (
                    format!("oci-archive:{}", p(name)),
                    format!("{dest}:{copy}:3.10"),
                );
                args.extend([src.as_str(), dst.as_str()]);
                skopeo_copy(&args);
                let back = read(Path::new(&copy)).unwrap();
                assert_eq!(back.blobs, image.blobs, "{name} via {dest}");
                // skopeo drops the platform from index.json's entry; the digest is what counts.
                assert_eq!(
                    back.target.digest(),
                    image.target.digest(),
                    "{name} via {dest}"
                );
                // skopeo names it by the bare tag only: no full reference to keep.
                assert!(back.names.is_empty());
            }
        }
        let image = sample(&[Arch::Arm64], Compression::Gzip);
        write(&image, Format::DockerArchive, Path::new(&p("docker"))).unwrap();
        assert_eq!(read(Path::new(&p("docker"))).unwrap(), image);
        skopeo_copy(&[
            &format!("docker-archive:{}", p("docker")),
            &format!("oci:{}:x", p("docker-oci")),
        ]);
        let back = read(Path::new(&p("docker-oci"))).unwrap();
        let (ours, theirs) = (
            image.children(&image.target).unwrap(),
            back.children(&back.target).unwrap(),
        );
        // skopeo re-serializes the config when it converts to OCI: compare what it says.
        let config = |i: &Image, d: &Descriptor| -> ImageConfiguration {
            serde_json::from_slice(i.blob(d).unwrap()).unwrap()
        };
        assert_eq!(
            config(&image, &ours[0]),
            config(&back, &theirs[0]),
            "config"
        );
        // It also recompresses the layer; the uncompressed tar must be ours byte for byte.
        let gunzip = |b: &[u8]| {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(b)
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        assert_eq!(
            gunzip(back.blob(&theirs[1]).unwrap()),
            gunzip(image.blob(&ours[1]).unwrap()),
            "layer"
        );
    }

    #[test]
    fn a_text_file_is_named_not_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        fs::write(
            &path,
            "root:x:0:0:secret-gecos:/root:/bin/bash\n".repeat(20),
        )
        .unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert_eq!(
            err,
            format!(
                "reading tar {}: not a tar or OCI archive (no tar header at its start); pass an \
                 OCI archive, OCI directory or docker archive",
                path.display()
            )
        );
    }
}
