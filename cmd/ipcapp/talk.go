package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
)

// talkStats is the -json output of talk.
type talkStats struct {
	Session   string `json:"session"`
	TalkBytes int64  `json:"talk_bytes"`
	TalkRes   int    `json:"talk_res"`
	Error     string `json:"error,omitempty"`
	Code      int    `json:"code,omitempty"`
}

// runTalk plays a raw G.711 file to the camera's speaker, as the app's
// push-to-talk does, over a live session.
func runTalk(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("talk", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	in := fs.String("in", "", "raw PCMU (8 kHz mono) to send, e.g. configs/media/audio.pcmu (required)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	noSpeaker := fs.Bool("no-speaker", false, "send the audio without asking for the speaker, as clients that never send 312 speaker do (the device's stream.talkback decides)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp talk -broker URL -dev-id D -p2p-password P -in FILE.pcmu [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, &cf); !ok {
		return code
	}
	if *in == "" {
		fmt.Fprintln(stderr, "ipcapp talk: -in is required")
		return exitUsage
	}
	f, err := os.Open(*in)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp talk:", err)
		return exitUsage
	}
	defer f.Close()

	client, err := viewer.NewClient(ctx, cf.config(), cf.logger(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp talk:", err)
		return exitFailed
	}
	defer client.Close()

	// The session ends once the file has been sent.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res, err := client.Watch(sctx, viewer.WatchOptions{
		Stream:             cf.stream,
		DataChannel:        cf.dataChannel,
		Talk:               f,
		TalkWithoutSpeaker: *noSpeaker,
		OnTalkDone: func() {
			// Let the last packets reach the speaker before hanging up.
			time.AfterFunc(200*time.Millisecond, cancel)
		},
	})
	st := talkStats{Session: res.SessionID, TalkBytes: res.TalkBytes, TalkRes: res.TalkRes}
	code := exitOK
	var refused *viewer.RefusedError
	switch {
	case errors.As(err, &refused):
		st.Error, st.Code, code = err.Error(), refused.Code, exitRefused
	case err != nil:
		st.Error, code = err.Error(), exitFailed
	case res.TalkRes != 0:
		st.Error, code = fmt.Sprintf("the device refused the speaker (res %d)", res.TalkRes), exitRefused
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(st)
	} else {
		fmt.Fprintf(stdout, "talk: session %s, sent %d bytes (%.1f s), speaker res %d\n",
			st.Session, st.TalkBytes, float64(st.TalkBytes)/8000, st.TalkRes)
		if st.Error != "" {
			fmt.Fprintln(stderr, "ipcapp talk:", st.Error)
		}
	}
	return code
}
