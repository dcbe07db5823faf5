/*
 * ipcd_board.h - talk to ipcd's board socket from the board's firmware.
 *
 * ipcd listens on a Unix stream socket (board.socket in its configuration,
 * /run/ipcd/board.sock in the board profiles). The protocol is JSON lines,
 * docs/board.md is the full description:
 *
 *   ipcd -> board, one line per event, in order:
 *     {"type":"event","seq":7,"t":1733400000123,"event":"LiveVideoStart",
 *      "source":"WEBRTC","session":"ab12","value":0}
 *     optional fields: "stream" (main|sub|audio), "detail" (why).
 *   board -> ipcd, one line per command (at most IPCD_BOARD_MAX_LINE bytes):
 *     {"cmd":"privacy","value":1,"req":1}     privacy mode on (0 = off)
 *     {"cmd":"keyframe","stream":"main","req":2}
 *     {"cmd":"status","req":3}
 *   ipcd -> board, one line per command, between the events:
 *     {"type":"reply","req":1,"res":0}        res 0 done; see IPCD_BOARD_RES_*
 *
 * A board that stops reading is disconnected once IPCD_BOARD queue
 * (board.queue_size events) is full or a write blocks for 2 s; reconnect
 * and compare "seq" to see how many events were missed.
 *
 * Header-only, C99 or later, Linux. The parsing helpers read the flat
 * objects ipcd writes; they are not a general JSON parser.
 */
#ifndef IPCD_BOARD_H
#define IPCD_BOARD_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IPCD_BOARD_DEFAULT_PATH "/run/ipcd/board.sock"
#define IPCD_BOARD_MAX_LINE 1024

/* Event names (the "event" field). */
#define IPCD_EV_SESSION_START "SessionStart"
#define IPCD_EV_SESSION_STOP "SessionStop" /* value: close_reason, detail: its text */
#define IPCD_EV_LIVE_VIDEO_START "LiveVideoStart"
#define IPCD_EV_LIVE_VIDEO_STOP "LiveVideoStop"
#define IPCD_EV_LIVE_AUDIO_START "LiveAudioStart"
#define IPCD_EV_LIVE_AUDIO_STOP "LiveAudioStop"
#define IPCD_EV_SPEAKER_START "SpeakerStart"
#define IPCD_EV_SPEAKER_STOP "SpeakerStop"
#define IPCD_EV_CLARITY_SET "LiveVideoClaritySet"     /* value: 0 main, 1 sub */
#define IPCD_EV_CLARITY_QUERY "LiveVideoClarityQuery" /* value: 0 main, 1 sub */
#define IPCD_EV_STREAM_SWITCH "StreamSwitch"          /* stream: now sent */
#define IPCD_EV_LIVE_LOAD_ADJUST "LiveLoadAdjust"     /* value: live sessions */
#define IPCD_EV_PRIVACY_ON "PrivacyOn"                /* detail: board|app|store */
#define IPCD_EV_PRIVACY_OFF "PrivacyOff"
#define IPCD_EV_SOURCE_FAILURE "SourceFailure" /* detail: the error */

/* Reply codes (the "res" field). */
#define IPCD_BOARD_RES_OK 0
#define IPCD_BOARD_RES_BAD_REQUEST 1
#define IPCD_BOARD_RES_UNKNOWN 2
#define IPCD_BOARD_RES_UNAVAILABLE 3

/* ipcd_board_connect returns a connected socket or -1 with errno set. */
static inline int ipcd_board_connect(const char *path)
{
	struct sockaddr_un addr;
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, path);
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ipcd_board_send writes one command line (the newline is added). */
static inline int ipcd_board_send(int fd, const char *json)
{
	char line[IPCD_BOARD_MAX_LINE];
	int n = snprintf(line, sizeof(line), "%s\n", json);
	ssize_t off = 0;

	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	while (off < n) {
		ssize_t w = write(fd, line + off, (size_t)(n - off));
		if (w < 0)
			return -1;
		off += w;
	}
	return 0;
}

static inline int ipcd_board_privacy(int fd, int on, long req)
{
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "{\"cmd\":\"privacy\",\"value\":%d,\"req\":%ld}", on ? 1 : 0, req);
	return ipcd_board_send(fd, cmd);
}

static inline int ipcd_board_keyframe(int fd, const char *stream, long req)
{
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "{\"cmd\":\"keyframe\",\"stream\":\"%.8s\",\"req\":%ld}", stream, req);
	return ipcd_board_send(fd, cmd);
}

/* ipcd_board_reader buffers the socket into lines. */
struct ipcd_board_reader {
	int fd;
	size_t len;
	char buf[16 * 1024];
};

/*
 * ipcd_board_read_line returns the next line without its newline (valid
 * until the next call), or NULL at end of stream or on error.
 */
static inline char *ipcd_board_read_line(struct ipcd_board_reader *r)
{
	static char line[16 * 1024];
	for (;;) {
		char *nl = memchr(r->buf, '\n', r->len);
		if (nl) {
			size_t n = (size_t)(nl - r->buf);
			memcpy(line, r->buf, n);
			line[n] = '\0';
			memmove(r->buf, nl + 1, r->len - n - 1);
			r->len -= n + 1;
			return line;
		}
		if (r->len == sizeof(r->buf))
			r->len = 0; /* no line is this long; resynchronise */
		ssize_t got = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
		if (got <= 0)
			return NULL;
		r->len += (size_t)got;
	}
}

/*
 * ipcd_board_str copies the string field `key` of a line into out
 * (truncated to n-1 bytes); returns 0 when found. Escapes are copied as is.
 */
static inline int ipcd_board_str(const char *line, const char *key, char *out, size_t n)
{
	char pat[64];
	const char *p, *end;
	size_t len;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	p = strstr(line, pat);
	if (!p || n == 0)
		return -1;
	p += strlen(pat);
	for (end = p; *end && !(*end == '"' && end[-1] != '\\'); end++)
		;
	len = (size_t)(end - p);
	if (len >= n)
		len = n - 1;
	memcpy(out, p, len);
	out[len] = '\0';
	return 0;
}

/* ipcd_board_int reads the number field `key`; returns 0 when found. */
static inline int ipcd_board_int(const char *line, const char *key, long *out)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(line, pat);
	if (!p)
		return -1;
	*out = strtol(p + strlen(pat), NULL, 10);
	return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* IPCD_BOARD_H */
