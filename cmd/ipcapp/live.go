package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
)

// liveStats is the -json output of live.
type liveStats struct {
	Session       string  `json:"session"`
	TTFFms        float64 `json:"ttff_ms"`
	VideoFrames   int     `json:"video_frames"`
	AudioFrames   int     `json:"audio_frames"`
	Bytes         int64   `json:"bytes"`
	VideoBytes    int64   `json:"video_bytes"`
	AudioBytes    int64   `json:"audio_bytes"`
	FPS           float64 `json:"fps"`
	Skipped       int     `json:"skipped"`
	CandidateType string  `json:"candidate_type"`
	FirstKeyframe bool    `json:"first_keyframe"`
	DurationMS    float64 `json:"duration_ms"`
	Error         string  `json:"error,omitempty"`
	Code          int     `json:"code,omitempty"`
	CloseReason   int     `json:"close_reason,omitempty"`
}

func runLive(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("live", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	seconds := fs.Float64("seconds", 10, "receive this long after the first frame; 0 = until Ctrl-C")
	outPath := fs.String("out", "", "write the video to FILE as Annex-B H.264 (plays with ffplay)")
	audioPath := fs.String("audio-out", "", "write the audio to FILE as raw G.711 (ffplay -f mulaw -ar 8000)")
	asJSON := fs.Bool("json", false, "print the stats as one JSON object")
	firstFrame := fs.Duration("first-frame-timeout", viewer.DefaultFirstFrameTimeout, "give up when no video arrives this long after the offer")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp live -broker URL -dev-id D -p2p-password P [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, &cf); !ok {
		return code
	}
	if *seconds < 0 {
		fmt.Fprintln(stderr, "ipcapp live: -seconds must not be negative")
		return exitUsage
	}

	video, err := createSink(*outPath)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp live:", err)
		return exitFailed
	}
	audio, err := createSink(*audioPath)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp live:", err)
		return exitFailed
	}

	log := cf.logger(stderr)
	client, err := viewer.NewClient(ctx, cf.config(), log)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp live:", err)
		return exitFailed
	}
	defer client.Close()

	opt := viewer.WatchOptions{
		Stream:            cf.stream,
		Duration:          time.Duration(*seconds * float64(time.Second)),
		FirstFrameTimeout: *firstFrame,
		DataChannel:       cf.dataChannel,
	}
	if video != nil {
		opt.OnVideo = func(au []byte, _ bool) { video.write(au) }
	}
	if audio != nil {
		opt.OnAudio = audio.write
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
	var refused *viewer.RefusedError
	if errors.As(werr, &refused) {
		st.Code, st.CloseReason = refused.Code, refused.CloseReason
	}
	if werr != nil {
		st.Error = werr.Error()
	}
	if *asJSON {
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
	return exitOK
}

func newLiveStats(r viewer.Result) liveStats {
	return liveStats{
		Session:       r.SessionID,
		TTFFms:        ms(r.TTFF),
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
	fmt.Fprintf(w, "time to frame   %.1f ms\n", s.TTFFms)
	fmt.Fprintf(w, "video           %d frames, %d bytes, %.1f fps, %d skipped, first keyframe %v\n",
		s.VideoFrames, s.VideoBytes, s.FPS, s.Skipped, s.FirstKeyframe)
	fmt.Fprintf(w, "audio           %d frames, %d bytes\n", s.AudioFrames, s.AudioBytes)
	fmt.Fprintf(w, "candidate       %s\n", s.CandidateType)
	fmt.Fprintf(w, "received for    %.1f s\n", s.DurationMS/1000)
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
