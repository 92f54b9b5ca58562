//! The pause program: find a compiler for each architecture, compile the freestanding
//! `templates/pause.c` with it, and check that what came out is a static ELF executable
//! for that architecture. Also checks prebuilt binaries handed in with `--binary`.

use std::process::ExitCode;

use anyhow::{bail, ensure, Result};

use crate::cli::{BuildArgs, CompileArgs};
use crate::platform::{Arch, Endian};

/// `pausebake build`.
pub fn build(_args: &BuildArgs) -> Result<ExitCode> {
    bail!("not implemented yet")
}

/// Compiles pause for every architecture `args` asks for (the host's by default) and
/// returns each checked static ELF, in the order asked.
pub fn compile_all(_args: &CompileArgs) -> Result<Vec<(Arch, Vec<u8>)>> {
    bail!("not implemented yet")
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Checks that `elf` is a statically linked executable for `arch`: the right class, byte
/// order and machine, no program interpreter and no dynamic section. `what` names the file
/// in errors.
pub fn check_elf(elf: &[u8], arch: Arch, what: &str) -> Result<()> {
    let header = |off: usize, len: usize| -> Result<&[u8]> {
        elf.get(off..off + len).ok_or_else(|| {
            anyhow::anyhow!("checking {what}: truncated ELF file ({} bytes)", elf.len())
        })
    };
    ensure!(
        header(0, 4)? == b"\x7fELF",
        "checking {what}: not an ELF file"
    );
    let is_64 = match header(4, 1)?[0] {
        1 => false,
        2 => true,
        c => bail!("checking {what}: unknown ELF class {c}"),
    };
    let endian = match header(5, 1)?[0] {
        1 => Endian::Little,
        2 => Endian::Big,
        d => bail!("checking {what}: unknown ELF byte order {d}"),
    };
    let u16_at = |off: usize| -> Result<u16> {
        let b: [u8; 2] = header(off, 2)?.try_into().expect("slice of length 2");
        Ok(match endian {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        })
    };
    let u32_at = |off: usize| -> Result<u32> {
        let b: [u8; 4] = header(off, 4)?.try_into().expect("slice of length 4");
        Ok(match endian {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        })
    };
    let u64_at = |off: usize| -> Result<u64> {
        let b: [u8; 8] = header(off, 8)?.try_into().expect("slice of length 8");
        Ok(match endian {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        })
    };
    let e_type = u16_at(16)?;
    let machine = u16_at(18)?;
    let found = Arch::from_elf(machine, is_64, endian);
    ensure!(
        found == Some(arch),
        "checking {what}: built for {}, not {arch}",
        found.map_or_else(
            || format!(
                "ELF machine {machine} ({}-bit)",
                if is_64 { 64 } else { 32 }
            ),
            |a| a.to_string()
        )
    );
    ensure!(
        e_type == ET_EXEC || e_type == ET_DYN,
        "checking {what}: ELF type {e_type} is not an executable"
    );
    let (phoff, phentsize, phnum) = if is_64 {
        (u64_at(32)?, u16_at(54)?, u16_at(56)?)
    } else {
        (u64::from(u32_at(28)?), u16_at(42)?, u16_at(44)?)
    };
    ensure!(
        phnum > 0,
        "checking {what}: no program headers, not an executable"
    );
    for i in 0..u64::from(phnum) {
        let off = phoff
            .checked_add(i * u64::from(phentsize))
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| anyhow::anyhow!("checking {what}: program header offset overflows"))?;
        match u32_at(off)? {
            PT_INTERP => bail!(
                "checking {what}: dynamically linked (has a program interpreter); pause must be static"
            ),
            PT_DYNAMIC => bail!(
                "checking {what}: has a dynamic section; pause must be statically linked"
            ),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_dynamic_binary_is_refused() {
        let sh = std::fs::read("/bin/sh").unwrap();
        let host = Arch::host().unwrap();
        let err = check_elf(&sh, host, "/bin/sh").unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
    }

    #[test]
    fn garbage_is_not_elf() {
        let err = check_elf(b"not an elf at all", Arch::Amd64, "x")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "checking x: not an ELF file");
        let err = check_elf(b"\x7fELF", Arch::Amd64, "x")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "checking x: truncated ELF file (4 bytes)");
    }
}
