//! The containerd test harness: every containerd build the tests run (the system 1.6 and the
//! 1.7 and 2.x that `tests/fetch-containerd.sh` unpacks), started on an offline root the way
//! a node booted from that root would start it, but with its state, sockets and log in a
//! private run directory.
//!
//! Isolation: containerd runs under `unshare --mount` with a private tmpfs on `/run`, so its
//! shims, runc state (`/run/containerd/runc`) and shim sockets (`/run/containerd/s`) never
//! meet a system containerd or another test; with `no_network` also under `unshare --net`
//! (only a loopback, which CRI's streaming server needs). `ctr` runs inside that mount
//! namespace (`nsenter`), so its FIFOs are where the shims look. Stopping kills containerd by
//! pid, then every process left in its mount namespace and their descendants (shims, pause).

#![allow(dead_code)] // each test module uses a different part

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use toml_edit::{value, DocumentMut, Item, Table};

use crate::cri::Cri;
use crate::harness::{
    containerd_lock, describe, have, is_root, run_any, skip, skopeo, tempdir, ContainerdLock,
};

/// How long containerd may take to answer CRI after starting.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long containerd gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One containerd build: its binaries (`containerd`, `ctr`, `containerd-shim-runc-v2`) in
/// `bin_dir`.
#[derive(Clone, Debug)]
pub struct Containerd {
    /// As `containerd --version` prints it, e.g. `1.6.20~ds1`, `2.1.9+unknown`.
    pub version: String,
    pub bin_dir: PathBuf,
}

/// Where `tests/fetch-containerd.sh` unpacks the 1.7 and 2.1 packages and containerd 2.3.4.
pub fn cache_dir() -> PathBuf {
    crate::harness::cache_dir().join("containerd")
}

/// Every containerd build available, oldest first: the system one (`/usr/bin/containerd`,
/// 1.6 on bookworm) and those under [`cache_dir`] (1.7, 2.1, 2.3). The series the tests must
/// cover (1.6, 1.7, 2.x before 2.3, 2.3) each count as a skip when missing, which fails
/// under CI. Also skips (returns
/// nothing) when not root or `unshare`/`nsenter`/`runc` are missing.
pub fn versions() -> Vec<Containerd> {
    if !is_root() {
        skip("containerd tests need root");
        return Vec::new();
    }
    if !(have("unshare") && have("nsenter") && have("runc") && have("ip")) {
        return Vec::new();
    }
    let mut dirs = vec![PathBuf::from("/usr/bin")];
    if let Ok(entries) = fs::read_dir(cache_dir()) {
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("containerd-"))
            })
            .map(|p| p.join("usr/bin"))
            .collect();
        // read_dir has no order; the list must be stable.
        found.sort();
        dirs.extend(found);
    }
    let mut all: Vec<Containerd> = dirs
        .into_iter()
        .filter(|d| d.join("containerd").is_file())
        .filter_map(|bin_dir| {
            let out = Command::new(bin_dir.join("containerd"))
                .arg("--version")
                .output()
                .ok()?;
            // "containerd github.com/containerd/containerd 1.6.20~ds1 <revision>" (2.3.4:
            // "containerd github.com/containerd/containerd/v2 2.3.4 v2.3.4")
            let version = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .nth(2)?
                .to_string();
            Some(Containerd { version, bin_dir })
        })
        .collect();
    all.sort_by_key(|c| c.semver());
    for series in ["1.6", "1.7", "2.", "2.3"] {
        let found = all.iter().any(|c| match series {
            // a 2.x before 2.3: config version 3
            "2." => c.semver().0 == 2 && c.semver().1 < 3,
            _ => c.version.starts_with(series),
        });
        if !found {
            skip(&format!(
                "no containerd {series}x (run tests/fetch-containerd.sh)"
            ));
        }
    }
    all
}

