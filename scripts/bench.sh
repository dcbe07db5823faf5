#!/usr/bin/env bash
# The ipcapp bench scenario against a real ipcd process on the embedded
# broker: 20 sequential sessions, then 5 concurrent viewers. Prints numbers;
# fails only when a session fails.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${BENCH_PORT:-18840}
out=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [ -n "${BENCH_KEEP:-}" ] && cp "$out/ipcd.log" /tmp/bench-ipcd.log
  rm -rf "$out"
}
trap cleanup EXIT

IPCD_LOG_LEVEL=info \
IPCD_MQTT_BROKERS="tcp://127.0.0.1:$port" \
IPCD_MQTT_EMBEDDED_BROKER="127.0.0.1:$port" \
IPCD_MQTT_EMBEDDED_BROKER_WS="127.0.0.1:$((port + 1))" \
IPCD_DEVICE_STORE="$out/state.json" \
  bin/ipcd -config configs/demo.yaml 2>"$out/ipcd.log" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "listen ok" "$out/ipcd.log" && break
  sleep 0.1
done
grep -q "listen ok" "$out/ipcd.log" || { echo "bench: ipcd never became ready"; cat "$out/ipcd.log"; exit 1; }
sleep 1 # a keyframe in the ring

echo "ipcapp bench: 20 sequential sessions, then 5 concurrent viewers for 3 s (ipcd pid $pid)"
bin/ipcapp bench -broker "tcp://127.0.0.1:$port" -dev-id 6c1ed3m0demo0001 -p2p-password ad12ab34 \
  -sessions 20 -viewers 5 -seconds 3
