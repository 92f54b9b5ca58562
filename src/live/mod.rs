//! The live path: the same image records and labels as `containerd::store`, written into a
//! *running* containerd through its own gRPC API over its unix socket (content `Write` /
//! `Update` under a lease, images `Create` / `Update`), and the same audit as
//! `containerd::verify` asked of that containerd and its CRI (`Status`, `ImageStatus`).
//! No restart, no `ctr`, no unpack: CRI unpacks the sandbox image from local content the
//! first time a pod needs it.
//!
//! pausebake stays synchronous: `client` keeps a private current-thread tokio runtime and
//! puts a timeout on the connection and on every call. The generated gRPC clients need
//! `protoc` to build, so the whole path sits behind the `live` cargo feature; without it,
//! `--address` fails with an error saying how to get a build that has it.
//!
//! Not done here: restarting containerd, the transfer service (2.x only, nothing gained), the
//! `sha256:<config>` twin record CRI adds itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::containerd::store;
use crate::rootfs::Root;

#[cfg(feature = "live")]
mod apply;
#[cfg(feature = "live")]
mod client;
#[cfg(feature = "live")]
mod verify;

#[cfg(feature = "live")]
pub use apply::apply;
#[cfg(feature = "live")]
pub use client::{answers, running_sandbox_image};
#[cfg(feature = "live")]
pub use verify::verify;

/// What the running containerd makes of a configured sandbox image (`configure --address`).
#[derive(Debug, serde::Serialize)]
pub struct RunningNote {
    pub containerd_version: String,
    /// The sandbox image the running CRI uses (1.x); `None` where no API tells (2.x).
    pub running: Option<String>,
    /// Whether containerd must be restarted to use the configured name; `None`: unknown.
    pub restart_needed: Option<bool>,
    pub message: String,
}

/// Compares the configured `name` with what the containerd at `address` runs with. Never
/// restarts it.
pub fn running_note(address: &Path, name: &str) -> Result<RunningNote> {
    let (version, running) = running_sandbox_image(address)?;
    let running = running.map(|r| store::normalize_ref(&r)).transpose()?;
    let (restart_needed, message) = match &running {
        Some(r) if r == name => (
            Some(false),
            format!("the running containerd {version} already uses {name}: no restart needed"),
        ),
        Some(r) => (
            Some(true),
            format!(
                "the running containerd {version} uses {r}: restart containerd to use {name} (pausebake does not restart it)"
            ),
        ),
        None => (
            None,
            format!(
                "containerd {version} does not report its running sandbox image through its API: restart containerd if it started before this change"
            ),
        ),
    };
    Ok(RunningNote {
        containerd_version: version.to_string(),
        running,
        restart_needed,
        message,
    })
}

/// The socket containerd listens on when its config sets no `[grpc] address`.
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";

#[cfg(not(feature = "live"))]
fn not_built() -> anyhow::Error {
    anyhow::anyhow!(
        "this pausebake was built without the live path (--address): rebuild with \
         `cargo build --release --features live` (needs protoc), or stop containerd and run \
         without --address"
    )
}

#[cfg(not(feature = "live"))]
pub fn apply(
    _image: &crate::image::Image,
    _spec: &store::Spec,
    _address: &Path,
) -> Result<store::Report> {
    Err(not_built())
}

#[cfg(not(feature = "live"))]
pub fn verify(
    _address: &Path,
    _root: &Root,
    _namespace: &str,
    _platform: Option<crate::platform::Platform>,
    _kubernetes: Option<&str>,
    _sandbox: bool,
) -> Result<crate::containerd::verify::Report> {
    Err(not_built())
}

#[cfg(not(feature = "live"))]
pub fn answers(_address: &Path) -> bool {
    false
}

#[cfg(not(feature = "live"))]
pub fn running_sandbox_image(
    _address: &Path,
) -> Result<(crate::containerd::versions::Version, Option<String>)> {
    Err(not_built())
}

