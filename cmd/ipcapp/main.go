// Command ipcapp is the reference client of the camera: it plays the mobile
// app's role over MQTT and WebRTC to activate and reset the device, to watch
// the live stream and to benchmark it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitRefused = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "live":
		return runLive(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "activate":
		return runActivate(ctx, args[1:], stdout, stderr)
	case "reset":
		return runReset(ctx, args[1:], stdout, stderr)
	case "web":
		return runWeb(ctx, args[1:], stdout, stderr)
	case "talk":
		return runTalk(ctx, args[1:], stdout, stderr)
	case "recordings":
		return runRecordings(ctx, args[1:], stdout, stderr)
	case "playback":
		return runPlayback(ctx, args[1:], stdout, stderr)
	case "download":
		return runDownload(ctx, args[1:], stdout, stderr)
	case "doctor":
		return runDoctor(args[1:], os.Stdin, stdout, stderr)
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, "ipcapp", version)
		return exitOK
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "ipcapp: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: ipcapp <command> [flags]

commands:
  activate  bind a device waiting for activation (protocol 46); prints the
            activation as JSON
  reset     wipe a device's activation (protocol 46)
  live      watch the live stream once, save it and print its stats;
            -switch-to asks the device to change streams mid-session
  talk      send a raw PCMU file to the camera's speaker (talkback)
  recordings  list the card's recordings: -day YYYY-MM-DD prints the
            recorded time ranges of a day, -month YYYY-MM the days
  playback  play the card's recording from -start for -seconds and save
            it like live (-out FILE, -speed 1|2|4|8)
  download  save a recorded range -start..-end as one MPEG-TS file
            (-out FILE.ts) over the download data channel
  bench     time sequential sessions, then concurrent viewers
  web       serve the browser viewer: the page talks to the broker over
            MQTT-over-WebSocket and plays the camera with live stats
  doctor    walk the troubleshooting procedure over an ipcd debug log
            (file or - for stdin): per step pass / FAIL / not seen with the
            evidence line and advice, one verdict per session

Run "ipcapp <command> -h" for the flags of a command, "ipcapp -version" for
the version.

exit codes: 0 ok, 1 failed (including no reply from the device), 2 bad usage,
3 refused by the device (a disconnect, an ack with result -1, or a nonzero
resCode to -switch-to)
`)
}
