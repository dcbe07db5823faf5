#!/usr/bin/env bash
# make bench: one table of the numbers that matter on a camera board.
# Go benchmarks (ring, ingest, in-process time to first frame, heap per
# session, and heap, stacks and goroutines per viewer from 1 to 10), then a real ipcd process on the embedded broker with a 2 Mbit/s
# clip, measured from /proc while ipcapp viewers watch it. It reports; it
# fails only when something does not run. Then memory, Go heap and CPU at 1,
# 5, 10 and 16 viewers with the clip coming through a pipe source, with the
# default stream.nack_buffer and with nack_buffer 1 as the floor
# (scripts/bench-viewers.sh). Last, time to first frame through mosquitto
# with and without set_tcp_nodelay (scripts/bench-broker.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${BENCH_PORT:-18840}
buffer_seconds=${BENCH_BUFFER_SECONDS:-10} # media.buffer_seconds, as in configs/demo.yaml
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
export CGO_ENABLED=0

echo "== Go benchmarks"
go test -run '^$' -bench 'RingAppend$|ReaderNext|PipeIngest|FeedIngest' -benchmem -count=1 ./media/ | tee "$work/media.txt" | grep -E '^Benchmark'
go test -run '^$' -bench 'TTFF' -benchtime 20x ./cmd/ipcd/ 2>/dev/null | tee "$work/ttff.txt" | grep -E '^Benchmark'
# BenchmarkTTFF above matches BenchmarkPlaybackTTFF too: a playback offer of
# the card's first seconds (ipcd recording to a temporary directory).
go test -run '^$' -bench 'SessionHeap|SessionMarginal' -benchtime 1x ./cmd/ipcd/ 2>/dev/null | tee "$work/heap.txt" | grep -E '^Benchmark'
go test -run '^$' -bench 'StartToReady' -benchtime 10x ./cmd/ipcd/ 2>/dev/null | tee "$work/ready.txt" | grep -E '^Benchmark'
# Time to first frame over pion's virtual WAN: 25 ms each way, up to 5 ms
# jitter, 0/1/5 % loss, full-cone NATs and STUN; p50/p95 of 20 sessions.
go test -run '^$' -bench 'WANTTFF' -benchtime 20x ./p2p/ 2>/dev/null | tee "$work/wan.txt" | grep -E '^Benchmark'
# Frames a viewer can decode over that path, with and without keyframe
# requests (NACK retransmission on): one 10 s session each.
go test -run '^$' -bench 'WANDecode' -benchtime 1x ./p2p/ 2>/dev/null | tee "$work/wandecode.txt" | grep -E '^Benchmark'
# Per-viewer adaptation through a 1 Mbit/s token bucket (network
# namespaces: root only): time to move down (from the offer) and back (from
# the limit's end), frames undecodable around each move.
if [ "$(id -u)" = 0 ] && command -v tc >/dev/null && command -v ffmpeg >/dev/null; then
  go test -run '^$' -bench 'AdaptTBF' -benchtime 1x ./p2p/ 2>/dev/null | grep -E '^Benchmark' || echo "bench: adaptation scenario did not run"
fi

metric() { # file benchmark-regexp unit
  grep -E "^$2" "$1" | head -1 | awk -v unit="$3" '{for (i = 2; i < NF; i++) if ($(i+1) == unit) {print $i; exit}}'
}

clip=bin/bench/2mbit.h264
if [ ! -s "$clip" ]; then
  mkdir -p bin/bench
  ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=25 -t 10 -c:v libx264 -profile:v baseline \
    -b:v 2M -maxrate 2M -bufsize 1M -x264-params keyint=25:min-keyint=25:scenecut=0:repeat-headers=1 -f h264 "$clip"
fi

# Recording to the card: CPU per Mbit/s and bytes per hour, on the clip.
RECORD_BENCH_CLIP="$PWD/$clip" go test -run '^$' -bench 'RecordWrite' -benchtime 120x ./media/record/ 2>/dev/null | tee "$work/record.txt" | grep -E '^Benchmark'

