//! The READMEs as tests: every pausebake command that README.md and packer/README.md show
//! (fenced `sh` blocks and inline `pausebake …` spans, in prose and tables) is found in the
//! text, run here on fresh roots this test makes, and checked against what the text beside it
//! says: the exit code (0 unless the text says `exit N`), the sample outputs (a fenced block
//! whose first line is `pausebake VERSION` or `COMMAND: root DIR`) line by line, and the exit
//! tables. A new example in either README is run without touching this file; one that
//! cannot run here must be of a kind listed in [`not_here`], with the reason, or the test
//! fails.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::harness::*;

/// One example found in a README.
#[derive(Debug, Clone)]
struct Example {
    /// `README.md:LINE`.
    at: String,
    /// The `## ` section it is in: its examples share one root, in document order.
    section: String,
    /// The command line, continuation lines joined, trailing `# comment` removed.
    line: String,
    /// The comment, table row or sentence beside it.
    beside: String,
}

/// A sample output: a fenced block with no language whose first line names the command.
#[derive(Debug)]
struct Sample {
    at: String,
    text: String,
}

fn read(doc: &str) -> String {
    fs::read_to_string(repo().join(doc)).unwrap_or_else(|e| panic!("reading {doc}: {e}"))
}

/// Every example and sample output of `doc`, in document order.
fn discover(doc: &str) -> (Vec<Example>, Vec<Sample>) {
    let text = read(doc);
    let lines: Vec<&str> = text.lines().collect();
    let (mut examples, mut samples) = (Vec::new(), Vec::new());
    let mut section = String::from("(top)");
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(h) = line.strip_prefix("## ") {
            section = h.to_string();
        }
        if let Some(lang) = line.strip_prefix("```") {
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && !lines[end].starts_with("```") {
                end += 1;
            }
            let body = &lines[start..end];
            if lang.trim() == "sh" {
                let mut j = 0;
                while j < body.len() {
                    let at = format!("{doc}:{}", start + j + 1);
                    let mut joined = String::new();
                    while j < body.len() {
                        let l = body[j].trim_end();
                        j += 1;
                        match l.strip_suffix('\\') {
                            Some(head) => joined.push_str(head),
                            None => {
                                joined.push_str(l);
                                break;
                            }
                        }
                    }
                    let (cmd, comment) = match joined.split_once(" #") {
                        Some((c, m)) => (c.trim().to_string(), m.trim().to_string()),
                        None => (joined.trim().to_string(), String::new()),
                    };
                    if !cmd.is_empty() {
                        examples.push(Example {
                            at,
                            section: section.clone(),
                            line: squeeze(&cmd),
                            beside: comment,
                        });
                    }
                }
            } else if lang.trim().is_empty() && body.first().is_some_and(|f| names_command(f)) {
                samples.push(Sample {
                    at: format!("{doc}:{start}"),
                    text: body.join("\n") + "\n",
                });
            }
            i = end + 1;
            continue;
        }
        // inline spans: `pausebake …` in prose and table rows
        for (n, span) in line.split('`').enumerate() {
            // `pausebake verify` alone names a command; with arguments it is an example
            if n % 2 == 1 && span.starts_with("pausebake ") && span.split(' ').count() > 2 {
                examples.push(Example {
                    at: format!("{doc}:{}", i + 1),
                    section: section.clone(),
                    line: span.to_string(),
                    beside: line.to_string(),
                });
            }
        }
        i += 1;
    }
    (examples, samples)
}

fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a sample output's first line names the command that prints it.
fn names_command(first: &str) -> bool {
    first.starts_with("pausebake ") || sample_command(first).is_some()
}

/// `bake: root DIR` and the like: the subcommand whose summary it is.
fn sample_command(first: &str) -> Option<&str> {
    let (cmd, rest) = first.split_once(": root ")?;
    ["bake", "import", "configure", "verify"]
        .contains(&cmd)
        .then_some(cmd)
        .filter(|_| !rest.is_empty())
}

/// Why an example cannot run here, for the kinds of example that cannot; `None`: it runs.
fn not_here(e: &Example) -> Option<&'static str> {
    let l = &e.line;
    if l.contains("--address") {
        return Some("needs a running containerd on the node's socket: tests/it/live.rs runs it against real containerd 1.6, 1.7 and 2.1");
    }
    if l.contains("--disk") {
        return Some("needs a disk image and loop devices: tests/it/disk.rs runs it");
    }
    for (prefix, why) in [
        (
            "systemctl ",
            "manages the host's containerd, which tests never touch",
        ),
        (
            "make ",
            "the Makefile's own targets (make test runs this test)",
        ),
        ("cargo build", "a build: this test runs the binary it built"),
        (
            "packer ",
            "tests/it/packer.rs runs the local-root template with the real packer",
        ),
    ] {
        if l.starts_with(prefix) {
            return Some(why);
        }
    }
    None
}

