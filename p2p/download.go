package p2p

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// DownloadLabel is the label of the data channel on which the app
// downloads a recorded range as one MPEG-TS file.
const DownloadLabel = "download"

// Requests of the download channel, sent by the app as JSON text.
const (
	DownloadStart  = "start" // with start and end, unix seconds
	DownloadPause  = "pause"
	DownloadResume = "resume"
	DownloadCancel = "cancel"
)

// Status types the device sends on the download channel as JSON text,
// between the binary messages that carry the file.
const (
	DownloadStarted   = "started"
	DownloadProgress  = "progress"
	DownloadPaused    = "paused"
	DownloadResumed   = "resumed"
	DownloadDone      = "done"
	DownloadCancelled = "cancelled"
	DownloadError     = "error"
)

// Flow control of the download channel: the sender stops above
// downloadHigh bytes queued in SCTP and goes on when pion reports the
// queue drained to downloadLow. A download thus holds at most about
// downloadHigh plus one chunk in memory.
const (
	downloadChunk    = 16 << 10
	downloadHigh     = 1 << 20
	downloadLow      = 256 << 10
	progressBytes    = 512 << 10
	progressInterval = time.Second
	// maxDownloadSpan bounds a download's range.
	maxDownloadSpan = maxReplaySpan
)

// DownloadRequest is a message of the app on the download channel.
type DownloadRequest struct {
	Cmd   string `json:"cmd"`
	Start int64  `json:"start,omitempty"`
	End   int64  `json:"end,omitempty"`
}

// DownloadStatus is a text message of the device on the download channel.
// Bytes is what was sent so far; Res and Message explain an error (codes
// as for control commands: 1 bad request, 7 no recording, 9 recording off,
// 11 a download is running).
type DownloadStatus struct {
	Type    string `json:"type"`
	Bytes   int64  `json:"bytes"`
	Res     int    `json:"res,omitempty"`
	Message string `json:"message,omitempty"`
}

