//! Architectures pausebake knows, and every name each one goes by: the OCI platform
//! (`architecture`/`variant`), the compiler triples, the ELF machine and class, the
//! qemu-user emulator and the Debian packages that provide a cross compiler.
//!
//! This is the only place that maps between those vocabularies, so a typo in a triple
//! cannot disagree with the ELF check or the image config.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, bail, ensure, Result};

/// A Linux architecture pause is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    Amd64,
    Arm64,
    /// 32-bit ARM, v7, hard float.
    Arm,
    Ppc64le,
    S390x,
    Riscv64,
}

/// Byte order, of an ELF file or of a bbolt file (which is the creating machine's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

impl Arch {
    pub const ALL: [Arch; 6] = [
        Arch::Amd64,
        Arch::Arm64,
        Arch::Arm,
        Arch::Ppc64le,
        Arch::S390x,
        Arch::Riscv64,
    ];

    /// The architecture this pausebake binary runs on, if it is one we know.
    pub fn host() -> Option<Arch> {
        Self::from_rust_arch(std::env::consts::ARCH)
    }

    /// Maps `std::env::consts::ARCH` / `uname -m` spellings.
    pub fn from_rust_arch(name: &str) -> Option<Arch> {
        Some(match name {
            "x86_64" => Arch::Amd64,
            "aarch64" | "arm64" => Arch::Arm64,
            "arm" | "armv7l" | "armv7" => Arch::Arm,
            "powerpc64le" | "ppc64le" => Arch::Ppc64le,
            "s390x" => Arch::S390x,
            "riscv64" | "riscv64gc" => Arch::Riscv64,
            _ => return None,
        })
    }

