package p2p

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/ipcd/ipcd/media"
)

// waitTimeout bounds every wait of these tests; it is a deadline, never a
// synchronisation.
const waitTimeout = 15 * time.Second

const (
	testDev      = "dev1"
	testPassword = "ad12ab34"
)

// published is one message the service handed to its Publisher.
type published struct {
	protocol int
	raw      []byte
	msg      Message
}

// disconnect decodes the msg of a published disconnect.
func (p published) disconnect(t testing.TB) Disconnect {
	t.Helper()
	d, err := DecodeDisconnect(p.msg.Msg)
	if err != nil {
		t.Fatalf("published disconnect: %v", err)
	}
	return d
}

// fakePub records what the service publishes. hold makes Publish wait, as
// a broker that stops acknowledging does, until release; delay makes every
// Publish take that long, as a PUBACK timeout does.
type fakePub struct {
	mu       sync.Mutex
	msgs     []published
	changed  chan struct{} // closed and replaced at every change
	gate     chan struct{} // while non-nil, Publish waits for it to close
	entered  int           // Publish calls begun
	delay    time.Duration
	err      error
	oversize []string // messages over MaxPublish, envelope included
}

func newFakePub() *fakePub { return &fakePub{changed: make(chan struct{})} }

func (p *fakePub) Publish(protocol int, data any) error {
	raw, ok := data.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.entered++
	gate, delay := p.gate, p.delay
	p.notifyLocked()
	p.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if delay > 0 {
		time.Sleep(delay) // the broker's latency, not a synchronisation
	}
	var m Message
	_ = json.Unmarshal(raw, &m)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(raw)+envelopeOverhead > MaxPublish {
		p.oversize = append(p.oversize, fmt.Sprintf("%d %s of %d bytes", protocol, m.Header.Type, len(raw)))
	}
	if p.err != nil {
		return p.err
	}
	p.msgs = append(p.msgs, published{protocol: protocol, raw: append([]byte(nil), raw...), msg: m})
	p.notifyLocked()
	return nil
}

func (p *fakePub) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// hold makes every Publish wait until release.
func (p *fakePub) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil {
		p.gate = make(chan struct{})
	}
}

func (p *fakePub) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

func (p *fakePub) snapshot() []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]published(nil), p.msgs...)
}

