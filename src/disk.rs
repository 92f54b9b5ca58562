//! `--disk IMAGE`: the root filesystem inside a disk image file, loop-mounted for the time of
//! one command and unmounted on every path.
//!
//! What it owns:
//! - **Reading the layout** (pure functions over bytes): a GPT (header and entry array, both
//!   CRC-checked, behind a protective MBR; 512- or 4096-byte sectors), an MBR's four primary
//!   partitions, or a whole filesystem with no table. Logical partitions inside an MBR
//!   extended partition are not read.
//! - **Recognising filesystems** by their superblock magic: ext2/3/4, xfs, btrfs (the Linux
//!   filesystems a root can live on) and vfat (to name an EFI partition).
//! - **Choosing the root**: `--partition N`; else the partition whose GPT type is a root type
//!   of the Discoverable Partitions Specification (uapi-group.org, "Root Partition" rows of
//!   its table; the six architectures pausebake supports); else the one Linux filesystem that
//!   holds `/etc/os-release` (or `/usr/lib/os-release`), found by mounting each read-only.
//! - **Mounting** it with `mount -o loop,offset=B,sizelimit=S` (the loop device is set up
//!   with autoclear, so unmounting also detaches it; pausebake waits until it is gone),
//!   read-write for commands that write and read-only for `verify` and `--dry-run`, and
//!   undoing that on every path. A range already attached to a loop device is refused: a
//!   filesystem mounted twice is corrupted.
//! - **Other image formats** (`--disk-format`, anything `qemu-img` reads): converted to a raw
//!   temporary file beside the image, and after a command that writes converted back into the
//!   same format and renamed over the image.
//!
//! Every path out unmounts. On success and on error pausebake itself unmounts (which syncs
//! the filesystem), then fsyncs the image. For a signal (SIGINT, SIGTERM, even SIGKILL) a
//! *guard* does it: a small `sh` started before the mount, in its own process group (so a
//! terminal's Ctrl-C does not reach it), reading a pipe from pausebake. When pausebake ends
//! without writing `done` on that pipe, the guard unmounts, removes the mount directory and
//! the temporary files. This needs no signal handler, so no `unsafe` and no dependency, and
//! it covers what an in-process handler cannot (SIGKILL, an abort). A command cut short this
//! way is as far as a SIGKILL would have left it, which bake is tested to survive
//! (`tests/it/harden.rs`). Not covered: killing the guard itself, as a systemd unit stop
//! kills its whole cgroup.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::{DiskArgs, RootArgs};
use crate::exec;
use crate::platform::Arch;
use crate::rootfs::Root;

/// How a command uses the root: `verify` and `--dry-run` mount read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

impl Access {
    /// Read-only under `--dry-run`, read-write otherwise.
    pub fn unless_dry_run(dry_run: bool) -> Access {
        if dry_run {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        }
    }
}

/// Runs `f` on the root `args` name: `--root DIR` as it is, or the root filesystem of
/// `--disk IMAGE`, mounted for the time of `f` and unmounted whatever `f` returns (and
/// named in reports by the image and its partition, not the mount directory).
pub fn with_root<T>(
    args: &RootArgs,
    access: Access,
    f: impl FnOnce(Root) -> Result<T>,
) -> Result<T> {
    match (&args.root, &args.disk.disk) {
        (Some(root), _) => f(Root::new(root)?),
        (None, Some(image)) => with_disk(image, &args.disk, access, f),
        (None, None) => bail!("no root given: use --root DIR or --disk IMAGE"),
    }
}

// --- the layout, from bytes --------------------------------------------------------------

/// A GPT partition type or disk GUID, in its on-disk byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid([u8; 16]);

impl Guid {
    /// Parses the textual form (`4f68bce3-e8cd-4db1-96e7-fbcaf984b709`): the first three
    /// fields are stored little-endian, the last two as written.
    pub const fn parse(text: &str) -> Guid {
        let t = text.as_bytes();
        assert!(t.len() == 36, "a GUID is 36 characters");
        // byte i of the on-disk form comes from the hex pair at this text position
        const AT: [usize; 16] = [6, 4, 2, 0, 11, 9, 16, 14, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            out[i] = hex(t[AT[i]]) << 4 | hex(t[AT[i] + 1]);
            i += 1;
        }
        Guid(out)
    }
}

const fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit"),
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02x}"))
    }
}

/// The root partition type of each architecture pausebake supports, from the Discoverable
/// Partitions Specification ("Root Partition (x86-64)" and the rows beside it).
pub const ROOT_TYPES: [(Arch, Guid); 6] = [
    (
        Arch::Amd64,
        Guid::parse("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
    ),
    (
        Arch::Arm64,
        Guid::parse("b921b045-1df0-41c3-af44-4c6f280d3fae"),
    ),
    (
        Arch::Arm,
        Guid::parse("69dad710-2ce4-4e3c-b16c-21a1d49abed3"),
    ),
    (
        Arch::Ppc64le,
        Guid::parse("c31c45e6-3f39-412e-80fb-4809c4980599"),
    ),
    (
        Arch::S390x,
        Guid::parse("5eead9a9-fe09-4a1e-a1d7-520d00531306"),
    ),
    (
        Arch::Riscv64,
        Guid::parse("72ec70a6-cf74-40e6-bd49-4bda08e8f224"),
    ),
];

/// Other GPT types worth naming in messages.
const NAMED_TYPES: [(&str, Guid); 3] = [
    (
        "EFI system",
        Guid::parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
    ),
    (
        "Linux filesystem",
        Guid::parse("0fc63daf-8483-4772-8e79-3d69d8477de4"),
    ),
    (
        "BIOS boot",
        Guid::parse("21686148-6449-6e6f-744e-656564454649"),
    ),
];

/// What the table says a partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gpt(Guid),
    /// The MBR system id byte.
    Mbr(u8),
    /// No partition table: the image is one filesystem.
    Whole,
}

