package metrics

import "errors"

// ErrBadRequest: the endpoint could not read a request's head.
var ErrBadRequest = errors.New("bad request")

// Rule names why the endpoint dropped a request; the debug log prints it
// after rule=.
type Rule string

// RuleMalformed: a request whose head could not be read.
const RuleMalformed Rule = "malformed"
