#!/usr/bin/env bash
# Checks a running testenv end to end (make testenv first): CRDs install and become Established,
# a Deployment whose pods say sim.pmp.dev/ready-after: 2s becomes Ready after about 2s, one
# without annotations becomes Ready, the unprivileged user is refused, and the operator's
# ServiceAccount has exactly the access deploy/operator/rbac.yaml grants. Leaves the namespace
# pmp-smoke deleted again. Exits non-zero on the first failed check.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

say() { echo "smoke: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

[ -f "$state_dir/pids" ] || fail "not running; start it with 'make testenv'"
bin="$(dirname "$(awk 'NR==1 {print $3}' "$state_dir/pids")")"
k=("$bin/kubectl" --kubeconfig "$state_dir/kubeconfig")
ns=pmp-smoke
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

"${k[@]}" apply --server-side -f "$repo_root/crds/" >/dev/null
"${k[@]}" wait --for=condition=Established --timeout=60s \
  crd/platforms.pmp.dev crd/platformgroups.pmp.dev >/dev/null
say "ok: CRDs applied and Established"

"${k[@]}" delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
"${k[@]}" create namespace "$ns" >/dev/null
# deployment NAME [ANNOTATIONS_JSON]: one replica, one container, annotations on the pod template.
deployment() {
  local annotations="${2:-}"
  [ -n "$annotations" ] || annotations='{}'
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, namespace: $ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}, annotations: $annotations}
    spec:
      containers: [{name: app, image: example.invalid/$1:1}]
YAML
}
t0="$(now)"
{ deployment slow '{"sim.pmp.dev/ready-after": "2s"}'; echo ---; deployment plain; } |
  "${k[@]}" apply -f - >/dev/null

# Poll the slow pod: when did it start running, when did it become Ready?
running_at="" ready_at=""
while [ -z "$ready_at" ]; do
  [ "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print (b - a > 30) }')" = 0 ] ||
    fail "the ready-after: 2s pod was not Ready within 30s"
  state="$("${k[@]}" get pods -n "$ns" -l app=slow \
    -o 'jsonpath={.items[0].status.phase}/{.items[0].status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
  case "$state" in
    Running/True) ready_at="$(since "$t0")" ;;
    Running/*) [ -n "$running_at" ] || running_at="$(since "$t0")" ;;
  esac
  sleep 0.05
done
running_at="${running_at:-$ready_at}"
gap="$(awk -v a="$running_at" -v b="$ready_at" 'BEGIN { printf "%.2f", b - a }')"
say "ready-after 2s: Running at ${running_at}s, Ready at ${ready_at}s (${gap}s after the start)"
awk -v g="$gap" 'BEGIN { exit !(g >= 1.8 && g <= 3.0) }' || fail "Ready ${gap}s after the start, want ~2s"
"${k[@]}" rollout status -n "$ns" deployment/plain --timeout=30s >/dev/null
say "ok: the Deployment without annotations is available"

if out="$("$bin/kubectl" --kubeconfig "$state_dir/unprivileged.kubeconfig" get pods -A 2>&1)"; then
  fail "pmp-unprivileged could list pods: $out"
fi
case "$out" in *Forbidden*) say "ok: pmp-unprivileged: $out" ;; *) fail "unexpected: $out" ;; esac

"$testenv_dir/operator-kubeconfig.sh" 2>/dev/null
op=("$bin/kubectl" --kubeconfig "$state_dir/operator.kubeconfig")
[ "$("${op[@]}" auth can-i list platforms.pmp.dev -A)" = yes ] || fail "operator cannot list platforms"
[ "$("${op[@]}" auth can-i get secrets -A || true)" = no ] || fail "operator can get secrets"
say "ok: operator ServiceAccount: list platforms.pmp.dev -A yes, get secrets no"

"${k[@]}" delete namespace "$ns" --wait=true >/dev/null
say "all checks passed"