/// How to start containerd.
#[derive(Clone, Debug, Default)]
pub struct StartOpts {
    /// Run in a fresh network namespace with only a loopback: nothing can be pulled.
    pub no_network: bool,
    /// TOML deep-merged over the effective config last (values override), e.g.
    /// `"[debug]\nlevel = \"debug\"\n"`. Use the key names of the config's `version`.
    pub config_extra: String,
    /// Environment variables for containerd, inherited by its shims (e.g. `QEMU_LD_PREFIX`
    /// for a foreign build running under qemu-user).
    pub env: Vec<(String, String)>,
    /// How long containerd may take to answer CRI; default [`START_TIMEOUT`]. Emulated
    /// builds on a busy machine need longer.
    pub start_timeout: Option<Duration>,
    /// Run containerd as a node's supervisor (systemd's `Restart=always`) would: under a
    /// shell loop that starts it again whenever it exits ([`Running::restart_command`]),
    /// reading the root's own `etc/containerd/config.toml`, so that a restart picks up an
    /// edit of it. Only its root, state and socket are given as flags (under a private
    /// `/run` every other socket is private already); what a test VM needs besides must be
    /// in that file ([`test_vm_toml`]); `config_extra` must be empty. [`Running::pid`] is
    /// then the loop's.
    pub supervised: bool,
    /// The main config as a path on the node (inside the root), for a distribution that
    /// starts containerd with its own `--config` (default `/etc/containerd/config.toml`).
    pub config: Option<String>,
    /// containerd's `--root` as the distribution passes it (a path on the node): it beats
    /// the config's `root`, and `--root`, `--state` and `--address` are then given as flags.
    pub node_root: Option<String>,
    /// CRI is expected to be off (`disabled_plugins`): ready once the socket answers CRI
    /// with `unknown service`.
    pub no_cri: bool,
}

impl Containerd {
    /// The sandbox image a `config dump` of this containerd names (2.x: the CRI images
    /// plugin's `pinned_images.sandbox`; 1.x: CRI's `sandbox_image`).
    pub fn sandbox_in_dump(&self, dump: &str) -> Option<String> {
        let doc: toml_edit::DocumentMut = dump.parse().expect("config dump prints TOML");
        let key: &[&str] = if self.semver().0 >= 2 {
            &[
                "plugins",
                "io.containerd.cri.v1.images",
                "pinned_images",
                "sandbox",
            ]
        } else {
            &["plugins", "io.containerd.grpc.v1.cri", "sandbox_image"]
        };
        key.iter()
            .try_fold(doc.as_item(), |item, k| item.get(k))
            .and_then(|i| i.as_str())
            .map(str::to_string)
    }

    /// (major, minor, patch) of [`Containerd::version`].
    pub fn semver(&self) -> (u32, u32, u32) {
        let mut parts = self.version.split(|c: char| !c.is_ascii_digit());
        let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (next(), next(), next())
    }

    /// "1.6.20": the version pausebake reads from the binary.
    pub fn semver_string(&self) -> String {
        let (major, minor, patch) = self.semver();
        format!("{major}.{minor}.{patch}")
    }

    /// "1.6", "1.7", "2.1": for messages and version-dependent expectations.
    pub fn series(&self) -> String {
        let (major, minor, _) = self.semver();
        format!("{major}.{minor}")
    }

    /// The config `version` this build writes natively: 2 for 1.x, 3 for 2.0 to 2.2, 4 from
    /// 2.3.
    pub fn native_config_version(&self) -> i64 {
        match self.semver() {
            (0..=1, _, _) => 2,
            (2, 0..=2, _) => 3,
            _ => 4,
        }
    }

