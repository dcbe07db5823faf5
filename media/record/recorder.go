package record

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipcd/ipcd/media"
)

// State is what the recorder is doing.
type State string

// States.
const (
	StateStarting  State = "starting"
	StateRecording State = "recording"
	StateStopped   State = "stopped" // a card problem; retried with backoff
)

// EventType tells what an Event reports.
type EventType uint8

// Events.
const (
	EventUnknown EventType = iota
	EventStarted           // recording (re)started
	EventStopped           // recording stopped for Rule; retried
)

func (e EventType) String() string {
	switch e {
	case EventStarted:
		return "RecordStart"
	case EventStopped:
		return "RecordStop"
	}
	return "unknown"
}

// Event is a change of the recording state, for the board.
type Event struct {
	Type   EventType
	Time   time.Time
	Rule   Rule
	Detail string
}

// Status is the recorder's health.
type Status struct {
	_ [0]func() // not comparable: no equality function in the binary

	State    State  `json:"state"`
	Rule     Rule   `json:"rule,omitempty"`
	Error    string `json:"error,omitempty"`
	Segment  string `json:"segment,omitempty"` // being written
	Segments int    `json:"segments"`          // closed segments on the card
	MB       int64  `json:"mb"`                // recordings on the card
	FreeMB   int64  `json:"free_mb"`           // -1 when unknown
	Skipped  uint64 `json:"skipped"`           // frames not recorded because the card was slow
	Deleted  uint64 `json:"deleted"`           // segments deleted to make room
	Retries  uint64 `json:"retries"`
}

// Backoff between attempts after a card problem.
const (
	retryBase = time.Second
	retryCap  = 30 * time.Second
	// maxLag: when the frame due is further behind the newest one, the
	// recorder drops frames up to the next keyframe, so that what a power
	// cut loses stays near the sync interval.
	maxLag = time.Second
	// stillStoppedEvery bounds the log of a card that keeps failing the
	// same way.
	stillStoppedEvery = time.Minute
)

// Recorder writes the video ring and the audio ring to the card. It reads
// them like a live session: appending never waits for it, and when the
// card is slow it falls behind and skips to the next keyframe.
type Recorder struct {
	cfg     Config
	video   *media.Ring
	audio   *media.Ring // nil: no audio
	log     *slog.Logger
	onEvent func(Event)

	// Replaced by tests.
	open       openFunc
	free       func(string) (int64, error)
	retryBase  time.Duration
	retryCap   time.Duration
	syncTicker func(time.Duration) (<-chan time.Time, func())

	mu     sync.Mutex
	status Status
	inv    []segFile // closed segments, oldest first; owned by Run
	total  int64
	// started: the current session sent EventStarted; full: the last one
	// stopped on a full card. Owned by Run.
	started bool
	full    bool

	skipped atomic.Uint64
	deleted atomic.Uint64
	retries atomic.Uint64
}

