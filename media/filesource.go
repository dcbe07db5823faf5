package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// G.711 at 8 kHz is one byte per sample, so 320 bytes are 40 ms.
const (
	g711FrameBytes    = 320
	g711FramesPerSec  = 8000 / g711FrameBytes
	defaultFileFPS    = 25
	maxFileFPS        = 240
	maxFileSourceSize = 16 << 20
	// Beyond this lag (a suspended process, a stalled ring lock) the schedule
	// restarts from now instead of bursting the missed frames into the ring.
	maxScheduleLag = time.Second
)

// FileSourceConfig configures a source that replays a file in real time (§7.3 `file`).
type FileSourceConfig struct {
	Path string
	// Codec of the file; when unknown it is derived from the extension:
	// .h264 .264 (H.264 Annex-B), .h265 .265 .hevc (H.265 Annex-B),
	// .pcmu .ulaw, .pcma .alaw (raw G.711, 8 kHz mono).
	Codec Codec
	FPS   int // video frame rate; 0 means 25. Audio is always 40 ms frames.
	Loop  bool
}

// FileSource appends the frames of a file to a ring, paced in real time.
type FileSource struct {
	cfg   FileSourceConfig
	ring  *Ring
	log   *slog.Logger
	units []AccessUnit
	fps   int64 // frames per second of the schedule and the PTS
}

// NewFileSource reads and splits the whole file up front so that a bad file is
// reported at startup rather than while streaming. A nil logger discards.
func NewFileSource(cfg FileSourceConfig, ring *Ring, log *slog.Logger) (*FileSource, error) {
	if ring == nil {
		return nil, fmt.Errorf("%w: no ring", ErrFileSourceConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	codec := cfg.Codec
	if codec == CodecUnknown {
		var err error
		if codec, err = codecFromExt(cfg.Path); err != nil {
			return nil, err
		}
	}
	switch {
	case codec.IsVideo() && !ring.Stream().IsVideo(), codec.IsAudio() && ring.Stream() != StreamAudio:
		return nil, fmt.Errorf("%w: %s file %s for the %s ring", ErrWrongStream, codec, cfg.Path, ring.Stream())
	case ring.Codec() != CodecUnknown && codec != ring.Codec():
		// Sessions negotiate the ring's codec, so a mismatch would stream nothing.
		return nil, fmt.Errorf("%w: %s file %s for the %s ring of %s", ErrKindMismatch, codec, cfg.Path, ring.Stream(), ring.Codec())
	case cfg.FPS < 0 || cfg.FPS > maxFileFPS:
		return nil, fmt.Errorf("%w: fps %d must be in 0..%d", ErrFileSourceConfig, cfg.FPS, maxFileFPS)
	}
	cfg.Codec = codec
	units, err := readUnits(cfg.Path, codec)
	if err != nil {
		return nil, err
	}
	s := &FileSource{
		cfg:   cfg,
		ring:  ring,
		log:   log.With("component", "filesource", "stream", ring.Stream().String(), "path", cfg.Path),
		units: units,
		fps:   g711FramesPerSec,
	}
	if codec.IsVideo() {
		s.fps = defaultFileFPS
		if cfg.FPS > 0 {
			s.fps = int64(cfg.FPS)
		}
	}
	return s, nil
}

// ReadAccessUnits returns exactly the frames a FileSource appends for path,
// with the codec taken from the extension: normalised H.264 or H.265 access
// units starting at the first keyframe that carries its parameter sets, or
// 320-byte G.711 frames (Key false) without the trailing partial frame.
func ReadAccessUnits(path string) ([]AccessUnit, error) {
	codec, err := codecFromExt(path)
	if err != nil {
		return nil, err
	}
	return readUnits(path, codec)
}

func codecFromExt(path string) (Codec, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".h264", ".264":
		return CodecH264, nil
	case ".h265", ".265", ".hevc":
		return CodecH265, nil
	case ".pcmu", ".ulaw":
		return CodecPCMU, nil
	case ".pcma", ".alaw":
		return CodecPCMA, nil
	}
	return CodecUnknown, fmt.Errorf("%w: %s (want .h264 .264 .h265 .265 .hevc .pcmu .ulaw .pcma .alaw)", ErrUnsupportedFile, path)
}

func readUnits(path string, codec Codec) ([]AccessUnit, error) {
	if !codec.IsVideo() && !codec.IsAudio() {
		return nil, fmt.Errorf("%w: %s files are not supported: %s", ErrUnsupportedFile, codec, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	}
	if st.Size() > maxFileSourceSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrUnsupportedFile, path, st.Size(), maxFileSourceSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	}
	if codec.IsAudio() {
		n := len(data) / g711FrameBytes
		if n == 0 {
			return nil, fmt.Errorf("%w: %s has %d bytes, less than one 40 ms frame", ErrEmptyFile, path, len(data))
		}
		units := make([]AccessUnit, n)
		for i := range units {
			units[i].Payload = data[i*g711FrameBytes : (i+1)*g711FrameBytes : (i+1)*g711FrameBytes]
		}
		return units, nil
	}

	if len(data) == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrEmptyFile, path)
	}
	split, hasPS := SplitAccessUnitsH264, H264HasParameterSets
	if codec == CodecH265 {
		split, hasPS = SplitAccessUnitsH265, H265HasParameterSets
	}
	units, err := split(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Pictures before the first decodable keyframe would reach no reader
	// (readers start at keyframes) and would break decoding when the file loops.
	for i, au := range units {
		if au.Key && hasPS(au.Payload) {
			return units[i:], nil
		}
	}
	return nil, fmt.Errorf("%w: %s (%d access units)", ErrNoKeyframe, path, len(units))
}

