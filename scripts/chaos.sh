#!/usr/bin/env bash
# `make chaos`: release builds, then the chaos run (docs/reliability.md): the stack with two
# workers and two gateways under load while faults are injected on a schedule, then the invariant
# checker's table. Bounded: CHAOS_MINUTES of load (default 5), then a bounded drain and checks.
# Everything it starts (Temporal, a private Redis, the services) is started and stopped by the
# chaos binary by PID; this script only provides PostgreSQL (the machine's, or a private one).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/delivery-chaos.XXXXXX")
chmod 755 "$RUN_DIR"
cleanup() {
  local status=$?
  stop_started
  rm -rf "$RUN_DIR"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v redis-server >/dev/null || die "make chaos starts a private Redis: install redis-server (apt-get install redis-server)"
ensure_temporal_cli
export TEMPORAL_CLI
say "building release binaries (the first time takes several minutes)"
cargo build --release -p delivery-worker -p delivery-api -p partner-sim -p delivery-chaos
ensure_postgres "$RUN_DIR"
BIN_DIR="$(target_dir)/release"
export DELIVERY_WORKER_BIN="$BIN_DIR/delivery-worker" PARTNER_SIM_BIN="$BIN_DIR/partner-sim" DELIVERY_API_BIN="$BIN_DIR/delivery-api"
export CHAOS_LOG_DIR="${CHAOS_LOG_DIR:-$RUN_DIR/logs}"
ulimit -n 8192 2>/dev/null || true
say "chaos run: ${CHAOS_MINUTES:-5} min of load and faults (logs in $CHAOS_LOG_DIR, removed at the end unless CHAOS_LOG_DIR is set)"
# Memory and open files of every process once a minute (the soak's leak figures).
USAGE_TSV="$CHAOS_LOG_DIR/usage.tsv"
mkdir -p "$CHAOS_LOG_DIR"
scripts/usage-sampler.sh sample "$USAGE_TSV" "$BIN_DIR" "$CHAOS_LOG_DIR" "${CHAOS_USAGE_INTERVAL:-60}" &
track $! usage-sampler
status=0
"$BIN_DIR/delivery-chaos" || status=$?
echo
echo "memory and open files, the longest-lived process of each role (sampled every ${CHAOS_USAGE_INTERVAL:-60} s; $USAGE_TSV):"
scripts/usage-sampler.sh summary "$USAGE_TSV"
exit $status
