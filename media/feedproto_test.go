package media_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ipcd/ipcd/media"
)

const feedHeaderDir = "../board/feed"

// feedHeaderErrors are the errors DecodeFeedHeader may return.
var feedHeaderErrors = []error{
	media.ErrFeedMagic, media.ErrFeedVersion, media.ErrFeedField, media.ErrFeedLength, media.ErrFeedTruncated,
}

func validFeedHeader() media.FeedHeader {
	return media.FeedHeader{
		Stream: media.StreamMain, Kind: media.KindI, Codec: media.CodecH264,
		PTS: 40000, Timestamp: 1732170000123, Length: 1000,
	}
}

func encodeFeedHeader(t testing.TB, h media.FeedHeader) []byte {
	t.Helper()
	b, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatalf("AppendBinary(%+v): %v", h, err)
	}
	return b
}

// TestFeedHeaderWireBytes pins the layout documented in docs/feed.md.
func TestFeedHeaderWireBytes(t *testing.T) {
	h := media.FeedHeader{
		Stream: media.StreamSub, Kind: media.KindI, Codec: media.CodecH265,
		PTS: -2, Timestamp: 0x0102030405060708, Length: 0x00100000,
	}
	want := []byte{
		'I', 'P', 'C', 'F', 1, 2, 1, 2,
		0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
		0x00, 0x00, 0x10, 0x00, 0, 0, 0, 0,
	}
	got := encodeFeedHeader(t, h)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendBinary = % x\nwant           % x", got, want)
	}
	back, err := media.DecodeFeedHeader(got)
	if err != nil || back != h {
		t.Fatalf("DecodeFeedHeader = %+v, %v; want %+v", back, err, h)
	}
	if len(got) != media.FeedHeaderSize {
		t.Errorf("header is %d bytes, FeedHeaderSize is %d", len(got), media.FeedHeaderSize)
	}
}

func TestFeedHeaderRoundTrip(t *testing.T) {
	for _, h := range []media.FeedHeader{
		validFeedHeader(),
		{Stream: media.StreamMain, Kind: media.KindP, Codec: media.CodecH264, Length: 1},
		{Stream: media.StreamSub, Kind: media.KindI, Codec: media.CodecH265, PTS: 1 << 62, Length: media.MaxVideoPayload},
		{Stream: media.StreamAudio, Kind: media.KindAudio, Codec: media.CodecPCMU, PTS: -1, Timestamp: -1, Length: media.MaxAudioPayload},
		{Stream: media.StreamAudio, Kind: media.KindAudio, Codec: media.CodecPCMA, Length: 320},
	} {
		b := encodeFeedHeader(t, h)
		got, err := media.DecodeFeedHeader(append(b, 0xaa)) // bytes after the header are not its business
		if err != nil || got != h {
			t.Errorf("round trip of %+v = %+v, %v", h, got, err)
		}
	}
}

func TestDecodeFeedHeaderErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(b []byte)
		want   error
	}{
		{"magic", func(b []byte) { b[3] = 'X' }, media.ErrFeedMagic},
		{"magic beats everything", func(b []byte) { b[0], b[4], b[5] = 0, 9, 9 }, media.ErrFeedMagic},
		{"version 0", func(b []byte) { b[4] = 0 }, media.ErrFeedVersion},
		{"version 2", func(b []byte) { b[4] = 2 }, media.ErrFeedVersion},
		{"stream 0", func(b []byte) { b[5] = 0 }, media.ErrFeedField},
		{"stream 4", func(b []byte) { b[5] = 4 }, media.ErrFeedField},
		{"kind 0", func(b []byte) { b[6] = 0 }, media.ErrFeedField},
		{"kind 4", func(b []byte) { b[6] = 4 }, media.ErrFeedField},
		{"codec 0", func(b []byte) { b[7] = 0 }, media.ErrFeedField},
		{"codec 5", func(b []byte) { b[7] = 5 }, media.ErrFeedField},
		{"reserved low byte", func(b []byte) { b[28] = 1 }, media.ErrFeedField},
		{"reserved high byte", func(b []byte) { b[31] = 0x80 }, media.ErrFeedField},
		{"audio codec on main", func(b []byte) { b[7] = byte(media.CodecPCMU) }, media.ErrFeedField},
		{"audio kind on main", func(b []byte) { b[6] = byte(media.KindAudio) }, media.ErrFeedField},
		{"video codec on audio", func(b []byte) { b[5], b[6] = byte(media.StreamAudio), byte(media.KindAudio) }, media.ErrFeedField},
		{"keyframe on audio", func(b []byte) { b[5], b[7] = byte(media.StreamAudio), byte(media.CodecPCMU) }, media.ErrFeedField},
		{"length 0", func(b []byte) { binary.LittleEndian.PutUint32(b[24:], 0) }, media.ErrFeedLength},
		{"video over 1 MiB", func(b []byte) { binary.LittleEndian.PutUint32(b[24:], media.MaxVideoPayload+1) }, media.ErrFeedLength},
		{"length absurd", func(b []byte) { binary.LittleEndian.PutUint32(b[24:], 0xffffffff) }, media.ErrFeedLength},
		{"audio over 800", func(b []byte) {
			b[5], b[6], b[7] = byte(media.StreamAudio), byte(media.KindAudio), byte(media.CodecPCMA)
			binary.LittleEndian.PutUint32(b[24:], media.MaxAudioPayload+1)
		}, media.ErrFeedLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeFeedHeader(t, validFeedHeader())
			tt.mutate(b)
			h, err := media.DecodeFeedHeader(b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeFeedHeader(% x) = %+v, %v; want %v", b, h, err, tt.want)
			}
			for _, other := range feedHeaderErrors {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
		})
	}
	t.Run("short", func(t *testing.T) {
		b := encodeFeedHeader(t, validFeedHeader())
		if _, err := media.DecodeFeedHeader(b[:media.FeedHeaderSize-1]); !errors.Is(err, media.ErrFeedTruncated) {
			t.Fatalf("31 bytes: %v, want ErrFeedTruncated", err)
		}
	})
}

func TestFeedHeaderAppendBinaryRefusesInvalid(t *testing.T) {
	for _, h := range []media.FeedHeader{
		{},
		{Stream: media.StreamMain, Kind: media.KindI, Codec: media.CodecPCMU, Length: 1},
		{Stream: media.StreamAudio, Kind: media.KindAudio, Codec: media.CodecPCMU, Length: 801},
		{Stream: media.StreamMain, Kind: media.KindP, Codec: media.CodecH264},
	} {
		prefix := []byte("keep")
		b, err := h.AppendBinary(prefix)
		if err == nil || string(b) != "keep" {
			t.Errorf("AppendBinary(%+v) = %q, %v; want an error and the input unchanged", h, b, err)
		}
	}
}

// gccPath returns the C compiler, skipping the test when there is none,
// except in CI where the C side must be checked.
func gccPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gcc is required in CI to check the feed's C side: %v", err)
		}
		t.Skipf("gcc not found, C side of the feed not checked: %v", err)
	}
	return p
}

// compileC builds a C program against ipcd_feed.h with warnings as errors,
// so the header stays clean for vendors who compile that way.
func compileC(t testing.TB, src, name string) string {
	t.Helper()
	gcc := gccPath(t)
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(gcc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic",
		"-I", feedHeaderDir, "-o", out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", src, err, b)
	}
	return out
}

const feedLayoutC = `#include <stdio.h>
#include <string.h>
#include "ipcd_feed.h"

#define OFF(f) printf(#f " %zu\n", offsetof(struct ipcd_feed_header, f))

int main(void)
{
	struct ipcd_feed_header h;
	uint8_t b[IPCD_FEED_HEADER_SIZE];
	size_t i;

	printf("size %zu\n", sizeof(h));
	OFF(magic); OFF(version); OFF(stream); OFF(kind); OFF(codec);
	OFF(pts_us); OFF(timestamp_ms); OFF(length); OFF(reserved);
	printf("header_size %d\nversion_value %d\n", IPCD_FEED_HEADER_SIZE, IPCD_FEED_VERSION);
	printf("max_video %u\nmax_audio %u\n", IPCD_FEED_MAX_VIDEO_PAYLOAD, IPCD_FEED_MAX_AUDIO_PAYLOAD);
	printf("streams %d %d %d\n", IPCD_FEED_STREAM_MAIN, IPCD_FEED_STREAM_SUB, IPCD_FEED_STREAM_AUDIO);
	printf("kinds %d %d %d\n", IPCD_FEED_KIND_I, IPCD_FEED_KIND_P, IPCD_FEED_KIND_AUDIO);
	printf("keyframe_request %d\n", IPCD_FEED_KIND_KEYFRAME_REQUEST);
	printf("codecs %d %d %d %d\n", IPCD_FEED_CODEC_H264, IPCD_FEED_CODEC_H265, IPCD_FEED_CODEC_PCMU, IPCD_FEED_CODEC_PCMA);

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, IPCD_FEED_MAGIC, 4);
	h.version = IPCD_FEED_VERSION;
	h.stream = IPCD_FEED_STREAM_SUB;
	h.kind = IPCD_FEED_KIND_I;
	h.codec = IPCD_FEED_CODEC_H265;
	h.pts_us = -1234567890123LL;
	h.timestamp_ms = 1732170000123LL;
	h.length = 1048576;
	ipcd_feed_encode_header(b, &h);
	printf("encoded ");
	for (i = 0; i < sizeof(b); i++)
		printf("%02x", b[i]);
	printf("\nimage_is_wire %d\n", memcmp(&h, b, sizeof(b)) == 0);
	return 0;
}
`

