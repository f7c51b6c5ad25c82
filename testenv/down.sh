#!/usr/bin/env bash
# Stops exactly the processes testenv/up.sh started (target/testenv/pids), in reverse start order:
# kwok, scheduler, controller-manager, kube-apiserver, etcd. Each gets SIGTERM and up to
# TESTENV_STOP_TIMEOUT seconds (default 10) to exit, then SIGKILL. The order matters: a
# kube-apiserver whose etcd is already gone can hang in its graceful shutdown.
# A PID is only signalled while it still runs the executable up.sh recorded for it, so a PID the
# kernel has since given to another process is left alone.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pids_file="$state_dir/pids"
stop_timeout="${TESTENV_STOP_TIMEOUT:-10}"

say() { echo "testenv: $*" >&2; }

alive() { # PID EXE (as in up.sh: exists, not a zombie, still runs EXE, even if deleted)
  [ -r "/proc/$1/stat" ] || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] || return 1
  case "$(readlink "/proc/$1/exe" 2>/dev/null)" in
    "$2" | "$2 (deleted)") return 0 ;;
    *) return 1 ;;
  esac
}

if [ ! -f "$pids_file" ]; then
  say "not running (no $pids_file)"
  exit 0
fi

# Reverse order: tac is GNU; awk is everywhere.
awk '{ lines[NR] = $0 } END { for (i = NR; i > 0; i--) print lines[i] }' "$pids_file" |
  while read -r name pid exe; do
    if ! alive "$pid" "$exe"; then
      say "$name ($pid) already gone"
      continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # The processes are not children of this shell (up.sh has exited), so `wait` cannot be
    # used: poll until the process is gone or only a zombie.
    deadline=$(($(date +%s) + stop_timeout))
    while alive "$pid" "$exe" && [ "$(date +%s)" -lt "$deadline" ]; do
      sleep 0.1
    done
    if alive "$pid" "$exe"; then
      say "$name ($pid) still running after ${stop_timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid" "$exe"; do sleep 0.1; done
    fi
    say "stopped $name ($pid)"
  done

if [ -f "$state_dir/run/etcd-data-dir" ]; then
  etcd_data="$(cat "$state_dir/run/etcd-data-dir")"
  # Only ever the directory up.sh made with mktemp.
  case "$etcd_data" in
    */pmp-testenv-etcd.*) rm -rf "$etcd_data" ;;
  esac
  rm -f "$state_dir/run/etcd-data-dir"
fi
rm -f "$pids_file"
say "down (logs kept in $state_dir/logs/)"
