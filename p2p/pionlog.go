package p2p

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/pion/logging"
)

// pionLogs routes pion's logging into slog, one level down: what pion calls
// an error (a failed STUN read from a departed peer, say) is routine for a
// camera serving many short sessions, and pion's own logger would write to
// stderr past the configured format.
//
// pion asks for a logger per component of every peer connection (ICE,
// DTLS, SCTP, SRTP, ...); a handful of scopes in all, so one logger per
// scope serves every connection instead of a handler clone each.
type pionLogs struct {
	log    *slog.Logger
	scopes *sync.Map // scope -> pionLogger
}

func newPionLogs(log *slog.Logger) pionLogs { return pionLogs{log: log, scopes: new(sync.Map)} }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	if l, ok := f.scopes.Load(scope); ok {
		return l.(pionLogger)
	}
	l, _ := f.scopes.LoadOrStore(scope, pionLogger{log: f.log.With("pion", scope)})
	return l.(pionLogger)
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

// Trace and Debug are pion's packet-level chatter; they stay below debug.
func (l pionLogger) Trace(string)                   {}
func (l pionLogger) Tracef(string, ...any)          {}
func (l pionLogger) Debug(string)                   {}
func (l pionLogger) Debugf(string, ...any)          {}
func (l pionLogger) Info(msg string)                { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Infof(format string, a ...any)  { l.logf(slog.LevelDebug, format, a...) }
func (l pionLogger) Warn(msg string)                { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Warnf(format string, a ...any)  { l.logf(slog.LevelDebug, format, a...) }
func (l pionLogger) Error(msg string)               { l.logf(slog.LevelInfo, "%s", msg) }
func (l pionLogger) Errorf(format string, a ...any) { l.logf(slog.LevelInfo, format, a...) }
