package p2p

import (
	"encoding/json"
	"sync"
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
}

type senderQueue struct {
	msgs []inbound
}

func newInbox(capacity, perSender int, dl *dropLog) *inbox {
	return &inbox{
		perSender: min(perSender, capacity),
		capacity:  capacity,
		queues:    map[string]*senderQueue{},
		ready:     make(chan struct{}, 1),
		dropLog:   dl,
	}
}

// senderOf reads the header's from, cheaply and without judging the rest:
// the service loop applies the rules. Messages without a usable from share
// one queue.
func senderOf(data []byte) string {
	var m struct {
		Header struct {
			From string `json:"from"`
		} `json:"header"`
	}
	if json.Unmarshal(data, &m) != nil || len(m.Header.From) > MaxHeaderField {
		return ""
	}
	return m.Header.From
}

// put queues in without blocking. When the sender's queue is full the
// message is dropped; when the whole inbox is full, the longest queue
// gives up its newest message, so a flood never crowds out another sender.
func (q *inbox) put(in inbound) bool {
	from := senderOf(in.data)
	q.mu.Lock()
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
