package p2p

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// mediaFormats returns the formats of the first media section of kind in
// an SDP, RTX formats left out.
func mediaFormats(t testing.TB, raw, kind string) []string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		t.Fatalf("sdp: %v", err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != kind {
			continue
		}
		rtx := map[string]bool{}
		for _, a := range md.Attributes {
			if pt, enc, _ := strings.Cut(a.Value, " "); a.Key == "rtpmap" && strings.HasPrefix(strings.ToLower(enc), "rtx/") {
				rtx[pt] = true
			}
		}
		var out []string
		for _, f := range md.MediaName.Formats {
			if !rtx[f] {
				out = append(out, f)
			}
		}
		return out
	}
	return nil
}

func answerSDP(t testing.TB, m published) string {
	t.Helper()
	a, err := DecodeAnswer(m.msg.Msg)
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	return a.SDP
}

// firstReply waits for the first answer or disconnect to session sid.
func (h *harness) firstReply(sid string) published {
	h.t.Helper()
	return h.pub.wait(h.t, "a reply to "+sid, func(m published) bool {
		return reply(sid, TypeAnswer)(m) || reply(sid, TypeDisconnect)(m)
	})
}

// answered fails the test unless the first reply to sid is an answer.
func (h *harness) answered(sid string) published {
	h.t.Helper()
	m := h.firstReply(sid)
	if m.msg.Header.Type != TypeAnswer {
		d := m.disconnect(h.t)
		h.t.Fatalf("%s refused: close_reason %d %q", sid, d.CloseReason, d.Message)
	}
	return m
}

// refused fails the test unless the first reply to sid is a disconnect
// with reason r, and returns it.
func (h *harness) refused(sid string, r CloseReason) {
	h.t.Helper()
	m := h.firstReply(sid)
	if m.msg.Header.Type != TypeDisconnect {
		h.t.Fatalf("%s answered, want close_reason %d", sid, r)
	}
	d := m.disconnect(h.t)
	if d.CloseReason != int(r) || d.Code != r.Code() || d.Message != r.String() || d.Mode != ModeWebRTC {
		h.t.Fatalf("%s refused with %+v, want close_reason %d code %d %q", sid, d, r, r.Code(), r.String())
	}
}

// TestViewerStreams: an app's offer is answered, ICE connects over
// loopback, video and audio from the rings arrive, and the video arrives
// under the one payload type the answer lists.
func TestViewerStreams(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	h.feed()
	v := h.dial("app1", "s1", viewerOpts{})
	v.waitMedia(20)
	formats := mediaFormats(t, answerSDP(t, h.answered("s1")), "video")
	if len(formats) != 1 || formats[0] != strconv.Itoa(int(v.videoPT.Load())) {
		t.Fatalf("answer lists video formats %v, video arrives with payload type %d", formats, v.videoPT.Load())
	}
	// The viewer offers RTX (pion's defaults do, as browsers): the answer
	// takes it for the format sent.
	raw := answerSDP(t, h.answered("s1"))
	if pt, ok := offeredRTX(raw, webrtc.PayloadType(v.videoPT.Load())); !ok || !strings.Contains(raw, fmt.Sprintf("a=rtpmap:%d rtx/90000", pt)) {
		t.Fatalf("answer has no RTX format for payload type %d:\n%s", v.videoPT.Load(), raw)
	}
	st := h.sessions()
	if len(st) != 1 || st[0].ID != "s1" || st[0].From != "app1" || st[0].Stream != media.StreamMain ||
		st[0].VideoFrames == 0 || st[0].AudioFrames == 0 || st[0].CandidateType != "host" || st[0].TTFF <= 0 {
		t.Fatalf("sessions = %+v", st)
	}
	if n := h.svc.PeerConnections(); n != 1 {
		t.Fatalf("PeerConnections = %d", n)
	}
}

