//! `verify --address`: the offline audit's questions asked of a running containerd. Which
//! sandbox image does it use (1.x: CRI `Status`, the effective config with drop-ins; 2.x: no
//! API says, so the files), is there an image record of exactly that name, pinned where the
//! version pins, does its target lead to a manifest for the platform with every blob present
//! (content `Info`, and `Read` for the index, manifests and configs) and every edge
//! GC-labelled, and does CRI (`ImageStatus`, polled: it learns of images through events)
//! know the image.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{self as api, ReadContentRequest};
use oci_spec::image::Descriptor;

use super::client::{describe, Client};
use super::daemon;
use crate::containerd::inspect::RootFacts;
use crate::containerd::store;
use crate::containerd::verify::{
    rule_digest, rule_kubernetes, sandbox_setting, too_deep, verbatim_finding, verbatim_wanted,
    Finding, Report, SandboxSetting, Status, CRI_NAMESPACE,
};
use crate::containerd::versions::{pinning, Pinning};
use crate::image::Image;
use crate::platform::Platform;

/// How long CRI gets to learn of an image created through the API.
const CRI_POLL: Duration = Duration::from_secs(3);

/// Audits the containerd behind `client`, reading its config files from `facts` (the node's
/// `/`, inspected); with `sandbox`, also runs (and removes) a throwaway pod sandbox through
/// CRI. The rules, in the order CRI asks: "containerd" (it answers), "config" (which name it
/// runs with), "image", "content"/"gc"/"platform", "pin", "cri", "sandbox", "kubernetes".
pub fn verify(
    client: &mut Client,
    facts: &RootFacts,
    namespace: &str,
    sandbox: bool,
) -> Result<Report> {
    client.set_namespace(namespace)?;
    let client = &*client;
    let mut out = vec![Finding::ok(
        "containerd",
        format!(
            "containerd {} answers at {}",
            client.version_string,
            client.address.display()
        ),
    )];
    let eff = &facts.config.effective;
    let finish = |findings: Vec<Finding>| Report::new(facts, namespace, findings);
    // The files as the running version merges them (the caller inspected with it).
    let setting = sandbox_setting(eff, client.version);
    out.extend(setting.problems.iter().cloned());
    let (name, found) = rule_running_config(client, &setting, facts)?;
    out.push(found);
    let Some(record) = rule_image(client, &name, namespace, &mut out)? else {
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
    out.extend(rule_digest(&name, &target));
    if let Some(written) = verbatim_wanted(&setting, &name, client.version) {
        // 2.3.0 to 2.3.3 also look the configured string up as written
        let present = client
            .image_record(written)
            .map_err(|e| anyhow!("reading image {written} from containerd: {}", describe(&e)))?
            .is_some();
        out.push(verbatim_finding(written, &name, client.version, present));
    }
    rule_content(client, facts.platform.value, &name, &target, &mut out)?;
    out.push(rule_pin(client, &record, &name));
    if namespace != CRI_NAMESPACE {
        out.push(Finding::warn(
            "cri",
            format!("CRI reads images only from namespace {CRI_NAMESPACE}: it never sees {name} in {namespace}"),
            format!("import into {CRI_NAMESPACE} (the default --namespace)"),
        ));
        return Ok(finish(out));
    }
    out.push(rule_cri(client, &name)?);
    if sandbox {
        out.push(rule_sandbox(client, &name)?);
    }
    if let Some(k8s) = &facts.kubernetes {
        out.push(rule_kubernetes(k8s.value, &name)?);
    }
    Ok(finish(out))
}

/// Rule "config": the sandbox image the running containerd uses. 1.x: CRI `Status` (the
/// effective config, drop-ins applied) compared with the files; 2.x: no API tells, so the
/// files' value, checked against the daemon's process ([`daemon::look`]): no file changed
/// after it started, and its own `config dump` agrees.
fn rule_running_config(
    client: &Client,
    setting: &SandboxSetting,
    facts: &RootFacts,
) -> Result<(String, Finding)> {
    let v = client.version;
    let from_files = crate::reference::normalize(&setting.effective);
    let files = match &setting.from {
        Some(file) => format!("{} in {file}", setting.key.dotted()),
        None => format!("containerd {v}'s default (no file sets it)"),
    };
    if v.major >= 2 {
        let name = from_files?;
        let loaded: Vec<String> = facts
            .config
            .effective
            .files
            .iter()
            .map(|f| f.path.clone())
            .collect();
        let seen = daemon::look(client.server_pid(), v, &facts.root, &loaded);
        return Ok((name.clone(), unreported_config(seen, &name, &files, client)));
    }
    let Some(running) = client.sandbox_image()? else {
        let found = Finding::warn(
            "config",
            format!(
                "containerd {v}'s CRI Status does not report its sandbox image; using the files' {} ({files})",
                setting.effective
            ),
            "check the running config with `containerd config dump`",
        );
        return Ok((from_files?, found));
    };
    let running = crate::reference::normalize(&running)?;
    let found = match from_files {
        Ok(f) if f == running => Finding::ok(
            "config",
            format!("the running CRI uses sandbox image {running}, as the config files say ({files})"),
        ),
        _ => Finding::fail(
            "config",
            format!(
                "the running CRI uses sandbox image {running}, but the config files say {} ({files}): containerd was not restarted since they changed",
                setting.effective
            ),
            "restart containerd to use the files' name (pausebake configure --address SOCKET --restart does), or set the running one in the files",
        ),
    };
    Ok((running, found))
}

/// Rule "config" for a containerd that does not report its sandbox image (2.x): the files'
/// `name` (from `files`), unless its process shows it runs with something else.
fn unreported_config(
    seen: std::result::Result<daemon::Seen, String>,
    name: &str,
    files: &str,
    client: &Client,
) -> Finding {
    let v = client.version;
    let seen = match seen {
        Ok(seen) => seen,
        Err(why) => {
            return Finding::warn(
                "config",
                format!("{name} from the config files ({files}); containerd {v} does not report the running value through its API and its process cannot be seen from here ({why})"),
                "check that containerd was restarted after the config last changed",
            )
        }
    };
    let d = seen.daemon.shown();
    if !seen.changed.is_empty() {
        return Finding::fail(
            "config",
            format!(
                "the config files say {name} ({files}), but {} changed after {d} started: it still runs with what they said before",
                seen.changed_shown()
            ),
            format!(
                "restart containerd (pausebake configure --address {} --restart)",
                client.address.display()
            ),
        );
    }
    match &seen.dumped {
        Ok(dumped) if dumped != name => Finding::fail(
            "config",
            format!(
                "{d} was started with --config {}, whose own `config dump` gives sandbox image {dumped}, but the root's config files say {name} ({files})",
                seen.daemon.config
            ),
            "start containerd with the root's config, or verify with --config naming the file it reads",
        ),
        Ok(_) => Finding::ok(
            "config",
            format!("{name} from the config files ({files}), as {d}'s own `config dump` of {} gives; no file changed since it started", seen.daemon.config),
        ),
        Err(e) => Finding::warn(
            "config",
            format!("{name} from the config files ({files}); no file changed since {d} started, but its own `config dump` could not run: {e}"),
            "check the running config with `containerd config dump`",
        ),
    }
}

/// Rule "image": the record of exactly `name` in the namespace; `None` (reported) when absent.
fn rule_image(
    client: &Client,
    name: &str,
    namespace: &str,
    out: &mut Vec<Finding>,
) -> Result<Option<api::Image>> {
    let record = client
        .image_record(name)
        .map_err(|e| anyhow!("reading image {name} from containerd: {}", describe(&e)))?;
    if record.is_none() {
        out.push(Finding::fail(
            "image",
            format!("no image named {name} in namespace {namespace}: CRI would pull it"),
            format!(
                "pausebake import --address {} --name {name} ARCHIVE (or bake)",
                client.address.display()
            ),
        ));
    }
    Ok(record)
}

/// Rules "content", "gc" and "platform": the target leads to a manifest for `platform` with
/// every blob present (content `Info`), sized and GC-labelled; walked by the one image-graph
/// walker, [`crate::image::walk`].
fn rule_content(
    client: &Client,
    platform: Platform,
    name: &str,
    target: &Descriptor,
    out: &mut Vec<Finding>,
) -> Result<()> {
    let failed = |out: &[Finding]| out.iter().filter(|f| f.status == Status::Fail).count();
    let before = failed(out);
    let mut walk = Walk {
        client,
        platform,
        image: Image {
            blobs: Default::default(),
            target: target.clone(),
            names: vec![name.to_string()],
        },
        out,
        infos: BTreeMap::new(),
        manifests: Vec::new(),
    };
    let walked = crate::image::walk(target, |node| walk.visit(node));
    walk.out.extend(too_deep(walked, "re-import the image")?);
    let first = walk.manifests.first().cloned();
    if failed(out) > before {
        return Ok(());
    }
    out.push(match first {
        Some(d) => Finding::ok(
            "content",
            format!("manifest {d} for {platform}: every blob present, sized and GC-labelled"),
        ),
        None => Finding::fail(
            "platform",
            format!("{name} has no manifest for {platform}: CRI would pull it"),
            format!("import an image that includes {platform}"),
        ),
    });
    Ok(())
}

/// Rule "pin": both CRI labels, where this containerd pins.
fn rule_pin(client: &Client, record: &api::Image, name: &str) -> Finding {
    let v = client.version;
    let label = |k: &str| record.labels.get(k).map(String::as_str);
    let pinned = label(store::LABEL_IMAGE) == Some(store::LABEL_IMAGE_MANAGED)
        && label(store::LABEL_PINNED) == Some(store::LABEL_PINNED_PINNED);
    match (pinned, pinning(v)) {
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
                client.address.display()
            ),
        ),
    }
}

