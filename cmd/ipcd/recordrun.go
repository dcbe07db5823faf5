package main

import (
	"context"
	"sync"

	"github.com/ipcd/ipcd/board"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/media/record"
	"github.com/ipcd/ipcd/p2p"
)

// buildRecorder makes the recorder of the configured streams, or nil when
// recording is off.
func (d *daemon) buildRecorder(m p2p.Media) (*record.Recorder, error) {
	c := d.cfg.Record
	if c.Path == "" {
		return nil, nil
	}
	video := m.Main
	if c.Video() == media.StreamSub {
		video = m.Sub
	}
	var audio *media.Ring
	if c.Audio() {
		audio = m.Audio
	}
	return record.New(c, video, audio, d.onRecordEvent, d.log)
}

// recording is on: the rings and sources run from Boot, whatever the
// broker and the activation do, so the card records offline too.
func (d *daemon) mediaAtBoot() bool { return d.cfg.Stream.LowPower || d.cfg.Record.Path != "" }

// onRecordEvent tells the board that recording started or stopped, and why.
func (d *daemon) onRecordEvent(e record.Event) {
	be := board.Event{T: e.Time.UnixMilli(), Event: board.EventRecordStart, Detail: e.Detail}
	if e.Type == record.EventStopped {
		be.Event, be.Detail = board.EventRecordStop, string(e.Rule)+": "+e.Detail
	}
	d.publishBoard(be)
}

// runRecorder runs the recorder beside the sources; it returns when ctx
// ends.
func runRecorder(ctx context.Context, wg *sync.WaitGroup, rec *record.Recorder) {
	if rec == nil {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = rec.Run(ctx) // returns nil: card problems are retried inside
	}()
}
