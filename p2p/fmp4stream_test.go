package p2p

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/ipcd/ipcd/media"
)

const (
	fmDevID    = "6c1e0000fmp40001"
	fmPassword = "fm12ab34"
	fmApp      = "app-fmp4"
	mediaDir   = "../configs/media/"
)

func TestDecodeFMP4Message(t *testing.T) {
	tests := []struct {
		in      string
		typ     string
		wantErr error
	}{
		{`{"type":"codec","msg":""}`, FMP4Codec, nil},
		{`{"type":"start","msg":"frame"}`, FMP4Start, nil},
		{`{"type":"complete"}`, FMP4Complete, nil},
		{`{"type":"recv","msg":"{}"}`, "", ErrUnknownCommand},
		{`{"type":"fly"}`, "", ErrUnknownCommand},
		{`{"msg":"x"}`, "", ErrMissingField},
		{`{not json`, "", ErrMalformed},
		{`{"type":"codec","msg":"` + strings.Repeat("a", maxCommand) + `"}`, "", ErrMalformed},
	}
	for _, tc := range tests {
		m, err := DecodeFMP4Message([]byte(tc.in))
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) || (err == nil && m.Type != tc.typ) {
			t.Errorf("DecodeFMP4Message(%.40s) = %q, %v; want %q, %v", tc.in, m.Type, err, tc.typ, tc.wantErr)
		}
	}
}

// FuzzFMP4Handshake drives the handshake state machine the session loop
// runs with the messages of a channel: whatever arrives, it answers, waits
// or fails with a named rule, and never closes ready twice.
func FuzzFMP4Handshake(f *testing.F) {
	f.Add(`{"type":"codec","msg":""}`, `{"type":"start","msg":"frame"}`, `{"type":"complete"}`)
	f.Add(`{"type":"start","msg":"frame"}`, `{"type":"codec","msg":""}`, `{"type":"complete"}`)
	f.Add(`{"type":"codec"}`, `{"type":"start","msg":"x"}`, `{}`)
	f.Fuzz(func(t *testing.T, a, b, c string) {
		fm := &fmp4Stream{ready: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
		dc := &webrtc.DataChannel{}
		for _, in := range []string{a, b, c, `{"type":"complete"}`} {
			reply, err := fm.handle(dcMessage{dc: dc, data: []byte(in)}, media.CodecH265, media.CodecPCMU)
			if err != nil {
				if fmp4Rule(err) == "malformed" && !errors.Is(err, ErrMalformed) {
					t.Fatalf("error without a rule: %v", err)
				}
				return
			}
			if reply != "" {
				var m FMP4Message
				if json.Unmarshal([]byte(reply), &m) != nil || (m.Type != FMP4Codec && m.Type != FMP4Recv) {
					t.Fatalf("reply %q", reply)
				}
			}
		}
	})
}

// fmDevice is the media stream service over file sources with a publisher
// that hands its messages to the test.
type fmDevice struct {
	svc  *Service
	out  *sessionPublisher
	stop func()
}

// sessionPublisher hands each session's messages to its client.
type sessionPublisher struct {
	mu  sync.Mutex
	out map[string]chan Message
}

func (p *sessionPublisher) session(sid string) chan Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out[sid] == nil {
		p.out[sid] = make(chan Message, 64)
	}
	return p.out[sid]
}

func (p *sessionPublisher) Publish(_ int, data any) error {
	raw, ok := data.(json.RawMessage)
	if !ok {
		return errors.New("not an encoded message")
	}
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	select {
	case p.session(m.Header.SessionID) <- m:
	default:
	}
	return nil
}

func startFMDevice(t *testing.T, main string, fps int) *fmDevice {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var m Media
	for _, s := range []struct {
		path   string
		stream media.Stream
		ring   **media.Ring
		fps    int
	}{{main, media.StreamMain, &m.Main, fps}, {"audio.pcmu", media.StreamAudio, &m.Audio, 0}} {
		src0, err := media.ReadAccessUnits(mediaDir + s.path)
		codec := media.CodecPCMU
		if s.stream == media.StreamMain {
			if err != nil {
				t.Fatal(err)
			}
			codec = media.CodecH264
			if media.IsH265Keyframe(src0[0].Payload) {
				codec = media.CodecH265
			}
		}
		r, err := media.NewRing(media.RingConfig{Stream: s.stream, Codec: codec, MaxBytes: 8 << 20, MaxFrames: 1000}, log)
		if err != nil {
			t.Fatal(err)
		}
		src, err := media.NewFileSource(media.FileSourceConfig{Path: mediaDir + s.path, FPS: s.fps, Loop: true}, r, log)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = src.Run(ctx) })
		*s.ring = r
	}
	out := &sessionPublisher{out: map[string]chan Message{}}
	svc, err := NewService(Config{NetworkInterfaces: loopbackIfaces(t), LoopbackCandidates: true}, m, out, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = svc.Run(ctx, Credentials{DevID: fmDevID, P2PPassword: fmPassword}) })
	d := &fmDevice{svc: svc, out: out, stop: func() { cancel(); wg.Wait() }}
	t.Cleanup(d.stop)
	return d
}

