package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ipcd/ipcd/media/record"
	"github.com/ipcd/ipcd/p2p"
)

// recordings hands the recorder's store to the media stream service:
// playback offers, the listing commands and the download channel read the
// card through it.
type recordings struct{ s *record.Store }

// openRecordings opens the store of record.path, or returns nil (recording
// off, playback refused) when the path is empty.
func openRecordings(path string, log *slog.Logger) (p2p.Recordings, error) {
	if path == "" {
		return nil, nil
	}
	s, err := record.OpenStore(path, log)
	if err != nil {
		return nil, fmt.Errorf("record.path: %w", err)
	}
	return recordings{s}, nil
}

func (r recordings) Days(year int, month time.Month, loc *time.Location) ([]int, error) {
	days, err := r.s.Days(year, month, loc)
	return days, noRecording(err)
}

func (r recordings) Ranges(from, to time.Time) ([]p2p.TimeRange, error) {
	rs, err := r.s.Ranges(from, to)
	if err != nil {
		return nil, noRecording(err)
	}
	out := make([]p2p.TimeRange, len(rs))
	for i, x := range rs {
		out[i] = p2p.TimeRange{Start: x.Start, End: x.End}
	}
	return out, nil
}

func (r recordings) Open(start, end time.Time) (p2p.PlaybackSource, error) {
	p, err := r.s.Open(start, end)
	if err != nil {
		return nil, noRecording(err)
	}
	return playbackSource{p}, nil
}

func (r recordings) Export(ctx context.Context, w io.Writer, start, end time.Time) (int64, error) {
	n, err := r.s.Export(ctx, w, start, end)
	return n, noRecording(err)
}

type playbackSource struct{ *record.Playback }

func (p playbackSource) Seek(t time.Time) error { return noRecording(p.Playback.Seek(t)) }

// noRecording gives the store's "nothing recorded" the service's sentinel,
// keeping the store's words.
func noRecording(err error) error {
	if errors.Is(err, record.ErrNoRecording) && !errors.Is(err, p2p.ErrNoRecording) {
		return fmt.Errorf("%w: %w", p2p.ErrNoRecording, err)
	}
	return err
}
