package viewer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/p2p"
)

// DownloadChannel is the "download" data channel of a session: the device
// sends a recorded range on it as one MPEG-TS file, in binary messages,
// with JSON status messages (p2p.DownloadStatus) between them.
type DownloadChannel struct {
	dc     *webrtc.DataChannel
	status chan p2p.DownloadStatus

	mu  sync.Mutex
	out io.Writer
	n   int64
	err error
}

// openDownload creates the channel before the offer; OnDownload runs once
// it is open.
func (s *session) openDownload() error {
	dc, err := s.pc.CreateDataChannel(p2p.DownloadLabel, nil)
	if err != nil {
		return fmt.Errorf("download channel: %w", err)
	}
	d := &DownloadChannel{dc: dc, status: make(chan p2p.DownloadStatus, 256)}
	dc.OnMessage(func(m webrtc.DataChannelMessage) { d.message(m) })
	dc.OnOpen(func() { send(s, s.dlOpen, d) })
	return nil
}

func (d *DownloadChannel) message(m webrtc.DataChannelMessage) {
	if !m.IsString {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.out != nil && d.err == nil {
			var k int
			k, d.err = d.out.Write(m.Data)
			d.n += int64(k)
		}
		return
	}
	var st p2p.DownloadStatus
	if json.Unmarshal(m.Data, &st) != nil {
		return
	}
	select {
	case d.status <- st:
	default: // progress nobody reads; the final status is never more than 256 behind
	}
}

// Start asks for start..end (unix seconds) and writes the file to w.
func (d *DownloadChannel) Start(w io.Writer, start, end int64) error {
	d.mu.Lock()
	d.out, d.n, d.err = w, 0, nil
	d.mu.Unlock()
	return d.send(p2p.DownloadRequest{Cmd: p2p.DownloadStart, Start: start, End: end})
}

// Pause, Resume and Cancel control the running download.
func (d *DownloadChannel) Pause() error  { return d.send(p2p.DownloadRequest{Cmd: p2p.DownloadPause}) }
func (d *DownloadChannel) Resume() error { return d.send(p2p.DownloadRequest{Cmd: p2p.DownloadResume}) }
func (d *DownloadChannel) Cancel() error { return d.send(p2p.DownloadRequest{Cmd: p2p.DownloadCancel}) }

func (d *DownloadChannel) send(r p2p.DownloadRequest) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return d.dc.SendText(string(raw))
}

// Status returns the device's status messages in order.
func (d *DownloadChannel) Status() <-chan p2p.DownloadStatus { return d.status }

// Written is what was written to the Start writer, and its first error.
func (d *DownloadChannel) Written() (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n, d.err
}

// Wait returns the final status of the download (done, cancelled or
// error), passing progress to onProgress when it is not nil.
func (d *DownloadChannel) Wait(ctx context.Context, onProgress func(p2p.DownloadStatus)) (p2p.DownloadStatus, error) {
	for {
		select {
		case st := <-d.status:
			switch st.Type {
			case p2p.DownloadDone, p2p.DownloadCancelled, p2p.DownloadError:
				return st, nil
			}
			if onProgress != nil {
				onProgress(st)
			}
		case <-ctx.Done():
			return p2p.DownloadStatus{}, ctx.Err()
		}
	}
}
