package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/media/record"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// recordedDaemon runs ipcd recording to a temporary card until the card
// holds at least d of recording, and returns the card's store.
func recordedDaemon(t *testing.T, broker string, d time.Duration) (*testBoard, *record.Store, p2p.TimeRange) {
	t.Helper()
	cfg := testConfig(broker)
	cfg.Record.Path = t.TempDir()
	cfg.Record.SegmentSeconds = 4 // several segments: playback crosses their bounds
	cfg.Board.Socket = filepath.Join(t.TempDir(), "board.sock")
	startDaemon(t, cfg)
	b := dialTestBoard(t, cfg.Board.Socket)
	store, err := record.OpenStore(cfg.Record.Path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var span p2p.TimeRange
	waitFor(t, d+30*time.Second, "the recording", func() bool {
		rs, err := store.Ranges(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if err != nil || len(rs) == 0 {
			return false
		}
		span = p2p.TimeRange{Start: rs[0].Start, End: rs[len(rs)-1].End}
		return span.End.Sub(span.Start) >= d
	})
	return b, store, span
}

// storeVideo returns the recorded video access units of start..end, as
// the store plays them back.
func storeVideo(t *testing.T, s *record.Store, start, end time.Time) []media.Frame {
	t.Helper()
	p, err := s.Open(start, end)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out []media.Frame
	for {
		f, err := p.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Codec.IsVideo() {
			out = append(out, f)
		}
	}
}

// TestPlaybackFromCard: ipcd records the sample stream to its card; a
// playback session of a span that crosses segments gives the recorded
// access units byte for byte, in order, from the keyframe at or before
// start_time; the listing over the control channel is what the card
// holds; a download of a range is a TS file ffprobe decodes with the
// range's duration, and a cancelled one stops.
func TestPlaybackFromCard(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	board, store, span := recordedDaemon(t, broker, 14*time.Second)
	v := newViewer(t, broker)

	// start_time is whole seconds; take a moment between keyframes.
	start := span.Start.Truncate(time.Second).Add(3*time.Second + 500*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	session, days, ranges := checkCardPlayback(t, ctx, v, store, span, start)
	checkCardListing(t, store, span, days, ranges)
	for _, e := range []string{"PlaybackStart", "PlaybackQueryMonth", "PlaybackQueryDay", "PlaybackEnd"} {
		if ev := board.wait(t, e, session); ev.Source != p2p.SourceWebRTC {
			t.Fatalf("board event %+v", ev)
		}
	}
	checkCardSeek(t, ctx, v, board, store, span)

	// Download 5 s: one TS file of about 5 s (from the keyframe before).
	dir := t.TempDir()
	file := filepath.Join(dir, "range.ts")
	dlStart := start.Unix()
	st, n := download(t, v, file, dlStart, dlStart+5, false)
	if st.Type != p2p.DownloadDone || n != st.Bytes || n == 0 {
		t.Fatalf("download: %+v, %d bytes written", st, n)
	}
	dur := probeDuration(t, file)
	if dur < 4.5 || dur > 6.6 {
		t.Fatalf("the downloaded range lasts %.2f s, want about 5 (from the keyframe at or before start)", dur)
	}
	st, _ = download(t, v, filepath.Join(dir, "cancelled.ts"), span.Start.Unix(), span.End.Unix(), true)
	if st.Type != p2p.DownloadCancelled && st.Type != p2p.DownloadDone {
		t.Fatalf("cancelled download: %+v", st)
	}
}

// checkCardPlayback plays 8 s of the card from start: the session must
// give the recorded access units byte for byte, in order, from the
// keyframe at or before start. Its control channel asks for the days of
// the month and the ranges of the day where span starts, whose replies it
// returns.
func checkCardPlayback(t *testing.T, ctx context.Context, v *viewer.Client, store *record.Store, span p2p.TimeRange, start time.Time) (session string, days, ranges p2p.CommandReply) {
	t.Helper()
	seconds := int64(8)
	want := storeVideo(t, store, time.Unix(start.Unix(), 0), time.Unix(start.Unix()+seconds, 0))
	if len(want) < 150 || want[0].Kind != media.KindI {
		t.Fatalf("the card plays back %d frames of 8 s, first %s", len(want), want[0].Kind)
	}
	if key := time.UnixMilli(want[0].Timestamp); key.After(time.Unix(start.Unix(), 0)) || time.Unix(start.Unix(), 0).Sub(key) > 1100*time.Millisecond {
		t.Fatalf("the card's playback starts at %v, not at the keyframe before %v", key, start)
	}
	var mu sync.Mutex
	var got [][]byte
	res, err := v.Watch(ctx, viewer.WatchOptions{
		Replay:      &p2p.Replay{IsReplay: 1, StartTime: start.Unix(), EndTime: start.Unix() + seconds},
		Duration:    time.Duration(seconds)*time.Second + 4*time.Second,
		DataChannel: true,
		OnVideo: func(au []byte, _ bool) {
			mu.Lock()
			got = append(got, au)
			mu.Unlock()
		},
		OnControl: func(ctx context.Context, ctl *viewer.ControlChannel) {
			loc := span.Start.Local()
			days, _ = ctl.Do(ctx, p2p.CmdPlaybackQueryMonth, p2p.PlaybackDate{Year: loc.Year(), Month: int(loc.Month())})
			ranges, _ = ctl.Do(ctx, p2p.CmdPlaybackQueryDay, p2p.PlaybackDate{Year: loc.Year(), Month: int(loc.Month()), Day: loc.Day()})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("playback offer to first frame: %v (%d frames)", res.TTFF.Round(time.Millisecond), len(got))
	if len(got) < len(want) {
		t.Fatalf("received %d access units of %d recorded", len(got), len(want))
	}
	for i, f := range want {
		if !bytes.Equal(got[i], f.Payload) {
			t.Fatalf("access unit %d of %d differs from the card's (%d vs %d bytes)", i, len(want), len(got[i]), len(f.Payload))
		}
	}
	// And the card holds what the source appended.
	checkContiguous(t, sourceAUs(t), got[:len(want)])
	return res.SessionID, days, ranges
}

// checkCardListing checks the replies of the month and day queries
// against what the card holds.
func checkCardListing(t *testing.T, store *record.Store, span p2p.TimeRange, days, ranges p2p.CommandReply) {
	t.Helper()
	loc := span.Start.Local()
	if days.Res != p2p.ResOK || len(days.Days) == 0 || days.Days[0] != loc.Day() {
		t.Fatalf("days: %+v, want %d among them", days, loc.Day())
	}
	dayStart := time.Date(loc.Year(), loc.Month(), loc.Day(), 0, 0, 0, 0, time.Local)
	card, err := store.Ranges(dayStart, dayStart.AddDate(0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	// The card's last range grows while ipcd records: its end is later now.
	if ranges.Res != p2p.ResOK || len(ranges.Ranges) != len(card) {
		t.Fatalf("ranges: %+v, the card has %v", ranges, card)
	}
	for i, r := range ranges.Ranges {
		last := i == len(card)-1
		if !r.Start.Equal(card[i].Start.Truncate(time.Second)) || (!last && !r.End.Equal(card[i].End.Truncate(time.Second))) ||
			(last && r.End.After(card[i].End)) {
			t.Fatalf("range %d: %v..%v, the card has %v..%v", i, r.Start, r.End, card[i].Start, card[i].End)
		}
	}
}

// checkCardSeek seeks inside the window: the video goes on from the card's
// keyframe at or before the time sought, byte for byte.
func checkCardSeek(t *testing.T, ctx context.Context, v *viewer.Client, board *testBoard, store *record.Store, span p2p.TimeRange) {
	t.Helper()
	to := span.Start.Truncate(time.Second).Add(9*time.Second + 500*time.Millisecond)
	after := storeVideo(t, store, time.Unix(to.Unix(), 0), time.Unix(to.Unix()+2, 0))
	var mu sync.Mutex
	var seekRes p2p.CommandReply
	var sought [][]byte
	seeking := false
	res, err := v.Watch(ctx, viewer.WatchOptions{
		Replay:      &p2p.Replay{IsReplay: 1, StartTime: span.Start.Unix() + 1, EndTime: span.Start.Unix() + 13},
		Duration:    6 * time.Second,
		DataChannel: true,
		OnVideo: func(au []byte, _ bool) {
			mu.Lock()
			if seeking {
				sought = append(sought, au)
			}
			mu.Unlock()
		},
		OnControl: func(ctx context.Context, ctl *viewer.ControlChannel) {
			time.Sleep(time.Second) // a second of playback first: a pace, not a sync
			mu.Lock()
			seeking = true
			mu.Unlock()
			seekRes, _ = ctl.Do(ctx, p2p.CmdPlaybackSeek, to.Unix())
		},
	})
	if err != nil || seekRes.Res != p2p.ResOK {
		t.Fatalf("seek session: %v, seek reply %+v", err, seekRes)
	}
	if ev := board.wait(t, "PlaybackSeek", res.SessionID); ev.Value != int(to.Unix()) {
		t.Fatalf("board: %+v, want the time sought %d", ev, to.Unix())
	}
	k := -1
	for i, au := range sought {
		if bytes.Equal(au, after[0].Payload) {
			k = i
			break
		}
	}
	if k < 0 || len(sought)-k < 25 {
		t.Fatalf("after the seek: the card's keyframe at %d not received (%d frames after the request)", after[0].Timestamp, len(sought))
	}
	for i := range 25 {
		if !bytes.Equal(sought[k+i], after[i].Payload) {
			t.Fatalf("frame %d after the seek differs from the card's", i)
		}
	}
}

// download runs one download over the download channel; with cancel, it
// cancels at the first progress or at once.
func download(t *testing.T, v *viewer.Client, path string, start, end int64, cancel bool) (p2p.DownloadStatus, int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, stop := context.WithTimeout(context.Background(), 40*time.Second)
	defer stop()
	var final p2p.DownloadStatus
	var n int64
	var derr error
	_, err = v.Watch(ctx, viewer.WatchOptions{
		OnDownload: func(dctx context.Context, dl *viewer.DownloadChannel) {
			defer stop()
			if derr = dl.Start(f, start, end); derr != nil {
				return
			}
			if cancel {
				derr = dl.Cancel()
			}
			final, derr = dl.Wait(dctx, nil)
			n, _ = dl.Written()
		},
	})
	// The session ends when the download does, live video or not.
	if err != nil && !errors.Is(err, viewer.ErrNoMedia) || derr != nil {
		t.Fatalf("download session: %v, %v", err, derr)
	}
	return final, n
}

// probeDuration decodes path with ffprobe, which must report no error,
// and returns its duration in seconds.
func probeDuration(t *testing.T, path string) float64 {
	t.Helper()
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Skip("ffprobe not installed")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe %s: %v: %s", path, err, stderr.String())
	}
	d, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe duration %q: %v", out, err)
	}
	return d
}

// BenchmarkPlaybackTTFF measures the time from a playback offer to the
// first complete keyframe at the viewer: ipcd recording to a temporary
// card, the offer asking for its first seconds, through the embedded
// broker over loopback. Run with -benchtime 20x.
func BenchmarkPlaybackTTFF(b *testing.B) {
	broker := mqtttest.Embedded(b)
	cfg := testConfig(broker)
	cfg.Record.Path = b.TempDir()
	startDaemon(b, cfg)
	store, err := record.OpenStore(cfg.Record.Path, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	var from time.Time
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, _ := store.Ranges(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if len(rs) > 0 && rs[0].End.Sub(rs[0].Start) >= 3*time.Second {
			from = rs[0].Start
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("nothing recorded within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := context.Background()
	v, err := viewer.NewClient(ctx, viewer.Config{Broker: broker, DevID: testDevID, P2PPassword: testPassword}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	benchTTFF(ctx, b, v, viewer.WatchOptions{Duration: time.Millisecond,
		Replay: &p2p.Replay{IsReplay: 1, StartTime: from.Unix() + 1, EndTime: from.Unix() + 3}})
}
