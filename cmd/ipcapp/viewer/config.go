package viewer

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/ipcd/ipcd/p2p"
)

// Config says which device to watch through which broker.
type Config struct {
	// Broker is the MQTT URL, e.g. tcp://127.0.0.1:18830 (tcp, ssl, ws, wss).
	Broker string
	// Username and Password log in to the broker; empty for an open broker.
	Username, Password string
	DevID              string
	P2PPassword        string
	// From is the app identity put in header.from and signed into the auth
	// token. Default "ipcapp-" plus random hex.
	From string
	// TopicIn and TopicOut are the device's topic templates, {id} standing for
	// DevID. Defaults smart/device/in/{id} and smart/device/out/{id}.
	TopicIn, TopicOut string
	// Interfaces limits ICE gathering to these interface names. Default: the
	// loopback interfaces when the broker host is loopback, else all.
	Interfaces []string
	// Loopback gathers loopback candidates. It is always on when the broker
	// host is loopback, since the device then runs on this machine.
	Loopback bool
	// ICEServers are sent in the offer's token and used locally.
	ICEServers []p2p.ICEServer
	// ReplyTimeout bounds the wait for the device's reply to a protocol-312
	// request. Default DefaultReplyTimeout.
	ReplyTimeout time.Duration
}

// Default topic templates of the device.
const (
	DefaultTopicIn  = "smart/device/in/{id}"
	DefaultTopicOut = "smart/device/out/{id}"
)

func (c Config) withDefaults() (Config, error) {
	if err := checkBroker(c.Broker); err != nil {
		return c, err
	}
	u, _ := url.Parse(c.Broker)
	if c.DevID == "" {
		return c, fmt.Errorf("%w: dev_id is required", ErrConfig)
	}
	if c.From == "" {
		c.From = "ipcapp-" + randomHex(4)
	}
	if c.TopicIn == "" {
		c.TopicIn = DefaultTopicIn
	}
	if c.TopicOut == "" {
		c.TopicOut = DefaultTopicOut
	}
	if c.ReplyTimeout <= 0 {
		c.ReplyTimeout = DefaultReplyTimeout
	}
	if isLoopbackHost(u.Hostname()) {
		c.Loopback = true
		if len(c.Interfaces) == 0 {
			c.Interfaces = loopbackInterfaces()
		}
	}
	return c, nil
}

func checkBroker(broker string) error {
	if broker == "" {
		return fmt.Errorf("%w: broker is required", ErrConfig)
	}
	u, err := url.Parse(broker)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: broker %q is not a URL like tcp://host:port", ErrConfig, broker)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackInterfaces names the loopback interfaces by their flag, since the
// name differs between Linux (lo) and BSDs (lo0).
func loopbackInterfaces() []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return []string{"lo"}
	}
	var names []string
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			names = append(names, i.Name)
		}
	}
	if len(names) == 0 {
		return []string{"lo"}
	}
	return names
}

func topic(template, devID string) string {
	return strings.ReplaceAll(template, "{id}", devID)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails since Go 1.24
	return hex.EncodeToString(b)
}
