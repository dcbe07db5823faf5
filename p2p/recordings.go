package p2p

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/ipcd/ipcd/media"
)

// Recordings is the card's recordings as playback and download read them.
// cmd/ipcd wires the recorder's store into it; nil in Config means
// recording is off. Every method may read the card: the service calls them
// from session goroutines that own no shared state, never from its loop.
type Recordings interface {
	// Days returns the days of month, in loc, that have recordings.
	Days(year int, month time.Month, loc *time.Location) ([]int, error)
	// Ranges returns the recorded time ranges that overlap from..to,
	// merged and in order.
	Ranges(from, to time.Time) ([]TimeRange, error)
	// Open returns the recorded frames of start..end in time order, from
	// the video keyframe at or before start; an error wrapping
	// ErrNoRecording when nothing covers that time.
	Open(start, end time.Time) (PlaybackSource, error)
	// Export writes start..end as one MPEG-TS stream and returns the bytes
	// written; it returns when ctx ends.
	Export(ctx context.Context, w io.Writer, start, end time.Time) (int64, error)
}

// PlaybackSource yields recorded frames (video and audio interleaved, PTS
// in microseconds, monotonic) and returns io.EOF after the end. One
// goroutine uses it at a time.
type PlaybackSource interface {
	Next() (media.Frame, error)
	// Seek moves to the video keyframe at or before t.
	Seek(t time.Time) error
	Close() error
}

// TimeRange is a recorded span, in unix seconds on the wire.
type TimeRange struct {
	Start time.Time
	End   time.Time
}

type timeRangeJSON struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// MarshalJSON writes {"start":unix,"end":unix}.
func (r TimeRange) MarshalJSON() ([]byte, error) {
	return json.Marshal(timeRangeJSON{Start: r.Start.Unix(), End: r.End.Unix()})
}

// UnmarshalJSON reads {"start":unix,"end":unix}.
func (r *TimeRange) UnmarshalJSON(b []byte) error {
	var j timeRangeJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	r.Start, r.End = time.Unix(j.Start, 0), time.Unix(j.End, 0)
	return nil
}

// Replay is the replay member of a format-A offer: the session plays the
// card's recording of start_time..end_time (unix seconds) instead of the
// live stream.
type Replay struct {
	IsReplay  int   `json:"is_replay"`
	StartTime int64 `json:"start_time"`
	EndTime   int64 `json:"end_time"`
}

// Bounds of a replay request.
const (
	// maxReplaySpan bounds end_time - start_time: a day of recording.
	maxReplaySpan = 24 * 3600
	// minReplayTime refuses times before 2001, which only a device whose
	// clock was never set could have recorded.
	minReplayTime = 1_000_000_000
	maxReplayTime = 1 << 40
)

// On reports whether the offer asks for playback.
func (r *Replay) On() bool { return r != nil && r.IsReplay == 1 }

// Window returns the requested span.
func (r *Replay) Window() (time.Time, time.Time) {
	return time.Unix(r.StartTime, 0), time.Unix(r.EndTime, 0)
}

// check validates a replay member; is_replay 0 (or an absent member) is a
// live offer and its times are not read.
func (r *Replay) check() error {
	if r == nil || r.IsReplay == 0 {
		return nil
	}
	switch {
	case r.IsReplay != 1:
		return fmt.Errorf("%w: msg.replay.is_replay must be 0 or 1, got %d", ErrBadValue, r.IsReplay)
	case r.StartTime < minReplayTime || r.StartTime > maxReplayTime:
		return fmt.Errorf("%w: msg.replay.start_time %d is not a unix time in seconds", ErrBadValue, r.StartTime)
	case r.EndTime <= r.StartTime:
		return fmt.Errorf("%w: msg.replay.end_time %d is not after start_time %d", ErrBadValue, r.EndTime, r.StartTime)
	case r.EndTime-r.StartTime > maxReplaySpan:
		return fmt.Errorf("%w: msg.replay spans %d s, limit %d", ErrBadValue, r.EndTime-r.StartTime, maxReplaySpan)
	}
	return nil
}

// Close reasons of playback offers: ipcd's additions to Tuya's table.
const (
	// CloseNoRecording: the card has nothing at the time asked for.
	CloseNoRecording CloseReason = 15
	// CloseRecordingOff: the device does not record.
	CloseRecordingOff CloseReason = 16
)

// recordingReason names the close reasons above; closereason.go falls back
// to it.
func recordingReason(r CloseReason) (code int, text string, ok bool) {
	switch r {
	case CloseNoRecording:
		return -115, "no recording", true
	case CloseRecordingOff:
		return -116, "recording off", true
	}
	return 0, "", false
}
