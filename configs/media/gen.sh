#!/usr/bin/env bash
# Regenerates the demo's sample media. Run from anywhere; writes next to this script.
# main.h264: H.264 Annex-B, constrained baseline, 640x360, 25 fps, one IDR per second
#            (keyint = min-keyint = 25, no scene-cut keyframes), 10 s, ~1 Mbit/s.
# audio.pcmu: raw G.711 mu-law, 8 kHz mono, 10 s, 440 Hz sine.
set -euo pipefail
cd "$(dirname "$0")"

ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i "testsrc2=size=640x360:rate=25:duration=10" \
	-c:v libx264 -profile:v baseline -level 3.0 -pix_fmt yuv420p -threads 1 \
	-b:v 1000k -maxrate 1000k -bufsize 1000k \
	-x264-params "keyint=25:min-keyint=25:scenecut=0:bframes=0:repeat-headers=1" \
	-bsf:v h264_mp4toannexb -f h264 main.h264

ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i "sine=frequency=440:sample_rate=8000:duration=10" \
	-ac 1 -ar 8000 -c:a pcm_mulaw -f mulaw audio.pcmu
