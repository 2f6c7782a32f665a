#!/usr/bin/env bash
# `make bench`: the stack from release builds on fresh services, then the load generator
# (loopback only, bounded by BENCH_* variables), which prints one table. See docs/performance.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/delivery-bench.XXXXXX")
chmod 755 "$RUN_DIR"
TEST_DB=""
cleanup() {
  local status=$?
  drop_fresh_database
  stop_started
  rm -rf "$RUN_DIR"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_temporal_cli
say "building release binaries (the first time takes several minutes)"
cargo build --release -p delivery-worker -p delivery-api -p partner-sim -p delivery-bench
fresh_services "$RUN_DIR" bench
BIN_DIR="$(target_dir)/release"
export DELIVERY_WORKER_BIN="$BIN_DIR/delivery-worker" PARTNER_SIM_BIN="$BIN_DIR/partner-sim" DELIVERY_API_BIN="$BIN_DIR/delivery-api"
ulimit -n 8192 2>/dev/null || true
say "running the load generator"
"$BIN_DIR/delivery-bench"
