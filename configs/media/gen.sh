#!/usr/bin/env bash
# Regenerates the demo's sample media. Run from anywhere; writes next to this script.
# Every clip is 10 s of the same testsrc2 pattern at 25 fps with one keyframe per
# second (keyint = min-keyint = 25, no scene-cut keyframes, no B-frames) and the
# parameter sets repeated before every keyframe; single-threaded encodes, so the
# output is byte-identical for a given ffmpeg/x264/x265 build.
# main.h264: H.264 Annex-B, constrained baseline, 640x360, ~1 Mbit/s.
# main.h265: H.265 Annex-B, Main profile, 640x360, ~1 Mbit/s, closed GOPs, no
#            encoder-info SEI (it would embed the x265 version string).
# sub.h264:  H.264 Annex-B, constrained baseline, 320x180, ~300 kbit/s (the SUB stream).
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
	-f lavfi -i "testsrc2=size=640x360:rate=25:duration=10" \
	-c:v libx265 -pix_fmt yuv420p -preset medium \
	-b:v 1000k -maxrate 1000k -bufsize 1000k \
	-x265-params "keyint=25:min-keyint=25:scenecut=0:bframes=0:open-gop=0:repeat-headers=1:info=0:pools=1:frame-threads=1:log-level=error" \
	-f hevc main.h265

ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i "testsrc2=size=320x180:rate=25:duration=10" \
	-c:v libx264 -profile:v baseline -level 3.0 -pix_fmt yuv420p -threads 1 \
	-b:v 300k -maxrate 300k -bufsize 300k \
	-x264-params "keyint=25:min-keyint=25:scenecut=0:bframes=0:repeat-headers=1" \
	-bsf:v h264_mp4toannexb -f h264 sub.h264

ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i "sine=frequency=440:sample_rate=8000:duration=10" \
	-ac 1 -ar 8000 -c:a pcm_mulaw -f mulaw audio.pcmu
