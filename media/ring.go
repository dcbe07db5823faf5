package media

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipcd/ipcd/internal/droplog"
)

// rejectSummaryInterval bounds how often rejected frames are logged (§8: never per frame).
const rejectSummaryInterval = 10 * time.Second

// maxRingFrames caps MaxFrames so a configuration typo cannot allocate a huge slot table.
const maxRingFrames = 1 << 20

// RingConfig sizes one ring. Both limits apply; the oldest frames are evicted
// to honour whichever is hit first.
type RingConfig struct {
	Stream Stream
	// Codec is the one codec the ring carries: sessions negotiate it before
	// the first frame arrives, so frames of another codec are rejected.
	// CodecUnknown accepts any codec of the stream's kind.
	Codec     Codec
	MaxBytes  int // payload bytes, including parameter sets the ring prepends
	MaxFrames int
	// OnKeyframeRequest, if set, is called (outside the ring's lock, on the
	// caller's goroutine) when a video reader has to wait for a keyframe because
	// none is buffered, or a viewer asks for one (RequestKeyframe), at most
	// once per KeyframeRequestInterval, as is the source given to
	// SetKeyframeRequester. It must not block.
	OnKeyframeRequest func()
}

// Ring is the frame buffer of one stream (§7.2). Sources append; any number
// of Readers follow at their own pace. Appending never waits for a reader:
// frames a reader has not consumed are simply evicted. All methods are safe
// for concurrent use.
type Ring struct {
	cfg   RingConfig
	log   *slog.Logger
	video bool

	mu      sync.RWMutex
	slots   []Frame // frame with sequence number s lives at s % len(slots)
	head    uint64  // oldest buffered sequence number
	tail    uint64  // sequence number the next frame gets; buffered = [head, tail)
	bytes   int
	lastKey uint64 // newest buffered keyframe, 0 if none
	// The ring's clock: the PTS of the newest frame, and when it came.
	lastOut   int64
	lastOutAt time.Time
	hasOut    bool
	owner     *Timeline // the producer whose frames the ring takes now
	def       *Timeline // the timeline of Ring.Append
	ps        paramSets // parameter sets seen in the stream, owned copies
	readers   []*Reader
	closed    bool

	// logs lets the rejection summary and the rebase line through at most
	// once per rejectSummaryInterval each.
	logs *droplog.Summary

	pending      [ruleCount]uint64 // rejections not yet logged
	pendingTotal uint64
	lastErr      error

	appended   atomic.Uint64
	lastAppend atomic.Int64 // unix nanoseconds of the last accepted frame
	evicted    atomic.Uint64
	segments   atomic.Uint64

	timelineSeq atomic.Uint64
	rejected    [ruleCount]atomic.Uint64

	kf keyframeGate

	slab slab // where payloads are carved from
}

// NewRing builds an empty ring. A nil logger discards.
func NewRing(cfg RingConfig, log *slog.Logger) (*Ring, error) {
	switch {
	case cfg.Stream != StreamMain && cfg.Stream != StreamSub && cfg.Stream != StreamAudio:
		return nil, fmt.Errorf("%w: stream %d", ErrRingConfig, cfg.Stream)
	case cfg.Codec != CodecUnknown && cfg.Stream.IsVideo() != cfg.Codec.IsVideo():
		return nil, fmt.Errorf("%w: codec %s on the %s ring", ErrRingConfig, cfg.Codec, cfg.Stream)
	case cfg.MaxBytes <= 0:
		return nil, fmt.Errorf("%w: max_bytes %d must be positive", ErrRingConfig, cfg.MaxBytes)
	case cfg.MaxFrames <= 0 || cfg.MaxFrames > maxRingFrames:
		return nil, fmt.Errorf("%w: max_frames %d must be in 1..%d", ErrRingConfig, cfg.MaxFrames, maxRingFrames)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Ring{
		cfg:   cfg,
		log:   log.With("component", "ring", "stream", cfg.Stream.String()),
		video: cfg.Stream.IsVideo(),
		slots: make([]Frame, cfg.MaxFrames),
		head:  1,
		tail:  1,
		logs:  droplog.NewGate(rejectSummaryInterval),
	}
	r.def = r.NewTimeline()
	return r, nil
}

// Stream returns the stream this ring buffers.
func (r *Ring) Stream() Stream { return r.cfg.Stream }

// Codec returns the codec of the ring's frames.
func (r *Ring) Codec() Codec { return r.cfg.Codec }

// Append validates f against §7.1, copies its payload and makes it visible to
// readers, evicting the oldest frames as needed. It never blocks on readers.
// The caller keeps ownership of f.Payload. f.Seq is ignored.
//
// A keyframe without parameter sets gets the stream's last ones prepended.
// Rejected frames leave the ring untouched; they are counted in Stats and
// summarised in the log at most once per 10 s.
//
// Append appends on the ring's own Timeline, for a producer that lives as
// long as the ring; a producer that can restart appends through a Timeline
// of its own from NewTimeline.
func (r *Ring) Append(f Frame) error { return r.def.Append(f) }

func (r *Ring) appendOn(t *Timeline, f Frame) (err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrRingClosed
	}
	if t.closed {
		r.mu.Unlock()
		return ErrTimelineClosed
	}
	now := time.Now()
	rule, begin, err := r.appendLocked(t, f, now)
	if err != nil {
		r.rejected[rule].Add(1)
		r.pending[rule]++
		r.pendingTotal++
		r.lastErr = err
	}
	var summary rejectSummary
	if r.pendingTotal > 0 {
		if ok, _ := r.logs.Note("rejected"); ok {
			summary = r.takeSummaryLocked()
		}
	}
	r.mu.Unlock()
	if summary.total > 0 {
		r.logSummary(summary)
	}
	if begin.rebased {
		if ok, n := r.logs.Note("rebased"); ok {
			r.log.Info("ring buffer timeline rebased", "new_producer", begin.takeover,
				"pts_in", f.PTS, "pts", begin.out, "suppressed_since_last_log", n)
		}
	}
	return err
}

