//go:build v4l2

package media

// The V4L2 constants come from the kernel headers rather than being copied,
// so a header that renumbers nothing still documents where each one lives.

/*
#include <linux/videodev2.h>
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blackjack/webcam"
	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/codec/x264"
	"github.com/pion/mediadevices/pkg/driver"
	"github.com/pion/mediadevices/pkg/driver/camera"
	"github.com/pion/mediadevices/pkg/frame"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
)

// The same declarations exist in v4l2source_stub.go for builds without the
// tag, so that callers compile either way; keep the two in step.

// V4L2Built reports whether this build has V4L2 capture.
const V4L2Built = true

// ErrV4L2NotBuilt is what NewV4L2Source returns in a build without the v4l2
// tag. This build never returns it.
var ErrV4L2NotBuilt = errors.New("built without v4l2 support (build with -tags v4l2)")

// ErrV4L2SourceConfig reports an invalid V4L2SourceConfig.
var ErrV4L2SourceConfig = errors.New("invalid v4l2 source config")

// ErrV4L2Device reports a device that cannot deliver what the source needs:
// it is missing, offers no usable mode, or stopped delivering frames. Run
// logs it and retries.
var ErrV4L2Device = errors.New("v4l2 device unusable")

const (
	defaultV4L2Device = "/dev/video0"
	defaultV4L2Width  = 640
	defaultV4L2Height = 480
	defaultV4L2FPS    = 25
	maxV4L2Dimension  = 8192
	maxV4L2FPS        = 120
	maxV4L2Bitrate    = 100_000 // kbit/s
	maxV4L2KeyframeIv = 3000
	// About 0.07 bits per pixel: x264 ultrafast gives a clean picture of a
	// typical camera scene at that rate.
	v4l2BitsPerKPixel = 70
	minDefaultBitrate = 128
	maxDefaultBitrate = 4096
	// A device that fails is reopened after this long; it may be a USB
	// camera being replugged or an ISP driver still loading.
	v4l2Retry = 2 * time.Second
	// How long a native device may stay silent before it is reopened. The
	// raw path has mediadevices' own 5 s read timeout.
	v4l2NativeStall = 5 * time.Second
	// Buffers queued to a native device: one being read, the rest filling.
	v4l2NativeBuffers = 4
)

// V4L2 pixel formats and codec controls used by the native path.
const (
	v4l2PixFmtH264     = webcam.PixelFormat(C.V4L2_PIX_FMT_H264)
	v4l2PixFmtHEVC     = webcam.PixelFormat(C.V4L2_PIX_FMT_HEVC)
	v4l2CIDForceKey    = webcam.ControlID(C.V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME)
	v4l2CIDBitrate     = webcam.ControlID(C.V4L2_CID_MPEG_VIDEO_BITRATE)
	v4l2CIDGOPSize     = webcam.ControlID(C.V4L2_CID_MPEG_VIDEO_GOP_SIZE)
	v4l2CIDH264IPeriod = webcam.ControlID(C.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD)
)

// V4L2SourceConfig configures a V4L2 camera source (§7.3 `v4l2`).
type V4L2SourceConfig struct {
	Device string // e.g. /dev/video0 (the default) or a /dev/v4l/by-id link
	// Width and Height of the picture; 0 means 640x480. The device must
	// offer exactly this size.
	Width, Height int
	// FPS is the capture rate; 0 means 25. The device's nearest rate is used.
	FPS int
	// BitrateKbps is the encoder's target; 0 derives one from the size and
	// rate (about 550 kbit/s at 640x480, 25 fps).
	BitrateKbps int
	// KeyframeInterval is the number of frames from one IDR picture to the
	// next; 0 means two seconds' worth.
	KeyframeInterval int
}

// V4L2Mode is what the device was set up to deliver.
type V4L2Mode struct {
	Width, Height int
	FPS           float32 // 0 if the device does not report rates
	Format        string  // pixel format: YUYV, NV12, MJPEG, H264, HEVC, ...
	Native        bool    // the device encodes; no software encoder runs
}

func (m V4L2Mode) String() string {
	enc := "x264"
	if m.Native {
		enc = "native"
	}
	return fmt.Sprintf("%dx%d %s %g fps %s", m.Width, m.Height, m.Format, m.FPS, enc)
}

// V4L2Stats counts what a V4L2Source did since it was built.
type V4L2Stats struct {
	Mode             V4L2Mode // of the current or last capture; zero before the first
	Opens            uint64   // captures started
	Failures         uint64   // captures that failed to start or broke off
	Appended         uint64   // access units the ring accepted
	Keyframes        uint64   // of which IDR pictures
	Bytes            uint64   // payload bytes appended
	Dropped          uint64   // access units the ring rejected, or skipped until the next keyframe after that
	KeyframesForced  uint64   // keyframe requests handed to the encoder
	KeyframeRequests uint64   // RequestKeyframe calls
}

// V4L2Source captures from a V4L2 camera and appends H.264 (or, from a device
// that encodes HEVC, H.265) access units to a ring (§7.3 `v4l2`).
//
// A device that offers the ring's codec as a pixel format at the configured
// size is read as is: that is the board's hardware encoder, far cheaper than a
// software one. Otherwise raw pictures (I420, NV12, NV21, YUYV, UYVY, or MJPEG
// as a last resort) are captured through pion/mediadevices and encoded with
// x264 (ultrafast, zerolatency: one access unit out per picture in, no
// B-frames).
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
	clock  ptsClock // owned by Run's goroutine

	mode          atomic.Pointer[V4L2Mode]
	opens         atomic.Uint64
	failures      atomic.Uint64
	appended      atomic.Uint64
	keyframes     atomic.Uint64
	bytes         atomic.Uint64
	dropped       atomic.Uint64
	forced        atomic.Uint64
	keyRequests   atomic.Uint64
	nativeNoForce atomic.Bool // the device refused the force-keyframe control once
}

// NewV4L2Source validates cfg and applies its defaults. It does not touch the
// device: Run opens it, so ipcd starts even while the camera is absent. A nil
// logger discards.
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
	return &V4L2Source{
		cfg:    cfg,
		ring:   ring,
		log:    log.With("component", "v4l2source", "stream", ring.Stream().String(), "device", cfg.Device),
		device: cfg.Device,
	}, nil
}

func (c V4L2SourceConfig) withDefaults() (V4L2SourceConfig, error) {
	if c.Device == "" {
		c.Device = defaultV4L2Device
	}
	if c.Width == 0 && c.Height == 0 {
		c.Width, c.Height = defaultV4L2Width, defaultV4L2Height
	}
	if c.FPS == 0 {
		c.FPS = defaultV4L2FPS
	}
	switch {
	case c.Width < 16 || c.Width > maxV4L2Dimension || c.Width%2 != 0,
		c.Height < 16 || c.Height > maxV4L2Dimension || c.Height%2 != 0:
		// 4:2:0 chroma needs even sizes.
		return c, fmt.Errorf("%w: size %dx%d must be even and within 16..%d", ErrV4L2SourceConfig, c.Width, c.Height, maxV4L2Dimension)
	case c.FPS < 0 || c.FPS > maxV4L2FPS:
		return c, fmt.Errorf("%w: fps %d must be in 0..%d", ErrV4L2SourceConfig, c.FPS, maxV4L2FPS)
	case c.BitrateKbps < 0 || c.BitrateKbps > maxV4L2Bitrate:
		return c, fmt.Errorf("%w: bitrate_kbps %d must be in 0..%d", ErrV4L2SourceConfig, c.BitrateKbps, maxV4L2Bitrate)
	case c.KeyframeInterval < 0 || c.KeyframeInterval > maxV4L2KeyframeIv:
		return c, fmt.Errorf("%w: keyframe_interval %d must be in 0..%d", ErrV4L2SourceConfig, c.KeyframeInterval, maxV4L2KeyframeIv)
	}
	if c.BitrateKbps == 0 {
		c.BitrateKbps = min(max(c.Width*c.Height*c.FPS*v4l2BitsPerKPixel/1_000_000, minDefaultBitrate), maxDefaultBitrate)
	}
	if c.KeyframeInterval == 0 {
		c.KeyframeInterval = 2 * c.FPS
	}
	return c, nil
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
		Appended:         s.appended.Load(),
		Keyframes:        s.keyframes.Load(),
		Bytes:            s.bytes.Load(),
		Dropped:          s.dropped.Load(),
		KeyframesForced:  s.forced.Load(),
		KeyframeRequests: s.keyRequests.Load(),
	}
	if m := s.mode.Load(); m != nil {
		st.Mode = *m
	}
	return st
}

// Run captures until ctx ends and returns nil then; it must not run twice at
// once. A device that is missing, refuses the configuration, or stops
// delivering frames is reopened every 2 s; the first failure after a working
// capture is logged at warn level, repeats at debug. Run fails only if the
// ring is closed. It returns within the device's read timeout (at most 5 s)
// of ctx ending.
func (s *V4L2Source) Run(ctx context.Context) error {
	s.log.Info("v4l2 source started", "width", s.cfg.Width, "height", s.cfg.Height, "fps", s.cfg.FPS,
		"bitrate_kbps", s.cfg.BitrateKbps, "keyframe_interval", s.cfg.KeyframeInterval)
	s.clock = newPTSClock()
	quiet := false
	for {
		before := s.appended.Load()
		err := s.capture(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRingClosed) {
			return fmt.Errorf("v4l2 source %s: %w", s.device, err)
		}
		s.failures.Add(1)
		if s.appended.Load() != before {
			// It worked for a while, so this failure is news again.
			quiet = false
		}
		if quiet {
			s.log.Debug("v4l2 capture failed again; retrying", "err", err, "retry_in", v4l2Retry)
		} else {
			s.log.Warn("v4l2 capture failed; retrying", "err", err, "retry_in", v4l2Retry)
			quiet = true
		}
		if !pipeWait(ctx, v4l2Retry) {
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

// nativeFormat picks the encoded pixel format the ring can carry, if the
// device offers it at the configured size.
func (s *V4L2Source) nativeFormat(cam *webcam.Webcam) (webcam.PixelFormat, bool) {
	var want []webcam.PixelFormat
	switch s.ring.Codec() {
	case CodecH264:
		want = []webcam.PixelFormat{v4l2PixFmtH264}
	case CodecH265:
		want = []webcam.PixelFormat{v4l2PixFmtHEVC}
	default:
		want = []webcam.PixelFormat{v4l2PixFmtH264, v4l2PixFmtHEVC}
	}
	offered := cam.GetSupportedFormats()
	for _, pf := range want {
		if _, ok := offered[pf]; !ok {
			continue
		}
		for _, fs := range cam.GetSupportedFrameSizes(pf) {
			if sizeFits(fs, s.cfg.Width, s.cfg.Height) {
				return pf, true
			}
		}
	}
	return 0, false
}

func sizeFits(fs webcam.FrameSize, w, h int) bool {
	minW, maxW, minH, maxH := int(fs.MinWidth), int(fs.MaxWidth), int(fs.MinHeight), int(fs.MaxHeight)
	if fs.StepWidth == 0 || fs.StepHeight == 0 {
		return w == maxW && h == maxH
	}
	return w >= minW && w <= maxW && h >= minH && h <= maxH &&
		(w-minW)%int(fs.StepWidth) == 0 && (h-minH)%int(fs.StepHeight) == 0
}

// captureNative reads encoded pictures straight from a device that encodes.
func (s *V4L2Source) captureNative(ctx context.Context, cam *webcam.Webcam, pf webcam.PixelFormat) error {
	defer cam.Close()
	codec := CodecH264
	if pf == v4l2PixFmtHEVC {
		codec = CodecH265
	}
	if _, _, _, err := cam.SetImageFormat(pf, uint32(s.cfg.Width), uint32(s.cfg.Height)); err != nil {
		return fmt.Errorf("%w: set format %s %dx%d: %w", ErrV4L2Device, fourcc(pf), s.cfg.Width, s.cfg.Height, err)
	}
	// Encoders without these controls (a UVC camera's fixed encoder) keep
	// their own settings; that is no reason to refuse them.
	if err := cam.SetFramerate(float32(s.cfg.FPS)); err != nil {
		s.log.Debug("v4l2 device keeps its frame rate", "err", err)
	}
	for _, c := range []struct {
		id    webcam.ControlID
		name  string
		value int
	}{
		{v4l2CIDBitrate, "bitrate", s.cfg.BitrateKbps * 1000},
		{v4l2CIDGOPSize, "gop_size", s.cfg.KeyframeInterval},
		{v4l2CIDH264IPeriod, "h264_i_period", s.cfg.KeyframeInterval},
	} {
		if err := cam.SetControl(c.id, int32(c.value)); err != nil {
			s.log.Debug("v4l2 encoder control not applied", "control", c.name, "value", c.value, "err", err)
		}
	}
	fps, _ := cam.GetFramerate()
	if err := cam.SetBufferCount(v4l2NativeBuffers); err != nil {
		return fmt.Errorf("%w: %w", ErrV4L2Device, err)
	}
	if err := cam.StartStreaming(); err != nil {
		return fmt.Errorf("%w: start streaming: %w", ErrV4L2Device, err)
	}
	mode := V4L2Mode{Width: s.cfg.Width, Height: s.cfg.Height, FPS: fps, Format: fourcc(pf), Native: true}
	s.started(mode)

	au := newAUSink(s, codec)
	defer au.close()
	lastFrame := time.Now()
	for {
		if ctx.Err() != nil {
			return nil
		}
		if s.keyReq.Swap(false) {
			s.forceNativeKeyframe(cam)
		}
		// Whole seconds are all the library takes; one second bounds how
		// long Run takes to notice ctx.
		err := cam.WaitForFrame(1)
		var timeout *webcam.Timeout
		switch {
		case errors.As(err, &timeout):
			if time.Since(lastFrame) > v4l2NativeStall {
				return fmt.Errorf("%w: no frame for %s", ErrV4L2Device, v4l2NativeStall)
			}
			continue
		case err != nil:
			return fmt.Errorf("%w: wait for frame: %w", ErrV4L2Device, err)
		}
		buf, idx, err := cam.GetFrame()
		if err != nil {
			return fmt.Errorf("%w: dequeue: %w", ErrV4L2Device, err)
		}
		lastFrame = time.Now()
		// The buffer is the driver's mmap area: the sink copies out of it
		// before it is queued again.
		aerr := au.push(buf, lastFrame)
		if err := cam.ReleaseFrame(idx); err != nil {
			return fmt.Errorf("%w: queue buffer: %w", ErrV4L2Device, err)
		}
		if aerr != nil {
			return aerr
		}
	}
}

func (s *V4L2Source) forceNativeKeyframe(cam *webcam.Webcam) {
	if err := cam.SetControl(v4l2CIDForceKey, 1); err != nil {
		if !s.nativeNoForce.Swap(true) {
			s.log.Debug("v4l2 device cannot force a keyframe; readers wait for the next one", "err", err)
		}
		return
	}
	s.forced.Add(1)
}

// captureRaw captures raw pictures through mediadevices and encodes them
// with x264.
func (s *V4L2Source) captureRaw(ctx context.Context, path string) error {
	d, err := findCamera(path)
	if err != nil {
		return err
	}
	if err := d.Open(); err != nil {
		return fmt.Errorf("%w: open %s: %w", ErrV4L2Device, path, err)
	}
	p, err := chooseRawMode(d.Properties(), s.cfg.Width, s.cfg.Height, float32(s.cfg.FPS))
	if err != nil {
		d.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	rec, ok := d.(driver.VideoRecorder)
	if !ok {
		d.Close()
		return fmt.Errorf("%w: %s is not a video recorder", ErrV4L2Device, path)
	}
	r, err := rec.VideoRecord(p)
	if err != nil {
		// mediadevices has closed the driver already. Closing it again
		// would close its file descriptor twice, and by then the number
		// may belong to another file of the process.
		return fmt.Errorf("%w: start %s: %w", ErrV4L2Device, p.FrameFormat, err)
	}
	// Closing the camera is also what ends a read in progress when ctx
	// ends: mediadevices' reader then returns io.EOF. Only a streaming
	// camera is safe to close while another goroutine reads it.
	closeCam := sync.OnceValue(d.Close)
	stop := context.AfterFunc(ctx, func() { closeCam() })
	defer func() {
		stop()
		closeCam()
	}()

	mode := V4L2Mode{Width: p.Width, Height: p.Height, FPS: p.FrameRate, Format: string(p.FrameFormat)}
	s.started(mode)
	err = s.encode(r, p.Width, p.Height)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// findCamera returns mediadevices' driver for the device node path,
// rescanning once for a device that appeared after the process started.
func findCamera(path string) (driver.Driver, error) {
	node := filepath.Base(path)
	match := func(d driver.Driver) bool {
		label := d.Info().Label
		// The label is "<name found>;<device node>".
		if i := strings.LastIndex(label, camera.LabelSeparator); i >= 0 {
			label = label[i+len(camera.LabelSeparator):]
		}
		return label == node && driver.FilterVideoRecorder()(d)
	}
	for rescan := range 2 {
		if rescan == 1 {
			camera.Initialize()
		}
		if ds := driver.GetManager().Query(match); len(ds) > 0 {
			return ds[0], nil
		}
	}
	return nil, fmt.Errorf("%w: %s is not a V4L2 capture device", ErrV4L2Device, path)
}

// rawFormatRank orders the raw formats mediadevices can read by the work it
// takes to turn them into I420; ok is false for formats not used.
func rawFormatRank(f frame.Format) (rank int, ok bool) {
	switch f {
	case frame.FormatI420:
		return 0, true
	case frame.FormatNV12:
		return 1, true
	case frame.FormatNV21:
		return 2, true
	case frame.FormatYUYV:
		return 3, true
	case frame.FormatUYVY:
		return 4, true
	case frame.FormatMJPEG:
		return 5, true // a JPEG decode per picture
	}
	return 0, false
}

// chooseRawMode picks, among the modes a device offers, one of exactly
// width x height with the frame rate nearest to fps, preferring formats
// cheap to convert on a tie. A mode without a reported rate counts as having
// the one asked for. The chosen mode always carries an explicit rate:
// without one mediadevices leaves the device at whatever rate it had, often
// 1 fps.
func chooseRawMode(props []prop.Media, width, height int, fps float32) (prop.Media, error) {
	best, bestRank := -1, 0
	var bestDist float64
	for i, p := range props {
		rank, ok := rawFormatRank(p.FrameFormat)
		if !ok || p.Width != width || p.Height != height {
			continue
		}
		rate := p.FrameRate
		if rate <= 0 {
			rate = fps
		}
		dist := math.Abs(float64(rate - fps))
		if best < 0 || dist < bestDist-1e-3 ||
			(math.Abs(dist-bestDist) <= 1e-3 && rank < bestRank) {
			best, bestRank, bestDist = i, rank, dist
		}
	}
	if best < 0 {
		return prop.Media{}, fmt.Errorf("%w: no raw mode of %dx%d; the device offers %s",
			ErrV4L2Device, width, height, describeModes(props))
	}
	p := props[best]
	if p.FrameRate <= 0 {
		p.FrameRate = fps
	}
	return p, nil
}

func describeModes(props []prop.Media) string {
	var modes []string
	for _, p := range props {
		m := fmt.Sprintf("%dx%d %s", p.Width, p.Height, p.FrameFormat)
		if p.FrameRate > 0 {
			m += fmt.Sprintf(" %g fps", p.FrameRate)
		}
		if !slices.Contains(modes, m) {
			modes = append(modes, m)
		}
	}
	if len(modes) == 0 {
		return "nothing mediadevices can read"
	}
	const maxListed = 12
	if len(modes) > maxListed {
		return strings.Join(modes[:maxListed], ", ") + fmt.Sprintf(" and %d more", len(modes)-maxListed)
	}
	return strings.Join(modes, ", ")
}

// encode runs raw pictures from r through x264 into the ring until r fails
// (io.EOF once the camera is closed).
func (s *V4L2Source) encode(r video.Reader, width, height int) error {
	// mediadevices pulls each picture through these readers on this
	// goroutine, from inside the encoder's Read, so the capture time needs
	// no synchronisation.
	var captured time.Time
	stamped := video.ReaderFunc(func() (image.Image, func(), error) {
		img, release, err := r.Read()
		captured = time.Now()
		return img, release, err
	})
	params, err := x264.NewParams()
	if err != nil {
		return err
	}
	params.Preset = x264.PresetUltrafast
	params.BitRate = s.cfg.BitrateKbps * 1000
	params.KeyFrameInterval = s.cfg.KeyframeInterval
	enc, err := params.BuildVideoEncoder(stamped, prop.Media{Video: prop.Video{Width: width, Height: height}})
	if err != nil {
		return fmt.Errorf("x264: %w", err)
	}
	defer enc.Close()
	kf, _ := enc.Controller().(codec.KeyFrameController)

	au := newAUSink(s, CodecH264)
	defer au.close()
	for {
		if s.keyReq.Swap(false) && kf != nil {
			if err := kf.ForceKeyFrame(); err == nil {
				s.forced.Add(1)
			}
		}
		b, release, err := enc.Read()
		if err != nil {
			return err
		}
		err = au.push(b, captured)
		release()
		if err != nil {
			return err
		}
	}
}

func (s *V4L2Source) started(mode V4L2Mode) {
	s.opens.Add(1)
	s.mode.Store(&mode)
	s.log.Info("v4l2 capture started", "mode", mode.String())
}

// ptsClock turns capture times into PTS: microseconds on the monotonic
// clock, starting from the wall clock when Run began, so that a clock step
// cannot make PTS go backwards, not even across reopening the device.
type ptsClock struct {
	base    time.Time
	baseUS  int64
	lastPTS int64
	hasPTS  bool
}

func newPTSClock() ptsClock {
	now := time.Now()
	return ptsClock{base: now, baseUS: now.UnixMicro()}
}

// pts is strictly increasing: access units captured at the same instant
// get one microsecond apart.
func (c *ptsClock) pts(at time.Time) int64 {
	pts := c.baseUS + at.Sub(c.base).Microseconds()
	if c.hasPTS && pts <= c.lastPTS {
		pts = c.lastPTS + 1
	}
	c.lastPTS, c.hasPTS = pts, true
	return pts
}

// auSink turns the encoded buffers of one capture into frames on the ring,
// on a timeline of its own: a reopened device is a new producer.
type auSink struct {
	s       *V4L2Source
	tl      *Timeline
	codec   Codec
	split   auSplitter
	waitKey bool
}

func newAUSink(s *V4L2Source, codec Codec) *auSink {
	a := &auSink{s: s, tl: s.ring.NewTimeline(), codec: codec, waitKey: true}
	if codec == CodecH265 {
		a.split = &H265AUSplitter{}
	} else {
		a.split = &H264AUSplitter{}
	}
	return a
}

func (a *auSink) close() { a.tl.Close() }

// push appends the access units of one buffer: one picture from x264, and
// from a device one picture too by the V4L2 rules for encoded formats. A
// buffer ends its last access unit, so none waits for the next buffer. Only
// a closed ring is an error.
func (a *auSink) push(buf []byte, at time.Time) error {
	it := newNALIter(buf)
	for nal, ok := it.next(); ok; nal, ok = it.next() {
		if au, done := a.split.Push(nal); done {
			if err := a.deliver(au, at); err != nil {
				return err
			}
		}
	}
	if au, done := a.split.Flush(); done {
		return a.deliver(au, at)
	}
	return nil
}

func (a *auSink) deliver(au AccessUnit, at time.Time) error {
	s := a.s
	if a.waitKey && !au.Key {
		s.dropped.Add(1)
		return nil
	}
	f := Frame{
		Stream:    s.ring.Stream(),
		Kind:      KindP,
		Codec:     a.codec,
		PTS:       s.clock.pts(at),
		Timestamp: at.UnixMilli(),
		Payload:   au.Payload,
	}
	if au.Key {
		f.Kind = KindI
	}
	switch err := a.tl.Append(f); {
	case err == nil:
		a.waitKey = false
		s.appended.Add(1)
		s.bytes.Add(uint64(len(au.Payload)))
		if au.Key {
			s.keyframes.Add(1)
		}
	case errors.Is(err, ErrRingClosed):
		return err
	default:
		// The ring counted and logs the rule. Pictures after a rejected
		// one refer to it, so they wait for a keyframe, asked for at once.
		s.dropped.Add(1)
		a.waitKey = true
		s.keyReq.Store(true)
	}
	return nil
}

// fourcc spells a V4L2 pixel format the way the kernel headers do.
func fourcc(pf webcam.PixelFormat) string {
	b := []byte{byte(pf), byte(pf >> 8), byte(pf >> 16), byte(pf >> 24)}
	return strings.TrimRight(string(b), " \x00")
}