// DecodeDownloadRequest decodes and checks a message of the download
// channel.
func DecodeDownloadRequest(data []byte) (DownloadRequest, error) {
	var r DownloadRequest
	if len(data) > maxCommand {
		return r, fmt.Errorf("%w: request of %d bytes, limit %d", ErrMalformed, len(data), maxCommand)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return DownloadRequest{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch r.Cmd {
	case "":
		return r, fmt.Errorf("%w: cmd", ErrMissingField)
	case DownloadStart:
		rp := Replay{IsReplay: 1, StartTime: r.Start, EndTime: r.End}
		if err := rp.check(); err != nil {
			return r, err
		}
	case DownloadPause, DownloadResume, DownloadCancel:
	default:
		return r, fmt.Errorf("%w: cmd %q", ErrUnknownCommand, r.Cmd)
	}
	return r, nil
}

// download is one export running on a download channel. The session loop
// sets its flags; its goroutine writes the file.
type download struct {
	dc      *webrtc.DataChannel
	cancel  context.CancelFunc
	paused  atomic.Bool
	wake    chan struct{} // resumed or cancelled
	drained chan struct{} // the channel's queue fell to downloadLow
	sent    atomic.Int64
	done    atomic.Bool   // the goroutine has finished
	peak    atomic.Uint64 // the most SCTP held of the channel's messages
}

// downloadMessage serves one message of a download channel in the session
// loop. It never waits: the export runs on its own goroutine.
func (r *recSession) downloadMessage(m dcMessage) {
	se := r.se
	req, err := DecodeDownloadRequest(m.data)
	status := func(typ string, res int, msg string) {
		sendStatus(se, m.dc, DownloadStatus{Type: typ, Res: res, Message: msg, Bytes: r.sentOn(m.dc)})
	}
	refuse := func(rule Rule, res int, msg string) {
		se.svc.drops.warn(se.log, rule, "download refused", "cmd", req.Cmd, "res", res, "reason", msg)
		status(DownloadError, res, msg)
	}
	if err != nil {
		refuse(RuleBadDownload, ResBadRequest, err.Error())
		return
	}
	dl := r.dl
	if req.Cmd != DownloadStart && (dl == nil || dl.dc != m.dc || dl.done.Load()) {
		refuse(RuleBadDownload, ResBadRequest, req.Cmd+": no download running on this channel")
		return
	}
	ev := se.svc.events
	switch req.Cmd {
	case DownloadStart:
		recs := se.svc.cfg.Recordings
		switch {
		case recs == nil:
			refuse(RuleRecordingOff, ResRecordingOff, ErrRecordingOff.Error())
			return
		case dl != nil && !dl.done.Load():
			refuse(RuleDownloadBusy, ResBusy, "a download is running in this session")
			return
		}
		ctx, cancel := context.WithCancel(r.ctx)
		dl = &download{dc: m.dc, cancel: cancel, wake: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
		r.dl = dl
		m.dc.SetBufferedAmountLowThreshold(downloadLow)
		m.dc.OnBufferedAmountLow(func() {
			select {
			case dl.drained <- struct{}{}:
			default:
			}
		})
		start, end := time.Unix(req.Start, 0), time.Unix(req.End, 0)
		se.log.Info("download start", "start_time", req.Start, "end_time", req.End)
		ev.emitDetail(EventDownloadStart, se.id, int(req.Start), start.UTC().Format(time.RFC3339))
		status(DownloadStarted, 0, "")
		r.wg.Go(func() {
			defer cancel()
			r.runDownload(ctx, dl, recs, start, end)
		})
	case DownloadPause:
		dl.paused.Store(true)
		ev.emit(EventDownloadPause, se.id, kib(dl.sent.Load()))
		status(DownloadPaused, 0, "")
	case DownloadResume:
		dl.paused.Store(false)
		dl.poke()
		ev.emit(EventDownloadResume, se.id, kib(dl.sent.Load()))
		status(DownloadResumed, 0, "")
	case DownloadCancel:
		// The goroutine says cancelled once the export has stopped.
		dl.cancel()
		dl.poke()
	}
}

func (r *recSession) sentOn(dc *webrtc.DataChannel) int64 {
	if r.dl != nil && r.dl.dc == dc {
		return r.dl.sent.Load()
	}
	return 0
}

func (d *download) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// runDownload exports start..end onto the channel and ends with one
// status: done, cancelled or error.
func (r *recSession) runDownload(ctx context.Context, dl *download, recs Recordings, start, end time.Time) {
	se := r.se
	w := &channelWriter{ctx: ctx, dl: dl, se: se, buf: make([]byte, 0, downloadChunk), lastProgress: time.Now()}
	began := time.Now()
	n, err := recs.Export(ctx, w, start, end)
	if err == nil {
		err = w.flush()
	}
	dl.done.Store(true)
	sent := dl.sent.Load()
	st := DownloadStatus{Type: DownloadDone, Bytes: sent}
	switch {
	case ctx.Err() != nil && r.ctx.Err() == nil:
		st.Type = DownloadCancelled
		se.log.Info("download cancelled", "bytes", sent)
		se.svc.events.emit(EventDownloadCancel, se.id, kib(sent))
	case r.ctx.Err() != nil:
		return // the session ends: nobody to tell
	case errors.Is(err, ErrNoRecording):
		st.Type, st.Res, st.Message = DownloadError, ResNoRecording, err.Error()
		se.svc.drops.warn(se.log, RuleNoRecording, "download refused", "err", err)
	case err != nil:
		st.Type, st.Res, st.Message = DownloadError, ResNoRecording, err.Error()
		se.svc.drops.warn(se.log, RulePlaybackFailed, "download failed", "bytes", sent, "err", err)
	default:
		se.log.Info("download done", "bytes", sent, "exported", n, "duration", time.Since(began).Round(time.Millisecond),
			"peak_buffered", dl.peak.Load())
		se.svc.events.emit(EventDownloadDone, se.id, kib(sent))
	}
	sendStatus(se, dl.dc, st)
}

func sendStatus(se *session, dc *webrtc.DataChannel, st DownloadStatus) {
	raw, err := json.Marshal(st)
	if err != nil {
		return
	}
	if err := dc.SendText(string(raw)); err != nil {
		se.log.Debug("send download status", "err", err)
	}
}

// channelWriter is the io.Writer Export writes to: it cuts the stream into
// binary messages and waits, on the download's goroutine, while the
// download is paused or SCTP holds downloadHigh bytes.
type channelWriter struct {
	ctx          context.Context
	dl           *download
	se           *session
	buf          []byte
	lastProgress time.Time
	progressAt   int64
}

func (w *channelWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), downloadChunk-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(w.buf) == downloadChunk {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush sends what is buffered as one message.
func (w *channelWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if err := w.room(); err != nil {
		return err
	}
	if err := w.dl.dc.Send(w.buf); err != nil {
		return fmt.Errorf("download channel: %w", err)
	}
	if b := w.dl.dc.BufferedAmount(); b > w.dl.peak.Load() {
		w.dl.peak.Store(b) // one writer: this goroutine
	}
	sent := w.dl.sent.Add(int64(len(w.buf)))
	w.buf = w.buf[:0]
	if sent-w.progressAt >= progressBytes || time.Since(w.lastProgress) >= progressInterval {
		w.progressAt, w.lastProgress = sent, time.Now()
		sendStatus(w.se, w.dl.dc, DownloadStatus{Type: DownloadProgress, Bytes: sent})
	}
	return nil
}

// room waits until the download is not paused and the channel's queue is
// under downloadHigh.
func (w *channelWriter) room() error {
	for {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if w.dl.paused.Load() {
			select {
			case <-w.dl.wake:
			case <-w.ctx.Done():
			}
			continue
		}
		// A drain signalled before this check is stale: the check sees
		// the queue as it is.
		select {
		case <-w.dl.drained:
		default:
		}
		if w.dl.dc.BufferedAmount() <= downloadHigh {
			return nil
		}
		select {
		case <-w.dl.drained:
		case <-w.dl.wake:
		case <-w.ctx.Done():
		}
	}
}

// kib is an event's value for a byte count: KiB, so that a day's download
// fits the int of a 32-bit board.
func kib(n int64) int { return int(n >> 10) }
