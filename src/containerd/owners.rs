//! Who owns containerd at first boot: one table ([`OWNERS`]) of the distributions and
//! generators that decide which containerd runs, where its store is, which config it loads
//! and which sandbox image it asks for. Each row says how it is recognised in a root, those
//! places, the reference it asks for (its setting or default), where pausebake may write a
//! name so that it sticks, and the source of each fact (`containerd-owners.md`, which cites
//! each project's own files).
//!
//! This is the only place that names a distribution. [`super::inspect`] reads the table into
//! facts (the config containerd will load, its root, its socket, the reference); plan, apply
//! and verify act on those paths and names and never ask which distribution it is. Pure
//! data, plus the small readers of a row's own settings ([`recognise`], [`asks`]) over
//! [`Files`], so a planned write can be checked in memory before it is made.

use std::cell::RefCell;
use std::collections::BTreeMap;

#[cfg(test)]
use anyhow::bail;
use anyhow::Result;

use super::effective::{Files, DEFAULT_MAIN};
use super::versions::Version;

/// The reference an owner asks for, and where that was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub value: String,
    pub source: String,
    /// The file that sets it (`None`: a default, a constant or a flag).
    pub file: Option<String>,
    /// How the owner turns its setting into the reference ([`Naming`]), as read in this root:
    /// what a name pausebake writes into the setting becomes.
    pub naming: Option<Named>,
}

/// A [`Naming`] with the system default registry this root sets, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub registry: Option<String>,
    pub resolver: bool,
}

impl Asked {
    /// The reference the owner asks for when its setting is `setting` (a name pausebake
    /// writes there).
    pub fn for_setting(&self, setting: &str) -> String {
        match &self.naming {
            Some(n) => n.name(setting, false),
            None => setting.to_string(),
        }
    }
}

impl Named {
    /// The reference made of `setting` (`defaulted`: the owner's default, nothing set it):
    /// RKE2's resolver names it as go-containerregistry does, its default taking the system
    /// default registry as its registry; then k3s's agent code puts the system default
    /// registry before any reference that does not already start with it.
    fn name(&self, setting: &str, defaulted: bool) -> String {
        let mut value = match (self.resolver, defaulted, &self.registry) {
            (true, true, Some(r)) => format!("{r}/{setting}"),
            (true, _, _) => go_name(setting),
            (false, _, _) => setting.to_string(),
        };
        // never empty: `named` keeps only a registry that is set
        if let Some(r) = self.registry.as_deref() {
            if !value.starts_with(r) {
                value = format!("{r}/{value}");
            }
        }
        value
    }
}

/// `reference` as go-containerregistry's `name.Reference.Name()` spells it (the form RKE2
/// hands k3s): the registry explicit (`index.docker.io` when the first component has no
/// `.` or `:`, and for `docker.io`), `library/` before a single Docker Hub component, and
/// `:latest` when neither tag nor digest is given.
pub fn go_name(reference: &str) -> String {
    let (registry, rest) = match reference.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') => (first, rest),
        _ => ("", reference),
    };
    let registry = match registry {
        "" | "docker.io" => "index.docker.io",
        r => r,
    };
    let (path, suffix) = match rest.split_once('@') {
        Some((p, d)) => (p.to_string(), format!("@{d}")),
        None => match rest.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((p, t)) => (p.to_string(), format!(":{t}")),
            None => (rest.to_string(), ":latest".to_string()),
        },
    };
    let path = if registry == "index.docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    format!("{registry}/{path}{suffix}")
}

/// Where a row's containerd version is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// containerd's own binary where distributions install it, else the dpkg database
    /// (`super::detect`).
    Usual,
    /// containerd's own binary at one of these paths, which the owner may only unpack at
    /// its first start (the sentence says so).
    At(&'static [&'static str], &'static str),
    /// Compiled into this program: its Go build info names the containerd module
    /// ([`super::buildinfo`]).
    Inside(&'static [&'static str]),
}

/// Whether the owner writes containerd's main config at start, and as what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// containerd loads the file in the root as it is.
    No,
    /// Rewritten at every start from the owner's template: for containerd 1.x (config
    /// version 2) and 2.x (version 3). `{pause}` stands for the reference the owner asks for;
    /// only what decides the sandbox image, the store and the socket is kept, in meaning
    /// (`{data}`: the owner's data directory).
    EveryStart { v2: &'static str, v3: &'static str },
    /// Rewritten at every start while absent or while its first line is `marker`; a file
    /// without the marker is the user's and is loaded as it is. Version 3 only.
    WhileMarked {
        marker: &'static str,
        v3: &'static str,
    },
}

/// The reference the owner makes containerd ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// containerd's own config decides: the owner leaves the sandbox image to the node's
    /// files (and pausebake chooses it).
    Config,
    /// A constant of the owner.
    Fixed(&'static str),
    /// A setting in the owner's YAML files, else its default. `parts` are joined with `:`
    /// (one part: the whole reference; two: image and tag), each with its default.
    Yaml(&'static YamlSetting),
}

/// A setting read from YAML config files: the files in order, then the `*.yaml` of a
/// drop-in directory in name order, a later value replacing an earlier one; a flag in the
/// owner's systemd unit beats them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YamlSetting {
    pub files: &'static [&'static str],
    pub dropins: Option<&'static str>,
    /// Key paths (nested block mappings) and their defaults.
    pub parts: &'static [(&'static [&'static str], &'static str)],
    /// The owner's unit files and the flag there that beats the files.
    pub unit_flag: Option<(&'static [&'static str], &'static str)>,
    /// What the owner makes of the setting before containerd sees it; `None`: it is the
    /// reference.
    pub naming: Option<Naming>,
}

