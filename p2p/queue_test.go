package p2p

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func discardDropLog() *dropLog { return newDropLog(slog.New(slog.DiscardHandler), dropLinesPerWindow) }

func fromMsg(from string, i int) inbound {
	return inbound{Protocol, json.RawMessage(fmt.Sprintf(`{"header":{"from":%q,"tid":"%d"}}`, from, i))}
}

// TestInboxFairness: a sender that floods fills its own queue only; the
// next sender's message is taken in the next turn, and each sender's
// messages keep their order.
func TestInboxFairness(t *testing.T) {
	dl := discardDropLog()
	q := newInbox(64, 16, dl)
	for i := range 100 {
		q.put(fromMsg("flood", i))
	}
	if !q.put(fromMsg("app", 0)) {
		t.Fatal("the app's message was refused")
	}
	if n := dl.totals()[RuleSenderQueueFull]; n != 84 {
		t.Fatalf("sender_queue_full = %d, want 84", n)
	}
	// Taken as the service loop does: a ready token, then a message.
	var order []string
	for len(order) < 17 {
		select {
		case <-q.ready:
		default:
			t.Fatalf("no ready token with %d messages queued", 17-len(order))
		}
		in, ok := q.take()
		if !ok {
			t.Fatalf("nothing to take after %v", order)
		}
		from, _ := senderOf(in.data)
		order = append(order, from+":"+tidOf(in.data))
	}
	if len(order) != 17 || order[0] != "flood:0" || order[1] != "app:0" {
		t.Fatalf("taken %v", order)
	}
	for i, s := range order[2:] {
		if s != fmt.Sprintf("flood:%d", i+1) {
			t.Fatalf("flood out of order: %v", order)
		}
	}
	select {
	case <-q.ready:
		t.Fatal("ready token left on an empty inbox")
	default:
	}
}

func tidOf(b []byte) string {
	var m Message
	_ = json.Unmarshal(b, &m)
	return m.Header.TID
}

// TestInboxFull: when the whole inbox is full, the longest queue gives up
// its newest message to a sender with fewer queued.
func TestInboxFull(t *testing.T) {
	dl := discardDropLog()
	q := newInbox(20, 16, dl)
	for i := range 16 {
		q.put(fromMsg("f1", i))
	}
	for i := range 4 {
		q.put(fromMsg("f2", i))
	}
	if !q.put(fromMsg("app", 0)) {
		t.Fatal("the app's message was refused by a full inbox")
	}
	if q.put(fromMsg("f2", 4)) {
		// f2 has 4 queued; f1, the longest, has 15: f2 still gets room.
	} else {
		t.Fatal("f2 refused while f1 holds most of the inbox")
	}
	if n := dl.totals()[RuleInboxFull]; n != 2 {
		t.Fatalf("inbox_full = %d, want 2", n)
	}
	// Messages without a usable from share one queue.
	q2 := newInbox(4, 2, dl)
	for _, b := range []string{`not json`, `{"header":{"from":"` + strings.Repeat("x", MaxHeaderField+1) + `"}}`, `{}`} {
		q2.put(inbound{Protocol, json.RawMessage(b)})
	}
	if n := dl.totals()[RuleSenderQueueFull]; n != 1 {
		t.Fatalf("sender_queue_full = %d, want 1", n)
	}
}

// blockingPub is a Publisher whose broker stopped acknowledging.
type blockingPub struct {
	entered chan struct{}
	release chan struct{}
}

func (p *blockingPub) Publish(int, any) error {
	p.entered <- struct{}{}
	<-p.release
	return nil
}

// TestOutboxFullDrops: with the publisher stuck, the outbox holds its size,
// drops the rest and counts them; what it held leaves in order once the
// publisher recovers.
func TestOutboxFullDrops(t *testing.T) {
	dl := discardDropLog()
	pub := newFakePub()
	pub.hold()
	o := newOutbox(pub, 4, slog.New(slog.DiscardHandler), dl)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); o.run(stop) }()
	put := func(i int) bool {
		raw, _ := encodeReply(Header{Type: TypeCandidate, SessionID: fmt.Sprint(i)}, Candidate{})
		return o.put(outMsg{protocol: Protocol, typ: TypeCandidate, session: fmt.Sprint(i), data: raw})
	}
	put(0)
	waitUntil(t, "the publisher to be called", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return pub.entered == 1
	})
	accepted := 1
	for i := 1; i < 10; i++ {
		if put(i) {
			accepted++
		}
	}
	if accepted != 5 || o.dropped.Load() != 5 || dl.totals()[RuleOutboxFull] != 5 {
		t.Fatalf("accepted %d, dropped %d, outbox_full %d", accepted, o.dropped.Load(), dl.totals()[RuleOutboxFull])
	}
	pub.release()
	pub.waitFor(t, "the held messages", func(m []published) bool { return len(m) == 5 })
	for i, m := range pub.snapshot() {
		if m.msg.Header.SessionID != fmt.Sprint(i) {
			t.Fatalf("published out of order: %s", pub.summary())
		}
	}
	close(stop)
	<-done
	if o.sent.Load() != 5 {
		t.Fatalf("sent = %d", o.sent.Load())
	}
}

