package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// TestPowerCut kills a real ipcd process with SIGKILL at random moments
// while it applies activations and resets, 200 times; after every kill the
// store must load as the state before the operation or the state after it,
// never neither and never corrupt.
func TestPowerCut(t *testing.T) {
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	dir := t.TempDir()
	bin := buildIPCD(t, dir)
	broker := mqtttest.Embedded(t)
	app := newAppSide(t, broker)
	config, store := powerCutConfig(t, dir, broker)

	changed := 0
	var window time.Duration
	for i := range cycles {
		before := powerCutState(t, store)
		// Wait until ipcd listens on the topic the operation goes to.
		want := "state=WaitingActivation"
		if before {
			want = "listen ok"
		}
		cmd := startProcess(t, bin, config, nil, want, 10*time.Second).cmd
		now := time.Now().Unix()
		if before {
			app.publish(testDevID, now, map[string]any{"type": "reset", "dev_id": testDevID, "sign": device.SignReset(testDevID, testLocal, now)})
		} else {
			app.publish(testUUID, now, activateMsg(now, nil))
		}
		if i == 0 {
			// Calibration: how long this machine takes from publish to
			// ack sets the window the kills fall into (emulated boards
			// are far slower than the host).
			start := time.Now()
			<-app.out
			window = max(time.Since(start), time.Millisecond)
			t.Logf("publish to ack: %s; kills fall in [0, %s)", time.Since(start).Round(time.Microsecond), window)
		} else {
			time.Sleep(time.Duration(rand.Int64N(int64(window))))
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		// Drain acks of this cycle so the next one starts clean.
		for len(app.out) > 0 {
			<-app.out
		}
		if after := powerCutState(t, store); after != before {
			changed++
		}
	}
	t.Logf("%d kills; %d landed after the operation took effect, %d before", cycles, changed, cycles-changed)
	if changed == 0 || changed == cycles {
		t.Fatalf("every kill landed on the same side (%d of %d changed): the kill window misses the write", changed, cycles)
	}
}

// powerCutConfig writes the configuration of the power-cut daemon.
func powerCutConfig(t *testing.T, dir, broker string) (config, store string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	store = filepath.Join(dir, "state.json")
	config = filepath.Join(dir, "ipcd.yaml")
	yaml := fmt.Sprintf(`log: {level: info}
device: {uuid: %s, authkey: %s, store: %s}
mqtt: {brokers: [%q], client_id: ipcd-powercut, status_topic: ""}
time: {source: system}
stream: {network_interfaces: [lo], loopback_candidates: true}
media:
  sources:
    main: {type: file, path: %s, fps: 25, loop: true}
    audio: {type: file, path: %s, codec: pcmu}
`, testUUID, testAuthKey, store, broker, filepath.Join(root, "configs/media/main.h264"), filepath.Join(root, "configs/media/audio.pcmu"))
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, store
}

// powerCutState loads the store after a kill: readable, and holding no
// activation but the one sent.
func powerCutState(t *testing.T, store string) (activated bool) {
	t.Helper()
	s, err := device.OpenStore(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, ok, err := s.Load()
	if err != nil {
		t.Fatalf("store unreadable after a kill: %v", err)
	}
	if ok && (a.DevID != testDevID || a.P2PPassword != testPassword || a.LocalKey != testLocal) {
		t.Fatalf("store holds an activation nobody sent: %+v", a.DevID)
	}
	return ok
}
