package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/p2p"
)

// parseWhen reads a time flag: unix seconds, RFC 3339, or
// "YYYY-MM-DDTHH:MM:SS" (or with a space) in the local zone.
func parseWhen(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want unix seconds, RFC 3339 or YYYY-MM-DDTHH:MM:SS", s)
}

// controlSession runs a live session with the control channel open and
// calls do on it; the session ends when do returns.
func controlSession(ctx context.Context, client *viewer.Client, cf *commonFlags, do func(context.Context, *viewer.ControlChannel) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var derr error
	done := false
	opt := cf.watchOptions()
	opt.SessionID = randomHex(8)
	opt.DataChannel = true
	opt.OnControl = func(cctx context.Context, ctl *viewer.ControlChannel) {
		rctx, rcancel := context.WithTimeout(cctx, viewer.DefaultReplyTimeout)
		defer rcancel()
		derr, done = do(rctx, ctl), true
		cancel()
	}
	_, err := client.Watch(ctx, opt)
	if done {
		// Watch has returned: OnControl's writes happened before.
		return derr
	}
	return err
}

// runRecordings lists the card's recordings of a day (or the days of a
// month) over the control channel.
func runRecordings(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("recordings", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	day := fs.String("day", "", "YYYY-MM-DD: print the recorded time ranges of this day")
	month := fs.String("month", "", "YYYY-MM: print the days of this month that have recordings")
	asJSON := fs.Bool("json", false, "print the device's reply as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp recordings -broker URL -dev-id D -p2p-password P (-day YYYY-MM-DD | -month YYYY-MM) [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, &cf); !ok {
		return code
	}
	var cmd string
	var date p2p.PlaybackDate
	switch {
	case *day != "" && *month == "":
		t, err := time.Parse("2006-01-02", *day)
		if err != nil {
			fmt.Fprintln(stderr, "ipcapp recordings: -day:", err)
			return exitUsage
		}
		cmd, date = p2p.CmdPlaybackQueryDay, p2p.PlaybackDate{Year: t.Year(), Month: int(t.Month()), Day: t.Day()}
	case *month != "" && *day == "":
		t, err := time.Parse("2006-01", *month)
		if err != nil {
			fmt.Fprintln(stderr, "ipcapp recordings: -month:", err)
			return exitUsage
		}
		cmd, date = p2p.CmdPlaybackQueryMonth, p2p.PlaybackDate{Year: t.Year(), Month: int(t.Month())}
	default:
		fmt.Fprintln(stderr, "ipcapp recordings: give one of -day or -month")
		return exitUsage
	}
	client, err := viewer.NewClient(ctx, cf.config(), cf.logger(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp recordings:", err)
		return exitFailed
	}
	defer client.Close()
	var reply p2p.CommandReply
	err = controlSession(ctx, client, &cf, func(ctx context.Context, ctl *viewer.ControlChannel) error {
		var err error
		reply, err = ctl.Do(ctx, cmd, date)
		return err
	})
	if code, failed := watchFailed(stderr, "recordings", err); failed {
		return code
	}
	if reply.Res != p2p.ResOK {
		fmt.Fprintf(stderr, "ipcapp recordings: refused: res %d: %s\n", reply.Res, reply.Message)
		return exitRefused
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(reply); err != nil {
			return exitFailed
		}
		return exitOK
	}
	if cmd == p2p.CmdPlaybackQueryMonth {
		for _, d := range reply.Days {
			fmt.Fprintf(stdout, "%04d-%02d-%02d\n", date.Year, date.Month, d)
		}
		return exitOK
	}
	for _, r := range reply.Ranges {
		fmt.Fprintf(stdout, "%s  %s  %s  (start %d end %d)\n", r.Start.Local().Format(time.RFC3339), r.End.Local().Format(time.RFC3339),
			r.End.Sub(r.Start).Round(time.Second), r.Start.Unix(), r.End.Unix())
	}
	if reply.Message != "" {
		fmt.Fprintln(stderr, "ipcapp recordings:", reply.Message)
	}
	return exitOK
}

// watchFailed reports a failed session; failed is false for nil.
func watchFailed(stderr io.Writer, name string, err error) (int, bool) {
	var refused *viewer.RefusedError
	switch {
	case err == nil:
		return exitOK, false
	case errors.As(err, &refused):
		fmt.Fprintf(stderr, "ipcapp %s: refused: code %d, close_reason %d: %s\n", name, refused.Code, refused.CloseReason, refused.Message)
		return exitRefused, true
	}
	fmt.Fprintf(stderr, "ipcapp %s: %v\n", name, err)
	return exitFailed, true
}

// runPlayback plays the card's recording from -start for -seconds and
// saves it like live does.
func runPlayback(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("playback", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	startFlag := fs.String("start", "", "the moment to play from: unix seconds, RFC 3339 or YYYY-MM-DDTHH:MM:SS local (required)")
	seconds := fs.Int("seconds", 10, "play this many seconds of recording")
	speed := fs.Int("speed", 1, "1|2|4|8: playback speed (audio is muted above 1)")
	outPath := fs.String("out", "", "write the video to FILE as Annex-B (plays with ffplay)")
	audioPath := fs.String("audio-out", "", "write the audio to FILE as raw G.711")
	asJSON := fs.Bool("json", false, "print the stats as one JSON object")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp playback -broker URL -dev-id D -p2p-password P -start T [-seconds N] [-out FILE] [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, &cf); !ok {
		return code
	}
	start, err := parseWhen(*startFlag)
	if err != nil || *seconds <= 0 || *seconds > 24*3600 {
		fmt.Fprintln(stderr, "ipcapp playback: -start is required (", err, "), -seconds must be 1..86400")
		return exitUsage
	}
	switch *speed {
	case 1, 2, 4, 8:
	default:
		fmt.Fprintln(stderr, "ipcapp playback: -speed must be 1, 2, 4 or 8")
		return exitUsage
	}
	video, err := createSink(*outPath)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp playback:", err)
		return exitFailed
	}
	audio, err := createSink(*audioPath)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp playback:", err)
		return exitFailed
	}
	client, err := viewer.NewClient(ctx, cf.config(), cf.logger(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp playback:", err)
		return exitFailed
	}
	defer client.Close()

	opt := playbackOptions(&cf, start, *seconds, *speed, video, audio, stderr)
	res, werr := client.Watch(ctx, opt)
	for _, s := range []*sink{video, audio} {
		if err := s.close(); err != nil && werr == nil {
			werr = err
		}
	}
	printPlayback(stdout, res, werr, *asJSON)
	code, _ := watchFailed(stderr, "playback", werr)
	return code
}

// playbackOptions asks for seconds of recording from start, played at
// speed into the sinks (either may be nil).
func playbackOptions(cf *commonFlags, start time.Time, seconds, speed int, video, audio *sink, stderr io.Writer) viewer.WatchOptions {
	opt := cf.watchOptions()
	opt.SessionID = randomHex(8)
	opt.Replay = &p2p.Replay{IsReplay: 1, StartTime: start.Unix(), EndTime: start.Unix() + int64(seconds)}
	// The recording is played out at the speed, from its keyframe.
	opt.Duration = time.Duration(seconds) * time.Second / time.Duration(speed)
	if video != nil {
		opt.OnVideo = func(au []byte, _ bool) { video.write(au) }
	}
	if audio != nil {
		opt.OnAudio = audio.write
	}
	if speed != 1 {
		opt.DataChannel = true
		opt.OnControl = func(cctx context.Context, ctl *viewer.ControlChannel) {
			if r, err := ctl.Do(cctx, p2p.CmdPlaybackSpeed, speed); err != nil || r.Res != p2p.ResOK {
				fmt.Fprintf(stderr, "ipcapp playback: speed %d: res %d %s %v\n", speed, r.Res, r.Message, err)
			}
		}
	}
	return opt
}

// printPlayback prints a playback's stats like live does.
func printPlayback(stdout io.Writer, res viewer.Result, werr error, asJSON bool) {
	st := newLiveStats(res)
	if werr != nil {
		st.Error = werr.Error()
	}
	var refused *viewer.RefusedError
	if errors.As(werr, &refused) {
		st.Code, st.CloseReason = refused.Code, refused.CloseReason
	}
	if asJSON {
		_ = json.NewEncoder(stdout).Encode(st)
	} else if res.VideoFrames > 0 {
		printLive(stdout, st)
	}
}

// runDownload saves a recorded range as one MPEG-TS file through the
// download channel.
func runDownload(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("download", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	startFlag := fs.String("start", "", "start of the range: unix seconds, RFC 3339 or YYYY-MM-DDTHH:MM:SS local (required)")
	endFlag := fs.String("end", "", "end of the range, as -start (required)")
	outPath := fs.String("out", "", "write the MPEG-TS file to FILE.ts (required)")
	quiet := fs.Bool("quiet", false, "do not print progress")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp download -broker URL -dev-id D -p2p-password P -start T -end T -out FILE.ts [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, &cf); !ok {
		return code
	}
	start, err1 := parseWhen(*startFlag)
	end, err2 := parseWhen(*endFlag)
	if err := errors.Join(err1, err2); err != nil || *outPath == "" || !end.After(start) {
		fmt.Fprintln(stderr, "ipcapp download: -start and -end (after -start) and -out are required:", err)
		return exitUsage
	}
	f, err := os.Create(*outPath)
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp download:", err)
		return exitFailed
	}
	client, err := viewer.NewClient(ctx, cf.config(), cf.logger(stderr))
	if err != nil {
		_ = f.Close()
		fmt.Fprintln(stderr, "ipcapp download:", err)
		return exitFailed
	}
	defer client.Close()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &download{out: f, start: start, end: end, quiet: *quiet, stderr: stderr, cancel: cancel, began: time.Now()}
	opt := cf.watchOptions()
	opt.SessionID = randomHex(8)
	opt.OnDownload = d.run
	_, werr := client.Watch(wctx, opt)
	if err := f.Close(); err != nil && d.err == nil {
		d.err = err
	}
	if !*quiet {
		fmt.Fprintln(stderr)
	}
	return d.report(stdout, *outPath, werr)
}

// download is one download into a file, run on the download channel.
type download struct {
	out        *os.File
	start, end time.Time
	quiet      bool // no progress on stderr
	stderr     io.Writer
	cancel     context.CancelFunc // ends the session
	began      time.Time

	final   p2p.DownloadStatus
	err     error
	written int64
}

func (d *download) run(dctx context.Context, dl *viewer.DownloadChannel) {
	defer d.cancel()
	if d.err = dl.Start(d.out, d.start.Unix(), d.end.Unix()); d.err != nil {
		return
	}
	d.final, d.err = dl.Wait(dctx, func(st p2p.DownloadStatus) {
		if !d.quiet && st.Type == p2p.DownloadProgress {
			fmt.Fprintf(d.stderr, "\r%d KiB", st.Bytes>>10)
		}
	})
	if d.err == nil {
		d.written, d.err = dl.Written()
	}
}

// report prints the outcome of the download into path and returns the
// exit code.
func (d *download) report(stdout io.Writer, path string, werr error) int {
	stderr := d.stderr
	if d.final.Type == "" {
		if code, failed := watchFailed(stderr, "download", errors.Join(werr, d.err)); failed {
			return code
		}
		fmt.Fprintln(stderr, "ipcapp download: the session ended before the download")
		return exitFailed
	}
	if d.err != nil {
		fmt.Fprintln(stderr, "ipcapp download:", d.err)
		return exitFailed
	}
	switch d.final.Type {
	case p2p.DownloadDone:
		if d.written != d.final.Bytes {
			fmt.Fprintf(stderr, "ipcapp download: %d bytes written, the device sent %d\n", d.written, d.final.Bytes)
			return exitFailed
		}
		el := time.Since(d.began)
		fmt.Fprintf(stdout, "%s: %d bytes in %v (%.1f Mbit/s)\n", path, d.written, el.Round(time.Millisecond), float64(d.written)*8/el.Seconds()/1e6)
		return exitOK
	case p2p.DownloadError:
		fmt.Fprintf(stderr, "ipcapp download: refused: res %d: %s\n", d.final.Res, d.final.Message)
		return exitRefused
	}
	fmt.Fprintf(stderr, "ipcapp download: %s after %d bytes\n", d.final.Type, d.final.Bytes)
	return exitFailed
}
