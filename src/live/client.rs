//! One connection to a running containerd: its API and its CRI plugin share the unix socket
//! and one tonic channel. Every call blocks on a private current-thread runtime under a
//! timeout, and failures to connect are told apart (no socket, permission, not containerd,
//! too old, CRI disabled) because each has a different fix.

use std::collections::HashMap;
use std::future::Future;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use containerd_client::services::v1 as api;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::version_client::VersionClient;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Status};

use crate::containerd::versions::{known_releases, Version};
use crate::trace;

/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long any one call may take (a content write of one blob included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a lease outlives a pausebake that died holding it.
const LEASE_EXPIRY: Duration = Duration::from_secs(10 * 60);
const GC_EXPIRE: &str = "containerd.io/gc.expire";
/// The oldest containerd whose API and CRI this path was tested against.
const OLDEST: Version = Version::new(1, 6, 0);

/// A connected containerd.
pub struct Client {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    pub address: PathBuf,
    /// What its version service reports, e.g. `1.6.20~ds1`, `v2.1.9`.
    pub version_string: String,
    pub version: Version,
    /// `containerd-namespace` metadata for every namespaced call.
    namespace: Option<MetadataValue<tonic::metadata::Ascii>>,
    /// `containerd-lease` metadata while a lease is held.
    lease: Option<MetadataValue<tonic::metadata::Ascii>>,
    /// The lease [`Client::dial`] asked for, until the write takes it.
    early_lease: Option<EarlyLease>,
}

/// A lease asked for while connecting, so that its round trip (a `meta.db` commit in
/// containerd) overlaps the version and CRI questions instead of following them.
struct EarlyLease {
    id: String,
    namespace: String,
    created: Pending<()>,
}

/// A call started with [`Client::start`], not yet waited for.
pub struct Pending<T>(tokio::task::JoinHandle<Result<T, Status>>);

impl<T: Send + 'static> Pending<T> {
    /// `call` as its own task on the runtime this is called in ([`Client::start`] from
    /// outside it).
    pub fn spawn<Fut>(call: Fut) -> Pending<T>
    where
        Fut: Future<Output = Result<T, Status>> + Send + 'static,
    {
        Pending(tokio::spawn(call))
    }

    /// Its answer, from inside the runtime ([`Client::wait_all`] from outside it).
    pub async fn answer(mut self) -> Result<T, Status> {
        answer(&mut self).await
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for Client {
    /// An early lease no write took (a check failed, or the command stopped before writing)
    /// is deleted, as if never made; a failure here is not reported: it expires by itself.
    fn drop(&mut self) {
        if let Some(early) = self.early_lease.take() {
            if self.wait_within(CONNECT_TIMEOUT, early.created).is_ok()
                && self.set_namespace(&early.namespace).is_ok()
                && self.set_lease(None).is_ok()
            {
                let _ = self.delete_lease(&early.id);
            }
        }
    }
}

/// A containerd being connected to ([`Client::dial`]): its answers to the version and CRI
/// questions are on their way.
pub struct Dialed {
    client: Client,
    version: Pending<api::VersionResponse>,
    cri: Pending<cri::VersionResponse>,
}

impl Dialed {
    /// The second half of connecting: checks that a containerd answered, new enough, with
    /// CRI enabled. Each failure says what is wrong and what to do.
    pub fn finish(self) -> Result<Client> {
        let Dialed {
            mut client,
            version,
            cri,
        } = self;
        let shown = client.address.display().to_string();
        let version = client
            .wait_within(CONNECT_TIMEOUT, version)
            .map_err(|e| {
                anyhow!(
                    "asking {shown} for containerd's version: {}; is this containerd's socket? (its [grpc] address)",
                    describe(&e)
                )
            })?;
        trace::step(format_args!("version: {}", version.version));
        client.version_string = version.version.clone();
        client.version = version
            .version
            .parse()
            .with_context(|| format!("reading the version containerd at {shown} reports"))?;
        // Before CRI's answer is read: an old containerd (bullseye's 1.4.13) answers CRI v1
        // with Unimplemented, which would read as a disabled plugin. --offline is no way out:
        // it refuses the same versions (see the test below).
        if client.version < OLDEST {
            bail!(
                "containerd at {shown} is {}, too old: pausebake needs containerd {OLDEST} or newer, live or --offline (it knows {}); upgrade containerd",
                client.version_string,
                known_releases()
            );
        }
        let cri = client.wait_within(CONNECT_TIMEOUT, cri);
        trace::step(format_args!("CRI version"));
        match cri {
            Ok(_) => Ok(client),
            Err(e) if e.code() == Code::Unimplemented => bail!(
                "containerd {} at {shown} has its CRI plugin disabled (or too old for CRI v1): Kubernetes cannot use it; enable io.containerd.grpc.v1.cri (remove it from disabled_plugins) and restart containerd",
                client.version_string
            ),
            Err(e) => bail!(
                "asking containerd {} at {shown} for its CRI version: {}",
                client.version_string,
                describe(&e)
            ),
        }
    }
}

/// Turns of the runtime that let calls just started reach the socket: the call's task, the
/// channel's buffer and the connection's task each take one.
const SEND_TURNS: usize = 8;

/// Runs the runtime until the calls just started have written their requests, so that
/// containerd answers them while this thread does other work ([`Client::dial`]).
async fn send_started() {
    for _ in 0..SEND_TURNS {
        tokio::task::yield_now().await;
    }
}

/// What a started call answered (a task that panicked or was cancelled answers as a failed
/// call).
async fn answer<T>(pending: &mut Pending<T>) -> Result<T, Status> {
    (&mut pending.0)
        .await
        .unwrap_or_else(|e| Err(Status::internal(format!("the call's task failed: {e}"))))
}

impl Client {
    /// Connects to containerd at `address` and checks it is a containerd new enough, with
    /// CRI enabled. Each failure says what is wrong and what to do.
    pub fn connect(address: &Path) -> Result<Client> {
        Client::dial(address, None)?.finish()
    }

    /// The first half of connecting: the socket is opened and the version and CRI questions
    /// (and, `writing` into a namespace, the lease) are sent; [`Dialed::finish`] reads and
    /// checks the answers. In between, the caller's own work overlaps containerd's. A lease
    /// asked for here and never taken ([`Client::lease`]) is deleted when the client goes,
    /// on every path; it would expire by itself anyway.
    pub fn dial(address: &Path, writing: Option<&str>) -> Result<Dialed> {
        let shown = address.display();
        match std::fs::metadata(address) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {}
            Ok(_) => bail!(
                "connecting to containerd at {shown}: not a socket; pass the socket containerd listens on ([grpc] address in its config)"
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => bail!(
                "connecting to containerd at {shown}: no such socket; is containerd running? (it listens on the [grpc] address of its config; without --address, pausebake works on the root's files alone)"
            ),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => bail!(
                "connecting to containerd at {shown}: permission denied; run as root"
            ),
            Err(e) => return Err(e).with_context(|| format!("connecting to containerd at {shown}")),
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime for containerd's API")?;
        let path = address.to_path_buf();
        let channel = rt
            .block_on(async move {
                // The socket is dialled here, not first in tonic's connector: its errno says
                // more than tonic's transport error. The connector takes this stream and
                // dials again only for a reconnect.
                let first = match tokio::net::UnixStream::connect(&path).await {
                    Ok(stream) => stream,
                    Err(e) if e.kind() == ErrorKind::PermissionDenied => bail!(
                        "permission denied; run as root (or as a user the socket's group admits)"
                    ),
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                        bail!("connection refused; containerd is not running (a stale socket)")
                    }
                    Err(e) => return Err(e.into()),
                };
                let first = std::sync::Mutex::new(Some(first));
                let endpoint = Endpoint::try_from("http://[::]:0")?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(CALL_TIMEOUT);
                // The URI is required by tonic but unused: the connector dials the socket.
                tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        let taken = first.lock().unwrap_or_else(|e| e.into_inner()).take();
                        async move {
                            let stream = match taken {
                                Some(stream) => stream,
                                None => tokio::net::UnixStream::connect(path).await?,
                            };
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                        }
                    })),
                )
                .await
                .map_err(|_| anyhow!("timed out after {CONNECT_TIMEOUT:?}"))?
                .map_err(|e| {
                    anyhow!(
                        "{:#}; is this containerd's socket? (its [grpc] address)",
                        anyhow::Error::from(e)
                    )
                })
            })
            .with_context(|| format!("connecting to containerd at {shown}"))?;
        trace::step(format_args!("connected to {shown}"));
        let mut client = Client {
            rt,
            channel,
            address: address.to_path_buf(),
            version_string: String::new(),
            version: OLDEST,
            namespace: None,
            lease: None,
            early_lease: None,
        };
        if let Some(namespace) = writing {
            client.set_namespace(namespace)?;
            let (id, created) = client.start_lease()?;
            client.early_lease = Some(EarlyLease {
                id,
                namespace: namespace.to_string(),
                created,
            });
        }
        // Both questions at once; CRI's answer is read only once the version is known.
        let version_channel = client.channel();
        let version = client.start(async move {
            VersionClient::new(version_channel)
                .version(())
                .await
                .map(tonic::Response::into_inner)
        });
        let cri_channel = client.channel();
        let cri = client.start(async move {
            RuntimeServiceClient::new(cri_channel)
                .version(cri::VersionRequest {
                    version: "v1".into(),
                })
                .await
                .map(tonic::Response::into_inner)
        });
        client.rt.block_on(send_started());
        Ok(Dialed {
            client,
            version,
            cri,
        })
    }

    /// Namespaced calls from now on go to `namespace`.
    pub fn set_namespace(&mut self, namespace: &str) -> Result<()> {
        self.namespace =
            Some(namespace.parse().map_err(|_| {
                anyhow!("namespace {namespace:?} is not a valid containerd namespace")
            })?);
        Ok(())
    }

    /// A lease in `namespace` that holds what is written under it (with [`Client::set_lease`])
    /// and expires by itself [`LEASE_EXPIRY`] from its creation: its id, and its creation to
    /// wait for ([`Pending::answer`]): the one [`Client::dial`] asked for, else a new one.
    /// Either may still be under way: containerd got its request first, and calls sent now
    /// normally commit behind it.
    pub fn lease(&mut self, namespace: &str) -> Result<(String, Pending<()>)> {
        match self.early_lease.take() {
            Some(early) if early.namespace == namespace => Ok((early.id, early.created)),
            other => {
                self.early_lease = other;
                self.set_namespace(namespace)?;
                self.start_lease()
            }
        }
    }

    /// Starts creating a new lease in the current namespace: its id and the pending call.
    fn start_lease(&self) -> Result<(String, Pending<()>)> {
        let now = SystemTime::now();
        let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let expires = since_epoch(now + LEASE_EXPIRY).as_secs();
        let id = format!(
            "pausebake-{}-{}",
            std::process::id(),
            since_epoch(now).as_nanos()
        );
        let req = self.request(api::CreateRequest {
            id: id.clone(),
            labels: HashMap::from([(GC_EXPIRE.to_string(), crate::image::rfc3339(expires)?)]),
        });
        let ch = self.channel();
        let created =
            self.start(async move { LeasesClient::new(ch).create(req).await.map(|_| ()) });
        Ok((id, created))
    }

    /// Deletes lease `id` (in the current namespace); one already gone is fine.
    pub fn delete_lease(&self, id: &str) -> Result<()> {
        let req = self.request(api::DeleteRequest {
            id: id.to_string(),
            sync: false,
        });
        match self.call(|ch| async move { LeasesClient::new(ch).delete(req).await }) {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Code::NotFound => Ok(()),
            Err(e) => Err(anyhow!(
                "deleting lease {id} in containerd: {} (it expires by itself within {LEASE_EXPIRY:?})",
                describe(&e)
            )),
        }
    }

    /// Calls from now on carry lease `id` (content written is held by it), or none.
    pub fn set_lease(&mut self, id: Option<&str>) -> Result<()> {
        self.lease = id
            .map(|id| {
                id.parse()
                    .map_err(|_| anyhow!("lease id {id:?} is not ASCII"))
            })
            .transpose()?;
        Ok(())
    }

    /// `msg` as a request with the namespace and lease metadata.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        let md = req.metadata_mut();
        if let Some(ns) = &self.namespace {
            md.insert("containerd-namespace", ns.clone());
        }
        if let Some(lease) = &self.lease {
            md.insert("containerd-lease", lease.clone());
        }
        req
    }

    /// Runs one call on the channel under [`CALL_TIMEOUT`].
    pub fn call<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let fut = f(self.channel.clone());
        self.within(CALL_TIMEOUT, async {
            fut.await.map(tonic::Response::into_inner)
        })
    }

    /// Runs a future that makes several calls (a streaming write) under [`CALL_TIMEOUT`].
    pub fn block_on<T, Fut>(&self, fut: Fut) -> Result<T, Status>
    where
        Fut: Future<Output = Result<T, Status>>,
    {
        self.within(CALL_TIMEOUT, fut)
    }

    /// Starts `call` now, as its own task on the channel: it runs whenever this client waits
    /// on anything (HTTP/2 carries calls side by side), and its answer is taken with
    /// [`Client::wait_all`] (or [`Pending::answer`] inside the runtime). Dropped unwaited, it
    /// is cancelled.
    pub fn start<T, Fut>(&self, call: Fut) -> Pending<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, Status>> + Send + 'static,
    {
        Pending(self.rt.spawn(call))
    }

    /// The answer of a [`Client::start`]ed call, waited for under `limit`.
    fn wait_within<T>(&self, limit: Duration, mut pending: Pending<T>) -> Result<T, Status> {
        self.within(limit, async { answer(&mut pending).await })
    }

    /// The answers of [`Client::start`]ed calls, in order, waited for under one
    /// [`CALL_TIMEOUT`] (on a timeout, every call still running is cancelled).
    pub fn wait_all<T>(&self, mut started: Vec<Pending<T>>) -> Vec<Result<T, Status>> {
        let n = started.len();
        let joined = self.within(CALL_TIMEOUT, async {
            let mut answers = Vec::with_capacity(n);
            for pending in &mut started {
                answers.push(answer(pending).await);
            }
            Ok(answers)
        });
        // dropping `started` cancels the calls still running
        joined.unwrap_or_else(|timeout| {
            (0..n)
                .map(|_| Err(Status::new(timeout.code(), timeout.message())))
                .collect()
        })
    }

    fn within<T, Fut>(&self, limit: Duration, fut: Fut) -> Result<T, Status>
    where
        Fut: Future<Output = Result<T, Status>>,
    {
        self.rt.block_on(async {
            tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "no answer within {limit:?}"
                )))
            })
        })
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The pid of the process listening on the socket (`SO_PEERCRED` of a fresh connection),
    /// when the kernel tells.
    pub fn server_pid(&self) -> Option<u32> {
        let path = self.address.clone();
        self.rt.block_on(async move {
            let stream = tokio::net::UnixStream::connect(path).await.ok()?;
            let pid = stream.peer_cred().ok()?.pid()?;
            u32::try_from(pid).ok().filter(|p| *p > 0)
        })
    }

    /// `the running containerd VERSION at SOCKET`: where the live facts come from.
    pub fn shown(&self) -> String {
        format!(
            "the running containerd {} at {}",
            self.version_string,
            self.address.display()
        )
    }

    /// CRI `Status(verbose)`'s `config` JSON: the effective CRI config, drop-ins applied
    /// (1.6 and 1.7 only; 2.x does not report the sandbox image there).
    pub fn cri_config(&self) -> Result<Option<serde_json::Value>> {
        let status = self
            .call(|ch| async move {
                RuntimeServiceClient::new(ch)
                    .status(cri::StatusRequest { verbose: true })
                    .await
            })
            .map_err(|e| anyhow!("asking CRI for its status: {}", describe(&e)))?;
        let Some(config) = status.info.get("config") else {
            return Ok(None);
        };
        Ok(Some(
            serde_json::from_str(config).context("parsing CRI's status config")?,
        ))
    }

    /// The sandbox image the running CRI uses, when this version says (1.x).
    pub fn sandbox_image(&self) -> Result<Option<String>> {
        if self.version.major >= 2 {
            return Ok(None);
        }
        Ok(self
            .cri_config()?
            .and_then(|c| c.get("sandboxImage")?.as_str().map(str::to_string)))
    }

    /// CRI `ImageStatus` of `name`: `None` when CRI does not know it.
    pub fn cri_image(&self, name: &str) -> Result<Option<cri::Image>, Status> {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        Ok(self
            .call(|ch| async move {
                k8s_cri::v1::image_service_client::ImageServiceClient::new(ch)
                    .image_status(req)
                    .await
            })?
            .image)
    }

    /// content `Info` of `digest` (in the current namespace): `None` when containerd has no
    /// such blob.
    pub fn content_info(&self, digest: &str) -> Result<Option<api::Info>, Status> {
        self.block_on(self.content_info_call(digest))
    }

    /// [`Client::content_info`] as a call to run, alone or with others ([`Client::start`]).
    pub fn content_info_call(
        &self,
        digest: &str,
    ) -> impl Future<Output = Result<Option<api::Info>, Status>> + Send + 'static {
        let req = self.request(api::InfoRequest {
            digest: digest.to_string(),
        });
        let ch = self.channel();
        async move {
            absent_is_none(
                ContentClient::new(ch)
                    .info(req)
                    .await
                    .map(|r| r.into_inner().info),
            )
        }
    }

    /// images `Get` of `name` (in the current namespace): `None` when containerd has no
    /// such record.
    pub fn image_record(&self, name: &str) -> Result<Option<api::Image>, Status> {
        let req = self.request(api::GetImageRequest {
            name: name.to_string(),
        });
        absent_is_none(
            self.call(|ch| async move { ImagesClient::new(ch).get(req).await })
                .map(|r| r.image),
        )
    }
}

