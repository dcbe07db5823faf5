package mqtt

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
)

// redactInputMax bounds the bytes redact parses. Only the first
// logPayloadMax bytes of its output are logged, so reading further would
// only cost time on payloads that are dropped anyway.
const redactInputMax = 16 << 10

// secretNames are the member names whose values are secret: activation keys
// and passwords (protocol 46), broker and TURN credentials, signatures and
// the session auth token. Names are compared after decoding (so escapes
// such as "p2p\u005fpassword" count), in lower case and without '_', '-'
// and '.', because Go's JSON decoding matches member names to fields case
// insensitively: "P2P_Password" fills the same field as "p2p_password".
var secretNames = map[string]bool{
	"localkey":    true,
	"p2ppassword": true,
	"password":    true,
	"passwd":      true,
	"credential":  true,
	"authkey":     true,
	"sign":        true,
	"auth":        true,
	"secret":      true,
}

// secretSuffixes catch composed names such as "mqtt.password" or
// "mqtt_password".
var secretSuffixes = []string{"password", "passwd", "localkey", "authkey", "credential", "secret"}

// secretKey reports whether a decoded member name carries a secret.
func secretKey(name string) bool {
	n := strings.Map(func(r rune) rune {
		switch r {
		case '_', '-', '.', ' ':
			return -1
		}
		return fold(r)
	}, name)
	if secretNames[n] {
		return true
	}
	for _, s := range secretSuffixes {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return false
}

// fold maps r to the lower case of the smallest rune it folds to, the way
// Go's JSON decoding compares names: the Kelvin sign matches "k" and the
// long s matches "s".
func fold(r rune) rune {
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	return unicode.ToLower(m)
}

// redacted replaces a secret value, whatever its JSON type.
var redacted = []byte(`"***"`)

// redact returns p for the `Rev MQTT:` debug line (field engineers share
// debug logs) with the value of every secret member replaced by "***". It
// walks the JSON tokens and copies the original bytes between them, so the
// line shows the payload as sent except for the secrets. Values of any type
// are replaced: a number or an object under a secret name is hidden too.
// Where p stops being JSON (or past redactInputMax) the output ends with a
// note, since what follows cannot be told apart from a secret.
func redact(p []byte) []byte {
	in := p
	if len(in) > redactInputMax {
		in = in[:redactInputMax]
	}
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	out := make([]byte, 0, min(len(in), logPayloadMax+64))

	var stack []frame
	var last int64   // input offset copied to out so far
	secret := false  // the next value belongs to a secret member
	skipDepth := 0   // >0 while inside a secret object or array
	var skipFrom int // where the value being skipped starts, for its separators

	for len(out) <= logPayloadMax {
		tok, err := dec.Token()
		if err != nil {
			if secret || skipDepth > 0 {
				return append(out, notShown...)
			}
			return append(out, notJSON(in[last:])...)
		}
		off := dec.InputOffset()
		raw := in[last:off]
		d, isDelim := tok.(json.Delim)

		if skipDepth > 0 {
			if isDelim && (d == '{' || d == '[') {
				skipDepth++
			} else if isDelim {
				skipDepth--
			}
			if skipDepth == 0 {
				out = append(out, in[skipFrom:skipFrom+lead(in[skipFrom:off])]...)
				out = append(out, redacted...)
				last = off
				valueDone(&stack)
			}
			continue
		}

		top := len(stack) - 1
		switch {
		case isDelim && (d == '}' || d == ']'):
			out = append(out, raw...)
			if top >= 0 {
				stack = stack[:top]
			}
			valueDone(&stack)
		case top >= 0 && stack[top].obj && stack[top].key:
			name, _ := tok.(string)
			secret = secretKey(name)
			stack[top].key = false
			out = append(out, raw...)
		case secret && isDelim:
			secret = false
			skipDepth = 1
			skipFrom = int(last)
		case secret:
			secret = false
			out = append(out, raw[:lead(raw)]...)
			out = append(out, redacted...)
			valueDone(&stack)
		case isDelim:
			out = append(out, raw...)
			stack = append(stack, frame{obj: d == '{', key: d == '{'})
		default:
			out = append(out, raw...)
			valueDone(&stack)
		}
		last = off
	}
	return out
}

// hintNames are parts of secret names: text that is not JSON is shown only
// when it has none of them (after folding) and no escape that could spell
// one.
var hintNames = []string{"pass", "key", "sign", "auth", "secret", "credential", "token"}

var notShown = []byte(" <not shown: not JSON past this point>")

// notJSON is what the log shows of the rest of a payload that is not JSON:
// the text itself when nothing in it can name a secret, for the field
// engineer who needs to see what a broken client sent.
func notJSON(rest []byte) []byte {
	if len(bytes.TrimSpace(rest)) == 0 {
		return nil
	}
	folded := strings.Map(fold, string(rest))
	hidden := strings.ContainsRune(folded, '\\')
	for _, h := range hintNames {
		hidden = hidden || strings.Contains(folded, h)
	}
	if hidden {
		return notShown
	}
	return rest
}

// frame is one open container of the payload: obj tells an object from an
// array, key that the object's next token is a member name.
type frame struct{ obj, key bool }

// valueDone marks that a value ended: in an object, a member name follows.
func valueDone(stack *[]frame) {
	if n := len(*stack); n > 0 && (*stack)[n-1].obj {
		(*stack)[n-1].key = true
	}
}

// lead is the length of the whitespace and separators before a token.
func lead(raw []byte) int {
	return len(raw) - len(bytes.TrimLeft(raw, " \t\r\n:,"))
}
