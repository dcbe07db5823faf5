package media

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smallnest/ringbuffer"

	"github.com/ipcd/ipcd/internal/droplog"
)

// The pipe source is split by concern: this file holds its configuration,
// Run and its loss summary; pipebuffer.go the byte ring between the reading
// and the parsing goroutine; pipeinput.go the reading of the FIFO, stdin or
// file; pipeparse.go the parsing. The Annex-B stream parser, the access-unit
// sink and the PTS clock are shared with the V4L2 source.

const (
	maxPipeFPS = 240
	// How often an idle FIFO is checked for a new writer. A new writer's
	// first bytes wait at most this long; a writer never waits while one is
	// connected.
	pipeWriterPoll = 50 * time.Millisecond
	// How often a missing or unopenable path is retried.
	pipeOpenRetry = time.Second
	// Overflow and resync counts are logged at most this often (§8).
	pipeSummaryInterval = 10 * time.Second
)

// PipeSourceConfig configures a source that reads an Annex-B elementary
// stream written by an encoder process (§7.3 `pipe`).
type PipeSourceConfig struct {
	// Path is a FIFO, "-" or "/dev/stdin" for stdin, or a regular file
	// (read once, for tests). A FIFO outlives its writers: when one closes
	// it, the source waits for the next, so the encoder can be restarted.
	// Stdin ends with its writer.
	Path string
	// Codec is CodecH264 or CodecH265; CodecUnknown takes the ring's codec.
	Codec Codec
	// Stream of the frames; StreamUnknown takes the ring's stream.
	Stream Stream
	// BufferBytes sizes the byte ring between the pipe and the parser.
	// 0 sizes it from the stream: 4 MiB until 2 s of input have been
	// measured, then 1 s of the measured bitrate, at least 256 KiB and at
	// most 4 MiB. When it is full, input is dropped rather than making the
	// encoder wait.
	BufferBytes int
	// FPS is the encoder's frame rate, if known (0 if not). Annex-B carries
	// no timing, so PTS is the wall clock when an access unit completes;
	// with FPS set, access units that complete in a burst (the parser
	// catching up) are spread one frame interval apart instead of sharing
	// a timestamp.
	FPS int
}

// PipeStats counts what a PipeSource did since it was built.
type PipeStats struct {
	BytesIn       uint64 // read from the input, dropped bytes included
	OverflowBytes uint64 // dropped because the byte ring was full
	Appended      uint64 // access units the frame ring accepted
	Resyncs       uint64 // times the parser lost data and waited for a keyframe
	Skipped       uint64 // complete access units discarded while waiting for a keyframe
	WriterCloses  uint64 // times a FIFO writer went away after sending data
}

// PipeSource appends the access units of an Annex-B byte stream to a ring
// (§7.3 `pipe`). One goroutine reads the input into a byte ring as fast as the
// writer writes; another splits the bytes into access units. The encoder is
// never throttled by the parser: input that does not fit into the byte ring
// is dropped and the parser resumes at the next keyframe, so no broken frame
// reaches the ring.
//
// An access unit is complete only when the first NAL unit of the next one
// arrives, so frames reach the ring one frame interval after the encoder
// wrote them.
type PipeSource struct {
	cfg    PipeSourceConfig
	ring   *Ring
	log    *slog.Logger
	input  io.Reader // nil: open cfg.Path in Run
	period time.Duration
	auto   bool // the byte ring is sized from the measured stream
	// measureFor is how much input is measured before sizing it.
	measureFor time.Duration

	// beforeRead, if set, runs before each read of the byte ring; tests use
	// it to hold the parser back.
	beforeRead func()

	bytesIn      atomic.Uint64
	overflow     atomic.Uint64
	resyncs      atomic.Uint64
	writerCloses atomic.Uint64
	sink         sinkStats

	// lossLog lets a loss summary through at most once per
	// pipeSummaryInterval.
	lossLog     *droplog.Summary
	sumMu       sync.Mutex
	sumOverflow uint64 // overflow, resyncs and skipped as of the last summary
	sumResyncs  uint64
	sumSkipped  uint64
}

// NewPipeSource validates cfg for a source that reads cfg.Path. The path is
// opened by Run, so it may not exist yet. A nil logger discards.
func NewPipeSource(cfg PipeSourceConfig, ring *Ring, log *slog.Logger) (*PipeSource, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: path is required (a FIFO, or - for stdin)", ErrPipeSourceConfig)
	}
	if !isStdin(cfg.Path) {
		if st, err := os.Stat(cfg.Path); err == nil && st.IsDir() {
			return nil, fmt.Errorf("%w: path %s is a directory", ErrPipeSourceConfig, cfg.Path)
		}
	}
	return newPipeSource(cfg, nil, ring, log)
}

// NewPipeSourceReader is NewPipeSource for an already open input, read once
// until EOF; cfg.Path only names it in logs. If r has a SetReadDeadline method
// (an *os.File pipe, a net.Conn), Run interrupts a pending read when its
// context ends; otherwise Run returns only once the pending read does, so the
// caller must close r to stop it.
func NewPipeSourceReader(cfg PipeSourceConfig, r io.Reader, ring *Ring, log *slog.Logger) (*PipeSource, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: no reader", ErrPipeSourceConfig)
	}
	return newPipeSource(cfg, r, ring, log)
}

