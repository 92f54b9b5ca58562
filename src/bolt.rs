//! bbolt, the single-file B+tree containerd keeps `meta.db` in: a reader and an in-place
//! writer following bbolt's commit protocol (`bbolt-format.md`). Knows nothing of containerd.
