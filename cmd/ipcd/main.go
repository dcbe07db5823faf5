// Command ipcd is the camera's streaming agent: it connects to the MQTT
// broker, waits for activation and a trusted clock, then answers WebRTC
// offers and streams the camera's media to up to max_clients viewers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcd/config"
)

// defaultGCPercent is the GC target used unless GOGC is set.
const defaultGCPercent = 10

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("ipcd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration file (see configs/ipcd.yaml)")
	logLevel := fs.String("log-level", "", "override log.level: debug|info|warn|error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stderr, "ipcd", version)
		return 0
	}
	cfg, err := config.Load(*configPath, os.Environ())
	if err == nil && *logLevel != "" {
		cfg.Log.Level = *logLevel
		err = cfg.Validate()
	}
	if err == nil {
		err = cfg.CheckBuild()
	}
	if err != nil {
		fmt.Fprintln(stderr, "ipcd:", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	// Camera boards have 64-256 MB and no swap: collect at 10% heap growth
	// instead of Go's 100%. The live heap is a few MB, mostly frames the
	// collector does not scan, and sessions make little garbage (a frame is
	// cut into packets once for all of them), so a collection or two a
	// second costs little CPU and keeps RSS per viewer near the live heap.
	// GOGC in the environment wins.
	gogc := os.Getenv("GOGC") == ""
	if gogc {
		debug.SetGCPercent(defaultGCPercent)
	}
	// On a small board the collector also works harder as the process
	// nears what its configuration accounts for. GOMEMLIMIT in the
	// environment wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		if limit := memoryLimit(cfg, memTotal("/proc/meminfo")); limit > 0 {
			debug.SetMemoryLimit(limit)
			log.Info("memory limit derived from media.memory_mb", "gomemlimit_mib", limit>>20)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := newDaemon(cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	if gogc {
		// GOGC in the environment also leaves the idle collector out. It
		// ends with ctx, when run returns.
		go runIdleCollector(ctx, idleCollectInterval, defaultGCPercent, d.watched)
	}
	if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("exit", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// smallBoard is the RAM up to which ipcd sets a Go memory limit itself.
const smallBoard = 512 << 20

// memoryLimit is the soft Go memory limit for a board with total bytes of
// RAM: the media budget, 1 MiB per session for pion's buffers and 8 MiB for
// the runtime and the rest of ipcd; 0 (no limit) on boards larger than
// smallBoard or when total is unknown.
func memoryLimit(cfg config.Config, total int64) int64 {
	if total <= 0 || total > smallBoard {
		return 0
	}
	return int64(cfg.Media.MemoryMB)<<20 + int64(cfg.Stream.MaxClients)<<20 + 8<<20
}

// memTotal reads MemTotal from a /proc/meminfo file, in bytes; 0 if it
// cannot.
func memTotal(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	// Not fmt.Sscanf: fmt's scanner costs 18 KB of the board binary.
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil || kb < 0 {
			return 0
		}
		return kb << 10
	}
	return 0
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// The idle collector. Between collections the Go runtime lets the heap
// grow at least 1 MiB past the live heap (its minimum sweep distance),
// whatever GOGC says, and keeps what it grew to: its scavenger returns
// free pages only down to about that heap goal. An ipcd that nobody
// watches allocates slowly (the ring's new frames, about the stream's
// bitrate) on a live heap of about 4 MB, so a quarter of what it needs is
// garbage or free pages, resident. While no session exists, the idle
// collector collects and returns the free pages to the system
// (debug.FreeOSMemory) when no collection has run for an interval and
// the heap has grown by more than GOGC's share of the live heap (at least
// minIdleRunway) since the last one: about every 1.5 s at 2 Mbit/s, about 2
// ms of CPU each on an x86 core. With viewers the runtime's own pacing
// applies, as before.
const (
	idleCollectInterval = 500 * time.Millisecond
	minIdleRunway       = 256 << 10
)

// runIdleCollector collects as described above, looking every interval,
// until ctx ends; gcPercent is the GOGC in force and busy reports whether
// a session exists. It reads the heap with runtime.ReadMemStats (a pause
// of microseconds at this heap size) only while no session exists; the
// live heap is what was allocated at its first look after a collection,
// which overstates it by at most an interval's allocations.
func runIdleCollector(ctx context.Context, interval time.Duration, gcPercent int, busy func() bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var (
		ms         runtime.MemStats
		lastCycles uint32
		live       uint64
		known      bool // live is of the collection lastCycles counts
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if busy() {
			known = false
			continue
		}
		runtime.ReadMemStats(&ms)
		if !known || ms.NumGC != lastCycles {
			// The runtime collected in this interval (or a session
			// just ended): the heap now is close to the live heap.
			lastCycles, live, known = ms.NumGC, ms.HeapAlloc, true
			continue
		}
		if ms.HeapAlloc <= live+max(live*uint64(gcPercent)/100, minIdleRunway) {
			continue
		}
		debug.FreeOSMemory()
		runtime.ReadMemStats(&ms)
		lastCycles, live = ms.NumGC, ms.HeapAlloc
	}
}

// watched reports whether the media stream service has a session.
func (d *daemon) watched() bool {
	svc := d.running.Load()
	return svc != nil && svc.Active() > 0
}
