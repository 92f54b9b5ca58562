//! The pause image in memory: deterministic layer tar, gzip, canonical JSON config,
//! manifests and index, all assembled from ELF bytes without touching the filesystem.
