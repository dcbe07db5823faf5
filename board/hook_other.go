//go:build !unix

package board

import (
	"context"
	"fmt"
	"time"
)

func runBounded(context.Context, string, []string, []byte, time.Duration) (string, error) {
	return "", fmt.Errorf("%w: board.on_event needs a Unix system", ErrConfig)
}
