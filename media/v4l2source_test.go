//go:build v4l2

package media

import (
	"bytes"
	"context"
	"errors"
	"image"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pion/mediadevices/pkg/frame"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
	"go.uber.org/goleak"
)

func newV4L2TestRing(t *testing.T, frames int, onKey func()) *Ring {
	t.Helper()
	r, err := NewRing(RingConfig{Stream: StreamMain, Codec: CodecH264, MaxBytes: 8 << 20, MaxFrames: frames,
		OnKeyframeRequest: onKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestV4L2SourceConfig(t *testing.T) {
	ring := newV4L2TestRing(t, 16, nil)
	tests := []struct {
		name string
		cfg  V4L2SourceConfig
		want V4L2SourceConfig
		err  error
	}{
		{"defaults", V4L2SourceConfig{},
			V4L2SourceConfig{Device: "/dev/video0", FPS: 25, V4L2Config: V4L2Config{Width: 640, Height: 480, BitrateKbps: 537, GOP: 50}}, nil},
		{"bitrate scales with the picture", V4L2SourceConfig{FPS: 30, V4L2Config: V4L2Config{Width: 1920, Height: 1080}},
			V4L2SourceConfig{Device: "/dev/video0", FPS: 30, V4L2Config: V4L2Config{Width: 1920, Height: 1080, BitrateKbps: 4096, GOP: 60}}, nil},
		{"small picture gets the floor", V4L2SourceConfig{Device: "/dev/v4l/by-id/cam", FPS: 5, V4L2Config: V4L2Config{Width: 160, Height: 120}},
			V4L2SourceConfig{Device: "/dev/v4l/by-id/cam", FPS: 5, V4L2Config: V4L2Config{Width: 160, Height: 120, BitrateKbps: 128, GOP: 10}}, nil},
		{"explicit values kept", V4L2SourceConfig{FPS: 15, V4L2Config: V4L2Config{Width: 1280, Height: 720, BitrateKbps: 900, GOP: 30}},
			V4L2SourceConfig{Device: "/dev/video0", FPS: 15, V4L2Config: V4L2Config{Width: 1280, Height: 720, BitrateKbps: 900, GOP: 30}}, nil},
		{"odd width", V4L2SourceConfig{V4L2Config: V4L2Config{Width: 641, Height: 480}}, V4L2SourceConfig{}, ErrV4L2SourceConfig},
		{"height without width", V4L2SourceConfig{V4L2Config: V4L2Config{Height: 480}}, V4L2SourceConfig{}, ErrV4L2SourceConfig},
		{"huge", V4L2SourceConfig{V4L2Config: V4L2Config{Width: 16384, Height: 480}}, V4L2SourceConfig{}, ErrV4L2SourceConfig},
		{"fps", V4L2SourceConfig{FPS: 500}, V4L2SourceConfig{}, ErrV4L2SourceConfig},
		{"negative bitrate", V4L2SourceConfig{V4L2Config: V4L2Config{BitrateKbps: -1}}, V4L2SourceConfig{}, ErrV4L2SourceConfig},
		{"keyframe interval", V4L2SourceConfig{V4L2Config: V4L2Config{GOP: 100000}}, V4L2SourceConfig{}, ErrV4L2SourceConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewV4L2Source(tt.cfg, ring, nil)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && s.Config() != tt.want {
				t.Fatalf("config = %+v, want %+v", s.Config(), tt.want)
			}
		})
	}

	audio, err := NewRing(RingConfig{Stream: StreamAudio, MaxBytes: 1 << 16, MaxFrames: 16}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewV4L2Source(V4L2SourceConfig{}, audio, nil); !errors.Is(err, ErrWrongStream) {
		t.Fatalf("audio ring: err = %v, want ErrWrongStream", err)
	}
	if _, err := NewV4L2Source(V4L2SourceConfig{}, nil, nil); !errors.Is(err, ErrV4L2SourceConfig) {
		t.Fatalf("no ring: err = %v, want ErrV4L2SourceConfig", err)
	}
}

func TestChooseRawMode(t *testing.T) {
	mode := func(w, h int, f frame.Format, fps float32) prop.Media {
		return prop.Media{Video: prop.Video{Width: w, Height: h, FrameFormat: f, FrameRate: fps}}
	}
	// What vivid's webcam input offers at 640x480, plus modes a USB camera has.
	vivid := []prop.Media{
		mode(640, 480, frame.FormatYUYV, 25), mode(640, 480, frame.FormatYUYV, 15), mode(640, 480, frame.FormatYUYV, 1),
		mode(640, 480, frame.FormatNV12, 25), mode(640, 480, frame.FormatZ16, 25),
		mode(1280, 720, frame.FormatYUYV, 10),
	}
	usb := []prop.Media{
		mode(1920, 1080, frame.FormatYUYV, 5), mode(1920, 1080, frame.FormatMJPEG, 30),
		mode(640, 480, frame.FormatMJPEG, 30), mode(640, 480, frame.FormatYUYV, 30),
	}
	tests := []struct {
		name  string
		props []prop.Media
		w, h  int
		fps   float32
		want  prop.Media
		err   error
	}{
		{"exact rate, cheapest format", vivid, 640, 480, 25, mode(640, 480, frame.FormatNV12, 25), nil},
		{"nearest rate", vivid, 640, 480, 20, mode(640, 480, frame.FormatNV12, 25), nil},
		{"rate below", vivid, 640, 480, 12, mode(640, 480, frame.FormatYUYV, 15), nil},
		{"rate beats format", usb, 1920, 1080, 25, mode(1920, 1080, frame.FormatMJPEG, 30), nil},
		{"format breaks the tie", usb, 640, 480, 30, mode(640, 480, frame.FormatYUYV, 30), nil},
		{"no rate reported takes the one asked", []prop.Media{mode(800, 600, frame.FormatI420, 0)}, 800, 600, 20,
			mode(800, 600, frame.FormatI420, 20), nil},
		{"size not offered", vivid, 1920, 1080, 25, prop.Media{}, ErrV4L2Device},
		{"depth only", []prop.Media{mode(640, 480, frame.FormatZ16, 30)}, 640, 480, 30, prop.Media{}, ErrV4L2Device},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chooseRawMode(tt.props, tt.w, tt.h, tt.fps)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if got.Video != tt.want.Video {
				t.Fatalf("got %+v, want %+v", got.Video, tt.want.Video)
			}
		})
	}
}

// syntheticCamera is a video.Reader of moving 4:2:0 pictures, like a camera
// after mediadevices' conversion, that calls hook before picture i is
// returned and ends with io.EOF after n pictures.
func syntheticCamera(w, h, n int, hook func(i int)) video.Reader {
	i := 0
	return video.ReaderFunc(func() (image.Image, func(), error) {
		if i == n {
			return nil, func() {}, io.EOF
		}
		hook(i)
		img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
		for y := range h {
			for x := range w {
				img.Y[y*img.YStride+x] = uint8(x + y + 4*i)
			}
		}
		for k := range img.Cb {
			img.Cb[k], img.Cr[k] = uint8(k+i), uint8(128-k)
		}
		i++
		return img, func() {}, nil
	})
}

// TestV4L2EncodeX264 runs real x264 over synthetic pictures into a ring whose
// keyframe requests are wired to the source, as ipcd wires them.
func TestV4L2EncodeX264(t *testing.T) {
	defer goleak.VerifyNone(t)
	const (
		w, h    = 320, 240
		n       = 40
		joinAt  = 15 // a reader joins when the first keyframe is long evicted
		ringLen = 8
	)
	var s *V4L2Source
	ring := newV4L2TestRing(t, ringLen, func() { s.RequestKeyframe(StreamMain) })
	s, err := NewV4L2Source(V4L2SourceConfig{FPS: 25, V4L2Config: V4L2Config{Width: w, Height: h, GOP: 1000}}, ring, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.clock = newPTSClock(0)

	all := ring.NewReader() // asks for a keyframe: the encoder's first picture is one anyway
	defer all.Close()
	var got []Frame
	drain := func() {
		for {
			f, skipped, ok, err := all.TryNext()
			if err != nil || skipped != 0 {
				t.Errorf("collector: skipped %d, err %v", skipped, err)
				return
			}
			if !ok {
				return
			}
			got = append(got, f)
		}
	}
	var late *Reader
	var lateFirst Frame
	start := time.Now()
	cam := syntheticCamera(w, h, n, func(i int) {
		drain()
		if late != nil && lateFirst.Seq == 0 {
			f, skipped, ok, err := late.TryNext()
			if err != nil || skipped != 0 {
				t.Errorf("late reader: skipped %d, err %v", skipped, err)
			}
			if ok {
				lateFirst = f
			}
		}
		if i == joinAt {
			// The pictures come faster than a camera's: the collector's
			// request is less than KeyframeRequestInterval old and would
			// coalesce this one. The gate is the ring's business, tested
			// there; this test is about the source.
			ring.kf.mu.Lock()
			ring.kf.last = time.Time{}
			ring.kf.mu.Unlock()
			late = ring.NewReader()
		}
	})
	if err := s.encode(cam, w, h); !errors.Is(err, io.EOF) {
		t.Fatalf("encode: %v, want io.EOF at the end of the pictures", err)
	}
	drain()
	defer late.Close()

	if len(got) != n {
		t.Fatalf("got %d frames, want %d", len(got), n)
	}
	var keys []int
	for i, f := range got {
		if f.Codec != CodecH264 || f.Stream != StreamMain {
			t.Fatalf("frame %d: %s on %s", i, f.Codec, f.Stream)
		}
		if (f.Kind == KindI) != IsH264Keyframe(f.Payload) {
			t.Fatalf("frame %d: kind %s but IDR=%v", i, f.Kind, IsH264Keyframe(f.Payload))
		}
		if f.Kind == KindI {
			keys = append(keys, i)
			if !H264HasParameterSets(f.Payload) {
				t.Fatalf("keyframe %d without SPS/PPS", i)
			}
		}
		if !bytes.HasPrefix(f.Payload, []byte{0, 0, 0, 1}) {
			t.Fatalf("frame %d is not normalised Annex-B: % x", i, f.Payload[:8])
		}
		if i > 0 && f.PTS <= got[i-1].PTS {
			t.Fatalf("PTS not increasing at %d: %d after %d", i, f.PTS, got[i-1].PTS)
		}
		if f.Timestamp < start.UnixMilli() || f.Timestamp > time.Now().UnixMilli() {
			t.Fatalf("frame %d timestamp %d outside the run", i, f.Timestamp)
		}
	}
	// Picture joinAt was already being encoded when the reader joined, so
	// the forced IDR is the next one; no other IDR within 1000 frames.
	if want := []int{0, joinAt + 1}; len(keys) != 2 || keys[0] != want[0] || keys[1] != want[1] {
		t.Fatalf("keyframes at %v, want %v", keys, want)
	}
	if lateFirst.Kind != KindI || lateFirst.Seq != got[joinAt+1].Seq {
		t.Fatalf("late reader started at frame seq %d (%s), want the forced keyframe, seq %d",
			lateFirst.Seq, lateFirst.Kind, got[joinAt+1].Seq)
	}
	st := s.Stats()
	if st.Appended != n || st.Keyframes != 2 || st.KeyframesForced != 2 || st.KeyframeRequests != 2 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	var total uint64
	for _, f := range got {
		total += uint64(len(f.Payload))
	}
	if st.Bytes != total {
		t.Fatalf("stats bytes %d, frames hold %d", st.Bytes, total)
	}
}

// Synthetic H.264 NAL units: only the header and the first slice-header bit
// matter to the splitter.
const (
	v4l2NalSPS = "\x67\x42\xc0\x1e\xd9\x00\xa0"
	v4l2NalPPS = "\x68\xcb\x8c\xb2"
	v4l2NalIDR = "\x65\x88\x84\x21\xa0"
	v4l2NalP   = "\x41\x9a\x02\x03\x04"
	v4l2NalP2  = "\x41\x4a\x05\x06\x07" // a further slice of the same picture
	v4l2NalAUD = "\x09\xf0"
)

func v4l2AnnexB(start string, nals ...string) []byte {
	var b []byte
	for _, n := range nals {
		b = append(b, start...)
		b = append(b, n...)
	}
	return b
}

// TestV4L2NativeBuffers feeds the sink buffers as an encoding device
// delivers them.
func TestV4L2NativeBuffers(t *testing.T) {
	ring := newV4L2TestRing(t, 64, nil)
	s, err := NewV4L2Source(V4L2SourceConfig{}, ring, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.clock = newPTSClock(0)
	sink := s.newBufferSink(CodecH264)
	rd := ring.NewReader()
	defer rd.Close()

	at := time.Now()
	buffers := [][]byte{
		v4l2AnnexB("\x00\x00\x01", v4l2NalP),                                           // joined mid-GOP: skipped
		v4l2AnnexB("\x00\x00\x00\x01", v4l2NalAUD, v4l2NalSPS, v4l2NalPPS, v4l2NalIDR), // keyframe, AUD dropped
		append(v4l2AnnexB("\x00\x00\x01", v4l2NalP, v4l2NalP2), 0, 0),                  // two slices, trailing zeros
		v4l2AnnexB("\x00\x00\x00\x01", v4l2NalP, v4l2NalP),                             // two pictures in one buffer
		v4l2AnnexB("\x00\x00\x00\x01", v4l2NalIDR),                                     // keyframe relying on earlier SPS/PPS
		{0xff, 0xfe}, // no start code at all
	}
	for i, b := range buffers {
		if err := sink.push(b, at.Add(time.Duration(i)*40*time.Millisecond)); err != nil {
			t.Fatalf("buffer %d: %v", i, err)
		}
	}
	want := []struct {
		kind    Kind
		payload []byte
	}{
		{KindI, v4l2AnnexB("\x00\x00\x00\x01", v4l2NalSPS, v4l2NalPPS, v4l2NalIDR)},
		{KindP, v4l2AnnexB("\x00\x00\x00\x01", v4l2NalP, v4l2NalP2)},
		{KindP, v4l2AnnexB("\x00\x00\x00\x01", v4l2NalP)},
		{KindP, v4l2AnnexB("\x00\x00\x00\x01", v4l2NalP)},
		{KindI, v4l2AnnexB("\x00\x00\x00\x01", v4l2NalSPS, v4l2NalPPS, v4l2NalIDR)},
	}
	var prev int64
	for i, w := range want {
		f, _, ok, err := rd.TryNext()
		if !ok || err != nil {
			t.Fatalf("frame %d missing (err %v)", i, err)
		}
		if f.Kind != w.kind || !bytes.Equal(f.Payload, w.payload) {
			t.Fatalf("frame %d: %s % x, want %s % x", i, f.Kind, f.Payload, w.kind, w.payload)
		}
		if f.PTS <= prev {
			t.Fatalf("frame %d: PTS %d after %d", i, f.PTS, prev)
		}
		prev = f.PTS
	}
	if _, _, ok, _ := rd.TryNext(); ok {
		t.Fatal("more frames than pictures")
	}
	if st := s.Stats(); st.Appended != 5 || st.Keyframes != 2 || st.Dropped != 1 {
		t.Fatalf("stats %+v", st)
	}

	// A frame the ring rejects breaks the pictures after it: the sink waits
	// for a keyframe and asks the encoder for one at once.
	big := v4l2AnnexB("\x00\x00\x00\x01", v4l2NalP+strings.Repeat("\x5a", MaxVideoPayload))
	if err := sink.push(big, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := sink.push(v4l2AnnexB("\x00\x00\x00\x01", v4l2NalP), time.Now()); err != nil {
		t.Fatal(err)
	}
	if !s.keyReq.Load() {
		t.Fatal("no keyframe requested after a rejected frame")
	}
	if st := s.Stats(); st.Appended != 5 || st.Dropped != 3 {
		t.Fatalf("after rejection: stats %+v", st)
	}
	if st := ring.Stats(); st.Rejected.VideoTooLarge != 1 {
		t.Fatalf("ring rejections %+v", st.Rejected)
	}

	ring.Close()
	if err := sink.push(v4l2AnnexB("\x00\x00\x00\x01", v4l2NalIDR), time.Now()); !errors.Is(err, ErrRingClosed) {
		t.Fatalf("closed ring: %v", err)
	}
}

// TestV4L2RunRetries checks that Run keeps retrying a device that is not a
// camera, counts the failures, and ends promptly with ctx.
func TestV4L2RunRetries(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, dev := range []string{"/nonexistent/video9", "/dev/null"} {
		t.Run(dev, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil)) // read only after Run returned
			ring := newV4L2TestRing(t, 16, nil)
			s, err := NewV4L2Source(V4L2SourceConfig{Device: dev}, ring, log)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			deadline := time.Now().Add(5 * time.Second)
			for s.Stats().Failures == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Run did not end with its context")
			}
			if st := s.Stats(); st.Failures == 0 || st.Opens != 0 {
				t.Fatalf("stats %+v", st)
			}
			if !bytes.Contains(logs.Bytes(), []byte("v4l2 capture failed; retrying")) {
				t.Fatalf("no warning logged:\n%s", logs.String())
			}
		})
	}
}

