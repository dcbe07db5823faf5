package media_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/ipcd/ipcd/media"
)

const (
	feedSampleH264  = "../configs/media/main.h264"
	feedSampleAudio = "../configs/media/audio.pcmu"
	feedExampleSrc  = "../board/feed/feed_example.c"
	feedMakefileDir = "../board/feed"
)

// feedRings builds one ring per stream, large enough that tests never see an eviction.
func feedRings(t testing.TB, streams ...media.Stream) map[media.Stream]*media.Ring {
	t.Helper()
	rings := map[media.Stream]*media.Ring{}
	for _, s := range streams {
		rings[s] = newRing(t, media.RingConfig{Stream: s, MaxBytes: 16 << 20, MaxFrames: 1024})
	}
	return rings
}

type feedHarness struct {
	src  *media.FeedSource
	path string
	logs *logBuffer
	stop context.CancelFunc
	done chan error // Run's result
}

// startFeed runs a FeedSource until the test ends and waits until it listens.
func startFeed(t testing.TB, cfg media.FeedSourceConfig, rings map[media.Stream]*media.Ring) *feedHarness {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "feed.sock")
	}
	h := &feedHarness{path: cfg.Path, logs: &logBuffer{}, done: make(chan error, 1)}
	src, err := media.NewFeedSource(cfg, rings, h.logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	h.src = src
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	var wg sync.WaitGroup
	wg.Go(func() { h.done <- src.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	// The socket is ready for producers once it has its final mode.
	waitFor(t, "the feed socket", func() bool {
		fi, err := os.Lstat(cfg.Path)
		return err == nil && fi.Mode().Perm() == 0o660
	})
	return h
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func dialFeed(t testing.TB, path string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// feedMsg is the wire form of f: its header and payload.
func feedMsg(t testing.TB, f media.Frame) []byte {
	t.Helper()
	h := media.FeedHeader{Stream: f.Stream, Kind: f.Kind, Codec: f.Codec, PTS: f.PTS,
		Timestamp: f.Timestamp, Length: uint32(len(f.Payload))}
	return append(encodeFeedHeader(t, h), f.Payload...)
}

func send(t testing.TB, c net.Conn, b ...[]byte) {
	t.Helper()
	for _, p := range b {
		if _, err := c.Write(p); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// expectClosedByPeer checks that ipcd closed c: a read ends without data.
func expectClosedByPeer(t testing.TB, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 1))
	switch {
	case n > 0:
		t.Fatalf("ipcd wrote to the feed socket")
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("connection still open after 3 s")
	case err == nil:
		t.Fatalf("read returned nothing and no error")
	}
}

// logLine returns the first log line containing every one of parts.
func logLine(logs string, parts ...string) (string, bool) {
	for line := range strings.Lines(logs) {
		found := true
		for _, p := range parts {
			found = found && strings.Contains(line, p)
		}
		if found {
			return line, true
		}
	}
	return "", false
}

func countLines(logs string, parts ...string) int {
	n := 0
	for line := range strings.Lines(logs) {
		if _, ok := logLine(line, parts...); ok {
			n++
		}
	}
	return n
}

func expectFrame(t testing.TB, rd *media.Reader, want media.Frame) {
	t.Helper()
	got, skipped := next(t, rd)
	if skipped != 0 || got.Stream != want.Stream || got.Kind != want.Kind || got.Codec != want.Codec ||
		got.PTS != want.PTS || got.Timestamp != want.Timestamp || !bytes.Equal(got.Payload, want.Payload) {
		t.Fatalf("got %s %s %s pts %d ts %d, %d bytes, skipped %d; want %s %s %s pts %d ts %d, %d bytes",
			got.Stream, got.Kind, got.Codec, got.PTS, got.Timestamp, len(got.Payload), skipped,
			want.Stream, want.Kind, want.Codec, want.PTS, want.Timestamp, len(want.Payload))
	}
}

func TestNewFeedSourceErrors(t *testing.T) {
	rings := feedRings(t, media.StreamMain, media.StreamAudio)
	path := filepath.Join(t.TempDir(), "f.sock")
	tests := []struct {
		name  string
		cfg   media.FeedSourceConfig
		rings map[media.Stream]*media.Ring
	}{
		{"no path", media.FeedSourceConfig{}, rings},
		{"path too long for sun_path", media.FeedSourceConfig{Path: "/tmp/" + strings.Repeat("x", 103)}, rings},
		{"negative max_conns", media.FeedSourceConfig{Path: path, MaxConns: -1}, rings},
		{"max_conns too large", media.FeedSourceConfig{Path: path, MaxConns: 65}, rings},
		{"negative timeout", media.FeedSourceConfig{Path: path, ReadTimeout: -time.Second}, rings},
		{"no rings", media.FeedSourceConfig{Path: path}, nil},
		{"nil ring", media.FeedSourceConfig{Path: path}, map[media.Stream]*media.Ring{media.StreamMain: nil}},
		{"ring under the wrong stream", media.FeedSourceConfig{Path: path},
			map[media.Stream]*media.Ring{media.StreamSub: rings[media.StreamMain]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := media.NewFeedSource(tt.cfg, tt.rings, nil); !errors.Is(err, media.ErrFeedSourceConfig) {
				t.Fatalf("NewFeedSource = %v, want ErrFeedSourceConfig", err)
			}
		})
	}
	if _, err := media.NewFeedSource(media.FeedSourceConfig{Path: "/tmp/" + strings.Repeat("x", 102)}, rings, nil); err != nil {
		t.Errorf("a 107-byte path fits sun_path: %v", err)
	}
}

// TestFeedSourceCExample pushes the sample media through the shipped C
// example client and expects exactly the frames the file source would make.
func TestFeedSourceCExample(t *testing.T) {
	checkNoLeak(t)
	example := compileC(t, feedExampleSrc, "feed_example")
	wantVideo, err := media.ReadAccessUnits(feedSampleH264)
	if err != nil {
		t.Fatal(err)
	}
	wantAudio, err := media.ReadAccessUnits(feedSampleAudio)
	if err != nil {
		t.Fatal(err)
	}
	rings := feedRings(t, media.StreamMain, media.StreamAudio)
	vr, ar := rings[media.StreamMain].NewReader(), rings[media.StreamAudio].NewReader()
	defer vr.Close()
	defer ar.Close()
	h := startFeed(t, media.FeedSourceConfig{}, rings)

	start := time.Now().UnixMilli()
	out, err := exec.Command(example, "-fast", "-audio", feedSampleAudio, h.path, feedSampleH264).CombinedOutput()
	if err != nil {
		t.Fatalf("feed_example: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("sent %d video frames", len(wantVideo)); !strings.Contains(string(out), want) {
		t.Errorf("feed_example said %q, want it to contain %q", out, want)
	}
	end := time.Now().UnixMilli()

	var videoBytes uint64
	lastTS := start
	for i, au := range wantVideo {
		f, skipped := next(t, vr)
		videoBytes += uint64(len(au.Payload))
		if !bytes.Equal(f.Payload, au.Payload) || skipped != 0 {
			t.Fatalf("video frame %d: %d bytes (skipped %d), want the %d bytes of access unit %d",
				i, len(f.Payload), skipped, len(au.Payload), i)
		}
		if f.IsKeyframe() != au.Key || f.Codec != media.CodecH264 || f.PTS != int64(i)*40000 {
			t.Fatalf("video frame %d: %s %s pts %d, want key=%v H264 pts %d", i, f.Kind, f.Codec, f.PTS, au.Key, i*40000)
		}
		if f.Timestamp < lastTS || f.Timestamp > end {
			t.Fatalf("video frame %d: timestamp %d outside [%d, %d]", i, f.Timestamp, lastTS, end)
		}
		lastTS = f.Timestamp
	}
	for i, au := range wantAudio {
		f, skipped := next(t, ar)
		if !bytes.Equal(f.Payload, au.Payload) || skipped != 0 || f.Codec != media.CodecPCMU || f.PTS != int64(i)*40000 {
			t.Fatalf("audio frame %d: %s pts %d, %d bytes, skipped %d; want PCMU pts %d, 320 bytes of the file",
				i, f.Codec, f.PTS, len(f.Payload), skipped, i*40000)
		}
	}

	waitFor(t, "the example's connection to close", func() bool { return h.src.Stats().Closed.EOF == 1 })
	st := h.src.Stats()
	wantFrames := uint64(len(wantVideo) + len(wantAudio))
	if st.Frames != wantFrames || st.Bytes != videoBytes+uint64(320*len(wantAudio)) || st.Rejected != 0 ||
		st.Accepted != 1 || st.Conns != 0 || st.Closed.Total() != 1 {
		t.Errorf("stats %+v: want %d frames, %d bytes, one connection closed at EOF", st, wantFrames, videoBytes+uint64(320*len(wantAudio)))
	}
	if _, ok := logLine(h.logs.String(), "feed connection closed", "reason=eof", "frames=500"); !ok {
		t.Errorf("no info log of the clean close with its frame count:\n%s", h.logs)
	}
}

// TestFeedExampleSplitsAccessUnits checks the C example's Annex-B splitter on
// streams with delimiters, filler, several slices per picture, 3-byte start
// codes and pictures before the first keyframe.
func TestFeedExampleSplitsAccessUnits(t *testing.T) {
	example := compileC(t, feedExampleSrc, "feed_example")

	h264 := annexB3(nalP, nalAUD, nalSPS, nalPPS, nalIDR, nalIDR2, nalFiller,
		nalAUD, nalP, nalP2+"\x00\x00", nalAUD, nalSEI, nalP)
	h264Path := writeTemp(t, "synthetic.h264", h264)
	wantH264, err := media.ReadAccessUnits(h264Path) // what the file source makes of it
	if err != nil {
		t.Fatal(err)
	}

	const (
		h5AUD    = "\x46\x01\x50"
		h5Trail  = "\x02\x01\xd0\x11" // TRAIL_R, first slice segment of its picture
		h5Trail2 = "\x02\x01\x50\x22" // a further slice segment
		h5IDR2   = "\x26\x01\xa0\x07"
	)
	h265 := annexB3(h5Trail, h5AUD, nalH5VPS, nalH5SPS, nalH5PPS, nalH5IDR, h5AUD, h5Trail, h5Trail2+"\x00",
		h5AUD, h5Trail, nalH5VPS, nalH5SPS, nalH5PPS, h5IDR2)
	wantH265 := []media.AccessUnit{
		{Payload: annexB(nalH5VPS, nalH5SPS, nalH5PPS, nalH5IDR), Key: true},
		{Payload: annexB(h5Trail, h5Trail2)},
		{Payload: annexB(h5Trail)},
		{Payload: annexB(nalH5VPS, nalH5SPS, nalH5PPS, h5IDR2), Key: true},
	}

	tests := []struct {
		name   string
		file   string
		args   []string
		stream media.Stream
		codec  media.Codec
		want   []media.AccessUnit
	}{
		// Real time at 50 fps also exercises the example's pacing.
		{"H.264 in real time", h264Path, []string{"-fps", "50"}, media.StreamMain, media.CodecH264, wantH264},
		{"H.265 on the sub stream", writeTemp(t, "synthetic.h265", h265), []string{"-fast", "-stream", "sub"},
			media.StreamSub, media.CodecH265, wantH265},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ring := newRing(t, media.RingConfig{Stream: tt.stream, Codec: tt.codec, MaxBytes: 1 << 20, MaxFrames: 64})
			rd := ring.NewReader()
			defer rd.Close()
			h := startFeed(t, media.FeedSourceConfig{}, map[media.Stream]*media.Ring{tt.stream: ring})
			args := append(append([]string{}, tt.args...), h.path, tt.file)
			began := time.Now()
			if out, err := exec.Command(example, args...).CombinedOutput(); err != nil {
				t.Fatalf("feed_example %v: %v\n%s", args, err, out)
			}
			elapsed := time.Since(began)
			var first, last media.Frame
			for i, au := range tt.want {
				f, _ := next(t, rd)
				if !bytes.Equal(f.Payload, au.Payload) || f.IsKeyframe() != au.Key || f.Codec != tt.codec {
					t.Fatalf("frame %d: %s %s % x\nwant key=%v % x", i, f.Kind, f.Codec, f.Payload, au.Key, au.Payload)
				}
				if i == 0 {
					first = f
				}
				last = f
			}
			if n := ring.Stats().Appended; n != uint64(len(tt.want)) {
				t.Errorf("ring holds %d frames, want %d", n, len(tt.want))
			}
			if tt.args[0] == "-fps" {
				// The last frame is due 20 ms after the one before; the
				// example cannot exit earlier. (The timestamps' span is not
				// checked: a loaded machine may delay the first frame.)
				span := time.Duration(len(tt.want)-1) * 20 * time.Millisecond
				if elapsed < span || last.Timestamp < first.Timestamp {
					t.Errorf("sent %d frames in %v, timestamps %d..%d; want at least %v at 50 fps",
						len(tt.want), elapsed, first.Timestamp, last.Timestamp, span)
				}
			}
		})
	}
}

func TestFeedMakefileBuildsExample(t *testing.T) {
	gccPath(t)
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skipf("make not found: %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command(mk, "-s", "-C", feedMakefileDir, "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make: %v\n%s", err, b)
	}
	b, _ := exec.Command(filepath.Join(out, "feed_example")).CombinedOutput()
	if !strings.Contains(string(b), "usage: feed_example") {
		t.Errorf("built feed_example without arguments said %q, want its usage", b)
	}
}

// TestFeedSourceClosesGarbage sends one kind of garbage per case on one
// connection while another keeps feeding. Only the bad connection is closed,
// with its reason logged; frames appended before stay, nothing partial is added.
func TestFeedSourceClosesGarbage(t *testing.T) {
	const timeout = 150 * time.Millisecond
	good := func(t testing.TB) []byte { return feedMsg(t, keyFrame(0, 1000)) }
	header := func(t testing.TB, mutate func(b []byte)) []byte {
		b := feedMsg(t, pFrame(40000, 1000))
		mutate(b)
		return b
	}
	tests := []struct {
		name       string
		reason     string
		count      func(media.FeedCloseCounts) uint64
		garbage    func(t testing.TB) []byte
		closeWrite bool // end the stream after the garbage
		waits      bool // ipcd has to wait for the read timeout
	}{
		{"bad magic", "bad_magic", func(c media.FeedCloseCounts) uint64 { return c.BadMagic },
			func(t testing.TB) []byte { return header(t, func(b []byte) { copy(b, "RIFF") }) }, false, false},
		{"text instead of frames", "bad_magic", func(c media.FeedCloseCounts) uint64 { return c.BadMagic },
			func(testing.TB) []byte { return []byte("GET /feed HTTP/1.1\r\nHost: camera\r\n\r\n") }, false, false},
		{"newer version", "bad_version", func(c media.FeedCloseCounts) uint64 { return c.BadVersion },
			func(t testing.TB) []byte { return header(t, func(b []byte) { b[4] = 2 }) }, false, false},
		{"unknown stream", "bad_field", func(c media.FeedCloseCounts) uint64 { return c.BadField },
			func(t testing.TB) []byte { return header(t, func(b []byte) { b[5] = 9 }) }, false, false},
		{"reserved set", "bad_field", func(c media.FeedCloseCounts) uint64 { return c.BadField },
			func(t testing.TB) []byte { return header(t, func(b []byte) { b[30] = 1 }) }, false, false},
		{"audio codec on video", "bad_field", func(c media.FeedCloseCounts) uint64 { return c.BadField },
			func(t testing.TB) []byte { return header(t, func(b []byte) { b[7] = byte(media.CodecPCMA) }) }, false, false},
		{"zero length", "bad_length", func(c media.FeedCloseCounts) uint64 { return c.BadLength },
			func(t testing.TB) []byte { return header(t, func(b []byte) { clear(b[24:28]) })[:32] }, false, false},
		{"absurd length", "bad_length", func(c media.FeedCloseCounts) uint64 { return c.BadLength },
			func(t testing.TB) []byte {
				return header(t, func(b []byte) { copy(b[24:28], "\xff\xff\xff\x7f") })[:32]
			}, false, false},
		{"audio over 800 bytes", "bad_length", func(c media.FeedCloseCounts) uint64 { return c.BadLength },
			func(t testing.TB) []byte {
				b := feedMsg(t, audioFrame(40000))
				copy(b[24:28], "\x21\x03\x00\x00") // 801
				return b
			}, false, false},
		{"EOF inside the payload", "truncated", func(c media.FeedCloseCounts) uint64 { return c.Truncated },
			func(t testing.TB) []byte { return feedMsg(t, pFrame(40000, 1000))[:32+500] }, true, false},
		{"EOF inside the header", "truncated", func(c media.FeedCloseCounts) uint64 { return c.Truncated },
			func(t testing.TB) []byte { return feedMsg(t, pFrame(40000, 1000))[:20] }, true, false},
		{"stall inside the payload", "timeout", func(c media.FeedCloseCounts) uint64 { return c.Timeout },
			func(t testing.TB) []byte { return feedMsg(t, pFrame(40000, 1000))[:32+500] }, false, true},
		{"stall inside the header", "timeout", func(c media.FeedCloseCounts) uint64 { return c.Timeout },
			func(t testing.TB) []byte { return feedMsg(t, pFrame(40000, 1000))[:1] }, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkNoLeak(t)
			rings := feedRings(t, media.StreamMain, media.StreamAudio)
			vr := rings[media.StreamMain].NewReader()
			defer vr.Close()
			h := startFeed(t, media.FeedSourceConfig{ReadTimeout: timeout}, rings)

			feeder := dialFeed(t, h.path)
			key := keyFrame(0, 1000)
			send(t, feeder, good(t))
			expectFrame(t, vr, key)

			bad := dialFeed(t, h.path)
			audio := audioFrame(0)
			send(t, bad, feedMsg(t, audio), tt.garbage(t))
			if tt.closeWrite {
				if err := bad.CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			sent := time.Now()
			expectClosedByPeer(t, bad)
			if waited := time.Since(sent); tt.waits && waited < timeout {
				t.Errorf("closed %v after the stall, before the %v read timeout", waited, timeout)
			}

			st := h.src.Stats()
			if tt.count(st.Closed) != 1 || st.Closed.Total() != 1 {
				t.Errorf("close counts %+v, want one %s", st.Closed, tt.reason)
			}
			line, ok := logLine(h.logs.String(), "level=WARN", "feed connection closed", "reason="+tt.reason)
			if !ok {
				t.Errorf("no warn log with reason=%s:\n%s", tt.reason, h.logs)
			} else if !strings.Contains(line, "frames=1") {
				t.Errorf("close log does not count the frame the connection delivered: %s", line)
			}

			// The good producer is unaffected, and the frame the bad one
			// delivered before its garbage is still there.
			p := pFrame(40000, 1000)
			send(t, feeder, feedMsg(t, p))
			expectFrame(t, vr, p)
			if n := rings[media.StreamMain].Stats().Appended; n != 2 {
				t.Errorf("main ring appended %d frames, want the good producer's 2", n)
			}
			if n := rings[media.StreamAudio].Stats().Appended; n != 1 {
				t.Errorf("audio ring appended %d frames, want the one complete frame before the garbage", n)
			}
			// The source counts a frame just after the ring took it.
			waitFor(t, "the third frame to be counted", func() bool { return h.src.Stats().Frames == 3 })
			if st := h.src.Stats(); st.Conns != 1 || st.Accepted != 2 {
				t.Errorf("stats %+v, want the good connection still served", st)
			}
		})
	}
}

// TestFeedSourceRingRejectionKeepsConnection: frames that are well formed but
// that the ring refuses, or that have no ring here, are dropped one by one.
func TestFeedSourceRingRejectionKeepsConnection(t *testing.T) {
	main := newRing(t, media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH264, MaxBytes: 1 << 20, MaxFrames: 64})
	rd := main.NewReader()
	defer rd.Close()
	h := startFeed(t, media.FeedSourceConfig{}, map[media.Stream]*media.Ring{media.StreamMain: main})
	c := dialFeed(t, h.path)

	key := keyFrame(80000, 500)
	backwards := pFrame(40000, 500)
	h265 := pFrame(120000, 500)
	h265.Codec = media.CodecH265
	noPS := keyFrame(120000, 500)
	noPS.Payload = annexB(nalIDR) // no parameter sets, and none seen: §7.1
	sub := pFrame(0, 500)
	sub.Stream = media.StreamSub
	last := pFrame(160000, 500)
	send(t, c, feedMsg(t, noPS), feedMsg(t, key), feedMsg(t, backwards), feedMsg(t, h265),
		feedMsg(t, sub), feedMsg(t, audioFrame(0)), feedMsg(t, audioFrame(40000)), feedMsg(t, last))

	expectFrame(t, rd, key)
	expectFrame(t, rd, last)
	// Counters move in message order, so once the last frame is counted the
	// others are final.
	waitFor(t, "the last frame to be counted", func() bool { return h.src.Stats().Frames == 2 })
	st := h.src.Stats()
	if st.Frames != 2 || st.Rejected != 3 || st.NoRing != 3 || st.Conns != 1 || st.Closed.Total() != 0 {
		t.Errorf("stats %+v, want 2 frames, 3 rejected, 3 without ring, connection open", st)
	}
	rej := main.Stats().Rejected
	if rej.PTSBackwards != 1 || rej.KindMismatch != 1 || rej.NoParameterSets != 1 {
		t.Errorf("ring rejections %+v, want one each of pts, codec and parameter sets", rej)
	}
	logs := h.logs.String()
	for _, s := range []string{"sub", "audio"} {
		if n := countLines(logs, "stream without a ring are dropped", "stream="+s); n != 1 {
			t.Errorf("%d logs about dropped %s frames, want 1 per connection and stream:\n%s", n, s, logs)
		}
	}
}

// TestFeedSourceMaxConns: with every producer slot held by a live producer,
// a new producer is refused; once the producer has been silent for
// TimelineIdle, a new one replaces it and its frames reach the ring.
func TestFeedSourceMaxConns(t *testing.T) {
	rings := feedRings(t, media.StreamMain)
	rd := rings[media.StreamMain].NewReader()
	defer rd.Close()
	h := startFeed(t, media.FeedSourceConfig{MaxConns: 1}, rings)

	first := dialFeed(t, h.path)
	key := keyFrame(0, 300)
	send(t, first, feedMsg(t, key))
	expectFrame(t, rd, key) // first is the producer

	second := dialFeed(t, h.path)
	send(t, second, feedMsg(t, keyFrame(0, 300)))
	expectClosedByPeer(t, second)
	if st := h.src.Stats(); st.Refused != 1 || st.Closed.Refused != 1 || st.Producers != 1 {
		t.Errorf("stats %+v, want 1 refused and 1 producer", st)
	}
	if _, ok := logLine(h.logs.String(), "level=WARN", "feed connection refused", "max_conns=1"); !ok {
		t.Errorf("no warn log for the refused connection:\n%s", h.logs)
	}
	p := pFrame(40000, 300)
	send(t, first, feedMsg(t, p))
	expectFrame(t, rd, p)

	// The producer goes silent without closing its connection (a hung
	// capture application); the next one takes its place.
	time.Sleep(media.TimelineIdle)
	third := dialFeed(t, h.path)
	k3 := keyFrame(0, 301)
	send(t, third, feedMsg(t, k3))
	got, _ := next(t, rd)
	if !bytes.Equal(got.Payload, k3.Payload) || got.PTS <= p.PTS {
		t.Fatalf("after the replacement the reader got a %d-byte frame at PTS %d; want the new keyframe after %d", len(got.Payload), got.PTS, p.PTS)
	}
	expectClosedByPeer(t, first)
	waitFor(t, "the replaced producer's close log", func() bool {
		_, ok := logLine(h.logs.String(), "feed connection closed", "reason=replaced")
		return ok
	})
	if st := h.src.Stats(); st.Closed.Replaced != 1 || st.Producers != 1 {
		t.Errorf("stats %+v: want 1 replaced, 1 producer", st)
	}
}

// TestFeedSourceIdleConnsDoNotLockOut: connections that never send a byte
// hold no producer slot: the real producer, connecting after four of them,
// is served at once, and they are closed after the first-header timeout.
func TestFeedSourceIdleConnsDoNotLockOut(t *testing.T) {
	checkNoLeak(t)
	rings := feedRings(t, media.StreamMain)
	rd := rings[media.StreamMain].NewReader()
	defer rd.Close()
	h := startFeed(t, media.FeedSourceConfig{}, rings) // max_conns 4, first header within 5 s
	var idle []*net.UnixConn
	for range 4 {
		idle = append(idle, dialFeed(t, h.path))
	}
	waitFor(t, "four waiting connections", func() bool { return h.src.Stats().Pending == 4 })

	producer := dialFeed(t, h.path)
	key, p := keyFrame(0, 300), pFrame(40000, 300)
	send(t, producer, feedMsg(t, key), feedMsg(t, p))
	// next gives up after 2 s, well before the idle connections' deadline.
	expectFrame(t, rd, key)
	expectFrame(t, rd, p)
	expectClosedByPeer(t, idle[0])
	waitFor(t, "the displaced connection to be counted", func() bool { return h.src.Stats().Closed.Displaced == 1 })
	if st := h.src.Stats(); st.Producers != 1 || st.Pending != 3 {
		t.Errorf("stats %+v: want 1 producer, 3 waiting", st)
	}
}

// TestFeedSourceFirstHeaderTimeout: a connection that sends nothing, or part
// of a header, within the first-header timeout is closed with reason
// no_header; one that sends its header in time is served.
func TestFeedSourceFirstHeaderTimeout(t *testing.T) {
	checkNoLeak(t)
	const timeout = 200 * time.Millisecond
	rings := feedRings(t, media.StreamMain)
	rd := rings[media.StreamMain].NewReader()
	defer rd.Close()
	h := startFeed(t, media.FeedSourceConfig{FirstHeaderTimeout: timeout}, rings)

	silent := dialFeed(t, h.path)
	partial := dialFeed(t, h.path)
	send(t, partial, feedMsg(t, keyFrame(0, 300))[:10])
	start := time.Now()
	expectClosedByPeer(t, silent)
	expectClosedByPeer(t, partial)
	if waited := time.Since(start); waited < timeout-20*time.Millisecond {
		t.Errorf("closed after %v, before the %v first-header timeout", waited, timeout)
	}
	waitFor(t, "both closes counted", func() bool { return h.src.Stats().Closed.NoHeader == 2 })
	if _, ok := logLine(h.logs.String(), "level=WARN", "feed connection closed", "reason=no_header"); !ok {
		t.Errorf("no warn log naming the first-header rule:\n%s", h.logs)
	}

	good := dialFeed(t, h.path)
	key := keyFrame(0, 300)
	send(t, good, feedMsg(t, key))
	expectFrame(t, rd, key)
	time.Sleep(2 * timeout) // the deadline only covers the first header
	p := pFrame(40000, 300)
	send(t, good, feedMsg(t, p))
	expectFrame(t, rd, p)
}

// TestFeedSourceProducerRestart: a producer killed and restarted with its
// PTS from 0 again: the reader that followed the first one goes on at the
// second one's first keyframe, with PTS that keep increasing; the frame
// stamped 2^62 µs it then sends is refused with a `ring buffer` log, and the
// frames after it are taken.
func TestFeedSourceProducerRestart(t *testing.T) {
	var ringLog logBuffer
	main, err := media.NewRing(media.RingConfig{Stream: media.StreamMain, MaxBytes: 16 << 20, MaxFrames: 1024}, ringLog.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close()
	rd := main.NewReader()
	defer rd.Close()
	h := startFeed(t, media.FeedSourceConfig{}, map[media.Stream]*media.Ring{media.StreamMain: main})

	gop := func(pts0 int64, n int) []media.Frame {
		var fs []media.Frame
		for i := range n {
			f := pFrame(pts0+int64(i)*40000, 200+i)
			if i == 0 {
				f = keyFrame(pts0, 200)
			}
			fs = append(fs, f)
		}
		return fs
	}
	var msgs [][]byte
	first := gop(5_000_000, 25)
	for _, f := range first {
		msgs = append(msgs, feedMsg(t, f))
	}
	c := dialFeed(t, h.path)
	send(t, c, msgs...)
	var last int64
	for i := range first {
		got, _ := next(t, rd)
		if !bytes.Equal(got.Payload, first[i].Payload) {
			t.Fatalf("frame %d of the first producer differs", i)
		}
		last = got.PTS
	}
	c.Close() // killed

	restarted := dialFeed(t, h.path)
	second := gop(0, 25)
	wild := pFrame(1<<62, 50)
	msgs = [][]byte{feedMsg(t, pFrame(0, 99))} // a picture before its keyframe
	for i, f := range second {
		msgs = append(msgs, feedMsg(t, f))
		if i == 10 {
			msgs = append(msgs, feedMsg(t, wild))
		}
	}
	send(t, restarted, msgs...)
	for i := range second {
		got, skipped := next(t, rd)
		if !bytes.Equal(got.Payload, second[i].Payload) || skipped != 0 {
			t.Fatalf("frame %d after the restart: %d bytes, %s, skipped %d; want the second producer's from its keyframe",
				i, len(got.Payload), got.Kind, skipped)
		}
		if got.PTS <= last {
			t.Fatalf("frame %d after the restart has PTS %d, not after %d", i, got.PTS, last)
		}
		last = got.PTS
	}
	rej := main.Stats().Rejected
	if rej.PTSTooFarAhead != 1 || rej.AwaitingKeyframe != 1 || rej.Total() != 2 {
		t.Errorf("ring rejections %+v; want the 2^62 frame and the early picture", rej)
	}
	// The first rejection is logged at once, the next ones in the next
	// summary, which closing the ring flushes.
	main.Close()
	for _, rule := range []string{"new timeline waits for a keyframe: 1", "pts too far ahead: 1"} {
		if _, ok := logLine(ringLog.String(), "level=WARN", "ring buffer", rule); !ok {
			t.Errorf("no `ring buffer` warning with %q:\n%s", rule, ringLog.String())
		}
	}
}

func TestFeedSourceShutdown(t *testing.T) {
	checkNoLeak(t)
	rings := feedRings(t, media.StreamMain)
	rd := rings[media.StreamMain].NewReader()
	defer rd.Close()
	h := startFeed(t, media.FeedSourceConfig{}, rings)
	c := dialFeed(t, h.path)
	key := keyFrame(0, 300)
	send(t, c, feedMsg(t, key), feedMsg(t, pFrame(40000, 300))[:40]) // a frame and a half
	expectFrame(t, rd, key)

	h.stop()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run = %v, want nil when ctx ends", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	expectClosedByPeer(t, c)
	if _, err := os.Lstat(h.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Run: %v, want it removed", err)
	}
	if st := h.src.Stats(); st.Closed.Shutdown != 1 || st.Closed.Total() != 1 || st.Conns != 0 || st.Frames != 1 {
		t.Errorf("stats %+v, want the connection closed by shutdown after 1 frame", st)
	}
}

func TestFeedSourceSocketFile(t *testing.T) {
	rings := feedRings(t, media.StreamMain)

	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "feed.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false) // what a crashed ipcd leaves behind
		ln.Close()
		h := startFeed(t, media.FeedSourceConfig{Path: path}, rings)
		if _, ok := logLine(h.logs.String(), "removed stale feed socket"); !ok {
			t.Errorf("no log about the stale socket:\n%s", h.logs)
		}
		send(t, dialFeed(t, path), feedMsg(t, keyFrame(0, 100)))
		waitFor(t, "a frame through the new socket", func() bool { return h.src.Stats().Frames == 1 })
	})

	t.Run("regular file is left alone", func(t *testing.T) {
		path := writeTemp(t, "feed.sock", []byte("not a socket"))
		src, err := media.NewFeedSource(media.FeedSourceConfig{Path: path}, rings, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Run(context.Background()); !errors.Is(err, media.ErrFeedSourceConfig) {
			t.Fatalf("Run = %v, want ErrFeedSourceConfig", err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "not a socket" {
			t.Errorf("file after Run: %q, %v", b, err)
		}
	})

	t.Run("socket served by another process", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "feed.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		src, err := media.NewFeedSource(media.FeedSourceConfig{Path: path}, rings, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Run(context.Background()); !errors.Is(err, media.ErrFeedInUse) {
			t.Fatalf("Run = %v, want ErrFeedInUse", err)
		}
		if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
			t.Errorf("the other listener's socket is gone: %v", err)
		}
	})

	t.Run("second Run refused", func(t *testing.T) {
		h := startFeed(t, media.FeedSourceConfig{}, rings)
		if err := h.src.Run(context.Background()); !errors.Is(err, media.ErrFeedSourceConfig) {
			t.Fatalf("second Run = %v, want ErrFeedSourceConfig", err)
		}
	})
}

func TestFeedSourceServeReader(t *testing.T) {
	key, p := keyFrame(0, 200), pFrame(40000, 200)
	stream := append(feedMsg(t, key), feedMsg(t, p)...)
	broken := errors.New("device unplugged")
	tests := []struct {
		name      string
		input     io.Reader
		cancel    bool
		closeRing bool
		frames    uint64
		want      error // nil: ends cleanly
		count     func(media.FeedCloseCounts) uint64
	}{
		{"clean end", bytes.NewReader(stream), false, false, 2, nil,
			func(c media.FeedCloseCounts) uint64 { return c.EOF }},
		{"trailing half message", io.MultiReader(bytes.NewReader(stream), bytes.NewReader(feedMsg(t, p)[:100])),
			false, false, 2, media.ErrFeedTruncated, func(c media.FeedCloseCounts) uint64 { return c.Truncated }},
		{"ctx ended", bytes.NewReader(stream), true, false, 0, context.Canceled,
			func(c media.FeedCloseCounts) uint64 { return c.Shutdown }},
		{"ring closed", bytes.NewReader(stream), false, true, 0, media.ErrRingClosed,
			func(c media.FeedCloseCounts) uint64 { return c.RingClosed }},
		{"read error", io.MultiReader(bytes.NewReader(stream), iotest.ErrReader(broken)), false, false, 2, broken,
			func(c media.FeedCloseCounts) uint64 { return c.ReadError }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rings := feedRings(t, media.StreamMain)
			src, err := media.NewFeedSource(media.FeedSourceConfig{Path: "unused"}, rings, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancel {
				cancel()
			}
			defer cancel()
			if tt.closeRing {
				rings[media.StreamMain].Close()
			}
			err = src.Serve(ctx, tt.input)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Serve = %v, want %v", err, tt.want)
			}
			if n := rings[media.StreamMain].Stats().Appended; n != tt.frames {
				t.Errorf("appended %d frames, want %d", n, tt.frames)
			}
			if st := src.Stats(); tt.count(st.Closed) != 1 || st.Closed.Total() != 1 || st.Accepted != 1 || st.Conns != 0 {
				t.Errorf("stats %+v, want one connection, ended for the expected reason", st)
			}
		})
	}
}

