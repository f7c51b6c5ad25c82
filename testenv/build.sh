#!/usr/bin/env bash
# Builds the test control plane's binaries from the pinned Go modules (CGO_ENABLED=0, like the
# envtest binaries upstream) into target/testenv/bin/<hash>/, unless that directory is already
# complete. <hash> covers versions.env, the go.mod/go.sum pins, build.sh and the Go version, so a
# second run (or a run after an unrelated change) only checks the cache and returns at once.
# Prints the binary directory on stdout; progress goes to stderr.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bin="$(bin_dir)"
if [ -f "$bin/.complete" ]; then
  echo "testenv: binaries cached in $bin" >&2
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "testenv: go is required to build the control plane" >&2; exit 1; }

# Built into a temporary sibling and renamed at the end: an interrupted build leaves no
# half-filled cache directory behind that a later run would trust.
mkdir -p "$state_dir/bin"
tmp="$(mktemp -d "$bin.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

export CGO_ENABLED=0
# -mod=readonly: the committed go.mod/go.sum are the pin; a build never edits them
# (testenv/gen-gomod.sh does). -trimpath: no local paths in the binaries. -s -w: no symbol
# tables, as upstream release builds.
build_flags=(-mod=readonly -trimpath)

# Version stamping as kubernetes' hack/lib/version.sh does it: component-base/version for the
# servers, client-go/pkg/version for kubectl's client side.
kube_minor="${KUBE_VERSION#v1.}"
kube_minor="${kube_minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
  kube_ldflags+=" -X $pkg.gitTreeState=archive"
done

start=$(date +%s)
echo "testenv: building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBE_VERSION" >&2
(cd "$testenv_dir/kube" && go build "${build_flags[@]}" -ldflags "$kube_ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl)

echo "testenv: building etcd $ETCD_VERSION" >&2
(cd "$testenv_dir/etcd" && go build "${build_flags[@]}" \
  -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
  -o "$tmp/etcd" go.etcd.io/etcd/server/v3)

echo "testenv: building kwok $KWOK_VERSION" >&2
(cd "$testenv_dir/kwok" && go build "${build_flags[@]}" \
  -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
  -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok)

echo "testenv: building pki" >&2
(cd "$testenv_dir/pki" && go build "${build_flags[@]}" -ldflags "-s -w" -o "$tmp/pki" .)

# kwok's own stages (node-initialize, node-heartbeat, pod-complete, ...) ship in its module, at
# the pinned version; copied next to the binary so up.sh needs no Go module lookups.
kwok_dir="$(cd "$testenv_dir/kwok" && go list -mod=readonly -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
mkdir -p "$tmp/kwok-stages"
cp "$kwok_dir/kustomize/stage/node/fast/node-initialize.yaml" \
  "$kwok_dir/kustomize/stage/node/heartbeat/node-heartbeat.yaml" \
  "$kwok_dir/kustomize/stage/pod/fast/pod-complete.yaml" \
  "$tmp/kwok-stages/"
chmod -R u+w "$tmp/kwok-stages" # the module cache is read-only

printf 'kube %s\netcd %s\nkwok %s\n%s\n' "$KUBE_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" \
  "$(go env GOVERSION)" >"$tmp/VERSIONS"
touch "$tmp/.complete"
rm -rf "$bin"
mv "$tmp" "$bin"
trap - EXIT
echo "testenv: built in $(($(date +%s) - start))s into $bin" >&2
echo "$bin"
