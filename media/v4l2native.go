//go:build v4l2

package media

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/blackjack/webcam"
)

// Capture from a device that encodes (a board's hardware encoder, a UVC
// camera with H.264 output): its buffers are access units already.

// nativeFormat picks the encoded pixel format the ring can carry, if the
// device offers it at the configured size.
func (s *V4L2Source) nativeFormat(cam *webcam.Webcam) (webcam.PixelFormat, bool) {
	offered := cam.GetSupportedFormats()
	for _, pf := range s.nativeFormats() {
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

// captureNative reads encoded pictures straight from a device that encodes.
func (s *V4L2Source) captureNative(ctx context.Context, cam *webcam.Webcam, pf webcam.PixelFormat) error {
	defer cam.Close()
	codec := CodecH264
	if pf == v4l2PixFmtHEVC {
		codec = CodecH265
	}
	if err := s.startNative(cam, pf); err != nil {
		return err
	}
	au := s.newBufferSink(codec)
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
		lastFrame = time.Now()
		if err := s.readNative(cam, au, lastFrame); err != nil {
			return err
		}
	}
}

// startNative sets the device up: format, rate, encoder controls, buffers.
func (s *V4L2Source) startNative(cam *webcam.Webcam, pf webcam.PixelFormat) error {
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
		{v4l2CIDGOPSize, "gop_size", s.cfg.GOP},
		{v4l2CIDH264IPeriod, "h264_i_period", s.cfg.GOP},
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
	s.started(V4L2Mode{Width: s.cfg.Width, Height: s.cfg.Height, FPS: fps, Format: fourcc(pf), Native: true})
	return nil
}

// readNative dequeues one buffer, delivers it and queues it again.
func (s *V4L2Source) readNative(cam *webcam.Webcam, au *bufferSink, at time.Time) error {
	buf, idx, err := cam.GetFrame()
	if err != nil {
		return fmt.Errorf("%w: dequeue: %w", ErrV4L2Device, err)
	}
	// The buffer is the driver's mmap area: the sink copies out of it
	// before it is queued again.
	aerr := au.push(buf, at)
	if err := cam.ReleaseFrame(idx); err != nil {
		return fmt.Errorf("%w: queue buffer: %w", ErrV4L2Device, err)
	}
	return aerr
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