/// Rule "cri": CRI `ImageStatus` knows `name` (polled briefly: CRI learns of images through
/// events).
fn rule_cri(client: &Client, name: &str) -> Result<Finding> {
    let start = Instant::now();
    let known = loop {
        match client.cri_image(name) {
            Ok(Some(image)) => break Some(image),
            Ok(None) if start.elapsed() < CRI_POLL => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => break None,
            Err(e) => return Err(anyhow!("asking CRI for image {name}: {}", describe(&e))),
        }
    };
    Ok(match known {
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
    })
}

/// Rule "sandbox" (opt-in): a throwaway pod sandbox runs from the image.
fn rule_sandbox(client: &Client, name: &str) -> Result<Finding> {
    Ok(match client.throwaway_sandbox()? {
        Ok(id) => Finding::ok(
            "sandbox",
            format!("a throwaway pod sandbox ran from {name} ({id}) and was removed"),
        ),
        Err(why) => Finding::fail(
            "sandbox",
            format!("a throwaway pod sandbox did not run: {why}"),
            "read containerd's log for the sandbox",
        ),
    })
}

fn to_oci(d: &containerd_client::types::Descriptor) -> Option<Descriptor> {
    let digest: oci_spec::image::Digest = d.digest.parse().ok()?;
    let size = u64::try_from(d.size).ok().filter(|s| *s > 0)?;
    (!d.media_type.is_empty()).then(|| Descriptor::new(d.media_type.as_str().into(), size, digest))
}

