#!/usr/bin/env bash
# `make demo`: one delivery through the running stack's gateway, as the README walks through it:
# a payment event, the simulator's pickup / pings / delivery arriving by webhook, the customer's
# confirmation, and the audit trail.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

API=${API_URL:-http://127.0.0.1:${API_PORT:-8080}}
export JWT_SECRET=${JWT_SECRET:-dev-only-secret-change-me-0123456789abcdef}
curl -fs -o /dev/null "$API/readyz" || die "no gateway ready at $API: start the stack with \`make run\` first"
cargo build -q -p delivery-api
token() { "$(target_dir)/debug/delivery-api" token --role "$1" --sub "$2"; }
PAYMENTS=$(token payment_service payments)
CUSTOMER=$(token customer cust-42)

payment_id="pay-$(date +%s)-$RANDOM"
sed "s/PAYMENT_ID/$payment_id/g" resources/examples/payment-succeeded.json > .run/demo-payment.json
say "payment $payment_id succeeded: POST /api/v1/payment-events"
created=$(curl -fsS -X POST "$API/api/v1/payment-events" -H "Authorization: Bearer $PAYMENTS" \
  -H 'content-type: application/json' --data @.run/demo-payment.json)
echo "$created"
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["delivery_order_id"])' <<<"$created")

say "waiting for the partner to pick up and deliver (webhooks into the gateway)"
state=""
for _ in $(seq 1 100); do
  order=$(curl -fsS "$API/api/v1/delivery-orders/$id?min_version=0" -H "Authorization: Bearer $CUSTOMER")
  now=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' <<<"$order")
  [ "$now" != "$state" ] && { state=$now; echo "  $state"; }
  [ "$state" = DELIVERED ] && break
  sleep 0.3
done
[ "$state" = DELIVERED ] || die "the delivery did not arrive (state $state); see .run/logs/"

say "the customer confirms: POST /api/v1/delivery-orders/$id/events"
curl -fsS -X POST "$API/api/v1/delivery-orders/$id/events" -H "Authorization: Bearer $CUSTOMER" \
  -H 'content-type: application/json' -d '{"type": "CONFIRMED"}'
echo
say "audit trail: GET /api/v1/delivery-orders/$id/events"
curl -fsS "$API/api/v1/delivery-orders/$id/events" -H "Authorization: Bearer $CUSTOMER" | python3 -m json.tool
echo "Its workflow in Temporal Web UI: http://localhost:${TEMPORAL_UI_PORT:-8233}/namespaces/default/workflows/delivery-order-$id"
echo "Its page in the web UI (sign in as the customer, make token ROLE=customer SUB=cust-42): $API/track/$id"
