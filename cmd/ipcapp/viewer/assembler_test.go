package viewer

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// packetized is an access unit sequence turned into RTP the way the device
// does it, remembering which packets belong to which access unit.
type packetized struct {
	aus     [][]byte
	packets []*rtp.Packet
	first   []int // index of each access unit's first packet
	keys    []int // indexes of the keyframe access units
}

func packetize(t *testing.T, aus [][]byte) packetized {
	t.Helper()
	// The sequence starts close to the wrap so that the test crosses it.
	p := rtp.NewPacketizer(1200, 102, 0x1234, &codecs.H264Payloader{}, rtp.NewFixedSequencer(65000), 90000)
	out := packetized{aus: aus}
	for i, au := range aus {
		out.first = append(out.first, len(out.packets))
		pkts := p.Packetize(au, 3600)
		if len(pkts) == 0 {
			t.Fatalf("access unit %d produced no packets", i)
		}
		out.packets = append(out.packets, pkts...)
		if isKeyAU(au) {
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

func feed(pkts []*rtp.Packet) ([]emitted, int) {
	var a assembler
	var got []emitted
	for _, p := range pkts {
		// Each packet goes through the wire format, as from the track.
		raw, err := p.Marshal()
		if err != nil {
			panic(err)
		}
		var q rtp.Packet
		if err := q.Unmarshal(raw); err != nil {
			panic(err)
		}
		a.push(&q, func(au []byte, types nalSet) { got = append(got, emitted{au, types}) })
	}
	return got, a.skipped
}

func TestAssemblerRoundTrip(t *testing.T) {
	p := packetize(t, sampleAUs(t))
	got, skipped := feed(p.packets)
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
		if e.types.key() != isKeyAU(p.aus[i]) {
			t.Errorf("access unit %d: key = %v", i, e.types.key())
		}
	}
	if !got[0].types.decodable() {
		t.Error("first access unit is not a keyframe with SPS and PPS")
	}
}

func TestAssemblerLoss(t *testing.T) {
	p := packetize(t, sampleAUs(t))
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
			got, skipped := feed(pkts)
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
			if !got[tt.lostFrom].types.key() && tt.lostFrom < len(got) {
				t.Errorf("delivery resumed with a non-keyframe")
			}
		})
	}
}

func TestAssemblerDuplicatesAndLate(t *testing.T) {
	p := packetize(t, sampleAUs(t)[:30])
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
	got, skipped := feed(pkts)
	if skipped != 0 || len(got) != len(p.aus) {
		t.Fatalf("got %d access units and %d skipped, want %d and 0", len(got), skipped, len(p.aus))
	}
}

func TestAssemblerStartsMidFragment(t *testing.T) {
	p := packetize(t, sampleAUs(t))
	// The first packet seen continues a fragmented NAL unit of the first
	// keyframe.
	kf, ke := p.packetsOf(0)
	cont := -1
	for i := kf; i < ke; i++ {
		pl := p.packets[i].Payload
		if pl[0]&0x1f == 28 && pl[1]&0x80 == 0 {
			cont = i
			break
		}
	}
	if cont < 0 {
		t.Fatal("first keyframe has no FU-A continuation")
	}
	got, skipped := feed(p.packets[cont:])
	if skipped != p.keys[1] {
		t.Errorf("skipped = %d, want %d", skipped, p.keys[1])
	}
	if len(got) == 0 || !bytes.Equal(got[0].au, p.aus[p.keys[1]]) {
		t.Fatal("delivery did not start at the second keyframe")
	}
}

func TestAssemblerBadPayload(t *testing.T) {
	var a assembler
	var got int
	emit := func([]byte, nalSet) { got++ }
	// A STAP-A that declares more bytes than it has, then a valid IDR.
	a.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: 1, Timestamp: 0, Marker: true}, Payload: []byte{24, 0, 40, 0x67}}, emit)
	a.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: 2, Timestamp: 3600, Marker: true}, Payload: []byte{0x65, 0x88, 0x84}}, emit)
	if a.skipped != 1 || got != 1 {
		t.Fatalf("skipped %d, emitted %d; want 1 and 1", a.skipped, got)
	}
}

func FuzzAssembler(f *testing.F) {
	f.Add([]byte{0, 1, 0x81, 3, 0x65, 0x88, 0x84, 0, 2, 0x01, 4, 0x7c, 0x85, 1, 2})
	f.Add([]byte{0, 1, 0x80, 5, 24, 0, 2, 0x67, 0x42})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Records: seq (2 bytes), flags (marker bit 0x80, timestamp step
		// in the low bits), payload length, payload.
		var a assembler
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
