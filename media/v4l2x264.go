//go:build v4l2

package media

import (
	"fmt"
	"image"
	"time"

	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/codec/x264"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
)

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
	params.KeyFrameInterval = s.cfg.GOP
	enc, err := params.BuildVideoEncoder(stamped, prop.Media{Video: prop.Video{Width: width, Height: height}})
	if err != nil {
		return fmt.Errorf("x264: %w", err)
	}
	defer enc.Close()
	kf, _ := enc.Controller().(codec.KeyFrameController)

	au := s.newBufferSink(CodecH264)
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
