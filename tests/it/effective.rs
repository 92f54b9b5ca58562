//! containerd's effective config (main file + `imports`), checked against containerd itself.
//!
//! The oracle is `containerd --config FILE config dump` of each real build (1.6 system, 1.7
//! and 2.x from the cache): it loads and merges the files exactly as the daemon does and
//! prints the result, offline, in about 100 ms.
//!
//! How the paths line up: `config dump` resolves every import on *its* filesystem, while
//! pausebake resolves them inside `--root`. Each generated file set is written into a temp
//! dir T at node paths (`T/etc/containerd/config.toml`, `T/etc/containerd/conf.d/…`), and
//! containerd runs **chrooted into T** (in a private mount namespace: the host's `/usr` is
//! bind-mounted onto `T/usr` for its libraries and the build's `bin` directory onto
//! `T/opt/ctd`), so both see exactly the same tree at the same absolute paths, and `chroot`'s
//! working directory `/` is the one the pre-1.6.29 relative-glob rule and pausebake assume
//! (systemd's). Rewriting import paths to the temp dir's host paths instead would test a
//! different file set from the one pausebake reads; running containerd on the host with
//! node paths would read the build machine's own `/etc`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::containerd::{versions, Containerd, StartOpts};
use crate::cri::PodSandboxState;
use crate::harness::{describe, pausebake, run_any, stdout, tempdir};

const BAKED: &str = "example.invalid/baked/pause:1";

/// xorshift64*: a tiny seeded generator, so a failing case can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Where generated drop-ins live (node paths).
const DROP_IN_PATHS: &[&str] = &[
    "/etc/containerd/conf.d/10-a.toml",
    "/etc/containerd/conf.d/20-b.toml",
    "/etc/containerd/conf.d/99-nvidia.toml",
    "/etc/containerd/extra.toml",
    "/etc/other.d/x.toml",
];

/// One generated file set: node path -> text; the main file is `MAIN`.
const MAIN: &str = "/etc/containerd/config.toml";

fn gen_value(rng: &mut Rng, i: usize) -> String {
    match rng.below(6) {
        0 => String::new(),
        _ => format!("example.invalid/set{i}/pause:{}", rng.below(100)),
    }
}

/// The CRI-related body of one file: nothing, a table without the sandbox key, or the key.
fn gen_body(rng: &mut Rng, i: usize) -> String {
    let v2 = "[plugins.\"io.containerd.grpc.v1.cri\"]";
    let v3 = "[plugins.\"io.containerd.cri.v1.images\"]";
    match rng.below(9) {
        0 | 1 => String::new(),
        2 => format!("{v2}\nsandbox_image = {:?}\n", gen_value(rng, i)),
        3 => format!("{v2}\nmax_concurrent_downloads = 4\n"),
        4 => "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\nruntime_type = \"io.containerd.runc.v2\"\n".into(),
        5 => format!(
            "[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = {:?}\n",
            gen_value(rng, i)
        ),
        6 => format!("{v3}\nmax_concurrent_downloads = 4\n"),
        7 => format!("[plugins.cri]\nsandbox_image = {:?}\n", gen_value(rng, i)),
        _ => format!(
            "{v2}\nsandbox_image = {:?}\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = {:?}\n",
            gen_value(rng, i),
            gen_value(rng, i + 10)
        ),
    }
}

fn gen_imports(rng: &mut Rng, own: &str, files: &[&str]) -> String {
    let n = rng.below(3);
    let mut out = Vec::new();
    for _ in 0..n {
        let target = files[rng.below(files.len())];
        let own_dir = own.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
        let choice = match rng.below(11) {
            0 => target.to_string(),
            1 => "/etc/containerd/conf.d/*.toml".into(),
            2 => "conf.d/*.toml".into(),
            3 => "*.toml".into(),
            4 => "/etc/*.d/*.toml".into(),
            5 => "/nowhere/*.toml".into(),
            6 => "/etc/containerd/conf.d/[12]?-*.toml".into(),
            7 => match target.strip_prefix(&format!("{own_dir}/")) {
                Some(rel) => rel.to_string(),
                None => format!("..{target}"),
            },
            8 if rng.below(4) == 0 => "/etc/containerd/missing.toml".into(),
            _ => target.to_string(),
        };
        out.push(format!("{choice:?}"));
    }
    if out.is_empty() && rng.below(2) == 0 {
        return String::new();
    }
    format!("imports = [{}]\n", out.join(", "))
}

