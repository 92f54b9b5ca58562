//! One pass over a root (issue 14): `--dry-run` prints the plan and writes nothing, the plan
//! lists exactly what the real command then does, and `bake --json` names one source per
//! fact.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harden::{assert_same, good_archive, snapshot};
use crate::harness::{pausebake, repo, run_ok, stdout, tempdir};

const PLATFORM: &str = "linux/amd64";

/// `pausebake bake --root ROOT --binary=amd64=<committed static pause> ARGS`: no compiler
/// needed.
fn bake(root: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = pausebake();
    cmd.arg("bake")
        .arg("--root")
        .arg(root)
        .arg(format!(
            "--binary=amd64={}",
            repo().join("tests/fixtures/pause-static-amd64").display()
        ))
        .args(["--compression", "none"])
        .args(args);
    cmd
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("parsing {e}: {}", stdout(out)))
}

/// What changed between two listings: (path, "added" | "changed" | "removed").
fn changes(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
) -> BTreeMap<PathBuf, &'static str> {
    let mut out = BTreeMap::new();
    for (p, v) in before {
        match after.get(p) {
            None => {
                out.insert(p.clone(), "removed");
            }
            Some(w) if w != v => {
                out.insert(p.clone(), "changed");
            }
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        out.insert(p.clone(), "added");
    }
    out
}

