//! `pausebake bolt`: the hidden developer command the tests drive to read and change bbolt
//! files. It lives apart from [`crate::bolt`], which knows nothing of the command line.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::bolt::{dump, dump_to, random, read_tree, Bucket, Db};
use crate::cli::{BoltArgs, BoltCommand};
use crate::platform::Endian;

/// `pausebake bolt`.
pub fn command(args: &BoltArgs) -> Result<ExitCode> {
    match &args.command {
        BoltCommand::Dump { file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let tree = read_tree(&bytes).with_context(|| format!("reading {}", file.display()))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            dump_to(&tree, &mut out)
                .and_then(|()| out.flush())
                .context("writing the dump to stdout")?;
            // Left to the process exit, which returns the memory whole: freeing the tree's
            // 100,000 or so allocations one by one took a tenth of the command's time.
            std::mem::forget(tree);
            std::mem::forget(bytes);
        }
        BoltCommand::Set {
            file,
            bucket,
            key,
            value,
        } => {
            let mut db = open_or_create(file)?;
            let path: Vec<&[u8]> = bucket
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::as_bytes)
                .collect();
            if path.is_empty() {
                bail!("setting {key:?}: --bucket must name at least one bucket (the root holds only buckets)");
            }
            // A commit changes only keys it loaded.
            let mut full = path.clone();
            full.push(key.as_bytes());
            db.load(&full)?;
            db.root_mut()
                .bucket_at_mut(&path)?
                .put(key.as_bytes(), value.as_bytes())?;
            db.commit()?;
        }
        BoltCommand::Random {
            file,
            seed,
            commits,
            expect,
        } => random_commits(file, *seed, *commits, expect.as_deref())?,
        BoltCommand::Rewrite { file } => Db::open(file, Endian::native())?.rewrite()?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `commits` seeded random commits on `file`; with `expect`, writes the dump of the tree the
/// file must then hold.
fn random_commits(file: &Path, seed: u64, commits: u32, expect: Option<&Path>) -> Result<()> {
    let mut db = open_or_create(file)?;
    let mut rng = random::Rng::new(seed);
    let mut expected = Bucket::default();
    for _ in 0..commits {
        expected = if rng.below(2) == 0 {
            // Everything loaded, changes all over the tree.
            db.load_all()?;
            if db.root().entries.is_empty() {
                *db.root_mut() = random::tree(&mut rng);
            }
            random::change(&mut rng, db.root_mut());
            db.root().clone()
        } else {
            // Only the keys changed are loaded, as import does; what the whole file says
            // comes from the independent whole-file reader.
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let mut tree = read_tree(&bytes)?;
            for edit in random::edits(&mut rng, &tree.clone()) {
                // An earlier edit may have put a value where this one needs a bucket.
                if edit.apply(&mut tree).is_err() {
                    continue;
                }
                let path: Vec<&[u8]> = edit.path().iter().map(Vec::as_slice).collect();
                db.load(&path)?;
                edit.apply(db.root_mut())?;
            }
            tree
        };
        db.commit()?;
    }
    if let Some(out) = expect {
        std::fs::write(out, dump(&expected))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// Opens `file`, creating it when missing: the dev tool's files are for Go's bbolt on this
/// machine, so in its byte order.
fn open_or_create(file: &Path) -> Result<Db> {
    if file.exists() {
        Db::open(file, Endian::native())
    } else {
        Db::create(file, Endian::native())
    }
}