    /// A binary of this build, e.g. `bin("ctr")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// `containerd config default` of this build (its upstream default config).
    pub fn config_default(&self) -> String {
        let out = crate::harness::run_ok(
            Command::new(self.bin("containerd"))
                .args(["config", "default"])
                .env("PATH", self.path_env()),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `containerd config dump` of this build for the config file `config`: the merged
    /// config it runs with (2.x: after migrating a version 1 or 2 file).
    pub fn config_dump(&self, config: &Path) -> String {
        let out = crate::harness::run_ok(
            Command::new(self.bin("containerd"))
                .arg("--config")
                .arg(config)
                .args(["config", "dump"])
                .env("PATH", self.path_env()),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// PATH for containerd: this build's directory first, so it starts its own shim.
    fn path_env(&self) -> String {
        format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.bin_dir.display()
        )
    }

    /// Starts this containerd on the offline root `root` as a node booted from it would: the
    /// config is `root/etc/containerd/config.toml` when present (else this build's built-in
    /// defaults), with only what must differ for a test rewritten (see
    /// [`effective_config`]); containerd's `root` is the configured one inside `root`
    /// (default `root/var/lib/containerd`). `root` itself is never written by the harness.
    /// Panics with the log when containerd does not come up.
    pub fn start(&self, root: &Path, opts: StartOpts) -> Running {
        let lock = containerd_lock();
        let run = tempdir();
        let config_text = effective_config_at(
            self,
            root,
            opts.config
                .as_deref()
                .unwrap_or("/etc/containerd/config.toml"),
            opts.node_root.as_deref(),
            run.path(),
            &opts.config_extra,
        );
        let config = run.path().join("config.toml");
        fs::write(&config, &config_text).expect("writing the test containerd config");
        let log_path = run.path().join("containerd.log");
        let log = fs::File::create(&log_path).expect("creating the containerd log");
        let address = run.path().join("containerd.sock");

        // A private /run (shim sockets, runc state, NRI) and, with no_network, no network
        // but a loopback. `exec` keeps the child's pid equal to containerd's.
        let network = if opts.no_network {
            "ip link set lo up && "
        } else {
            ""
        };
        let daemon = if opts.supervised || opts.node_root.is_some() {
            r#""$0" --log-level debug --config "$1" --root "$2" --state "$3" --address "$4""#
        } else {
            r#""$0" --log-level debug --config "$1""#
        };
        let lifecycle = if opts.supervised {
            format!("while :; do {daemon}; sleep 0.1; done")
        } else {
            format!("exec {daemon}")
        };
        let script = format!("mount -t tmpfs -o mode=0755 tmpfs /run && {network}{lifecycle}");
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private"]);
        if opts.no_network {
            cmd.arg("--net");
        }
        let config = if opts.supervised {
            assert!(opts.config_extra.is_empty(), "config_extra with supervised");
            root.join("etc/containerd/config.toml")
        } else {
            config
        };
        let data_root = data_root(&config_text);
        cmd.args(["--", "sh", "-c", &script])
            .arg(self.bin("containerd"))
            .arg(&config)
            .args([&data_root, &run.path().join("state"), &address])
            .env("PATH", self.path_env())
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd));
        let pid = child.id();
        let mut running = Running {
            containerd: self.clone(),
            child,
            pid,
            mnt_ns: None,
            address,
            config,
            log: log_path,
            data_root,
            run,
            stopped: false,
            _lock: lock,
        };
        running.wait_ready(opts.start_timeout.unwrap_or(START_TIMEOUT), opts.no_cri);
        running
    }
}

/// containerd's `root` from an effective config.
fn data_root(config_text: &str) -> PathBuf {
    let doc: DocumentMut = config_text.parse().expect("parsing the effective config");
    let configured = doc
        .get("root")
        .and_then(|v| v.as_str())
        .expect("the effective config sets root");
    PathBuf::from(configured)
}

/// Maps an absolute path of the node to the same path inside the offline `root` (no symlink
/// resolution: test roots are plain directories).
fn in_root(root: &Path, node_path: &str) -> PathBuf {
    root.join(node_path.trim_start_matches('/'))
}

/// The config a test containerd runs with: `root/etc/containerd/config.toml` (or, absent, an
/// empty file at this build's native version) with exactly these changes:
/// - `root` = the configured root (default `/var/lib/containerd`) inside `root`;
/// - `state`, the gRPC and ttRPC addresses, the `opt` plugin's path and CNI's `conf_dir`
///   inside `run`; `metrics.address` and `debug.address` emptied (no listeners); a version 4
///   file (2.3) has its server addresses in the `io.containerd.server.v1.*` plugin tables
///   (it does not read `[grpc]`), the others at the top level;
/// - CRI's `restrict_oom_score_adj = true` (the sandbox cannot lower OOM scores);
/// - absolute `imports` mapped into `root`;
/// - then `extra` merged over it.
///
/// Key names follow the file's `version` (1: short plugin names, 2: `io.containerd.grpc.v1.cri`,
/// 3: `io.containerd.cri.v1.runtime`); containerd migrates older versions itself.
/// The sandbox image setting is never touched: it is what the tests check.
pub fn effective_config(c: &Containerd, root: &Path, run: &Path, extra: &str) -> String {
    effective_config_at(c, root, "/etc/containerd/config.toml", None, run, extra)
}

/// [`effective_config`] of the main config at `config` (a path on the node), with
/// containerd's `root` set to `node_root` when the distribution passes `--root`.
pub fn effective_config_at(
    c: &Containerd,
    root: &Path,
    config: &str,
    node_root: Option<&str>,
    run: &Path,
    extra: &str,
) -> String {
    let path = in_root(root, config);
    let mut doc: DocumentMut = match fs::read_to_string(&path) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut doc = DocumentMut::new();
            doc["version"] = value(c.native_config_version());
            doc
        }
        Err(e) => panic!("reading {}: {e}", path.display()),
    };
    let version = doc.get("version").and_then(|v| v.as_integer()).unwrap_or(1);
    let configured_root = node_root
        .or(doc.get("root").and_then(|v| v.as_str()))
        .unwrap_or("/var/lib/containerd")
        .to_string();
    let p = |p: PathBuf| p.display().to_string();
    doc["root"] = value(p(in_root(root, &configured_root)));
    doc["state"] = value(p(run.join("state")));
    let top = doc.as_table_mut();
    let mut address = |server: &str, to: String| {
        let table = format!("io.containerd.server.v1.{server}");
        let path: Vec<&str> = if version >= 4 {
            vec!["plugins", &table, "address"]
        } else {
            vec![server, "address"]
        };
        set(top, &path, to);
    };
    address("grpc", p(run.join("containerd.sock")));
    address("ttrpc", p(run.join("containerd.sock.ttrpc")));
    address("debug", String::new());
    address("metrics", String::new());

    if let Some(imports) = doc.get_mut("imports").and_then(|i| i.as_array_mut()) {
        let dir = in_root(root, config).parent().unwrap().to_path_buf();
        let mapped: Vec<String> = imports
            .iter()
            .filter_map(|v| v.as_str())
            .map(|s| {
                if s.starts_with('/') {
                    p(in_root(root, s))
                } else {
                    p(dir.join(s))
                }
            })
            .collect();
        imports.clear();
        for m in mapped {
            imports.push(m);
        }
    }

    // 2.x gives a version 0/1 file the merged version (3) after renaming its short plugin
    // names: CRI then reads the version 3 tables only
    let names = if version <= 1 && c.semver().0 >= 2 {
        3
    } else {
        version
    };
    set_test_vm(doc.as_table_mut(), names, run);

    let extra: DocumentMut = extra
        .parse()
        .unwrap_or_else(|e| panic!("parsing config_extra: {e}\n{extra}"));
    merge(doc.as_table_mut(), extra.as_table());
    doc.to_string()
}

