package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ipcd/ipcd/cmd/ipcapp/doctor"
)

// runDoctor walks the troubleshooting procedure over an ipcd debug log.
// Exit code 0 when every session is healthy, 1 otherwise.
func runDoctor(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	session := fs.String("session", "", "only this session id; one with no line at all is reported as never received")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp doctor [-session ID] LOGFILE|-")
		fmt.Fprintln(fs.Output(), "Walks docs' troubleshooting procedure over an ipcd debug log (slog text or JSON; - reads stdin).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	in := stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(stderr, "ipcapp doctor:", err)
			return exitFailed
		}
		defer f.Close()
		in = f
	}
	recs, err := doctor.Parse(in)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp doctor:", err)
		return exitFailed
	}
	rep := doctor.Diagnose(recs, *session)
	rep.Write(stdout)
	for _, s := range rep.Sessions {
		if s.Verdict != doctor.VerdictHealthy {
			return exitFailed
		}
	}
	return exitOK
}