/// One file set for a build whose own config version is `native` (2 for 1.x, 3 for 2.0 to
/// 2.2, 4 for 2.3): files of every version up to it, rarely one above, and for 2.x a
/// version-4 file now and then (which 2.0 to 2.2 refuse when it sets the merged version, and
/// panic on when a version 0/1 file loads after it).
fn gen_case(seed: u64, native: i64) -> BTreeMap<String, String> {
    let mut rng = Rng(seed | 1);
    let drop_ins = rng.below(5);
    let mut paths = vec![MAIN];
    let mut pool: Vec<&str> = DROP_IN_PATHS.to_vec();
    for _ in 0..drop_ins {
        paths.push(pool.remove(rng.below(pool.len())));
    }
    let mut files = BTreeMap::new();
    for (i, path) in paths.iter().enumerate() {
        let version = match (rng.below(10), native) {
            _ if native >= 3 && rng.below(40) == 0 => "version = 5\n",
            (0, _) => "",
            (1, _) => "version = 1\n",
            (2..=5, ..=3) | (2..=3, _) => "version = 2\n",
            (4..=5, _) | (_, ..=3) if native >= 3 && rng.below(12) == 0 => "version = 4\n",
            (4..=5, _) | (_, ..=3) => "version = 3\n",
            _ => "version = 4\n",
        };
        let imports = if i == 0 && drop_ins > 0 && rng.below(4) != 0 {
            // the main file usually imports the drop-ins somehow
            match rng.below(3) {
                0 => "imports = [\"/etc/containerd/conf.d/*.toml\", \"/etc/containerd/extra.toml\", \"/etc/other.d/*.toml\"]\n".to_string(),
                1 => "imports = [\"conf.d/*.toml\"]\n".to_string(),
                _ => gen_imports(&mut rng, path, &paths),
            }
        } else {
            gen_imports(&mut rng, path, &paths)
        };
        let body = gen_body(&mut rng, i);
        files.insert(path.to_string(), format!("{version}{imports}{body}"));
    }
    files
}

/// A chroot-able tree for `c`: the case's files plus mount points and library links.
fn write_case(dir: &Path, files: &BTreeMap<String, String>) {
    for d in ["usr", "opt/ctd"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    for l in ["lib", "lib64", "bin", "sbin"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), dir.join(l)).unwrap();
    }
    for (path, text) in files {
        let host = dir.join(path.trim_start_matches('/'));
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(host, text).unwrap();
    }
}

/// `containerd config dump` chrooted into `dir`: `Ok(sandbox image)` or `Err(stderr)`.
fn dump(c: &Containerd, dir: &Path) -> Result<String, String> {
    let script = r#"mount --bind /usr "$1/usr" && mount --bind "$2" "$1/opt/ctd" && exec chroot "$1" /opt/ctd/containerd --config /etc/containerd/config.toml config dump"#;
    let out = run_any(
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(dir)
            .arg(&c.bin_dir),
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v = c
        .sandbox_in_dump(&stdout(&out))
        .unwrap_or_else(|| panic!("no sandbox image in the dump of {}", c.version));
    Ok(v)
}

/// pausebake's view: (sandbox image, refused reason).
fn ours(c: &Containerd, dir: &Path) -> (String, Option<String>) {
    let out = run_any(
        pausebake()
            .args(["verify", "--json", "--platform", "linux/amd64"])
            .args(["--containerd-version", &c.semver_string(), "--root"])
            .arg(dir),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json: {e}\n{}",
            describe(&Command::new("pausebake"), &out)
        )
    });
    (
        json["sandbox_image"].as_str().unwrap().to_string(),
        json["config_refused"].as_str().map(str::to_string),
    )
}

fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for d in ["etc"] {
        let mut stack = vec![dir.join(d)];
        while let Some(p) = stack.pop() {
            for e in fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.insert(
                        e.path().display().to_string(),
                        fs::read_to_string(e.path()).unwrap(),
                    );
                }
            }
        }
    }
    out
}

