package p2p

import (
	"errors"
	"log/slog"
	"testing"
)

func TestDecodeCommand(t *testing.T) {
	tests := []struct {
		in      string
		req     int64
		wantErr error
	}{
		{`{"cmd":"video_stop","req":3}`, 3, nil},
		{`{"cmd":"clarity_set","value":1,"req":4}`, 4, nil},
		{`{"cmd":"clarity_set","value":"0","req":5}`, 5, nil},
		{`{"cmd":"clarity_set","value":2,"req":6}`, 6, ErrBadValue},
		{`{"cmd":"clarity_set","req":7}`, 7, ErrMissingField},
		{`{"cmd":"fly","req":8}`, 8, ErrUnknownCommand},
		{`{"req":9}`, 9, ErrMissingField},
		{`{not json`, 0, ErrMalformed},
	}
	for _, tc := range tests {
		c, err := DecodeCommand([]byte(tc.in))
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) || c.Req != tc.req {
			t.Errorf("DecodeCommand(%s) = req %d, %v; want req %d, %v", tc.in, c.Req, err, tc.req, tc.wantErr)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{`{"cmd":"video_stop","req":3}`, `{"cmd":"clarity_set","value":"1","req":4}`, `{`, `{"req":-1,"value":[1]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err == nil && c.Cmd == CmdClaritySet {
			if v, err := c.Clarity(); err != nil || (v != 0 && v != 1) {
				t.Fatalf("accepted clarity_set with value %s", c.Value)
			}
		}
	})
}

func TestEventQueueDropsWhenFull(t *testing.T) {
	release := make(chan struct{})
	var got []EventType
	q := newEventQueue(func(e Event) { <-release; got = append(got, e.Type) }, 2, slog.New(slog.DiscardHandler))
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); q.run(stop) }()
	q.emit(EventLiveVideoStart, "s", 0)
	// The first event may be held by the handler or still queued; either
	// way no more than 3 fit.
	for range 5 {
		q.emit(EventLiveVideoStop, "s", 0)
	}
	close(release)
	close(stop)
	<-done
	if q.dropped.Load() < 2 || len(got)+int(q.dropped.Load()) != 6 || got[0] != EventLiveVideoStart {
		t.Fatalf("delivered %v, dropped %d", got, q.dropped.Load())
	}
}
