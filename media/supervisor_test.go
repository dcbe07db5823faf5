package media_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipcd/ipcd/media"
)

// TestSupervisorFeedPathBecomesUsable: a feed source whose path is a regular
// file fails to open; the failure is logged before Started is closed, and
// once the file is gone the source serves the socket.
func TestSupervisorFeedPathBecomesUsable(t *testing.T) {
	checkNoLeak(t)
	path := filepath.Join(t.TempDir(), "feed.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	rings := feedRings(t, media.StreamMain)
	rd := rings[media.StreamMain].NewReader()
	defer rd.Close()
	var logs logBuffer
	src, err := media.NewFeedSource(media.FeedSourceConfig{Path: path}, rings, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	sup := media.NewSupervisor(media.SupervisorConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, logs.logger())
	sup.Add("main", src)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil when ctx ends", err)
		}
	}()

	<-sup.Started()
	line, ok := logLine(logs.String(), "level=ERROR", "media source failed", "source=main", "not a socket")
	if !ok {
		t.Fatalf("no failure logged by the time the sources started:\n%s", logs.String())
	}
	if !strings.Contains(line, "retry_in=") {
		t.Errorf("failure line without the retry delay: %s", line)
	}
	time.Sleep(300 * time.Millisecond) // a few retries, all failing
	if n := countLines(logs.String(), "media source failed"); n < 2 {
		t.Errorf("%d failure lines after 300 ms, want the retries logged too", n)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the feed socket", func() bool {
		fi, err := os.Lstat(path)
		return err == nil && fi.Mode().Perm() == 0o660
	})
	c := dialFeed(t, path)
	key := keyFrame(0, 300)
	send(t, c, feedMsg(t, key))
	expectFrame(t, rd, key)
}

// fakeSource fails its first runs, then runs until ctx ends.
type fakeSource struct {
	fails atomic.Int32
	runs  atomic.Int32
}

func (f *fakeSource) Run(ctx context.Context) error {
	f.runs.Add(1)
	if f.fails.Add(-1) >= 0 {
		return errors.New("device busy")
	}
	<-ctx.Done()
	return nil
}

// TestSupervisorBackoff: failures are retried after a jittered delay that
// doubles up to the cap; a source that ends cleanly is not restarted.
func TestSupervisorBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logBuffer
		sup := media.NewSupervisor(media.SupervisorConfig{MinBackoff: time.Second, MaxBackoff: 4 * time.Second}, logs.logger())
		failing := &fakeSource{}
		failing.fails.Store(5)
		sup.Add("flaky", failing)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sup.Run(ctx) }()
		// Delays drawn from [0.5,1], [1,2], [2,4], [2,4], [2,4] s.
		time.Sleep(490 * time.Millisecond)
		if n := failing.runs.Load(); n != 1 {
			t.Fatalf("%d runs after 490 ms, want 1: the first retry waits at least 500 ms", n)
		}
		time.Sleep(5 * time.Second)
		if n := failing.runs.Load(); n < 3 || n > 5 {
			t.Fatalf("%d runs after 5.5 s, want 3..5", n)
		}
		time.Sleep(11 * time.Second)
		if n := failing.runs.Load(); n != 6 {
			t.Fatalf("%d runs after 16.5 s, want 5 failures and the run that lasts", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := countLines(logs.String(), "media source failed", "source=flaky"); n != 5 {
			t.Errorf("%d failure lines, want 5:\n%s", n, logs.String())
		}
		if !strings.Contains(logs.String(), "failures=5") {
			t.Errorf("the fifth failure is not numbered:\n%s", logs.String())
		}
	})
}
