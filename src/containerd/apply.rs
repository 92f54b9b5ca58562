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

use anyhow::{bail, ensure, Context, Result};

use super::config::ConfigPlan;
use super::plan::{CriEdit, Plan, StorePlan};
use super::store;
use crate::bolt::Db;
use crate::image::Image;
use crate::rootfs::{self, Root};

/// Applies `plan` to `root`; `image` holds the bytes of the blobs the plan writes.
pub fn apply(plan: &Plan, image: Option<&Image>, root: &Root) -> Result<()> {
    if let Some(store) = &plan.import {
        let image = image.context("applying an import plan: no image given")?;
        apply_store(store, image, root)?;
    }
    check_cri(&plan.enable_cri, root)?;
    if let Some(config) = &plan.configure {
        apply_config(config, root)?;
    }
    for edit in plan.enable_cri.iter().filter(|e| e.text.is_some()) {
        let text = edit.text.as_deref().unwrap_or_default();
        root.write_atomic(&edit.path, text.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// Refuses before any config is written when a file whose `disabled_plugins` the plan edits
/// changed since it was read.
fn check_cri(edits: &[CriEdit], root: &Root) -> Result<()> {
    for edit in edits.iter().filter(|e| e.text.is_some()) {
        if root.read_to_string(&edit.path)? != edit.before {
            bail!(
                "{} changed since pausebake read it; nothing written to it: run the command again",
                root.resolve(&edit.path)?.display()
            );
        }
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
    if plan.before_txid.is_some_and(|txid| txid != db.txid()) {
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
    // The same merge as the plan's, on only the keys it touches: the same transaction id
    // means the same records, so the changes must be the planned ones.
    store::load_for_merge(&mut db, &plan.records, &plan.namespace)
        .with_context(|| format!("reading {}", host.display()))?;
    let changes = store::merge(db.root_mut(), &plan.records, &plan.namespace)?;
    ensure!(
        changes == plan.records_changed,
        "{} no longer holds what the plan was made from; nothing written: run the command again",
        host.display()
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::inspect::{inspect, Overrides, RootFacts};
    use crate::containerd::plan::{self, Named};
    use crate::containerd::store::tests::{spec as store_spec, test_image};
    use crate::containerd::store::Spec;
    use crate::containerd::versions::Version;
    use crate::platform::{Arch, Platform};

    const AMD64: Platform = Platform { arch: Arch::Amd64 };

    fn facts(root: &Root, image: &Image) -> RootFacts {
        let over = Overrides {
            platform: Some(AMD64),
            containerd: Some(Version::new(2, 1, 9)),
            kubernetes: None,
            config: None,
            running: None,
        };
        let mut facts = inspect(root, &over).unwrap();
        facts
            .probe_blobs(image.blobs.iter().map(|(d, b)| (d.as_str(), b.as_slice())))
            .unwrap();
        facts
    }

    fn bake_plan(facts: &RootFacts, image: &Image, name: &str) -> Plan {
        let spec = Spec {
            names: vec![name.to_string()],
            ..store_spec(Some(AMD64), true)
        };
        let named = Named {
            name: name.to_string(),
            name_source: "test".into(),
        };
        plan::plan(facts, Some(named), Some((image, "test".into(), &spec))).unwrap()
    }

    #[test]
    fn a_plan_applied_leaves_nothing_to_plan() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let image = test_image(&[Arch::Amd64, Arch::Arm64], true);
        let name = "registry.k8s.io/pause:3.10";
        let first = bake_plan(&facts(&root, &image), &image, name);
        let store = first.import.as_ref().unwrap();
        // index, amd64's manifest, config and layer
        assert_eq!(store.blobs_written.len(), 4);
        assert_eq!(
            store.records_changed.len(),
            6,
            "{:?}",
            store.records_changed
        );
        assert!(first.configure.as_ref().unwrap().created);
        let shown = first.to_string();
        assert!(
            shown.contains("  import     4 blobs to write, 0 present"),
            "{shown}"
        );
        apply(&first, Some(&image), &root).unwrap();
        let again = bake_plan(&facts(&root, &image), &image, name);
        assert!(again.import.as_ref().unwrap().unchanged, "{again}");
        assert!(!again.configure.as_ref().unwrap().changed, "{again}");
    }

    #[test]
    fn cri_disabled_in_a_drop_in_is_switched_on_there() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let image = test_image(&[Arch::Amd64], true);
        root.create_dir_all("/etc/containerd/conf.d", 0o755)
            .unwrap();
        let main =
            "version = 3\nimports = [\"conf.d/*.toml\"]\ndisabled_plugins = [\"cri\"] # old\n";
        root.write_atomic("/etc/containerd/config.toml", main.as_bytes(), 0o644)
            .unwrap();
        let drop_in = "/etc/containerd/conf.d/10-moby.toml";
        let moby = "version = 3\n# moby\ndisabled_plugins = [\"io.containerd.cri.v1.images\", \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.cri.v1.runtime\"]\n";
        root.write_atomic(drop_in, moby.as_bytes(), 0o644).unwrap();
        let plan = bake_plan(&facts(&root, &image), &image, "registry.k8s.io/pause:3.10");
        let edits: Vec<(&str, Vec<String>, bool)> = plan
            .enable_cri
            .iter()
            .map(|e| (e.path.as_str(), e.removed.clone(), e.text.is_some()))
            .collect();
        assert_eq!(
            edits,
            [
                (
                    "/etc/containerd/config.toml",
                    vec!["cri".to_string()],
                    false
                ),
                (
                    drop_in,
                    vec![
                        "io.containerd.cri.v1.images".to_string(),
                        "io.containerd.cri.v1.runtime".to_string()
                    ],
                    true
                ),
            ]
        );
        assert!(plan.to_string().contains(
            "  enable CRI to remove \"io.containerd.cri.v1.images\", \"io.containerd.cri.v1.runtime\" from disabled_plugins in /etc/containerd/conf.d/10-moby.toml"
        ));
        apply(&plan, Some(&image), &root).unwrap();
        assert_eq!(
            root.read_to_string(drop_in).unwrap().unwrap(),
            "version = 3\n# moby\ndisabled_plugins = [\"io.containerd.snapshotter.v1.zfs\"]\n"
        );
        let after = root
            .read_to_string("/etc/containerd/config.toml")
            .unwrap()
            .unwrap();
        assert!(after.contains("disabled_plugins = [] # old\n"), "{after}");
        let again = bake_plan(&facts(&root, &image), &image, "registry.k8s.io/pause:3.10");
        assert!(again.enable_cri.is_empty(), "{again}");
    }

    #[test]
    fn apply_refuses_a_root_that_changed_since_inspect() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let image = test_image(&[Arch::Amd64], true);
        let stale = bake_plan(&facts(&root, &image), &image, "registry.k8s.io/pause:3.10");
        // Another writer gets there first.
        let other = bake_plan(&facts(&root, &image), &image, "example.invalid/other:1");
        apply(&other, Some(&image), &root).unwrap();
        let err = format!("{:#}", apply(&stale, Some(&image), &root).unwrap_err());
        assert!(
            err.ends_with(
                "meta.db changed since pausebake read it (is containerd running on this root?); \
                 nothing written: run the command again"
            ),
            "{err}"
        );
        // The config alone changed: refused too, and left as the other writer made it.
        let fresh = bake_plan(&facts(&root, &image), &image, "registry.k8s.io/pause:3.10");
        let config = "/etc/containerd/config.toml";
        root.write_atomic(config, b"version = 3\n", 0o644).unwrap();
        let mut config_only = fresh.clone();
        config_only.import = None;
        let err = format!("{:#}", apply(&config_only, None, &root).unwrap_err());
        assert!(
            err.contains("config.toml changed since pausebake read it"),
            "{err}"
        );
        assert_eq!(
            root.read_to_string(config).unwrap().as_deref(),
            Some("version = 3\n")
        );
    }

    #[test]
    fn the_config_edit_goes_to_the_drop_in_that_decides_and_is_checked_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let image = test_image(&[Arch::Amd64], true);
        let main = "version = 3\nimports = [\"conf.d/*.toml\"]\n";
        let drop_in = "/etc/containerd/conf.d/20-pause.toml";
        root.create_dir_all("/etc/containerd/conf.d", 0o755)
            .unwrap();
        root.write_atomic("/etc/containerd/config.toml", main.as_bytes(), 0o644)
            .unwrap();
        root.write_atomic(
            drop_in,
            b"version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\nsandbox = 'old:1'\n",
            0o644,
        )
        .unwrap();
        let name = "registry.k8s.io/pause:3.10";
        let plan = bake_plan(&facts(&root, &image), &image, name);
        let c = plan.configure.as_ref().unwrap();
        assert_eq!(c.path, drop_in);
        assert_eq!(c.files, ["/etc/containerd/config.toml", drop_in]);
        let shown = plan.to_string();
        assert!(
            shown.contains(&format!(
                "    plugins.\"io.containerd.cri.v1.images\".pinned_images.sandbox: \"old:1\" -> \"{name}\" in {drop_in}"
            )),
            "{shown}"
        );
        // the drop-in changes between inspect and apply: refused, nothing written
        root.write_atomic(drop_in, b"version = 3\n", 0o644).unwrap();
        let mut config_only = plan.clone();
        config_only.import = None;
        let err = format!("{:#}", apply(&config_only, None, &root).unwrap_err());
        assert!(
            err.contains("20-pause.toml changed since pausebake read it"),
            "{err}"
        );
        assert_eq!(
            root.read_to_string("/etc/containerd/config.toml")
                .unwrap()
                .as_deref(),
            Some(main)
        );
        // as it is now, the main file decides (no file sets the key)
        let plan = bake_plan(&facts(&root, &image), &image, name);
        assert_eq!(
            plan.configure.as_ref().unwrap().path,
            "/etc/containerd/config.toml"
        );
        apply(&plan, Some(&image), &root).unwrap();
        let again = bake_plan(&facts(&root, &image), &image, name);
        assert!(!again.configure.as_ref().unwrap().changed, "{again}");
    }
}