// wait returns the first message for which match is true, waiting for it.
func (p *fakePub) wait(t testing.TB, what string, match func(published) bool) published {
	t.Helper()
	var got published
	p.waitFor(t, what, func(msgs []published) bool {
		for _, m := range msgs {
			if match(m) {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

// waitFor waits until cond holds for the messages published so far.
func (p *fakePub) waitFor(t testing.TB, what string, cond func([]published) bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		ok := cond(p.msgs)
		ch := p.changed
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s; published: %s", waitTimeout, what, p.summary())
		}
	}
}

func (p *fakePub) summary() string {
	var b strings.Builder
	for _, m := range p.snapshot() {
		fmt.Fprintf(&b, "\n  %d %s %s: %.200s", m.protocol, m.msg.Header.Type, m.msg.Header.SessionID, m.msg.Msg)
	}
	return b.String()
}

// reply matches a 302 message of type typ for session sid.
func reply(sid, typ string) func(published) bool {
	return func(m published) bool {
		return m.protocol == Protocol && m.msg.Header.SessionID == sid && m.msg.Header.Type == typ
	}
}

// waitUntil polls cond until it holds or the deadline passes. For
// conditions no channel announces (counters of other goroutines).
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// logRec keeps every log record, for tests of what is logged at which level.
type logRec struct {
	mu   sync.Mutex
	recs []logLine
}

type logLine struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

type recHandler struct {
	rec   *logRec
	attrs []slog.Attr
}

func (h recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recHandler) Handle(_ context.Context, r slog.Record) error {
	l := logLine{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		l.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	h.rec.mu.Lock()
	h.rec.recs = append(h.rec.recs, l)
	h.rec.mu.Unlock()
	return nil
}

func (h recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recHandler{rec: h.rec, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h recHandler) WithGroup(string) slog.Handler { return h }

// lines returns the records that match.
func (l *logRec) lines(match func(logLine) bool) []logLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logLine
	for _, r := range l.recs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// harness runs a Service on real rings with a fake publisher; viewers are
// real pion peer connections on loopback.
type harness struct {
	t     testing.TB
	svc   *Service
	pub   *fakePub
	logs  *logRec
	media Media
	cfg   Config

	ctx       context.Context
	cancel    context.CancelFunc
	done      chan error
	feeds     sync.WaitGroup
	stopFeeds context.CancelFunc
}

// leakChecked holds the tests whose first harness checks for leaks.
var leakChecked sync.Map

// newHarness builds a service for cfg. m nil means H.264 main and sub
// rings and a PCMU audio ring, empty until feed. The harness checks at the
// end of a test (not of a fuzz target, whose engine has goroutines of its
// own) that no goroutine was left behind. A test's first harness does the
// check, after every harness of the test stopped: a later harness's
// snapshot would count as leaks the goroutines an earlier one still starts
// (a session gathering candidates) until it stops.
func newHarness(t testing.TB, cfg Config, m *Media) *harness {
	t.Helper()
	if _, test := t.(*testing.T); test {
		if _, checked := leakChecked.LoadOrStore(t, true); !checked {
			leaks := goleak.IgnoreCurrent()
			t.Cleanup(func() {
				leakChecked.Delete(t)
				if !t.Failed() {
					goleak.VerifyNone(t, leaks)
				}
			})
		}
	}
	h := &harness{t: t, pub: newFakePub(), logs: &logRec{}}
	if m == nil {
		m = &Media{
			Main:  newTestRing(t, media.StreamMain, media.CodecH264),
			Sub:   newTestRing(t, media.StreamSub, media.CodecH264),
			Audio: newTestRing(t, media.StreamAudio, media.CodecPCMU),
		}
	}
	h.media = *m
	if cfg.NetworkInterfaces == nil {
		cfg.NetworkInterfaces = []string{"lo"}
		cfg.LoopbackCandidates = true
	}
	h.cfg = cfg
	svc, err := NewService(cfg, *m, h.pub, slog.New(recHandler{rec: h.logs}))
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	t.Cleanup(func() {
		h.pub.release()
		h.stop()
		if h.stopFeeds != nil {
			h.stopFeeds()
			h.feeds.Wait()
		}
	})
	return h
}

func newTestRing(t testing.TB, s media.Stream, c media.Codec) *media.Ring {
	t.Helper()
	r, err := media.NewRing(media.RingConfig{Stream: s, Codec: c, MaxBytes: 4 << 20, MaxFrames: 512}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// feed replays the reference media files into the rings, in real time.
func (h *harness) feed() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.stopFeeds = cancel
	for path, r := range map[string]*media.Ring{
		"../configs/media/main.h264": h.media.Main, "../configs/media/sub.h264": h.media.Sub, "../configs/media/audio.pcmu": h.media.Audio,
	} {
		if r == nil {
			continue
		}
		src, err := media.NewFileSource(media.FileSourceConfig{Path: path, Loop: true}, r, nil)
		if err != nil {
			h.t.Fatal(err)
		}
		h.feeds.Go(func() { _ = src.Run(ctx) })
	}
}

// start runs the service.
func (h *harness) start() *harness {
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.done = make(chan error, 1)
	go func() { h.done <- h.svc.Run(h.ctx, Credentials{DevID: testDev, P2PPassword: testPassword}) }()
	return h
}

// stop cancels the service and waits for Run to return.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		h.t.Fatalf("Run did not return %s after its context ended", waitTimeout)
	}
}

// sync returns once the service loop has handled everything queued so far.
func (h *harness) sync() { h.syncT(h.t) }

func (h *harness) syncT(t testing.TB) {
	t.Helper()
	waitUntil(t, "the inbox to drain", func() bool {
		h.svc.in.mu.Lock()
		defer h.svc.in.mu.Unlock()
		return h.svc.in.total == 0
	})
	// Served by the loop between two messages: the last one taken is done.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if h.svc.Sessions(ctx) == nil && ctx.Err() != nil {
		t.Fatal("the service loop does not answer queries")
	}
}

func (h *harness) sessions() []SessionStats {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return h.svc.Sessions(ctx)
}

func (h *harness) deliver(data json.RawMessage) {
	h.t.Helper()
	if !h.svc.Deliver(data) {
		h.t.Fatalf("inbox refused %.100s", data)
	}
}

// msg builds the data of a 302 or 312 envelope.
func msg(typ, from, sid string, body any) json.RawMessage {
	raw, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	b, err := json.Marshal(Message{Header: Header{Type: typ, From: from, To: testDev, SessionID: sid}, Msg: raw})
	if err != nil {
		panic(err)
	}
	return b
}

// auth is a valid token for from.
func auth(from string) string {
	return SignAuth(testPassword, testDev, from, time.Now().Add(time.Hour).Unix())
}

func offerMsg(from, sid, sdp string) json.RawMessage {
	return msg(TypeOffer, from, sid, Offer{Mode: ModeWebRTC, SDP: sdp, Auth: auth(from)})
}

func disconnectMsg(from, sid string) json.RawMessage {
	return msg(TypeDisconnect, from, sid, Disconnect{Mode: ModeWebRTC, CloseReason: int(CloseUser)})
}

func controlMsg(typ, from, sid string, v int) json.RawMessage {
	return msg(typ, from, sid, ControlCmd{CmdValue: &v})
}

// viewerAPI is a pion API like an app's: the given codecs (pion's defaults
// when register is nil), host candidates on loopback only.
func viewerAPI(t testing.TB, register func(*webrtc.MediaEngine) error) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if register == nil {
		register = (*webrtc.MediaEngine).RegisterDefaultCodecs
	}
	if err := register(me); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
}

// offerSDP is the offer an app with api sends: video and audio to receive,
// audio to send when talk is set, and the control channel.
func offerSDP(t testing.TB, api *webrtc.API) string {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	addRecv(t, pc)
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

func addRecv(t testing.TB, pc *webrtc.PeerConnection) {
	t.Helper()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
}

// viewer is an app's peer connection, signaled through the service.
type viewer struct {
	h         *harness
	from, sid string
	pc        *webrtc.PeerConnection
	dc        *webrtc.DataChannel
	dcOpen    chan struct{}
	dcMsgs    chan string
	talk      *webrtc.TrackLocalStaticRTP

	mu      sync.Mutex
	offered bool
	pending []string
	closed  bool
	wg      sync.WaitGroup
	done    chan struct{}

	videoPackets atomic.Uint64
	videoPT      atomic.Uint32 // payload type of the last video packet
	audioPackets atomic.Uint64
	connected    chan struct{}
	ended        chan Disconnect // the device's disconnect, if any
}

type viewerOpts struct {
	control bool // open the control data channel
	talk    bool // send audio (talkback)
}

// dial opens a viewer session from app from: offer, trickled candidates,
// and a goroutine that applies the device's answer and candidates.
func (h *harness) dial(from, sid string, o viewerOpts) *viewer {
	t := h.t
	t.Helper()
	pc, err := viewerAPI(t, nil).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	v := &viewer{h: h, from: from, sid: sid, pc: pc, done: make(chan struct{}), connected: make(chan struct{}),
		ended: make(chan Disconnect, 1), dcOpen: make(chan struct{}), dcMsgs: make(chan string, 64)}
	t.Cleanup(v.close)
	v.addMedia(o.talk)
	if o.control {
		v.openControl()
	}
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(v.connected) })
		}
	})
	pc.OnTrack(v.count)
	pc.OnICECandidate(v.trickle)
	v.offer()
	v.wg.Add(1)
	go v.follow()
	return v
}

