package mqtt

// Rule names the input rule (SPEC §5.1) that made the client drop a message.
// String values are what the warn log prints after `rule=`.
type Rule int

const (
	RuleUnknown Rule = iota
	RuleMaxPayload
	RuleNotJSON
	RuleMissingField
	RuleUnknownProtocol
	RuleReplayWindow
	// RuleQueueFull: the owner's bounded queue refused the message.
	RuleQueueFull
	// RuleInputQueueFull: the client's own input queue, between paho and
	// the input rules, was full.
	RuleInputQueueFull
	numRules
)

func (r Rule) String() string {
	switch r {
	case RuleMaxPayload:
		return "max_payload"
	case RuleNotJSON:
		return "not_json"
	case RuleMissingField:
		return "missing_field"
	case RuleUnknownProtocol:
		return "unknown_protocol"
	case RuleReplayWindow:
		return "replay_window"
	case RuleQueueFull:
		return "queue_full"
	case RuleInputQueueFull:
		return "input_queue_full"
	default:
		return "unknown"
	}
}

// Stats is a snapshot of the client's input counters.
type Stats struct {
	Received  uint64          // messages that arrived on TopicIn
	Delivered uint64          // messages accepted by their route
	Dropped   map[Rule]uint64 // dropped messages by the rule that rejected them
}

// DroppedTotal is the number of messages dropped for any rule.
func (s Stats) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}