/// How k3s's agent code (k3s, RKE2) turns its pause setting into the reference it writes
/// into containerd's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Naming {
    /// The system default registry: its key in the YAML files and its flag in the unit (read
    /// like the reference), and the variable in the unit's environment files below them.
    pub registry: (&'static [&'static str], &'static str, Option<&'static str>),
    /// The unit's environment files (systemd `EnvironmentFile=`, in order) and the variable
    /// there that sets the reference, below the YAML files (a setting in the files is a
    /// command-line argument to k3s's CLI, which beats the environment).
    pub env: Option<(&'static [&'static str], &'static str)>,
    /// The reference goes through RKE2's image resolver (go-containerregistry's names).
    pub resolver: bool,
    /// In-root paths of which any one means the node joins as an agent: it takes the system
    /// default registry from its server when it joins, not from its own files.
    pub agent_marks: &'static [&'static str],
}

impl Naming {
    /// The mark that says the node joins as an agent, if any is present.
    fn agent(&self, files: &dyn Files) -> Option<&'static str> {
        self.agent_marks.iter().copied().find(|m| files.exists(m))
    }
}

/// Where pausebake may write a name so that the owner's containerd asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteTo {
    /// The containerd config file that decides the value (`super::config::plan`).
    Config,
    /// A containerd drop-in of pausebake's own, which the owner's config imports; never the
    /// file the owner regenerates.
    DropIn(&'static str),
    /// A YAML file of pausebake's own in the owner's drop-in directory, setting `key`.
    Yaml {
        path: &'static str,
        key: &'static str,
    },
    /// Nowhere: the owner fixes the name and rewrites its config at every boot (why).
    Nowhere(&'static str),
}

/// One owner of containerd at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Short id for `--json` (`k3s`).
    pub id: &'static str,
    /// For messages (`k3s`).
    pub name: &'static str,
    /// In-root paths of which any one present means this owner (its binary, unit or config);
    /// empty: the fallback row.
    pub marks: &'static [&'static str],
    pub binary: Binary,
    /// The main config containerd is started with; `None`: as a plain node finds it (the
    /// `--config` of its containerd.service, else `/etc/containerd/config.toml`).
    pub config: Option<&'static str>,
    pub generated: Generated,
    /// containerd's `--root` when the owner passes one (it beats the config's `root`).
    pub root_flag: Option<&'static str>,
    /// containerd's `--address` when the owner passes one (it beats the config's socket).
    pub address_flag: Option<&'static str>,
    pub reference: Reference,
    pub write: WriteTo,
    /// Files that, when present, replace the generator's built-in template: pausebake then
    /// assumes they keep its sandbox setting, and says so.
    pub templates: &'static [&'static str],
    /// Each fact and where it was read.
    pub sources: &'static [(&'static str, &'static str)],
}

const K3S_PAUSE: YamlSetting = YamlSetting {
    files: &["/etc/rancher/k3s/config.yaml"],
    dropins: Some("/etc/rancher/k3s/config.yaml.d"),
    parts: &[(&["pause-image"], "rancher/mirrored-pause:3.6")],
    unit_flag: Some((
        &[
            "/etc/systemd/system/k3s.service",
            "/etc/systemd/system/k3s-agent.service",
        ],
        "--pause-image",
    )),
    naming: Some(Naming {
        registry: (
            &["system-default-registry"],
            "--system-default-registry",
            None,
        ),
        env: None,
        resolver: false,
        // the install script's unit for a node joining a server (K3S_URL set)
        agent_marks: &["/etc/systemd/system/k3s-agent.service"],
    }),
};

const RKE2_PAUSE: YamlSetting = YamlSetting {
    files: &["/etc/rancher/rke2/config.yaml"],
    dropins: Some("/etc/rancher/rke2/config.yaml.d"),
    parts: &[(&["pause-image"], "rancher/mirrored-pause:3.10.2")],
    unit_flag: Some((
        &[
            "/usr/local/lib/systemd/system/rke2-server.service",
            "/usr/local/lib/systemd/system/rke2-agent.service",
            "/usr/lib/systemd/system/rke2-server.service",
            "/usr/lib/systemd/system/rke2-agent.service",
        ],
        "--pause-image",
    )),
    naming: Some(Naming {
        registry: (
            &["system-default-registry"],
            "--system-default-registry",
            Some("RKE2_SYSTEM_DEFAULT_REGISTRY"),
        ),
        env: Some((RKE2_ENV_FILES, "RKE2_PAUSE_IMAGE")),
        resolver: true,
        // both units are installed; the enabled one says the node's role
        agent_marks: &["/etc/systemd/system/multi-user.target.wants/rke2-agent.service"],
    }),
};

/// The `EnvironmentFile=` lines of RKE2's units (`bundle/lib/systemd/system/rke2-*.service`),
/// for both units, in order.
const RKE2_ENV_FILES: &[&str] = &[
    "/etc/default/rke2-server",
    "/etc/sysconfig/rke2-server",
    "/usr/local/lib/systemd/system/rke2-server.env",
    "/etc/default/rke2-agent",
    "/etc/sysconfig/rke2-agent",
    "/usr/local/lib/systemd/system/rke2-agent.env",
];

const K0S_PAUSE: YamlSetting = YamlSetting {
    files: &["/etc/k0s/k0s.yaml"],
    dropins: None,
    parts: &[
        (
            &["spec", "images", "pause", "image"],
            "quay.io/k0sproject/pause",
        ),
        (&["spec", "images", "pause", "version"], "3.10.2-0"),
    ],
    unit_flag: None,
    naming: None,
};

/// What k3s and RKE2 generate at start (`pkg/agent/templates`), in meaning.
const K3S_V2: &str = r#"version = 2
root = "{data}/agent/containerd"
state = "/run/k3s/containerd"

[grpc]
  address = "/run/k3s/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {pause}
"#;
const K3S_V3: &str = r#"version = 3
root = "{data}/agent/containerd"
state = "/run/k3s/containerd"
imports = ["{data}/agent/etc/containerd/config-v3.toml.d/*.toml"]

[grpc]
  address = "/run/k3s/containerd/containerd.sock"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = {pause}
