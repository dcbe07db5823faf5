package mqtt

import "regexp"

// secretField matches JSON string members that carry secrets: activation
// keys and passwords (protocol 46), broker and TURN credentials, signatures
// and the session auth token. The `Rev MQTT:` debug line shows every
// payload, and field engineers share debug logs.
var secretField = regexp.MustCompile(`"(local_key|p2p_password|password|credential|authkey|sign|auth)"(\s*:\s*)"(?:[^"\\]|\\.)*"`)

// redact replaces the values of secret members with "***".
func redact(p []byte) []byte {
	return secretField.ReplaceAll(p, []byte(`"$1"$2"***"`))
}