// TestMaxClients: the offer beyond max_clients is refused with 4 and the
// sessions are unaffected; a session whose close started no longer counts.
func TestMaxClients(t *testing.T) {
	h := newHarness(t, Config{MaxClients: 2}, nil).start()
	sdp := offerSDP(t, viewerAPI(t, nil))
	h.deliver(offerMsg("a", "sa", sdp))
	h.deliver(offerMsg("b", "sb", sdp))
	h.deliver(offerMsg("c", "sc", sdp))
	h.answered("sa")
	h.answered("sb")
	h.refused("sc", CloseBusy)
	if lines := h.logs.lines(func(l logLine) bool { return l.msg == "incoming connection refused" }); len(lines) != 1 {
		t.Fatalf("%d refusal lines", len(lines))
	}
	h.sync()
	if st := h.sessions(); len(st) != 2 || h.svc.PeerConnections() != 2 {
		t.Fatalf("sessions %+v, %d peer connections", st, h.svc.PeerConnections())
	}
	h.deliver(disconnectMsg("a", "sa"))
	h.deliver(offerMsg("c", "sc2", sdp))
	h.answered("sc2")
	h.deliver(offerMsg("d", "sd", sdp))
	h.refused("sd", CloseBusy)
	if n := h.svc.Drops()[RuleSessionsFull]; n != 2 {
		t.Fatalf("sessions_full = %d", n)
	}
}

// TestReentryBackToBack: with max_clients 1, an app's disconnect and its
// next offer, sent back to back, always find the slot free.
func TestReentryBackToBack(t *testing.T) {
	h := newHarness(t, Config{MaxClients: 1}, nil).start()
	sdp := offerSDP(t, viewerAPI(t, nil))
	h.deliver(offerMsg("app", "s0", sdp))
	h.answered("s0")
	for i := 1; i <= 30; i++ {
		h.deliver(disconnectMsg("app", fmt.Sprintf("s%d", i-1)))
		h.deliver(offerMsg("app", fmt.Sprintf("s%d", i), sdp))
		h.answered(fmt.Sprintf("s%d", i))
	}
	if n := h.svc.Drops()[RuleSessionsFull]; n != 0 {
		t.Fatalf("sessions_full = %d", n)
	}
}

// TestReentryInterleaved: five apps with max_clients 5 reopen their
// sessions, their messages interleaved, back to back.
func TestReentryInterleaved(t *testing.T) {
	const apps = 5
	h := newHarness(t, Config{MaxClients: apps}, nil).start()
	sdp := offerSDP(t, viewerAPI(t, nil))
	sid := func(app, round int) string { return fmt.Sprintf("a%d-s%d", app, round) }
	for a := range apps {
		h.deliver(offerMsg(fmt.Sprint("app", a), sid(a, 0), sdp))
	}
	for round := 1; round <= 8; round++ {
		for a := range apps {
			h.deliver(disconnectMsg(fmt.Sprint("app", a), sid(a, round-1)))
		}
		for a := range apps {
			h.deliver(offerMsg(fmt.Sprint("app", a), sid(a, round), sdp))
		}
		for a := range apps {
			h.answered(sid(a, round))
		}
	}
}

// TestOneAppInArrivalOrder: an app's offers and disconnects, all queued
// before the service takes any, are handled in the order they arrived.
func TestOneAppInArrivalOrder(t *testing.T) {
	h := newHarness(t, Config{MaxClients: 1, SenderQueue: 64, QueueSize: 128}, nil)
	sdp := offerSDP(t, viewerAPI(t, nil))
	for i := range 10 {
		if i > 0 {
			h.deliver(disconnectMsg("app", fmt.Sprint("s", i-1)))
		}
		h.deliver(offerMsg("app", fmt.Sprint("s", i), sdp))
	}
	h.start()
	for i := range 10 {
		h.answered(fmt.Sprint("s", i))
	}
	h.sync()
	if st := h.sessions(); len(st) != 1 || st[0].ID != "s9" {
		t.Fatalf("sessions = %+v", st)
	}
}