/// Sets what containerd needs in a test VM, under the plugin ids of config `version`:
/// CRI's `restrict_oom_score_adj` (a sandboxed VM refuses lowering the OOM score), and CNI's
/// and the `opt` plugin's directories under `dir` (nothing written outside the test's dirs).
fn set_test_vm(top: &mut Table, version: i64, dir: &Path) {
    let (cri, opt) = match version {
        1 => ("cri", "opt"),
        2 => ("io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"),
        _ => (
            "io.containerd.cri.v1.runtime",
            "io.containerd.internal.v1.opt",
        ),
    };
    let p = |p: PathBuf| p.display().to_string();
    set(top, &["plugins", cri, "restrict_oom_score_adj"], true);
    set(
        top,
        &["plugins", cri, "cni", "conf_dir"],
        p(dir.join("cni/net.d")),
    );
    set(top, &["plugins", opt, "path"], p(dir.join("opt")));
}

/// What [`effective_config`] adds for a sandboxed VM, as TOML of config `version` for a
/// root's own config file (a [`StartOpts::supervised`] containerd reads it unchanged):
/// `restrict_oom_score_adj`, and the CNI and `opt` directories under `dir`. On 1.x it goes
/// into the CRI plugin's table, which must then hold the sandbox image too (`sandbox`).
pub fn test_vm_toml(version: i64, dir: &Path, sandbox: &str) -> String {
    let mut doc = DocumentMut::new();
    set_test_vm(doc.as_table_mut(), version, dir);
    let images: DocumentMut = sandbox_image_toml(version, sandbox).parse().unwrap();
    merge(doc.as_table_mut(), images.as_table());
    doc.to_string()
}

/// Sets the value at `path`, creating missing tables as `[section]` tables (an existing
/// inline or dotted table is kept as it is).
fn set(table: &mut Table, path: &[&str], v: impl Into<toml_edit::Value>) {
    let (last, parents) = path.split_last().expect("a non-empty key path");
    let mut t: &mut dyn toml_edit::TableLike = table;
    for key in parents {
        if t.get(key).is_none() {
            let mut new = Table::new();
            // only the leaf tables get a header of their own
            new.set_implicit(true);
            t.insert(key, Item::Table(new));
        }
        t = t
            .get_mut(key)
            .and_then(|i| i.as_table_like_mut())
            .unwrap_or_else(|| panic!("config key {key} is not a table"));
    }
    t.insert(last, Item::Value(v.into()));
}

