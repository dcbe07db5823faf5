/*
 * ipcd_feed.h - push encoded frames into ipcd's `feed` source.
 *
 * The capture application connects to ipcd's feed socket (SOCK_STREAM, Unix
 * domain; path from ipcd's media.sources.<stream>.path) and writes one message
 * per frame: a 32-byte little-endian header followed by `length` payload bytes.
 * The only thing ipcd writes back is a keyframe request: a header of kind 4
 * with no payload, asking for the next picture of its stream to be an IDR
 * (ipcd_feed_read_requests). A producer that never reads is still served;
 * it just never gets asked. docs/feed.md is the full description; this
 * header and media/feedproto.go must stay in exact agreement (a Go test checks
 * the offsets below and the bytes ipcd_feed_encode_header produces).
 *
 *   offset size field         value
 *        0    4 magic         "IPCF"
 *        4    1 version       1
 *        5    1 stream        1 main, 2 sub, 3 audio
 *        6    1 kind          1 I (keyframe), 2 P, 3 audio
 *        7    1 codec         1 H.264, 2 H.265, 3 PCMU, 4 PCMA
 *        8    8 pts_us        int64, presentation time in microseconds
 *       16    8 timestamp_ms  int64, capture wall clock, unix milliseconds
 *       24    4 length        uint32, payload bytes that follow
 *       28    4 reserved      0
 *
 * Video payloads are one whole access unit in Annex-B (start codes included),
 * 1..1048576 bytes; a keyframe carries SPS/PPS (and VPS for H.265) or they
 * were sent earlier on the same stream. Audio payloads are raw G.711 at
 * 8 kHz, 1..800 bytes. A malformed header makes ipcd close the connection.
 *
 * Send the first message within 5 s of connecting, or ipcd closes the
 * connection. Each connection is a new timeline: after a reconnect pts_us may
 * start anywhere (ipcd rebases it), but video resumes only at a keyframe, so
 * send one first. Within a connection pts_us must not go backwards, nor
 * advance more than 5 s beyond the time elapsed since the previous frame.
 * See docs/feed.md.
 *
 * Everything here is static inline so the header is all a producer needs.
 * Header-only, C99 or later (C11 for the layout assertions), Linux.
 */
#ifndef IPCD_FEED_H
#define IPCD_FEED_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IPCD_FEED_MAGIC "IPCF"
#define IPCD_FEED_VERSION 1
#define IPCD_FEED_HEADER_SIZE 32
#define IPCD_FEED_MAX_VIDEO_PAYLOAD (1u << 20)
#define IPCD_FEED_MAX_AUDIO_PAYLOAD 800u

enum ipcd_feed_stream {
	IPCD_FEED_STREAM_MAIN = 1,
	IPCD_FEED_STREAM_SUB = 2,
	IPCD_FEED_STREAM_AUDIO = 3
};

enum ipcd_feed_kind {
	IPCD_FEED_KIND_I = 1,
	IPCD_FEED_KIND_P = 2,
	IPCD_FEED_KIND_AUDIO = 3,
	/* ipcd to producer only: make the next picture of `stream` an IDR */
	IPCD_FEED_KIND_KEYFRAME_REQUEST = 4
};

enum ipcd_feed_codec {
	IPCD_FEED_CODEC_H264 = 1,
	IPCD_FEED_CODEC_H265 = 2,
	IPCD_FEED_CODEC_PCMU = 3,
	IPCD_FEED_CODEC_PCMA = 4
};

/*
 * The header as a struct. Every field sits at its natural alignment, so there
 * is no padding. On a little-endian CPU its memory image is the wire format;
 * ipcd_feed_encode_header works on any byte order (MIPS boards may be big
 * endian), so prefer it to writing the struct directly.
 */
struct ipcd_feed_header {
	char magic[4];
	uint8_t version;
	uint8_t stream;
	uint8_t kind;
	uint8_t codec;
	int64_t pts_us;
	int64_t timestamp_ms;
	uint32_t length;
	uint32_t reserved;
};

#if defined(__cplusplus) && __cplusplus >= 201103L
#define IPCD_FEED_ASSERT(c, m) static_assert(c, m)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define IPCD_FEED_ASSERT(c, m) _Static_assert(c, m)
#endif
#ifdef IPCD_FEED_ASSERT
IPCD_FEED_ASSERT(sizeof(struct ipcd_feed_header) == IPCD_FEED_HEADER_SIZE, "header is 32 bytes");
IPCD_FEED_ASSERT(offsetof(struct ipcd_feed_header, version) == 4, "version at 4");
IPCD_FEED_ASSERT(offsetof(struct ipcd_feed_header, stream) == 5, "stream at 5");
IPCD_FEED_ASSERT(offsetof(struct ipcd_feed_header, kind) == 6, "kind at 6");
IPCD_FEED_ASSERT(offsetof(struct ipcd_feed_header, codec) == 7, "codec at 7");
IPCD_FEED_ASSERT(offsetof(struct ipcd_feed_header, pts_us) == 8, "pts_us at 8");
IPCD_FEED_ASSERT(offsetof(struct ipcd_feed_header, timestamp_ms) == 16, "timestamp_ms at 16");
IPCD_FEED_ASSERT(offsetof(struct ipcd_feed_header, length) == 24, "length at 24");
IPCD_FEED_ASSERT(offsetof(struct ipcd_feed_header, reserved) == 28, "reserved at 28");
#undef IPCD_FEED_ASSERT
#endif

