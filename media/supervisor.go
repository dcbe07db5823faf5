package media

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Source is a frame source: Run feeds its rings until ctx ends.
type Source interface {
	Run(ctx context.Context) error
}

// Opener is a Source whose start can fail at once, as a socket to create
// does. Open makes what the next Run serves, so that the failure is known
// when the Supervisor starts rather than whenever Run gets to it.
type Opener interface {
	Open() error
}

const (
	defaultMinBackoff = 250 * time.Millisecond
	defaultMaxBackoff = 15 * time.Second
)

// SupervisorConfig sets the restart backoff: the delay after the n-th failure
// in a row is drawn from [d/2, d) with d = MinBackoff·2^(n-1), at most
// MaxBackoff. A run that lasted MaxBackoff resets the count.
type SupervisorConfig struct {
	MinBackoff time.Duration // 0 means 250 ms
	MaxBackoff time.Duration // 0 means 15 s
}

// Supervisor runs sources and restarts any that fails, so a source whose
// socket path or device is not usable yet starts serving once it is. Each
// failure is logged when it happens (`media source failed`, with the error
// and the delay before the next try): the first of a run of failures as an
// error, the retries as warnings.
type Supervisor struct {
	cfg     SupervisorConfig
	log     *slog.Logger
	sources []supervised
	started chan struct{}
}

type supervised struct {
	name string
	src  Source
}

// NewSupervisor returns an empty Supervisor. A nil logger discards.
func NewSupervisor(cfg SupervisorConfig, log *slog.Logger) *Supervisor {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{cfg: cfg, log: log.With("component", "media"), started: make(chan struct{})}
}

// Add registers a source under a name for the logs. Call it before Run.
func (s *Supervisor) Add(name string, src Source) {
	s.sources = append(s.sources, supervised{name: name, src: src})
}

// Started is closed once Run has opened every Opener once, and logged the
// ones that failed.
func (s *Supervisor) Started() <-chan struct{} { return s.started }

// Run starts every source and restarts each one that fails, until ctx ends;
// it returns when all have returned. A source that ends without an error
// (a file played once, stdin closed) is not restarted. Only an error that no
// restart can cure, a closed ring, is returned.
func (s *Supervisor) Run(ctx context.Context) error {
	first := make([]error, len(s.sources))
	for i, sv := range s.sources {
		if o, ok := sv.src.(Opener); ok {
			first[i] = o.Open()
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(s.sources))
	delays := make([]time.Duration, len(s.sources))
	for i, sv := range s.sources {
		if first[i] != nil {
			delays[i] = s.backoff(1)
			s.logFailure(sv.name, first[i], 1, delays[i])
		}
	}
	close(s.started)
	for i, sv := range s.sources {
		wg.Go(func() { errs[i] = s.keep(ctx, sv, first[i], delays[i]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// keep runs one source until ctx ends. err, if not nil, is the failure of
// its first Open, already logged with delay.
func (s *Supervisor) keep(ctx context.Context, sv supervised, err error, delay time.Duration) error {
	failures := 0
	if err != nil {
		failures = 1
	}
	for {
		if err == nil {
			began := time.Now()
			err = sv.src.Run(ctx)
			switch {
			case ctx.Err() != nil:
				return nil
			case err == nil:
				s.log.Info("media source ended", "source", sv.name)
				return nil
			case errors.Is(err, ErrRingClosed):
				s.log.Error("media source stopped", "source", sv.name, "err", err)
				return err
			}
			if time.Since(began) >= s.cfg.MaxBackoff {
				failures = 0
			}
			failures++
			delay = s.backoff(failures)
			s.logFailure(sv.name, err, failures, delay)
		}
		if sleepCtx(ctx, delay) != nil {
			return nil
		}
		err = nil
		if o, ok := sv.src.(Opener); ok {
			if err = o.Open(); err != nil {
				failures++
				delay = s.backoff(failures)
				s.logFailure(sv.name, err, failures, delay)
			}
		}
	}
}

// logFailure logs the first failure in a row as an error and the retries as
// warnings; the backoff bounds them to one line per MaxBackoff.
func (s *Supervisor) logFailure(name string, err error, failures int, delay time.Duration) {
	level := slog.LevelWarn
	if failures == 1 {
		level = slog.LevelError
	}
	s.log.Log(context.Background(), level, "media source failed", "source", name, "err", err,
		"failures", failures, "retry_in", delay.Round(time.Millisecond))
}

// backoff is the delay after the n-th failure in a row.
func (s *Supervisor) backoff(n int) time.Duration {
	d := s.cfg.MinBackoff
	for i := 1; i < n && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}
