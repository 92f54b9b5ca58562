#!/usr/bin/env bash
# `make dist`: the release files, byte-identical from any checkout directory.
#
#   dist/pausebake-linux-amd64, dist/pausebake-linux-arm64
#       fully static (musl, no program interpreter), linked by the toolchain's own rust-lld,
#       so no C cross tools are needed (`rustup target add` is all: tests/setup.sh does it)
#   dist/pause.oci.tar      the built-in pause for all six platforms
#   dist/SHA256SUMS         for `sha256sum -c`
#   dist/provenance.json    an in-toto v1 statement with a SLSA v1 provenance predicate
#
# SOURCE_DATE_EPOCH (default 0) dates the image content; nothing else carries a time.
# SOURCE_REVISION names the source in the provenance [default: git rev-parse HEAD].
# The directory is replaced as a whole, only after every file is written.
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${DIST:-dist}
cargo=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-target}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
# Flags from the caller's environment would change the bytes.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS

# Registry sources' absolute paths reach the binary in panic locations; the checkout's own
# files are passed to rustc as relative paths already, and the stripped binary has no debug
# info with a compile directory. So one remap, the same in every checkout directory.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
remap="--remap-path-prefix=$cargo_home=/cargo"

tmp="$dist.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
for pair in x86_64-unknown-linux-musl:amd64 aarch64-unknown-linux-musl:arm64; do
  triple=${pair%%:*}
  arch=${pair##*:}
  var=$(printf '%s' "$triple" | tr 'a-z-' 'A-Z_')
  # rust-lld ships with the Rust toolchain and links musl's self-contained crt and libc.
  env "CARGO_TARGET_${var}_LINKER=rust-lld" "CARGO_TARGET_${var}_RUSTFLAGS=$remap" \
    "$cargo" build --locked --profile dist --target "$triple"
  cp "$target_dir/$triple/dist/pausebake" "$tmp/pausebake-linux-$arch"
  chmod 0755 "$tmp/pausebake-linux-$arch"
done

case $(uname -m) in
  x86_64) self="$tmp/pausebake-linux-amd64" ;;
  aarch64) self="$tmp/pausebake-linux-arm64" ;;
  *) echo "dist: run on amd64 or arm64 (pause.oci.tar is written by the static binary)" >&2; exit 1 ;;
esac
"$self" image --arch amd64,arm64,arm,ppc64le,s390x,riscv64 --output "$tmp/pause.oci.tar" >/dev/null 2>&1

files=(pausebake-linux-amd64 pausebake-linux-arm64 pause.oci.tar)
(cd "$tmp" && sha256sum "${files[@]}" >SHA256SUMS)
files+=(SHA256SUMS)

sha() { sha256sum "$1" | cut -d' ' -f1; }
revision=${SOURCE_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
rustc_version=$(rustc --version)
cargo_version=$("$cargo" --version)
clang_version=$(head -n 1 templates/pause-linux.toolchain)
lld_version=$(sed -n 2p templates/pause-linux.toolchain)
{
  printf '{\n  "_type": "https://in-toto.io/Statement/v1",\n  "subject": [\n'
  sep=""
  for f in "${files[@]}"; do
    printf '%s    {"name": "%s", "digest": {"sha256": "%s"}}' "$sep" "$f" "$(sha "$tmp/$f")"
    sep=$',\n'
  done
  printf '\n  ],\n  "predicateType": "https://slsa.dev/provenance/v1",\n  "predicate": {\n'
  printf '    "buildDefinition": {\n'
  printf '      "buildType": "pausebake make dist (tools/dist.sh)",\n'
  printf '      "externalParameters": {"sourceRevision": "%s", "SOURCE_DATE_EPOCH": "%s"},\n' \
    "$revision" "$SOURCE_DATE_EPOCH"
  printf '      "internalParameters": {"rustc": "%s", "cargo": "%s", "pauseCompiler": "%s", "pauseLinker": "%s", "rustTargets": ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"], "linker": "rust-lld", "cargoProfile": "dist"},\n' \
    "$rustc_version" "$cargo_version" "$clang_version" "$lld_version"
  printf '      "resolvedDependencies": [\n'
  printf '        {"name": "source", "digest": {"gitCommit": "%s"}},\n' "$revision"
  printf '        {"name": "Cargo.lock", "digest": {"sha256": "%s"}},\n' "$(sha Cargo.lock)"
  printf '        {"name": "templates/pause.c", "digest": {"sha256": "%s"}}\n' "$(sha templates/pause.c)"
  printf '      ]\n    },\n'
  printf '    "runDetails": {"builder": {"id": "make dist"}}\n  }\n}\n'
} >"$tmp/provenance.json"

rm -rf "$dist"
mv "$tmp" "$dist"
(cd "$dist" && cat SHA256SUMS)
