# pausebake: the entry points for people and CI.
CARGO ?= cargo
DIST ?= dist

.PHONY: all test lint image bench fuzz clean

# The live path (--address) needs protoc (tests/setup.sh installs it); a plain
# `cargo build` leaves it out.
FEATURES ?= --features live

all:
	$(CARGO) build --release --locked $(FEATURES)

# The whole suite: install what the tests need, then lint and run every test.
test:
	tests/setup.sh
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets $(FEATURES) -- -D warnings
	$(CARGO) clippy --locked --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps --document-private-items $(FEATURES)
	$(CARGO) test --locked $(FEATURES)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets $(FEATURES) -- -D warnings
	$(CARGO) clippy --locked --all-targets -- -D warnings

# dist/pause.oci.tar for every architecture whose compiler is present (an architecture
# that does not compile is skipped, loudly), plus its sha256 and image digest.
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

# One table: sizes, RSS and times, each beside the figure it is compared to.
bench:
	$(CARGO) build --release --locked $(FEATURES)
	tests/bench/run.sh

# Fuzz the readers of hostile bytes (fuzz/: archive::read, bolt::read_tree) for
# FUZZ_SECONDS each; not part of `test`. cargo-fuzz passes nightly-only -Z flags (sanitizer,
# coverage passes); RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. A crash stops
# make and leaves the input in fuzz/artifacts/TARGET/: fix the bug, then commit the input
# as fuzz/regressions/TARGET/err-NAME (or ok-NAME), which `cargo test` reads back.
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
