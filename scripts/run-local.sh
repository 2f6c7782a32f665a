#!/usr/bin/env bash
# `make run`: the whole local stack — Temporal dev server with Web UI, partner simulator, worker.
# Ctrl-C stops everything this script started (and nothing else).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

TEMPORAL_PORT=${TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${TEMPORAL_UI_PORT:-8233}
PARTNER_SIM_PORT=${PARTNER_SIM_PORT:-8090}
WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-9464}
LOGS="$ROOT/.run/logs"
mkdir -p "$LOGS" "$ROOT/.data"
trap 'echo; say "stopping"; stop_started; exit 0' INT TERM
trap 'stop_started' EXIT

ensure_temporal_cli
say "building the worker and the partner simulator"
cargo build -q -p delivery-worker -p partner-sim
BIN="$(target_dir)/debug"

TEMPORAL_ADDRESS="127.0.0.1:$TEMPORAL_PORT"
if temporal_healthy "$TEMPORAL_ADDRESS"; then
  temporal_note="(already running: reused, not started by this script)"
  say "Temporal already serves $TEMPORAL_ADDRESS: using it"
else
  say "starting Temporal dev server (data in .data/temporal.db)"
  start_temporal "$ROOT/.data/temporal.db" "$TEMPORAL_PORT" "$TEMPORAL_UI_PORT" "$LOGS/temporal.log"
  temporal_note="(log .run/logs/temporal.log)"
fi

# PostgreSQL and Redis are used by the read side; checked here so the stack is complete.
ensure_postgres "$ROOT/.run"
ensure_redis "$ROOT/.run"
# The read model lives in its own database (the worker applies the migrations).
LOCAL_DB=${LOCAL_DB:-delivery}
if ! psql -q "$DATABASE_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$LOCAL_DB'" | grep -q 1; then
  psql -q "$DATABASE_URL" -c "CREATE DATABASE \"$LOCAL_DB\"" >/dev/null || die "could not create database $LOCAL_DB"
fi
export DATABASE_URL="${DATABASE_URL%/*}/$LOCAL_DB"

say "starting partner simulator"
PARTNER_SIM_PORT=$PARTNER_SIM_PORT PARTNER_CALLBACK_MODE=temporal TEMPORAL_ADDRESS="http://$TEMPORAL_ADDRESS" \
  "$BIN/partner-sim" >"$LOGS/partner-sim.log" 2>&1 &
sim_pid=$!; track $sim_pid "partner simulator"
wait_http "http://127.0.0.1:$PARTNER_SIM_PORT/_sim/config" "partner simulator" $sim_pid "$LOGS/partner-sim.log"

say "starting worker"
TEMPORAL_ADDRESS="http://$TEMPORAL_ADDRESS" PARTNER_API_URL="http://127.0.0.1:$PARTNER_SIM_PORT" \
  WORKER_METRICS_PORT=$WORKER_METRICS_PORT "$BIN/delivery-worker" >"$LOGS/worker.log" 2>&1 &
worker_pid=$!; track $worker_pid "worker"
wait_http "http://127.0.0.1:$WORKER_METRICS_PORT/healthz" "worker" $worker_pid "$LOGS/worker.log"

cat <<TABLE

  Delivery-order stack is up.

  Temporal frontend   $TEMPORAL_ADDRESS   $temporal_note
  Temporal Web UI     http://localhost:$TEMPORAL_UI_PORT
  partner simulator   http://127.0.0.1:$PARTNER_SIM_PORT   (log .run/logs/partner-sim.log)
  worker metrics      http://127.0.0.1:$WORKER_METRICS_PORT/metrics   (log .run/logs/worker.log)
  PostgreSQL          $DATABASE_URL
  Redis               $REDIS_URL

  Start a delivery:   make demo        (in another terminal)
  Stop everything:    Ctrl-C

TABLE

# Stay up while every child lives; if one dies, say which and stop the rest.
while true; do
  for i in "${!STARTED_PIDS[@]}"; do
    if ! kill -0 "${STARTED_PIDS[$i]}" 2>/dev/null; then
      name=${STARTED_NAMES[$i]}
      echo "error: $name stopped unexpectedly" >&2
      case $name in
        worker) tail -n 20 "$LOGS/worker.log" >&2 ;;
        "partner simulator") tail -n 20 "$LOGS/partner-sim.log" >&2 ;;
        "Temporal dev server") tail -n 20 "$LOGS/temporal.log" >&2 ;;
      esac
      exit 1
    fi
  done
  sleep 1
done
