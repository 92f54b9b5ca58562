//! The live `apply`: a plan's blobs, GC labels and image records written through a running
//! containerd's API instead of into a root's files.
//!
//! Order and safety: a lease with a `containerd.io/gc.expire` label holds every blob (written,
//! or found present and added to it) until the image records exist, so neither containerd's GC
//! nor a killed pausebake can leave half an image: blobs go first, children before parents,
//! each committed with its expected digest and size; the image records last. The lease is
//! deleted on every path; if pausebake dies first it expires and GC takes what no record
//! reaches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    self as api, CreateImageRequest, GetImageRequest, InfoRequest, UpdateImageRequest,
    UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use prost_types::FieldMask;
use tonic::{Code, Status};

use super::client::{describe, Client};
use crate::containerd::plan::StorePlan;
use crate::containerd::store;
use crate::image::Image;

/// The largest chunk sent in one `Write` message (gRPC's default limit is 4 MiB).
const CHUNK: usize = 1 << 20;
/// How long a lease outlives a pausebake that died holding it.
const LEASE_EXPIRY: Duration = Duration::from_secs(10 * 60);
const GC_EXPIRE: &str = "containerd.io/gc.expire";

/// What the live apply did, as containerd answered.
struct Outcome {
    blobs_written: Vec<String>,
    blobs_present: usize,
    records_changed: Vec<String>,
}

/// Carries out the store part of a plan in the running containerd behind `client`, as
/// [`crate::containerd::apply`] does in a root's files: the plan's blobs with their GC labels,
/// its image records, names, labels and namespace. Returns the plan as done: what was
/// written, labelled or already there, as containerd answered (the plan's counts were
/// predicted from a snapshot of `meta.db`). A second identical run changes nothing.
pub fn apply(plan: &StorePlan, image: &Image, client: &mut Client) -> Result<StorePlan> {
    client.set_namespace(&plan.namespace)?;
    let lease = create_lease(client)?;
    client.set_lease(Some(&lease))?;
    let result = write_all(client, &lease, image, plan);
    client.set_lease(None)?;
    let deleted = delete_lease(client, &lease);
    let outcome = result?;
    deleted?;
    let shown = format!(
        "containerd {} at {}",
        client.version_string,
        client.address.display()
    );
    Ok(StorePlan {
        containerd_root: shown.clone(),
        meta_db: shown,
        address: Some(client.address.display().to_string()),
        unchanged: outcome.blobs_written.is_empty() && outcome.records_changed.is_empty(),
        blobs_written: outcome.blobs_written,
        blobs_present: outcome.blobs_present,
        records_changed: outcome.records_changed,
        ..plan.clone()
    })
}

fn write_all(client: &Client, lease: &str, image: &Image, plan: &StorePlan) -> Result<Outcome> {
    let mut written = Vec::new();
    let mut present = 0;
    let mut changes = Vec::new();
    for digest in children_first(&plan.labels) {
        let labels = &plan.labels[&digest];
        let bytes = image
            .blobs
            .get(&digest)
            .with_context(|| format!("writing blob {digest} into containerd: not in the image"))?;
        match put_blob(client, lease, &digest, bytes, labels)
            .with_context(|| format!("writing blob {digest} into containerd"))?
        {
            Blob::Written => {
                written.push(digest.clone());
                changes.push(format!("content {digest} (new)"));
            }
            Blob::Labelled => {
                present += 1;
                changes.push(format!("content {digest} (updated)"));
            }
            Blob::Present => present += 1,
        }
    }
    for name in &plan.names {
        if let Some(how) = put_image(client, image, name, plan.pinned)
            .with_context(|| format!("writing image record {name} into containerd"))?
        {
            changes.push(format!("image {name} ({how})"));
        }
    }
    Ok(Outcome {
        blobs_written: written,
        blobs_present: present,
        records_changed: changes,
    })
}

/// Every digest after the digests its labels name: a parent is committed only once its
/// children are there.
fn children_first(blobs: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    fn visit(
        d: &str,
        blobs: &BTreeMap<String, BTreeMap<String, String>>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !done.insert(d.to_string()) {
            return;
        }
        for child in blobs.get(d).into_iter().flat_map(|l| l.values()) {
            if blobs.contains_key(child) {
                visit(child, blobs, done, out);
            }
        }
        out.push(d.to_string());
    }
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for d in blobs.keys() {
        visit(d, blobs, &mut done, &mut out);
    }
    out
}

