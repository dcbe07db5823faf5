package viewer

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/ipcd/ipcd/p2p"
)

const (
	fakeDevID    = "6c1e0000fake"
	fakePassword = "ad12ab34"
	frameTime    = 40 * time.Millisecond
)

// fakeOptions choose the fake device's streams and how it misbehaves.
type fakeOptions struct {
	mainH265        bool            // the main stream is main.h265 instead of main.h264
	noSub           bool            // no sub stream (sub.h264 otherwise)
	refuse          *p2p.Disconnect // refuse every authenticated offer with this
	disconnectAfter int             // video frames sent before a disconnect with close reason 8
	bareCandidates  bool            // send "candidate:..." without "a=" and the line ending
	candidatesFirst bool            // publish all candidates before the answer
	decoy           bool            // first send a disconnect addressed to another app
	silent          bool            // never answer, not even 312 requests
}

// fakeStream is one of the fake device's video streams.
type fakeStream struct {
	name  string
	codec videoCodec
	aus   [][]byte
}

// fakeDevice plays ipcd's part of signaling over a real broker and streams
// the sample clip and audio over a real pion peer connection on loopback.
type fakeDevice struct {
	t       *testing.T
	opts    fakeOptions
	api     *webrtc.API
	streams map[string]*fakeStream // main, and sub unless noSub
	audio   [][]byte
	mqtt    paho.Client
	in      chan []byte
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// What the device saw and did, for assertions.
	raw         chan []byte
	offers      chan p2p.Offer
	picked      chan string // the stream each session started on
	disconnects chan p2p.Message
	controls    chan string
	requests    chan controlRequest // 312 requests
}

// controlRequest is a 312 request as the fake device decoded it.
type controlRequest struct {
	header p2p.Header
	value  int
}

func startFakeDevice(t *testing.T, broker string, opts fakeOptions) *fakeDevice {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102},
		// What ipcd registers (p2p/api.go).
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000,
			SDPFmtpLine: "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"}, PayloadType: 98},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1},
		PayloadType:        0,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	lo := loopbackInterfaces()
	se.SetInterfaceFilter(func(name string) bool { return slices.Contains(lo, name) })

	streams := map[string]*fakeStream{"main": {name: "main", codec: codecH264, aus: sampleAUs(t)}}
	if opts.mainH265 {
		streams["main"] = &fakeStream{name: "main", codec: codecH265, aus: fileAUs(t, sampleH265)}
	}
	if !opts.noSub {
		streams["sub"] = &fakeStream{name: "sub", codec: codecH264, aus: fileAUs(t, sampleSubH264)}
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &fakeDevice{
		t:           t,
		opts:        opts,
		api:         webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)),
		streams:     streams,
		audio:       sampleAudio(t),
		in:          make(chan []byte, 256),
		ctx:         ctx,
		cancel:      cancel,
		raw:         make(chan []byte, 64),
		offers:      make(chan p2p.Offer, 16),
		picked:      make(chan string, 16),
		disconnects: make(chan p2p.Message, 16),
		controls:    make(chan string, 16),
		requests:    make(chan controlRequest, 16),
	}
	subscribed := make(chan error, 1)
	o := paho.NewClientOptions().AddBroker(broker).SetClientID("fake-" + randomHex(4)).
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.Subscribe(topic(DefaultTopicIn, fakeDevID), 1, func(_ paho.Client, m paho.Message) {
				select {
				case d.raw <- m.Payload():
				default:
				}
				select {
				case d.in <- m.Payload():
				default:
					t.Error("fake device inbox full")
				}
			})
			tok.Wait()
			subscribed <- tok.Error()
		})
	d.mqtt = paho.NewClient(o)
	if tok := d.mqtt.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatalf("fake device connect: %v", tok.Error())
	}
	if err := <-subscribed; err != nil {
		t.Fatalf("fake device subscribe: %v", err)
	}
	d.wg.Go(d.loop)
	t.Cleanup(d.close)
	return d
}

// close ends every session and disconnects; idempotent.
func (d *fakeDevice) close() {
	d.cancel()
	d.wg.Wait()
	if d.mqtt.IsConnected() {
		d.mqtt.Disconnect(100)
	}
}

func sampleAudio(t testing.TB) [][]byte {
	b, err := os.ReadFile("../../../configs/media/audio.pcmu")
	if err != nil || len(b) < 320 {
		b = make([]byte, 320*25)
		for i := range b {
			b[i] = 0xff // mu-law silence
		}
	}
	var frames [][]byte
	for len(b) >= 320 {
		frames = append(frames, b[:320])
		b = b[320:]
	}
	return frames
}

