# Everything CI runs is `make ci`; `.ci/run` installs the tools and calls it.
CARGO ?= cargo
BENCH_DIR ?= bench-results

.PHONY: bench-storm build test test-real lint fmt crds openapi yaml-lint tools ci ci-real packaging helm manifests manifests-check chart-check chart-install-check gitops-check bench bench-api bench-graph bench-startup bench-scale bench-real bench-real-1000 bench-real-scale bench-real-ready testenv-build testenv testenv-down

# The binaries: platform-operator (run, plan, crds), platform-sandbox (sandbox, bench) and
# kubectl-platform (the kubectl plugin).
build:
	$(CARGO) build --workspace --locked --release

test:
	$(CARGO) test --workspace --locked --all-targets

# The operator suite and the real-server-only tests against a running control plane
# (`make testenv`); `make ci` starts and stops one for it.
test-real:
	PMP_TEST_KUBECONFIG=$(CURDIR)/target/testenv/kubeconfig $(CARGO) test -p platform-operator --locked --test 'operator_*' --test 'real_*'

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Regenerates docs/openapi.json from the REST API's handlers (a test fails when it drifts).
openapi:
	mkdir -p docs
	$(CARGO) run -p platform-operator --locked --quiet -- openapi > docs/openapi.json

# Regenerates crds/ from the Rust types (a test fails when they drift apart).
crds:
	$(CARGO) run -p platform-operator --locked --quiet -- crds --out-dir crds

yaml-lint:
	@command -v yamllint >/dev/null || { echo "yamllint is not installed: apt-get install yamllint (or pip install yamllint)" >&2; exit 1; }
	yamllint --strict -c .yamllint.yaml crds deploy charts tools/gitops-check/fixtures-stack.yaml testenv/stages testenv/node.yaml

# Fails at once, naming what is missing, rather than after a long build.
tools:
	@missing=""; \
	for tool in cargo rustfmt cargo-clippy yamllint go python3; do \
	  command -v $$tool >/dev/null || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "missing:$$missing. Install: rustup component add rustfmt clippy; apt-get install yamllint python3-yaml; Go from https://go.dev/dl (or run .ci/run, which installs what it can)" >&2; \
	  exit 1; \
	fi
	@python3 -c 'import yaml' 2>/dev/null || { echo "missing: PyYAML for python3 (apt-get install python3-yaml, or pip install pyyaml)" >&2; exit 1; }

# The whole suite on both clusters: the simulator (cargo test), then the real control plane
# (built from Go modules, started for the run and stopped after it, also when tests fail).
ci: tools lint yaml-lint packaging test ci-real

# Packaging: the Helm chart linted and rendered per environment, the generated files
# (chart CRDs, deploy/operator/, the argocd-cm snippet) in sync, and the Argo CD and Flux
# health checks run on the operator's recorded status. A few seconds once helm is built.
packaging: chart-check manifests-check gitops-check

# The Helm CLI, built from the module pinned in tools/helm/ (first time about 1.5-3 min),
# cached in target/tools/helm/<hash>/; `make helm` prints its path.
helm:
	@tools/helm/build.sh

chart-check:
	helm="$$(tools/helm/build.sh)" && tools/chart-check.py --helm "$$helm"

# Re-renders the generated files after a chart, crds/ or health-script change.
manifests:
	helm="$$(tools/helm/build.sh)" && tools/render.py --helm "$$helm"

manifests-check:
	helm="$$(tools/helm/build.sh)" && tools/render.py --helm "$$helm" --check

gitops-check:
	cd tools/gitops-check && go run -mod=readonly . -root ../..

ci-real: testenv-build
	testenv/up.sh
	status=0; $(MAKE) test-real || status=$$?; $(MAKE) chart-install-check || status=$$?; testenv/down.sh; exit $$status

