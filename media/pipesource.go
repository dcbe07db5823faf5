package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/smallnest/ringbuffer"
)

// ErrPipeSourceConfig reports an invalid PipeSourceConfig.
var ErrPipeSourceConfig = errors.New("invalid pipe source config")

const (
	defaultPipeBuffer = 4 << 20
	minPipeBuffer     = 4 << 10
	maxPipeBuffer     = 64 << 20
	maxPipeFPS        = 240
	// A pipe holds 64 KiB on Linux, so larger reads gain nothing.
	maxPipeChunk = 64 << 10
	// How often an idle FIFO is checked for a new writer. A new writer's
	// first bytes wait at most this long; a writer never waits while one is
	// connected.
	pipeWriterPoll = 50 * time.Millisecond
	// How often a missing or unopenable path is retried.
	pipeOpenRetry = time.Second
	// Overflow and resync counts are logged at most this often (§8).
	pipeSummaryInterval = 10 * time.Second
	// Gaps in the byte stream that the parser has not reached yet.
	maxPipeGaps = 64
	// How far generated PTS may run ahead of the wall clock while a burst of
	// access units is spread out at the configured frame rate.
	maxPTSLead = 500 * time.Millisecond
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
	appended     atomic.Uint64
	resyncs      atomic.Uint64
	skipped      atomic.Uint64
	writerCloses atomic.Uint64

	sumMu       sync.Mutex
	sumLast     time.Time
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
		Appended:      p.appended.Load(),
		Resyncs:       p.resyncs.Load(),
		Skipped:       p.skipped.Load(),
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
	p.sumMu.Lock()
	now := time.Now()
	if !final && !p.sumLast.IsZero() && now.Sub(p.sumLast) < pipeSummaryInterval {
		p.sumMu.Unlock()
		return
	}
	overflow, resyncs, skipped := p.overflow.Load(), p.resyncs.Load(), p.skipped.Load()
	dOverflow, dResyncs, dSkipped := overflow-p.sumOverflow, resyncs-p.sumResyncs, skipped-p.sumSkipped
	// Frames skipped without loss (joining a running encoder) are no news.
	lost := dOverflow != 0 || dResyncs != 0
	if lost {
		p.sumOverflow, p.sumResyncs, p.sumSkipped = overflow, resyncs, skipped
		p.sumLast = now
	}
	p.sumMu.Unlock()
	if lost {
		p.log.Warn("pipe source dropped input, resuming at keyframes",
			"overflow_bytes", dOverflow, "resyncs", dResyncs, "skipped_frames", dSkipped,
			"total_overflow_bytes", overflow, "total_resyncs", resyncs)
	}
}

// gapQueue holds the byte-stream offsets where input is missing, in order:
// the ingester adds them, the parser takes them once it has read that far.
// Hysteresis in the ingester keeps it short, and the ingester drops input
// rather than let it grow past maxPipeGaps (writers that keep reconnecting
// to a stalled parser).
type gapQueue struct {
	mu   sync.Mutex
	gaps []gap
	// wake tells a parser waiting on an empty byte ring that bytes or a
	// gap arrived; capacity 1, never blocks the ingester.
	wake chan struct{}
}

func (q *gapQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

type gap struct {
	at   int64 // offset in the bytes written to the byte ring
	loss bool  // input was dropped (rather than a writer ending its stream)
}

func (q *gapQueue) add(g gap) {
	q.mu.Lock()
	defer q.mu.Unlock()
	defer q.signal()
	if n := len(q.gaps); n > 0 && q.gaps[n-1].at == g.at {
		q.gaps[n-1].loss = q.gaps[n-1].loss || g.loss
		return
	}
	q.gaps = append(q.gaps, g)
}

// first returns the earliest gap at or before offset end.
func (q *gapQueue) first(end int64) (gap, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.gaps) == 0 || q.gaps[0].at > end {
		return gap{}, false
	}
	g := q.gaps[0]
	q.gaps = append(q.gaps[:0], q.gaps[1:]...)
	return g, true
}

func (q *gapQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.gaps)
}

// ingester is the reading goroutine's state. Only it writes to the byte ring,
// so the free space it sees can only grow before its write.
type ingester struct {
	p    *PipeSource
	bb   *byteRing
	gaps *gapQueue
	// Bytes and time of the input's start, while the byte ring is being
	// sized from the stream.
	measureFrom  time.Time
	measureBytes int64
	buf          []byte
	written      int64 // bytes accepted into the byte ring
	dropping     bool
}

