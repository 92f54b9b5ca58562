//! `pausebake bolt`: the hidden developer command the tests drive to read and change bbolt
//! files. It lives apart from [`crate::bolt`], which knows nothing of the command line.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::bolt::{dump, random, read_tree, Db};
use crate::cli::{BoltArgs, BoltCommand};
use crate::platform::Endian;

/// `pausebake bolt`.
pub fn command(args: &BoltArgs) -> Result<ExitCode> {
    match &args.command {
        BoltCommand::Dump { file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let tree = read_tree(&bytes).with_context(|| format!("reading {}", file.display()))?;
            print!("{}", dump(&tree));
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
            db.root_mut()
                .bucket_at_mut(&path)?
                .put(key.as_bytes(), value.as_bytes())?;
            db.commit()?;
        }
        BoltCommand::Random {
            file,
            seed,
            commits,
        } => {
            let mut db = open_or_create(file)?;
            let mut rng = random::Rng::new(*seed);
            for _ in 0..*commits {
                if db.root().entries.is_empty() {
                    *db.root_mut() = random::tree(&mut rng);
                }
                random::change(&mut rng, db.root_mut());
                db.commit()?;
            }
        }
        BoltCommand::Rewrite { file } => Db::open(file, Endian::native())?.rewrite()?,
    }
    Ok(ExitCode::SUCCESS)
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
