package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/board"
	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// TestRecordCardEvents: a card that is missing, then inserted, then
// removed and put back is a log line with its rule, a RecordStop/RecordStart
// event on the board socket and the record field of the status; recording
// resumes on its own, and the oldest segments go when the recordings reach
// max_mb. A live session watching all along loses no frame.
func TestRecordCardEvents(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	cfg := boardConfig(t, broker)
	card := filepath.Join(t.TempDir(), "card")
	cfg.Record.Path = card
	cfg.Record.SegmentSeconds = 2
	cfg.Record.MinFreeMB = 0
	cfg.Record.MaxMB = 1
	rd := startDaemon(t, cfg)
	b := dialTestBoard(t, cfg.Board.Socket)
	w := startWatch(t, newViewer(t, broker), viewer.WatchOptions{})
	rd.log.waitLog(t, 10*time.Second, "recording stopped", "rule=card_missing")
	recordStatus := func() map[string]any {
		r := b.cmd(t, `{"cmd":"status","req":1}`)
		st, _ := r.Status.(map[string]any)
		rec, _ := st["record"].(map[string]any)
		return rec
	}
	if rec := recordStatus(); rec["state"] != "stopped" || rec["rule"] != "card_missing" {
		t.Fatalf("status record %+v, want stopped for card_missing", rec)
	}

	if err := os.Mkdir(card, 0o755); err != nil {
		t.Fatal(err)
	}
	b.wait(t, board.EventRecordStart, "")
	waitFor(t, 10*time.Second, "recording status", func() bool { return recordStatus()["state"] == "recording" })

	if err := os.RemoveAll(card); err != nil {
		t.Fatal(err)
	}
	e := b.wait(t, board.EventRecordStop, "")
	if !strings.HasPrefix(e.Detail, "card_removed: ") && !strings.HasPrefix(e.Detail, "card_missing: ") {
		t.Errorf("RecordStop detail %q, want the rule first", e.Detail)
	}
	rd.log.waitLog(t, 5*time.Second, "recording stopped", "rule=card_")

	// Back in: recording resumes, and at 1 MB the oldest segment goes.
	if err := os.Mkdir(card, 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "recording again", func() bool {
		n := 0
		b.mu.Lock()
		for _, e := range b.events {
			if e.Event == board.EventRecordStart {
				n++
			}
		}
		b.mu.Unlock()
		return n >= 2
	})
	waitFor(t, 30*time.Second, "a segment deleted for max_mb", func() bool {
		d, _ := recordStatus()["deleted"].(float64)
		return d >= 1
	})
	rd.log.waitLog(t, time.Second, "oldest segment deleted", "rule=max_mb")
	if rec := recordStatus(); rec["state"] != "recording" {
		t.Errorf("after the deletion: %+v", rec)
	}

	w.stop()
	if w.err != nil {
		t.Fatal(w.err)
	}
	got, _ := w.fl.snapshot()
	checkContiguous(t, sourceAUs(t), got)
	if w.res.Skipped != 0 {
		t.Fatalf("live session skipped %d access units", w.res.Skipped)
	}
	if len(got) < 25*5 {
		t.Fatalf("live session got %d frames", len(got))
	}
}

func TestRecordConfig(t *testing.T) {
	cfg := testConfig("tcp://127.0.0.1:1883")
	cfg.Media.Sources.Main.Path = "../../configs/media/main.h264"
	cfg.Record.Path = t.TempDir()
	cfg.Record.Streams = []media.Stream{media.StreamMain, media.StreamSub}
	cfg.Record.SegmentSeconds = 1
	err := cfg.Validate()
	for _, want := range []string{"record.streams", "record.segment_seconds"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validate: %v, want a problem with %s", err, want)
		}
	}
	// Streams by name, from the environment too.
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "device: {uuid: u, authkey: k}\ntime: {source: system}\nmedia: {sources: {main: {path: ../../configs/media/main.h264}, audio: {path: ../../configs/media/audio.pcmu}}}\nrecord: {path: " + t.TempDir() + ", streams: [main]}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(path, nil)
	if err != nil || len(got.Record.Streams) != 1 || got.Record.Streams[0] != media.StreamMain {
		t.Fatalf("record.streams [main]: %v %v", got.Record.Streams, err)
	}
	got, err = LoadConfig(path, []string{"IPCD_RECORD_STREAMS=main,audio", "IPCD_RECORD_SYNC_INTERVAL=1s"})
	if err != nil || len(got.Record.Streams) != 2 || got.Record.SyncInterval != time.Second {
		t.Fatalf("env: %+v %v", got.Record, err)
	}
	if _, err := LoadConfig(path, []string{"IPCD_RECORD_STREAMS=main,speaker"}); err == nil {
		t.Fatal("an unknown stream name was accepted")
	}
}
