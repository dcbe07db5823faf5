package media

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	defaultFeedMaxConns    = 4
	maxFeedMaxConns        = 64
	defaultFeedReadTimeout = 10 * time.Second
	// Linux's sun_path holds 108 bytes including the terminating NUL; a longer
	// path would fail at bind with an unhelpful EINVAL.
	maxFeedPathLen = 107
	// Large enough that a header and a whole audio frame, or several, arrive
	// in one read; video payloads beyond it are read straight into the frame buffer.
	feedReadBufferSize = 64 << 10
	feedSocketMode     = 0o660
	// A producer reconnecting in a loop must not flood the log.
	feedLogInterval = 10 * time.Second
	feedMaxBackoff  = time.Second
)

// FeedSourceConfig configures the `feed` source (§7.3): a Unix stream socket
// that the capture application connects to and pushes encoded frames into.
type FeedSourceConfig struct {
	Path string
	// MaxConns is how many producers are served at once; 0 means 4. Further
	// connections are accepted and closed at once, so the producer sees an
	// error instead of hanging in the listen backlog.
	MaxConns int
	// ReadTimeout bounds how long the rest of a message may take once its
	// first byte arrived; 0 means 10 s. Between messages a producer may be
	// silent for as long as it likes (a paused encoder is not an error).
	ReadTimeout time.Duration
}

// FeedSource serves the feed socket and appends each frame it receives to the
// ring of the frame's stream. One socket can carry all three streams.
type FeedSource struct {
	cfg     FeedSourceConfig
	rings   map[Stream]*Ring
	log     *slog.Logger
	warnLim logLimiter
	running atomic.Bool
	connID  atomic.Uint64

	conns    atomic.Int64
	accepted atomic.Uint64
	refused  atomic.Uint64
	frames   atomic.Uint64
	bytes    atomic.Uint64
	rejected atomic.Uint64
	noRing   atomic.Uint64
	closed   [feedCloseCount]atomic.Uint64
}

// NewFeedSource checks cfg and the rings; nothing is opened until Run. Frames
// of a stream that has no ring in rings are read and dropped (counted in
// FeedStats.NoRing), so a capture application may push a sub stream that this
// ipcd does not serve. A nil logger discards.
func NewFeedSource(cfg FeedSourceConfig, rings map[Stream]*Ring, log *slog.Logger) (*FeedSource, error) {
	switch {
	case cfg.Path == "":
		return nil, fmt.Errorf("%w: path is required", ErrFeedSourceConfig)
	case len(cfg.Path) > maxFeedPathLen:
		return nil, fmt.Errorf("%w: path %s is %d bytes, a Unix socket path holds at most %d",
			ErrFeedSourceConfig, cfg.Path, len(cfg.Path), maxFeedPathLen)
	case cfg.MaxConns < 0 || cfg.MaxConns > maxFeedMaxConns:
		return nil, fmt.Errorf("%w: max_conns %d must be in 0..%d", ErrFeedSourceConfig, cfg.MaxConns, maxFeedMaxConns)
	case cfg.ReadTimeout < 0:
		return nil, fmt.Errorf("%w: read timeout %v is negative", ErrFeedSourceConfig, cfg.ReadTimeout)
	case len(rings) == 0:
		return nil, fmt.Errorf("%w: no ring", ErrFeedSourceConfig)
	}
	own := make(map[Stream]*Ring, len(rings))
	for s, r := range rings {
		if r == nil || r.Stream() != s {
			return nil, fmt.Errorf("%w: ring for the %s stream is missing or buffers another stream", ErrFeedSourceConfig, s)
		}
		own[s] = r
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = defaultFeedMaxConns
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = defaultFeedReadTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FeedSource{
		cfg:   cfg,
		rings: own,
		log:   log.With("component", "feedsource", "path", cfg.Path),
	}, nil
}

// Run listens on the socket and serves up to MaxConns producers, each on a
// goroutine Run waits for. A stale socket file left by a previous run is
// removed first; a path that is not a socket, or a socket another process
// still serves, is an error. The socket is made 0660 so that the capture
// application needs to share ipcd's user or group.
//
// When ctx ends Run closes the listener and every connection, removes the
// socket file and returns nil once all connections are done. A second
// concurrent Run fails.
func (f *FeedSource) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Run is already running", ErrFeedSourceConfig)
	}
	defer f.running.Store(false)

	ln, err := f.listen()
	if err != nil {
		return err
	}
	f.log.Info("feed source listening", "max_conns", f.cfg.MaxConns, "read_timeout", f.cfg.ReadTimeout)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var wg sync.WaitGroup
	slots := make(chan struct{}, f.cfg.MaxConns)
	var refusedLog logLimiter
	var runErr error
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				runErr = fmt.Errorf("feed source %s: %w", f.cfg.Path, err)
				break
			}
			// EMFILE and the like: retry once descriptors are freed,
			// as net/http does, instead of giving up on the socket.
			backoff = min(max(2*backoff, 5*time.Millisecond), feedMaxBackoff)
			f.log.Warn("feed accept failed", "error", err, "retry_in", backoff)
			if sleepCtx(ctx, backoff) != nil {
				break
			}
			continue
		}
		backoff = 0
		select {
		case slots <- struct{}{}:
		default:
			f.refused.Add(1)
			if n, ok := refusedLog.allow(time.Now()); ok {
				f.log.Warn("feed connection refused", "reason", "max_conns", "max_conns", f.cfg.MaxConns,
					"refused_since_last_log", n)
			}
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			_ = f.Serve(ctx, c) // Serve counts and logs why the connection ended.
		})
	}
	cancel()
	ln.Close() // unlinks the socket file
	wg.Wait()
	f.log.Info("feed source stopped")
	return runErr
}