"#;
/// What nodeadm writes at every boot (`nodeadm/internal/containerd/config*.template.toml`).
const NODEADM_V2: &str = r#"version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {pause}
"#;
const NODEADM_V3: &str = r#"version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = {pause}
"#;
/// What k0s writes while the file carries its marker (`configurer.go`).
const K0S_V3: &str = r#"# k0s_managed=true
version = 3
imports = ["/etc/k0s/containerd.d/*.toml"]

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = {pause}
"#;

/// The socket containerd listens on when neither its owner's `--address` nor its config
/// names one (containerd's `defaults.DefaultAddress`).
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";

/// The table, most specific first; the last row (plain containerd) always matches.
pub const OWNERS: [Row; 8] = [
    Row {
        id: "nodeadm",
        name: "Amazon EKS nodeadm (AL2023)",
        marks: &["/usr/bin/nodeadm", "/etc/systemd/system/nodeadm-config.service"],
        binary: Binary::Usual,
        config: Some(DEFAULT_MAIN),
        generated: Generated::EveryStart { v2: NODEADM_V2, v3: NODEADM_V3 },
        root_flag: None,
        address_flag: None,
        reference: Reference::Fixed("localhost/kubernetes/pause:latest"),
        write: WriteTo::Nowhere("nodeadm rewrites /etc/containerd/config.toml at every boot with its own sandbox image (nodeadm-config.service: nodeadm init); the image is recorded under that name"),
        templates: &[],
        sources: &[
            ("config", "awslabs/amazon-eks-ami @81fec2e nodeadm/internal/containerd/config.template.toml, config2.template.toml; nodeadm-config.service runs `nodeadm init` before cloud-init"),
            ("reference", "nodeadm/cmd/nodeadm/init/init.go SandboxImage (PR #2730)"),
            ("store", "root /var/lib/containerd in both templates"),
        ],
    },
    Row {
        id: "k3s",
        name: "k3s",
        marks: &["/usr/local/bin/k3s", "/usr/bin/k3s", "/etc/rancher/k3s/config.yaml"],
        binary: Binary::Inside(&["/usr/local/bin/k3s", "/usr/bin/k3s"]),
        config: Some("/var/lib/rancher/k3s/agent/etc/containerd/config.toml"),
        generated: Generated::EveryStart { v2: K3S_V2, v3: K3S_V3 },
        root_flag: Some("/var/lib/rancher/k3s/agent/containerd"),
        address_flag: Some("/run/k3s/containerd/containerd.sock"),
        reference: Reference::Yaml(&K3S_PAUSE),
        write: WriteTo::Yaml { path: "/etc/rancher/k3s/config.yaml.d/50-pausebake.yaml", key: "pause-image" },
        templates: &[
            "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl",
            "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl",
        ],
        sources: &[
            ("config", "k3s-io/k3s: <data-dir>/agent/etc/containerd/config.toml generated at every start (#7056), imports config-v3.toml.d/*.toml (PR #13680)"),
            ("reference", "k3s --pause-image / pause-image in /etc/rancher/k3s/config.yaml and config.yaml.d/*.yaml, default rancher/mirrored-pause:3.6"),
            ("system default registry", "k3s-io/k3s @001a6d94 pkg/agent/config/config.go: the server's system-default-registry is put before the pause image unless it starts with it"),
            ("store", "containerd --root <data-dir>/agent/containerd, data-dir /var/lib/rancher/k3s; socket /run/k3s/containerd/containerd.sock"),
            ("version", "containerd is k3s's fork compiled into the k3s binary (Go build info)"),
        ],
    },
    Row {
        id: "rke2",
        name: "RKE2",
        marks: &["/usr/local/bin/rke2", "/usr/bin/rke2", "/opt/rke2/bin/rke2", "/etc/rancher/rke2/config.yaml"],
        binary: Binary::At(&["/var/lib/rancher/rke2/bin/containerd"], "RKE2 unpacks its containerd from its runtime image at first start"),
        config: Some("/var/lib/rancher/rke2/agent/etc/containerd/config.toml"),
        generated: Generated::EveryStart { v2: K3S_V2, v3: K3S_V3 },
        root_flag: Some("/var/lib/rancher/rke2/agent/containerd"),
        address_flag: Some("/run/k3s/containerd/containerd.sock"),
        reference: Reference::Yaml(&RKE2_PAUSE),
        write: WriteTo::Yaml { path: "/etc/rancher/rke2/config.yaml.d/50-pausebake.yaml", key: "pause-image" },
        templates: &[
            "/var/lib/rancher/rke2/agent/etc/containerd/config.toml.tmpl",
            "/var/lib/rancher/rke2/agent/etc/containerd/config-v3.toml.tmpl",
        ],
        sources: &[
            ("config", "rancher/rke2 @6ce1a80 runs k3s's agent code (go.mod requires github.com/k3s-io/k3s): the same generated config under /var/lib/rancher/rke2"),
            ("reference", "pkg/cli/cmds/root.go --pause-image / RKE2_PAUSE_IMAGE; pkg/images/images.go default rancher/mirrored-pause:3.10.2, resolved to go-containerregistry's Name() (index.docker.io/..., google/go-containerregistry pkg/name), its registry replaced by system-default-registry (pkg/cli/cmds/agent.go RKE2_SYSTEM_DEFAULT_REGISTRY); then k3s's agent code as for k3s"),
            ("environment", "bundle/lib/systemd/system/rke2-{server,agent}.service EnvironmentFile=-/etc/default/%N, -/etc/sysconfig/%N, -/usr/local/lib/systemd/system/%N.env"),
            ("store", "containerd root /var/lib/rancher/rke2/agent/containerd; socket /run/k3s/containerd/containerd.sock (pkg/executor/staticpod/spw.go)"),
        ],
    },
    Row {
        id: "k0s",
        name: "k0s",
        marks: &["/usr/local/bin/k0s", "/usr/bin/k0s", "/etc/k0s/containerd.toml", "/etc/k0s/k0s.yaml"],
        binary: Binary::At(&["/var/lib/k0s/bin/containerd"], "k0s unpacks its containerd into /var/lib/k0s/bin at first start"),
        config: Some("/etc/k0s/containerd.toml"),
        generated: Generated::WhileMarked { marker: "# k0s_managed=true", v3: K0S_V3 },
        root_flag: Some("/var/lib/k0s/containerd"),
        address_flag: Some("/run/k0s/containerd.sock"),
        reference: Reference::Yaml(&K0S_PAUSE),
        write: WriteTo::DropIn("/etc/k0s/containerd.d/pausebake.toml"),
        templates: &[],
        sources: &[
            ("config", "k0sproject/k0s @dff90ce docs/runtime.md: containerd --root=/var/lib/k0s/containerd --state=/run/k0s/containerd --address=/run/k0s/containerd.sock --config=/etc/k0s/containerd.toml"),
            ("generated", "pkg/component/worker/containerd/configurer.go: regenerated while the first line is `# k0s_managed=true`; version 3, imports /etc/k0s/containerd.d/*.toml"),
            ("reference", "spec.images.pause in k0s's config (pkg/apis/k0s/v1beta1/images.go), default quay.io/k0sproject/pause:3.10.2-0 (pkg/constant/constant.go)"),
        ],
    },
    Row {
        id: "microk8s",
        name: "MicroK8s",
        marks: &["/var/snap/microk8s/current/args/containerd-template.toml", "/snap/microk8s"],
        binary: Binary::At(&["/snap/microk8s/current/bin/containerd"], "MicroK8s's containerd is inside its snap, which an offline root holds only as a squashfs file"),
        config: Some("/var/snap/microk8s/current/args/containerd-template.toml"),
        generated: Generated::No,
        root_flag: Some("/var/snap/microk8s/common/var/lib/containerd"),
        address_flag: Some("/var/snap/microk8s/common/run/containerd.sock"),
        reference: Reference::Config,
        write: WriteTo::Config,
        templates: &[],
        sources: &[
            ("config", "canonical/microk8s @d099c90 microk8s-resources/wrappers/run-containerd-with-args renders args/containerd.toml from args/containerd-template.toml at every start (the sandbox image is the template's)"),
            ("store", "--root ${SNAP_COMMON}/var/lib/containerd --address ${SNAP_COMMON}/run/containerd.sock, SNAP_COMMON=/var/snap/microk8s/common"),
            ("reference", "microk8s-resources/default-args/containerd-template.toml sandbox_image"),
        ],
    },
    Row {
        id: "flatcar",
        name: "Flatcar",
        marks: &["/usr/share/containerd/config.toml"],
        binary: Binary::Usual,
        config: Some("/usr/share/containerd/config.toml"),
        generated: Generated::No,
        root_flag: None,
        address_flag: None,
        reference: Reference::Config,
        write: WriteTo::Nowhere("Flatcar's containerd reads /usr/share/containerd/config.toml (the unit's CONTAINERD_CONFIG), on the read-only /usr; another name needs /etc/containerd/config.toml and a unit drop-in changing CONTAINERD_CONFIG, which pausebake does not write"),
        templates: &[],
        sources: &[
            ("config", "flatcar/scripts: containerd.service Environment=CONTAINERD_CONFIG=/usr/share/containerd/config.toml, ExecStart containerd --config ${CONTAINERD_CONFIG}; that file sets no sandbox image"),
        ],
    },
    Row {
        id: "docker",
        name: "Docker's containerd.io package",
        marks: &["/var/lib/dpkg/info/containerd.io.list", "/usr/share/doc/containerd.io"],
        binary: Binary::Usual,
        config: None,
        generated: Generated::No,
        root_flag: None,
        address_flag: None,
        reference: Reference::Config,
        write: WriteTo::Config,
        templates: &[],
        sources: &[
            ("config", "the package's /etc/containerd/config.toml: disabled_plugins = [\"cri\"]; newer moby packaging also io.containerd.grpc.v1.cri, io.containerd.cri.v1.images, io.containerd.cri.v1.runtime (moby PR #53564)"),
        ],
    },
    Row {
        id: "containerd",
        name: "containerd",
        marks: &[],
        binary: Binary::Usual,
        config: None,
        generated: Generated::No,
        root_flag: None,
        address_flag: None,
        reference: Reference::Config,
        write: WriteTo::Config,
        templates: &[],
        sources: &[("config", "containerd's defaults: --config /etc/containerd/config.toml (or the unit's), root /var/lib/containerd (defaults/defaults_unix.go)")],
    },
];

