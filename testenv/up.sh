#!/usr/bin/env bash
# Starts the test control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok (the kubelet of one fake node, kwok-node-0), from the binaries that
# build.sh caches. Returns once the API server is ready and the node schedulable, leaving the
# processes running in the background; testenv/down.sh stops them.
#
# Writes (all under target/testenv/, gitignored):
#   kubeconfig               admin (pmp-admin, group system:masters)
#   unprivileged.kubeconfig  pmp-unprivileged: authenticated, no RBAC bindings
#   pids                     "NAME PID EXE" per process, read by down.sh
#   logs/NAME.log            each process's output
#   control-plane.env        the components' client limits (KEY=VALUE), for the benchmark
#   run/                     PKI, component kubeconfigs, etcd's data directory
#
# Environment: TESTENV_PORT (kube-apiserver, default 16443), TESTENV_ETCD_PORT (default 23790;
# peers on +1), TESTENV_KCM_PORT / TESTENV_SCHED_PORT (health ports, default TESTENV_PORT+1/+2),
# TESTENV_TIMEOUT (seconds to wait for each step, default 120). The controllers' client limits:
# TESTENV_KCM_QPS (controller-manager --kube-api-qps and -burst, default 2000), TESTENV_KCM_SYNCS
# (--concurrent-deployment-syncs and --concurrent-replicaset-syncs, default 50),
# TESTENV_SCHED_QPS (scheduler --kube-api-qps and -burst, default 2000); written to
# control-plane.env, which the real-cluster benchmark reports. TESTENV_PROFILING=true serves
# the kube-apiserver's /debug/pprof (to see where its CPU goes during a benchmark).
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

timeout_s="${TESTENV_TIMEOUT:-120}"
kcm_qps="${TESTENV_KCM_QPS:-2000}"
kcm_syncs="${TESTENV_KCM_SYNCS:-50}"
sched_qps="${TESTENV_SCHED_QPS:-2000}"
apiserver_inflight=2000 apiserver_mutating_inflight=1000
profiling="${TESTENV_PROFILING:-false}"
pids_file="$state_dir/pids"
admin_kubeconfig="$state_dir/kubeconfig"
log_dir="$state_dir/logs"
run_dir="$state_dir/run"
pki="$run_dir/pki"
server="https://127.0.0.1:$TESTENV_PORT"

say() { echo "testenv: $*" >&2; }
die() { say "$*"; exit 1; }

# alive PID EXE: the process exists, is no zombie, and still runs EXE (a recycled PID does not;
# "EXE (deleted)" still counts, for binaries removed by a `cargo clean` while running).
alive() {
  [ -r "/proc/$1/stat" ] || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] || return 1
  case "$(readlink "/proc/$1/exe" 2>/dev/null)" in
    "$2" | "$2 (deleted)") return 0 ;;
    *) return 1 ;;
  esac
}

# --- already running? --------------------------------------------------------------------------
# Reuse a complete, healthy environment; refuse a partial one (down.sh cleans it up).
if [ -f "$pids_file" ]; then
  running=0 total=0
  while read -r name pid exe; do
    total=$((total + 1))
    if alive "$pid" "$exe"; then running=$((running + 1)); fi
  done <"$pids_file"
  if [ "$running" -eq "$total" ] && [ "$total" -gt 0 ] &&
    "$(awk 'NR==1{print $3}' "$pids_file" | xargs dirname)/kubectl" --kubeconfig "$admin_kubeconfig" \
      get --raw /readyz >/dev/null 2>&1; then
    say "already running ($total processes, $pids_file); reusing it"
    say "  export KUBECONFIG=$admin_kubeconfig    stop: make testenv-down"
    exit 0
  fi
  if [ "$running" -gt 0 ]; then
    die "partly running ($running of $total processes in $pids_file alive); run 'make testenv-down' first"
  fi
  say "cleaning up after an environment that is gone (no process of $pids_file is alive)"
  "$testenv_dir/down.sh" >/dev/null 2>&1 || rm -f "$pids_file"