/// Checks one case; `Err` describes a disagreement.
fn check_case(c: &Containerd, seed: u64) -> Result<&'static str, String> {
    let files = gen_case(seed, c.native_config_version());
    let dir = tempdir();
    write_case(dir.path(), &files);
    let show = || {
        files
            .iter()
            .map(|(p, t)| format!("--- {p}\n{t}"))
            .collect::<String>()
    };
    let theirs = dump(c, dir.path());
    let (image, refused) = ours(c, dir.path());
    let missing_import = refused
        .as_deref()
        .is_some_and(|r| r.contains("which does not exist"));
    let unknown_version = refused
        .as_deref()
        .is_some_and(|r| r.contains("a config version newer than pausebake knows"));
    let kind = match (&theirs, &refused) {
        (Ok(_), Some(_)) if c.semver().0 >= 2 && missing_import => {
            // 2.x's dump skips a missing explicit import the daemon refuses (§8.2.1)
            "refused (missing import; 2.x dump skips it)"
        }
        // pausebake's own limit, whatever containerd makes of it (2.0 to 2.2 take a
        // version 5 main file that a later version 2 drop-in lowers); nothing is written
        (_, Some(_)) if unknown_version => "refused by pausebake (config version above 4)",
        (Ok(v), None) if *v == image => "agreed",
        (Err(_), Some(_)) => "refused by both",
        _ => {
            return Err(format!(
                "containerd {} seed {seed}: config dump {theirs:?}, pausebake {image:?} (refused: {refused:?})\n{}",
                c.version,
                show()
            ))
        }
    };
    // configure: the effective value becomes the baked name, or nothing is written
    let before = snapshot(dir.path());
    let out = run_any(
        pausebake()
            .args(["configure", "--sandbox-image", BAKED])
            .args(["--containerd-version", &c.semver_string(), "--root"])
            .arg(dir.path()),
    );
    if refused.is_some() {
        if out.status.success() || snapshot(dir.path()) != before {
            return Err(format!(
                "containerd {} seed {seed}: configure on a refused config: {}\n{}",
                c.version,
                describe(&Command::new("pausebake configure"), &out),
                show()
            ));
        }
        return Ok(kind);
    }
    if !out.status.success() {
        return Err(format!(
            "containerd {} seed {seed}: {}\n{}",
            c.version,
            describe(&Command::new("pausebake configure"), &out),
            show()
        ));
    }
    match dump(c, dir.path()) {
        Ok(v) if v == BAKED => Ok(kind),
        other => Err(format!(
            "containerd {} seed {seed}: after configure, config dump gives {other:?}\n{}\nafter:\n{:#?}",
            c.version,
            show(),
            snapshot(dir.path())
        )),
    }
}

/// At least 200 generated file sets per containerd build: pausebake's effective sandbox image
/// equals `config dump`'s (or both refuse), and after `configure` (the config step of
/// `bake`) the dump gives the baked name. Set `PAUSEBAKE_SEED` to replay.
#[test]
fn effective_config_agrees_with_config_dump() {
    let builds = versions();
    if builds.is_empty() {
        return;
    }
    let seed: u64 = std::env::var("PAUSEBAKE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    const CASES: usize = 200;
    eprintln!("effective_config_agrees_with_config_dump: PAUSEBAKE_SEED={seed}");
    let jobs: Vec<(Containerd, u64)> = builds
        .iter()
        .flat_map(|c| (0..CASES).map(move |i| (c.clone(), seed.wrapping_add(i as u64 * 7919))))
        .collect();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let kinds = Mutex::new(BTreeMap::<(String, &str), usize>::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((c, case_seed)) = jobs.get(i) else {
                    break;
                };
                match check_case(c, *case_seed) {
                    Ok(kind) => {
                        *kinds
                            .lock()
                            .unwrap()
                            .entry((c.version.clone(), kind))
                            .or_default() += 1
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                }
            });
        }
    });
    eprintln!("{:#?}", kinds.lock().unwrap());
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} disagreements (PAUSEBAKE_SEED={seed}); first:\n{}",
        failures.len(),
        failures[0]
    );
    for c in &builds {
        let agreed = kinds
            .lock()
            .unwrap()
            .get(&(c.version.clone(), "agreed"))
            .copied();
        assert!(
            agreed.unwrap_or(0) >= CASES / 4,
            "too few comparable cases for {}: {agreed:?}",
            c.version
        );
    }
}