/// What the owner's settings were read from: a [`Files`] that answers as the root did, so a
/// planned write of pausebake's own file can be read back in memory ([`super::effective::Overlay`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    reads: BTreeMap<String, Option<String>>,
    lists: BTreeMap<String, Vec<String>>,
}

impl Files for Seen {
    fn read(&self, path: &str) -> Result<Option<String>> {
        Ok(self.reads.get(path).cloned().flatten())
    }
    fn exists(&self, path: &str) -> bool {
        self.reads.get(path).is_some_and(|t| t.is_some())
    }
    fn list(&self, dir: &str) -> Vec<String> {
        self.lists.get(dir).cloned().unwrap_or_default()
    }
}

/// [`Files`] of a root that notes every read and listing in a [`Seen`].
struct Recording<'a> {
    base: &'a dyn Files,
    seen: RefCell<Seen>,
}

impl Files for Recording<'_> {
    fn read(&self, path: &str) -> Result<Option<String>> {
        let text = self.base.read(path)?;
        let mut seen = self.seen.borrow_mut();
        seen.reads.insert(path.to_string(), text.clone());
        Ok(text)
    }
    fn exists(&self, path: &str) -> bool {
        self.base.exists(path)
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let names = self.base.list(dir);
        let mut seen = self.seen.borrow_mut();
        seen.lists.insert(dir.to_string(), names.clone());
        names
    }
}

