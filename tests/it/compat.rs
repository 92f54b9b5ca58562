//! The real programs the suite ran against, by exact version: printed on every run (straight
//! to stderr, past the test harness's capture, so `make test`'s log names them), and the
//! README's compatibility table checked against them: its containerd rows name exactly the
//! containerd versions and Debian suites tested, its skopeo/umoci row the installed versions
//! and the architectures `image::umoci_unpacks_the_layout` unpacks.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::containerd::{versions, Containerd};
use crate::harness::{have, repo, which};

/// The first line `program ARGS` prints (stdout, else stderr); None when it is not installed.
fn version_line(program: &str, args: &[&str]) -> Option<String> {
    which(program)?;
    let out = Command::new(program).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Some(
        String::from_utf8_lossy(&text)
            .lines()
            .next()?
            .trim()
            .to_string(),
    )
}

/// The upstream version in a `NAME version X` line, without the Debian revision:
/// "umoci version 0.4.7+ds-3+b7" -> "0.4.7".
fn upstream(line: &str) -> String {
    let v = line
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or_else(|| panic!("no version in {line:?}"));
    v.split(['+', '~']).next().unwrap().to_string()
}

/// The Debian suite a containerd build comes from: the system's codename for the system
/// one, else the suite whose stamp (`<suite>.version`, written by tests/fetch-containerd.sh)
/// names the package directory it was unpacked into; for the build no suite has (stamp
/// `shared.version`: containerd 2.3.4 from the shared test data) `built from tag vX.Y.Z`.
fn suite(c: &Containerd) -> String {
    if c.bin_dir == Path::new("/usr/bin") {
        let os = fs::read_to_string("/etc/os-release").expect("reading /etc/os-release");
        return os
            .lines()
            .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
            .expect("VERSION_CODENAME in /etc/os-release")
            .trim_matches('"')
            .to_string();
    }
    let cache = crate::containerd::cache_dir();
    let package = c.bin_dir.parent().and_then(Path::parent).unwrap();
    let mut stamps: Vec<_> = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "version"))
        .collect();
    stamps.sort();
    stamps
        .iter()
        .find(|s| {
            let v = fs::read_to_string(s).unwrap();
            cache.join(format!("containerd-{}", v.trim())) == package
        })
        .and_then(|s| s.file_stem())
        .map(|stem| match stem.to_string_lossy().as_ref() {
            "shared" => format!("built from tag v{}", c.semver_string()),
            suite => suite.to_string(),
        })
        .unwrap_or_else(|| {
            panic!(
                "no stamp in {} names {}",
                cache.display(),
                package.display()
            )
        })
}

/// The README's architecture columns, with Debian's name for each foreign one (the names of
/// tests/fetch-foreign.sh's sysroots).
const COLUMNS: [(&str, &str); 6] = [
    ("amd64", "amd64"),
    ("arm64", "arm64"),
    ("arm", "armhf"),
    ("ppc64le", "ppc64el"),
    ("s390x", "s390x"),
    ("riscv64", "riscv64"),
];

/// The foreign architectures (README column names) that have a containerd `upstream` of
/// `suite` under the cache of tests/fetch-foreign.sh, which tests/it/arch.rs runs: a
/// `<suite>-<deb arch>.dir` stamp names a completed `<deb arch>-<suite>-containerd-<version>`
/// sysroot.
fn foreign_columns(suite: &str, upstream: &str) -> Vec<&'static str> {
    let dir = crate::harness::cache_dir().join("foreign");
    COLUMNS
        .iter()
        .filter(|(_, deb)| {
            let Ok(name) = fs::read_to_string(dir.join(format!("{suite}-{deb}.dir"))) else {
                return false;
            };
            // fetch-foreign.sh names a sysroot <deb arch>-<suite>-containerd-<version>
            let name = name.trim();
            let version = name
                .strip_prefix(&format!("{deb}-{suite}-containerd-"))
                .unwrap_or("");
            version.split(['+', '~']).next() == Some(upstream)
                && dir.join(name).join("usr/bin/containerd").is_file()
        })
        .map(|(column, _)| *column)
        .collect()
}

/// One row of the README's table: `what`, then a cell per architecture column.
fn row(what: &str, yes: &[&str]) -> String {
    let cells: String = COLUMNS
        .iter()
        .map(|(a, _)| if yes.contains(a) { " yes |" } else { " |" })
        .collect();
    format!("| {what} |{cells}")
}

#[test]
fn readme_table_states_the_programs_tested() {
    let containerds = versions();
    let mut report = String::from("\nreal programs of this run:\n");
    for c in &containerds {
        report += &format!(
            "  containerd {} ({}, {})\n",
            c.version,
            suite(c),
            c.bin_dir.display()
        );
    }
    let programs: [(&str, &[&str]); 9] = [
        ("runc", &["--version"]),
        ("skopeo", &["--version"]),
        ("umoci", &["--version"]),
        ("packer", &["version"]),
        ("strace", &["-V"]),
        ("go", &["version"]),
        ("qemu-aarch64-static", &["--version"]),
        ("clang", &["--version"]),
        ("debootstrap", &["--version"]),
    ];
    for (program, args) in programs {
        let line = version_line(program, args).unwrap_or_else(|| "not installed".into());
        report += &format!("  {program}: {line}\n");
    }
    if let Some(bbolt) = version_line(
        "dpkg-query",
        &["-W", "-f", "${Version}", "golang-github-coreos-bbolt-dev"],
    ) {
        report += &format!("  go.etcd.io/bbolt (golang-github-coreos-bbolt-dev): {bbolt}\n");
    }
    // Past libtest's capture: the versions belong in every log, passing or not.
    std::io::stderr().write_all(report.as_bytes()).unwrap();

    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let mut want = Vec::new();
    if !containerds.is_empty() {
        for c in &containerds {
            let (semver, suite) = (c.semver_string(), suite(c));
            let mut yes = vec![crate::harness::host_arch()];
            yes.extend(foreign_columns(&suite, &semver));
            want.push(row(
                &format!(
                    "containerd {semver} ({suite}): fresh root baked, CRI sandbox READY offline"
                ),
                &yes,
            ));
        }
        // No row for a containerd this run did not test.
        let stated: Vec<&str> = readme
            .lines()
            .filter(|l| l.starts_with("| containerd "))
            .collect();
        assert_eq!(
            stated,
            want,
            "README's containerd rows differ from the versions tested; they should read:\n{}",
            want.join("\n")
        );
    }
    if have("skopeo") && have("umoci") {
        let skopeo = upstream(&version_line("skopeo", &["--version"]).unwrap());
        let umoci = upstream(&version_line("umoci", &["--version"]).unwrap());
        let line = row(
            &format!("image accepted by skopeo {skopeo}, umoci {umoci}"),
            &crate::image::UMOCI_ARCHES,
        );
        assert!(
            readme.lines().any(|l| l == line),
            "README's table does not state the skopeo and umoci tested; its row should read:\n{line}"
        );
    }
}