// addMedia adds video to receive and audio to receive, or to send and
// receive when talk is set.
func (v *viewer) addMedia(talk bool) {
	t := v.h.t
	t.Helper()
	pc := v.pc
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	if talk {
		var err error
		v.talk, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, "talk", "app")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTransceiverFromTrack(v.talk, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			t.Fatal(err)
		}
	} else if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
}

// openControl creates the control data channel; its messages go to dcMsgs
// while there is room.
func (v *viewer) openControl() {
	t := v.h.t
	t.Helper()
	var err error
	if v.dc, err = v.pc.CreateDataChannel(ControlLabel, nil); err != nil {
		t.Fatal(err)
	}
	v.dc.OnOpen(func() { close(v.dcOpen) })
	v.dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case v.dcMsgs <- string(m.Data):
		default:
		}
	})
}

// count reads a received track until it ends, counting its packets.
func (v *viewer) count(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.wg.Add(1)
	v.mu.Unlock()
	defer v.wg.Done()
	n := &v.audioPackets
	if tr.Kind() == webrtc.RTPCodecTypeVideo {
		n = &v.videoPackets
	}
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			v.videoPT.Store(uint32(p.PayloadType))
		}
		n.Add(1)
	}
}

// trickle sends a local candidate to the device, or keeps it until the
// offer is out.
func (v *viewer) trickle(c *webrtc.ICECandidate) {
	line := ""
	if c != nil {
		line = CandidateLine(c.ToJSON().Candidate)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.offered {
		v.pending = append(v.pending, line)
		return
	}
	v.h.svc.Deliver(msg(TypeCandidate, v.from, v.sid, Candidate{Mode: ModeWebRTC, Candidate: line}))
}

// offer sends the offer, then the candidates gathered before it.
func (v *viewer) offer() {
	h, t := v.h, v.h.t
	t.Helper()
	offer, err := v.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	h.deliver(offerMsg(v.from, v.sid, offer.SDP))
	v.offered = true
	for _, line := range v.pending {
		h.svc.Deliver(msg(TypeCandidate, v.from, v.sid, Candidate{Mode: ModeWebRTC, Candidate: line}))
	}
	v.pending = nil
	v.mu.Unlock()
}

// follow applies what the device sends to this session until the viewer
// closes or the device disconnects.
func (v *viewer) follow() {
	defer v.wg.Done()
	p := v.h.pub
	next := 0
	for {
		p.mu.Lock()
		msgs := p.msgs[next:]
		next = len(p.msgs)
		ch := p.changed
		p.mu.Unlock()
		for _, m := range msgs {
			h := m.msg.Header
			if m.protocol != Protocol || h.SessionID != v.sid || h.To != v.from {
				continue
			}
			switch h.Type {
			case TypeAnswer:
				a, err := DecodeAnswer(m.msg.Msg)
				if err == nil {
					err = v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.SDP})
				}
				if err != nil {
					v.h.t.Errorf("viewer %s: answer: %v", v.sid, err)
				}
			case TypeCandidate:
				c, err := DecodeCandidate(m.msg.Msg)
				if err != nil {
					v.h.t.Errorf("viewer %s: candidate: %v", v.sid, err)
				} else if line := ParseCandidateLine(c.Candidate); line != "" {
					if err := v.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: line}); err != nil {
						v.h.t.Errorf("viewer %s: add candidate %q: %v", v.sid, line, err)
					}
				}
			case TypeDisconnect:
				d, _ := DecodeDisconnect(m.msg.Msg)
				v.ended <- d
				return
			}
		}
		select {
		case <-ch:
		case <-v.done:
			return
		}
	}
}

// waitMedia waits until the viewer has received n video and n audio
// packets more than it had.
func (v *viewer) waitMedia(n uint64) {
	v.h.t.Helper()
	vid, aud := v.videoPackets.Load()+n, v.audioPackets.Load()+n
	waitUntil(v.h.t, "media on "+v.sid, func() bool { return v.videoPackets.Load() >= vid && v.audioPackets.Load() >= aud })
}

func (v *viewer) close() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.closed = true
	v.mu.Unlock()
	close(v.done)
	_ = v.pc.Close()
	v.wg.Wait()
}
