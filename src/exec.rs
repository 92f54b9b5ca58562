//! Running external programs: the one place that turns a failed subprocess into an error
//! carrying the command line, the exit status and the tail of its stderr.

use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// How much of a failed program's stderr goes into the error message.
const STDERR_TAIL: usize = 1024;

/// Runs `cmd` to completion; any non-zero exit is an error naming the command.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let line = command_line(cmd);
    let output = cmd.output().with_context(|| format!("running {line}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let start = stderr.len().saturating_sub(STDERR_TAIL);
        let start = (start..stderr.len())
            .find(|i| stderr.is_char_boundary(*i))
            .unwrap_or(stderr.len());
        bail!(
            "running {line}: {}: {}",
            output.status,
            stderr[start..].trim_end()
        );
    }
    Ok(output)
}

/// The program and its arguments as one shell-like line, for messages.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_command_and_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "running sh -c echo boom >&2; exit 3: exit status: 3: boom"
        );
    }
}