// TestFeedSourceReadTimeoutDefault runs on a synctest clock: a producer may
// idle between messages for as long as it likes, but a message it has begun
// must be complete within 10 s.
func TestFeedSourceReadTimeoutDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rings := feedRings(t, media.StreamMain)
		src, err := media.NewFeedSource(media.FeedSourceConfig{Path: "unused"}, rings, nil)
		if err != nil {
			t.Fatal(err)
		}
		server, client := net.Pipe()
		defer client.Close()
		done := make(chan error, 1)
		go func() { done <- src.Serve(context.Background(), server) }()

		time.Sleep(time.Hour) // idle before the first message
		send(t, client, feedMsg(t, keyFrame(0, 100)))
		time.Sleep(time.Hour) // and between messages
		msg := feedMsg(t, pFrame(40000, 100))
		send(t, client, msg[:50])
		began := time.Now()
		time.Sleep(10*time.Second - time.Nanosecond)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Serve returned %v before the 10 s timeout", err)
		default:
		}
		err = <-done
		if !errors.Is(err, media.ErrFeedTimeout) || time.Since(began) != 10*time.Second {
			t.Fatalf("Serve = %v after %v, want ErrFeedTimeout after 10s", err, time.Since(began))
		}
		if n := rings[media.StreamMain].Stats().Appended; n != 1 {
			t.Errorf("appended %d frames, want the complete one", n)
		}
		server.Close()
	})
}

