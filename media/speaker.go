package media

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MaxSpeakerWrite is the most one FileSink.Write takes: PIPE_BUF, so that a
// chunk reaches a FIFO whole or not at all.
const MaxSpeakerWrite = 4096

// FileSinkConfig says where talkback audio goes and how long the sink may
// stall before audio is dropped.
type FileSinkConfig struct {
	// Path is a regular file (appended to, created when missing) or a FIFO
	// read by the board's audio process.
	Path string
	// Queue is how many writes wait for the sink; more are dropped.
	// 0 means 25 (a second of 40 ms chunks).
	Queue int
	// WriteTimeout bounds one write to a FIFO; a write that does not
	// finish in time is dropped and the sink counts as stalled until a
	// write succeeds again. 0 means 200 ms.
	WriteTimeout time.Duration
	// SummaryInterval is how often drops are summarized in the log.
	// 0 means 10 s.
	SummaryInterval time.Duration
}

func (c *FileSinkConfig) setDefaults() {
	if c.Queue <= 0 {
		c.Queue = 25
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 200 * time.Millisecond
	}
	if c.SummaryInterval <= 0 {
		c.SummaryInterval = 10 * time.Second
	}
}

// SinkStats are a FileSink's counters since it was opened.
type SinkStats struct {
	Written uint64 // bytes the file or FIFO took
	// Dropped is every byte lost, the sum of the three below.
	Dropped uint64
	// DroppedFull: the queue was full (the sink is stalled or slow).
	DroppedFull uint64
	// DroppedStalled: a write did not finish within WriteTimeout.
	DroppedStalled uint64
	// DroppedNoReader: the FIFO had no reader, or the write failed.
	DroppedNoReader uint64
	// Stalls is how many times the sink stopped taking audio.
	Stalls uint64
	// Stalled reports that the last write timed out.
	Stalled bool
}

// FileSink is a talkback sink that appends the app's G.711 audio to a file,
// for boards whose speaker is driven by another process reading that file
// (or a FIFO), and for tests.
//
// Write never waits on the file: it queues a copy for the sink's own
// goroutine, which writes with a deadline. A FIFO whose reader stops fills
// the pipe, then the queue; from then on audio is dropped and counted, and
// playback resumes with the next write after the reader does. A FIFO is
// opened without blocking; while it has no reader (ENXIO) or after its
// reader closed it (EPIPE), audio is dropped and the FIFO is opened again
// at the next write.
type FileSink struct {
	_ [0]func() // not comparable: no equality function in the binary

	cfg  FileSinkConfig
	log  *slog.Logger
	fifo bool

	mu     sync.RWMutex // closed and the sends on queue
	closed bool
	queue  chan []byte
	stop   chan struct{}
	done   chan struct{}

	// Owned by the writer goroutine.
	f          *os.File
	stalledAt  time.Time
	noReader   bool
	failed     bool
	lastReport SinkStats

	written         atomic.Uint64
	droppedFull     atomic.Uint64
	droppedStalled  atomic.Uint64
	droppedNoReader atomic.Uint64
	stalls          atomic.Uint64
	stalled         atomic.Bool
}

