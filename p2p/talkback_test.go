package p2p

import (
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// blockingSink is a speaker whose Write waits until release is closed, as
// a blocking write to a FIFO whose reader stopped would.
type blockingSink struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	writes  int
}

func (b *blockingSink) Write(p []byte) (int, error) {
	b.writes++
	b.once.Do(func() { close(b.entered) })
	<-b.release
	return len(p), nil
}

func talkService(mode TalkbackMode, sink Speaker) *Service {
	log := slog.New(slog.DiscardHandler)
	return &Service{
		cfg:     Config{Talkback: mode},
		log:     log,
		speaker: &speakerGate{sink: sink},
		events:  newEventQueue(nil, 1, log),
	}
}

func talkSession(svc *Service, id string) *session {
	return newSession(svc, Header{SessionID: id, From: "app"}, Offer{}, svc.log)
}

// within runs f and fails the test if it does not return in time.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s waited on the speaker sink", what)
	}
}

// TestSpeakerNeverWaitsOnTheSink: while a write is stuck in the sink, the
// speaker requests the service loop (312) and the session loops (control
// channel) serve are answered at once.
func TestSpeakerNeverWaitsOnTheSink(t *testing.T) {
	sink := &blockingSink{entered: make(chan struct{}), release: make(chan struct{})}
	svc := talkService(TalkbackExplicit, sink)
	a, b := talkSession(svc, "a"), talkSession(svc, "b")
	if res, _ := a.speakerOn(); res != ResOK {
		t.Fatalf("a speaker_start: res %d", res)
	}
	var wg sync.WaitGroup
	var ok bool
	var err error
	wg.Go(func() { ok, err = svc.speaker.write(a, make([]byte, talkChunk)) })
	<-sink.entered

	within(t, "a second talker's speaker_start", func() {
		if res, _ := b.speakerOn(); res != ResSpeakerInUse {
			t.Errorf("b speaker_start while a holds it: res %d, want %d", res, ResSpeakerInUse)
		}
	})
	within(t, "the holder's speaker_stop", func() {
		if res, _ := a.speakerOff(); res != ResOK {
			t.Errorf("a speaker_stop: res %d", res)
		}
	})
	within(t, "speaker_start of a free speaker", func() {
		if res, _ := b.speakerOn(); res != ResOK {
			t.Errorf("b speaker_start after a stopped: res %d", res)
		}
	})
	close(sink.release)
	wg.Wait()
	if !ok || err != nil {
		t.Fatalf("the write begun while a held the speaker: ok %v, err %v", ok, err)
	}
	// a lost the speaker: its late chunks are not written.
	if ok, _ := svc.speaker.write(a, make([]byte, talkChunk)); ok || sink.writes != 1 {
		t.Fatalf("a wrote after losing the speaker: ok %v, %d sink writes", ok, sink.writes)
	}
}

type okSink struct{}

func (okSink) Write(p []byte) (int, error) { return len(p), nil }

// TestMayTalk: who gets the speaker by sending audio, per talkback mode.
func TestMayTalk(t *testing.T) {
	for _, tt := range []struct {
		mode TalkbackMode
		auto bool
	}{{TalkbackUnknown, true}, {TalkbackAuto, true}, {TalkbackExplicit, false}} {
		t.Run(tt.mode.String(), func(t *testing.T) {
			svc := talkService(tt.mode, okSink{})
			a, b := talkSession(svc, "a"), talkSession(svc, "b")
			if got := a.mayTalk(); got != tt.auto {
				t.Fatalf("audio on a free speaker: %v, want %v", got, tt.auto)
			}
			if tt.auto != svc.speaker.holds(a) {
				t.Fatalf("a holds the speaker: %v, want %v", svc.speaker.holds(a), tt.auto)
			}
			if res, _ := a.speakerOn(); res != ResOK {
				t.Fatalf("a speaker_start: res %d", res)
			}
			if b.mayTalk() {
				t.Fatal("b's audio went to the speaker a holds")
			}
			if res, _ := b.speakerOn(); res != ResSpeakerInUse {
				t.Fatalf("b speaker_start: res %d, want %d", res, ResSpeakerInUse)
			}
			// a gives the speaker back: its audio does not take it again,
			// b's does in auto mode.
			a.speakerOff()
			if a.mayTalk() {
				t.Fatal("a took the speaker back by talking after speaker_stop")
			}
			if got := b.mayTalk(); got != tt.auto {
				t.Fatalf("b's audio after a stopped: %v, want %v", got, tt.auto)
			}
		})
	}
}

func TestParseTalkbackMode(t *testing.T) {
	for _, m := range []TalkbackMode{TalkbackAuto, TalkbackExplicit} {
		if got, err := ParseTalkbackMode(m.String()); err != nil || got != m {
			t.Errorf("ParseTalkbackMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseTalkbackMode("always"); !errors.Is(err, ErrBadValue) {
		t.Errorf("ParseTalkbackMode(always): %v, want ErrBadValue", err)
	}
}
