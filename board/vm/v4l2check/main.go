// Command v4l2check captures from a V4L2 device through ipcd's v4l2 source
// into a ring for a few seconds and checks what came out: enough access
// units, a first keyframe carrying its parameter sets, an H.264 SPS giving the
// size asked for, and a keyframe for a reader that joins when none is
// buffered (forced within a few frames when the source encodes). It is the
// payload of the VM test (board/vm/run-v4l2-test.sh) and needs a build with
// -tags v4l2.
//
// With -gop-check, no late reader joins and the keyframes must come exactly
// -keyint frames apart. With -expect-refused SIZE, the size asked for must be
// refused by Open and Run with an error that lists SIZE among the sizes the
// device offers.
//
// With -feed, it also plays the camera: it writes an Annex-B file, one access
// unit per buffer, to a v4l2loopback output device, and the source reads the
// capture side natively; every captured frame must then be one of the
// file's access units, in order.
//
// The result is one line on stdout for scripts to parse:
//
//	V4L2CHECK ok frames=126 keyframes=2 fps=25.0 ...
//	V4L2CHECK fail reason=few-frames frames=3 ...
//
// With -disk, the Annex-B stream is written to a block device behind a
// 512-byte header "V4L2CHECK-ANNEXB <length>\n", so the host can cut it out of
// the disk image; with -out, to a plain file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipcd/ipcd/media"
)

const diskHeaderSize = 512

func main() { os.Exit(run()) }

type options struct {
	device            string
	width, height     int
	fps               int
	keyint            int
	seconds           time.Duration
	minFrames         int
	ringFrames        int
	joinAfter         time.Duration
	out, disk         string
	verbose           bool
	forceWithinFrames int
	codec             media.Codec
	feed, feedDevice  string
	maxFeedGaps       int
	gopCheck          bool
	expectRefused     string
}

func run() int {
	var o options
	flag.StringVar(&o.device, "device", "/dev/video0", "V4L2 capture device")
	flag.IntVar(&o.width, "width", 640, "picture width")
	flag.IntVar(&o.height, "height", 480, "picture height")
	flag.IntVar(&o.fps, "fps", 25, "frame rate")
	flag.IntVar(&o.keyint, "keyint", 250, "frames between IDR pictures; long, so that only a forced one shows up in the capture")
	flag.DurationVar(&o.seconds, "duration", 5*time.Second, "capture time")
	flag.IntVar(&o.minFrames, "min-frames", 20, "access units required")
	flag.IntVar(&o.ringFrames, "ring-frames", 16, "ring size in frames; small, so the first keyframe is evicted before the late reader joins")
	flag.DurationVar(&o.joinAfter, "join-after", 2500*time.Millisecond, "when a second reader joins (no earlier than the first keyframe's eviction)")
	flag.IntVar(&o.forceWithinFrames, "force-within", 3, "frames after the join by which the forced keyframe must arrive")
	flag.StringVar(&o.out, "out", "", "write the Annex-B stream to this file")
	flag.StringVar(&o.disk, "disk", "", "write the Annex-B stream behind a header to this block device")
	flag.BoolVar(&o.verbose, "v", false, "debug logs")
	codec := flag.String("codec", "h264", "codec of the ring: h264 or h265 (h265 needs a device that encodes it)")
	flag.StringVar(&o.feed, "feed", "", "Annex-B file to play into -feed-device")
	flag.StringVar(&o.feedDevice, "feed-device", "", "v4l2loopback device whose capture side is -device")
	flag.IntVar(&o.maxFeedGaps, "max-feed-gaps", 0, "feed access units the capture may miss")
	flag.BoolVar(&o.gopCheck, "gop-check", false, "no late reader; every keyframe must follow the last by exactly -keyint frames")
	flag.StringVar(&o.expectRefused, "expect-refused", "", "the size asked for must be refused, with this size among those the device offers")
	flag.Parse()
	var err error
	if o.codec, err = media.ParseCodec(*codec); err != nil || !o.codec.IsVideo() {
		fmt.Fprintf(os.Stderr, "v4l2check: -codec %s: want h264 or h265\n", *codec)
		return 2
	}

	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var res result
	if o.expectRefused != "" {
		res, err = checkRefused(o, log)
	} else {
		res, err = check(o, log)
	}
	fmt.Println(res.line(err))
	if err != nil {
		return 1
	}
	return 0
}

