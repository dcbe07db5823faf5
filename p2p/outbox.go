package p2p

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// outbox publishes the service's messages from one goroutine, in the order
// they were queued, so that neither the service loop nor a session ever
// waits on the broker. A full outbox drops the newest message and counts it.
type outbox struct {
	pub     Publisher
	q       chan outMsg
	log     *slog.Logger
	dropLog *dropLog

	sent    atomic.Uint64
	dropped atomic.Uint64 // full outbox, or left when the flush bound ran out
	failed  atomic.Uint64 // the publisher returned an error
}

type outMsg struct {
	protocol int
	typ      string
	session  string
	data     json.RawMessage
}

// outboxFlush bounds how long a stopping service keeps publishing what is
// queued (the disconnects of its sessions, mostly).
const outboxFlush = 2 * time.Second

func newOutbox(pub Publisher, size int, log *slog.Logger, dl *dropLog) *outbox {
	return &outbox{pub: pub, q: make(chan outMsg, size), log: log, dropLog: dl}
}

// put queues m without blocking; false when the outbox is full.
func (o *outbox) put(m outMsg) bool {
	select {
	case o.q <- m:
		return true
	default:
		o.dropped.Add(1)
		o.dropLog.warn(o.log, RuleOutboxFull, "drop outgoing message", "protocol", m.protocol, "type", m.typ, "sessionid", m.session)
		return false
	}
}

// run publishes until stop is closed, then publishes what is queued for at
// most outboxFlush and counts the rest as dropped.
func (o *outbox) run(stop <-chan struct{}) {
	for {
		select {
		case m := <-o.q:
			o.publish(m)
		case <-stop:
			deadline := time.Now().Add(outboxFlush)
			for {
				select {
				case m := <-o.q:
					if time.Now().After(deadline) {
						o.dropped.Add(1)
						continue
					}
					o.publish(m)
				default:
					return
				}
			}
		}
	}
}

func (o *outbox) publish(m outMsg) {
	o.log.Debug(fmt.Sprintf("Send MQTT Msg.P:%d", m.protocol), "type", m.typ, "sessionid", m.session)
	if err := o.pub.Publish(m.protocol, m.data); err != nil {
		o.failed.Add(1)
		o.dropLog.warn(o.log, RulePublishFailed, "publish message", "protocol", m.protocol, "type", m.typ, "sessionid", m.session, "err", err)
		return
	}
	o.sent.Add(1)
}

// envelopeOverhead is what the MQTT envelope adds around the data:
// {"protocol":302,"pv":"2.2","t":1732170000123,"data":...}, with room.
const envelopeOverhead = 64

// encodeReply marshals a message with its header and checks that it fits
// in MaxPublish with its envelope.
func encodeReply(h Header, msg any) (json.RawMessage, error) {
	raw, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", h.Type, err)
	}
	b, err := json.Marshal(Message{Header: h, Msg: raw})
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", h.Type, err)
	}
	if len(b)+envelopeOverhead > MaxPublish {
		return nil, fmt.Errorf("%w: %s of %d bytes, limit %d", ErrTooLarge, h.Type, len(b)+envelopeOverhead, MaxPublish)
	}
	return b, nil
}
