//go:build v4l2

package media

// The V4L2 constants come from the kernel headers rather than being copied,
// so a header that renumbers nothing still documents where each one lives.

/*
#include <linux/videodev2.h>
*/
import "C"

import (
	"fmt"
	"slices"
	"strings"

	"github.com/blackjack/webcam"
	"github.com/pion/mediadevices/pkg/frame"
)

// V4L2 pixel formats and codec controls.
const (
	v4l2PixFmtH264     = webcam.PixelFormat(C.V4L2_PIX_FMT_H264)
	v4l2PixFmtHEVC     = webcam.PixelFormat(C.V4L2_PIX_FMT_HEVC)
	v4l2CIDForceKey    = webcam.ControlID(C.V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME)
	v4l2CIDBitrate     = webcam.ControlID(C.V4L2_CID_MPEG_VIDEO_BITRATE)
	v4l2CIDGOPSize     = webcam.ControlID(C.V4L2_CID_MPEG_VIDEO_GOP_SIZE)
	v4l2CIDH264IPeriod = webcam.ControlID(C.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD)
)

// v4l2RawFormats are the raw pixel formats mediadevices reads, with its
// name for each, cheapest to convert to I420 first.
var v4l2RawFormats = []struct {
	pf    webcam.PixelFormat
	frame frame.Format
}{
	{webcam.PixelFormat(C.V4L2_PIX_FMT_YUV420), frame.FormatI420},
	{webcam.PixelFormat(C.V4L2_PIX_FMT_NV12), frame.FormatNV12},
	{webcam.PixelFormat(C.V4L2_PIX_FMT_NV21), frame.FormatNV21},
	{webcam.PixelFormat(C.V4L2_PIX_FMT_YUYV), frame.FormatYUYV},
	{webcam.PixelFormat(C.V4L2_PIX_FMT_UYVY), frame.FormatUYVY},
	{webcam.PixelFormat(C.V4L2_PIX_FMT_MJPEG), frame.FormatMJPEG},
}

// nativeFormats returns the encoded pixel formats the source may read as
// is: the ring's codec, or the configured pixel format if it is one.
func (s *V4L2Source) nativeFormats() []webcam.PixelFormat {
	switch pf := s.cfg.PixelFormat; {
	case pf == fourcc(v4l2PixFmtH264) && s.ring.Codec() != CodecH265:
		return []webcam.PixelFormat{v4l2PixFmtH264}
	case pf == fourcc(v4l2PixFmtHEVC) && s.ring.Codec() != CodecH264:
		return []webcam.PixelFormat{v4l2PixFmtHEVC}
	case pf != "":
		return nil
	}
	switch s.ring.Codec() {
	case CodecH264:
		return []webcam.PixelFormat{v4l2PixFmtH264}
	case CodecH265:
		return []webcam.PixelFormat{v4l2PixFmtHEVC}
	}
	return []webcam.PixelFormat{v4l2PixFmtH264, v4l2PixFmtHEVC}
}

// rawFormat returns the raw format the configured pixel format names, and
// whether raw capture is allowed at all.
func (s *V4L2Source) rawFormat() (f frame.Format, allowed bool) {
	if s.cfg.PixelFormat == "" {
		return "", true
	}
	for _, r := range v4l2RawFormats {
		if fourcc(r.pf) == s.cfg.PixelFormat {
			return r.frame, true
		}
	}
	return "", false
}

// usableFormats returns every pixel format the source may ask for.
func (s *V4L2Source) usableFormats() []webcam.PixelFormat {
	pfs := s.nativeFormats()
	if s.ring.Codec() == CodecH265 {
		return pfs // x264 makes only H.264
	}
	want, allowed := s.rawFormat()
	for _, r := range v4l2RawFormats {
		if allowed && (want == "" || want == r.frame) {
			pfs = append(pfs, r.pf)
		}
	}
	return pfs
}

// checkOffered refuses a device that offers the configured size in none of
// the usable pixel formats, listing what it offers (VIDIOC_ENUM_FMT,
// VIDIOC_ENUM_FRAMESIZES).
func (s *V4L2Source) checkOffered(cam *webcam.Webcam, path string) error {
	offered := cam.GetSupportedFormats()
	var have []string
	for _, pf := range s.usableFormats() {
		if _, ok := offered[pf]; !ok {
			continue
		}
		var sizes []string
		for _, fs := range cam.GetSupportedFrameSizes(pf) {
			if sizeFits(fs, s.cfg.Width, s.cfg.Height) {
				return nil
			}
			sizes = append(sizes, fs.GetString())
		}
		have = append(have, fourcc(pf)+" "+strings.Join(sizes, " "))
	}
	if len(have) == 0 {
		var all []string
		for pf := range offered {
			all = append(all, fourcc(pf))
		}
		slices.Sort(all)
		return fmt.Errorf("%w: pixel_format: %s offers no format the source can use (%q asked for); it offers %s",
			ErrV4L2Unsupported, path, s.cfg.PixelFormat, strings.Join(all, ", "))
	}
	return fmt.Errorf("%w: width, height: %s offers no %dx%d; it offers %s",
		ErrV4L2Unsupported, path, s.cfg.Width, s.cfg.Height, strings.Join(have, "; "))
}

func sizeFits(fs webcam.FrameSize, w, h int) bool {
	minW, maxW, minH, maxH := int(fs.MinWidth), int(fs.MaxWidth), int(fs.MinHeight), int(fs.MaxHeight)
	if fs.StepWidth == 0 || fs.StepHeight == 0 {
		return w == maxW && h == maxH
	}
	return w >= minW && w <= maxW && h >= minH && h <= maxH &&
		(w-minW)%int(fs.StepWidth) == 0 && (h-minH)%int(fs.StepHeight) == 0
}

// fourcc spells a V4L2 pixel format the way the kernel headers do.
func fourcc(pf webcam.PixelFormat) string {
	b := []byte{byte(pf), byte(pf >> 8), byte(pf >> 16), byte(pf >> 24)}
	return strings.TrimRight(string(b), " \x00")
}
