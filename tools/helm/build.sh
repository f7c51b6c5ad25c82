#!/usr/bin/env bash
# Builds the Helm CLI from the Go module pinned in this directory's go.mod/go.sum into
# target/tools/helm/<hash>/helm, unless it is there already, and prints the binary's path.
# <hash> covers go.mod, go.sum, this script and the Go version, so a changed pin builds anew and
# every other run returns at once. Progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
command -v go >/dev/null || { echo "helm: go is required to build the Helm CLI" >&2; exit 1; }

hash="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" <(go env GOVERSION GOOS GOARCH) |
  sha256sum | cut -c1-16)"
out="$repo_root/target/tools/helm/$hash"
if [ -x "$out/helm" ]; then
  echo "$out/helm"
  exit 0
fi

# The version helm reports (helm version) is stamped at link time, as helm's own Makefile does;
# it is read from the pin so the two cannot disagree.
version="$(cd "$here" && go list -mod=readonly -m -f '{{.Version}}' helm.sh/helm/v4)"
start=$(date +%s)
echo "helm: building helm $version (about 1.5 min on 2 cores)" >&2
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d "$out.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$here" && CGO_ENABLED=0 go build -mod=readonly -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version -X helm.sh/helm/v4/internal/version.gitTreeState=archive" \
  -o "$tmp/helm" helm.sh/helm/v4/cmd/helm)
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "helm: built in $(($(date +%s) - start))s into $out" >&2
echo "$out/helm"