// TestOutboxFailures: a publisher error is counted and logged by rule.
func TestOutboxFailures(t *testing.T) {
	dl := discardDropLog()
	pub := newFakePub()
	pub.err = errors.New("broker gone")
	o := newOutbox(pub, 4, slog.New(slog.DiscardHandler), dl)
	o.put(outMsg{protocol: Protocol, data: json.RawMessage(`{}`)})
	stop, done := make(chan struct{}), make(chan struct{})
	close(stop)
	go func() { defer close(done); o.run(stop) }()
	<-done
	if o.failed.Load() != 1 || dl.totals()[RulePublishFailed] != 1 {
		t.Fatalf("failed %d, publish_failed %d", o.failed.Load(), dl.totals()[RulePublishFailed])
	}
}

// TestOutboxFlushBound: a stopping service publishes what is queued for a
// bounded time only, even when every publish waits on the broker, and
// counts the rest as dropped.
func TestOutboxFlushBound(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	h.pub.mu.Lock()
	h.pub.delay = 250 * time.Millisecond
	h.pub.mu.Unlock()
	const n = 60
	for i := range n {
		h.svc.DeliverControl(controlMsg(ControlResolution, fmt.Sprint("app", i), "none", 1))
	}
	h.sync()
	start := time.Now()
	h.stop()
	took := time.Since(start)
	st := h.svc.Outbox()
	if st.Sent+st.Dropped != n || st.Dropped == 0 {
		t.Fatalf("outbox %+v after %s, want %d sent or dropped", st, took, n)
	}
	if took > waitTimeout/2 {
		t.Fatalf("stopping took %s with a slow broker", took)
	}
}

// TestBlockedPublisher: a broker that stops acknowledging does not stop
// the service loop: queries are answered, an offer is processed, a live
// session keeps streaming; the replies leave when the broker recovers.
func TestBlockedPublisher(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	h.feed()
	v := h.dial("app1", "s1", viewerOpts{})
	v.waitMedia(10)
	h.pub.hold()
	h.deliver(offerMsg("app2", "s2", offerSDP(t, viewerAPI(t, nil))))
	waitUntil(t, "the second session", func() bool { return len(h.sessions()) == 2 })
	v.waitMedia(25)
	if h.svc.PeerConnections() != 2 {
		t.Fatalf("%d peer connections", h.svc.PeerConnections())
	}
	for _, m := range h.pub.snapshot() {
		if m.msg.Header.SessionID == "s2" {
			t.Fatalf("published while the broker holds: %s", h.pub.summary())
		}
	}
	h.pub.release()
	h.answered("s2")
}

// TestFloodDoesNotStarveOthers: while one sender floods bad offers,
// another app's offer is answered; the flood's refusals are rate limited
// and its warn lines summarized.
func TestFloodDoesNotStarveOthers(t *testing.T) {
	h := newHarness(t, Config{}, nil).start()
	sdp := offerSDP(t, viewerAPI(t, nil))
	bad := msg(TypeOffer, "flood", "f", Offer{Mode: ModeWebRTC, SDP: sdp, Auth: "1.x"})
	const flood = 3000
	start := time.Now()
	for i := range flood {
		h.svc.Deliver(bad)
		if i == flood/2 {
			h.deliver(offerMsg("app", "s1", sdp))
		}
	}
	h.answered("s1")
	h.sync()
	d := h.svc.Drops()
	if got := d[RuleAuthFailed] + d[RuleSenderQueueFull] + d[RuleInboxFull] + d[RuleSenderRateLimited]; got != flood {
		t.Fatalf("drops %v: %d of the flood accounted for, want %d", d, got, flood)
	}
	if n := h.svc.Dropped(); n != d[RuleSenderQueueFull]+d[RuleInboxFull] {
		t.Fatalf("Dropped = %d, drops %v", n, d)
	}
	refusals := int(d[RuleAuthFailed] - d[RuleRefusalRateLimited])
	if max := refusalBurst + int(time.Since(start).Seconds()*refusalRate) + 1; refusals > max || refusals == 0 {
		t.Fatalf("%d refusals to the flood, want 1..%d", refusals, max)
	}
	h.pub.waitFor(t, "the refusals to the flood", func(msgs []published) bool {
		n := 0
		for _, m := range msgs {
			if m.msg.Header.To == "flood" && m.msg.Header.Type == TypeDisconnect {
				n++
			}
		}
		return n == refusals
	})
	warns := h.logs.lines(func(l logLine) bool { return l.level == slog.LevelWarn })
	if len(warns) > 4*dropLinesPerWindow {
		t.Fatalf("%d warn lines for a flood", len(warns))
	}
}

