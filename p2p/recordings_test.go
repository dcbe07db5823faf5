package p2p

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/ipcd/ipcd/media"
)

// memRecording is the reference media as a recorder would have stored
// it from t0 on: H.264 at 25 fps with a keyframe every second, and 40 ms
// PCMU frames, interleaved in time order, repeated to fill the length.
type memRecording struct {
	t0     time.Time
	frames []media.Frame
	end    time.Time

	mu       sync.Mutex
	exports  int
	exportFn func(ctx context.Context, w io.Writer, start, end time.Time) (int64, error)
	opened   atomic.Int64
	closed   atomic.Int64
}

func newMemRecording(t testing.TB, t0 time.Time, length time.Duration) *memRecording {
	t.Helper()
	return newMemRecordingOf(t, t0, length, "main.h264", media.CodecH264)
}

func newMemRecordingOf(t testing.TB, t0 time.Time, length time.Duration, file string, codec media.Codec) *memRecording {
	t.Helper()
	video, err := media.ReadAccessUnits("../configs/media/" + file)
	if err != nil {
		t.Fatal(err)
	}
	audio, err := media.ReadAccessUnits("../configs/media/audio.pcmu")
	if err != nil {
		t.Fatal(err)
	}
	r := &memRecording{t0: t0, end: t0.Add(length)}
	n := int(length / (40 * time.Millisecond))
	base := t0.UnixMilli()
	for i := range n {
		ms := int64(i) * 40
		v := video[i%len(video)]
		kind := media.KindP
		if v.Key {
			kind = media.KindI
		}
		r.frames = append(r.frames,
			media.Frame{Stream: media.StreamMain, Kind: kind, Codec: codec, PTS: ms * 1000, Timestamp: base + ms, Payload: v.Payload},
			media.Frame{Stream: media.StreamAudio, Kind: media.KindAudio, Codec: media.CodecPCMU, PTS: ms * 1000, Timestamp: base + ms, Payload: audio[i%len(audio)].Payload})
	}
	return r
}

// keyAt is the index of the video keyframe at or before t.
func (r *memRecording) keyAt(t time.Time) int {
	k := 0
	for i, f := range r.frames {
		if f.Timestamp > t.UnixMilli() {
			break
		}
		if f.Kind == media.KindI {
			k = i
		}
	}
	return k
}

// video returns the recorded video access units from the keyframe at or
// before start up to end.
func (r *memRecording) video(start, end time.Time) []media.Frame {
	var out []media.Frame
	for _, f := range r.frames[r.keyAt(start):] {
		if f.Timestamp >= end.UnixMilli() {
			break
		}
		if f.Codec.IsVideo() {
			out = append(out, f)
		}
	}
	return out
}

func (r *memRecording) Days(year int, month time.Month, loc *time.Location) ([]int, error) {
	var days []int
	y, m, d := r.t0.In(loc).Date()
	for day := time.Date(y, m, d, 0, 0, 0, 0, loc); day.Before(r.end); day = day.AddDate(0, 0, 1) {
		if day.Year() == year && day.Month() == month {
			days = append(days, day.Day())
		}
	}
	return days, nil
}

func (r *memRecording) Ranges(from, to time.Time) ([]TimeRange, error) {
	if !r.end.After(from) || !to.After(r.t0) {
		return nil, nil
	}
	return []TimeRange{{Start: r.t0, End: r.end}}, nil
}

func (r *memRecording) Open(start, end time.Time) (PlaybackSource, error) {
	if !end.After(r.t0) || !start.Before(r.end) {
		return nil, ErrNoRecording
	}
	r.opened.Add(1)
	return &memPlayback{r: r, i: r.keyAt(start), end: end}, nil
}

func (r *memRecording) Export(ctx context.Context, w io.Writer, start, end time.Time) (int64, error) {
	r.mu.Lock()
	r.exports++
	fn := r.exportFn
	r.mu.Unlock()
	if fn != nil {
		return fn(ctx, w, start, end)
	}
	return exportFrames(ctx, w, r.video(start, end))
}

