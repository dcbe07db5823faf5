//go:build !unix

package board

import (
	"context"
	"errors"
	"time"
)

var errHookTimeout = errors.New("hook timed out")

func runBounded(context.Context, string, []string, []byte, time.Duration) (string, error) {
	return "", errors.New("board.on_event needs a Unix system")
}
