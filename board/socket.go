package board

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

// Limits of the board socket.
const (
	// MaxReaders is how many board processes may be connected at once; a
	// further connection gets an error line and is closed.
	MaxReaders = 4
	// MaxLine bounds one command line, newline included.
	MaxLine = 1024
	// writeTimeout is how long one write to a reader may block before the
	// reader counts as stuck and is disconnected.
	writeTimeout = 2 * time.Second
	// commandTimeout bounds a handler serving a command.
	commandTimeout = 2 * time.Second
	// maxSocketPath is the room in sockaddr_un.sun_path, NUL excluded.
	maxSocketPath = 107
)

// Handlers serve the board's commands. Each runs on the goroutine of the
// connection that sent the command; a nil handler answers ResUnavailable.
type Handlers struct {
	Privacy  func(on bool) error
	Keyframe func(stream string) error
	Status   func(ctx context.Context) any
}

// Defaults of the board section, also taken by a field left zero.
const (
	DefaultQueueSize   = 256
	DefaultHookTimeout = 5 * time.Second
	defaultHookQueue   = 32
)

// Config is the board section of the daemon's configuration.
type Config struct {
	// Socket is the path of the Unix socket; empty means no socket. It is
	// off unless a board profile sets it: a development machine has no
	// /run/ipcd, and tests run many daemons side by side.
	Socket string `yaml:"socket"`
	// QueueSize bounds the events waiting for one reader. A reader that
	// lets it fill is disconnected.
	QueueSize int `yaml:"queue_size"`
	// OnEvent is a program run once per event, one at a time; empty means
	// none. See Hook.
	OnEvent     string        `yaml:"on_event"`
	HookTimeout time.Duration `yaml:"hook_timeout"`
	HookQueue   int           `yaml:"-"`
}

// DefaultConfig returns the defaults of the board section.
func DefaultConfig() Config {
	return Config{QueueSize: DefaultQueueSize, HookTimeout: DefaultHookTimeout}
}

// SetDefaults makes c the defaults of the board section; the
// configuration composes its sections' defaults through it.
func (c *Config) SetDefaults() { *c = DefaultConfig() }

func (c *Config) setDefaults() {
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.HookTimeout == 0 {
		c.HookTimeout = DefaultHookTimeout
	}
	if c.HookQueue == 0 {
		c.HookQueue = defaultHookQueue
	}
}

// Server is the board integration: it writes every event to the readers of
// the board socket and to the exec hook, and serves the board's commands.
// Publish never blocks: each reader has its own bounded queue served by its
// own goroutine, and a reader that falls behind is dropped, not waited for.
type Server struct {
	cfg Config
	h   Handlers
	log *slog.Logger
	ln  net.Listener // nil without a socket

	mu    sync.Mutex // orders Publish; guards seq and conns
	seq   uint64
	conns map[*conn]struct{}

	hook *hook // nil without OnEvent

	dropped      atomic.Uint64 // events a full reader queue refused
	disconnected atomic.Uint64 // readers dropped for being slow
	refused      sync.Map      // rule -> *atomic.Uint64, refused commands
}

// NewServer listens on cfg.Socket (replacing a stale socket file left by a
// crash) so that the board can connect as soon as it returns.
func NewServer(cfg Config, h Handlers, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	log = log.With("component", "board")
	s := &Server{cfg: cfg, h: h, log: log, conns: map[*conn]struct{}{}}
	if cfg.OnEvent != "" {
		s.hook = newHook(cfg.OnEvent, cfg.HookTimeout, cfg.HookQueue, log)
	}
	if cfg.Socket == "" {
		return s, nil
	}
	if len(cfg.Socket) > maxSocketPath {
		return nil, fmt.Errorf("%w: socket path of %d bytes, limit %d", ErrConfig, len(cfg.Socket), maxSocketPath)
	}
	if fi, err := os.Lstat(cfg.Socket); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("%w: %s exists and is not a socket", ErrConfig, cfg.Socket)
		}
		if err := os.Remove(cfg.Socket); err != nil {
			return nil, fmt.Errorf("board socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("board socket: %w", err)
	}
	// The board's processes run as root or in ipcd's group.
	if err := os.Chmod(cfg.Socket, 0o660); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("board socket: %w", err)
	}
	s.ln = ln
	return s, nil
}

// Dropped is how many events full reader queues refused.
func (s *Server) Dropped() uint64 { return s.dropped.Load() }

// Disconnected is how many readers were dropped for not reading.
func (s *Server) Disconnected() uint64 { return s.disconnected.Load() }

// HookDropped is how many events the full hook queue refused.
func (s *Server) HookDropped() uint64 {
	if s.hook == nil {
		return 0
	}
	return s.hook.dropped.Load()
}