/// The pausebake arguments of an example that runs pausebake, else `None`.
fn pausebake_args(line: &str) -> Option<Vec<String>> {
    let rest = [
        "pausebake ",
        "./pausebake-linux-amd64 ",
        "./pausebake-linux-arm64 ",
        "cargo run --release -- ",
    ]
    .iter()
    .find_map(|p| line.strip_prefix(p))?;
    Some(words(rest))
}

/// `line` split into words as sh splits it, for the quoting the READMEs use: double quotes
/// keep spaces (`"$(mktemp -d)"` is one word).
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => (quoted, any) = (!quoted, true),
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// The exit code the text beside an example states (`exit 0 yes, 3 no` states 0), else 0.
fn stated_exit(beside: &str) -> i32 {
    beside
        .split("exit ")
        .nth(1)
        .and_then(|r| r.chars().next()?.to_digit(10))
        .map_or(0, |d| d as i32)
}

/// Runs every runnable example of `doc` on fresh roots (one per section, in order) in a work
/// directory; returns what ran and what could not, with why.
fn run_examples(doc: &str, examples: &[Example]) -> (Vec<String>, Vec<String>) {
    let work = tempdir();
    let mut roots: Vec<(String, tempfile::TempDir)> = Vec::new();
    let (mut ran, mut skipped) = (Vec::new(), Vec::new());
    for e in examples {
        if let Some(why) = not_here(e) {
            skipped.push(format!("{}: {} ({why})", e.at, e.line));
            continue;
        }
        // `NAME=value pausebake …`: the assignments become the command's environment
        let mut env = Vec::new();
        let mut line = e.line.as_str();
        while let Some((word, rest)) = line.split_once(' ') {
            match word.split_once('=') {
                Some((k, v))
                    if !k.is_empty() && k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
                {
                    env.push((k.to_string(), v.to_string()));
                    line = rest;
                }
                _ => break,
            }
        }
        let Some(words) = pausebake_args(line) else {
            panic!(
                "{}: {:?} is neither a pausebake command nor a kind of example that cannot run here (tests/it/readme.rs not_here)",
                e.at, e.line
            );
        };
        if !roots.iter().any(|(s, _)| *s == e.section) {
            roots.push((e.section.clone(), tempdir()));
        }
        let root = &roots.iter().find(|(s, _)| *s == e.section).unwrap().1;
        let mut cmd = pausebake();
        cmd.current_dir(work.path()).envs(env);
        let mut words = words.into_iter().peekable();
        while let Some(w) = words.next() {
            match w.as_str() {
                "--root" => {
                    words.next();
                    cmd.arg("--root").arg(root.path());
                }
                "--out" => {
                    words.next();
                    cmd.arg("--out").arg(work.path().join("out"));
                }
                "ARCHIVE" => {
                    cmd.arg("pause.oci.tar");
                }
                "REF" => {
                    cmd.arg("registry.k8s.io/pause:3.10");
                }
                _ => {
                    // A placeholder this test has no value for fails here, by name, rather
                    // than as a confusing error of pausebake's.
                    let placeholder =
                        w.len() > 1 && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
                    assert!(
                        !placeholder,
                        "{}: {:?}: this test has no value for the placeholder {w:?}; give it one \
                         in run_examples (tests/it/readme.rs), or a reason in not_here",
                        e.at, e.line
                    );
                    cmd.arg(&w);
                }
            }
        }
        // An archive for `import ARCHIVE` where the README has not written one yet.
        if !work.path().join("pause.oci.tar").exists() {
            run_ok(pausebake().current_dir(work.path()).args([
                "image",
                "--output",
                "pause.oci.tar",
            ]));
        }
        let out = run_any(&mut cmd);
        let want = stated_exit(&e.beside);
        assert_eq!(
            out.status.code(),
            Some(want),
            "{doc}: {} says {:?} exits {want} ({:?})\n{}",
            e.at,
            e.line,
            e.beside,
            describe(&cmd, &out)
        );
        ran.push(format!("{}: {}", e.at, e.line));
    }
    (ran, skipped)
}

