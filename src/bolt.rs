//! bbolt, the single-file B+tree containerd keeps `meta.db` in: a reader and an in-place
//! writer following bbolt's commit protocol (`bbolt-format.md`). Knows nothing of containerd.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

/// A bucket's whole contents in memory: keys in bbolt's bytewise order, each either a plain
/// value or a nested bucket, plus the bucket's sequence counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    pub sequence: u64,
    pub entries: BTreeMap<Vec<u8>, Node>,
}

/// One key's content inside a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Value(Vec<u8>),
    Bucket(Bucket),
}

impl Bucket {
    /// The plain value at `key`, if there is one (not a bucket).
    pub fn value(&self, key: &[u8]) -> Option<&[u8]> {
        match self.entries.get(key)? {
            Node::Value(v) => Some(v),
            Node::Bucket(_) => None,
        }
    }

    /// The nested bucket at `key`, if there is one.
    pub fn bucket(&self, key: &[u8]) -> Option<&Bucket> {
        match self.entries.get(key)? {
            Node::Bucket(b) => Some(b),
            Node::Value(_) => None,
        }
    }

    /// The nested bucket at the end of `path`, if every step exists.
    pub fn bucket_at(&self, path: &[&[u8]]) -> Option<&Bucket> {
        path.iter().try_fold(self, |b, key| b.bucket(key))
    }

    /// The nested bucket at the end of `path`, creating missing buckets on the way. A plain
    /// value in the way is an error: bbolt refuses to turn a value into a bucket.
    pub fn bucket_at_mut(&mut self, path: &[&[u8]]) -> Result<&mut Bucket> {
        let mut bucket = self;
        for key in path {
            let node = bucket
                .entries
                .entry(key.to_vec())
                .or_insert_with(|| Node::Bucket(Bucket::default()));
            bucket = match node {
                Node::Bucket(b) => b,
                Node::Value(_) => bail!(
                    "creating bucket {:?}: a value already exists at that key",
                    String::from_utf8_lossy(key)
                ),
            };
        }
        Ok(bucket)
    }

    /// Sets `key` to a plain value; replacing a bucket with a value is an error.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if let Some(Node::Bucket(_)) = self.entries.get(key) {
            bail!(
                "putting {:?}: a bucket already exists at that key",
                String::from_utf8_lossy(key)
            );
        }
        self.entries
            .insert(key.to_vec(), Node::Value(value.to_vec()));
        Ok(())
    }

    /// Removes `key` (value or whole bucket); returns what was there.
    pub fn delete(&mut self, key: &[u8]) -> Option<Node> {
        self.entries.remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_paths_create_and_find() {
        let mut root = Bucket::default();
        root.bucket_at_mut(&[b"v1", b"k8s.io"])
            .unwrap()
            .put(b"k", b"v")
            .unwrap();
        assert_eq!(
            root.bucket_at(&[b"v1", b"k8s.io"]).unwrap().value(b"k"),
            Some(&b"v"[..])
        );
        assert!(root.bucket_at(&[b"v1", b"nope"]).is_none());
        root.bucket_at_mut(&[b"v1"])
            .unwrap()
            .put(b"version", b"\x06")
            .unwrap();
        assert!(root.bucket_at_mut(&[b"v1", b"version"]).is_err());
        assert!(root.put(b"v1", b"x").is_err());
    }
}
