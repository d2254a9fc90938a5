# The commands CI runs (.ci/run) and the README's quick start. Every target installs what it needs.
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: deps demo test lint fmt bench build cluster-up cluster-down

deps:
	@scripts/ensure-deps

build: deps
	$(CARGO) build --workspace --all-targets --locked

## The main job: rarc-sim serve + rarc-listener --backend docker + the FROM-scratch runner image;
## jobs run in runner containers, then a summary whose checks set the exit status (scripts/demo).
demo: deps
	scripts/demo

## Every test suite (starts and stops the real test cluster of tests/cluster around them).
test: deps
	scripts/test

## The test cluster alone: `make cluster-up` prints the kubeconfig path.
cluster-up:
	tests/cluster/up

cluster-down:
	tests/cluster/down

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks (release profile), with the test cluster and dockerd they need (scripts/bench);
## figures go to docs/benchmarks.md.
bench: deps
	scripts/bench
