package viewer

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// clipCase is a sample clip and the codec it is in.
type clipCase struct {
	name  string
	codec videoCodec
	aus   func(testing.TB) [][]byte
}

func clipCases() []clipCase {
	return []clipCase{
		{"h264 main", codecH264, sampleAUs},
		{"h264 sub", codecH264, func(t testing.TB) [][]byte { return fileAUs(t, sampleSubH264) }},
		{"h265 main", codecH265, func(t testing.TB) [][]byte { return fileAUs(t, sampleH265) }},
	}
}

// packetized is an access unit sequence turned into RTP the way the device
// does it, remembering which packets belong to which access unit.
type packetized struct {
	codec   videoCodec
	aus     [][]byte
	packets []*rtp.Packet
	first   []int // index of each access unit's first packet
	keys    []int // indexes of the keyframe access units
}

// payloader is what the device uses for the codec: pion's, unconfigured.
func payloader(c videoCodec) rtp.Payloader {
	if c == codecH265 {
		return &codecs.H265Payloader{}
	}
	return &codecs.H264Payloader{}
}

func packetize(t testing.TB, c videoCodec, aus [][]byte) packetized {
	t.Helper()
	// The sequence starts close to the wrap so that the test crosses it.
	p := rtp.NewPacketizer(1200, 102, 0x1234, payloader(c), rtp.NewFixedSequencer(65000), 90000)
	out := packetized{codec: c, aus: aus}
	for i, au := range aus {
		out.first = append(out.first, len(out.packets))
		pkts := p.Packetize(au, 3600)
		if len(pkts) == 0 {
			t.Fatalf("access unit %d produced no packets", i)
		}
		out.packets = append(out.packets, pkts...)
		if isKeyAU(c, au) {
			out.keys = append(out.keys, i)
		}
	}
	if len(out.keys) == 0 || out.keys[0] != 0 {
		t.Fatalf("want the first access unit to be a keyframe, keyframes at %v", out.keys)
	}
	return out
}

// packetsOf returns the packet indexes of access unit i.
func (p packetized) packetsOf(i int) (first, end int) {
	end = len(p.packets)
	if i+1 < len(p.first) {
		end = p.first[i+1]
	}
	return p.first[i], end
}

// nextKey returns the first keyframe index after i.
func (p packetized) nextKey(i int) int {
	for _, k := range p.keys {
		if k > i {
			return k
		}
	}
	return len(p.aus)
}

type emitted struct {
	au    []byte
	types nalSet
}

func feed(c videoCodec, pkts []*rtp.Packet) ([]emitted, int) {
	a := newAssembler(c)
	var got []emitted
	// Each packet goes through the wire format in one reused buffer, as
	// readVideo does with the track's.
	buf := make([]byte, rtpBufSize)
	for _, p := range pkts {
		n, err := p.MarshalTo(buf)
		if err != nil {
			panic(err)
		}
		var q rtp.Packet
		if err := q.Unmarshal(buf[:n]); err != nil {
			panic(err)
		}
		a.push(&q, func(au []byte, types nalSet) { got = append(got, emitted{au, types}) })
	}
	return got, a.skipped
}

// TestAssemblerRoundTrip checks that what pion's payloaders make of the
// device's access units comes back byte for byte. For H.265 this relies on
// what the payloader does with parameter sets: it holds VPS, SPS and PPS
// back and sends them, in their original order, in an aggregation packet
// right before the next other NAL unit of the same call, so a normalised
// access unit (parameter sets ahead of the slices, 4-byte start codes, no
// delimiters or filler, which the payloader would drop) is rebuilt exactly.
func TestAssemblerRoundTrip(t *testing.T) {
	for _, cc := range clipCases() {
		t.Run(cc.name, func(t *testing.T) {
			p := packetize(t, cc.codec, cc.aus(t))
			got, skipped := feed(cc.codec, p.packets)
			if skipped != 0 {
				t.Errorf("skipped = %d, want 0", skipped)
			}
			if len(got) != len(p.aus) {
				t.Fatalf("got %d access units, want %d", len(got), len(p.aus))
			}
			for i, e := range got {
				if !bytes.Equal(e.au, p.aus[i]) {
					t.Fatalf("access unit %d differs: got %d bytes, want %d", i, len(e.au), len(p.aus[i]))
				}
				if cc.codec.key(e.types) != isKeyAU(cc.codec, p.aus[i]) {
					t.Errorf("access unit %d: key = %v", i, cc.codec.key(e.types))
				}
			}
			if !cc.codec.decodable(got[0].types) {
				t.Error("first access unit is not a keyframe with its parameter sets")
			}
			if len(p.keys) < 2 {
				t.Errorf("keyframes at %v, want several", p.keys)
			}
		})
	}
}

