package p2p

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// ControlPrivacy is the 312 type that turns privacy mode on (cmdValue 1)
// or off (0).
const ControlPrivacy = "privacy"

// ResNotAuthorized answers a 312 privacy request from an app that has no
// session and no valid auth token.
const ResNotAuthorized = 6

// Who changes privacy mode, as the PrivacyOn/Off events name it.
const (
	PrivacyByApp   = "app"
	PrivacyByBoard = "board"
	PrivacyByStore = "store"
)

// live is the set of running sessions as their own goroutines see it:
// privacy mode reaches them through it without a request to the service
// loop, and its size is the load the board is told about.
type live struct {
	privacy atomic.Bool
	mu      sync.Mutex
	set     map[*session]struct{}
}

// Privacy reports whether privacy mode is on.
func (s *Service) Privacy() bool { return s.live.privacy.Load() }

// SetPrivacy turns privacy mode on or off and reports whether it changed.
// While it is on every offer is refused with close reason 2 and every live
// session is closed with it. Any goroutine may call it; it never waits on
// the service loop.
func (s *Service) SetPrivacy(on bool, by string) bool {
	l := &s.live
	l.mu.Lock()
	if l.privacy.Swap(on) == on {
		l.mu.Unlock()
		return false
	}
	n := 0
	if on {
		for se := range l.set {
			se.stop(ClosePrivacy, true)
			n++
		}
	}
	l.mu.Unlock()
	s.log.Info("privacy mode", "on", on, "by", by, "closing_sessions", n)
	typ := EventPrivacyOff
	if on {
		typ = EventPrivacyOn
	}
	s.events.emitDetail(typ, "", boolInt(on), by)
	return true
}

// refusePrivate refuses an offer while privacy mode is on.
func (s *Service) refusePrivate(h Header, log *slog.Logger) bool {
	if !s.live.privacy.Load() {
		return false
	}
	log.Warn("privacy mode", "reason", "privacy mode is on: offer refused")
	s.refuse(h, ClosePrivacy)
	return true
}

// enter adds a starting session to the live set; a session that starts
// just as privacy mode goes on is stopped at once.
func (se *session) enter() {
	l := &se.svc.live
	l.mu.Lock()
	if l.set == nil {
		l.set = map[*session]struct{}{}
	}
	l.set[se] = struct{}{}
	n := len(l.set)
	private := l.privacy.Load()
	l.mu.Unlock()
	if private {
		se.stop(ClosePrivacy, true)
	}
	se.svc.events.emit(EventSessionStart, se.id, 0)
	se.svc.events.emit(EventLiveLoadAdjust, se.id, n)
}

// leave removes an ending session and tells the board why it ended.
func (se *session) leave(r CloseReason) {
	l := &se.svc.live
	l.mu.Lock()
	delete(l.set, se)
	n := len(l.set)
	l.mu.Unlock()
	se.svc.events.emitDetail(EventSessionStop, se.id, int(r), r.String())
	se.svc.events.emit(EventLiveLoadAdjust, se.id, n)
}

// controlPrivacy serves 312 privacy. The app proves itself with a live
// session of its own or, since privacy mode leaves it none, with an auth
// token in msg.auth as its offers carry.
func (s *Service) controlPrivacy(se *session, h Header, v int, data []byte, reply func(int, string), log *slog.Logger) {
	if v != 0 && v != 1 {
		reply(ResBadRequest, fmt.Sprintf("cmdValue %d: want 1 (on) or 0 (off)", v))
		return
	}
	if se == nil || se.header.From != h.From {
		var m struct {
			Msg struct {
				Auth string `json:"auth"`
			} `json:"msg"`
		}
		_ = json.Unmarshal(data, &m) // decoded once already by DecodeControl
		if err := VerifyAuth(m.Msg.Auth, s.cred.P2PPassword, s.cred.DevID, h.From, s.cfg.Now()); err != nil {
			log.Warn("auth failed", "reason", authReason(err), "type", ControlPrivacy, "err", err)
			reply(ResNotAuthorized, "auth failed")
			return
		}
	}
	s.SetPrivacy(v == 1, PrivacyByApp)
	reply(ResOK, "")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
