package mqtt_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/mqtt"
)

// FuzzInput drives the device's MQTT input path end to end, as paho's
// callback does: the `Rev MQTT:` line with redaction, the input rules,
// dispatch by protocol, and the activation decoder behind protocol 46. Every
// log line it writes, at debug level, must be free of the secrets the
// payload carries: the values Go's decoding puts into the activation's
// secret fields, and the values of every member the reference walk finds
// under a secret name.
func FuzzInput(f *testing.F) {
	const s = "Zq9SeCrEt7"
	env := func(data string) []byte {
		return fmt.Appendf(nil, `{"protocol":46,"pv":"2.2","t":1732170000,"data":%s}`, data)
	}
	for _, d := range []string{
		`{"type":"activate","uuid":"u1","dev_id":"d1","local_key":"` + s + `","p2p_password":"ad` + s + `","uid":"o","mqtt":{"username":"mu","password":"` + s + `"},"sign":"` + s + `"}`,
		`{"Type":"activate","UUID":"u1","Dev_ID":"d1","Local_Key":"` + s + `","P2P_Password":"ad` + s + `","MQTT":{"Password":"` + s + `"},"Sign":"` + s + `"}`,
		`{"type":"activate","p2p\u005fpassword":"` + s + `","\u006Cocal_key":"` + s + `","\u0073ign":"` + s + `"}`,
		`{"type":"activate","MQTT.Password":"` + s + `","mqtt_password":"` + s + `"}`,
		`{"type":"activate","local_key":12345678901,"p2p_password":{"x":"` + s + `"},"sign":["` + s + `"]}`,
		`{"type":"reset","dev_id":"d1","SIGN":"` + s + `"}`,
		`{"type":"activate","local_key":"` + s + `"`,
	} {
		f.Add(env(d))
	}
	f.Add([]byte(`{"protocol":302,"pv":"2.2","t":1732170000,"data":{"header":{"type":"offer","from":"a","to":"d","sessionid":"s"},"msg":{"Auth":"` + s + `","token":[{"urls":"turn:x","Credential":"` + s + `"}]}}}`))
	f.Add([]byte(`not json "local_key":"` + s + `"`))
	f.Add([]byte(`{"protocol":99,"t":"x","data":null}`))

	f.Fuzz(func(t *testing.T, p []byte) {
		logs := new(bytes.Buffer)
		log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c, err := mqtt.NewClient(mqtt.Config{Brokers: []string{"tcp://127.0.0.1:1"}, TopicIn: "in/{id}", TopicOut: "out/{id}", ID: "cam",
			MaxPayload: 8 << 10, TimeTrusted: func() bool { return false }}, log)
		if err != nil {
			t.Fatal(err)
		}
		var secrets []string
		c.RouteEnvelope(device.ProtocolActivation, func(e mqtt.Envelope) bool {
			m, err := device.DecodeActivate(e.Data)
			if err != nil {
				log.Warn("drop activation message", "rule", "malformed", "err", err)
				return true
			}
			secrets = append(secrets, m.LocalKey, m.P2PPassword, m.MQTT.Password, m.Sign)
			log.Info("activation", "msg", m)
			return true
		})
		c.Route(302, func(json.RawMessage) bool { return true })
		c.Handle(p)

		var v any
		if json.Valid(p) && len(p) <= 8<<10 {
			d := json.NewDecoder(bytes.NewReader(p))
			d.UseNumber()
			if d.Decode(&v) == nil {
				secrets = append(secrets, secretValues(v, false)...)
			}
		}
		visible := strings.Join(visibleText(v), "\x00")
		out := logs.String()
		for _, sec := range secrets {
			if !checkable(sec) || strings.Contains(visible, sec) {
				continue
			}
			if strings.Contains(out, sec) {
				t.Fatalf("secret %q in the log of %q:\n%s", sec, p, out)
			}
		}
	})
}

