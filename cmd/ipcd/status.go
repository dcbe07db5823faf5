package main

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/media/record"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/p2p"
)

// Status is the device's health: the board's status command returns it,
// and the retained status topic carries it as "health".
type Status struct {
	State    string         `json:"state"`
	Privacy  bool           `json:"privacy"`
	Sources  []SourceHealth `json:"sources"`
	Sessions []SessionState `json:"sessions"`
	// SessionsOmitted is how many sessions were left out to keep the
	// status message under 8 KB.
	SessionsOmitted int `json:"sessions_omitted,omitempty"`
	// Record is the recording to the card; absent when recording is off.
	Record *record.Status `json:"record,omitempty"`
}

// SourceHealth is one ring and the source that feeds it.
type SourceHealth struct {
	Stream string  `json:"stream"`
	Codec  string  `json:"codec"`
	FPS    float64 `json:"fps"`
	// LastFrameAgeMs is how long ago the last frame arrived; -1 before
	// the first.
	LastFrameAgeMs int64  `json:"last_frame_age_ms"`
	Frames         uint64 `json:"frames"`
	Errors         uint64 `json:"errors"` // frames the ring rejected
}

// SessionState is one session in a Status.
type SessionState struct {
	ID            string  `json:"id"`
	Stream        string  `json:"stream"`
	Codec         string  `json:"codec"`
	VideoFrames   uint64  `json:"video_frames"`
	AudioFrames   uint64  `json:"audio_frames"`
	Bytes         uint64  `json:"bytes"`
	Skipped       uint64  `json:"skipped"`
	RTTMs         int64   `json:"rtt_ms"`
	Lost          uint32  `json:"lost"`
	Loss          float64 `json:"loss"`
	CandidateType string  `json:"candidate,omitempty"`
	TTFFMs        int64   `json:"ttff_ms"`
	// TTFFPhasesMs: offer→answer, answer→ICE, ICE→DTLS, DTLS→keyframe.
	TTFFPhasesMs []int64 `json:"ttff_phases_ms,omitempty"`
}

// statusInterval is how often the status is published when nothing
// changes; statusPoll how often a change is looked for.
const (
	statusInterval = 30 * time.Second
	statusPoll     = time.Second
	// statusBudget leaves room under mqtt.MaxStatus for the envelope.
	statusBudget = mqtt.MaxStatus
)

// fpsMeter turns a ring's frame count into frames per second over the
// last window of at least a second.
type fpsMeter struct {
	mu   sync.Mutex
	last map[media.Stream]fpsSample
}

type fpsSample struct {
	at     time.Time
	frames uint64
	fps    float64
}

func (m *fpsMeter) fps(s media.Stream, frames uint64, now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		m.last = map[media.Stream]fpsSample{}
	}
	p, ok := m.last[s]
	if !ok {
		m.last[s] = fpsSample{at: now, frames: frames}
		return 0
	}
	if dt := now.Sub(p.at); dt >= time.Second {
		p = fpsSample{at: now, frames: frames, fps: float64(frames-p.frames) / dt.Seconds()}
		m.last[s] = p
	}
	return p.fps
}

func (d *daemon) status(ctx context.Context) Status {
	now := time.Now()
	st := Status{State: d.machine.State().String(), Privacy: d.privacy.Load(), Sources: []SourceHealth{}, Sessions: []SessionState{}}
	m := d.media.Load()
	if m != nil {
		for _, r := range []*media.Ring{m.Main, m.Sub, m.Audio} {
			if r == nil {
				continue
			}
			rs := r.Stats()
			age := int64(-1)
			if !rs.LastAppend.IsZero() {
				age = now.Sub(rs.LastAppend).Milliseconds()
			}
			st.Sources = append(st.Sources, SourceHealth{
				Stream: rs.Stream.String(), Codec: r.Codec().String(),
				FPS:            round(d.fps.fps(rs.Stream, rs.Appended, now), 10),
				LastFrameAgeMs: age, Frames: rs.Appended, Errors: rs.Rejected.Total(),
			})
		}
	}
	if rec := d.recorder.Load(); rec != nil {
		rs := rec.Status()
		st.Record = &rs
	}
	if svc := d.running.Load(); svc != nil {
		ss := svc.Sessions(ctx)
		sort.Slice(ss, func(i, j int) bool { return ss[i].ID < ss[j].ID })
		for _, s := range ss {
			st.Sessions = append(st.Sessions, sessionState(s, m))
		}
	}
	return st
}