fi

# Ports: fail early and clearly instead of letting a component die on "address already in use".
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$TESTENV_PORT" "$TESTENV_ETCD_PORT" "$((TESTENV_ETCD_PORT + 1))" \
  "$TESTENV_KCM_PORT" "$TESTENV_SCHED_PORT"; do
  if port_busy "$port"; then
    die "127.0.0.1:$port is in use; set TESTENV_PORT / TESTENV_ETCD_PORT to free ports"
  fi
done

bin="$("$testenv_dir/build.sh")" # cached: returns at once after the first build
kubectl="$bin/kubectl"
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }

# --- PKI ----------------------------------------------------------------------------------------
# Fresh per start: a CA, the serving certificate, the service-account key pair, and one client
# certificate + kubeconfig per user. The API server maps CN to the user, O to its groups.
rm -rf "$run_dir"
mkdir -p "$pki" "$log_dir"
"$bin/pki" -dir "$pki" -server "$server" \
  -user "admin=pmp-admin/system:masters" \
  -user "unprivileged=pmp-unprivileged" \
  -user "controller-manager=system:kube-controller-manager" \
  -user "scheduler=system:kube-scheduler" \
  -user "kwok=kwok-controller/system:masters" \
  -user "front-proxy=front-proxy-client"

# start NAME EXE ARGS...: runs EXE in its own session (so a Ctrl-C or closed terminal does not
# reach it), output to logs/NAME.log, stdin from /dev/null (so `make testenv | tee` returns).
# The PID and the executable go to the pids file before anything can fail, for down.sh.
start() {
  local name="$1" exe="$2" pid tries=0
  shift 2
  setsid "$exe" "$@" </dev/null >"$log_dir/$name.log" 2>&1 &
  pid=$!
  echo "$name $pid $exe" >>"$pids_file"
  # setsid execs EXE in the same process (a background job of a script is no process group
  # leader, so it need not fork). Wait for the exec, so that `alive` recognises the process
  # from now on instead of seeing the shell or setsid that it briefly still is.
  until [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ]; do
    if [ ! -e "/proc/$pid" ] || [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
      die "$name exited at once; see $log_dir/$name.log"
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 250 ] || die "$name ($pid) did not start $exe"
    sleep 0.02
  done
}

# If anything below fails, stop what was started: no half-started environment is left behind.
on_exit() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    say "start failed; logs in $log_dir; stopping what was started"
    "$testenv_dir/down.sh" >&2 || true
  fi
}
trap on_exit EXIT

# wait_for WHAT COMMAND...: polls COMMAND every 0.2s until it succeeds or the timeout passes.
wait_for() {
  local what="$1" deadline=$(($(date +%s) + timeout_s))
  shift
  until "$@" >/dev/null 2>&1; do
    # A component that died will not come up: say which one, and where its log is.
    while read -r name pid exe; do
      alive "$pid" "$exe" || die "$name exited while waiting for $what; see $log_dir/$name.log"
    done <"$pids_file"
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${timeout_s}s waiting for $what"
    sleep 0.2
  done
}

# --- etcd ---------------------------------------------------------------------------------------
# Throw-away data on the temp filesystem; --unsafe-no-fsync because durability does not matter
# here and fsync dominates etcd's latency on a slow disk.
etcd_data="$(mktemp -d "${TMPDIR:-/tmp}/pmp-testenv-etcd.XXXXXX")"
echo "$etcd_data" >"$run_dir/etcd-data-dir" # for down.sh to remove
start etcd "$bin/etcd" \
  --name=pmp-testenv \
  --data-dir="$etcd_data" \
  --listen-client-urls="http://127.0.0.1:$TESTENV_ETCD_PORT" \
  --advertise-client-urls="http://127.0.0.1:$TESTENV_ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$((TESTENV_ETCD_PORT + 1))" \
  --initial-advertise-peer-urls="http://127.0.0.1:$((TESTENV_ETCD_PORT + 1))" \
  --initial-cluster="pmp-testenv=http://127.0.0.1:$((TESTENV_ETCD_PORT + 1))" \
  --unsafe-no-fsync \
  --quota-backend-bytes=8589934592 \
  --log-level=warn
