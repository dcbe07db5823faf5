package p2p

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/ipcd/ipcd/media"
)

// eventLog records the events the service raises.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.events)
}

// wait waits for an event; they are delivered by their own goroutine.
func (l *eventLog) wait(t testing.TB, typ EventType, sid string, value int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("event %s %d on %s", typ, value, sid), func() bool { return l.has(typ, sid, value) })
}

func (l *eventLog) has(typ EventType, sid string, value int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Type == typ && e.SessionID == sid && e.Value == value && e.Source == SourceWebRTC {
			return true
		}
	}
	return false
}

// fakeSpeaker is a talkback sink that keeps what it is given.
type fakeSpeaker struct {
	mu sync.Mutex
	n  int
}

func (s *fakeSpeaker) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n += len(p)
	return len(p), nil
}

func (s *fakeSpeaker) written() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// control312 sends a 312 request and returns the result of its reply.
func (h *harness) control312(typ, from, sid string, v int) ControlResult {
	h.t.Helper()
	before := len(h.pub.snapshot())
	if !h.svc.DeliverControl(controlMsg(typ, from, sid, v)) {
		h.t.Fatal("control refused by the inbox")
	}
	var got published
	h.pub.waitFor(h.t, "the 312 reply", func(msgs []published) bool {
		for _, m := range msgs[before:] {
			if m.protocol == ControlProtocol && m.msg.Header.SessionID == sid && m.msg.Header.To == from {
				got = m
				return true
			}
		}
		return false
	})
	if got.msg.Header.Type != typ || got.msg.Header.From != testDev {
		h.t.Fatalf("312 reply header %+v", got.msg.Header)
	}
	var r ControlResult
	if err := json.Unmarshal(got.msg.Msg, &r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

// TestControl312: resolution switches a live session to the sub stream at
// its next keyframe; requests for no such session, bad values and a
// speaker the device does not have are refused with their codes.
func TestControl312(t *testing.T) {
	events := &eventLog{}
	h := newHarness(t, Config{Events: events.add}, nil).start()
	h.feed()
	v := h.dial("app1", "s1", viewerOpts{})
	v.waitMedia(5)
	tests := []struct {
		name, typ, from, sid string
		v, want              int
	}{
		{"no such session", ControlResolution, "app1", "nosuch", 1, ResNoSuchSession},
		{"another app's session", ControlResolution, "app2", "s1", 1, ResNoSuchSession},
		{"bad resolution", ControlResolution, "app1", "s1", 5, ResBadRequest},
		{"no speaker", ControlSpeaker, "app1", "s1", 1, ResUnsupported},
		{"no speaker off", ControlSpeaker, "app1", "s1", 0, ResUnsupported},
		{"bad speaker value", ControlSpeaker, "app1", "s1", 3, ResBadRequest},
		{"unknown type", "pan", "app1", "s1", 1, ResBadRequest},
		{"resolution sub", ControlResolution, "app1", "s1", 1, ResOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := h.control312(tt.typ, tt.from, tt.sid, tt.v); r.ResCode != tt.want {
				t.Fatalf("resCode %d %q, want %d", r.ResCode, r.Message, tt.want)
			}
		})
	}
	waitUntil(t, "the switch to the sub stream", func() bool {
		st := h.sessions()
		return len(st) == 1 && st[0].Stream == media.StreamSub
	})
	v.waitMedia(10)
	events.wait(t, EventLiveVideoClaritySet, "s1", 1)
	if n := h.svc.DroppedEvents(); n != 0 {
		t.Fatalf("%d events dropped", n)
	}
	// Dropped, not answered: malformed, or for another device.
	n := len(h.pub.snapshot())
	h.svc.DeliverControl(json.RawMessage(`{"header":{"type":"resolution","from":"app1","to":"dev1","sessionid":"s1"},"msg":{}}`))
	h.svc.DeliverControl(json.RawMessage(`{"header":{"type":"resolution","from":"app1","to":"dev2","sessionid":"s1"},"msg":{"cmdValue":1}}`))
	h.sync()
	if len(h.pub.snapshot()) != n || h.svc.Drops()[RuleMissingField] != 1 || h.svc.Drops()[RuleNotThisDevice] != 1 {
		t.Fatalf("drops %v, published %s", h.svc.Drops(), h.pub.summary())
	}
}

// TestControl312Streams: a switch to a stream that is not there, or of
// another codec, is refused; the speaker goes to one session at a time.
func TestControl312Streams(t *testing.T) {
	events := &eventLog{}
	sink := &fakeSpeaker{}
	m := &Media{Main: newTestRing(t, media.StreamMain, media.CodecH264), Audio: newTestRing(t, media.StreamAudio, media.CodecPCMU)}
	h := newHarness(t, Config{Speaker: sink, Events: events.add}, m).start()
	sdp := offerSDP(t, viewerAPI(t, nil))
	h.deliver(offerMsg("a", "s1", sdp))
	h.deliver(offerMsg("b", "s2", sdp))
	h.answered("s1")
	h.answered("s2")
	steps := []struct {
		typ, from, sid string
		v, want        int
	}{
		{ControlResolution, "a", "s1", 1, ResNoStream},
		{ControlResolution, "a", "s1", 0, ResOK},
		{ControlSpeaker, "a", "s1", 1, ResOK},
		{ControlSpeaker, "a", "s1", 1, ResOK},
		{ControlSpeaker, "b", "s2", 1, ResSpeakerInUse},
		{ControlSpeaker, "b", "s2", 0, ResOK},
		{ControlSpeaker, "a", "s1", 0, ResOK},
		{ControlSpeaker, "b", "s2", 1, ResOK},
	}
	for i, s := range steps {
		if r := h.control312(s.typ, s.from, s.sid, s.v); r.ResCode != s.want {
			t.Fatalf("step %d: %s %d on %s: resCode %d %q, want %d", i, s.typ, s.v, s.sid, r.ResCode, r.Message, s.want)
		}
	}
	// The session holding the speaker gives it back when it ends.
	h.deliver(disconnectMsg("b", "s2"))
	events.wait(t, EventSpeakerStop, "s2", 0)
	if r := h.control312(ControlSpeaker, "a", "s1", 1); r.ResCode != ResOK {
		t.Fatalf("speaker after the holder left: %+v", r)
	}
	events.wait(t, EventSpeakerStart, "s1", 0)
	events.wait(t, EventSpeakerStop, "s1", 0)

	h2 := newHarness(t, Config{}, &Media{Main: newTestRing(t, media.StreamMain, media.CodecH264), Sub: newTestRing(t, media.StreamSub, media.CodecH265)}).start()
	h2.deliver(offerMsg("a", "s1", sdp))
	h2.answered("s1")
	if r := h2.control312(ControlResolution, "a", "s1", 1); r.ResCode != ResCodecMismatch {
		t.Fatalf("switch to another codec: %+v", r)
	}
}

// dcCommand sends a control channel command and returns its reply.
func (v *viewer) dcCommand(cmd string) CommandReply {
	v.h.t.Helper()
	if err := v.dc.SendText(cmd); err != nil {
		v.h.t.Fatal(err)
	}
	select {
	case s := <-v.dcMsgs:
		var r CommandReply
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			v.h.t.Fatalf("reply %q: %v", s, err)
		}
		return r
	case <-time.After(waitTimeout):
		v.h.t.Fatalf("no reply to %s", cmd)
	}
	return CommandReply{}
}

