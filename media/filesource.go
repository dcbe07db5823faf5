package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
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
// It does not hold the clip: the file is read a window at a time while the
// source runs and split one access unit at a time, so its pages stay in the
// kernel's page cache (reclaimable, not the process's) and the heap holds one
// window and one frame.
type FileSource struct {
	cfg    FileSourceConfig
	ring   *Ring
	log    *slog.Logger
	frames int   // frames in one pass, counted when the source was built
	fps    int64 // frames per second of the schedule and the PTS
}

// NewFileSource splits the whole file once up front, keeping none of it, so
// that a bad file is reported at startup rather than while streaming. A nil
// logger discards.
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
	frames := 0
	if err := eachUnit(cfg.Path, codec, func(AccessUnit) bool { frames++; return true }); err != nil {
		return nil, err
	}
	s := &FileSource{
		cfg:    cfg,
		ring:   ring,
		log:    log.With("component", "filesource", "stream", ring.Stream().String(), "path", cfg.Path),
		frames: frames,
		fps:    g711FramesPerSec,
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
	var units []AccessUnit
	err := eachUnit(path, codec, func(au AccessUnit) bool {
		// A payload aliases the read buffer (audio) or the splitter's
		// (video), both reused on return.
		au.Payload = slices.Clone(au.Payload)
		units = append(units, au)
		return true
	})
	return units, err
}

// eachUnit calls fn with the frames a FileSource appends for path, in order,
// until fn returns false. The file is read a window at a time (fileread.go):
// a payload is valid only during the call, and fn copies what it keeps. A
// file that shrinks while it is read makes eachUnit fail with ErrFileChanged.
func eachUnit(path string, codec Codec, fn func(AccessUnit) bool) error {
	if !codec.IsVideo() && !codec.IsAudio() {
		return fmt.Errorf("%w: %s files are not supported: %s", ErrUnsupportedFile, codec, path)
	}
	r, err := openFileReader(path)
	if err != nil {
		if errors.Is(err, ErrUnsupportedFile) {
			return err
		}
		return fmt.Errorf("file source: %w", err)
	}
	defer r.close()

	if codec.IsAudio() {
		n := r.size / g711FrameBytes
		if n == 0 {
			return fmt.Errorf("%w: %s has %d bytes, less than one 40 ms frame", ErrEmptyFile, path, r.size)
		}
		r.size = n * g711FrameBytes // a partial last frame is not read
		buf := make([]byte, g711ReadFrames*g711FrameBytes)
		for {
			m, err := r.read(buf)
			if err != nil {
				return err
			}
			if m == 0 {
				return nil
			}
			for i := 0; i+g711FrameBytes <= m; i += g711FrameBytes {
				if !fn(AccessUnit{Payload: buf[i : i+g711FrameBytes : i+g711FrameBytes]}) {
					return nil
				}
			}
		}
	}

	if r.size == 0 {
		return fmt.Errorf("%w: %s is empty", ErrEmptyFile, path)
	}
	// A payload is valid during fn only, so the splitters reuse their arrays.
	var split auSplitter = &H264AUSplitter{reused: reusedUnit{on: true}}
	hasPS := H264HasParameterSets
	if codec == CodecH265 {
		split, hasPS = &H265AUSplitter{reused: reusedUnit{on: true}}, H265HasParameterSets
	}
	// Pictures before the first decodable keyframe would reach no reader
	// (readers start at keyframes) and would break decoding when the file loops.
	started, units := false, 0
	emit := func(au AccessUnit) bool {
		units++
		if !started {
			if !au.Key || !hasPS(au.Payload) {
				return true
			}
			started = true
		}
		return fn(au)
	}
	nr := newNALReader(r)
	found := false
	for nal, ok := nr.next(); ok; nal, ok = nr.next() {
		found = true
		if au, done := split.Push(nal); done && !emit(au) {
			return nil
		}
	}
	if nr.err != nil {
		return nr.err
	}
	if !found {
		return fmt.Errorf("%s: %w", path, ErrNoNALUnits)
	}
	if au, done := split.Flush(); done && !emit(au) {
		return nil
	}
	if !started {
		return fmt.Errorf("%w: %s (%d access units)", ErrNoKeyframe, path, units)
	}
	return nil
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
	s.log.Info("file source started", "codec", s.cfg.Codec.String(), "frames", s.frames,
		"fps", s.fps, "loop", s.cfg.Loop)

	// Each run starts its PTS at 0 again: a timeline of its own.
	tl := s.ring.NewTimeline()
	defer tl.Close()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	base := int64(0) // frame number the schedule's start corresponds to
	n := int64(0)
	var runErr error
	// appendOne paces and appends one frame; false stops the pass.
	appendOne := func(au AccessUnit) bool {
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
			return false
		}
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
		n++
		if err := tl.Append(f); errors.Is(err, ErrRingClosed) {
			runErr = fmt.Errorf("file source %s: %w", s.cfg.Path, err)
			return false
		}
		return true
	}
	for pass := 0; ; pass++ {
		if pass > 0 {
			if !s.cfg.Loop {
				s.log.Info("file source finished", "frames", n)
				return nil
			}
			s.log.Debug("file source looping", "frames", n)
		}
		before := n
		if err := eachUnit(s.cfg.Path, s.cfg.Codec, appendOne); err != nil {
			return fmt.Errorf("file source %s: %w", s.cfg.Path, err)
		}
		if runErr != nil || ctx.Err() != nil {
			return runErr
		}
		if n == before {
			// The file was replaced by one with no frame since the source
			// was built: looping would spin.
			return fmt.Errorf("file source %s: %w", s.cfg.Path, ErrEmptyFile)
		}
	}
}
