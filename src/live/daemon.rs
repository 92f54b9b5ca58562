//! The running containerd as a process, seen through `/proc`. containerd 2.x reports through
//! no API which sandbox image it runs with, so these are the next best truths: whether a
//! config file changed after the daemon started (then it still runs with what the files
//! said before), and what the daemon's own binary makes of the config file it was started
//! with (`containerd --config FILE config dump`), which is containerd's own merge of the
//! drop-ins, not pausebake's model of it.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::containerd::effective::{self, DEFAULT_MAIN};
use crate::containerd::versions::Version;
use crate::rootfs::Root;

/// `/proc/<pid>/stat` counts in USER_HZ, which is 100 on every architecture pausebake
/// supports (amd64, arm64, arm, ppc64le, s390x, riscv64).
const USER_HZ: f64 = 100.0;

/// A file changed less than this after the daemon started may have been read by it: the
/// start time is known to about two clock ticks, file times are wall-clock.
const START_MARGIN: Duration = Duration::from_secs(1);

/// A running containerd process.
#[derive(Debug, Clone)]
pub struct Daemon {
    pub pid: u32,
    /// Its binary (`/proc/<pid>/exe`: the very file it runs, even if replaced since).
    pub exe: PathBuf,
    /// The config file it was started with: `--config`, else containerd's default.
    pub config: String,
    /// When it started (wall clock).
    pub started: SystemTime,
}