func (d *fakeDevice) publish(h p2p.Header, msg any) { d.publishProto(p2p.Protocol, h, msg) }

func (d *fakeDevice) publishProto(protocol int, h p2p.Header, msg any) {
	b, err := json.Marshal(map[string]any{
		"protocol": protocol, "pv": "2.2", "t": time.Now().Unix(),
		"data": map[string]any{"header": h, "msg": msg},
	})
	if err != nil {
		d.t.Error(err)
		return
	}
	tok := d.mqtt.Publish(topic(DefaultTopicOut, fakeDevID), 1, false, b)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		d.t.Errorf("fake device publish %s: %v", h.Type, tok.Error())
	}
}

// fakeSession is how the loop reaches a session's goroutine.
type fakeSession struct {
	inbox    chan p2p.Message
	requests chan controlRequest
}

// loop routes messages to one goroutine per session.
func (d *fakeDevice) loop() {
	sessions := make(map[string]fakeSession)
	for {
		var payload []byte
		select {
		case <-d.ctx.Done():
			return
		case payload = <-d.in:
		}
		var env struct {
			Protocol int             `json:"protocol"`
			Data     json.RawMessage `json:"data"`
		}
		if json.Unmarshal(payload, &env) != nil {
			continue
		}
		if env.Protocol == p2p.ControlProtocol {
			d.control(sessions, env.Data)
			continue
		}
		if env.Protocol != p2p.Protocol {
			continue
		}
		m, err := p2p.DecodeMessage(env.Data)
		if err != nil || m.Header.To != fakeDevID {
			continue
		}
		if m.Header.Type == p2p.TypeDisconnect {
			select {
			case d.disconnects <- m:
			default:
			}
		}
		if m.Header.Type == p2p.TypeOffer {
			if _, ok := sessions[m.Header.SessionID]; ok {
				continue
			}
			fs := fakeSession{inbox: make(chan p2p.Message, 64), requests: make(chan controlRequest, 4)}
			sessions[m.Header.SessionID] = fs
			d.wg.Go(func() { d.session(m, fs) })
			continue
		}
		if fs, ok := sessions[m.Header.SessionID]; ok {
			select {
			case fs.inbox <- m:
			default:
			}
		}
	}
}

// control answers a 312 request for an unknown session itself and hands
// the others to their session, as ipcd does (p2p/protocol312.go).
func (d *fakeDevice) control(sessions map[string]fakeSession, data json.RawMessage) {
	h, v, err := p2p.DecodeControl(data)
	if err != nil {
		d.t.Errorf("fake device: bad 312 request %s: %v", data, err)
		return
	}
	if h.To != fakeDevID {
		return
	}
	req := controlRequest{header: h, value: v}
	select {
	case d.requests <- req:
	default:
	}
	if d.opts.silent {
		return
	}
	fs, ok := sessions[h.SessionID]
	if !ok {
		d.publishProto(p2p.ControlProtocol, h.Reply(h.Type), p2p.ControlResult{ResCode: p2p.ResNoSuchSession, Message: "no such session"})
		return
	}
	select {
	case fs.requests <- req:
	default:
		d.t.Error("fake device: 312 queue full")
	}
}

// offeredVideo returns the video codecs an offer's rtpmap lines name.
func offeredVideo(sdp string) map[videoCodec]bool {
	out := map[videoCodec]bool{}
	video := false
	for line := range strings.SplitSeq(sdp, "\r\n") {
		if strings.HasPrefix(line, "m=") {
			video = strings.HasPrefix(line, "m=video")
		}
		if rest, ok := strings.CutPrefix(line, "a=rtpmap:"); ok && video {
			_, enc, _ := strings.Cut(rest, " ")
			name, _, _ := strings.Cut(enc, "/")
			if c := parseCodec(name); c != codecUnknown {
				out[c] = true
			}
		}
	}
	return out
}

// pick chooses the stream like ipcd: the one asked for when the offer has
// its codec, else the other one, else none.
func (d *fakeDevice) pick(offer p2p.Offer) *fakeStream {
	want, other := "main", "sub"
	if offer.StreamType == 1 {
		want, other = other, want
	}
	codecs := offeredVideo(offer.SDP)
	for _, name := range []string{want, other} {
		if st := d.streams[name]; st != nil && codecs[st.codec] {
			return st
		}
	}
	return nil
}

func mimeOf(c videoCodec) string {
	if c == codecH265 {
		return webrtc.MimeTypeH265
	}
	return webrtc.MimeTypeH264
}