/// A GPU node: the NVIDIA toolkit adds a drop-in that puts a runtime into the CRI config.
/// On 1.7 (whole plugin tables replaced) it resets the baked sandbox image to the default;
/// on 2.1 a version 3 drop-in under a version 2 main file makes the merged config version 3,
/// where the main file's `sandbox_image` is not read. Either way `verify` fails naming the
/// drop-in; `bake` then writes where it takes effect, and the node starts a sandbox offline.
/// 2.3 refuses a drop-in of a higher version than the main file: `verify` fails naming it,
/// the real 2.3.4's `config dump` refuses it too, `bake` writes nothing; with the main file
/// at 2.3's version 4 the drop-in merges and the node starts a sandbox offline.
#[test]
fn gpu_drop_in_verify_fails_then_bake_runs_a_sandbox_offline() {
    let mut ran = 0;
    for c in versions() {
        if c.semver().0 == 1 && c.semver().1 < 7 {
            continue;
        }
        let root = tempdir();
        let r = root.path();
        fs::create_dir_all(r.join("etc/containerd/conf.d")).unwrap();
        fs::write(
            r.join("etc/containerd/config.toml"),
            "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
        )
        .unwrap();
        let bake = || {
            let out = run_any(
                pausebake()
                    .args(["bake", "--name", BAKED, "--containerd-version"])
                    .arg(c.semver_string())
                    .arg("--root")
                    .arg(r),
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                describe(&Command::new("bake"), &out)
            );
        };
        bake();
        let (drop_in, extra) = if c.semver().0 >= 2 {
            (
                "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.nvidia]\nruntime_type = \"io.containerd.runc.v2\"\n",
                "[plugins.\"io.containerd.cri.v1.runtime\"]\nrestrict_oom_score_adj = true\n",
            )
        } else {
            (
                // the toolkit copies the CRI settings it needs; this VM needs this one
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nrestrict_oom_score_adj = true\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\nruntime_type = \"io.containerd.runc.v2\"\n",
                "",
            )
        };
        fs::write(r.join("etc/containerd/conf.d/99-nvidia.toml"), drop_in).unwrap();
        let verify = || {
            run_any(
                pausebake()
                    .args(["verify", "--containerd-version"])
                    .arg(c.semver_string())
                    .arg("--root")
                    .arg(r),
            )
        };
        let out = verify();
        assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
        assert!(
            stdout(&out).contains("FAIL config: ")
                && stdout(&out).contains("/etc/containerd/conf.d/99-nvidia.toml"),
            "containerd {}: {}",
            c.version,
            stdout(&out)
        );
        if c.native_config_version() >= 4 {
            let higher = "drop-in config version 3 higher than root config version 2";
            assert!(stdout(&out).contains(higher), "{}", stdout(&out));
            // the oracle chroots into the root: mount points for its /usr and binaries
            fs::create_dir_all(r.join("usr")).unwrap();
            fs::create_dir_all(r.join("opt/ctd")).unwrap();
            let theirs = dump(&c, r).expect_err("containerd 2.3.4 took a higher drop-in");
            assert!(theirs.contains(higher), "{theirs}");
            let before = crate::harden::snapshot(r);
            let out = run_any(
                pausebake()
                    .args(["bake", "--name", BAKED, "--containerd-version"])
                    .arg(c.semver_string())
                    .arg("--root")
                    .arg(r),
            );
            assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
            assert_eq!(crate::harden::snapshot(r), before);
            let main = r.join("etc/containerd/config.toml");
            let text = fs::read_to_string(&main).unwrap();
            fs::write(&main, text.replacen("version = 2", "version = 4", 1)).unwrap();
            // a version 4 file does not read its version 2 key: bake sets version 4's
            bake();
            assert_eq!(verify().status.code(), Some(0), "{}", stdout(&verify()));
        } else {
            bake();
            assert_eq!(verify().status.code(), Some(0));
        }
        let ctd = c.start(
            r,
            StartOpts {
                no_network: true,
                config_extra: extra.into(),
                ..Default::default()
            },
        );
        let logs = tempdir();
        let (id, state) = ctd
            .cri()
            .run_pod_sandbox("gpu", true, logs.path())
            .unwrap_or_else(|e| {
                panic!(
                    "RunPodSandbox on containerd {}: {e}\n{}",
                    c.version,
                    ctd.log()
                )
            });
        assert_eq!(state, PodSandboxState::SandboxReady, "{id}\n{}", ctd.log());
        let pulls = ctd.pull_attempts();
        assert!(
            pulls.is_empty(),
            "containerd {} pulled: {pulls:?}",
            c.version
        );
        eprintln!(
            "containerd {}: GPU drop-in root baked, sandbox READY offline",
            c.version
        );
        ran += 1;
    }
    assert!(ran >= 2 || !crate::harness::in_ci(), "ran on {ran} builds");
}