func (f *FeedSource) listen() (*net.UnixListener, error) {
	path := f.cfg.Path
	switch fi, err := os.Lstat(path); {
	case err == nil && fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("%w: %s exists and is not a socket", ErrFeedSourceConfig, path)
	case err == nil:
		// Only a socket nobody answers on is stale; unlinking a live one
		// would silently steal the producer from another ipcd.
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrFeedInUse, path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("feed source: remove stale socket: %w", err)
		}
		f.log.Info("removed stale feed socket")
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("feed source: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("feed source: %w", err)
	}
	if err := os.Chmod(path, feedSocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("feed source: %w", err)
	}
	return ln, nil
}

// Serve reads messages from r and appends their frames until r ends, sends
// something that is not a valid message, or ctx ends. Run calls it for every
// connection; it serves a producer on any other byte stream (a FIFO, stdin)
// just the same.
//
// If r has SetReadDeadline (a net.Conn, an *os.File on a pipe), a message must
// be complete within ReadTimeout of its first byte. ctx is checked between
// messages; to interrupt a blocked read, close r (Run does).
//
// A frame the ring refuses is counted and dropped and the stream goes on;
// nothing is appended from a message that is incomplete or malformed.
// The result is why the stream ended: nil at EOF on a message boundary,
// ctx.Err() when ctx ended, otherwise an error wrapping ErrFeedTruncated,
// ErrFeedTimeout, ErrFeedMagic, ErrFeedVersion, ErrFeedField, ErrFeedLength,
// ErrRingClosed or the read error. Each ending is counted in FeedStats.Closed
// and logged, at warn level when the producer is at fault.
func (f *FeedSource) Serve(ctx context.Context, r io.Reader) error {
	log := f.log.With("conn", f.connID.Add(1))
	f.accepted.Add(1)
	f.conns.Add(1)
	defer f.conns.Add(-1)
	log.Info("feed connection accepted")

	d := newFeedReader(r, f.cfg.ReadTimeout)
	var st feedConnStats
	err := f.serve(ctx, d, &st, log)
	reason := feedCloseReasonOf(ctx, err)
	f.closed[reason].Add(1)
	switch reason {
	case feedCloseEOF:
		err = nil
	case feedCloseShutdown:
		err = ctx.Err()
	}

	attrs := []any{"reason", reason.String(), "frames", st.frames, "bytes", st.bytes,
		"rejected", st.rejected, "no_ring", st.noRing}
	switch {
	case reason == feedCloseEOF:
		log.Info("feed connection closed", attrs...)
	case reason == feedCloseShutdown:
		log.Debug("feed connection closed", attrs...)
	default:
		if n, ok := f.warnLim.allow(time.Now()); ok {
			log.Warn("feed connection closed", append(attrs, "error", err.Error(), "suppressed_since_last_log", n)...)
		}
	}
	return err
}

