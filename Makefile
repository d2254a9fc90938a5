# The commands CI runs (.ci/run) and the README's quick start. Every target installs what it needs.
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: deps demo test lint fmt bench build

deps:
	@scripts/ensure-deps

build: deps
	$(CARGO) build --workspace --all-targets --locked

## The main job: rarc-sim plus a client scenario against it, with a short summary.
demo: deps
	$(CARGO) run --locked -p rarc-sim -- demo

## Every test suite.
test: deps
	$(CARGO) test --workspace --locked --no-fail-fast

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks (release profile); figures go to docs/benchmarks.md.
bench: deps
	$(CARGO) bench --locked -p rarc-sim --bench round_trip