/// Deep-merges `from` into `to`: tables recursively, every other value replaced.
fn merge(to: &mut Table, from: &Table) {
    for (key, item) in from.iter() {
        match (to.get_mut(key), item.as_table_like()) {
            (Some(existing), Some(from_table)) if existing.is_table_like() => {
                let mut t = Table::new();
                for (k, v) in from_table.iter() {
                    t.insert(k, v.clone());
                }
                if let Some(existing_table) = existing.as_table_mut() {
                    merge(existing_table, &t);
                } else {
                    // an inline table in `to`: replace it with a normal one holding both
                    let mut merged = Table::new();
                    if let Some(inline) = existing.as_inline_table() {
                        for (k, v) in inline.iter() {
                            merged.insert(k, Item::Value(v.clone()));
                        }
                    }
                    merge(&mut merged, &t);
                    *existing = Item::Table(merged);
                }
            }
            _ => {
                to.insert(key, item.clone());
            }
        }
    }
}

/// A containerd started by [`Containerd::start`]; stopped (with everything it started) by
/// [`Running::stop`] or on drop.
pub struct Running {
    pub containerd: Containerd,
    child: Child,
    pid: u32,
    /// containerd's mount namespace (`/proc/<pid>/ns/mnt` link), once it has its own, and
    /// an open handle on it: namespace inode numbers are reused once a namespace dies, so
    /// the handle keeps it alive for as long as this `Running` may compare against it.
    mnt_ns: Option<(String, fs::File)>,
    address: PathBuf,
    config: PathBuf,
    log: PathBuf,
    data_root: PathBuf,
    run: tempfile::TempDir,
    stopped: bool,
    /// Last: released once the daemon and what it left are gone.
    _lock: ContainerdLock,
}

impl Running {
    /// containerd's pid (its supervising loop's when [`StartOpts::supervised`]).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A shell command that restarts a [`StartOpts::supervised`] containerd: SIGTERM to the
    /// containerd its loop runs, which starts another.
    pub fn restart_command(&self) -> String {
        format!("pkill -TERM -P {} -x containerd", self.pid)
    }

    /// The gRPC socket (CRI and containerd APIs).
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The effective config file containerd was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// containerd's `root` (inside the offline root).
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    /// The private run directory (state, sockets, log); removed on drop.
    pub fn run_dir(&self) -> &Path {
        self.run.path()
    }

    /// Everything containerd has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines that show an image pull being attempted: the CRI `PullImage` call, the
    /// resolver's debug messages (`resolving`, `do request`; containerd runs with
    /// `--log-level debug`) and the pull error RunPodSandbox reports when the sandbox image
    /// is not local (1.6 logs only that one). Empty when nothing reached out.
    pub fn pull_attempts(&self) -> Vec<String> {
        const SIGNS: [&str; 5] = [
            "PullImage",
            "failed to pull",
            "msg=resolving",
            "msg=\"resolving\"",
            "msg=\"do request\"",
        ];
        self.log()
            .lines()
            .filter(|l| SIGNS.iter().any(|s| l.contains(s)))
            .map(str::to_string)
            .collect()
    }

    /// A CRI client on this containerd's socket.
    pub fn cri(&self) -> Cri {
        Cri::connect(&self.address).unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }

    /// A `Command` for this build's `ctr`, inside containerd's mount namespace (so FIFOs and
    /// mounts are where the shims see them), on this socket. Add `-n k8s.io` for CRI's images.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.pid.to_string())
            .args(["--mount", "--"])
            .arg(self.containerd.bin("ctr"))
            .arg("--address")
            .arg(&self.address)
            .args(args);
        cmd
    }

    /// Runs `ctr ARGS` and returns its output whatever its status.
    pub fn ctr(&self, args: &[&str]) -> Output {
        run_any(&mut self.ctr_command(args))
    }

    /// `ctr -n NAMESPACE images import ARCHIVE`; panics unless it succeeds.
    pub fn ctr_import(&self, namespace: &str, archive: &Path) -> Output {
        self.ctr_ok(&[
            "-n",
            namespace,
            "images",
            "import",
            &archive.display().to_string(),
        ])
    }

    /// Runs `ctr ARGS`; panics with its output and containerd's log unless it succeeds.
    pub fn ctr_ok(&self, args: &[&str]) -> Output {
        let mut cmd = self.ctr_command(args);
        let out = run_any(&mut cmd);
        if !out.status.success() {
            panic!(
                "{}\n--- containerd log:\n{}",
                describe(&cmd, &out),
                self.log()
            );
        }
        out
    }

    /// Waits until the log contains `needle` (true) or `timeout` passes (false).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if start.elapsed() > timeout {
                return false;
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Pids of every process this instance left behind: containerd, and everything in its
    /// mount namespace or descended from those (shims, runc, pause). Empty once stopped.
    pub fn processes(&self) -> Vec<u32> {
        // once stopped, containerd has been reaped and its pid may belong to anyone
        let pid = (!self.stopped).then_some(self.pid);
        // shims keep containerd's socket path on their command line
        let address = self.address.display().to_string();
        let ns = self.mnt_ns.as_ref().map(|(ns, _pinned)| ns.as_str());
        process_tree(pid, ns, Some(&address))
    }

    /// Stops containerd (SIGTERM, then SIGKILL after a grace period) and kills every process
    /// it left (shims and their containers). Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        // once stopped, containerd has been reaped and its pid may belong to anyone
        let address = self.address.display().to_string();
        let ns = self.mnt_ns.as_ref().map(|(ns, _pinned)| ns.clone());
        let left = terminate(&mut self.child, STOP_TIMEOUT, || {
            process_tree(None, ns.as_deref(), Some(&address))
        });
        if !left.is_empty() {
            eprintln!("containerd harness: processes left: {left:?}");
        }
    }

    /// Waits until CRI answers `Version` (containerd serves the socket before CRI is ready).
    fn wait_ready(&mut self, timeout: Duration, no_cri: bool) {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.stopped = true;
                panic!(
                    "containerd {} exited during startup ({status}); config:\n{}\n--- log:\n{}",
                    self.containerd.version,
                    fs::read_to_string(&self.config).unwrap_or_default(),
                    self.log()
                );
            }
            if self.mnt_ns.is_none() {
                // recorded once the exec'ed containerd runs in the new namespace
                let path = format!("/proc/{}/ns/mnt", self.pid);
                let ns = fs::read_link(&path).ok();
                let own = fs::read_link("/proc/self/ns/mnt").ok();
                if ns.is_some() && ns != own {
                    // pin first, then check it is still the namespace read above
                    if let Ok(pin) = fs::File::open(&path) {
                        if fs::read_link(&path).ok() == ns {
                            self.mnt_ns = ns.map(|n| (n.display().to_string(), pin));
                        }
                    }
                }
            }
            if UnixStream::connect(&self.address).is_ok() {
                match Cri::connect(&self.address).map(|mut c| c.version()) {
                    Ok(Ok(_)) if !no_cri => return,
                    Ok(Err(status)) if no_cri && status.message().contains("unknown service") => {
                        return
                    }
                    Ok(Ok(_)) => last = "CRI answers, but it should be disabled".into(),
                    Ok(Err(status)) => last = status.to_string(),
                    Err(e) => last = e,
                }
            }
            if start.elapsed() > timeout {
                let log = self.log();
                self.stop();
                panic!(
                    "containerd {} did not answer CRI within {timeout:?} ({last})\n--- log:\n{log}",
                    self.containerd.version
                );
            }
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.stopped {
            eprintln!(
                "--- containerd {} log ({}):\n{}",
                self.containerd.version,
                self.log.display(),
                self.log()
            );
        }
        self.stop();
    }
}

/// Stops a daemon started as `child`: SIGTERM to its pid, SIGKILL once `grace` has passed,
/// then SIGKILL to every process `left` still lists (what it started), for up to five
/// seconds. Returns what is still left then.
pub fn terminate(child: &mut Child, grace: Duration, left: impl Fn() -> Vec<u32>) -> Vec<u32> {
    if child.try_wait().ok().flatten().is_none() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > grace {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            sleep(Duration::from_millis(50));
        }
    }
    for _ in 0..50 {
        let pids = left();
        if pids.is_empty() {
            return pids;
        }
        let mut cmd = Command::new("kill");
        cmd.arg("-KILL").args(pids.iter().map(|p| p.to_string()));
        let _ = cmd.stderr(Stdio::null()).status();
        sleep(Duration::from_millis(100));
    }
    left()
}