// New builds a recorder of video (and audio, which may be nil) into
// cfg.Path. onEvent, if set, is called on Run's goroutine and must not
// block.
func New(cfg Config, video, audio *media.Ring, onEvent func(Event), log *slog.Logger) (*Recorder, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: empty path", ErrConfig)
	}
	if p := cfg.Validate(); len(p) > 0 {
		return nil, fmt.Errorf("%w: %s %s", ErrConfig, p[0].Key, p[0].Reason)
	}
	if video == nil || !video.Stream().IsVideo() {
		return nil, fmt.Errorf("%w: no video ring", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onEvent == nil {
		onEvent = func(Event) {}
	}
	r := &Recorder{cfg: cfg, video: video, audio: audio, log: log.With("component", "record"), onEvent: onEvent,
		open: osOpen, free: freeBytes, retryBase: retryBase, retryCap: retryCap,
		syncTicker: func(d time.Duration) (<-chan time.Time, func()) { t := time.NewTicker(d); return t.C, t.Stop }}
	r.status = Status{State: StateStarting, FreeMB: -1}
	return r, nil
}

// Status returns the recorder's health now.
func (r *Recorder) Status() Status {
	r.mu.Lock()
	st := r.status
	r.mu.Unlock()
	st.Skipped, st.Deleted, st.Retries = r.skipped.Load(), r.deleted.Load(), r.retries.Load()
	return st
}

func (r *Recorder) setStatus(f func(*Status)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}

// Run records until ctx ends. A card problem stops the recording with a
// log line, an event and the status naming its rule; it is retried with
// jittered exponential backoff.
func (r *Recorder) Run(ctx context.Context) error {
	wait := r.retryBase
	var stoppedRule Rule
	var lastLog time.Time
	for {
		progressed, err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = ErrCardIO // the rings closed under a running recorder
		}
		rule := classify(err)
		if progressed {
			wait = r.retryBase
		}
		started := r.started
		r.started = false
		r.full = rule == RuleCardFull
		now := time.Now()
		switch {
		case started || progressed || rule != stoppedRule:
			r.log.Warn("recording stopped", "rule", string(rule), "err", err, "retry_in", wait)
			r.onEvent(Event{Type: EventStopped, Time: now, Rule: rule, Detail: err.Error()})
			lastLog = now
		case now.Sub(lastLog) >= stillStoppedEvery:
			r.log.Warn("recording still stopped", "rule", string(rule), "err", err, "retry_in", wait)
			lastLog = now
		}
		stoppedRule = rule
		r.setStatus(func(s *Status) { s.State, s.Rule, s.Error, s.Segment = StateStopped, rule, err.Error(), "" })
		// Full jitter over the upper half, so a fleet does not retry in step.
		d := wait/2 + rand.N(wait/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		r.retries.Add(1)
		wait = min(wait*2, r.retryCap)
	}
}

// session records until the card fails or ctx ends; progressed tells
// whether anything was synced to the card.
func (r *Recorder) session(ctx context.Context) (progressed bool, err error) {
	if err := r.loadCard(); err != nil {
		return false, err
	}
	s := r.newRecSession()
	defer s.closeReaders()
	tick, stop := r.syncTicker(r.cfg.SyncInterval)
	defer stop()
	s.tick = tick
	defer func() { s.finish(err) }()
	err = s.run(ctx)
	return s.progressed, err
}

// loadCard checks the card, takes the inventory of its closed segments
// and applies the retention.
func (r *Recorder) loadCard() error {
	root := r.cfg.Path
	st, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s", ErrCardMissing, root)
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%w: %s is not a directory", ErrCardMissing, root)
	}
	inv, err := scanCard(root, r.log)
	if err != nil {
		return err
	}
	r.inv, r.total = inv, 0
	for _, s := range inv {
		r.total += s.size
	}
	if err := r.retain(0); err != nil {
		return err
	}
	r.updateCard(nil)
	return nil
}

// recSession is the state of one session: the ring readers, the segment
// being written and the frames read but not yet written. Owned by Run.
type recSession struct {
	r          *Recorder
	vr, ar     *media.Reader // ar nil: no audio
	audioCodec media.Codec
	tick       <-chan time.Time
	w          *segWriter

	pendV, pendA *media.Frame
	skipping     bool
	interval     int64 // µs between video frames, from their PTS
	lastVPTS     int64
	progressed   bool
}

func (r *Recorder) newRecSession() *recSession {
	s := &recSession{r: r, vr: r.video.NewReader(), audioCodec: media.CodecUnknown, interval: 40000, lastVPTS: -1}
	if r.audio != nil && r.cfg.Audio() {
		at := time.Now().UnixMilli()
		if f, ok := s.vr.Peek(); ok {
			at = f.Timestamp
		}
		s.ar = r.audio.NewReaderAt(at)
		s.audioCodec = r.audio.Codec()
	}
	return s
}

