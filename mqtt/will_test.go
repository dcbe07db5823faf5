package mqtt

import (
	"testing"
	"time"
)

func TestWillRegistered(t *testing.T) {
	cfg := Config{Brokers: []string{"tcp://127.0.0.1:1"}, ClientID: "dev-cam", ID: "cam",
		TopicIn: "in/{id}", TopicOut: "out/{id}", StatusTopic: "smart/device/status/{id}"}
	c, err := NewClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := c.pahoOptions(&link{}, time.Unix(1732170000, 0))
	if !o.WillEnabled || o.WillTopic != "smart/device/status/cam" || o.WillQos != 1 || !o.WillRetained ||
		string(o.WillPayload) != `{"online":false,"t":1732170000}` {
		t.Fatalf("will: enabled %v topic %q qos %d retained %v payload %s",
			o.WillEnabled, o.WillTopic, o.WillQos, o.WillRetained, o.WillPayload)
	}

	cfg.StatusTopic = ""
	if c, err = NewClient(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if o := c.pahoOptions(&link{}, time.Now()); o.WillEnabled {
		t.Fatalf("will registered without a status topic: %q", o.WillTopic)
	}
}
