package p2p

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/ipcd/ipcd/media"
)

// startNACKDevice is the service over a file source of main.h264 played at
// fps into a ring of ringFrames frames, with room for maxClients sessions.
func startNACKDevice(t *testing.T, fps, ringFrames, maxClients, nackBuffer int) (*fmDevice, []media.AccessUnit) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	units, err := media.ReadAccessUnits(mediaDir + "main.h264")
	if err != nil {
		t.Fatal(err)
	}
	r, err := media.NewRing(media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH264, MaxBytes: 8 << 20, MaxFrames: ringFrames}, log)
	if err != nil {
		t.Fatal(err)
	}
	src, err := media.NewFileSource(media.FileSourceConfig{Path: mediaDir + "main.h264", FPS: fps, Loop: true}, r, log)
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = src.Run(ctx) })
	out := &sessionPublisher{out: map[string]chan Message{}}
	svc, err := NewService(Config{NetworkInterfaces: loopbackIfaces(t), LoopbackCandidates: true, MaxClients: maxClients, NACKBuffer: nackBuffer},
		Media{Main: r}, out, log)
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = svc.Run(ctx, Credentials{DevID: fmDevID, P2PPassword: fmPassword}) })
	d := &fmDevice{svc: svc, out: out, stop: func() { cancel(); wg.Wait() }}
	t.Cleanup(d.stop)
	return d, units
}

// dropper is a receive-side interceptor that loses every period-th RTP
// packet after the first skip: a lossy path under the NACK generator.
type dropper struct {
	interceptor.NoOp
	period, skip int
	dropped      *atomic.Int64
}

func (d *dropper) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	n := 0
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			i, attr, err := r.Read(b, a)
			if err != nil {
				return i, attr, err
			}
			n++
			if n > d.skip && n%d.period == 0 {
				d.dropped.Add(1)
				continue
			}
			return i, attr, nil
		}
	})
}

type dropperFactory struct{ d *dropper }

func (f dropperFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.d, nil }

// nackClient is a viewer that receives video as RTP on its track and hands
// every packet it reads, retransmissions included, to packets.
type nackClient struct {
	*fmClient
	packets chan *rtp.Packet
	dropped atomic.Int64
}

// newNACKClient builds a viewer whose receive path loses every
// dropPeriod-th packet (none with 0) and NACKs what it misses.
func newNACKClient(t *testing.T, dropPeriod int) *nackClient {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtpH264ConstrainedBaseline,
		RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}},
	}, PayloadType: 97}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	c := &nackClient{packets: make(chan *rtp.Packet, 1<<16)}
	ir := &interceptor.Registry{}
	if dropPeriod > 0 {
		ir.Add(dropperFactory{&dropper{period: dropPeriod, skip: 20, dropped: &c.dropped}})
		gen, err := nack.NewGeneratorInterceptor(nack.GeneratorInterval(20 * time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ir.Add(gen)
	}
	se := loopbackSettings(t)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// The test's losses happen after decryption, where SRTP's replay
	// window has already seen the sequence number and would discard the
	// retransmission; a packet lost on the wire never reaches it. The
	// byte-identical check also reads a packet twice on purpose.
	se.DisableSRTPReplayProtection(true)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(*se), webrtc.WithInterceptorRegistry(ir)).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c.fmClient = &fmClient{pc: pc, text: make(chan string, 8), done: make(chan struct{})}
	t.Cleanup(c.close)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.wg.Go(func() {
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				select {
				case c.packets <- p:
				default:
					t.Errorf("test viewer queue full")
					return
				}
			}
		})
	})
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	return c
}

// next returns the next packet the viewer reads.
func (c *nackClient) next(t *testing.T) *rtp.Packet {
	t.Helper()
	select {
	case p := <-c.packets:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no packet for 10 s")
		return nil
	}
}