/// The socket a root's containerd listens on: `[grpc] address` of the root's config, else
/// [`DEFAULT_ADDRESS`]. A host path (the root is the live node's `/`).
pub fn configured_address(root: &Root) -> Result<PathBuf> {
    let Some(text) = root.read_to_string(store::CONFIG_PATH)? else {
        return Ok(PathBuf::from(DEFAULT_ADDRESS));
    };
    let doc: toml_edit::DocumentMut = text.parse().with_context(|| {
        format!(
            "parsing {} as TOML",
            root.dir()
                .join(store::CONFIG_PATH.trim_start_matches('/'))
                .display()
        )
    })?;
    let address = doc
        .get("grpc")
        .and_then(|g| g.get("address"))
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .unwrap_or(DEFAULT_ADDRESS);
    Ok(PathBuf::from(address))
}

/// Whether `root`'s `meta.db` exists and is locked (held by a running containerd).
fn meta_db_locked(root: &Root) -> Result<bool> {
    let ctd = store::containerd_root(root)?;
    let meta = root.resolve(ctd.join(store::META_DIR).join(store::META_DB))?;
    let file = match std::fs::File::open(&meta) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("opening {}", meta.display())),
    };
    match file.try_lock() {
        // dropping the file releases the probe's lock at once
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", meta.display()))
        }
    }
}

/// Which containerd `import`/`bake` write through: `--address` when given; with `--offline`
/// none (the offline path refuses a locked `meta.db` as before); else, when the root's
/// `meta.db` is locked by a running containerd whose configured socket answers, that socket,
/// said on stderr.
pub fn choose_address(root: &Root, given: Option<&Path>, offline: bool) -> Result<Option<PathBuf>> {
    if let Some(a) = given {
        return Ok(Some(a.to_path_buf()));
    }
    if offline || !meta_db_locked(root)? {
        return Ok(None);
    }
    let address = configured_address(root)?;
    if !answers(&address) {
        return Ok(None);
    }
    eprintln!(
        "pausebake: meta.db is locked by a running containerd: writing through its API at {} (pass --offline to refuse instead)",
        address.display()
    );
    Ok(Some(address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_comes_from_the_grpc_section_else_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        assert_eq!(
            configured_address(&root).unwrap(),
            Path::new(DEFAULT_ADDRESS)
        );
        std::fs::create_dir_all(dir.path().join("etc/containerd")).unwrap();
        let config = dir.path().join("etc/containerd/config.toml");
        std::fs::write(&config, "version = 2\n[grpc]\n  uid = 0\n").unwrap();
        assert_eq!(
            configured_address(&root).unwrap(),
            Path::new(DEFAULT_ADDRESS)
        );
        std::fs::write(
            &config,
            "version = 2\n[grpc]\n  address = \"/run/k3s/c.sock\"\n",
        )
        .unwrap();
        assert_eq!(
            configured_address(&root).unwrap(),
            Path::new("/run/k3s/c.sock")
        );
    }

    #[test]
    fn an_unlocked_or_missing_meta_db_keeps_the_offline_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        assert_eq!(choose_address(&root, None, false).unwrap(), None);
        let meta = dir.path().join("var/lib/containerd").join(store::META_DIR);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join(store::META_DB), b"").unwrap();
        assert!(!meta_db_locked(&root).unwrap());
        let held = std::fs::File::open(meta.join(store::META_DB)).unwrap();
        held.lock().unwrap();
        assert!(meta_db_locked(&root).unwrap());
        // locked, but nothing answers on the default socket of this test root's config
        std::fs::create_dir_all(dir.path().join("etc/containerd")).unwrap();
        std::fs::write(
            dir.path().join("etc/containerd/config.toml"),
            format!("[grpc]\naddress = \"{}/none.sock\"\n", dir.path().display()),
        )
        .unwrap();
        assert_eq!(choose_address(&root, None, false).unwrap(), None);
        assert_eq!(
            choose_address(&root, Some(Path::new("/x.sock")), true).unwrap(),
            Some(PathBuf::from("/x.sock"))
        );
    }
}
