//! Carry out a [`Plan`] on an offline root: only the I/O, deciding nothing. It writes
//! exactly the blobs, records and config text the plan lists, and refuses when `meta.db` or
//! the config changed between inspect and apply (another writer, e.g. a containerd started
//! meanwhile), so a plan is never applied to a root it was not made for.
//!
//! Order, so that nothing is half-written after a failure: open and lock `meta.db` first (a
//! locked or changed file stops us before any blob is written), then the blobs (temp file,
//! fsync, rename, one directory sync), then the records in one bbolt transaction, then the
//! config (temp file + rename).

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::config::ConfigPlan;
use super::plan::{Plan, StorePlan};
use crate::bolt::Db;
use crate::image::Image;
use crate::rootfs::{self, Root};

/// Applies `plan` to `root`; `image` holds the bytes of the blobs the plan writes.
pub fn apply(plan: &Plan, image: Option<&Image>, root: &Root) -> Result<()> {
    if let Some(store) = &plan.import {
        let image = image.context("applying an import plan: no image given")?;
        apply_store(store, image, root)?;
    }
    if let Some(config) = &plan.configure {
        apply_config(config, root)?;
    }
    Ok(())
}

/// Opens `meta.db` as the plan found it: locked, and still holding the inspected tree.
fn open_meta(plan: &StorePlan, root: &Root) -> Result<Option<Db>> {
    let host = root.resolve(&plan.meta_db)?;
    let exists = match fs::symlink_metadata(&host) {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("reading {}", host.display())),
    };
    let changed = || {
        format!(
            "{} changed since pausebake read it (is containerd running on this root?); nothing \
             written: run the command again",
            host.display()
        )
    };
    if exists != plan.meta_existed {
        bail!(changed());
    }
    if !exists {
        return Ok(None);
    }
    // A zero-length file (an interrupted create) is Db::open's to initialise, as Go does.
    let db =
        Db::open(&host, plan.new_order).with_context(|| format!("opening {}", host.display()))?;
    if *db.root() != plan.before {
        bail!(changed());
    }
    Ok(Some(db))
}

/// Writes the plan's blobs, then commits its tree.
fn apply_store(plan: &StorePlan, image: &Image, root: &Root) -> Result<()> {
    let existing = open_meta(plan, root)?;
    let ctd = Path::new(&plan.containerd_root);
    // containerd makes its root 0711 and the store's directories 0755.
    if let Some(parent) = ctd.parent() {
        root.create_dir_all(parent, 0o755)?;
    }
    root.create_dir_all(ctd, 0o711)?;
    write_blobs(plan, image, root)?;
    if plan.records_changed.is_empty() {
        return Ok(());
    }
    let meta = Path::new(&plan.meta_db);
    let host = root.resolve(meta)?;
    let mut db = match existing {
        Some(db) => db,
        None => {
            let dir = meta.parent().expect("meta.db lives in a directory");
            root.create_dir_all(dir, 0o711)?;
            Db::create(&host, plan.new_order)
                .with_context(|| format!("creating {}", host.display()))?
        }
    };
    *db.root_mut() = plan.tree.clone();
    db.commit()
        .with_context(|| format!("committing {}", host.display()))
}

/// Writes every blob the plan lists, mode 0444 as containerd's ingest leaves committed blobs
/// (a damaged file being replaced may have had another), then syncs the directory once: the
/// names must be durable before `meta.db` points at them.
fn write_blobs(plan: &StorePlan, image: &Image, root: &Root) -> Result<()> {
    let blob_dir = root.create_dir_all(&plan.blob_dir, 0o755)?;
    for digest in &plan.blobs_written {
        let bytes = image
            .blobs
            .get(digest)
            .with_context(|| format!("writing blob {digest}: not in the image"))?;
        let hex = crate::digest::sha256_hex(digest)
            .with_context(|| format!("writing blob {digest}: not a sha256 digest"))?;
        let path = blob_dir.join(hex);
        rootfs::replace_file(&path, bytes, 0o444)
            .with_context(|| format!("writing blob {digest}"))?;
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o444))
            .with_context(|| format!("setting mode of {}", path.display()))?;
    }
    if !plan.blobs_written.is_empty() {
        rootfs::sync_dir(&blob_dir)?;
    }
    Ok(())
}

/// Replaces the config with the plan's text (temp file + rename, keeping mode and owner;
/// a new file is world-readable like the packaged one), reached through the root so a
/// symlinked `/etc/containerd` stays inside it.
fn apply_config(plan: &ConfigPlan, root: &Root) -> Result<()> {
    let Some(text) = &plan.text else {
        return Ok(());
    };
    if root.read_to_string(&plan.path)? != plan.before {
        bail!(
            "{} changed since pausebake read it; nothing written to it: run the command again",
            root.resolve(&plan.path)?.display()
        );
    }
    let dir = Path::new(&plan.path)
        .parent()
        .expect("the config path has a parent directory");
    root.create_dir_all(dir, 0o755)?;
    root.write_atomic(&plan.path, text.as_bytes(), 0o644)
}
