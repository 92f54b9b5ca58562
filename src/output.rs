//! What every command prints under `--json`: one document on stdout, its keys sorted at every
//! level (the README's promise), whatever order the Rust types declare their fields in.
//! Going through [`serde_json::Value`], whose maps are sorted, is what sorts them.

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
