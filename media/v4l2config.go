package media

import (
	"fmt"
	"slices"
	"strings"
)

// The V4L2 source's configuration is shared by the build with the v4l2 tag
// (v4l2source.go and the files beside it) and the one without
// (v4l2source_stub.go), so that callers and the configuration schema compile
// either way.

const (
	defaultV4L2Device = "/dev/video0"
	defaultV4L2Width  = 640
	defaultV4L2Height = 480
	defaultV4L2FPS    = 25
	maxV4L2Dimension  = 8192
	maxV4L2FPS        = 120
	maxV4L2Bitrate    = 100_000 // kbit/s
	maxV4L2GOP        = 3000
	// About 0.07 bits per pixel: x264 ultrafast gives a clean picture of a
	// typical camera scene at that rate.
	v4l2BitsPerKPixel = 70
	minDefaultBitrate = 128
	maxDefaultBitrate = 4096
)

// V4L2PixelFormats are the pixel formats a V4L2 source can capture, spelled
// as the kernel's fourcc codes: the encoded ones a device with a hardware
// encoder offers, then the raw ones x264 is fed from, cheapest to convert
// first.
var v4l2PixelFormats = []string{"H264", "HEVC", "YU12", "NV12", "NV21", "YUYV", "UYVY", "MJPG"}

// V4L2Config is the capture section of a V4L2 source
// (media.sources.<stream>.v4l2 in ipcd's configuration).
type V4L2Config struct {
	// Width and Height of the picture. The device must offer exactly this
	// size; one that does not is refused with the sizes it offers.
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
	// PixelFormat is what the device is asked for, as a V4L2 fourcc (H264,
	// HEVC, YU12, NV12, NV21, YUYV, UYVY, MJPG); "" picks the ring's codec
	// if the device encodes it, else the cheapest raw format offered.
	PixelFormat string `yaml:"pixel_format"`
	// BitrateKbps is the encoder's target; 0 derives one from the size and
	// rate (about 550 kbit/s at 640x480, 25 fps).
	BitrateKbps int `yaml:"bitrate_kbps"`
	// GOP is the number of frames from one IDR picture to the next; 0 means
	// two seconds' worth.
	GOP int `yaml:"gop"`
}

// DefaultV4L2Config returns the capture defaults: 640x480, the pixel format
// and the encoder settings chosen by the source.
func DefaultV4L2Config() V4L2Config {
	return V4L2Config{Width: defaultV4L2Width, Height: defaultV4L2Height}
}

// V4L2SourceConfig configures a V4L2 camera source (§7.3 `v4l2`).
type V4L2SourceConfig struct {
	Device string // e.g. /dev/video0 (the default) or a /dev/v4l/by-id link
	// FPS is the capture rate; 0 means 25. The device's nearest rate is used.
	FPS int
	// The capture section; a zero Width and Height mean 640x480.
	V4L2Config
}

// Validate checks the section on its own, naming the keys at fault. A zero
// width and height stand for the default size.
func (c V4L2Config) Validate() error {
	if c.Width == 0 && c.Height == 0 {
		c.Width, c.Height = defaultV4L2Width, defaultV4L2Height
	}
	switch {
	case c.Width < 16 || c.Width > maxV4L2Dimension || c.Width%2 != 0,
		c.Height < 16 || c.Height > maxV4L2Dimension || c.Height%2 != 0:
		// 4:2:0 chroma needs even sizes.
		return fmt.Errorf("%w: width x height %dx%d must be even and within 16..%d", ErrV4L2SourceConfig, c.Width, c.Height, maxV4L2Dimension)
	case c.PixelFormat != "" && !slices.Contains(v4l2PixelFormats, strings.ToUpper(c.PixelFormat)):
		return fmt.Errorf("%w: pixel_format %q must be one of %s", ErrV4L2SourceConfig, c.PixelFormat, strings.Join(v4l2PixelFormats, ", "))
	case c.BitrateKbps < 0 || c.BitrateKbps > maxV4L2Bitrate:
		return fmt.Errorf("%w: bitrate_kbps %d must be in 0..%d", ErrV4L2SourceConfig, c.BitrateKbps, maxV4L2Bitrate)
	case c.GOP < 0 || c.GOP > maxV4L2GOP:
		return fmt.Errorf("%w: gop %d must be in 0..%d", ErrV4L2SourceConfig, c.GOP, maxV4L2GOP)
	}
	return nil
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
	if c.FPS < 0 || c.FPS > maxV4L2FPS {
		return c, fmt.Errorf("%w: fps %d must be in 0..%d", ErrV4L2SourceConfig, c.FPS, maxV4L2FPS)
	}
	if err := c.V4L2Config.Validate(); err != nil {
		return c, err
	}
	c.PixelFormat = strings.ToUpper(c.PixelFormat)
	if c.BitrateKbps == 0 {
		c.BitrateKbps = min(max(c.Width*c.Height*c.FPS*v4l2BitsPerKPixel/1_000_000, minDefaultBitrate), maxDefaultBitrate)
	}
	if c.GOP == 0 {
		c.GOP = 2 * c.FPS
	}
	return c, nil
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
