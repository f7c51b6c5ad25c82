# Everything CI runs is `make ci`; `.ci/run` installs the tools and calls it.
CARGO ?= cargo
BENCH_DIR ?= bench-results

.PHONY: build test lint fmt crds yaml-lint ci bench bench-graph bench-startup testenv-build testenv testenv-down

# Both binaries: platform-operator (run, plan, crds) and platform-sandbox (sandbox, bench).
build:
	$(CARGO) build --workspace --locked --release

test:
	$(CARGO) test --workspace --locked --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Regenerates crds/ from the Rust types (a test fails when they drift apart).
crds:
	$(CARGO) run -p platform-operator --locked --quiet -- crds --out-dir crds

yaml-lint:
	yamllint --strict -c .yamllint.yaml crds deploy

ci: lint yaml-lint test

bench: bench-graph bench-startup

bench-graph:
	mkdir -p $(BENCH_DIR)
	$(CARGO) run -p platform-sandbox --locked --release --quiet -- bench graph --platforms 100000 --edges 300000 --json $(BENCH_DIR)/graph.json

bench-startup:
	mkdir -p $(BENCH_DIR)
	$(CARGO) run -p platform-sandbox --locked --release --quiet -- bench startup --platforms 1000 --depth 20 --json $(BENCH_DIR)/startup.json

# A real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok as the
# kubelet) built from pinned Go modules and run on 127.0.0.1; see testenv/README.md.
# Binaries are cached in target/testenv/bin/<hash>/, state in target/testenv/.
testenv-build:
	testenv/build.sh >/dev/null

testenv: testenv-build
	testenv/up.sh

testenv-down:
	testenv/down.sh
