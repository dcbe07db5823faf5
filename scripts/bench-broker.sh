#!/usr/bin/env bash
# Time to first frame through mosquitto with and without set_tcp_nodelay:
# the cost of Nagle's algorithm on the signaling hops. Prints two lines;
# skips when mosquitto is not installed. Needs bin/ipcd and bin/ipcapp.
set -euo pipefail
cd "$(dirname "$0")/.."
mosq=/usr/sbin/mosquitto
[ -x "$mosq" ] || mosq=$(command -v mosquitto || true)
if [ -z "$mosq" ]; then echo "mosquitto not installed: skipping the broker comparison"; exit 0; fi
port=${BENCH_BROKER_PORT:-18850}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
for nodelay in true false; do
  printf 'listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay %s\n' "$port" "$nodelay" >"$work/m.conf"
  "$mosq" -c "$work/m.conf" 2>"$work/mosq.log" & pids+=($!)
  sleep 0.3
  IPCD_LOG_LEVEL=info IPCD_MQTT_BROKERS="tcp://127.0.0.1:$port" IPCD_MQTT_EMBEDDED_BROKER="" IPCD_MQTT_EMBEDDED_BROKER_WS="" \
    IPCD_DEVICE_STORE="$work/state-$nodelay.json" bin/ipcd -config configs/demo.yaml 2>"$work/ipcd.log" & pids+=($!)
  for _ in $(seq 1 300); do grep -q "listen ok" "$work/ipcd.log" && break; sleep 0.01; done
  bin/ipcapp bench -broker "tcp://127.0.0.1:$port" -dev-id 6c1ed3m0demo0001 -p2p-password ad12ab34 -json \
    -sessions 20 -viewers 0 -seconds 0.3 >"$work/seq-$nodelay.json" || true
  p50=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['sequential']['ttff_ms']['p50'])" "$work/seq-$nodelay.json" 2>/dev/null || echo "?")
  p95=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['sequential']['ttff_ms']['p95'])" "$work/seq-$nodelay.json" 2>/dev/null || echo "?")
  printf '%-52s %s\n' "time to first frame via mosquitto, nodelay $nodelay, p50 / p95" "$p50 / $p95 ms"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
done
