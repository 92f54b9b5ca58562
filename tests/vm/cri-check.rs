//! The check a test VM runs on its first boot (tests/it/vm.rs): the tests' own CRI client
//! (tests/it/cri.rs), built as a static program for the guest and started by a oneshot
//! systemd unit once `containerd.service` is up. Each step prints one line,
//! `pausebake-vm: ok STEP ...` or `pausebake-vm: FAIL STEP ...`, which the unit sends to the
//! serial console and the test reads back; the exit status is 1 after a FAIL.
//!
//! ```text
//! cri-check SOCKET wait                 CRI answers Version (up to 120 s); prints the version
//! cri-check SOCKET ready NAME IMAGE     a host-network sandbox NAME is READY, still READY
//!                                       300 ms later, and left running; IMAGE's ImageStatus
//!                                       (known, pinned); the id is kept in /run/pausebake-vm
//! cri-check SOCKET fails NAME           RunPodSandbox NAME fails; prints containerd's error
//! cri-check SOCKET still NAME           the sandbox `ready NAME` started is still READY
//! ```

#[path = "../it/cri.rs"]
mod cri;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cri::{Cri, PodSandboxState};

/// Where `ready` keeps each sandbox's id for `still` (a tmpfs: one boot).
const IDS: &str = "/run/pausebake-vm";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (step, verdict) = match args.as_slice() {
        [socket, step, rest @ ..] => (step.clone(), run(Path::new(socket), step, rest)),
        _ => ("usage".into(), Err("cri-check SOCKET STEP [ARGS]".into())),
    };
    match verdict {
        Ok(what) => {
            println!("pausebake-vm: ok {step} {what}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            // one line, whatever containerd put in its message
            println!("pausebake-vm: FAIL {step} {}", why.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn run(socket: &Path, step: &str, args: &[String]) -> Result<String, String> {
    match (step, args) {
        ("wait", []) => wait(socket),
        ("ready", [name, image]) => ready(&mut connect(socket)?, name, image),
        ("fails", [name]) => fails(&mut connect(socket)?, name),
        ("still", [name]) => still(&mut connect(socket)?, name),
        _ => Err(format!("unknown step or arguments: {step} {args:?}")),
    }
}

fn connect(socket: &Path) -> Result<Cri, String> {
    Cri::connect(socket)
}

/// Until CRI answers `Version`: containerd's unit is up before its CRI plugin serves.
fn wait(socket: &Path) -> Result<String, String> {
    let start = Instant::now();
    loop {
        let last = match connect(socket) {
            Ok(mut cri) => match cri.version() {
                Ok(v) => {
                    return Ok(format!(
                        "runtime={} version={} after={:.1}s",
                        v.runtime_name,
                        v.runtime_version,
                        start.elapsed().as_secs_f64()
                    ))
                }
                Err(e) => format!("Version: {}", e.message()),
            },
            Err(e) => e,
        };
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("CRI did not answer in 120 s: {last}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn id_file(name: &str) -> PathBuf {
    Path::new(IDS).join(name)
}

fn ready(cri: &mut Cri, name: &str, image: &str) -> Result<String, String> {
    let start = Instant::now();
    let logs = Path::new("/var/log/pods").join(name);
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let (id, state) = cri
        .run_pod_sandbox(name, true, &logs)
        .map_err(|e| format!("RunPodSandbox {name}: {}", e.message()))?;
    let took = start.elapsed();
    if state != PodSandboxState::SandboxReady {
        return Err(format!("sandbox {name} ({id}) is {state:?}"));
    }
    std::thread::sleep(Duration::from_millis(300));
    let again = cri
        .pod_sandbox_state(&id)
        .map_err(|e| format!("PodSandboxStatus {id}: {}", e.message()))?;
    if again != PodSandboxState::SandboxReady {
        return Err(format!("sandbox {name} ({id}) did not stay up: {again:?}"));
    }
    std::fs::create_dir_all(IDS).map_err(|e| format!("creating {IDS}: {e}"))?;
    std::fs::write(id_file(name), &id).map_err(|e| format!("writing the id of {name}: {e}"))?;
    let status = cri
        .image_status(image)
        .map_err(|e| format!("ImageStatus {image}: {}", e.message()))?
        .ok_or_else(|| format!("sandbox {name} READY, but CRI does not know {image}"))?;
    Ok(format!(
        "name={name} state=READY took={}ms image={image} pinned={} id={id}",
        took.as_millis(),
        status.pinned
    ))
}

fn fails(cri: &mut Cri, name: &str) -> Result<String, String> {
    let logs = Path::new("/var/log/pods").join(name);
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    match cri.run_pod_sandbox(name, true, &logs) {
        Ok((id, state)) => Err(format!("sandbox {name} ({id}) started: {state:?}")),
        Err(e) => Ok(format!("name={name} error={}", e.message())),
    }
}

fn still(cri: &mut Cri, name: &str) -> Result<String, String> {
    let id = std::fs::read_to_string(id_file(name))
        .map_err(|e| format!("no sandbox {name} started in this boot: {e}"))?;
    let state = cri
        .pod_sandbox_state(&id)
        .map_err(|e| format!("PodSandboxStatus {id}: {}", e.message()))?;
    if state != PodSandboxState::SandboxReady {
        return Err(format!("sandbox {name} ({id}) is {state:?}"));
    }
    Ok(format!("name={name} state=READY id={id}"))
}
