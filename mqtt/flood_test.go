package mqtt_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// TestFloodLogBounded: a flood of bad messages, sent back to back through a
// real broker, is counted in full but logged in a bounded number of lines:
// one warning per rule in full, then one summary line per rule with the
// count, and `Rev MQTT:` lines beyond a rate summarized.
func TestFloodLogBounded(t *testing.T) {
	broker := mqtttest.Embedded(t)
	log, logs := newLogger(slog.LevelDebug)
	q := make(queue, 64)
	cfg := deviceConfig(broker, "camflood")
	cfg.MaxPayload = 512
	dev := start(t, cfg, log, map[int]func(json.RawMessage) bool{46: q.deliver})
	dev.waitUp(t)
	relay := cloud(t, broker)

	begin := time.Now()
	const perRule = 1500
	big := fmt.Appendf(nil, `{"protocol":46,"pv":"2.2","t":%d,"data":{"pad":"%s"}}`, time.Now().Unix(), strings.Repeat("x", 600))
	payloads := [][]byte{[]byte(`not json`), big, []byte(`{"protocol":46,"data":{}}`), []byte(`{"protocol":77,"t":1,"data":{}}`)}
	for i := range perRule {
		for _, p := range payloads {
			// QoS 0 without waiting: a flood, as fast as the relay sends.
			relay.Publish(dev.TopicIn(), 0, false, p)
		}
		if i%100 == 99 {
			// QoS 1 now and then keeps the relay's outbound queue bounded.
			publishRaw(t, relay, dev.TopicIn(), []byte(`not json`))
		}
	}
	want := uint64(perRule*len(payloads) + perRule/100)
	deadline := time.Now().Add(20 * time.Second)
	for dev.Stats().Received < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	dev.stop(t)
	st := dev.Stats()
	if st.Received < want*9/10 {
		t.Fatalf("received %d of %d", st.Received, want)
	}
	if st.DroppedTotal() != st.Received {
		t.Fatalf("dropped %d of %d received", st.DroppedTotal(), st.Received)
	}
	for _, r := range []mqtt.Rule{mqtt.RuleNotJSON, mqtt.RuleMaxPayload, mqtt.RuleMissingField, mqtt.RuleUnknownProtocol} {
		rule := "rule=" + r.String()
		lines := 0
		var counted uint64
		for line := range strings.Lines(logs.String()) {
			if !strings.Contains(line, "mqtt message dropped") || !strings.Contains(line, rule+" ") {
				continue
			}
			lines++
			var n uint64
			if i := strings.Index(line, " count="); i >= 0 {
				fmt.Sscanf(line[i+len(" count="):], "%d", &n)
				counted += n
			} else {
				counted++ // the burst line, not in a summary
			}
		}
		// Within the test's few seconds: one line in full and a summary per
		// 10 s interval.
		if lines < 2 || lines > 4 {
			t.Errorf("%s: %d log lines for %d drops", rule, lines, st.Dropped[r])
		}
		// A summary's count includes the event logged in full.
		if counted < st.Dropped[r] || counted > st.Dropped[r]+2 {
			t.Errorf("%s: summaries count %d, counter %d", rule, counted, st.Dropped[r])
		}
	}
	rev := logs.Count(`msg="Rev MQTT: `)
	elapsed := time.Since(begin)
	// 20 lines in full and one summary per started second.
	if max := int(elapsed/time.Second+1) * 21; rev > max {
		t.Errorf("%d Rev MQTT lines in %v, want at most %d", rev, elapsed, max)
	}
	if logs.Count("Rev MQTT: messages not shown") == 0 {
		t.Error("no summary of the Rev MQTT lines held back")
	}
	size := len(logs.String())
	t.Logf("%d messages, %d dropped, %d log bytes, %d Rev MQTT lines", st.Received, st.DroppedTotal(), size, rev)
	if size > 64<<10 {
		t.Errorf("%d log bytes for the flood", size)
	}
}
