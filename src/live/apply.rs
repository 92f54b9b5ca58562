//! The live `apply`: a plan's blobs, GC labels and image records written through a running
//! containerd's API instead of into a root's files.
//!
//! Order and safety: a lease with a `containerd.io/gc.expire` label holds every blob (written,
//! or found present and added to it) until the image records exist, so neither containerd's GC
//! nor a killed pausebake can leave half an image: blobs go first, all at once (the lease, not
//! their order, keeps them), each committed with its expected digest and size; the image
//! records last. The lease is deleted on every path; if pausebake dies first it expires and GC
//! takes what no record reaches.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use anyhow::{anyhow, Context, Result};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    self as api, CreateImageRequest, UpdateImageRequest, UpdateRequest, WriteAction,
    WriteContentRequest,
};
use containerd_client::types::Descriptor;
use prost_types::FieldMask;
use tonic::{Code, Status};

use super::client::{describe, lease_refused, Client, Pending};
use crate::containerd::plan::StorePlan;
use crate::containerd::store;
use crate::image::Image;
use crate::trace;

/// The largest chunk sent in one `Write` message (gRPC's default limit is 4 MiB).
const CHUNK: usize = 1 << 20;

/// What the live apply did (or, under `--dry-run`, would do), as containerd answered.
#[derive(Default)]
struct Outcome {
    blobs_written: Vec<String>,
    blobs_present: usize,
    records_changed: Vec<String>,
}

impl Outcome {
    /// Counts one blob, with the record line the import report prints for it.
    fn blob(&mut self, digest: &str, done: Blob) {
        match done {
            Blob::Written => {
                self.blobs_written.push(digest.to_string());
                self.records_changed.push(format!("content {digest} (new)"));
            }
            Blob::Labelled => {
                self.blobs_present += 1;
                self.records_changed
                    .push(format!("content {digest} (updated)"));
            }
            Blob::Present => self.blobs_present += 1,
        }
    }

    /// Counts one image record (`how`: `new`, `updated`, or `None` when left alone).
    fn image(&mut self, name: &str, how: Option<&str>) {
        if let Some(how) = how {
            self.records_changed.push(format!("image {name} ({how})"));
        }
    }

    /// `plan` as containerd answered: the counts of this outcome, and the running
    /// containerd in place of the root's files.
    fn into_plan(self, plan: &StorePlan, client: &Client) -> StorePlan {
        let shown = format!(
            "containerd {} at {}",
            client.version_string,
            client.address.display()
        );
        StorePlan {
            containerd_root: shown.clone(),
            meta_db: shown,
            address: Some(client.address.display().to_string()),
            unchanged: self.blobs_written.is_empty() && self.records_changed.is_empty(),
            blobs_written: self.blobs_written,
            blobs_present: self.blobs_present,
            records_changed: self.records_changed,
            ..plan.clone()
        }
    }
}

/// Whether a pass over the plan acts or only asks.
#[derive(Clone, Copy)]
enum Mode {
    /// Read-only calls: what containerd has decides what would be done (`--dry-run`).
    Ask,
    /// Each step carried out, every blob held by the lease.
    Act,
}

impl Mode {
    /// What a pass is doing, for its errors (a dry run's say it was only reading).
    fn doing(self) -> (&'static str, &'static str) {
        match self {
            Mode::Ask => ("checking", "in"),
            Mode::Act => ("writing", "into"),
        }
    }
}

/// Carries out the store part of a plan in the running containerd behind `client`, as
/// [`crate::containerd::apply`] does in a root's files: the plan's blobs with their GC labels,
/// its image records, names, labels and namespace. Returns the plan as done: what was
/// written, labelled or already there, as containerd answered (the plan's counts were
/// predicted from a snapshot of `meta.db`). A second identical run changes nothing.
pub fn apply(plan: &StorePlan, image: &Image, client: &mut Client) -> Result<StorePlan> {
    client.set_namespace(&plan.namespace)?;
    client.set_lease(None)?;
    let (lease, created) = client.lease(&plan.namespace)?;
    client.set_lease(Some(&lease))?;
    let result = act(client, image, plan, &lease, created);
    client.set_lease(None)?;
    let deleted = client.delete_lease(&lease);
    trace::step(format_args!("deleted lease {lease}"));
    let outcome = result?;
    deleted?;
    Ok(outcome.into_plan(plan, client))
}