// checkFrame applies the rules of §7.1 that depend on the frame alone.
func (r *Ring) checkFrame(f Frame) (rejectRule, error) {
	n := len(f.Payload)
	switch {
	case n == 0:
		return ruleEmpty, ErrEmptyPayload
	case f.Stream != r.cfg.Stream:
		return ruleWrongStream, fmt.Errorf("%w: %s frame on the %s ring", ErrWrongStream, f.Stream, r.cfg.Stream)
	case r.video && (!f.Codec.IsVideo() || (f.Kind != KindI && f.Kind != KindP)),
		!r.video && (!f.Codec.IsAudio() || f.Kind != KindAudio),
		r.cfg.Codec != CodecUnknown && f.Codec != r.cfg.Codec:
		return ruleKind, fmt.Errorf("%w: %s %s on the %s ring", ErrKindMismatch, f.Codec, f.Kind, r.cfg.Stream)
	case !r.video && n > MaxAudioPayload:
		return ruleAudioSize, fmt.Errorf("%w: %d bytes", ErrAudioTooLarge, n)
	case r.video && n > MaxVideoPayload:
		return ruleVideoSize, fmt.Errorf("%w: %d bytes", ErrVideoTooLarge, n)
	}
	return 0, nil
}

func (r *Ring) appendLocked(t *Timeline, f Frame, now time.Time) (rejectRule, timelinePlan, error) {
	n := len(f.Payload)
	if rule, err := r.checkFrame(f); err != nil {
		return rule, timelinePlan{}, err
	}
	plan, rule, err := r.planLocked(t, f, now)
	if err != nil {
		return rule, plan, err
	}

	// Parameter sets are scanned before anything is committed so that a
	// rejected frame cannot change the cache.
	var found paramSets
	var missing [psCount]bool
	size := n
	if r.video {
		found = scanParamSets(f.Codec, f.Payload)
		if f.Kind == KindI {
			for i, req := range requiredParamSets(f.Codec) {
				if !req || found[i] != nil {
					continue
				}
				if r.ps[i] == nil {
					return ruleParamSets, timelinePlan{}, fmt.Errorf("%w: %s keyframe", ErrNoParameterSets, f.Codec)
				}
				missing[i] = true
				size += 4 + len(r.ps[i])
			}
		}
	}
	if size > r.cfg.MaxBytes {
		return ruleBudget, timelinePlan{}, fmt.Errorf("%w: %d bytes, budget %d", ErrExceedsBudget, size, r.cfg.MaxBytes)
	}

	for i, nal := range found {
		if nal != nil && string(nal) != string(r.ps[i]) {
			// Reusing the cache's array is safe: prepending copies out of it.
			r.ps[i] = append(r.ps[i][:0], nal...)
		}
	}
	for r.tail-r.head >= uint64(len(r.slots)) || r.bytes+size > r.cfg.MaxBytes {
		r.evictLocked()
	}

	buf := r.slab.alloc(size, r.bytes)
	off := 0
	for i, m := range missing {
		if m {
			off += copy(buf[off:], []byte{0, 0, 0, 1})
			off += copy(buf[off:], r.ps[i])
		}
	}
	copy(buf[off:], f.Payload)

	r.commitLocked(t, f, plan, now)
	f.Payload = buf
	f.PTS = plan.out
	f.Seq = r.tail
	r.slots[r.tail%uint64(len(r.slots))] = f
	if f.Kind == KindI {
		r.lastKey = r.tail
	}
	r.tail++
	r.bytes += size
	r.appended.Add(1)
	r.lastAppend.Store(time.Now().UnixNano())
	for _, rd := range r.readers {
		rd.signal()
	}
	return 0, plan, nil
}