// TestNACKRetransmitsFromRing: a NACKed packet whose frame the ring still
// holds comes again byte-identical (payload, sequence number, timestamp,
// marker, SSRC and payload type), re-packetized from the ring's copy and
// re-encrypted; a NACK for a packet of an evicted frame is ignored without
// error and sends nothing.
func TestNACKRetransmitsFromRing(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // after the device and the viewers stop
	// 100 frames in the ring, four seconds at 25 fps, and a history longer
	// than that: the first packet stays in the history after its frame is
	// gone, and a packet the viewer has just read is seconds away from
	// eviction even when the viewer lags (a loaded or emulated machine).
	d, _ := startNACKDevice(t, 25, 100, 1, 4096)
	c := newNACKClient(t, 0)
	c.connect(t, d, "nack-1", false)

	seen := map[uint16]*rtp.Packet{}
	first := c.next(t)
	seen[first.SequenceNumber] = first
	h := d.svc.nacks.lookup(first.SSRC)
	if h == nil {
		t.Fatalf("no history for SSRC %d", first.SSRC)
	}
	inRing := func(seq uint16) bool {
		sp, ok := h.get(seq)
		if !ok {
			t.Fatalf("packet %d is not in the history", seq)
		}
		_, ok = sp.ring.Frame(sp.frame)
		return ok
	}
	// Packets until the first one's frame is evicted, while the last one
	// read is still held.
	var last *rtp.Packet
	for deadline := time.Now().Add(30 * time.Second); last == nil || inRing(first.SequenceNumber) || !inRing(last.SequenceNumber); {
		if time.Now().After(deadline) {
			t.Fatal("the first frame was not evicted in 30 s")
		}
		last = c.next(t)
		seen[last.SequenceNumber] = last
	}
	// The evicted packet first: the responder takes a NACK in order, so
	// anything sent for it would arrive before the other.
	if err := c.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{
		MediaSSRC: last.SSRC,
		Nacks:     []rtcp.NackPair{{PacketID: first.SequenceNumber}, {PacketID: last.SequenceNumber}},
	}}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatalf("no retransmission in 10 s: resent %d, expired %d, unknown %d", h.resent.Load(), h.expired.Load(), h.unknown.Load())
		}
		p := c.next(t)
		orig, dup := seen[p.SequenceNumber]
		if !dup {
			seen[p.SequenceNumber] = p
			continue
		}
		if p.SequenceNumber == first.SequenceNumber {
			t.Fatalf("packet %d of an evicted frame was retransmitted", p.SequenceNumber)
		}
		if p.SequenceNumber != last.SequenceNumber {
			t.Fatalf("packet %d came twice; only %d was NACKed", p.SequenceNumber, last.SequenceNumber)
		}
		if !bytes.Equal(p.Payload, orig.Payload) || p.Timestamp != orig.Timestamp || p.Marker != orig.Marker ||
			p.SSRC != orig.SSRC || p.PayloadType != orig.PayloadType {
			t.Fatalf("retransmission differs: got %v (%d bytes), sent %v (%d bytes)", p.Header, len(p.Payload), orig.Header, len(orig.Payload))
		}
		break
	}
	if r, e := h.resent.Load(), h.expired.Load(); r != 1 || e != 1 {
		t.Fatalf("resent %d, expired %d; want 1 and 1", r, e)
	}
}

// viewerFrames reassembles the frames of a viewer's packets: seqs from
// first on, each frame ending at a marker, depacketized to Annex-B. It
// returns false while a packet of the first n frames is missing.
func viewerFrames(got map[uint16]*rtp.Packet, first uint16, n int) ([][]byte, bool) {
	var frames [][]byte
	var dp codecs.H264Packet
	var cur []byte
	for seq := first; len(frames) < n; seq++ {
		p, ok := got[seq]
		if !ok {
			return nil, false
		}
		b, err := dp.Unmarshal(p.Payload)
		if err != nil {
			return nil, false
		}
		cur = append(cur, b...)
		if p.Marker {
			frames = append(frames, cur)
			cur = nil
		}
	}
	return frames, true
}