fn create_lease(client: &Client) -> Result<String> {
    let expire = SystemTime::now() + LEASE_EXPIRY;
    let secs = expire
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let id = format!(
        "pausebake-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let req = client.request(api::CreateRequest {
        id: id.clone(),
        labels: HashMap::from([(GC_EXPIRE.to_string(), crate::image::rfc3339(secs)?)]),
    });
    client
        .call(|ch| async move { LeasesClient::new(ch).create(req).await })
        .map_err(|e| anyhow!("creating a lease in containerd: {}", describe(&e)))?;
    Ok(id)
}

fn delete_lease(client: &Client, id: &str) -> Result<()> {
    let req = client.request(api::DeleteRequest {
        id: id.to_string(),
        sync: false,
    });
    match client.call(|ch| async move { LeasesClient::new(ch).delete(req).await }) {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Code::NotFound => Ok(()),
        Err(e) => Err(anyhow!(
            "deleting lease {id} in containerd: {} (it expires by itself within {LEASE_EXPIRY:?})",
            describe(&e)
        )),
    }
}

enum Blob {
    Written,
    /// Already there; its GC labels were added.
    Labelled,
    /// Already there with every label.
    Present,
}

/// One blob, first added to the lease: present with our labels -> nothing; present without -> `Update` those labels;
/// absent -> `Write` it (stat, chunks, commit with digest, size and labels). containerd
/// answers AlreadyExists when another writer (or another namespace's identical blob) got
/// there first: then only the labels.
fn put_blob(
    client: &Client,
    lease: &str,
    digest: &str,
    bytes: &[u8],
    labels: &BTreeMap<String, String>,
) -> Result<Blob> {
    // Leased first: a blob found present must survive GC until the records that reach it
    // exist (only blobs written under the lease are held by it otherwise).
    let req = client.request(api::AddResourceRequest {
        id: lease.to_string(),
        resource: Some(api::Resource {
            id: digest.to_string(),
            r#type: "content".to_string(),
        }),
    });
    client
        .call(|ch| async move { LeasesClient::new(ch).add_resource(req).await })
        .map_err(|e| anyhow!("adding it to lease {lease}: {}", describe(&e)))?;
    match info(client, digest)? {
        Some(have) => relabel(client, digest, &have, labels),
        None => match write(client, digest, bytes, labels) {
            Ok(()) => Ok(Blob::Written),
            Err(e) if e.code() == Code::AlreadyExists => {
                let have = info(client, digest)?
                    .ok_or_else(|| anyhow!("containerd said it exists, then that it does not"))?;
                relabel(client, digest, &have, labels)
            }
            Err(e) => Err(anyhow!("{}", describe(&e))),
        },
    }
}

fn info(client: &Client, digest: &str) -> Result<Option<api::Info>> {
    let req = client.request(InfoRequest {
        digest: digest.to_string(),
    });
    match client.call(|ch| async move { ContentClient::new(ch).info(req).await }) {
        Ok(r) => Ok(r.info),
        Err(e) if e.code() == Code::NotFound => Ok(None),
        Err(e) => Err(anyhow!("asking for its info: {}", describe(&e))),
    }
}

fn relabel(
    client: &Client,
    digest: &str,
    have: &api::Info,
    labels: &BTreeMap<String, String>,
) -> Result<Blob> {
    let missing: Vec<(&String, &String)> = labels
        .iter()
        .filter(|(k, v)| have.labels.get(*k) != Some(*v))
        .collect();
    if missing.is_empty() {
        return Ok(Blob::Present);
    }
    let req = client.request(UpdateRequest {
        info: Some(api::Info {
            digest: digest.to_string(),
            labels: missing
                .iter()
                .map(|(k, v)| ((*k).clone(), (*v).clone()))
                .collect(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: missing.iter().map(|(k, _)| format!("labels.{k}")).collect(),
        }),
    });
    client
        .call(|ch| async move { ContentClient::new(ch).update(req).await })
        .map_err(|e| anyhow!("adding its GC labels: {}", describe(&e)))?;
    Ok(Blob::Labelled)
}

/// The content `Write` stream for one blob. The ref is unique to this process, so two
/// imports never wait on each other's ingest; a killed run's ingest belongs to its expiring
/// lease.
fn write(
    client: &Client,
    digest: &str,
    bytes: &[u8],
    labels: &BTreeMap<String, String>,
) -> Result<(), Status> {
    let total = bytes.len() as i64;
    let reference = format!("pausebake-{}-{digest}", std::process::id());
    let base = WriteContentRequest {
        r#ref: reference,
        total,
        expected: digest.to_string(),
        ..Default::default()
    };
    let mut msgs = vec![WriteContentRequest {
        action: WriteAction::Stat as i32,
        ..base.clone()
    }];
    for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
        msgs.push(WriteContentRequest {
            action: WriteAction::Write as i32,
            offset: (i * CHUNK) as i64,
            data: chunk.to_vec(),
            ..base.clone()
        });
    }
    msgs.push(WriteContentRequest {
        action: WriteAction::Commit as i32,
        offset: total,
        labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..base
    });
    let req = client.request(tokio_stream::iter(msgs));
    let ch = client.channel();
    let want = digest.to_string();
    client.block_on(async move {
        let mut responses = ContentClient::new(ch).write(req).await?.into_inner();
        let mut committed = None;
        while let Some(r) = responses.message().await? {
            if r.action == WriteAction::Commit as i32 {
                committed = Some(r.digest);
            }
        }
        match committed {
            Some(d) if d == want => Ok(()),
            Some(d) => Err(Status::data_loss(format!("containerd committed {d}"))),
            None => Err(Status::unknown("the write stream ended without a commit")),
        }
    })
}