func (s *recSession) closeReaders() {
	if s.ar != nil {
		s.ar.Close()
	}
	s.vr.Close()
}

// finish closes the segment being written where it stands when the
// session ended cleanly or on a full card (a full card still takes an end
// record, whose space the sync left), and abandons it otherwise.
func (s *recSession) finish(err error) {
	if s.w == nil {
		return
	}
	if err == nil || classify(err) == RuleCardFull {
		if cerr := s.w.close(); cerr == nil {
			s.r.addClosed(s.w)
			return
		}
	}
	s.w.abandon()
}

func (s *recSession) run(ctx context.Context) error {
	for {
		// A card that is busy keeps frames pending: the sync is due
		// all the same.
		select {
		case <-s.tick:
			if err := s.sync(); err != nil {
				return err
			}
		default:
		}
		f, ok, err := s.next()
		if err != nil {
			return err
		}
		if !ok {
			if done, err := s.wait(ctx); done || err != nil {
				return err
			}
			continue
		}
		if err := s.record(f); err != nil {
			return err
		}
	}
}

func (s *recSession) sync() error {
	if s.w == nil {
		return nil
	}
	if err := s.r.sync(s.w); err != nil {
		return err
	}
	s.progressed = true
	return nil
}

// next returns the oldest pending frame, video first on a tie; ok is
// false when neither ring has one.
func (s *recSession) next() (f media.Frame, ok bool, err error) {
	if s.pendV == nil {
		v, skipped, got, rerr := s.vr.TryNext()
		if rerr != nil {
			return media.Frame{}, false, rerr
		}
		if got {
			if skipped > 0 {
				s.r.skipped.Add(uint64(skipped))
				s.skipping = true
			}
			s.pendV = &v
		}
	}
	if s.pendA == nil && s.ar != nil {
		if a, skipped, got, rerr := s.ar.TryNext(); rerr == nil && got {
			s.r.skipped.Add(uint64(skipped))
			s.pendA = &a
		}
	}
	switch {
	case s.pendV != nil && (s.pendA == nil || s.pendV.Timestamp <= s.pendA.Timestamp):
		f, s.pendV = *s.pendV, nil
	case s.pendA != nil:
		f, s.pendA = *s.pendA, nil
	default:
		return media.Frame{}, false, nil
	}
	return f, true, nil
}

// wait blocks until a ring has a frame, the sync is due or ctx ends
// (done).
func (s *recSession) wait(ctx context.Context) (done bool, err error) {
	var aw <-chan struct{}
	if s.ar != nil {
		aw = s.ar.Wake()
	}
	select {
	case <-ctx.Done():
		return true, nil
	case <-s.vr.Wake():
	case <-aw:
	case <-s.tick:
		return false, s.sync()
	}
	return false, nil
}

// record writes f, starting a new segment at a keyframe when one is due.
func (s *recSession) record(f media.Frame) error {
	if f.Stream.IsVideo() {
		if !s.admitVideo(f) {
			s.r.skipped.Add(1)
			return nil
		}
		if err := s.rotate(f); err != nil {
			return err
		}
	} else if s.skipping {
		s.r.skipped.Add(1)
		return nil
	}
	if s.w == nil {
		return nil // audio before the first keyframe
	}
	_, err := s.w.write(f)
	return err
}

// admitVideo tells whether video frame f is recorded: a recorder further
// behind than maxLag skips up to the next keyframe it can keep up from.
func (s *recSession) admitVideo(f media.Frame) bool {
	if s.lastVPTS >= 0 && f.PTS > s.lastVPTS {
		s.interval = min(f.PTS-s.lastVPTS, int64(time.Second/time.Microsecond))
	}
	s.lastVPTS = f.PTS
	behind := int64(s.r.video.Stats().Appended) - int64(f.Seq)
	late := time.Duration(behind*s.interval)*time.Microsecond > maxLag
	if late {
		s.skipping = true
	}
	if s.skipping {
		if f.Kind != media.KindI || late {
			return false
		}
		s.skipping = false
	}
	return true
}

