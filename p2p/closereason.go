package p2p

// CloseReason is Tuya's RTC_CLOSE_REASON_* sent in a disconnect.
type CloseReason int

// Close reasons of SPEC §5.3.
const (
	CloseUnknown  CloseReason = 0
	ClosePrivacy  CloseReason = 2
	CloseBusy     CloseReason = 4
	CloseAuth     CloseReason = 5
	CloseTimeout  CloseReason = 8
	CloseUser     CloseReason = 9
	CloseNoMemory CloseReason = 14
	// CloseCodec is sent when no offered codec matches a stream; not in
	// Tuya's table, so it uses the generic failure reason.
	CloseCodec CloseReason = 1
)

// Code is the app-facing code sent with the reason.
func (r CloseReason) Code() int {
	switch r {
	case ClosePrivacy:
		return -102
	case CloseBusy:
		return -104
	case CloseAuth:
		return -105
	case CloseTimeout:
		return -108
	case CloseUser:
		return -106
	case CloseNoMemory:
		return -114
	case CloseCodec:
		return -101
	}
	if c, _, ok := recordingReason(r); ok {
		return c
	}
	return -100
}

// String is the text logged and sent as the disconnect message; field
// engineers search for it.
func (r CloseReason) String() string {
	switch r {
	case ClosePrivacy:
		return "privacy mode"
	case CloseBusy:
		return "incoming connection refused"
	case CloseAuth:
		return "auth failed"
	case CloseTimeout:
		return "session timeout"
	case CloseUser:
		return "session closed"
	case CloseNoMemory:
		return "alloc resource failed"
	case CloseCodec:
		return "no common codec"
	}
	if _, t, ok := recordingReason(r); ok {
		return t
	}
	return "unknown"
}
