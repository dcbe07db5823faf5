package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipcd/ipcd/cmd/ipcd/config"
	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/media"
)

// TestRefusesUnbuiltFeatureBeforeWriting: a configuration that needs a
// feature this binary lacks (V4L2 in a build without the v4l2 tag) is
// refused before the pre-provisioned activation is written to the store,
// and main exits with the configuration status and the key.
func TestRefusesUnbuiltFeatureBeforeWriting(t *testing.T) {
	if media.V4L2Built {
		t.Skip("this build has V4L2 capture")
	}
	cfg := testConfig("tcp://127.0.0.1:1")
	cfg.Device.Store = filepath.Join(t.TempDir(), "state.json")
	cfg.Device.Activation = &device.ActivationSection{DevID: testDevID, LocalKey: "0123456789abcdef", P2PPassword: testPassword}
	cfg.Media.Sources.Main = media.SourceSection{Type: media.SourceV4L2, Path: "/dev/video0", FPS: 25, Codec: "h264"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err := newDaemon(cfg, slog.New(slog.DiscardHandler))
	if !errors.Is(err, config.ErrNotBuilt) || !strings.Contains(err.Error(), "media.sources.main.type") {
		t.Fatalf("newDaemon: %v, want ErrNotBuilt naming media.sources.main.type", err)
	}
	if _, err := os.Stat(cfg.Device.Store); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the store was touched before the refusal: %v", err)
	}

	path := filepath.Join(t.TempDir(), "ipcd.yaml")
	yaml := "device: {uuid: u1, authkey: k1, store: " + cfg.Device.Store + "}\n" +
		"media:\n  sources:\n    main: {type: v4l2, path: /dev/video0}\n    audio: {type: none}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run([]string{"-config", path}, &stderr); code != 2 || !strings.Contains(stderr.String(), "media.sources.main.type") {
		t.Fatalf("run = %d, stderr %q; want 2 naming media.sources.main.type", code, stderr.String())
	}
	if _, err := os.Stat(cfg.Device.Store); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the store was touched before the refusal: %v", err)
	}
}
