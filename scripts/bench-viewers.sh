#!/usr/bin/env bash
# Memory and CPU of a real ipcd process fed a 2 Mbit/s 1280x720 H.264 clip
# through a pipe source (ffmpeg writing a FIFO in real time), idle and with
# 1, 5, 10 and 16 ipcapp viewers, once with the default stream.nack_buffer
# and once with nack_buffer 1 (the smallest valid history: the floor, what a
# session costs without retransmission). Memory figures are medians of nine
# readings over four seconds, all taken once the rings hold
# media.buffer_seconds of the clip and idle memory has settled (twice
# buffer_seconds after start): a ring still filling would count its growth
# as idle memory not yet there and as viewers' memory. Numbers, not
# verdicts.
#
# Environment: BENCH_BIN (directory holding ipcd and ipcapp, default bin),
# BENCH_PORT (default 18850), BENCH_CLIP (default bin/bench/2mbit.h264, made
# with ffmpeg when missing), BENCH_NACK (the nack_buffer values to run,
# default "256 1").
set -euo pipefail
cd "$(dirname "$0")/.."
bindir=${BENCH_BIN:-bin}
port=${BENCH_PORT:-18850}
clip=${BENCH_CLIP:-bin/bench/2mbit.h264}
nacks=${BENCH_NACK:-256 1}
buffer_seconds=${BENCH_BUFFER_SECONDS:-10}
work=$(mktemp -d)
pid=""
feeder=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$feeder" ]; then kill -- -"$feeder" 2>/dev/null || true; wait "$feeder" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ ! -s "$clip" ]; then
  mkdir -p "$(dirname "$clip")"
  ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=25 -t 10 -c:v libx264 -profile:v baseline \
    -b:v 2M -maxrate 2M -bufsize 1M -x264-params keyint=25:min-keyint=25:scenecut=0:repeat-headers=1 -f h264 "$clip"
fi