# The chart installed into the running control plane (make testenv) with the prod and
# trading-stack values; the operator runs as the chart's ServiceAccount (about 30 s).
chart-install-check:
	$(CARGO) build -p platform-operator --locked --quiet
	tools/chart-install-check.sh

bench: bench-graph bench-startup bench-storm

# The REST API's status endpoint under load (wrk, 20 s): p50/p99 latency and requests/s.
bench-api:
	tools/bench-api.sh

# A dependency failure under a storm of routine pod updates (2,000/s, then 5,000/s, over 1,000
# platforms): how soon the operator acts on it and stops its dependents, and how long its
# triggers queued.
bench-storm:
	mkdir -p $(BENCH_DIR)
	$(CARGO) run -p platform-sandbox --locked --release --quiet -- bench storm --rate 2000 --json $(BENCH_DIR)/storm-2000.json
	$(CARGO) run -p platform-sandbox --locked --release --quiet -- bench storm --json $(BENCH_DIR)/storm.json

bench-graph:
	mkdir -p $(BENCH_DIR)
	$(CARGO) run -p platform-sandbox --locked --release --quiet -- bench graph --platforms 100000 --edges 300000 --json $(BENCH_DIR)/graph.json

# The operator runs as its own process (the platform-operator binary), the simulated cluster
# in the benchmark's; bench-scale is the 10,000-platform case (several minutes).
bench-startup:
	mkdir -p $(BENCH_DIR)
	$(CARGO) build -p platform-operator -p platform-sandbox --locked --release --quiet
	target/release/platform-sandbox bench startup --platforms 1000 --depth 20 --json $(BENCH_DIR)/startup.json

bench-scale:
	mkdir -p $(BENCH_DIR)
	$(CARGO) build -p platform-operator -p platform-sandbox --locked --release --quiet
	target/release/platform-sandbox bench startup --platforms 10000 --depth 50 --kube-qps 1000 --kube-burst 2000 --json $(BENCH_DIR)/startup-10000.json

# The startup benchmark on the real control plane of `make testenv`: the operator as its own
# process beside a baseline of plain Deployments created layer by layer, at 1,000 platforms in
# 20 layers and 10,000 in 50 (several minutes), then both cases side by side.
BENCH_REAL = target/release/platform-sandbox bench startup --kubeconfig $(CURDIR)/target/testenv/kubeconfig

bench-real:
	$(MAKE) --no-print-directory bench-real-1000
	$(MAKE) --no-print-directory bench-real-scale
	target/release/platform-sandbox bench table $(BENCH_DIR)/startup-real.json $(BENCH_DIR)/startup-real-10000.json

bench-real-1000: bench-real-ready
	$(BENCH_REAL) --platforms 1000 --depth 20 --json $(BENCH_DIR)/startup-real.json >/dev/null

bench-real-scale: bench-real-ready
	$(BENCH_REAL) --platforms 10000 --depth 50 --kube-qps 1000 --kube-burst 2000 --json $(BENCH_DIR)/startup-real-10000.json >/dev/null

# The control plane first: a missing one is said at once, not after the build.
bench-real-ready:
	@kubectl="$$(ls -d target/testenv/bin/*/ 2>/dev/null | head -1)kubectl"; \
	if [ ! -f target/testenv/kubeconfig ] || ! "$$kubectl" --kubeconfig target/testenv/kubeconfig get --raw /readyz >/dev/null 2>&1; then \
		echo "error: no test control plane is running on target/testenv/kubeconfig: run make testenv first" >&2; exit 1; \
	fi
	mkdir -p $(BENCH_DIR)
	$(CARGO) build -p platform-operator -p platform-sandbox --locked --release --quiet

# A real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok as the
# kubelet) built from pinned Go modules and run on 127.0.0.1; see testenv/README.md.
# Binaries are cached in target/testenv/bin/<hash>/, state in target/testenv/.
testenv-build:
	testenv/build.sh >/dev/null

testenv: testenv-build
	testenv/up.sh

testenv-down:
	testenv/down.sh
