package viewer

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// offeredOrder returns the video codecs of an offer in the order of the
// m=video line's payload types, each once.
func offeredOrder(t *testing.T, sdp string) []videoCodec {
	t.Helper()
	var formats []string
	names := map[string]videoCodec{}
	video := false
	for line := range strings.SplitSeq(sdp, "\r\n") {
		if strings.HasPrefix(line, "m=") {
			video = strings.HasPrefix(line, "m=video")
			if video {
				formats = strings.Fields(line)[3:]
			}
		}
		if rest, ok := strings.CutPrefix(line, "a=rtpmap:"); ok && video {
			pt, enc, _ := strings.Cut(rest, " ")
			name, _, _ := strings.Cut(enc, "/")
			names[pt] = parseCodec(name)
		}
	}
	var out []videoCodec
	for _, pt := range formats {
		if c := names[pt]; c != codecUnknown && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func TestWatchCodecs(t *testing.T) {
	broker := mqtttest.Embedded(t)
	tests := []struct {
		name       string
		fake       fakeOptions
		stream     string
		codecs     []string
		offer      []videoCodec // what the offer must list, in order
		wantStream string       // the stream the device sends; "" when refused
		wantCodec  string
		w, h       int
	}{
		{name: "h265 main, default codecs", fake: fakeOptions{mainH265: true},
			offer: []videoCodec{codecH264, codecH265}, wantStream: "main", wantCodec: "H265", w: 640, h: 360},
		{name: "h265 main, h264 only: falls back to sub", fake: fakeOptions{mainH265: true}, codecs: []string{"h264"},
			offer: []videoCodec{codecH264}, wantStream: "sub", wantCodec: "H264", w: 320, h: 180},
		{name: "sub asked, h265 only: falls back to h265 main", fake: fakeOptions{mainH265: true}, stream: "sub", codecs: []string{"h265"},
			offer: []videoCodec{codecH265}, wantStream: "main", wantCodec: "H265", w: 640, h: 360},
		{name: "h265 preferred, h264 device", codecs: []string{"H265", "h264"},
			offer: []videoCodec{codecH265, codecH264}, wantStream: "main", wantCodec: "H264", w: 640, h: 360},
		{name: "h265 only, h264 device: no common codec", codecs: []string{"h265"},
			offer: []videoCodec{codecH265}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := goroutines()
			dev := startFakeDevice(t, broker, tt.fake)
			c := newTestClient(t, broker, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// The session ends after a number of frames rather than a time,
			// so that a loaded machine does not make it fail.
			const frames = 6
			var rec recorder
			opt := rec.options(WatchOptions{Stream: tt.stream, Codecs: tt.codecs})
			record := opt.OnVideo
			n := 0
			opt.OnVideo = func(au []byte, key bool) {
				record(au, key)
				if n++; n == frames {
					cancel()
				}
			}
			res, err := c.Watch(ctx, opt)

			select {
			case offer := <-dev.offers:
				if got := offeredOrder(t, offer.SDP); !slices.Equal(got, tt.offer) {
					t.Errorf("offer lists %v, want %v", got, tt.offer)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("device got no offer")
			}
			if tt.wantStream == "" {
				var refused *RefusedError
				if !errors.As(err, &refused) || refused.CloseReason != int(p2p.CloseCodec) || refused.Code != -101 {
					t.Fatalf("Watch: %v, want a refusal with close_reason 1, code -101", err)
				}
				if res.Codec != "" || res.VideoFrames != 0 {
					t.Errorf("refused session: Codec %q, %d frames", res.Codec, res.VideoFrames)
				}
			} else {
				if err != nil {
					t.Fatalf("Watch: %v", err)
				}
				st := dev.streams[<-dev.picked]
				if st.name != tt.wantStream || res.Codec != tt.wantCodec || st.codec.String() != tt.wantCodec {
					t.Errorf("got the %s stream (%s), Codec %q; want %s, %s", st.name, st.codec, res.Codec, tt.wantStream, tt.wantCodec)
				}
				if len(rec.video) < frames || !res.FirstKey || res.Skipped != 0 {
					t.Fatalf("%d frames, FirstKey %v, Skipped %d", len(rec.video), res.FirstKey, res.Skipped)
				}
				for i, au := range rec.video {
					if !bytes.Equal(au, st.aus[i]) {
						t.Fatalf("access unit %d differs from what the device sent: %d bytes, sent %d", i, len(au), len(st.aus[i]))
					}
					if rec.keys[i] != isKeyAU(st.codec, au) {
						t.Errorf("access unit %d: key = %v", i, rec.keys[i])
					}
				}
				if w, h, ok := VideoSize(rec.video[0], res.Codec); !ok || w != tt.w || h != tt.h {
					t.Errorf("first keyframe is %dx%d %v, want %dx%d", w, h, ok, tt.w, tt.h)
				}
			}
			_ = c.Close()
			dev.close()
			checkNoLeaks(t, before)
		})
	}
}

func TestParseCodecs(t *testing.T) {
	tests := []struct {
		in      []string
		want    []videoCodec
		wantErr bool
	}{
		{nil, []videoCodec{codecH264, codecH265}, false},
		{[]string{"h265"}, []videoCodec{codecH265}, false},
		{[]string{"HEVC", "avc"}, []videoCodec{codecH265, codecH264}, false},
		{[]string{"vp8"}, nil, true},
		{[]string{"h264", "H264"}, nil, true},
		{[]string{""}, nil, true},
	}
	for _, tt := range tests {
		got, err := parseCodecs(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("parseCodecs(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("parseCodecs(%q): %v is not ErrConfig", tt.in, err)
		}
	}
}
