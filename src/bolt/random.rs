//! Seeded random trees and changes for the round-trip tests and `pausebake bolt random`:
//! deep nesting, empty buckets, values needing overflow pages, buckets with thousands of keys
//! (branch pages), large keys, sequences. The seed is the only input.

use super::{Bucket, Node};

/// xorshift64*: enough randomness for shapes, and no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Zero is xorshift's fixed point; mix the seed so nearby seeds diverge at once.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn len(&mut self, lo: u64, hi: u64) -> usize {
        (lo + self.below(hi - lo)) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn key(&mut self) -> Vec<u8> {
        let n = if self.below(50) == 0 {
            self.len(200, 3000)
        } else {
            self.len(1, 24)
        };
        if self.below(2) == 0 {
            // Printable keys with shared prefixes, like containerd's.
            (0..n)
                .map(|_| b"abcdefgh/:."[self.below(11) as usize])
                .collect()
        } else {
            self.bytes(n)
        }
    }

    fn value(&mut self) -> Vec<u8> {
        let n = match self.below(40) {
            0 => self.len(4000, 34000),
            1 | 2 => 0,
            _ => self.len(0, 120),
        };
        self.bytes(n)
    }

    fn sequence(&mut self) -> u64 {
        match self.below(3) {
            0 => 0,
            1 => self.below(1000),
            _ => self.next(),
        }
    }
}

/// A random root bucket (buckets only, as bbolt's root must be).
pub fn tree(r: &mut Rng) -> Bucket {
    let mut root = Bucket {
        sequence: r.sequence(),
        ..Bucket::default()
    };
    for _ in 0..r.len(1, 5) {
        root.entries.insert(r.key(), Node::Bucket(bucket(r, 1, 8)));
    }
    if r.below(3) == 0 {
        // One deep chain: nesting far beyond containerd's 8 levels.
        let mut deep = bucket(r, 8, 8);
        for _ in 0..r.len(20, 60) {
            let mut parent = Bucket {
                sequence: r.sequence(),
                ..Bucket::default()
            };
            parent.entries.insert(r.key(), Node::Bucket(deep));
            if r.below(2) == 0 {
                parent.entries.insert(r.key(), Node::Value(r.value()));
            }
            deep = parent;
        }
        root.entries.insert(b"deep".to_vec(), Node::Bucket(deep));
    }
    root
}

/// A random bucket at `depth`, nesting at most to `max`.
pub fn bucket(r: &mut Rng, depth: u32, max: u32) -> Bucket {
    let mut b = Bucket {
        sequence: r.sequence(),
        ..Bucket::default()
    };
    let n = match r.below(10) {
        0 => 0,
        1 if depth < 4 => r.len(500, 3000),
        2 => r.len(20, 100),
        _ => r.len(0, 6),
    };
    for _ in 0..n {
        b.entries.insert(r.key(), Node::Value(r.value()));
    }
    if depth < max {
        let kids = match depth {
            0 | 1 => r.below(5),
            _ if r.below(3) == 0 => 1 + r.below(2),
            _ => 0,
        };
        for _ in 0..kids {
            b.entries
                .insert(r.key(), Node::Bucket(bucket(r, depth + 1, max)));
        }
    }
    b
}

/// Random changes in place: deletes, rewrites, new keys and buckets, new sequences, and
/// whole subtrees left alone (so commits keep some buckets' pages).
pub fn change(r: &mut Rng, root: &mut Bucket) {
    if root.entries.is_empty() || r.below(3) == 0 {
        root.entries.insert(r.key(), Node::Bucket(bucket(r, 1, 6)));
    }
    if root.entries.len() > 1 && r.below(4) == 0 {
        let i = r.below(root.entries.len() as u64) as usize;
        if let Some(k) = root.entries.keys().nth(i).cloned() {
            root.entries.remove(&k);
        }
    }
    if r.below(3) == 0 {
        root.sequence = r.sequence();
    }
    for node in root.entries.values_mut() {
        if let Node::Bucket(b) = node {
            if r.below(2) == 0 {
                change_bucket(r, b, 1);
            }
        }
    }
}

