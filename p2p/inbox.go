package p2p

import (
	"bytes"
	"encoding/json"
	"sync"
	"time"
)

// inbox queues signaling for the service loop with one bounded queue per
// sender (the header's from), served round robin: a sender that floods
// fills only its own queue, and every other app's messages still get their
// turn. Each sender's messages keep their arrival order.
type inbox struct {
	perSender int
	capacity  int

	mu      sync.Mutex
	queues  map[string]*senderQueue
	order   []string // senders with queued messages, in turn order
	total   int
	ready   chan struct{} // holds a token while messages are queued
	dropLog *dropLog
	// penalty holds the apps whose offers are dropped unread until a
	// time: those that keep offering with a bad auth token.
	penalty map[string]time.Time
}

type senderQueue struct {
	msgs []inbound
}

func newInbox(capacity, perSender int, dl *dropLog) *inbox {
	return &inbox{
		perSender: min(perSender, capacity),
		capacity:  capacity,
		queues:    map[string]*senderQueue{},
		penalty:   map[string]time.Time{},
		ready:     make(chan struct{}, 1),
		dropLog:   dl,
	}
}

// senderOf reads the header's from and type, cheaply and without judging the rest:
// the service loop applies the rules. It stops reading at the header, so a
// flood of large offers costs one scan of each, in the MQTT layer, not two.
// Messages without a usable from share one queue.
func senderOf(data []byte) (from, typ string) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", ""
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return "", ""
		}
		if key != "header" {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return "", ""
			}
			continue
		}
		var h struct {
			From string `json:"from"`
			Type string `json:"type"`
		}
		if dec.Decode(&h) != nil || len(h.From) > MaxHeaderField {
			return "", ""
		}
		return h.From, h.Type
	}
	return "", ""
}

// put queues in without blocking. When the sender's queue is full the
// message is dropped; when the whole inbox is full, the longest queue
// gives up its newest message, so a flood never crowds out another sender.
func (q *inbox) put(in inbound) bool {
	from, typ := senderOf(in.data)
	q.mu.Lock()
	if until, ok := q.penalty[from]; ok && typ == TypeOffer && in.protocol == Protocol {
		if time.Now().Before(until) {
			q.mu.Unlock()
			q.dropLog.count(RuleSenderRateLimited)
			return false
		}
		delete(q.penalty, from)
	}
	sq := q.queues[from]
	if sq == nil {
		sq = &senderQueue{}
	}
	if len(sq.msgs) >= q.perSender {
		q.mu.Unlock()
		q.dropLog.count(RuleSenderQueueFull)
		return false
	}
	if q.total >= q.capacity {
		longest := q.longestLocked()
		if longest == "" || len(q.queues[longest].msgs) <= len(sq.msgs)+1 {
			q.mu.Unlock()
			q.dropLog.count(RuleInboxFull)
			return false
		}
		lq := q.queues[longest]
		lq.msgs = lq.msgs[:len(lq.msgs)-1]
		q.total--
		q.dropLog.count(RuleInboxFull)
	}
	if len(sq.msgs) == 0 {
		q.queues[from] = sq
		q.order = append(q.order, from)
	}
	sq.msgs = append(sq.msgs, in)
	q.total++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

func (q *inbox) longestLocked() string {
	best, n := "", 0
	for _, from := range q.order {
		if l := len(q.queues[from].msgs); l > n {
			best, n = from, l
		}
	}
	return best
}

// penalize drops the offers of from unread until until. The number of
// apps penalized at once is bounded; beyond it the expired are forgotten
// and then new ones are not taken.
func (q *inbox) penalize(from string, until time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.penalty) >= maxTracked {
		now := time.Now()
		for f, u := range q.penalty {
			if now.After(u) {
				delete(q.penalty, f)
			}
		}
	}
	if len(q.penalty) < maxTracked {
		q.penalty[from] = until
	}
}

// take returns the next message in turn, and whether there was one. It
// keeps the ready token while more are queued.
func (q *inbox) take() (inbound, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 {
		return inbound{}, false
	}
	from := q.order[0]
	q.order = q.order[1:]
	sq := q.queues[from]
	in := sq.msgs[0]
	sq.msgs[0] = inbound{}
	sq.msgs = sq.msgs[1:]
	q.total--
	if len(sq.msgs) > 0 {
		q.order = append(q.order, from)
	} else {
		delete(q.queues, from)
	}
	if q.total > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return in, true
}
