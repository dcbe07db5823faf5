package board

// Event names the board socket carries besides those of SPEC §6.1
// (LiveVideoStart ... LiveVideoClarityQuery), which p2p raises.
const (
	EventSessionStart   = "SessionStart"
	EventSessionStop    = "SessionStop"
	EventStreamSwitch   = "StreamSwitch"
	EventLiveLoadAdjust = "LiveLoadAdjust"
	EventPrivacyOn      = "PrivacyOn"
	EventPrivacyOff     = "PrivacyOff"
	EventSourceFailure  = "SourceFailure"
	// RecordStart: recording to the card started (again); RecordStop: it
	// stopped, Detail names the rule (card_missing, card_removed,
	// card_readonly, card_full, card_io) and the error. ipcd retries.
	EventRecordStart = "RecordStart"
	EventRecordStop  = "RecordStop"
)

// Event is one line ipcd writes to every board reader, in order. Seq
// grows by one per event across all readers, so a reader that was
// disconnected and came back sees how many it missed.
type Event struct {
	_ [0]func() // not comparable: no equality function in the binary

	Type    string `json:"type"` // always "event"
	Seq     uint64 `json:"seq"`
	T       int64  `json:"t"` // unix milliseconds
	Event   string `json:"event"`
	Source  string `json:"source,omitempty"`  // WEBRTC for session events
	Session string `json:"session,omitempty"` // the 302 sessionid
	// Value: clarity (0 main, 1 sub) for LiveVideoClaritySet/Query and
	// StreamSwitch, the close_reason for SessionStop, the number of live
	// sessions for LiveLoadAdjust, 0 otherwise.
	Value  int    `json:"value"`
	Stream string `json:"stream,omitempty"` // main|sub|audio
	// Detail is why: the close reason text of SessionStop, who changed
	// privacy (board, app, store), the error of SourceFailure, the move
	// and its reason of a LiveLoadAdjust from per-viewer adaptation.
	Detail string `json:"detail,omitempty"`
}

// Command is one line a board writes. Req is echoed in the reply.
type Command struct {
	Cmd    string `json:"cmd"`
	Value  *int   `json:"value,omitempty"`
	Stream string `json:"stream,omitempty"`
	Req    int64  `json:"req"`
}

// Commands of the board socket.
const (
	CmdPrivacy  = "privacy"  // value 1 on, 0 off
	CmdKeyframe = "keyframe" // stream main|sub (default main)
	CmdStatus   = "status"
)

// Reply answers a Command. Res is 0 when done.
type Reply struct {
	_ [0]func() // not comparable: no equality function in the binary

	Type   string `json:"type"` // always "reply"
	Req    int64  `json:"req"`
	Res    int    `json:"res"`
	Error  string `json:"error,omitempty"`
	Rule   string `json:"rule,omitempty"`
	Status any    `json:"status,omitempty"`
}

// Reply codes.
const (
	ResOK          = 0
	ResBadRequest  = 1 // malformed, too long, bad value
	ResUnknown     = 2 // unknown cmd
	ResUnavailable = 3 // the handler could not serve it now
)