type feedConnStats struct {
	frames, bytes, rejected, noRing uint64
}

func (f *FeedSource) serve(ctx context.Context, d *feedReader, st *feedConnStats, log *slog.Logger) error {
	var warnedNoRing [StreamAudio + 1]bool
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, payload, err := d.next()
		if err != nil {
			return err
		}
		ring := f.rings[h.Stream]
		if ring == nil {
			f.noRing.Add(1)
			st.noRing++
			if !warnedNoRing[h.Stream] {
				warnedNoRing[h.Stream] = true
				log.Warn("feed frames for a stream without a ring are dropped", "stream", h.Stream.String())
			}
			continue
		}
		err = ring.Append(Frame{
			Stream:    h.Stream,
			Kind:      h.Kind,
			Codec:     h.Codec,
			PTS:       h.PTS,
			Timestamp: h.Timestamp,
			Payload:   payload,
		})
		switch {
		case err == nil:
			f.frames.Add(1)
			f.bytes.Add(uint64(len(payload)))
			st.frames++
			st.bytes += uint64(len(payload))
		case errors.Is(err, ErrRingClosed):
			return fmt.Errorf("%s ring: %w", h.Stream, err)
		default:
			// The ring counts the rule and summarises it in its log.
			f.rejected.Add(1)
			st.rejected++
		}
	}
}

// readDeadliner is the part of net.Conn and *os.File that bounds a read.
type readDeadliner interface {
	SetReadDeadline(t time.Time) error
}

// feedReader splits a byte stream into feed messages. The payload of the last
// message lives in a buffer reused for the next one; the ring copies on append.
type feedReader struct {
	br      *bufio.Reader
	dl      readDeadliner // nil when the stream has no deadlines
	timeout time.Duration
	hdr     [FeedHeaderSize]byte
	buf     []byte
}

func newFeedReader(r io.Reader, timeout time.Duration) *feedReader {
	d := &feedReader{br: bufio.NewReaderSize(r, feedReadBufferSize), timeout: timeout}
	if dl, ok := r.(readDeadliner); ok && dl.SetReadDeadline(time.Time{}) == nil {
		d.dl = dl
	}
	return d
}

// next returns the next complete, valid message. io.EOF means the stream
// ended cleanly between messages.
func (d *feedReader) next() (FeedHeader, []byte, error) {
	if d.dl != nil && d.br.Buffered() == 0 {
		// Waiting for a message to begin has no time limit.
		if err := d.dl.SetReadDeadline(time.Time{}); err != nil {
			return FeedHeader{}, nil, err
		}
	}
	if _, err := d.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) {
			return FeedHeader{}, nil, io.EOF
		}
		return FeedHeader{}, nil, feedReadError(err)
	}
	if d.dl != nil {
		if err := d.dl.SetReadDeadline(time.Now().Add(d.timeout)); err != nil {
			return FeedHeader{}, nil, err
		}
	}
	if _, err := io.ReadFull(d.br, d.hdr[:]); err != nil {
		return FeedHeader{}, nil, feedReadError(err)
	}
	h, err := DecodeFeedHeader(d.hdr[:])
	if err != nil {
		return FeedHeader{}, nil, err
	}
	n := int(h.Length)
	if cap(d.buf) < n {
		// Growing by doubling keeps reallocations rare while frame sizes
		// settle, without ever exceeding the largest legal payload.
		d.buf = make([]byte, max(n, min(2*cap(d.buf), MaxVideoPayload)))
	}
	payload := d.buf[:n]
	if _, err := io.ReadFull(d.br, payload); err != nil {
		return FeedHeader{}, nil, fmt.Errorf("%s %s frame of %d bytes: %w", h.Stream, h.Kind, n, feedReadError(err))
	}
	return h, payload, nil
}

// feedReadError maps a failed read inside a message to the feed's errors.
func feedReadError(err error) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: stream ended inside a message", ErrFeedTruncated)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: %w", ErrFeedTimeout, err)
	}
	return err
}

// FeedStats is a snapshot of a FeedSource's counters, cumulative since it was built.
type FeedStats struct {
	Conns    int    // connections being served now
	Accepted uint64 // connections served
	Refused  uint64 // connections closed at once because MaxConns were being served
	Frames   uint64 // frames appended to a ring
	Bytes    uint64 // payload bytes of those frames
	Rejected uint64 // complete frames a ring refused (§7.1 rules; the ring's stats say which)
	NoRing   uint64 // complete frames of a stream this source has no ring for
	Closed   FeedCloseCounts
}

