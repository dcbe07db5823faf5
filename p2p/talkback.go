package p2p

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
	"github.com/smallnest/ringbuffer"
)

// Speaker is the board's talkback sink. It receives the app's G.711 bytes in
// the codec the session negotiated (PCMU or PCMA, 8 kHz mono), 20 to 40 ms
// at a time, from one goroutine at a time. Write must not wait on I/O: a
// sink that does I/O queues the bytes for its own goroutine and drops them
// with an error when it is stalled, as media.FileSink does.
type Speaker interface {
	Write(p []byte) (int, error)
}

// TalkbackMode says when a session gets the speaker.
type TalkbackMode int

const (
	// TalkbackUnknown is the zero value; the service treats it as auto.
	TalkbackUnknown TalkbackMode = iota
	// TalkbackAuto: a session that sends audio takes a free speaker on
	// its first packet, as clients that never send 312 speaker expect;
	// speaker_start and 312 speaker 1 work as in explicit.
	TalkbackAuto
	// TalkbackExplicit: only speaker_start or 312 speaker 1 take it.
	TalkbackExplicit
)

func (m TalkbackMode) String() string {
	switch m {
	case TalkbackAuto:
		return "auto"
	case TalkbackExplicit:
		return "explicit"
	}
	return "unknown"
}

// ParseTalkbackMode reads the name of a mode, as in the config.
func ParseTalkbackMode(s string) (TalkbackMode, error) {
	switch s {
	case "auto":
		return TalkbackAuto, nil
	case "explicit":
		return TalkbackExplicit, nil
	}
	return TalkbackUnknown, fmt.Errorf("%w: talkback %q: want auto or explicit", ErrBadValue, s)
}

// talkbackMode is the configured mode, with its default.
func (c *Config) talkbackMode() TalkbackMode {
	if c.Talkback == TalkbackExplicit {
		return TalkbackExplicit
	}
	return TalkbackAuto
}

// Talkback sizes: 8000 bytes a second of G.711.
const (
	talkChunk    = 320  // 40 ms, the most written to the speaker at once
	talkMinChunk = 160  // 20 ms, the least, except for the tail at session end
	talkJitter   = 4000 // 500 ms of jitter buffer; more is dropped
)

// speakerGate gives the speaker to one session at a time. Taking and
// releasing it only change the holder under mu, which no I/O ever holds, so
// the service and session loops never wait on the sink. Writes are
// serialized by wmu so that a session that lost the speaker cannot write a
// late chunk between another session's.
type speakerGate struct {
	sink   Speaker
	mu     sync.Mutex
	holder *session
	wmu    sync.Mutex

	totals talkCounts // of every session since the service was built
}

// acquire takes the speaker for se on its explicit request, and clears its
// stop; ok is false when another session holds it, taken is true when se
// did not hold it before.
func (g *speakerGate) acquire(se *session) (ok, taken bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holder != nil && g.holder != se {
		return false, false
	}
	se.talk.stopped = false
	taken = g.holder != se
	g.holder = se
	return true, taken
}

// acquireAuto takes the speaker for se because it sends audio: only when
// nobody holds it and se has not stopped talking explicitly.
func (g *speakerGate) acquireAuto(se *session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holder != nil || se.talk.stopped {
		return false
	}
	g.holder = se
	return true
}

