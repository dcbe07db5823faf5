package p2p

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtcp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// startDevice runs the media stream service over rings fed by the caller.
// cfg's network settings default to loopback.
func startDevice(t testing.TB, m Media, cfg Config, log *slog.Logger) *fmDevice {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Net == nil && cfg.NetworkInterfaces == nil {
		cfg.NetworkInterfaces, cfg.LoopbackCandidates = loopbackIfaces(t), true
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &sessionPublisher{out: map[string]chan Message{}}
	svc, err := NewService(cfg, m, out, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = svc.Run(ctx, Credentials{DevID: fmDevID, P2PPassword: fmPassword}) })
	d := &fmDevice{svc: svc, out: out, stop: func() { cancel(); wg.Wait() }}
	t.Cleanup(d.stop)
	return d
}

// fileRing is a ring fed by a looping file source until the test ends.
func fileRing(t testing.TB, path string, stream media.Stream, codec media.Codec, fps int) *media.Ring {
	t.Helper()
	r, err := media.NewRing(media.RingConfig{Stream: stream, Codec: codec, MaxBytes: 8 << 20, MaxFrames: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := media.NewFileSource(media.FileSourceConfig{Path: path, FPS: fps, Loop: true}, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = src.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

// rtpViewer is an app that takes the media on RTP tracks, as the Tuya app
// and browsers do, and reassembles the H.264 access units.
type rtpViewer struct {
	pc     *webrtc.PeerConnection
	frames chan viewerFrame
	ssrc   chan webrtc.SSRC
	cands  chan string // the device's candidates; "" ends them
	done   chan struct{}
	wg     sync.WaitGroup
}

// viewerFrame is one access unit as the viewer received it.
type viewerFrame struct {
	au  []byte // Annex-B
	key bool
	ts  uint32
	at  time.Time
}

type viewerOptions struct {
	se     *webrtc.SettingEngine // nil: loopback
	config webrtc.Configuration
	// decode, when set, takes the video instead of the frames channel,
	// and the viewer asks for retransmissions (NACK) as browsers do.
	decode *decoder
}

func newRTPViewer(t testing.TB, opt viewerOptions) *rtpViewer {
	t.Helper()
	me := viewerMediaEngine(t, opt.decode != nil)
	se := opt.se
	if se == nil {
		se = loopbackSettings(t)
	}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	ir := &interceptor.Registry{}
	if opt.decode != nil {
		// A browser asks for a packet a bounded number of times (10 in
		// libwebrtc, spaced by the round trip); pion's generator, blind
		// to what arrives in the RTX stream, would ask every 100 ms for
		// as long as the packet is in its log.
		if err := webrtc.RegisterDefaultInterceptorsWithOptions(me, ir, webrtc.WithNackGeneratorOptions(nack.GeneratorMaxNacksPerPacket(3))); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(*se), webrtc.WithInterceptorRegistry(ir)).NewPeerConnection(opt.config)
	if err != nil {
		t.Fatal(err)
	}
	v := &rtpViewer{pc: pc, frames: make(chan viewerFrame, 4096), ssrc: make(chan webrtc.SSRC, 1),
		cands: make(chan string, 64), done: make(chan struct{})}
	t.Cleanup(v.close)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) { v.onTrack(tr, rcv, opt.decode) })
	return v
}

// viewerMediaEngine has the formats a viewer offers: PCMU and constrained
// baseline H.264, and with rtx its RTX format, as browsers offer.
func viewerMediaEngine(t testing.TB, rtx bool) *webrtc.MediaEngine {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range []struct {
		p webrtc.RTPCodecParameters
		k webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, PayloadType: 0}, webrtc.RTPCodecTypeAudio},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtpH264ConstrainedBaseline,
			RTCPFeedback: videoFeedback}, PayloadType: 97}, webrtc.RTPCodecTypeVideo},
	} {
		if err := me.RegisterCodec(c.p, c.k); err != nil {
			t.Fatal(err)
		}
	}
	if rtx {
		// Like a browser's: retransmissions in an RTX stream.
		if err := me.RegisterCodec(rtxFormat(98, 97), webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	return me
}

// loopbackSettings keep a viewer on the loopback interfaces, UDP4.
func loopbackSettings(t testing.TB) *webrtc.SettingEngine {
	se := &webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	names := loopbackIfaces(t)
	se.SetInterfaceFilter(func(n string) bool {
		for _, l := range names {
			if n == l {
				return true
			}
		}
		return false
	})
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return se
}

// onTrack reads a remote track: video into frames (or the decoder), audio
// drained, and the track's RTCP.
func (v *rtpViewer) onTrack(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver, dec *decoder) {
	// The sender reports reach the report interceptor only while
	// someone reads; a browser's receiver reports then carry their
	// time (LSR), from which the device has the round trip.
	v.wg.Go(func() {
		for {
			if _, _, err := rcv.ReadRTCP(); err != nil {
				return
			}
		}
	})
	if tr.Kind() != webrtc.RTPCodecTypeVideo {
		v.wg.Go(func() {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
			}
		})
		return
	}
	v.ssrc <- tr.SSRC()
	if dec != nil {
		v.wg.Go(func() { dec.run(v, tr) })
		return
	}
	v.wg.Go(func() { v.readVideo(tr) })
}