// TestNACKTenViewersLossy: ten viewers of a 2 Mbit/s stream (the 1 Mbit/s
// clip at 50 fps) each lose 1 % of their packets on the way in and NACK
// them; every viewer's first 150 frames, once recovered, equal the clip's
// access units in order: retransmission works for all viewers from the
// ring's one copy.
func TestNACKTenViewersLossy(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // after the device and the viewers stop
	const viewers, frames = 10, 150
	d, units := startNACKDevice(t, 50, 250, viewers, 256)
	cs := make([]*nackClient, viewers)
	for i := range cs {
		cs[i] = newNACKClient(t, 100)
		cs[i].connect(t, d, fmt.Sprintf("lossy-%d", i), false)
	}
	var wg sync.WaitGroup
	results := make([][][]byte, viewers)
	errs := make([]error, viewers)
	for i, c := range cs {
		wg.Go(func() { results[i], errs[i] = recoverFrames(c, i, frames) })
	}
	wg.Wait()
	resent, expired, unknown := nackTotals(d)
	var dropped int64
	skips := 0 // sessions that skipped to a keyframe
	for i, c := range cs {
		if errs[i] != nil {
			t.Fatalf("%v; all viewers: resent %d, expired %d, not in the history %d", errs[i], resent, expired, unknown)
		}
		dropped += c.dropped.Load()
		skips += followsClip(t, i, results[i], units)
	}
	if dropped < viewers {
		t.Fatalf("only %d packets dropped on the way to %d viewers", dropped, viewers)
	}
	if resent == 0 {
		t.Fatal("nothing was retransmitted")
	}
	t.Logf("%d packets dropped, %d retransmitted, %d skips to a keyframe", dropped, resent, skips)
}

// recoverFrames collects viewer i's packets until its first frames, from
// the first packet on, are all there, and reassembles them.
func recoverFrames(c *nackClient, i, frames int) ([][]byte, error) {
	got := map[uint16]*rtp.Packet{}
	// first, and the packets from it on that came without a
	// gap: how many frames ended there. Reassembly waits for
	// all frames, so that a viewer does constant work per packet
	// and keeps up with the stream.
	var first, gap uint16
	ended := 0
	deadline := time.After(60 * time.Second)
	for n := 0; ; n++ {
		select {
		case p := <-c.packets:
			if n == 0 {
				first, gap = p.SequenceNumber, p.SequenceNumber
			}
			got[p.SequenceNumber] = p
		case <-deadline:
			return nil, fmt.Errorf("viewer %d: %d frames not recovered in 60 s (%d packets, %d frames in a row, %d dropped)", i, frames, len(got), ended, c.dropped.Load())
		}
		for p, ok := got[gap]; ok && ended < frames; p, ok = got[gap] {
			gap++
			if p.Marker {
				ended++
			}
		}
		if ended < frames {
			continue
		}
		if f, ok := viewerFrames(got, first, frames); ok {
			return f, nil
		}
		return nil, fmt.Errorf("viewer %d: %d frames do not depacketize", i, frames)
	}
}

// nackTotals sums the NACK counters of all of d's senders.
func nackTotals(d *fmDevice) (resent, expired, unknown uint64) {
	d.svc.nacks.mu.Lock()
	defer d.svc.nacks.mu.Unlock()
	for _, h := range d.svc.nacks.by {
		resent += h.resent.Load()
		expired += h.expired.Load()
		unknown += h.unknown.Load()
	}
	return resent, expired, unknown
}

// followsClip checks viewer i's frames against the clip's access units
// and returns how often the viewer skipped to a later keyframe.
func followsClip(t *testing.T, i int, frames [][]byte, units []media.AccessUnit) int {
	t.Helper()
	skips := 0
	// The first frame is the keyframe the session started at; the
	// rest follow the clip, which loops. A session that falls behind
	// the ring (a loaded machine) skips to the newest keyframe: a
	// frame may be a later keyframe of the clip, and the clip goes on
	// from there. A packet retransmitted wrong or missing makes a
	// frame that is no access unit at all.
	k := -1
	for j, f := range frames {
		if k >= 0 && bytes.Equal(f, units[k%len(units)].Payload) {
			k++
			continue
		}
		next := -1
		for m := range units {
			if u := units[(max(k, 0)+m)%len(units)]; u.Key && bytes.Equal(u.Payload, f) {
				next = max(k, 0) + m
				break
			}
		}
		if next < 0 {
			want := "a keyframe of the clip"
			if k >= 0 {
				want = fmt.Sprintf("the %d bytes of access unit %d or a later keyframe", len(units[k%len(units)].Payload), k%len(units))
			}
			t.Fatalf("viewer %d: frame %d is %d bytes, want %s", i, j, len(f), want)
		}
		if k >= 0 {
			skips++
		}
		k = next + 1
	}
	return skips
}
