package media

import (
	"fmt"
	"os"
)

// FileSink is a talkback sink that appends the app's G.711 audio to a file,
// for boards whose speaker is driven by another process reading that file
// (or a FIFO), and for tests.
type FileSink struct {
	f *os.File
}

// NewFileSink opens path for appending, creating it, so that a bad path is
// reported at start rather than at the first talkback.
func NewFileSink(path string) (*FileSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("speaker file: %w", err)
	}
	return &FileSink{f: f}, nil
}

// Write appends p. After Close it returns an error wrapping os.ErrClosed.
func (s *FileSink) Write(p []byte) (int, error) { return s.f.Write(p) }

// Close closes the file.
func (s *FileSink) Close() error { return s.f.Close() }
