#!/usr/bin/env bash
# Installs charts/platform-operator into the running test control plane (make testenv) with
# the prod and trading-stack values, and checks what a platform team would: the CRDs are
# Established, the operator's objects exist and its pod becomes Ready (kwok plays the
# kubelet), its ServiceAccount is granted exactly the rules the chart names (and no Secrets,
# leases or deletes), and the operator, run as that ServiceAccount, brings the trading stack
# up; then removes the stack as the chart's NOTES say (helm upgrade without it; the operator
# stops it in order) and uninstalls. Everything it creates is named pmp-chart-check, apart
# from the CRDs, which are the repository's.
#
#   make testenv && make chart-install-check      # make ci runs it inside ci-real
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=../testenv/lib.sh
. testenv/lib.sh

say() { echo "chart-install-check: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

[ -f "$state_dir/pids" ] || fail "the test control plane is not running (make testenv)"
export KUBECONFIG="$state_dir/kubeconfig"
kubectl="$(bin_dir)/kubectl"
helm="$(tools/helm/build.sh)"
operator="${PMP_OPERATOR:-$root/target/debug/platform-operator}"
[ -x "$operator" ] || fail "no operator binary at $operator (cargo build -p platform-operator)"

release=pmp-chart-check
ns=pmp-chart-check
stack_ns=pmp-chart-check-trading
sa="system:serviceaccount:$ns:$release"
chart=charts/platform-operator
# The prod values without the ServiceMonitor: the test control plane has no Prometheus
# Operator CRDs.
values=(-f "$chart/values-prod.yaml" --set serviceMonitor.enabled=false --set fullnameOverride="$release")
stack=(-f "$chart/examples/values-trading-stack.yaml" --set stack.namespace="$stack_ns")
work="$(mktemp -d)"
operator_pid=""
cleanup() {
  [ -z "$operator_pid" ] || { kill "$operator_pid" 2>/dev/null || true; wait "$operator_pid" 2>/dev/null || true; }
  "$helm" uninstall "$release" -n "$ns" --wait >/dev/null 2>&1 || true
  "$kubectl" delete namespace "$ns" "$stack_ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
start=$(date +%s)

say "helm install $release (prod + trading-stack values)"
"$helm" install "$release" "$chart" -n "$ns" --create-namespace "${values[@]}" "${stack[@]}" \
  --wait --timeout 3m >"$work/install.log" || { cat "$work/install.log" >&2; fail "helm install"; }

"$kubectl" wait --for=condition=Established --timeout=60s crd/platforms.pmp.dev crd/platformgroups.pmp.dev >/dev/null
for object in serviceaccount/$release service/$release deployment/$release networkpolicy/$release; do
  "$kubectl" get -n "$ns" "$object" >/dev/null || fail "$object missing"
done
"$kubectl" get clusterrole/$release clusterrolebinding/$release >/dev/null || fail "ClusterRole or binding missing"
ports="$("$kubectl" get -n "$ns" service/$release -o jsonpath='{range .spec.ports[*]}{.name}={.port} {end}')"
[ "$ports" = "http=8080 probes=8081 " ] || fail "Service ports: $ports"
[ "$("$kubectl" get -n "$ns" deployment/$release -o jsonpath='{.status.readyReplicas}')" = 1 ] ||
  fail "the operator Deployment is not ready"
platforms="$("$kubectl" get platforms -n "$stack_ns" -o name | wc -l)"
groups="$("$kubectl" get platformgroups -n "$stack_ns" -o name | wc -l)"
[ "$platforms" = 6 ] && [ "$groups" = 1 ] || fail "stack: $platforms platforms and $groups groups, want 6 and 1"

# What the chart grants, read from the rendered ClusterRole, must be exactly what the API
# server allows the ServiceAccount (beyond what every authenticated user may do).
say "RBAC of $sa"
granted=0
while IFS='|' read -r group resource verb; do
  [ -n "$verb" ] || continue
  answer="$("$kubectl" auth can-i "$verb" "$resource${group:+.$group}" -A --as="$sa" 2>/dev/null || true)"
  [ "$answer" = yes ] || fail "$sa may not $verb $resource${group:+.$group}"
  granted=$((granted + 1))
done < <("$kubectl" get clusterrole/$release -o json | python3 -c '
import json, sys
for rule in json.load(sys.stdin)["rules"]:
    for group in rule["apiGroups"]:
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                print(f"{group}|{resource}|{verb}")')
[ "$granted" -gt 0 ] || fail "no rules read from the ClusterRole"
for denied in "get secrets" "list secrets" "create leases.coordination.k8s.io" "delete deployments.apps" \
  "delete platforms.pmp.dev" "update platforms.pmp.dev" "create pods" "get nodes"; do
  # shellcheck disable=SC2086
  if "$kubectl" auth can-i $denied -A --as="$sa" >/dev/null 2>&1; then
    fail "$sa may $denied"
  fi
done
say "$granted rule grants in effect; secrets, leases, deletes refused"

# The operator as the chart's ServiceAccount (outside the cluster: kwok runs no containers).
token="$("$kubectl" create token "$release" -n "$ns" --duration=1h)"
op_kubeconfig="$work/operator.kubeconfig"
cluster="$("$kubectl" config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
KUBECONFIG="$op_kubeconfig" "$kubectl" config set-cluster testenv --server="$cluster" \
  --certificate-authority="$state_dir/run/pki/ca.crt" --embed-certs=true >/dev/null
KUBECONFIG="$op_kubeconfig" "$kubectl" config set-credentials operator --token="$token" >/dev/null
KUBECONFIG="$op_kubeconfig" "$kubectl" config set-context testenv --cluster=testenv --user=operator >/dev/null
KUBECONFIG="$op_kubeconfig" "$kubectl" config use-context testenv >/dev/null
say "running the operator as $sa"
KUBECONFIG="$op_kubeconfig" "$operator" run --log-format json --probe-addr 127.0.0.1:0 \
  --api-addr 127.0.0.1:0 --api-auth kubernetes >"$work/operator.log" 2>&1 &
operator_pid=$!
if ! "$kubectl" wait --for=condition=Ready -n "$stack_ns" platformgroup/trading --timeout=180s >/dev/null; then
  "$kubectl" get platforms -n "$stack_ns" >&2 || true
  tail -20 "$work/operator.log" >&2
  fail "the trading stack did not become Ready"
fi
if grep -qi forbidden "$work/operator.log"; then
  grep -i forbidden "$work/operator.log" | head -5 >&2
  fail "the operator was refused something"
fi
say "the trading stack is Ready under the chart's RBAC"

# Removing the stack first, as NOTES.txt says: the operator stops it in reverse order and
# lifts its finalizers.
say "helm upgrade without the stack"
"$helm" upgrade "$release" "$chart" -n "$ns" "${values[@]}" --wait --timeout 3m >/dev/null
deadline=$(($(date +%s) + 180))
until [ "$("$kubectl" get platforms -n "$stack_ns" -o name 2>/dev/null | wc -l)" = 0 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "the stack's platforms were not removed"
  sleep 1
done
kill "$operator_pid"
wait "$operator_pid" 2>/dev/null || true
operator_pid=""
"$helm" uninstall "$release" -n "$ns" --wait >/dev/null
if "$kubectl" get clusterrole/$release >/dev/null 2>&1; then
  fail "the ClusterRole outlived helm uninstall"
fi
say "ok in $(($(date +%s) - start)) s"