impl Kind {
    /// The architecture whose root partition type this is, if it is one.
    pub fn root_arch(self) -> Option<Arch> {
        let Kind::Gpt(guid) = self else { return None };
        ROOT_TYPES.iter().find(|(_, g)| *g == guid).map(|(a, _)| *a)
    }

    /// A short name for messages: `GPT root amd64`, `GPT EFI system`, `MBR type 0x83`.
    pub fn describe(self) -> String {
        match self {
            Kind::Gpt(guid) => {
                if let Some(arch) = self.root_arch() {
                    return format!("GPT root {}", arch.name());
                }
                match NAMED_TYPES.iter().find(|(_, g)| *g == guid) {
                    Some((name, _)) => format!("GPT {name}"),
                    None => format!("GPT type {guid}"),
                }
            }
            Kind::Mbr(id) => format!("MBR type {id:#04x}"),
            Kind::Whole => "no partition table".to_string(),
        }
    }
}

/// A partition (or the whole image) in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based as Linux numbers them (`sda2`); 0 for a whole-disk filesystem.
    pub number: u32,
    pub kind: Kind,
    pub offset: u64,
    pub size: u64,
}

/// Where the partitions are, from the image's first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A GPT; its entry array is at `entries` (bytes), `count` entries of `entry_size`.
    Gpt {
        sector: u64,
        entries: u64,
        count: u32,
        entry_size: u32,
        entries_crc: u32,
    },
    Mbr(Vec<Partition>),
    /// No table: a filesystem (or nothing) from byte 0.
    Whole,
}

/// CRC-32 (IEEE 802.3, reflected), as the GPT header and entry array carry it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The GPT sector sizes tried, in order: the header is in the second sector.
const SECTOR_SIZES: [u64; 2] = [512, 4096];

/// How much of the image's start [`layout`] needs.
pub const HEAD_BYTES: usize = 8192;

/// The layout from the image's first [`HEAD_BYTES`] (fewer if the image is smaller).
pub fn layout(head: &[u8], disk_len: u64) -> Result<Layout> {
    for sector in SECTOR_SIZES {
        let at = sector as usize;
        if head.len() >= at + 92 && &head[at..at + 8] == b"EFI PART" {
            return gpt_header(&head[at..], sector, disk_len);
        }
    }
    if head.len() >= 512 && head[510..512] == [0x55, 0xaa] {
        if let Some(parts) = mbr(&head[..512], disk_len)? {
            return Ok(Layout::Mbr(parts));
        }
    }
    Ok(Layout::Whole)
}

/// A GPT header (from its first byte), checked: size, CRC, entry size.
fn gpt_header(h: &[u8], sector: u64, disk_len: u64) -> Result<Layout> {
    let size = u32_at(h, 12) as usize;
    if !(92..=h.len().min(sector as usize)).contains(&size) {
        bail!("reading the GPT header: header size {size} is not valid");
    }
    let mut copy = h[..size].to_vec();
    copy[16..20].fill(0);
    let (want, got) = (u32_at(h, 16), crc32(&copy));
    if want != got {
        bail!("reading the GPT header: its CRC is {want:#010x}, the bytes give {got:#010x} (a damaged table: repair it with sgdisk or sfdisk, or use --partition with a fixed image)");
    }
    let entries = u64_at(h, 72).saturating_mul(sector);
    let count = u32_at(h, 80);
    let entry_size = u32_at(h, 84);
    if entry_size < 128 || !entry_size.is_multiple_of(8) || count > 1024 {
        bail!("reading the GPT header: {count} entries of {entry_size} bytes is not a GPT");
    }
    let end = entries.saturating_add(u64::from(count) * u64::from(entry_size));
    if end > disk_len {
        bail!("reading the GPT header: its entry array ends at byte {end}, past the image's end ({disk_len} bytes): is the image truncated?");
    }
    Ok(Layout::Gpt {
        sector,
        entries,
        count,
        entry_size,
        entries_crc: u32_at(h, 88),
    })
}

/// The used entries of a GPT entry array (`bytes` is the whole array).
pub fn gpt_entries(
    bytes: &[u8],
    sector: u64,
    entry_size: u32,
    crc: u32,
    disk_len: u64,
) -> Result<Vec<Partition>> {
    let got = crc32(bytes);
    if got != crc {
        bail!("reading the GPT entries: their CRC is {crc:#010x}, the bytes give {got:#010x} (a damaged table)");
    }
    let mut out = Vec::new();
    for (i, e) in bytes.chunks_exact(entry_size as usize).enumerate() {
        let guid = Guid(e[..16].try_into().expect("16 bytes"));
        if guid.0 == [0; 16] {
            continue;
        }
        let (first, last) = (u64_at(e, 32), u64_at(e, 40));
        let number = i as u32 + 1;
        out.push(checked(
            number,
            Kind::Gpt(guid),
            first,
            last,
            sector,
            disk_len,
        )?);
    }
    Ok(out)
}

/// A partition from its first and last sector, refused when it does not fit the image.
fn checked(
    number: u32,
    kind: Kind,
    first: u64,
    last: u64,
    sector: u64,
    disk_len: u64,
) -> Result<Partition> {
    let (offset, end) = (
        first.saturating_mul(sector),
        last.saturating_add(1).saturating_mul(sector),
    );
    if last < first || end > disk_len {
        bail!(
            "partition {number} ({}) spans bytes {offset}..{end}, outside the image's {disk_len} bytes: is the image truncated?",
            kind.describe()
        );
    }
    Ok(Partition {
        number,
        kind,
        offset,
        size: end - offset,
    })
}

