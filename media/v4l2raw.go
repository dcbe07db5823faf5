//go:build v4l2

package media

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/pion/mediadevices/pkg/driver"
	"github.com/pion/mediadevices/pkg/driver/camera"
	"github.com/pion/mediadevices/pkg/frame"
	"github.com/pion/mediadevices/pkg/prop"
)

// Raw capture through pion/mediadevices, for a device that does not encode;
// the pictures go to x264 (v4l2x264.go).

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
	props := slices.Clone(d.Properties())
	if f, _ := s.rawFormat(); f != "" {
		props = slices.DeleteFunc(props, func(p prop.Media) bool { return p.FrameFormat != f })
	}
	p, err := chooseRawMode(props, s.cfg.Width, s.cfg.Height, float32(s.cfg.FPS))
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
