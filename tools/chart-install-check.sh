#!/usr/bin/env bash
# Installs charts/platform-operator into the running test control plane (make testenv) with
# the prod and trading-stack values (two replicas, leader election), and checks what a platform
# team would: the CRDs are Established, the operator's objects exist and both pods become
# Ready (kwok plays the kubelet), its ServiceAccount is granted exactly the rules the chart
# names (leases only in the release namespace; Secrets only by name, no deletes), and two operators,
# run as that ServiceAccount with the Deployment's command line, elect one leader that brings
# the trading stack up while the standby serves reads and refuses control with 503; the
# leader is killed and the standby must take over within the lease duration + 5 s. Then it
# removes the stack as the chart's NOTES say (helm upgrade without it; the new leader stops it
# in order) and uninstalls. Everything it creates is named pmp-chart-check, apart from the
# CRDs, which are the repository's.
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
# Operator CRDs. Their SMTP relay login reads its password from a Secret this check creates.
smtp_secret=$release-smtp
smtp_password="chart-check-$RANDOM$RANDOM"
values=(-f "$chart/values-prod.yaml" --set serviceMonitor.enabled=false --set fullnameOverride="$release"
  --set alerts.smtp.passwordSecret.name="$smtp_secret")
stack=(-f "$chart/examples/values-trading-stack.yaml" --set stack.namespace="$stack_ns")
# The failover check runs on a short lease so that it takes seconds, not the default 15 s.
lease_seconds=4
renew_before=1
work="$(mktemp -d)"
declare -A pids=()
cleanup() {
  local id
  for id in "${!pids[@]}"; do
    kill "${pids[$id]}" 2>/dev/null || true
    wait "${pids[$id]}" 2>/dev/null || true
  done
  "$helm" uninstall "$release" -n "$ns" --wait >/dev/null 2>&1 || true
  "$kubectl" delete namespace "$ns" "$stack_ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
start=$(date +%s)

say "helm install $release (prod + trading-stack values)"
# The relay password Secret exists before the release, as values-prod.yaml asks.
"$kubectl" create namespace "$ns" >/dev/null
"$kubectl" create secret generic "$smtp_secret" -n "$ns" --from-literal=password="$smtp_password" >/dev/null
"$helm" install "$release" "$chart" -n "$ns" --create-namespace "${values[@]}" "${stack[@]}" \
  --wait --timeout 3m >"$work/install.log" || { cat "$work/install.log" >&2; fail "helm install"; }

"$kubectl" wait --for=condition=Established --timeout=60s crd/platforms.pmp.dev crd/platformgroups.pmp.dev >/dev/null
for object in serviceaccount/$release service/$release deployment/$release networkpolicy/$release; do
  "$kubectl" get -n "$ns" "$object" >/dev/null || fail "$object missing"
done
"$kubectl" get clusterrole/$release clusterrolebinding/$release >/dev/null || fail "ClusterRole or binding missing"
"$kubectl" get -n "$ns" role/$release-leader-election rolebinding/$release-leader-election >/dev/null ||
  fail "the leader election Role or RoleBinding is missing"
ports="$("$kubectl" get -n "$ns" service/$release -o jsonpath='{range .spec.ports[*]}{.name}={.port} {end}')"
[ "$ports" = "http=8080 probes=8081 " ] || fail "Service ports: $ports"
replicas="$("$kubectl" get -n "$ns" deployment/$release -o jsonpath='{.spec.replicas} {.status.readyReplicas} {.spec.strategy.type}')"
[ "$replicas" = "2 2 RollingUpdate" ] ||
  fail "the operator Deployment: replicas, ready, strategy = $replicas, want 2 2 RollingUpdate"
"$kubectl" get -n "$ns" poddisruptionbudget/$release >/dev/null || fail "no PodDisruptionBudget for 2 replicas"
platforms="$("$kubectl" get platforms -n "$stack_ns" -o name | wc -l)"
groups="$("$kubectl" get platformgroups -n "$stack_ns" -o name | wc -l)"
[ "$platforms" = 6 ] && [ "$groups" = 1 ] || fail "stack: $platforms platforms and $groups groups, want 6 and 1"

# What the chart grants, read from the rendered ClusterRole (all namespaces) and the leader
# election Role (the release namespace), must be exactly what the API server allows the
# ServiceAccount (beyond what every authenticated user may do).
say "RBAC of $sa"
# rules SCOPE: "SCOPE|group|resource|verb" per grant of the Role or ClusterRole on stdin.
rules() {
  python3 -c '
import json, sys
for rule in json.load(sys.stdin)["rules"]:
    for group in rule["apiGroups"]:
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                print(f"{sys.argv[1]}|{group}|{resource}|{verb}")' "$1"
}
granted=0
# kubectl auth can-i resolves a resource through discovery, so it cannot check a group the
# server does not serve (metrics.k8s.io without metrics-server); tests/real_rbac.rs checks
# those grants with SubjectAccessReviews instead.
served_groups=" $("$kubectl" api-versions | cut -d/ -f1 | sort -u | tr '\n' ' ') "
while IFS='|' read -r scope group resource verb; do
  [ -n "$verb" ] || continue
  if [ -n "$group" ] && [[ "$served_groups" != *" $group "* ]]; then
    say "not served here, checked by tests/real_rbac.rs: $verb $resource.$group"
    continue
  fi
  # shellcheck disable=SC2086
  answer="$("$kubectl" auth can-i "$verb" "$resource${group:+.$group}" $scope --as="$sa" 2>/dev/null || true)"
  [ "$answer" = yes ] || fail "$sa may not $verb $resource${group:+.$group} ($scope)"
  granted=$((granted + 1))
done < <(
  "$kubectl" get clusterrole/$release -o json | rules "-A"
  "$kubectl" get -n "$ns" role/$release-leader-election -o json | rules "-n $ns"
)
[ "$granted" -gt 0 ] || fail "no rules read from the ClusterRole and Role"
# Leases in the release namespace only, and never updated or deleted there.
for denied in "list secrets -A" "watch secrets -A" "create secrets -A" "create leases.coordination.k8s.io -A" \
  "create leases.coordination.k8s.io -n default" "update leases.coordination.k8s.io -n $ns" \
  "delete leases.coordination.k8s.io -n $ns" "delete deployments.apps -A" \
  "delete platforms.pmp.dev -A" "update platforms.pmp.dev -A" "create pods -A" "get nodes -A"; do
  # shellcheck disable=SC2086
  if "$kubectl" auth can-i $denied --as="$sa" >/dev/null 2>&1; then
    fail "$sa may $denied"
  fi
done
say "$granted rule grants in effect; secret lists, leases outside $ns, lease updates and deletes refused"

# The operator as the chart's ServiceAccount (outside the cluster: kwok runs no containers).
token="$("$kubectl" create token "$release" -n "$ns" --duration=1h)"
op_kubeconfig="$work/operator.kubeconfig"
cluster="$("$kubectl" config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
KUBECONFIG="$op_kubeconfig" "$kubectl" config set-cluster testenv --server="$cluster" \
  --certificate-authority="$state_dir/run/pki/ca.crt" --embed-certs=true >/dev/null
KUBECONFIG="$op_kubeconfig" "$kubectl" config set-credentials operator --token="$token" >/dev/null
KUBECONFIG="$op_kubeconfig" "$kubectl" config set-context testenv --cluster=testenv --user=operator >/dev/null
KUBECONFIG="$op_kubeconfig" "$kubectl" config use-context testenv >/dev/null

# The Deployment's own command line, with loopback addresses (two processes on one host) and
# the short lease; everything else (--leader-elect, the lease name, the client limits, the
# SMTP relay and its login) is what the chart renders. ALERT_SMTP_PASSWORD comes from the
# Secret the Deployment references, as the kubelet would set it.
mapfile -d '' -t chart_args < <("$kubectl" get -n "$ns" deployment/$release -o json | python3 -c '
import json, sys
args = json.load(sys.stdin)["spec"]["template"]["spec"]["containers"][0]["args"]
assert "--leader-elect" in args, f"the Deployment does not pass --leader-elect: {args}"
overrides = {"--leader-elect-lease-duration-seconds": sys.argv[1],
             "--leader-elect-renew-before-seconds": sys.argv[2]}
for flag in overrides:
    assert flag in args, f"the Deployment does not pass {flag}: {args}"
    args[args.index(flag) + 1] = overrides[flag]
for flag in ("--probe-addr", "--api-addr"):
    at = args.index(flag)
    del args[at:at + 2]
sys.stdout.write("".join(a + "\0" for a in args))' "$lease_seconds" "$renew_before")
lease_name="$(printf '%s\n' "${chart_args[@]}" | grep -A1 -x -- --leader-elect-lease-name | tail -1)"
password_ref="$("$kubectl" get -n "$ns" deployment/$release \
  -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="ALERT_SMTP_PASSWORD")].valueFrom.secretKeyRef}')"
password_secret="$(python3 -c 'import json, sys; r = json.loads(sys.argv[1] or "{}"); print(r.get("name", ""), r.get("key", ""))' "$password_ref")"
[ "$password_secret" = "$smtp_secret password" ] ||
  fail "ALERT_SMTP_PASSWORD is not from Secret $smtp_secret key password: ${password_ref:-not set}"
alert_smtp_password="$("$kubectl" get secret "$smtp_secret" -n "$ns" -o jsonpath='{.data.password}' | base64 -d)"
[ -n "$lease_name" ] || fail "no --leader-elect-lease-name in the Deployment's arguments"

# Four free loopback ports: a probe and an API port per instance.
read -r probe_a api_a probe_b api_b < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(4)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))')
declare -A probe=([a]=$probe_a [b]=$probe_b) api=([a]=$api_a [b]=$api_b)