/// What [`apply`] would do to the running containerd behind `client`, asked with read-only
/// calls only (content `Info`, images `Get`; no lease): the plan with the counts and record
/// lines [`apply`] would report, decided by the same comparisons ([`BlobStep::of`],
/// [`ImageStep::of`]). The plan's own counts come from a snapshot of a root's `meta.db`,
/// which need not be what this containerd holds.
pub fn predict(plan: &StorePlan, image: &Image, client: &mut Client) -> Result<StorePlan> {
    client.set_namespace(&plan.namespace)?;
    client.set_lease(None)?;
    let blobs = blobs(plan, image, Mode::Ask)?;
    let infos: Vec<_> = blobs
        .iter()
        .map(|blob| client.start(client.content_info_call(blob.digest)))
        .collect();
    let mut outcome = Outcome::default();
    for (blob, info) in blobs.iter().zip(client.wait_all(infos)) {
        let info = info
            .map_err(|e| anyhow!("asking for its info: {}", describe(&e)))
            .with_context(|| blob.context(Mode::Ask))?;
        outcome.blob(
            blob.digest,
            BlobStep::of(info.as_ref(), blob.labels).outcome(),
        );
    }
    put_images(client, Mode::Ask, image, plan, &mut outcome)?;
    Ok(outcome.into_plan(plan, client))
}

/// One of the plan's blobs: its digest, bytes and GC labels.
struct PlannedBlob<'a> {
    digest: &'a str,
    bytes: &'a [u8],
    labels: &'a BTreeMap<String, String>,
}

impl PlannedBlob<'_> {
    fn context(&self, mode: Mode) -> String {
        blob_context(mode, self.digest)
    }
}

/// What a pass was doing to one blob, for its errors.
fn blob_context(mode: Mode, digest: &str) -> String {
    let (doing, into) = mode.doing();
    format!("{doing} blob {digest} {into} containerd")
}

/// The plan's blobs, in its digest order, each with its bytes from `image`.
fn blobs<'a>(plan: &'a StorePlan, image: &'a Image, mode: Mode) -> Result<Vec<PlannedBlob<'a>>> {
    plan.labels
        .iter()
        .map(|(digest, labels)| {
            let bytes = image
                .blobs
                .get(digest)
                .with_context(|| format!("{}: not in the image", blob_context(mode, digest)))?;
            Ok(PlannedBlob {
                digest,
                bytes,
                labels,
            })
        })
        .collect()
}

/// Every blob, then every image record, under `lease`. The blobs are written at once, each
/// on its own stream, without asking first what containerd has: most of a write's time is
/// containerd syncing the blob and `meta.db`, and those syncs overlap; a blob containerd has
/// answers AlreadyExists, which [`after_write`] turns into the steps a dry run predicts. They
/// are sent before containerd confirms the lease ([`behind_lease`]). No blob waits for the
/// ones its labels name: the lease holds each from its commit, and only the image records,
/// written last, make any of them reachable.
fn act(
    client: &Client,
    image: &Image,
    plan: &StorePlan,
    lease: &str,
    created: Pending<()>,
) -> Result<Outcome> {
    let blobs = blobs(plan, image, Mode::Act)?;
    let send = |i: usize| write(client, blobs[i].digest, blobs[i].bytes, blobs[i].labels);
    let (leased, written) = client
        .block_on(async { Ok(behind_lease(blobs.len(), send, created.answer()).await) })
        .map_err(|e| {
            anyhow!(
                "writing {} blobs into containerd: {}",
                blobs.len(),
                describe(&e)
            )
        })?;
    leased.map_err(|e| lease_refused(&e))?;
    trace::step(format_args!(
        "lease {lease} created, {} writes answered",
        blobs.len()
    ));
    let mut outcome = Outcome::default();
    for (blob, result) in blobs.iter().zip(written) {
        let done = after_write(client, lease, blob.digest, blob.labels, result)
            .with_context(|| blob.context(Mode::Act))?;
        trace::step(format_args!(
            "blob {} ({} bytes): {done:?}",
            blob.digest,
            blob.bytes.len()
        ));
        outcome.blob(blob.digest, done);
    }
    put_images(client, Mode::Act, image, plan, &mut outcome)?;
    Ok(outcome)
}