    /// The OCI / Go `GOARCH` name, also used in file names (`pause-linux-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Arm => "arm",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The OCI platform variant, where one applies.
    pub fn variant(self) -> Option<&'static str> {
        match self {
            Arch::Arm => Some("v7"),
            _ => None,
        }
    }

    /// The Debian multiarch triple, used for `<triple>-gcc` and binutils.
    pub fn gnu_triple(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu",
            Arch::Arm64 => "aarch64-linux-gnu",
            Arch::Arm => "arm-linux-gnueabihf",
            Arch::Ppc64le => "powerpc64le-linux-gnu",
            Arch::S390x => "s390x-linux-gnu",
            Arch::Riscv64 => "riscv64-linux-gnu",
        }
    }

    /// The triple given to `clang --target=`; for arm it names v7 explicitly, which the
    /// Debian triple leaves to gcc's configured default.
    pub fn clang_triple(self) -> &'static str {
        match self {
            Arch::Arm => "armv7a-linux-gnueabihf",
            other => other.gnu_triple(),
        }
    }

    /// ELF `e_machine`.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 62,    // EM_X86_64
            Arch::Arm64 => 183,   // EM_AARCH64
            Arch::Arm => 40,      // EM_ARM
            Arch::Ppc64le => 21,  // EM_PPC64
            Arch::S390x => 22,    // EM_S390
            Arch::Riscv64 => 243, // EM_RISCV
        }
    }

    /// Whether the ELF class is 64-bit.
    pub fn elf_64bit(self) -> bool {
        !matches!(self, Arch::Arm)
    }

    pub fn endian(self) -> Endian {
        match self {
            Arch::S390x => Endian::Big,
            _ => Endian::Little,
        }
    }

    /// The architecture an ELF header describes, if we know it.
    pub fn from_elf(machine: u16, is_64bit: bool, endian: Endian) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| {
            a.elf_machine() == machine && a.elf_64bit() == is_64bit && a.endian() == endian
        })
    }

    /// The class (whether 64-bit), byte order and machine of an ELF file, read from its first
    /// 20 bytes, or what makes the bytes no such header. The one reader of these fields: a
    /// root's binaries ([`Arch::from_elf_header`]) and the pause binary check
    /// (`pause::check_elf`) both go through it and map the result with [`Arch::from_elf`].
    pub fn elf_ident(header: &[u8]) -> Result<(bool, Endian, u16)> {
        let truncated = || anyhow!("truncated ELF file ({} bytes)", header.len());
        let byte = |i: usize| header.get(i).copied().ok_or_else(truncated);
        ensure!(
            header.get(..4).ok_or_else(truncated)? == b"\x7fELF",
            "not an ELF file"
        );
        let is_64 = match byte(4)? {
            1 => false,
            2 => true,
            c => bail!("unknown ELF class {c}"),
        };
        let endian = match byte(5)? {
            1 => Endian::Little,
            2 => Endian::Big,
            d => bail!("unknown ELF byte order {d}"),
        };
        let machine = [byte(18)?, byte(19)?];
        let machine = match endian {
            Endian::Little => u16::from_le_bytes(machine),
            Endian::Big => u16::from_be_bytes(machine),
        };
        Ok((is_64, endian, machine))
    }

    /// The architecture of an ELF header (first 20 bytes), if it is one we know.
    pub fn from_elf_header(header: &[u8]) -> Option<Arch> {
        let (is_64, endian, machine) = Arch::elf_ident(header).ok()?;
        Arch::from_elf(machine, is_64, endian)
    }

    /// Debian packages that provide a compiler for this architecture, for error messages.
    /// lld cannot link s390x, so there clang needs the cross binutils' ld.
    pub fn debian_compiler_packages(self) -> String {
        let suffix = self.gnu_triple().replace('_', "-");
        match self {
            Arch::S390x => format!("clang and binutils-{suffix}, or gcc-{suffix}"),
            _ => format!("clang and lld, or gcc-{suffix}"),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Arch> {
        match Arch::ALL.into_iter().find(|a| a.name() == s) {
            Some(arch) => Ok(arch),
            None => bail!(
                "unknown architecture {s:?}; expected one of: {}",
                Arch::ALL.map(Arch::name).join(", ")
            ),
        }
    }
}

/// An OCI platform pausebake can target: always `linux`, one architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub arch: Arch,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux/{}", self.arch)?;
        if let Some(v) = self.arch.variant() {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = anyhow::Error;

    /// Accepts `linux/arm64`, `linux/arm/v7`, `linux/arm64/v8` or a bare `arm64`.
    fn from_str(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => bail!("parsing platform {s:?}: expected os/arch[/variant], e.g. linux/arm64"),
        };
        if os != "linux" {
            bail!("parsing platform {s:?}: only linux is supported, not {os:?}");
        }
        let arch: Arch = arch.parse()?;
        let variant_ok = matches!(
            (arch, variant),
            (_, None) | (Arch::Arm, Some("v7")) | (Arch::Arm64, Some("v8"))
        );
        if !variant_ok {
            bail!(
                "parsing platform {s:?}: variant {:?} is not supported for {arch}",
                variant.unwrap_or_default()
            );
        }
        Ok(Platform { arch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(arch.name().parse::<Arch>().unwrap(), arch);
            assert_eq!(
                Arch::from_elf(arch.elf_machine(), arch.elf_64bit(), arch.endian()),
                Some(arch)
            );
        }
    }

    #[test]
    fn elf_ident_reads_the_header_or_says_what_is_wrong() {
        // s390x: 64-bit, big-endian, machine 22 at offset 18.
        let mut h = [0u8; 20];
        h[..6].copy_from_slice(b"\x7fELF\x02\x02");
        h[19] = 22;
        assert_eq!(Arch::elf_ident(&h).unwrap(), (true, Endian::Big, 22));
        assert_eq!(Arch::from_elf_header(&h), Some(Arch::S390x));
        let err = |bytes: &[u8]| Arch::elf_ident(bytes).unwrap_err().to_string();
        assert_eq!(err(&h[..19]), "truncated ELF file (19 bytes)");
        assert_eq!(err(b"\x7fEL"), "truncated ELF file (3 bytes)");
        assert_eq!(err(b"#!/bin/sh\n"), "not an ELF file");
        h[4] = 3;
        assert_eq!(err(&h), "unknown ELF class 3");
        h[4] = 1;
        h[5] = 0;
        assert_eq!(err(&h), "unknown ELF byte order 0");
        assert_eq!(Arch::from_elf_header(&h), None);
    }

    #[test]
    fn unknown_arch_lists_the_known_ones() {
        let err = "mips".parse::<Arch>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown architecture \"mips\"; expected one of: amd64, arm64, arm, ppc64le, s390x, riscv64"
        );
    }

    #[test]
    fn platforms_parse() {
        assert_eq!("linux/arm/v7".parse::<Platform>().unwrap().arch, Arch::Arm);
        assert_eq!(
            "linux/arm64/v8".parse::<Platform>().unwrap().arch,
            Arch::Arm64
        );
        assert_eq!("riscv64".parse::<Platform>().unwrap().arch, Arch::Riscv64);
        assert!("windows/amd64".parse::<Platform>().is_err());
        assert!("linux/amd64/v3".parse::<Platform>().is_err());
        assert_eq!(Platform { arch: Arch::Arm }.to_string(), "linux/arm/v7");
    }
}