// TestControlChannel: the control data channel's commands are answered by
// req, raise their events, and pause and resume the media.
func TestControlChannel(t *testing.T) {
	events := &eventLog{}
	h := newHarness(t, Config{Events: events.add}, nil).start()
	h.feed()
	v := h.dial("app1", "s1", viewerOpts{control: true})
	v.waitMedia(5)
	select {
	case <-v.dcOpen:
	case <-time.After(waitTimeout):
		t.Fatal("control channel did not open")
	}
	zero, one := 0, 1
	tests := []struct {
		cmd   string
		req   int64
		res   int
		value *int
		event EventType
	}{
		{`{"cmd":"video_stop","req":1}`, 1, ResOK, nil, EventLiveVideoStop},
		{`{"cmd":"video_start","req":2}`, 2, ResOK, nil, EventLiveVideoStart},
		{`{"cmd":"audio_stop","req":3}`, 3, ResOK, nil, EventLiveAudioStop},
		{`{"cmd":"audio_start","req":4}`, 4, ResOK, nil, EventLiveAudioStart},
		{`{"cmd":"clarity_query","req":5}`, 5, ResOK, &zero, EventLiveVideoClarityQuery},
		{`{"cmd":"speaker_start","req":6}`, 6, ResUnsupported, nil, EventUnknown},
		{`{"cmd":"speaker_stop","req":7}`, 7, ResUnsupported, nil, EventUnknown},
		{`{"cmd":"fly","req":8}`, 8, ResBadRequest, nil, EventUnknown},
		{`{"cmd":"clarity_set","value":"x","req":9}`, 9, ResBadRequest, nil, EventUnknown},
		{`{not json`, 0, ResBadRequest, nil, EventUnknown},
		{`{"cmd":"clarity_set","value":"1","req":10}`, 10, ResOK, nil, EventLiveVideoClaritySet},
	}
	for _, tt := range tests {
		r := v.dcCommand(tt.cmd)
		if r.Req != tt.req || r.Res != tt.res || (tt.value == nil) != (r.Value == nil) || (tt.value != nil && *r.Value != *tt.value) {
			t.Fatalf("%s: reply %+v", tt.cmd, r)
		}
		if tt.event != EventUnknown {
			events.wait(t, tt.event, "s1", map[bool]int{true: 1}[tt.event == EventLiveVideoClaritySet])
		}
	}
	waitUntil(t, "the switch to the sub stream", func() bool { return h.sessions()[0].Stream == media.StreamSub })
	if r := v.dcCommand(`{"cmd":"clarity_query","req":11}`); r.Value == nil || *r.Value != one {
		t.Fatalf("clarity_query after the switch: %+v", r)
	}
	// Paused, video stops while audio goes on (a frame may be in flight);
	// resumed, it starts again.
	v.dcCommand(`{"cmd":"video_stop","req":20}`)
	paused := h.sessions()[0].VideoFrames
	aud := v.audioPackets.Load() + 25
	waitUntil(t, "a second of audio", func() bool { return v.audioPackets.Load() >= aud })
	if n := h.sessions()[0].VideoFrames; n > paused+1 {
		t.Fatalf("%d video frames sent while paused", n-paused)
	}
	v.dcCommand(`{"cmd":"video_start","req":21}`)
	waitUntil(t, "video after video_start", func() bool { return h.sessions()[0].VideoFrames > paused+1 })
}

// TestTalkback: the app's audio reaches the speaker while its session
// holds it.
func TestTalkback(t *testing.T) {
	sink := &fakeSpeaker{}
	h := newHarness(t, Config{Speaker: sink}, nil).start()
	h.feed()
	v := h.dial("app1", "s1", viewerOpts{control: true, talk: true})
	v.waitMedia(5)
	<-v.dcOpen
	if r := v.dcCommand(`{"cmd":"speaker_start","req":1}`); r.Res != ResOK {
		t.Fatalf("speaker_start: %+v", r)
	}
	payload := make([]byte, 160)
	for i := range payload {
		payload[i] = 0xff
	}
	tick := time.NewTicker(20 * time.Millisecond) // the app's audio clock
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for seq := uint16(0); sink.written() < 8*160; seq++ {
		if err := v.talk.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 160, PayloadType: 0}, Payload: payload}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("speaker got %d bytes", sink.written())
		}
	}
	if r := v.dcCommand(`{"cmd":"speaker_stop","req":2}`); r.Res != ResOK {
		t.Fatalf("speaker_stop: %+v", r)
	}
}