hz=$(getconf CLK_TCK)
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
anon_kb() { awk '/^RssAnon/ {print $2}' "/proc/$pid/status"; }
file_kb() { awk '/^RssFile/ {print $2}' "/proc/$pid/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
# Live Go heap after the last collection, from GODEBUG=gctrace=1 ("A->B->C MB").
heap_mb() { grep -oE '[0-9]+->[0-9]+->[0-9]+ MB' "$work/ipcd.log" | tail -1 | sed -E 's/.*->([0-9]+) MB/\1/'; }
# sample: RSS, anonymous and file-backed pages, each the median of 9 readings
# taken 0.5 s apart (the collector and the heap grow in steps, so a single
# reading is off by up to a few hundred KB); sets rss, anon and file.
sample() {
  local r=() a=() f=() i
  for i in $(seq 1 9); do
    r+=("$(rss_kb)"); a+=("$(anon_kb)"); f+=("$(file_kb)")
    [ "$i" = 9 ] || sleep 0.5
  done
  rss=$(printf '%s\n' "${r[@]}" | sort -n | sed -n 5p)
  anon=$(printf '%s\n' "${a[@]}" | sort -n | sed -n 5p)
  file=$(printf '%s\n' "${f[@]}" | sort -n | sed -n 5p)
}
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
pct() { awk -v t="$1" -v hz="$hz" -v s=4 -v n="$2" 'BEGIN {printf "%.2f", 100 * t / hz / s / n}'; }

run() { # nack_buffer
  local nack=$1
  mkfifo "$work/main.fifo"
  rm -f "$work/ipcd.log"
  GODEBUG=gctrace=1 \
  IPCD_LOG_LEVEL=info \
  IPCD_MQTT_BROKERS="tcp://127.0.0.1:$port" \
  IPCD_MQTT_EMBEDDED_BROKER="127.0.0.1:$port" \
  IPCD_MQTT_EMBEDDED_BROKER_WS="127.0.0.1:$((port + 1))" \
  IPCD_DEVICE_STORE="$work/state.json" \
  IPCD_MEDIA_SOURCES_MAIN_TYPE=pipe \
  IPCD_MEDIA_SOURCES_MAIN_PATH="$work/main.fifo" \
  IPCD_MEDIA_MEMORY_MB=16 \
  IPCD_MEDIA_BUFFER_SECONDS="$buffer_seconds" \
  IPCD_STREAM_MAX_CLIENTS=16 \
  IPCD_STREAM_NACK_BUFFER="$nack" \
    "$bindir/ipcd" -config configs/demo.yaml 2>"$work/ipcd.log" &
  pid=$!
  # ffmpeg cannot loop a raw elementary stream by seeking: a shell loop
  # replays it, holding the FIFO open across replays.
  setsid bash -c 'while :; do ffmpeg -v error -re -i "$1" -c copy -f h264 - </dev/null || exit; done >"$2"' _ "$clip" "$work/main.fifo" &
  feeder=$!
  for _ in $(seq 1 300); do
    grep -q "listen ok" "$work/ipcd.log" && break
    sleep 0.02
  done
  grep -q "listen ok" "$work/ipcd.log" || { echo "bench: ipcd never became ready"; cat "$work/ipcd.log"; exit 1; }
  local app=("$bindir/ipcapp" bench -broker "tcp://127.0.0.1:$port" -dev-id 6c1ed3m0demo0001 -p2p-password ad12ab34 -json)

  # Idle in its steady state: sampled every second, anonymous memory
  # grows for the feeder's start, buffer_seconds of ring filling and a few
  # collections after that (about 15 s with buffer_seconds 10), then stays
  # within a few hundred KB. A sample taken earlier counts ring growth as
  # the viewers' memory and reads idle low.
  sleep $((2 * buffer_seconds + 1))
  local rss0 anon0 file0 heap0 t0 cpu0
  local rss anon file
  t0=$(cpu_ticks); sample; cpu0=$(( $(cpu_ticks) - t0 ))
  rss0=$rss; anon0=$anon; file0=$file; heap0=$(heap_mb)
  echo
  echo "== stream.nack_buffer $nack: pipe source, 2 Mbit/s 1280x720 H.264 + PCMU, memory_mb 16, buffer_seconds $buffer_seconds (rings full)"
  printf '%-10s %10s %10s %10s %12s %16s\n' viewers "RSS MB" "anon MB" "file MB" "Go heap MB" "CPU/viewer %"
  printf '%-10s %10s %10s %10s %12s %16s\n' idle "$(mb "$rss0")" "$(mb "$anon0")" "$(mb "$file0")" "${heap0:-?}" "$(pct "$cpu0" 1) (total)"
  local n rss1="" rss10=""
  for n in 1 5 10 16; do
    # Sampled from 7 s after the viewers start: ipcd returns its free
    # pages while nobody watches, and the runtime takes a few seconds of
    # the viewers' allocations to grow its heap back (with one viewer, RSS
    # read 20.9-21.1 MB from 4 to 8 s and 21.3 from 11 s on).
    "${app[@]}" -sessions 0 -viewers "$n" -seconds 12 >"$work/viewers$n.json" 2>"$work/viewers$n.err" &
    local b=$!
    sleep 7
    local c0; c0=$(cpu_ticks)
    sample
    local cpu=$(( $(cpu_ticks) - c0 )) heap
    heap=$(heap_mb)
    wait "$b" || echo "bench: ipcapp with $n viewers failed: $(tail -3 "$work/viewers$n.err")"
    [ "$n" = 1 ] && rss1=$rss
    [ "$n" = 10 ] && rss10=$rss
    printf '%-10s %10s %10s %10s %12s %16s\n' "$n" "$(mb "$rss")" "$(mb "$anon")" "$(mb "$file")" "${heap:-?}" "$(pct $((cpu - cpu0)) "$n")"
    sleep 1
  done
  printf '%-52s %s\n' "RSS per additional viewer (10 viewers vs 1)" "$(awk -v a="$rss1" -v b="$rss10" 'BEGIN {printf "%.2f MB", (b - a) / 9 / 1024}')"
  kill -- -"$feeder" 2>/dev/null || true; wait "$feeder" 2>/dev/null || true; feeder=""
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
  rm -f "$work/main.fifo" "$work/state.json"
}

for nack in $nacks; do run "$nack"; done
