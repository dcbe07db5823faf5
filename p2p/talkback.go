package p2p

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
	"github.com/smallnest/ringbuffer"
)

// Speaker is the board's talkback sink. It receives the app's G.711 bytes in
// the codec the session negotiated (PCMU or PCMA, 8 kHz mono), 20 to 40 ms
// at a time, from one goroutine at a time.
type Speaker interface {
	Write(p []byte) (int, error)
}

// Talkback sizes: 8000 bytes a second of G.711.
const (
	talkChunk    = 320  // 40 ms, the most written to the speaker at once
	talkMinChunk = 160  // 20 ms, the least, except for the tail at session end
	talkJitter   = 4000 // 500 ms of jitter buffer; more is dropped
)

// speakerGate gives the speaker to one session at a time. Writes go through
// it so that a session that lost the speaker cannot write a late chunk
// between another session's.
type speakerGate struct {
	sink   Speaker
	mu     sync.Mutex
	holder *session
}

// acquire takes the speaker for se; false when another session holds it.
func (g *speakerGate) acquire(se *session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holder != nil && g.holder != se {
		return false
	}
	g.holder = se
	return true
}

// release frees the speaker if se holds it and reports whether it did.
func (g *speakerGate) release(se *session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holder != se {
		return false
	}
	g.holder = nil
	return true
}

func (g *speakerGate) holds(se *session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.holder == se
}

// write passes p to the sink if se holds the speaker; bytes of a session that
// does not are dropped.
func (g *speakerGate) write(se *session, p []byte) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holder != se {
		return false, nil
	}
	_, err := g.sink.Write(p)
	return true, err
}

// talkStats are a session's talkback counters.
type talkStats struct {
	received atomic.Uint64 // payload bytes read from the app's audio track
	written  atomic.Uint64 // bytes the speaker accepted
	dropped  atomic.Uint64 // bytes lost to a full jitter buffer or a failed write
}

// startTalk reads the app's audio track into a jitter buffer, and writes the
// buffer to the speaker while the session holds it. Both goroutines end when
// the track does, that is when the peer connection closes; the tail of the
// buffer is written then.
func (se *session) startTalk(wg *sync.WaitGroup, tr *webrtc.TrackRemote) {
	g := se.svc.speaker
	if tr.Kind() != webrtc.RTPCodecTypeAudio || g == nil {
		wg.Go(func() { drainTrack(tr) })
		return
	}
	se.log.Debug("talkback track", "codec", tr.Codec().MimeType, "ssrc", uint32(tr.SSRC()))
	rb := ringbuffer.New(talkJitter).SetBlocking(true)
	wg.Go(func() {
		defer rb.CloseWriter()
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if len(p.Payload) == 0 || !g.holds(se) {
				continue
			}
			se.talk.received.Add(uint64(len(p.Payload)))
			// The RTP reader must never wait on the speaker: a full buffer
			// means the sink is too slow, and the newest audio is dropped.
			// This goroutine is the only writer, so writing at most Free
			// bytes never blocks.
			n, _ := rb.Write(p.Payload[:min(len(p.Payload), rb.Free())])
			if n < len(p.Payload) {
				se.talk.dropped.Add(uint64(len(p.Payload) - n))
			}
		}
	})
	wg.Go(func() {
		buf := make([]byte, talkChunk)
		var failed bool
		for {
			n, err := io.ReadAtLeast(rb, buf, talkMinChunk)
			if n > 0 {
				ok, werr := g.write(se, buf[:n])
				switch {
				case werr != nil:
					se.talk.dropped.Add(uint64(n))
					if !failed {
						failed = true
						se.log.Warn("speaker write failed", "err", werr)
					}
				case ok:
					se.talk.written.Add(uint64(n))
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					se.log.Debug("talkback buffer", "err", err)
				}
				return
			}
		}
	})
}

func drainTrack(tr *webrtc.TrackRemote) {
	for {
		if _, _, err := tr.ReadRTP(); err != nil {
			return
		}
	}
}

// speakerOn takes the speaker for se and raises SpeakerStart; it returns
// the result code of the request.
func (se *session) speakerOn() (int, string) {
	g := se.svc.speaker
	if g == nil {
		return ResUnsupported, "talkback is not supported by this device"
	}
	if !g.acquire(se) {
		return ResSpeakerInUse, "speaker is used by another session"
	}
	se.log.Info("speaker start")
	se.svc.events.emit(EventSpeakerStart, se.id, 0)
	return ResOK, ""
}

// speakerOff releases the speaker if se holds it; releasing a speaker not
// held is not an error, as the app may repeat a stop.
func (se *session) speakerOff() (int, string) {
	g := se.svc.speaker
	if g == nil {
		return ResUnsupported, "talkback is not supported by this device"
	}
	se.releaseSpeaker()
	return ResOK, ""
}

func (se *session) releaseSpeaker() {
	if g := se.svc.speaker; g != nil && g.release(se) {
		se.log.Info("speaker stop", "received", se.talk.received.Load(), "written", se.talk.written.Load(), "dropped", se.talk.dropped.Load())
		se.svc.events.emit(EventSpeakerStop, se.id, 0)
	}
}
