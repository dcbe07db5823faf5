package media_test

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Synthetic NAL units (without start code): only the header byte and the
// first slice-header bit matter to the parser.
const (
	nalSPS    = "\x67\x42\xc0\x1e\xd9\x00\xa0"
	nalSPS2   = "\x67\x42\xc0\x1f\xd9\x01\x40"
	nalPPS    = "\x68\xcb\x8c\xb2"
	nalSEI    = "\x06\x05\x01\x80"
	nalAUD    = "\x09\xf0"
	nalFiller = "\x0c\xff\xff\x80"
	nalIDR    = "\x65\x88\x84\x21\xa0" // first_mb_in_slice = 0
	nalIDR2   = "\x65\x44\x84\x21\xa0" // a further slice of the same picture
	nalP      = "\x41\x9a\x02\x03\x04" // first_mb_in_slice = 0
	nalP2     = "\x41\x4a\x05\x06\x07" // a further slice of the same picture
	nalH5VPS  = "\x40\x01\x0c\x01\xff\xff"
	nalH5SPS  = "\x42\x01\x01\x01\x60"
	nalH5PPS  = "\x44\x01\xc1\x72"
	nalH5IDR  = "\x26\x01\xaf\x06"
)

// annexB joins NAL units with 4-byte start codes, the normalised form.
func annexB(nals ...string) []byte {
	var b []byte
	for _, n := range nals {
		b = append(b, 0, 0, 0, 1)
		b = append(b, n...)
	}
	return b
}

// annexB3 joins NAL units with 3-byte start codes.
func annexB3(nals ...string) []byte {
	var b []byte
	for _, n := range nals {
		b = append(b, 0, 0, 1)
		b = append(b, n...)
	}
	return b
}

// withSize pads a NAL unit to n bytes with non-zero filler so it stays valid Annex-B.
func withSize(nal string, n int) string {
	if len(nal) >= n {
		return nal
	}
	return nal + strings.Repeat("\x5a", n-len(nal))
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// logBuffer collects log output for assertions on the strings field engineers search for.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkNoLeak fails the test if it leaves goroutines behind. Call it first so
// its cleanup runs after every other one.
func checkNoLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines leaked:\n%s", runtime.NumGoroutine()-before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}
