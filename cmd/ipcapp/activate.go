package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/device"
)

// defaultAckTimeout leaves room for a device that writes its store to slow
// flash before it acks.
const defaultAckTimeout = 10 * time.Second

type activateFlags struct {
	brokerFlags
	uuid, authKey                        string
	devID, localKey, p2pPassword, uid    string
	deviceMQTTUsername, deviceMQTTPasswd string
	timeout                              time.Duration
}

func (a *activateFlags) validate() error {
	errs := a.check()
	errs = append(errs, required([2]string{"-uuid", a.uuid}, [2]string{"-authkey", a.authKey})...)
	if a.p2pPassword != "" && !strings.HasPrefix(a.p2pPassword, "ad") {
		errs = append(errs, errors.New(`-p2p-password must start with "ad"`))
	}
	// "|" separates the signed fields; the device refuses it.
	for _, f := range [][2]string{{"-uuid", a.uuid}, {"-dev-id", a.devID}, {"-local-key", a.localKey}, {"-p2p-password", a.p2pPassword}, {"-uid", a.uid},
		{"-device-mqtt-username", a.deviceMQTTUsername}, {"-device-mqtt-password", a.deviceMQTTPasswd}} {
		if strings.Contains(f[1], "|") {
			errs = append(errs, fmt.Errorf("%s must not contain |", f[0]))
		}
	}
	if a.timeout <= 0 {
		errs = append(errs, errors.New("-timeout must be positive"))
	}
	return errors.Join(errs...)
}

// activation is what activate prints: everything a script needs to
// configure and watch the device afterwards.
type activation struct {
	UUID        string `json:"uuid"`
	DevID       string `json:"dev_id"`
	LocalKey    string `json:"local_key"`
	P2PPassword string `json:"p2p_password"`
	UID         string `json:"uid"`
	Result      int    `json:"result"`
}

func runActivate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("activate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af activateFlags
	af.brokerFlags.register(fs)
	fs.StringVar(&af.uuid, "uuid", "", "the device's factory uuid (required)")
	fs.StringVar(&af.authKey, "authkey", "", "the device's factory authkey, signs the activation (required)")
	fs.StringVar(&af.devID, "dev-id", "", `device id to assign (default "6c" + 20 random hex digits)`)
	fs.StringVar(&af.localKey, "local-key", "", "local key to assign, signs resets (default 16 random hex digits)")
	fs.StringVar(&af.p2pPassword, "p2p-password", "", `P2P password to assign (default "ad" + 6 random hex digits)`)
	fs.StringVar(&af.uid, "uid", "", `owner uid (default "ipcapp-" + random hex)`)
	fs.StringVar(&af.deviceMQTTUsername, "device-mqtt-username", "", "broker user name the device reconnects with (default: none sent)")
	fs.StringVar(&af.deviceMQTTPasswd, "device-mqtt-password", "", "broker password the device reconnects with")
	fs.DurationVar(&af.timeout, "timeout", defaultAckTimeout, "give up when no activate_ack arrives this long after publishing")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp activate -broker URL -uuid U -authkey K [-dev-id D -local-key L -p2p-password P -uid U] [flags]")
		fmt.Fprintln(fs.Output(), "Prints the activation as JSON on stdout.")
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, &af); !ok {
		return code
	}
	out := activation{
		UUID:        af.uuid,
		DevID:       orRandom(af.devID, "6c", 10),
		LocalKey:    orRandom(af.localKey, "", 8),
		P2PPassword: orRandom(af.p2pPassword, "ad", 3),
		UID:         orRandom(af.uid, "ipcapp-", 4),
	}
	ack, err := viewer.Activate(ctx, viewer.ActivateConfig{
		Broker:      af.broker,
		Username:    af.username,
		Password:    af.password,
		UUID:        af.uuid,
		AuthKey:     af.authKey,
		DevID:       out.DevID,
		LocalKey:    out.LocalKey,
		P2PPassword: out.P2PPassword,
		UID:         out.UID,
		DeviceMQTT:  device.MQTTCredentials{Username: af.deviceMQTTUsername, Password: af.deviceMQTTPasswd},
		TopicIn:     af.topicIn,
		TopicOut:    af.topicOut,
		Timeout:     af.timeout,
	}, af.logger(stderr))
	out.Result = ack.Result
	return ackResult(stdout, stderr, "activate", out, err)
}

type resetFlags struct {
	brokerFlags
	devID, localKey string
	timeout         time.Duration
}

func (r *resetFlags) validate() error {
	errs := r.check()
	errs = append(errs, required([2]string{"-dev-id", r.devID}, [2]string{"-local-key", r.localKey})...)
	if r.timeout <= 0 {
		errs = append(errs, errors.New("-timeout must be positive"))
	}
	return errors.Join(errs...)
}

func runReset(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reset", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf resetFlags
	rf.brokerFlags.register(fs)
	fs.StringVar(&rf.devID, "dev-id", "", "device id of the activation to wipe (required)")
	fs.StringVar(&rf.localKey, "local-key", "", "the activation's local key, signs the reset (required)")
	fs.DurationVar(&rf.timeout, "timeout", defaultAckTimeout, "give up when no reset_ack arrives this long after publishing")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp reset -broker URL -dev-id D -local-key L [flags]")
		fmt.Fprintln(fs.Output(), "Prints the device's reset_ack as JSON on stdout.")
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, &rf); !ok {
		return code
	}
	ack, err := viewer.Reset(ctx, viewer.ResetConfig{
		Broker:   rf.broker,
		Username: rf.username,
		Password: rf.password,
		DevID:    rf.devID,
		LocalKey: rf.localKey,
		TopicIn:  rf.topicIn,
		TopicOut: rf.topicOut,
		Timeout:  rf.timeout,
	}, rf.logger(stderr))
	return ackResult(stdout, stderr, "reset", ack, err)
}

// ackResult prints out once the device answered, and maps the outcome to
// the exit code: refused by the device is exitRefused, no answer exitFailed.
func ackResult(stdout, stderr io.Writer, cmd string, out any, err error) int {
	if err != nil && !errors.Is(err, viewer.ErrRejected) {
		fmt.Fprintf(stderr, "ipcapp %s: %v\n", cmd, err)
		return exitFailed
	}
	if jerr := json.NewEncoder(stdout).Encode(out); jerr != nil {
		fmt.Fprintf(stderr, "ipcapp %s: %v\n", cmd, jerr)
		return exitFailed
	}
	if err != nil {
		fmt.Fprintf(stderr, "ipcapp %s: %v\n", cmd, err)
		return exitRefused
	}
	return exitOK
}

// orRandom returns v, or prefix followed by n random bytes in hex.
func orRandom(v, prefix string, n int) string {
	if v != "" {
		return v
	}
	return prefix + randomHex(n)
}
