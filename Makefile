# pausebake: the entry points for people and CI.
CARGO ?= cargo
DIST ?= dist

.PHONY: all test lint image bench clean

all:
	$(CARGO) build --release --locked

# The whole suite: install what the tests need, then lint and run every test.
test:
	tests/setup.sh
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps --document-private-items
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

image:
	@echo "make image: not implemented yet (issue: pausebake image)" >&2; exit 1

# One table: sizes, RSS and times, each beside the figure it is compared to.
bench:
	$(CARGO) build --release --locked
	tests/bench/run.sh

clean:
	rm -rf $(DIST)
	$(CARGO) clean
