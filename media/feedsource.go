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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipcd/ipcd/internal/droplog"
)

const (
	defaultFeedMaxConns    = 4
	maxFeedMaxConns        = 64
	defaultFeedReadTimeout = 10 * time.Second
	// DefaultFeedFirstHeader is how long a new connection has to send its
	// first complete header.
	DefaultFeedFirstHeader = 5 * time.Second
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
	// feedWriteTimeout bounds a keyframe request's write: a producer that
	// never reads its socket fills the buffer, and its requests are then
	// dropped, not queued.
	feedWriteTimeout = 100 * time.Millisecond
)

// FeedSourceConfig configures the `feed` source (§7.3): a Unix stream socket
// that the capture application connects to and pushes encoded frames into.
type FeedSourceConfig struct {
	Path string
	// MaxConns is how many producers are served at once; 0 means 4. A
	// connection becomes a producer when its first valid header arrives;
	// until then it holds no producer slot. When all slots are taken, the
	// newcomer replaces the producer that has been silent longest if that
	// one has sent nothing for media.TimelineIdle, and is closed otherwise.
	// At most MaxConns connections wait for their first header: a further
	// one closes the oldest of them.
	MaxConns int
	// ReadTimeout bounds how long the rest of a message may take once its
	// first byte arrived; 0 means 10 s. Between messages a producer may be
	// silent for as long as it likes (a paused encoder is not an error).
	ReadTimeout time.Duration
	// FirstHeaderTimeout is how long a new connection may take to send its
	// first complete header; 0 means 5 s.
	FirstHeaderTimeout time.Duration
}

