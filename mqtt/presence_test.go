package mqtt_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

type status struct {
	mqtt.Presence
	retained bool
}

// statusWatch is a bare paho client subscribed to status topics, as the
// cloud watches its fleet.
type statusWatch struct {
	pc paho.Client
	ch chan status
}

// watchStatus subscribes to filter. A live watch keeps only messages
// published while it was subscribed: mochi may send the retained message a
// subscription finds some time after the SUBACK, after the live copy of a
// publish it stored meanwhile.
func watchStatus(t *testing.T, broker, filter string, live bool) *statusWatch {
	t.Helper()
	w := &statusWatch{ch: make(chan status, 256)}
	o := paho.NewClientOptions().AddBroker(broker).SetClientID("watch-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().Format("150405.000000")).SetAutoReconnect(false)
	w.pc = paho.NewClient(o)
	if tok := w.pc.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("watch connect: %v", tok.Error())
	}
	t.Cleanup(w.close)
	tok := w.pc.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		if live && m.Retained() {
			return
		}
		var p mqtt.Presence
		if err := json.Unmarshal(m.Payload(), &p); err != nil {
			p.T = -1 // fails every comparison below
		}
		select {
		case w.ch <- status{p, m.Retained()}:
		default:
		}
	})
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("watch subscribe: %v", tok.Error())
	}
	return w
}

func (w *statusWatch) close() { w.pc.Disconnect(250) }

func (w *statusWatch) next(t *testing.T) status {
	t.Helper()
	select {
	case s := <-w.ch:
		return s
	case <-time.After(waitTimeout):
		t.Fatal("no status message")
		return status{}
	}
}

// retainedStatus is what a subscriber that arrives now is told.
func retainedStatus(t *testing.T, broker, topic string) mqtt.Presence {
	t.Helper()
	w := watchStatus(t, broker, topic, false)
	defer w.close()
	s := w.next(t)
	if !s.retained {
		t.Fatalf("status %+v on subscribe is not retained", s.Presence)
	}
	return s.Presence
}

// TestPresence follows the status topic through a connect, a link that dies
// without a DISCONNECT (the broker fires the will), a reconnect, and a clean
// shutdown, on both brokers.
func TestPresence(t *testing.T) {
	for _, b := range mqtttest.Brokers() {
		t.Run(b.Name, func(t *testing.T) {
			broker := b.Start(t)
			link := newCutter(t, strings.TrimPrefix(broker, "tcp://"))
			const topic = "smart/device/status/cam9"
			live := watchStatus(t, broker, topic, true)
			check := goroutines(t)

			cfg := deviceConfig(link.URL(), "cam9")
			cfg.StatusTopic = "smart/device/status/{id}"
			cfg.Backoff = mqtt.BackoffConfig{Base: 20 * time.Millisecond, Cap: 100 * time.Millisecond}
			// A board without RTC runs on the synced clock, not the system's.
			const skew = 1000 * time.Hour
			cfg.Now = func() time.Time { return time.Now().Add(skew) }
			now := func() int64 { return cfg.Now().Unix() }
			log, _ := newLogger(slog.LevelDebug)
			before := now()
			dev := start(t, cfg, log, nil)
			dev.waitUp(t)
			if dev.StatusTopic() != topic {
				t.Fatalf("StatusTopic() = %q", dev.StatusTopic())
			}

			on1 := live.next(t)
			if !on1.Online || on1.T < before || on1.T > now() {
				t.Fatalf("after connect: %+v, want online with t in [%d, now]", on1.Presence, before)
			}
			if got := retainedStatus(t, broker, topic); got != on1.Presence {
				t.Fatalf("retained after connect: %+v, want %+v", got, on1.Presence)
			}

			// Kill the link and keep the device from coming back, so the
			// will stays the retained status long enough to read it.
			link.setRefuse(true)
			link.cut()
			select {
			case <-dev.down:
			case <-time.After(waitTimeout):
				t.Fatal("OnDown not called after the link died")
			}
			will := live.next(t)
			if want := (mqtt.Presence{Online: false, T: on1.T}); will.Presence != want {
				t.Fatalf("will: %+v, want %+v (dated by the lost connection)", will.Presence, want)
			}
			if got := retainedStatus(t, broker, topic); got != will.Presence {
				t.Fatalf("retained after the will: %+v, want %+v", got, will.Presence)
			}

			link.setRefuse(false)
			dev.waitUp(t)
			on2 := live.next(t)
			if !on2.Online || on2.T < on1.T {
				t.Fatalf("after reconnect: %+v, want online at or after %d", on2.Presence, on1.T)
			}

			dev.stop(t)
			off := live.next(t)
			if off.Online || off.T < on2.T || off.T > now() {
				t.Fatalf("after shutdown: %+v, want offline with t in [%d, now]", off.Presence, on2.T)
			}
			if got := retainedStatus(t, broker, topic); got != off.Presence {
				t.Fatalf("retained after shutdown: %+v, want %+v", got, off.Presence)
			}
			// The clean disconnect discarded the will: nothing follows.
			select {
			case s := <-live.ch:
				t.Fatalf("status after a clean shutdown: %+v", s)
			case <-time.After(200 * time.Millisecond):
			}
			live.close()
			check()
		})
	}
}

// TestPresenceHeldUntilServing: with HoldOnline the status says offline
// after the connect until the owner serves, follows SetServing, and comes
// back online after a reconnect while serving.
func TestPresenceHeldUntilServing(t *testing.T) {
	broker := mqtttest.Embedded(t)
	link := newCutter(t, strings.TrimPrefix(broker, "tcp://"))
	const topic = "smart/device/status/cam10"
	live := watchStatus(t, broker, topic, true)
	check := goroutines(t)

	cfg := deviceConfig(link.URL(), "cam10")
	cfg.StatusTopic = "smart/device/status/{id}"
	cfg.HoldOnline = true
	cfg.Backoff = mqtt.BackoffConfig{Base: 20 * time.Millisecond, Cap: 100 * time.Millisecond}
	log, _ := newLogger(slog.LevelDebug)
	dev := start(t, cfg, log, nil)
	dev.waitUp(t)

	if s := live.next(t); s.Online {
		t.Fatalf("after connect, not serving: %+v", s.Presence)
	}
	dev.SetServing(true)
	on := live.next(t)
	if !on.Online {
		t.Fatalf("after SetServing(true): %+v", on.Presence)
	}
	dev.SetServing(true) // no change, nothing published
	dev.SetServing(false)
	if s := live.next(t); s.Online || s.T < on.T {
		t.Fatalf("after SetServing(false): %+v", s.Presence)
	}
	dev.SetServing(true)
	if s := live.next(t); !s.Online {
		t.Fatalf("serving again: %+v", s.Presence)
	}

	// A reconnect while serving says online again once subscribed.
	link.cut()
	<-dev.down
	if s := live.next(t); s.Online {
		t.Fatalf("will: %+v", s.Presence)
	}
	dev.waitUp(t)
	if s := live.next(t); !s.Online {
		t.Fatalf("after reconnect while serving: %+v", s.Presence)
	}
	dev.stop(t)
	if s := live.next(t); s.Online {
		t.Fatalf("after shutdown: %+v", s.Presence)
	}
	live.close()
	check()
}
