package media

// A ring's small frames are carved out of chunks instead of being allocated
// one by one. Allocated one by one, the frames of a ring (long-lived, all
// sizes) share the allocator's size-class spans with everything short-lived
// of the same sizes, and an evicted frame leaves a hole that keeps its span
// in use: at 2 Mbit/s the heap spans held half as much again as the frames
// they carried. Carved in arrival order, frames fill chunks in the order
// they are evicted, so a chunk is freed whole, a little after its last frame
// is evicted and no reader holds one of its frames any more.
const (
	slabMinChunk = 16 << 10
	slabMaxChunk = 256 << 10
	// Frames this large get an allocation of their own: the allocator gives
	// them whole pages, which share nothing.
	slabOwnFrame = 32 << 10
)

// slab carves frame payloads out of its current chunk. A chunk is never
// written again once carved, and never reused: carved payloads keep the
// promise of Ring.Frame that a payload is never written after the ring took
// it. Not safe for concurrent use (the ring's lock guards it).
type slab struct {
	chunk []byte // unused part of the current chunk
}

// alloc returns n bytes that no other payload shares. held is what the ring
// buffers now: a new chunk is a sixteenth of it (16 KiB to 256 KiB). What
// the chunks hold beyond the frames is part of the oldest chunk (evicted but
// still referenced), part of the newest (not yet filled) and the end of each
// chunk that the next frame did not fit in: 14-15 % with the 2 Mbit/s bench
// clip, against 6 % of size-class rounding for frames allocated one by one,
// and no holes. A ring that holds less than 16 chunks of
// the smallest size (256 KiB: an audio ring, a stream's first second) gets
// an allocation per frame, as does a frame of a quarter chunk or more: a
// chunk would cost such a ring more than the holes it saves.
func (s *slab) alloc(n, held int) []byte {
	size := min(held/16, slabMaxChunk)
	if size < slabMinChunk || n >= min(slabOwnFrame, size/4) {
		return make([]byte, n)
	}
	if len(s.chunk) < n {
		s.chunk = make([]byte, size)
	}
	// The capacity is cut too, so that appending to a payload can never
	// write into the next one.
	b := s.chunk[:n:n]
	s.chunk = s.chunk[n:]
	return b
}