/// containerd's NotFound as `None`.
fn absent_is_none<T>(answer: Result<Option<T>, Status>) -> Result<Option<T>, Status> {
    match answer {
        Err(e) if e.code() == Code::NotFound => Ok(None),
        other => other,
    }
}

impl Client {
    /// Runs a host-network pod sandbox through CRI, checks it is READY and still READY a
    /// moment later (pause started and stayed up), then stops and removes it whatever
    /// happened. `Ok(Err(why))` when it did not run.
    pub fn throwaway_sandbox(&self) -> Result<Result<String, String>> {
        let name = format!("pausebake-verify-{}", std::process::id());
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid: name.clone(),
                namespace: "pausebake".into(),
                attempt: 0,
            }),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Pod as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let id = match self
            .call(|ch| async move { RuntimeServiceClient::new(ch).run_pod_sandbox(req).await })
        {
            Ok(r) => r.pod_sandbox_id,
            Err(e) => return Ok(Err(describe(&e))),
        };
        let state = |id: String| {
            self.call(|ch| async move {
                RuntimeServiceClient::new(ch)
                    .pod_sandbox_status(cri::PodSandboxStatusRequest {
                        pod_sandbox_id: id,
                        verbose: false,
                    })
                    .await
            })
            .map(|r| r.status.map(|s| s.state))
        };
        let ready = Some(cri::PodSandboxState::SandboxReady as i32);
        let first = state(id.clone());
        std::thread::sleep(Duration::from_millis(300));
        let second = state(id.clone());
        let stop = self.call(|ch| {
            let id = id.clone();
            async move {
                RuntimeServiceClient::new(ch)
                    .stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id })
                    .await
            }
        });
        let remove = self.call(|ch| {
            let id = id.clone();
            async move {
                RuntimeServiceClient::new(ch)
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await
            }
        });
        if let Err(e) = stop.and(remove) {
            bail!("removing the throwaway sandbox {id}: {}", describe(&e));
        }
        Ok(match (first, second) {
            (Ok(a), Ok(b)) if a == ready && b == ready => Ok(id),
            (Ok(_), Ok(_)) => Err(format!("sandbox {id} was not READY (pause exited?)")),
            (Err(e), _) | (_, Err(e)) => Err(describe(&e)),
        })
    }
}

/// The error for a lease containerd did not create.
pub fn lease_refused(status: &Status) -> anyhow::Error {
    anyhow!("creating a lease in containerd: {}", describe(status))
}

/// A status as one line: its code and message.
pub fn describe(status: &Status) -> String {
    let msg = status.message();
    if msg.is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {msg}", status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::versions::release;

    /// The too-old message says --offline refuses such a containerd too: true while the live
    /// path's floor is the oldest release line the offline path knows.
    #[test]
    fn the_live_floor_is_the_offline_one() {
        assert!(release(OLDEST).is_ok());
        let below = Version::new(OLDEST.major, OLDEST.minor - 1, 99);
        assert!(release(below).is_err(), "{below} is known offline");
    }
}
