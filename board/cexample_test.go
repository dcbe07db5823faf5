package board

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCExample builds board/feed/board_example.c against ipcd_board.h with
// warnings as errors and runs it on a real socket: it sends a privacy
// command, gets the reply, and prints the events it reads.
func TestCExample(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("gcc is required in CI to check the board socket's C side: %v", err)
		}
		t.Skipf("gcc not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "board_example")
	if b, err := exec.Command(gcc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic",
		"-o", bin, "feed/board_example.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
	var privacy atomic.Bool
	s, _ := startServer(t, Config{}, Handlers{Privacy: func(on bool) error { privacy.Store(on); return nil }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, s.cfg.Socket, "privacy", "on", "-n", "2")
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !privacy.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the privacy command never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	s.Publish(Event{Event: "LiveVideoStart", Source: "WEBRTC", Session: "ab12"})
	s.Publish(Event{Event: EventSessionStop, Source: "WEBRTC", Session: "ab12", Value: 9, Detail: "session closed"})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("board_example: %v\n%s", err, out.String())
	}
	// The reply and the events travel on the same socket from different
	// goroutines of the server: the reply may come before, among or after
	// them (then the example has exited at its second event and never
	// prints it); the events keep their order.
	var events []string
	replies := 0
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if line == "reply 0" {
			replies++
			continue
		}
		events = append(events, line)
	}
	if want := []string{"LiveVideoStart ab12 0", "SessionStop ab12 9"}; replies > 1 || strings.Join(events, "|") != strings.Join(want, "|") {
		t.Fatalf("board_example printed %q, want at most one \"reply 0\" and the events %q in order", out.String(), want)
	}
}
