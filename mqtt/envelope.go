package mqtt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// ProtocolVersion is the `pv` the device writes in every envelope.
const ProtocolVersion = "2.2"

// millisThreshold separates t in seconds from t in milliseconds: 1e11 seconds
// is the year 5138, 1e11 milliseconds is March 1973, so no real clock is
// ambiguous.
const millisThreshold = 1e11

// Envelope is the JSON wrapper of every MQTT message (SPEC §5.1).
type Envelope struct {
	Protocol int             `json:"protocol"`
	PV       string          `json:"pv"`
	T        int64           `json:"t"`
	Data     json.RawMessage `json:"data"`
}

// DecodeEnvelope parses an envelope. It fails with ErrNotJSON when b is not a
// JSON object and with ErrMissingField when protocol, t or data is absent,
// null or of the wrong type. pv is informational: a pv that is not a string is
// ignored rather than rejected. t may be fractional (apps that divide a
// millisecond clock by 1000); the fraction is dropped.
func DecodeEnvelope(b []byte) (Envelope, error) {
	var raw struct {
		Protocol json.RawMessage `json:"protocol"`
		PV       json.RawMessage `json:"pv"`
		T        json.RawMessage `json:"t"`
		Data     json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	var e Envelope
	if isAbsent(raw.Protocol) {
		return Envelope{}, fmt.Errorf("%w: protocol", ErrMissingField)
	}
	if err := json.Unmarshal(raw.Protocol, &e.Protocol); err != nil {
		return Envelope{}, fmt.Errorf("%w: protocol: not an integer", ErrMissingField)
	}
	if isAbsent(raw.T) {
		return Envelope{}, fmt.Errorf("%w: t", ErrMissingField)
	}
	t, ok := parseTime(raw.T)
	if !ok {
		return Envelope{}, fmt.Errorf("%w: t: not a number in range", ErrMissingField)
	}
	e.T = t
	if isAbsent(raw.Data) {
		return Envelope{}, fmt.Errorf("%w: data", ErrMissingField)
	}
	e.Data = raw.Data
	if !isAbsent(raw.PV) {
		_ = json.Unmarshal(raw.PV, &e.PV)
	}
	return e, nil
}

func isAbsent(v json.RawMessage) bool {
	return len(v) == 0 || bytes.Equal(v, []byte("null"))
}

// parseTime accepts an integer or a finite fractional JSON number that fits
// in an int64.
func parseTime(v json.RawMessage) (int64, bool) {
	s := string(v)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	// Reject strings and other JSON values; ParseFloat would accept "Inf".
	if c := s[0]; c != '-' && (c < '0' || c > '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f >= math.MaxInt64 || f < math.MinInt64 {
		return 0, false
	}
	return int64(f), true
}

// Time is t as a time: seconds, or milliseconds when t > 1e11.
func (e Envelope) Time() time.Time {
	if e.T > millisThreshold {
		return time.UnixMilli(e.T)
	}
	return time.Unix(e.T, 0)
}

// Encode builds an envelope with t in unix seconds. A nil data is sent as an
// empty object, because receivers treat a null data as a missing field.
func Encode(protocol int, t time.Time, data any) ([]byte, error) {
	if data == nil {
		data = struct{}{}
	}
	b, err := json.Marshal(struct {
		Protocol int    `json:"protocol"`
		PV       string `json:"pv"`
		T        int64  `json:"t"`
		Data     any    `json:"data"`
	}{protocol, ProtocolVersion, t.Unix(), data})
	if err != nil {
		return nil, fmt.Errorf("mqtt: encode protocol %d: %w", protocol, err)
	}
	return b, nil
}
