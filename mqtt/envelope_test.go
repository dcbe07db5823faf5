package mqtt

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeEnvelope(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     Envelope
		wantTime time.Time
	}{
		{
			name:     "seconds",
			in:       `{"protocol":46,"pv":"2.2","t":1732170000,"data":{"type":"activate"}}`,
			want:     Envelope{Protocol: 46, PV: "2.2", T: 1732170000, Data: json.RawMessage(`{"type":"activate"}`)},
			wantTime: time.Unix(1732170000, 0),
		},
		{
			name:     "milliseconds",
			in:       `{"protocol":302,"t":1732170000123,"data":{}}`,
			want:     Envelope{Protocol: 302, T: 1732170000123, Data: json.RawMessage(`{}`)},
			wantTime: time.UnixMilli(1732170000123),
		},
		{
			name:     "threshold is still seconds",
			in:       `{"protocol":1,"t":100000000000,"data":1}`,
			want:     Envelope{Protocol: 1, T: 1e11, Data: json.RawMessage(`1`)},
			wantTime: time.Unix(1e11, 0),
		},
		{
			name:     "fractional seconds",
			in:       `{"protocol":1,"t":1732170000.75,"data":[]}`,
			want:     Envelope{Protocol: 1, T: 1732170000, Data: json.RawMessage(`[]`)},
			wantTime: time.Unix(1732170000, 0),
		},
		{
			name:     "pv of the wrong type is ignored",
			in:       `{"protocol":1,"pv":2.2,"t":5,"data":{}}`,
			want:     Envelope{Protocol: 1, T: 5, Data: json.RawMessage(`{}`)},
			wantTime: time.Unix(5, 0),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeEnvelope([]byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeEnvelope: %v", err)
			}
			if got.Protocol != tt.want.Protocol || got.PV != tt.want.PV || got.T != tt.want.T || !bytes.Equal(got.Data, tt.want.Data) {
				t.Fatalf("got %+v (data %s), want %+v (data %s)", got, got.Data, tt.want, tt.want.Data)
			}
			if !got.Time().Equal(tt.wantTime) {
				t.Fatalf("Time() = %v, want %v", got.Time(), tt.wantTime)
			}
		})
	}
}

func TestDecodeEnvelopeErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		err   error
		field string // the field the error must name
	}{
		{"empty", ``, ErrNotJSON, ""},
		{"text", `hello`, ErrNotJSON, ""},
		{"truncated", `{"protocol":46`, ErrNotJSON, ""},
		{"array", `[1,2]`, ErrNotJSON, ""},
		{"number", `42`, ErrNotJSON, ""},
		{"no protocol", `{"t":1,"data":{}}`, ErrMissingField, "protocol"},
		{"null protocol", `{"protocol":null,"t":1,"data":{}}`, ErrMissingField, "protocol"},
		{"string protocol", `{"protocol":"46","t":1,"data":{}}`, ErrMissingField, "protocol"},
		{"fractional protocol", `{"protocol":4.5,"t":1,"data":{}}`, ErrMissingField, "protocol"},
		{"no t", `{"protocol":46,"data":{}}`, ErrMissingField, "t"},
		{"string t", `{"protocol":46,"t":"1","data":{}}`, ErrMissingField, "t"},
		{"t out of range", `{"protocol":46,"t":1e300,"data":{}}`, ErrMissingField, "t"},
		{"no data", `{"protocol":46,"t":1}`, ErrMissingField, "data"},
		{"null data", `{"protocol":46,"t":1,"data":null}`, ErrMissingField, "data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeEnvelope([]byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			// The field name is part of the contract (what an engineer
			// reads in the warn log), not something callers branch on.
			if tt.field != "" && !strings.Contains(err.Error(), ": "+tt.field) {
				t.Fatalf("err %q does not name field %q", err, tt.field)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	got, err := Encode(302, time.Unix(1732170000, 900e6), map[string]int{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"protocol":302,"pv":"2.2","t":1732170000,"data":{"a":1}}`; string(got) != want {
		t.Fatalf("Encode = %s, want %s", got, want)
	}
	got, err = Encode(46, time.Unix(7, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"protocol":46,"pv":"2.2","t":7,"data":{}}`; string(got) != want {
		t.Fatalf("Encode(nil) = %s, want %s", got, want)
	}
	if _, err := Encode(1, time.Now(), make(chan int)); err == nil {
		t.Fatal("Encode of a channel succeeded")
	}
	e, err := DecodeEnvelope(got)
	if err != nil || e.Protocol != 46 || e.PV != ProtocolVersion || e.T != 7 || string(e.Data) != `{}` {
		t.Fatalf("round trip: %+v, %v", e, err)
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(`{"protocol":46,"pv":"2.2","t":1732170000,"data":{"type":"activate","uuid":"ipc0001"}}`))
	f.Add([]byte(`{"protocol":302,"t":1732170000123,"data":{"header":{"type":"offer"},"msg":{}}}`))
	f.Add([]byte(`{"protocol":1,"t":-5.5e3,"data":"x"}`))
	f.Add([]byte(`{"protocol":1,"t":1,"data":null}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrNotJSON) && !errors.Is(err, ErrMissingField) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if !json.Valid(e.Data) || string(e.Data) == "null" {
			t.Fatalf("accepted data %q", e.Data)
		}
		// Beyond 1e11 seconds a re-encoded t would read as milliseconds.
		if sec := e.Time().Unix(); sec > millisThreshold || sec < -millisThreshold {
			return
		}
		out, err := Encode(e.Protocol, e.Time(), e.Data)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", e, err)
		}
		again, err := DecodeEnvelope(out)
		if err != nil {
			t.Fatalf("decode of re-encoded %s: %v", out, err)
		}
		if again.Protocol != e.Protocol || again.Time().Unix() != e.Time().Unix() || !sameJSON(t, again.Data, e.Data) {
			t.Fatalf("round trip changed %+v (data %s) into %+v (data %s)", e, e.Data, again, again.Data)
		}
	})
}

// sameJSON compares two JSON values by meaning: Encode compacts data and
// escapes HTML characters, so the bytes differ.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	decode := func(p []byte) any {
		d := json.NewDecoder(bytes.NewReader(p))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("decode %q: %v", p, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}
