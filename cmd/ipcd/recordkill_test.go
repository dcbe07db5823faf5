package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/media/record"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// TestRecordKill kills a recording ipcd process with SIGKILL at random
// moments (100 with TEST_RECORD_KILL=1, as `make test-record` runs it; 8
// otherwise). After the last one, every segment on the card must decode with
// ffprobe without an error, and each kill may have lost at most the frames
// of the second before it: the recording of every run is an unbroken run of
// the clip the file source fed, ending at most 1 s before the kill.
func TestRecordKill(t *testing.T) {
	cycles := 8
	if os.Getenv("TEST_RECORD_KILL") != "" {
		cycles = 100
	}
	if _, err := exec.LookPath("ffprobe"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffprobe is required under CI")
		}
		t.Skip("ffprobe not installed")
	}
	dir := t.TempDir()
	bin := buildIPCD(t, dir)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	card := filepath.Join(dir, "card")
	config := writeRecordKillConfig(t, dir, root, card)

	var runs []killRun
	for range cycles {
		p := startProcess(t, bin, config, nil, "recording started", 20*time.Second)
		at := time.Now()
		time.Sleep(100*time.Millisecond + rand.N(1200*time.Millisecond))
		killed := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.cmd.Wait()
		<-p.logDone
		runs = append(runs, killRun{at, killed})
	}
	// One run stopped cleanly closes what the last kill left open.
	p := startProcess(t, bin, config, nil, "recording started", 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("ipcd after SIGTERM: %v", err)
	}
	<-p.logDone

	segs := probeSegments(t, card, cycles)
	worst := checkKillRuns(t, root, card, runs)
	t.Logf("%d kills, %d segments decoded; frames lost per kill: at most %d (25 fps)", len(runs), len(segs), worst)
}

// killRun is one ipcd process of TestRecordKill: when it was recording and
// when it was killed.
type killRun struct{ started, killed time.Time }

// writeRecordKillConfig writes the configuration of a daemon that records
// the file sources of the repository at root onto card, and returns its
// path.
func writeRecordKillConfig(t *testing.T, dir, root, card string) string {
	t.Helper()
	broker := mqtttest.Embedded(t)
	if err := os.Mkdir(card, 0o755); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "ipcd.yaml")
	yaml := fmt.Sprintf(`log: {level: info}
device: {uuid: %s, authkey: %s, store: %s}
mqtt: {brokers: [%q], client_id: ipcd-recordkill, status_topic: ""}
time: {source: system}
stream: {network_interfaces: [lo], loopback_candidates: true}
media:
  sources:
    main: {type: file, path: %s, fps: 25, loop: true}
    audio: {type: file, path: %s, codec: pcmu}
record: {path: %s, segment_seconds: 2, min_free_mb: 0}
`, testUUID, testAuthKey, filepath.Join(dir, "state.json"), broker,
		filepath.Join(root, "configs/media/main.h264"), filepath.Join(root, "configs/media/audio.pcmu"), card)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return config
}

// probeSegments returns the segments on the card after cycles runs, each
// of which must decode with ffprobe without an error.
func probeSegments(t *testing.T, card string, cycles int) []string {
	t.Helper()
	var segs []string
	_ = filepath.WalkDir(card, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ts") {
			segs = append(segs, p)
		}
		return nil
	})
	if len(segs) < cycles/2 {
		t.Fatalf("%d segments after %d runs", len(segs), cycles)
	}
	for _, p := range segs {
		out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
			"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", p).CombinedOutput()
		// One line per stream, listed again under the program.
		lines := strings.Fields(string(out))
		bad := err != nil || len(lines) == 0
		for _, l := range lines {
			bad = bad || l == "0" || strings.Trim(l, "0123456789") != ""
		}
		if bad {
			t.Errorf("ffprobe %s: %v: %s", filepath.Base(p), err, out)
		}
	}
	return segs
}

// checkKillRuns compares what was recorded, in order, against what the
// source fed: each run must be an unbroken run of the clip ending at most
// one second before its kill. It returns the most frames a kill lost.
func checkKillRuns(t *testing.T, root, card string, runs []killRun) (worst int) {
	t.Helper()
	clip, err := media.ReadAccessUnits(filepath.Join(root, "configs/media/main.h264"))
	if err != nil {
		t.Fatal(err)
	}
	perRun, last := recordedRuns(t, card, clip, runs)
	for k, r := range runs {
		for i := 1; i < len(perRun[k]); i++ {
			if !follows(perRun[k][i-1], perRun[k][i], len(clip)) {
				t.Errorf("run %d: frame %d does not follow the one before: frames lost inside the recording", k, i)
				break
			}
		}
		from := r.started.UnixMilli()
		if last[k] != 0 {
			from = last[k]
		}
		lost := int((r.killed.UnixMilli() - from) / 40)
		worst = max(worst, lost)
		if lost > 25 {
			t.Errorf("run %d: %d frames (%d ms) before the kill were lost; at most one second's 25 may be", k, lost, r.killed.UnixMilli()-from)
		}
	}
	return worst
}

// recordedRuns reads the card's video back and sorts it by run: for each
// run, the clip indexes of every frame it recorded, and the timestamp of
// its last one.
func recordedRuns(t *testing.T, card string, clip []media.AccessUnit, runs []killRun) (perRun [][][]int, last []int64) {
	t.Helper()
	index := map[[32]byte][]int{}
	for i, u := range clip {
		h := sha256.Sum256(u.Payload)
		index[h] = append(index[h], i)
	}
	store, err := record.OpenStore(card, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := store.Open(runs[0].started.Add(-time.Minute), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	perRun = make([][][]int, len(runs))
	last = make([]int64, len(runs))
	for {
		f, err := p.Next()
		if errors.Is(err, io.EOF) {
			return perRun, last
		}
		if err != nil {
			t.Fatal(err)
		}
		if !f.Stream.IsVideo() {
			continue
		}
		// A run's frames come after the kill of the one before.
		k := -1
		for i, r := range runs {
			if (i == 0 || f.Timestamp > runs[i-1].killed.UnixMilli()) && f.Timestamp <= r.killed.UnixMilli() {
				k = i
			}
		}
		if k < 0 {
			continue // the closing run
		}
		idx, ok := index[sha256.Sum256(f.Payload)]
		if !ok {
			t.Fatalf("run %d: a recorded frame the source never fed", k)
		}
		perRun[k] = append(perRun[k], idx)
		last[k] = f.Timestamp
	}
}

// follows reports whether a frame with clip indexes b comes right after one
// with indexes a, looping.
func follows(a, b []int, n int) bool {
	for _, i := range a {
		for _, j := range b {
			if (i+1)%n == j {
				return true
			}
		}
	}
	return false
}