/// `bake --dry-run` writes nothing; `bake` then does exactly what the plan listed: the same
/// import and configure sections, and on disk exactly the planned blob files, meta.db only
/// when records change and the config only when it changes.
fn dry_run_then_bake(what: &str, root: &Path, args: &[&str]) -> Value {
    let before = snapshot(root);
    let dry = json(&run_ok(&mut bake(
        root,
        &[args, &["--dry-run", "--json"]].concat(),
    )));
    assert_same(&format!("{what}: bake --dry-run"), &before, &snapshot(root));
    assert_eq!(dry["dry_run"], true, "{what}");
    assert_eq!(dry["verify"], Value::Null, "{what}");
    // The text form writes nothing either.
    let text = stdout(&run_ok(&mut bake(root, &[args, &["--dry-run"]].concat())));
    assert!(
        text.starts_with("bake --dry-run (nothing written): root "),
        "{what}: {text}"
    );
    assert_same(
        &format!("{what}: bake --dry-run (text)"),
        &before,
        &snapshot(root),
    );

    let real = json(&run_ok(&mut bake(root, &[args, &["--json"]].concat())));
    assert_eq!(real["dry_run"], false, "{what}");
    assert_eq!(real["verify"]["ok"], true, "{what}: {real:#}");
    for section in ["import", "configure", "name", "name_source", "platform"] {
        assert_eq!(dry[section], real[section], "{what}: {section}");
    }

    let observed = changes(&before, &snapshot(root));
    let import = &dry["import"];
    let blob_dir = Path::new(import["containerd_root"].as_str().unwrap())
        .join("io.containerd.content.v1.content/blobs/sha256")
        .strip_prefix("/")
        .unwrap()
        .to_path_buf();
    let blobs_written: Vec<PathBuf> = observed
        .keys()
        .filter(|p| p.parent() == Some(&blob_dir))
        .cloned()
        .collect();
    let planned: Vec<PathBuf> = import["blobs_written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| blob_dir.join(d.as_str().unwrap().trim_start_matches("sha256:")))
        .collect();
    assert_eq!(blobs_written, planned, "{what}: blob files");
    let meta = PathBuf::from(import["meta_db"].as_str().unwrap().trim_start_matches('/'));
    let records_planned = !import["records_changed"].as_array().unwrap().is_empty();
    assert_eq!(
        observed.contains_key(&meta),
        records_planned,
        "{what}: meta.db written iff records change: {observed:?}"
    );
    let config = PathBuf::from(
        dry["configure"]["path"]
            .as_str()
            .unwrap()
            .trim_start_matches('/'),
    );
    assert_eq!(
        observed.contains_key(&config),
        dry["configure"]["changed"] == true,
        "{what}: config written iff it changes: {observed:?}"
    );
    // Nothing else but the directories holding what was written.
    for (p, how) in &observed {
        let planned_file = planned.contains(p) || *p == meta || *p == config;
        let is_dir = root.join(p).is_dir();
        assert!(
            planned_file || is_dir,
            "{what}: {} {how}, which the plan did not list",
            p.display()
        );
    }
    dry
}

#[test]
fn dry_run_writes_nothing_and_the_plan_is_what_bake_does() {
    let args = ["--platform", PLATFORM, "--containerd-version", "2.1.9"];

    let fresh = tempdir();
    let plan = dry_run_then_bake("fresh root", fresh.path(), &args);
    assert_eq!(plan["import"]["unchanged"], false);
    assert_eq!(plan["configure"]["created"], true);

    // Already baked: the plan says nothing changes, and nothing does.
    let plan = dry_run_then_bake("baked root", fresh.path(), &args);
    assert_eq!(plan["import"]["unchanged"], true, "{plan:#}");
    assert_eq!(plan["configure"]["changed"], false, "{plan:#}");

    // A root whose meta.db and content store a real containerd wrote, with an image of its
    // own: the plan keeps it, and bake adds exactly what it listed.
    let Some(c) = crate::containerd::versions().into_iter().next() else {
        return;
    };
    let t = tempdir();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    {
        let running = c.start(&root, Default::default());
        let a = good_archive(t.path(), "registry.example/theirs:1");
        running.ctr_ok(&["-n", "k8s.io", "images", "import", &a.display().to_string()]);
    }
    let meta = root.join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db");
    assert!(meta.is_file(), "containerd wrote no meta.db");
    let (major, minor, patch) = c.semver();
    let version = format!("{major}.{minor}.{patch}");
    let plan = dry_run_then_bake(
        "containerd-written root",
        &root,
        &["--platform", PLATFORM, "--containerd-version", &version],
    );
    assert_eq!(plan["import"]["unchanged"], false, "{plan:#}");
}

#[test]
fn import_and_configure_dry_runs_write_nothing() {
    let t = tempdir();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    let archive = good_archive(t.path(), "registry.example/pause:1");
    let before = snapshot(&root);
    let out = run_ok(
        pausebake()
            .arg("import")
            .arg(&archive)
            .arg("--root")
            .arg(&root)
            .args(["--platform", PLATFORM, "--dry-run", "--json"]),
    );
    let plan = json(&out);
    assert_eq!(plan["import"]["unchanged"], false, "{plan:#}");
    assert_eq!(plan["import"]["names"][0], "registry.example/pause:1");
    assert_eq!(plan["configure"], Value::Null, "import does not configure");
    let out = run_ok(
        pausebake()
            .args(["configure", "--containerd-version", "1.7.24", "--dry-run"])
            .arg("--root")
            .arg(&root),
    );
    assert!(
        stdout(&out).starts_with("would have created /etc/containerd/config.toml with "),
        "{}",
        stdout(&out)
    );
    assert_same("import and configure --dry-run", &before, &snapshot(&root));
}

/// Every fact `bake --json` states has one source: the top of the document and its verify
/// report agree.
#[test]
fn bake_json_names_one_source_per_fact() {
    let check = |what: &str, root: &Path, args: &[&str], want: &[(&str, &str)]| {
        let doc = json(&run_ok(&mut bake(root, &[args, &["--json"]].concat())));
        for fact in [
            "root",
            "platform",
            "platform_source",
            "containerd_version",
            "containerd_version_source",
            "kubernetes_version",
        ] {
            assert_eq!(doc[fact], doc["verify"][fact], "{what}: {fact}: {doc:#}");
        }
        for (fact, value) in want {
            assert_eq!(doc[*fact], *value, "{what}: {fact}: {doc:#}");
        }
    };
    let fresh = tempdir();
    check(
        "fresh root",
        fresh.path(),
        &[],
        &[
            ("platform_source", "no binaries in the root; the host's"),
            (
                "containerd_version_source",
                "no containerd in the root: using containerd 2.3.0, the newest pausebake knows",
            ),
        ],
    );
    let flagged = tempdir();
    check(
        "--platform",
        flagged.path(),
        &["--platform", PLATFORM],
        &[("platform_source", "--platform")],
    );
    let detected = tempdir();
    let dpkg = detected.path().join("var/lib/dpkg");
    fs::create_dir_all(&dpkg).unwrap();
    fs::write(
        dpkg.join("status"),
        "Package: kubelet\nStatus: install ok installed\nVersion: 1.31.2-1.1\n\n\
         Package: containerd\nStatus: install ok installed\nVersion: 1.7.24~ds1-6\n",
    )
    .unwrap();
    check(
        "detected kubelet and containerd",
        detected.path(),
        &[],
        &[
            (
                "kubernetes_version",
                "1.31.2 (/var/lib/dpkg/status (kubelet 1.31.2-1.1))",
            ),
            ("containerd_version", "1.7.24"),
            (
                "containerd_version_source",
                "/var/lib/dpkg/status (containerd 1.7.24~ds1-6)",
            ),
            ("name", "registry.k8s.io/pause:3.10"),
        ],
    );
    // containerd's own binary: both its version and the platform come from it.
    let system = Path::new("/usr/bin/containerd");
    if !system.is_file() {
        crate::harness::skip("/usr/bin/containerd not installed (tests/setup.sh installs it)");
        return;
    }
    let own = tempdir();
    fs::create_dir_all(own.path().join("usr/bin")).unwrap();
    fs::copy(system, own.path().join("usr/bin/containerd")).unwrap();
    check(
        "detected containerd binary",
        own.path(),
        &[],
        &[
            ("containerd_version_source", "/usr/bin/containerd"),
            ("platform_source", "/usr/bin/containerd"),
        ],
    );
}