/// The MBR's primary partitions, `None` when sector 0 is not an MBR (a FAT boot sector also
/// ends in 55 AA; its "entries" have status bytes other than 0x00 and 0x80), or an error for
/// a protective MBR with no GPT behind it.
pub fn mbr(sector0: &[u8], disk_len: u64) -> Result<Option<Vec<Partition>>> {
    let entries: Vec<&[u8]> = sector0[446..510].chunks_exact(16).collect();
    if entries.iter().any(|e| e[0] != 0 && e[0] != 0x80) {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let (id, first, count) = (e[4], u32_at(e, 8), u32_at(e, 12));
        if id == 0 || count == 0 {
            continue;
        }
        if id == 0xee {
            bail!("reading the partition table: a protective MBR (type 0xee) but no GPT header in sector 1: a damaged GPT");
        }
        let (first, last) = (u64::from(first), u64::from(first) + u64::from(count) - 1);
        out.push(checked(
            i as u32 + 1,
            Kind::Mbr(id),
            first,
            last,
            512,
            disk_len,
        )?);
    }
    Ok((!out.is_empty()).then_some(out))
}

/// A filesystem recognised by its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Btrfs,
    Vfat,
}

impl Fs {
    /// The name `mount -t` takes.
    pub fn name(self) -> &'static str {
        match self {
            Fs::Ext2 => "ext2",
            Fs::Ext3 => "ext3",
            Fs::Ext4 => "ext4",
            Fs::Xfs => "xfs",
            Fs::Btrfs => "btrfs",
            Fs::Vfat => "vfat",
        }
    }

    /// A filesystem a Linux root can be on.
    pub fn is_linux(self) -> bool {
        self != Fs::Vfat
    }
}

/// How much of a partition's start [`filesystem`] reads: btrfs's superblock is at 64 KiB.
pub const SUPERBLOCK_BYTES: usize = 0x10048;

/// The filesystem whose superblock starts `bytes` (a partition's first
/// [`SUPERBLOCK_BYTES`], fewer if it is smaller).
pub fn filesystem(bytes: &[u8]) -> Option<Fs> {
    let at = |from: usize, magic: &[u8]| bytes.get(from..from + magic.len()) == Some(magic);
    if bytes.len() >= 1024 + 0x68 && u16_at(bytes, 1024 + 0x38) == 0xef53 {
        let compat = u32_at(bytes, 1024 + 0x5c);
        let incompat = u32_at(bytes, 1024 + 0x60);
        // extents, 64bit or flex_bg need ext4; a journal alone is ext3
        return Some(if incompat & (0x40 | 0x80 | 0x200) != 0 {
            Fs::Ext4
        } else if compat & 0x4 != 0 {
            Fs::Ext3
        } else {
            Fs::Ext2
        });
    }
    if at(0, b"XFSB") {
        return Some(Fs::Xfs);
    }
    if at(0x10040, b"_BHRfS_M") {
        return Some(Fs::Btrfs);
    }
    if at(510, &[0x55, 0xaa]) && (at(0x36, b"FAT") || at(0x52, b"FAT32")) {
        return Some(Fs::Vfat);
    }
    None
}

/// Image formats that need `--disk-format`, by their magic.
pub fn foreign_format(head: &[u8]) -> Option<&'static str> {
    let at = |from: usize, magic: &[u8]| head.get(from..from + magic.len()) == Some(magic);
    [
        (0, &b"QFI\xfb"[..], "qcow2"),
        (0, b"KDMV", "vmdk"),
        (0, b"vhdxfile", "vhdx"),
        (0, b"conectix", "vpc"),
        (0x40, b"\x7f\x10\xda\xbe", "vdi"),
    ]
    .into_iter()
    .find(|(from, magic, _)| at(*from, magic))
    .map(|(_, _, name)| name)
}

/// A partition with the filesystem found on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub part: Partition,
    pub fs: Option<Fs>,
}

impl Found {
    /// `partition 2 (GPT root amd64, ext4)` or `whole filesystem (ext4)`.
    pub fn describe(&self) -> String {
        let fs = self.fs.map_or("no known filesystem", Fs::name);
        if self.part.kind == Kind::Whole && self.fs.is_none() {
            format!("no partition table and {fs}")
        } else if self.part.kind == Kind::Whole {
            format!("whole filesystem ({fs})")
        } else {
            format!(
                "partition {} ({}, {fs})",
                self.part.number,
                self.part.kind.describe()
            )
        }
    }
}

/// The choice of root, before any mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// This one (index into the found list).
    One(usize),
    /// Whichever of these holds `/etc/os-release`.
    Probe(Vec<usize>),
}

/// Chooses the root among `found`: `--partition`, else the GPT root type (of `prefer` when
/// several architectures' roots are present), else the Linux filesystems to look into.
pub fn pick(found: &[Found], partition: Option<u32>, prefer: Option<Arch>) -> Result<Pick> {
    let listing = || list(found);
    if let Some(n) = partition {
        let Some(i) = found.iter().position(|f| f.part.number == n) else {
            bail!(
                "--partition {n}: the image has no partition {n} ({})",
                listing()
            );
        };
        if !found[i].fs.is_some_and(Fs::is_linux) {
            bail!(
                "--partition {n}: {} holds no Linux filesystem pausebake can mount (ext2/3/4, xfs, btrfs)",
                found[i].describe()
            );
        }
        return Ok(Pick::One(i));
    }
    let roots: Vec<usize> = (0..found.len())
        .filter(|&i| found[i].part.kind.root_arch().is_some())
        .collect();
    match roots.as_slice() {
        [one] => return Ok(Pick::One(*one)),
        [] => {}
        several => {
            let of = |arch| {
                several
                    .iter()
                    .copied()
                    .filter(|&i| found[i].part.kind.root_arch() == Some(arch))
                    .collect::<Vec<_>>()
            };
            if let Some([one]) = prefer.map(of).as_deref() {
                return Ok(Pick::One(*one));
            }
            bail!(
                "the image has several GPT root partitions ({}): choose one with --partition N",
                listing()
            );
        }
    }
    let linux: Vec<usize> = (0..found.len())
        .filter(|&i| found[i].fs.is_some_and(Fs::is_linux))
        .collect();
    if linux.is_empty() {
        bail!(
            "no Linux root in the image: no GPT root partition and no Linux filesystem (ext2/3/4, xfs, btrfs) ({})",
            listing()
        );
    }
    Ok(Pick::Probe(linux))
}