/// The owner of a root's containerd as inspect learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerFacts {
    pub owner: Owner,
    /// The reference the owner's own setting makes containerd ask for; `None` when
    /// containerd's config decides.
    pub asks: Option<Asked>,
    /// The text of pausebake's own settings file ([`WriteTo::Yaml`]), if it exists.
    pub written: Option<String>,
    /// What was read to learn `asks`.
    pub seen: Seen,
    /// What pausebake assumes about the owner and cannot check, one sentence each.
    pub warnings: Vec<String>,
}

/// Recognises the owner of `root`'s containerd and reads the reference it asks for.
pub fn read(root: &dyn Files) -> Result<OwnerFacts> {
    let owner = recognise(root);
    let rec = Recording {
        base: root,
        seen: RefCell::default(),
    };
    let asks = asks(owner.row, &rec)?;
    let written = match owner.row.write {
        WriteTo::Yaml { path, .. } => rec.read(path)?,
        _ => None,
    };
    let mut warnings: Vec<String> = owner
        .row
        .templates
        .iter()
        .filter(|t| root.exists(t))
        .map(|t| {
            format!(
                "{} renders {t} instead of its built-in template at start; pausebake assumes it keeps the built-in sandbox setting ({{{{ template \"base\" . }}}})",
                owner.row.name
            )
        })
        .collect();
    if let (Reference::Yaml(setting), Some(a)) = (owner.row.reference, &asks) {
        if let Some(mark) = setting.naming.and_then(|n| n.agent(root)) {
            warnings.push(format!(
                "{} joins this node as an agent ({mark}): it takes system-default-registry from its server when it joins, which no file here says; if the server sets one, the node asks for a name under that registry instead of {}: pass that name as --name",
                owner.row.name, a.value
            ));
        }
    }
    Ok(OwnerFacts {
        owner,
        asks,
        written,
        seen: rec.seen.into_inner(),
        warnings,
    })
}

/// The owner found in a root and the path that told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub row: &'static Row,
    /// The in-root path that told (`/usr/local/bin/k3s`), or why the fallback.
    pub evidence: String,
}

impl Owner {
    /// `k3s (/usr/local/bin/k3s)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.row.name, self.evidence)
    }
}

/// The first row of [`OWNERS`] with a mark present in `files` (the root).
pub fn recognise(files: &dyn Files) -> Owner {
    for row in &OWNERS {
        if let Some(mark) = row.marks.iter().find(|m| files.exists(m)) {
            return Owner {
                row,
                evidence: mark.to_string(),
            };
        }
    }
    let plain = &OWNERS[OWNERS.len() - 1];
    Owner {
        row: plain,
        evidence: "no distribution that owns containerd found".into(),
    }
}

/// The reference the owner makes containerd ask for, with where it was read; `None` when
/// containerd's own config decides ([`Reference::Config`]).
pub fn asks(row: &Row, files: &dyn Files) -> Result<Option<Asked>> {
    Ok(match row.reference {
        Reference::Config => None,
        Reference::Fixed(r) => Some(Asked {
            value: r.to_string(),
            source: format!("{}'s fixed sandbox image", row.name),
            file: None,
            naming: None,
        }),
        Reference::Yaml(setting) => Some(yaml_setting(row, setting, files)?),
    })
}

/// The value of a [`YamlSetting`]: the unit's flag, else the last file setting each part,
/// else the variable in the unit's environment files, else the defaults; then what the
/// owner's [`Naming`] makes of it.
fn yaml_setting(row: &Row, s: &YamlSetting, files: &dyn Files) -> Result<Asked> {
    let paths = yaml_paths(s, files);
    let set = setting(row, s, &paths, files)?;
    match s.naming {
        Some(naming) => named(row, s, naming, &paths, files, set),
        None => Ok(Asked {
            value: set.value,
            source: set.source,
            file: set.file,
            naming: None,
        }),
    }
}

/// A setting's value as the owner reads it, before its [`Naming`].
struct Setting {
    value: String,
    source: String,
    file: Option<String>,
    /// Nothing set it: the owner's default.
    defaulted: bool,
}

fn setting(row: &Row, s: &YamlSetting, paths: &[String], files: &dyn Files) -> Result<Setting> {
    if let Some((units, flag)) = s.unit_flag {
        if let Some((value, source)) = unit_flag(units, flag, files)? {
            return Ok(Setting {
                value,
                source,
                file: None,
                defaulted: false,
            });
        }
    }
    let mut values = Vec::new();
    let mut from = Vec::new();
    let mut file = None;
    for (keys, default) in s.parts {
        match yaml_last(paths, keys, files)? {
            Some((v, p)) => {
                values.push(v);
                from.push(format!("{} in {p}", keys.join(".")));
                file = Some(p);
            }
            None => values.push(default.to_string()),
        }
    }
    if !from.is_empty() {
        return Ok(Setting {
            value: values.join(":"),
            source: from.join(", "),
            file,
            defaulted: false,
        });
    }
    if let Some((env_files, var)) = s.naming.and_then(|n| n.env) {
        if let Some((value, source)) = env_value(env_files, var, files)? {
            return Ok(Setting {
                value,
                source,
                file: None,
                defaulted: false,
            });
        }
    }
    Ok(Setting {
        value: values.join(":"),
        source: format!(
            "{}'s default (no {} in {})",
            row.name,
            s.parts[0].0.join("."),
            paths.join(", ")
        ),
        file: None,
        defaulted: true,
    })
}

