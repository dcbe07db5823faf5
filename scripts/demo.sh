#!/usr/bin/env bash
# make demo: ipcd on its embedded broker with the sample media and a
# pre-provisioned activation, plus the browser viewer. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p /tmp/ipcd-demo
dev=6c1ed3m0demo0001
pw=ad12ab34
web=${DEMO_WEB:-127.0.0.1:18080}

pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

bin/ipcd -config configs/demo.yaml &
pids+=($!)
bin/ipcapp web -listen "$web" -broker-ws ws://127.0.0.1:18831 -dev-id "$dev" -p2p-password "$pw" >/dev/null &
pids+=($!)

cat <<TXT

ipcd demo: embedded MQTT broker on 127.0.0.1:18830 (WebSocket 18831), sample media from configs/media.
  Open the viewer:   http://$web/
  Or watch from a terminal:
    bin/ipcapp live -broker tcp://127.0.0.1:18830 -dev-id $dev -p2p-password $pw -seconds 5 -out /tmp/ipcd-demo.h264
Ctrl-C stops the demo.

TXT
# Either process ending ends the demo.
wait -n