# kube-apiserver retries etcd anyway, but logs a burst of connection errors until it is up.
wait_for "etcd on 127.0.0.1:$TESTENV_ETCD_PORT" port_busy "$TESTENV_ETCD_PORT"

# --- kube-apiserver ------------------------------------------------------------------------------
# Client certificates authenticate users (--client-ca-file); Node,RBAC authorizes them, so the
# unprivileged user really is refused. Service-account tokens are signed with sa.key and verified
# with sa.pub. 10.96.0.0/16 is only the range Service IPs are allocated from (nothing routes it).
# The requestheader/proxy-client flags configure the aggregation layer's front proxy; without
# them controller-manager and scheduler log errors about the missing requestheader CA.
start kube-apiserver "$bin/kube-apiserver" \
  --advertise-address=127.0.0.1 \
  --bind-address=127.0.0.1 \
  --secure-port="$TESTENV_PORT" \
  --etcd-servers="http://127.0.0.1:$TESTENV_ETCD_PORT" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --requestheader-client-ca-file="$pki/ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$pki/front-proxy.crt" \
  --proxy-client-key-file="$pki/front-proxy.key" \
  --allow-privileged=true \
  --profiling="$profiling" \
  --max-requests-inflight="$apiserver_inflight" \
  --max-mutating-requests-inflight="$apiserver_mutating_inflight"

wait_for "kube-apiserver /readyz" "$kubectl" --kubeconfig "$pki/admin.kubeconfig" get --raw /readyz
readyz_after="$(elapsed)"
say "kube-apiserver ready at $server after $readyz_after"

# --- controller-manager and scheduler ---------------------------------------------------------------
# Each with its own identity (RBAC has bootstrap roles for both). --use-service-account-credentials
# gives every controller its own ServiceAccount; --root-ca-file and the private key let the
# token controllers issue working ServiceAccount tokens. All controllers run ('*'), among them
# node-lifecycle, which lifts the node.kubernetes.io/not-ready taint once kwok reports Ready.
# Client limits well above the defaults (controller-manager 20 QPS and 5 deployment/replicaset
# workers, scheduler 50 QPS): with those, thousands of Deployments at once wait on the
# controllers, and a benchmark would measure their throttles rather than the operator.
cat >"$state_dir/control-plane.env" <<EOF
# The test control plane's client limits (testenv/up.sh: TESTENV_KCM_QPS, TESTENV_KCM_SYNCS, TESTENV_SCHED_QPS)
KCM_KUBE_API_QPS=$kcm_qps
KCM_KUBE_API_BURST=$kcm_qps
KCM_CONCURRENT_DEPLOYMENT_SYNCS=$kcm_syncs
KCM_CONCURRENT_REPLICASET_SYNCS=$kcm_syncs
SCHEDULER_KUBE_API_QPS=$sched_qps
SCHEDULER_KUBE_API_BURST=$sched_qps
APISERVER_MAX_REQUESTS_INFLIGHT=$apiserver_inflight
APISERVER_MAX_MUTATING_REQUESTS_INFLIGHT=$apiserver_mutating_inflight
EOF
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig="$pki/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$pki/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$pki/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 \
  --secure-port="$TESTENV_KCM_PORT" \
  --leader-elect=false \
  --controllers='*' \
  --use-service-account-credentials=true \
  --root-ca-file="$pki/ca.crt" \
  --service-account-private-key-file="$pki/sa.key" \
  --cluster-signing-cert-file="$pki/ca.crt" \
  --cluster-signing-key-file="$pki/ca.key" \
  --kube-api-qps="$kcm_qps" \
  --kube-api-burst="$kcm_qps" \
  --concurrent-deployment-syncs="$kcm_syncs" \
  --concurrent-replicaset-syncs="$kcm_syncs"