static inline void ipcd_feed_put_le(uint8_t *p, uint64_t v, int n)
{
	int i;
	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Writes the wire form of a header into out. magic, version and reserved are
 * filled in here; the caller sets stream, kind, codec, pts_us, timestamp_ms
 * and length.
 */
static inline void ipcd_feed_encode_header(uint8_t out[IPCD_FEED_HEADER_SIZE],
					   const struct ipcd_feed_header *h)
{
	memcpy(out, IPCD_FEED_MAGIC, 4);
	out[4] = IPCD_FEED_VERSION;
	out[5] = h->stream;
	out[6] = h->kind;
	out[7] = h->codec;
	ipcd_feed_put_le(out + 8, (uint64_t)h->pts_us, 8);
	ipcd_feed_put_le(out + 16, (uint64_t)h->timestamp_ms, 8);
	ipcd_feed_put_le(out + 24, h->length, 4);
	ipcd_feed_put_le(out + 28, 0, 4);
}

/*
 * Connects to ipcd's feed socket. Returns the descriptor, or -1 with errno
 * set (ENOENT or ECONNREFUSED while ipcd is not running: retry later). Send
 * the first message at once: ipcd closes connections that stay silent for
 * 5 s after connecting.
 */
static inline int ipcd_feed_connect(const char *path)
{
	struct sockaddr_un addr;
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

#ifdef MSG_NOSIGNAL
#define IPCD_FEED_SEND_FLAGS MSG_NOSIGNAL
#else
#define IPCD_FEED_SEND_FLAGS 0 /* ignore SIGPIPE in the application instead */
#endif

/*
 * Sends one frame: h->length must be the payload size. Blocks until the whole
 * message is written (the socket buffer absorbs bursts; a blocked write means
 * ipcd is not reading). Returns 0, or -1 with errno set; after an error the
 * message may be partly written, so close the descriptor and reconnect.
 * EPIPE/ECONNRESET mean ipcd closed the connection: its log says why.
 */
static inline int ipcd_feed_send(int fd, const struct ipcd_feed_header *h, const void *payload)
{
	uint8_t hdr[IPCD_FEED_HEADER_SIZE];
	struct iovec iov[2];
	struct msghdr msg;
	size_t left = IPCD_FEED_HEADER_SIZE + (size_t)h->length;

	ipcd_feed_encode_header(hdr, h);
	iov[0].iov_base = hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)payload;
	iov[1].iov_len = h->length;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = 2;
	while (left > 0) {
		ssize_t n = sendmsg(fd, &msg, IPCD_FEED_SEND_FLAGS);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		left -= (size_t)n;
		/* Skip what was written, across both buffers. */
		while (n > 0 && msg.msg_iovlen > 0) {
			if ((size_t)n >= msg.msg_iov->iov_len) {
				n -= (ssize_t)msg.msg_iov->iov_len;
				msg.msg_iov++;
				msg.msg_iovlen--;
			} else {
				msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + n;
				msg.msg_iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

/* Bytes of a message from ipcd read so far (ipcd_feed_read_requests). */
struct ipcd_feed_inbox {
	uint8_t buf[IPCD_FEED_HEADER_SIZE];
	size_t have;
};

/*
 * Reads, without blocking, the keyframe requests ipcd has sent on fd.
 * Returns a bit mask with bit (1 << stream) set for each video stream a
 * keyframe was asked of (0 when none), or -1 when ipcd closed the connection
 * (errno ECONNRESET) or the read failed. Answer a request by encoding the next
 * picture of that stream as an IDR with its parameter sets. ipcd sends at
 * most one request per stream every 250 ms; messages it does not know are
 * skipped, so a later ipcd may send more kinds.
 */
static inline int ipcd_feed_read_requests(int fd, struct ipcd_feed_inbox *in)
{
	int mask = 0;

	for (;;) {
		ssize_t n = recv(fd, in->buf + in->have, sizeof(in->buf) - in->have, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return mask;
			return -1;
		}
		if (n == 0) {
			errno = ECONNRESET;
			return -1;
		}
		in->have += (size_t)n;
		if (in->have < sizeof(in->buf))
			continue;
		in->have = 0;
		if (memcmp(in->buf, IPCD_FEED_MAGIC, 4) == 0 && in->buf[4] == IPCD_FEED_VERSION &&
		    in->buf[6] == IPCD_FEED_KIND_KEYFRAME_REQUEST &&
		    (in->buf[5] == IPCD_FEED_STREAM_MAIN || in->buf[5] == IPCD_FEED_STREAM_SUB))
			mask |= 1 << in->buf[5];
	}
}

#ifdef __cplusplus
}
#endif

#endif /* IPCD_FEED_H */
