//! `verify --address`: the offline audit's questions asked of a running containerd. Which
//! sandbox image does it use (1.x: CRI `Status`, the effective config with drop-ins; 2.x: no
//! API says, so the files), is there an image record of exactly that name, pinned where the
//! version pins, does its target lead to a manifest for the platform with every blob present
//! (content `Info`, and `Read` for the index, manifests and configs) and every edge
//! GC-labelled, and does CRI (`ImageStatus`, polled: it learns of images through events)
//! know the image.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{
    self as api, GetImageRequest, InfoRequest, ReadContentRequest,
};
use oci_spec::image::Descriptor;
use tonic::Code;

use super::client::{describe, Client};
use crate::containerd::config::kubernetes_version;
use crate::containerd::store;
use crate::containerd::verify::{
    pinning, resolve_platform, sandbox_setting, Finding, Pinning, Report, Status,
};
use crate::containerd::versions;
use crate::image::Image;
use crate::platform::Platform;
use crate::rootfs::Root;

/// The namespace CRI keeps its images in.
const CRI_NAMESPACE: &str = "k8s.io";
/// How long CRI gets to learn of an image created through the API.
const CRI_POLL: Duration = Duration::from_secs(3);

/// Audits the containerd at `address`, reading config files from `root` (the node's `/`);
/// with `sandbox`, also runs (and removes) a throwaway pod sandbox through CRI.
pub fn verify(
    address: &Path,
    root: &Root,
    namespace: &str,
    platform: Option<Platform>,
    kubernetes: Option<&str>,
    sandbox: bool,
) -> Result<Report> {
    let mut client = Client::connect(address)?;
    client.set_namespace(namespace)?;
    let (platform, platform_source) = resolve_platform(root, platform)?;
    let k8s = kubernetes_version(root, kubernetes)?;
    let v = client.version;
    let k8s_shown = k8s
        .as_ref()
        .map(|f| format!("{} ({})", f.version, f.source));
    let finish = |findings: Vec<Finding>| {
        report(
            &client,
            root,
            namespace,
            platform,
            &platform_source,
            k8s_shown.clone(),
            findings,
        )
    };
    let mut out = vec![Finding::ok(
        "containerd",
        format!(
            "containerd {} answers at {}",
            client.version_string,
            address.display()
        ),
    )];

    let config = root.read_to_string(store::CONFIG_PATH)?;
    let setting = sandbox_setting(config.as_deref(), v)?;
    out.extend(setting.problems.iter().cloned());
    let from_files = store::normalize_ref(&setting.effective);
    let name = if v.major < 2 {
        match (client.sandbox_image()?, &from_files) {
            (Some(running), files) => {
                let running = store::normalize_ref(&running)?;
                match files {
                    Ok(f) if *f == running => out.push(Finding::ok(
                        "config",
                        format!("the running CRI uses {running}, as {} says", store::CONFIG_PATH),
                    )),
                    _ => out.push(Finding::fail(
                        "config",
                        format!(
                            "the running CRI uses sandbox image {running}, but {} ({}) says {}: a drop-in overrides it, or containerd was not restarted since the file changed",
                            store::CONFIG_PATH,
                            setting.key.dotted(),
                            setting.effective
                        ),
                        "make the effective config name the baked image, then restart containerd (pausebake configure --address tells whether a restart is needed)",
                    )),
                }
                running
            }
            (None, _) => {
                out.push(Finding::warn(
                    "config",
                    format!("containerd {v}'s CRI Status does not report its sandbox image; using the files' {}", setting.effective),
                    "check the running config with `containerd config dump`",
                ));
                from_files?
            }
        }
    } else {
        let name = from_files?;
        out.push(Finding::ok(
            "config",
            format!(
                "{} = {name:?} from the files (containerd {v} does not report the running value through its API; `containerd config dump` shows what it read at start)",
                setting.key.dotted()
            ),
        ));
        name
    };

    let req = client.request(GetImageRequest { name: name.clone() });
    let record = match client.call(|ch| async move { ImagesClient::new(ch).get(req).await }) {
        Ok(r) => r.image,
        Err(e) if e.code() == Code::NotFound => None,
        Err(e) => {
            return Err(anyhow!(
                "reading image {name} from containerd: {}",
                describe(&e)
            ))
        }
    };
    let Some(record) = record else {
        out.push(Finding::fail(
            "image",
            format!("no image named {name} in namespace {namespace}: CRI would pull it"),
            format!(
                "pausebake import --address {} --name {name} ARCHIVE (or bake)",
                address.display()
            ),
        ));
        return Ok(finish(out));
    };
    let Some(target) = record.target.as_ref().and_then(to_oci) else {
        out.push(Finding::fail(
            "image",
            format!("image {name} has no valid target"),
            "re-import it",
        ));
        return Ok(finish(out));
    };
    out.push(Finding::ok(
        "image",
        format!("{name} -> {} {}", target.media_type(), target.digest()),
    ));

    let mut walk = Walk {
        client: &client,
        platform,
        image: Image {
            blobs: Default::default(),
            target: target.clone(),
            names: vec![name.clone()],
        },
        out: &mut out,
        seen: BTreeSet::new(),
        manifests: Vec::new(),
    };
    let intact = walk.visit(&target, None, 0)?;
    let manifests = std::mem::take(&mut walk.manifests);
    if intact {
        match manifests.first() {
            Some(d) => out.push(Finding::ok(
                "content",
                format!("manifest {d} for {platform}: every blob present, sized and GC-labelled"),
            )),
            None => out.push(Finding::fail(
                "platform",
                format!("{name} has no manifest for {platform}: CRI would pull it"),
                format!("import an image that includes {platform}"),
            )),
        }
    }

    let label = |k: &str| record.labels.get(k).map(String::as_str);
    let pinned = label(store::LABEL_IMAGE) == Some(store::LABEL_IMAGE_MANAGED)
        && label(store::LABEL_PINNED) == Some(store::LABEL_PINNED_PINNED);
    out.push(match (pinned, pinning(v)) {
        (_, Pinning::Unsupported) => Finding::ok(
            "pin",
            format!(
                "containerd {v} has no pinning ({})",
                if pinned {
                    "labelled pinned"
                } else {
                    "not labelled"
                }
            ),
        ),
        (true, _) => Finding::ok("pin", format!("{name} is pinned (managed + pinned)")),
        (false, _) => Finding::fail(
            "pin",
            format!("{name} is not pinned: the kubelet's image GC may delete it"),
            format!(
                "pausebake import --address {} (writes both CRI labels)",
                address.display()
            ),
        ),
    });

    if namespace != CRI_NAMESPACE {
        out.push(Finding::warn(
            "cri",
            format!("CRI reads images only from namespace {CRI_NAMESPACE}: it never sees {name} in {namespace}"),
            format!("import into {CRI_NAMESPACE} (the default --namespace)"),
        ));
        return Ok(finish(out));
    }
    let start = Instant::now();
    let known = loop {
        match client.cri_image(&name) {
            Ok(Some(image)) => break Some(image),
            Ok(None) if start.elapsed() < CRI_POLL => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => break None,
            Err(e) => return Err(anyhow!("asking CRI for image {name}: {}", describe(&e))),
        }
    };
    out.push(match known {
        Some(image) => Finding::ok(
            "cri",
            format!(
                "CRI knows {name} as {}{}",
                image.id,
                if image.pinned { ", pinned" } else { "" }
            ),
        ),
        None => Finding::fail(
            "cri",
            format!("CRI does not know {name} within {CRI_POLL:?}: it would pull it"),
            "check containerd's log for the image event; re-import the image",
        ),
    });

    if sandbox {
        out.push(match client.throwaway_sandbox()? {
            Ok(id) => Finding::ok(
                "sandbox",
                format!("a throwaway pod sandbox ran from {name} ({id}) and was removed"),
            ),
            Err(why) => Finding::fail(
                "sandbox",
                format!("a throwaway pod sandbox did not run: {why}"),
                "read containerd's log for the sandbox",
            ),
        });
    }
    if let Some(k) = &k8s {
        let want = versions::kubernetes_pause_image(k.version)?;
        if want != name {
            out.push(Finding::warn(
                "kubernetes",
                format!(
                    "Kubernetes {} uses {want}, containerd uses {name}",
                    k.version
                ),
                format!("pausebake bake --kubernetes-version {}", k.version),
            ));
        }
    }
    Ok(finish(out))
}

