package p2p

import "time"

// Defaults of the stream section, also taken by a Config field left zero.
const (
	DefaultMaxClients      = 5
	DefaultLivenessTimeout = 20 * time.Second
	DefaultNACKBuffer      = 256
)

// StreamSection is the stream section of the daemon's configuration:
// sessions, ICE and retransmission.
type StreamSection struct {
	MaxClients    int                `yaml:"max_clients"`
	DefaultStream string             `yaml:"default_stream"`
	LowPower      bool               `yaml:"low_power"`
	ICEServers    []ICEServerSection `yaml:"ice_servers"`
	// UDPPortRange is [min, max]; [0, 0] lets the OS pick ports.
	UDPPortRange       [2]uint16     `yaml:"udp_port_range"`
	NetworkInterfaces  []string      `yaml:"network_interfaces"`
	LoopbackCandidates bool          `yaml:"loopback_candidates"`
	LivenessTimeout    time.Duration `yaml:"liveness_timeout"`
	NACKBuffer         int           `yaml:"nack_buffer"`
	// Talkback is auto (a session that sends audio takes a free speaker)
	// or explicit (only speaker_start or 312 speaker 1 take it).
	Talkback string `yaml:"talkback"`
	// Per-viewer adaptation (AdaptConfig): on|off and its thresholds.
	Adapt        string        `yaml:"adapt"`
	AdaptLoss    int           `yaml:"adapt_loss"` // percent
	AdaptDelay   time.Duration `yaml:"adapt_delay"`
	AdaptHold    time.Duration `yaml:"adapt_hold"`
	AdaptHoldMax time.Duration `yaml:"adapt_hold_max"`
	AdaptProbe   time.Duration `yaml:"adapt_probe"`
}

// ICEServerSection is a STUN or TURN server in the configuration, shaped
// like the browser's RTCIceServer.
type ICEServerSection struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
}

// DefaultStreamSection returns the defaults of SPEC §4 for the stream section.
func DefaultStreamSection() StreamSection {
	return StreamSection{
		MaxClients:      DefaultMaxClients,
		DefaultStream:   "main",
		LivenessTimeout: DefaultLivenessTimeout,
		NACKBuffer:      DefaultNACKBuffer,
		Talkback:        TalkbackAuto.String(),
		Adapt:           "on",
		AdaptLoss:       int(DefaultAdaptConfig().Loss * 100),
		AdaptDelay:      DefaultAdaptConfig().Delay,
		AdaptHold:       DefaultAdaptConfig().Hold,
		AdaptHoldMax:    DefaultAdaptConfig().HoldMax,
		AdaptProbe:      DefaultAdaptConfig().Probe,
	}
}

// AdaptConfig is the service's form of the stream.adapt keys.
func (s StreamSection) AdaptConfig() AdaptConfig {
	return AdaptConfig{Off: s.Adapt == "off", Loss: float64(s.AdaptLoss) / 100, Delay: s.AdaptDelay,
		Hold: s.AdaptHold, HoldMax: s.AdaptHoldMax, Probe: s.AdaptProbe}
}

// SetDefaults makes s the defaults; the configuration composes its
// sections' defaults through it.
func (s *StreamSection) SetDefaults() { *s = DefaultStreamSection() }

// ICEServerList converts the configured servers to the ones offered to apps.
func (s StreamSection) ICEServerList() []ICEServer {
	out := make([]ICEServer, 0, len(s.ICEServers))
	for _, srv := range s.ICEServers {
		out = append(out, ICEServer{URLs: srv.URLs, Username: srv.Username, Credential: srv.Credential})
	}
	return out
}