/// `partitions: 1 (GPT EFI system, vfat), 2 (…)` for messages.
fn list(found: &[Found]) -> String {
    if found.is_empty() {
        return "it has no partitions".to_string();
    }
    let each: Vec<String> = found.iter().map(Found::describe).collect();
    format!("it has {}", each.join(", "))
}

/// Whether a process with this `/proc/self/status` may mount (CAP_SYS_ADMIN in CapEff);
/// `None` when the line is missing.
pub fn can_mount(status: &str) -> Option<bool> {
    const CAP_SYS_ADMIN: u32 = 21;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let caps = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(caps >> CAP_SYS_ADMIN & 1 == 1)
}

// --- the I/O edge ------------------------------------------------------------------------

/// Reads `len` bytes at `offset` (fewer at the end of the file).
fn read_at(file: &mut File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The partitions of a raw image and the filesystem on each.
fn survey(image: &Path) -> Result<Vec<Found>> {
    let mut file =
        File::open(image).with_context(|| format!("opening disk image {}", image.display()))?;
    let len = file.metadata()?.len();
    let head = read_at(&mut file, 0, HEAD_BYTES)?;
    let parts = match layout(&head, len)? {
        Layout::Gpt {
            sector,
            entries,
            count,
            entry_size,
            entries_crc,
        } => {
            let bytes = read_at(&mut file, entries, count as usize * entry_size as usize)?;
            gpt_entries(&bytes, sector, entry_size, entries_crc, len)?
        }
        Layout::Mbr(parts) => parts,
        Layout::Whole => {
            if let Some(format) = foreign_format(&head) {
                bail!("it is a {format} image, not raw: add --disk-format {format} (pausebake converts it to raw with qemu-img and back)");
            }
            vec![Partition {
                number: 0,
                kind: Kind::Whole,
                offset: 0,
                size: len,
            }]
        }
    };
    parts
        .into_iter()
        .map(|part| {
            let sb = read_at(
                &mut file,
                part.offset,
                SUPERBLOCK_BYTES.min(part.size as usize),
            )?;
            Ok(Found {
                fs: filesystem(&sb),
                part,
            })
        })
        .collect()
}

/// What is missing to loop-mount, as an error naming it and the way around it.
fn check_can_mount() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    if can_mount(&status) != Some(true) {
        bail!("mounting a disk image needs root privileges (CAP_SYS_ADMIN), which pausebake does not have: run it as root, or mount the root filesystem yourself and use --root DIR");
    }
    if !Path::new("/dev/loop-control").exists() {
        bail!("mounting a disk image needs loop devices, and /dev/loop-control is missing: load the loop module (modprobe loop), or in a container give it /dev/loop-control and /dev/loop*; or mount the root filesystem yourself and use --root DIR");
    }
    Ok(())
}

/// A fresh private directory to mount on.
fn mount_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for n in 0..100 {
        let dir = base.join(format!("pausebake-disk-{}-{n}", std::process::id()));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!(
        "creating a mount directory in {}: 100 names taken",
        base.display()
    )
}

