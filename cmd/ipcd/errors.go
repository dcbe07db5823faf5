package main

import "errors"

// errStatusTooLarge: the status does not fit in a message even with no
// session listed.
var errStatusTooLarge = errors.New("status: too large even without sessions")

// rule names why the daemon itself dropped an input; the warn log prints
// it after rule=.
type rule string

const (
	// ruleNotReady: signaling arrived outside Ready (SPEC §3).
	ruleNotReady rule = "not_ready"
)
