/*
 * feed_example - pushes an Annex-B video file (and optionally raw G.711 audio)
 * into ipcd's feed socket, one access unit per message, the way a capture
 * application pushes what its encoder produces.
 *
 *   feed_example [-fast] [-loop] [-fps N] [-stream main|sub] [-audio FILE]
 *                SOCKET VIDEO
 *
 * VIDEO is H.264 (.h264, .264) or H.265 (.h265, .265, .hevc) Annex-B. It is
 * split into access units with the rules of H.264 7.4.1.2.3 / H.265 7.4.2.4.4,
 * every NAL unit gets a 4-byte start code, and access unit delimiters and
 * filler data are dropped: the same access units ipcd's file source makes.
 * Sending starts at the first keyframe that carries its parameter sets.
 * FILE is raw G.711 at 8 kHz (.pcma/.alaw is A-law, anything else mu-law),
 * sent as 40 ms (320-byte) frames interleaved with the video by PTS.
 *
 * Frames go out in real time (video at -fps, default 25) unless -fast is
 * given, which sends them as fast as the socket takes them. -loop replays the
 * files forever with PTS still increasing. A real producer would reconnect
 * with a backoff when ipcd restarts; this example exits instead.
 *
 * When ipcd asks for a keyframe (a viewer lost one), the next video frame
 * sent is the file's next keyframe: the pictures before it are skipped, the
 * way an encoder told to make an IDR would make its next picture one.
 *
 * Exit status: 0 when everything was sent, 1 on an error, 2 on bad usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ipcd_feed.h"

#define AUDIO_FRAME_BYTES 320 /* 40 ms of 8 kHz G.711 */
#define AUDIO_FRAME_US 40000

struct buf {
	uint8_t *p;
	size_t len, cap;
};

struct au {
	size_t off, len;
	int key;
};

struct video {
	int codec;
	struct buf data; /* the normalised access units, back to back */
	struct au *aus;
	size_t n, cap;
	/* the access unit being assembled */
	size_t cur_off;
	int cur_vcl, cur_key, cur_ps;
	int started; /* a keyframe with parameter sets has been kept */
};