fn report(
    client: &Client,
    root: &Root,
    namespace: &str,
    platform: Platform,
    platform_source: &str,
    kubernetes_version: Option<String>,
    findings: Vec<Finding>,
) -> Report {
    Report {
        ok: findings.iter().all(|f| f.status != Status::Fail),
        root: root.dir().display().to_string(),
        containerd_version: client.version.to_string(),
        containerd_version_source: format!(
            "the running containerd {} at {}",
            client.version_string,
            client.address.display()
        ),
        kubernetes_version,
        platform: platform.to_string(),
        platform_source: platform_source.to_string(),
        namespace: namespace.to_string(),
        findings,
    }
}

fn to_oci(d: &containerd_client::types::Descriptor) -> Option<Descriptor> {
    let digest: oci_spec::image::Digest = d.digest.parse().ok()?;
    let size = u64::try_from(d.size).ok().filter(|s| *s > 0)?;
    (!d.media_type.is_empty()).then(|| Descriptor::new(d.media_type.as_str().into(), size, digest))
}

struct Walk<'a, 'b> {
    client: &'a Client,
    platform: Platform,
    /// Index, manifest and config blobs read so far, so `store::children` can parse them.
    image: Image,
    out: &'b mut Vec<Finding>,
    seen: BTreeSet<String>,
    manifests: Vec<String>,
}

