package viewer

import (
	"context"
	"encoding/json"
	"os"
	"slices"
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

// fakeOptions choose how the fake device misbehaves.
type fakeOptions struct {
	refuse          *p2p.Disconnect // refuse every authenticated offer with this
	disconnectAfter int             // video frames sent before a disconnect with close reason 8
	bareCandidates  bool            // send "candidate:..." without "a=" and the line ending
	candidatesFirst bool            // publish all candidates before the answer
	decoy           bool            // first send a disconnect addressed to another app
	silent          bool            // never answer
}

// fakeDevice plays ipcd's part of signaling over a real broker and streams
// the sample clip and audio over a real pion peer connection on loopback.
type fakeDevice struct {
	t      *testing.T
	opts   fakeOptions
	api    *webrtc.API
	aus    [][]byte
	audio  [][]byte
	mqtt   paho.Client
	in     chan []byte
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// What the device saw, for assertions.
	raw         chan []byte
	disconnects chan p2p.Message
	controls    chan string
}

func startFakeDevice(t *testing.T, broker string, opts fakeOptions) *fakeDevice {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		PayloadType: 102,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
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

	ctx, cancel := context.WithCancel(context.Background())
	d := &fakeDevice{
		t:           t,
		opts:        opts,
		api:         webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)),
		aus:         sampleAUs(t),
		audio:       sampleAudio(t),
		in:          make(chan []byte, 256),
		ctx:         ctx,
		cancel:      cancel,
		raw:         make(chan []byte, 64),
		disconnects: make(chan p2p.Message, 16),
		controls:    make(chan string, 16),
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

func (d *fakeDevice) publish(h p2p.Header, msg any) {
	b, err := json.Marshal(map[string]any{
		"protocol": 302, "pv": "2.2", "t": time.Now().Unix(),
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

// loop routes messages to one goroutine per session.
func (d *fakeDevice) loop() {
	sessions := make(map[string]chan p2p.Message)
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
		if json.Unmarshal(payload, &env) != nil || env.Protocol != p2p.Protocol {
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
			inbox := make(chan p2p.Message, 64)
			sessions[m.Header.SessionID] = inbox
			d.wg.Go(func() { d.session(m, inbox) })
			continue
		}
		if inbox, ok := sessions[m.Header.SessionID]; ok {
			select {
			case inbox <- m:
			default:
			}
		}
	}
}

func (d *fakeDevice) session(offerMsg p2p.Message, inbox <-chan p2p.Message) {
	h := offerMsg.Header
	offer, err := p2p.DecodeOffer(offerMsg.Msg)
	if err != nil {
		d.t.Errorf("fake device: bad offer: %v", err)
		return
	}
	if d.opts.silent {
		return
	}
	if d.opts.decoy {
		decoy := h.Reply(p2p.TypeDisconnect)
		decoy.To = "someone-else"
		d.publish(decoy, p2p.Disconnect{Mode: p2p.ModeWebRTC, CloseReason: 4, Code: -104, Message: "not for you"})
	}
	if err := p2p.VerifyAuth(offer.Auth, fakePassword, fakeDevID, h.From, time.Now()); err != nil {
		d.publish(h.Reply(p2p.TypeDisconnect), p2p.Disconnect{Mode: p2p.ModeWebRTC,
			CloseReason: int(p2p.CloseAuth), Code: p2p.CloseAuth.Code(), Message: p2p.CloseAuth.String()})
		return
	}
	if d.opts.refuse != nil {
		d.publish(h.Reply(p2p.TypeDisconnect), *d.opts.refuse)
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
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264}, "video", "ipcd")
	if err != nil {
		d.t.Error(err)
		return
	}
	audio, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU}, "audio", "ipcd")
	if err != nil {
		d.t.Error(err)
		return
	}
	for _, tr := range []webrtc.TrackLocal{audio, video} {
		if _, err := pc.AddTrack(tr); err != nil {
			d.t.Error(err)
			return
		}
	}
	cands := make(chan string, 16)
	connected := make(chan struct{}, 1)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		line := ""
		if c != nil {
			line = c.ToJSON().Candidate
			if !d.opts.bareCandidates {
				line = p2p.CandidateLine(line)
			}
		}
		select {
		case cands <- line:
		case <-ctx.Done():
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			select {
			case connected <- struct{}{}:
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
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
		d.t.Errorf("fake device: set offer: %v", err)
		return
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		d.t.Error(err)
		return
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		d.t.Error(err)
		return
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

	tooMany := make(chan struct{})
	for {
		select {
		case <-ctx.Done():
			return
		case line := <-cands:
			d.publish(h.Reply(p2p.TypeCandidate), p2p.Candidate{Mode: p2p.ModeWebRTC, Candidate: line})
		case m := <-inbox:
			switch m.Header.Type {
			case p2p.TypeCandidate:
				c, err := p2p.DecodeCandidate(m.Msg)
				if err != nil {
					d.t.Errorf("fake device: candidate: %v", err)
					continue
				}
				if line := p2p.ParseCandidateLine(c.Candidate); line != "" {
					if err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: line}); err != nil {
						d.t.Errorf("fake device: add candidate %q: %v", line, err)
					}
				}
			case p2p.TypeDisconnect:
				return
			}
		case <-connected:
			sender.Go(func() { d.stream(ctx, video, audio, tooMany) })
		case <-tooMany:
			r := p2p.CloseTimeout
			d.publish(h.Reply(p2p.TypeDisconnect), p2p.Disconnect{Mode: p2p.ModeWebRTC, CloseReason: int(r), Code: r.Code(), Message: r.String()})
			return
		}
	}
}

// stream sends the clip from its first keyframe and the audio in 40 ms
// frames, paced in real time.
func (d *fakeDevice) stream(ctx context.Context, video, audio *webrtc.TrackLocalStaticSample, tooMany chan<- struct{}) {
	tick := time.NewTicker(frameTime)
	defer tick.Stop()
	for i := 0; ; i++ {
		if d.opts.disconnectAfter > 0 && i == d.opts.disconnectAfter {
			close(tooMany)
			return
		}
		if err := video.WriteSample(media.Sample{Data: d.aus[i%len(d.aus)], Duration: frameTime}); err != nil {
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