/// What containerd answered one call that returns nothing.
type Answer = Result<(), Status>;

/// The `n` writes `send(0..n)`, all started at once before the lease they are written under
/// is confirmed (`lease`, its creation's answer), so that they need not wait a round trip for
/// it: containerd got the lease's request first, and a write normally commits after it. A
/// write containerd took before the lease existed fails as not found ("lease does not
/// exist", before anything is written), and each such is sent again, once, after the lease
/// is there. Returns the lease's answer and, in order, each write's last answer; when the
/// lease failed, the writes are not sent again.
async fn behind_lease<Fut>(
    n: usize,
    send: impl Fn(usize) -> Fut,
    lease: impl Future<Output = Answer>,
) -> (Answer, Vec<Answer>)
where
    Fut: Future<Output = Answer> + Send + 'static,
{
    let started: Vec<Pending<()>> = (0..n).map(|i| Pending::spawn(send(i))).collect();
    let leased = lease.await;
    let mut answers = Vec::with_capacity(n);
    for pending in started {
        answers.push(pending.answer().await);
    }
    if leased.is_ok() {
        let early: Vec<usize> = (0..n)
            .filter(|&i| matches!(&answers[i], Err(e) if e.code() == Code::NotFound))
            .collect();
        if !early.is_empty() {
            trace::step(format_args!("{} writes came before the lease", early.len()));
        }
        let again: Vec<(usize, Pending<()>)> = early
            .into_iter()
            .map(|i| (i, Pending::spawn(send(i))))
            .collect();
        for (i, pending) in again {
            answers[i] = pending.answer().await;
        }
    }
    (leased, answers)
}

/// Every image record of the plan, after its blobs ([`put_image`]).
fn put_images(
    client: &Client,
    mode: Mode,
    image: &Image,
    plan: &StorePlan,
    outcome: &mut Outcome,
) -> Result<()> {
    let (doing, into) = mode.doing();
    for name in &plan.names {
        let how = put_image(client, mode, image, name, plan.pinned)
            .with_context(|| format!("{doing} image record {name} {into} containerd"))?;
        trace::step(format_args!("image {name}: {}", how.unwrap_or("unchanged")));
        outcome.image(name, how);
    }
    Ok(())
}

/// What became (or would become) of one blob.
#[derive(Debug, PartialEq, Eq)]
enum Blob {
    Written,
    /// Already there; its GC labels were added.
    Labelled,
    /// Already there with every label.
    Present,
}

/// What one blob needs, decided from what containerd has of it.
#[derive(Debug, PartialEq, Eq)]
enum BlobStep {
    /// Absent: `Write` it with its labels.
    Write,
    /// Present without these of its GC labels (or with other values): `Update` them.
    Label(BTreeMap<String, String>),
    /// Present with every label: nothing.
    Keep,
}

