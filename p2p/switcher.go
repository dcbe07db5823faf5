package p2p

import (
	"context"

	"github.com/ipcd/ipcd/media"
)

// streamSwitcher is the sender's place in its stream's ring and, while a
// 312 switch is pending, in the ring switched to: the switch happens at the
// new stream's first keyframe after the request, and until then the old
// stream goes on.
type streamSwitcher struct {
	se   *session
	ring *media.Ring
	rd   *media.Reader
	vp   *packetizer // moved to the new stream's codec and timeline at the switch

	pending       *media.Reader // the stream being switched to
	pendingStream media.Stream
	// audio, when set, is the session's audio reader, which the sender
	// serves between video frames: waiting for video wakes on it too.
	audio *media.Reader
}

// nextState is what streamSwitcher.next found.
type nextState uint8

const (
	nextFrame nextState = iota // a frame to send
	nextRetry                  // nothing yet: the sender loops again
	nextStop                   // the session is ending
)

func (sw *streamSwitcher) close() {
	sw.rd.Close()
	if sw.pending != nil {
		sw.pending.Close()
	}
	if sw.audio != nil {
		sw.audio.Close()
	}
}

// request starts a switch to stream s, reading its ring from just after
// lastWall; a switch to the stream being sent cancels a pending one.
func (sw *streamSwitcher) request(s media.Stream, lastWall int64) {
	next := sw.se.svc.media.ring(s)
	if sw.pending != nil {
		sw.pending.Close()
		sw.pending = nil
	}
	if next == nil || next == sw.ring {
		return
	}
	sw.pending, sw.pendingStream = next.NewReaderAt(lastWall+1), s
	sw.se.log.Info("stream switch requested", "stream", s.String())
}

// next returns the next frame to send: the pending stream's keyframe once it
// has one (the switch), else the current stream's next frame. It waits for
// either ring when neither has a frame.
func (sw *streamSwitcher) next(ctx context.Context) (media.Frame, int, nextState) {
	if sw.pending != nil {
		f, _, ok, err := sw.pending.TryNext()
		if err != nil {
			return f, 0, nextStop
		}
		if ok {
			sw.switchTo(f)
			return f, 0, nextFrame
		}
	}
	f, skipped, ok, err := sw.rd.TryNext()
	switch {
	case err != nil:
		return f, 0, nextStop
	case ok:
		return f, skipped, nextFrame
	case !sw.se.wait(ctx, sw.rd, sw.pending, sw.audio):
		return f, 0, nextStop
	}
	return f, 0, nextRetry
}

// switchTo makes the pending stream the one sent, from its frame f.
func (sw *streamSwitcher) switchTo(f media.Frame) {
	se, s := sw.se, sw.pendingStream
	sw.rd.Close()
	sw.rd, sw.pending = sw.pending, nil
	sw.ring = se.svc.media.ring(s)
	sw.vp.payloader = newPayloader(sw.ring.Codec())
	sw.vp.ring = sw.ring
	sw.vp.rebase(f)
	se.stream.Store(uint32(s))
	se.log.Info("stream switch", "stream", s.String())
	se.svc.events.emitDetail(EventStreamSwitch, se.id, int(s)-int(media.StreamMain), s.String())
}