// offer puts b into the byte ring, or drops all of it. Once full, the ring
// takes input again only when it is at most half full: a parser that is too
// slow then sees a few long gaps instead of many short ones, each of which
// would cost a resync.
func (in *ingester) offer(b []byte) error {
	n := len(b)
	in.p.bytesIn.Add(uint64(n))
	if in.p.auto {
		in.measure(n)
	}
	cur := in.bb.cur.Load()
	free := cur.Free()
	if n > free || (in.dropping && free < cur.Capacity()/2) || in.gaps.len() >= maxPipeGaps {
		if !in.dropping {
			in.dropping = true
			in.gaps.add(gap{at: in.written, loss: true})
		}
		in.p.overflow.Add(uint64(n))
		in.p.noteLoss()
		return nil
	}
	in.dropping = false
	if _, err := cur.Write(b); err != nil {
		return err // the byte ring was closed: Run is ending
	}
	in.written += int64(n)
	in.gaps.signal()
	return nil
}

// pump reads r until EOF (returning nil) or an error, and reports how many
// bytes it read.
func (in *ingester) pump(r io.Reader) (int64, error) {
	var total int64
	for {
		n, err := r.Read(in.buf)
		if n > 0 {
			total += int64(n)
			if werr := in.offer(in.buf[:n]); werr != nil {
				return total, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// readOnce reads r to its end.
func (in *ingester) readOnce(ctx context.Context, r io.Reader) error {
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { _ = d.SetReadDeadline(time.Now()) })
		defer stop()
	}
	_, err := in.pump(r)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// readPath opens cfg.Path and reads it: stdin and regular files once, a
// FIFO for as long as ctx lasts, writer after writer.
func (in *ingester) readPath(ctx context.Context) error {
	p := in.p
	if isStdin(p.cfg.Path) {
		f := openStdin()
		if f != os.Stdin {
			defer f.Close()
		}
		return in.readOnce(ctx, f)
	}

	var f *os.File
	var fst fs.FileInfo
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	warned := false
	for {
		if f == nil || pathReplaced(p.cfg.Path, fst) {
			nf, st, err := openInput(p.cfg.Path)
			switch {
			case err == nil:
				if f != nil {
					f.Close()
				}
				f, fst = nf, st
				if st.Mode()&fs.ModeNamedPipe == 0 {
					return in.readOnce(ctx, f)
				}
			case f == nil:
				if !warned {
					p.log.Warn("pipe source cannot open its input; retrying", "err", err)
					warned = true
				}
				if !pipeWait(ctx, pipeOpenRetry) {
					return nil
				}
				continue
			}
		}

		stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
		n, err := in.pump(f)
		stop()
		if ctx.Err() != nil {
			return nil
		}
		if n > 0 {
			// The next writer starts a new stream; what this one left
			// unfinished must not be glued to it.
			in.gaps.add(gap{at: in.written})
			p.writerCloses.Add(1)
			p.log.Info("pipe writer closed; waiting for the next one", "bytes", n)
			warned = false
		}
		if err != nil {
			if !warned {
				p.log.Warn("pipe read failed; reopening", "err", err)
				warned = true
			}
			f.Close()
			f = nil
		}
		// With no writer, a read returns EOF at once rather than waiting.
		if !pipeWait(ctx, pipeWriterPoll) {
			return nil
		}
	}
}

// openInput opens path for reading without waiting for a FIFO writer, so
// that Run stays cancellable, and in the poller, so that reads are too.
func openInput(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// pathReplaced reports whether path now names another file than cur, as when
// an encoder's start script recreates its FIFO.
func pathReplaced(path string, cur fs.FileInfo) bool {
	st, err := os.Stat(path)
	return err == nil && !os.SameFile(st, cur)
}

// isStdin reports whether path names stdin. /dev/stdin is a FIFO when an
// encoder pipes into ipcd, but one that can never have another writer.
func isStdin(path string) bool { return path == "-" || path == "/dev/stdin" }

// openStdin returns stdin as a file whose reads a deadline can interrupt.
// Reopening it through /proc gives a file description of its own, so making
// that one non-blocking does not change the one the shell shares. Without
// /proc, reads of stdin cannot be interrupted.
func openStdin() *os.File {
	if f, err := os.OpenFile("/proc/self/fd/0", os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
		return f
	}
	return os.Stdin
}

func pipeWait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// auSplitter is H264AUSplitter or H265AUSplitter.
type auSplitter interface {
	Push(nal []byte) (AccessUnit, bool)
	Flush() (AccessUnit, bool)
}

// parse is the parsing goroutine: it reads the byte ring until EOF or until
// ctx ends, and returns an error only if the ring is closed.
func (p *PipeSource) parse(ctx context.Context, rings *byteRing, gaps *gapQueue, ingested <-chan struct{}) error {
	ps := newPipeParser(p)
	bb := rings.cur.Load()
	defer func() { ps.tl.Close() }()
	buf := make([]byte, min(maxPipeChunk, p.cfg.BufferBytes))
	var off int64 // bytes read from the byte ring so far
	for {
		if p.beforeRead != nil {
			p.beforeRead()
		}
		// Loaded before the length: once the ingester has moved to a
		// resized ring, it writes nothing more to this one, so an empty
		// ring seen after this load is drained for good.
		next := rings.next.Load()
		if bb.Length() == 0 {
			// Nothing buffered. A gap here is a writer that ended its
			// stream: settle its last access unit now rather than when
			// the next writer's bytes arrive, which may be never.
			if g, ok := gaps.first(off); ok {
				if rerr := ps.resync(g.loss); rerr != nil {
					return rerr
				}
				continue
			}
			if next != nil && next != bb {
				bb = next
				continue
			}
			select {
			case <-gaps.wake:
				continue
			case <-ingested:
			case <-ctx.Done():
			}
		}
		n, err := bb.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			end := off + int64(n)
			// The ingester records a gap before writing the bytes after
			// it, so every gap inside what was just read is visible now
			// and none lies before off.
			for g, ok := gaps.first(end); ok; g, ok = gaps.first(end) {
				k := g.at - off
				if ferr := ps.feed(chunk[:k]); ferr != nil {
					return ferr
				}
				if rerr := ps.resync(g.loss); rerr != nil {
					return rerr
				}
				chunk, off = chunk[k:], g.at
			}
			if ferr := ps.feed(chunk); ferr != nil {
				return ferr
			}
			off = end
		}
		switch {
		case errors.Is(err, io.EOF) && rings.next.Load() != nil && rings.next.Load() != bb:
			// The ingester moved to a resized ring; this one is drained.
			bb = rings.next.Load()
		case errors.Is(err, io.EOF):
			// Input dropped at the very end leaves the last access unit
			// unfinished.
			if g, ok := gaps.first(off); ok {
				if rerr := ps.resync(g.loss); rerr != nil {
					return rerr
				}
			}
			return ps.finish()
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			// Not expected from a blocking byte ring; stop rather than spin.
			return err
		}
	}
}

// pipeParser splits a byte stream, fed in arbitrary pieces, into NAL units and
// access units, and appends them to the ring.
type pipeParser struct {
	p        *PipeSource
	tl       *Timeline // the current writer's; each writer is a new producer
	split    auSplitter
	startsAU func(nal []byte) bool

	nal     []byte // the NAL unit being received (or, hunting, up to 2 bytes of a start code)
	inNAL   bool   // a start code was found; false while hunting for one
	scanned int    // nal[:scanned] holds no start code
	auBytes int    // size of the access unit being assembled, to bound it

	// After a resync, NAL units are dropped until one that begins an access
	// unit, and access units until a keyframe. Both hold at the start too:
	// the encoder may have been writing for a while.
	waitStart bool
	waitKey   bool

	baseTime time.Time // monotonic reference for PTS
	baseUS   int64     // baseTime as unix microseconds
	lastPTS  int64
	hasPTS   bool
}

func newPipeParser(p *PipeSource) *pipeParser {
	ps := &pipeParser{p: p, tl: p.ring.NewTimeline(), waitStart: true, waitKey: true, baseTime: time.Now()}
	ps.baseUS = ps.baseTime.UnixMicro()
	if p.cfg.Codec == CodecH265 {
		ps.split = &H265AUSplitter{}
		ps.startsAU = func(nal []byte) bool { return len(nal) >= 2 && h265StartsAU(nal) }
	} else {
		ps.split = &H264AUSplitter{}
		ps.startsAU = func(nal []byte) bool { return h264StartsAU(nal[0]&0x1f, nal) }
	}
	return ps
}

// feed consumes the next bytes of the stream. NAL units end at the next start
// code, so one that straddles pieces is kept until that start code arrives.
func (ps *pipeParser) feed(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	ps.nal = append(ps.nal, b...)
	if !ps.inNAL {
		k := findStartCode(ps.nal)
		if k < 0 {
			// Keep what could be the start of a start code.
			if n := len(ps.nal); n > 2 {
				ps.nal = ps.nal[:copy(ps.nal, ps.nal[n-2:])]
			}
			return nil
		}
		ps.nal = ps.nal[:copy(ps.nal, ps.nal[k+3:])]
		ps.inNAL, ps.scanned = true, 0
	}

	begin := 0
	from := max(ps.scanned-2, 0) // a start code may straddle the pieces
	for {
		k := findStartCode(ps.nal[begin+from:])
		if k < 0 {
			break
		}
		end := begin + from + k
		if err := ps.push(ps.nal[begin:end]); err != nil {
			return err
		}
		begin, from = end+3, 0
	}
	if begin > 0 {
		ps.nal = ps.nal[:copy(ps.nal, ps.nal[begin:])]
	}
	ps.scanned = len(ps.nal)
	if len(ps.nal) > MaxVideoPayload {
		// No frame can hold this NAL unit; more likely the input is not
		// Annex-B at all. Memory stays bounded either way.
		ps.dropAU()
		ps.nal, ps.inNAL, ps.scanned = ps.nal[:0], false, 0
		ps.p.resyncs.Add(1)
		ps.p.noteLoss()
	}
	return nil
}

// push hands one NAL unit (without start code) to the splitter.
func (ps *pipeParser) push(nal []byte) error {
	nal = trimTrailingZeros(nal)
	if len(nal) == 0 {
		return nil
	}
	if ps.waitStart {
		if !ps.startsAU(nal) {
			return nil
		}
		ps.waitStart = false
	}
	au, done := ps.split.Push(nal)
	if done {
		ps.auBytes = 0
	}
	ps.auBytes += 4 + len(nal)
	if done {
		if err := ps.deliver(au); err != nil {
			return err
		}
	}
	if ps.auBytes > MaxVideoPayload {
		// The ring would reject it anyway. The NAL units still buffered
		// are intact, so only the access unit is dropped.
		ps.dropAU()
		ps.p.resyncs.Add(1)
		ps.p.noteLoss()
	}
	return nil
}

// resync drops everything not yet delivered, except an access unit that is
// known to be complete: the stream continues after missing bytes (loss) or a
// writer change.
func (ps *pipeParser) resync(loss bool) error {
	// The bytes before a gap are intact. If the NAL unit cut short there
	// has a header that begins an access unit, the one before it is whole.
	if ps.inNAL && !ps.waitStart && len(ps.nal) > 0 && ps.startsAU(ps.nal) {
		if au, ok := ps.split.Flush(); ok {
			if err := ps.deliver(au); err != nil {
				return err
			}
		}
	}
	ps.dropAU()
	ps.nal = ps.nal[:0]
	ps.inNAL, ps.scanned = false, 0
	if loss {
		ps.p.resyncs.Add(1)
		ps.p.noteLoss()
	} else {
		// The writer changed.
		ps.tl.Close()
		ps.tl = ps.p.ring.NewTimeline()
	}
	return nil
}

// dropAU discards the access unit being assembled and waits for the next
// keyframe.
func (ps *pipeParser) dropAU() {
	ps.split.Flush() // the cached parameter sets survive
	ps.auBytes = 0
	ps.waitStart, ps.waitKey = true, true
}

// finish delivers what is left at the end of the input.
func (ps *pipeParser) finish() error {
	if ps.inNAL {
		if err := ps.push(ps.nal); err != nil {
			return err
		}
	}
	ps.nal, ps.inNAL = ps.nal[:0], false
	if au, ok := ps.split.Flush(); ok {
		return ps.deliver(au)
	}
	return nil
}

func (ps *pipeParser) deliver(au AccessUnit) error {
	if ps.waitKey {
		if !au.Key {
			ps.p.skipped.Add(1)
			return nil
		}
		ps.waitKey = false
	}
	now := time.Now()
	f := Frame{
		Stream:    ps.p.cfg.Stream,
		Kind:      KindP,
		Codec:     ps.p.cfg.Codec,
		PTS:       ps.pts(now),
		Timestamp: now.UnixMilli(),
		Payload:   au.Payload,
	}
	if au.Key {
		f.Kind = KindI
	}
	// Other rejections are counted and logged by the ring. The frames
	// after a rejected one would refer to it, so they wait for a keyframe.
	switch err := ps.tl.Append(f); {
	case err == nil:
		ps.p.appended.Add(1)
	case errors.Is(err, ErrRingClosed):
		return err
	default:
		ps.waitKey = true
	}
	return nil
}

// pts is the wall clock in microseconds, read through the monotonic clock so
// that a clock step cannot make it go backwards, and strictly increasing.
func (ps *pipeParser) pts(now time.Time) int64 {
	wall := ps.baseUS + now.Sub(ps.baseTime).Microseconds()
	pts := wall
	if ps.hasPTS && ps.p.period > 0 {
		pts = max(wall, min(ps.lastPTS+ps.p.period.Microseconds(), wall+maxPTSLead.Microseconds()))
	}
	if ps.hasPTS && pts <= ps.lastPTS {
		pts = ps.lastPTS + 1
	}
	ps.lastPTS, ps.hasPTS = pts, true
	return pts
}
