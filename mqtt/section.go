package mqtt

import "time"

// Defaults of the mqtt section that no Client field carries.
const (
	DefaultBroker      = "tcp://127.0.0.1:1883"
	DefaultTopicIn     = "smart/device/in/{id}"
	DefaultTopicOut    = "smart/device/out/{id}"
	DefaultStatusTopic = "smart/device/status/{id}"
	// DefaultQueueSize bounds each inbound protocol queue.
	DefaultQueueSize = 64
)

// Section is the mqtt section of the daemon's configuration: the broker
// connection, the input limits and the embedded broker.
type Section struct {
	Brokers          []string      `yaml:"brokers"`
	ClientID         string        `yaml:"client_id"`
	Username         string        `yaml:"username"`
	Password         string        `yaml:"password"`
	TLS              TLSConfig     `yaml:"tls"`
	TopicIn          string        `yaml:"topic_in"`
	TopicOut         string        `yaml:"topic_out"`
	StatusTopic      string        `yaml:"status_topic"`
	Backoff          BackoffConfig `yaml:"backoff"`
	MaxPayload       int           `yaml:"max_payload"`
	ReplayWindow     time.Duration `yaml:"replay_window"`
	QueueSize        int           `yaml:"queue_size"`
	EmbeddedBroker   string        `yaml:"embedded_broker"`
	EmbeddedBrokerWS string        `yaml:"embedded_broker_ws"`
}

// DefaultSection returns the defaults of SPEC §4 for the mqtt section.
func DefaultSection() Section {
	return Section{
		Brokers:      []string{DefaultBroker},
		TopicIn:      DefaultTopicIn,
		TopicOut:     DefaultTopicOut,
		StatusTopic:  DefaultStatusTopic,
		Backoff:      BackoffConfig{}.withDefaults(),
		MaxPayload:   DefaultMaxPayload,
		ReplayWindow: DefaultReplayWindow,
		QueueSize:    DefaultQueueSize,
	}
}

// SetDefaults makes s the defaults; the configuration composes its
// sections' defaults through it.
func (s *Section) SetDefaults() { *s = DefaultSection() }