// feedModel parses data as the feed protocol defines it, independently of
// the source: the complete messages up to the first bad one, and the error
// that ends the stream (nil for a clean end).
func feedModel(data []byte) ([]media.Frame, error) {
	var frames []media.Frame
	for off := 0; off < len(data); {
		h, err := media.DecodeFeedHeader(data[off:])
		if err != nil {
			return frames, err
		}
		off += media.FeedHeaderSize
		if len(data)-off < int(h.Length) {
			return frames, media.ErrFeedTruncated
		}
		frames = append(frames, media.Frame{Stream: h.Stream, Kind: h.Kind, Codec: h.Codec,
			PTS: h.PTS, Timestamp: h.Timestamp, Payload: data[off : off+int(h.Length)]})
		off += int(h.Length)
	}
	return frames, nil
}

// sameFrame reports whether the ring's frame got is the message want. The
// ring may put the stream's parameter sets in front of a keyframe that lacks
// them (§7.1); anything else must be the message's payload exactly. PTS are
// not compared: the ring rebases them (see the fuzz target).
func sameFrame(got, want media.Frame) bool {
	if got.Stream != want.Stream || got.Kind != want.Kind || got.Codec != want.Codec ||
		got.Timestamp != want.Timestamp {
		return false
	}
	if bytes.Equal(got.Payload, want.Payload) {
		return true
	}
	prefix, ok := bytes.CutSuffix(got.Payload, want.Payload)
	return ok && want.Kind == media.KindI && len(prefix) > 0 && bytes.HasPrefix(prefix, []byte{0, 0, 0, 1})
}

