package board

import "errors"

var (
	// ErrConfig is returned by NewServer for a configuration it cannot use.
	ErrConfig = errors.New("board: invalid configuration")
	// ErrLineTooLong is the answer to a command line longer than MaxLine.
	ErrLineTooLong = errors.New("command line too long")
	// ErrMalformed is the answer to a command line that is not a JSON object.
	ErrMalformed = errors.New("malformed command")
	// ErrUnknownCommand is the answer to a cmd the socket does not know.
	ErrUnknownCommand = errors.New("unknown command")
	// ErrBadValue is the answer to a command whose value is out of range.
	ErrBadValue = errors.New("bad value")
	// ErrUnavailable is returned by a command handler that cannot serve the
	// command now (no such stream, service not built yet).
	ErrUnavailable = errors.New("unavailable")
)

// errHookTimeout: the hook ran past board.hook_timeout and was killed.
var errHookTimeout = errors.New("hook timed out")