// checkable: long enough and plain enough that finding it in the log can
// only mean it leaked, not that unrelated bytes happen to spell it.
func checkable(s string) bool {
	if len(s) < 6 {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// secretValues are the strings and numbers under secret names in v.
func secretValues(v any, under bool) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			out = append(out, secretValues(e, under || mqtt.SecretKey(k))...)
		}
	case []any:
		for _, e := range x {
			out = append(out, secretValues(e, under)...)
		}
	case string:
		if under {
			out = append(out, x)
		}
	case json.Number:
		if under {
			out = append(out, x.String())
		}
	}
	return out
}

// visibleText is every name and value the log may show: all but the values
// under secret names.
func visibleText(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			out = append(out, k)
			if !mqtt.SecretKey(k) {
				out = append(out, visibleText(e)...)
			}
		}
	case []any:
		for _, e := range x {
			out = append(out, visibleText(e)...)
		}
	case string:
		out = append(out, x)
	case json.Number:
		out = append(out, x.String())
	}
	return out
}

// TestInputRedactsActivation: an activation with each spelling of its
// secret members goes through the input path and its decoder; neither the
// `Rev MQTT:` line nor any other line shows a secret.
func TestInputRedactsActivation(t *testing.T) {
	const sec = "Zq9SeCrEt7"
	spellings := map[string]string{
		"lower":   `{"type":"activate","dev_id":"d1","local_key":"` + sec + `1","p2p_password":"ad` + sec + `","mqtt":{"username":"u","password":"` + sec + `2"},"sign":"` + sec + `3"}`,
		"title":   `{"type":"activate","dev_id":"d1","Local_Key":"` + sec + `1","P2P_Password":"ad` + sec + `","MQTT":{"Username":"u","Password":"` + sec + `2"},"Sign":"` + sec + `3"}`,
		"upper":   `{"type":"activate","dev_id":"d1","LOCAL_KEY":"` + sec + `1","P2P_PASSWORD":"ad` + sec + `","MQTT":{"PASSWORD":"` + sec + `2"},"SIGN":"` + sec + `3"}`,
		"escaped": `{"type":"activate","dev_id":"d1","local\u005fkey":"` + sec + `1","p2p\u005Fpassword":"ad` + sec + `","mqtt":{"pass\u0077ord":"` + sec + `2"},"\u0073ign":"` + sec + `3"}`,
		"kelvin":  "{\"type\":\"activate\",\"dev_id\":\"d1\",\"local_\u212Aey\":\"" + sec + "1\",\"p2p_password\":\"ad" + sec + "\",\"\u017Fign\":\"" + sec + "3\"}",
	}
	for name, data := range spellings {
		t.Run(name, func(t *testing.T) {
			log, logs := newLogger(slog.LevelDebug)
			c, err := mqtt.NewClient(mqtt.Config{Brokers: []string{"tcp://127.0.0.1:1"}, TopicIn: "in/{id}", TopicOut: "out/{id}", ID: "cam"}, log)
			if err != nil {
				t.Fatal(err)
			}
			var got device.ActivateMsg
			c.RouteEnvelope(device.ProtocolActivation, func(e mqtt.Envelope) bool {
				got, err = device.DecodeActivate(e.Data)
				return true
			})
			c.Handle(fmt.Appendf(nil, `{"protocol":46,"pv":"2.2","t":%d,"data":%s}`, time.Now().Unix(), data))
			if err != nil || !strings.HasPrefix(got.LocalKey, sec) || !strings.HasPrefix(got.Sign, sec) {
				t.Fatalf("decoded %+v, %v: the spelling is not one Go's decoding accepts", got, err)
			}
			if logs.Count("Rev MQTT:") != 1 {
				t.Fatalf("no Rev MQTT line:\n%s", logs)
			}
			if strings.Contains(logs.String(), sec) {
				t.Fatalf("secret in the log:\n%s", logs)
			}
		})
	}
}