impl BlobStep {
    /// The decision: `have` is containerd's `Info` of the blob (`None`: absent), `labels`
    /// the GC labels the plan gives it. The one comparison both [`apply`] and [`predict`]
    /// use.
    fn of(have: Option<&api::Info>, labels: &BTreeMap<String, String>) -> BlobStep {
        let Some(have) = have else {
            return BlobStep::Write;
        };
        let missing: BTreeMap<String, String> = labels
            .iter()
            .filter(|(k, v)| have.labels.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if missing.is_empty() {
            BlobStep::Keep
        } else {
            BlobStep::Label(missing)
        }
    }

    /// What taking this step makes of the blob.
    fn outcome(&self) -> Blob {
        match self {
            BlobStep::Write => Blob::Written,
            BlobStep::Label(_) => Blob::Labelled,
            BlobStep::Keep => Blob::Present,
        }
    }
}

/// What a [`write()`] made of the blob. containerd answers AlreadyExists when it has the blob
/// (from before, or another writer got there first): then the blob is added to the lease
/// before it is trusted (GC may take an unreachable blob until the records that reach it
/// exist), asked about again, and gets only the labels it lacks.
fn after_write(
    client: &Client,
    lease: &str,
    digest: &str,
    labels: &BTreeMap<String, String>,
    written: Result<(), Status>,
) -> Result<Blob> {
    match written {
        Ok(()) => Ok(Blob::Written),
        Err(e) if e.code() == Code::AlreadyExists => {
            add_to_lease(client, lease, digest)?;
            let have = info(client, digest)?
                .ok_or_else(|| anyhow!("containerd said it exists, then that it does not"))?;
            match BlobStep::of(Some(&have), labels) {
                BlobStep::Label(missing) => relabel(client, digest, &missing),
                _ => Ok(Blob::Present),
            }
        }
        Err(e) => Err(anyhow!("{}", describe(&e))),
    }
}

fn add_to_lease(client: &Client, lease: &str, digest: &str) -> Result<()> {
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
    Ok(())
}

/// containerd's `Info` of a blob; `None` when it has none (read-only).
fn info(client: &Client, digest: &str) -> Result<Option<api::Info>> {
    client
        .content_info(digest)
        .map_err(|e| anyhow!("asking for its info: {}", describe(&e)))
}

/// Sets the `missing` labels on a present blob (`Update` with a mask of just those).
fn relabel(client: &Client, digest: &str, missing: &BTreeMap<String, String>) -> Result<Blob> {
    let req = client.request(UpdateRequest {
        info: Some(api::Info {
            digest: digest.to_string(),
            labels: missing
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: missing.keys().map(|k| format!("labels.{k}")).collect(),
        }),
    });
    client
        .call(|ch| async move { ContentClient::new(ch).update(req).await })
        .map_err(|e| anyhow!("adding its GC labels: {}", describe(&e)))?;
    Ok(Blob::Labelled)
}

/// The content `Write` stream for one blob, to run with [`Client::start`]: one message with
/// its bytes, its expected digest and size, its labels and the commit (chunked only past
/// gRPC's message limit). The ref is unique to this process, so two imports never wait on
/// each other's ingest; a killed run's ingest belongs to its expiring lease.
fn write(
    client: &Client,
    digest: &str,
    bytes: &[u8],
    labels: &BTreeMap<String, String>,
) -> impl Future<Output = Result<(), Status>> + Send + 'static {
    let total = bytes.len() as i64;
    let reference = format!("pausebake-{}-{digest}", std::process::id());
    let base = WriteContentRequest {
        r#ref: reference,
        total,
        expected: digest.to_string(),
        ..Default::default()
    };
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
    let last = chunks.len().saturating_sub(1);
    let mut msgs: Vec<WriteContentRequest> = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| WriteContentRequest {
            action: WriteAction::Write as i32,
            offset: (i * CHUNK) as i64,
            data: chunk.to_vec(),
            ..base.clone()
        })
        .collect();
    let commit = WriteContentRequest {
        action: WriteAction::Commit as i32,
        labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..base
    };
    // The commit carries the last chunk (containerd writes a message's data, then commits).
    match msgs.get_mut(last) {
        Some(tail) => {
            tail.action = commit.action;
            tail.labels = commit.labels;
        }
        None => msgs.push(WriteContentRequest {
            offset: total,
            ..commit
        }),
    }
    let req = client.request(tokio_stream::iter(msgs));
    let ch = client.channel();
    let want = digest.to_string();
    async move {
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
    }
}

/// What one image record needs, decided from what containerd has under its name.
#[derive(Debug, PartialEq, Eq)]
enum ImageStep {
    /// No record: `Create` it.
    Create,
    /// Another target, or without our labels: `Update` target and labels.
    Update,
    /// The same target with every label: nothing.
    Keep,
}

impl ImageStep {
    /// The decision: `have` is containerd's record (`None`: absent), `want` the record the
    /// plan writes. The one comparison both [`apply`] and [`predict`] use.
    fn of(have: Option<&api::Image>, want: &api::Image) -> ImageStep {
        let Some(have) = have else {
            return ImageStep::Create;
        };
        let same_target = have.target == want.target;
        let labelled = want
            .labels
            .iter()
            .all(|(k, v)| have.labels.get(k) == Some(v));
        if same_target && labelled {
            ImageStep::Keep
        } else {
            ImageStep::Update
        }
    }

    /// What taking this step does to the record, as the import report says it.
    fn how(&self) -> Option<&'static str> {
        match self {
            ImageStep::Create => Some("new"),
            ImageStep::Update => Some("updated"),
            ImageStep::Keep => None,
        }
    }
}