func sessionState(s p2p.SessionStats, m *p2p.Media) SessionState {
	codec := ""
	if m != nil {
		r := m.Main
		if s.Stream == media.StreamSub && m.Sub != nil {
			r = m.Sub
		}
		codec = r.Codec().String()
	}
	st := SessionState{
		ID: s.ID, Stream: s.Stream.String(), Codec: codec,
		VideoFrames: s.VideoFrames, AudioFrames: s.AudioFrames, Bytes: s.VideoBytes + s.AudioBytes,
		Skipped: s.Skipped, RTTMs: s.RTT.Milliseconds(), Lost: s.Lost, Loss: round(s.FractionLost, 1000),
		CandidateType: s.CandidateType, TTFFMs: s.TTFF.Milliseconds(),
	}
	if p := s.TTFFPhases; p.Total() > 0 {
		st.TTFFPhasesMs = []int64{p.OfferToAnswer.Milliseconds(), p.AnswerToICE.Milliseconds(),
			p.ICEToDTLS.Milliseconds(), p.DTLSToKeyframe.Milliseconds()}
	}
	return st
}

// round keeps n decimals.
func round(f, scale float64) float64 { return float64(int64(f*scale+0.5)) / scale }

// encodeStatus encodes st for the status topic within mqtt.MaxStatus:
// first the TTFF phases go, then sessions from the end, counted in
// sessions_omitted.
func encodeStatus(st Status) (json.RawMessage, error) {
	fits := func() (json.RawMessage, bool) {
		b, _ := json.Marshal(st) // plain structs of strings and numbers
		return b, mqtt.StatusSize(b) <= statusBudget
	}
	if b, ok := fits(); ok {
		return b, nil
	}
	st.Sessions = append([]SessionState(nil), st.Sessions...)
	for i := range st.Sessions {
		st.Sessions[i].TTFFPhasesMs = nil
	}
	for {
		if b, ok := fits(); ok {
			return b, nil
		}
		if len(st.Sessions) == 0 {
			return nil, errors.New("status: too large even without sessions")
		}
		st.Sessions = st.Sessions[:len(st.Sessions)-1]
		st.SessionsOmitted++
	}
}

// statusKey is what makes a status worth publishing at once: the state,
// privacy, the sessions and their streams, and which sources are fed.
func statusKey(st Status) string {
	var b strings.Builder
	b.WriteString(st.State)
	if st.Privacy {
		b.WriteString("|private")
	}
	for _, s := range st.Sources {
		b.WriteString("|" + s.Stream)
		if s.LastFrameAgeMs < 0 || s.LastFrameAgeMs > 5000 {
			b.WriteString(":stalled")
		}
	}
	if st.Record != nil {
		b.WriteString("|record:" + string(st.Record.State) + ":" + string(st.Record.Rule))
	}
	for _, s := range st.Sessions {
		b.WriteString("|" + s.ID + ":" + s.Stream)
		if s.VideoFrames > 0 {
			b.WriteString(":video")
		}
	}
	return b.String()
}

// runStatus publishes the health on the status topic when it changes and
// every statusInterval, on its own goroutine: a publish waits for the
// broker.
func (d *daemon) runStatus(ctx context.Context) error {
	if d.cfg.MQTT.StatusTopic == "" {
		return nil
	}
	tick := time.NewTicker(statusPoll)
	defer tick.Stop()
	var lastKey string
	var lastAt time.Time
	var lastClient *mqtt.Client
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		c := d.client.Load()
		if c == nil || !c.Connected() {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, statusPoll)
		st := d.status(qctx)
		cancel()
		key := statusKey(st)
		if key == lastKey && c == lastClient && time.Since(lastAt) < statusInterval {
			continue
		}
		body, err := encodeStatus(st)
		if err == nil {
			err = c.PublishHealth(body)
		}
		if err != nil {
			d.log.Warn("status not published", "err", err)
			continue
		}
		lastKey, lastAt, lastClient = key, time.Now(), c
		d.log.Debug("status published", "bytes", len(body), "sessions", len(st.Sessions), "omitted", st.SessionsOmitted)
	}
}