// readVideo reassembles access units: the depacketizer gives the NAL units
// of each packet (FU-A fragments once complete), the marker ends the unit.
func (v *rtpViewer) readVideo(tr *webrtc.TrackRemote) {
	var dp codecs.H264Packet
	var au []byte
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		nals, err := dp.Unmarshal(p.Payload)
		if err == nil {
			au = append(au, nals...)
		}
		if !p.Marker || len(au) == 0 {
			continue
		}
		f := viewerFrame{au: au, key: media.IsH264Keyframe(au), ts: p.Timestamp, at: time.Now()}
		au = nil
		select {
		case v.frames <- f:
		default:
		}
	}
}

func (v *rtpViewer) close() {
	select {
	case <-v.done:
		return
	default:
		close(v.done)
	}
	_ = v.pc.Close()
	v.wg.Wait()
}

// next returns the next access unit received, within d.
func (v *rtpViewer) next(t testing.TB, d time.Duration) viewerFrame {
	t.Helper()
	select {
	case f := <-v.frames:
		return f
	case <-time.After(d):
		t.Fatalf("no video frame within %v", d)
	}
	return viewerFrame{}
}

// pli sends a picture loss indication for the video track, as a browser
// does when it cannot decode.
func (v *rtpViewer) pli(t testing.TB, ssrc webrtc.SSRC) {
	t.Helper()
	if err := v.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}}); err != nil {
		t.Fatal(err)
	}
}

// offerMessage gathers pc's offer and returns it as the app's signed 302
// offer for session sid, with o's other members.
func offerMessage(t testing.TB, pc *webrtc.PeerConnection, sid string, o Offer) []byte {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	o.Mode, o.SDP = ModeWebRTC, pc.LocalDescription().SDP
	o.Auth = SignAuth(fmPassword, fmDevID, fmApp, time.Now().Unix()+600)
	msg, _ := json.Marshal(o)
	raw, _ := json.Marshal(Message{Header: Header{Type: TypeOffer, From: fmApp, To: fmDevID, SessionID: sid}, Msg: msg})
	return raw
}

// connect offers to d with token as the offer's ICE servers and answers
// the device's candidates until the test ends. It does not wait for the
// connection.
func (v *rtpViewer) connect(t testing.TB, d *fmDevice, sid string, token []ICEServer) {
	t.Helper()
	raw := offerMessage(t, v.pc, sid, Offer{Token: token})
	if !d.svc.Deliver(raw) {
		t.Fatal("offer dropped")
	}
	out := d.out.session(sid)
	timeout := time.After(10 * time.Second)
	for answered := false; !answered; {
		select {
		case m := <-out:
			switch m.Header.Type {
			case TypeAnswer:
				a, err := DecodeAnswer(m.Msg)
				if err != nil {
					t.Fatal(err)
				}
				if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.SDP}); err != nil {
					t.Fatal(err)
				}
				answered = true
			case TypeDisconnect:
				t.Fatalf("refused: %s", m.Msg)
			}
		case <-timeout:
			t.Fatal("no answer")
		}
	}
	v.wg.Go(func() {
		for {
			select {
			case m := <-out:
				if m.Header.Type != TypeCandidate {
					continue
				}
				c, _ := DecodeCandidate(m.Msg)
				line := ParseCandidateLine(c.Candidate)
				if line != "" {
					_ = v.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: line})
				}
				select {
				case v.cands <- line:
				default:
				}
			case <-v.done:
				return
			}
		}
	})
}

// videoSSRC waits for the video track.
func (v *rtpViewer) videoSSRC(t testing.TB, d time.Duration) webrtc.SSRC {
	t.Helper()
	select {
	case s := <-v.ssrc:
		return s
	case <-time.After(d):
		t.Fatalf("no video track within %v", d)
	}
	return 0
}

// deviceCandidates returns the device's candidate lines, once it has said
// it has no more.
func (v *rtpViewer) deviceCandidates(t testing.TB, d time.Duration) []string {
	t.Helper()
	var lines []string
	timeout := time.After(d)
	for {
		select {
		case l := <-v.cands:
			if l == "" {
				return lines
			}
			lines = append(lines, l)
		case <-timeout:
			t.Fatalf("device still gathering after %v: %q", d, lines)
		}
	}
}

// localPairType is the viewer's side of the selected candidate pair.
func (v *rtpViewer) localPairType(t testing.TB) webrtc.ICECandidateType {
	t.Helper()
	for _, tr := range v.pc.GetTransceivers() {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		if p, err := tr.Receiver().Transport().ICETransport().GetSelectedCandidatePair(); err == nil && p != nil {
			return p.Local.Typ
		}
	}
	t.Fatal("viewer has no selected candidate pair")
	return webrtc.ICECandidateTypeUnknown
}

// sessionStats returns the stats of the device's only session.
func sessionStats(t testing.TB, d *fmDevice) SessionStats {
	t.Helper()
	st := d.svc.Sessions(context.Background())
	if len(st) != 1 {
		t.Fatalf("%d sessions, want 1", len(st))
	}
	return st[0]
}

// loopbackIfaces names the host's loopback interfaces.
func loopbackIfaces(t testing.TB) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			names = append(names, i.Name)
		}
	}
	return names
}
