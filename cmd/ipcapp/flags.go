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

// commonFlags are the flags every command that talks to a device takes.
type commonFlags struct {
	broker, username, password string
	devID, p2pPassword, from   string
	topicIn, topicOut          string
	stream                     string
	iceServers                 stringList
	dataChannel                bool
	logLevel                   string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.broker, "broker", "", "MQTT broker URL, e.g. tcp://127.0.0.1:18830 (required)")
	fs.StringVar(&c.username, "mqtt-username", "", "MQTT user name")
	fs.StringVar(&c.password, "mqtt-password", "", "MQTT password")
	fs.StringVar(&c.devID, "dev-id", "", "device id (required)")
	fs.StringVar(&c.p2pPassword, "p2p-password", "", "the device's P2P password, signs the auth token (required)")
	fs.StringVar(&c.from, "from", "", `app identity in header.from (default "ipcapp-" + random hex)`)
	fs.StringVar(&c.topicIn, "topic-in", viewer.DefaultTopicIn, "the device's topic_in template")
	fs.StringVar(&c.topicOut, "topic-out", viewer.DefaultTopicOut, "the device's topic_out template")
	fs.StringVar(&c.stream, "stream", "main", "main|sub")
	fs.Var(&c.iceServers, "ice-server", "STUN/TURN URL, user:pass@ before the host for TURN credentials (repeatable)")
	fs.BoolVar(&c.dataChannel, "datachannel", false, `open the "control" data channel`)
	fs.StringVar(&c.logLevel, "log-level", "warn", "debug|info|warn|error, logged to stderr")
}

func (c *commonFlags) validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{{"-broker", c.broker}, {"-dev-id", c.devID}, {"-p2p-password", c.p2pPassword}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}
	if c.stream != "main" && c.stream != "sub" {
		errs = append(errs, fmt.Errorf("-stream must be main or sub, got %q", c.stream))
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("-log-level: %w", err))
	}
	return errors.Join(errs...)
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

func (c *commonFlags) logger(w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.logLevel))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
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
func parse(fs *flag.FlagSet, args []string, c *commonFlags) (code int, ok bool) {
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
