package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/p2p"
)

// brokerFlags are the flags of every command: how to reach the broker and
// the device's topics.
type brokerFlags struct {
	broker, username, password string
	topicIn, topicOut          string
	logLevel                   string
}

func (b *brokerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&b.broker, "broker", "", "MQTT broker URL, e.g. tcp://127.0.0.1:18830 (required)")
	fs.StringVar(&b.username, "mqtt-username", "", "MQTT user name")
	fs.StringVar(&b.password, "mqtt-password", "", "MQTT password")
	fs.StringVar(&b.topicIn, "topic-in", viewer.DefaultTopicIn, "the device's topic_in template")
	fs.StringVar(&b.topicOut, "topic-out", viewer.DefaultTopicOut, "the device's topic_out template")
	fs.StringVar(&b.logLevel, "log-level", "warn", "debug|info|warn|error, logged to stderr")
}

// required reports the named flags that are empty.
func required(flags ...[2]string) []error {
	var errs []error
	for _, f := range flags {
		if f[1] == "" {
			errs = append(errs, fmt.Errorf("%s is required", f[0]))
		}
	}
	return errs
}

func (b *brokerFlags) check() []error {
	errs := required([2]string{"-broker", b.broker})
	var l slog.Level
	if err := l.UnmarshalText([]byte(b.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("-log-level: %w", err))
	}
	return errs
}

func (b *brokerFlags) logger(w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(b.logLevel))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// commonFlags are the flags every command that watches a device takes.
type commonFlags struct {
	brokerFlags
	devID, p2pPassword, from string
	stream, codec            string
	iceServers               stringList
	dataChannel              bool
	dataChannelMedia         bool
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	c.brokerFlags.register(fs)
	fs.StringVar(&c.devID, "dev-id", "", "device id (required)")
	fs.StringVar(&c.p2pPassword, "p2p-password", "", "the device's P2P password, signs the auth token (required)")
	fs.StringVar(&c.from, "from", "", `app identity in header.from (default "ipcapp-" + random hex)`)
	fs.StringVar(&c.stream, "stream", "main", "main|sub")
	fs.StringVar(&c.codec, "codec", "any", "video codecs to offer: h264|h265|any (any offers H.264 first)")
	fs.Var(&c.iceServers, "ice-server", "STUN/TURN URL, user:pass@ before the host for TURN credentials (repeatable)")
	fs.BoolVar(&c.dataChannel, "datachannel", false, `open the "control" data channel`)
	fs.BoolVar(&c.dataChannelMedia, "datachannel-media", false, `receive video and audio as RTP packets on the "fmp4Stream" data channel (go2rtc's Tuya mode)`)
}

func (c *commonFlags) validate() error {
	errs := c.brokerFlags.check()
	errs = append(errs, required([2]string{"-dev-id", c.devID}, [2]string{"-p2p-password", c.p2pPassword})...)
	if c.stream != "main" && c.stream != "sub" {
		errs = append(errs, fmt.Errorf("-stream must be main or sub, got %q", c.stream))
	}
	if _, err := codecList(c.codec); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// codecList turns -codec into WatchOptions.Codecs.
func codecList(v string) ([]string, error) {
	switch v {
	case "any":
		return viewer.DefaultCodecs(), nil
	case viewer.CodecNameH264, viewer.CodecNameH265:
		return []string{v}, nil
	}
	return nil, fmt.Errorf("-codec must be h264, h265 or any, got %q", v)
}

func (c *commonFlags) config() viewer.Config {
	return viewer.Config{
		Broker:      c.broker,
		Username:    c.username,
		Password:    c.password,
		DevID:       c.devID,
		P2PPassword: c.p2pPassword,
		From:        c.from,
		TopicIn:     c.topicIn,
		TopicOut:    c.topicOut,
		ICEServers:  c.iceServers.servers(),
	}
}

func (c *commonFlags) watchOptions() viewer.WatchOptions {
	codecs, _ := codecList(c.codec)
	return viewer.WatchOptions{Stream: c.stream, Codecs: codecs, DataChannel: c.dataChannel, DataChannelMedia: c.dataChannelMedia}
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// servers turns "turn:user:pass@host:3478" style flags into ICE servers.
func (s stringList) servers() []p2p.ICEServer {
	var out []p2p.ICEServer
	for _, v := range s {
		scheme, rest, _ := strings.Cut(v, ":")
		srv := p2p.ICEServer{URLs: p2p.URLList{v}}
		if cred, host, ok := strings.Cut(rest, "@"); ok {
			user, pass, _ := strings.Cut(cred, ":")
			srv = p2p.ICEServer{URLs: p2p.URLList{scheme + ":" + host}, Username: user, Credential: pass}
		}
		out = append(out, srv)
	}
	return out
}

// parse parses args and reports bad usage on the flag set's output. When
// ok is false the command exits with code.
func parse(fs *flag.FlagSet, args []string, c interface{ validate() error }) (code int, ok bool) {
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return exitOK, false
	} else if err != nil {
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "ipcapp %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	if err := c.validate(); err != nil {
		fmt.Fprintf(fs.Output(), "ipcapp %s: %v\n", fs.Name(), err)
		return exitUsage, false
	}
	return 0, true
}
