# pausebake: the entry points for people and CI.
CARGO ?= cargo
DIST ?= dist

.PHONY: all test lint image dist pause-binaries bench fuzz clean

# The live path (--address) needs protoc (tests/setup.sh installs it); a plain
# `cargo build` leaves it out.
FEATURES ?= --features live

all:
	$(CARGO) build --release --locked $(FEATURES)

# The whole suite: install what the tests need, then lint and run every test, and check
# that the fuzz targets compile (without libFuzzer's C++ and the sanitizer, which `make fuzz`
# adds; in the main target directory, reusing the dependencies clippy checked).
test:
	tests/setup.sh
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets $(FEATURES) -- -D warnings
	$(CARGO) clippy --locked --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps --document-private-items $(FEATURES)
	$(CARGO) test --locked $(FEATURES)
	CARGO_TARGET_DIR=$(or $(CARGO_TARGET_DIR),$(CURDIR)/target) \
	  $(CARGO) check --locked --manifest-path fuzz/Cargo.toml --no-default-features --bins

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets $(FEATURES) -- -D warnings
	$(CARGO) clippy --locked --all-targets -- -D warnings

# dist/pause.oci.tar for IMAGE_ARCHES (the built-in pause programs; an architecture whose
# `build` fails is skipped, loudly), plus its sha256 and image digest.
# SOURCE_DATE_EPOCH is honoured; IMAGE_FLAGS adds e.g. --name REF or --compression none.
IMAGE_ARCHES ?= amd64 arm64 arm ppc64le s390x riscv64
IMAGE_FLAGS ?=
PAUSEBAKE_BIN ?= target/release/pausebake
image:
	$(CARGO) build --release --locked $(FEATURES)
	rm -rf $(DIST)/bin && mkdir -p $(DIST)/bin
	set -e; bins=""; \
	for a in $(IMAGE_ARCHES); do \
	  if $(PAUSEBAKE_BIN) build --arch $$a --out $(DIST)/bin >/dev/null 2>$(DIST)/bin/$$a.err; then \
	    bins="$$bins --binary=$$a=$(DIST)/bin/pause-linux-$$a"; \
	  else \
	    echo "make image: skipping $$a: $$(tail -n 1 $(DIST)/bin/$$a.err)" >&2; \
	  fi; \
	done; \
	[ -n "$$bins" ] || { echo "make image: no architecture compiled; install clang and lld" >&2; exit 1; }; \
	$(PAUSEBAKE_BIN) image $$bins $(IMAGE_FLAGS) --output $(DIST)/pause.oci.tar >$(DIST)/pause.oci.tar.txt
	head -n 1 $(DIST)/pause.oci.tar.txt >$(DIST)/pause.oci.tar.digest
	cd $(DIST) && sha256sum pause.oci.tar >pause.oci.tar.sha256
	@cat $(DIST)/pause.oci.tar.txt $(DIST)/pause.oci.tar.sha256

# The release files: static pausebake for amd64 and arm64, pause.oci.tar (six platforms),
# SHA256SUMS and provenance.json, byte-identical from any checkout (tools/dist.sh).
dist:
	DIST=$(DIST) CARGO=$(CARGO) tools/dist.sh

# The six built-in pause programs, rebuilt from templates/pause.c with the pinned toolchain
# (Debian bookworm's clang-19 and lld-19, which link all six). Run after changing pause.c
# or the version, and commit the result; `make test` rebuilds them the same way and
# requires identical bytes.
PAUSE_CC ?= clang-19
PAUSE_LD ?= ld.lld-19
pause-binaries:
	$(CARGO) run --locked --quiet -- build --cc $(PAUSE_CC) --ld $(PAUSE_LD) \
	  --arch amd64,arm64,arm,ppc64le,s390x,riscv64 --out templates
	cd templates && sha256sum pause-linux-amd64 pause-linux-arm64 pause-linux-arm \
	  pause-linux-ppc64le pause-linux-s390x pause-linux-riscv64 >pause-linux.sha256
	{ $(PAUSE_CC) --version | head -n 1; $(PAUSE_LD) --version; } >templates/pause-linux.toolchain

# One table: sizes, RSS and times, each beside the figure it is compared to.
bench:
	$(CARGO) build --release --locked $(FEATURES)
	tests/bench/run.sh

# Fuzz the readers of hostile bytes (fuzz/: archive::read, bolt::read_tree) for
# FUZZ_SECONDS each; not part of `test`. cargo-fuzz passes nightly-only -Z flags (sanitizer,
# coverage passes); RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. A crash stops
# make and leaves the input in fuzz/artifacts/TARGET/: fix the bug, then commit the input
# as fuzz/regressions/TARGET/err-NAME (or ok-NAME) with one line per variant in
# fuzz/regressions/TARGET.expect saying the error it must give; `cargo test` reads it back
# in every variant the target reads (src/fuzz_input.rs) and prints what it observed.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= archive bolt
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t fuzz/corpus/$$t fuzz/regressions/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1; \
	done

clean:
	rm -rf $(DIST)
	$(CARGO) clean