// TestBudgetBorrowing: with a memory budget that fits one session, an app
// that closes and reopens back to back is answered: the new session runs
// on the share of the one tearing down. A second concurrent session is
// refused with 14, and the whole budget is back once the service stops.
func TestBudgetBorrowing(t *testing.T) {
	budget := media.NewBudget(SessionCost(256))
	h := newHarness(t, Config{MaxClients: 5, Budget: budget}, nil).start()
	sdp := offerSDP(t, viewerAPI(t, nil))
	h.deliver(offerMsg("app", "s0", sdp))
	h.answered("s0")
	for i := 1; i <= 10; i++ {
		h.deliver(disconnectMsg("app", fmt.Sprint("s", i-1)))
		h.deliver(offerMsg("app", fmt.Sprint("s", i), sdp))
		h.answered(fmt.Sprint("s", i))
	}
	h.deliver(offerMsg("other", "x", sdp))
	h.refused("x", CloseNoMemory)
	// Reopened faster than sessions tear down: each one borrows in turn.
	for i := 11; i <= 15; i++ {
		h.deliver(disconnectMsg("app", fmt.Sprint("s", i-1)))
		h.deliver(offerMsg("app", fmt.Sprint("s", i), sdp))
	}
	for i := 11; i <= 15; i++ {
		h.answered(fmt.Sprint("s", i))
	}
	h.stop()
	if budget.Available() != budget.Total() {
		t.Fatalf("budget: %d of %d available after the service stopped", budget.Available(), budget.Total())
	}
}

func TestNoMemory(t *testing.T) {
	budget := media.NewBudget(SessionCost(256) - 1)
	h := newHarness(t, Config{Budget: budget}, nil).start()
	h.deliver(offerMsg("app", "s1", offerSDP(t, viewerAPI(t, nil))))
	h.refused("s1", CloseNoMemory)
	if h.svc.PeerConnections() != 0 || h.svc.Drops()[RuleNoMemory] != 1 || budget.Available() != budget.Total() {
		t.Fatalf("%d peer connections, drops %v, budget %d", h.svc.PeerConnections(), h.svc.Drops(), budget.Available())
	}
}

// TestAuthRefused: every bad token is refused with 5 before anything is
// allocated.
func TestAuthRefused(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	sdp := offerSDP(t, viewerAPI(t, nil))
	now := time.Now().Unix()
	tests := []struct{ name, from, auth, reason string }{
		{"malformed", "a1", "garbage", "malformed"},
		{"expired", "a2", SignAuth(testPassword, testDev, "a2", now-10), "expired"},
		{"too far ahead", "a3", SignAuth(testPassword, testDev, "a3", now+2*86400), "expired"},
		{"another app", "a4", SignAuth(testPassword, testDev, "someone", now+60), "mismatch"},
		{"wrong password", "a5", SignAuth("other", testDev, "a5", now+60), "mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sid := "s-" + tt.from
			h.deliver(msg(TypeOffer, tt.from, sid, Offer{Mode: ModeWebRTC, SDP: sdp, Auth: tt.auth}))
			h.refused(sid, CloseAuth)
			if l := h.logs.lines(func(l logLine) bool { return l.msg == "auth failed" && l.attrs["from"] == tt.from }); len(l) != 1 || l[0].attrs["reason"] != tt.reason {
				t.Fatalf("auth failed lines %+v, want reason %s", l, tt.reason)
			}
		})
	}
	if h.svc.PeerConnections() != 0 {
		t.Fatalf("%d peer connections for refused offers", h.svc.PeerConnections())
	}
}

// registerH264 returns a media engine setup with only the given H.264
// formats, under payload types from 100 on.
func registerH264(fmtps ...string) func(*webrtc.MediaEngine) error {
	return func(me *webrtc.MediaEngine) error {
		for i, f := range fmtps {
			if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: f,
			}, PayloadType: webrtc.PayloadType(100 + i)}, webrtc.RTPCodecTypeVideo); err != nil {
				return err
			}
		}
		return me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, PayloadType: 0}, webrtc.RTPCodecTypeAudio)
	}
}

func registerVP8(me *webrtc.MediaEngine) error {
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		return err
	}
	return registerH264()(me)
}