func (d *fakeDevice) session(offerMsg p2p.Message, fs fakeSession) {
	h := offerMsg.Header
	offer, cur := d.admit(offerMsg)
	if cur == nil {
		return
	}
	ctx, cancel := context.WithCancel(d.ctx)
	pc, err := d.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		d.t.Error(err)
		cancel()
		return
	}
	var sender sync.WaitGroup
	defer func() {
		cancel()
		if err := pc.GracefulClose(); err != nil {
			d.t.Error(err)
		}
		sender.Wait()
	}()
	p, ok := d.peer(ctx, pc, cur)
	if !ok || !d.answer(pc, h, offer, p.cands) {
		return
	}
	tooMany := make(chan struct{})
	switches := make(chan *fakeStream, 1)
	for {
		select {
		case <-ctx.Done():
			return
		case line := <-p.cands:
			d.publish(h.Reply(p2p.TypeCandidate), p2p.Candidate{Mode: p2p.ModeWebRTC, Candidate: line})
		case m := <-fs.inbox:
			if !d.fromApp(pc, m) {
				return
			}
		case req := <-fs.requests:
			cur = d.request(req, h, cur, switches)
		case <-p.connected:
			first := cur
			sender.Go(func() { d.stream(ctx, p.video, p.audio, first, switches, tooMany) })
		case <-tooMany:
			r := p2p.CloseTimeout
			d.publish(h.Reply(p2p.TypeDisconnect), p2p.Disconnect{Mode: p2p.ModeWebRTC, CloseReason: int(r), Code: r.Code(), Message: r.String()})
			return
		}
	}
}

// admit decides an offer like ipcd: it is refused (nil stream) for its
// auth, by the options, or for its codecs; else it gets the stream it
// will be sent.
func (d *fakeDevice) admit(offerMsg p2p.Message) (p2p.Offer, *fakeStream) {
	h := offerMsg.Header
	offer, err := p2p.DecodeOffer(offerMsg.Msg)
	if err != nil {
		d.t.Errorf("fake device: bad offer: %v", err)
		return offer, nil
	}
	select {
	case d.offers <- offer:
	default:
	}
	if d.opts.silent {
		return offer, nil
	}
	if d.opts.decoy {
		decoy := h.Reply(p2p.TypeDisconnect)
		decoy.To = "someone-else"
		d.publish(decoy, p2p.Disconnect{Mode: p2p.ModeWebRTC, CloseReason: 4, Code: -104, Message: "not for you"})
	}
	if err := p2p.VerifyAuth(offer.Auth, fakePassword, fakeDevID, h.From, time.Now()); err != nil {
		d.publish(h.Reply(p2p.TypeDisconnect), p2p.Disconnect{Mode: p2p.ModeWebRTC,
			CloseReason: int(p2p.CloseAuth), Code: p2p.CloseAuth.Code(), Message: p2p.CloseAuth.String()})
		return offer, nil
	}
	if d.opts.refuse != nil {
		d.publish(h.Reply(p2p.TypeDisconnect), *d.opts.refuse)
		return offer, nil
	}
	cur := d.pick(offer)
	if cur == nil {
		r := p2p.CloseCodec
		d.publish(h.Reply(p2p.TypeDisconnect), p2p.Disconnect{Mode: p2p.ModeWebRTC, CloseReason: int(r), Code: r.Code(), Message: r.String()})
		return offer, nil
	}
	select {
	case d.picked <- cur.name:
	default:
	}
	return offer, cur
}

// fakePeer is a session's tracks and the events of its peer connection.
type fakePeer struct {
	video, audio *webrtc.TrackLocalStaticSample
	cands        chan string
	connected    chan struct{}
}

// peer adds the tracks and turns the peer connection's callbacks into
// channel sends.
func (d *fakeDevice) peer(ctx context.Context, pc *webrtc.PeerConnection, cur *fakeStream) (fakePeer, bool) {
	var p fakePeer
	var err error
	if p.video, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mimeOf(cur.codec)}, "video", "ipcd"); err != nil {
		d.t.Error(err)
		return p, false
	}
	if p.audio, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU}, "audio", "ipcd"); err != nil {
		d.t.Error(err)
		return p, false
	}
	for _, tr := range []webrtc.TrackLocal{p.audio, p.video} {
		if _, err := pc.AddTrack(tr); err != nil {
			d.t.Error(err)
			return p, false
		}
	}
	p.cands = make(chan string, 16)
	p.connected = make(chan struct{}, 1)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		line := ""
		if c != nil {
			line = c.ToJSON().Candidate
			if !d.opts.bareCandidates {
				line = p2p.CandidateLine(line)
			}
		}
		select {
		case p.cands <- line:
		case <-ctx.Done():
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			select {
			case p.connected <- struct{}{}:
			default:
			}
		}
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case d.controls <- dc.Label() + " " + string(m.Data):
			default:
			}
		})
	})
	return p, true
}

