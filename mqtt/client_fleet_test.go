package mqtt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// TestFleetReconnect restarts mosquitto under 100 connected devices and
// checks that they all come back, subscribed and announced online, without
// stampeding the broker.
//
// Why the bounds hold for full jitter and fail for a fixed delay. Mosquitto
// closes every socket when it exits, so all clients lose the broker at one
// instant, 0; it accepts again at R, with 1 s <= R (the test waits a second
// after Stop) and R around 1.05 s in practice. With Base 1 s and Cap 4 s a
// client's k-th attempt after the loss is at T_k = T_(k-1) + U_k*L_k, U_k
// uniform in [0,1), L_k = min(Cap, Base*2^k) = 1, 2, 4, 4, ... s, and it
// reconnects at the first T_k >= R (a refused attempt on loopback costs well
// under a millisecond). T_0 < 1 s <= R, so attempt 0 never is that one. The
// probability that the reconnect lands in a window of width w is at most
//
//	sum over k>=1 of P(T_(k-1) < R) * w/L_k
//	  <= w * (1/2 + P(T_1<R)/4 + P(T_2<R)/4 + ...) <= 0.65 * w per second
//
// for R <= 1.5 s, as P(U_0 + 2*U_1 < R) <= 0.5, P(T_2 < R) <= R^3/48 and
// P(T_3 < R) <= R^4/768. Every 100 ms window lies inside one of the ~410
// windows of 110 ms that start every 10 ms over the at most 4 s after R in
// which reconnects fall; each holds a given client with p <= 0.072, and the
// clients draw independently, so
//
//	P(some 100 ms window holds more than 25) <= 410 * P(Binomial(100, 0.072) >= 26) ~ 3e-6,
//
// and a spread under 300 ms (all 100 in one such window) is below 1e-60.
// Simulating the model 20000 times gives a busiest 100 ms window of 11
// clients at the median and 18 at the 99.9th percentile, and a spread never
// under 2 s. A fixed delay, or exponential backoff without jitter, moves
// every client in step: all 100 reconnect within the few milliseconds a
// connect takes, so 100 share one window and the spread is far below 300 ms.
// fleetUp is one client's report that it is connected.
type fleetUp struct {
	i  int
	at time.Time
}

// fleet is a set of clients on one broker that report their ups and downs.
type fleet struct {
	n      int
	ups    chan fleetUp
	downs  chan int
	queues []queue
	topics []string
	stop   func()
}

func startFleet(t *testing.T, url string, n int, backoff mqtt.BackoffConfig, log *slog.Logger) *fleet {
	t.Helper()
	// Buffered well past what the test causes, so OnUp and OnDown never block.
	f := &fleet{n: n, ups: make(chan fleetUp, 8*n), downs: make(chan int, 8*n), queues: make([]queue, n), topics: make([]string, n)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	f.stop = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
	})
	t.Cleanup(f.stop)
	for i := range n {
		cfg := deviceConfig(url, fmt.Sprintf("fleet%03d", i))
		cfg.StatusTopic = "smart/device/status/{id}"
		cfg.Backoff = backoff
		cfg.OnUp = func() { f.ups <- fleetUp{i, time.Now()} }
		cfg.OnDown = func(error) { f.downs <- i }
		c, err := mqtt.NewClient(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		f.queues[i] = make(queue, 1)
		c.Route(46, f.queues[i].deliver)
		f.topics[i] = c.TopicIn()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil {
				t.Errorf("client %d: Run: %v", i, err)
			}
		}()
	}
	return f
}

// waitAll waits until every client has reported, keeping the first
// report of each that next accepts.
func (f *fleet) waitAll(t *testing.T, what string, deadline time.Duration, next func() (int, bool)) {
	t.Helper()
	seen := make([]bool, f.n)
	timeout := time.After(deadline)
	for n := 0; n < f.n; {
		select {
		case <-timeout:
			t.Fatalf("%s: %d of %d clients after %v", what, n, f.n, deadline)
		default:
		}
		if i, ok := next(); ok && !seen[i] {
			seen[i] = true
			n++
		}
	}
}

func (f *fleet) recvUp(timeout time.Duration) (fleetUp, bool) {
	select {
	case u := <-f.ups:
		return u, true
	case <-time.After(timeout):
		return fleetUp{}, false
	}
}

func (f *fleet) recvDown(timeout time.Duration) (int, bool) {
	select {
	case i := <-f.downs:
		return i, true
	case <-time.After(timeout):
		return 0, false
	}
}

