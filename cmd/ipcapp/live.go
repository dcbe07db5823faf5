package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
)

// liveStats is the -json output of live.
type liveStats struct {
	Session string `json:"session"`
	Codec   string `json:"codec"`
	// Sizes are the picture sizes of the keyframes, each change once: the
	// stream the device sends shows here, since RTP does not name it.
	Sizes         []string     `json:"sizes,omitempty"`
	TTFFms        float64      `json:"ttff_ms"`
	TTFFPhases    ttffPhases   `json:"ttff_phases"`
	VideoFrames   int          `json:"video_frames"`
	AudioFrames   int          `json:"audio_frames"`
	Bytes         int64        `json:"bytes"`
	VideoBytes    int64        `json:"video_bytes"`
	AudioBytes    int64        `json:"audio_bytes"`
	FPS           float64      `json:"fps"`
	Skipped       int          `json:"skipped"`
	CandidateType string       `json:"candidate_type"`
	FirstKeyframe bool         `json:"first_keyframe"`
	DurationMS    float64      `json:"duration_ms"`
	Error         string       `json:"error,omitempty"`
	Code          int          `json:"code,omitempty"`
	CloseReason   int          `json:"close_reason,omitempty"`
	Switch        *switchStats `json:"switch,omitempty"`
}

// switchStats reports the -switch-to request.
type switchStats struct {
	To      string `json:"to"`
	Sent    bool   `json:"sent"`
	ResCode int    `json:"res_code"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// liveFlags are the flags of ipcapp live.
type liveFlags struct {
	cf          commonFlags
	seconds     float64
	outPath     string
	audioPath   string
	asJSON      bool
	firstFrame  time.Duration
	switchTo    string
	switchAfter time.Duration
}

func parseLiveFlags(args []string, stderr io.Writer) (liveFlags, int, bool) {
	var lf liveFlags
	fs := flag.NewFlagSet("live", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lf.cf.register(fs)
	fs.Float64Var(&lf.seconds, "seconds", 10, "receive this long after the first frame; 0 = until Ctrl-C")
	fs.StringVar(&lf.outPath, "out", "", "write the video to FILE as Annex-B H.264 or H.265 (plays with ffplay)")
	fs.StringVar(&lf.audioPath, "audio-out", "", "write the audio to FILE as raw G.711 (ffplay -f mulaw -ar 8000)")
	fs.BoolVar(&lf.asJSON, "json", false, "print the stats as one JSON object")
	fs.DurationVar(&lf.firstFrame, "first-frame-timeout", viewer.DefaultFirstFrameTimeout, "give up when no video arrives this long after the offer")
	fs.StringVar(&lf.switchTo, "switch-to", "", "main|sub: ask the device to switch the session to this stream (protocol 312)")
	fs.DurationVar(&lf.switchAfter, "switch-after", 2*time.Second, "with -switch-to: this long after the first frame")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp live -broker URL -dev-id D -p2p-password P [-codec h264|h265|any] [-switch-to sub -switch-after 2s] [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, &lf.cf); !ok {
		return lf, code, false
	}
	if lf.seconds < 0 {
		fmt.Fprintln(stderr, "ipcapp live: -seconds must not be negative")
		return lf, exitUsage, false
	}
	if lf.switchTo != "" && lf.switchTo != "main" && lf.switchTo != "sub" || lf.switchAfter < 0 {
		fmt.Fprintln(stderr, "ipcapp live: -switch-to must be main or sub, -switch-after must not be negative")
		return lf, exitUsage, false
	}
	return lf, exitOK, true
}

func runLive(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	lf, code, ok := parseLiveFlags(args, stderr)
	if !ok {
		return code
	}
	video, err := createSink(lf.outPath)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp live:", err)
		return exitFailed
	}
	audio, err := createSink(lf.audioPath)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp live:", err)
		return exitFailed
	}

	log := lf.cf.logger(stderr)
	client, err := viewer.NewClient(ctx, lf.cf.config(), log)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp live:", err)
		return exitFailed
	}
	defer client.Close()

	opt, sizes, started := lf.watchOptions(video, audio)
	var sw *switcher
	if lf.switchTo != "" {
		sw = startSwitch(ctx, client, opt.SessionID, lf.switchTo, lf.switchAfter, started)
	}
	res, werr := client.Watch(ctx, opt)
	for _, s := range []*sink{video, audio} {
		if err := s.close(); err != nil {
			fmt.Fprintln(stderr, "ipcapp live:", err)
			if werr == nil {
				werr = err
			}
		}
	}

	st := newLiveStats(res)
	st.Sizes = sizes.sizes
	if sw != nil {
		r := sw.stop()
		st.Switch = &r
	}
	return reportLive(stdout, stderr, st, res, werr, lf.asJSON)
}

// watchOptions are the options of the session; started is closed at the
// first video frame.
func (lf *liveFlags) watchOptions(video, audio *sink) (viewer.WatchOptions, *sizeTracker, chan struct{}) {
	opt := lf.cf.watchOptions()
	opt.SessionID = randomHex(8)
	opt.Duration = time.Duration(lf.seconds * float64(time.Second))
	opt.FirstFrameTimeout = lf.firstFrame
	sizes := &sizeTracker{}
	if lf.cf.codec != "any" {
		sizes.codec = lf.cf.codec
	}
	started := make(chan struct{})
	var startOnce sync.Once
	opt.OnVideo = func(au []byte, key bool) {
		startOnce.Do(func() { close(started) })
		if key {
			sizes.keyframe(au)
		}
		if video != nil {
			video.write(au)
		}
	}
	if audio != nil {
		opt.OnAudio = audio.write
	}
	return opt, sizes, started
}

// reportLive prints the stats and returns the exit status.
func reportLive(stdout, stderr io.Writer, st liveStats, res viewer.Result, werr error, asJSON bool) int {
	var refused *viewer.RefusedError
	if errors.As(werr, &refused) {
		st.Code, st.CloseReason = refused.Code, refused.CloseReason
	}
	if werr != nil {
		st.Error = werr.Error()
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(st); err != nil {
			fmt.Fprintln(stderr, "ipcapp live:", err)
			return exitFailed
		}
	} else if res.VideoFrames+res.AudioFrames > 0 {
		printLive(stdout, st)
	}
	switch {
	case refused != nil:
		fmt.Fprintf(stderr, "ipcapp live: refused: code %d, close_reason %d: %s\n", refused.Code, refused.CloseReason, refused.Message)
		return exitRefused
	case werr != nil:
		fmt.Fprintln(stderr, "ipcapp live:", werr)
		return exitFailed
	}
	return switchStatus(stderr, st.Switch)
}

// switchStatus is the exit status a -switch-to request leaves.
func switchStatus(stderr io.Writer, sw *switchStats) int {
	if sw == nil {
		return exitOK
	}
	switch {
	case !sw.Sent:
		fmt.Fprintf(stderr, "ipcapp live: the session ended before the switch to %s was due\n", sw.To)
		return exitFailed
	case sw.Error != "":
		fmt.Fprintf(stderr, "ipcapp live: switch to %s: %s\n", sw.To, sw.Error)
		return exitFailed
	case sw.ResCode != 0:
		fmt.Fprintf(stderr, "ipcapp live: switch to %s refused: resCode %d: %s\n", sw.To, sw.ResCode, sw.Message)
		return exitRefused
	}
	return exitOK
}

// sizeTracker records the picture sizes of the keyframes, for the log of
// what the device sent. It runs on the video callback only.
type sizeTracker struct {
	codec string // found from the first keyframe when -codec is any
	sizes []string
}

func (t *sizeTracker) keyframe(au []byte) {
	codecs := []string{t.codec}
	if t.codec == "" {
		// The first keyframe carries its parameter sets, and an H.264 SPS
		// header byte is no H.265 SPS header, so one parse succeeds.
		codecs = []string{"H264", "H265"}
	}
	for _, c := range codecs {
		if w, h, ok := viewer.VideoSize(au, c); ok {
			t.codec = c
			if s := fmt.Sprintf("%dx%d", w, h); len(t.sizes) == 0 || t.sizes[len(t.sizes)-1] != s {
				t.sizes = append(t.sizes, s)
			}
			return
		}
	}
}

// switcher sends the -switch-to request once the session has run for a
// while.
type switcher struct {
	mu     sync.Mutex
	cancel context.CancelFunc // ends the wait before the request is sent
	done   chan struct{}
	st     switchStats
}

func startSwitch(ctx context.Context, c *viewer.Client, sessionID, to string, after time.Duration, started <-chan struct{}) *switcher {
	wait, cancel := context.WithCancel(ctx)
	sw := &switcher{cancel: cancel, done: make(chan struct{}), st: switchStats{To: to}}
	go func() {
		defer close(sw.done)
		select {
		case <-started:
		case <-wait.Done():
			return
		}
		t := time.NewTimer(after)
		defer t.Stop()
		select {
		case <-t.C:
		case <-wait.Done():
			return
		}
		sw.mu.Lock()
		if wait.Err() != nil {
			sw.mu.Unlock()
			return
		}
		sw.st.Sent = true
		sw.mu.Unlock()
		// Not tied to the session: the reply may come just after it ended.
		code, msg, err := c.SwitchStream(ctx, sessionID, to)
		sw.mu.Lock()
		sw.st.ResCode, sw.st.Message = code, msg
		if err != nil {
			sw.st.Error = err.Error()
		}
		sw.mu.Unlock()
	}()
	return sw
}

// stop gives up a request not sent yet, waits for one in flight, and
// reports.
func (sw *switcher) stop() switchStats {
	sw.mu.Lock()
	if !sw.st.Sent {
		sw.cancel()
	}
	sw.mu.Unlock()
	<-sw.done
	sw.cancel()
	return sw.st
}

// ttffPhases is the client's side of the TTFF breakdown, in milliseconds:
// offer published → answer received → ICE connected → DTLS connected →
// first keyframe. The phases add up to ttff_ms.
type ttffPhases struct {
	OfferToAnswer  float64 `json:"offer_to_answer_ms"`
	AnswerToICE    float64 `json:"answer_to_ice_ms"`
	ICEToDTLS      float64 `json:"ice_to_dtls_ms"`
	DTLSToKeyframe float64 `json:"dtls_to_keyframe_ms"`
}

func newLiveStats(r viewer.Result) liveStats {
	return liveStats{
		Session: r.SessionID,
		Codec:   r.Codec,
		TTFFms:  ms(r.TTFF),
		TTFFPhases: ttffPhases{
			OfferToAnswer: ms(r.TTFFPhases.OfferToAnswer), AnswerToICE: ms(r.TTFFPhases.AnswerToICE),
			ICEToDTLS: ms(r.TTFFPhases.ICEToDTLS), DTLSToKeyframe: ms(r.TTFFPhases.DTLSToKeyframe),
		},
		VideoFrames:   r.VideoFrames,
		AudioFrames:   r.AudioFrames,
		Bytes:         r.VideoBytes + r.AudioBytes,
		VideoBytes:    r.VideoBytes,
		AudioBytes:    r.AudioBytes,
		FPS:           round1(r.FPS),
		Skipped:       r.Skipped,
		CandidateType: r.CandidateType,
		FirstKeyframe: r.FirstKey,
		DurationMS:    ms(r.Duration),
	}
}

func printLive(w io.Writer, s liveStats) {
	fmt.Fprintf(w, "session         %s\n", s.Session)
	sizes := "size unknown"
	if len(s.Sizes) > 0 {
		sizes = strings.Join(s.Sizes, " -> ")
	}
	fmt.Fprintf(w, "codec           %s, %s\n", s.Codec, sizes)
	fmt.Fprintf(w, "time to frame   %.1f ms\n", s.TTFFms)
	p := s.TTFFPhases
	fmt.Fprintf(w, "  phases        answer %.1f, ice %.1f, dtls %.1f, keyframe %.1f ms\n",
		p.OfferToAnswer, p.AnswerToICE, p.ICEToDTLS, p.DTLSToKeyframe)
	fmt.Fprintf(w, "video           %d frames, %d bytes, %.1f fps, %d skipped, first keyframe %v\n",
		s.VideoFrames, s.VideoBytes, s.FPS, s.Skipped, s.FirstKeyframe)
	fmt.Fprintf(w, "audio           %d frames, %d bytes\n", s.AudioFrames, s.AudioBytes)
	fmt.Fprintf(w, "candidate       %s\n", s.CandidateType)
	fmt.Fprintf(w, "received for    %.1f s\n", s.DurationMS/1000)
	if sw := s.Switch; sw != nil {
		switch {
		case !sw.Sent:
			fmt.Fprintf(w, "switch to %-5s not sent\n", sw.To)
		case sw.Error != "":
			fmt.Fprintf(w, "switch to %-5s %s\n", sw.To, sw.Error)
		default:
			fmt.Fprintf(w, "switch to %-5s resCode %d %s\n", sw.To, sw.ResCode, sw.Message)
		}
	}
}

func ms(d time.Duration) float64 { return round1(float64(d) / float64(time.Millisecond)) }

func round1(f float64) float64 { return math.Round(f*10) / 10 }

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// sink writes the frames of one track to a file. write runs on the track's
// goroutine; the first error stops writing and is reported by close.
type sink struct {
	f   *os.File
	w   *bufio.Writer
	err error
}

func createSink(path string) (*sink, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &sink{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (s *sink) write(b []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
}

// close is called after Watch returned, so no write runs concurrently.
func (s *sink) close() error {
	if s == nil {
		return nil
	}
	if s.err == nil {
		s.err = s.w.Flush()
	}
	if err := s.f.Close(); s.err == nil {
		s.err = err
	}
	if s.err != nil {
		return fmt.Errorf("%s: %w", s.f.Name(), s.err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails since Go 1.24
	return hex.EncodeToString(b)
}
