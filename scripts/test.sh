#!/usr/bin/env bash
# `make test`: every test, against a fresh Temporal dev server on free ports, the machine's
# PostgreSQL and Redis (or private ones), a fresh database and a unique Redis key prefix.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/delivery-test.XXXXXX")
chmod 755 "$RUN_DIR" # a private PostgreSQL runs as the postgres user and must reach its data dir
TEST_DB=""
cleanup() {
  local status=$?
  drop_fresh_database
  stop_started
  if [ $status -ne 0 ] && [ -f "$RUN_DIR/temporal.log" ]; then
    echo "--- Temporal log (tail) ---" >&2; tail -n 20 "$RUN_DIR/temporal.log" >&2
  fi
  rm -rf "$RUN_DIR"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# TEST_ARGS picks cargo tests (make flood, make capture-histories, a focused run): the checks of
# files that are not Rust tests (deployment, alert rules, web components) run only without it.
ALL_CHECKS=$([ -z "${TEST_ARGS:-}" ] && echo 1 || echo "")
if [ -n "$ALL_CHECKS" ]; then
  say "deployment files: k8s/, deploy/cloudformation/, docker-compose.yml"
  scripts/validate-deploy.sh
fi
ensure_temporal_cli
ensure_openapi_validator
export OPENAPI_SPEC_VALIDATOR
# The security suite's schemathesis pass (api_fuzzing::); `make security` raises its examples.
ensure_schemathesis
export SCHEMATHESIS
export PROMETHEUS_BIN
ensure_web_build
ensure_chromium
export CHROMIUM

ensure_prometheus
if [ -n "$ALL_CHECKS" ]; then
  say "alerting rules: promtool check rules, check config, test rules"
  "$PROMTOOL" check rules resources/prometheus/delivery.rules.yml
  "$PROMTOOL" check config --syntax-only resources/prometheus/prometheus.yml >/dev/null
  # What `make run WITH_PROMETHEUS=1` writes, checked whole (its rule file included).
  local_prometheus_config 8080 9464 >"$RUN_DIR/local-prometheus.yml"
  "$PROMTOOL" check config "$RUN_DIR/local-prometheus.yml" >/dev/null
  (cd resources/prometheus && "$PROMTOOL" test rules delivery.rules.test.yml)

  say "web UI: type check and component tests (vitest)"
  (cd web && npx --no-install tsc --noEmit && npx --no-install vitest run)
fi
fresh_services "$RUN_DIR" test

say "building"
cargo build --workspace --all-targets
# The tests run this build's binaries, linked aside at once: when another checkout shares
# CARGO_TARGET_DIR, its next build replaces target/debug/<binary> with its own (cargo relinks the
# file; the link here keeps this build's).
BIN_DIR="$RUN_DIR/bin"
mkdir -p "$BIN_DIR"
for bin in delivery-worker partner-sim delivery-api delivery-bench; do
  ln -f "$(target_dir)/debug/$bin" "$BIN_DIR/$bin" 2>/dev/null || cp -f "$(target_dir)/debug/$bin" "$BIN_DIR/$bin"
done
export DELIVERY_WORKER_BIN="$BIN_DIR/delivery-worker" PARTNER_SIM_BIN="$BIN_DIR/partner-sim" DELIVERY_API_BIN="$BIN_DIR/delivery-api"
export DELIVERY_BENCH_BIN="$BIN_DIR/delivery-bench"

say "running tests"
# shellcheck disable=SC2086 # TEST_ARGS is split on purpose
cargo test --no-fail-fast ${TEST_ARGS:---workspace}
