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
	"runtime/debug"
	"syscall"

	"github.com/ipcd/ipcd/cmd/ipcd/config"
)

// defaultGCPercent is the GC target used unless GOGC is set.
const defaultGCPercent = 50

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
	// Camera boards have 64-256 MB and no swap: collect at 50% heap growth
	// instead of Go's 100%, which costs little CPU at camera bitrates and
	// keeps RSS per viewer near the live heap. GOGC in the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := newDaemon(cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("exit", "err", err)
		return 1
	}
	log.Info("stopped")
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
