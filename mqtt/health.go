package mqtt

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"
)

// MaxStatus bounds the retained status message: apps and relays reject
// messages over 8 KB.
const MaxStatus = 8192

// health is the last report the daemon gave, sent with every online
// status.
type health struct {
	body   atomic.Pointer[json.RawMessage]
	upAt   atomic.Int64 // unix seconds of the last online status, its t
	online atomic.Bool  // what the last status said
}

func (h *health) load() json.RawMessage {
	if b := h.body.Load(); b != nil {
		return *b
	}
	return nil
}

// StatusSize is the size of the status message that would carry body.
func StatusSize(body json.RawMessage) int {
	return len(presence(true, time.Unix(1<<32, 0), body))
}

// PublishHealth replaces the retained status with {"online":true,"t":...,
// "health":body} and keeps body for the online statuses that follow. While
// the status says offline (Config.HoldOnline and the owner not serving) it
// only keeps body. It waits for the broker's acknowledgement, so it belongs
// on a goroutine of its own. Without a status topic it does nothing.
func (c *Client) PublishHealth(body json.RawMessage) error {
	if c.statusTopic == "" {
		return nil
	}
	if !json.Valid(body) {
		return fmt.Errorf("%w: health is not JSON", ErrConfig)
	}
	p := presence(true, time.Unix(c.health.upAt.Load(), 0), body)
	if len(p) > MaxStatus {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrStatusTooLarge, len(p), MaxStatus)
	}
	c.health.body.Store(&body)
	if !c.health.online.Load() {
		return nil
	}
	pc := c.current()
	if pc == nil {
		return ErrNotConnected
	}
	tok := pc.Publish(c.statusTopic, qosAtLeastOnce, true, p)
	if !tok.WaitTimeout(publishTimeout) {
		return ErrPublishTimeout
	}
	return tok.Error()
}
