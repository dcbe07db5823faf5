package p2p

import (
	"testing"
	"unsafe"

	"github.com/ipcd/ipcd/media"
)

// TestHistoryEntries: an entry costs what the memory budget charges; the
// history gives back each packet's ring, frame (across a wrap of the low
// 32 bits), fragment, timestamp and marker; a sequence number it no longer
// holds is not found; a session that named too many rings starts over.
func TestHistoryEntries(t *testing.T) {
	if got := unsafe.Sizeof(historyEntry{}); got != historyEntryBytes {
		t.Fatalf("a history entry is %d bytes, the budget charges %d", got, historyEntryBytes)
	}
	main, sub := newTestRing(t, media.StreamMain, media.CodecH264), newTestRing(t, media.StreamSub, media.CodecH264)
	h := newHistory(64)
	sent := []sentPacket{
		{ring: main, frame: 1<<32 - 1, seq: 65534, frag: 0, ts: 3600},
		{ring: main, frame: 1<<32 - 1, seq: 65535, frag: 1, ts: 3600, marker: true},
		{ring: sub, frame: 7, seq: 0, frag: 0, ts: 7200, marker: true},
		{ring: main, frame: 1 << 32, seq: 1, frag: 0, ts: 10800},
		{ring: main, frame: 1<<32 + 1, seq: 2, frag: 3, ts: 14400, marker: true},
	}
	for _, p := range sent {
		h.add(p)
	}
	for _, want := range sent {
		got, ok := h.get(want.seq)
		if !ok || got != want {
			t.Errorf("seq %d: got %+v (%v), want %+v", want.seq, got, ok, want)
		}
	}
	// Sequence number 66 takes the slot of 2.
	h.add(sentPacket{ring: main, frame: 1<<32 + 2, seq: 66, ts: 18000})
	if got, ok := h.get(2); ok {
		t.Errorf("seq 2 found after seq 66 took its slot: %+v", got)
	}
	if _, ok := h.get(3); ok {
		t.Error("seq 3, never sent, found")
	}

	for i := range maxHistoryRings - 2 {
		h.add(sentPacket{ring: newTestRing(t, media.StreamMain, media.CodecH264), frame: 1, seq: uint16(20 + i)})
	}
	if _, ok := h.get(65535); !ok {
		t.Fatalf("with %d rings named, the history was cleared", maxHistoryRings)
	}
	extra := newTestRing(t, media.StreamMain, media.CodecH264)
	h.add(sentPacket{ring: extra, frame: 5, seq: 40})
	if _, ok := h.get(65535); ok {
		t.Errorf("a ring past %d kept the entries of the others", maxHistoryRings)
	}
	if got, ok := h.get(40); !ok || got.ring != extra || got.frame != 5 {
		t.Errorf("seq 40 after the history started over: %+v (%v)", got, ok)
	}
}