func (r *Ring) evictLocked() {
	slot := &r.slots[r.head%uint64(len(r.slots))]
	r.bytes -= len(slot.Payload)
	// Dropping the reference is all eviction does: readers still holding the
	// payload keep it alive, and nothing ever writes into it again.
	*slot = Frame{}
	r.head++
	if r.lastKey < r.head {
		r.lastKey = 0
	}
	r.evicted.Add(1)
}

// Frame returns the frame with sequence number seq (Frame.Seq) while the ring
// still holds it. Its payload is never written again, so it stays valid after
// the frame is evicted.
func (r *Ring) Frame(seq uint64) (Frame, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if seq < r.head || seq >= r.tail {
		return Frame{}, false
	}
	return *r.slotLocked(seq), true
}

// slotLocked returns the buffered frame with sequence number seq.
func (r *Ring) slotLocked(seq uint64) *Frame {
	return &r.slots[seq%uint64(len(r.slots))]
}

// NewReader returns a cursor that starts at the latest buffered keyframe (video)
// or the newest frame (audio). A video reader with no keyframe buffered starts
// at the next keyframe appended, and the ring asks the source for one.
func (r *Ring) NewReader() *Reader {
	rd := newReader(r)
	r.mu.Lock()
	request := false
	switch {
	case !r.video:
		rd.next = r.tail
		if r.tail > r.head {
			rd.next = r.tail - 1
		}
	case r.lastKey != 0:
		rd.next = r.lastKey
	default:
		rd.next, rd.waitKey, request = r.tail, true, !r.closed
	}
	r.readers = append(r.readers, rd)
	r.mu.Unlock()
	if request {
		r.requestKeyframe()
	}
	return rd
}

// NewReaderAt returns a cursor that starts at the first buffered frame whose
// Timestamp is at least timestampMs, so audio can start at the same instant as
// the video keyframe a session starts with. If every buffered frame is older,
// the reader starts with the next frame appended. A video reader additionally
// starts on a keyframe: the first one at or after that frame.
func (r *Ring) NewReaderAt(timestampMs int64) *Reader {
	rd := newReader(r)
	r.mu.Lock()
	// Scanning back from the newest frame finds the most recent run of frames
	// at or after the instant even if the wall clock was stepped back.
	rd.next = r.tail
	for s := r.tail; s > r.head && r.slotLocked(s-1).Timestamp >= timestampMs; s-- {
		rd.next = s - 1
	}
	request := false
	if r.video {
		rd.waitKey = true
		request = !r.closed && (r.lastKey == 0 || r.lastKey < rd.next)
	}
	r.readers = append(r.readers, rd)
	r.mu.Unlock()
	if request {
		r.requestKeyframe()
	}
	return rd
}

func (r *Ring) requestKeyframe() { r.RequestKeyframe() }

// Close wakes every reader; their Next returns ErrRingClosed, and Append fails
// from now on. Pending rejection counts are logged.
func (r *Ring) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	for _, rd := range r.readers {
		rd.signal()
	}
	var summary rejectSummary
	if r.pendingTotal > 0 {
		summary = r.takeSummaryLocked()
	}
	r.mu.Unlock()
	if summary.total > 0 {
		r.logSummary(summary)
	}
}

// RingStats is a snapshot of a ring's counters.
type RingStats struct {
	Stream   Stream
	Appended uint64 // frames accepted since the ring was built
	// LastAppend is when the last frame was accepted; zero before the first.
	LastAppend time.Time
	Evicted    uint64
	Rejected   RejectCounts
	// Timelines counts segments begun: a producer starting or taking over,
	// or a timeline resynchronised after TimelineResync of refused PTS.
	Timelines uint64
	Bytes     int // payload bytes buffered now
	Frames    int // frames buffered now
	Readers   int
	// KeyframeRequests were passed to the source; KeyframeCoalesced came
	// within KeyframeRequestInterval of one and were served by it.
	KeyframeRequests  uint64
	KeyframeCoalesced uint64
}

// RejectCounts counts rejected frames per rule of §7.1, since the ring was built.
type RejectCounts struct {
	EmptyPayload    uint64
	WrongStream     uint64
	KindMismatch    uint64
	AudioTooLarge   uint64
	VideoTooLarge   uint64
	ExceedsBudget   uint64
	PTSBackwards    uint64
	NoParameterSets uint64
	// Timeline rules (Timeline): a PTS more than TimelineMaxLead ahead of
	// its timeline's clock; a frame from a producer while another one feeds
	// the ring; a non-keyframe beginning a new timeline on a video ring.
	PTSTooFarAhead   uint64
	OtherProducer    uint64
	AwaitingKeyframe uint64
}

