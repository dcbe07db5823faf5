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
	root := r.cfg.Path
	st, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("%w: %s", ErrCardMissing, root)
	case err != nil:
		return false, err
	case !st.IsDir():
		return false, fmt.Errorf("%w: %s is not a directory", ErrCardMissing, root)
	}
	inv, err := scanCard(root, r.log)
	if err != nil {
		return false, err
	}
	r.inv, r.total = inv, 0
	for _, s := range inv {
		r.total += s.size
	}
	if err := r.retain(0); err != nil {
		return false, err
	}
	r.updateCard(nil)

	vr := r.video.NewReader()
	defer vr.Close()
	var ar *media.Reader
	if r.audio != nil && r.cfg.Audio() {
		at := time.Now().UnixMilli()
		if f, ok := vr.Peek(); ok {
			at = f.Timestamp
		}
		ar = r.audio.NewReaderAt(at)
		defer ar.Close()
	}
	audioCodec := media.CodecUnknown
	if ar != nil {
		audioCodec = r.audio.Codec()
	}

	tick, stop := r.syncTicker(r.cfg.SyncInterval)
	defer stop()
	var w *segWriter
	defer func() {
		if w == nil {
			return
		}
		if err == nil || classify(err) == RuleCardFull {
			// Closed where it stands: a full card still takes an end
			// record, whose space the sync left.
			if cerr := w.close(); cerr == nil {
				r.addClosed(w)
			} else {
				w.abandon()
			}
		} else {
			w.abandon()
		}
	}()

	var pendV, pendA *media.Frame
	var skipping bool
	var interval int64 = 40000 // µs between video frames, from their PTS
	var lastVPTS int64 = -1
	for {
		// A card that is busy keeps frames pending: the sync is due
		// all the same.
		select {
		case <-tick:
			if w != nil {
				if err := r.sync(w); err != nil {
					return progressed, err
				}
				progressed = true
			}
		default:
		}
		if pendV == nil {
			if f, skipped, ok, rerr := vr.TryNext(); rerr != nil {
				return progressed, rerr
			} else if ok {
				if skipped > 0 {
					r.skipped.Add(uint64(skipped))
					skipping = true
				}
				pendV = &f
			}
		}
		if pendA == nil && ar != nil {
			if f, skipped, ok, rerr := ar.TryNext(); rerr == nil && ok {
				r.skipped.Add(uint64(skipped))
				pendA = &f
			}
		}
		var f media.Frame
		switch {
		case pendV != nil && (pendA == nil || pendV.Timestamp <= pendA.Timestamp):
			f, pendV = *pendV, nil
		case pendA != nil:
			f, pendA = *pendA, nil
		default:
			var aw <-chan struct{}
			if ar != nil {
				aw = ar.Wake()
			}
			select {
			case <-ctx.Done():
				return progressed, nil
			case <-vr.Wake():
			case <-aw:
			case <-tick:
				if w != nil {
					if err := r.sync(w); err != nil {
						return progressed, err
					}
					progressed = true
				}
			}
			continue
		}

		if f.Stream.IsVideo() {
			if lastVPTS >= 0 && f.PTS > lastVPTS {
				interval = min(f.PTS-lastVPTS, int64(time.Second/time.Microsecond))
			}
			lastVPTS = f.PTS
			behind := int64(r.video.Stats().Appended) - int64(f.Seq)
			if time.Duration(behind*interval)*time.Microsecond > maxLag {
				skipping = true
			}
			if skipping {
				if f.Kind != media.KindI || time.Duration(behind*interval)*time.Microsecond > maxLag {
					r.skipped.Add(1)
					continue
				}
				skipping = false
			}
			if f.Kind == media.KindI && (w == nil || w.duration() >= time.Duration(r.cfg.SegmentSeconds)*time.Second) {
				if w != nil {
					if err := w.close(); err != nil {
						w.abandon()
						w = nil
						return progressed, err
					}
					r.addClosed(w)
					w = nil
				}
				if err := r.retain(0); err != nil {
					return progressed, err
				}
				w, err = createSegment(r.open, root, f, audioCodec)
				if err != nil {
					return progressed, err
				}
				r.setStatus(func(s *Status) { s.Segment = w.stem })
				if !r.started {
					r.started = true
					r.log.Info("recording started", "path", root, "segment", w.path())
					r.setStatus(func(s *Status) { s.State, s.Rule, s.Error = StateRecording, RuleNone, "" })
					r.onEvent(Event{Type: EventStarted, Time: time.Now(), Detail: root})
				}
			}
		} else if skipping {
			r.skipped.Add(1)
			continue
		}
		if w == nil {
			continue // audio before the first keyframe
		}
		if _, err := w.write(f); err != nil {
			return progressed, err
		}
	}
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