/// The image record `name`: decided ([`ImageStep::of`]) from what containerd has and, under
/// [`Mode::Act`], created, re-pointed (target and our labels) or left alone. Returns what
/// changed (or would).
fn put_image(
    client: &Client,
    mode: Mode,
    image: &Image,
    name: &str,
    pin: bool,
) -> Result<Option<&'static str>> {
    let record = record(image, name, pin);
    let Mode::Act = mode else {
        return Ok(ImageStep::of(get_image(client, name)?.as_ref(), &record).how());
    };
    // Created outright, one call in the usual case; a record that exists already is read
    // and decided as a dry run decides it.
    let req = client.request(CreateImageRequest {
        image: Some(record.clone()),
        source_date_epoch: None,
    });
    match client.call(|ch| async move { ImagesClient::new(ch).create(req).await }) {
        Ok(_) => return Ok(Some("new")),
        Err(e) if e.code() == Code::AlreadyExists => {}
        Err(e) => return Err(anyhow!("creating it: {}", describe(&e))),
    }
    match ImageStep::of(get_image(client, name)?.as_ref(), &record) {
        ImageStep::Keep => Ok(None),
        // Create: removed since; updating it then fails as not found, and says so
        ImageStep::Update | ImageStep::Create => update_image(client, record),
    }
}

/// The record pausebake writes for `name`: the image's target descriptor and, when pinned,
/// the managed and pinned labels.
fn record(image: &Image, name: &str, pin: bool) -> api::Image {
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
    api::Image {
        name: name.to_string(),
        labels,
        target: Some(target),
        ..Default::default()
    }
}

/// containerd's record named `name`; `None` when it has none (read-only).
fn get_image(client: &Client, name: &str) -> Result<Option<api::Image>> {
    client
        .image_record(name)
        .map_err(|e| anyhow!("reading it: {}", describe(&e)))
}