// release frees the speaker if se holds it and reports whether it did.
// With stop, se's own request, se does not take it again by talking.
func (g *speakerGate) release(se *session, stop bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if stop {
		se.talk.stopped = true
	}
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
// does not are not written and ok is false.
func (g *speakerGate) write(se *session, p []byte) (ok bool, err error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if !g.holds(se) {
		return false, nil
	}
	_, err = g.sink.Write(p)
	return true, err
}

// talkCounter names a talkback counter, in payload bytes.
type talkCounter int

const (
	talkReceived talkCounter = iota // read from the app's audio track
	talkWritten                     // taken by the speaker sink
	// Dropped, by rule:
	talkNotHolder  // the session did not hold the speaker
	talkJitterFull // the jitter buffer was full
	talkSink       // the sink refused them (stalled, closed)
	talkCounters
)

// talkCounts are a session's talkback counters, or the service's totals.
type talkCounts [talkCounters]atomic.Uint64

func (t *talkCounts) snapshot() TalkbackStats {
	st := TalkbackStats{
		Received:          t[talkReceived].Load(),
		Written:           t[talkWritten].Load(),
		DroppedNotHolder:  t[talkNotHolder].Load(),
		DroppedJitterFull: t[talkJitterFull].Load(),
		DroppedSink:       t[talkSink].Load(),
	}
	st.Dropped = st.DroppedNotHolder + st.DroppedJitterFull + st.DroppedSink
	return st
}

// talkStats are a session's talkback state.
type talkStats struct {
	talkCounts
	// stopped is set by an explicit stop and cleared by an explicit
	// start, under the gate's mu: a session that gave the speaker back
	// does not take it again by talking.
	stopped bool
}

// TalkbackStats count the apps' talkback audio in payload bytes.
type TalkbackStats struct {
	Received uint64
	Written  uint64
	// Dropped is the sum of the three below.
	Dropped uint64
	// DroppedNotHolder: sent by a session that did not hold the speaker
	// (another one did, or talkback is explicit and it did not ask).
	DroppedNotHolder uint64
	// DroppedJitterFull: the jitter buffer was full.
	DroppedJitterFull uint64
	// DroppedSink: the sink refused them (stalled or failed).
	DroppedSink uint64
}

// Talkback returns the talkback counters of every session the service has
// run; zero without a speaker. Any goroutine may call it.
func (s *Service) Talkback() TalkbackStats {
	if s.speaker == nil {
		return TalkbackStats{}
	}
	return s.speaker.totals.snapshot()
}

// count adds n bytes to the session's counter c and to the service's.
func (se *session) count(c talkCounter, n int) {
	se.talk.talkCounts[c].Add(uint64(n))
	if g := se.svc.speaker; g != nil {
		g.totals[c].Add(uint64(n))
	}
}

// mayTalk reports whether se's audio goes to the speaker: it holds it, or
// talkback is auto and it takes the free speaker now.
func (se *session) mayTalk() bool {
	g := se.svc.speaker
	if g.holds(se) {
		return true
	}
	if se.svc.cfg.talkbackMode() == TalkbackExplicit || !g.acquireAuto(se) {
		return false
	}
	se.log.Info("speaker start", "talkback", TalkbackAuto.String())
	se.svc.events.emit(EventSpeakerStart, se.id, 0)
	return true
}

// startTalk reads the app's audio track into a jitter buffer, and writes the
// buffer to the speaker while the session holds it. Both goroutines end when
// the track does, that is when the peer connection closes; the tail of the
// buffer is written then. Neither waits on the sink (see Speaker).
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
			n := len(p.Payload)
			if n == 0 {
				continue
			}
			se.count(talkReceived, n)
			if !se.mayTalk() {
				se.count(talkNotHolder, n)
				continue
			}
			// The RTP reader must never wait on the speaker: a full buffer
			// means the sink is too slow, and the newest audio is dropped.
			// This goroutine is the only writer, so writing at most Free
			// bytes never blocks.
			w, _ := rb.Write(p.Payload[:min(n, rb.Free())])
			if w < n {
				se.count(talkJitterFull, n-w)
			}
		}
	})
	wg.Go(func() {
		defer se.logTalk()
		buf := make([]byte, talkChunk)
		var failed bool // logged once; logTalk sums up
		for {
			n, err := io.ReadAtLeast(rb, buf, talkMinChunk)
			if n > 0 {
				ok, werr := g.write(se, buf[:n])
				switch {
				case werr != nil:
					se.count(talkSink, n)
					if !failed {
						failed = true
						se.log.Warn("speaker write failed: talkback is dropped", "rule", string(RuleSpeakerSink), "err", werr)
					}
				case ok:
					se.count(talkWritten, n)
				default:
					se.count(talkNotHolder, n)
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

// logTalk summarizes a session's talkback once, when its track ends.
func (se *session) logTalk() {
	st := se.talk.snapshot()
	if st.Received == 0 {
		return
	}
	// Audio of a session that does not hold the speaker is dropped by
	// design; only losses of the holder's audio are a warning.
	log := se.log.Info
	if st.DroppedJitterFull+st.DroppedSink > 0 {
		log = se.log.Warn
	}
	log("talkback ended", "received", st.Received, "written", st.Written, "dropped", st.Dropped,
		"not_holder", st.DroppedNotHolder, "jitter_full", st.DroppedJitterFull, "sink", st.DroppedSink,
		"talkback", se.svc.cfg.talkbackMode().String())
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
	ok, taken := g.acquire(se)
	if !ok {
		return ResSpeakerInUse, "speaker is used by another session"
	}
	if !taken {
		return ResOK, ""
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
	se.freeSpeaker(true)
	return ResOK, ""
}

// releaseSpeaker frees the speaker when the session ends.
func (se *session) releaseSpeaker() { se.freeSpeaker(false) }

// freeSpeaker frees the speaker if se holds it and raises SpeakerStop;
// stop is se's own request.
func (se *session) freeSpeaker(stop bool) {
	if g := se.svc.speaker; g != nil && g.release(se, stop) {
		st := se.talk.snapshot()
		se.log.Info("speaker stop", "received", st.Received, "written", st.Written, "dropped", st.Dropped)
		se.svc.events.emit(EventSpeakerStop, se.id, 0)
	}
}
