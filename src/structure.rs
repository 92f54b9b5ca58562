//! The shape of the code, checked as tests (issue 14): no module reaches another in a circle,
//! `bolt` knows nothing of the command line, and no function in `containerd/` is longer than
//! [`MAX_FN_LINES`]. Read from the sources with a small scan (rustfmt's layout makes one
//! enough): `crate::a::b` and `super::b` paths outside the `tests` modules are the edges.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a function in `src/containerd/` may be, signature and braces included.
const MAX_FN_LINES: usize = 80;

/// Every source file under `src/` with its module path (`containerd::store`; `""` for
/// `main.rs`), sorted.
fn sources() -> Vec<(String, PathBuf)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut todo = vec![src.clone()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((module_of(path.strip_prefix(&src).unwrap()), path));
            }
        }
    }
    out.sort();
    out
}

/// `containerd/store.rs` -> `containerd::store`, `bolt/mod.rs` -> `bolt`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without its `#[cfg(test)] mod tests` and without comment lines.
fn code(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut prev = "";
    for line in text.lines() {
        let t = line.trim_start();
        if prev == "#[cfg(test)]" && (t.starts_with("mod tests") || t.starts_with("pub mod tests"))
        {
            lines.pop();
            break;
        }
        prev = t;
        if !t.starts_with("//") {
            lines.push(line);
        }
    }
    lines
}

/// The modules `module`'s code names through `crate::` or `super::` paths.
fn uses(module: &str, code: &[&str], known: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut out = BTreeSet::new();
    for line in code {
        for (prefix, base) in [("crate::", ""), ("super::", parent)] {
            for (at, _) in line.match_indices(prefix) {
                let before = line[..at].chars().last();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let path: String = line[at + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let mut target = base.to_string();
                // `super::Item` names the parent module itself.
                let mut found = known.contains(base).then(|| base.to_string());
                for part in path.split("::").filter(|p| !p.is_empty()) {
                    target = if target.is_empty() {
                        part.to_string()
                    } else {
                        format!("{target}::{part}")
                    };
                    if known.contains(&target) {
                        found = Some(target.clone());
                    }
                }
                if let Some(t) = found.filter(|t| t != module) {
                    out.insert(t);
                }
            }
        }
    }
    out
}

/// The module graph: each module and the modules it uses.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let known: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    files
        .iter()
        .map(|(m, path)| {
            let text = fs::read_to_string(path).unwrap();
            (m.clone(), uses(m, &code(&text), &known))
        })
        .collect()
}

/// A cycle in `graph`, as the modules on it, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

/// Functions in `code` longer than `max` lines: `name (lines)`. A function ends at the first
/// line that is its indentation plus `}` (rustfmt's layout).
fn long_functions(code: &[&str], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in code.iter().enumerate() {
        let t = line.trim_start();
        let sig = ["fn ", "pub fn ", "pub const fn ", "const fn "]
            .iter()
            .find_map(|p| t.strip_prefix(p));
        let Some(sig) = sig else { continue };
        if t.ends_with(';') {
            continue;
        }
        let indent = &line[..line.len() - t.len()];
        let close = format!("{indent}}}");
        let Some(end) = code[i..].iter().position(|l| *l == close) else {
            continue;
        };
        if end + 1 > max {
            let name: String = sig
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(format!("{name} ({} lines)", end + 1));
        }
    }
    out
}

#[test]
fn no_module_uses_another_in_a_circle() {
    let g = graph();
    // The scan sees the edges it should (through `super::` and `crate::` alike).
    assert!(g["containerd::plan"].contains("containerd::store"), "{g:?}");
    assert!(g["bake"].contains("containerd::inspect"), "{g:?}");
    assert!(
        !g["containerd::store"].contains("containerd::verify"),
        "{g:?}"
    );
    assert_eq!(cycle(&g), None);
}

#[test]
fn bolt_knows_nothing_of_the_command_line() {
    for (m, deps) in graph() {
        if m == "bolt" || m.starts_with("bolt::") {
            assert!(!deps.contains("cli"), "{m} uses cli");
        }
    }
}

#[test]
fn no_function_in_containerd_is_long() {
    let mut long = Vec::new();
    for (m, path) in sources() {
        if m.starts_with("containerd") {
            let text = fs::read_to_string(&path).unwrap();
            for f in long_functions(&code(&text), MAX_FN_LINES) {
                long.push(format!("{m}::{f}"));
            }
        }
    }
    assert_eq!(long, Vec::<String>::new());
}

#[test]
fn the_checks_see_cycles_and_long_functions() {
    let known: BTreeSet<String> = ["a", "b", "b::c"].into_iter().map(String::from).collect();
    let a = uses("a", &["use crate::b::c::X;", "// crate::a"], &known);
    assert_eq!(a, ["b::c".to_string()].into());
    let c = uses("b::c", &["use super::Thing;"], &known);
    assert_eq!(c, ["b".to_string()].into());
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), a);
    g.insert("b::c".to_string(), ["a".to_string()].into());
    assert_eq!(
        cycle(&g),
        Some(vec!["a".to_string(), "b::c".to_string(), "a".to_string()])
    );
    let body: Vec<String> = std::iter::once("pub fn big() {".to_string())
        .chain((0..5).map(|i| format!("    let x{i} = {i};")))
        .chain(std::iter::once("}".to_string()))
        .collect();
    let body: Vec<&str> = body.iter().map(String::as_str).collect();
    assert_eq!(long_functions(&body, 6), ["big (7 lines)"]);
    assert!(long_functions(&body, 7).is_empty());
}

/// The owners table is the only code that names a distribution (`style.md` §5): inspect
/// reads it into paths and names, and plan, apply and verify act on those, never asking
/// which distribution it is.
#[test]
fn only_the_owners_table_names_a_distribution() {
    const NAMES: [&str; 6] = ["k3s", "rke2", "k0s", "microk8s", "nodeadm", "flatcar"];
    let mut found = Vec::new();
    for (m, path) in sources() {
        if m == "containerd::owners" || m == "structure" {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        for line in code(&text) {
            let lower = line.to_lowercase();
            if let Some(n) = NAMES.iter().find(|n| lower.contains(*n)) {
                found.push(format!("{m}: {n}: {}", line.trim()));
            }
        }
    }
    assert_eq!(found, Vec::<String>::new());
}
