package media

import (
	"bytes"
	"os"
	"testing"
	"unsafe"
)

func TestSlabCarves(t *testing.T) {
	var s slab
	// A ring that holds less than 16 of the smallest chunks gets an
	// allocation per frame and no chunk.
	if a := s.alloc(1000, slabMinChunk*16-1); len(a) != 1000 || s.chunk != nil {
		t.Fatalf("a ring holding %d bytes: payload of %d bytes, chunk of %d, want 1000 and none", slabMinChunk*16-1, len(a), len(s.chunk))
	}
	// From there on, payloads follow each other in a chunk, each with no
	// room past its end.
	held := slabMinChunk * 16
	a, b := s.alloc(1000, held), s.alloc(2000, held)
	if len(a) != 1000 || cap(a) != 1000 || len(b) != 2000 || cap(b) != 2000 {
		t.Fatalf("len/cap %d/%d and %d/%d, want 1000/1000 and 2000/2000", len(a), cap(a), len(b), cap(b))
	}
	if uintptr(unsafe.Pointer(&b[0]))-uintptr(unsafe.Pointer(&a[0])) != 1000 {
		t.Error("the second payload is not carved right after the first")
	}
	if len(s.chunk) != slabMinChunk-3000 {
		t.Errorf("%d bytes left in the chunk, want %d", len(s.chunk), slabMinChunk-3000)
	}
	// A payload that does not fit starts a new chunk, sized from what the
	// ring holds: a sixteenth of 1 MiB.
	c := s.alloc(15000, 1<<20)
	if len(s.chunk) != (1<<20)/16-15000 || cap(c) != 15000 {
		t.Errorf("after a 15000-byte payload with 1 MiB held: %d bytes left (want %d), cap %d", len(s.chunk), (1<<20)/16-15000, cap(c))
	}
	// Large payloads are allocations of their own and leave the chunk be.
	left := len(s.chunk)
	if d := s.alloc(slabOwnFrame, 64<<20); len(d) != slabOwnFrame || len(s.chunk) != left {
		t.Errorf("a %d-byte payload came from the chunk (%d bytes left of %d)", slabOwnFrame, len(s.chunk), left)
	}
	// So are payloads of a quarter chunk or more when the chunk is small.
	if d := s.alloc(slabMinChunk/4, held); len(d) != slabMinChunk/4 || len(s.chunk) != left {
		t.Errorf("a quarter-chunk payload came from the chunk (%d bytes left of %d)", len(s.chunk), left)
	}
	// The chunk never exceeds its cap, however much the ring holds.
	var big slab
	big.alloc(1, 1<<30)
	if len(big.chunk) != slabMaxChunk-1 {
		t.Errorf("chunk of a 1 GiB ring: %d bytes, want %d", len(big.chunk)+1, slabMaxChunk)
	}
}

// TestSplitterReusedUnits checks that splitters reusing their arrays (the
// live sources' and the file source's) give the same access units as the
// exported ones, each valid until the next Push, and that they stop
// allocating once their arrays have grown.
func TestSplitterReusedUnits(t *testing.T) {
	for _, c := range []struct {
		path        string
		fresh, reus auSplitter
	}{
		{"../configs/media/main.h264", &H264AUSplitter{}, &H264AUSplitter{reused: reusedUnit{on: true}}},
		{"../configs/media/main.h265", &H265AUSplitter{}, &H265AUSplitter{reused: reusedUnit{on: true}}},
	} {
		data, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := splitAccessUnits(data, c.fresh)
		if err != nil {
			t.Fatal(err)
		}
		var got []AccessUnit
		var prev []byte
		it := newNALIter(data)
		for nal, ok := it.next(); ok; nal, ok = it.next() {
			au, done := c.reus.Push(nal)
			if !done {
				continue
			}
			if prev != nil && &prev[0] == &au.Payload[0] {
				t.Fatalf("%s: two access units in a row share an array", c.path)
			}
			prev = au.Payload
			got = append(got, AccessUnit{Payload: bytes.Clone(au.Payload), Key: au.Key})
		}
		if au, done := c.reus.Flush(); done {
			got = append(got, AccessUnit{Payload: bytes.Clone(au.Payload), Key: au.Key})
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d access units, want %d", c.path, len(got), len(want))
		}
		for i := range want {
			if got[i].Key != want[i].Key || !bytes.Equal(got[i].Payload, want[i].Payload) {
				t.Fatalf("%s: access unit %d differs (key %v, %d bytes; want key %v, %d bytes)",
					c.path, i, got[i].Key, len(got[i].Payload), want[i].Key, len(want[i].Payload))
			}
		}
		// A second pass over the same stream: every array is as large as it
		// gets, so splitting takes no allocation.
		var nals [][]byte
		it = newNALIter(data)
		for nal, ok := it.next(); ok; nal, ok = it.next() {
			nals = append(nals, nal)
		}
		i := 0
		allocs := testing.AllocsPerRun(len(nals), func() {
			c.reus.Push(nals[i%len(nals)])
			i++
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per NAL unit once the arrays have grown, want 0", c.path, allocs)
		}
	}
}