// TestH265PayloaderAggregatesParameterSets pins down the packetization the
// round trip depends on, so that a pion upgrade that changes it fails here
// with a clear message rather than as a byte mismatch.
func TestH265PayloaderAggregatesParameterSets(t *testing.T) {
	aus := fileAUs(t, sampleH265)
	p := packetize(t, codecH265, aus[:2])
	first := p.packets[0].Payload
	if got := codecH265.nalType(first); got != h265AP {
		t.Fatalf("first packet of the keyframe has NAL type %d, want an aggregation packet (48)", got)
	}
	if !codecH265.startsWithParamSets(first) {
		t.Error("the aggregation packet does not start with the VPS")
	}
	d := codecH265.depacketizer()
	out, err := d.Unmarshal(first)
	if err != nil {
		t.Fatal(err)
	}
	if types := codecH265.nalTypes(out); types != 1<<h265VPS|1<<h265SPS|1<<h265PPS {
		t.Errorf("aggregation packet carries NAL types %b, want VPS, SPS and PPS", types)
	}
	if !bytes.HasPrefix(aus[0], out) {
		t.Error("the parameter sets are not the keyframe's first bytes")
	}
}

func TestAssemblerLoss(t *testing.T) {
	for _, cc := range clipCases() {
		t.Run(cc.name, func(t *testing.T) { testAssemblerLoss(t, packetize(t, cc.codec, cc.aus(t))) })
	}
}

func testAssemblerLoss(t *testing.T, p packetized) {
	if len(p.keys) < 3 {
		t.Fatalf("want at least 3 keyframes, got %v", p.keys)
	}
	k1, k2 := p.keys[1], p.keys[2]
	// A P-frame in the middle of the first GOP that spans several packets,
	// so that losing its first packet leaves the rest to be seen.
	mid := -1
	for i := 2; i < k1-2; i++ {
		if f, e := p.packetsOf(i); e-f >= 2 {
			mid = i
			break
		}
	}
	if mid < 0 {
		t.Fatal("no multi-packet P-frame in the first GOP")
	}
	kf, ke := p.packetsOf(k1)
	if ke-kf < 3 {
		t.Fatalf("keyframe %d has %d packets, want at least 3", k1, ke-kf)
	}
	lastBefore := func() int { _, e := p.packetsOf(k1 - 1); return e - 1 }()

	tests := []struct {
		name     string
		drop     int // packet index
		lostFrom int // first access unit not delivered
		lostTo   int // first access unit delivered again
	}{
		// A broken P-frame takes the rest of its GOP with it.
		{"first packet of a P-frame", p.first[mid], mid, p.nextKey(mid)},
		{"last packet of a P-frame", p.first[mid+1] - 1, mid, p.nextKey(mid)},
		// The frame before a keyframe: one frame lost, resumes at once.
		{"marker packet before a keyframe", lastBefore, k1 - 1, k1},
		{"parameter sets of a keyframe", kf, k1, k2},
		{"middle fragment of a keyframe", kf + (ke-kf)/2, k1, k2},
		{"marker packet of a keyframe", ke - 1, k1, k2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkts := slices.Delete(slices.Clone(p.packets), tt.drop, tt.drop+1)
			got, skipped := feed(p.codec, pkts)
			want := slices.Concat(p.aus[:tt.lostFrom], p.aus[tt.lostTo:])
			if skipped != tt.lostTo-tt.lostFrom {
				t.Errorf("skipped = %d, want %d", skipped, tt.lostTo-tt.lostFrom)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d access units, want %d", len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i].au, want[i]) {
					t.Fatalf("access unit %d differs", i)
				}
			}
			if tt.lostFrom < len(got) && !p.codec.key(got[tt.lostFrom].types) {
				t.Errorf("delivery resumed with a non-keyframe")
			}
		})
	}
}

func TestAssemblerDuplicatesAndLate(t *testing.T) {
	for _, cc := range clipCases() {
		t.Run(cc.name, func(t *testing.T) {
			p := packetize(t, cc.codec, cc.aus(t)[:30])
			var pkts []*rtp.Packet
			for i, pk := range p.packets {
				pkts = append(pkts, pk)
				if i%7 == 0 {
					pkts = append(pkts, pk) // duplicate
				}
				if i > 10 && i%11 == 0 {
					pkts = append(pkts, p.packets[i-5]) // retransmission after the fact
				}
			}
			got, skipped := feed(cc.codec, pkts)
			if skipped != 0 || len(got) != len(p.aus) {
				t.Fatalf("got %d access units and %d skipped, want %d and 0", len(got), skipped, len(p.aus))
			}
		})
	}
}

// isContinuation reports a fragmentation unit that does not start its NAL
// unit: FU-A without S for H.264, FU without S for H.265.
func isContinuation(c videoCodec, pl []byte) bool {
	if c == codecH265 {
		return len(pl) > 2 && c.nalType(pl) == 49 && pl[2]&0x80 == 0
	}
	return len(pl) > 1 && c.nalType(pl) == 28 && pl[1]&0x80 == 0
}

