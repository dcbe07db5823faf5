package viewer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ipcd/ipcd/p2p"
)

// DefaultReplyTimeout is how long SwitchStream, Activate and Reset wait for
// the device's reply when their config leaves the timeout zero.
const DefaultReplyTimeout = 5 * time.Second

// controlWait is a 312 request waiting for its reply.
type controlWait struct {
	sessionID string
	typ       string
	seq       uint64 // order of registration, to pick the oldest request
	reply     chan p2p.ControlResult
}

// SwitchStream asks the device to move a running session to the main or the
// sub stream (protocol 312, type resolution) and waits for its reply, at
// most Config.ReplyTimeout. resCode 0 means the device accepted; the video
// changes at the new stream's next keyframe, which VideoSize can tell apart.
// A nonzero resCode is the device's refusal with its message (for ipcd: 2 no
// such session, 3 stream not configured, 4 the streams' codecs differ). err
// is ErrNoReply when no reply came in time, ErrConfig for a stream other
// than main or sub.
func (c *Client) SwitchStream(ctx context.Context, sessionID, stream string) (resCode int, message string, err error) {
	var v int
	switch stream {
	case "main":
		v = 0
	case "sub":
		v = 1
	default:
		return 0, "", fmt.Errorf("%w: stream must be main or sub, got %q", ErrConfig, stream)
	}
	if sessionID == "" {
		return 0, "", fmt.Errorf("%w: session id is required", ErrConfig)
	}
	res, err := c.control(ctx, sessionID, p2p.ControlResolution, v)
	return res.ResCode, res.Message, err
}

// control publishes a 312 request and waits for the reply that matches it:
// the same tid when the reply echoes it, else the oldest pending request of
// the same session and type.
func (c *Client) control(ctx context.Context, sessionID, typ string, value int) (p2p.ControlResult, error) {
	return c.controlCmd(ctx, sessionID, typ, p2p.ControlCmd{CmdValue: &value})
}

// SetPrivacy turns the device's privacy mode on or off (312 privacy). The
// request carries a signed auth token, as offers do, so it works without a
// live session: with privacy on there is none. resCode 0 means done, 6
// that the device refused the token.
func (c *Client) SetPrivacy(ctx context.Context, sessionID string, on bool) (resCode int, message string, err error) {
	if sessionID == "" {
		sessionID = randomHex(8)
	}
	v := 0
	if on {
		v = 1
	}
	auth := p2p.SignAuth(c.cfg.P2PPassword, c.cfg.DevID, c.cfg.From, time.Now().Add(time.Hour).Unix())
	res, err := c.controlCmd(ctx, sessionID, p2p.ControlPrivacy, p2p.ControlCmd{CmdValue: &v, Auth: auth})
	return res.ResCode, res.Message, err
}

func (c *Client) controlCmd(ctx context.Context, sessionID, typ string, cmd p2p.ControlCmd) (p2p.ControlResult, error) {
	select {
	case <-c.done:
		return p2p.ControlResult{}, ErrClosed
	default:
	}
	tid := randomHex(6)
	w := &controlWait{sessionID: sessionID, typ: typ, reply: make(chan p2p.ControlResult, 1)}
	c.mu.Lock()
	c.controlSeq++
	w.seq = c.controlSeq
	c.controls[tid] = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.controls, tid)
		c.mu.Unlock()
	}()

	h := p2p.Header{Type: typ, From: c.cfg.From, To: c.cfg.DevID, SessionID: sessionID, TID: tid}
	if err := c.publish(p2p.ControlProtocol, h, cmd); err != nil {
		return p2p.ControlResult{}, err
	}
	timer := time.NewTimer(c.cfg.ReplyTimeout)
	defer timer.Stop()
	select {
	case r := <-w.reply:
		c.log.Debug("312 reply", "type", typ, "session", sessionID, "resCode", r.ResCode, "message", r.Message)
		return r, nil
	case <-timer.C:
		return p2p.ControlResult{}, fmt.Errorf("%w: 312 %s for session %s within %s", ErrNoReply, typ, sessionID, c.cfg.ReplyTimeout)
	case <-ctx.Done():
		return p2p.ControlResult{}, fmt.Errorf("312 %s for session %s: %w", typ, sessionID, ctx.Err())
	case <-c.done:
		return p2p.ControlResult{}, ErrClosed
	}
}

// route312 hands a 312 reply to the request waiting for it.
func (c *Client) route312(data json.RawMessage) {
	var m struct {
		Header p2p.Header        `json:"header"`
		Msg    p2p.ControlResult `json:"msg"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		c.log.Debug("drop 312 message", "err", err)
		return
	}
	h := m.Header
	if h.To != c.cfg.From {
		return
	}
	c.mu.Lock()
	w, key := c.controls[h.TID], h.TID
	if w == nil || w.sessionID != h.SessionID || w.typ != h.Type {
		w = nil
		for k, cand := range c.controls {
			if cand.sessionID == h.SessionID && cand.typ == h.Type && (w == nil || cand.seq < w.seq) {
				w, key = cand, k
			}
		}
	}
	if w != nil {
		// One reply per request: a duplicate goes to the next one or nowhere.
		delete(c.controls, key)
	}
	c.mu.Unlock()
	if w == nil {
		c.log.Debug("drop 312 reply: no request waiting", "type", h.Type, "session", h.SessionID, "tid", h.TID)
		return
	}
	w.reply <- m.Msg
}
