package mqtt

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestLogCut(t *testing.T) {
	short := "short payload"
	if got := logCut([]byte(short)); got != short {
		t.Fatalf("short payload changed: %q", got)
	}
	// "é" is two bytes starting at offset 1023: cutting at 1024 would split it.
	p := strings.Repeat("a", logPayloadMax-1) + "é" + strings.Repeat("b", 100)
	got := logCut([]byte(p))
	if !utf8.ValidString(got) || got != strings.Repeat("a", logPayloadMax-1)+"..." {
		t.Fatalf("cut %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
	exact := strings.Repeat("c", logPayloadMax+10)
	if got := logCut([]byte(exact)); got != exact[:logPayloadMax]+"..." {
		t.Fatalf("ASCII cut at %d bytes, want %d", len(got)-3, logPayloadMax)
	}
}

// BenchmarkHandle measures what paho's router goroutine spends per message
// in our callback: rules, decode and hand-off of a protocol-302 offer.
func BenchmarkHandle(b *testing.B) {
	c, err := NewClient(Config{Brokers: []string{"tcp://127.0.0.1:1"}, TopicIn: "in/{id}", TopicOut: "out/{id}", ID: "cam",
		TimeTrusted: func() bool { return true }}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	c.Route(302, func(json.RawMessage) bool { return true })
	sdp := strings.Repeat(`a=rtpmap:96 H264/90000\r\n`, 120)
	payload := fmt.Appendf(nil, `{"protocol":302,"pv":"2.2","t":%d,"data":{"header":{"type":"offer","from":"app","to":"cam","sessionid":"s1"},"msg":{"mode":"webrtc","sdp":"%s","auth":"x.y"}}}`,
		time.Now().Unix(), sdp)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		c.handle(payload)
	}
	if st := c.Stats(); st.DroppedTotal() != 0 {
		b.Fatalf("dropped: %+v", st)
	}
}