// busiestWindow is the most reconnects within one window.
func busiestWindow(back []time.Duration, window time.Duration) int {
	busiest := 0
	for lo, hi := 0, 0; hi < len(back); hi++ {
		for back[hi]-back[lo] >= window {
			lo++
		}
		busiest = max(busiest, hi-lo+1)
	}
	return busiest
}

func TestFleetReconnect(t *testing.T) {
	const (
		fleetSize   = 100
		outage      = time.Second
		window      = 100 * time.Millisecond
		maxInWindow = fleetSize / 4
		minSpread   = 300 * time.Millisecond
	)
	backoff := mqtt.BackoffConfig{Base: time.Second, Cap: 4 * time.Second}

	srv := mqtttest.StartMosquitto(t)
	check := goroutines(t)
	log, logs := newLogger(slog.LevelWarn)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client logs:\n%s", logs)
		}
	})
	f := startFleet(t, srv.URL(), fleetSize, backoff, log)
	f.waitAll(t, "connected", 2*waitTimeout, func() (int, bool) {
		u, ok := f.recvUp(10 * time.Millisecond)
		return u.i, ok
	})

	srv.Stop()
	stopped := time.Now()
	f.waitAll(t, "lost the broker", waitTimeout, func() (int, bool) { return f.recvDown(10 * time.Millisecond) })
	time.Sleep(outage - time.Since(stopped))
	restart := time.Now()
	srv.Start()
	listening := time.Since(restart)

	back := make([]time.Duration, fleetSize)
	f.waitAll(t, "reconnected", backoff.Cap+2*waitTimeout, func() (int, bool) {
		u, ok := f.recvUp(10 * time.Millisecond)
		// An attempt that caught the dying broker before it stopped
		// accepting is not a reconnect.
		if !ok || u.at.Before(restart) {
			return 0, false
		}
		back[u.i] = u.at.Sub(restart)
		return u.i, true
	})
	slices.Sort(back)
	busiest := busiestWindow(back, window)
	spread := back[fleetSize-1] - back[0]
	t.Logf("%d clients, backoff base %v cap %v, outage %v (mosquitto listening %v after Start): reconnect offsets from restart min %v p50 %v p90 %v max %v, spread %v, busiest %v window %d clients",
		fleetSize, backoff.Base, backoff.Cap, restart.Sub(stopped).Round(time.Millisecond), listening.Round(time.Millisecond),
		back[0].Round(time.Millisecond), back[fleetSize/2].Round(time.Millisecond), back[fleetSize*9/10].Round(time.Millisecond),
		back[fleetSize-1].Round(time.Millisecond), spread.Round(time.Millisecond), window, busiest)
	if spread < minSpread {
		t.Errorf("reconnects spread over %v, want at least %v: the fleet reconnects in step", spread, minSpread)
	}
	if busiest > maxInWindow {
		t.Errorf("%d clients reconnected within one %v window, want at most %d", busiest, window, maxInWindow)
	}

	relay := cloud(t, srv.URL())
	f.checkSubscribed(t, relay)
	f.checkOnline(t, relay)
	f.stop()
	relay.Disconnect(250)
	check()
}

// checkSubscribed: every client is subscribed again: a message to each
// topic_in arrives.
func (f *fleet) checkSubscribed(t *testing.T, relay paho.Client) {
	t.Helper()
	now := time.Now().Unix()
	for i, topic := range f.topics {
		publishRaw(t, relay, topic, fmt.Appendf(nil, `{"protocol":46,"pv":"2.2","t":%d,"data":{"n":%d}}`, now, i))
	}
	for i, q := range f.queues {
		jsonEqual(t, q.next(t), fmt.Sprintf(`{"n":%d}`, i))
	}
}

// checkOnline: every client announced itself online to the restarted
// broker, which lost the retained statuses with its memory.
func (f *fleet) checkOnline(t *testing.T, relay paho.Client) {
	t.Helper()
	online := make(chan string, f.n)
	tok := relay.Subscribe("smart/device/status/+", 1, func(_ paho.Client, m paho.Message) {
		var p mqtt.Presence
		if m.Retained() && json.Unmarshal(m.Payload(), &p) == nil && p.Online {
			online <- strings.TrimPrefix(m.Topic(), "smart/device/status/")
		}
	})
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("status subscribe: %v", tok.Error())
	}
	seen := make(map[string]bool)
	for len(seen) < f.n {
		select {
		case id := <-online:
			seen[id] = true
		case <-time.After(waitTimeout):
			t.Fatalf("%d of %d clients retained online after the restart", len(seen), f.n)
		}
	}
}
