//! A real CRI client (the `k8s-cri` crate's generated tonic clients) over containerd's unix
//! socket, with blocking helpers for the calls the tests make. Errors are `tonic::Status`, so
//! a test can assert on the message containerd sent (e.g. a pull error).

#![allow(dead_code)] // each test module uses a different part

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Status;

pub use k8s_cri::v1::{Image, PodSandboxState, StatusResponse, VersionResponse};

/// A connected CRI client. The calls block on a private single-threaded runtime, so tests
/// stay plain `#[test]` functions.
pub struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the CRI services on the containerd socket at `socket`.
    pub fn connect(socket: &Path) -> Result<Cri, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a tokio runtime: {e}"))?;
        let path: PathBuf = socket.to_path_buf();
        let channel = rt
            .block_on(async move {
                // The URI is required by tonic but unused: the connector dials the socket.
                Endpoint::try_from("http://[::]:0")?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    }))
                    .await
            })
            .map_err(|e| format!("connecting to CRI at {}: {e:?}", socket.display()))?;
        Ok(Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// `Version`.
    pub fn version(&mut self) -> Result<VersionResponse, Status> {
        let req = cri::VersionRequest {
            version: "v1".into(),
        };
        let resp = self.rt.block_on(self.runtime.version(req))?;
        Ok(resp.into_inner())
    }

    /// `Status`; with `verbose`, `info` carries containerd's JSON blobs (e.g. `config`).
    pub fn status(&mut self, verbose: bool) -> Result<StatusResponse, Status> {
        let resp = self
            .rt
            .block_on(self.runtime.status(cri::StatusRequest { verbose }))?;
        Ok(resp.into_inner())
    }

    /// The verbose `Status` info map, each value parsed as JSON.
    pub fn status_info(&mut self) -> Result<HashMap<String, serde_json::Value>, Status> {
        let info = self.status(true)?.info;
        Ok(info
            .into_iter()
            .map(|(k, v)| {
                let json = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
                (k, json)
            })
            .collect())
    }

    /// `RunPodSandbox` for a minimal pod named `name`, in the node's network namespace when
    /// `host_network` (no CNI needed); then `PodSandboxStatus`. Returns the sandbox id and
    /// its state.
    pub fn run_pod_sandbox(
        &mut self,
        name: &str,
        host_network: bool,
        log_dir: &Path,
    ) -> Result<(String, PodSandboxState), Status> {
        let network = if host_network {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        };
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "pausebake-test".into(),
                attempt: 0,
            }),
            // a host-network pod shares the node's UTS namespace: no hostname of its own
            hostname: if host_network {
                String::new()
            } else {
                name.into()
            },
            log_directory: log_dir.display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: network as i32,
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
        let id = self
            .rt
            .block_on(self.runtime.run_pod_sandbox(req))?
            .into_inner()
            .pod_sandbox_id;
        let state = self.pod_sandbox_state(&id)?;
        Ok((id, state))
    }

    /// The state `PodSandboxStatus` reports for sandbox `id`.
    pub fn pod_sandbox_state(&mut self, id: &str) -> Result<PodSandboxState, Status> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let status = self
            .rt
            .block_on(self.runtime.pod_sandbox_status(req))?
            .into_inner()
            .status
            .ok_or_else(|| Status::internal("PodSandboxStatus without status"))?;
        Ok(PodSandboxState::try_from(status.state).unwrap_or(PodSandboxState::SandboxNotready))
    }

    /// `StopPodSandbox`.
    pub fn stop_pod_sandbox(&mut self, id: &str) -> Result<(), Status> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt.block_on(self.runtime.stop_pod_sandbox(req))?;
        Ok(())
    }

    /// `RemovePodSandbox`.
    pub fn remove_pod_sandbox(&mut self, id: &str) -> Result<(), Status> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt.block_on(self.runtime.remove_pod_sandbox(req))?;
        Ok(())
    }

    /// `ImageStatus` of `name` (a reference or an image id): `None` when CRI does not know
    /// it. `Image::pinned` is what the kubelet's image GC honours.
    pub fn image_status(&mut self, name: &str) -> Result<Option<Image>, Status> {
        let req = cri::ImageStatusRequest {
            image: Some(image_spec(name)),
            verbose: false,
        };
        let resp = self.rt.block_on(self.images.image_status(req))?;
        Ok(resp.into_inner().image)
    }

    /// [`Cri::image_status`] until CRI knows `name` or `timeout` passes: images created
    /// through the containerd API (e.g. `ctr images import`) reach CRI's cache through events,
    /// a moment after the import returns (2.x).
    pub fn wait_image(
        &mut self,
        name: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<Image>, Status> {
        let start = std::time::Instant::now();
        loop {
            if let Some(image) = self.image_status(name)? {
                return Ok(Some(image));
            }
            if start.elapsed() > timeout {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `ListImages`.
    pub fn list_images(&mut self) -> Result<Vec<Image>, Status> {
        let req = cri::ListImagesRequest { filter: None };
        let resp = self.rt.block_on(self.images.list_images(req))?;
        Ok(resp.into_inner().images)
    }

    /// `RemoveImage` (by reference or id).
    pub fn remove_image(&mut self, name: &str) -> Result<(), Status> {
        let req = cri::RemoveImageRequest {
            image: Some(image_spec(name)),
        };
        self.rt.block_on(self.images.remove_image(req))?;
        Ok(())
    }
}

fn image_spec(name: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: name.into(),
        ..Default::default()
    }
}
