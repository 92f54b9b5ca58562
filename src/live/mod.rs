//! The live path: a second `apply` beside [`crate::containerd::apply`]. The same plan (the
//! same blobs with the same GC labels, the same image records, names, labels and namespace)
//! carried out in a *running* containerd through its own gRPC API over its unix socket
//! (content `Write` / `Update` under a lease, images `Create` / `Update`; under `--dry-run`
//! only the `Info` / `Get` reads that decide those calls), and a separate set
//! of verify rules asked of that containerd and its CRI (`Status`, `ImageStatus`).
//! No restart, no `ctr`, no unpack: CRI unpacks the sandbox image from local content the
//! first time a pod needs it.
//!
//! pausebake stays synchronous: `client` keeps a private current-thread tokio runtime and
//! puts a timeout on the connection and on every call. The generated gRPC clients need
//! `protoc` to build, so the whole path sits behind the `live` cargo feature; without it,
//! [`connect`] fails with an error saying how to get a build that has it, and the
//! [`Connection`] type has no values.
//!
//! Not done here: restarting containerd unasked (`configure --restart` runs the node's own
//! restart command), the transfer service (2.x only, nothing gained), the
//! `sha256:<config>` twin record CRI adds itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::containerd::inspect::{RootFacts, Sourced};
use crate::containerd::versions::Version;
use crate::rootfs::Root;

#[cfg(feature = "live")]
mod apply;
#[cfg(feature = "live")]
mod client;
pub mod daemon;
#[cfg(feature = "live")]
mod verify;

#[cfg(feature = "live")]
pub use apply::{apply, predict};
#[cfg(feature = "live")]
pub use client::Client as Connection;
#[cfg(feature = "live")]
use client::Dialed;
#[cfg(feature = "live")]
pub use verify::verify;

/// How long a restarted containerd may take to answer again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to the containerd at `address` (with CRI, new enough), or says why not.
#[cfg(feature = "live")]
pub fn connect(address: &Path) -> Result<Connection> {
    Connection::connect(address)
}

/// The running containerd as the source of the containerd version: what it reports beats
/// what its files suggest (a flag still beats both, in the caller).
#[cfg(feature = "live")]
pub fn version_fact(conn: &Connection) -> Sourced<Version> {
    Sourced {
        value: conn.version,
        source: conn.shown(),
    }
}

/// What the running containerd makes of a configured sandbox image (`configure --address`).
#[derive(Debug, serde::Serialize)]
pub struct RunningNote {
    pub containerd_version: String,
    /// The sandbox image the running CRI uses (1.x); `None` where no API tells (2.x).
    pub running: Option<String>,
    /// Whether containerd must be restarted to use the configured name; `None`: unknown.
    pub restart_needed: Option<bool>,
    pub message: String,
    /// The command that restarted it (`configure --restart`), if it was restarted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_with: Option<String>,
}

/// Compares the configured `name` with what the containerd behind `conn` runs with: 1.x
/// tells through CRI `Status`; for 2.x, whose API does not, [`daemon::look`] at its process
/// beside the root's config `files` (paths inside `root`). Never restarts it.
pub fn running_note(
    conn: &Connection,
    name: &str,
    root: &Root,
    files: &[String],
) -> Result<RunningNote> {
    let version = conn_version(conn);
    let running = running_sandbox_image(conn)?
        .map(|r| crate::reference::normalize(&r))
        .transpose()?;
    let (restart_needed, message) = match &running {
        Some(r) if r == name => (
            Some(false),
            format!("the running containerd {version} already uses {name}: no restart needed"),
        ),
        Some(r) => (
            Some(true),
            format!("the running containerd {version} uses {r}: restart containerd to use {name} (--restart does)"),
        ),
        None => unreported(
            daemon::look(server_pid(conn), version, root, files),
            version,
            name,
        ),
    };
    Ok(RunningNote {
        containerd_version: version.to_string(),
        running,
        restart_needed,
        message,
        restarted_with: None,
    })
}

