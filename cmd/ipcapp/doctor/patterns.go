package doctor

// The log messages the procedure looks for, as ipcd writes them (SPEC §8
// and the code). Each one is matched as a prefix of a record's msg. A test
// finds every one of them in ipcd's source, so the doctor and the daemon
// cannot drift apart silently.
const (
	MsgListenOK         = "listen ok"
	MsgState            = "state"
	MsgWaitBroker       = "service waits for the broker"
	MsgRevMQTT          = "Rev MQTT: "
	MsgSend302          = "Send MQTT Msg.P:302"
	MsgDrop302          = "drop 302 message"
	MsgMQTTDropped      = "mqtt message dropped"
	MsgDropNotReady     = "drop message" // with rule=not_ready
	MsgPrivacy          = "privacy mode"
	MsgAuthFailed       = "auth failed"
	MsgSessionsFull     = "incoming connection refused"
	MsgAllocFailed      = "alloc resource failed"
	MsgSessionStart     = "session start"
	MsgPCState          = "peer connection state"
	MsgFirstFrame       = "first frame sent"
	MsgAlive            = "media send proc alive"
	MsgVideoCnt         = "session send video cnt"
	MsgAudioCnt         = "session send audio cnt"
	MsgSessionTimeout   = "session timeout"
	MsgSessionClosed    = "session closed"
	MsgDisconnectApp    = "disconnect from app"
	MsgRingRejected     = "ring buffer rejected frames"
	MsgSlowSession      = "slow session skipped to keyframe"
	MsgFileFinished     = "file source finished"
	MsgPipeWriterClosed = "pipe writer closed"
	MsgPipeStopped      = "pipe source stopped"
	MsgFeedClosed       = "feed connection closed"
	MsgSourceFailed     = "media source failed"
	MsgPasswd           = "get p2p passwd = "
)

// Patterns lists every message constant with the text that produces it in
// ipcd's Go source (a format string where the message is built).
var Patterns = map[string]string{
	MsgListenOK:         `"listen ok"`,
	MsgState:            `"state"`,
	MsgWaitBroker:       `"service waits for the broker"`,
	MsgRevMQTT:          `"Rev MQTT: "`,
	MsgSend302:          `"Send MQTT Msg.P:%d"`,
	MsgDrop302:          `"drop 302 message"`,
	MsgMQTTDropped:      `"mqtt message dropped"`,
	MsgDropNotReady:     `"drop message", "protocol", protocol, "rule", string(ruleNotReady)`,
	MsgPrivacy:          `"privacy mode"`,
	MsgAuthFailed:       `"auth failed"`,
	MsgSessionsFull:     `"incoming connection refused"`,
	MsgAllocFailed:      `"alloc resource failed"`,
	MsgSessionStart:     `"session start"`,
	MsgPCState:          `"peer connection state"`,
	MsgFirstFrame:       `"first frame sent"`,
	MsgAlive:            `"media send proc alive"`,
	MsgVideoCnt:         `"session send video cnt"`,
	MsgAudioCnt:         `"session send audio cnt"`,
	MsgSessionTimeout:   `"session timeout"`,
	MsgSessionClosed:    `"session closed"`,
	MsgDisconnectApp:    `"disconnect from app"`,
	MsgRingRejected:     `"ring buffer rejected frames"`,
	MsgSlowSession:      `"slow session skipped to keyframe"`,
	MsgFileFinished:     `"file source finished"`,
	MsgPipeWriterClosed: `"pipe writer closed; waiting for the next one"`,
	MsgPipeStopped:      `"pipe source stopped"`,
	MsgFeedClosed:       `"feed connection closed"`,
	MsgSourceFailed:     `"media source failed"`,
	MsgPasswd:           `"get p2p passwd = "`,
}