// checkError is a failed check: a reason token for scripts and the detail.
type checkError struct {
	reason string
	err    error
}

func (e *checkError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *checkError) Unwrap() error { return e.err }

func fail(reason string, format string, args ...any) error {
	return &checkError{reason: reason, err: fmt.Errorf(format, args...)}
}

type result struct {
	frames, keyframes, skipped int
	bytes                      int
	fps                        float64
	captureTime                time.Duration
	sps                        media.SPSInfo
	mode                       media.V4L2Mode
	forcedDelay                time.Duration
	forcedAfter                int // frames from the join to the forced keyframe
	feedGaps                   int // feed access units never captured
	stats                      media.V4L2Stats
	gop                        int  // frames between keyframes, with -gop-check
	refused                    bool // with -expect-refused
}

func (r result) line(err error) string {
	var b strings.Builder
	if err == nil {
		b.WriteString("V4L2CHECK ok")
	} else {
		reason := "error"
		if ce := (*checkError)(nil); errors.As(err, &ce) {
			reason = ce.reason
		}
		fmt.Fprintf(&b, "V4L2CHECK fail reason=%s", reason)
	}
	fmt.Fprintf(&b, " frames=%d keyframes=%d fps=%.1f size=%dx%d profile=%d level=%d bytes=%d skipped=%d",
		r.frames, r.keyframes, r.fps, r.sps.Width, r.sps.Height, r.sps.Profile, r.sps.Level, r.bytes, r.skipped)
	fmt.Fprintf(&b, " format=%s native=%v device_fps=%g join_keyframe_ms=%d join_keyframe_after=%d forced=%d",
		orDash(r.mode.Format), r.mode.Native, r.mode.FPS, r.forcedDelay.Milliseconds(), r.forcedAfter, r.stats.KeyframesForced)
	fmt.Fprintf(&b, " feed_gaps=%d capture_s=%.2f opens=%d failures=%d dropped=%d gop=%d refused=%v",
		r.feedGaps, r.captureTime.Seconds(), r.stats.Opens, r.stats.Failures, r.stats.Dropped, r.gop, r.refused)
	if err != nil {
		fmt.Fprintf(&b, " detail=%q", err.Error())
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func check(o options, log *slog.Logger) (result, error) {
	var res result
	ring, src, err := newCapture(o, log)
	if err != nil {
		return res, fail("setup", "%w", err)
	}
	c, err := capture(o, ring, src, log, &res)
	if err != nil {
		return res, err
	}
	if c.runErr != nil {
		return res, fail("run", "%w", c.runErr)
	}
	stream := summarize(&res, c.frames)
	if err := writeStream(o, stream); err != nil {
		return res, fail("write", "%w", err)
	}

	if res.frames == 0 {
		return res, fail("no-frames", "nothing captured in %s (opens %d, failures %d)", o.seconds, res.stats.Opens, res.stats.Failures)
	}
	if wantNative := c.feed != nil; res.mode.Native != wantNative {
		return res, fail("path", "native=%v, want %v (mode %s)", res.mode.Native, wantNative, res.mode)
	}
	if err := checkFirst(o, c.frames[0], &res); err != nil {
		return res, err
	}
	if c.feed != nil {
		if err := checkFeed(o, c, &res, log); err != nil {
			return res, err
		}
	}
	if res.frames < o.minFrames {
		return res, fail("few-frames", "%d access units in %s, want at least %d", res.frames, o.seconds, o.minFrames)
	}
	if res.skipped != 0 {
		return res, fail("skipped", "the collecting reader skipped %d frames", res.skipped)
	}
	if o.gopCheck {
		res.gop, err = checkGOP(c.frames, o.keyint)
		return res, err
	}
	return res, checkJoin(o, c.late, &res)
}

// newCapture builds the ring and the V4L2 source feeding it.
func newCapture(o options, log *slog.Logger) (*media.Ring, *media.V4L2Source, error) {
	// The ring asks the source for a keyframe when a reader joins with none
	// buffered; the source exists only after the ring, hence the pointer.
	var srcRef atomic.Pointer[media.V4L2Source]
	ring, err := media.NewRing(media.RingConfig{
		Stream:    media.StreamMain,
		Codec:     o.codec,
		MaxBytes:  64 << 20,
		MaxFrames: o.ringFrames,
		OnKeyframeRequest: func() {
			if s := srcRef.Load(); s != nil {
				s.RequestKeyframe(media.StreamMain)
			}
		},
	}, log)
	if err != nil {
		return nil, nil, err
	}
	src, err := media.NewV4L2Source(media.V4L2SourceConfig{Device: o.device, FPS: o.fps, V4L2Config: media.V4L2Config{Width: o.width, Height: o.height, GOP: o.keyint}}, ring, log)
	if err != nil {
		return nil, nil, err
	}
	srcRef.Store(src)
	return ring, src, nil
}

// captured is what one capture gave.
type captured struct {
	frames  []media.Frame // every frame appended, in order
	late    lateJoin
	feed    *feeder // nil without -feed
	feedErr error
	runErr  error
}

// capture runs the source (and the feed) for o.seconds, collects every
// frame the ring takes and lets a late reader join; it closes the ring.
func capture(o options, ring *media.Ring, src *media.V4L2Source, log *slog.Logger, res *result) (captured, error) {
	var c captured
	var wg sync.WaitGroup
	defer wg.Wait()
	feedDone := make(chan struct{})
	// The feed outlives the capture so that the source never sees its
	// camera stop.
	feedCtx, stopFeed := context.WithCancel(context.Background())
	defer stopFeed()
	if o.feed != "" {
		fd, err := openFeeder(o.feedDevice, o.feed, o.codec, o.width, o.height, o.fps)
		if err != nil {
			return c, fail("feed", "%w", err)
		}
		c.feed = fd
		wg.Go(func() {
			defer close(feedDone)
			c.feedErr = fd.run(feedCtx)
		})
	} else {
		close(feedDone)
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.seconds)
	defer cancel()
	all := ring.NewReader()
	defer all.Close()
	start := time.Now()
	runDone := make(chan struct{})
	wg.Go(func() {
		defer close(runDone)
		c.runErr = src.Run(ctx)
	})

	joined := make(chan struct{})
	lateDone := make(chan struct{})
	wg.Go(func() {
		defer close(lateDone)
		if o.gopCheck {
			return // a joining reader may force a keyframe
		}
		c.late.run(ctx, ring, o.joinAfter, joined)
	})

	joinedOnce := sync.OnceFunc(func() { close(joined) })
	defer joinedOnce()
	for {
		f, skipped, err := all.Next(ctx)
		if err != nil {
			break
		}
		res.skipped += skipped
		c.frames = append(c.frames, f)
		if len(c.frames) == o.ringFrames+2 {
			joinedOnce()
		}
	}
	res.captureTime = time.Since(start)
	<-lateDone
	<-runDone
	stopFeed()
	<-feedDone
	ring.Close()
	res.stats = src.Stats()
	res.mode = res.stats.Mode
	return c, nil
}

// lateJoin is a reader that joins once the first keyframe has surely left
// the ring; its first frame is then a keyframe made for it.
type lateJoin struct {
	seq     uint64 // the last frame appended before the join
	at      time.Time
	first   media.Frame
	firstAt time.Time
}

// run joins after the delay, once joined is closed, and waits for the
// reader's first frame.
func (l *lateJoin) run(ctx context.Context, ring *media.Ring, after time.Duration, joined <-chan struct{}) {
	t := time.NewTimer(after)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	select {
	case <-ctx.Done():
		return
	case <-joined:
	}
	// The ring numbers frames from 1, so the last one appended so far
	// has the number of frames appended.
	l.seq, l.at = ring.Stats().Appended, time.Now()
	late := ring.NewReader()
	defer late.Close()
	f, _, err := late.Next(ctx)
	if err == nil {
		l.first, l.firstAt = f, time.Now()
	}
}

// summarize counts the frames into res and returns them as one stream.
func summarize(res *result, frames []media.Frame) []byte {
	var stream []byte
	for _, f := range frames {
		stream = append(stream, f.Payload...)
		if f.Kind == media.KindI {
			res.keyframes++
		}
	}
	res.frames, res.bytes = len(frames), len(stream)
	if n := len(frames); n >= 2 {
		span := frames[n-1].PTS - frames[0].PTS
		if span > 0 {
			res.fps = float64(n-1) * 1e6 / float64(span)
		}
	}
	return stream
}

// checkFirst checks that the first access unit is a keyframe carrying its
// parameter sets and, for H.264, an SPS of the size asked for.
func checkFirst(o options, f0 media.Frame, res *result) error {
	isKey, hasPS := media.IsH264Keyframe, media.H264HasParameterSets
	if o.codec == media.CodecH265 {
		isKey, hasPS = media.IsH265Keyframe, media.H265HasParameterSets
	}
	if f0.Kind != media.KindI || f0.Codec != o.codec || !isKey(f0.Payload) || !hasPS(f0.Payload) {
		return fail("first-not-keyframe", "first access unit: %s %s, keyframe %v, parameter sets %v",
			f0.Codec, f0.Kind, isKey(f0.Payload), hasPS(f0.Payload))
	}
	if o.codec != media.CodecH264 {
		return nil
	}
	for _, nal := range media.SplitNALUs(f0.Payload) {
		sps, err := media.ParseSPS(nal, o.codec)
		if errors.Is(err, media.ErrNotSPS) {
			continue
		}
		if err != nil {
			return fail("sps", "%w", err)
		}
		res.sps = sps
		break
	}
	if res.sps.Width != o.width || res.sps.Height != o.height {
		return fail("sps-size", "SPS says %dx%d, asked for %dx%d", res.sps.Width, res.sps.Height, o.width, o.height)
	}
	return nil
}

// checkFeed checks that every captured frame is one of the fed access
// units, in order, with at most o.maxFeedGaps missed.
func checkFeed(o options, c captured, res *result, log *slog.Logger) error {
	if c.feedErr != nil {
		return fail("feed", "%w", c.feedErr)
	}
	gaps, err := matchFeed(c.feed.units, c.frames, log)
	res.feedGaps = gaps
	if err != nil {
		return fail("feed-mismatch", "%w", err)
	}
	if gaps > o.maxFeedGaps {
		return fail("feed-gaps", "%d feed access units never captured, want at most %d", gaps, o.maxFeedGaps)
	}
	return nil
}

// checkJoin checks the late reader's first frame. With x264 the ring holds
// no keyframe when the late reader joins, so its first frame is one forced
// for it. A device that encodes keeps its own GOP (the loopback has no
// force-keyframe control): the reader may start at a buffered keyframe or
// wait for the next.
func checkJoin(o options, l lateJoin, res *result) error {
	res.forcedAfter = int(int64(l.first.Seq) - int64(l.seq))
	switch {
	case l.at.IsZero():
		return fail("no-join", "fewer than %d frames: the late reader never joined", o.ringFrames+2)
	case l.first.Seq == 0:
		return fail("no-join-keyframe", "the late reader got nothing")
	case l.first.Kind != media.KindI:
		return fail("no-join-keyframe", "the late reader started with a %s frame", l.first.Kind)
	case !res.mode.Native && res.forcedAfter <= 0:
		return fail("no-forced-keyframe", "the late reader started at seq %d, join at seq %d", l.first.Seq, l.seq)
	}
	res.forcedDelay = l.firstAt.Sub(l.at)
	if !res.mode.Native && res.forcedAfter > o.forceWithinFrames {
		return fail("slow-forced-keyframe", "forced keyframe %d frames after the join, want at most %d", res.forcedAfter, o.forceWithinFrames)
	}
	return nil
}

func writeStream(o options, stream []byte) error {
	if o.out != "" {
		if err := os.WriteFile(o.out, stream, 0o644); err != nil {
			return err
		}
	}
	if o.disk == "" {
		return nil
	}
	f, err := os.OpenFile(o.disk, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	header := make([]byte, diskHeaderSize)
	copy(header, fmt.Sprintf("V4L2CHECK-ANNEXB %d\n", len(stream)))
	if _, err := f.Write(append(header, stream...)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// matchFeed checks that every captured frame is an access unit of the feed,
// in the feed's order (looping), and returns how many feed units were not
// captured between the first captured frame and the last.
func matchFeed(units []media.AccessUnit, got []media.Frame, log *slog.Logger) (gaps int, err error) {
	n := len(units)
	pos := -1 // position in the endless feed of the last frame matched
	for i, f := range got {
		found := false
		from, to := pos+1, pos+n
		if pos < 0 {
			from, to = 0, n-1
		}
		for p := from; p <= to; p++ {
			if string(units[p%n].Payload) == string(f.Payload) {
				if pos >= 0 && p != pos+1 {
					gaps += p - pos - 1
					log.Debug("feed units not captured", "after_frame", i-1, "units", p-pos-1,
						"pts_gap_ms", (f.PTS-got[i-1].PTS)/1000)
				}
				pos, found = p, true
				break
			}
		}
		if !found {
			return gaps, fmt.Errorf("captured frame %d (%d bytes, %s) is no access unit of the feed", i, len(f.Payload), f.Kind)
		}
		if (f.Kind == media.KindI) != units[pos%n].Key {
			return gaps, fmt.Errorf("captured frame %d is %s, the feed's unit %d keyframe=%v", i, f.Kind, pos%n, units[pos%n].Key)
		}
	}
	return gaps, nil
}

// checkGOP checks that the keyframes of frames come exactly keyint frames
// apart, from the first, and returns the interval seen.
func checkGOP(frames []media.Frame, keyint int) (int, error) {
	var keys []int
	for i, f := range frames {
		if f.Kind == media.KindI {
			keys = append(keys, i)
		}
	}
	if len(keys) < 3 {
		return 0, fail("gop", "keyframes at %v in %d frames: too few to measure an interval of %d", keys, len(frames), keyint)
	}
	for i := 1; i < len(keys); i++ {
		if d := keys[i] - keys[i-1]; d != keyint {
			return d, fail("gop", "keyframes at %v: %d frames apart at %d, want %d", keys, d, keys[i], keyint)
		}
	}
	return keyint, nil
}

// checkRefused checks that a size the device does not offer is refused at
// start, by Open and by Run, with an error that lists what the device
// offers, offered among it.
func checkRefused(o options, log *slog.Logger) (result, error) {
	var res result
	ring, err := media.NewRing(media.RingConfig{Stream: media.StreamMain, Codec: o.codec, MaxBytes: 8 << 20, MaxFrames: o.ringFrames}, log)
	if err != nil {
		return res, fail("setup", "%w", err)
	}
	defer ring.Close()
	src, err := media.NewV4L2Source(media.V4L2SourceConfig{Device: o.device, FPS: o.fps,
		V4L2Config: media.V4L2Config{Width: o.width, Height: o.height}}, ring, log)
	if err != nil {
		return res, fail("setup", "%w", err)
	}
	err = src.Open()
	if !errors.Is(err, media.ErrV4L2Unsupported) || !strings.Contains(err.Error(), " "+o.expectRefused) {
		return res, fail("not-refused", "Open: %v; want ErrV4L2Unsupported listing %s", err, o.expectRefused)
	}
	log.Info("v4l2check: Open refused the size", "err", err)
	ctx, cancel := context.WithTimeout(context.Background(), o.seconds)
	defer cancel()
	err = src.Run(ctx)
	res.stats = src.Stats()
	if !errors.Is(err, media.ErrV4L2Unsupported) {
		return res, fail("not-refused", "Run: %v; want ErrV4L2Unsupported", err)
	}
	res.refused = true
	return res, nil
}