// Codec returns the file's codec.
func (s *FileSource) Codec() Codec { return s.cfg.Codec }

// Run appends frames until the file ends (without Loop) or ctx ends, and
// returns nil in both cases. Frame n is due at start + n/fps, so pacing does not
// drift, and its PTS is n/fps in microseconds, increasing across loops.
// Frames the ring rejects are counted and logged by the ring; Run carries on.
// It fails only if the ring is closed.
func (s *FileSource) Run(ctx context.Context) error {
	kind := KindAudio
	if s.cfg.Codec.IsVideo() {
		kind = KindP
	}
	s.log.Info("file source started", "codec", s.cfg.Codec.String(), "frames", len(s.units),
		"fps", s.fps, "loop", s.cfg.Loop)

	// Each run starts its PTS at 0 again: a timeline of its own.
	tl := s.ring.NewTimeline()
	defer tl.Close()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	base := int64(0) // frame number the schedule's start corresponds to
	for n := int64(0); ; n++ {
		i := int(n % int64(len(s.units)))
		if i == 0 && n > 0 {
			if !s.cfg.Loop {
				s.log.Info("file source finished", "frames", n)
				return nil
			}
			s.log.Debug("file source looping", "frames", n)
		}

		due := start.Add(time.Duration((n - base) * int64(time.Second) / s.fps))
		wait := time.Until(due)
		if wait < -maxScheduleLag {
			start, base, wait = time.Now(), n, 0
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		// Checked after the wait as well: when both are ready, select picks
		// at random, and a cancelled source must not append another frame.
		if ctx.Err() != nil {
			return nil
		}

		au := s.units[i]
		f := Frame{
			Stream:    s.ring.Stream(),
			Kind:      kind,
			Codec:     s.cfg.Codec,
			PTS:       n * 1_000_000 / s.fps,
			Timestamp: time.Now().UnixMilli(),
			Payload:   au.Payload,
		}
		if au.Key {
			f.Kind = KindI
		}
		if err := tl.Append(f); errors.Is(err, ErrRingClosed) {
			return fmt.Errorf("file source %s: %w", s.cfg.Path, err)
		}
	}
}
