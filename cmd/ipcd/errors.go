package main

import "errors"

// errBadRequest: the metrics endpoint could not read a request's head.
var errBadRequest = errors.New("bad request")

// errStatusTooLarge: the status does not fit in a message even with no
// session listed.
var errStatusTooLarge = errors.New("status: too large even without sessions")
