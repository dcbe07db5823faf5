package p2p

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/transport/v4/vnet"
	"github.com/pion/webrtc/v4"
	pionmedia "github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/ipcd/ipcd/media"
)

// BenchmarkWANTTFF measures the time to first frame, as the viewer sees it
// from sending the offer, over a WAN path of 25 ms each way with up to 5 ms
// of jitter and 0, 1 and 5 % loss, behind full-cone NATs with a STUN
// server; b.N sessions one after another, each on a fresh network. It
// reports p50 and p95.
func BenchmarkWANTTFF(b *testing.B) {
	ring := fileRing(b, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
	stun := []ICEServer{{URLs: URLList{"stun:" + natServerIP + ":3478"}}}
	for _, loss := range []float64{0, 0.01, 0.05} {
		b.Run(fmt.Sprintf("loss=%g%%", loss*100), func(b *testing.B) {
			var ttffs []time.Duration
			for range b.N {
				w := newNATWorld(b, natKinds[0], natKinds[0], func(c *vnet.RouterConfig) {
					// Each packet crosses the two LAN routers and this one.
					c.MinDelay, c.MaxJitter = 25*time.Millisecond, 5*time.Millisecond
				})
				w.wan.AddChunkFilter(func(vnet.Chunk) bool { return rand.Float64() >= loss })
				c := runNATCell(b, w, ring, stun, 20*time.Second)
				if !c.streamed {
					b.Fatal("no media within 20 s")
				}
				ttffs = append(ttffs, c.ttff)
			}
			slices.Sort(ttffs)
			b.ReportMetric(float64(ttffs[len(ttffs)/2].Milliseconds()), "p50_ms")
			b.ReportMetric(float64(ttffs[max(0, (len(ttffs)*95+99)/100-1)].Milliseconds()), "p95_ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// decoder models a viewer's decoder on the received video: an access unit
// decodes when it is complete and so is every one back to the last
// keyframe. Like a browser's jitter buffer, it waits up to 1 s for a
// retransmission. When the chain breaks the viewer sends a PLI, as browsers do,
// unless pli is off. Access units are told apart by RTP timestamp (one per
// 40 ms frame); those never seen are counted from timestamp gaps.
type decoder struct {
	pli bool
	// timeline, when set, keeps every access unit's verdict.
	timeline bool

	mu         sync.Mutex
	decoded    int // decodable access units
	undecoded  int // complete but after a break
	missing    int // never complete
	plis       int
	dropKey    bool // discard the next keyframe on purpose
	recoveries []recovery
	frames     []decodedFrame
}

// decodedFrame is one access unit's verdict and when its first packet
// came; missing ones, sent between two that came, take the time of the
// one before.
type decodedFrame struct {
	at time.Time
	ok bool
}

// share returns the decodable and all access units from `from` on.
func (d *decoder) share(from time.Time) (decoded, total int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.frames {
		if f.at.Before(from) {
			continue
		}
		total++
		if f.ok {
			decoded++
		}
	}
	return decoded, total
}

// recovery is the wait for a decodable frame after a keyframe was
// discarded on purpose.
type recovery struct {
	took     time.Duration // from the PLI to the keyframe's completion
	frames   int           // access units that began in between
	requests int           // PLIs sent while waiting (more than one when no keyframe came in time)
}

const frameTicks = 90000 / 25

// startsWithSPS reports whether an H.264 RTP payload begins with an SPS,
// alone or first in a STAP-A: the first packet of a keyframe as ipcd
// packetizes it.
func startsWithSPS(pl []byte) bool {
	switch {
	case len(pl) > 0 && pl[0]&0x1f == 7:
		return true
	case len(pl) > 3 && pl[0]&0x1f == 24:
		return pl[3]&0x1f == 7
	}
	return false
}

// dropState is the purposeful loss of one keyframe and the wait for the
// next.
type dropState struct {
	dropping, waiting bool
	dropTS, curTS     uint32
	pliAt             time.Time
	requests          int
	// The access units that began since the PLI, in order, and the
	// packets of each: a keyframe ends the wait once it is whole, its
	// first packet (the SPS) and its last (the marker) and every one
	// between, in whatever order loss and retransmission bring them.
	began []uint32
	units map[uint32]*unitPackets
}

type unitPackets struct {
	key, marked bool
	first, last uint16
	seqs        map[uint16]bool
}

func (u *unitPackets) whole() bool {
	if !u.key || !u.marked {
		return false
	}
	for sq := u.first; sq != u.last; sq++ {
		if !u.seqs[sq] {
			return false
		}
	}
	return true
}

// startWaiting begins the wait for the keyframe that answers the PLI
// sent now; ts is the newest access unit, not counted.
func (ds *dropState) startWaiting(ts uint32) {
	ds.dropping, ds.waiting, ds.pliAt, ds.curTS = false, true, time.Now(), ts
	ds.requests, ds.began, ds.units = 1, nil, map[uint32]*unitPackets{}
}

func (d *decoder) run(v *rtpViewer, tr *webrtc.TrackRemote) {
	r := &decodeRun{d: d, v: v, tr: tr, arrived: map[uint32]time.Time{},
		sb: samplebuilder.New(512, &codecs.H264Packet{}, 90000, samplebuilder.WithMaxTimeDelay(time.Second))}
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if _, ok := r.arrived[p.Timestamp]; !ok && d.timeline && len(r.arrived) < 4096 {
			r.arrived[p.Timestamp] = time.Now()
		}
		if r.dropped(p) {
			continue
		}
		r.sb.Push(p)
		for s := r.sb.Pop(); s != nil; s = r.sb.Pop() {
			r.judge(s)
		}
	}
}

// decodeRun is one run of a decoder over a track.
type decodeRun struct {
	d       *decoder
	v       *rtpViewer
	tr      *webrtc.TrackRemote
	sb      *samplebuilder.SampleBuilder
	chain   bool // the units so far decode
	seen    bool
	lastTS  uint32
	lastPLI time.Time
	ds      dropState
	arrived map[uint32]time.Time // first packet of each access unit
	lastAt  time.Time
}

func (r *decodeRun) sendPLI(force bool) {
	if !force && time.Since(r.lastPLI) < media.KeyframeRequestInterval {
		return
	}
	r.lastPLI = time.Now()
	_ = r.v.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(r.tr.SSRC())}})
	r.d.mu.Lock()
	r.d.plis++
	r.d.mu.Unlock()
}

// dropped discards the packets of the keyframe dropped on purpose and
// follows the wait for the next one; true for a discarded packet.
func (r *decodeRun) dropped(p *rtp.Packet) bool {
	d, ds := r.d, &r.ds
	keyStart := startsWithSPS(p.Payload)
	d.mu.Lock()
	// A keyframe is dropped only when the viewer has asked for none for
	// two request intervals: the source coalesces requests closer than
	// media.KeyframeRequestInterval, and what is measured is the answer to
	// the request the drop causes, not the wait behind an earlier one that
	// a random loss caused.
	if d.dropKey && keyStart && time.Since(r.lastPLI) >= 2*media.KeyframeRequestInterval {
		d.dropKey = false
		*ds = dropState{dropping: true, dropTS: p.Timestamp, curTS: p.Timestamp}
	}
	d.mu.Unlock()
	if ds.dropping && p.Timestamp == ds.dropTS {
		if p.Marker {
			// The viewer knows the keyframe is gone: it asks at once.
			ds.startWaiting(ds.dropTS)
			r.sendPLI(true)
		}
		return true
	}
	if ds.dropping && int32(p.Timestamp-ds.dropTS) > 0 {
		// The path lost the keyframe's last packet before it could be
		// discarded here: this frame tells the viewer it is gone, and
		// the frames between its PLI and the next keyframe are counted
		// from here.
		ds.startWaiting(p.Timestamp)
		r.sendPLI(true)
	}
	if ds.waiting {
		r.waitKeyframe(p, keyStart)
	}
	return false
}

// waitKeyframe follows the wait for a whole keyframe after the PLI. As a
// browser does, the viewer asks again every request interval until one
// comes: the path may lose a PLI as it loses any packet.
func (r *decodeRun) waitKeyframe(p *rtp.Packet, keyStart bool) {
	ds := &r.ds
	if int32(p.Timestamp-ds.curTS) > 0 {
		ds.curTS = p.Timestamp
		ds.began = append(ds.began, p.Timestamp)
	}
	u := ds.units[p.Timestamp]
	if u == nil {
		if len(ds.units) > 1024 {
			return
		}
		u = &unitPackets{seqs: map[uint16]bool{}}
		ds.units[p.Timestamp] = u
	}
	u.seqs[p.SequenceNumber] = true
	if keyStart {
		u.key, u.first = true, p.SequenceNumber
	}
	if p.Marker {
		u.marked, u.last = true, p.SequenceNumber
	}
	if u.whole() {
		frames := 0
		for _, ts := range ds.began {
			if int32(ts-p.Timestamp) < 0 {
				frames++
			}
		}
		r.d.mu.Lock()
		r.d.recoveries = append(r.d.recoveries, recovery{took: time.Since(ds.pliAt), frames: frames, requests: ds.requests})
		r.d.mu.Unlock()
		ds.waiting = false
		return
	}
	if time.Since(r.lastPLI) >= media.KeyframeRequestInterval {
		ds.requests++
		r.sendPLI(true)
	}
}

// judge counts a complete access unit as decodable or not, and the units
// that never completed before it.
func (r *decodeRun) judge(s *pionmedia.Sample) {
	d := r.d
	gap := int32(s.PacketTimestamp - r.lastTS)
	if r.seen && gap <= 0 {
		return // a late duplicate
	}
	d.mu.Lock()
	broken := s.PrevDroppedPackets > 0
	at, ok := r.arrived[s.PacketTimestamp]
	if !ok {
		at = time.Now()
	}
	// Those of units popped or given up.
	for ts := range r.arrived {
		if int32(ts-s.PacketTimestamp) <= 0 {
			delete(r.arrived, ts)
		}
	}
	if r.seen && gap > frameTicks+frameTicks/2 {
		n := int((gap+frameTicks/2)/frameTicks) - 1
		d.missing += n
		broken = true
		for range n {
			if d.timeline {
				d.frames = append(d.frames, decodedFrame{at: r.lastAt})
			}
		}
	}
	r.seen, r.lastTS = true, s.PacketTimestamp
	switch {
	case media.IsH264Keyframe(s.Data):
		r.chain = true
	case broken:
		r.chain = false
	}
	if r.chain {
		d.decoded++
	} else {
		d.undecoded++
	}
	if d.timeline {
		d.frames = append(d.frames, decodedFrame{at: at, ok: r.chain})
	}
	r.lastAt = at
	d.mu.Unlock()
	if !r.chain && d.pli {
		r.sendPLI(false)
	}
}

// counts returns decoded and all access units.
func (d *decoder) counts() (decoded, total, plis int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.decoded, d.decoded + d.undecoded + d.missing, d.plis
}

// newWANWorld is a NAT world (full cone on both sides, a STUN server)
// whose WAN is 25 ms each way with up to 5 ms of jitter and loses the
// fraction loss of the packets in both directions.
func newWANWorld(t testing.TB, loss float64) *natWorld {
	w := newNATWorld(t, natKinds[0], natKinds[0], func(c *vnet.RouterConfig) {
		// Every packet crosses this router once on its way.
		c.MinDelay, c.MaxJitter = 25*time.Millisecond, 5*time.Millisecond
	})
	if loss > 0 {
		w.wan.AddChunkFilter(func(vnet.Chunk) bool { return rand.Float64() >= loss })
	}
	return w
}

// wanStream runs one session over w for d, the viewer decoding with dec;
// at each of dropAt it discards the next keyframe on purpose.
func wanStream(t testing.TB, w *natWorld, ring *media.Ring, dec *decoder, d time.Duration, dropAt ...time.Duration) SessionStats {
	dev := startDevice(t, Media{Main: ring}, Config{Net: w.device}, nil)
	defer dev.stop()
	se := &webrtc.SettingEngine{}
	se.SetNet(w.viewer)
	v := newRTPViewer(t, viewerOptions{se: se, decode: dec, config: webrtc.Configuration{
		ICEServers: []webrtc.ICEServer{{URLs: []string{"stun:" + natServerIP + ":3478"}}},
	}})
	defer v.close()
	v.connect(t, dev, "wan0001", []ICEServer{{URLs: URLList{"stun:" + natServerIP + ":3478"}}})
	v.videoSSRC(t, 10*time.Second)
	start := time.Now()
	for _, at := range dropAt {
		time.Sleep(time.Until(start.Add(at)))
		dec.mu.Lock()
		dec.dropKey = true
		dec.mu.Unlock()
	}
	time.Sleep(time.Until(start.Add(d)))
	return sessionStats(t, dev)
}

// BenchmarkWANDecode reports the share of frames a viewer can decode over
// the WAN path (50 ms RTT, jitter) at 0, 1 and 5 % loss, with and without
// keyframe requests (PLI) when its decoding chain breaks; retransmissions
// (NACK) are on in both. Each iteration is one 10 s session of the file
// source.
func BenchmarkWANDecode(b *testing.B) {
	ring := fileRing(b, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
	for _, loss := range []float64{0, 0.01, 0.05} {
		for _, pli := range []bool{false, true} {
			b.Run(fmt.Sprintf("loss=%g%%/pli=%v", loss*100, pli), func(b *testing.B) {
				decoded, total := 0, 0
				for range b.N {
					dec := &decoder{pli: pli}
					wanStream(b, newWANWorld(b, loss), ring, dec, 10*time.Second)
					d, n, _ := dec.counts()
					decoded, total = decoded+d, total+n
				}
				b.ReportMetric(100*float64(decoded)/float64(max(total, 1)), "decoded_%")
				b.ReportMetric(float64(total)/float64(b.N), "frames/session")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