/// A sample line against the real one: equal, with the root's path as the sample names it
/// and `PREFIX…SUFFIX` standing for any text between.
fn line_matches(sample: &str, real: &str) -> bool {
    match sample.split_once('…') {
        None => sample == real,
        Some((head, tail)) => {
            // `sha256:b29f31a3…675d (built in for amd64)`: the elision is within one word
            let (elided, after) = tail.split_once(' ').map_or((tail, ""), |(a, b)| (a, b));
            let Some(rest) = real.strip_prefix(head) else {
                return false;
            };
            let end = rest.find(' ').unwrap_or(rest.len());
            let (word, real_after) = rest.split_at(end);
            word.ends_with(elided) && line_matches(after, real_after.trim_start())
        }
    }
}

/// Each sample output against the command it names, run as the README says: on a fresh
/// directory, then again ("every step reports that nothing changed").
fn check_samples(doc: &str, samples: &[Sample]) -> Vec<String> {
    let mut checked = Vec::new();
    for s in samples {
        let first = s.text.lines().next().unwrap();
        let (real, again) = if first.starts_with("pausebake ") {
            (stdout(&run_ok(pausebake().arg("--version"))), None)
        } else {
            let cmd = sample_command(first).unwrap();
            let shown_root = first.split_once(": root ").unwrap().1;
            let root = tempdir();
            let run = || {
                let mut c = pausebake();
                c.args([cmd, "--root"]).arg(root.path());
                if host_arch() != "amd64" {
                    c.args(["--platform", "linux/amd64"]);
                }
                stdout(&run_ok(&mut c)).replace(&root.path().display().to_string(), shown_root)
            };
            let first_run = run();
            (first_run, Some(run()))
        };
        let (want, got): (Vec<&str>, Vec<&str>) =
            (s.text.lines().collect(), real.lines().collect());
        let same =
            want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| line_matches(w, g));
        assert!(
            same || host_arch() != "amd64" && first.ends_with("(no binaries in the root; the host's)"),
            "{doc}: the sample at {} is not what the program prints:\n--- README:\n{}--- program:\n{real}",
            s.at,
            s.text
        );
        if let Some(again) = again {
            for step in ["import", "configure"] {
                let line = again
                    .lines()
                    .find(|l| l.trim_start().starts_with(step))
                    .unwrap_or_else(|| panic!("{} again: no {step} line:\n{again}", s.at));
                assert!(line.contains("unchanged"), "{} run again: {line}", s.at);
            }
        }
        checked.push(format!("{}: {first}", s.at));
    }
    checked
}

/// An exit table (`| exit | meaning |` rows) or sentence (`Exit codes: 0 …, 1 …`) against
/// what `verify` does: 0 on a baked root, 3 on a root that needs a pull, 1 when it cannot
/// read the root, 2 on a usage error.
fn check_exit_codes(doc: &str) -> Vec<String> {
    let text = read(doc);
    let mut stated = BTreeSet::new();
    let mut in_table = false;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let line = *line;
        if line.replace(' ', "").starts_with("|exit|") {
            in_table = true;
            continue;
        }
        if in_table {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            match cells.get(1).and_then(|c| c.parse::<i32>().ok()) {
                Some(code) => {
                    stated.insert(code);
                }
                None if line.starts_with('|') => {}
                None => in_table = false,
            }
        }
        if let Some(first) = line.strip_prefix("Exit codes: ") {
            // the sentence runs on to the end of its paragraph
            let rest: Vec<&str> = std::iter::once(first)
                .chain(
                    lines[i + 1..]
                        .iter()
                        .copied()
                        .take_while(|l| !l.trim().is_empty()),
                )
                .collect();
            let rest = rest.join(" ");
            let rest = rest.split(". ").next().unwrap_or_default();
            for part in rest.split(',') {
                if let Some(code) = part.split_whitespace().next().and_then(|c| c.parse().ok()) {
                    stated.insert(code);
                }
            }
        }
    }
    if stated.is_empty() {
        return Vec::new();
    }
    assert_eq!(
        stated,
        BTreeSet::from([0, 1, 2, 3]),
        "{doc}: the exit codes it states"
    );
    let baked = tempdir();
    run_ok(pausebake().args(["bake", "--root"]).arg(baked.path()));
    let fresh = tempdir();
    let unreadable = tempdir();
    let meta = unreadable
        .path()
        .join("var/lib/containerd/io.containerd.metadata.v1.bolt");
    fs::create_dir_all(&meta).unwrap();
    fs::write(meta.join("meta.db"), vec![0xa5; 8192]).unwrap();
    let cases: [(i32, &Path, &[&str]); 4] = [
        (0, baked.path(), &[]),
        (3, fresh.path(), &[]),
        (1, unreadable.path(), &[]),
        (2, baked.path(), &["--no-such-flag"]),
    ];
    let mut checked = Vec::new();
    for (code, root, extra) in cases {
        let mut cmd = pausebake();
        cmd.args(["verify", "--root"]).arg(root).args(extra);
        let out = run_any(&mut cmd);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{doc}: exit {code}\n{}",
            describe(&cmd, &out)
        );
        checked.push(format!("{doc}: verify exits {code}"));
    }
    checked
}