/// The loop devices attached to `found` of `image` (`losetup` lines; empty when none).
fn attached(image: &Path, found: &Found) -> Result<String> {
    let out = exec::run(
        Command::new("losetup")
            .arg("--associated")
            .arg(image)
            .arg("--offset")
            .arg(found.part.offset.to_string()),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Loop-mounts `found` of `image` on `dir`, unless a loop device already holds it: a
/// filesystem mounted twice gets corrupted, and `mount -o loop` would reuse that device.
fn mount(image: &Path, found: &Found, dir: &Path, access: Access) -> Result<()> {
    let fs = found.fs.expect("only filesystems are mounted");
    let busy = attached(image, found)?;
    if !busy.is_empty() {
        bail!(
            "mounting {} of {}: it is attached to a loop device already ({busy}): unmount it and detach it (losetup -d) first",
            found.describe(),
            image.display()
        );
    }
    let mut options = match access {
        Access::ReadWrite => "loop,rw".to_string(),
        Access::ReadOnly => "loop,ro".to_string(),
    };
    if found.part.kind != Kind::Whole {
        let part = &found.part;
        options.push_str(&format!(",offset={},sizelimit={}", part.offset, part.size));
    }
    exec::run(
        Command::new("mount")
            .args(["-t", fs.name(), "-o", &options])
            .arg(image)
            .arg(dir),
    )
    .with_context(|| format!("mounting {} of {}", found.describe(), image.display()))?;
    Ok(())
}

/// How long [`unmount`] waits for the kernel to detach the loop device.
const DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Unmounts `dir`, which writes the filesystem out, then waits until the loop device of
/// `found` in `image` is gone. Autoclear detaches it after `umount` returns; until then
/// a new `mount -o loop` of the same range would reuse it, read-only if it was.
fn unmount(dir: &Path, image: &Path, found: &Found) -> Result<()> {
    exec::run(Command::new("umount").arg(dir))
        .with_context(|| format!("unmounting {}", dir.display()))?;
    let start = std::time::Instant::now();
    loop {
        let busy = attached(image, found)?;
        if busy.is_empty() {
            return Ok(());
        }
        if start.elapsed() > DETACH_WAIT {
            bail!(
                "unmounting {}: a loop device is still attached to it {}s later: {} (detach it with losetup -d)",
                found.describe(),
                DETACH_WAIT.as_secs(),
                busy
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether a Linux root is mounted on `dir`. Symlinks count without being followed: an
/// absolute `/etc/os-release` link points into the image, not the host.
fn holds_os_release(dir: &Path) -> bool {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .any(|p| fs::symlink_metadata(dir.join(p)).is_ok())
}

/// Chooses and returns the root of the raw `image`, mounting candidates read-only on `dir`
/// when it must look inside.
fn choose(image: &Path, disk: &DiskArgs, dir: &Path) -> Result<Found> {
    let found = survey(image).with_context(|| format!("reading disk image {}", image.display()))?;
    let pick = pick(&found, disk.partition, Arch::host())
        .with_context(|| format!("choosing the root of disk image {}", image.display()))?;
    let candidates = match pick {
        Pick::One(i) => return Ok(found[i].clone()),
        Pick::Probe(candidates) => candidates,
    };
    let mut holders = Vec::new();
    for i in candidates {
        mount(image, &found[i], dir, Access::ReadOnly)?;
        let holds = holds_os_release(dir);
        unmount(dir, image, &found[i])?;
        if holds {
            holders.push(i);
        }
    }
    match holders.as_slice() {
        [one] => Ok(found[*one].clone()),
        [] => bail!(
            "choosing the root of disk image {}: no Linux root in the image: no GPT root partition, and no Linux filesystem holds /etc/os-release ({})",
            image.display(),
            list(&found)
        ),
        several => {
            let each: Vec<String> = several.iter().map(|&i| found[i].describe()).collect();
            bail!(
                "choosing the root of disk image {}: several filesystems hold /etc/os-release ({}): choose one with --partition N",
                image.display(),
                each.join(", ")
            )
        }
    }
}

/// `--disk`: guard, convert if asked, choose, mount, run `f`, and undo all of it.
fn with_disk<T>(
    image: &Path,
    disk: &DiskArgs,
    access: Access,
    f: impl FnOnce(Root) -> Result<T>,
) -> Result<T> {
    let meta =
        fs::metadata(image).with_context(|| format!("reading disk image {}", image.display()))?;
    if !meta.is_file() {
        bail!("reading disk image {}: not a regular file", image.display());
    }
    let format = disk.disk_format.as_deref().filter(|f| *f != "raw");
    let convert = format.map(|f| Convert::new(image, f)).transpose()?;
    check_can_mount()?;
    let dir = mount_dir()?;
    let temps: Vec<PathBuf> = convert.iter().flat_map(Convert::temps).collect();
    let guard = match Guard::start(Some(&dir), &temps) {
        Ok(g) => g,
        Err(e) => {
            let _ = fs::remove_dir(&dir);
            return Err(e);
        }
    };
    let result = (|| {
        let raw = match &convert {
            Some(c) => c.to_raw()?,
            None => image.to_path_buf(),
        };
        let root = choose(&raw, disk, &dir)?;
        eprintln!(
            "disk: {} {} at offset {}",
            image.display(),
            root.describe(),
            root.part.offset
        );
        mount(&raw, &root, &dir, access)?;
        let shown = format!("{} {}", image.display(), root.describe());
        let out = Root::new(&dir).and_then(|r| f(r.shown_as(shown)));
        let unmounted = unmount(&dir, &raw, &root);
        let out = match (out, unmounted) {
            (Ok(v), Ok(())) => v,
            (Err(e), Ok(())) => return Err(e),
            (Ok(_), Err(u)) => return Err(u),
            (Err(e), Err(u)) => return Err(e.context(format!("{u:#}"))),
        };
        if access == Access::ReadWrite {
            File::open(&raw)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", raw.display()))?;
            if let Some(c) = &convert {
                c.back()?;
            }
        }
        Ok(out)
    })();
    // The mount directory and the temporaries go on every path; the guard then stands down.
    let finished = guard.finish();
    match (result, finished) {
        (Ok(v), Ok(())) => Ok(v),
        (Err(e), Ok(())) => Err(e),
        (Ok(_), Err(g)) => Err(g),
        (Err(e), Err(g)) => Err(e.context(format!("{g:#}"))),
    }
}

// --- the guard ---------------------------------------------------------------------------

/// The guard's script: `$1` the mount directory (may be empty), then temporary files. It
/// waits for a line on stdin; `done` means pausebake cleaned up itself; anything else (EOF:
/// pausebake ended without saying so) makes it unmount, retrying while the dying process's
/// files close, then remove the directory and the temporaries.
const GUARD: &str = r#"dir=$1; shift
read -r word || word=
[ "$word" = done ] && exit 0
if [ -n "$dir" ]; then
  i=0
  while mountpoint -q "$dir"; do
    umount "$dir" 2>/dev/null && break
    i=$((i + 1))
    if [ "$i" -ge 100 ]; then umount -l "$dir"; break; fi
    sleep 0.1
  done
  rmdir "$dir" 2>/dev/null
fi
rm -f -- "$@"
echo "pausebake: ended early; its guard unmounted ${dir:-nothing} and removed its temporary files" >&2
"#;

/// The guard process and the pipe that keeps it waiting.
struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
    dir: Option<PathBuf>,
    temps: Vec<PathBuf>,
}

impl Guard {
    /// Starts the guard for `dir` and `temps` before anything is mounted or written.
    fn start(dir: Option<&Path>, temps: &[PathBuf]) -> Result<Guard> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(GUARD)
            .arg("pausebake-guard")
            .arg(dir.map_or_else(OsString::new, |d| d.as_os_str().to_owned()))
            .args(temps)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // its own process group: a terminal's Ctrl-C reaches pausebake, not the guard
            .process_group(0);
        let mut child = cmd.spawn().with_context(|| {
            format!("starting the unmount guard ({})", exec::command_line(&cmd))
        })?;
        let stdin = child.stdin.take();
        Ok(Guard {
            child,
            stdin,
            dir: dir.map(Path::to_path_buf),
            temps: temps.to_vec(),
        })
    }

    /// Removes what is left (the mount directory, the temporaries), then tells the guard to
    /// stand down and waits for it.
    fn finish(mut self) -> Result<()> {
        let mut problems = Vec::new();
        if let Some(dir) = &self.dir {
            if let Err(e) = fs::remove_dir(dir) {
                problems.push(format!("removing {}: {e}", dir.display()));
            }
        }
        for t in &self.temps {
            match fs::remove_file(t) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    problems.push(format!("removing {}: {e}", t.display()))
                }
                _ => {}
            }
        }
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"done\n");
        }
        let _ = self.child.wait();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(
                "cleaning up after the disk: {}",
                problems.join("; ")
            ))
        }
    }
}

