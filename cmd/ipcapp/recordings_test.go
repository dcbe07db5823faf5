package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/media/record"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// cardRecordings is the recorder's store as the media stream service takes
// it (cmd/ipcd wires the same).
type cardRecordings struct{ s *record.Store }

func (c cardRecordings) Days(y int, m time.Month, loc *time.Location) ([]int, error) {
	return c.s.Days(y, m, loc)
}

func (c cardRecordings) Ranges(from, to time.Time) ([]p2p.TimeRange, error) {
	rs, err := c.s.Ranges(from, to)
	out := make([]p2p.TimeRange, len(rs))
	for i, r := range rs {
		out[i] = p2p.TimeRange{Start: r.Start, End: r.End}
	}
	return out, err
}

func (c cardRecordings) Open(start, end time.Time) (p2p.PlaybackSource, error) {
	p, err := c.s.Open(start, end)
	if errors.Is(err, record.ErrNoRecording) {
		return nil, fmt.Errorf("%w: %w", p2p.ErrNoRecording, err)
	}
	return p, err
}

func (c cardRecordings) Export(ctx context.Context, w io.Writer, start, end time.Time) (int64, error) {
	return c.s.Export(ctx, w, start, end)
}

// recordCard records the sample clip with the real recorder for d and
// returns the card's store.
func recordCard(t *testing.T, d time.Duration) *record.Store {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	rings := map[string]*media.Ring{}
	for _, path := range []string{"main.h264", "audio.pcmu"} {
		st := media.StreamMain
		if path == "audio.pcmu" {
			st = media.StreamAudio
		}
		r, err := media.NewRing(media.RingConfig{Stream: st, Codec: codecOfFile(t, path), MaxBytes: 4 << 20, MaxFrames: 500}, log)
		if err != nil {
			t.Fatal(err)
		}
		src, err := media.NewFileSource(media.FileSourceConfig{Path: mediaDir + path, FPS: 25, Loop: true}, r, log)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = src.Run(ctx) })
		rings[path] = r
	}
	cfg := record.DefaultConfig()
	cfg.Path, cfg.SegmentSeconds = dir, 2
	rec, err := record.New(cfg, rings["main.h264"], rings["audio.pcmu"], nil, log)
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = rec.Run(ctx) })
	store, err := record.OpenStore(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(d + 20*time.Second)
	for {
		rs, _ := store.Ranges(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if len(rs) > 0 && rs[len(rs)-1].End.Sub(rs[0].Start) >= d {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recorded %v, want %v", rs, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	return store
}

// TestRecordingsCommands runs ipcapp recordings, playback and download
// against the media stream service over a card the recorder wrote.
func TestRecordingsCommands(t *testing.T) {
	store := recordCard(t, 7*time.Second)
	broker := mqtttest.Embedded(t)
	startDeviceWith(t, broker, "main.h264", "", p2p.Config{Recordings: cardRecordings{store}})
	rs, err := store.Ranges(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil || len(rs) == 0 {
		t.Fatalf("ranges %v %v", rs, err)
	}
	begin := rs[0].Start
	device := []string{"-broker", broker, "-dev-id", testDevID, "-p2p-password", testPassword}
	cmd := func(args ...string) (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		code := run(ctx, append(args, device...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	code, out, errOut := cmd("recordings", "-day", begin.Local().Format("2006-01-02"))
	if code != exitOK || !strings.Contains(out, fmt.Sprintf("(start %d ", begin.Unix())) {
		t.Fatalf("recordings: exit %d, stdout %q, stderr %q; the card starts at %d", code, out, errOut, begin.Unix())
	}
	code, out, _ = cmd("recordings", "-month", begin.Local().Format("2006-01"))
	if code != exitOK || !strings.Contains(out, begin.Local().Format("2006-01-02")) {
		t.Fatalf("recordings -month: exit %d, stdout %q", code, out)
	}

	dir := t.TempDir()
	start := begin.Unix() + 2
	video := filepath.Join(dir, "pb.h264")
	code, _, errOut = cmd("playback", "-start", strconv.FormatInt(start, 10), "-seconds", "3", "-out", video)
	if code != exitOK {
		t.Fatalf("playback: exit %d: %s", code, errOut)
	}
	got, err := os.ReadFile(video)
	if err != nil {
		t.Fatal(err)
	}
	p, err := store.Open(time.Unix(start, 0), time.Unix(start+3, 0))
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for {
		f, err := p.Next()
		if err != nil {
			break
		}
		if f.Codec.IsVideo() {
			want = append(want, f.Payload...)
		}
	}
	_ = p.Close()
	if len(got) < len(want)/2 || !bytes.Equal(got, want[:len(got)]) {
		t.Fatalf("playback wrote %d bytes, not a prefix of the card's %d", len(got), len(want))
	}

	ts := filepath.Join(dir, "range.ts")
	code, out, errOut = cmd("download", "-quiet", "-start", strconv.FormatInt(start, 10), "-end", strconv.FormatInt(start+3, 10), "-out", ts)
	if code != exitOK || !strings.Contains(out, "bytes in") {
		t.Fatalf("download: exit %d, %q %q", code, out, errOut)
	}
	if ffprobe, err := exec.LookPath("ffprobe"); err == nil {
		o, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", ts).CombinedOutput()
		d, perr := strconv.ParseFloat(strings.TrimSpace(string(o)), 64)
		if err != nil || perr != nil || d < 2.5 || d > 4.1 {
			t.Fatalf("ffprobe of the download: %v %q", err, o)
		}
	}

	// Nothing recorded then: playback and download are refused.
	if code, _, errOut = cmd("playback", "-start", strconv.FormatInt(begin.Unix()-3600, 10), "-seconds", "3"); code != exitRefused || !strings.Contains(errOut, "close_reason 15") {
		t.Fatalf("playback of nothing: exit %d: %s", code, errOut)
	}
	if code, _, errOut = cmd("download", "-start", strconv.FormatInt(begin.Unix()-3600, 10), "-end", strconv.FormatInt(begin.Unix()-3000, 10), "-out", filepath.Join(dir, "none.ts")); code != exitRefused || !strings.Contains(errOut, "res 7") {
		t.Fatalf("download of nothing: exit %d: %s", code, errOut)
	}
}

func TestRecordingsUsage(t *testing.T) {
	dead := "tcp://127.0.0.1:" + strconv.Itoa(mqtttest.FreePort(t))
	device := []string{"-broker", dead, "-dev-id", "d", "-p2p-password", "ad12ab34"}
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"recordings"}, "one of -day or -month"},
		{[]string{"recordings", "-day", "2026-13-01"}, "-day"},
		{[]string{"playback"}, "-start is required"},
		{[]string{"playback", "-start", "1796083200", "-speed", "3"}, "-speed must be"},
		{[]string{"download", "-start", "1796083200", "-end", "1796083100", "-out", "x.ts"}, "after -start"},
		{[]string{"download", "-start", "1796083200", "-end", "1796083300"}, "-out"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append(tc.args, device...), &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, stderr.String())
		}
	}
}