# start ID: one operator, as pod ID of the release namespace.
start_operator() {
  POD_NAME="$1" POD_NAMESPACE="$ns" ALERT_SMTP_PASSWORD="$alert_smtp_password" KUBECONFIG="$op_kubeconfig" \
    "$operator" "${chart_args[@]}" \
    --probe-addr "127.0.0.1:${probe[$1]}" --api-addr "127.0.0.1:${api[$1]}" >"$work/operator-$1.log" 2>&1 &
  pids[$1]=$!
}
# role ID: leader, standby, or what keeps it from saying (not ready, down).
role() {
  curl -s --max-time 2 "http://127.0.0.1:${probe[$1]}/readyz" | python3 -c '
import json, sys
try:
    ready = json.load(sys.stdin)
except ValueError:
    print("down")
else:
    print(ready.get("role") or ready.get("status"))'
}
logs_tail() {
  local id
  for id in a b; do
    echo "--- operator $id" >&2
    tail -15 "$work/operator-$id.log" >&2
  done
}
# forbidden_check ID...: no 403 in the logs, apart from the Events refused in the stack's
# namespace once helm deletes it (NamespaceTerminating, not a missing grant).
forbidden_check() {
  local id
  for id in "$@"; do
    if grep -i forbidden "$work/operator-$id.log" | grep -qv NamespaceTerminating; then
      grep -i forbidden "$work/operator-$id.log" | grep -v NamespaceTerminating | head -5 >&2
      fail "operator $id was refused something"
    fi
  done
}