// --- other formats through qemu-img ------------------------------------------------------

/// An image in another format, its raw copy and the converted-back copy, both beside it.
struct Convert {
    image: PathBuf,
    format: String,
    raw: PathBuf,
    back: PathBuf,
    /// `-o` options that keep the image's own settings when writing it back.
    options: Option<String>,
}

impl Convert {
    /// Checks that qemu-img reads `image` as `format` and that it has no backing file.
    fn new(image: &Path, format: &str) -> Result<Convert> {
        match Command::new("qemu-img").arg("--version").output() {
            Err(e) if e.kind() == ErrorKind::NotFound => bail!(
                "--disk-format {format} needs qemu-img to convert {} to raw and back, and qemu-img is not installed (Debian and Ubuntu: apt-get install qemu-utils; Fedora: dnf install qemu-img)",
                image.display()
            ),
            Err(e) => return Err(e).context("running qemu-img --version"),
            Ok(_) => {}
        }
        let info = exec::run(
            Command::new("qemu-img")
                .args(["info", "--output=json", "-f", format])
                .arg(image),
        )
        .with_context(|| format!("reading disk image {} as {format}", image.display()))?;
        let info: serde_json::Value =
            serde_json::from_slice(&info.stdout).context("reading qemu-img info's JSON")?;
        if let Some(backing) = info.get("backing-filename").and_then(|b| b.as_str()) {
            bail!("disk image {} has a backing file ({backing}): converting it would flatten the chain; bake the backing image, or `qemu-img convert` this one to a standalone image first", image.display());
        }
        let options = (format == "qcow2").then(|| {
            let data = &info["format-specific"]["data"];
            let mut o = Vec::new();
            if let Some(compat) = data["compat"].as_str() {
                o.push(format!("compat={compat}"));
            }
            if let Some(size) = info["cluster-size"].as_u64() {
                o.push(format!("cluster_size={size}"));
            }
            o.join(",")
        });
        let name = |tag: &str| {
            let mut n = OsString::from(".");
            n.push(image.file_name().unwrap_or_default());
            n.push(format!(".pausebake-{}.{tag}", std::process::id()));
            image.with_file_name(n)
        };
        Ok(Convert {
            image: image.to_path_buf(),
            format: format.to_string(),
            raw: name("raw"),
            back: name(format),
            options: options.filter(|o| !o.is_empty()),
        })
    }

    fn temps(&self) -> Vec<PathBuf> {
        vec![self.raw.clone(), self.back.clone()]
    }

    /// Writes the raw copy.
    fn to_raw(&self) -> Result<PathBuf> {
        exec::run(
            Command::new("qemu-img")
                .args(["convert", "-f", &self.format, "-O", "raw"])
                .arg(&self.image)
                .arg(&self.raw),
        )
        .with_context(|| format!("converting {} to raw", self.image.display()))?;
        Ok(self.raw.clone())
    }