/// `set` as the owner names it ([`Naming`]): its system default registry read like the
/// setting (unit flag, YAML files, environment files), then [`Named::name`].
fn named(
    row: &Row,
    s: &YamlSetting,
    naming: Naming,
    paths: &[String],
    files: &dyn Files,
    set: Setting,
) -> Result<Asked> {
    let (keys, flag, var) = naming.registry;
    let mut registry = None;
    // an agent's own files do not decide it: its server does, at join
    if naming.agent(files).is_none() {
        if let Some((units, _)) = s.unit_flag {
            registry = unit_flag(units, flag, files)?;
        }
        if registry.is_none() {
            registry = yaml_last(paths, keys, files)?
                .map(|(v, p)| (v, format!("{} in {p}", keys.join("."))));
        }
        if let (None, Some(var), Some((env_files, _))) = (&registry, var, naming.env) {
            registry = env_value(env_files, var, files)?;
        }
    }
    let registry = registry.filter(|(r, _)| !r.is_empty());
    let how = Named {
        registry: registry.as_ref().map(|(r, _)| r.clone()),
        resolver: naming.resolver,
    };
    let value = how.name(&set.value, set.defaulted);
    let source = match (&registry, value == set.value) {
        (_, true) => set.source,
        (Some((r, from)), false) => format!(
            "{}, as {} names it with system default registry {r} ({from})",
            set.source, row.name
        ),
        (None, false) => format!("{}, as {} names it", set.source, row.name),
    };
    Ok(Asked {
        value,
        source,
        file: set.file,
        naming: Some(how),
    })
}

/// The YAML files of a [`YamlSetting`] in the order they are read: its files, then its
/// drop-in directory's `*.yaml`/`*.yml` in name order.
fn yaml_paths(s: &YamlSetting, files: &dyn Files) -> Vec<String> {
    let mut paths: Vec<String> = s.files.iter().map(|f| f.to_string()).collect();
    if let Some(dir) = s.dropins {
        for name in files.list(dir) {
            if name.ends_with(".yaml") || name.ends_with(".yml") {
                paths.push(format!("{dir}/{name}"));
            }
        }
    }
    paths
}

/// The last value of `keys` in `paths` (a later file beats an earlier one), with its file.
fn yaml_last(
    paths: &[String],
    keys: &[&str],
    files: &dyn Files,
) -> Result<Option<(String, String)>> {
    let mut found = None;
    for p in paths {
        if let Some(text) = files.read(p)? {
            if let Some(v) = yaml_scalar(&text, keys) {
                found = Some((v, p.clone()));
            }
        }
    }
    Ok(found)
}

/// `flag` in the first of `units` that passes it, with where.
fn unit_flag(units: &[&str], flag: &str, files: &dyn Files) -> Result<Option<(String, String)>> {
    for unit in units {
        if let Some(text) = files.read(unit)? {
            if let Some(v) = flag_value(&text, flag) {
                return Ok(Some((v, format!("{flag} in {unit}"))));
            }
        }
    }
    Ok(None)
}

/// The value of `var` in systemd environment files (`KEY=VALUE`, quoted or not), read in
/// order, a later assignment replacing an earlier one; with where.
fn env_value(env_files: &[&str], var: &str, files: &dyn Files) -> Result<Option<(String, String)>> {
    let mut found = None;
    for f in env_files {
        let Some(text) = files.read(f)? else { continue };
        for line in text.lines().map(str::trim) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if key.trim() == var {
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                found = Some((value.to_string(), format!("{var} in {f}")));
            }
        }
    }
    Ok(found)
}

/// The value of `flag` (`--flag VALUE`, `--flag=VALUE`, quoted or not) in a systemd unit's
/// `ExecStart=`, continuation lines joined.
fn flag_value(unit: &str, flag: &str) -> Option<String> {
    let joined = unit.replace("\\\n", " ");
    let exec = joined
        .lines()
        .rfind(|l| l.trim_start().starts_with("ExecStart="))?;
    let words: Vec<&str> = exec
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"'))
        .collect();
    let mut found = None;
    for (i, w) in words.iter().enumerate() {
        if *w == flag {
            found = words.get(i + 1).map(|v| v.to_string());
        } else if let Some(v) = w.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            found = Some(v.to_string());
        }
    }
    found
}

/// The scalar at `path` in a YAML text of block mappings (`key: value`, nested by
/// indentation), unquoted; the last occurrence wins. Flow mappings, anchors and multi-line
/// scalars are not read (the settings read here are one-line scalars).
pub fn yaml_scalar(text: &str, path: &[&str]) -> Option<String> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut found = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let indent = line.len() - trimmed.len();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let Some((key, rest)) = split_key(trimmed) else {
            continue;
        };
        let value = scalar(rest);
        if value.is_empty() {
            stack.push((indent, key));
            continue;
        }
        let here = stack.iter().map(|(_, k)| k.as_str()).chain([key.as_str()]);
        if here.eq(path.iter().copied()) {
            found = Some(value);
        }
    }
    found
}

/// `key: rest` of a mapping line (the key unquoted); `None` for a list item or no colon.
fn split_key(line: &str) -> Option<(String, &str)> {
    if line.starts_with("- ") {
        return None;
    }
    let (key, rest) = match line.split_once(": ") {
        Some((k, r)) => (k, r),
        None => (line.strip_suffix(':')?, ""),
    };
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    Some((key.to_string(), rest))
}