fn check_doc(doc: &str) {
    let (examples, samples) = discover(doc);
    assert!(
        !examples.is_empty(),
        "{doc}: no examples found: the discovery is broken"
    );
    let (ran, skipped) = run_examples(doc, &examples);
    let checked = check_samples(doc, &samples);
    let exits = check_exit_codes(doc);
    eprintln!(
        "{doc}: ran {} examples, checked {} sample outputs and {} exit codes; not run here:\n  {}",
        ran.len(),
        checked.len(),
        exits.len(),
        skipped.join("\n  ")
    );
}

#[test]
fn readme_examples_run_as_the_readme_says() {
    let (examples, samples) = discover("README.md");
    // the discovery finds what it must: a drift in the README's markup fails here
    assert!(examples
        .iter()
        .any(|e| e.line.starts_with("pausebake bake --root /mnt/node-root")));
    assert!(examples.iter().any(|e| e
        .line
        .starts_with("pausebake configure --root / --sandbox-image REF")));
    assert!(samples.iter().any(|s| s.text.starts_with("bake: root ")));
    assert!(samples.iter().any(|s| s.text.starts_with("pausebake ")));
    check_doc("README.md");
}

#[test]
fn packer_readme_examples_run_as_it_says() {
    check_doc("packer/README.md");
}

#[test]
fn discovery_reads_blocks_spans_and_continuations() {
    let dir = tempdir();
    let doc = dir.path().join("x.md");
    fs::write(
        &doc,
        "## A\n```sh\npausebake bake --root \"$(mktemp -d)\" \\\n  --name a/b:1   # note\n\
         systemctl stop x\n```\nThen `pausebake verify --root DIR` (exit 3 when not); \
         `pausebake verify` names it.\n```\nbake: root /tmp/x\n  line\n```\n```\n diagram\n```\n",
    )
    .unwrap();
    // an absolute path: repo().join keeps it
    let (examples, samples) = discover(doc.to_str().unwrap());
    let lines: Vec<&str> = examples.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "pausebake bake --root \"$(mktemp -d)\" --name a/b:1",
            "systemctl stop x",
            "pausebake verify --root DIR"
        ]
    );
    assert_eq!(
        pausebake_args(lines[0]).unwrap(),
        ["bake", "--root", "$(mktemp -d)", "--name", "a/b:1"]
    );
    assert_eq!(examples[0].beside, "note");
    assert_eq!(stated_exit(&examples[2].beside), 3);
    assert_eq!(samples.len(), 1);
    assert!(not_here(&examples[1]).is_some());
    // a placeholder without a value fails by name
    let unknown = Example {
        at: "x.md:1".into(),
        section: "A".into(),
        line: "pausebake import IMAGE --root DIR".into(),
        beside: String::new(),
    };
    let failed = std::panic::catch_unwind(|| run_examples("x.md", &[unknown])).unwrap_err();
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("no value for the placeholder \"IMAGE\""),
        "{message}"
    );
    // an environment assignment before the command is its environment
    let dated = Example {
        at: "x.md:2".into(),
        section: "A".into(),
        line: "SOURCE_DATE_EPOCH=yesterday pausebake image --output x.tar".into(),
        beside: "exit 2".into(),
    };
    assert_eq!(run_examples("x.md", &[dated]).0.len(), 1);
    assert!(line_matches(
        "  image      x sha256:b29f31a3…675d (built in for amd64)",
        "  image      x sha256:b29f31a3aaaa675d (built in for amd64)"
    ));
    assert!(!line_matches("a sha256:b2…67 z", "a sha256:b2xx68 z"));
}
