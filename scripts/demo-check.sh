#!/usr/bin/env bash
# Runs `make demo` as a user would, records 5 s with `ipcapp live` and checks
# the recording with ffprobe. Exits non-zero when any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
demo=""
cleanup() {
  # The demo runs in its own process group: stop make and ipcd together.
  [ -n "$demo" ] && kill -TERM -- "-$demo" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

setsid make -s demo >"$out/demo.log" 2>&1 &
demo=$!
for _ in $(seq 1 100); do
  grep -q "listen ok" "$out/demo.log" && break
  sleep 0.1
done
grep -q "listen ok" "$out/demo.log" || { echo "demo-check: ipcd never became ready"; cat "$out/demo.log"; exit 1; }
grep -q "http://127.0.0.1:18080/" "$out/demo.log" || { echo "demo-check: no viewer URL printed"; cat "$out/demo.log"; exit 1; }
curl -fsS -o /dev/null http://127.0.0.1:18080/ || { echo "demo-check: the viewer page does not load"; exit 1; }

bin/ipcapp live -broker tcp://127.0.0.1:18830 -dev-id 6c1ed3m0demo0001 -p2p-password ad12ab34 \
  -seconds 5 -out "$out/live.h264" -audio-out "$out/live.pcmu" -json | tee "$out/stats.json"
# -count_frames makes ffprobe decode every frame; decode errors go to stderr.
frames=$(ffprobe -v error -count_frames -select_streams v:0 \
  -show_entries stream=codec_name,width,height,nb_read_frames -of csv=p=0 "$out/live.h264" 2>"$out/ffprobe.err")
errors=$(cat "$out/ffprobe.err")
echo "demo-check: ffprobe: $frames"
[ -z "$errors" ] || { echo "demo-check: ffprobe reported errors: $errors"; exit 1; }
IFS=, read -r codec width height n <<<"$frames"
[ "$codec" = h264 ] && [ "$width" = 640 ] && [ "$height" = 360 ] && [ "$n" -ge 100 ] || {
  echo "demo-check: unexpected recording: $frames"; exit 1; }
echo "demo-check: ok"