// FeedSource serves the feed socket and appends each frame it receives to the
// ring of the frame's stream. One socket can carry all three streams.
type FeedSource struct {
	cfg   FeedSourceConfig
	rings map[Stream]*Ring
	log   *slog.Logger
	// logs lets the warn lines of closed and refused connections through
	// at most once per feedLogInterval each.
	logs    *droplog.Summary
	running atomic.Bool
	connID  atomic.Uint64
	epoch   time.Time // monotonic origin of feedConn.lastMsg

	lnMu sync.Mutex
	ln   *net.UnixListener // opened by Open, served by the next Run

	table *feedConns

	conns    atomic.Int64
	accepted atomic.Uint64
	refused  atomic.Uint64
	frames   atomic.Uint64
	bytes    atomic.Uint64
	rejected atomic.Uint64
	noRing   atomic.Uint64
	closed   [feedCloseCount]atomic.Uint64

	keyRequests atomic.Uint64 // keyframe requests written to a producer
	keyDropped  atomic.Uint64 // keyframe requests a producer did not take in time
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
	case cfg.FirstHeaderTimeout < 0:
		return nil, fmt.Errorf("%w: first header timeout %v is negative", ErrFeedSourceConfig, cfg.FirstHeaderTimeout)
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
	if cfg.FirstHeaderTimeout == 0 {
		cfg.FirstHeaderTimeout = DefaultFeedFirstHeader
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FeedSource{
		cfg:   cfg,
		rings: own,
		log:   log.With("component", "feedsource", "path", cfg.Path),
		epoch: time.Now(),
		table: &feedConns{max: cfg.MaxConns},
		logs:  droplog.NewGate(feedLogInterval),
	}, nil
}

// Open creates the socket, so that a path that cannot serve is reported
// before anything else starts; the next Run serves it. Run opens the socket
// itself when Open was not called. A stale socket file left by a previous
// run is removed first; a path that is not a socket, or a socket another
// process still serves, is an error. The socket is made 0660 so that the
// capture application needs to share ipcd's user or group.
func (f *FeedSource) Open() error {
	f.lnMu.Lock()
	defer f.lnMu.Unlock()
	if f.ln != nil {
		return nil
	}
	ln, err := f.listen()
	if err != nil {
		return err
	}
	f.ln = ln
	return nil
}

// takeListener returns the socket Open made, or makes one.
func (f *FeedSource) takeListener() (*net.UnixListener, error) {
	f.lnMu.Lock()
	ln := f.ln
	f.ln = nil
	f.lnMu.Unlock()
	if ln != nil {
		return ln, nil
	}
	return f.listen()
}

// Run serves the socket (see Open) until ctx ends: each connection on a
// goroutine Run waits for, at most MaxConns producers and MaxConns
// connections waiting for their first header (FeedSourceConfig.MaxConns).
//
// When ctx ends Run closes the listener and every connection, removes the
// socket file and returns nil once all connections are done. A second
// concurrent Run fails.
func (f *FeedSource) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Run is already running", ErrFeedSourceConfig)
	}
	defer f.running.Store(false)

	ln, err := f.takeListener()
	if err != nil {
		return err
	}
	f.log.Info("feed source listening", "max_conns", f.cfg.MaxConns, "read_timeout", f.cfg.ReadTimeout,
		"first_header_timeout", f.cfg.FirstHeaderTimeout)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var wg sync.WaitGroup
	conns := f.table
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
		fc := &feedConn{c: c, accepted: time.Now(), keyWake: make(chan struct{}, 1)}
		if old := conns.addPending(fc); old != nil {
			old.kick(feedCloseDisplaced)
		}
		wg.Go(func() {
			defer c.Close()
			defer conns.remove(fc)
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			wctx, wcancel := context.WithCancel(ctx)
			var writer sync.WaitGroup
			writer.Go(func() { f.writeKeyframeRequests(wctx, fc) })
			_ = f.serveConn(ctx, fc, conns) // counts and logs why the connection ended
			wcancel()
			writer.Wait()
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
// something that is not a valid message, or ctx ends. It serves a producer on
// any byte stream (a FIFO, stdin) as Run serves each connection, without the
// first-header deadline and producer slots that only concern the socket.
//
// If r has SetReadDeadline (a net.Conn, an *os.File on a pipe), a message must
// be complete within ReadTimeout of its first byte. ctx is checked between
// messages; to interrupt a blocked read, close r.
//
// Each stream the producer sends starts a Timeline on its ring, closed when
// Serve returns: a producer that reconnects starts new timelines, rebased
// onto the rings' clocks. A frame the ring refuses is counted and dropped and
// the stream goes on; nothing is appended from a message that is incomplete
// or malformed. The result is why the stream ended: nil at EOF on a message
// boundary, ctx.Err() when ctx ended, otherwise an error wrapping
// ErrFeedTruncated, ErrFeedTimeout, ErrFeedMagic, ErrFeedVersion,
// ErrFeedField, ErrFeedLength, ErrRingClosed or the read error. Each ending
// is counted in FeedStats.Closed and logged, at warn level when the producer
// is at fault.
func (f *FeedSource) Serve(ctx context.Context, r io.Reader) error {
	return f.serveStream(ctx, r, nil, nil)
}

// serveConn is Serve for a socket connection: its first header must arrive
// within FirstHeaderTimeout, and it must win a producer slot before its
// first frame is appended.
func (f *FeedSource) serveConn(ctx context.Context, fc *feedConn, conns *feedConns) error {
	return f.serveStream(ctx, fc.c, fc, conns)
}

func (f *FeedSource) serveStream(ctx context.Context, r io.Reader, fc *feedConn, conns *feedConns) error {
	log := f.log.With("conn", f.connID.Add(1))
	f.accepted.Add(1)
	f.conns.Add(1)
	defer f.conns.Add(-1)
	log.Info("feed connection accepted")

	d := newFeedReader(r, f.cfg.ReadTimeout)
	var admit func() error
	if fc != nil {
		d.firstBy = fc.accepted.Add(f.cfg.FirstHeaderTimeout)
		admit = func() error {
			now := time.Now()
			fc.touch(f.epoch, now)
			switch old, err := conns.promote(fc, f.epoch, now); {
			case err != nil:
				return err
			case old != nil:
				old.kick(feedCloseReplaced)
				log.Info("feed producer replaced a silent one", "silent_for",
					now.Sub(f.epoch)-time.Duration(old.lastMsg.Load()))
			}
			log.Info("feed producer connected")
			return nil
		}
	}
	var st feedConnStats
	err := f.serve(ctx, d, &st, log, fc, admit)
	reason := feedCloseReasonOf(ctx, err)
	if fc != nil {
		if k := fc.kicked.Load(); k != 0 {
			// Closed by the source itself: that, not the failed read, is why.
			reason = feedCloseReason(k - 1)
		}
	}
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
	case reason == feedCloseRefused:
		f.refused.Add(1)
		if ok, n := f.logs.Note("refused"); ok {
			log.Warn("feed connection refused", "reason", "max_conns", "max_conns", f.cfg.MaxConns,
				"refused_since_last_log", n)
		}
	default:
		if ok, n := f.logs.Note("closed"); ok {
			errText := reason.String()
			if err != nil {
				errText = err.Error()
			}
			log.Warn("feed connection closed", append(attrs, "error", errText, "suppressed_since_last_log", n)...)
		}
	}
	return err
}

type feedConnStats struct {
	frames, bytes, rejected, noRing uint64
}

// serve appends the frames of d. admit, if set, runs once the first header
// has arrived, before its frame is appended; an error from it ends the
// stream.
func (f *FeedSource) serve(ctx context.Context, d *feedReader, st *feedConnStats, log *slog.Logger,
	fc *feedConn, admit func() error) error {
	var warnedNoRing [StreamAudio + 1]bool
	var timelines [StreamAudio + 1]*Timeline
	defer func() {
		for _, tl := range timelines {
			if tl != nil {
				tl.Close()
			}
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, payload, err := d.next()
		if err != nil {
			return err
		}
		if admit != nil {
			if err := admit(); err != nil {
				return err
			}
			admit = nil
		} else if fc != nil {
			fc.touch(f.epoch, time.Now())
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
		tl := timelines[h.Stream]
		if tl == nil {
			tl = ring.NewTimeline()
			timelines[h.Stream] = tl
		}
		err = tl.Append(Frame{
			Stream:    h.Stream,
			Kind:      h.Kind,
			Codec:     h.Codec,
			PTS:       h.PTS,
			Timestamp: h.Timestamp,
			Payload:   payload,
		})
		switch {
		case err == nil:
			if fc != nil && h.Stream.IsVideo() {
				fc.streams.Or(1 << h.Stream)
			}
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

// feedConn is one accepted socket connection.
type feedConn struct {
	c        net.Conn
	accepted time.Time
	lastMsg  atomic.Int64 // since FeedSource.epoch, when the last complete header arrived
	kicked   atomic.Int32 // 1 + the feedCloseReason of the source closing it, 0 if it did not
	producer bool         // guarded by feedConns.mu
	// streams has bit 1<<s set for each video stream s the connection
	// has fed; keyReq the streams a keyframe is asked of, taken by the
	// connection's request writer when keyWake fires.
	streams atomic.Uint32
	keyReq  atomic.Uint32
	keyWake chan struct{}
	// dead: a request write failed or timed out; the producer is not
	// reading and gets no more.
	dead atomic.Bool
}

func (fc *feedConn) touch(epoch, now time.Time) { fc.lastMsg.Store(int64(now.Sub(epoch))) }

// kick closes the connection for reason; its serving goroutine then ends.
func (fc *feedConn) kick(reason feedCloseReason) {
	fc.kicked.CompareAndSwap(0, int32(reason)+1)
	fc.c.Close()
}

// feedConns is the table of a Run's connections: those waiting for their
// first header, and the producers, each group at most max.
type feedConns struct {
	max       int
	mu        sync.Mutex
	pending   []*feedConn // oldest first
	producers []*feedConn
}

// addPending adds fc and returns the oldest waiting connection if it must
// make room.
func (t *feedConns) addPending(fc *feedConn) (evict *feedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) >= t.max {
		evict = t.pending[0]
		t.pending = slices.Delete(t.pending, 0, 1)
	}
	t.pending = append(t.pending, fc)
	return evict
}

// promote makes fc a producer. With every slot taken, it takes the slot of
// the producer silent longest if that one has been silent for TimelineIdle,
// and returns it to be closed; otherwise it fails with ErrFeedBusy.
func (t *feedConns) promote(fc *feedConn, epoch, now time.Time) (replaced *feedConn, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i := slices.Index(t.pending, fc); i >= 0 {
		t.pending = slices.Delete(t.pending, i, i+1)
	}
	if len(t.producers) >= t.max {
		oldest := 0
		for i, p := range t.producers {
			if p.lastMsg.Load() < t.producers[oldest].lastMsg.Load() {
				oldest = i
			}
		}
		old := t.producers[oldest]
		if now.Sub(epoch)-time.Duration(old.lastMsg.Load()) < TimelineIdle {
			return nil, fmt.Errorf("%w: %d producers, all sent within %v", ErrFeedBusy, t.max, TimelineIdle)
		}
		t.producers = slices.Delete(t.producers, oldest, oldest+1)
		old.producer = false
		replaced = old
	}
	fc.producer = true
	t.producers = append(t.producers, fc)
	return replaced, nil
}

// RequestKeyframe asks the producers that feed video stream s for a
// keyframe: each gets a keyframe request message (docs/feed.md) from its
// connection's writer. It never blocks; requests not yet written coalesce,
// and a producer that does not read its socket loses them (counted in
// FeedStats.KeyframeDropped). A stream fed through Serve gets none: there
// is no way back.
func (f *FeedSource) RequestKeyframe(s Stream) {
	if !s.IsVideo() {
		return
	}
	t := f.table
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, fc := range t.producers {
		if fc.streams.Load()&(1<<s) == 0 {
			continue
		}
		if fc.dead.Load() {
			f.keyDropped.Add(1)
			continue
		}
		fc.keyReq.Or(1 << s)
		select {
		case fc.keyWake <- struct{}{}:
		default:
		}
	}
}

// writeKeyframeRequests writes the keyframe requests of fc until ctx ends.
// Each write has feedWriteTimeout: a producer that does not read loses the
// request, never holds a goroutine of the source.
func (f *FeedSource) writeKeyframeRequests(ctx context.Context, fc *feedConn) {
	var msg []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-fc.keyWake:
		}
		pending := fc.keyReq.Swap(0)
		for _, s := range []Stream{StreamMain, StreamSub} {
			if pending&(1<<s) == 0 {
				continue
			}
			msg = AppendFeedKeyframeRequest(msg[:0], s, time.Now().UnixMilli())
			err := fc.c.SetWriteDeadline(time.Now().Add(feedWriteTimeout))
			if err == nil {
				_, err = fc.c.Write(msg)
			}
			if err != nil {
				// A timed-out write may have written part of the message:
				// the producer would read garbage from here on, so it
				// gets no more.
				f.keyDropped.Add(1)
				fc.dead.Store(true)
				return
			}
			f.keyRequests.Add(1)
		}
	}
}

func (t *feedConns) remove(fc *feedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i := slices.Index(t.pending, fc); i >= 0 {
		t.pending = slices.Delete(t.pending, i, i+1)
	}
	if i := slices.Index(t.producers, fc); i >= 0 {
		t.producers = slices.Delete(t.producers, i, i+1)
	}
}

func (t *feedConns) counts() (pending, producers int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending), len(t.producers)
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
	// firstBy, if set, is when the first header must be complete.
	firstBy time.Time
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
	if !d.firstBy.IsZero() {
		h, err := d.firstHeader()
		if err != nil {
			return FeedHeader{}, nil, err
		}
		return d.payload(h)
	}
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
	return d.payload(h)
}

// firstHeader reads the first header of a connection, which must be
// complete by firstBy.
func (d *feedReader) firstHeader() (FeedHeader, error) {
	by := d.firstBy
	d.firstBy = time.Time{}
	if d.dl != nil {
		if err := d.dl.SetReadDeadline(by); err != nil {
			return FeedHeader{}, err
		}
	}
	if _, err := io.ReadFull(d.br, d.hdr[:]); err != nil {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return FeedHeader{}, fmt.Errorf("%w: %w", ErrFeedNoHeader, err)
		case errors.Is(err, io.EOF):
			return FeedHeader{}, io.EOF
		}
		return FeedHeader{}, feedReadError(err)
	}
	h, err := DecodeFeedHeader(d.hdr[:])
	if err != nil {
		return FeedHeader{}, err
	}
	if d.dl != nil {
		if err := d.dl.SetReadDeadline(time.Now().Add(d.timeout)); err != nil {
			return FeedHeader{}, err
		}
	}
	return h, nil
}

// payload reads the payload that follows h.
func (d *feedReader) payload(h FeedHeader) (FeedHeader, []byte, error) {
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
	Conns     int    // connections being served now
	Pending   int    // of those, socket connections still waiting for their first header
	Producers int    // socket connections holding a producer slot
	Accepted  uint64 // connections served
	Refused   uint64 // connections closed because MaxConns producers were live
	Frames    uint64 // frames appended to a ring
	Bytes     uint64 // payload bytes of those frames
	Rejected  uint64 // complete frames a ring refused (§7.1 rules; the ring's stats say which)
	NoRing    uint64 // complete frames of a stream this source has no ring for
	Closed    FeedCloseCounts
	// KeyframeRequests were written to producers; KeyframeDropped could
	// not be, because the producer did not read its socket.
	KeyframeRequests uint64
	KeyframeDropped  uint64
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
	NoHeader   uint64 // no complete first header within FirstHeaderTimeout
	Displaced  uint64 // still without a header when MaxConns newer connections arrived
	Replaced   uint64 // a silent producer whose slot a new producer took
	Refused    uint64 // a new producer while MaxConns producers were live
}

// Total sums all reasons.
func (c FeedCloseCounts) Total() uint64 {
	return c.EOF + c.Shutdown + c.BadMagic + c.BadVersion + c.BadField + c.BadLength +
		c.Truncated + c.Timeout + c.RingClosed + c.ReadError + c.NoHeader + c.Displaced +
		c.Replaced + c.Refused
}

// Stats returns the source's counters.
func (f *FeedSource) Stats() FeedStats {
	st := FeedStats{
		Conns:    int(f.conns.Load()),
		Accepted: f.accepted.Load(),
		Refused:  f.refused.Load(),
		Frames:   f.frames.Load(),
		Bytes:    f.bytes.Load(),
		Rejected: f.rejected.Load(),
		NoRing:   f.noRing.Load(),

		KeyframeRequests: f.keyRequests.Load(),
		KeyframeDropped:  f.keyDropped.Load(),
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
			NoHeader:   f.closed[feedCloseNoHeader].Load(),
			Displaced:  f.closed[feedCloseDisplaced].Load(),
			Replaced:   f.closed[feedCloseReplaced].Load(),
			Refused:    f.closed[feedCloseRefused].Load(),
		},
	}
	st.Pending, st.Producers = f.table.counts()
	return st
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
	feedCloseNoHeader
	feedCloseDisplaced
	feedCloseReplaced
	feedCloseRefused
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
	case feedCloseNoHeader:
		return "no_header"
	case feedCloseDisplaced:
		return "displaced"
	case feedCloseReplaced:
		return "replaced"
	case feedCloseRefused:
		return "max_conns"
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
	case errors.Is(err, ErrFeedNoHeader):
		return feedCloseNoHeader
	case errors.Is(err, ErrFeedBusy):
		return feedCloseRefused
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
