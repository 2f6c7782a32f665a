#!/usr/bin/env bash
# `make run`: the whole local stack — Temporal dev server with Web UI, partner simulator, worker,
# REST gateway.
# Ctrl-C stops everything this script started (and nothing else).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

TEMPORAL_PORT=${TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${TEMPORAL_UI_PORT:-8233}
PARTNER_SIM_PORT=${PARTNER_SIM_PORT:-8090}
WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-9464}
API_PORT=${API_PORT:-8080}
# Development secrets; set your own in the environment for anything shared. DEV_MODE=1 lets the
# gateway and the simulator accept the published ones (they refuse them otherwise).
export DEV_MODE=${DEV_MODE:-1}
export JWT_SECRET=${JWT_SECRET:-dev-only-secret-change-me-0123456789abcdef}
PARTNER_WEBHOOK_SECRET=${PARTNER_WEBHOOK_SECRET:-dev-partner-secret}
# The payload codec's key (published development key: accepted only under DEV_MODE=1). Every
# payload the worker, the gateway and the simulator send Temporal is encrypted with it.
export PAYLOAD_ENCRYPTION_KEYS=${PAYLOAD_ENCRYPTION_KEYS:-dev:ZGVsaXZlcnktZGV2LXBheWxvYWQta2V5LXB1YmxpYyE=}
# The Temporal Web UI decodes payloads through the gateway's codec endpoint (operators only:
# see docs/security.md). Both on `localhost`, so the browser treats them as one site.
export TEMPORAL_UI_CODEC_ENDPOINT=${TEMPORAL_UI_CODEC_ENDPOINT:-http://localhost:$API_PORT/codec}
LOGS="$ROOT/.run/logs"
mkdir -p "$LOGS" "$ROOT/.data"
trap 'echo; say "stopping"; stop_started; exit 0' INT TERM
trap 'stop_started' EXIT

ensure_temporal_cli
ensure_web_build
say "building the worker, the gateway and the partner simulator"
cargo build -q -p delivery-worker -p delivery-api -p partner-sim
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
# The read model lives in its own database (the worker and the gateway apply the migrations).
LOCAL_DB=${LOCAL_DB:-delivery}
if ! psql -q "$DATABASE_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$LOCAL_DB'" | grep -q 1; then
  psql -q "$DATABASE_URL" -c "CREATE DATABASE \"$LOCAL_DB\"" >/dev/null || die "could not create database $LOCAL_DB"
fi
export DATABASE_URL="${DATABASE_URL%/*}/$LOCAL_DB"

say "starting partner simulator (calls back through the gateway's signed webhook)"
PARTNER_SIM_PORT=$PARTNER_SIM_PORT PARTNER_CALLBACK_MODE=webhook \
  PARTNER_WEBHOOK_URL="http://127.0.0.1:$API_PORT/api/v1/partner-webhooks/sim" \
  PARTNER_WEBHOOK_SECRET="$PARTNER_WEBHOOK_SECRET" \
  "$BIN/partner-sim" >"$LOGS/partner-sim.log" 2>&1 &
sim_pid=$!; track $sim_pid "partner simulator"
wait_http "http://127.0.0.1:$PARTNER_SIM_PORT/_sim/config" "partner simulator" $sim_pid "$LOGS/partner-sim.log"

say "starting worker"
TEMPORAL_ADDRESS="http://$TEMPORAL_ADDRESS" PARTNER_API_URL="http://127.0.0.1:$PARTNER_SIM_PORT" \
  WORKER_METRICS_PORT=$WORKER_METRICS_PORT "$BIN/delivery-worker" >"$LOGS/worker.log" 2>&1 &
worker_pid=$!; track $worker_pid "worker"
wait_http "http://127.0.0.1:$WORKER_METRICS_PORT/healthz" "worker" $worker_pid "$LOGS/worker.log"

say "starting gateway"
TEMPORAL_ADDRESS="http://$TEMPORAL_ADDRESS" API_PORT=$API_PORT WEB_DIST="$ROOT/web/dist" \
  TEMPORAL_WEB_UI_URL="http://localhost:$TEMPORAL_UI_PORT" PARTNER_WEBHOOK_SECRETS="sim=$PARTNER_WEBHOOK_SECRET" \
  CODEC_CORS_ORIGINS="${CODEC_CORS_ORIGINS:-http://localhost:$TEMPORAL_UI_PORT,http://127.0.0.1:$TEMPORAL_UI_PORT}" \
  "$BIN/delivery-api" >"$LOGS/gateway.log" 2>&1 &
api_pid=$!; track $api_pid "gateway"
wait_http "http://127.0.0.1:$API_PORT/readyz" "gateway" $api_pid "$LOGS/gateway.log"

# Optional: a local Prometheus (Debian's) scraping the gateway and the worker and evaluating the
# alerting rules against live data.
prometheus_line=""
if [ "${WITH_PROMETHEUS:-0}" = 1 ]; then
  ensure_prometheus
  PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
  prom_dir="$ROOT/.run/prometheus"
  mkdir -p "$prom_dir/data"
  local_prometheus_config "$API_PORT" "$WORKER_METRICS_PORT" >"$prom_dir/prometheus.yml"
  say "starting Prometheus (rules of resources/prometheus)"
  "$PROMETHEUS_BIN" --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/data" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" >"$LOGS/prometheus.log" 2>&1 &
  prom_pid=$!; track $prom_pid "Prometheus"
  wait_http "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" "Prometheus" $prom_pid "$LOGS/prometheus.log"
  prometheus_line="  Prometheus          http://127.0.0.1:$PROMETHEUS_PORT/alerts   (log .run/logs/prometheus.log)"
fi

cat <<TABLE

  Delivery-order stack is up.

  Temporal frontend   $TEMPORAL_ADDRESS   $temporal_note
  web UI              http://localhost:$API_PORT/   (sign in with: make token ROLE=operator SUB=alice)
  gateway (REST)      http://127.0.0.1:$API_PORT/api/v1   (log .run/logs/gateway.log)
  API docs            http://127.0.0.1:$API_PORT/docs   (spec: /openapi.json)
  Temporal Web UI     http://localhost:$TEMPORAL_UI_PORT   (payloads are encrypted; to see them decoded,
                      sign in as an operator at http://localhost:$API_PORT/, then in the Web UI's
                      Codec Server settings choose "Use my browser setting", enter the codec
                      endpoint below and turn on "Include cross-origin credentials": docs/security.md)
  codec endpoint      $TEMPORAL_UI_CODEC_ENDPOINT   (temporal workflow show --codec-endpoint $TEMPORAL_UI_CODEC_ENDPOINT
                      --codec-auth "Bearer \$(make -s token ROLE=operator)")
  partner simulator   http://127.0.0.1:$PARTNER_SIM_PORT   (log .run/logs/partner-sim.log)
  worker metrics      http://127.0.0.1:$WORKER_METRICS_PORT/metrics   (log .run/logs/worker.log)
${prometheus_line}
  PostgreSQL          $DATABASE_URL
  Redis               $REDIS_URL

  Start a delivery:   make demo        (in another terminal)
  A token:            make token ROLE=operator SUB=alice
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
        gateway) tail -n 20 "$LOGS/gateway.log" >&2 ;;
        "partner simulator") tail -n 20 "$LOGS/partner-sim.log" >&2 ;;
        "Temporal dev server") tail -n 20 "$LOGS/temporal.log" >&2 ;;
        Prometheus) tail -n 20 "$LOGS/prometheus.log" >&2 ;;
      esac
      exit 1
    fi
  done
  sleep 1
done
