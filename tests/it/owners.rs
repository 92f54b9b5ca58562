//! Who owns containerd at first boot (`src/containerd/owners.rs`), proven against real
//! containerd 1.7.24, 2.1.9 and (k3s, nodeadm, k0s) 2.3.4. None of Docker's packages, k3s, k0s or nodeadm is installed
//! here, so each test lays out a root the way that distribution does (its binary, unit and
//! settings files, its data directory), writes the containerd config its generator writes at
//! boot (equal in meaning, written here from the generator's documented template), and starts
//! a real containerd exactly as that distribution starts it (its `--config`, `--root`, and
//! `--state`/`--address` under the test's private run directory), with no network. After
//! `bake` a CRI sandbox is READY with no pull; on the same layout without `bake` it needs a
//! pull, and `verify` exits 3 naming what the node would pull.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::bake::{no_pull, sandbox_needs_a_pull, sandbox_ready};
use crate::containerd::{versions, Containerd, Running, StartOpts};
use crate::harness::*;

/// The containerd builds of `series` ("1.7", "2.1") the tests have; a loud skip when none.
fn builds(series: &[&str]) -> Vec<Containerd> {
    let all: Vec<Containerd> = versions()
        .into_iter()
        .filter(|c| series.contains(&c.series().as_str()))
        .collect();
    for s in series {
        if !all.iter().any(|c| c.series() == *s) && is_root() {
            skip(&format!(
                "no containerd {s} (run tests/fetch-containerd.sh)"
            ));
        }
    }
    all
}

/// Writes `text` at the node path `path` inside `root`, creating its directories.
fn put(root: &Path, path: &str, text: &str) {
    let host = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(host.parent().unwrap()).unwrap();
    fs::write(&host, text).unwrap();
}

fn read(root: &Path, path: &str) -> String {
    fs::read_to_string(root.join(path.trim_start_matches('/'))).unwrap()
}

fn pausebake_on(cmd: &str, root: &Path, args: &[&str]) -> Output {
    run_any(pausebake().arg(cmd).arg("--root").arg(root).args(args))
}

