#!/usr/bin/env bash
# Regenerates the go.mod/go.sum pins of the testenv build modules from versions.env.
#
#   testenv/kube  k8s.io/kubernetes/cmd/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   testenv/etcd  go.etcd.io/etcd/server/v3 (the etcd binary; its dependency set differs from k8s)
#   testenv/kwok  sigs.k8s.io/kwok/cmd/kwok (kept apart so kwok builds with its own dependency set)
#
# k8s.io/kubernetes is not meant to be imported: its go.mod points every staging module
# (k8s.io/api, k8s.io/apiserver, ...) at ./staging/src/... and requires them at v0.0.0. A module
# that depends on it has to replace each of them with the published v0.<minor>.<patch>. The list
# is derived here from the go.mod the module proxy serves for KUBE_VERSION, never kept by hand.
#
# Each binary is recorded as a `tool` directive (Go >= 1.24), so `go mod tidy` keeps exactly the
# packages needed to build it and `go build <pkg>` works inside the module.
# The generated files are committed: they are the pin. build.sh only reads them (-mod=readonly).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"

# v1.36.3 -> v0.36.3: the staging modules are published with major version 0.
staging_version="v0.${KUBE_VERSION#v1.}"

# Every `go get` names its version: a bare `go get k8s.io/kubernetes/cmd/...` would pick the
# newest release instead of the pinned one.
export GOFLAGS=-mod=mod

# gomod_path MODULE@VERSION: the path of the go.mod that the module proxy serves for it.
gomod_path() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'
}

# go_line GOMOD: the `go` directive of a go.mod (our modules start at the same language level).
go_line() {
  sed -n 's/^go \([0-9.]*\)$/\1/p' "$1"
}

# fresh_module DIR MODULE_PATH GO_VERSION: an empty module to `go get` into.
fresh_module() {
  rm -f "$1/go.mod" "$1/go.sum"
  (cd "$1" && go mod init "$2" >/dev/null 2>&1 && go mod edit -go="$3")
}

# --- kube ---------------------------------------------------------------------------------------
kube_gomod="$(gomod_path "k8s.io/kubernetes@$KUBE_VERSION")"
[ -s "$kube_gomod" ] || { echo "gen-gomod: no go.mod for k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }

# `replace ( k8s.io/api => ./staging/src/k8s.io/api ... )` -> k8s.io/api
staging_modules="$(sed -n 's#^[[:space:]]*\([^[:space:]]*\) => \./staging/.*#\1#p' "$kube_gomod" | sort -u)"
# The staging modules that k8s.io/kubernetes itself requires (at v0.0.0). Sample modules such as
# k8s.io/sample-cli-plugin are replaced upstream but not required, and not all are published:
# replacing those would be dead (Go ignores it) or fail, so they are skipped, and said so.
required="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) v0\.0\.0$#\1#p' "$kube_gomod" | sort -u)"

fresh_module "$here/kube" pmp.dev/testenv/kube "$(go_line "$kube_gomod")"
replace_flags=()
for m in $staging_modules; do
  if printf '%s\n' "$required" | grep -qxF "$m"; then
    replace_flags+=("-replace=$m=$m@$staging_version")
  else
    echo "gen-gomod: $m is a staging module that k8s.io/kubernetes does not require: not replaced" >&2
  fi
done
[ "${#replace_flags[@]}" -gt 0 ] || { echo "gen-gomod: no staging replace lines found in $kube_gomod" >&2; exit 1; }
(cd "$here/kube" && go mod edit "${replace_flags[@]}")
echo "gen-gomod: replaced ${#replace_flags[@]} staging modules with $staging_version"

(
  cd "$here/kube"
  go get -tool \
    "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$KUBE_VERSION" \
    "k8s.io/kubernetes/cmd/kubectl@$KUBE_VERSION"
  go mod tidy
)

# --- etcd ---------------------------------------------------------------------------------------
etcd_gomod="$(gomod_path "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
fresh_module "$here/etcd" pmp.dev/testenv/etcd "$(go_line "$etcd_gomod")"
# The etcd binary's main package is the root of the server module (server/main.go).
(cd "$here/etcd" && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)

# --- kwok ---------------------------------------------------------------------------------------
kwok_gomod="$(gomod_path "sigs.k8s.io/kwok@$KWOK_VERSION")"
fresh_module "$here/kwok" pmp.dev/testenv/kwok "$(go_line "$kwok_gomod")"
(cd "$here/kwok" && go get -tool "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" && go mod tidy)

# --- check the pins took ------------------------------------------------------------------------
# MVS could have raised a pinned module if something else required a newer one; fail if so.
check() { # DIR MODULE WANT
  got="$(cd "$here/$1" && go list -m -f '{{.Version}}' "$2")"
  [ "$got" = "$3" ] || { echo "gen-gomod: $2 resolved to $got, want $3" >&2; exit 1; }
}
check kube k8s.io/kubernetes "$KUBE_VERSION"
# The staging modules are replaced, so look at what they are replaced with.
got="$(cd "$here/kube" && go list -m -f '{{.Replace.Version}}' k8s.io/apiserver)"
[ "$got" = "$staging_version" ] || { echo "gen-gomod: k8s.io/apiserver replaced by $got, want $staging_version" >&2; exit 1; }
check etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check kwok sigs.k8s.io/kwok "$KWOK_VERSION"
echo "gen-gomod: kube $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION pinned in testenv/{kube,etcd,kwok}/go.{mod,sum}"
