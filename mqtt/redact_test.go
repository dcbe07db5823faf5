package mqtt

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	in := `{"protocol":46,"t":1,"data":{"type":"activate","dev_id":"d1","local_key":"0123456789abcdef",` +
		`"p2p_password":"ad12ab34","mqtt":{"username":"u","password":"p\"w"},"sign":"c2ln","uid":"o"}}` +
		`{"msg":{"auth":"123.sig","token":[{"urls":"turn:x","credential" : "tc"}]}}`
	got := string(redact([]byte(in)))
	for _, secret := range []string{"0123456789abcdef", "ad12ab34", `p\"w`, "c2ln", "123.sig", "tc"} {
		if strings.Contains(got, secret) {
			t.Errorf("secret %q left in %s", secret, got)
		}
	}
	for _, keep := range []string{`"dev_id":"d1"`, `"username":"u"`, `"uid":"o"`, `"local_key":"***"`, `"credential" : "***"`} {
		if !strings.Contains(got, keep) {
			t.Errorf("%q missing from %s", keep, got)
		}
	}
}

// TestRedactSpellings: every spelling Go's JSON decoding maps onto a secret
// field, and values of any JSON type, are hidden.
func TestRedactSpellings(t *testing.T) {
	const secret = "s3cr3tVALUE"
	cases := []struct {
		name, data string
	}{
		{"lower", `{"local_key":"s3cr3tVALUE"}`},
		{"title case", `{"Local_Key":"s3cr3tVALUE"}`},
		{"upper", `{"P2P_PASSWORD":"s3cr3tVALUE"}`},
		{"mixed", `{"P2P_Password":"s3cr3tVALUE"}`},
		{"nested mixed", `{"MQTT":{"Password":"s3cr3tVALUE"}}`},
		{"dotted name", `{"MQTT.Password":"s3cr3tVALUE"}`},
		{"underscore name", `{"mqtt_password":"s3cr3tVALUE"}`},
		{"escaped underscore", `{"p2p\u005fpassword":"s3cr3tVALUE"}`},
		{"escaped letters", `{"\u006Cocal_key":"s3cr3tVALUE"}`},
		{"escaped sign", `{"\u0073ign":"s3cr3tVALUE"}`},
		{"kelvin sign k", "{\"local_\u212Aey\":\"s3cr3tVALUE\"}"},
		{"long s", "{\"\u017Fign\":\"s3cr3tVALUE\"}"},
		{"escaped value", `{"local_key":"s3cr\u0033tVALUE"}`},
		{"number", `{"local_key":1234567890123}`},
		{"object", `{"p2p_password":{"v":"s3cr3tVALUE"}}`},
		{"array", `{"password":["s3cr3tVALUE",{"x":"s3cr3tVALUE"}]}`},
		{"nested arrays", `{"password":[[["s3cr3tVALUE"]]],"after":"shown"}`},
		{"bool", `{"Sign":true}`},
		{"spaces", "{ \"Auth\" \t:\n \"s3cr3tVALUE\" }"},
		{"in array of objects", `{"token":[{"urls":"turn:x","Credential":"s3cr3tVALUE"}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := `{"protocol":46,"t":1,"data":` + tc.data + `}`
			if !json.Valid([]byte(p)) {
				t.Fatalf("test payload is not JSON: %s", p)
			}
			got := string(redact([]byte(p)))
			for _, s := range []string{secret, "s3cr", "1234567890123", "true"} {
				if strings.Contains(got, s) {
					t.Errorf("%q left in %s", s, got)
				}
			}
			if !strings.Contains(got, `"***"`) {
				t.Errorf("nothing redacted in %s", got)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("redacted line is not JSON: %s", got)
			}
			if strings.Contains(tc.data, "after") && !strings.Contains(got, `"after":"shown"`) {
				t.Errorf("member after the secret lost: %s", got)
			}
		})
	}
}

// TestRedactNotJSON: a payload that stops being JSON is shown up to that
// point, never a secret that follows.
func TestRedactNotJSON(t *testing.T) {
	for _, p := range []string{
		`{"dev_id":"d1","local_key":"s3cr3tVALUE`,
		`{"dev_id":"d1","local_key":"s3cr3tVALUE" "oops"}`,
		`{"dev_id":"d1","local_key":{"v":"s3cr3tVALUE"`,
		`{"dev_id":"d1" x "local_key":"s3cr3tVALUE"}`,
		`not json "local_key":"s3cr3tVALUE"`,
		`{"dev_id":"d1","local_key":"s3cr3tVALUE"` + strings.Repeat(" ", redactInputMax),
	} {
		got := string(redact([]byte(p)))
		if strings.Contains(got, "s3cr3t") {
			t.Errorf("secret shown for %.60q: %s", p, got)
		}
	}
	// Text that cannot name a secret is shown as sent.
	for _, p := range []string{`{"dev_id":"d1", x`, `not json at all`, `{"a":1}}`} {
		if got := string(redact([]byte(p))); got != p {
			t.Errorf("broken payload %s shown as %s", p, got)
		}
	}
	if got := string(redact([]byte(`{"dev_id":"d1", PASSWORD x`))); !strings.HasPrefix(got, `{"dev_id":"d1"`) || !strings.Contains(got, "not shown") {
		t.Errorf("rest naming a secret shown: %s", got)
	}
}

// TestRedactKeepsBytes: outside secrets the line is the payload as sent.
func TestRedactKeepsBytes(t *testing.T) {
	p := `{ "protocol" : 302, "t":1.5e9, "data" : {"header":{"from":"app\u00e9"},"msg":{"sdp":"v=0\r\n","x":[1, 2 ,null]}} }`
	if got := string(redact([]byte(p))); got != p {
		t.Fatalf("changed:\n got %s\nwant %s", got, p)
	}
}

func TestRedactBounded(t *testing.T) {
	p := `{"sdp":"` + strings.Repeat("a", 100000) + `","local_key":"s3cr3tVALUE"}`
	got := redact([]byte(p))
	if len(got) > redactInputMax+100 || strings.Contains(string(got), "s3cr3t") {
		t.Fatalf("%d bytes out", len(got))
	}
}

func BenchmarkRedact(b *testing.B) {
	p := []byte(`{"protocol":46,"pv":"2.2","t":1732170000,"data":{"type":"activate","uuid":"ipc0001","dev_id":"6c1e","local_key":"0123456789abcdef",` +
		`"p2p_password":"ad12ab34","uid":"owner","mqtt":{"username":"u","password":"pw"},"sign":"c2lnbmF0dXJl"}}`)
	b.ReportAllocs()
	for b.Loop() {
		redact(p)
	}
}