    /// Converts the raw copy back into the image's format and renames it over the image,
    /// keeping its mode and owner.
    fn back(&self) -> Result<()> {
        let mut cmd = Command::new("qemu-img");
        cmd.args(["convert", "-f", "raw", "-O", &self.format]);
        if let Some(o) = &self.options {
            cmd.args(["-o", o]);
        }
        exec::run(cmd.arg(&self.raw).arg(&self.back)).with_context(|| {
            format!(
                "converting the baked {} back to {}",
                self.image.display(),
                self.format
            )
        })?;
        let meta = fs::metadata(&self.image)?;
        let file = File::open(&self.back)?;
        std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
        file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        file.sync_all()?;
        fs::rename(&self.back, &self.image)
            .with_context(|| format!("replacing {}", self.image.display()))?;
        let dir = self.image.parent().filter(|d| !d.as_os_str().is_empty());
        crate::rootfs::sync_dir(dir.unwrap_or(Path::new(".")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_read_and_print_in_gpt_byte_order() {
        let efi = Guid::parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(
            efi.0,
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert_eq!(efi.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }

    #[test]
    fn crc32_is_ieee() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    const MIB: u64 = 1 << 20;
    const EFI: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
    const LINUX: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
    const ROOT_AMD64: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
    const ROOT_ARM64: &str = "b921b045-1df0-41c3-af44-4c6f280d3fae";

    /// The first 34 sectors of a GPT disk of `len` bytes (512-byte sectors): a protective
    /// MBR, the header at LBA 1, 128 entries of 128 bytes from LBA 2, as sfdisk writes them.
    fn gpt_disk(parts: &[(&str, u64, u64)], len: u64) -> Vec<u8> {
        let mut d = vec![0u8; 34 * 512];
        // protective MBR: one entry of type 0xee over the disk
        d[446 + 4] = 0xee;
        d[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        d[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        d[510..512].copy_from_slice(&[0x55, 0xaa]);
        for (i, (ty, first, last)) in parts.iter().enumerate() {
            let e = 1024 + i * 128;
            d[e..e + 16].copy_from_slice(&Guid::parse(ty).0);
            d[e + 16] = i as u8 + 1; // unique GUID: anything non-zero
            d[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
            d[e + 40..e + 48].copy_from_slice(&last.to_le_bytes());
        }
        let entries_crc = crc32(&d[1024..1024 + 128 * 128]);
        let h = 512;
        d[h..h + 8].copy_from_slice(b"EFI PART");
        d[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        d[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
        d[h + 24..h + 32].copy_from_slice(&1u64.to_le_bytes());
        d[h + 32..h + 40].copy_from_slice(&(len / 512 - 1).to_le_bytes());
        d[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
        d[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
        d[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        d[h + 88..h + 92].copy_from_slice(&entries_crc.to_le_bytes());
        let header_crc = crc32(&d[h..h + 92]);
        d[h + 16..h + 20].copy_from_slice(&header_crc.to_le_bytes());
        d
    }

    /// The partitions of a disk image's first bytes, as `survey` reads them.
    fn partitions(d: &[u8], len: u64) -> Result<Vec<Partition>> {
        match layout(&d[..HEAD_BYTES.min(d.len())], len)? {
            Layout::Gpt {
                sector,
                entries,
                count,
                entry_size,
                entries_crc,
            } => {
                let end = entries as usize + count as usize * entry_size as usize;
                gpt_entries(
                    &d[entries as usize..end],
                    sector,
                    entry_size,
                    entries_crc,
                    len,
                )
            }
            Layout::Mbr(parts) => Ok(parts),
            Layout::Whole => Ok(Vec::new()),
        }
    }

    #[test]
    fn a_gpt_behind_its_protective_mbr_gives_its_partitions() {
        let len = 64 * MIB;
        let d = gpt_disk(&[(EFI, 2048, 18431), (ROOT_AMD64, 18432, 131038)], len);
        let parts = partitions(&d, len).unwrap();
        assert_eq!(
            parts,
            [
                Partition {
                    number: 1,
                    kind: Kind::Gpt(Guid::parse(EFI)),
                    offset: 2048 * 512,
                    size: 16384 * 512
                },
                Partition {
                    number: 2,
                    kind: Kind::Gpt(Guid::parse(ROOT_AMD64)),
                    offset: 18432 * 512,
                    size: (131038 - 18432 + 1) * 512
                },
            ]
        );
        assert_eq!(parts[0].kind.describe(), "GPT EFI system");
        assert_eq!(parts[1].kind.describe(), "GPT root amd64");
        assert_eq!(parts[1].kind.root_arch(), Some(Arch::Amd64));
    }

    #[test]
    fn a_damaged_or_truncated_gpt_is_an_error_naming_it() {
        let len = 64 * MIB;
        let mut d = gpt_disk(&[(LINUX, 2048, 131038)], len);
        let err = partitions(&d, 32 * MIB).unwrap_err().to_string();
        assert!(
            err.starts_with("partition 1 (GPT Linux filesystem) spans bytes"),
            "{err}"
        );
        assert!(err.ends_with("is the image truncated?"), "{err}");
        d[1024 + 40] ^= 1; // an entry changed behind the header's CRC
        let err = partitions(&d, len).unwrap_err().to_string();
        assert!(
            err.starts_with("reading the GPT entries: their CRC is"),
            "{err}"
        );
        d[512 + 24] ^= 1; // the header itself
        let err = partitions(&d, len).unwrap_err().to_string();
        assert!(
            err.starts_with("reading the GPT header: its CRC is"),
            "{err}"
        );
    }

    #[test]
    fn a_gpt_with_4096_byte_sectors_is_read_at_its_second_sector() {
        let len = 64 * MIB;
        let small = gpt_disk(&[(LINUX, 256, 1023)], len);
        // the same header and entries, one 4096-byte sector each
        let mut d = vec![0u8; 8192 + 16384];
        d[..512].copy_from_slice(&small[..512]);
        d[4096..4096 + 512].copy_from_slice(&small[512..1024]);
        d[8192..8192 + 16384].copy_from_slice(&small[1024..1024 + 16384]);
        let parts = partitions(&d, len).unwrap();
        assert_eq!((parts[0].offset, parts[0].size), (256 * 4096, 768 * 4096));
    }

    #[test]
    fn an_mbr_gives_its_primary_partitions_numbered_by_slot() {
        let mut d = vec![0u8; 512];
        let mut entry = |slot: usize, status: u8, id: u8, first: u32, count: u32| {
            let e = 446 + slot * 16;
            d[e] = status;
            d[e + 4] = id;
            d[e + 8..e + 12].copy_from_slice(&first.to_le_bytes());
            d[e + 12..e + 16].copy_from_slice(&count.to_le_bytes());
        };
        entry(0, 0x80, 0x0c, 2048, 2048);
        entry(2, 0x00, 0x83, 4096, 8192);
        d[510..512].copy_from_slice(&[0x55, 0xaa]);
        let parts = partitions(&d, 16 * MIB).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[1],
            Partition {
                number: 3,
                kind: Kind::Mbr(0x83),
                offset: 4096 * 512,
                size: 8192 * 512
            }
        );
        assert_eq!(parts[1].kind.describe(), "MBR type 0x83");
        // A protective MBR without its GPT is a damaged GPT, not an MBR.
        let mut p = gpt_disk(&[(LINUX, 2048, 4095)], 16 * MIB);
        p[512..520].fill(0);
        let err = layout(&p[..HEAD_BYTES], 16 * MIB).unwrap_err().to_string();
        assert!(err.contains("protective MBR"), "{err}");
    }

    #[test]
    fn a_fat_boot_sector_or_zeros_is_no_table() {
        let mut fat = vec![0u8; 1024];
        fat[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
        fat[446] = 0x12; // boot code where an MBR has its entries
        fat[0x52..0x57].copy_from_slice(b"FAT32");
        fat[510..512].copy_from_slice(&[0x55, 0xaa]);
        assert_eq!(layout(&fat, 1 << 20).unwrap(), Layout::Whole);
        assert_eq!(filesystem(&fat), Some(Fs::Vfat));
        assert_eq!(layout(&[0u8; 8192], 1 << 20).unwrap(), Layout::Whole);
    }

    #[test]
    fn superblocks_name_their_filesystem() {
        let mut ext = vec![0u8; 2048];
        ext[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
        assert_eq!(filesystem(&ext), Some(Fs::Ext2));
        ext[1024 + 0x5c] = 0x04; // has_journal
        assert_eq!(filesystem(&ext), Some(Fs::Ext3));
        ext[1024 + 0x60] = 0x40; // extents
        assert_eq!(filesystem(&ext), Some(Fs::Ext4));
        let mut xfs = vec![0u8; 512];
        xfs[..4].copy_from_slice(b"XFSB");
        assert_eq!(filesystem(&xfs), Some(Fs::Xfs));
        let mut btrfs = vec![0u8; SUPERBLOCK_BYTES];
        btrfs[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        assert_eq!(filesystem(&btrfs), Some(Fs::Btrfs));
        assert_eq!(filesystem(&[0u8; 100]), None);
        assert_eq!(foreign_format(b"QFI\xfb\0\0\0\x03"), Some("qcow2"));
        assert_eq!(foreign_format(&ext), None);
    }

    fn found(number: u32, kind: Kind, fs: Option<Fs>) -> Found {
        Found {
            part: Partition {
                number,
                kind,
                offset: u64::from(number) * MIB,
                size: MIB,
            },
            fs,
        }
    }

    #[test]
    fn the_root_is_the_partition_asked_for_else_the_gpt_root_else_a_linux_filesystem() {
        let gpt = |t| Kind::Gpt(Guid::parse(t));
        let efi = found(1, gpt(EFI), Some(Fs::Vfat));
        let data = found(2, gpt(LINUX), Some(Fs::Ext4));
        let root = found(3, gpt(ROOT_AMD64), Some(Fs::Xfs));
        let arm = found(4, gpt(ROOT_ARM64), Some(Fs::Ext4));
        let disk = [efi.clone(), data.clone(), root.clone()];
        assert_eq!(pick(&disk, None, None).unwrap(), Pick::One(2));
        assert_eq!(pick(&disk, Some(2), None).unwrap(), Pick::One(1));
        assert_eq!(
            pick(&[efi.clone(), data.clone()], None, None).unwrap(),
            Pick::Probe(vec![1])
        );
        let both = [efi.clone(), root, arm];
        assert_eq!(pick(&both, None, Some(Arch::Arm64)).unwrap(), Pick::One(2));
        let err = pick(&both, None, Some(Arch::S390x))
            .unwrap_err()
            .to_string();
        assert!(err.contains("several GPT root partitions"), "{err}");
        assert!(err.ends_with("choose one with --partition N"), "{err}");
        let err = pick(&disk, Some(1), None).unwrap_err().to_string();
        assert_eq!(err, "--partition 1: partition 1 (GPT EFI system, vfat) holds no Linux filesystem pausebake can mount (ext2/3/4, xfs, btrfs)");
        let err = pick(&disk, Some(7), None).unwrap_err().to_string();
        assert!(err.starts_with("--partition 7: the image has no partition 7 (it has partition 1 (GPT EFI system, vfat), "), "{err}");
        let err = pick(&[efi], None, None).unwrap_err().to_string();
        assert_eq!(err, "no Linux root in the image: no GPT root partition and no Linux filesystem (ext2/3/4, xfs, btrfs) (it has partition 1 (GPT EFI system, vfat))");
        let whole = found(0, Kind::Whole, Some(Fs::Ext4));
        assert_eq!(whole.describe(), "whole filesystem (ext4)");
        assert_eq!(pick(&[whole], None, None).unwrap(), Pick::Probe(vec![0]));
        let mbr = found(1, Kind::Mbr(0x83), None);
        let err = pick(&[mbr], None, None).unwrap_err().to_string();
        assert!(
            err.contains("partition 1 (MBR type 0x83, no known filesystem)"),
            "{err}"
        );
    }

    #[test]
    fn mounting_needs_cap_sys_admin() {
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        let user = "Name:\tx\nCapEff:\t0000000000000000\n";
        assert_eq!(can_mount(root), Some(true));
        assert_eq!(can_mount(user), Some(false));
        assert_eq!(can_mount("CapEff:\t0000000000200000"), Some(true));
        assert_eq!(can_mount("Name: x"), None);
    }

    #[test]
    fn every_supported_architecture_has_its_root_type() {
        for arch in Arch::ALL {
            let n = ROOT_TYPES.iter().filter(|(a, _)| *a == arch).count();
            assert_eq!(n, 1, "{arch:?}");
        }
    }
}
