package p2p

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Playback commands of the control channel (Tuya's PLAYBACK_* events).
// The queries work in every session; the others only in a playback
// session (an offer with replay.is_replay 1).
const (
	CmdPlaybackQueryMonth = "playback_query_month" // value {"year":Y,"month":M} → days
	CmdPlaybackQueryDay   = "playback_query_day"   // value {"year":Y,"month":M,"day":D} → ranges
	CmdPlaybackPause      = "playback_pause"
	CmdPlaybackResume     = "playback_resume"
	CmdPlaybackSeek       = "playback_seek"  // value: unix seconds within the offer's replay window
	CmdPlaybackSpeed      = "playback_speed" // value 1, 2, 4 or 8
	CmdPlaybackMute       = "playback_mute"
	CmdPlaybackUnmute     = "playback_unmute"
	CmdPlaybackStop       = "playback_stop" // ends the session (close reason 9)
)

// Result codes of playback commands, beside those of controlchannel.go.
const (
	ResNoRecording  = 7  // nothing recorded at the time asked for
	ResNotPlayback  = 8  // the session plays the live stream
	ResRecordingOff = 9  // the device does not record
	ResBusy         = 11 // the session's queue for this kind of request is full
)

// Rules of playback and download input.
const (
	RuleBadCommand     Rule = "bad_command"
	RuleCommandRefused Rule = "command_refused"
	RuleNotPlayback    Rule = "not_playback"
	RuleRecordingOff   Rule = "recording_off"
	RuleNoRecording    Rule = "no_recording"
	RulePlaybackBusy   Rule = "playback_busy"
	RulePlaybackFailed Rule = "playback_failed"
	RuleBadDownload    Rule = "bad_download"
	RuleDownloadBusy   Rule = "download_busy"
)

// Bounds of the listing replies: a month has at most 31 days; a day's
// ranges are cut at maxRanges (the reply says so), which keeps a reply
// under 32 KiB.
const (
	maxRanges    = 512
	minQueryYear = 2000
	maxQueryYear = 2200
	// queryQueue is how many listing requests of a session wait for the
	// card; more are refused with ResBusy.
	queryQueue = 4
	// stopGrace is how long a session lives after playback_stop's reply.
	stopGrace = 200 * time.Millisecond
)

// PlaybackDate is the value of the listing queries. Day is 0 for a month.
type PlaybackDate struct {
	Year  int `json:"year"`
	Month int `json:"month"`
	Day   int `json:"day,omitempty"`
}

func isRecordingCmd(cmd string) bool {
	switch cmd {
	case CmdPlaybackQueryMonth, CmdPlaybackQueryDay, CmdPlaybackPause, CmdPlaybackResume,
		CmdPlaybackSeek, CmdPlaybackSpeed, CmdPlaybackMute, CmdPlaybackUnmute, CmdPlaybackStop:
		return true
	}
	return false
}

// checkRecordingCmd validates the value of a playback command.
func (c Command) checkRecordingCmd() error {
	switch c.Cmd {
	case CmdPlaybackQueryMonth, CmdPlaybackQueryDay:
		_, err := c.Date()
		return err
	case CmdPlaybackSeek:
		_, err := c.SeekTime()
		return err
	case CmdPlaybackSpeed:
		_, err := c.Speed()
		return err
	}
	return nil
}

// Date reads the value of the listing queries.
func (c Command) Date() (PlaybackDate, error) {
	var d PlaybackDate
	if len(c.Value) == 0 {
		return d, fmt.Errorf("%w: value", ErrMissingField)
	}
	if err := json.Unmarshal(c.Value, &d); err != nil {
		return d, fmt.Errorf("%w: value: %w", ErrBadValue, err)
	}
	if d.Year < minQueryYear || d.Year > maxQueryYear || d.Month < 1 || d.Month > 12 {
		return d, fmt.Errorf("%w: value: year %d month %d", ErrBadValue, d.Year, d.Month)
	}
	switch {
	case c.Cmd == CmdPlaybackQueryMonth && d.Day != 0:
		return d, fmt.Errorf("%w: value: a month query names no day", ErrBadValue)
	case c.Cmd == CmdPlaybackQueryDay:
		last := time.Date(d.Year, time.Month(d.Month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
		if d.Day < 1 || d.Day > last {
			return d, fmt.Errorf("%w: value: day %d of %04d-%02d", ErrBadValue, d.Day, d.Year, d.Month)
		}
	}
	return d, nil
}

// SeekTime reads the value of playback_seek: unix seconds, as a number or
// a string holding one.
func (c Command) SeekTime() (time.Time, error) {
	n, err := c.intValue()
	if err != nil {
		return time.Time{}, err
	}
	if n < minReplayTime || n > maxReplayTime {
		return time.Time{}, fmt.Errorf("%w: value %d is not a unix time in seconds", ErrBadValue, n)
	}
	return time.Unix(n, 0), nil
}

// Speed reads the value of playback_speed.
func (c Command) Speed() (int, error) {
	n, err := c.intValue()
	if err != nil {
		return 0, err
	}
	switch n {
	case 1, 2, 4, 8:
		return int(n), nil
	}
	return 0, fmt.Errorf("%w: value %d: want 1, 2, 4 or 8", ErrBadValue, n)
}

func (c Command) intValue() (int64, error) {
	v := bytes.Trim(c.Value, `"`)
	if len(v) == 0 {
		return 0, fmt.Errorf("%w: value", ErrMissingField)
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: value %.32s: want an integer", ErrBadValue, c.Value)
	}
	return n, nil
}

// recSession is a session's access to the recordings: its playback, if
// it is a playback session, the listing queries and the download. Its
// goroutines run under the session's context and wait group.
type recSession struct {
	se  *session
	ctx context.Context
	wg  *sync.WaitGroup

	play    *playback     // nil in a live session
	queries chan recQuery // started with the first query
	dl      *download     // the running or last download, owned by the session loop
}

func (se *session) newRecSession(ctx context.Context, wg *sync.WaitGroup) *recSession {
	return &recSession{se: se, ctx: ctx, wg: wg}
}

// close releases what the session's goroutines left: the playback's
// source. It runs after they have exited.
func (r *recSession) close() {
	if r == nil || r.play == nil {
		return
	}
	if err := r.play.src.Close(); err != nil {
		r.se.log.Debug("close playback", "err", err)
	}
}

type recQuery struct {
	dc *webrtc.DataChannel
	c  Command
	d  PlaybackDate
}

// command serves a playback command in the session loop. Everything that
// reads the card is handed to a goroutine: the listing to the query
// worker, a seek to the playback sender.
func (r *recSession) command(dc *webrtc.DataChannel, c Command) {
	se := r.se
	ev := se.svc.events
	reply := CommandReply{Req: c.Req}
	refuse := func(rule Rule, res int, msg string) {
		reply.Res, reply.Message = res, msg
		se.svc.drops.warn(se.log, rule, "control command refused", "cmd", c.Cmd, "req", c.Req, "res", res, "reason", msg)
		sendReply(se, dc, reply)
	}
	recs := se.svc.cfg.Recordings
	switch c.Cmd {
	case CmdPlaybackQueryMonth, CmdPlaybackQueryDay:
		if recs == nil {
			refuse(RuleRecordingOff, ResRecordingOff, ErrRecordingOff.Error())
			return
		}
		d, _ := c.Date() // checked by DecodeCommand
		if r.queries == nil {
			r.queries = make(chan recQuery, queryQueue)
			r.wg.Go(r.serveQueries)
		}
		select {
		case r.queries <- recQuery{dc: dc, c: c, d: d}:
		default:
			refuse(RulePlaybackBusy, ResBusy, "listing requests queued: "+strconv.Itoa(queryQueue))
		}
		return
	}
	p := r.play
	if p == nil {
		refuse(RuleNotPlayback, ResNotPlayback, "not a playback session")
		return
	}
	switch c.Cmd {
	case CmdPlaybackPause:
		p.paused.Store(true)
		p.poke()
		ev.emit(EventPlaybackPause, se.id, 0)
	case CmdPlaybackResume:
		p.paused.Store(false)
		p.poke()
		ev.emit(EventPlaybackResume, se.id, 0)
	case CmdPlaybackSpeed:
		v, _ := c.Speed()
		p.speed.Store(int32(v))
		p.poke()
		ev.emit(EventPlaybackSpeed, se.id, v)
	case CmdPlaybackMute:
		p.muted.Store(true)
		ev.emit(EventPlaybackMute, se.id, 0)
	case CmdPlaybackUnmute:
		p.muted.Store(false)
		ev.emit(EventPlaybackUnmute, se.id, 0)
	case CmdPlaybackStop:
		ev.emit(EventPlaybackStop, se.id, 0)
		p.paused.Store(true)
		p.poke()
		sendReply(se, dc, reply)
		// The session ends once the reply has had time to leave: closing
		// the peer connection at once would drop it from SCTP's queue.
		time.AfterFunc(stopGrace, func() { se.stop(CloseUser, true) })
		return
	case CmdPlaybackSeek:
		t, _ := c.SeekTime()
		if t.Before(p.start) || !t.Before(p.end) {
			refuse(RuleBadCommand, ResBadRequest, fmt.Sprintf("seek to %d outside the playback window %d..%d", t.Unix(), p.start.Unix(), p.end.Unix()))
			return
		}
		select {
		case p.seeks <- playSeek{t: t, dc: dc, req: c.Req}:
			// The sender replies once it has moved.
		default:
			refuse(RulePlaybackBusy, ResBusy, "a seek is in progress")
		}
		return
	}
	sendReply(se, dc, reply)
}

// serveQueries answers listing requests until the session ends.
func (r *recSession) serveQueries() {
	for {
		select {
		case q := <-r.queries:
			sendReply(r.se, q.dc, r.answer(q))
		case <-r.ctx.Done():
			return
		}
	}
}

func (r *recSession) answer(q recQuery) CommandReply {
	se := r.se
	recs := se.svc.cfg.Recordings
	loc := se.svc.cfg.location()
	reply := CommandReply{Req: q.c.Req}
	fail := func(err error) CommandReply {
		se.svc.drops.warn(se.log, RulePlaybackFailed, "recordings listing failed", "cmd", q.c.Cmd, "err", err)
		reply.Res, reply.Message = ResNoRecording, err.Error()
		return reply
	}
	if q.c.Cmd == CmdPlaybackQueryMonth {
		days, err := recs.Days(q.d.Year, time.Month(q.d.Month), loc)
		if err != nil {
			return fail(err)
		}
		reply.Days = append(make([]int, 0, len(days)), days...)
		se.svc.events.emit(EventPlaybackQueryMonth, se.id, q.d.Year*100+q.d.Month)
		return reply
	}
	from := time.Date(q.d.Year, time.Month(q.d.Month), q.d.Day, 0, 0, 0, 0, loc)
	ranges, err := recs.Ranges(from, from.AddDate(0, 0, 1))
	if err != nil {
		return fail(err)
	}
	if len(ranges) > maxRanges {
		reply.Message = fmt.Sprintf("%d ranges, the first %d given", len(ranges), maxRanges)
		ranges = ranges[:maxRanges]
	}
	reply.Ranges = append(make([]TimeRange, 0, len(ranges)), ranges...)
	se.svc.events.emit(EventPlaybackQueryDay, se.id, q.d.Year*10000+q.d.Month*100+q.d.Day)
	return reply
}

// sendReply writes a control reply; SCTP queues it, nothing waits.
func sendReply(se *session, dc *webrtc.DataChannel, r CommandReply) {
	raw, err := json.Marshal(r)
	if err != nil {
		se.log.Error("encode control reply", "err", err)
		return
	}
	if err := dc.SendText(string(raw)); err != nil {
		se.log.Debug("send control reply", "err", err)
	}
}

// location is the time zone of the listing queries.
func (c *Config) location() *time.Location {
	if c.Location != nil {
		return c.Location
	}
	return time.Local
}
