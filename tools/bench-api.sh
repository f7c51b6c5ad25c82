#!/usr/bin/env bash
# The REST API's status endpoint under load: the trading stack in the sandbox (simulated
# cluster and operator in one process, release build), then wrk against
# GET /api/v1/platform/market_data_service/status for 20 s with 16 connections (2 threads).
# Rate limiting is off (--api-qps 0) so that the server, not the limit, is measured; the API
# runs without authentication, as in the sandbox (with --api-auth kubernetes the review
# answers are cached for 10 s, so a steady caller adds no round trip).
# Prints wrk's latency distribution and writes it to bench-results/api-status.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked --quiet -p platform-sandbox
mkdir -p bench-results
work=$(mktemp -d)
api=127.0.0.1:18480
kube=127.0.0.1:18443
target/release/platform-sandbox sandbox --speed 20 --api-qps 0 --api-addr "$api" \
  --kube-addr "$kube" --kubeconfig-out "$work/kubeconfig" --log-format json \
  >"$work/sandbox.log" 2>&1 &
sandbox=$!
trap 'kill -INT $sandbox 2>/dev/null || true; wait $sandbox 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do
  running=$(curl -fsS "http://$api/api/v1/platforms?phase=Running" 2>/dev/null | grep -o '"phase"' | wc -l || true)
  [ "$running" -ge 6 ] && break
  sleep 0.2
done
[ "${running:-0}" -ge 6 ] || { echo "the trading stack did not come up" >&2; cat "$work/sandbox.log" >&2; exit 1; }
url="http://$api/api/v1/platform/market_data_service/status"
curl -fsS "$url" >/dev/null
wrk -t2 -c16 -d20s --latency "$url" | tee bench-results/api-status.txt
