//! The pause image in memory: deterministic layer tar, gzip, canonical JSON config,
//! manifests and index, all assembled from ELF bytes without touching the filesystem.

use std::collections::BTreeMap;

use oci_spec::image::Descriptor;

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