// fmClient is the app side as go2rtc's Tuya client builds it: audio
// sendrecv first, video recvonly, and the fmp4Stream channel.
type fmClient struct {
	pc       *webrtc.PeerConnection
	dc       *webrtc.DataChannel
	text     chan string
	packets  chan *rtp.Packet
	onTrack  chan *webrtc.TrackRemote
	throttle func()  // runs before each binary message is taken
	replay   *Replay // sent in the offer
	answer   string
	done     chan struct{}
	wg       sync.WaitGroup
}

// close ends the client and its signaling goroutine.
func (c *fmClient) close() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	_ = c.pc.Close()
	c.wg.Wait()
}

func newFMClient(t *testing.T, throttle func()) *fmClient {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range []struct {
		p webrtc.RTPCodecParameters
		k webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, PayloadType: 0}, webrtc.RTPCodecTypeAudio},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtpH264Baseline}, PayloadType: 96}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtpH264ConstrainedBaseline}, PayloadType: 97}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000}, PayloadType: 100}, webrtc.RTPCodecTypeVideo},
	} {
		if err := me.RegisterCodec(c.p, c.k); err != nil {
			t.Fatal(err)
		}
	}
	se := loopbackSettings(t)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// A small receive window makes a slow reader push back on the device
	// after a few frames rather than after a megabyte.
	se.SetSCTPMaxReceiveBufferSize(64 << 10)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(*se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c := &fmClient{pc: pc, text: make(chan string, 8), packets: make(chan *rtp.Packet, 4096),
		onTrack: make(chan *webrtc.TrackRemote, 2), throttle: throttle, done: make(chan struct{})}
	t.Cleanup(c.close)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		select {
		case c.onTrack <- tr:
		default:
		}
	})
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	retransmits, ordered := uint16(5), true
	if c.dc, err = pc.CreateDataChannel(FMP4Label, &webrtc.DataChannelInit{MaxRetransmits: &retransmits, Ordered: &ordered}); err != nil {
		t.Fatal(err)
	}
	c.dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if m.IsString {
			select {
			case c.text <- string(m.Data):
			default:
			}
			return
		}
		if c.throttle != nil {
			c.throttle()
		}
		var p rtp.Packet
		if p.Unmarshal(m.Data) == nil {
			select {
			case c.packets <- &p:
			default:
				t.Errorf("test client queue full")
			}
		}
	})
	return c
}

// connect sends the offer with the ICE candidates in its SDP and applies
// the answer and the device's candidates; it returns the device's
// disconnect when one comes instead.
func (c *fmClient) connect(t *testing.T, d *fmDevice, sid string, dataChannel bool) {
	t.Helper()
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	msg, _ := json.Marshal(Offer{Mode: ModeWebRTC, SDP: c.pc.LocalDescription().SDP, Auth: SignAuth(fmPassword, fmDevID, fmApp, time.Now().Unix()+600), DataChannelEnable: dataChannel, Replay: c.replay})
	h := Header{Type: TypeOffer, From: fmApp, To: fmDevID, SessionID: sid}
	raw, _ := json.Marshal(Message{Header: h, Msg: msg})
	if !d.svc.Deliver(raw) {
		t.Fatal("offer dropped")
	}
	out := d.out.session(sid)
	timeout := time.After(10 * time.Second)
	for c.answer == "" {
		select {
		case m := <-out:
			switch m.Header.Type {
			case TypeAnswer:
				a, err := DecodeAnswer(m.Msg)
				if err != nil {
					t.Fatal(err)
				}
				c.answer = a.SDP
				if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.SDP}); err != nil {
					t.Fatal(err)
				}
			case TypeDisconnect:
				t.Fatalf("refused: %s", m.Msg)
			}
		case <-timeout:
			t.Fatal("no answer")
		}
	}
	// The device's candidates, until the connection is up.
	c.wg.Go(func() {
		for {
			select {
			case m := <-out:
				if m.Header.Type == TypeCandidate {
					cand, _ := DecodeCandidate(m.Msg)
					if line := ParseCandidateLine(cand.Candidate); line != "" {
						_ = c.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: line})
					}
					continue
				}
				if m.Header.Type == TypeDisconnect {
					select {
					case c.text <- "disconnect " + string(m.Msg):
					default:
					}
				}
			case <-c.done:
				return
			}
		}
	})
}