func TestAssemblerStartsMidFragment(t *testing.T) {
	for _, cc := range clipCases() {
		t.Run(cc.name, func(t *testing.T) {
			p := packetize(t, cc.codec, cc.aus(t))
			// The first packet seen continues a fragmented NAL unit of the
			// first keyframe.
			kf, ke := p.packetsOf(0)
			cont := -1
			for i := kf; i < ke; i++ {
				if isContinuation(cc.codec, p.packets[i].Payload) {
					cont = i
					break
				}
			}
			if cont < 0 {
				t.Fatal("first keyframe has no fragment continuation")
			}
			got, skipped := feed(cc.codec, p.packets[cont:])
			if skipped != p.keys[1] {
				t.Errorf("skipped = %d, want %d", skipped, p.keys[1])
			}
			if len(got) == 0 || !bytes.Equal(got[0].au, p.aus[p.keys[1]]) {
				t.Fatal("delivery did not start at the second keyframe")
			}
		})
	}
}

func TestAssemblerBadPayload(t *testing.T) {
	tests := []struct {
		name      string
		codec     videoCodec
		bad, good []byte
	}{
		// A STAP-A that declares more bytes than it has, then a valid IDR.
		{"h264", codecH264, []byte{24, 0, 40, 0x67}, []byte{0x65, 0x88, 0x84}},
		// An AP whose unit runs past the packet, then a valid IDR_W_RADL.
		{"h265", codecH265, []byte{48 << 1, 1, 0, 40, 0x40, 0x01}, []byte{19 << 1, 1, 0xaf, 0x0e}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAssembler(tt.codec)
			var got [][]byte
			emit := func(au []byte, _ nalSet) { got = append(got, au) }
			a.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: 1, Timestamp: 0, Marker: true}, Payload: tt.bad}, emit)
			a.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: 2, Timestamp: 3600, Marker: true}, Payload: tt.good}, emit)
			if a.skipped != 1 || len(got) != 1 {
				t.Fatalf("skipped %d, emitted %d; want 1 and 1", a.skipped, len(got))
			}
			if want := append([]byte{0, 0, 0, 1}, tt.good...); !bytes.Equal(got[0], want) {
				t.Errorf("emitted % x, want % x", got[0], want)
			}
		})
	}
}

func TestCodecKeyAndParamSets(t *testing.T) {
	sc := []byte{0, 0, 0, 1}
	h265 := func(typ byte) []byte { return append(slices.Clone(sc), typ<<1, 1, 0xaa) }
	h264 := func(typ byte) []byte { return append(slices.Clone(sc), 0x60|typ, 0xaa) }
	tests := []struct {
		name           string
		codec          videoCodec
		au             []byte
		key, decodable bool
	}{
		{"h264 idr with sps pps", codecH264, slices.Concat(h264(7), h264(8), h264(5)), true, true},
		{"h264 idr alone", codecH264, h264(5), true, false},
		{"h264 p-frame", codecH264, h264(1), false, false},
		{"h265 idr_w_radl with vps sps pps", codecH265, slices.Concat(h265(32), h265(33), h265(34), h265(19)), true, true},
		{"h265 cra without vps", codecH265, slices.Concat(h265(33), h265(34), h265(21)), true, false},
		{"h265 bla_w_lp", codecH265, h265(16), true, false},
		{"h265 reserved irap 23", codecH265, h265(23), true, false},
		{"h265 trail_r", codecH265, h265(1), false, false},
		{"h265 rasl", codecH265, h265(9), false, false},
		{"h265 reserved 24", codecH265, h265(24), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.codec.nalTypes(tt.au)
			if tt.codec.key(s) != tt.key || tt.codec.decodable(s) != tt.decodable {
				t.Errorf("key %v decodable %v, want %v %v", tt.codec.key(s), tt.codec.decodable(s), tt.key, tt.decodable)
			}
		})
	}
}

func FuzzAssembler(f *testing.F) {
	f.Add(byte(0), []byte{0, 1, 0x81, 3, 0x65, 0x88, 0x84, 0, 2, 0x01, 4, 0x7c, 0x85, 1, 2})
	f.Add(byte(0), []byte{0, 1, 0x80, 5, 24, 0, 2, 0x67, 0x42})
	f.Add(byte(1), []byte{0, 1, 0x81, 4, 0x26, 0x01, 0xaf, 0x0e, 0, 2, 0x81, 5, 0x62, 0x01, 0x93, 1, 2})
	f.Add(byte(1), []byte{0, 1, 0x80, 8, 0x60, 0x01, 0, 3, 0x40, 0x01, 0x0c, 0, 2})
	f.Fuzz(func(t *testing.T, codec byte, data []byte) {
		// Records: seq (2 bytes), flags (marker bit 0x80, timestamp step
		// in the low bits), payload length, payload.
		c := codecH264
		if codec&1 == 1 {
			c = codecH265
		}
		a := newAssembler(c)
		var ts uint32
		for len(data) >= 4 {
			seq := binary.BigEndian.Uint16(data)
			flags, n := data[2], int(data[3])
			data = data[4:]
			n = min(n, len(data))
			ts += uint32(flags & 0x0f)
			pkt := &rtp.Packet{
				Header:  rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: flags&0x80 != 0},
				Payload: data[:n],
			}
			data = data[n:]
			a.push(pkt, func(au []byte, _ nalSet) {
				if len(au) == 0 {
					t.Fatal("emitted an empty access unit")
				}
			})
		}
	})
}