/// A one-line scalar: quoted (up to the closing quote) or plain (up to a ` #` comment).
fn scalar(rest: &str) -> String {
    let rest = rest.trim();
    for q in ['"', '\''] {
        if let Some(inner) = rest.strip_prefix(q) {
            return inner.split(q).next().unwrap_or_default().to_string();
        }
    }
    rest.split(" #")
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The text the owner writes at start for containerd `v` asking for `pause`; `None` when
/// containerd loads the root's file as it is (`current`: that file's text, if any).
pub fn generated(row: &Row, v: Version, pause: &str, current: Option<&str>) -> Option<String> {
    let data = row
        .config
        .and_then(|c| c.split("/agent/").next())
        .unwrap_or_default();
    // the reference as a TOML string, whatever characters the owner's setting holds
    let quoted = toml_edit::Value::from(pause).to_string();
    let fill = |t: &str| t.replace("{pause}", quoted.trim()).replace("{data}", data);
    match row.generated {
        Generated::No => None,
        Generated::EveryStart { v2, v3 } => Some(fill(if v.major >= 2 { v3 } else { v2 })),
        Generated::WhileMarked { marker, v3 } => {
            let kept = current.is_some_and(|t| t.lines().next() != Some(marker));
            (!kept).then(|| fill(v3))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::Root;

    fn by_id(id: &str) -> Result<&'static Row> {
        match OWNERS.iter().find(|r| r.id == id) {
            Some(r) => Ok(r),
            None => bail!("unknown owner {id:?}"),
        }
    }

    fn root_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        for (path, text) in files {
            let parent = std::path::Path::new(path).parent().unwrap();
            root.create_dir_all(parent, 0o755).unwrap();
            root.write_atomic(path, text.as_bytes(), 0o644).unwrap();
        }
        (dir, root)
    }

    #[test]
    fn every_row_is_recognised_by_its_own_marks_only() {
        for row in &OWNERS[..OWNERS.len() - 1] {
            let (_d, root) = root_with(&[(row.marks[0], "x")]);
            let owner = recognise(&root);
            assert_eq!(owner.row.id, row.id);
            assert_eq!(owner.evidence, row.marks[0]);
            assert!(!row.sources.is_empty(), "{} cites its sources", row.id);
        }
        let (_d, root) = root_with(&[("/usr/bin/containerd", "x")]);
        assert_eq!(recognise(&root).row.id, "containerd");
        assert!(by_id("nope").is_err());
    }

    #[test]
    fn k3s_asks_for_its_pause_image_setting() {
        let k3s = by_id("k3s").unwrap();
        let (_d, root) = root_with(&[("/usr/local/bin/k3s", "x")]);
        let a = asks(k3s, &root).unwrap().unwrap();
        assert_eq!(a.value, "rancher/mirrored-pause:3.6");
        assert!(a.source.starts_with("k3s's default"), "{}", a.source);
        let (_d, root) = root_with(&[
            (
                "/etc/rancher/k3s/config.yaml",
                "# node\nwrite-kubeconfig-mode: \"0644\"\npause-image: registry.k8s.io/pause:3.10 # pinned\n",
            ),
            ("/etc/rancher/k3s/config.yaml.d/10-a.yaml", "node-label:\n  - a=b\n"),
        ]);
        let a = asks(k3s, &root).unwrap().unwrap();
        assert_eq!(
            (a.value.as_str(), a.source.as_str()),
            (
                "registry.k8s.io/pause:3.10",
                "pause-image in /etc/rancher/k3s/config.yaml"
            )
        );
        // a drop-in replaces the main file's value; the unit's flag beats both
        root.write_atomic(
            "/etc/rancher/k3s/config.yaml.d/50-pausebake.yaml",
            b"pause-image: 'example.invalid/p:1'\n",
            0o644,
        )
        .unwrap();
        assert_eq!(
            asks(k3s, &root).unwrap().unwrap().value,
            "example.invalid/p:1"
        );
        root.create_dir_all("/etc/systemd/system", 0o755).unwrap();
        root.write_atomic(
            "/etc/systemd/system/k3s.service",
            b"[Service]\nExecStart=/usr/local/bin/k3s \\\n    server \\\n\t'--pause-image' \\\n\t'example.invalid/flag:2' \\\n",
            0o644,
        )
        .unwrap();
        let a = asks(k3s, &root).unwrap().unwrap();
        assert_eq!(
            (a.value.as_str(), a.source.as_str()),
            (
                "example.invalid/flag:2",
                "--pause-image in /etc/systemd/system/k3s.service"
            )
        );
    }

    #[test]
    fn go_container_registry_names_a_reference_in_full() {
        for (given, named) in [
            (
                "rancher/mirrored-pause:3.10.2",
                "index.docker.io/rancher/mirrored-pause:3.10.2",
            ),
            ("pause", "index.docker.io/library/pause:latest"),
            ("docker.io/me/pause:1", "index.docker.io/me/pause:1"),
            ("localhost/p:1", "index.docker.io/localhost/p:1"),
            ("localhost:5000/p", "localhost:5000/p:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            (
                "r.example.invalid/p@sha256:ab",
                "r.example.invalid/p@sha256:ab",
            ),
        ] {
            assert_eq!(go_name(given), named, "{given}");
        }
    }

    #[test]
    fn k3s_puts_the_system_default_registry_before_its_pause_image() {
        let k3s = by_id("k3s").unwrap();
        let (_d, root) = root_with(&[(
            "/etc/rancher/k3s/config.yaml",
            "system-default-registry: reg.example.invalid\n",
        )]);
        let a = asks(k3s, &root).unwrap().unwrap();
        assert_eq!(a.value, "reg.example.invalid/rancher/mirrored-pause:3.6");
        assert!(
            a.source.ends_with(
                "as k3s names it with system default registry reg.example.invalid \
                 (system-default-registry in /etc/rancher/k3s/config.yaml)"
            ),
            "{}",
            a.source
        );
        // a setting that starts with it is left alone; a name written there stays as written
        root.create_dir_all("/etc/rancher/k3s/config.yaml.d", 0o755)
            .unwrap();
        root.write_atomic(
            "/etc/rancher/k3s/config.yaml.d/50-pausebake.yaml",
            b"pause-image: reg.example.invalid/p:1\n",
            0o644,
        )
        .unwrap();
        assert_eq!(
            asks(k3s, &root).unwrap().unwrap().value,
            "reg.example.invalid/p:1"
        );
        let written = a.for_setting("registry.k8s.io/pause:3.10");
        assert_eq!(written, "reg.example.invalid/registry.k8s.io/pause:3.10");
        assert_eq!(a.for_setting(&written), written);
    }

    #[test]
    fn an_agent_takes_the_registry_from_its_server_and_is_warned_about() {
        let (_d, root) = root_with(&[
            ("/usr/local/bin/k3s", "x"),
            (
                "/etc/rancher/k3s/config.yaml",
                "system-default-registry: reg.example.invalid\n",
            ),
            ("/etc/systemd/system/k3s-agent.service", "[Service]\n"),
        ]);
        let facts = read(&root).unwrap();
        // the agent's own setting is not what its server hands it
        assert_eq!(
            facts.asks.as_ref().unwrap().value,
            "rancher/mirrored-pause:3.6"
        );
        assert_eq!(facts.warnings.len(), 1, "{:?}", facts.warnings);
        assert!(
            facts.warnings[0].starts_with(
                "k3s joins this node as an agent (/etc/systemd/system/k3s-agent.service): it \
                 takes system-default-registry from its server"
            ),
            "{}",
            facts.warnings[0]
        );
        // a server is not warned
        let (_d, root) = root_with(&[("/usr/local/bin/rke2", "x")]);
        assert!(read(&root).unwrap().warnings.is_empty());
    }

    #[test]
    fn rke2_names_its_pause_image_through_its_resolver() {
        let rke2 = by_id("rke2").unwrap();
        let (_d, root) = root_with(&[("/etc/rancher/rke2/config.yaml", "token: t\n")]);
        let a = asks(rke2, &root).unwrap().unwrap();
        assert_eq!(a.value, "index.docker.io/rancher/mirrored-pause:3.10.2");
        // the environment files set what the YAML files leave unset
        root.create_dir_all("/etc/default", 0o755).unwrap();
        root.write_atomic(
            "/etc/default/rke2-server",
            b"RKE2_SYSTEM_DEFAULT_REGISTRY=\"reg.example.invalid/mirror\"\n",
            0o644,
        )
        .unwrap();
        let a = asks(rke2, &root).unwrap().unwrap();
        // the default takes the registry as its own; k3s's agent code then leaves it
        assert_eq!(
            a.value,
            "reg.example.invalid/mirror/rancher/mirrored-pause:3.10.2"
        );
        assert!(
            a.source
                .contains("(RKE2_SYSTEM_DEFAULT_REGISTRY in /etc/default/rke2-server)"),
            "{}",
            a.source
        );
        root.create_dir_all("/usr/local/lib/systemd/system", 0o755)
            .unwrap();
        root.write_atomic(
            "/usr/local/lib/systemd/system/rke2-server.env",
            b"RKE2_PAUSE_IMAGE=me/pause:1\n",
            0o644,
        )
        .unwrap();
        // an image of the user's own is named in full, then gets the registry before it
        let a = asks(rke2, &root).unwrap().unwrap();
        assert_eq!(
            a.value,
            "reg.example.invalid/mirror/index.docker.io/me/pause:1"
        );
        assert!(
            a.source
                .starts_with("RKE2_PAUSE_IMAGE in /usr/local/lib/systemd/system/rke2-server.env"),
            "{}",
            a.source
        );
        // the YAML files beat the environment
        root.write_atomic(
            "/etc/rancher/rke2/config.yaml",
            b"system-default-registry: other.example.invalid\npause-image: registry.k8s.io/pause:3.10\n",
            0o644,
        )
        .unwrap();
        let a = asks(rke2, &root).unwrap().unwrap();
        assert_eq!(a.value, "other.example.invalid/registry.k8s.io/pause:3.10");
        assert_eq!(a.file.as_deref(), Some("/etc/rancher/rke2/config.yaml"));
        let written = a.for_setting("docker.io/me/pause:2");
        assert_eq!(written, "other.example.invalid/index.docker.io/me/pause:2");
        assert_eq!(a.for_setting(&written), written);
    }

    #[test]
    fn k0s_joins_image_and_version() {
        let k0s = by_id("k0s").unwrap();
        let (_d, root) = root_with(&[(
            "/etc/k0s/k0s.yaml",
            "apiVersion: k0s.k0sproject.io/v1beta1\nspec:\n  images:\n    pause:\n      image: example.invalid/pause\n  network: {}\n",
        )]);
        let a = asks(k0s, &root).unwrap().unwrap();
        assert_eq!(a.value, "example.invalid/pause:3.10.2-0");
        assert_eq!(a.source, "spec.images.pause.image in /etc/k0s/k0s.yaml");
    }

    #[test]
    fn generated_configs_follow_the_version_and_the_marker() {
        let v2 = Version::new(2, 1, 9);
        let k3s = by_id("k3s").unwrap();
        let text = generated(k3s, v2, "registry.k8s.io/pause:3.10", None).unwrap();
        assert!(
            text.starts_with("version = 3\nroot = \"/var/lib/rancher/k3s/agent/containerd\"\n"),
            "{text}"
        );
        assert!(
            text.contains("sandbox = \"registry.k8s.io/pause:3.10\""),
            "{text}"
        );
        let old = generated(k3s, Version::new(1, 7, 24), "p:1", None).unwrap();
        assert!(old.contains("sandbox_image = \"p:1\""), "{old}");
        let k0s = by_id("k0s").unwrap();
        assert!(generated(k0s, v2, "p:1", None).is_some());
        assert!(generated(k0s, v2, "p:1", Some("# k0s_managed=true\nversion = 3\n")).is_some());
        assert_eq!(generated(k0s, v2, "p:1", Some("version = 3\n")), None);
        assert_eq!(generated(by_id("docker").unwrap(), v2, "p:1", None), None);
    }

    #[test]
    fn yaml_scalars_nest_by_indentation() {
        let text = "a:\n  b: 1\n  c:\n    d: \"x y\" # c\ne: plain # comment\n- item\n";
        assert_eq!(yaml_scalar(text, &["a", "b"]).as_deref(), Some("1"));
        assert_eq!(yaml_scalar(text, &["a", "c", "d"]).as_deref(), Some("x y"));
        assert_eq!(yaml_scalar(text, &["e"]).as_deref(), Some("plain"));
        assert_eq!(yaml_scalar(text, &["b"]), None);
    }
}