/// The image record `name`: created, re-pointed (target and our labels) or left alone.
/// Returns what changed.
fn put_image(
    client: &Client,
    image: &Image,
    name: &str,
    pin: bool,
) -> Result<Option<&'static str>> {
    let t = &image.target;
    let target = Descriptor {
        media_type: t.media_type().to_string(),
        digest: t.digest().to_string(),
        size: t.size() as i64,
        annotations: t
            .annotations()
            .iter()
            .flatten()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let labels: HashMap<String, String> = if pin {
        HashMap::from([
            (
                store::LABEL_IMAGE.to_string(),
                store::LABEL_IMAGE_MANAGED.to_string(),
            ),
            (
                store::LABEL_PINNED.to_string(),
                store::LABEL_PINNED_PINNED.to_string(),
            ),
        ])
    } else {
        HashMap::new()
    };
    let record = api::Image {
        name: name.to_string(),
        labels: labels.clone(),
        target: Some(target.clone()),
        ..Default::default()
    };
    let req = client.request(GetImageRequest {
        name: name.to_string(),
    });
    let existing = match client.call(|ch| async move { ImagesClient::new(ch).get(req).await }) {
        Ok(r) => r.image,
        Err(e) if e.code() == Code::NotFound => None,
        Err(e) => return Err(anyhow!("reading it: {}", describe(&e))),
    };
    let Some(have) = existing else {
        let req = client.request(CreateImageRequest {
            image: Some(record.clone()),
            source_date_epoch: None,
        });
        return match client.call(|ch| async move { ImagesClient::new(ch).create(req).await }) {
            Ok(_) => Ok(Some("new")),
            // another import created it in between: make it ours like an existing one
            Err(e) if e.code() == Code::AlreadyExists => update_image(client, record, &labels),
            Err(e) => Err(anyhow!("creating it: {}", describe(&e))),
        };
    };
    let same_target = have.target.as_ref() == Some(&target);
    let labelled = labels.iter().all(|(k, v)| have.labels.get(k) == Some(v));
    if same_target && labelled {
        return Ok(None);
    }
    update_image(client, record, &labels)
}

fn update_image(
    client: &Client,
    record: api::Image,
    labels: &HashMap<String, String>,
) -> Result<Option<&'static str>> {
    let mut paths = vec!["target".to_string()];
    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    paths.extend(keys.into_iter().map(|k| format!("labels.{k}")));
    let req = client.request(UpdateImageRequest {
        image: Some(record),
        update_mask: Some(FieldMask { paths }),
        source_date_epoch: None,
    });
    client
        .call(|ch| async move { ImagesClient::new(ch).update(req).await })
        .map_err(|e| anyhow!("updating it: {}", describe(&e)))?;
    Ok(Some("updated"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_written_before_their_parents() {
        let edge = |kids: &[&str]| -> BTreeMap<String, String> {
            kids.iter()
                .enumerate()
                .map(|(i, k)| (format!("containerd.io/gc.ref.content.l.{i}"), k.to_string()))
                .collect()
        };
        let blobs = BTreeMap::from([
            ("a-index".to_string(), edge(&["m-manifest"])),
            ("m-manifest".to_string(), edge(&["c-config", "z-layer"])),
            ("c-config".to_string(), BTreeMap::new()),
            ("z-layer".to_string(), BTreeMap::new()),
        ]);
        assert_eq!(
            children_first(&blobs),
            ["c-config", "z-layer", "m-manifest", "a-index"]
        );
    }
}