/// `verify` of an unbaked root: exit 3, naming the reference the node would pull.
fn verify_names_the_pull(root: &Path, args: &[&str], name: &str) {
    let out = pausebake_on("verify", root, args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{}", describe_out(&out));
    assert!(
        text.contains(&format!("CRI would pull {name}")),
        "verify names {name}:\n{text}"
    );
}

fn describe_out(out: &Output) -> String {
    format!("{}\n{}", stdout(out), stderr(out))
}

/// A distribution's containerd on `root`, offline: its config, its `--root`.
fn start_as(c: &Containerd, root: &Path, config: &str, node_root: &str) -> Running {
    c.start(
        root,
        StartOpts {
            no_network: true,
            config: Some(config.into()),
            node_root: Some(node_root.into()),
            ..Default::default()
        },
    )
}

/// The image `name` is in CRI's view and pinned.
fn pinned(ctd: &Running, name: &str) {
    let image = ctd
        .cri()
        .image_status(name)
        .expect("ImageStatus")
        .unwrap_or_else(|| panic!("{name} unknown to CRI\n{}", ctd.log()));
    assert!(image.pinned, "{name} is not pinned: {image:?}");
}

// --- Docker's containerd.io: CRI disabled -------------------------------------------------

/// The config Docker's containerd.io package installs, in meaning: a header, CRI disabled,
/// containerd's defaults commented out.
const DOCKER_CONFIG: &str =
    "#   Installed by the containerd.io package (Docker): containerd for dockerd,
#   so CRI is switched off.

disabled_plugins = [\"cri\"]

#root = \"/var/lib/containerd\"
#state = \"/run/containerd\"

#[grpc]
#  address = \"/run/containerd/containerd.sock\"
";

/// The config of newer moby packaging for containerd 2.x, in meaning: every CRI plugin
/// disabled by its URI (moby PR #53564).
const MOBY_V3_CONFIG: &str = "# containerd for dockerd: CRI off (newer packaging, containerd 2.x)
version = 3
disabled_plugins = [
  \"io.containerd.grpc.v1.cri\",
  \"io.containerd.cri.v1.images\",
  \"io.containerd.cri.v1.runtime\",
]
";

/// A root with Docker's containerd.io package of `version` installed, as dpkg records it,
/// and its config `config`.
fn docker_root(version: &str, config: &str) -> tempfile::TempDir {
    let root = tempdir();
    let r = root.path();
    put(r, "/etc/containerd/config.toml", config);
    put(
        r,
        "/var/lib/dpkg/status",
        &format!(
            "Package: containerd.io\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}-1\n\n"
        ),
    );
    put(
        r,
        "/var/lib/dpkg/info/containerd.io.list",
        "/usr/bin/containerd\n/etc/containerd/config.toml\n",
    );
    root
}

#[test]
fn owners_dockers_config_answers_unknown_service_until_bake_enables_cri() {
    let _lock = containerd_lock();
    for c in builds(&["1.7", "2.1"]) {
        docker_case(&c, DOCKER_CONFIG, &["cri"]);
        if c.semver().0 >= 2 {
            let uris = [
                "io.containerd.grpc.v1.cri",
                "io.containerd.cri.v1.images",
                "io.containerd.cri.v1.runtime",
            ];
            docker_case(&c, MOBY_V3_CONFIG, &uris);
        }
    }
}

/// Docker's `config` (disabling `entries`) on containerd `c`: verify fails naming them, the
/// real containerd serves no CRI, bake removes exactly them, and then a sandbox is READY.
fn docker_case(c: &Containerd, config: &str, entries: &[&str]) {
    let root = docker_root(&c.semver_string(), config);
    let r = root.path();
    let ours = format!("containerd {}", c.semver_string());

    // verify: exit 3 naming the file and each entry
    let out = pausebake_on("verify", r, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{ours}: {}", describe_out(&out));
    for e in entries {
        assert!(
            text.contains(&format!(
                "FAIL cri: /etc/containerd/config.toml lists {e:?} in disabled_plugins"
            )),
            "{ours}: {text}"
        );
    }
    assert!(
        text.contains("owner Docker's containerd.io package"),
        "{text}"
    );

    // the real containerd on that config: CRI is not there at all
    let mut ctd = c.start(
        r,
        StartOpts {
            no_network: true,
            no_cri: true,
            ..Default::default()
        },
    );
    let err = ctd.cri().version().expect_err("CRI answered");
    assert!(
        err.message()
            .contains("unknown service runtime.v1.RuntimeService"),
        "{ours}: {err}"
    );
    ctd.stop();

    // the plan says so; bake removes exactly those entries, keeps every other line
    let dry = pausebake_on("bake", r, &["--dry-run"]);
    let listed: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
    assert!(
        stdout(&dry).contains(&format!(
            "enable CRI to remove {} from disabled_plugins in /etc/containerd/config.toml",
            listed.join(", ")
        )),
        "{ours}: {}",
        describe_out(&dry)
    );
    assert_eq!(read(r, "/etc/containerd/config.toml"), config);
    let out = pausebake_on("bake", r, &[]);
    assert!(out.status.success(), "{ours}: {}", describe_out(&out));
    assert!(
        stdout(&out).contains("enable CRI removed"),
        "{}",
        stdout(&out)
    );
    let after = read(r, "/etc/containerd/config.toml");
    for line in config
        .lines()
        .filter(|l| !entries.iter().any(|e| l.contains(e)))
    {
        if !line.starts_with("disabled_plugins") && line != "]" {
            assert!(after.contains(line), "{ours}: lost {line:?}:\n{after}");
        }
    }
    // every entry of these configs disables CRI: none is left
    assert!(after.contains("disabled_plugins = []\n"), "{ours}: {after}");
    let out = pausebake_on("verify", r, &[]);
    assert!(out.status.success(), "{ours}: {}", describe_out(&out));
    let name = stdout(&out)
        .lines()
        .find_map(|l| {
            l.strip_prefix("ok   image: ")?
                .split(' ')
                .next()
                .map(str::to_string)
        })
        .expect("verify names the image");

    let ctd = c.start(
        r,
        StartOpts {
            no_network: true,
            ..Default::default()
        },
    );
    sandbox_ready(&ctd, "docker");
    no_pull(&ctd);
    pinned(&ctd, &name);
    eprintln!("{ours}: Docker's config, CRI enabled by bake, sandbox READY offline:\n{after}");
}

#[test]
fn owners_a_short_cri_where_uris_are_wanted_is_a_refusal_containerd_agrees() {
    let _lock = containerd_lock();
    let config = "# CRI off, written the old way into a newer config\nversion = 2\ndisabled_plugins = [\"cri\"]\n";
    for c in builds(&["1.7", "2.1"]) {
        let ours = format!("containerd {}", c.semver_string());
        let root = docker_root(&c.semver_string(), config);
        let r = root.path();
        let out = pausebake_on("verify", r, &[]);
        assert_eq!(out.status.code(), Some(3), "{ours}: {}", describe_out(&out));
        assert!(
            stdout(&out).contains(&format!(
                "lists \"cri\" in disabled_plugins: {ours} refuses to start (\"invalid disabled plugin URI\")"
            )),
            "{ours}: {}",
            stdout(&out)
        );
        // the real containerd loads the file as it would at start, and refuses it
        let path = r.join("etc/containerd/config.toml");
        let dump = run_any(
            std::process::Command::new(c.bin("containerd"))
                .arg("--config")
                .arg(&path)
                .args(["config", "dump"]),
        );
        assert!(!dump.status.success(), "{ours} accepted it");
        assert!(
            stderr(&dump).contains("invalid disabled plugin URI \"cri\""),
            "{ours}: {}",
            stderr(&dump)
        );
        let out = pausebake_on("bake", r, &[]);
        assert!(out.status.success(), "{ours}: {}", describe_out(&out));
        c.config_dump(&path);
        let ctd = c.start(
            r,
            StartOpts {
                no_network: true,
                ..Default::default()
            },
        );
        sandbox_ready(&ctd, "uri");
        no_pull(&ctd);
    }
}

// --- k3s ----------------------------------------------------------------------------------

const K3S_DATA: &str = "/var/lib/rancher/k3s";
const K3S_CONFIG: &str = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";
const K3S_ROOT: &str = "/var/lib/rancher/k3s/agent/containerd";

/// What k3s's generator writes for containerd 2.x at every start (its built-in template,
/// `pkg/agent/templates`), in meaning, for `pause` (its `pause-image`).
fn k3s_generated(pause: &str) -> String {
    format!(
        "# Generated by k3s at start (its containerd 2.x template, in meaning).
version = 3
root = \"{K3S_ROOT}\"
state = \"/run/k3s/containerd\"

[grpc]
  address = \"/run/k3s/containerd/containerd.sock\"

[plugins.'io.containerd.internal.v1.opt']
  path = \"{K3S_DATA}/agent/containerd\"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = \"127.0.0.1\"
  stream_server_port = \"10010\"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = \"overlayfs\"
  disable_snapshot_annotations = true

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = \"{pause}\"
"
    )
}

/// A root with k3s installed as its install script leaves it, `pause-image` in config.yaml.
fn k3s_root() -> tempfile::TempDir {
    let root = tempdir();
    let r = root.path();
    // the binary itself cannot be had here: a stand-in without Go build info
    put(
        r,
        "/usr/local/bin/k3s",
        "#!/bin/sh\n# stand-in for the k3s binary\n",
    );
    put(
        r,
        "/etc/systemd/system/k3s.service",
        "[Unit]\nDescription=Lightweight Kubernetes\n\n[Service]\nType=notify\nExecStart=/usr/local/bin/k3s \\\n    server \\\n\n[Install]\nWantedBy=multi-user.target\n",
    );
    put(
        r,
        "/etc/rancher/k3s/config.yaml",
        "write-kubeconfig-mode: \"0644\"\npause-image: registry.k8s.io/pause:3.10\n",
    );
    root
}

#[test]
fn owners_k3s_bakes_its_own_store_under_its_pause_image() {
    let _lock = containerd_lock();
    // the distributions that ship containerd 2.x: 2.1 and the LTS 2.3
    for c in builds(&["2.1", "2.3"]) {
        let v = c.semver_string();
        let name = "registry.k8s.io/pause:3.10";

        // not baked: verify names the pull; containerd started as k3s starts it needs one
        let control = k3s_root();
        verify_names_the_pull(control.path(), &["--containerd-version", &v], name);
        put(control.path(), K3S_CONFIG, &k3s_generated(name));
        let ctd = start_as(&c, control.path(), K3S_CONFIG, K3S_ROOT);
        sandbox_needs_a_pull(&ctd);
        drop(ctd);

        let root = k3s_root();
        let r = root.path();
        // the containerd inside k3s cannot be read from the stand-in: never guessed
        let out = pausebake_on("bake", r, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", describe_out(&out));
        assert!(
            stderr(&out).contains("the containerd built into /usr/local/bin/k3s (k3s)")
                && stderr(&out).contains("pass --containerd-version"),
            "{}",
            stderr(&out)
        );
        let dry = pausebake_on("bake", r, &["--containerd-version", &v, "--dry-run"]);
        let text = stdout(&dry);
        assert!(
            text.contains(&format!("owner      k3s (/usr/local/bin/k3s): store {K3S_ROOT}, socket /run/k3s/containerd/containerd.sock"))
                && text.contains(&format!("asks for {name} (pause-image in /etc/rancher/k3s/config.yaml)")),
            "{}",
            describe_out(&dry)
        );
        let out = pausebake_on("bake", r, &["--containerd-version", &v]);
        assert!(out.status.success(), "{}", describe_out(&out));
        eprintln!("{}", stdout(&out));
        for untouched in [
            "var/lib/containerd",
            "etc/containerd",
            "etc/rancher/k3s/config.yaml.d",
        ] {
            assert!(!r.join(untouched).exists(), "bake wrote {untouched}");
        }
        assert!(r
            .join("var/lib/rancher/k3s/agent/containerd/io.containerd.metadata.v1.bolt/meta.db")
            .is_file());

        // first boot: k3s writes its config, then starts containerd with it
        put(r, K3S_CONFIG, &k3s_generated(name));
        let ctd = start_as(&c, r, K3S_CONFIG, K3S_ROOT);
        pinned(&ctd, name);
        sandbox_ready(&ctd, "k3s");
        no_pull(&ctd);
        eprintln!("containerd {v} as k3s starts it: sandbox READY offline");
    }
}

#[test]
fn owners_k3s_writes_a_name_given_into_a_settings_file_of_its_own() {
    let root = k3s_root();
    let r = root.path();
    let other = "example.invalid/pause:9";
    let out = pausebake_on(
        "bake",
        r,
        &["--containerd-version", "2.1.9", "--name", other],
    );
    assert!(out.status.success(), "{}", describe_out(&out));
    let own = read(r, "/etc/rancher/k3s/config.yaml.d/50-pausebake.yaml");
    assert!(own.contains(&format!("pause-image: \"{other}\"")), "{own}");
    assert!(
        read(r, "/etc/rancher/k3s/config.yaml").contains("pause-image: registry.k8s.io/pause:3.10")
    );
    let out = pausebake_on("verify", r, &["--containerd-version", "2.1.9"]);
    assert!(out.status.success(), "{}", describe_out(&out));
    assert!(
        stdout(&out).contains(&format!(
            "asks for {other} (pause-image in /etc/rancher/k3s/config.yaml.d/50-pausebake.yaml)"
        )),
        "{}",
        stdout(&out)
    );
    // a flag in the unit beats every file: refused, nothing written
    put(
        r,
        "/etc/systemd/system/k3s.service",
        "[Service]\nExecStart=/usr/local/bin/k3s server --pause-image=example.invalid/flag:1\n",
    );
    let out = pausebake_on(
        "configure",
        r,
        &[
            "--containerd-version",
            "2.1.9",
            "--sandbox-image",
            "example.invalid/p:2",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe_out(&out));
    assert!(
        stderr(&out).contains("k3s would still ask for \"example.invalid/flag:1\" (--pause-image in /etc/systemd/system/k3s.service)"),
        "{}",
        stderr(&out)
    );
    assert!(read(r, "/etc/rancher/k3s/config.yaml.d/50-pausebake.yaml").contains(other));
    // a template of the node's own replaces k3s's built-in one: assumed, and said
    put(
        r,
        "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl",
        "{{ template \"base\" . }}\n",
    );
    let out = pausebake_on("verify", r, &["--containerd-version", "2.1.9"]);
    assert!(
        stdout(&out).contains("warn owner: k3s renders /var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl instead of its built-in template"),
        "{}",
        stdout(&out)
    );
}

// --- EKS nodeadm --------------------------------------------------------------------------

const NODEADM_PAUSE: &str = "localhost/kubernetes/pause:latest";

/// What nodeadm writes to /etc/containerd/config.toml at every boot for containerd 2.x
/// (`config2.template.toml`), in meaning. The runc options it adds (systemd cgroups, its
/// base runtime spec) need a systemd node and are left out here.
fn nodeadm_generated() -> String {
    format!(
        "version = 3
root = \"/var/lib/containerd\"
state = \"/run/containerd\"

[grpc]
address = \"/run/containerd/containerd.sock\"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
sandbox = \"{NODEADM_PAUSE}\"

[plugins.'io.containerd.cri.v1.runtime'.containerd]
default_runtime_name = \"runc\"
discard_unpacked_layers = true

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
runtime_type = \"io.containerd.runc.v2\"
"
    )
}

fn nodeadm_root() -> tempfile::TempDir {
    let root = tempdir();
    let r = root.path();
    put(r, "/usr/bin/nodeadm", "#!/bin/sh\n# stand-in for nodeadm\n");
    put(
        r,
        "/etc/systemd/system/nodeadm-config.service",
        "[Unit]\nBefore=cloud-init.service\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/nodeadm init --skip run\n",
    );
    root
}

#[test]
fn owners_nodeadm_records_its_fixed_name_and_edits_no_config() {
    let _lock = containerd_lock();
    // the distributions that ship containerd 2.x: 2.1 and the LTS 2.3
    for c in builds(&["2.1", "2.3"]) {
        let v = c.semver_string();
        let control = nodeadm_root();
        verify_names_the_pull(control.path(), &["--containerd-version", &v], NODEADM_PAUSE);
        put(
            control.path(),
            "/etc/containerd/config.toml",
            &nodeadm_generated(),
        );
        let ctd = start_as(
            &c,
            control.path(),
            "/etc/containerd/config.toml",
            "/var/lib/containerd",
        );
        sandbox_needs_a_pull(&ctd);
        drop(ctd);

        let root = nodeadm_root();
        let r = root.path();
        let extra = "registry.k8s.io/pause:3.10";
        let out = pausebake_on("bake", r, &["--containerd-version", &v, "--name", extra]);
        assert!(out.status.success(), "{}", describe_out(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "name       {NODEADM_PAUSE} (what Amazon EKS nodeadm (AL2023) asks for"
            )) && text.contains(
                "no config edit: nodeadm rewrites /etc/containerd/config.toml at every boot"
            ),
            "{text}"
        );
        assert!(
            !r.join("etc/containerd").exists(),
            "bake wrote a config nodeadm rewrites"
        );

        put(r, "/etc/containerd/config.toml", &nodeadm_generated());
        let ctd = start_as(&c, r, "/etc/containerd/config.toml", "/var/lib/containerd");
        pinned(&ctd, NODEADM_PAUSE);
        // the --name given is recorded too
        assert!(ctd.cri().image_status(extra).unwrap().is_some());
        sandbox_ready(&ctd, "nodeadm");
        no_pull(&ctd);
        eprintln!("containerd {v} with nodeadm's config: sandbox READY offline");
    }
}

// --- k0s ----------------------------------------------------------------------------------

const K0S_CONFIG: &str = "/etc/k0s/containerd.toml";
const K0S_ROOT: &str = "/var/lib/k0s/containerd";
const K0S_PAUSE: &str = "quay.io/k0sproject/pause:3.10.2-0";

/// What k0s writes to /etc/k0s/containerd.toml while it manages the file, in meaning.
fn k0s_managed() -> String {
    format!(
        "# k0s_managed=true
# Generated by k0s at start (its containerd configurer, in meaning).
version = 3
imports = [\"/etc/k0s/containerd.d/*.toml\"]

[plugins.\"io.containerd.cri.v1.images\".pinned_images]
  sandbox = \"{K0S_PAUSE}\"
"
    )
}

fn k0s_root() -> tempfile::TempDir {
    let root = tempdir();
    let r = root.path();
    put(r, "/usr/local/bin/k0s", "#!/bin/sh\n# stand-in for k0s\n");
    put(r, K0S_CONFIG, &k0s_managed());
    fs::create_dir_all(r.join("etc/k0s/containerd.d")).unwrap();
    root
}

#[test]
fn owners_k0s_bakes_through_a_drop_in_and_leaves_the_managed_file() {
    let _lock = containerd_lock();
    // the distributions that ship containerd 2.x: 2.1 and the LTS 2.3
    for c in builds(&["2.1", "2.3"]) {
        let v = c.semver_string();
        let name = "registry.k8s.io/pause:3.10";
        let control = k0s_root();
        verify_names_the_pull(control.path(), &["--containerd-version", &v], K0S_PAUSE);
        let ctd = start_as(&c, control.path(), K0S_CONFIG, K0S_ROOT);
        sandbox_needs_a_pull(&ctd);
        drop(ctd);

        let root = k0s_root();
        let r = root.path();
        let out = pausebake_on("bake", r, &["--name", name]);
        assert_eq!(out.status.code(), Some(1), "{}", describe_out(&out));
        assert!(
            stderr(&out)
                .contains("k0s unpacks its containerd into /var/lib/k0s/bin at first start")
                && stderr(&out).contains("pass --containerd-version"),
            "{}",
            stderr(&out)
        );
        let out = pausebake_on("bake", r, &["--containerd-version", &v, "--name", name]);
        assert!(out.status.success(), "{}", describe_out(&out));
        assert_eq!(
            read(r, K0S_CONFIG),
            k0s_managed(),
            "the managed file changed"
        );
        let drop_in = read(r, "/etc/k0s/containerd.d/pausebake.toml");
        assert!(drop_in.starts_with("version = 3\n"), "{drop_in}");
        assert!(!r.join("var/lib/containerd").exists());

        let ctd = start_as(&c, r, K0S_CONFIG, K0S_ROOT);
        pinned(&ctd, name);
        sandbox_ready(&ctd, "k0s");
        no_pull(&ctd);
        assert_eq!(read(r, K0S_CONFIG), k0s_managed());
        eprintln!("containerd {v} with k0s's flags: sandbox READY offline");
    }
}

// --- RKE2 ---------------------------------------------------------------------------------

const RKE2_CONFIG: &str = "/var/lib/rancher/rke2/agent/etc/containerd/config.toml";
const RKE2_ROOT: &str = "/var/lib/rancher/rke2/agent/containerd";

#[test]
fn owners_rke2_bakes_its_default_pause_verbatim_and_normalized() {
    let _lock = containerd_lock();
    let Some(c) = builds(&["2.1"]).into_iter().next() else {
        return;
    };
    let v = c.semver_string();
    // RKE2's default as its image resolver names it (go-containerregistry's `Name()`,
    // `pkg/images/images.go`): CRI normalizes it, containerd 2.3.0 to 2.3.3 would not
    let pause = "index.docker.io/rancher/mirrored-pause:3.10.2";
    let normalized = "docker.io/rancher/mirrored-pause:3.10.2";
    let layout = || {
        let root = tempdir();
        let r = root.path();
        put(r, "/usr/local/bin/rke2", "#!/bin/sh\n# stand-in for rke2\n");
        put(r, "/etc/rancher/rke2/config.yaml", "token: secret\n");
        root
    };
    // what RKE2 (k3s's agent code) writes at start, with its data directory
    let generated = k3s_generated(pause).replace(K3S_DATA, "/var/lib/rancher/rke2");
    let control = layout();
    verify_names_the_pull(control.path(), &["--containerd-version", &v], normalized);
    put(control.path(), RKE2_CONFIG, &generated);
    let ctd = start_as(&c, control.path(), RKE2_CONFIG, RKE2_ROOT);
    sandbox_needs_a_pull(&ctd);
    drop(ctd);

    let root = layout();
    let r = root.path();
    let out = pausebake_on("bake", r, &["--containerd-version", &v]);
    assert!(out.status.success(), "{}", describe_out(&out));
    assert!(!r.join("var/lib/containerd").exists());
    assert!(!r.join("etc/rancher/rke2/config.yaml.d").exists());
    put(r, RKE2_CONFIG, &generated);
    let ctd = start_as(&c, r, RKE2_CONFIG, RKE2_ROOT);
    let listed = stdout(&ctd.ctr_ok(&["-n", "k8s.io", "images", "ls", "-q"]));
    assert!(
        listed.lines().any(|l| l == pause) && listed.lines().any(|l| l == normalized),
        "both names recorded:\n{listed}"
    );
    sandbox_ready(&ctd, "rke2");
    no_pull(&ctd);
    eprintln!("containerd {v} as RKE2 starts it: sandbox READY offline");
}

/// k3s's agent code puts the server's `system-default-registry` before the pause image it
/// writes into containerd's config, unless the image starts with it already
/// (`pkg/agent/config/config.go`); RKE2's resolver gives its default that registry
/// (`pkg/images/images.go`). On a server root, read from its config.yaml or RKE2's
/// environment file, the name is recorded as the node will ask for it, and a `--name` is
/// written so that the node asks for exactly that.
#[test]
fn owners_k3s_and_rke2_put_the_system_default_registry_before_the_pause_image() {
    let _lock = containerd_lock();
    let Some(c) = builds(&["2.1"]).into_iter().next() else {
        return;
    };
    let v = c.semver_string();
    let k3s = || {
        let root = k3s_root();
        put(
            root.path(),
            "/etc/rancher/k3s/config.yaml",
            "system-default-registry: registry.example.invalid\n",
        );
        root
    };
    let rke2 = || {
        let root = tempdir();
        let r = root.path();
        put(r, "/usr/local/bin/rke2", "#!/bin/sh\n# stand-in for rke2\n");
        put(r, "/etc/rancher/rke2/config.yaml", "token: secret\n");
        put(
            r,
            "/etc/default/rke2-server",
            "RKE2_SYSTEM_DEFAULT_REGISTRY=\"registry.example.invalid/mirror\"\n",
        );
        root
    };
    let k3s_default = "registry.example.invalid/rancher/mirrored-pause:3.6";
    let rke2_default = "registry.example.invalid/mirror/rancher/mirrored-pause:3.10.2";
    let given = "registry.k8s.io/pause:3.10";
    let k3s_given = "registry.example.invalid/registry.k8s.io/pause:3.10";
    let rke2_data = |text: String| text.replace(K3S_DATA, "/var/lib/rancher/rke2");
    for (what, layout, args, asked, config, node_root, own) in [
        (
            "k3s",
            &k3s as &dyn Fn() -> tempfile::TempDir,
            &[][..],
            k3s_default,
            K3S_CONFIG,
            K3S_ROOT,
            None,
        ),
        (
            "k3s --name",
            &k3s,
            &["--name", given][..],
            k3s_given,
            K3S_CONFIG,
            K3S_ROOT,
            Some("/etc/rancher/k3s/config.yaml.d/50-pausebake.yaml"),
        ),
        (
            "rke2",
            &rke2,
            &[][..],
            rke2_default,
            RKE2_CONFIG,
            RKE2_ROOT,
            None,
        ),
    ] {
        let generated = |name: &str| {
            let text = k3s_generated(name);
            if what.starts_with("rke2") {
                rke2_data(text)
            } else {
                text
            }
        };
        // not baked: verify names the pull of the prefixed default
        let control = layout();
        let pulls = if what.starts_with("rke2") {
            rke2_default
        } else {
            k3s_default
        };
        verify_names_the_pull(control.path(), &["--containerd-version", &v], pulls);

        let root = layout();
        let r = root.path();
        let mut bake = vec!["--containerd-version", v.as_str()];
        bake.extend_from_slice(args);
        let out = pausebake_on("bake", r, &bake);
        assert!(out.status.success(), "{what}: {}", describe_out(&out));
        if let Some(own) = own {
            let text = read(r, own);
            assert!(
                text.contains(&format!("pause-image: \"{asked}\"")),
                "{what}: {text}"
            );
        }
        // first boot: the generator writes the prefixed name, containerd starts with it
        put(r, config, &generated(asked));
        let ctd = start_as(&c, r, config, node_root);
        pinned(&ctd, asked);
        sandbox_ready(&ctd, "sdr");
        no_pull(&ctd);
        eprintln!("containerd {v} as {what} starts it, system-default-registry set: sandbox READY offline");
    }
}

// --- MicroK8s -----------------------------------------------------------------------------

const SNAP_DATA: &str = "/var/snap/microk8s/current";
const MICROK8S_TEMPLATE: &str = "/var/snap/microk8s/current/args/containerd-template.toml";
const MICROK8S_ROOT: &str = "/var/snap/microk8s/common/var/lib/containerd";

/// MicroK8s's containerd template (its default args), in meaning: version 2, the sandbox
/// image in the CRI table, the snap's paths as `${…}` placeholders.
const MICROK8S_TEMPLATE_TEXT: &str =
    "# containerd template of MicroK8s: rendered into args/containerd.toml at every start
version = 2
oom_score = 0

[grpc]
  uid = 0
  gid = 0

[plugins.\"io.containerd.grpc.v1.cri\"]
  stream_server_address = \"127.0.0.1\"
  stream_server_port = \"0\"
  sandbox_image = \"registry.k8s.io/pause:3.10\"

  [plugins.\"io.containerd.grpc.v1.cri\".containerd]
    snapshotter = \"${SNAPSHOTTER}\"
    default_runtime_name = \"${RUNTIME}\"

    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]
      runtime_type = \"io.containerd.runc.v2\"

  [plugins.\"io.containerd.grpc.v1.cri\".cni]
    bin_dir = \"${SNAP_DATA}/opt/cni/bin\"
    conf_dir = \"${SNAP_DATA}/args/cni-network\"
";

/// What `run-containerd-with-args` does before each start: the template with the snap's
/// values in, written to args/containerd.toml; returns that path.
fn microk8s_render(root: &Path) -> String {
    let rendered = read(root, MICROK8S_TEMPLATE)
        .replace("${SNAPSHOTTER}", "overlayfs")
        .replace("${RUNTIME}", "runc")
        .replace("${SNAP_DATA}", SNAP_DATA);
    let path = format!("{SNAP_DATA}/args/containerd.toml");
    put(root, &path, &rendered);
    path
}

#[test]
fn owners_microk8s_bakes_through_its_template() {
    let _lock = containerd_lock();
    let Some(c) = builds(&["2.1"]).into_iter().next() else {
        return;
    };
    let v = c.semver_string();
    let layout = || {
        let root = tempdir();
        let r = root.path();
        fs::create_dir_all(r.join("snap/microk8s")).unwrap();
        fs::create_dir_all(r.join("var/snap/microk8s/7001/args")).unwrap();
        std::os::unix::fs::symlink("7001", r.join("var/snap/microk8s/current")).unwrap();
        put(r, MICROK8S_TEMPLATE, MICROK8S_TEMPLATE_TEXT);
        root
    };
    let control = layout();
    verify_names_the_pull(
        control.path(),
        &["--containerd-version", &v],
        "registry.k8s.io/pause:3.10",
    );
    let config = microk8s_render(control.path());
    let ctd = start_as(&c, control.path(), &config, MICROK8S_ROOT);
    sandbox_needs_a_pull(&ctd);
    drop(ctd);

    let root = layout();
    let r = root.path();
    let name = "registry.k8s.io/pause:3.10.1";
    let out = pausebake_on("bake", r, &["--containerd-version", &v, "--name", name]);
    assert!(out.status.success(), "{}", describe_out(&out));
    let template = read(r, MICROK8S_TEMPLATE);
    assert_eq!(
        template,
        MICROK8S_TEMPLATE_TEXT.replace("pause:3.10\"", "pause:3.10.1\""),
        "only the sandbox image changed in the template"
    );
    assert!(!r.join("var/lib/containerd").exists());
    let config = microk8s_render(r);
    let ctd = start_as(&c, r, &config, MICROK8S_ROOT);
    pinned(&ctd, name);
    sandbox_ready(&ctd, "microk8s");
    no_pull(&ctd);
    eprintln!("containerd {v} as MicroK8s starts it: sandbox READY offline");
}

// --- Flatcar ------------------------------------------------------------------------------

const FLATCAR_CONFIG: &str = "/usr/share/containerd/config.toml";

/// Flatcar's containerd config on its read-only /usr, in meaning: version 2, no sandbox
/// image (containerd's built-in default applies).
const FLATCAR_CONFIG_TEXT: &str = "# Flatcar's containerd config (the unit's CONTAINERD_CONFIG)
version = 2
root = \"/var/lib/containerd\"
state = \"/run/containerd\"
oom_score = -999

[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]
  runtime_type = \"io.containerd.runc.v2\"
";

#[test]
fn owners_flatcar_bakes_the_name_its_read_only_config_leaves_to_containerd() {
    let _lock = containerd_lock();
    let Some(c) = builds(&["2.1"]).into_iter().next() else {
        return;
    };
    let v = c.semver_string();
    let default = "registry.k8s.io/pause:3.10";
    let layout = || {
        let root = tempdir();
        put(root.path(), FLATCAR_CONFIG, FLATCAR_CONFIG_TEXT);
        put(
            root.path(),
            "/usr/lib/systemd/system/containerd.service",
            "[Service]\nEnvironment=CONTAINERD_CONFIG=/usr/share/containerd/config.toml\nExecStart=/usr/bin/containerd --config ${CONTAINERD_CONFIG}\n",
        );
        root
    };
    let control = layout();
    verify_names_the_pull(control.path(), &["--containerd-version", &v], default);
    let ctd = start_as(&c, control.path(), FLATCAR_CONFIG, "/var/lib/containerd");
    sandbox_needs_a_pull(&ctd);
    drop(ctd);

    let root = layout();
    let r = root.path();
    let other = "example.invalid/pause:1";
    let out = pausebake_on("bake", r, &["--containerd-version", &v, "--name", other]);
    assert!(out.status.success(), "{}", describe_out(&out));
    assert!(
        stdout(&out).contains(
            "no config edit: Flatcar's containerd reads /usr/share/containerd/config.toml"
        ),
        "{}",
        stdout(&out)
    );
    assert_eq!(read(r, FLATCAR_CONFIG), FLATCAR_CONFIG_TEXT);
    assert!(!r.join("etc/containerd").exists());
    let ctd = start_as(&c, r, FLATCAR_CONFIG, "/var/lib/containerd");
    pinned(&ctd, default);
    assert!(ctd.cri().image_status(other).unwrap().is_some());
    sandbox_ready(&ctd, "flatcar");
    no_pull(&ctd);
    eprintln!("containerd {v} as Flatcar starts it: sandbox READY offline");
}

// --- the containerd inside another program ------------------------------------------------

/// A real Go program built the way k3s is: its `go.mod` requires containerd's module
/// (`github.com/containerd/containerd/v2 v2.1.5`) and replaces it (here by a local directory,
/// as nothing may be downloaded), so its build info carries the module lines pausebake reads.
fn go_program_requiring_containerd(dir: &Path) -> std::path::PathBuf {
    put(
        dir,
        "/ctd/go.mod",
        "module github.com/containerd/containerd/v2\n\ngo 1.19\n",
    );
    put(
        dir,
        "/ctd/version.go",
        "package version\n\nvar Version = \"2.1.5\"\n",
    );
    put(
        dir,
        "/main/go.mod",
        "module example.invalid/standin\n\ngo 1.19\n\nrequire github.com/containerd/containerd/v2 v2.1.5\n\nreplace github.com/containerd/containerd/v2 => ../ctd\n",
    );
    put(
        dir,
        "/main/main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\tversion \"github.com/containerd/containerd/v2\"\n)\n\nfunc main() { fmt.Println(version.Version) }\n",
    );
    let out = dir.join("standin");
    run_ok(
        std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(dir.join("main"))
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", dir.join("cache"))
            .env("GOPATH", dir.join("gopath")),
    );
    out
}

#[test]
fn owners_k3s_containerd_version_is_read_from_the_binarys_go_build_info() {
    if !have("go") {
        return;
    }
    let work = tempdir();
    let program = go_program_requiring_containerd(work.path());
    let root = k3s_root();
    let r = root.path();
    fs::copy(&program, r.join("usr/local/bin/k3s")).unwrap();
    let out = pausebake_on("bake", r, &["--dry-run"]);
    assert!(out.status.success(), "{}", describe_out(&out));
    assert!(
        stdout(&out).contains(
            "containerd 2.1.5 (/usr/local/bin/k3s (Go build info: its containerd module))"
        ),
        "{}",
        stdout(&out)
    );
}