/// `configure --restart`: when `before` says the containerd behind `conn` must (or may) be
/// restarted to use `name`, runs `command` with `sh -c`, waits until containerd answers on
/// the same socket from another process, and asks it again ([`running_note`]); an error
/// when it still does not use `name`. `dry_run`: says what it would do.
pub fn restart(
    conn: &Connection,
    command: &str,
    name: &str,
    root: &Root,
    files: &[String],
    before: RunningNote,
    dry_run: bool,
) -> Result<RunningNote> {
    if before.restart_needed == Some(false) {
        return Ok(RunningNote {
            message: format!("{} (so not restarted)", before.message),
            ..before
        });
    }
    if dry_run {
        return Ok(RunningNote {
            message: format!(
                "{}; would restart containerd with `{command}`",
                before.message
            ),
            ..before
        });
    }
    let old = server_pid(conn);
    crate::exec::run(Command::new("sh").args(["-c", command]))
        .map_err(|e| anyhow::anyhow!("restarting containerd: {e:#}"))?;
    let (conn, new) = wait_for_new(&socket(conn), old)?;
    let after = running_note(&conn, name, root, files)?;
    if after.restart_needed != Some(false) {
        bail!(
            "restarted containerd with `{command}` (now process {}), but: {}",
            pid_shown(new),
            after.message
        );
    }
    Ok(RunningNote {
        message: format!(
            "restarted containerd with `{command}` (process {} -> {}): {}",
            pid_shown(old),
            pid_shown(new),
            after.message
        ),
        restarted_with: Some(command.to_string()),
        ..after
    })
}