// Readers is how many board processes are connected.
func (s *Server) Readers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Publish numbers e and queues it for every reader and the hook. It never
// blocks on a reader.
func (s *Server) Publish(e Event) {
	e.Type = "event"
	if e.T == 0 {
		e.T = time.Now().UnixMilli()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	e.Seq = s.seq
	line, err := json.Marshal(e)
	if err != nil {
		s.log.Error("encode board event", "event", e.Event, "err", err)
		return
	}
	line = append(line, '\n')
	for c := range s.conns {
		if !c.send(line) {
			s.dropped.Add(1)
			c.kick("queue full: the reader does not keep up")
		}
	}
	if s.hook != nil {
		s.hook.enqueue(e, line)
	}
}

// Run accepts readers and runs the hook until ctx ends, then closes every
// connection, removes the socket file and returns once all its goroutines
// have exited.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if s.hook != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.hook.run(ctx)
		}()
	}
	if s.ln == nil {
		wg.Wait()
		return nil
	}
	s.log.Info("board socket listening", "path", s.cfg.Socket)
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-stop:
		}
		_ = s.ln.Close()
	}()
	var err error
	for {
		nc, aerr := s.ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("board socket: %w", aerr)
			}
			break
		}
		s.admit(ctx, &wg, nc)
	}
	close(stop)
	s.mu.Lock()
	for c := range s.conns {
		c.kick("shutdown")
	}
	s.mu.Unlock()
	wg.Wait()
	_ = os.Remove(s.cfg.Socket)
	return err
}

// admit registers a new reader, or refuses it when MaxReaders are
// connected.
func (s *Server) admit(ctx context.Context, wg *sync.WaitGroup, nc net.Conn) {
	s.mu.Lock()
	full := len(s.conns) >= MaxReaders
	var c *conn
	if !full {
		c = &conn{nc: nc, q: make(chan []byte, s.cfg.QueueSize), kicked: make(chan struct{})}
		s.conns[c] = struct{}{}
	}
	n := len(s.conns)
	s.mu.Unlock()
	if full {
		s.log.Warn("board reader refused", "rule", string(RuleTooManyReaders), "max", MaxReaders)
		_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, _ = nc.Write(replyLine(Reply{Res: ResUnavailable, Error: "too many readers", Rule: "too_many_readers"}))
		_ = nc.Close()
		return
	}
	s.log.Info("board reader connected", "readers", n)
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.write(ctx, c)
	}()
	go func() {
		defer wg.Done()
		s.read(ctx, c)
	}()
}

// conn is one connected board process.
type conn struct {
	nc      net.Conn
	q       chan []byte
	kicked  chan struct{}
	once    sync.Once
	reason  atomic.Pointer[string]
	dropped atomic.Uint64
}

// send queues a line without blocking; false means the queue is full.
func (c *conn) send(line []byte) bool {
	select {
	case c.q <- line:
		return true
	default:
		c.dropped.Add(1)
		return false
	}
}

// kick asks the connection's writer to close it; the first reason wins.
func (c *conn) kick(reason string) {
	c.once.Do(func() {
		c.reason.Store(&reason)
		close(c.kicked)
	})
}

// write is the only goroutine that writes to c and the one that closes it.
func (s *Server) write(ctx context.Context, c *conn) {
	defer func() {
		_ = c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		n := len(s.conns)
		s.mu.Unlock()
		reason := "closed"
		if r := c.reason.Load(); r != nil {
			reason = *r
		}
		if reason == "closed by the board" || reason == "shutdown" {
			s.log.Info("board reader disconnected", "reason", reason, "readers", n)
		} else {
			s.disconnected.Add(1)
			s.log.Warn("board reader disconnected", "reason", reason, "dropped", c.dropped.Load(), "readers", n)
		}
	}()
	for {
		select {
		case <-c.kicked:
			return
		case <-ctx.Done():
			c.kick("shutdown")
			return
		case line := <-c.q:
			_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := c.nc.Write(line); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					c.kick(fmt.Sprintf("write blocked %s: the reader does not read", writeTimeout))
				} else {
					c.kick("write: " + err.Error())
				}
				return
			}
		}
	}
}

// read serves the board's commands, one line each, until the board closes
// its side or the writer closes the connection.
func (s *Server) read(ctx context.Context, c *conn) {
	br := bufio.NewReaderSize(c.nc, MaxLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			s.logRefused(RuleLineTooLong, "limit", MaxLine)
			s.reply(c, Reply{Res: ResBadRequest, Error: ErrLineTooLong.Error(), Rule: "line_too_long"})
			if !discardLine(br) {
				c.kick("closed by the board")
				return
			}
			continue
		case err != nil:
			if errors.Is(err, io.EOF) {
				c.kick("closed by the board")
			} else {
				c.kick("read: " + err.Error())
			}
			return
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		s.reply(c, s.serve(ctx, line))
	}
}

