package viewer

import "fmt"

// RefusedError is returned by Watch when the device ends the session with a
// disconnect, before or after media started.
type RefusedError struct {
	CloseReason int
	Code        int
	Message     string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused by device: code %d, close_reason %d: %s", e.Code, e.CloseReason, e.Message)
}
