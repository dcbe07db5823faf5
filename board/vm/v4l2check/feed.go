package main

import (
	"context"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcd/ipcd/media"
)

// The producer side of a v4l2loopback device: it stands in for a camera
// whose driver delivers encoded pictures, so the source's native path reads
// a real kernel V4L2 device. Each write() is one buffer the capture side
// dequeues, so each access unit goes in one write.

// V4L2 ABI (linux/videodev2.h), for linux/amd64: the format union is 8-byte
// aligned there, which puts 4 bytes of padding after the type.
const (
	v4l2BufTypeVideoOutput = 2
	v4l2FieldNone          = 1
	v4l2PixFmtH264         = 'H' | '2'<<8 | '6'<<16 | '4'<<24
	v4l2PixFmtHEVC         = 'H' | 'E'<<8 | 'V'<<16 | 'C'<<24
)

type v4l2PixFormat struct {
	Width, Height, PixelFormat, Field, BytesPerLine, SizeImage, Colorspace, Priv uint32
	Flags, YCbCrEnc, Quantization, XferFunc                                      uint32
}

type v4l2Format struct {
	Type uint32
	_    uint32
	Pix  v4l2PixFormat
	_    [200 - unsafe.Sizeof(v4l2PixFormat{})]byte
}

// vidiocSFmt is _IOWR('V', 5, struct v4l2_format).
const vidiocSFmt = 3<<30 | uint(unsafe.Sizeof(v4l2Format{}))<<16 | 'V'<<8 | 5

// feeder writes access units to a loopback output device at a fixed rate,
// looping, until ctx ends.
type feeder struct {
	f     *os.File
	units []media.AccessUnit
	fps   int
	start time.Time // when unit 0 was written
}

// openFeeder sets the device's output format, which is what the capture
// side then offers, and returns a feeder for the units of path.
func openFeeder(device, path string, codec media.Codec, width, height, fps int) (*feeder, error) {
	units, err := media.ReadAccessUnits(path)
	if err != nil {
		return nil, err
	}
	pf := uint32(v4l2PixFmtH264)
	if codec == media.CodecH265 {
		pf = v4l2PixFmtHEVC
	}
	f, err := os.OpenFile(device, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	fmtReq := v4l2Format{Type: v4l2BufTypeVideoOutput, Pix: v4l2PixFormat{
		Width: uint32(width), Height: uint32(height), PixelFormat: pf, Field: v4l2FieldNone,
	}}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(vidiocSFmt), uintptr(unsafe.Pointer(&fmtReq))); errno != 0 {
		f.Close()
		return nil, fmt.Errorf("VIDIOC_S_FMT on %s: %w", device, errno)
	}
	if fmtReq.Pix.PixelFormat != pf || fmtReq.Pix.Width != uint32(width) || fmtReq.Pix.Height != uint32(height) {
		f.Close()
		return nil, fmt.Errorf("%s took %dx%d %08x, not %dx%d %08x", device,
			fmtReq.Pix.Width, fmtReq.Pix.Height, fmtReq.Pix.PixelFormat, width, height, pf)
	}
	for i, u := range units {
		if len(u.Payload) > int(fmtReq.Pix.SizeImage) {
			f.Close()
			return nil, fmt.Errorf("access unit %d is %d bytes, the device's buffers %d", i, len(u.Payload), fmtReq.Pix.SizeImage)
		}
	}
	// The capture side offers the format only once the first buffer is
	// written; a source started before that would find no H.264 and retry.
	start := time.Now()
	if _, err := f.Write(units[0].Payload); err != nil {
		f.Close()
		return nil, fmt.Errorf("feed write 0: %w", err)
	}
	return &feeder{f: f, units: units, fps: fps, start: start}, nil
}

// run writes unit n at n/fps seconds after the first, and closes the device
// when ctx ends.
func (fd *feeder) run(ctx context.Context) error {
	defer fd.f.Close()
	t := time.NewTimer(time.Until(fd.due(1)))
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := fd.f.Write(fd.units[n%len(fd.units)].Payload); err != nil {
			return fmt.Errorf("feed write %d: %w", n, err)
		}
		t.Reset(time.Until(fd.due(n + 1)))
	}
}

func (fd *feeder) due(n int) time.Time {
	return fd.start.Add(time.Duration(n) * time.Second / time.Duration(fd.fps))
}
