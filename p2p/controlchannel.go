package p2p

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// ControlLabel is the label of the data channel that carries commands.
const ControlLabel = "control"

// Commands of the control channel (SPEC §6.1).
const (
	CmdVideoStart   = "video_start"
	CmdVideoStop    = "video_stop"
	CmdAudioStart   = "audio_start"
	CmdAudioStop    = "audio_stop"
	CmdSpeakerStart = "speaker_start"
	CmdSpeakerStop  = "speaker_stop"
	CmdClaritySet   = "clarity_set"
	CmdClarityQuery = "clarity_query"
)

// maxCommand bounds a control message; real commands are a few dozen bytes.
const maxCommand = 4096

// Command is one control channel request. Value is the clarity of
// clarity_set (0 main, 1 sub) and unused otherwise.
type Command struct {
	Cmd   string          `json:"cmd"`
	Value json.RawMessage `json:"value,omitempty"`
	Req   int64           `json:"req"`
}

// CommandReply answers a Command with its req. Value is set for
// clarity_query.
type CommandReply struct {
	Req     int64  `json:"req"`
	Res     int    `json:"res"`
	Value   *int   `json:"value,omitempty"`
	Message string `json:"message,omitempty"`
	// Days and Ranges answer the playback listing queries.
	Days   []int       `json:"days,omitempty"`
	Ranges []TimeRange `json:"ranges,omitempty"`
}

// DecodeCommand decodes a control channel message. On error the Command
// still carries the req when it could be read, so that the reply names it.
func DecodeCommand(data []byte) (Command, error) {
	var c Command
	if len(data) > maxCommand {
		return c, fmt.Errorf("%w: command of %d bytes, limit %d", ErrMalformed, len(data), maxCommand)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		var r struct {
			Req int64 `json:"req"`
		}
		_ = json.Unmarshal(data, &r) // best effort, for the reply
		return Command{Req: r.Req}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch c.Cmd {
	case "":
		return c, fmt.Errorf("%w: cmd", ErrMissingField)
	case CmdVideoStart, CmdVideoStop, CmdAudioStart, CmdAudioStop,
		CmdSpeakerStart, CmdSpeakerStop, CmdClarityQuery:
	case CmdClaritySet:
		if _, err := c.Clarity(); err != nil {
			return c, err
		}
	default:
		if isRecordingCmd(c.Cmd) {
			return c, c.checkRecordingCmd()
		}
		return c, fmt.Errorf("%w: cmd %q", ErrUnknownCommand, c.Cmd)
	}
	return c, nil
}

// Clarity reads the value of clarity_set: 0 or 1, as a number or a string
// holding one, since apps send both.
func (c Command) Clarity() (int, error) {
	v := bytes.Trim(c.Value, `"`)
	if len(v) == 0 {
		return 0, fmt.Errorf("%w: value", ErrMissingField)
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || (n != 0 && n != 1) {
		return 0, fmt.Errorf("%w: value %s: want 0 (main) or 1 (sub)", ErrBadValue, c.Value)
	}
	return n, nil
}

// pauses is what the control channel stopped. The flags are set by the
// session loop and read by the senders.
type pauses struct {
	video atomic.Bool
	audio atomic.Bool
	// waitKey is the video sender's own: after a pause, sending resumes at
	// a keyframe.
	waitKey bool
}

// skipVideo reports whether the sender must drop f.
func (p *pauses) skipVideo(f media.Frame) bool {
	if p.video.Load() {
		p.waitKey = true
		return true
	}
	if p.waitKey && f.Kind != media.KindI {
		return true
	}
	p.waitKey = false
	return false
}

// dcMessage is a control channel message handed to the session loop.
type dcMessage struct {
	dc   *webrtc.DataChannel
	data []byte
}

// sessionHooks are the pion callbacks that talkback and the control channel
// need, turned into channels served by the session loop.
type sessionHooks struct {
	tracks chan *webrtc.TrackRemote
	cmds   chan dcMessage
}

// hook registers the callbacks on pc. It must run before the offer is
// applied so that no track or channel is missed.
func (se *session) hook(ctx context.Context, pc *webrtc.PeerConnection) sessionHooks {
	h := sessionHooks{tracks: make(chan *webrtc.TrackRemote, 2), cmds: make(chan dcMessage, 16)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		select {
		case h.tracks <- tr:
		case <-ctx.Done():
		}
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() != ControlLabel && dc.Label() != FMP4Label && dc.Label() != DownloadLabel {
			se.log.Info("ignore data channel", "label", dc.Label())
			return
		}
		se.log.Debug("data channel", "label", dc.Label())
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case h.cmds <- dcMessage{dc: dc, data: m.Data}:
			case <-ctx.Done():
			}
		})
	})
	return h
}

// command serves one control channel message and answers it.
func (se *session) command(m dcMessage) {
	switch m.dc.Label() {
	case FMP4Label:
		se.fmp4Message(m)
		return
	case DownloadLabel:
		se.rec.downloadMessage(m)
		return
	}
	c, err := DecodeCommand(m.data)
	if err == nil && isRecordingCmd(c.Cmd) {
		se.rec.command(m.dc, c)
		return
	}
	r := CommandReply{Req: c.Req}
	if err != nil {
		r.Res, r.Message = ResBadRequest, err.Error()
	} else {
		r = se.do(c)
	}
	if r.Res != ResOK {
		rule := RuleBadCommand
		if err == nil {
			rule = RuleCommandRefused
		}
		se.svc.drops.warn(se.log, rule, "control command refused", "cmd", c.Cmd, "req", c.Req, "res", r.Res, "reason", r.Message)
	} else {
		se.log.Debug("control command", "cmd", c.Cmd, "req", c.Req)
	}
	raw, err := json.Marshal(r)
	if err != nil {
		se.log.Error("encode control reply", "err", err)
		return
	}
	if err := m.dc.SendText(string(raw)); err != nil {
		se.log.Debug("send control reply", "err", err)
	}
}

func (se *session) do(c Command) CommandReply {
	r := CommandReply{Req: c.Req}
	ev := se.svc.events
	switch c.Cmd {
	case CmdVideoStart:
		se.pause.video.Store(false)
		ev.emit(EventLiveVideoStart, se.id, 0)
	case CmdVideoStop:
		se.pause.video.Store(true)
		ev.emit(EventLiveVideoStop, se.id, 0)
	case CmdAudioStart:
		se.pause.audio.Store(false)
		ev.emit(EventLiveAudioStart, se.id, 0)
	case CmdAudioStop:
		se.pause.audio.Store(true)
		ev.emit(EventLiveAudioStop, se.id, 0)
	case CmdSpeakerStart:
		r.Res, r.Message = se.speakerOn()
	case CmdSpeakerStop:
		r.Res, r.Message = se.speakerOff()
	case CmdClaritySet:
		v, _ := c.Clarity() // checked by DecodeCommand
		r.Res, r.Message = se.svc.appClarity(se, v)
		if r.Res == ResOK {
			se.log.Info("clarity set", "value", v)
			ev.emit(EventLiveVideoClaritySet, se.id, v)
		}
	case CmdClarityQuery:
		v := 0
		if media.Stream(se.stream.Load()) == media.StreamSub {
			v = 1
		}
		r.Value = &v
		ev.emit(EventLiveVideoClarityQuery, se.id, v)
	}
	return r
}