// NewFileSink opens cfg.Path for appending, creating a missing file, so
// that a bad path is reported at start rather than at the first talkback,
// and starts the sink's writer. A FIFO without a reader yet is not an
// error. Close stops the writer.
func NewFileSink(cfg FileSinkConfig, log *slog.Logger) (*FileSink, error) {
	cfg.setDefaults()
	s := &FileSink{
		cfg:   cfg,
		log:   log.With("component", "speaker", "path", cfg.Path),
		queue: make(chan []byte, cfg.Queue),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if st, err := os.Stat(cfg.Path); err == nil && st.Mode()&fs.ModeNamedPipe != 0 {
		s.fifo = true
	}
	f, err := s.open()
	switch {
	case s.fifo && errors.Is(err, syscall.ENXIO):
		s.noReader = true
		s.log.Info("speaker fifo has no reader yet: talkback is dropped until one opens it")
	case err != nil:
		return nil, fmt.Errorf("speaker file: %w", err)
	}
	s.f = f
	go s.run()
	return s, nil
}

// open opens the sink without blocking: a FIFO is opened O_NONBLOCK, which
// also lets writes to it carry a deadline.
func (s *FileSink) open() (*os.File, error) {
	flag := os.O_WRONLY | os.O_APPEND | os.O_CREATE
	if s.fifo {
		flag = os.O_WRONLY | syscall.O_NONBLOCK
	}
	return os.OpenFile(s.cfg.Path, flag, 0o644)
}

// Write queues a copy of p for the sink and returns at once. It returns
// ErrSpeakerFull when the queue is full (the sink is stalled or too slow)
// and the bytes are dropped, ErrSpeakerWriteTooLarge for more than
// MaxSpeakerWrite bytes, and an error wrapping os.ErrClosed after Close.
func (s *FileSink) Write(p []byte) (int, error) {
	if len(p) > MaxSpeakerWrite {
		return 0, fmt.Errorf("%w: %d bytes", ErrSpeakerWriteTooLarge, len(p))
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, fmt.Errorf("speaker %s: %w", s.cfg.Path, os.ErrClosed)
	}
	select {
	case s.queue <- append([]byte(nil), p...):
		return len(p), nil
	default:
		s.droppedFull.Add(uint64(len(p)))
		return 0, ErrSpeakerFull
	}
}

// Stats returns the sink's counters. Any goroutine may call it.
func (s *FileSink) Stats() SinkStats {
	st := SinkStats{
		Written:         s.written.Load(),
		DroppedFull:     s.droppedFull.Load(),
		DroppedStalled:  s.droppedStalled.Load(),
		DroppedNoReader: s.droppedNoReader.Load(),
		Stalls:          s.stalls.Load(),
		Stalled:         s.stalled.Load(),
	}
	st.Dropped = st.DroppedFull + st.DroppedStalled + st.DroppedNoReader
	return st
}

// Close writes what is queued, unless the sink is stalled, then stops the
// writer and closes the file. It waits at most one WriteTimeout per queued
// write while the sink takes audio.
func (s *FileSink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("speaker %s: %w", s.cfg.Path, os.ErrClosed)
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

func (s *FileSink) run() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.SummaryInterval)
	defer tick.Stop()
	for {
		select {
		case p := <-s.queue:
			s.write(p)
		case <-tick.C:
			s.summarize()
		case <-s.stop:
			// No Write can queue any more: flush, but do not wait on a
			// sink that has stopped taking audio.
			for {
				select {
				case p := <-s.queue:
					if s.stalled.Load() {
						s.droppedStalled.Add(uint64(len(p)))
					} else {
						s.write(p)
					}
				default:
					s.summarize()
					return
				}
			}
		}
	}
}

func (s *FileSink) write(p []byte) {
	if s.f == nil {
		f, err := s.open()
		if err != nil {
			s.droppedNoReader.Add(uint64(len(p)))
			if !s.noReader {
				s.noReader = true
				s.log.Warn("speaker fifo has no reader: talkback is dropped", "rule", "speaker_no_reader", "err", err)
			}
			return
		}
		s.f = f
		if s.noReader {
			s.noReader = false
			s.log.Info("speaker fifo reader connected")
		}
	}
	// A regular file has no deadline (os.ErrNoDeadline) and its writes do
	// not wait on another process.
	_ = s.f.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	n, err := s.f.Write(p)
	s.written.Add(uint64(n))
	if err == nil {
		if s.stalled.Load() {
			s.stalled.Store(false)
			s.log.Info("speaker sink resumed", "stalled_for", time.Since(s.stalledAt).Round(time.Millisecond))
		}
		s.failed = false
		return
	}
	lost := uint64(len(p) - n)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.droppedStalled.Add(lost)
		if !s.stalled.Load() {
			s.stalled.Store(true)
			s.stalls.Add(1)
			s.stalledAt = time.Now()
			s.log.Warn("speaker sink stalled: talkback is dropped until it takes audio again",
				"rule", "speaker_stalled", "timeout", s.cfg.WriteTimeout)
		}
	case s.fifo && errors.Is(err, syscall.EPIPE):
		// The reader went away; a new one gets the FIFO opened again.
		s.droppedNoReader.Add(lost)
		_ = s.f.Close()
		s.f = nil
		s.noReader = true
		s.log.Warn("speaker fifo reader closed: talkback is dropped until one opens it", "rule", "speaker_no_reader")
	default:
		s.droppedNoReader.Add(lost)
		if !s.failed {
			s.failed = true
			s.log.Warn("speaker write failed", "rule", "speaker_write_failed", "err", err)
		}
	}
}

// summarize logs what was dropped since the last summary, in one line.
func (s *FileSink) summarize() {
	st := s.Stats()
	prev := s.lastReport
	s.lastReport = st
	if st.Dropped == prev.Dropped {
		return
	}
	s.log.Warn("speaker dropped audio",
		"dropped_bytes", st.Dropped-prev.Dropped,
		"queue_full", st.DroppedFull-prev.DroppedFull,
		"stalled", st.DroppedStalled-prev.DroppedStalled,
		"no_reader", st.DroppedNoReader-prev.DroppedNoReader,
		"written_bytes", st.Written-prev.Written,
		"dropped_total", st.Dropped, "stalls", st.Stalls)
}