// exportFrames writes the payloads one after the other: a stand-in for
// the TS file whose bytes the test can check.
func exportFrames(ctx context.Context, w io.Writer, frames []media.Frame) (int64, error) {
	if len(frames) == 0 {
		return 0, ErrNoRecording
	}
	var n int64
	for _, f := range frames {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := w.Write(f.Payload)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

type memPlayback struct {
	r   *memRecording
	i   int
	end time.Time
}

func (p *memPlayback) Next() (media.Frame, error) {
	if p.i >= len(p.r.frames) || p.r.frames[p.i].Timestamp >= p.end.UnixMilli() {
		return media.Frame{}, io.EOF
	}
	f := p.r.frames[p.i]
	p.i++
	return f, nil
}

func (p *memPlayback) Seek(t time.Time) error {
	if !t.Before(p.r.end) || t.Before(p.r.t0) {
		return ErrNoRecording
	}
	p.i = p.r.keyAt(t)
	return nil
}

func (p *memPlayback) Close() error { p.r.closed.Add(1); return nil }

// pbViewer is an app that plays back: the RTP tracks, reassembled video
// with RTP timestamps and arrival times, counted audio, and the control
// and download channels.
type pbViewer struct {
	pc      *webrtc.PeerConnection
	frames  chan viewerFrame
	audio   atomic.Uint64
	ctl     *webrtc.DataChannel
	ctlOpen chan struct{}
	replies chan CommandReply
	ended   chan Disconnect
	done    chan struct{}
	closePC func()
	wg      sync.WaitGroup
}

func newPBViewer(t testing.TB) *pbViewer {
	t.Helper()
	base := newRTPViewer(t, viewerOptions{}) // its API and transceivers
	v := &pbViewer{pc: base.pc, frames: make(chan viewerFrame, 8192), ctlOpen: make(chan struct{}),
		replies: make(chan CommandReply, 64), ended: make(chan Disconnect, 1), done: base.done, closePC: base.close}
	v.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeAudio {
			base.wg.Go(func() {
				for {
					if _, _, err := tr.ReadRTP(); err != nil {
						return
					}
					v.audio.Add(1)
				}
			})
			return
		}
		base.wg.Go(func() { v.readVideo(tr) })
	})
	var err error
	if v.ctl, err = v.pc.CreateDataChannel(ControlLabel, nil); err != nil {
		t.Fatal(err)
	}
	v.ctl.OnOpen(func() { close(v.ctlOpen) })
	v.ctl.OnMessage(func(m webrtc.DataChannelMessage) {
		var r CommandReply
		if json.Unmarshal(m.Data, &r) == nil {
			select {
			case v.replies <- r:
			default:
			}
		}
	})
	return v
}

func (v *pbViewer) readVideo(tr *webrtc.TrackRemote) {
	var dp codecs.H264Packet
	var au []byte
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if nals, err := dp.Unmarshal(p.Payload); err == nil {
			au = append(au, nals...)
		}
		if !p.Marker || len(au) == 0 {
			continue
		}
		f := viewerFrame{au: au, key: media.IsH264Keyframe(au), ts: p.Timestamp, at: time.Now()}
		au = nil
		select {
		case v.frames <- f:
		default:
		}
	}
}

// offer signals the viewer's offer with msg's extra members (replay) to d
// and follows the device's answer and candidates.
func (v *pbViewer) offer(t testing.TB, d *fmDevice, sid string, replay *Replay) {
	t.Helper()
	raw := offerMessage(t, v.pc, sid, Offer{Replay: replay})
	out := d.out.session(sid)
	if !d.svc.Deliver(raw) {
		t.Fatal("offer dropped")
	}
	v.wg.Go(func() {
		for {
			select {
			case m := <-out:
				switch m.Header.Type {
				case TypeAnswer:
					if a, err := DecodeAnswer(m.Msg); err == nil {
						_ = v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.SDP})
					}
				case TypeCandidate:
					c, _ := DecodeCandidate(m.Msg)
					if line := ParseCandidateLine(c.Candidate); line != "" {
						_ = v.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: line})
					}
				case TypeDisconnect:
					dis, _ := DecodeDisconnect(m.Msg)
					v.ended <- dis
					return
				}
			case <-v.done:
				return
			}
		}
	})
	t.Cleanup(func() { v.closePC(); v.wg.Wait() })
}

// do sends a control command and waits for the reply with its req.
func (v *pbViewer) do(t testing.TB, req int64, cmd string, value any) CommandReply {
	t.Helper()
	select {
	case <-v.ctlOpen:
	case <-time.After(waitTimeout):
		t.Fatal("control channel did not open")
	}
	m := map[string]any{"cmd": cmd, "req": req}
	if value != nil {
		m["value"] = value
	}
	raw, _ := json.Marshal(m)
	if err := v.ctl.SendText(string(raw)); err != nil {
		t.Fatal(err)
	}
	return v.reply(t, req)
}

func (v *pbViewer) reply(t testing.TB, req int64) CommandReply {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case r := <-v.replies:
			if r.Req == req {
				return r
			}
		case <-timeout:
			t.Fatalf("no reply to req %d", req)
		}
	}
}

func (v *pbViewer) next(t testing.TB) viewerFrame {
	t.Helper()
	select {
	case f := <-v.frames:
		return f
	case <-time.After(waitTimeout):
		t.Fatal("no video frame")
	}
	return viewerFrame{}
}

// drain discards the frames received so far and returns how many.
func (v *pbViewer) drain() int {
	n := 0
	for {
		select {
		case <-v.frames:
			n++
		default:
			return n
		}
	}
}

// recDevice runs the service over rings fed by the reference files, with
// rec as its recordings, and collects its events.
type recDevice struct {
	*fmDevice
	logs   *logRec
	mu     sync.Mutex
	events []Event
}

func startRecDevice(t *testing.T, rec Recordings, cfg Config) *recDevice {
	t.Helper()
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, leaks)
		}
	})
	d := &recDevice{}
	cfg.Recordings = rec
	cfg.Location = time.UTC
	cfg.Events = func(e Event) {
		d.mu.Lock()
		d.events = append(d.events, e)
		d.mu.Unlock()
	}
	m := Media{
		Main:  fileRing(t, "../configs/media/main.h264", media.StreamMain, media.CodecH264, 25),
		Audio: fileRing(t, "../configs/media/audio.pcmu", media.StreamAudio, media.CodecPCMU, 0),
	}
	d.logs = &logRec{}
	d.fmDevice = startDevice(t, m, cfg, slog.New(recHandler{rec: d.logs}))
	return d
}

