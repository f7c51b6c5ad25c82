# Shared by the testenv scripts (sourced, not run): paths, ports and the binary cache key.
# shellcheck shell=bash

testenv_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$testenv_dir/.." && pwd)"
# Everything generated lives under target/ (gitignored), next to cargo's output.
state_dir="$repo_root/target/testenv"

# shellcheck source=versions.env
. "$testenv_dir/versions.env"

# Ports on 127.0.0.1. Chosen away from the defaults (6443, 2379, 10257, 10259) so that a real
# cluster or the project's simulator (127.0.0.1:6443) on the same machine does not clash.
TESTENV_PORT="${TESTENV_PORT:-16443}"                # kube-apiserver (https)
TESTENV_ETCD_PORT="${TESTENV_ETCD_PORT:-23790}"      # etcd clients (http); peers use +1
TESTENV_KCM_PORT="${TESTENV_KCM_PORT:-$((TESTENV_PORT + 1))}"       # controller-manager /healthz
TESTENV_SCHED_PORT="${TESTENV_SCHED_PORT:-$((TESTENV_PORT + 2))}"   # scheduler /healthz

# The cache key of the binaries: everything that changes what build.sh produces. The go.sum files
# pin every dependency's content; the Go toolchain version and build.sh (flags) complete it.
testenv_hash() {
  {
    cat "$testenv_dir/versions.env" "$testenv_dir/build.sh"
    for m in kube etcd kwok pki; do
      cat "$testenv_dir/$m/go.mod"
      [ ! -f "$testenv_dir/$m/go.sum" ] || cat "$testenv_dir/$m/go.sum"
    done
    cat "$testenv_dir/pki/main.go"
    go env GOVERSION GOOS GOARCH
  } | sha256sum | cut -c1-16
}

bin_dir() {
  printf '%s/bin/%s\n' "$state_dir" "$(testenv_hash)"
}
