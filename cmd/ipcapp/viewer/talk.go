package viewer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/ipcd/ipcd/p2p"
)

// talkFrame is 20 ms of 8 kHz G.711, what phones put in one RTP packet.
const (
	talkFrame    = 160
	talkInterval = 20 * time.Millisecond
)

// ControlChannel sends commands on the "control" data channel and matches
// the replies to them by req.
type ControlChannel struct {
	dc *webrtc.DataChannel

	mu    sync.Mutex
	next  int64
	waits map[int64]chan p2p.CommandReply
}

func newControlChannel(dc *webrtc.DataChannel) *ControlChannel {
	// req 1 and 2 are the video_start and audio_start sent at open.
	return &ControlChannel{dc: dc, next: 100, waits: map[int64]chan p2p.CommandReply{}}
}

// Do sends cmd with value (nil for none) and waits for its reply.
func (c *ControlChannel) Do(ctx context.Context, cmd string, value any) (p2p.CommandReply, error) {
	c.mu.Lock()
	c.next++
	req := c.next
	w := make(chan p2p.CommandReply, 1)
	c.waits[req] = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waits, req)
		c.mu.Unlock()
	}()
	m := map[string]any{"cmd": cmd, "req": req}
	if value != nil {
		m["value"] = value
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return p2p.CommandReply{}, err
	}
	if err := c.dc.SendText(string(raw)); err != nil {
		return p2p.CommandReply{}, fmt.Errorf("control %s: %w", cmd, err)
	}
	select {
	case r := <-w:
		return r, nil
	case <-ctx.Done():
		return p2p.CommandReply{}, fmt.Errorf("%w: control %s: %w", ErrNoReply, cmd, ctx.Err())
	}
}

// SendRaw sends a message as it is, for tests of the device's input rules.
func (c *ControlChannel) SendRaw(msg string) error { return c.dc.SendText(msg) }

// route hands a reply to the Do call waiting for it. Replies nobody waits
// for (to video_start and audio_start at open, to SendRaw) go to OnReply.
func (c *ControlChannel) route(data []byte, other func(p2p.CommandReply)) {
	var r p2p.CommandReply
	if err := json.Unmarshal(data, &r); err != nil {
		return
	}
	c.mu.Lock()
	w := c.waits[r.Req]
	c.mu.Unlock()
	if w != nil {
		w <- r
		return
	}
	if other != nil {
		other(r)
	}
}

// talk takes the speaker, sends opt.Talk on the audio track paced in real
// time, then releases the speaker. It runs on a goroutine of the session.
func (s *session) talk(ctx context.Context) {
	take := func(on bool) (int, error) {
		if s.ctl != nil {
			cmd := p2p.CmdSpeakerStop
			if on {
				cmd = p2p.CmdSpeakerStart
			}
			r, err := s.ctl.Do(ctx, cmd, nil)
			return r.Res, err
		}
		v := 0
		if on {
			v = 1
		}
		r, err := s.c.control(ctx, s.opt.SessionID, p2p.ControlSpeaker, v)
		return r.ResCode, err
	}
	if s.opt.TalkWithoutSpeaker {
		take = func(bool) (int, error) { return p2p.ResOK, nil }
	}
	res, err := take(true)
	s.mu.Lock()
	s.st.talkRes = res
	s.mu.Unlock()
	if err != nil || res != p2p.ResOK {
		s.log.Warn("speaker refused", "res", res, "err", err)
		return
	}
	buf := make([]byte, talkFrame)
	tick := time.NewTicker(talkInterval)
	defer tick.Stop()
	for {
		n, rerr := io.ReadFull(s.opt.Talk, buf)
		if n > 0 {
			if err := s.talkTrack.WriteSample(media.Sample{Data: buf[:n], Duration: talkInterval}); err != nil {
				s.log.Debug("talk write", "err", err)
			}
			s.mu.Lock()
			s.st.talkBytes += int64(n)
			s.mu.Unlock()
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
				s.log.Warn("talk input", "err", rerr)
			}
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
	// Let the last packets reach the device's jitter buffer before the
	// speaker is released.
	select {
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
		return
	}
	if _, err := take(false); err != nil {
		s.log.Debug("speaker stop", "err", err)
	}
	s.mu.Lock()
	s.st.talkDone = true
	s.mu.Unlock()
	if s.opt.OnTalkDone != nil {
		s.opt.OnTalkDone()
	}
}