impl Daemon {
    /// The process `pid` as `/proc` shows it.
    pub fn of(pid: u32) -> Result<Daemon> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let cmdline = fs::read(proc.join("cmdline"))
            .with_context(|| format!("reading /proc/{pid}/cmdline"))?;
        let stat = fs::read_to_string(proc.join("stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        let uptime = fs::read_to_string("/proc/uptime").context("reading /proc/uptime")?;
        let now = SystemTime::now();
        let age = age(&stat, &uptime).with_context(|| format!("reading /proc/{pid}/stat"))?;
        Ok(Daemon {
            pid,
            exe: proc.join("exe"),
            config: config_of(&cmdline),
            started: now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    /// The files among `files` changed after this daemon started, each with its change time
    /// (a file that does not exist is not among them).
    pub fn changed_since_start(&self, files: &[PathBuf]) -> Vec<(PathBuf, SystemTime)> {
        files
            .iter()
            .filter_map(|f| Some((f.clone(), fs::metadata(f).ok()?.modified().ok()?)))
            .filter(|(_, modified)| *modified > self.started + START_MARGIN)
            .collect()
    }

    /// The sandbox image in `containerd --config FILE config dump` of this daemon's binary
    /// and config file, read under the key containerd `v` uses.
    pub fn dumped_sandbox_image(&self, v: Version) -> Result<String> {
        let out = crate::exec::run(
            Command::new(&self.exe)
                .arg("--config")
                .arg(&self.config)
                .args(["config", "dump"]),
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        let eff = effective::of_dump(&text, &self.config, v)
            .with_context(|| format!("reading the config dump of containerd (pid {})", self.pid))?;
        Ok(eff.image().to_string())
    }

    /// `containerd (pid N, started T ago)`, for messages.
    pub fn shown(&self) -> String {
        let ago = SystemTime::now()
            .duration_since(self.started)
            .unwrap_or_default()
            .as_secs();
        format!("containerd (pid {}, started {ago} s ago)", self.pid)
    }
}

/// What can be seen from outside of the sandbox image a running containerd uses.
#[derive(Debug)]
pub struct Seen {
    pub daemon: Daemon,
    /// Config files changed after it started: it runs with what they said before.
    pub changed: Vec<(PathBuf, SystemTime)>,
    /// Its own `config dump`'s sandbox image, normalized; or why that could not be had.
    pub dumped: std::result::Result<String, String>,
}

/// Looks at the containerd `v` listening as process `pid` (`None`: the kernel did not say)
/// beside the root's config `files` (paths inside `root`). `Err`: why the process cannot be
/// seen from here (another pid namespace, no /proc).
pub fn look(
    pid: Option<u32>,
    v: Version,
    root: &Root,
    files: &[String],
) -> std::result::Result<Seen, String> {
    let pid = pid.ok_or("the socket does not tell its process (another pid namespace?)")?;
    let daemon = Daemon::of(pid).map_err(|e| format!("{e:#}"))?;
    let changed = daemon.changed_since_start(&watched_files(root, files, &daemon));
    let dumped = daemon
        .dumped_sandbox_image(v)
        .and_then(|n| crate::reference::normalize(&n))
        .map_err(|e| format!("{e:#}"));
    Ok(Seen {
        daemon,
        changed,
        dumped,
    })
}

impl Seen {
    /// The changed files, for messages.
    pub fn changed_shown(&self) -> String {
        self.changed
            .iter()
            .map(|(f, _)| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How long ago a process started: `/proc/uptime` minus its start (field 22 of its
/// `/proc/<pid>/stat`, in USER_HZ ticks since boot). Both count from boot, so the result does
/// not depend on the wall clock having been set since.
fn age(stat: &str, uptime: &str) -> Result<Duration> {
    // comm (field 2) may hold spaces and parentheses: count fields after its last ')'
    let Some((_, rest)) = stat.rsplit_once(')') else {
        bail!("no command name in {stat:?}");
    };
    // rest starts at field 3 (state); starttime is field 22
    let start: u64 = rest
        .split_whitespace()
        .nth(22 - 3)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no start time in {stat:?}"))?;
    let up: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no uptime in {uptime:?}"))?;
    Ok(Duration::from_secs_f64(
        (up - start as f64 / USER_HZ).max(0.0),
    ))
}

/// The config file named in a containerd command line (NUL-separated arguments, as
/// `/proc/<pid>/cmdline` holds them), else containerd's default.
fn config_of(cmdline: &[u8]) -> String {
    let words = cmdline
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned());
    effective::config_flag(words).unwrap_or_else(|| DEFAULT_MAIN.to_string())
}

/// Host paths of the config files the root's containerd loads (`files`, paths inside
/// `root`) and of the file a daemon was started with, each once.
pub fn watched_files(root: &Root, files: &[String], daemon: &Daemon) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = files.iter().filter_map(|f| root.resolve(f).ok()).collect();
    let own = PathBuf::from(&daemon.config);
    if !out.contains(&own) {
        out.push(own);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_read_after_the_command_name() {
        // a command name with a space and a parenthesis, as comm may hold
        let stat = "4242 (conta) inerd) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 12 0 5000 2000000 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let age = age(stat, "150.25 290.00\n").unwrap();
        assert_eq!(age, Duration::from_millis(100_250));
        assert!(super::age("4242 no parens", "1.0 1.0").is_err());
        assert!(super::age("4242 (x) S 1", "1.0 1.0").is_err());
    }

    #[test]
    fn the_config_comes_from_the_command_line_else_the_default() {
        let line = |args: &[&str]| config_of(args.join("\0").as_bytes());
        assert_eq!(line(&["/usr/bin/containerd"]), DEFAULT_MAIN);
        assert_eq!(
            line(&[
                "containerd",
                "--log-level",
                "debug",
                "--config",
                "/x/c.toml"
            ]),
            "/x/c.toml"
        );
        assert_eq!(line(&["containerd", "-c", "/y.toml"]), "/y.toml");
        assert_eq!(line(&["containerd", "--config=/z.toml"]), "/z.toml");
        // an argument with a space stays one argument
        assert_eq!(
            line(&["containerd", "--config", "/etc/my dir/c.toml"]),
            "/etc/my dir/c.toml"
        );
    }

    #[test]
    fn only_files_changed_after_the_start_count() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.toml");
        let new = dir.path().join("new.toml");
        fs::write(&old, "").unwrap();
        fs::write(&new, "").unwrap();
        let now = SystemTime::now();
        let at = |t: SystemTime| {
            fs::File::options()
                .write(true)
                .open(&old)
                .unwrap()
                .set_modified(t)
        };
        at(now - Duration::from_secs(60)).unwrap();
        let daemon = Daemon {
            pid: 1,
            exe: "/bin/false".into(),
            config: new.display().to_string(),
            started: now - Duration::from_secs(30),
        };
        let root = Root::new(std::path::Path::new("/")).unwrap();
        let files = watched_files(&root, &[old.display().to_string()], &daemon);
        assert_eq!(files, [old.clone(), new.clone()]);
        let changed: Vec<PathBuf> = daemon
            .changed_since_start(&files)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(changed, [new]);
    }
}