func newPipeSource(cfg PipeSourceConfig, r io.Reader, ring *Ring, log *slog.Logger) (*PipeSource, error) {
	if ring == nil {
		return nil, fmt.Errorf("%w: no ring", ErrPipeSourceConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Stream == StreamUnknown {
		cfg.Stream = ring.Stream()
	}
	if cfg.Codec == CodecUnknown {
		cfg.Codec = ring.Codec()
	}
	auto := cfg.BufferBytes == 0
	if auto {
		cfg.BufferBytes = defaultPipeBuffer
	}
	switch {
	case cfg.Stream != ring.Stream() || !ring.Stream().IsVideo():
		return nil, fmt.Errorf("%w: pipe source for the %s stream on the %s ring", ErrWrongStream, cfg.Stream, ring.Stream())
	case !cfg.Codec.IsVideo():
		return nil, fmt.Errorf("%w: codec %s, want h264 or h265", ErrPipeSourceConfig, cfg.Codec)
	case ring.Codec() != CodecUnknown && ring.Codec() != cfg.Codec:
		return nil, fmt.Errorf("%w: %s pipe for the %s ring of %s", ErrKindMismatch, cfg.Codec, ring.Stream(), ring.Codec())
	case cfg.BufferBytes < minPipeBuffer || cfg.BufferBytes > maxPipeBuffer:
		return nil, fmt.Errorf("%w: buffer_bytes %d must be in %d..%d", ErrPipeSourceConfig, cfg.BufferBytes, minPipeBuffer, maxPipeBuffer)
	case cfg.FPS < 0 || cfg.FPS > maxPipeFPS:
		return nil, fmt.Errorf("%w: fps %d must be in 0..%d", ErrPipeSourceConfig, cfg.FPS, maxPipeFPS)
	}
	p := &PipeSource{
		cfg:        cfg,
		ring:       ring,
		log:        log.With("component", "pipesource", "stream", cfg.Stream.String(), "path", cfg.Path),
		input:      r,
		auto:       auto,
		measureFor: pipeMeasure,

		lossLog: droplog.NewGate(pipeSummaryInterval),
	}
	if cfg.FPS > 0 {
		p.period = time.Second / time.Duration(cfg.FPS)
	}
	return p, nil
}

// Codec returns the codec the source parses.
func (p *PipeSource) Codec() Codec { return p.cfg.Codec }

// Stats returns the source's counters.
func (p *PipeSource) Stats() PipeStats {
	return PipeStats{
		BytesIn:       p.bytesIn.Load(),
		OverflowBytes: p.overflow.Load(),
		Appended:      p.sink.appended.Load(),
		Resyncs:       p.resyncs.Load(),
		Skipped:       p.sink.skipped.Load(),
		WriterCloses:  p.writerCloses.Load(),
	}
}

// Run reads and parses until ctx ends or the input ends (stdin, a regular
// file, or the reader given to NewPipeSourceReader reaching EOF; a FIFO never
// ends), and returns nil in both cases. It returns an error if the ring is
// closed or the reader given to NewPipeSourceReader fails. Both of its
// goroutines have exited when it returns.
func (p *PipeSource) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bb := &byteRing{}
	bb.cur.Store(ringbuffer.New(p.cfg.BufferBytes).SetBlocking(true))
	stop := context.AfterFunc(ctx, func() { bb.closeWithError(ctx.Err()) })
	defer stop()
	gaps := &gapQueue{wake: make(chan struct{}, 1)}
	ingested := make(chan struct{})

	p.log.Info("pipe source started", "codec", p.cfg.Codec.String(), "buffer_bytes", p.cfg.BufferBytes, "fps", p.cfg.FPS)
	var wg sync.WaitGroup
	var readErr error
	wg.Go(func() {
		in := &ingester{p: p, bb: bb, gaps: gaps, buf: make([]byte, min(maxPipeChunk, p.cfg.BufferBytes/4))}
		if p.input != nil {
			readErr = in.readOnce(ctx, p.input)
		} else {
			readErr = in.readPath(ctx)
		}
		// The parser drains what is buffered, then sees EOF.
		bb.cur.Load().CloseWriter()
		close(ingested)
	})
	parseErr := p.parse(ctx, bb, gaps, ingested)
	cancel()
	wg.Wait()

	p.logSummary(true)
	st := p.Stats()
	p.log.Info("pipe source stopped", "bytes_in", st.BytesIn, "frames", st.Appended,
		"overflow_bytes", st.OverflowBytes, "resyncs", st.Resyncs)
	switch {
	case parseErr != nil:
		return fmt.Errorf("pipe source %s: %w", p.cfg.Path, parseErr)
	case readErr != nil:
		return fmt.Errorf("pipe source %s: %w", p.cfg.Path, readErr)
	}
	return nil
}

// noteLoss logs a summary of overflow and resyncs unless one was logged less
// than pipeSummaryInterval ago; the counts carry over to the next summary.
func (p *PipeSource) noteLoss() { p.logSummary(false) }

// logSummary logs the loss since the last summary; final logs it even if that
// was less than pipeSummaryInterval ago.
func (p *PipeSource) logSummary(final bool) {
	if !final {
		if ok, _ := p.lossLog.Note("loss"); !ok {
			return
		}
	}
	p.sumMu.Lock()
	overflow, resyncs, skipped := p.overflow.Load(), p.resyncs.Load(), p.sink.skipped.Load()
	dOverflow, dResyncs, dSkipped := overflow-p.sumOverflow, resyncs-p.sumResyncs, skipped-p.sumSkipped
	// Frames skipped without loss (joining a running encoder) are no news.
	lost := dOverflow != 0 || dResyncs != 0
	if lost {
		p.sumOverflow, p.sumResyncs, p.sumSkipped = overflow, resyncs, skipped
	}
	p.sumMu.Unlock()
	if lost {
		p.log.Warn("pipe source dropped input, resuming at keyframes",
			"overflow_bytes", dOverflow, "resyncs", dResyncs, "skipped_frames", dSkipped,
			"total_overflow_bytes", overflow, "total_resyncs", resyncs)
	}
}
