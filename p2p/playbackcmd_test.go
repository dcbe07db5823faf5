package p2p

import (
	"errors"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

func TestDecodeOfferReplay(t *testing.T) {
	for _, tc := range []struct {
		msg     string
		replay  bool
		wantErr error
	}{
		{`{"sdp":"v=0","replay":{"is_replay":1,"start_time":1796083200,"end_time":1796083260}}`, true, nil},
		{`{"sdp":"v=0","replay":{"is_replay":0,"start_time":5}}`, false, nil},
		{`{"sdp":"v=0"}`, false, nil},
		{`{"sdp":"v=0","replay":{"is_replay":1,"start_time":1796083200,"end_time":1796083200}}`, false, ErrBadValue},
		{`{"sdp":"v=0","replay":{"is_replay":1,"start_time":1796083200000,"end_time":1796083260000}}`, false, ErrBadValue},
		{`{"sdp":"v=0","replay":{"is_replay":1,"start_time":1796083200,"end_time":1796183200}}`, false, ErrBadValue},
		{`{"sdp":"v=0","replay":{"is_replay":3}}`, false, ErrBadValue},
		{`{"sdp":"v=0","replay":{"is_replay":"1"}}`, false, ErrMalformed},
	} {
		o, err := DecodeOffer([]byte(tc.msg))
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("DecodeOffer(%s): %v, want %v", tc.msg, err, tc.wantErr)
			continue
		}
		if err == nil && o.Replay.On() != tc.replay {
			t.Errorf("DecodeOffer(%s): replay %v, want %v", tc.msg, o.Replay.On(), tc.replay)
		}
	}
}

func TestDecodePlaybackCommand(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr error
	}{
		{`{"cmd":"playback_query_month","value":{"year":2026,"month":12},"req":1}`, nil},
		{`{"cmd":"playback_query_month","value":{"year":2026,"month":12,"day":3},"req":1}`, ErrBadValue},
		{`{"cmd":"playback_query_day","value":{"year":2024,"month":2,"day":29},"req":1}`, nil},
		{`{"cmd":"playback_query_day","value":{"year":2026,"month":2,"day":29},"req":1}`, ErrBadValue},
		{`{"cmd":"playback_query_day","value":{"year":1999,"month":1,"day":1},"req":1}`, ErrBadValue},
		{`{"cmd":"playback_query_day","req":1}`, ErrMissingField},
		{`{"cmd":"playback_seek","value":1796083200,"req":1}`, nil},
		{`{"cmd":"playback_seek","value":"1796083200","req":1}`, nil},
		{`{"cmd":"playback_seek","value":1.5,"req":1}`, ErrBadValue},
		{`{"cmd":"playback_seek","value":99,"req":1}`, ErrBadValue},
		{`{"cmd":"playback_speed","value":8,"req":1}`, nil},
		{`{"cmd":"playback_speed","value":16,"req":1}`, ErrBadValue},
		{`{"cmd":"playback_speed","value":-1,"req":1}`, ErrBadValue},
		{`{"cmd":"playback_pause","req":1}`, nil},
		{`{"cmd":"playback_rewind","req":1}`, ErrUnknownCommand},
	} {
		_, err := DecodeCommand([]byte(tc.in))
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("DecodeCommand(%s): %v, want %v", tc.in, err, tc.wantErr)
		}
	}
}

func TestDecodeDownloadRequest(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr error
	}{
		{`{"cmd":"start","start":1796083200,"end":1796083500}`, nil},
		{`{"cmd":"start","start":1796083200,"end":1796083100}`, ErrBadValue},
		{`{"cmd":"start"}`, ErrBadValue},
		{`{"cmd":"pause"}`, nil},
		{`{"cmd":"resume"}`, nil},
		{`{"cmd":"cancel"}`, nil},
		{`{"cmd":"fly"}`, ErrUnknownCommand},
		{`{}`, ErrMissingField},
		{`[`, ErrMalformed},
	} {
		_, err := DecodeDownloadRequest([]byte(tc.in))
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("DecodeDownloadRequest(%s): %v, want %v", tc.in, err, tc.wantErr)
		}
	}
}

// TestPlayClock: output PTS follow the speed and only go forward across
// re-anchoring; frames are due at the scaled distance.
func TestPlayClock(t *testing.T) {
	var c playClock
	frame := func(ms int64) media.Frame { return media.Frame{PTS: ms * 1000} }
	c.anchor(frame(1000), 1, 0)
	if out := c.sentFrame(frame(1000)).PTS; out != 0 {
		t.Fatalf("first frame out %d", out)
	}
	if out := c.sentFrame(frame(1040)).PTS; out != 40_000 {
		t.Fatalf("second frame out %d", out)
	}
	c.anchor(frame(1080), 4, c.step(frame(1080), 4))
	if d := c.due(frame(1120)).Sub(c.wall); d != 10*time.Millisecond {
		t.Fatalf("at speed 4, 40 ms of recording due after %v", d)
	}
	if out := c.sentFrame(frame(1080)).PTS; out != 50_000 {
		t.Fatalf("after the speed change out %d, want 50000", out)
	}
	// A seek back: the output goes on forward.
	c.anchor(frame(0), 1, seekGap)
	if out := c.sentFrame(frame(0)).PTS; out != 90_000 {
		t.Fatalf("after a seek back out %d, want 90000", out)
	}
}