IPCD_LOG_LEVEL=info \
IPCD_MQTT_BROKERS="tcp://127.0.0.1:$port" \
IPCD_MQTT_EMBEDDED_BROKER="127.0.0.1:$port" \
IPCD_MQTT_EMBEDDED_BROKER_WS="127.0.0.1:$((port + 1))" \
IPCD_DEVICE_STORE="$work/state.json" \
IPCD_MEDIA_SOURCES_MAIN_PATH="$clip" \
IPCD_MEDIA_MEMORY_MB=8 \
IPCD_MEDIA_BUFFER_SECONDS="$buffer_seconds" \
  bin/ipcd -config configs/demo.yaml 2>"$work/ipcd.log" &
pid=$!
start=$(date +%s%N)
for _ in $(seq 1 200); do
  grep -q "listen ok" "$work/ipcd.log" && break
  sleep 0.01
done
grep -q "listen ok" "$work/ipcd.log" || { echo "bench: ipcd never became ready"; cat "$work/ipcd.log"; exit 1; }
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
# File-backed pages are the binary's code, clean and shared; anonymous ones
# are what ipcd allocated.
rss_split() { awk '/^RssAnon/ {a = $2} /^RssFile/ {f = $2} END {printf "anon %.1f MB, file %.1f MB", a / 1024, f / 1024}' "/proc/$pid/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
app=(bin/ipcapp bench -broker "tcp://127.0.0.1:$port" -dev-id 6c1ed3m0demo0001 -p2p-password ad12ab34 -json)

# Idle means with the rings full and memory settled (see
# scripts/bench-viewers.sh): a ring still filling would count its growth
# as the viewers' memory.
sleep $((2 * buffer_seconds + 1))
rss_idle=$(rss_kb)
rss_idle_split=$(rss_split)
t0=$(cpu_ticks); sleep 3; cpu_idle=$(( $(cpu_ticks) - t0 ))

# viewers N: RSS and CPU of ipcd while N viewers watch for 11 s, measured
# from 6 to 10 s, once the heap has grown back from the idle collector's
# (see scripts/bench-viewers.sh); the JSON of ipcapp bench goes to
# $work/viewersN.json.
viewers() {
  "${app[@]}" -sessions 0 -viewers "$1" -seconds 11 >"$work/viewers$1.json" &
  local b=$!
  sleep 6
  local c0; c0=$(cpu_ticks)
  sleep 4
  eval "cpu_$1=\$(( \$(cpu_ticks) - c0 ))"
  eval "rss_$1=\$(rss_kb)"
  wait "$b"
}
viewers 1
viewers 5
"${app[@]}" -sessions 20 -viewers 0 -seconds 0.3 >"$work/seq.json"

jget() { # file phase field -> value
  tr -d '\n ' <"$1" | grep -o "\"$2\":{[^}]*}[^}]*}" | grep -o "\"$3\":[0-9.]*" | head -1 | cut -d: -f2
}
pct() { awk -v t="$1" -v hz="$hz" -v s=4 -v n="$2" 'BEGIN {printf "%.1f", 100 * t / hz / s / n}'; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

size() { [ -f "$1" ] && stat -c %s "$1" | awk '{printf "%.2f MB", $1 / 1048576}' || echo "(make cross)"; }

echo
echo "== ipcd on this machine ($(nproc) cores), 2 Mbit/s 1280x720 H.264 + PCMU"
printf '%-52s %s\n' "metric" "value"
printf '%-52s %s\n' "time to first frame, 20 sequential, p50 / p95" "$(jget "$work/seq.json" sequential p50) / $(jget "$work/seq.json" sequential p95) ms"
printf '%-52s %s\n' "time to first frame, 5 concurrent, p50 / p95" "$(jget "$work/viewers5.json" concurrent p50) / $(jget "$work/viewers5.json" concurrent p95) ms"
printf '%-52s %s\n' "time to first frame in-process (Go bench), p50 / p95" "$(metric "$work/ttff.txt" BenchmarkTTFF ttff-p50-ms) / $(metric "$work/ttff.txt" BenchmarkTTFF ttff-p95-ms) ms"
printf '%-52s %s\n' "playback offer to first frame (Go bench), p50 / p95" "$(metric "$work/ttff.txt" BenchmarkPlaybackTTFF ttff-p50-ms) / $(metric "$work/ttff.txt" BenchmarkPlaybackTTFF ttff-p95-ms) ms"
printf '%-52s %s\n' "process start to Ready (system clock)" "$ready_ms ms"
printf '%-52s %s\n' "start to Ready in-process: system / NTP on loopback" "$(metric "$work/ready.txt" 'BenchmarkStartToReady/system' ms/ready) / $(metric "$work/ready.txt" 'BenchmarkStartToReady/ntp' ms/ready) ms"
printf '%-52s %s\n' "RSS idle" "$(mb "$rss_idle") MB ($rss_idle_split)"
printf '%-52s %s\n' "RSS with 1 viewer (+ per viewer)" "$(mb "$rss_1") MB (+$(mb $((rss_1 - rss_idle))) MB)"
printf '%-52s %s\n' "RSS with 5 viewers (+ per viewer)" "$(mb "$rss_5") MB (+$(mb $(( (rss_5 - rss_idle) / 5 ))) MB)"
printf '%-52s %s\n' "RSS per additional viewer (5 viewers vs 1)" "$(mb $(( (rss_5 - rss_1) / 4 ))) MB"
printf '%-52s %s\n' "heap per session, live / in use (Go bench)" "$(metric "$work/heap.txt" BenchmarkSessionHeap heap-live-KB/session) / $(metric "$work/heap.txt" BenchmarkSessionHeap heap-inuse-KB/session) KB"
printf '%-52s %s\n' "per viewer 1 to 10: heap live / stacks, goroutines" "$(metric "$work/heap.txt" BenchmarkSessionMarginal heap-live-KB/viewer) / $(metric "$work/heap.txt" BenchmarkSessionMarginal stack-KB/viewer) KB, $(metric "$work/heap.txt" BenchmarkSessionMarginal goroutines/viewer)"
printf '%-52s %s\n' "CPU idle (of one core)" "$(pct "$cpu_idle" 1) %"
printf '%-52s %s\n' "CPU per viewer, 1 viewer / 5 viewers (of one core)" "$(pct "$cpu_1" 1) % / $(pct "$cpu_5" 5) %"
printf '%-52s %s\n' "ring append / reader next" "$(metric "$work/media.txt" BenchmarkRingAppend- ns/op) / $(metric "$work/media.txt" BenchmarkReaderNext ns/op) ns/op, $(metric "$work/media.txt" BenchmarkRingAppend- allocs/op) / $(metric "$work/media.txt" BenchmarkReaderNext allocs/op) allocs/op"
printf '%-52s %s\n' "recording: CPU per Mbit/s recorded (of one core)" "$(metric "$work/record.txt" BenchmarkRecordWrite cpu-%/Mbit/s) %"
printf '%-52s %s\n' "recording: written per hour at $(metric "$work/record.txt" BenchmarkRecordWrite Mbit/s) Mbit/s" "$(metric "$work/record.txt" BenchmarkRecordWrite MB/h) MB (TS + index overhead $(metric "$work/record.txt" BenchmarkRecordWrite overhead-%) %)"
printf '%-52s %s\n' "binary size: ipcd linux/amd64 (this build)" "$(size bin/ipcd)"
printf '%-52s %s\n' "binary size: ipcd linux/arm v7 / arm64 / mipsle" "$(size bin/linux-arm/ipcd) / $(size bin/linux-arm64/ipcd) / $(size bin/linux-mipsle/ipcd)"
# The process above is stopped first: the next one uses other ports, but
# both at once would share the two cores.
kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
BENCH_CLIP="$clip" bash scripts/bench-viewers.sh
bash scripts/bench-broker.sh
