package media_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

func TestFileSinkAppends(t *testing.T) {
	checkNoLeak(t)
	path := filepath.Join(t.TempDir(), "speaker.pcmu")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := media.NewFileSink(media.FileSinkConfig{Path: path}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{[]byte("ab"), []byte("cde")} {
		if n, err := s.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if _, err := s.Write(make([]byte, media.MaxSpeakerWrite+1)); !errors.Is(err, media.ErrSpeakerWriteTooLarge) {
		t.Fatalf("oversized Write: %v, want media.ErrSpeakerWriteTooLarge", err)
	}
	// Close writes what is queued.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v, want os.ErrClosed", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, []byte("oldabcde")) {
		t.Fatalf("file = %q, want %q", got, "oldabcde")
	}
	if st := s.Stats(); st.Written != 5 || st.Dropped != 0 {
		t.Fatalf("stats %+v, want 5 written, 0 dropped", st)
	}
}

func TestFileSinkBadPath(t *testing.T) {
	checkNoLeak(t)
	if _, err := media.NewFileSink(media.FileSinkConfig{Path: filepath.Join(t.TempDir(), "missing", "speaker.pcmu")}, discardLogger()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want os.ErrNotExist", err)
	}
}

// fifo makes a FIFO and opens its read end without blocking; the pipe is
// shrunk to one page so that a stopped reader stalls the writer quickly.
func fifo(t *testing.T) (string, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "speaker.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r := openReader(t, path)
	return path, r
}

func openReader(t *testing.T, path string) *os.File {
	t.Helper()
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, r.Fd(), syscall.F_SETPIPE_SZ, 4096); errno != 0 {
		t.Fatalf("F_SETPIPE_SZ: %v", errno)
	}
	return r
}

// readFor reads r until want bytes arrived or d passed, and returns them.
func readFor(t *testing.T, r *os.File, want int, d time.Duration) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, 8192)
	deadline := time.Now().Add(d)
	for len(got) < want && time.Now().Before(deadline) {
		_ = r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, _ := r.Read(buf)
		got = append(got, buf[:n]...)
	}
	return got
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFileSinkFIFOStalled: with the FIFO's reader stopped, Write keeps
// returning at once, audio is dropped and counted, the stall is logged
// once and summarized; when the reader resumes, new audio arrives again.
func TestFileSinkFIFOStalled(t *testing.T) {
	checkNoLeak(t)
	path, r := fifo(t)
	var log logBuffer
	s, err := media.NewFileSink(media.FileSinkConfig{Path: path, Queue: 4, WriteTimeout: 20 * time.Millisecond, SummaryInterval: 50 * time.Millisecond}, log.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	chunk := bytes.Repeat([]byte{0x55}, 320)
	var full, sent int
	// Audio keeps coming, faster than real time, into a one-page pipe
	// whose reader reads nothing.
	deadline := time.Now().Add(5 * time.Second)
	for !s.Stats().Stalled || full == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no stall within 5 s: %d writes, %d refused, %+v", sent, full, s.Stats())
		}
		sent++
		if _, err := s.Write(chunk); errors.Is(err, media.ErrSpeakerFull) {
			full++
		} else if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if full == 0 {
		t.Fatal("no Write reported a full queue while the reader was stopped")
	}
	waitUntil(t, 5*time.Second, "the drop summary", func() bool { return strings.Contains(log.String(), "speaker dropped audio") })
	st := s.Stats()
	if st.Stalls != 1 || st.DroppedFull == 0 || st.Written > 4096 || st.Dropped+st.Written > uint64(sent*320) {
		t.Fatalf("while stalled: %+v", st)
	}
	if n := strings.Count(log.String(), "speaker sink stalled"); n != 1 {
		t.Fatalf("%d stall lines, want 1:\n%s", n, log.String())
	}

	// The reader resumes: it drains the pipe, and new audio follows.
	old := readFor(t, r, int(st.Written), 5*time.Second)
	if !bytes.Equal(old, bytes.Repeat([]byte{0x55}, len(old))) || len(old) != int(st.Written) {
		t.Fatalf("drained %d bytes, written %d", len(old), st.Written)
	}
	fresh := bytes.Repeat([]byte{0xaa}, 320)
	var got []byte
	deadline = time.Now().Add(5 * time.Second)
	for !bytes.Contains(got, fresh) && time.Now().Before(deadline) {
		_, _ = s.Write(fresh)
		got = append(got, readFor(t, r, 320, 100*time.Millisecond)...)
	}
	if !bytes.Contains(got, fresh) {
		t.Fatalf("no new audio after the reader resumed: %d bytes read", len(got))
	}
	waitUntil(t, 5*time.Second, "the resume line", func() bool { return strings.Contains(log.String(), "speaker sink resumed") })
	if s.Stats().Stalled {
		t.Fatal("still stalled after a write went through")
	}
}

// TestFileSinkFIFOReaders: a FIFO without a reader does not block the
// start; audio is dropped until a reader opens it, and after that reader
// closes, a new one gets the audio again.
func TestFileSinkFIFOReaders(t *testing.T) {
	checkNoLeak(t)
	path := filepath.Join(t.TempDir(), "speaker.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := media.NewFileSink(media.FileSinkConfig{Path: path, WriteTimeout: 20 * time.Millisecond}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chunk := []byte("0123456789")
	if _, err := s.Write(chunk); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the drop", func() bool { return s.Stats().DroppedNoReader == uint64(len(chunk)) })

	for round := range 2 {
		r := openReader(t, path)
		want := []byte(strings.Repeat(string(rune('a'+round)), 10))
		if _, err := s.Write(want); err != nil {
			t.Fatal(err)
		}
		if got := readFor(t, r, len(want), 5*time.Second); !bytes.Equal(got, want) {
			t.Fatalf("round %d: read %q, want %q", round, got, want)
		}
		_ = r.Close()
		// The next write finds the reader gone and drops.
		before := s.Stats().DroppedNoReader
		if _, err := s.Write(chunk); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 5*time.Second, "the drop after the reader closed", func() bool { return s.Stats().DroppedNoReader > before })
	}
}