// TestCodecNegotiation: offers whose H.264 the device cannot send are
// refused with 1; answers list the one video format sent, and no payload
// type twice.
func TestCodecNegotiation(t *testing.T) {
	h := newHarness(t, Config{MaxClients: 10}, nil).start()
	tests := []struct {
		name     string
		register func(*webrtc.MediaEngine) error
		ok       bool
	}{
		{"pion defaults", nil, true},
		{"high profile only", registerH264("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032"), false},
		{"main profile only", registerH264("packetization-mode=1;profile-level-id=4d001f"), false},
		{"packetization mode 0 only", registerH264("packetization-mode=0;profile-level-id=42e01f", "profile-level-id=42001f"), false},
		{"no profile-level-id", registerH264("packetization-mode=1"), false},
		{"one format under two payload types", registerH264("packetization-mode=1;profile-level-id=42e01f", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"), true},
		{"baseline after high", registerH264("packetization-mode=1;profile-level-id=640032", "packetization-mode=1;profile-level-id=42001f"), true},
		{"vp8 only", registerVP8, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sid := fmt.Sprint("s", i)
			h.deliver(offerMsg(fmt.Sprint("app", i), sid, offerSDP(t, viewerAPI(t, tt.register))))
			if !tt.ok {
				h.refused(sid, CloseCodec)
				return
			}
			raw := answerSDP(t, h.answered(sid))
			video := mediaFormats(t, raw, "video")
			if len(video) != 1 {
				t.Fatalf("answer lists video formats %v", video)
			}
			if !strings.Contains(raw, "a=rtpmap:"+video[0]+" H264/90000") {
				t.Fatalf("answer's video format %s is not H.264:\n%s", video[0], raw)
			}
			if err := checkAnswer(raw, media.CodecH264); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStreamFallback: a viewer without the main stream's codec gets the
// sub stream; one with neither is refused with 1.
func TestStreamFallback(t *testing.T) {
	m := &Media{Main: newTestRing(t, media.StreamMain, media.CodecH265), Sub: newTestRing(t, media.StreamSub, media.CodecH264)}
	h := newHarness(t, Config{}, m).start()
	h.deliver(offerMsg("a", "h264", offerSDP(t, viewerAPI(t, registerH264("packetization-mode=1;profile-level-id=42e01f")))))
	raw := answerSDP(t, h.answered("h264"))
	if v := mediaFormats(t, raw, "video"); len(v) != 1 || !strings.Contains(raw, "a=rtpmap:"+v[0]+" H264/90000") {
		t.Fatalf("answer:\n%s", raw)
	}
	h.deliver(offerMsg("b", "h265", offerSDP(t, viewerAPI(t, nil))))
	raw = answerSDP(t, h.answered("h265"))
	if v := mediaFormats(t, raw, "video"); len(v) != 1 || !strings.Contains(raw, "a=rtpmap:"+v[0]+" H265/90000") {
		t.Fatalf("answer:\n%s", raw)
	}
	h.sync()
	for _, st := range h.sessions() {
		want := map[string]media.Stream{"h264": media.StreamSub, "h265": media.StreamMain}[st.ID]
		if st.Stream != want {
			t.Errorf("session %s sends %s, want %s", st.ID, st.Stream, want)
		}
	}
	if l := h.logs.lines(func(l logLine) bool { return strings.HasPrefix(l.msg, "stream fallback") }); len(l) != 1 {
		t.Fatalf("%d fallback lines", len(l))
	}
	h.deliver(offerMsg("c", "vp8", offerSDP(t, viewerAPI(t, registerVP8))))
	h.refused("vp8", CloseCodec)
}

// TestRepliesInOrder: per session, the answer leaves first, then the
// candidates, then the disconnect, and nothing after it; the sessions a
// stopping service closes are told so.
func TestRepliesInOrder(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	sdp := offerSDP(t, viewerAPI(t, nil))
	sids := []string{"s1", "s2", "s3"}
	for i, sid := range sids {
		h.deliver(offerMsg(fmt.Sprint("app", i), sid, sdp))
	}
	for _, sid := range sids {
		h.pub.wait(t, "end of candidates of "+sid, func(m published) bool {
			return reply(sid, TypeCandidate)(m) && strings.Contains(string(m.msg.Msg), `"candidate":""`)
		})
	}
	h.stop()
	all := h.pub.snapshot()
	for _, sid := range sids {
		var types []string
		for _, m := range all {
			if m.msg.Header.SessionID == sid {
				types = append(types, m.msg.Header.Type)
			}
		}
		n := len(types)
		if n < 3 || types[0] != TypeAnswer || types[n-1] != TypeDisconnect {
			t.Fatalf("%s: replies %v", sid, types)
		}
		for _, typ := range types[1 : n-1] {
			if typ != TypeCandidate {
				t.Fatalf("%s: replies %v", sid, types)
			}
		}
	}
	for _, m := range all {
		if m.msg.Header.Type == TypeDisconnect {
			if d := m.disconnect(t); d.CloseReason != int(CloseUser) {
				t.Fatalf("shutdown disconnect %+v", d)
			}
		}
	}
}

// TestTeardown: cancelling Run closes every session, tells each app, stops
// the media, and returns with no goroutine left (the harness checks); the
// service then runs again.
func TestTeardown(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	h.feed()
	v1 := h.dial("app1", "s1", viewerOpts{control: true})
	v2 := h.dial("app2", "s2", viewerOpts{})
	v1.waitMedia(10)
	v2.waitMedia(10)
	h.stop()
	for _, v := range []*viewer{v1, v2} {
		select {
		case d := <-v.ended:
			if d.CloseReason != int(CloseUser) {
				t.Fatalf("%s: %+v", v.sid, d)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%s: no disconnect", v.sid)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if st := h.svc.Sessions(ctx); st != nil {
		t.Fatalf("Sessions of a stopped service: %+v", st)
	}
	v1.close()
	v2.close()

	h.start()
	v3 := h.dial("app3", "s3", viewerOpts{})
	v3.waitMedia(10)
}

// TestLivenessTimeout: a viewer that never connects is closed with 8 after
// liveness_timeout, and its slot is free at once.
func TestLivenessTimeout(t *testing.T) {
	h := newHarness(t, Config{MaxClients: 1, LivenessTimeout: 500 * time.Millisecond}, nil).start()
	sdp := offerSDP(t, viewerAPI(t, nil))
	h.deliver(offerMsg("app", "s1", sdp))
	h.answered("s1")
	d := h.pub.wait(t, "timeout of s1", reply("s1", TypeDisconnect)).disconnect(t)
	if d.CloseReason != int(CloseTimeout) || d.Code != -108 {
		t.Fatalf("disconnect %+v", d)
	}
	h.deliver(offerMsg("app", "s2", sdp))
	h.answered("s2")
}

// TestLateMessagesOfEndedSession: an app's goodbye crossing the device's,
// or its late candidates, are expected: logged at debug, not counted. The
// same from another app, or for a session never seen, is a warned drop.
func TestLateMessagesOfEndedSession(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	h.deliver(offerMsg("app", "s1", offerSDP(t, viewerAPI(t, nil))))
	h.answered("s1")
	h.deliver(disconnectMsg("app", "s1"))
	h.deliver(disconnectMsg("app", "s1"))
	h.deliver(msg(TypeCandidate, "app", "s1", Candidate{Mode: ModeWebRTC, Candidate: ""}))
	h.sync()
	unknown := func(level string) []logLine {
		return h.logs.lines(func(l logLine) bool {
			return l.attrs["rule"] == string(RuleUnknownSession) && l.level.String() == level
		})
	}
	if d, w := unknown("DEBUG"), unknown("WARN"); len(d) != 2 || len(w) != 0 || h.svc.Drops()[RuleUnknownSession] != 0 {
		t.Fatalf("late messages: %d debug, %d warn lines, %d counted", len(d), len(w), h.svc.Drops()[RuleUnknownSession])
	}
	h.deliver(disconnectMsg("intruder", "s1"))
	h.deliver(disconnectMsg("app", "never"))
	h.sync()
	if w := unknown("WARN"); len(w) != 2 || h.svc.Drops()[RuleUnknownSession] != 2 {
		t.Fatalf("unexpected messages: %d warn lines, %d counted", len(w), h.svc.Drops()[RuleUnknownSession])
	}
}

// TestDrops: every malformed or unexpected message is dropped under its
// rule, counted in Drops, and gets no reply.
func TestDrops(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	sdp := offerSDP(t, viewerAPI(t, nil))
	h.deliver(offerMsg("app", "live", sdp))
	h.answered("live")
	// Everything the live session publishes by itself, so that any
	// further message is a reply to a dropped one.
	h.pub.wait(t, "end of candidates", func(m published) bool {
		return reply("live", TypeCandidate)(m) && strings.Contains(string(m.msg.Msg), `"candidate":""`)
	})
	long := strings.Repeat("x", MaxHeaderField+1)
	header := func(mod func(*Header)) json.RawMessage {
		hd := Header{Type: TypeCandidate, From: "app", To: testDev, SessionID: "live"}
		mod(&hd)
		b, _ := json.Marshal(Message{Header: hd, Msg: json.RawMessage(`{"mode":"webrtc","candidate":""}`)})
		return b
	}
	tests := []struct {
		name string
		data json.RawMessage
		rule Rule
	}{
		{"not json", json.RawMessage(`{"header":`), RuleMalformed},
		{"no from", header(func(h *Header) { h.From = "" }), RuleMissingField},
		{"unknown type", header(func(h *Header) { h.Type = "hello" }), RuleUnknownType},
		{"long from", header(func(h *Header) { h.From = long }), RuleFieldTooLong},
		{"long sessionid", header(func(h *Header) { h.SessionID = strings.Repeat("s", 30000) }), RuleFieldTooLong},
		{"long moto_id", header(func(h *Header) { h.MotoID = long }), RuleFieldTooLong},
		{"long sub_dev_id", header(func(h *Header) { h.SubDevID = long }), RuleFieldTooLong},
		{"long tid", header(func(h *Header) { h.TID = long }), RuleFieldTooLong},
		{"long trace_id", header(func(h *Header) { h.TraceID = long }), RuleFieldTooLong},
		{"another device", header(func(h *Header) { h.To = "dev2" }), RuleNotThisDevice},
		{"answer from an app", header(func(h *Header) { h.Type = TypeAnswer }), RuleUnexpectedType},
		{"candidate from another app", header(func(h *Header) { h.From = "intruder" }), RuleFromMismatch},
		{"duplicate offer", offerMsg("app", "live", sdp), RuleDuplicateOffer},
		{"offer without sdp", msg(TypeOffer, "app", "new", Offer{Auth: auth("app")}), RuleBadOffer},
		{"offer with bad stream_type", msg(TypeOffer, "app", "new", map[string]any{"sdp": sdp, "stream_type": 7}), RuleBadOffer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.svc.Drops()[tt.rule]
			n := len(h.pub.snapshot())
			h.deliver(tt.data)
			h.sync()
			if got := h.svc.Drops()[tt.rule]; got != before+1 {
				t.Fatalf("%s: %d, want %d", tt.rule, got, before+1)
			}
			if len(h.pub.snapshot()) != n {
				t.Fatalf("a dropped message got a reply: %s", h.pub.summary())
			}
		})
	}
	// Header fields at the bound pass, and the reply echoing them fits.
	max := strings.Repeat("m", MaxHeaderField)
	b, _ := json.Marshal(Message{Header: Header{Type: TypeOffer, From: "app2", To: testDev, SessionID: max, MotoID: max, SubDevID: max, TID: max, TraceID: max},
		Msg: json.RawMessage(fmt.Sprintf(`{"sdp":%q,"auth":%q}`, sdp, auth("app2")))})
	h.deliver(b)
	h.answered(max)
	if len(h.pub.oversize) != 0 {
		t.Fatalf("published over %d bytes: %v", MaxPublish, h.pub.oversize)
	}
}

// TestBadSDP: offers that authenticate but whose SDP is unusable are
// refused with 1 under their rule.
func TestBadSDP(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	api := viewerAPI(t, nil)
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for range MaxMLines + 1 {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	many, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, sdp string
		rule      Rule
	}{
		{"17 m-lines", many.SDP, RuleTooManyMLines},
		{"not sdp", "hello", RuleBadSDP},
		{"no ice credentials", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n", RuleBadSDP},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sid := fmt.Sprint("s", i)
			before := h.svc.Drops()[tt.rule]
			h.deliver(offerMsg(fmt.Sprint("app", i), sid, tt.sdp))
			h.refused(sid, CloseCodec)
			if n := h.svc.Drops()[tt.rule]; n != before+1 {
				t.Fatalf("%s = %d, want %d", tt.rule, n, before+1)
			}
		})
	}
}

// TestAnswerTooLarge: an answer that would not fit in a message is not
// published; the offer is refused with 1.
func TestAnswerTooLarge(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	big, _ := json.Marshal(strings.Repeat("t", MaxPublish))
	h.deliver(msg(TypeOffer, "app", "s1", Offer{Mode: ModeWebRTC, SDP: offerSDP(t, viewerAPI(t, nil)), Auth: auth("app"), TCPToken: big}))
	h.refused("s1", CloseCodec)
	if h.svc.Drops()[RuleReplyTooLarge] != 1 || len(h.pub.oversize) != 0 {
		t.Fatalf("reply_too_large = %d, oversize %v", h.svc.Drops()[RuleReplyTooLarge], h.pub.oversize)
	}
}

// TestTooManyCandidates: a session takes MaxRemoteCandidates of the app's
// candidates; the rest are dropped and counted, and the session stays.
func TestTooManyCandidates(t *testing.T) {
	h := newHarness(t, Config{SenderQueue: 128, QueueSize: 256}, nil).start()
	h.deliver(offerMsg("app", "s1", offerSDP(t, viewerAPI(t, nil))))
	h.answered("s1")
	const sent = MaxRemoteCandidates + 6
	for i := range sent {
		line := fmt.Sprintf("a=candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host\r\n", i, 9)
		h.deliver(msg(TypeCandidate, "app", "s1", Candidate{Mode: ModeWebRTC, Candidate: line}))
	}
	h.sync()
	if n := h.svc.Drops()[RuleTooManyCandidates]; n != sent-MaxRemoteCandidates {
		t.Fatalf("too_many_candidates = %d, want %d", n, sent-MaxRemoteCandidates)
	}
	if st := h.sessions(); len(st) != 1 {
		t.Fatalf("sessions = %+v", st)
	}
}

// TestBadCandidate: candidates the session cannot use are dropped under
// bad_candidate by the session.
func TestBadCandidate(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	h.deliver(offerMsg("app", "s1", offerSDP(t, viewerAPI(t, nil))))
	h.answered("s1")
	for _, c := range []json.RawMessage{
		json.RawMessage(`{"header":{"type":"candidate","from":"app","to":"dev1","sessionid":"s1"},"msg":[1]}`),
		msg(TypeCandidate, "app", "s1", Candidate{Candidate: "a=candidate:" + strings.Repeat("x", MaxCandidateLine)}),
		msg(TypeCandidate, "app", "s1", Candidate{Candidate: "a=candidate:not a candidate"}),
	} {
		h.deliver(c)
	}
	waitUntil(t, "bad_candidate drops", func() bool { return h.svc.Drops()[RuleBadCandidate] == 3 })
}

// TestActiveCountsSessions: a session counts from its offer until its
// goroutines have exited.
func TestActiveCountsSessions(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	if n := h.svc.Active(); n != 0 {
		t.Fatalf("%d active sessions before any offer", n)
	}
	h.deliver(offerMsg("a", "s1", offerSDP(t, viewerAPI(t, nil))))
	h.answered("s1")
	if n := h.svc.Active(); n != 1 {
		t.Fatalf("%d active sessions with one answered, want 1", n)
	}
	h.deliver(disconnectMsg("a", "s1"))
	deadline := time.Now().Add(waitTimeout)
	for h.svc.Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d active sessions %v after the disconnect, want 0", h.svc.Active(), waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
