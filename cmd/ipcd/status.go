package main

import (
	"context"

	"github.com/ipcd/ipcd/p2p"
)

// Status is what the board's status command returns.
type Status struct {
	State    string         `json:"state"`
	Privacy  bool           `json:"privacy"`
	Sessions []SessionState `json:"sessions"`
}

// SessionState is one session in a Status.
type SessionState struct {
	ID            string `json:"id"`
	Stream        string `json:"stream"`
	VideoFrames   uint64 `json:"video_frames"`
	AudioFrames   uint64 `json:"audio_frames"`
	Bytes         uint64 `json:"bytes"`
	Skipped       uint64 `json:"skipped"`
	RTTMs         int64  `json:"rtt_ms"`
	CandidateType string `json:"candidate,omitempty"`
	TTFFMs        int64  `json:"ttff_ms"`
}

func (d *daemon) status(ctx context.Context) Status {
	st := Status{State: d.machine.State().String(), Privacy: d.privacy.Load(), Sessions: []SessionState{}}
	if svc := d.running.Load(); svc != nil {
		for _, s := range svc.Sessions(ctx) {
			st.Sessions = append(st.Sessions, sessionState(s))
		}
	}
	return st
}

func sessionState(s p2p.SessionStats) SessionState {
	return SessionState{
		ID: s.ID, Stream: s.Stream.String(),
		VideoFrames: s.VideoFrames, AudioFrames: s.AudioFrames, Bytes: s.VideoBytes + s.AudioBytes,
		Skipped: s.Skipped, RTTMs: s.RTT.Milliseconds(), CandidateType: s.CandidateType, TTFFMs: s.TTFF.Milliseconds(),
	}
}