// discardLine skips the rest of an overlong line; false when the
// connection ended first.
func discardLine(br *bufio.Reader) bool {
	for {
		_, err := br.ReadSlice('\n')
		if err == nil {
			return true
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return false
		}
	}
}

// serve runs one command and builds its reply.
func (s *Server) serve(ctx context.Context, line []byte) Reply {
	cmd, err := DecodeCommand(line)
	r := Reply{Req: cmd.Req}
	if err != nil {
		r.Res, r.Error, r.Rule = ResBadRequest, err.Error(), string(RuleMalformed)
		switch {
		case errors.Is(err, ErrUnknownCommand):
			r.Res, r.Rule = ResUnknown, string(RuleUnknownCommand)
		case errors.Is(err, ErrBadValue):
			r.Rule = string(RuleBadValue)
		}
		s.logRefused(Rule(r.Rule), "err", err)
		return r
	}
	var herr error
	switch cmd.Cmd {
	case CmdPrivacy:
		if s.h.Privacy == nil {
			herr = ErrUnavailable
		} else {
			herr = s.h.Privacy(*cmd.Value == 1)
		}
		s.log.Info("board command", "cmd", cmd.Cmd, "value", *cmd.Value, "err", herr)
	case CmdKeyframe:
		if s.h.Keyframe == nil {
			herr = ErrUnavailable
		} else {
			herr = s.h.Keyframe(cmd.Stream)
		}
		s.log.Debug("board command", "cmd", cmd.Cmd, "stream", cmd.Stream, "err", herr)
	case CmdStatus:
		if s.h.Status == nil {
			herr = ErrUnavailable
		} else {
			cctx, cancel := context.WithTimeout(ctx, commandTimeout)
			r.Status = s.h.Status(cctx)
			cancel()
		}
	}
	if herr != nil {
		r.Res, r.Error = ResUnavailable, herr.Error()
	}
	return r
}

// reply queues r for the connection like an event; a reader whose queue
// is full is disconnected.
func (s *Server) reply(c *conn, r Reply) {
	if !c.send(replyLine(r)) {
		c.kick("queue full: the reader does not keep up")
	}
}

func replyLine(r Reply) []byte {
	r.Type = "reply"
	b, err := json.Marshal(r)
	if err != nil {
		// Only Status can fail to encode: answer without it.
		b, _ = json.Marshal(Reply{Type: "reply", Req: r.Req, Res: ResUnavailable, Error: "encode status: " + err.Error()})
	}
	return append(b, '\n')
}

// DecodeCommand decodes and checks one command line.
func DecodeCommand(line []byte) (Command, error) {
	var c Command
	if len(line) > MaxLine {
		return c, fmt.Errorf("%w: %d bytes, limit %d", ErrLineTooLong, len(line), MaxLine)
	}
	if err := json.Unmarshal(line, &c); err != nil {
		var r struct {
			Req int64 `json:"req"`
		}
		_ = json.Unmarshal(line, &r) // best effort, for the reply
		return Command{Req: r.Req}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch c.Cmd {
	case "":
		return c, fmt.Errorf("%w: no cmd", ErrMalformed)
	case CmdPrivacy:
		if c.Value == nil || (*c.Value != 0 && *c.Value != 1) {
			return c, fmt.Errorf("%w: privacy needs value 1 (on) or 0 (off)", ErrBadValue)
		}
	case CmdKeyframe:
		switch c.Stream {
		case "":
			c.Stream = "main"
		case "main", "sub":
		default:
			return c, fmt.Errorf("%w: stream must be main or sub, got %q", ErrBadValue, truncate(c.Stream, 32))
		}
	case CmdStatus:
	default:
		return c, fmt.Errorf("%w: %q", ErrUnknownCommand, truncate(c.Cmd, 32))
	}
	return c, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// logRefused logs a refused command at the 1st, 2nd, 4th, 8th, ... time
// its rule is broken, with the count: a board stuck in a loop of bad
// commands does not flood the log.
func (s *Server) logRefused(rule Rule, args ...any) {
	c, _ := s.refused.LoadOrStore(rule, new(atomic.Uint64))
	n := c.(*atomic.Uint64).Add(1)
	if n&(n-1) == 0 {
		s.log.Warn("drop board command", append([]any{"rule", string(rule), "count", n}, args...)...)
	}
}