// TestV4L2DropSummary: access units the ring refuses, and those skipped
// until the next keyframe after them, are summarized in one line per
// interval, never one per access unit.
func TestV4L2DropSummary(t *testing.T) {
	var logs bytes.Buffer
	ring := newV4L2TestRing(t, 64, nil)
	s, err := NewV4L2Source(V4L2SourceConfig{}, ring, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.clock = newPTSClock(0)
	sink := s.newBufferSink(CodecH264)
	defer sink.close()
	key := v4l2AnnexB("\x00\x00\x00\x01", v4l2NalSPS, v4l2NalPPS, v4l2NalIDR)
	big := v4l2AnnexB("\x00\x00\x00\x01", v4l2NalP+strings.Repeat("\x5a", MaxVideoPayload))
	for range 3 {
		for _, b := range [][]byte{key, big, v4l2AnnexB("\x00\x00\x00\x01", v4l2NalP)} {
			if err := sink.push(b, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := s.Stats(); st.Appended != 3 || st.Dropped != 6 {
		t.Fatalf("stats %+v", st)
	}
	if n := strings.Count(logs.String(), "v4l2 source dropped access units"); n != 1 {
		t.Fatalf("%d summary lines for 3 rejections in one interval:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "dropped=1 total_dropped=1") {
		t.Fatalf("first summary does not count the first rejection:\n%s", logs.String())
	}
}
