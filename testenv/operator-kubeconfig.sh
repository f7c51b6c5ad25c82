#!/usr/bin/env bash
# Lets platform-operator run against the test control plane as its own ServiceAccount, with
# RBAC enforced: applies deploy/operator/rbac.yaml (Namespace, ServiceAccount, ClusterRole,
# ClusterRoleBinding) and writes target/testenv/operator.kubeconfig with a 24h token of
# platform-operator-system/platform-operator. Then checks a permission it has and one it lacks.
#
#   testenv/operator-kubeconfig.sh
#   KUBECONFIG=target/testenv/operator.kubeconfig target/release/platform-operator run
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

say() { echo "testenv: $*" >&2; }

[ -f "$state_dir/pids" ] || { say "not running; start it with 'make testenv'"; exit 1; }
bin="$(dirname "$(awk 'NR==1 {print $3}' "$state_dir/pids")")"
admin=("$bin/kubectl" --kubeconfig "$state_dir/kubeconfig")
out="$state_dir/operator.kubeconfig"
sa=platform-operator
ns=platform-operator-system

"${admin[@]}" apply --server-side --field-manager=pmp-testenv -f "$repo_root/deploy/operator/rbac.yaml" >&2
token="$("${admin[@]}" create token "$sa" -n "$ns" --duration=24h)"

# The cluster entry (server and CA) is the admin kubeconfig's; only the user differs.
rm -f "$out"
op=("$bin/kubectl" --kubeconfig "$out")
"${op[@]}" config set-cluster pmp-testenv --server="https://127.0.0.1:$TESTENV_PORT" \
  --certificate-authority="$state_dir/run/pki/ca.crt" --embed-certs=true >/dev/null
"${op[@]}" config set-credentials "$sa" --token="$token" >/dev/null
"${op[@]}" config set-context pmp-testenv --cluster=pmp-testenv --user="$sa" --namespace="$ns" >/dev/null
"${op[@]}" config use-context pmp-testenv >/dev/null
chmod 600 "$out"

# Sanity: the binding took effect, and RBAC is really enforced for this identity.
[ "$("${op[@]}" auth can-i list platforms.pmp.dev -A)" = yes ] ||
  { say "the ServiceAccount cannot list platforms.pmp.dev (are the CRDs applied?)"; exit 1; }
if "${op[@]}" auth can-i get secrets -A >/dev/null 2>&1; then
  say "the ServiceAccount can read secrets: RBAC is too broad"; exit 1
fi
say "wrote $out (system:serviceaccount:$ns:$sa, token valid 24h)"
