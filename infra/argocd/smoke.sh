#!/usr/bin/env bash
# Smoke test through the public load balancer: ready, and one event accepted end to end.
#   usage: smoke.sh BASE_URL API_KEY
set -euo pipefail
base="${1:?usage: smoke.sh BASE_URL API_KEY}"
key="${2:?usage: smoke.sh BASE_URL API_KEY}"
for attempt in $(seq 1 30); do
  if curl -sSf "${base}/readyz" >/dev/null; then break; fi
  [ "$attempt" = 30 ] && { echo "error: ${base}/readyz never answered 200" >&2; exit 1; }
  sleep 10
done
event_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
status="$(curl -sS -o /dev/stderr -w '%{http_code}' -X POST "${base}/v1/events" \
  -H "Authorization: Bearer ${key}" -H 'Content-Type: application/json' \
  -d "{\"event_id\":\"${event_id}\",\"type\":\"deploy.smoke\",\"anonymous_id\":\"ci\"}")"
case "$status" in
  200|202) echo "smoke test passed: event ${event_id} accepted (${status})" ;;
  *) echo "error: POST /v1/events answered ${status}" >&2; exit 1 ;;
esac