say "running two operators as $sa (--leader-elect, lease $ns/$lease_name, ${lease_seconds} s)"
start_operator a
start_operator b
deadline=$(($(date +%s) + 60))
until roles="$(role a) $(role b)" && { [ "$roles" = "leader standby" ] || [ "$roles" = "standby leader" ]; }; do
  [ "$(date +%s)" -lt "$deadline" ] || { logs_tail; fail "no leader and standby within 60 s (roles: $roles)"; }
  sleep 0.5
done
if [ "$roles" = "leader standby" ]; then leader=a standby=b; else leader=b standby=a; fi
holder="$("$kubectl" get lease -n "$ns" "$lease_name" -o jsonpath='{.spec.holderIdentity}')"
[ "$holder" = "$leader" ] || fail "Lease $ns/$lease_name is held by '$holder', but $leader reports leader"
say "operator $leader leads (the Lease's holder), $standby is a ready standby"

# Exactly one leader the whole time the stack comes up: never both, never a second writer.
deadline=$(($(date +%s) + 180))
until "$kubectl" get -n "$stack_ns" platformgroup/trading \
  -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; do
  roles="$(role a) $(role b)"
  [ "$roles" != "leader leader" ] || fail "both operators report leader"
  [ "$(date +%s)" -lt "$deadline" ] || {
    "$kubectl" get platforms -n "$stack_ns" >&2 || true
    logs_tail
    fail "the trading stack did not become Ready"
  }
  sleep 1