// waitEvent waits for an event of type typ and returns it.
func (d *recDevice) waitEvent(t testing.TB, typ EventType) Event {
	t.Helper()
	var got Event
	waitUntil(t, "event "+typ.String(), func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, e := range d.events {
			if e.Type == typ {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// recT0 is a recording start on a second boundary, a few days back.
func recT0() time.Time {
	return time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC)
}

// TestPlaybackByteIdentical plays three seconds from the middle of a
// recorded minute: the video arrives byte-identical to what was recorded,
// in order, from the keyframe at or before start_time, at real-time pace.
func TestPlaybackByteIdentical(t *testing.T) {
	rec := newMemRecording(t, recT0(), time.Minute)
	d := startRecDevice(t, rec, Config{})
	v := newPBViewer(t)
	start := rec.t0.Add(20*time.Second + 500*time.Millisecond)
	end := start.Add(3 * time.Second)
	offered := time.Now()
	v.offer(t, d.fmDevice, "pb1", &Replay{IsReplay: 1, StartTime: start.Unix(), EndTime: end.Unix()})
	// start_time is in whole seconds: the window is 20 s .. 23 s.
	want := rec.video(time.Unix(start.Unix(), 0), time.Unix(end.Unix(), 0))
	if want[0].Kind != media.KindI || want[0].Timestamp != rec.t0.Add(20*time.Second).UnixMilli() {
		t.Fatalf("reference: first frame %s at %d", want[0].Kind, want[0].Timestamp)
	}
	var got []viewerFrame
	for len(got) < len(want) {
		got = append(got, v.next(t))
	}
	t.Logf("playback offer to first frame: %v", got[0].at.Sub(offered).Round(time.Millisecond))
	for i := range want {
		if string(got[i].au) != string(want[i].Payload) {
			t.Fatalf("access unit %d of %d differs from the recorded one (%d vs %d bytes)", i, len(want), len(got[i].au), len(want[i].Payload))
		}
		if i > 0 && got[i].ts-got[i-1].ts != 3600 {
			t.Fatalf("access unit %d: RTP timestamp step %d, want 3600 (40 ms at 1x)", i, got[i].ts-got[i-1].ts)
		}
	}
	// 75 frames of 40 ms: about 3 s of wall clock, not a burst. Loose,
	// for a busy machine: at least half of it.
	if el := got[len(got)-1].at.Sub(got[0].at); el < 1500*time.Millisecond {
		t.Fatalf("%d frames of 3 s arrived in %v: not paced", len(got), el)
	}
	d.waitEvent(t, EventPlaybackEnd)
	if e := d.waitEvent(t, EventPlaybackStart); e.SessionID != "pb1" || e.Value != int(start.Unix()) {
		t.Fatalf("start event %+v", e)
	}
	st := sessionStats(t, d.fmDevice)
	if st.TTFF <= 0 || st.VideoFrames != uint64(len(want)) {
		t.Fatalf("stats %+v, want %d video frames and a ttff", st, len(want))
	}
}

// TestPlaybackCommands drives pause, resume, speed, mute, seek and stop
// over the control channel; each does what it says and raises its event.
func TestPlaybackCommands(t *testing.T) {
	rec := newMemRecording(t, recT0(), time.Minute)
	d := startRecDevice(t, rec, Config{})
	v := newPBViewer(t)
	start := rec.t0.Add(10 * time.Second)
	v.offer(t, d.fmDevice, "pb2", &Replay{IsReplay: 1, StartTime: start.Unix(), EndTime: rec.end.Unix()})
	for range 10 {
		v.next(t)
	}
	pbPauseResume(t, v)
	pbSpeed(t, v)
	pbMute(t, v)
	to := pbSeek(t, v, rec)

	if r := v.do(t, 10, CmdPlaybackStop, nil); r.Res != ResOK {
		t.Fatalf("stop: %+v", r)
	}
	select {
	case dis := <-v.ended:
		if dis.CloseReason != int(CloseUser) {
			t.Fatalf("stop: disconnect %+v", dis)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no disconnect after playback_stop")
	}
	for _, e := range []EventType{EventPlaybackStart, EventPlaybackPause, EventPlaybackResume, EventPlaybackSpeed,
		EventPlaybackMute, EventPlaybackUnmute, EventPlaybackSeek, EventPlaybackStop} {
		if got := d.waitEvent(t, e); got.SessionID != "pb2" || got.Source != SourceWebRTC {
			t.Fatalf("event %+v", got)
		}
	}
	if e := d.waitEvent(t, EventPlaybackSeek); e.Value != int(to.Unix()) {
		t.Fatalf("seek event value %d, want %d", e.Value, to.Unix())
	}
	waitUntil(t, "the playback closed", func() bool { return rec.closed.Load() == rec.opened.Load() })
}

// pbPauseResume: after pause's reply and what was in flight, nothing
// comes; resume brings video at 1x and audio back.
func pbPauseResume(t *testing.T, v *pbViewer) {
	t.Helper()
	if r := v.do(t, 1, CmdPlaybackPause, nil); r.Res != ResOK {
		t.Fatalf("pause: %+v", r)
	}
	time.Sleep(300 * time.Millisecond) // frames already on the wire
	v.drain()
	select {
	case f := <-v.frames:
		t.Fatalf("frame (ts %d) while paused", f.ts)
	case <-time.After(time.Second):
	}
	audio := v.audio.Load()
	if r := v.do(t, 2, CmdPlaybackResume, nil); r.Res != ResOK {
		t.Fatalf("resume: %+v", r)
	}
	a, b := v.next(t), v.next(t)
	if b.ts-a.ts != 3600 {
		t.Fatalf("after resume: RTP step %d, want 3600", b.ts-a.ts)
	}
	waitUntil(t, "audio after resume", func() bool { return v.audio.Load() > audio+5 })
}

// pbSpeed: at speed 4 RTP timestamps step 10 ms a frame, frames come about
// four times as fast and audio stops; speed 3 is refused, "1" goes back.
func pbSpeed(t *testing.T, v *pbViewer) {
	t.Helper()
	if r := v.do(t, 3, CmdPlaybackSpeed, 4); r.Res != ResOK {
		t.Fatalf("speed: %+v", r)
	}
	time.Sleep(200 * time.Millisecond) // frames sent before the change
	v.drain()
	audio := v.audio.Load()
	first := v.next(t)
	prev := first
	for range 50 {
		f := v.next(t)
		if f.ts-prev.ts != 900 {
			t.Fatalf("at speed 4: RTP step %d, want 900", f.ts-prev.ts)
		}
		prev = f
	}
	// 50 frames are 2 s of recording: 0.5 s at speed 4. Loose: under 1.5 s.
	if el := prev.at.Sub(first.at); el > 1500*time.Millisecond {
		t.Fatalf("50 frames at speed 4 took %v", el)
	}
	if n := v.audio.Load() - audio; n > 3 {
		t.Fatalf("%d audio packets at speed 4, want none", n)
	}
	if r := v.do(t, 4, CmdPlaybackSpeed, 3); r.Res != ResBadRequest {
		t.Fatalf("speed 3: %+v, want res 1", r)
	}
	if r := v.do(t, 5, CmdPlaybackSpeed, "1"); r.Res != ResOK {
		t.Fatalf("speed 1: %+v", r)
	}
}

// pbMute: mute stops the audio at speed 1; unmute brings it back.
func pbMute(t *testing.T, v *pbViewer) {
	t.Helper()
	if r := v.do(t, 6, CmdPlaybackMute, nil); r.Res != ResOK {
		t.Fatalf("mute: %+v", r)
	}
	time.Sleep(300 * time.Millisecond)
	audio := v.audio.Load()
	for range 25 {
		v.next(t)
	}
	if n := v.audio.Load() - audio; n > 3 {
		t.Fatalf("%d audio packets while muted", n)
	}
	if r := v.do(t, 7, CmdPlaybackUnmute, nil); r.Res != ResOK {
		t.Fatalf("unmute: %+v", r)
	}
	audio = v.audio.Load()
	waitUntil(t, "audio after unmute", func() bool { return v.audio.Load() > audio+5 })
}

// pbSeek seeks to 45.5 s: the video goes on from the keyframe at 45 s, in
// order, with RTP timestamps that keep going forward; a seek outside the
// offer's window is refused. It returns the time sought.
func pbSeek(t *testing.T, v *pbViewer, rec *memRecording) time.Time {
	t.Helper()
	to := rec.t0.Add(45*time.Second + 500*time.Millisecond)
	if r := v.do(t, 8, CmdPlaybackSeek, to.Unix()); r.Res != ResOK {
		t.Fatalf("seek: %+v", r)
	}
	want := rec.video(time.Unix(to.Unix(), 0), rec.end)
	var last viewerFrame
	for i := 0; ; i++ {
		f := v.next(t)
		if string(f.au) == string(want[0].Payload) && f.key {
			if f.ts-last.ts > 90000 || f.ts == last.ts {
				t.Fatalf("RTP timestamp jumps by %d at the seek", f.ts-last.ts)
			}
			break
		}
		if i > 50 {
			t.Fatal("the keyframe sought did not come within 50 frames")
		}
		last = f
	}
	for i := 1; i < 10; i++ {
		if f := v.next(t); string(f.au) != string(want[i].Payload) {
			t.Fatalf("frame %d after the seek differs from the recording", i)
		}
	}
	// Outside the offer's window: refused.
	if r := v.do(t, 9, CmdPlaybackSeek, rec.t0.Unix()); r.Res != ResBadRequest {
		t.Fatalf("seek before the window: %+v", r)
	}
	return to
}

// refusal waits for the device's disconnect.
func (v *pbViewer) refusal(t *testing.T) Disconnect {
	t.Helper()
	select {
	case dis := <-v.ended:
		return dis
	case <-time.After(waitTimeout):
		t.Fatal("no disconnect")
	}
	return Disconnect{}
}

// TestPlaybackRefusals: offers the device cannot play get a disconnect
// with a close reason that says why; a bad replay member is dropped; a
// playback session takes a slot of max_clients like a live one.
func TestPlaybackRefusals(t *testing.T) {
	rec := newMemRecording(t, recT0(), time.Minute)
	in := func(d, e time.Duration) *Replay {
		return &Replay{IsReplay: 1, StartTime: rec.t0.Add(d).Unix(), EndTime: rec.t0.Add(e).Unix()}
	}
	t.Run("recording off", func(t *testing.T) {
		d := startRecDevice(t, nil, Config{})
		v := newPBViewer(t)
		v.offer(t, d.fmDevice, "off", in(0, time.Second))
		if dis := v.refusal(t); dis.CloseReason != int(CloseRecordingOff) || dis.Code != -116 || dis.Message != "recording off" {
			t.Fatalf("disconnect %+v", dis)
		}
		if n := d.svc.Drops()[RuleRecordingOff]; n != 1 {
			t.Fatalf("recording_off drops %d", n)
		}
	})
	t.Run("no recording then", func(t *testing.T) {
		d := startRecDevice(t, rec, Config{})
		v := newPBViewer(t)
		v.offer(t, d.fmDevice, "none", in(-time.Hour, -time.Hour+time.Minute))
		if dis := v.refusal(t); dis.CloseReason != int(CloseNoRecording) || dis.Code != -115 || dis.Message != "no recording" {
			t.Fatalf("disconnect %+v", dis)
		}
		if d.svc.PeerConnections() != 0 {
			t.Fatal("a peer connection was made for a refused playback")
		}
	})
	t.Run("bad replay member", func(t *testing.T) {
		d := startRecDevice(t, rec, Config{})
		for _, r := range []*Replay{in(10*time.Second, 5*time.Second), {IsReplay: 2, StartTime: rec.t0.Unix(), EndTime: rec.t0.Unix() + 1},
			{IsReplay: 1, StartTime: 5, EndTime: 10}, in(0, 25*time.Hour)} {
			msg, _ := json.Marshal(Offer{Mode: ModeWebRTC, SDP: "v=0", Replay: r, Auth: SignAuth(fmPassword, fmDevID, fmApp, time.Now().Unix()+600)})
			raw, _ := json.Marshal(Message{Header: Header{Type: TypeOffer, From: fmApp, To: fmDevID, SessionID: "bad"}, Msg: msg})
			d.svc.Deliver(raw)
		}
		waitUntil(t, "bad offers dropped", func() bool { return d.svc.Drops()[RuleBadOffer] == 4 })
	})
	t.Run("auth", func(t *testing.T) {
		d := startRecDevice(t, rec, Config{})
		msg, _ := json.Marshal(Offer{Mode: ModeWebRTC, SDP: "v=0", Replay: in(0, time.Second),
			Auth: SignAuth("ad000000", fmDevID, fmApp, time.Now().Unix()+600)})
		raw, _ := json.Marshal(Message{Header: Header{Type: TypeOffer, From: fmApp, To: fmDevID, SessionID: "auth"}, Msg: msg})
		out := d.out.session("auth")
		d.svc.Deliver(raw)
		select {
		case m := <-out:
			dis, _ := DecodeDisconnect(m.Msg)
			if m.Header.Type != TypeDisconnect || dis.CloseReason != int(CloseAuth) {
				t.Fatalf("playback offer with a wrong token: %s %+v", m.Header.Type, dis)
			}
		case <-time.After(waitTimeout):
			t.Fatal("no refusal")
		}
		if rec.opened.Load() != 0 {
			t.Fatal("the recording was opened for an offer that failed auth")
		}
	})
	t.Run("max clients", func(t *testing.T) {
		d := startRecDevice(t, rec, Config{MaxClients: 1})
		v := newPBViewer(t)
		v.offer(t, d.fmDevice, "one", in(0, 30*time.Second))
		v.next(t)
		w := newPBViewer(t)
		w.offer(t, d.fmDevice, "two", in(0, 30*time.Second))
		if dis := w.refusal(t); dis.CloseReason != int(CloseBusy) {
			t.Fatalf("second playback: %+v", dis)
		}
	})
	t.Run("memory budget", func(t *testing.T) {
		d := startRecDevice(t, rec, Config{Budget: media.NewBudget(SessionCost(256) / 2)})
		v := newPBViewer(t)
		v.offer(t, d.fmDevice, "mem", in(0, 30*time.Second))
		if dis := v.refusal(t); dis.CloseReason != int(CloseNoMemory) {
			t.Fatalf("playback over the budget: %+v", dis)
		}
	})
}

// TestPlaybackListing: the listing queries answer what the card holds, in
// live and playback sessions; bad values, playback commands in a live
// session and listing without recording are refused by rule.
func TestPlaybackListing(t *testing.T) {
	rec := newMemRecording(t, recT0(), 2*time.Minute) // 23:59 .. 00:01, over a day and a month
	d := startRecDevice(t, rec, Config{})
	v := newPBViewer(t)
	v.offer(t, d.fmDevice, "live", nil)
	v.next(t)

	days := func(req int64, y, m int) []int {
		r := v.do(t, req, CmdPlaybackQueryMonth, PlaybackDate{Year: y, Month: m})
		if r.Res != ResOK {
			t.Fatalf("query month: %+v", r)
		}
		return r.Days
	}
	if got := days(1, 2026, 11); len(got) != 1 || got[0] != 30 {
		t.Fatalf("days of 2026-11: %v", got)
	}
	if got := days(2, 2026, 12); len(got) != 1 || got[0] != 1 {
		t.Fatalf("days of 2026-12: %v", got)
	}
	if got := days(3, 2026, 10); len(got) != 0 {
		t.Fatalf("days of 2026-10: %v", got)
	}
	r := v.do(t, 4, CmdPlaybackQueryDay, PlaybackDate{Year: 2026, Month: 12, Day: 1})
	want, _ := rec.Ranges(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	if r.Res != ResOK || len(r.Ranges) != 1 || !r.Ranges[0].Start.Equal(want[0].Start) || !r.Ranges[0].End.Equal(want[0].End) {
		t.Fatalf("query day: %+v, want %v", r, want)
	}

	for i, c := range []struct {
		cmd   string
		value any
		res   int
		rule  Rule
	}{
		{CmdPlaybackQueryMonth, PlaybackDate{Year: 2026, Month: 13}, ResBadRequest, RuleBadCommand},
		{CmdPlaybackQueryDay, PlaybackDate{Year: 2026, Month: 2, Day: 29}, ResBadRequest, RuleBadCommand},
		{CmdPlaybackQueryDay, "x", ResBadRequest, RuleBadCommand},
		{CmdPlaybackSpeed, 16, ResBadRequest, RuleBadCommand},
		{CmdPlaybackSeek, 12, ResBadRequest, RuleBadCommand},
		{CmdPlaybackPause, nil, ResNotPlayback, RuleNotPlayback},
		{CmdPlaybackSeek, rec.t0.Unix(), ResNotPlayback, RuleNotPlayback},
	} {
		before := d.svc.Drops()[c.rule]
		if r := v.do(t, int64(100+i), c.cmd, c.value); r.Res != c.res {
			t.Fatalf("%s %v: %+v, want res %d", c.cmd, c.value, r, c.res)
		}
		if d.svc.Drops()[c.rule] != before+1 {
			t.Fatalf("%s %v: not counted under %s", c.cmd, c.value, c.rule)
		}
	}
	if e := d.waitEvent(t, EventPlaybackQueryDay); e.Value != 20261201 {
		t.Fatalf("query day event %+v", e)
	}
}

// TestPlaybackListingRecordingOff: without recordings the listing is
// refused with res 9.
func TestPlaybackListingRecordingOff(t *testing.T) {
	off := startRecDevice(t, nil, Config{})
	w := newPBViewer(t)
	w.offer(t, off.fmDevice, "live-off", nil)
	w.next(t)
	if r := w.do(t, 1, CmdPlaybackQueryMonth, PlaybackDate{Year: 2026, Month: 12}); r.Res != ResRecordingOff {
		t.Fatalf("listing with recording off: %+v", r)
	}
}

// dlClient is the download channel of a pbViewer: the file's bytes and
// the device's status messages, in the order they came.
type dlClient struct {
	dc     *webrtc.DataChannel
	open   chan struct{}
	mu     sync.Mutex
	data   []byte
	status chan DownloadStatus
	// bytesAt is len(data) when each status arrived.
	bytesAt []int
}

func (v *pbViewer) openDownload(t testing.TB) *dlClient {
	t.Helper()
	dc, err := v.pc.CreateDataChannel(DownloadLabel, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &dlClient{dc: dc, open: make(chan struct{}), status: make(chan DownloadStatus, 4096)}
	dc.OnOpen(func() { close(c.open) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !m.IsString {
			c.data = append(c.data, m.Data...)
			return
		}
		var st DownloadStatus
		if err := json.Unmarshal(m.Data, &st); err != nil {
			t.Errorf("download status %q: %v", m.Data, err)
			return
		}
		c.bytesAt = append(c.bytesAt, len(c.data))
		select {
		case c.status <- st:
		default: // nobody reads them (the fuzz target): pion's read loop must not wait
		}
	})
	return c
}

func (c *dlClient) waitOpen(t testing.TB) {
	t.Helper()
	select {
	case <-c.open:
	case <-time.After(waitTimeout):
		t.Fatal("download channel did not open")
	}
}

func (c *dlClient) send(t testing.TB, r DownloadRequest) {
	t.Helper()
	raw, _ := json.Marshal(r)
	if err := c.dc.SendText(string(raw)); err != nil {
		t.Fatal(err)
	}
}

// until returns the first status of type typ, skipping others.
func (c *dlClient) until(t testing.TB, typ string) DownloadStatus {
	t.Helper()
	timeout := time.After(3 * waitTimeout)
	for {
		select {
		case st := <-c.status:
			if st.Type == typ {
				return st
			}
			if st.Type == DownloadError {
				t.Fatalf("download error while waiting for %s: %+v", typ, st)
			}
		case <-timeout:
			t.Fatalf("no %s status", typ)
		}
	}
}

func (c *dlClient) received() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.data)
}

// largeExport makes rec's export write 16 MiB of the recording's bytes,
// in frame-sized writes, so that flow control and pause have something to
// hold. It returns the bytes and a channel that gets each export's end.
func (rec *memRecording) largeExport() ([]byte, chan error) {
	var want []byte
	for len(want) < 16<<20 {
		for _, f := range rec.video(rec.t0, rec.end) {
			want = append(want, f.Payload...)
		}
	}
	want = want[:16<<20]
	exported := make(chan error, 4)
	rec.exportFn = func(ctx context.Context, w io.Writer, start, end time.Time) (int64, error) {
		var n int64
		for off := 0; off < len(want); off += 40 << 10 {
			if err := ctx.Err(); err != nil {
				exported <- err
				return n, err
			}
			k, err := w.Write(want[off:min(off+40<<10, len(want))])
			n += int64(k)
			if err != nil {
				exported <- err
				return n, err
			}
		}
		exported <- nil
		return n, nil
	}
	return want, exported
}

// TestDownload downloads a range over the download channel: the bytes are
// exactly what the export wrote, with progress on the way and done at the
// end; pause holds it, resume finishes it, cancel stops the export, and
// the session loop answers control commands throughout.
func TestDownload(t *testing.T) {
	rec := newMemRecording(t, recT0(), time.Minute)
	want, exported := rec.largeExport()
	d := startRecDevice(t, rec, Config{})
	v := newPBViewer(t)
	dl := v.openDownload(t)
	v.offer(t, d.fmDevice, "dl", nil)
	v.next(t)
	dl.waitOpen(t)
	rng := DownloadRequest{Cmd: DownloadStart, Start: rec.t0.Unix(), End: rec.end.Unix()}

	dl.send(t, rng)
	dl.until(t, DownloadStarted)
	dl.until(t, DownloadProgress)
	dl.send(t, DownloadRequest{Cmd: DownloadPause})
	dl.until(t, DownloadPaused)
	// What follows the paused status on the ordered channel is at most
	// the chunk that was already on its way.
	at := dl.received()
	time.Sleep(500 * time.Millisecond) // nothing is to come: a bound, not a sync
	if n := dl.received() - at; n > 2*downloadChunk {
		t.Fatalf("%d bytes arrived while paused", n)
	}
	// The session loop still serves the control channel.
	if r := v.do(t, 1, CmdPlaybackQueryMonth, PlaybackDate{Year: 2026, Month: 11}); r.Res != ResOK {
		t.Fatalf("query during a paused download: %+v", r)
	}
	dl.send(t, rng) // a second download in the same session
	if st := dl.until(t, DownloadError); st.Res != ResBusy {
		t.Fatalf("second download: %+v", st)
	}
	dl.send(t, DownloadRequest{Cmd: DownloadResume})
	dl.until(t, DownloadResumed)
	done := dl.until(t, DownloadDone)
	if done.Bytes != int64(len(want)) || dl.received() != len(want) || string(dl.data) != string(want) {
		t.Fatalf("done %+v with %d bytes received, want %d identical", done, dl.received(), len(want))
	}
	if err := <-exported; err != nil {
		t.Fatal(err)
	}

	// Cancel: the export ends on its context, the device says cancelled.
	dl.mu.Lock()
	dl.data = nil
	dl.mu.Unlock()
	dl.send(t, rng)
	dl.until(t, DownloadProgress)
	dl.send(t, DownloadRequest{Cmd: DownloadCancel})
	st := dl.until(t, DownloadCancelled)
	if err := <-exported; !errors.Is(err, context.Canceled) {
		t.Fatalf("export after cancel: %v", err)
	}
	if st.Bytes >= int64(len(want)) || dl.received() != int(st.Bytes) {
		t.Fatalf("cancelled %+v after %d bytes received", st, dl.received())
	}
	for _, e := range []EventType{EventDownloadStart, EventDownloadPause, EventDownloadResume, EventDownloadDone, EventDownloadCancel} {
		d.waitEvent(t, e)
	}

	// Bad requests are refused by rule; the session goes on.
	for _, raw := range []string{`{"cmd":"start","start":5,"end":10}`, `{"cmd":"fly"}`, `{`, `{"cmd":"pause"}`} {
		if err := dl.dc.SendText(raw); err != nil {
			t.Fatal(err)
		}
		if st := dl.until(t, DownloadError); st.Res != ResBadRequest {
			t.Fatalf("%s: %+v", raw, st)
		}
	}
	if n := d.svc.Drops()[RuleBadDownload]; n != 4 {
		t.Fatalf("bad_download drops %d, want 4", n)
	}
}

// FuzzPlaybackChannel sends arbitrary messages on the control and
// download channels of a running playback session, through the service's
// real dispatch: after each, the session still answers a listing query.
func FuzzPlaybackChannel(f *testing.F) {
	for _, s := range []string{`{"cmd":"playback_seek","value":"1796083200","req":3}`, `{"cmd":"playback_speed","value":8,"req":1}`,
		`{"cmd":"playback_query_day","value":{"year":2026,"month":2,"day":30},"req":2}`, `{"cmd":"playback_pause"}`,
		`{"cmd":"playback_resume","value":[1]}`, `{"cmd":"playback_query_month","value":{"year":1e99}}`, `{`} {
		f.Add(false, []byte(s))
	}
	for _, s := range []string{`{"cmd":"start","start":1796083200,"end":1796083260}`, `{"cmd":"cancel"}`, `{"cmd":"pause"}`, `{"cmd":"start","start":-1}`} {
		f.Add(true, []byte(s))
	}
	rec := newMemRecording(f, recT0(), time.Minute)
	m := Media{
		Main:  fileRing(f, "../configs/media/main.h264", media.StreamMain, media.CodecH264, 25),
		Audio: fileRing(f, "../configs/media/audio.pcmu", media.StreamAudio, media.CodecPCMU, 0),
	}
	d := startDevice(f, m, Config{Recordings: rec, Location: time.UTC}, nil)
	v := newPBViewer(f)
	dl := v.openDownload(f)
	v.offer(f, d, "fuzz", &Replay{IsReplay: 1, StartTime: rec.t0.Unix(), EndTime: rec.end.Unix()})
	v.next(f)
	dl.waitOpen(f)
	req := int64(1 << 40)
	f.Fuzz(func(t *testing.T, download bool, data []byte) {
		if len(data) == 0 {
			return
		}
		if c, err := DecodeCommand(data); err == nil && c.Cmd == CmdPlaybackStop && !download {
			return // ends the session the target runs on
		}
		ch := v.ctl
		if download {
			ch = dl.dc
		}
		if err := ch.Send(data); err != nil {
			t.Fatalf("send: %v", err)
		}
		req++
		if r := v.do(t, req, CmdPlaybackQueryMonth, PlaybackDate{Year: 2026, Month: 11}); r.Res != ResOK || len(r.Days) != 1 {
			t.Fatalf("after %q: listing %+v", data, r)
		}
	})
}

// TestPlaybackFMP4H265 plays an H.265 recording to a client that takes the
// media on the fmp4Stream channel (go2rtc's Tuya mode): the video packets
// carry the recorded access units from the keyframe at or before
// start_time, packetized as the live stream is.
func TestPlaybackFMP4H265(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // after the rings' cleanups
	rec := newMemRecordingOf(t, recT0(), 30*time.Second, "main.h265", media.CodecH265)
	m := Media{
		Main:  fileRing(t, "../configs/media/main.h265", media.StreamMain, media.CodecH265, 25),
		Audio: fileRing(t, "../configs/media/audio.pcmu", media.StreamAudio, media.CodecPCMU, 0),
	}
	d := startDevice(t, m, Config{Recordings: rec, Location: time.UTC}, nil)
	c := newFMClient(t, nil)
	start := rec.t0.Add(5*time.Second + 500*time.Millisecond)
	c.replay = &Replay{IsReplay: 1, StartTime: start.Unix(), EndTime: start.Unix() + 5}
	c.connect(t, d, "fmpb", true)
	_, ssrcs := c.handshake(t)

	want := rec.video(time.Unix(start.Unix(), 0), time.Unix(start.Unix()+5, 0))
	var payloads [][]byte
	pay := newPayloader(media.CodecH265)
	for _, f := range want[:50] {
		payloads = append(payloads, pay.Payload(rtpMTU, f.Payload)...)
	}
	deadline := time.After(waitTimeout)
	for i := 0; i < len(payloads); {
		select {
		case p := <-c.packets:
			if p.SSRC != ssrcs.Video.SSRC {
				continue
			}
			if !bytes.Equal(p.Payload, payloads[i]) {
				t.Fatalf("video packet %d of %d differs from the recording's", i, len(payloads))
			}
			i++
		case <-deadline:
			t.Fatal("the recorded frames did not arrive")
		}
	}
	c.close()
	d.stop()
}

// TestDownloadFlowControl: a client that reads slowly makes SCTP queue
// the download; the device holds at most downloadHigh plus one message
// queued, and the file arrives whole.
func TestDownloadFlowControl(t *testing.T) {
	rec := newMemRecording(t, recT0(), time.Minute)
	want := bytes.Repeat([]byte("0123456789abcdef"), 8<<20/16)
	rec.exportFn = func(ctx context.Context, w io.Writer, start, end time.Time) (int64, error) {
		n, err := w.Write(want) // one write: the channel writer cuts and paces it
		return int64(n), err
	}
	d := startRecDevice(t, rec, Config{})
	v := newPBViewer(t)
	dl := v.openDownload(t)
	slow := dl.dc
	var got atomic.Int64
	slow.OnMessage(func(m webrtc.DataChannelMessage) {
		if m.IsString {
			var st DownloadStatus
			if json.Unmarshal(m.Data, &st) == nil {
				select {
				case dl.status <- st:
				default:
				}
			}
			return
		}
		got.Add(int64(len(m.Data)))
		time.Sleep(time.Millisecond) // a slow reader holds pion's read loop: SCTP's window fills
	})
	v.offer(t, d.fmDevice, "slow", nil)
	v.next(t)
	dl.waitOpen(t)
	dl.send(t, DownloadRequest{Cmd: DownloadStart, Start: rec.t0.Unix(), End: rec.end.Unix()})
	done := dl.until(t, DownloadDone)
	if done.Bytes != int64(len(want)) || got.Load() != int64(len(want)) {
		t.Fatalf("done %+v, %d bytes received, want %d", done, got.Load(), len(want))
	}
	lines := d.logs.lines(func(l logLine) bool { return l.msg == "download done" })
	if len(lines) != 1 {
		t.Fatalf("%d download done lines", len(lines))
	}
	peak, _ := strconv.ParseUint(lines[0].attrs["peak_buffered"], 10, 64)
	t.Logf("peak queued in SCTP: %d KiB", peak>>10)
	if peak > downloadHigh+downloadChunk || peak < downloadLow {
		t.Fatalf("peak queued %d bytes, want between %d (the queue filled) and %d", peak, downloadLow, downloadHigh+downloadChunk)
	}
}