/// Rule "content"'s visitor of [`crate::image::walk`] over a running containerd.
struct Walk<'a, 'b> {
    client: &'a Client,
    platform: Platform,
    /// Index, manifest and config blobs read so far, so `store::children` can parse them.
    image: Image,
    out: &'b mut Vec<Finding>,
    /// containerd's content `Info` of each blob visited (its labels are its children's GC
    /// edges).
    infos: BTreeMap<String, api::Info>,
    manifests: Vec<String>,
}

impl Walk<'_, '_> {
    fn info(&self, digest: &str) -> Result<Option<api::Info>> {
        self.client
            .content_info(digest)
            .map_err(|e| anyhow!("asking containerd about blob {digest}: {}", describe(&e)))
    }

    fn read(&mut self, digest: &str) -> Result<()> {
        let req = self.client.request(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        let ch = self.client.channel();
        let bytes = self
            .client
            .block_on(async move {
                let mut stream = ContentClient::new(ch).read(req).await?.into_inner();
                let mut bytes = Vec::new();
                while let Some(part) = stream.message().await? {
                    bytes.extend_from_slice(&part.data);
                }
                Ok(bytes)
            })
            .map_err(|e| anyhow!("reading blob {digest} from containerd: {}", describe(&e)))?;
        self.image.blobs.insert(digest.to_string(), bytes);
        Ok(())
    }

    /// One blob of the walk: its parent's GC edge to it, its `Info` (present, sized); the
    /// children containerd needs below it (none when it is missing, or a layer).
    fn visit(&mut self, node: crate::image::Node<'_>) -> Result<Vec<Descriptor>> {
        let d = node.desc;
        let digest = d.digest().to_string();
        if let Some(parent) = node
            .parent
            .and_then(|p| self.infos.get(p.digest().as_ref()))
        {
            let labelled = parent
                .labels
                .iter()
                .any(|(k, v)| store::is_gc_content_edge(k) && *v == digest);
            if !labelled {
                let parent = parent.digest.clone();
                self.out.push(Finding::fail(
                    "gc",
                    format!("content {parent} has no containerd.io/gc.ref.content.* label naming {digest}: GC deletes it"),
                    "re-import the image (labels the whole tree)",
                ));
            }
        }
        if !self.present(d, &digest)? {
            return Ok(Vec::new());
        }
        let mt = d.media_type().to_string();
        if !(store::is_index(&mt) || store::is_manifest(&mt)) {
            return Ok(Vec::new());
        }
        self.read(&digest)?;
        let kids = match store::children(&self.image, d) {
            Ok(k) => k,
            Err(e) => {
                self.out.push(Finding::fail(
                    "content",
                    format!("{e:#}"),
                    "re-import the image",
                ));
                return Ok(Vec::new());
            }
        };
        if store::is_manifest(&mt) {
            return self.visit_manifest(d, kids);
        }
        self.visit_index(kids)
    }

    /// Whether containerd has the blob with the descriptor's size (reported when not).
    fn present(&mut self, d: &Descriptor, digest: &str) -> Result<bool> {
        let Some(info) = self.info(digest)? else {
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
        self.infos.insert(digest.to_string(), info);
        Ok(true)
    }

    /// A manifest: its config (read ahead) says whether it is for our platform; if it is,
    /// its layers are needed too. The config itself is always checked.
    fn visit_manifest(&mut self, d: &Descriptor, kids: Vec<Descriptor>) -> Result<Vec<Descriptor>> {
        let Some(config) = kids.first().cloned() else {
            return Ok(kids);
        };
        let config_digest = config.digest().to_string();
        if self.info(&config_digest)?.is_none() {
            // Missing: the config's own visit reports it.
            return Ok(vec![config]);
        }
        self.read(&config_digest)?;
        let p = store::manifest_platform(&self.image, d)?;
        if !p.matches(self.platform) {
            return Ok(vec![config]);
        }
        self.manifests.push(d.digest().to_string());
        Ok(kids)
    }

    /// An index: an entry naming another platform is not ours to check.
    fn visit_index(&mut self, kids: Vec<Descriptor>) -> Result<Vec<Descriptor>> {
        let mut kept = Vec::new();
        for kid in kids {
            if store::is_manifest(kid.media_type().as_ref()) && kid.platform().is_some() {
                let p = store::manifest_platform(&self.image, &kid)?;
                if !p.matches(self.platform) {
                    continue;
                }
            }
            kept.push(kid);
        }
        Ok(kept)
    }
}