func (c *fmClient) recvText(t *testing.T) string {
	t.Helper()
	select {
	case s := <-c.text:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no message from the device")
	}
	return ""
}

func (c *fmClient) waitOpen(t *testing.T) {
	t.Helper()
	open := make(chan struct{})
	c.dc.OnOpen(func() { close(open) })
	if c.dc.ReadyState() == webrtc.DataChannelStateOpen {
		return
	}
	select {
	case <-open:
	case <-time.After(10 * time.Second):
		t.Fatal("fmp4Stream channel did not open")
	}
}

// handshake runs the client's side of the handshake and returns the SSRCs
// the device announced.
func (c *fmClient) handshake(t *testing.T) (FMP4Streams, FMP4Streams) {
	t.Helper()
	c.waitOpen(t)
	var codec, recv FMP4Message
	var codecs, ssrcs FMP4Streams
	if err := c.dc.SendText(`{"type":"codec","msg":""}`); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(c.recvText(t)), &codec); err != nil || codec.Type != FMP4Codec {
		t.Fatalf("codec answer %+v, %v", codec, err)
	}
	if err := json.Unmarshal([]byte(codec.Msg), &codecs); err != nil {
		t.Fatalf("codec msg %q: %v", codec.Msg, err)
	}
	if err := c.dc.SendText(`{"type":"start","msg":"frame"}`); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(c.recvText(t)), &recv); err != nil || recv.Type != FMP4Recv {
		t.Fatalf("recv %+v, %v", recv, err)
	}
	if err := json.Unmarshal([]byte(recv.Msg), &ssrcs); err != nil || ssrcs.Video.SSRC == 0 || ssrcs.Audio.SSRC == 0 {
		t.Fatalf("recv msg %q: %v", recv.Msg, err)
	}
	if err := c.dc.SendText(`{"type":"complete","msg":""}`); err != nil {
		t.Fatal(err)
	}
	return codecs, ssrcs
}

// TestFMP4StreamH265 runs a session the way go2rtc's Tuya client does for
// an H.265 camera: the answer names H.264 only, the handshake announces
// the SSRCs, and video and audio arrive as RTP packets on the channel
// while the media tracks stay silent.
func TestFMP4StreamH265(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	d := startFMDevice(t, "main.h265", 25)
	c := newFMClient(t, nil)
	c.connect(t, d, "fm0001", true)

	if strings.Contains(c.answer, "H265") || !strings.Contains(c.answer, "H264/90000") {
		t.Errorf("answer video section should list H264 only:\n%s", c.answer)
	}
	codecs, ssrcs := c.handshake(t)
	if codecs.Video.Codec != "H265" || codecs.Video.PayloadType != ptH265 || codecs.Audio.Codec != "PCMU" {
		t.Errorf("codec answer %+v", codecs)
	}

	var video, audio int
	var first *rtp.Packet
	deadline := time.After(10 * time.Second)
	for video < 200 || audio < 20 {
		select {
		case p := <-c.packets:
			switch p.SSRC {
			case ssrcs.Video.SSRC:
				if first == nil {
					first = p
				}
				if p.PayloadType != ptH265 {
					t.Fatalf("video payload type %d", p.PayloadType)
				}
				video++
			case ssrcs.Audio.SSRC:
				audio++
			default:
				t.Fatalf("packet with SSRC %d, announced %+v", p.SSRC, ssrcs)
			}
		case <-deadline:
			t.Fatalf("%d video and %d audio packets", video, audio)
		}
	}
	// The session starts at the buffered keyframe: VPS, or an
	// aggregation packet holding it.
	if typ := (first.Payload[0] >> 1) & 0x3f; typ != 32 && typ != 48 {
		t.Errorf("first video packet has NAL type %d, want a keyframe's parameter sets", typ)
	}
	select {
	case tr := <-c.onTrack:
		t.Errorf("media arrived on the %s track", tr.Kind())
	default:
	}
	st := d.svc.Sessions(context.Background())
	if len(st) != 1 || st[0].VideoFrames == 0 || st[0].VideoBytes == 0 || st[0].AudioFrames == 0 || st[0].TTFF == 0 {
		t.Errorf("session stats %+v", st)
	}
	c.close()
	d.stop()
}

