//go:build v4l2

package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/blackjack/webcam"

	"github.com/ipcd/ipcd/internal/droplog"
)

// The V4L2 source is split by path: this file holds the source, its Run loop
// and the delivery of captured buffers; v4l2formats.go the pixel formats and
// the check of what the device offers; v4l2native.go the capture from a
// device that encodes; v4l2raw.go the raw capture through mediadevices;
// v4l2x264.go the software encoder. The same declarations exist in
// v4l2source_stub.go for builds without the tag; keep the two in step.

// V4L2Built reports whether this build has V4L2 capture.
const V4L2Built = true

const (
	// A device that fails is reopened after this long; it may be a USB
	// camera being replugged or an ISP driver still loading.
	v4l2Retry = 2 * time.Second
	// How long a native device may stay silent before it is reopened. The
	// raw path has mediadevices' own 5 s read timeout.
	v4l2NativeStall = 5 * time.Second
	// Buffers queued to a native device: one being read, the rest filling.
	v4l2NativeBuffers = 4
	// Dropped access units are logged at most this often (§8).
	v4l2SummaryInterval = 10 * time.Second
)

// V4L2Source captures from a V4L2 camera and appends H.264 (or, from a device
// that encodes HEVC, H.265) access units to a ring (§7.3 `v4l2`).
//
// A device that offers the ring's codec as a pixel format at the configured
// size is read as is: that is the board's hardware encoder, far cheaper than a
// software one. Otherwise raw pictures (I420, NV12, NV21, YUYV, UYVY, or MJPEG
// as a last resort) are captured through pion/mediadevices and encoded with
// x264 (ultrafast, zerolatency: one access unit out per picture in, no
// B-frames). A configured pixel format narrows the choice to that format.
//
// PTS is the monotonic time at which the picture was dequeued from the
// device, in microseconds; Timestamp is the wall clock at that moment.
//
// Importing mediadevices' camera driver registers every /dev/video* found
// when the process starts; a device that appears later is found by a rescan.
type V4L2Source struct {
	cfg    V4L2SourceConfig
	ring   *Ring
	log    *slog.Logger
	device string // cfg.Device, defaulted

	keyReq atomic.Bool
	clock  *ptsClock // owned by Run's goroutine

	mode          atomic.Pointer[V4L2Mode]
	opens         atomic.Uint64
	failures      atomic.Uint64
	sink          sinkStats
	forced        atomic.Uint64
	keyRequests   atomic.Uint64
	nativeNoForce atomic.Bool // the device refused the force-keyframe control once

	// lossLog lets a drop summary through at most once per
	// v4l2SummaryInterval; sumDropped is the count the last one reported.
	lossLog    *droplog.Summary
	sumDropped atomic.Uint64
}

