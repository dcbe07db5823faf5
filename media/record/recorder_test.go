package record

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
	"go.uber.org/goleak"
)

// rig is a camera in a test: rings fed from the sample clip in real time,
// a live viewer reading the video ring like a session, and a recorder.
type rig struct {
	t      *testing.T
	c      clip
	video  *media.Ring
	audio  *media.Ring
	period time.Duration // between video frames

	mu     sync.Mutex
	fed    []media.Frame // video frames appended, with the ring's wall clock
	events []Event

	liveFrames  atomic.Int64
	liveSkipped atomic.Int64
	liveOrder   atomic.Bool // a frame came out of order

	rec    *Recorder
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newRig(t *testing.T, cfg Config, period time.Duration) *rig {
	t.Helper()
	video, err := media.NewRing(media.RingConfig{Stream: media.StreamMain, Codec: media.CodecH264, MaxBytes: 4 << 20, MaxFrames: 250}, nil)
	if err != nil {
		t.Fatal(err)
	}
	audio, err := media.NewRing(media.RingConfig{Stream: media.StreamAudio, Codec: media.CodecPCMU, MaxBytes: 256 << 10, MaxFrames: 250}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &rig{t: t, c: loadClip(t), video: video, audio: audio, period: period}
	g.rec, err = New(cfg, video, audio, func(e Event) {
		g.mu.Lock()
		g.events = append(g.events, e)
		g.mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.rec.retryBase, g.rec.retryCap = 20*time.Millisecond, 100*time.Millisecond
	return g
}

// start feeds the rings, runs the live viewer and the recorder.
func (g *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	live := g.video.NewReader() // before the first frame: it sees every one
	g.wg.Add(3)
	go func() {
		defer g.wg.Done()
		g.feed(ctx)
	}()
	go func() {
		defer g.wg.Done()
		defer live.Close()
		var last uint64
		for {
			f, skipped, err := live.Next(ctx)
			if err != nil {
				return
			}
			g.liveSkipped.Add(int64(skipped))
			if last != 0 && f.Seq != last+1 {
				g.liveOrder.Store(true)
			}
			last = f.Seq
			g.liveFrames.Add(1)
		}
	}()
	go func() {
		defer g.wg.Done()
		if err := g.rec.Run(ctx); err != nil {
			g.t.Errorf("recorder: %v", err)
		}
	}()
}

func (g *rig) feed(ctx context.Context) {
	tick := time.NewTicker(g.period)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now().UnixMilli()
		u := g.c.video[i%len(g.c.video)]
		k := media.KindP
		if u.Key {
			k = media.KindI
		}
		vf := media.Frame{Stream: media.StreamMain, Kind: k, Codec: media.CodecH264, PTS: int64(i) * 40000, Timestamp: now, Payload: u.Payload}
		if err := g.video.Append(vf); err != nil {
			g.t.Errorf("append: %v", err)
			return
		}
		a := g.c.audio[i%len(g.c.audio)]
		_ = g.audio.Append(media.Frame{Stream: media.StreamAudio, Kind: media.KindAudio, Codec: media.CodecPCMU, PTS: int64(i) * 40000, Timestamp: now, Payload: a.Payload})
		g.mu.Lock()
		g.fed = append(g.fed, vf)
		g.mu.Unlock()
	}
}

func (g *rig) stop() {
	g.cancel()
	g.wg.Wait()
}

func (g *rig) waitFor(what string, timeout time.Duration, cond func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			g.t.Fatalf("timed out waiting for %s; status %+v", what, g.rec.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *rig) eventsOf(typ EventType) []Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Event
	for _, e := range g.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// checkLive fails when the live viewer missed a frame the source fed.
func (g *rig) checkLive() {
	g.t.Helper()
	g.mu.Lock()
	fed := len(g.fed)
	g.mu.Unlock()
	if s := g.liveSkipped.Load(); s != 0 || g.liveOrder.Load() {
		g.t.Errorf("live viewer skipped %d frames (out of order: %v)", s, g.liveOrder.Load())
	}
	if got := g.liveFrames.Load(); got < int64(fed)-1 {
		g.t.Errorf("live viewer got %d frames of %d fed", got, fed)
	}
}

func segmentsOn(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && filepath.Ext(p) == segExt {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func testConfig(path string) Config {
	c := DefaultConfig()
	c.Path = path
	c.SegmentSeconds = 2
	c.MinFreeMB = 0
	c.SyncInterval = 200 * time.Millisecond
	return c
}

func TestRecorderPlaybackMatchesSource(t *testing.T) {
	defer goleak.VerifyNone(t)
	root := t.TempDir()
	g := newRig(t, testConfig(root), 10*time.Millisecond)
	g.start()
	g.waitFor("three segments", 20*time.Second, func() bool { return len(segmentsOn(t, root)) >= 3 })
	g.stop()
	g.checkLive()
	if st := g.rec.Status(); st.Skipped != 0 {
		t.Errorf("recorder skipped %d frames on a fast card", st.Skipped)
	}
	for _, p := range segmentsOn(t, root) {
		if n, _ := ffprobe(t, p); n == 0 {
			t.Errorf("%s decodes to no frame", p)
		}
	}
	s, _ := OpenStore(root, nil)
	rs, err := s.Ranges(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil || len(rs) != 1 {
		t.Fatalf("ranges %v %v, want one", rs, err)
	}
	p, err := s.Open(rs[0].Start, rs[0].End)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var got []media.Frame
	for {
		f, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Stream.IsVideo() {
			got = append(got, f)
		}
	}
	g.mu.Lock()
	fed := g.fed
	g.mu.Unlock()
	// The recording is a contiguous run of what was fed, byte for byte.
	first := -1
	for i, f := range fed {
		if f.Timestamp == got[0].Timestamp && bytes.Equal(f.Payload, got[0].Payload) {
			first = i
			break
		}
	}
	if first < 0 || len(got) == 0 {
		t.Fatalf("first recorded frame not among those fed")
	}
	for i, f := range got {
		if first+i >= len(fed) || !bytes.Equal(f.Payload, fed[first+i].Payload) {
			t.Fatalf("recorded frame %d differs from fed frame %d", i, first+i)
		}
	}
	if len(got) < 3*2*25 {
		t.Errorf("%d frames recorded in three segments of 2 s", len(got))
	}
}

// mountTmpfs mounts a small tmpfs for a card that fills; it needs root.
func mountTmpfs(t *testing.T, mb int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(mb)+"m", "ipcd-rec-test-"+strconv.Itoa(os.Getpid()), dir).CombinedOutput()
	if err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func TestRecorderCardFull(t *testing.T) {
	defer goleak.VerifyNone(t)
	root := mountTmpfs(t, 3)
	cfg := testConfig(root)
	cfg.MinFreeMB = 1
	// 4 frames per 40 ms of PTS: 130 kB/s of clip at four times real time.
	g := newRig(t, cfg, 10*time.Millisecond)
	g.start()
	g.waitFor("segments deleted", 60*time.Second, func() bool { return g.rec.Status().Deleted >= 3 })
	before := g.rec.Status()
	// Recording goes on: more segments after the deletions.
	g.waitFor("recording to go on", 20*time.Second, func() bool {
		st := g.rec.Status()
		return st.Deleted >= before.Deleted+2 && st.State == StateRecording
	})
	g.stop()
	g.checkLive()
	if ev := g.eventsOf(EventStopped); len(ev) > 0 {
		t.Logf("stops on the full card: %+v", ev)
	}
	for _, p := range segmentsOn(t, root) {
		if n, _ := ffprobe(t, p); n == 0 {
			t.Errorf("%s decodes to no frame", p)
		}
	}
}

func TestRecorderMaxMB(t *testing.T) {
	defer goleak.VerifyNone(t)
	root := t.TempDir()
	cfg := testConfig(root)
	cfg.MaxMB = 1
	g := newRig(t, cfg, 10*time.Millisecond)
	g.start()
	g.waitFor("segments deleted", 60*time.Second, func() bool { return g.rec.Status().Deleted >= 2 })
	g.stop()
	g.checkLive()
	var total int64
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	// The cap holds for closed segments; the one being written adds at
	// most a segment's worth.
	if total > 1<<20+600<<10 {
		t.Errorf("%d bytes on the card with max_mb 1", total)
	}
}

func TestRecorderCardRemovedAndRestored(t *testing.T) {
	defer goleak.VerifyNone(t)
	parent := t.TempDir()
	root := filepath.Join(parent, "card")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	g := newRig(t, testConfig(root), 10*time.Millisecond)
	g.start()
	g.waitFor("recording", 10*time.Second, func() bool { return len(g.eventsOf(EventStarted)) == 1 && g.rec.Status().State == StateRecording })
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	g.waitFor("stop event", 10*time.Second, func() bool { return len(g.eventsOf(EventStopped)) >= 1 })
	ev := g.eventsOf(EventStopped)[0]
	if ev.Rule != RuleCardRemoved && ev.Rule != RuleCardMissing {
		t.Errorf("stopped for %q, want card_removed or card_missing", ev.Rule)
	}
	g.waitFor("stopped status", 10*time.Second, func() bool {
		st := g.rec.Status()
		return st.State == StateStopped && (st.Rule == RuleCardMissing || st.Rule == RuleCardRemoved)
	})
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	g.waitFor("recording again", 10*time.Second, func() bool {
		return len(g.eventsOf(EventStarted)) == 2 && len(segmentsOn(t, root)) >= 2
	})
	g.stop()
	g.checkLive()
	for _, p := range segmentsOn(t, root) {
		if n, _ := ffprobe(t, p); n == 0 {
			t.Errorf("%s decodes to no frame", p)
		}
	}
}

func TestRecorderReadOnlyCard(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes through the mode bits; a read-only mount needs more.
		root := mountTmpfs(t, 1)
		if out, err := exec.Command("mount", "-o", "remount,ro", root).CombinedOutput(); err != nil {
			t.Skipf("remount ro: %v %s", err, out)
		}
		defer exec.Command("mount", "-o", "remount,rw", root).Run()
		g := newRig(t, testConfig(root), 10*time.Millisecond)
		g.start()
		g.waitFor("stop event", 10*time.Second, func() bool { return len(g.eventsOf(EventStopped)) >= 1 })
		g.stop()
		g.checkLive()
		if ev := g.eventsOf(EventStopped)[0]; ev.Rule != RuleCardReadOnly {
			t.Errorf("stopped for %q (%s), want card_readonly", ev.Rule, ev.Detail)
		}
		return
	}
	t.Skip("needs root for a read-only mount")
}

// gatedFile is a card whose writes wait for a gate, then go at a rate.
type gatedFile struct {
	f       *os.File
	gate    <-chan struct{}
	perByte time.Duration
}

func (g *gatedFile) Write(p []byte) (int, error) {
	<-g.gate
	time.Sleep(time.Duration(len(p)) * g.perByte)
	return g.f.Write(p)
}
func (g *gatedFile) Sync() error  { <-g.gate; return g.f.Sync() }
func (g *gatedFile) Close() error { return g.f.Close() }

func TestSlowCardNeverDelaysLive(t *testing.T) {
	defer goleak.VerifyNone(t)
	root := t.TempDir()
	g := newRig(t, testConfig(root), 5*time.Millisecond)
	gate := make(chan struct{})
	// 1 MB/s, and stalled entirely until the gate opens.
	g.rec.open = func(name string, flag int, perm fs.FileMode) (cardFile, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return &gatedFile{f: f, gate: gate, perByte: time.Second / (1 << 20)}, nil
	}
	g.start()
	// While the card does not move, the live viewer gets every frame.
	g.waitFor("3 s of frames with the card stalled", 20*time.Second, func() bool { return g.liveFrames.Load() >= 600 })
	g.checkLive()
	close(gate)
	g.waitFor("the recorder to skip and go on", 20*time.Second, func() bool {
		return g.rec.Status().Skipped > 0 && len(segmentsOn(t, root)) >= 3
	})
	g.stop()
	g.checkLive()
	for _, p := range segmentsOn(t, root) {
		if n, _ := ffprobe(t, p); n == 0 {
			t.Errorf("%s decodes to no frame", p)
		}
	}
}

// TestRecorderCardFills: with no free-space margin the card fills up
// (ENOSPC); recording stops with card_full, the oldest segment makes room
// and recording goes on, and the live viewer misses nothing.
func TestRecorderCardFills(t *testing.T) {
	defer goleak.VerifyNone(t)
	root := mountTmpfs(t, 2)
	cfg := testConfig(root)
	cfg.MinFreeMB = 0
	g := newRig(t, cfg, 10*time.Millisecond)
	g.start()
	g.waitFor("card_full", 60*time.Second, func() bool {
		for _, e := range g.eventsOf(EventStopped) {
			if e.Rule == RuleCardFull {
				return true
			}
		}
		return false
	})
	g.waitFor("recording to go on", 30*time.Second, func() bool {
		return len(g.eventsOf(EventStarted)) >= 3 && g.rec.Status().Deleted >= 2
	})
	g.stop()
	g.checkLive()
	for _, p := range segmentsOn(t, root) {
		if n, _ := ffprobe(t, p); n == 0 {
			t.Errorf("%s decodes to no frame", p)
		}
	}
}
