package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
)

// phaseStats summarizes one bench phase. MbitS counts the bytes received
// from each session's first frame on; FramesS is the video frame rate. Both
// are per session in the sequential phase and summed over the viewers in the
// concurrent one, which is what the device sends in total.
type phaseStats struct {
	Sessions int       `json:"sessions"`
	OK       int       `json:"ok"`
	Failed   int       `json:"failed"`
	TTFF     ttffStats `json:"ttff_ms"`
	MbitS    float64   `json:"mbit_s"`
	FramesS  float64   `json:"frames_s"`
	Skipped  int       `json:"skipped"`
	FirstKey int       `json:"first_keyframe"`
	Errors   []string  `json:"errors,omitempty"`
	WallMS   float64   `json:"wall_ms"`
}

type ttffStats struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	Max float64 `json:"max"`
}

type benchStats struct {
	Sequential *phaseStats `json:"sequential,omitempty"`
	Concurrent *phaseStats `json:"concurrent,omitempty"`
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	sessions := fs.Int("sessions", 10, "sequential sessions, each until its first keyframe plus -seconds")
	viewers := fs.Int("viewers", 4, "concurrent viewers, after the sequential sessions")
	seconds := fs.Float64("seconds", 0.5, "how long each session receives after its first frame")
	asJSON := fs.Bool("json", false, "print the stats as one JSON object")
	firstFrame := fs.Duration("first-frame-timeout", viewer.DefaultFirstFrameTimeout, "give up on a session when no video arrives this long after the offer")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ipcapp bench -broker URL -dev-id D -p2p-password P [-sessions N] [-viewers V] [-seconds S] [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, &cf); !ok {
		return code
	}
	if *sessions < 0 || *viewers < 0 || *seconds <= 0 {
		fmt.Fprintln(stderr, "ipcapp bench: -sessions and -viewers must not be negative, -seconds must be positive")
		return exitUsage
	}

	client, err := viewer.NewClient(ctx, cf.config(), cf.logger(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "ipcapp bench:", err)
		return exitFailed
	}
	defer client.Close()

	opt := cf.watchOptions()
	opt.Duration = time.Duration(*seconds * float64(time.Second))
	opt.FirstFrameTimeout = *firstFrame
	var out benchStats
	if *sessions > 0 {
		out.Sequential = sequential(ctx, client, opt, *sessions)
	}
	if *viewers > 0 && ctx.Err() == nil {
		out.Concurrent = concurrent(ctx, client, opt, *viewers)
	}

	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(out); err != nil {
			fmt.Fprintln(stderr, "ipcapp bench:", err)
			return exitFailed
		}
	} else {
		printPhase(stdout, "sequential", out.Sequential, false)
		printPhase(stdout, "concurrent", out.Concurrent, true)
	}
	for _, p := range []*phaseStats{out.Sequential, out.Concurrent} {
		if p != nil && p.Failed > 0 {
			return exitFailed
		}
	}
	if ctx.Err() != nil {
		return exitFailed
	}
	return exitOK
}

func sequential(ctx context.Context, c *viewer.Client, opt viewer.WatchOptions, n int) *phaseStats {
	start := time.Now()
	var results []viewer.Result
	var errs []error
	for range n {
		if ctx.Err() != nil {
			break
		}
		r, err := c.Watch(ctx, opt)
		results = append(results, r)
		errs = append(errs, err)
	}
	p := summarize(results, errs, time.Since(start))
	// One session at a time: the mean rate of a session.
	var bytes int64
	var dur time.Duration
	var fps float64
	for i, r := range results {
		if errs[i] == nil {
			bytes += r.VideoBytes + r.AudioBytes
			dur += r.Duration
			fps += r.FPS
		}
	}
	if dur > 0 {
		p.MbitS = round2(float64(bytes) * 8 / 1e6 / dur.Seconds())
		p.FramesS = round1(fps / float64(p.OK))
	}
	return p
}

func concurrent(ctx context.Context, c *viewer.Client, opt viewer.WatchOptions, n int) *phaseStats {
	start := time.Now()
	results := make([]viewer.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = c.Watch(ctx, opt) })
	}
	wg.Wait()
	p := summarize(results, errs, time.Since(start))
	// All at once: the sum of the viewers' rates is what the device sends.
	var mbit, fps float64
	for i, r := range results {
		if errs[i] == nil && r.Duration > 0 {
			mbit += float64(r.VideoBytes+r.AudioBytes) * 8 / 1e6 / r.Duration.Seconds()
			fps += r.FPS
		}
	}
	p.MbitS = round2(mbit)
	p.FramesS = round1(fps)
	return p
}

func summarize(results []viewer.Result, errs []error, wall time.Duration) *phaseStats {
	p := &phaseStats{Sessions: len(results), WallMS: ms(wall)}
	var ttffs []time.Duration
	for i, r := range results {
		if errs[i] != nil {
			p.Failed++
			p.Errors = append(p.Errors, fmt.Sprintf("session %s: %v", r.SessionID, errs[i]))
			continue
		}
		p.OK++
		p.Skipped += r.Skipped
		if r.FirstKey {
			p.FirstKey++
		}
		if r.TTFF > 0 {
			ttffs = append(ttffs, r.TTFF)
		}
	}
	slices.Sort(ttffs)
	p.TTFF = ttffStats{P50: ms(percentile(ttffs, 50)), P95: ms(percentile(ttffs, 95)), Max: ms(percentile(ttffs, 100))}
	return p
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

func printPhase(w io.Writer, name string, p *phaseStats, aggregate bool) {
	if p == nil {
		return
	}
	rate := "per session"
	if aggregate {
		rate = "aggregate"
	}
	fmt.Fprintf(w, "%-10s  %d/%d ok  ttff p50 %.1f ms  p95 %.1f ms  max %.1f ms  %s %.2f Mbit/s %.1f frames/s  skipped %d  first keyframe %d/%d\n",
		name, p.OK, p.Sessions, p.TTFF.P50, p.TTFF.P95, p.TTFF.Max, rate, p.MbitS, p.FramesS, p.Skipped, p.FirstKey, p.OK)
	for _, e := range p.Errors {
		fmt.Fprintf(w, "%-10s  error: %s\n", "", e)
	}
}