/// Re-points `record` at its target and sets its labels (a mask of the target and just our
/// label keys: other labels on the record stay).
fn update_image(client: &Client, record: api::Image) -> Result<Option<&'static str>> {
    let mut paths = vec!["target".to_string()];
    let mut keys: Vec<String> = record.labels.keys().cloned().collect();
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// [`behind_lease`] with `n` writes answering as containerd does: not found while the
    /// lease does not exist, then `after(i)`. Write `i` reaches containerd `delays[i]` ms after
    /// it is sent, the lease's commit `lease_ms` ms after; `lease` is its answer. Returns the
    /// answers and the order the writes reached containerd in.
    fn behind(
        delays: &[u64],
        lease_ms: u64,
        lease: Answer,
        after: fn(usize) -> Answer,
    ) -> ((Answer, Vec<Answer>), Vec<usize>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let leased = Arc::new(AtomicBool::new(false));
        let reached = Arc::new(Mutex::new(Vec::new()));
        let delays = delays.to_vec();
        let send = |i: usize| {
            let (leased, reached, delay) = (leased.clone(), reached.clone(), delays[i]);
            async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                reached.lock().unwrap().push(i);
                match leased.load(Ordering::SeqCst) {
                    false => Err(Status::not_found("lease does not exist: not found")),
                    true => after(i),
                }
            }
        };
        let lease = {
            let leased = leased.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(lease_ms)).await;
                leased.store(lease.is_ok(), Ordering::SeqCst);
                lease
            }
        };
        let answers = rt.block_on(behind_lease(delays.len(), send, lease));
        let reached = reached.lock().unwrap().clone();
        (answers, reached)
    }

    fn codes(answers: &[Answer]) -> Vec<Code> {
        answers
            .iter()
            .map(|a| a.as_ref().map_or_else(|e| e.code(), |()| Code::Ok))
            .collect()
    }

    #[test]
    fn writes_that_beat_the_lease_are_sent_again_once_it_is_there() {
        // 0 and 2 reach containerd before the lease, 1 and 3 after it; 3 is a blob it has, 4
        // is not found with or without the lease
        let after = |i| match i {
            3 => Err(Status::already_exists("content exists")),
            4 => Err(Status::not_found("no such namespace")),
            _ => Ok(()),
        };
        let ((leased, answers), reached) = behind(&[0, 40, 0, 30, 50], 20, Ok(()), after);
        assert!(leased.is_ok());
        assert_eq!(
            codes(&answers),
            [
                Code::Ok,
                Code::Ok,
                Code::Ok,
                Code::AlreadyExists,
                Code::NotFound
            ]
        );
        // once each, then again only those not found: 4 twice, and no more
        assert_eq!(reached, [0, 2, 3, 1, 4, 0, 2, 4]);
    }

    #[test]
    fn writes_are_not_sent_again_when_the_lease_failed() {
        let refused = Err(Status::invalid_argument("bad label"));
        let ((leased, answers), reached) = behind(&[0, 0], 20, refused, |_| Ok(()));
        assert_eq!(leased.unwrap_err().code(), Code::InvalidArgument);
        assert_eq!(codes(&answers), [Code::NotFound, Code::NotFound]);
        assert_eq!(reached, [0, 1]);
    }

    #[test]
    fn writes_after_the_lease_are_sent_once() {
        let ((leased, answers), reached) = behind(&[30, 30, 30], 20, Ok(()), |_| Ok(()));
        assert!(leased.is_ok());
        assert_eq!(codes(&answers), [Code::Ok; 3]);
        assert_eq!(reached, [0, 1, 2]);
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn info(pairs: &[(&str, &str)]) -> api::Info {
        api::Info {
            digest: "sha256:aa".to_string(),
            labels: labels(pairs).into_iter().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_blob_is_written_labelled_or_kept_by_what_containerd_has() {
        let want = labels(&[
            ("containerd.io/gc.ref.content.config", "sha256:c"),
            ("containerd.io/gc.ref.content.l.0", "sha256:l"),
        ]);
        assert_eq!(BlobStep::of(None, &want), BlobStep::Write);
        // one label missing, one with another value: both set, nothing else
        let have = info(&[
            ("containerd.io/gc.ref.content.config", "sha256:other"),
            ("containerd.io/distribution.source.x", "y"),
        ]);
        assert_eq!(
            BlobStep::of(Some(&have), &want),
            BlobStep::Label(want.clone())
        );
        let have = info(&[
            ("containerd.io/gc.ref.content.config", "sha256:c"),
            ("containerd.io/gc.ref.content.l.0", "sha256:l"),
            ("containerd.io/distribution.source.x", "y"),
        ]);
        assert_eq!(BlobStep::of(Some(&have), &want), BlobStep::Keep);
        assert_eq!(BlobStep::of(Some(&info(&[])), &labels(&[])), BlobStep::Keep);
        assert_eq!(
            [BlobStep::Write, BlobStep::Label(want), BlobStep::Keep].map(|s| s.outcome()),
            [Blob::Written, Blob::Labelled, Blob::Present]
        );
    }

    #[test]
    fn an_image_record_is_created_updated_or_kept_by_what_containerd_has() {
        let target = |digest: &str| Descriptor {
            media_type: "application/vnd.oci.image.index.v1+json".to_string(),
            digest: digest.to_string(),
            size: 100,
            annotations: HashMap::new(),
        };
        let record = |digest: &str, pairs: &[(&str, &str)]| api::Image {
            name: "registry.k8s.io/pause:3.10".to_string(),
            labels: labels(pairs).into_iter().collect(),
            target: Some(target(digest)),
            ..Default::default()
        };
        let ours = [
            (store::LABEL_IMAGE, store::LABEL_IMAGE_MANAGED),
            (store::LABEL_PINNED, store::LABEL_PINNED_PINNED),
        ];
        let want = record("sha256:a", &ours);
        assert_eq!(ImageStep::of(None, &want), ImageStep::Create);
        assert_eq!(ImageStep::of(Some(&want), &want), ImageStep::Keep);
        // other labels on the record do not matter; a missing one of ours does
        let more = record("sha256:a", &[ours[0], ours[1], ("x", "y")]);
        assert_eq!(ImageStep::of(Some(&more), &want), ImageStep::Keep);
        let unpinned = record("sha256:a", &ours[..1]);
        assert_eq!(ImageStep::of(Some(&unpinned), &want), ImageStep::Update);
        assert_eq!(
            ImageStep::of(Some(&unpinned), &record("sha256:a", &[])),
            ImageStep::Keep
        );
        let elsewhere = record("sha256:b", &ours);
        assert_eq!(ImageStep::of(Some(&elsewhere), &want), ImageStep::Update);
        assert_eq!(
            [ImageStep::Create, ImageStep::Update, ImageStep::Keep].map(|s| s.how()),
            [Some("new"), Some("updated"), None]
        );
    }
}