/// A containerd's processes: `pid` if given and alive, everything in mount namespace `mnt_ns`, every
/// process whose command line contains `marker`, and all their descendants (containers have
/// mount namespaces of their own, so only the parent chain finds them).
pub fn process_tree(pid: Option<u32>, mnt_ns: Option<&str>, marker: Option<&str>) -> Vec<u32> {
    let procs = proc_table();
    let mut roots: BTreeSet<u32> = BTreeSet::new();
    if let Some(pid) = pid.filter(|pid| procs.iter().any(|p| p.pid == *pid)) {
        roots.insert(pid);
    }
    for p in &procs {
        if mnt_ns.is_some() && p.mnt_ns.as_deref() == mnt_ns {
            roots.insert(p.pid);
        }
        if marker.is_some_and(|m| p.cmdline.contains(m)) {
            roots.insert(p.pid);
        }
    }
    loop {
        let before = roots.len();
        for p in &procs {
            if roots.contains(&p.ppid) {
                roots.insert(p.pid);
            }
        }
        if roots.len() == before {
            break;
        }
    }
    roots.into_iter().collect()
}

struct Proc {
    pid: u32,
    ppid: u32,
    mnt_ns: Option<String>,
    cmdline: String,
}

fn proc_table() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": comm may contain spaces, so split after the ')'
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let mnt_ns = fs::read_link(e.path().join("ns/mnt"))
                .ok()
                .map(|l| l.display().to_string());
            let cmdline = fs::read(e.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            Some(Proc {
                pid,
                ppid,
                mnt_ns,
                cmdline,
            })
        })
        .collect()
}

/// The TOML that sets the sandbox image in a config of `version` (2 or 3), for
/// [`StartOpts::config_extra`].
pub fn sandbox_image_toml(config_version: i64, image: &str) -> String {
    if config_version >= 3 {
        format!("[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"{image}\"\n")
    } else {
        format!("[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"{image}\"\n")
    }
}

/// A docker-archive holding a stand-in pause image named `name` for this host's platform:
/// a static C program that sleeps until signalled, built with gcc, umoci and skopeo
/// (independently of pausebake, so the harness can be tested on its own). `None` (skipped)
/// when a tool is missing.
pub fn stand_in_pause_archive(dir: &Path, name: &str) -> Option<PathBuf> {
    if !(have("gcc") && have("umoci") && have("skopeo")) {
        return None;
    }
    let src = dir.join("pause.c");
    fs::write(
        &src,
        "#include <signal.h>\n#include <unistd.h>\n\
         static void done(int s) { (void)s; _exit(0); }\n\
         int main(void) { signal(SIGTERM, done); signal(SIGINT, done); for (;;) pause(); }\n",
    )
    .expect("writing pause.c");
    let bin = dir.join("pause");
    crate::harness::run_ok(
        Command::new("gcc")
            .args(["-static", "-Os", "-o"])
            .arg(&bin)
            .arg(&src),
    );
    let layout = dir.join("oci");
    let image = format!("{}:stand-in", layout.display());
    let bundle = dir.join("bundle");
    let run_ok = crate::harness::run_ok;
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    run_ok(Command::new("umoci").args(["new", "--image", &image]));
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image", &image])
            .arg(&bundle),
    );
    fs::copy(&bin, bundle.join("rootfs/pause")).expect("copying pause into the bundle");
    run_ok(
        Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle),
    );
    run_ok(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.entrypoint",
        "/pause",
    ]));
    let archive = dir.join("pause.tar");
    skopeo(&[
        "copy",
        &format!("oci:{image}"),
        &format!("docker-archive:{}:{name}", archive.display()),
    ]);
    Some(archive)
}

// ---------------------------------------------------------------------------------------
// The harness's own tests: each build starts, answers CRI and ctr, and stops cleanly.