// FeedCloseCounts counts served connections by why they ended.
type FeedCloseCounts struct {
	EOF        uint64 // the producer closed between messages
	Shutdown   uint64 // ctx ended
	BadMagic   uint64
	BadVersion uint64
	BadField   uint64 // stream, kind, codec or reserved
	BadLength  uint64
	Truncated  uint64 // the stream ended inside a message
	Timeout    uint64 // a message was not complete within ReadTimeout
	RingClosed uint64
	ReadError  uint64 // any other read failure (connection reset, ...)
}

// Total sums all reasons.
func (c FeedCloseCounts) Total() uint64 {
	return c.EOF + c.Shutdown + c.BadMagic + c.BadVersion + c.BadField + c.BadLength +
		c.Truncated + c.Timeout + c.RingClosed + c.ReadError
}

// Stats returns the source's counters.
func (f *FeedSource) Stats() FeedStats {
	return FeedStats{
		Conns:    int(f.conns.Load()),
		Accepted: f.accepted.Load(),
		Refused:  f.refused.Load(),
		Frames:   f.frames.Load(),
		Bytes:    f.bytes.Load(),
		Rejected: f.rejected.Load(),
		NoRing:   f.noRing.Load(),
		Closed: FeedCloseCounts{
			EOF:        f.closed[feedCloseEOF].Load(),
			Shutdown:   f.closed[feedCloseShutdown].Load(),
			BadMagic:   f.closed[feedCloseMagic].Load(),
			BadVersion: f.closed[feedCloseVersion].Load(),
			BadField:   f.closed[feedCloseField].Load(),
			BadLength:  f.closed[feedCloseLength].Load(),
			Truncated:  f.closed[feedCloseTruncated].Load(),
			Timeout:    f.closed[feedCloseTimeout].Load(),
			RingClosed: f.closed[feedCloseRingClosed].Load(),
			ReadError:  f.closed[feedCloseReadError].Load(),
		},
	}
}

// feedCloseReason indexes the per-reason counters.
type feedCloseReason uint8

const (
	feedCloseEOF feedCloseReason = iota
	feedCloseShutdown
	feedCloseMagic
	feedCloseVersion
	feedCloseField
	feedCloseLength
	feedCloseTruncated
	feedCloseTimeout
	feedCloseRingClosed
	feedCloseReadError
	feedCloseCount
)

// String is the reason as it appears in the `feed connection closed` log line.
func (r feedCloseReason) String() string {
	switch r {
	case feedCloseEOF:
		return "eof"
	case feedCloseShutdown:
		return "shutdown"
	case feedCloseMagic:
		return "bad_magic"
	case feedCloseVersion:
		return "bad_version"
	case feedCloseField:
		return "bad_field"
	case feedCloseLength:
		return "bad_length"
	case feedCloseTruncated:
		return "truncated"
	case feedCloseTimeout:
		return "timeout"
	case feedCloseRingClosed:
		return "ring_closed"
	case feedCloseReadError:
		return "read_error"
	default:
		return "unknown"
	}
}

func feedCloseReasonOf(ctx context.Context, err error) feedCloseReason {
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return feedCloseEOF
	case ctx.Err() != nil:
		// Whatever the read saw, it saw it because Run closed the connection.
		return feedCloseShutdown
	case errors.Is(err, ErrFeedMagic):
		return feedCloseMagic
	case errors.Is(err, ErrFeedVersion):
		return feedCloseVersion
	case errors.Is(err, ErrFeedField):
		return feedCloseField
	case errors.Is(err, ErrFeedLength):
		return feedCloseLength
	case errors.Is(err, ErrFeedTruncated):
		return feedCloseTruncated
	case errors.Is(err, ErrFeedTimeout):
		return feedCloseTimeout
	case errors.Is(err, ErrRingClosed):
		return feedCloseRingClosed
	default:
		return feedCloseReadError
	}
}

// logLimiter lets one log line through per feedLogInterval and counts the
// ones it held back, so the next line can say how many there were.
type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed uint64
}

func (l *logLimiter) allow(now time.Time) (suppressed uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < feedLogInterval {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