// rotate closes the segment and opens the next one when keyframe f is due
// to start one.
func (s *recSession) rotate(f media.Frame) error {
	r := s.r
	if f.Kind != media.KindI || (s.w != nil && s.w.duration() < time.Duration(r.cfg.SegmentSeconds)*time.Second) {
		return nil
	}
	if s.w != nil {
		if err := s.w.close(); err != nil {
			s.w.abandon()
			s.w = nil
			return err
		}
		r.addClosed(s.w)
		s.w = nil
	}
	if err := r.retain(0); err != nil {
		return err
	}
	w, err := createSegment(r.open, r.cfg.Path, f, s.audioCodec)
	if err != nil {
		return err
	}
	s.w = w
	r.setStatus(func(st *Status) { st.Segment = w.stem })
	if !r.started {
		r.started = true
		r.log.Info("recording started", "path", r.cfg.Path, "segment", w.path())
		r.setStatus(func(st *Status) { st.State, st.Rule, st.Error = StateRecording, RuleNone, "" })
		r.onEvent(Event{Type: EventStarted, Time: time.Now(), Detail: r.cfg.Path})
	}
	return nil
}

// sync makes the segment durable, checks that the card is still there and
// applies the retention.
func (r *Recorder) sync(w *segWriter) error {
	if err := w.sync(); err != nil {
		return err
	}
	if _, err := os.Stat(w.path() + segExt); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s vanished", ErrCardRemoved, w.path()+segExt)
		}
		return err
	}
	if err := r.retain(w.bytes); err != nil {
		return err
	}
	r.updateCard(w)
	return nil
}

func (r *Recorder) addClosed(w *segWriter) {
	size := fileSize(w.path()+segExt) + fileSize(w.path()+idxExt)
	r.inv = append(r.inv, segFile{base: w.path(), size: size})
	r.total += size
}

// retain deletes the oldest closed segments while the card has less than
// min_free_mb free or the recordings exceed max_mb (current: the bytes of
// the segment being written).
func (r *Recorder) retain(current int64) error {
	minFree := int64(r.cfg.MinFreeMB) << 20
	maxTotal := int64(r.cfg.MaxMB) << 20
	for len(r.inv) > 0 {
		free, err := r.free(r.cfg.Path)
		if err != nil {
			return err
		}
		rule := ""
		switch {
		case r.full:
			// The card filled up (ENOSPC) under the thresholds: the
			// oldest segment makes room.
			rule = "card_full"
			r.full = false
		case free >= 0 && free < minFree:
			rule = "min_free_mb"
		case maxTotal > 0 && r.total+current > maxTotal:
			rule = "max_mb"
		}
		if rule == "" {
			return nil
		}
		old := r.inv[0]
		if err := removeSegment(old.base); err != nil {
			return err
		}
		r.inv = r.inv[1:]
		r.total -= old.size
		r.deleted.Add(1)
		removeEmptyDir(dirOf(old.base))
		r.log.Info("oldest segment deleted", "rule", rule, "segment", old.base, "free_mb", free>>20, "total_mb", (r.total+current)>>20)
	}
	free, err := r.free(r.cfg.Path)
	if err != nil {
		return err
	}
	if free >= 0 && free < minFree/2 {
		return fmt.Errorf("%w: %d MB free and nothing left to delete", ErrCardFull, free>>20)
	}
	return nil
}

func (r *Recorder) updateCard(w *segWriter) {
	free, err := r.free(r.cfg.Path)
	if err != nil || free < 0 {
		free = -1 << 20
	}
	total := r.total
	if w != nil {
		total += w.bytes
	}
	r.setStatus(func(s *Status) { s.Segments, s.MB, s.FreeMB = len(r.inv), total>>20, free>>20 })
}
