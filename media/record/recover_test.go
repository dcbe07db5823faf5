package record

import (
	"log/slog"
	"os"
	"testing"

	"github.com/ipcd/ipcd/media"
)

// interrupted writes frames into a segment, syncs after syncAfter of them,
// writes the rest (flushed to the file, not synced) and leaves the segment
// open, as a kill does.
func interrupted(t *testing.T, root string, frames []media.Frame, syncAfter ...int) *segWriter {
	t.Helper()
	w, err := createSegment(osOpen, root, frames[0], media.CodecPCMU)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		if _, err := w.write(f); err != nil {
			t.Fatal(err)
		}
		for _, n := range syncAfter {
			if i+1 == n {
				if err := w.sync(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := w.mux.flush(); err != nil {
		t.Fatal(err)
	}
	// A keyframe record written but not followed by a sync.
	var b [recordSize]byte
	indexRecord{Type: recKey, Offset: w.synced + tsPacketSize, Wall: frames[len(frames)-1].Timestamp}.marshal(b[:])
	_, _ = w.idx.Write(b[:])
	w.abandon()
	return w
}

func TestRecoveryCutsToLastSync(t *testing.T) {
	c := loadClip(t)
	root := mustMkdir(t)
	frames := c.frames(t0, 4)
	w := interrupted(t, root, frames, 100, 150) // syncs at 2 s and 3 s of frames
	before := fileSize(w.path() + segExt)
	inv, err := scanCard(root, slog.New(slog.DiscardHandler))
	if err != nil || len(inv) != 1 {
		t.Fatalf("scan: %v %v", inv, err)
	}
	ix, err := readIndex(w.path())
	if err != nil || !ix.closed || ix.synced.Offset != w.synced {
		t.Fatalf("index after recovery: closed %v at %d (%v), want closed at the last sync %d", ix.closed, ix.synced.Offset, err, w.synced)
	}
	if got := fileSize(w.path() + segExt); got != w.synced || got >= before {
		t.Fatalf("segment is %d bytes after recovery, want %d (was %d)", got, w.synced, before)
	}
	if n, _ := ffprobe(t, w.path()+segExt); n != 75 { // frames 0..149 interleaved: 75 video
		t.Fatalf("%d frames decode after recovery, want 75", n)
	}
	// Closed: a second scan changes nothing.
	if _, err := scanCard(root, slog.New(slog.DiscardHandler)); err != nil || fileSize(w.path()+segExt) != w.synced {
		t.Fatalf("second scan: %v", err)
	}
}

func TestRecoveryCardLostSyncedBytes(t *testing.T) {
	c := loadClip(t)
	root := mustMkdir(t)
	w := interrupted(t, root, c.frames(t0, 4), 100, 150)
	// The card acknowledged the second sync without keeping its data.
	if err := os.Truncate(w.path()+segExt, w.synced-10*tsPacketSize); err != nil {
		t.Fatal(err)
	}
	if _, err := scanCard(root, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	ix, err := readIndex(w.path())
	if err != nil || !ix.closed || ix.synced.Offset >= w.synced || ix.synced.Offset == 0 {
		t.Fatalf("after recovery: closed %v at %d (%v); want closed at the first sync, before %d", ix.closed, ix.synced.Offset, err, w.synced)
	}
	if n, _ := ffprobe(t, w.path()+segExt); n != 50 {
		t.Fatalf("%d frames decode, want the 50 of the first sync", n)
	}
}

func TestRecoveryRemovesUnsynced(t *testing.T) {
	c := loadClip(t)
	root := mustMkdir(t)
	w := interrupted(t, root, c.frames(t0, 1))
	if inv, err := scanCard(root, slog.New(slog.DiscardHandler)); err != nil || len(inv) != 0 {
		t.Fatalf("scan: %v %v", inv, err)
	}
	if _, err := os.Stat(w.path() + segExt); !os.IsNotExist(err) {
		t.Fatalf("a segment with nothing synced is still there: %v", err)
	}
}

func TestSegmentNameTaken(t *testing.T) {
	c := loadClip(t)
	root := mustMkdir(t)
	f := c.frames(t0, 1)[0]
	w1, err := createSegment(osOpen, root, f, media.CodecPCMU)
	if err != nil {
		t.Fatal(err)
	}
	w1.abandon()
	// The clock stepped back: the same start again.
	w2, err := createSegment(osOpen, root, f, media.CodecPCMU)
	if err != nil {
		t.Fatal(err)
	}
	w2.abandon()
	if w1.stem == w2.stem {
		t.Fatalf("second segment named %s like the first", w2.stem)
	}
	if w2.stem != "235930-001" {
		t.Fatalf("second segment %s, want 235930-001", w2.stem)
	}
}