#[test]
fn containerd_every_version_starts_answers_and_stops() {
    let versions = versions();
    for c in &versions {
        for no_network in [false, true] {
            let root = tempdir();
            let mut running = c.start(
                root.path(),
                StartOpts {
                    no_network,
                    ..Default::default()
                },
            );
            let pid = running.pid();

            let version = running.cri().version().expect("CRI Version");
            assert_eq!(version.runtime_name, "containerd");
            assert_eq!(version.runtime_version, c.version, "CRI runtime_version");

            let out = running.ctr_ok(&["version"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                text.matches(&format!("Version:  {}", c.version)).count(),
                2,
                "client and server are containerd {}:\n{text}",
                c.version
            );

            // containerd's data went into the offline root, nothing else into it
            assert!(
                running
                    .data_root()
                    .starts_with(root.path().join("var/lib/containerd")),
                "{}",
                running.data_root().display()
            );
            assert!(root
                .path()
                .join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db")
                .is_file());
            assert!(!root.path().join("etc").exists());

            // with no_network, containerd sees only a loopback
            let links = run_any(Command::new("nsenter").args([
                "--target",
                &pid.to_string(),
                "--net",
                "--",
                "ip",
                "-o",
                "link",
            ]));
            let links = String::from_utf8_lossy(&links.stdout).into_owned();
            if no_network {
                assert_eq!(links.lines().count(), 1, "only lo:\n{links}");
                assert!(links.contains("lo:"), "{links}");
            }

            running.stop();
            eprintln!(
                "containerd {} (no_network: {no_network}): started, answered, stopped",
                c.version
            );
            assert!(
                running.processes().is_empty(),
                "left: {:?}",
                running.processes()
            );
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "containerd {pid} still running"
            );
        }
    }
}

#[test]
fn containerd_effective_config_rewrites_paths_only() {
    let c = Containerd {
        version: "1.7.24~ds1".into(),
        bin_dir: PathBuf::from("/nonexistent"),
    };
    let root = tempdir();
    fs::create_dir_all(root.path().join("etc/containerd")).unwrap();
    fs::write(
        root.path().join("etc/containerd/config.toml"),
        r#"# a comment the node's admin wrote
version = 2
root = "/data/containerd"
imports = ["/etc/containerd/conf.d/*.toml"]

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9" # keep me
"#,
    )
    .unwrap();
    let run = Path::new("/run-dir");
    let text = effective_config(&c, root.path(), run, "[debug]\nlevel = \"debug\"\n");
    let r = root.path().display();
    assert_eq!(
        text,
        format!(
            r#"# a comment the node's admin wrote
version = 2
root = "{r}/data/containerd"
imports = ["{r}/etc/containerd/conf.d/*.toml"]
state = "/run-dir/state"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9" # keep me
restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".cni]
conf_dir = "/run-dir/cni/net.d"

[plugins."io.containerd.internal.v1.opt"]
path = "/run-dir/opt"

[grpc]
address = "/run-dir/containerd.sock"

[ttrpc]
address = "/run-dir/containerd.sock.ttrpc"

[debug]
address = ""
level = "debug"

[metrics]
address = ""
"#
        )
    );
    // no config in the root: this build's native version, everything else default
    let empty = tempdir();
    let text = effective_config(&c, empty.path(), run, "");
    assert!(text.starts_with("version = 2\n"), "{text}");
}

#[test]
fn containerd_every_version_runs_a_host_network_sandbox_offline() {
    let versions = versions();
    if versions.is_empty() {
        return;
    }
    let work = tempdir();
    let name = "example.invalid/harness/pause:1";
    let Some(archive) = stand_in_pause_archive(work.path(), name) else {
        return;
    };
    for c in &versions {
        let root = tempdir();
        let mut running = c.start(
            root.path(),
            StartOpts {
                no_network: true,
                config_extra: sandbox_image_toml(c.native_config_version(), name),
                ..Default::default()
            },
        );
        running.ctr_import("k8s.io", &archive);
        let mut cri = running.cri();
        let image = cri
            .wait_image(name, Duration::from_secs(10))
            .expect("ImageStatus")
            .unwrap_or_else(|| panic!("{name} unknown to CRI of {}", c.version));
        assert!(image.repo_tags.iter().any(|t| t == name), "{image:?}");

        let logs = work.path().join(format!("pods-{}", c.series()));
        let (id, state) = cri
            .run_pod_sandbox("harness", true, &logs)
            .unwrap_or_else(|e| panic!("RunPodSandbox on {}: {e}\n{}", c.version, running.log()));
        assert_eq!(state, crate::cri::PodSandboxState::SandboxReady);
        assert!(
            running.processes().len() > 1,
            "a shim and pause run beside containerd"
        );
        cri.stop_pod_sandbox(&id).expect("StopPodSandbox");
        cri.remove_pod_sandbox(&id).expect("RemovePodSandbox");
        assert_eq!(running.pull_attempts(), Vec::<String>::new());
        running.stop();
        assert!(running.processes().is_empty());
        eprintln!("containerd {}: RunPodSandbox READY offline", c.version);
    }
}