static int buf_append(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1 << 16;
		uint8_t *q;
		while (cap < b->len + n)
			cap *= 2;
		q = realloc(b->p, cap);
		if (!q)
			return -1;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int read_file(const char *path, struct buf *out)
{
	uint8_t chunk[1 << 16];
	size_t n;
	FILE *f = fopen(path, "rb");

	if (!f) {
		fprintf(stderr, "feed_example: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (buf_append(out, chunk, n) < 0) {
			fprintf(stderr, "feed_example: %s: out of memory\n", path);
			fclose(f);
			return -1;
		}
	}
	if (ferror(f)) {
		fprintf(stderr, "feed_example: %s: read error\n", path);
		fclose(f);
		return -1;
	}
	fclose(f);
	return 0;
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* Index of the next 00 00 01 at or after from, or n. */
static size_t find_start_code(const uint8_t *b, size_t n, size_t from)
{
	size_t i;
	for (i = from; i + 2 < n; i++) {
		if (b[i + 2] > 1)
			i += 2; /* no start code can end within the next two bytes */
		else if (b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1)
			return i;
	}
	return n;
}

static int nal_type(int codec, const uint8_t *nal)
{
	return codec == IPCD_FEED_CODEC_H265 ? (nal[0] >> 1) & 0x3f : nal[0] & 0x1f;
}

static int is_vcl(int codec, int t)
{
	return codec == IPCD_FEED_CODEC_H265 ? t < 32 : t >= 1 && t <= 5;
}

static int is_key(int codec, int t)
{
	return codec == IPCD_FEED_CODEC_H265 ? t >= 16 && t <= 23 : t == 5;
}

/* Access unit delimiters and filler data carry nothing a decoder needs. */
static int is_dropped(int codec, int t)
{
	return codec == IPCD_FEED_CODEC_H265 ? t == 35 || t == 38 : t == 9 || t == 12;
}

/* Bit of the parameter set a NAL unit is, for cur_ps. */
static int param_set_bit(int codec, int t)
{
	if (codec == IPCD_FEED_CODEC_H265)
		return t == 32 ? 1 : t == 33 ? 2 : t == 34 ? 4 : 0;
	return t == 7 ? 2 : t == 8 ? 4 : 0;
}

static int all_param_sets(int codec)
{
	return codec == IPCD_FEED_CODEC_H265 ? 7 : 6;
}

/*
 * Whether a NAL unit that follows a slice of the current access unit begins
 * the next one: a parameter set, SEI or delimiter, or the first slice of a
 * picture (first_mb_in_slice == 0, coded as a single 1 bit, for H.264;
 * first_slice_segment_in_pic_flag for H.265).
 */
static int starts_au(int codec, int t, const uint8_t *nal, size_t len)
{
	if (codec == IPCD_FEED_CODEC_H265) {
		if ((t >= 32 && t <= 35) || t == 39 || (t >= 41 && t <= 44) || (t >= 48 && t <= 55))
			return 1;
		return t < 32 && len > 2 && (nal[2] & 0x80);
	}
	switch (t) {
	case 6: case 7: case 8: case 9: case 14: case 15: case 16: case 17: case 18:
		return 1;
	case 1: case 2: case 5:
		return len > 1 && (nal[1] & 0x80);
	}
	return 0;
}

static void reset_au(struct video *v)
{
	v->cur_off = v->data.len;
	v->cur_vcl = v->cur_key = v->cur_ps = 0;
}

static int emit_au(struct video *v)
{
	size_t len = v->data.len - v->cur_off;

	if (!v->cur_vcl || (!v->started && !(v->cur_key && v->cur_ps == all_param_sets(v->codec)))) {
		/* Not a picture, or one no decoder can start at: forget it. */
		v->data.len = v->cur_off;
		reset_au(v);
		return 0;
	}
	if (len > IPCD_FEED_MAX_VIDEO_PAYLOAD) {
		fprintf(stderr, "feed_example: skipping a %zu-byte access unit, the feed takes at most %u\n",
			len, IPCD_FEED_MAX_VIDEO_PAYLOAD);
		v->data.len = v->cur_off;
		reset_au(v);
		return 0;
	}
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 256;
		struct au *a = realloc(v->aus, cap * sizeof(*a));
		if (!a)
			return -1;
		v->aus = a;
		v->cap = cap;
	}
	v->aus[v->n].off = v->cur_off;
	v->aus[v->n].len = len;
	v->aus[v->n].key = v->cur_key;
	v->n++;
	v->started = 1;
	reset_au(v);
	return 0;
}

static int push_nal(struct video *v, const uint8_t *nal, size_t len)
{
	static const uint8_t start_code[4] = {0, 0, 0, 1};
	int t;

	if (v->codec == IPCD_FEED_CODEC_H265 && len < 2)
		return 0;
	t = nal_type(v->codec, nal);
	if (v->cur_vcl && starts_au(v->codec, t, nal, len) && emit_au(v) < 0)
		return -1;
	if (is_dropped(v->codec, t))
		return 0;
	if (is_vcl(v->codec, t)) {
		v->cur_vcl = 1;
		v->cur_key |= is_key(v->codec, t);
	} else if (!v->cur_vcl) {
		v->cur_ps |= param_set_bit(v->codec, t);
	}
	if (buf_append(&v->data, start_code, 4) < 0 || buf_append(&v->data, nal, len) < 0)
		return -1;
	return 0;
}

/* Splits an Annex-B byte stream into normalised access units. */
static int split_video(struct video *v, const uint8_t *b, size_t n)
{
	size_t pos = find_start_code(b, n, 0);

	reset_au(v);
	while (pos < n) {
		size_t begin = pos + 3;
		size_t next = find_start_code(b, n, begin);
		size_t end = next;

		/* trailing_zero_8bits, and the first byte of a 4-byte start code */
		while (end > begin && b[end - 1] == 0)
			end--;
		if (end > begin && push_nal(v, b + begin, end - begin) < 0)
			return -1;
		pos = next;
	}
	return emit_au(v);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps until start + offset_us on the monotonic clock. */
static void sleep_until(const struct timespec *start, int64_t offset_us)
{
	struct timespec due = *start;
	int64_t ns = due.tv_nsec + (offset_us % 1000000) * 1000;

	due.tv_sec += (time_t)(offset_us / 1000000 + ns / 1000000000);
	due.tv_nsec = (long)(ns % 1000000000);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR)
		;
}

static void usage(void)
{
	fprintf(stderr, "usage: feed_example [-fast] [-loop] [-fps N] [-stream main|sub] [-audio FILE.pcmu|FILE.pcma] SOCKET VIDEO.h264|VIDEO.h265\n");
}

int main(int argc, char **argv)
{
	int fast = 0, loop = 0, fps = 25, stream = IPCD_FEED_STREAM_MAIN, audio_codec = IPCD_FEED_CODEC_PCMU;
	const char *audio_path = NULL, *sock_path, *video_path;
	struct video v;
	struct buf audio;
	size_t audio_frames = 0;
	uint64_t vi = 0, ai = 0, video_bytes = 0, vskip = 0, answered = 0;
	struct ipcd_feed_inbox inbox;
	struct timespec start;
	int i, fd;

	memset(&v, 0, sizeof(v));
	memset(&audio, 0, sizeof(audio));
	memset(&inbox, 0, sizeof(inbox));
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-fast") == 0) {
			fast = 1;
		} else if (strcmp(argv[i], "-loop") == 0) {
			loop = 1;
		} else if (strcmp(argv[i], "-fps") == 0 && i + 1 < argc) {
			fps = atoi(argv[++i]);
			if (fps < 1 || fps > 240) {
				fprintf(stderr, "feed_example: -fps must be in 1..240\n");
				return 2;
			}
		} else if (strcmp(argv[i], "-stream") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "main") == 0) {
				stream = IPCD_FEED_STREAM_MAIN;
			} else if (strcmp(argv[i], "sub") == 0) {
				stream = IPCD_FEED_STREAM_SUB;
			} else {
				fprintf(stderr, "feed_example: -stream is main or sub\n");
				return 2;
			}
		} else if (strcmp(argv[i], "-audio") == 0 && i + 1 < argc) {
			audio_path = argv[++i];
		} else {
			usage();
			return 2;
		}
	}
	if (argc - i != 2) {
		usage();
		return 2;
	}
	sock_path = argv[i];
	video_path = argv[i + 1];

	v.codec = IPCD_FEED_CODEC_H264;
	if (has_suffix(video_path, ".h265") || has_suffix(video_path, ".265") || has_suffix(video_path, ".hevc"))
		v.codec = IPCD_FEED_CODEC_H265;
	{
		struct buf raw;
		int err;

		memset(&raw, 0, sizeof(raw));
		err = read_file(video_path, &raw) < 0 || split_video(&v, raw.p, raw.len) < 0;
		free(raw.p);
		if (err)
			return 1;
	}
	if (v.n == 0) {
		fprintf(stderr, "feed_example: %s: no keyframe with parameter sets\n", video_path);
		return 1;
	}
	if (audio_path) {
		if (read_file(audio_path, &audio) < 0)
			return 1;
		if (has_suffix(audio_path, ".pcma") || has_suffix(audio_path, ".alaw"))
			audio_codec = IPCD_FEED_CODEC_PCMA;
		audio_frames = audio.len / AUDIO_FRAME_BYTES;
	}

	fd = ipcd_feed_connect(sock_path);
	if (fd < 0) {
		fprintf(stderr, "feed_example: connect %s: %s\n", sock_path, strerror(errno));
		return 1;
	}

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		int video_done = !loop && vi + vskip >= v.n;
		int audio_done = audio_frames == 0 || (!loop && ai >= audio_frames);
		int64_t vpts = (int64_t)(vi * 1000000 / (uint64_t)fps);
		int64_t apts = (int64_t)ai * AUDIO_FRAME_US;
		struct ipcd_feed_header h;
		const uint8_t *payload;

		if (video_done && audio_done)
			break;
		memset(&h, 0, sizeof(h));
		if (!video_done && (audio_done || vpts <= apts)) {
			const struct au *a;
			int asked;
			if (!fast)
				sleep_until(&start, vpts);
			asked = ipcd_feed_read_requests(fd, &inbox);
			if (asked < 0) {
				fprintf(stderr, "feed_example: ipcd closed the connection: %s\n", strerror(errno));
				close(fd);
				return 1;
			}
			if (asked & (1 << stream)) {
				/* The next keyframe at or after this picture, if there is one. */
				uint64_t k;
				for (k = 0; k < v.n && (loop || vi + vskip + k < v.n); k++)
					if (v.aus[(vi + vskip + k) % v.n].key)
						break;
				if (k < v.n && (loop || vi + vskip + k < v.n))
					vskip += k;
				answered++;
			}
			a = &v.aus[(vi + vskip) % v.n];
			h.stream = (uint8_t)stream;
			h.kind = a->key ? IPCD_FEED_KIND_I : IPCD_FEED_KIND_P;
			h.codec = (uint8_t)v.codec;
			h.pts_us = vpts;
			h.length = (uint32_t)a->len;
			payload = v.data.p + a->off;
			vi++;
			video_bytes += a->len;
		} else {
			h.stream = IPCD_FEED_STREAM_AUDIO;
			h.kind = IPCD_FEED_KIND_AUDIO;
			h.codec = (uint8_t)audio_codec;
			h.pts_us = apts;
			h.length = AUDIO_FRAME_BYTES;
			payload = audio.p + (ai % audio_frames) * AUDIO_FRAME_BYTES;
			ai++;
		}
		if (!fast)
			sleep_until(&start, h.pts_us);
		h.timestamp_ms = now_ms();
		if (ipcd_feed_send(fd, &h, payload) < 0) {
			fprintf(stderr, "feed_example: send: %s (ipcd's log says why it closed the connection)\n",
				strerror(errno));
			close(fd);
			return 1;
		}
	}
	close(fd);
	fprintf(stderr, "feed_example: sent %llu video frames (%llu bytes) and %llu audio frames, answered %llu keyframe requests\n",
		(unsigned long long)vi, (unsigned long long)video_bytes, (unsigned long long)ai,
		(unsigned long long)answered);
	free(v.data.p);
	free(v.aus);
	free(audio.p);
	return 0;
}