// socketPair is a connected pair of Unix stream sockets, as accept makes.
func socketPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var cs [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	return cs[0], cs[1]
}

func FuzzFeedStream(f *testing.F) {
	key := keyFrame(0, 120)
	withMsgs := func(fs ...media.Frame) []byte {
		var b []byte
		for _, fr := range fs {
			b = append(b, feedMsg(f, fr)...)
		}
		return b
	}
	noPS := keyFrame(120000, 60)
	noPS.Payload = annexB(nalIDR)
	f.Add(withMsgs(key, pFrame(40000, 80), audioFrame(0), pFrame(80000, 80), noPS))
	f.Add(append(withMsgs(key), "IPCF\x02"...))
	f.Add(withMsgs(key, pFrame(40000, 80))[:200])
	f.Add(append(withMsgs(audioFrame(40000)), bytes.Repeat([]byte{0}, 40)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := feedModel(data)
		requested := map[media.Stream]*bool{}
		rings := map[media.Stream]*media.Ring{}
		for _, s := range []media.Stream{media.StreamMain, media.StreamSub, media.StreamAudio} {
			req := new(bool)
			requested[s] = req
			r, err := media.NewRing(media.RingConfig{Stream: s, MaxBytes: 8 << 20, MaxFrames: 4096,
				OnKeyframeRequest: func() { *req = true }}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			rings[s] = r
		}
		src, err := media.NewFeedSource(media.FeedSourceConfig{Path: "unused"}, rings, nil)
		if err != nil {
			t.Fatal(err)
		}

		err = src.Serve(context.Background(), bytes.NewReader(data))
		if wantErr == nil && err != nil {
			t.Fatalf("Serve = %v on a well-formed stream", err)
		}
		for _, e := range feedHeaderErrors {
			if errors.Is(err, e) != errors.Is(wantErr, e) {
				t.Fatalf("Serve = %v, want %v", err, wantErr)
			}
		}
		st := src.Stats()
		if st.Frames+st.Rejected != uint64(len(want)) || st.NoRing != 0 {
			t.Fatalf("stats %+v: %d complete messages, want each appended or rejected", st, len(want))
		}

		var appended uint64
		for s, r := range rings {
			appended += r.Stats().Appended
			checkFeedRing(t, s, r, want, requested[s])
		}
		if appended != st.Frames {
			t.Fatalf("rings appended %d frames, source counted %d", appended, st.Frames)
		}

		// The same bytes on a socket connection, whose first header goes
		// through its own deadline and the producer slots, end the same way.
		checkFeedConn(t, data, err, st)
	})
}

// checkFeedRing checks that the frames of ring r, from the oldest, are the
// stream's messages of s in order, on one timeline.
func checkFeedRing(t *testing.T, s media.Stream, r *media.Ring, want []media.Frame, requested *bool) {
	t.Helper()
	n := r.Stats().Appended
	if n == 0 {
		return
	}
	// A reader from the oldest frame; a video one waits for a keyframe
	// and asks for one if the ring holds none.
	*requested = false
	rd := r.NewReaderAt(math.MinInt64)
	if *requested {
		rd.Close()
		return
	}
	var expect []media.Frame
	for _, fr := range want {
		if fr.Stream == s {
			expect = append(expect, fr)
		}
	}
	// One producer is one timeline: the ring may move its origin,
	// never the distance between its frames.
	var got0, want0 int64
	first := true
	for j := 0; ; {
		got, _ := next(t, rd)
		for j < len(expect) && !sameFrame(got, expect[j]) {
			j++
		}
		if j == len(expect) {
			t.Fatalf("%s ring frame %d (%s pts %d, %d bytes) is not a message of the stream, in order",
				s, got.Seq, got.Kind, got.PTS, len(got.Payload))
		}
		if first {
			got0, want0, first = got.PTS, expect[j].PTS, false
		} else if uint64(got.PTS)-uint64(got0) != uint64(expect[j].PTS)-uint64(want0) {
			t.Fatalf("%s ring frame %d: pts %d for message pts %d; the first was %d for %d",
				s, got.Seq, got.PTS, expect[j].PTS, got0, want0)
		}
		j++
		if got.Seq == n {
			break
		}
	}
	rd.Close()
}

// checkFeedConn serves data on a socket connection and checks that it ends
// as Serve did, with serveErr and stats st.
func checkFeedConn(t *testing.T, data []byte, serveErr error, st media.FeedStats) {
	t.Helper()
	rings2 := map[media.Stream]*media.Ring{}
	for _, s := range []media.Stream{media.StreamMain, media.StreamSub, media.StreamAudio} {
		r, err := media.NewRing(media.RingConfig{Stream: s, MaxBytes: 8 << 20, MaxFrames: 4096}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rings2[s] = r
	}
	src2, err := media.NewFeedSource(media.FeedSourceConfig{Path: "unused"}, rings2, nil)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := socketPair(t)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = theirs.Write(data)
		theirs.Close()
	}()
	err2 := media.ServeFeedConn(context.Background(), src2, ours)
	ours.Close()
	<-wrote
	for _, e := range append(feedHeaderErrors, media.ErrFeedTruncated) {
		if errors.Is(err2, e) != errors.Is(serveErr, e) {
			t.Fatalf("on a connection: %v, from Serve: %v", err2, serveErr)
		}
	}
	if st2 := src2.Stats(); st2.Frames != st.Frames || st2.Rejected != st.Rejected || st2.Closed != st.Closed {
		t.Fatalf("on a connection: stats %+v, from Serve %+v", st2, st)
	}
}

// BenchmarkFeedIngest measures the socket path from producer to ring: one
// producer writing messages back to back, the source reading, validating and
// appending.
func BenchmarkFeedIngest(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame func(pts int64) media.Frame
	}{
		{"audio-320B", func(pts int64) media.Frame { return audioFrame(pts) }},
		{"video-10KB", func(pts int64) media.Frame { return pFrame(pts, 10_000) }},
		{"video-100KB", func(pts int64) media.Frame { return pFrame(pts, 100_000) }},
		{"video-1MB", func(pts int64) media.Frame { return pFrame(pts, media.MaxVideoPayload) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := bc.frame(0)
			rings := feedRings(b, f.Stream)
			h := startFeed(b, media.FeedSourceConfig{}, rings)
			c := dialFeed(b, h.path)
			hdr := make([]byte, 0, media.FeedHeaderSize)
			// Declared once so that the producer side allocates nothing and
			// allocs/op is what the source costs: the ring's copy.
			var vec [2][]byte
			var bufs net.Buffers
			b.SetBytes(int64(media.FeedHeaderSize + len(f.Payload)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				fh := media.FeedHeader{Stream: f.Stream, Kind: f.Kind, Codec: f.Codec,
					PTS: int64(i) * 40000, Length: uint32(len(f.Payload))}
				hdr, _ = fh.AppendBinary(hdr[:0])
				vec[0], vec[1] = hdr, f.Payload
				bufs = vec[:]
				if _, err := bufs.WriteTo(c); err != nil {
					b.Fatal(err)
				}
			}
			for h.src.Stats().Frames < uint64(b.N) {
				time.Sleep(50 * time.Microsecond)
			}
			b.StopTimer()
			if st := h.src.Stats(); st.Rejected != 0 || st.Closed.Total() != 0 {
				b.Fatalf("stats %+v", st)
			}
		})
	}
}