// TestFeedHeaderMatchesC compiles ipcd_feed.h and checks that its layout,
// constants and encoder agree with this package byte for byte.
func TestFeedHeaderMatchesC(t *testing.T) {
	src := filepath.Join(t.TempDir(), "layout.c")
	if err := os.WriteFile(src, []byte(feedLayoutC), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(compileC(t, src, "layout")).Output()
	if err != nil {
		t.Fatalf("layout program: %v", err)
	}
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		got[k] = v
	}

	wantBytes := encodeFeedHeader(t, media.FeedHeader{
		Stream: media.StreamSub, Kind: media.KindI, Codec: media.CodecH265,
		PTS: -1234567890123, Timestamp: 1732170000123, Length: 1048576,
	})
	want := map[string]string{
		"size": "32", "header_size": "32",
		"magic": "0", "version": "4", "stream": "5", "kind": "6", "codec": "7",
		"pts_us": "8", "timestamp_ms": "16", "length": "24", "reserved": "28",
		"version_value":    "1",
		"max_video":        "1048576",
		"max_audio":        "800",
		"streams":          fmtInts(media.StreamMain, media.StreamSub, media.StreamAudio),
		"kinds":            fmtInts(media.KindI, media.KindP, media.KindAudio),
		"keyframe_request": fmtInts(uint8(media.FeedKindKeyframeRequest)),
		"codecs":           fmtInts(media.CodecH264, media.CodecH265, media.CodecPCMU, media.CodecPCMA),
		"encoded":          hex.EncodeToString(wantBytes),
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		// The struct's memory image is only the wire format on a little-endian host.
		want["image_is_wire"] = "1"
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("C %s = %q, Go wants %q", k, got[k], v)
		}
	}
	if t.Failed() {
		t.Logf("C program output:\n%s", out)
	}
}

func fmtInts[T ~uint8](vs ...T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(int(v))
	}
	return strings.Join(s, " ")
}

func FuzzFeedHeader(f *testing.F) {
	f.Add(encodeFeedHeader(f, validFeedHeader()))
	f.Add(encodeFeedHeader(f, media.FeedHeader{Stream: media.StreamAudio, Kind: media.KindAudio, Codec: media.CodecPCMA, PTS: -1, Length: 800}))
	f.Add([]byte("IPCF\x01\x03\x01\x01"))
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := media.DecodeFeedHeader(b)
		if err != nil {
			matched := 0
			for _, e := range feedHeaderErrors {
				if errors.Is(err, e) {
					matched++
				}
			}
			if matched != 1 {
				t.Fatalf("error %v matches %d sentinels, want exactly 1", err, matched)
			}
			return
		}
		limit := uint32(media.MaxVideoPayload)
		if h.Stream == media.StreamAudio {
			limit = media.MaxAudioPayload
		}
		if h.Length == 0 || h.Length > limit {
			t.Fatalf("accepted length %d on the %s stream", h.Length, h.Stream)
		}
		// The wire form is canonical: a header that decodes re-encodes to
		// the very same bytes, so no two byte strings mean the same header.
		again, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("AppendBinary of a decoded header: %v", err)
		}
		if !bytes.Equal(again, b[:media.FeedHeaderSize]) {
			t.Fatalf("re-encoded % x, decoded from % x", again, b[:media.FeedHeaderSize])
		}
	})
}
