package media

import "strings"

// Source types of the configuration (media.sources.<stream>.type).
const (
	SourceFile = "file"
	SourcePipe = "pipe"
	SourceFeed = "feed"
	SourceV4L2 = "v4l2"
	SourceNone = "none"
)

// Defaults of the media section.
const (
	DefaultMemoryMB      = 5
	DefaultBufferSeconds = 10
)

// Section is the media section of the daemon's configuration: the frame
// ring budget, the capture sources and the talkback sink.
type Section struct {
	MemoryMB      int            `yaml:"memory_mb"`
	BufferSeconds int            `yaml:"buffer_seconds"`
	Sources       SourcesSection `yaml:"sources"`
	Speaker       SpeakerSection `yaml:"speaker"`
}

// SourcesSection has one source per stream.
type SourcesSection struct {
	Main  SourceSection `yaml:"main"`
	Sub   SourceSection `yaml:"sub"`
	Audio SourceSection `yaml:"audio"`
}

// SourceSection is one capture source (SPEC §7.3).
type SourceSection struct {
	Type  string `yaml:"type"`
	Path  string `yaml:"path"`
	FPS   int    `yaml:"fps"`
	Loop  bool   `yaml:"loop"`
	Codec string `yaml:"codec"`
	// V4L2 is the capture section of a v4l2 source.
	V4L2 V4L2Config `yaml:"v4l2"`
}

// SpeakerSection is where talkback audio is written.
type SpeakerSection struct {
	Type string `yaml:"type"`
	Path string `yaml:"path"`
}

// DefaultSection returns the defaults of SPEC §4 for the media section.
func DefaultSection() Section {
	return Section{
		MemoryMB:      DefaultMemoryMB,
		BufferSeconds: DefaultBufferSeconds,
		Sources: SourcesSection{
			Main: SourceSection{Type: SourceFile, Path: "configs/media/main.h264", FPS: defaultFileFPS, Loop: true, V4L2: DefaultV4L2Config()},
			// fps and loop carry defaults even for sources that are off,
			// so switching one on only needs type and path.
			Sub:   SourceSection{Type: SourceNone, FPS: defaultFileFPS, Loop: true, V4L2: DefaultV4L2Config()},
			Audio: SourceSection{Type: SourceFile, Path: "configs/media/audio.pcmu", FPS: defaultFileFPS, Loop: true, Codec: "pcmu", V4L2: DefaultV4L2Config()},
		},
		Speaker: SpeakerSection{Type: SourceFile, Path: "/tmp/ipcd-speaker.pcmu"},
	}
}

// SetDefaults makes s the defaults; the configuration composes its
// sections' defaults through it.
func (s *Section) SetDefaults() { *s = DefaultSection() }

// SourceTypes returns the source types a stream accepts: pipe and v4l2
// capture video only.
func SourceTypes(video bool) []string {
	if video {
		return []string{SourceFile, SourcePipe, SourceFeed, SourceV4L2, SourceNone}
	}
	return []string{SourceFile, SourceFeed, SourceNone}
}

// On reports whether the source is configured at all.
func (s SourceSection) On() bool { return s.Type != SourceNone && s.Type != "" }

// ResolvedCodec returns the codec the source carries: the configured one, else
// the one its path's extension implies, else the usual output of an encoder
// (h264 for video, pcmu for audio).
func (s SourceSection) ResolvedCodec(video bool) string {
	if s.Codec != "" {
		return s.Codec
	}
	if c := CodecOfPath(s.Path); c != "" && ValidCodecName(c, video) {
		return c
	}
	if video {
		return "h264"
	}
	return "pcmu"
}

// CodecOfPath returns the lower-case codec name a file's extension implies,
// or "" when it implies none.
func CodecOfPath(path string) string {
	c, err := codecFromExt(path)
	if err != nil {
		return ""
	}
	return strings.ToLower(c.String())
}

// ValidCodecName reports whether name is a codec of a video or an audio
// stream, as the configuration spells it.
func ValidCodecName(name string, video bool) bool {
	c, err := ParseCodec(name)
	if err != nil || name != strings.ToLower(name) {
		return false
	}
	if video {
		return c.IsVideo()
	}
	return c.IsAudio()
}