// TestFMP4HandshakeErrors: a handshake out of order, an unknown message or
// a channel the offer did not announce ends the session with close reason 1.
func TestFMP4HandshakeErrors(t *testing.T) {
	d := startFMDevice(t, "main.h264", 25)
	for i, tc := range []struct {
		name        string
		dataChannel bool
		msgs        []string
	}{
		{"start before codec", true, []string{`{"type":"start","msg":"frame"}`}},
		{"unknown message", true, []string{`{"type":"codec","msg":""}`, `{"type":"pause","msg":""}`}},
		{"start without frame", true, []string{`{"type":"codec","msg":""}`, `{"type":"start","msg":"mp4"}`}},
		{"channel without datachannel_enable", false, []string{`{"type":"codec","msg":""}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFMClient(t, nil)
			c.connect(t, d, "fmerr"+string(rune('a'+i)), tc.dataChannel)
			c.waitOpen(t)
			for _, m := range tc.msgs {
				if err := c.dc.SendText(m); err != nil {
					t.Fatal(err)
				}
			}
			for {
				got := c.recvText(t)
				if !strings.HasPrefix(got, "disconnect ") {
					continue // the codec answer
				}
				var dis Disconnect
				if err := json.Unmarshal([]byte(strings.TrimPrefix(got, "disconnect ")), &dis); err != nil || dis.CloseReason != 1 {
					t.Errorf("disconnect %s, want close_reason 1", got)
				}
				break
			}
		})
	}
}

// TestFMP4CongestedSkipsToKeyframe throttles the app's reader of the
// channel: the device's send queue stays bounded, frames are skipped, and
// sending resumes at a keyframe, never in the middle of a GOP.
func TestFMP4CongestedSkipsToKeyframe(t *testing.T) {
	d := startFMDevice(t, "main.h264", 100)
	slowUntil := time.Now().Add(4 * time.Second)
	c := newFMClient(t, func() {
		if time.Now().Before(slowUntil) {
			time.Sleep(5 * time.Millisecond)
		}
	})
	c.connect(t, d, "fmslow1", true)
	_, ssrcs := c.handshake(t)

	var maxFrame int
	units, err := media.ReadAccessUnits(mediaDir + "main.h264")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		maxFrame = max(maxFrame, len(u.Payload))
	}

	// Frames by timestamp: at 100 fps they are 900 ticks apart, so a
	// larger step is a skip, and the frame after it must be a keyframe.
	var lastTS uint32
	var gaps, frames int
	deadline := time.After(20 * time.Second)
	for time.Now().Before(slowUntil.Add(2*time.Second)) || gaps == 0 {
		var p *rtp.Packet
		select {
		case p = <-c.packets:
		case <-deadline:
			t.Fatalf("no skip seen after %d frames", frames)
		}
		if p.SSRC != ssrcs.Video.SSRC {
			continue
		}
		if frames > 0 && p.Timestamp == lastTS {
			continue
		}
		// First packet of a frame.
		if frames > 0 && p.Timestamp-lastTS > 1350 {
			gaps++
			if !isH264KeyStart(p.Payload) {
				t.Fatalf("after a skip of %d ticks the frame is no keyframe (NAL %d)", p.Timestamp-lastTS, p.Payload[0]&0x1f)
			}
		}
		frames++
		lastTS = p.Timestamp
	}
	st := d.svc.Sessions(context.Background())
	if len(st) != 1 {
		t.Fatalf("sessions %+v", st)
	}
	if st[0].Skipped == 0 {
		t.Errorf("no frames skipped: %+v", st[0])
	}
	if bound := uint64(channelHigh + maxFrame + 64<<10); st[0].ChannelPeak > bound || st[0].ChannelPeak < channelHigh {
		t.Errorf("channel held up to %d bytes, want between %d and %d", st[0].ChannelPeak, channelHigh, bound)
	}
	t.Logf("%d frames, %d skips, %d skipped, peak %d bytes", frames, gaps, st[0].Skipped, st[0].ChannelPeak)
}

func isH264KeyStart(pl []byte) bool {
	if len(pl) < 2 {
		return false
	}
	switch typ := pl[0] & 0x1f; typ {
	case 5, 7, 24: // IDR, SPS, STAP-A (pion aggregates SPS and PPS)
		return true
	case 28: // FU-A start of an IDR
		return pl[1]&0x80 != 0 && pl[1]&0x1f == 5
	}
	return false
}