// answer answers the offer, after the candidates when the options say so.
func (d *fakeDevice) answer(pc *webrtc.PeerConnection, h p2p.Header, offer p2p.Offer, cands chan string) bool {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
		d.t.Errorf("fake device: set offer: %v", err)
		return false
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		d.t.Error(err)
		return false
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		d.t.Error(err)
		return false
	}
	answerMsg := p2p.Answer{Mode: p2p.ModeWebRTC, SDP: answer.SDP, Token: offer.Token, TCPToken: offer.TCPToken}
	if d.opts.candidatesFirst {
		for line := range cands {
			d.publish(h.Reply(p2p.TypeCandidate), p2p.Candidate{Mode: p2p.ModeWebRTC, Candidate: line})
			if line == "" {
				break
			}
		}
	}
	d.publish(h.Reply(p2p.TypeAnswer), answerMsg)
	return true
}

// fromApp takes a 302 message of the session's app; false when it ends
// the session.
func (d *fakeDevice) fromApp(pc *webrtc.PeerConnection, m p2p.Message) bool {
	switch m.Header.Type {
	case p2p.TypeCandidate:
		c, err := p2p.DecodeCandidate(m.Msg)
		if err != nil {
			d.t.Errorf("fake device: candidate: %v", err)
			return true
		}
		if line := p2p.ParseCandidateLine(c.Candidate); line != "" {
			if err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: line}); err != nil {
				d.t.Errorf("fake device: add candidate %q: %v", line, err)
			}
		}
	case p2p.TypeDisconnect:
		return false
	}
	return true
}

// request answers a 312 request and returns the stream the session sends
// from now on.
func (d *fakeDevice) request(req controlRequest, h p2p.Header, cur *fakeStream, switches chan *fakeStream) *fakeStream {
	code, msg := d.resolution(req, h, cur)
	if code == p2p.ResOK {
		cur = d.streams[[]string{"main", "sub"}[req.value]]
		select {
		case <-switches: // the newest request wins
		default:
		}
		switches <- cur
	}
	d.publishProto(p2p.ControlProtocol, req.header.Reply(req.header.Type), p2p.ControlResult{ResCode: code, Message: msg})
	return cur
}

// resolution decides a 312 request for a session that sends cur, with
// ipcd's result codes.
func (d *fakeDevice) resolution(req controlRequest, session p2p.Header, cur *fakeStream) (int, string) {
	switch {
	case req.header.From != session.From:
		return p2p.ResNoSuchSession, "no such session"
	case req.header.Type == p2p.ControlSpeaker:
		return p2p.ResUnsupported, "talkback is not supported by this device"
	case req.header.Type != p2p.ControlResolution:
		return p2p.ResBadRequest, "unknown type " + req.header.Type
	case req.value != 0 && req.value != 1:
		return p2p.ResBadRequest, "cmdValue must be 0 or 1"
	}
	target := d.streams[[]string{"main", "sub"}[req.value]]
	switch {
	case target == nil:
		return p2p.ResNoStream, "stream not configured"
	case target.codec != cur.codec:
		return p2p.ResCodecMismatch, "the streams' codecs differ"
	}
	return p2p.ResOK, ""
}

// stream sends the clip from its first keyframe and the audio in 40 ms
// frames, paced in real time. A switch takes effect at the new stream's
// next keyframe; the clips are cut alike, so frame i of one stream shows
// the same instant as frame i of the other.
func (d *fakeDevice) stream(ctx context.Context, video, audio *webrtc.TrackLocalStaticSample, cur *fakeStream,
	switches <-chan *fakeStream, tooMany chan<- struct{}) {
	tick := time.NewTicker(frameTime)
	defer tick.Stop()
	var pending *fakeStream
	for i := 0; ; i++ {
		if d.opts.disconnectAfter > 0 && i == d.opts.disconnectAfter {
			close(tooMany)
			return
		}
		select {
		case pending = <-switches:
		default:
		}
		if pending != nil {
			if au := pending.aus[i%len(pending.aus)]; isKeyAU(pending.codec, au) {
				cur, pending = pending, nil
			}
		}
		if err := video.WriteSample(media.Sample{Data: cur.aus[i%len(cur.aus)], Duration: frameTime}); err != nil {
			return
		}
		if err := audio.WriteSample(media.Sample{Data: d.audio[i%len(d.audio)], Duration: frameTime}); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