// NewV4L2Source validates cfg and applies its defaults. It does not touch the
// device: Open and Run do, so ipcd starts even while the camera is absent. A
// nil logger discards.
//
// To let readers and viewers of the ring ask for a keyframe, give the
// source to the ring's SetKeyframeRequester.
func NewV4L2Source(cfg V4L2SourceConfig, ring *Ring, log *slog.Logger) (*V4L2Source, error) {
	if ring == nil {
		return nil, fmt.Errorf("%w: no ring", ErrV4L2SourceConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	switch {
	case !ring.Stream().IsVideo():
		return nil, fmt.Errorf("%w: v4l2 source for the %s ring", ErrWrongStream, ring.Stream())
	case ring.Codec() != CodecUnknown && !ring.Codec().IsVideo():
		return nil, fmt.Errorf("%w: v4l2 source for a %s ring", ErrKindMismatch, ring.Codec())
	}
	s := &V4L2Source{
		cfg:    cfg,
		ring:   ring,
		log:    log.With("component", "v4l2source", "stream", ring.Stream().String(), "device", cfg.Device),
		device: cfg.Device,

		lossLog: droplog.NewGate(v4l2SummaryInterval),
	}
	if len(s.usableFormats()) == 0 {
		return nil, fmt.Errorf("%w: pixel_format %s cannot feed the %s ring", ErrV4L2SourceConfig, cfg.PixelFormat, ring.Codec())
	}
	return s, nil
}

// Config returns the configuration with its defaults applied.
func (s *V4L2Source) Config() V4L2SourceConfig { return s.cfg }

// RequestKeyframe makes the next picture an IDR picture, if the encoder can
// be told so (x264 always; a native device only if it has the
// force-keyframe control). It never blocks; requests made before the next
// picture coalesce.
func (s *V4L2Source) RequestKeyframe(Stream) {
	s.keyRequests.Add(1)
	s.keyReq.Store(true)
}

// Stats returns the source's counters.
func (s *V4L2Source) Stats() V4L2Stats {
	st := V4L2Stats{
		Opens:            s.opens.Load(),
		Failures:         s.failures.Load(),
		Appended:         s.sink.appended.Load(),
		Keyframes:        s.sink.keyframes.Load(),
		Bytes:            s.sink.bytes.Load(),
		Dropped:          s.sink.skipped.Load() + s.sink.rejected.Load() + s.sink.oversized.Load(),
		KeyframesForced:  s.forced.Load(),
		KeyframeRequests: s.keyRequests.Load(),
	}
	if m := s.mode.Load(); m != nil {
		st.Mode = *m
	}
	return st
}

// Open checks that the device offers the configured size in a pixel format
// the source can use, and returns ErrV4L2Unsupported, listing what it
// offers, if not. A device that cannot be opened is no error here: Run
// waits for it.
func (s *V4L2Source) Open() error {
	path, err := filepath.EvalSymlinks(s.device)
	if err != nil {
		return nil
	}
	cam, err := webcam.Open(path)
	if err != nil {
		return nil
	}
	defer cam.Close()
	if err := s.checkOffered(cam, path); err != nil {
		return fmt.Errorf("v4l2 source %s: %w", s.device, err)
	}
	return nil
}

// Run captures until ctx ends and returns nil then; it must not run twice at
// once. A device that is missing, refuses the configuration, or stops
// delivering frames is reopened every 2 s; the first failure after a working
// capture is logged at warn level, repeats at debug. Run fails if the ring
// is closed, or with ErrV4L2Unsupported if the device does not offer the
// configured size or pixel format. It returns within the device's read
// timeout (at most 5 s) of ctx ending.
func (s *V4L2Source) Run(ctx context.Context) error {
	s.log.Info("v4l2 source started", "width", s.cfg.Width, "height", s.cfg.Height, "fps", s.cfg.FPS,
		"bitrate_kbps", s.cfg.BitrateKbps, "keyframe_interval", s.cfg.GOP)
	s.clock = newPTSClock(0)
	quiet := false
	for {
		before := s.sink.appended.Load()
		err := s.capture(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRingClosed) || errors.Is(err, ErrV4L2Unsupported) {
			return fmt.Errorf("v4l2 source %s: %w", s.device, err)
		}
		s.failures.Add(1)
		if s.sink.appended.Load() != before {
			// It worked for a while, so this failure is news again.
			quiet = false
		}
		if quiet {
			s.log.Debug("v4l2 capture failed again; retrying", "err", err, "retry_in", v4l2Retry)
		} else {
			s.log.Warn("v4l2 capture failed; retrying", "err", err, "retry_in", v4l2Retry)
			quiet = true
		}
		if sleepCtx(ctx, v4l2Retry) != nil {
			return nil
		}
	}
}

// capture runs one capture from open to failure or the end of ctx.
func (s *V4L2Source) capture(ctx context.Context) error {
	path, err := filepath.EvalSymlinks(s.device)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrV4L2Device, err)
	}
	cam, err := webcam.Open(path)
	if err != nil {
		return fmt.Errorf("%w: open %s: %w", ErrV4L2Device, path, err)
	}
	if err := s.checkOffered(cam, path); err != nil {
		cam.Close()
		return err
	}
	if pf, ok := s.nativeFormat(cam); ok {
		return s.captureNative(ctx, cam, pf)
	}
	cam.Close()
	if s.ring.Codec() == CodecH265 {
		return fmt.Errorf("%w: %s offers no HEVC at %dx%d and the software encoder makes only H.264",
			ErrV4L2Device, path, s.cfg.Width, s.cfg.Height)
	}
	return s.captureRaw(ctx, path)
}

// noteDrop logs the access units dropped since the last such line, unless
// one was logged less than v4l2SummaryInterval ago; the count carries over.
// The ring logs why it rejected them.
func (s *V4L2Source) noteDrop() {
	if ok, _ := s.lossLog.Note("dropped"); !ok {
		return
	}
	st := s.Stats()
	s.log.Warn("v4l2 source dropped access units, resuming at keyframes",
		"dropped", st.Dropped-s.sumDropped.Swap(st.Dropped), "total_dropped", st.Dropped)
}

func (s *V4L2Source) started(mode V4L2Mode) {
	s.opens.Add(1)
	s.mode.Store(&mode)
	s.log.Info("v4l2 capture started", "mode", mode.String())
}

// bufferSink delivers the encoded buffers of one capture: one picture from
// x264, and from a device one picture too by the V4L2 rules for encoded
// formats. A buffer ends its last NAL unit and access unit, so none waits
// for the next buffer, and the buffer's size bounds both.
type bufferSink struct {
	stream annexbStream
	sink   *auSink // on a timeline of its own: a reopened device is a new producer
	at     time.Time
	emit   func(nal []byte) error
}

func (s *V4L2Source) newBufferSink(codec Codec) *bufferSink {
	b := &bufferSink{sink: newAUSink(s.ring, s.ring.Stream(), codec, s.clock, &s.sink)}
	// Pictures after a rejected one refer to it, so they wait for a
	// keyframe, asked for at once.
	b.sink.onReject = func() {
		s.keyReq.Store(true)
		s.noteDrop()
	}
	b.emit = func(nal []byte) error { return b.sink.push(nal, b.at) }
	return b
}

func (b *bufferSink) close() { b.sink.close() }

// push appends the access units of one buffer, captured at at. Only a
// closed ring is an error.
func (b *bufferSink) push(buf []byte, at time.Time) error {
	b.at = at
	if _, err := b.stream.feed(buf, b.emit); err != nil {
		return err
	}
	if err := b.stream.end(b.emit); err != nil {
		return err
	}
	return b.sink.flush(at)
}