start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig="$pki/scheduler.kubeconfig" \
  --authentication-kubeconfig="$pki/scheduler.kubeconfig" \
  --authorization-kubeconfig="$pki/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 \
  --secure-port="$TESTENV_SCHED_PORT" \
  --leader-elect=false \
  --kube-api-qps="$sched_qps" \
  --kube-api-burst="$sched_qps"

# --- kwok: the fake kubelet ------------------------------------------------------------------------
# Manages only nodes annotated kwok.x-k8s.io/node=fake. Stages: kwok's own node-initialize,
# node-heartbeat and pod-complete (from its module, copied by build.sh) plus the project's pod
# stages in testenv/stages/, which follow the sim.pmp.dev/* annotations (see README.md).
# KWOK_WORKDIR keeps a developer's ~/.kwok/kwok.yaml out. --cidr and --node-ip are only the
# addresses written into pod and node status (as the simulator does); nothing listens there.
kwok_config=()
for f in "$bin"/kwok-stages/*.yaml "$testenv_dir"/stages/*.yaml; do
  kwok_config+=("--config=$f")
done
mkdir -p "$run_dir/kwok"
export KWOK_WORKDIR="$run_dir/kwok"
start kwok "$bin/kwok" \
  --kubeconfig="$pki/kwok.kubeconfig" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds=40 \
  --cidr=10.244.0.0/16 \
  --node-ip=10.0.0.1 \
  "${kwok_config[@]}"

# --- the fake node ---------------------------------------------------------------------------------
admin=("$kubectl" --kubeconfig "$pki/admin.kubeconfig")
"${admin[@]}" apply --server-side --field-manager=pmp-testenv -f "$testenv_dir/node.yaml" >/dev/null
# A create may drop status; the status subresource keeps it (kwok's node-initialize keeps
# whatever allocatable is set).
"${admin[@]}" patch node kwok-node-0 --subresource=status --type=merge -p \
  '{"status":{"allocatable":{"cpu":"1000","memory":"4Ti","pods":"10000"},"capacity":{"cpu":"1000","memory":"4Ti","pods":"10000"}}}' \
  >/dev/null

node_ready() {
  [ "$("${admin[@]}" get node kwok-node-0 \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
# The TaintNodesByCondition admission plugin taints every new node not-ready:NoSchedule; the
# node-lifecycle controller lifts it after it sees Ready. Until then nothing schedules.
node_untainted() {
  ! "${admin[@]}" get node kwok-node-0 -o 'jsonpath={.spec.taints[*].key}' | grep -q 'node.kubernetes.io/not-ready'
}
wait_for "kwok-node-0 Ready" node_ready
wait_for "the not-ready taint to leave kwok-node-0" node_untainted
# Pods in a namespace need its default ServiceAccount (the ServiceAccount admission plugin).
wait_for "the default ServiceAccount" "${admin[@]}" get serviceaccount default -n default

cp "$pki/admin.kubeconfig" "$admin_kubeconfig"
cp "$pki/unprivileged.kubeconfig" "$state_dir/unprivileged.kubeconfig"
trap - EXIT

cat >&2 <<EOF
testenv: up after $(elapsed) (kube-apiserver /readyz after $readyz_after): Kubernetes $KUBE_VERSION at $server
  admin:         export KUBECONFIG=$admin_kubeconfig
  unprivileged:  $state_dir/unprivileged.kubeconfig (user pmp-unprivileged, no RBAC bindings)
  kubectl:       $kubectl
  operator SA:   testenv/operator-kubeconfig.sh  (writes $state_dir/operator.kubeconfig)
  logs:          $log_dir/
  stop:          make testenv-down
EOF
