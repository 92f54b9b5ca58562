//! What every command prints under `--json`: one document on stdout, its keys sorted at every
//! level (the README's promise), whatever order the Rust types declare their fields in.
//! Going through [`serde_json::Value`], whose maps are sorted, is what sorts them. And the
//! one-line form of a message for the text output (Packer and CI logs are line-oriented).

use anyhow::{Context, Result};

/// Prints `report` as one pretty-printed JSON document with sorted keys.
pub fn print_json(report: &impl serde::Serialize) -> Result<()> {
    println!("{}", to_json(report)?);
    Ok(())
}

/// `report` as the text [`print_json`] prints.
pub fn to_json(report: &impl serde::Serialize) -> Result<String> {
    let doc = serde_json::to_value(report).context("serializing the JSON report")?;
    Ok(serde_json::to_string_pretty(&doc)?)
}

/// `message` on one line: a parser's multi-line report (toml_edit draws the line at fault
/// with a caret under it) keeps its sentences, joined with "; ", and drops the drawing.
pub fn one_line(message: &str) -> String {
    if !message.contains('\n') {
        return message.to_string();
    }
    let drawing = |l: &str| {
        let t = l.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        t.starts_with('|')
    };
    let mut out = String::new();
    for line in message.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if drawing(line) {
            continue;
        }
        if !out.is_empty() && !line.starts_with([':', ';', ',', ')']) {
            out.push_str("; ");
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Inner {
        z: u8,
        a: u8,
    }

    #[derive(serde::Serialize)]
    struct Outer {
        dry_run: bool,
        b: Inner,
        a: Vec<Inner>,
    }

    #[test]
    fn a_toml_error_is_one_line_without_its_drawing() {
        let err = "[plugins\n".parse::<toml_edit::DocumentMut>().unwrap_err();
        let text = format!("parsing /etc/c.toml as TOML: {err}: containerd refuses to start");
        assert!(text.contains('\n'), "{text}");
        assert_eq!(
            one_line(&text),
            "parsing /etc/c.toml as TOML: TOML parse error at line 1, column 9; \
             invalid table header; expected `.`, `]`: containerd refuses to start"
        );
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn keys_are_sorted_at_every_level() {
        let text = to_json(&Outer {
            dry_run: true,
            b: Inner { z: 1, a: 2 },
            a: vec![Inner { z: 3, a: 4 }],
        })
        .unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next())
            .collect();
        assert_eq!(keys, ["a", "a", "z", "b", "a", "z", "dry_run"]);
    }
}