done
[ "$(role $standby)" = standby ] || fail "operator $standby is no longer a standby"
forbidden_check a b
say "the trading stack is Ready under the chart's RBAC, brought up by $leader"

# The standby serves reads from its cache and refuses control with 503 naming the leader. The
# caller is a ServiceAccount allowed to read and control the stack's platforms.
"$kubectl" create serviceaccount -n "$stack_ns" caller >/dev/null
"$kubectl" create role -n "$stack_ns" caller --verb=get,list --resource=platforms.pmp.dev >/dev/null
"$kubectl" create role -n "$stack_ns" caller-control --verb=update --resource=platforms.pmp.dev/control >/dev/null
"$kubectl" create rolebinding -n "$stack_ns" caller --role=caller --serviceaccount="$stack_ns:caller" >/dev/null
"$kubectl" create rolebinding -n "$stack_ns" caller-control --role=caller-control \
  --serviceaccount="$stack_ns:caller" >/dev/null
caller_token="$("$kubectl" create token caller -n "$stack_ns" --duration=10m)"
standby_api="http://127.0.0.1:${api[$standby]}/api/v1"
code="$(curl -s -o "$work/read.json" -w '%{http_code}' -H "Authorization: Bearer $caller_token" \
  "$standby_api/platform/ml_inference/status?namespace=$stack_ns")"
[ "$code" = 200 ] || fail "a read from the standby answered $code: $(head -c 300 "$work/read.json")"
code="$(curl -s -D "$work/control.headers" -o "$work/control.json" -w '%{http_code}' -X POST \
  -H "Authorization: Bearer $caller_token" -H 'Content-Type: application/json' \
  -d '{"action":"restart"}' "$standby_api/platform/ml_inference/control?namespace=$stack_ns")"
[ "$code" = 503 ] || fail "a control request to the standby answered $code: $(head -c 300 "$work/control.json")"
python3 - "$work/control.json" "$leader" <<'PY' || fail "the standby's 503: $(head -c 300 "$work/control.json")"
import json, sys
problem = json.load(open(sys.argv[1]))
assert problem["type"].endswith("standby"), problem
assert sys.argv[2] in problem["detail"], problem
PY
grep -qi '^retry-after: *1' "$work/control.headers" || fail "the standby's 503 has no Retry-After: 1"
say "the standby serves reads and answers control with 503 naming $leader"

# Failover: the leader dies without releasing the lease; the standby must lead within the
# lease duration (it waits for the lease to run out) plus 5 s of margin.
kill -KILL "${pids[$leader]}"
wait "${pids[$leader]}" 2>/dev/null || true
unset "pids[$leader]"
killed=$(date +%s.%N)
deadline=$(($(date +%s) + lease_seconds + 5))
until [ "$(role $standby)" = leader ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { logs_tail; fail "$standby did not take over within $((lease_seconds + 5)) s"; }
  sleep 0.1
done
failover="$(awk -v a="$killed" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
holder="$("$kubectl" get lease -n "$ns" "$lease_name" -o jsonpath='{.spec.holderIdentity}')"
[ "$holder" = "$standby" ] || fail "after failover the Lease is held by '$holder', not $standby"
say "leader $leader killed; $standby leads after $failover s (lease ${lease_seconds} s)"

# Removing the stack first, as NOTES.txt says: the new leader stops it in reverse order and
# lifts its finalizers.
say "helm upgrade without the stack"
"$helm" upgrade "$release" "$chart" -n "$ns" "${values[@]}" --wait --timeout 3m >/dev/null
deadline=$(($(date +%s) + 180))
until [ "$("$kubectl" get platforms -n "$stack_ns" -o name 2>/dev/null | wc -l)" = 0 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { logs_tail; fail "the stack's platforms were not removed by $standby"; }
  sleep 1
done
forbidden_check "$standby"
kill "${pids[$standby]}"
wait "${pids[$standby]}" 2>/dev/null || true
unset "pids[$standby]"
"$helm" uninstall "$release" -n "$ns" --wait >/dev/null
if "$kubectl" get clusterrole/$release >/dev/null 2>&1; then
  fail "the ClusterRole outlived helm uninstall"
fi
say "ok in $(($(date +%s) - start)) s"
