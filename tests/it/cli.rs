//! The command-line contract: help, version, usage errors and their exit codes.

use crate::harness::*;

const SUBCOMMANDS: [&str; 7] = [
    "build",
    "image",
    "import",
    "configure",
    "verify",
    "bake",
    "version",
];

#[test]
fn every_subcommand_has_help() {
    for sub in SUBCOMMANDS {
        let out = run_ok(pausebake().args([sub, "--help"]));
        assert!(stdout(&out).contains("Usage: pausebake"), "{sub}");
    }
}

#[test]
fn help_fits_in_80_columns() {
    for sub in std::iter::once("").chain(SUBCOMMANDS) {
        for flag in ["-h", "--help"] {
            let mut cmd = pausebake();
            if !sub.is_empty() {
                cmd.arg(sub);
            }
            // A wide terminal must not widen the help: Packer logs and man pages are not.
            let out = run_ok(cmd.arg(flag).env("COLUMNS", "200"));
            for line in stdout(&out).lines() {
                assert!(line.chars().count() <= 80, "{sub} {flag}: {line:?}");
            }
        }
    }
}

#[test]
fn unknown_arch_is_a_usage_error() {
    let out = run_any(pausebake().args(["build", "--arch", "mips"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "unknown architecture \"mips\"; expected one of: amd64, arm64, arm, ppc64le, s390x, riscv64"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_source_date_epoch_is_a_usage_error() {
    let out = run_any(
        pausebake()
            .args(["image", "--output", "/nonexistent/x.tar"])
            .env("SOURCE_DATE_EPOCH", "yesterday"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SOURCE_DATE_EPOCH"),
        "{}",
        stderr(&out)
    );
}

// --- one contract for every command (issue 26) -------------------------------------------

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `meta.db` of a root, as containerd's default config places it.
const META_DB: &str = "var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db";

/// A fresh root whose containerd config points its socket at a path where nothing listens
/// (inside the root's temporary directory: never the host's containerd).
fn fresh_root() -> tempfile::TempDir {
    let root = tempdir();
    let etc = root.path().join("etc/containerd");
    fs::create_dir_all(&etc).unwrap();
    fs::write(
        etc.join("config.toml"),
        format!(
            "version = 3\n[grpc]\n  address = \"{}\"\n",
            root.path().join("nobody.sock").display()
        ),
    )
    .unwrap();
    root
}

/// `pausebake image --arch ARCH --output DIR/ARCH.oci.tar`: an archive of the built-in pause.
fn archive(dir: &Path, arch: &str) -> PathBuf {
    let path = dir.join(format!("{arch}.oci.tar"));
    run_ok(
        pausebake()
            .args(["image", "--arch", arch, "--output"])
            .arg(&path),
    );
    path
}

/// `pausebake ARGS --root ROOT`.
fn on(root: &Path, args: &[&str]) -> Command {
    let mut cmd = pausebake();
    cmd.args(args).arg("--root").arg(root);
    cmd
}

/// Every file under `dir` with its bytes, to show that a refusal wrote nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(out)))
}

/// Case 1 of issue 26: a locked `meta.db` with nothing to write through: the dry run fails
/// as the real run does, with the same words and exit code, and neither writes anything.
#[test]
fn dry_run_refuses_a_locked_meta_db_as_the_real_run_does() {
    let root = fresh_root();
    let work = tempdir();
    let archive = archive(work.path(), host_arch());
    run_ok(&mut on(root.path(), &["bake"]));
    let held = fs::File::open(root.path().join(META_DB)).unwrap();
    held.lock().unwrap();
    let before = snapshot(root.path());
    let a = archive.to_str().unwrap();
    for args in [
        &["bake"][..],
        &["bake", "--offline"],
        &["import", a],
        &["import", a, "--offline"],
    ] {
        let real = run_any(&mut on(root.path(), args));
        let dry = run_any(on(root.path(), args).arg("--dry-run"));
        for (what, out) in [("real", &real), ("dry", &dry)] {
            assert_eq!(
                out.status.code(),
                Some(1),
                "{args:?} {what}: {}",
                stdout(out)
            );
            assert!(
                stderr(out).contains("is locked: containerd appears to be running on this root"),
                "{args:?} {what}: {}",
                stderr(out)
            );
        }
        assert_eq!(stderr(&dry), stderr(&real), "{args:?}");
        assert_eq!(
            stdout(&dry),
            "",
            "{args:?}: no plan for a run that cannot happen"
        );
    }
    // the hint fits what was given: the socket tried without --offline, none with it
    let out = run_any(&mut on(root.path(), &["bake", "--dry-run"]));
    assert!(
        stderr(&out).contains(&format!(
            "nothing listens on {}",
            root.path().join("nobody.sock").display()
        )),
        "{}",
        stderr(&out)
    );
    let out = run_any(&mut on(root.path(), &["bake", "--offline", "--dry-run"]));
    assert!(
        stderr(&out).contains("--offline never writes through a running containerd"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(root.path()), before);
    // verify only reads: a locked meta.db is no reason to fail (packer/README's exit table)
    let out = run_any(&mut on(root.path(), &["verify"]));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    drop(held);
    run_ok(on(root.path(), &["bake"]).arg("--dry-run"));
}

/// Case 2 of issue 26: `import --json` has one shape, dry run or not: `dry_run` and the
/// import under `import`, and no containerd version (an import reads none).
#[test]
fn import_json_has_one_shape_dry_or_real() {
    let root = fresh_root();
    let work = tempdir();
    let archive = archive(work.path(), host_arch());
    let a = archive.to_str().unwrap();
    let dry = json_of(&run_ok(&mut on(
        root.path(),
        &["import", a, "--dry-run", "--json"],
    )));
    let real = json_of(&run_ok(&mut on(root.path(), &["import", a, "--json"])));
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&dry), keys(&real));
    assert_eq!(keys(&dry["import"]), keys(&real["import"]));
    assert_eq!(
        (&dry["dry_run"], &real["dry_run"]),
        (&true.into(), &false.into())
    );
    assert_eq!(
        dry["import"]["blobs_written"],
        real["import"]["blobs_written"]
    );
    assert!(dry.get("containerd_version").is_none(), "{dry:#}");
}

/// Case 3 of issue 26: a root with no containerd: every command assumes the same (newest
/// known) containerd, so the README's `import` + `configure --sandbox-image` recipe works
/// on a fresh root.
#[test]
fn every_command_assumes_the_same_containerd_on_a_root_without_one() {
    let root = fresh_root();
    let work = tempdir();
    let archive = archive(work.path(), host_arch());
    let bake = json_of(&run_ok(&mut on(
        root.path(),
        &["bake", "--dry-run", "--json"],
    )));
    let newest = bake["containerd_version"].as_str().unwrap().to_string();
    run_ok(on(root.path(), &["import"]).arg(&archive));
    let out = run_ok(&mut on(
        root.path(),
        &["configure", "--sandbox-image", "registry.k8s.io/pause:3.10"],
    ));
    assert!(
        stdout(&out).contains(&format!(
            "using containerd {newest}, the newest pausebake knows"
        )),
        "{}",
        stdout(&out)
    );
    let configure = json_of(&run_ok(&mut on(
        root.path(),
        &["configure", "--json", "--dry-run"],
    )));
    let verify = json_of(&run_ok(&mut on(root.path(), &["verify", "--json"])));
    assert_eq!(configure["containerd_version"], newest.as_str());
    assert_eq!(verify["containerd_version"], newest.as_str());
    assert_eq!(
        configure["containerd_version_from"],
        bake["containerd_version_source"]
    );
}

/// Case 4 of issue 26: every malformed argument value is a usage error: exit 2, the value
/// named, nothing written.
#[test]
fn every_malformed_value_exits_2_and_writes_nothing() {
    let root = fresh_root();
    let before = snapshot(root.path());
    let cases: [(&[&str], &str); 11] = [
        (&["bake", "--name", "foo:bar:baz"], "foo:bar:baz"),
        (
            &["bake", "--name", "ok.example/p:1", "--name", "Bad/Name"],
            "Bad/Name",
        ),
        (&["import", "x.tar", "--name", "foo:bar:baz"], "foo:bar:baz"),
        (
            &["configure", "--sandbox-image", "foo:bar:baz"],
            "foo:bar:baz",
        ),
        (&["bake", "--namespace", ""], "namespace cannot be empty"),
        (
            &["verify", "--namespace", "a/b"],
            "\"a/b\" is not a containerd namespace",
        ),
        (
            &["import", "x.tar", "--namespace=-x"],
            "\"-x\" is not a containerd namespace",
        ),
        (&["bake", "--kubernetes-version", "one"], "one"),
        (
            &["configure", "--containerd-version", "1.5.18"],
            "1.5.18 is too old",
        ),
        (&["verify", "--platform", "linux/mips"], "mips"),
        (&["bake", "--source-date-epoch", "-1"], "-1"),
    ];
    for (args, named) in cases {
        let out = run_any(&mut on(root.path(), args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
    }
    let out = run_any(
        pausebake()
            .args(["image", "--name", "foo:bar:baz", "--output"])
            .arg(root.path().join("x.tar")),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(snapshot(root.path()), before);
}

/// Case 5 of issue 26: a hint names only flags the command has, and not the one the user
/// already gave as the way out.
#[test]
fn hints_name_only_the_commands_own_flags() {
    let root = fresh_root();
    let work = tempdir();
    let other = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let foreign = archive(work.path(), other);
    let f = foreign.to_str().unwrap();
    let platform = format!("linux/{}", host_arch());
    for args in [
        &["bake", "--archive", f][..],
        &["bake", "--platform", &platform, "--archive", f],
    ] {
        let out = run_any(&mut on(root.path(), args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("the image has none (it has: linux/{other})")),
            "{err}"
        );
        assert!(
            !err.contains("--all-platforms"),
            "bake has no --all-platforms: {err}"
        );
        assert!(err.contains("pass --archive with an image for"), "{err}");
    }
    let out = run_any(on(root.path(), &["import"]).arg(&foreign));
    assert!(
        stderr(&out).contains("or --all-platforms"),
        "{}",
        stderr(&out)
    );
    #[cfg(feature = "live")]
    let none = format!("--address={}", work.path().join("none.sock").display());
    #[cfg(feature = "live")]
    for args in [
        &["verify", &none][..],
        &["configure", &none],
        &["import", f, &none],
    ] {
        let out = run_any(&mut on(root.path(), args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("no such socket"), "{err}");
        assert!(
            !err.contains("pass --address") && !err.contains("--offline"),
            "{args:?}: {err}"
        );
    }
}

/// Case 6 of issue 26: the text summary names every record written, the namespace and the
/// pin state.
#[test]
fn bake_summary_names_every_record_the_namespace_and_the_pin() {
    let root = fresh_root();
    let out = run_ok(&mut on(
        root.path(),
        &[
            "bake",
            "--name",
            "registry.k8s.io/pause:3.10",
            "--name",
            "my.mirror/pause:3.10",
        ],
    ));
    assert!(
        stdout(&out).contains(
            "  records    registry.k8s.io/pause:3.10, my.mirror/pause:3.10 in namespace k8s.io, \
             pinned (CRI managed + pinned labels)\n"
        ),
        "{}",
        stdout(&out)
    );
    let other = fresh_root();
    let out = run_ok(&mut on(
        other.path(),
        &["bake", "--namespace", "example", "--no-pin", "--dry-run"],
    ));
    assert!(
        stdout(&out).contains("in namespace example, not pinned (--no-pin: no CRI labels)"),
        "{}",
        stdout(&out)
    );
}

/// Case 7 of issue 26: one style: paths inside the root in every command, `FAIL` in every
/// verdict, every digest with its `sha256:`, `-V` = `--version` = `version`, also as JSON.
#[test]
fn one_style_for_paths_verdicts_digests_and_versions() {
    let root = fresh_root();
    let host = root.path().display().to_string();
    for args in [&["configure"][..], &["configure", "--json"], &["bake"]] {
        let text = stdout(&run_ok(&mut on(root.path(), args)));
        assert!(text.contains("/etc/containerd/config.toml"), "{text}");
        // the root itself is named as given, every path in it from the root; the socket is
        // the value the config names (the test's own, a host path), printed verbatim
        let socket = root.path().join("nobody.sock").display().to_string();
        let rest = text
            .replace(&format!("bake: root {host}\n"), "")
            .replace(&socket, "SOCKET");
        assert!(!rest.contains(&host), "{args:?}: a host path\n{text}");
    }
    // a little-endian meta.db, then a big-endian platform: bake's verify fails
    let out = run_any(&mut on(root.path(), &["bake", "--platform", "linux/s390x"]));
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("    FAIL byte order: "),
        "{}",
        stdout(&out)
    );
    let out = run_any(&mut on(
        root.path(),
        &["verify", "--platform", "linux/s390x"],
    ));
    assert!(
        stdout(&out).contains("FAIL byte order: "),
        "{}",
        stdout(&out)
    );

    let out_dir = tempdir();
    let build = json_of(&run_ok(
        pausebake()
            .args(["build", "--json", "--out"])
            .arg(out_dir.path()),
    ));
    let sha = build["binaries"][0]["sha256"].as_str().unwrap();
    assert!(sha.starts_with("sha256:") && sha.len() == 71, "{sha}");

    let version = stdout(&run_ok(pausebake().arg("version")));
    assert!(
        version.starts_with("pausebake 0.") && version.contains("all six"),
        "{version}"
    );
    for flag in ["-V", "--version"] {
        assert_eq!(stdout(&run_ok(pausebake().arg(flag))), version, "{flag}");
        assert_eq!(
            json_of(&run_ok(pausebake().args([flag, "--json"]))),
            json_of(&run_ok(pausebake().args(["version", "--json"]))),
            "{flag} --json"
        );
    }
}

/// Where two documents differ in shape: keys one object has and the other lacks, at every
/// level where both have a value (a dry run's `"verify": null` stands for the report the real
/// run has there), array elements compared with the other's first.
fn shape_diff(a: &serde_json::Value, b: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => {
            for k in x.keys().filter(|k| !y.contains_key(*k)) {
                out.push(format!("{at}.{k} only in the first"));
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{at}.{k} only in the second"));
            }
            for (k, v) in x {
                if let Some(w) = y.get(k) {
                    shape_diff(v, w, &format!("{at}.{k}"), out);
                }
            }
        }
        (Array(x), Array(y)) => {
            if let (Some(first), Some(other)) = (x.first(), y.first()) {
                for v in x {
                    shape_diff(v, other, &format!("{at}[]"), out);
                }
                for w in y {
                    shape_diff(first, w, &format!("{at}[]"), out);
                }
            }
        }
        _ => {}
    }
}

/// No field contradicts another: a value beside a source (`X` and `X_source`/`X_from`) whose
/// source says it was not read.
fn contradictions(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let base = k
                    .strip_suffix("_source")
                    .or_else(|| k.strip_suffix("_from"));
                if let (Some(base), Some(source)) = (base, child.as_str()) {
                    if map.get(base).is_some_and(|b| !b.is_null()) && source.contains("not read") {
                        out.push(format!("{at}.{base} = {} from {source:?}", map[base]));
                    }
                }
                contradictions(child, &format!("{at}.{k}"), out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| contradictions(i, at, out)),
        _ => {}
    }
}

/// The JSON output format: every command prints one document whose keys are sorted at every
/// level (README: "every JSON document has sorted keys"); a command that writes has one
/// shape, dry run or real, with `dry_run` among its keys; no field contradicts another.
#[test]
fn every_commands_json_has_one_shape_with_sorted_keys() {
    let work = tempdir();
    let archive = archive(work.path(), host_arch());
    let a = archive.to_str().unwrap();
    let out_dir = work.path().join("out");
    let o = out_dir.to_str().unwrap();
    let image_out = work.path().join("i.tar");
    let i = image_out.to_str().unwrap();
    let writers: [&[&str]; 3] = [&["bake"], &["import", a], &["configure"]];
    let mut docs: Vec<(String, String)> = Vec::new();
    for args in writers {
        let (dry_root, real_root) = (fresh_root(), fresh_root());
        let dry = run_ok(on(dry_root.path(), args).args(["--dry-run", "--json"]));
        let real = run_ok(on(real_root.path(), args).arg("--json"));
        let (dry_doc, real_doc) = (json_of(&dry), json_of(&real));
        assert_eq!(dry_doc["dry_run"], true, "{args:?}");
        assert_eq!(real_doc["dry_run"], false, "{args:?}");
        let mut diff = Vec::new();
        shape_diff(&dry_doc, &real_doc, "", &mut diff);
        assert!(
            diff.is_empty(),
            "{args:?}: dry run (first) and real run (second): {diff:?}"
        );
        if args[0] == "bake" {
            // a dry run verified nothing; a real run did
            assert!(dry_doc["verify"].is_null() && real_doc["verify"].is_object());
        }
        docs.push((format!("{args:?} --dry-run"), stdout(&dry)));
        docs.push((format!("{args:?}"), stdout(&real)));
    }
    let baked = fresh_root();
    run_ok(&mut on(baked.path(), &["bake"]));
    let readers: [(&str, Output); 4] = [
        (
            "verify",
            run_ok(&mut on(baked.path(), &["verify", "--json"])),
        ),
        (
            "build",
            run_ok(pausebake().args(["build", "--json", "--out", o])),
        ),
        ("version", run_ok(pausebake().args(["version", "--json"]))),
        (
            "image",
            run_ok(pausebake().args(["image", "--json", "--output", i])),
        ),
    ];
    for (what, out) in readers {
        docs.push((what.to_string(), stdout(&out)));
    }
    for (what, text) in docs {
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        // serde_json's maps are sorted: the same text back means the keys came sorted, and
        // every command pretty-prints
        let sorted = serde_json::to_string_pretty(&doc).unwrap();
        assert_eq!(
            text.trim_end(),
            sorted,
            "{what}: not pretty-printed with sorted keys"
        );
        let mut found = Vec::new();
        contradictions(&doc, "", &mut found);
        assert!(found.is_empty(), "{what}: {found:?}");
    }
}

/// Every error is one line that names the file at fault, even when a parser's own report
/// spans several (Packer and CI logs are line-oriented); a missing archive is named as one.
#[test]
fn errors_are_one_line_and_name_what_is_at_fault() {
    let root = fresh_root();
    fs::write(root.path().join("etc/containerd/config.toml"), "[plugins\n").unwrap();
    let toml = "parsing /etc/containerd/config.toml as TOML: TOML parse error at line 1, \
                column 9; invalid table header; expected `.`, `]`";
    for args in [&["bake"][..], &["configure"]] {
        let out = run_any(&mut on(root.path(), args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(toml), "{err}");
    }
    let out = run_any(&mut on(root.path(), &["verify"]));
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let fail = stdout(&out)
        .lines()
        .find(|l| l.starts_with("FAIL config: "))
        .map(str::to_string);
    assert!(
        fail.as_deref().is_some_and(|l| l.contains(toml)),
        "{}",
        stdout(&out)
    );
    // an existing directory as --output of an archive: said so, with the fix, nothing left
    let dir = tempdir();
    let out = run_any(pausebake().args(["image", "--output"]).arg(dir.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("it is a directory; give the path of the file to write"),
        "{}",
        stderr(&out)
    );
    let parent = dir.path().parent().unwrap();
    let name = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let left: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!(".{name}."))
        })
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let missing = root.path().join("pause.oci.tar");
    let out = run_any(on(root.path(), &["import"]).arg(&missing));
    assert!(
        stderr(&out).contains(&format!(
            "reading image archive {} (an OCI archive, OCI directory or docker archive): \
             No such file or directory",
            missing.display()
        )),
        "{}",
        stderr(&out)
    );
}

/// `verify --namespace` of another namespace than CRI's answers for it, and warns that CRI
/// does not look there (bake's own verify too), as the live verify does.
#[test]
fn another_namespace_is_verified_with_a_warning_that_cri_does_not_look_there() {
    let root = fresh_root();
    let out = run_ok(&mut on(root.path(), &["bake", "--namespace", "example"]));
    let warning = "warn cri: CRI reads images only from namespace k8s.io: it never sees \
                   registry.k8s.io/pause:3.10.2 in example";
    assert!(stdout(&out).contains(warning), "{}", stdout(&out));
    let out = run_ok(&mut on(root.path(), &["verify", "--namespace", "example"]));
    assert!(stdout(&out).contains(warning), "{}", stdout(&out));
    let out = run_any(&mut on(root.path(), &["verify"]));
    assert!(!stdout(&out).contains("warn cri"), "{}", stdout(&out));
}

/// Where the real run refuses the root (a config containerd would refuse, a damaged
/// `meta.db`), the dry run refuses it too, with the same words and exit code, each naming
/// the file and the fix.
#[test]
fn dry_run_fails_where_the_real_run_fails() {
    let work = tempdir();
    let archive = archive(work.path(), host_arch());
    let a = archive.to_str().unwrap();
    let broken_config = fresh_root();
    fs::write(
        broken_config.path().join("etc/containerd/config.toml"),
        "version = 3\n[plugins\n",
    )
    .unwrap();
    let damaged_db = fresh_root();
    run_ok(&mut on(damaged_db.path(), &["bake"]));
    let db = damaged_db.path().join(META_DB);
    let mut bytes = fs::read(&db).unwrap();
    bytes[..8192].fill(0);
    fs::write(&db, &bytes).unwrap();
    let cases: [(&Path, &[&str], &str); 4] = [
        (broken_config.path(), &["bake"], "fix that file first"),
        (broken_config.path(), &["configure"], "fix that file first"),
        (
            damaged_db.path(),
            &["bake"],
            "move it aside and run the command again",
        ),
        (
            damaged_db.path(),
            &["import", a],
            "move it aside and run the command again",
        ),
    ];
    for (root, args, fix) in cases {
        let before = snapshot(root);
        let real = run_any(&mut on(root, args));
        let dry = run_any(on(root, args).arg("--dry-run"));
        assert_eq!(real.status.code(), Some(1), "{args:?}: {}", stderr(&real));
        assert_eq!(
            dry.status.code(),
            Some(1),
            "{args:?} --dry-run: {}",
            stderr(&dry)
        );
        assert_eq!(stderr(&dry), stderr(&real), "{args:?}");
        assert!(stderr(&real).contains(fix), "{args:?}: {}", stderr(&real));
        assert_eq!(snapshot(root), before, "{args:?}");
    }
}