impl Walk<'_, '_> {
    fn info(&self, digest: &str) -> Result<Option<api::Info>> {
        let req = self.client.request(InfoRequest {
            digest: digest.to_string(),
        });
        match self
            .client
            .call(|ch| async move { ContentClient::new(ch).info(req).await })
        {
            Ok(r) => Ok(r.info),
            Err(e) if e.code() == Code::NotFound => Ok(None),
            Err(e) => Err(anyhow!(
                "asking containerd about blob {digest}: {}",
                describe(&e)
            )),
        }
    }

    fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let req = self.client.request(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        let ch = self.client.channel();
        self.client
            .block_on(async move {
                let mut stream = ContentClient::new(ch).read(req).await?.into_inner();
                let mut bytes = Vec::new();
                while let Some(part) = stream.message().await? {
                    bytes.extend_from_slice(&part.data);
                }
                Ok(bytes)
            })
            .map_err(|e| anyhow!("reading blob {digest} from containerd: {}", describe(&e)))
    }

    /// Checks `d` and what containerd needs below it; `false` if anything failed.
    fn visit(&mut self, d: &Descriptor, parent: Option<&api::Info>, depth: usize) -> Result<bool> {
        let digest = d.digest().to_string();
        if depth > 8 || !self.seen.insert(digest.clone()) {
            return Ok(true);
        }
        if let Some(p) = parent {
            let labelled = p
                .labels
                .iter()
                .any(|(k, v)| k.starts_with(store::GC_REF_CONTENT) && *v == digest);
            if !labelled {
                self.out.push(Finding::fail(
                    "gc",
                    format!("content {} has no containerd.io/gc.ref.content.* label naming {digest}: GC deletes it", p.digest),
                    "re-import the image (labels the whole tree)",
                ));
                return Ok(false);
            }
        }
        let Some(info) = self.info(&digest)? else {
            self.out.push(Finding::fail(
                "content",
                format!("missing blob {digest}: containerd does not have it"),
                "re-import the image (writes missing blobs)",
            ));
            return Ok(false);
        };
        if u64::try_from(info.size).ok() != Some(d.size()) {
            self.out.push(Finding::fail(
                "content",
                format!(
                    "blob {digest} has {} bytes, its descriptor says {}",
                    info.size,
                    d.size()
                ),
                "re-import the image",
            ));
            return Ok(false);
        }
        let mt = d.media_type().to_string();
        let is_config = parent.is_some_and(|_| {
            mt.contains("config") || mt == "application/vnd.docker.container.image.v1+json"
        });
        if !(store::is_index(&mt) || store::is_manifest(&mt) || is_config) {
            return Ok(true);
        }
        let bytes = self.read(&digest)?;
        self.image.blobs.insert(digest.clone(), bytes);
        let kids = match store::children(&self.image, d) {
            Ok(k) => k,
            Err(e) => {
                self.out.push(Finding::fail(
                    "content",
                    format!("{e:#}"),
                    "re-import the image",
                ));
                return Ok(false);
            }
        };
        if store::is_manifest(&mt) {
            let Some((config, layers)) = kids.split_first() else {
                return Ok(true);
            };
            if !self.visit(config, Some(&info), depth + 1)? {
                return Ok(false);
            }
            let p = store::manifest_platform(&self.image, d)?;
            if !p.matches(self.platform) {
                return Ok(true);
            }
            let mut ok = true;
            for layer in layers {
                ok &= self.visit(layer, Some(&info), depth + 1)?;
            }
            if ok {
                self.manifests.push(digest);
            }
            return Ok(ok);
        }
        let mut ok = true;
        for kid in &kids {
            if store::is_manifest(kid.media_type().as_ref()) && kid.platform().is_some() {
                let p = store::manifest_platform(&self.image, kid)?;
                if !p.matches(self.platform) {
                    continue;
                }
            }
            ok &= self.visit(kid, Some(&info), depth + 1)?;
        }
        Ok(ok)
    }
}