fn change_bucket(r: &mut Rng, b: &mut Bucket, depth: u32) {
    let keys: Vec<Vec<u8>> = b.entries.keys().cloned().collect();
    for k in keys {
        let roll = r.below(8);
        match b.entries.get_mut(&k) {
            Some(Node::Value(v)) if roll == 0 => *v = r.value(),
            Some(Node::Value(_)) if roll == 1 => {
                b.entries.remove(&k);
            }
            Some(Node::Bucket(_)) if roll == 2 => {
                b.entries.remove(&k);
            }
            Some(Node::Bucket(child)) if roll < 5 => change_bucket(r, child, depth + 1),
            _ => {}
        }
    }
    for _ in 0..r.below(4) {
        let value = r.value();
        b.entries.entry(r.key()).or_insert(Node::Value(value));
    }
    if r.below(3) == 0 {
        b.sequence = r.sequence();
    }
    if depth < 6 && r.below(4) == 0 {
        b.entries
            .insert(r.key(), Node::Bucket(bucket(r, depth + 1, depth + 2)));
    }
}

/// One change at a full key path (bucket names, then the key), as a caller that loads only
/// what it changes makes it.
#[derive(Debug, Clone)]
pub enum Edit {
    Put(Vec<Vec<u8>>, Vec<u8>),
    NewBucket(Vec<Vec<u8>>, Bucket),
    Delete(Vec<Vec<u8>>),
}

impl Edit {
    pub fn path(&self) -> &[Vec<u8>] {
        match self {
            Edit::Put(p, _) | Edit::NewBucket(p, _) | Edit::Delete(p) => p,
        }
    }

    /// Applies the edit to `root` (whose buckets on the way must be loaded).
    pub fn apply(&self, root: &mut Bucket) -> anyhow::Result<()> {
        let path = self.path();
        let (key, parent) = path.split_last().expect("edits have a key");
        let parent: Vec<&[u8]> = parent.iter().map(Vec::as_slice).collect();
        let bucket = root.bucket_at_mut(&parent)?;
        match self {
            Edit::Put(_, v) => {
                bucket.entries.insert(key.clone(), Node::Value(v.clone()));
            }
            Edit::NewBucket(_, b) => {
                bucket.entries.insert(key.clone(), Node::Bucket(b.clone()));
            }
            Edit::Delete(_) => {
                bucket.entries.remove(key);
            }
        }
        Ok(())
    }
}

/// A few random edits of `tree` at random depths: values updated, deleted and added, buckets
/// added (some with values needing overflow pages) and, rarely, whole buckets deleted.
pub fn edits(r: &mut Rng, tree: &Bucket) -> Vec<Edit> {
    let mut out = Vec::new();
    for _ in 0..1 + r.below(6) {
        let mut path = Vec::new();
        let mut bucket = tree;
        // The root holds buckets only: go down at least one level.
        loop {
            let kids: Vec<(&Vec<u8>, &Bucket)> = bucket
                .entries
                .iter()
                .filter_map(|(k, n)| match n {
                    Node::Bucket(b) => Some((k, b)),
                    Node::Value(_) => None,
                })
                .collect();
            let stop = !path.is_empty() && (kids.is_empty() || r.below(3) == 0);
            if stop {
                break;
            }
            if kids.is_empty() {
                path.push(r.key());
                out.push(Edit::NewBucket(path, bucket_of(r, 3)));
                path = Vec::new();
                break;
            }
            let (k, b) = kids[r.below(kids.len() as u64) as usize];
            path.push(k.clone());
            bucket = b;
        }
        if path.is_empty() {
            continue;
        }
        let keys: Vec<(&Vec<u8>, &Node)> = bucket.entries.iter().collect();
        let existing = (!keys.is_empty() && r.below(2) == 0)
            .then(|| keys[r.below(keys.len() as u64) as usize]);
        let edit = match existing {
            Some((k, Node::Value(_))) => {
                path.push(k.clone());
                if r.below(3) == 0 {
                    Edit::Delete(path)
                } else {
                    Edit::Put(path, r.value())
                }
            }
            Some((k, Node::Bucket(_))) if r.below(4) == 0 => {
                path.push(k.clone());
                Edit::Delete(path)
            }
            _ => {
                path.push(r.key());
                if r.below(4) == 0 {
                    Edit::NewBucket(path, bucket_of(r, 3))
                } else {
                    Edit::Put(path, r.value())
                }
            }
        };
        out.push(edit);
    }
    out
}

fn bucket_of(r: &mut Rng, depth: u32) -> Bucket {
    bucket(r, depth, depth + 2)
}