// TestDropLog: the first lines of each rule in a window are written in
// full, the rest counted and summarized in one line per rule.
func TestDropLog(t *testing.T) {
	rec := &logRec{}
	log := slog.New(recHandler{rec: rec})
	d := newDropLog(log, 5)
	for range 100 {
		d.warn(log, RuleMalformed, "drop 302 message")
	}
	for range 3 {
		d.warn(log, RuleBadOffer, "drop 302 message")
	}
	for range 7 {
		d.count(RuleSenderQueueFull)
	}
	full := func(r Rule) int {
		return len(rec.lines(func(l logLine) bool { return l.msg == "drop 302 message" && l.attrs["rule"] == string(r) }))
	}
	if full(RuleMalformed) != 5 || full(RuleBadOffer) != 3 {
		t.Fatalf("full lines: malformed %d, bad_offer %d", full(RuleMalformed), full(RuleBadOffer))
	}
	d.flush()
	sum := rec.lines(func(l logLine) bool { return l.msg == "drops summarized" })
	if len(sum) != 2 ||
		sum[0].attrs["rule"] != string(RuleMalformed) || sum[0].attrs["suppressed"] != "95" || sum[0].attrs["total"] != "100" ||
		sum[1].attrs["rule"] != string(RuleSenderQueueFull) || sum[1].attrs["suppressed"] != "7" || sum[1].attrs["total"] != "7" {
		t.Fatalf("summary lines %+v", sum)
	}
	// A new window: full lines again, and nothing to summarize.
	d.warn(log, RuleMalformed, "drop 302 message")
	d.flush()
	if full(RuleMalformed) != 6 || len(rec.lines(func(l logLine) bool { return l.msg == "drops summarized" })) != 2 {
		t.Fatal("the window did not restart")
	}
	if tot := d.totals(); tot[RuleMalformed] != 101 || tot[RuleBadOffer] != 3 || tot[RuleSenderQueueFull] != 7 {
		t.Fatalf("totals %v", tot)
	}
}

// TestRefusalBudget: refusals to one app are limited to a burst, then a
// trickle; another app has its own budget; budgets refill.
func TestRefusalBudget(t *testing.T) {
	s := &Service{refusals: map[string]*tokenBucket{}, recent: map[string]endedSession{}}
	n := 0
	for range 100 {
		if s.allowRefusal("flood") {
			n++
		}
	}
	if n < refusalBurst || n > refusalBurst+1 {
		t.Fatalf("%d refusals allowed in a burst", n)
	}
	if !s.allowRefusal("app") {
		t.Fatal("another app has no refusal budget")
	}
	b := tokenBucket{tokens: 0, at: time.Unix(0, 0)}
	if !b.take(time.Unix(1, 0), refusalRate, refusalBurst) || b.tokens != refusalRate-1 {
		t.Fatalf("bucket after a second: %+v", b)
	}
	// Full budgets and old sessions are forgotten.
	s.recent["old"] = endedSession{from: "app", at: time.Now().Add(-2 * recentEnd)}
	s.prune(time.Now().Add(time.Hour))
	if len(s.refusals) != 0 || len(s.recent) != 0 {
		t.Fatalf("after prune: %d budgets, %d ended sessions", len(s.refusals), len(s.recent))
	}
	for i := range maxTracked + 10 {
		s.allowRefusal(fmt.Sprint("app", i))
		s.remember(&session{id: fmt.Sprint("s", i)})
	}
	if len(s.refusals) > maxTracked || len(s.recent) > maxTracked {
		t.Fatalf("tracked %d budgets, %d ended sessions", len(s.refusals), len(s.recent))
	}
}

// TestSigQueue: a session holds at most candidateQueue signaling messages,
// refuses the next, and hands them over in order with one ready token;
// once taken, the queue holds nothing and takes messages again.
func TestSigQueue(t *testing.T) {
	q := sigQueue{ready: make(chan struct{}, 1)}
	for i := range candidateQueue {
		if !q.put(Message{Header: Header{TID: fmt.Sprint(i)}}) {
			t.Fatalf("message %d refused", i)
		}
	}
	if q.put(Message{Header: Header{TID: "over"}}) {
		t.Fatalf("message %d taken, limit %d", candidateQueue+1, candidateQueue)
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("no ready token with messages queued")
	}
	msgs := q.take()
	if len(msgs) != candidateQueue {
		t.Fatalf("took %d messages, want %d", len(msgs), candidateQueue)
	}
	for i, m := range msgs {
		if m.Header.TID != fmt.Sprint(i) {
			t.Fatalf("message %d is %q: out of order", i, m.Header.TID)
		}
	}
	if rest := q.take(); len(rest) != 0 || cap(rest) != 0 {
		t.Fatalf("queue keeps %d messages (capacity %d) after take", len(rest), cap(rest))
	}
	if !q.put(Message{}) {
		t.Fatal("an emptied queue refuses a message")
	}
}