/// Waits until a containerd answers at `address` from a process other than `old` (any
/// process when `old` is unknown): connected, with its pid.
fn wait_for_new(address: &Path, old: Option<u32>) -> Result<(Connection, Option<u32>)> {
    let start = Instant::now();
    let mut last = String::from("nothing answered yet");
    while start.elapsed() < RESTART_TIMEOUT {
        match connect(address) {
            Ok(conn) => {
                let pid = server_pid(&conn);
                if old.is_none() || (pid.is_some() && pid != old) {
                    return Ok((conn, pid));
                }
                last = format!("still the old process {}", pid_shown(old));
            }
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "waiting {RESTART_TIMEOUT:?} for containerd to answer at {} again after the restart: {last}",
        address.display()
    )
}

/// Whether a containerd that does not report its sandbox image (2.x) must be restarted to
/// use `name`, judged from its process: a config file changed after it started, or not.
fn unreported(
    seen: std::result::Result<daemon::Seen, String>,
    version: Version,
    name: &str,
) -> (Option<bool>, String) {
    let api =
        format!("containerd {version} does not report its running sandbox image through its API");
    let seen = match seen {
        Ok(seen) => seen,
        Err(why) => {
            return (
                None,
                format!("{api}, and its process cannot be seen from here ({why}): restart containerd if it started before this change"),
            )
        }
    };
    let d = seen.daemon.shown();
    if !seen.changed.is_empty() {
        return (
            Some(true),
            format!(
                "{api}; {} changed after {d} started: restart containerd to use {name}",
                seen.changed_shown()
            ),
        );
    }
    match &seen.dumped {
        Ok(dumped) if dumped != name => (
            None,
            format!(
                "{api}; {d} was started with --config {}, whose own `config dump` gives {dumped}, not {name}: a restart would not change that; start containerd with the root's config",
                seen.daemon.config
            ),
        ),
        Ok(_) => (
            Some(false),
            format!("{api}; no config file changed since {d} started, and its own `config dump` gives {name}: no restart needed"),
        ),
        Err(e) => (
            Some(false),
            format!("{api}; no config file changed since {d} started: no restart needed (its own `config dump` could not run: {e})"),
        ),
    }
}

fn pid_shown(pid: Option<u32>) -> String {
    pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
}

#[cfg(feature = "live")]
fn server_pid(conn: &Connection) -> Option<u32> {
    conn.server_pid()
}

#[cfg(feature = "live")]
fn socket(conn: &Connection) -> PathBuf {
    conn.address.clone()
}

#[cfg(feature = "live")]
fn conn_version(conn: &Connection) -> Version {
    conn.version
}

#[cfg(feature = "live")]
fn running_sandbox_image(conn: &Connection) -> Result<Option<String>> {
    conn.sandbox_image()
}

// --- without the live feature: the same names, no values --------------------------------

/// A connected containerd; none exists in a build without the `live` feature.
#[cfg(not(feature = "live"))]
pub enum Connection {}

#[cfg(not(feature = "live"))]
enum Dialed {}

#[cfg(not(feature = "live"))]
fn not_built() -> anyhow::Error {
    anyhow::anyhow!(
        "this pausebake was built without the live path (--address): rebuild with \
         `cargo build --release --features live` (needs protoc), or stop containerd and run \
         with --offline"
    )
}

#[cfg(not(feature = "live"))]
pub fn connect(_address: &Path) -> Result<Connection> {
    Err(not_built())
}

#[cfg(not(feature = "live"))]
pub fn version_fact(conn: &Connection) -> Sourced<Version> {
    match *conn {}
}

#[cfg(not(feature = "live"))]
pub fn apply(
    _plan: &crate::containerd::plan::StorePlan,
    _image: &crate::image::Image,
    conn: &mut Connection,
) -> Result<crate::containerd::plan::StorePlan> {
    match *conn {}
}

#[cfg(not(feature = "live"))]
pub fn predict(
    _plan: &crate::containerd::plan::StorePlan,
    _image: &crate::image::Image,
    conn: &mut Connection,
) -> Result<crate::containerd::plan::StorePlan> {
    match *conn {}
}

#[cfg(not(feature = "live"))]
pub fn verify(
    conn: &mut Connection,
    _facts: &RootFacts,
    _namespace: &str,
    _sandbox: bool,
) -> Result<crate::containerd::verify::Report> {
    match *conn {}
}

#[cfg(not(feature = "live"))]
fn server_pid(conn: &Connection) -> Option<u32> {
    match *conn {}
}

#[cfg(not(feature = "live"))]
fn socket(conn: &Connection) -> PathBuf {
    match *conn {}
}

#[cfg(not(feature = "live"))]
fn conn_version(conn: &Connection) -> Version {
    match *conn {}
}

#[cfg(not(feature = "live"))]
fn running_sandbox_image(conn: &Connection) -> Result<Option<String>> {
    match *conn {}
}

// --- choosing the path ------------------------------------------------------------------

/// The socket a root's containerd listens on at boot ([`RootFacts::address`]: the owner's
/// `--address`, else the merged config's, else containerd's default). A host path (the root
/// is the live node's `/`; [`choose`] checks that the containerd there is the root's own).
pub fn configured_address(facts: &RootFacts) -> Result<PathBuf> {
    Ok(PathBuf::from(&facts.address))
}

/// The connection to a given `--address`, begun first thing ([`Dialing::start`]): its
/// version and CRI questions and its lease's commit in containerd (a `meta.db` commit) then
/// overlap reading the archive and the root instead of following them. `writing`: the
/// namespace the command writes into there (its lease is asked for), `None` for a dry run.
/// A connection begun and not taken (a bad archive) deletes its lease when dropped.
pub struct Dialing {
    writing: Option<String>,
    dialed: Option<Result<Dialed>>,
}

impl Dialing {
    /// Begins connecting to `given`; nothing to do without an address. A failure to
    /// connect is kept for [`choose`] to report.
    pub fn start(given: Option<&Path>, writing: Option<&str>) -> Dialing {
        Dialing {
            writing: writing.map(str::to_string),
            dialed: given.map(|address| dial(address, writing)),
        }
    }

    /// The connection to the given address, or why there is none; `None`: no address given.
    fn answer(self) -> Option<Result<Connection>> {
        self.dialed.map(|dialed| dialed.and_then(finish))
    }
}

#[cfg(feature = "live")]
fn dial(address: &Path, writing: Option<&str>) -> Result<Dialed> {
    Connection::dial(address, writing)
}

#[cfg(feature = "live")]
fn finish(dialed: Dialed) -> Result<Connection> {
    dialed.finish()
}

#[cfg(not(feature = "live"))]
fn dial(_address: &Path, _writing: Option<&str>) -> Result<Dialed> {
    Err(not_built())
}

#[cfg(not(feature = "live"))]
fn finish(dialed: Dialed) -> Result<Connection> {
    match dialed {}
}

/// Which running containerd `import`/`bake` write through: the one at `--address` when given
/// (`dialing`, started at once); else, when the root's `meta.db` is locked by a running
/// containerd whose configured socket answers (and `--offline` is not given), that one,
/// said on stderr; else none. Writing or not is `dialing`'s.
///
/// This decides for the dry run and the real run alike: a `meta.db` locked by a containerd
/// that is not written through is refused here, at once, so `--dry-run` fails the way the
/// real run would instead of printing a plan nobody can carry out.
pub fn choose(facts: &RootFacts, dialing: Dialing, offline: bool) -> Result<Option<Connection>> {
    let writing = dialing.writing.clone();
    // the root's own socket, found only now, is dialled and finished at once
    let open = |address: &Path| dial(address, writing.as_deref()).and_then(finish);
    if let Some(given) = dialing.answer() {
        return given.map(Some);
    }
    if !facts.meta.locked {
        return Ok(None);
    }
    let db = facts.root.resolve(&facts.meta.path)?;
    let locked = format!(
        "{} is locked: containerd appears to be running on this root; stop it and retry",
        db.display()
    );
    if offline {
        bail!("{locked} (--offline never writes through a running containerd)");
    }
    let address = configured_address(facts)?;
    if !address.exists() {
        bail!(
            "{locked}, or pass --address with the socket of the containerd that holds it \
             (nothing listens on {}, the socket in the root's config)",
            address.display()
        );
    }
    let conn = match open(&address) {
        Ok(conn) => conn,
        Err(e) => bail!(
            "{locked}; not writing through {} instead: {e:#}",
            address.display()
        ),
    };
    // Only the containerd that holds this root's meta.db: another one answering on that
    // path (the host's, for a root that is not `/`) must not get this root's image.
    let server = server_pid(&conn);
    let holder = facts.meta_holder()?;
    if server.is_none() || server != holder {
        bail!(
            "meta.db is locked by process {}, but the containerd at {} is process {}: not this \
             root's containerd, so not writing through it; {locked}, or pass --address with \
             the socket of the containerd that holds it",
            pid_shown(holder),
            address.display(),
            pid_shown(server)
        );
    }
    eprintln!(
        "pausebake: meta.db is locked by a running containerd: writing through its API at {} (pass --offline to refuse instead)",
        address.display()
    );
    Ok(Some(conn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::inspect::{inspect_store, Overrides};
    use crate::containerd::store;
    use crate::rootfs::Root;

    fn facts(root: &Root) -> RootFacts {
        inspect_store(root, &Overrides::default()).unwrap()
    }

    #[test]
    fn the_socket_comes_from_the_grpc_section_else_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        assert_eq!(
            configured_address(&facts(&root)).unwrap(),
            Path::new(crate::containerd::owners::DEFAULT_ADDRESS)
        );
        std::fs::create_dir_all(dir.path().join("etc/containerd")).unwrap();
        let config = dir.path().join("etc/containerd/config.toml");
        std::fs::write(&config, "version = 2\n[grpc]\n  uid = 0\n").unwrap();
        assert_eq!(
            configured_address(&facts(&root)).unwrap(),
            Path::new(crate::containerd::owners::DEFAULT_ADDRESS)
        );
        std::fs::write(
            &config,
            "version = 2\n[grpc]\n  address = \"/run/k3s/c.sock\"\n",
        )
        .unwrap();
        assert_eq!(
            configured_address(&facts(&root)).unwrap(),
            Path::new("/run/k3s/c.sock")
        );
    }

    #[test]
    fn an_unlocked_or_missing_meta_db_keeps_the_offline_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        assert!(choose(&facts(&root), Dialing::start(None, None), false)
            .unwrap()
            .is_none());
        let meta = dir.path().join("var/lib/containerd").join(store::META_DIR);
        std::fs::create_dir_all(&meta).unwrap();
        let db = meta.join(store::META_DB);
        crate::bolt::Db::create(&db, crate::platform::Endian::Little)
            .unwrap()
            .commit()
            .unwrap();
        assert!(!facts(&root).meta.locked);
        let held = std::fs::File::open(&db).unwrap();
        held.lock().unwrap();
        let locked = facts(&root);
        assert!(locked.meta.locked);
        // /proc/locks names the process that holds it: this one
        assert_eq!(locked.meta_holder().unwrap(), Some(std::process::id()));
        // locked, but nothing answers on the socket of this test root's config: refused, as
        // the offline apply would refuse it (for a dry run too), naming the socket tried
        std::fs::create_dir_all(dir.path().join("etc/containerd")).unwrap();
        let none = dir.path().join("none.sock");
        std::fs::write(
            dir.path().join("etc/containerd/config.toml"),
            format!("[grpc]\naddress = \"{}\"\n", none.display()),
        )
        .unwrap();
        let err = format!(
            "{:#}",
            choose(&facts(&root), Dialing::start(None, None), false)
                .err()
                .unwrap()
        );
        assert!(
            err.contains("is locked: containerd appears to be running"),
            "{err}"
        );
        assert!(
            err.contains(&format!("nothing listens on {}", none.display())),
            "{err}"
        );
        let err = format!(
            "{:#}",
            choose(&facts(&root), Dialing::start(None, None), true)
                .err()
                .unwrap()
        );
        assert!(err.contains("--offline never writes through"), "{err}");
        // --address is taken at its word: it must answer
        let given = dir.path().join("given.sock");
        assert!(choose(&facts(&root), Dialing::start(Some(&given), None), true).is_err());
    }
}
