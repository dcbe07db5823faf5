package p2p

import "time"

// Refusal rate per app: a burst, then a steady trickle. A real app that is
// refused waits for the reply before it retries, so it never comes near.
const (
	refusalBurst = 10
	refusalRate  = 2 // per second
	// maxTracked bounds the apps the service keeps a refusal budget or an
	// ended session for; beyond it the oldest are forgotten.
	maxTracked = 1024
	// recentEnd is how long an ended session is remembered, so that the
	// app's late disconnect or candidates for it are expected, not odd.
	recentEnd = 10 * time.Second
	// penaltyTime is how long the offers of an app that floods with bad
	// auth are dropped unread.
	penaltyTime = time.Second
)

type tokenBucket struct {
	tokens float64
	at     time.Time
}

// take spends a token if one is there, refilling at rate per second up to
// burst.
func (b *tokenBucket) take(now time.Time, rate, burst float64) bool {
	b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// allowRefusal reports whether the app from may be sent another refusal.
func (s *Service) allowRefusal(from string) bool {
	now := time.Now()
	b := s.refusals[from]
	if b == nil {
		if len(s.refusals) >= maxTracked {
			s.prune(now)
		}
		if len(s.refusals) >= maxTracked {
			return false
		}
		b = &tokenBucket{tokens: refusalBurst, at: now}
		s.refusals[from] = b
	}
	return b.take(now, refusalRate, refusalBurst)
}

type endedSession struct {
	from string
	at   time.Time
}

// remember notes that se ended, for the quiet handling of its late
// messages.
func (s *Service) remember(se *session) {
	if len(s.recent) >= maxTracked {
		s.prune(time.Now())
	}
	if len(s.recent) >= maxTracked {
		return
	}
	s.recent[se.id] = endedSession{from: se.header.From, at: time.Now()}
}

// prune forgets full refusal budgets and sessions that ended long ago.
func (s *Service) prune(now time.Time) {
	for from, b := range s.refusals {
		if b.tokens+now.Sub(b.at).Seconds()*refusalRate >= refusalBurst {
			delete(s.refusals, from)
		}
	}
	for id, e := range s.recent {
		if now.Sub(e.at) > recentEnd {
			delete(s.recent, id)
		}
	}
}