// Total sums all rules.
func (c RejectCounts) Total() uint64 {
	return c.EmptyPayload + c.WrongStream + c.KindMismatch + c.AudioTooLarge +
		c.VideoTooLarge + c.ExceedsBudget + c.PTSBackwards + c.NoParameterSets +
		c.PTSTooFarAhead + c.OtherProducer + c.AwaitingKeyframe
}

// Rate is the stream's rate as the ring holds it: the payload bytes of the
// buffered frames, the newest but one, over the PTS span from the oldest to
// the newest, in bytes per second; 0 while that span is under a second.
func (r *Ring) Rate() float64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.tail-r.head < 2 {
		return 0
	}
	first, last := r.slotLocked(r.head), r.slotLocked(r.tail-1)
	span := last.PTS - first.PTS
	if span < 1_000_000 {
		return 0
	}
	return float64(r.bytes-len(last.Payload)) / (float64(span) / 1e6)
}

// Stats returns the ring's counters.
func (r *Ring) Stats() RingStats {
	r.mu.RLock()
	st := RingStats{
		Stream:  r.cfg.Stream,
		Bytes:   r.bytes,
		Frames:  int(r.tail - r.head),
		Readers: len(r.readers),
	}
	r.mu.RUnlock()
	st.Appended = r.appended.Load()
	if n := r.lastAppend.Load(); n != 0 {
		st.LastAppend = time.Unix(0, n)
	}
	st.KeyframeRequests, st.KeyframeCoalesced = r.kf.passed.Load(), r.kf.coalesced.Load()
	st.Evicted = r.evicted.Load()
	st.Rejected = RejectCounts{
		EmptyPayload:    r.rejected[ruleEmpty].Load(),
		WrongStream:     r.rejected[ruleWrongStream].Load(),
		KindMismatch:    r.rejected[ruleKind].Load(),
		AudioTooLarge:   r.rejected[ruleAudioSize].Load(),
		VideoTooLarge:   r.rejected[ruleVideoSize].Load(),
		ExceedsBudget:   r.rejected[ruleBudget].Load(),
		PTSBackwards:    r.rejected[rulePTS].Load(),
		NoParameterSets: r.rejected[ruleParamSets].Load(),

		PTSTooFarAhead:   r.rejected[rulePTSAhead].Load(),
		OtherProducer:    r.rejected[ruleProducer].Load(),
		AwaitingKeyframe: r.rejected[ruleAwaitKey].Load(),
	}
	st.Timelines = r.segments.Load()
	return st
}

// rejectRule indexes the per-rule counters.
type rejectRule uint8

const (
	ruleEmpty rejectRule = iota
	ruleWrongStream
	ruleKind
	ruleAudioSize
	ruleVideoSize
	ruleBudget
	rulePTS
	ruleParamSets
	rulePTSAhead
	ruleProducer
	ruleAwaitKey
	ruleCount
)

// String is the rule as it appears in the `ring buffer` log line.
func (r rejectRule) String() string {
	switch r {
	case ruleEmpty:
		return "empty payload"
	case ruleWrongStream:
		return "wrong stream"
	case ruleKind:
		return "kind/codec mismatch"
	case ruleAudioSize:
		return "audio payload too large"
	case ruleVideoSize:
		return "video payload too large"
	case ruleBudget:
		return "frame exceeds ring budget"
	case rulePTS:
		return "pts went backwards"
	case ruleParamSets:
		return "keyframe without parameter sets"
	case rulePTSAhead:
		return "pts too far ahead"
	case ruleProducer:
		return "another producer is live"
	case ruleAwaitKey:
		return "new timeline waits for a keyframe"
	default:
		return "unknown"
	}
}

type rejectSummary struct {
	counts [ruleCount]uint64
	total  uint64
	last   error
}

func (r *Ring) takeSummaryLocked() rejectSummary {
	s := rejectSummary{counts: r.pending, total: r.pendingTotal, last: r.lastErr}
	r.pending = [ruleCount]uint64{}
	r.pendingTotal = 0
	r.lastErr = nil
	return s
}

func (r *Ring) logSummary(s rejectSummary) {
	var rules strings.Builder
	for i, n := range s.counts {
		if n == 0 {
			continue
		}
		if rules.Len() > 0 {
			rules.WriteString(", ")
		}
		fmt.Fprintf(&rules, "%s: %d", rejectRule(i), n)
	}
	r.log.Warn("ring buffer rejected frames",
		"rules", rules.String(), "count", s.total, "last_error", s.last.Error())
}
